//! Writing and reading records through the AWS SDK: PutRecord, PutRecords, every shard iterator
//! type, GetRecords; exact payloads, MD5 routing and per-shard sequence number order.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::{Blob, DateTime};
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, Record, ShardIteratorType};
use common::{
    ServerProcess, Throttle, assert_increasing, big, create_stream, hash_of, iterator,
    list_all_shards, payloads, read_at_least, shard_owning, wait_for,
};

/// A payload that is not valid UTF-8 text, so base64 handling is exercised.
fn binary_payload(i: usize) -> Vec<u8> {
    let mut data: Vec<u8> = (0..=255u8).collect();
    data.extend(format!("#{i}").bytes());
    data.rotate_left(i % 256);
    data
}

/// Reads exactly `count` records of a shard from TRIM_HORIZON (bounded).
async fn read_shard(client: &Client, name: &str, shard: &str, count: usize) -> Vec<Record> {
    let start = iterator(client, name, shard, ShardIteratorType::TrimHorizon).await;
    let records = read_at_least(client, start, count).await;
    assert_eq!(
        records.len(),
        count,
        "shard {shard} holds more than expected"
    );
    records
}

#[tokio::test]
async fn put_record_routes_by_md5_and_reads_back_exactly() {
    let server = ServerProcess::start(Throttle::Off).await;
    let client = server.client().await;
    create_stream(&client, "routed", 2).await;
    let shards = list_all_shards(&client, "routed").await;

    // What each shard should hold, in put order: (partition key, data, sequence number).
    let mut expected: BTreeMap<String, Vec<(String, Vec<u8>, String)>> = BTreeMap::new();
    for i in 0..40 {
        let key = format!("customer-{i}");
        let data = binary_payload(i);
        let put = client
            .put_record()
            .stream_name("routed")
            .partition_key(&key)
            .data(Blob::new(data.clone()))
            .send()
            .await
            .expect("PutRecord");
        assert_eq!(
            put.shard_id(),
            shard_owning(&shards, hash_of(&key)),
            "partition key {key:?} (MD5 {}) went to the wrong shard",
            hash_of(&key)
        );
        expected
            .entry(put.shard_id().to_string())
            .or_default()
            .push((key, data, put.sequence_number().to_string()));
    }
    assert_eq!(expected.len(), 2, "40 keys all landed on one shard");

    for (shard, wanted) in &expected {
        // Sequence numbers handed out by PutRecord increase per shard, compared as integers.
        for pair in wanted.windows(2) {
            assert!(big(&pair[0].2) < big(&pair[1].2), "{shard}: {pair:?}");
        }
        let records = read_shard(&client, "routed", shard, wanted.len()).await;
        for (record, (key, data, sequence)) in records.iter().zip(wanted) {
            assert_eq!(record.partition_key(), Some(key.as_str()));
            assert_eq!(record.data().as_ref(), data.as_slice());
            assert_eq!(record.sequence_number(), sequence);
            assert!(record.approximate_arrival_timestamp().is_some());
        }
    }

    // ExplicitHashKey overrides the partition key's hash.
    for (hash, shard) in [(0u128, 0usize), (u128::MAX, 1)] {
        let put = client
            .put_record()
            .stream_name("routed")
            .partition_key("customer-0")
            .explicit_hash_key(hash.to_string())
            .data(Blob::new("explicit"))
            .send()
            .await
            .expect("PutRecord with ExplicitHashKey");
        assert_eq!(put.shard_id(), shards[shard].shard_id(), "hash {hash}");
    }
}

#[tokio::test]
async fn put_records_of_500_entries_keeps_request_order() {
    let server = ServerProcess::start(Throttle::Off).await;
    let client = server.client().await;
    create_stream(&client, "batched", 2).await;
    let shards = list_all_shards(&client, "batched").await;

    let entries: Vec<PutRecordsRequestEntry> = (0..500)
        .map(|i| {
            PutRecordsRequestEntry::builder()
                .partition_key(format!("k{i}"))
                .data(Blob::new(format!("record {i}: {}", "x".repeat(i % 97))))
                .build()
                .expect("a complete entry")
        })
        .collect();
    let answer = client
        .put_records()
        .stream_name("batched")
        .set_records(Some(entries))
        .send()
        .await
        .expect("PutRecords");
    assert_eq!(answer.failed_record_count(), Some(0));
    assert_eq!(answer.records().len(), 500);

    let mut expected: BTreeMap<String, Vec<(usize, String)>> = BTreeMap::new();
    for (i, result) in answer.records().iter().enumerate() {
        assert_eq!(result.error_code(), None, "entry {i}: {result:?}");
        let shard = result.shard_id().expect("a shard id");
        assert_eq!(shard, shard_owning(&shards, hash_of(&format!("k{i}"))));
        let sequence = result.sequence_number().expect("a sequence number");
        expected
            .entry(shard.to_string())
            .or_default()
            .push((i, sequence.to_string()));
    }
    assert_eq!(expected.len(), 2);

    for (shard, wanted) in &expected {
        let records = read_shard(&client, "batched", shard, wanted.len()).await;
        assert_increasing(&records);
        for (record, (i, sequence)) in records.iter().zip(wanted) {
            assert_eq!(record.partition_key(), Some(format!("k{i}").as_str()));
            assert_eq!(
                record.data().as_ref(),
                format!("record {i}: {}", "x".repeat(i % 97)).as_bytes()
            );
            assert_eq!(record.sequence_number(), sequence);
        }
    }
}

/// Puts `data` on the single-shard stream `name`; returns the sequence number.
async fn put(client: &Client, name: &str, data: &str) -> String {
    client
        .put_record()
        .stream_name(name)
        .partition_key("p")
        .data(Blob::new(data))
        .send()
        .await
        .expect("PutRecord")
        .sequence_number()
        .to_string()
}

/// An iterator at or after a sequence number.
async fn iterator_at(
    client: &Client,
    name: &str,
    kind: ShardIteratorType,
    sequence_number: &str,
) -> String {
    client
        .get_shard_iterator()
        .stream_name(name)
        .shard_id("shardId-000000000000")
        .shard_iterator_type(kind)
        .starting_sequence_number(sequence_number)
        .send()
        .await
        .expect("GetShardIterator at a sequence number")
        .shard_iterator()
        .expect("an iterator")
        .to_string()
}

/// An AT_TIMESTAMP iterator.
async fn iterator_at_time(client: &Client, name: &str, at: DateTime) -> String {
    client
        .get_shard_iterator()
        .stream_name(name)
        .shard_id("shardId-000000000000")
        .shard_iterator_type(ShardIteratorType::AtTimestamp)
        .timestamp(at)
        .send()
        .await
        .expect("GetShardIterator AT_TIMESTAMP")
        .shard_iterator()
        .expect("an iterator")
        .to_string()
}

/// A record's arrival time to the millisecond. The SDK parses the JSON number of seconds as a
/// float, so `.104` can come back as `.103999…`: round rather than truncate.
fn arrival_millis(record: &Record) -> i64 {
    let nanos = record
        .approximate_arrival_timestamp()
        .expect("an arrival timestamp")
        .as_nanos();
    i64::try_from((nanos + 500_000).div_euclid(1_000_000)).expect("milliseconds fit i64")
}

fn now_millis() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("a clock after 1970");
    i64::try_from(since.as_millis()).expect("milliseconds fit i64")
}

#[tokio::test]
async fn every_shard_iterator_type_starts_where_it_should() {
    let server = ServerProcess::start(Throttle::Off).await;
    let client = server.client().await;
    create_stream(&client, "positions", 1).await;
    let shard = "shardId-000000000000";

    let mut sequences = Vec::new();
    for i in 0..10 {
        sequences.push(put(&client, "positions", &format!("early-{i}")).await);
    }
    let early: Vec<String> = (0..10).map(|i| format!("early-{i}")).collect();

    // TRIM_HORIZON: everything.
    let from_start = iterator(&client, "positions", shard, ShardIteratorType::TrimHorizon).await;
    let records = read_at_least(&client, from_start, 10).await;
    assert_eq!(payloads(&records), early);
    assert_increasing(&records);

    // AT_SEQUENCE_NUMBER includes the record, AFTER_SEQUENCE_NUMBER starts past it.
    let at = iterator_at(
        &client,
        "positions",
        ShardIteratorType::AtSequenceNumber,
        &sequences[3],
    )
    .await;
    assert_eq!(payloads(&read_at_least(&client, at, 7).await), early[3..]);
    let after = iterator_at(
        &client,
        "positions",
        ShardIteratorType::AfterSequenceNumber,
        &sequences[3],
    )
    .await;
    assert_eq!(
        payloads(&read_at_least(&client, after, 6).await),
        early[4..]
    );
    let after_last = iterator_at(
        &client,
        "positions",
        ShardIteratorType::AfterSequenceNumber,
        &sequences[9],
    )
    .await;

    // LATEST: nothing of the past, then what comes next.
    let latest = iterator(&client, "positions", shard, ShardIteratorType::Latest).await;
    let answer = client
        .get_records()
        .shard_iterator(&latest)
        .send()
        .await
        .expect("GetRecords at LATEST");
    assert!(answer.records().is_empty(), "{:?}", answer.records());
    let latest = answer
        .next_shard_iterator()
        .expect("an open shard has a next iterator")
        .to_string();

    // AT_TIMESTAMP: a moment after every early record arrived and before any later one does.
    let last_arrival = arrival_millis(&records[9]);
    let boundary = last_arrival + 1;
    wait_for("the clock to pass the last early arrival", || async {
        (now_millis() > boundary).then_some(())
    })
    .await;

    let mut later = Vec::new();
    for i in 0..3 {
        later.push(format!("later-{i}"));
        put(&client, "positions", &later[i]).await;
    }
    assert_eq!(payloads(&read_at_least(&client, latest, 3).await), later);
    assert_eq!(
        payloads(&read_at_least(&client, after_last, 3).await),
        later
    );
    let at_boundary = iterator_at_time(&client, "positions", DateTime::from_millis(boundary)).await;
    let records = read_at_least(&client, at_boundary, 3).await;
    assert_eq!(payloads(&records), later);
    for record in &records {
        let arrival = arrival_millis(record);
        assert!(arrival >= boundary, "{arrival} < {boundary}");
    }
    // A timestamp before the stream existed reads from the start.
    let long_ago =
        DateTime::from_millis(last_arrival - Duration::from_secs(3600).as_millis() as i64);
    let all = read_at_least(
        &client,
        iterator_at_time(&client, "positions", long_ago).await,
        13,
    )
    .await;
    assert_eq!(payloads(&all[..10]), early);
    assert_eq!(payloads(&all[10..]), later);
}

#[tokio::test]
async fn get_records_honours_limit_and_returns_empty_pages_at_the_tip() {
    let server = ServerProcess::start(Throttle::Off).await;
    let client = server.client().await;
    create_stream(&client, "limited", 1).await;
    for i in 0..5 {
        put(&client, "limited", &format!("r{i}")).await;
    }
    let start = iterator(
        &client,
        "limited",
        "shardId-000000000000",
        ShardIteratorType::TrimHorizon,
    )
    .await;
    let page = client
        .get_records()
        .shard_iterator(start)
        .limit(2)
        .send()
        .await
        .expect("GetRecords with a limit");
    assert_eq!(payloads(page.records()), ["r0", "r1"]);
    let next = page.next_shard_iterator().expect("a next iterator");
    let rest = read_at_least(&client, next.to_string(), 3).await;
    assert_eq!(payloads(&rest), ["r2", "r3", "r4"]);

    let tip = client
        .get_records()
        .shard_iterator(
            iterator(
                &client,
                "limited",
                "shardId-000000000000",
                ShardIteratorType::Latest,
            )
            .await,
        )
        .send()
        .await
        .expect("GetRecords at the tip");
    assert!(tip.records().is_empty());
    assert_eq!(tip.millis_behind_latest(), Some(0));
    assert!(tip.next_shard_iterator().is_some());
}
