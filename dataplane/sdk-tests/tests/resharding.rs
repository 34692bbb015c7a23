//! Resharding through the AWS SDK: SplitShard, MergeShards and UpdateShardCount, with parents read
//! to their end, child shards named at that end, and lineage followed without losing a record.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{Record, ScalingType, Shard, ShardIteratorType};
use common::{
    Deadline, ServerProcess, Throttle, assert_increasing, big, create_stream, is_open, iterator,
    list_all_shards, open_shards, payloads, read_to_end, wait_active,
};

/// Puts a record with an explicit hash key; returns (shard id, sequence number).
async fn put_at(client: &Client, name: &str, hash: u128, data: &str) -> (String, String) {
    let put = client
        .put_record()
        .stream_name(name)
        .partition_key("any")
        .explicit_hash_key(hash.to_string())
        .data(Blob::new(data))
        .send()
        .await
        .expect("PutRecord");
    (
        put.shard_id().to_string(),
        put.sequence_number().to_string(),
    )
}

fn shard<'a>(shards: &'a [Shard], id: &str) -> &'a Shard {
    shards
        .iter()
        .find(|shard| shard.shard_id() == id)
        .unwrap_or_else(|| panic!("no shard {id} in {shards:?}"))
}

fn hash_range(shard: &Shard) -> (u128, u128) {
    let range = shard.hash_key_range().expect("hash key range");
    (big(range.starting_hash_key()), big(range.ending_hash_key()))
}

/// Asserts the open shards cover the whole hash space exactly once.
fn assert_open_shards_tile_the_hash_space(shards: &[Shard]) {
    let mut ranges: Vec<(u128, u128)> = shards
        .iter()
        .filter(|shard| is_open(shard))
        .map(hash_range)
        .collect();
    ranges.sort();
    assert_eq!(ranges.first().map(|r| r.0), Some(0), "{ranges:?}");
    assert_eq!(ranges.last().map(|r| r.1), Some(u128::MAX), "{ranges:?}");
    for pair in ranges.windows(2) {
        assert_eq!(pair[0].1 + 1, pair[1].0, "gap or overlap in {ranges:?}");
    }
}

#[tokio::test]
async fn split_shard_closes_the_parent_and_opens_two_children() {
    let server = ServerProcess::start(Throttle::Off).await;
    let client = server.client().await;
    create_stream(&client, "split", 1).await;
    let mut before = Vec::new();
    for i in 0..5u128 {
        let data = format!("before-{i}");
        put_at(&client, "split", i * (u128::MAX / 5), &data).await;
        before.push(data);
    }

    let middle = 1u128 << 127;
    client
        .split_shard()
        .stream_name("split")
        .shard_to_split("shardId-000000000000")
        .new_starting_hash_key(middle.to_string())
        .send()
        .await
        .expect("SplitShard");
    wait_active(&client, "split").await;

    let shards = list_all_shards(&client, "split").await;
    assert_eq!(shards.len(), 3, "{shards:?}");
    let parent = shard(&shards, "shardId-000000000000");
    assert!(!is_open(parent), "the parent is still open: {parent:?}");
    let low = shard(&shards, "shardId-000000000001");
    let high = shard(&shards, "shardId-000000000002");
    assert_eq!(hash_range(low), (0, middle - 1));
    assert_eq!(hash_range(high), (middle, u128::MAX));
    for child in [low, high] {
        assert!(is_open(child));
        assert_eq!(child.parent_shard_id(), Some("shardId-000000000000"));
        assert_eq!(child.adjacent_parent_shard_id(), None);
    }

    // The parent reads to its end, which names both children and their single parent.
    let closed = read_to_end(&client, "split", "shardId-000000000000").await;
    assert_eq!(payloads(&closed.records), before);
    let ending = parent
        .sequence_number_range()
        .and_then(|range| range.ending_sequence_number())
        .expect("an ending sequence number");
    let last = closed.records.last().expect("records").sequence_number();
    assert!(
        big(last) <= big(ending),
        "last {last} after the end {ending}"
    );
    let children: BTreeMap<&str, Vec<String>> = closed
        .children
        .iter()
        .map(|child| (child.shard_id(), child.parent_shards().to_vec()))
        .collect();
    let parents = vec!["shardId-000000000000".to_string()];
    assert_eq!(
        children,
        BTreeMap::from([
            ("shardId-000000000001", parents.clone()),
            ("shardId-000000000002", parents)
        ])
    );
    for child in &closed.children {
        let listed = shard(&shards, child.shard_id());
        let range = child.hash_key_range().expect("the child's hash range");
        assert_eq!(
            (big(range.starting_hash_key()), big(range.ending_hash_key())),
            hash_range(listed)
        );
    }

    // The children take the writes now.
    let (to_low, _) = put_at(&client, "split", 0, "low").await;
    let (to_high, _) = put_at(&client, "split", u128::MAX, "high").await;
    assert_eq!(to_low, "shardId-000000000001");
    assert_eq!(to_high, "shardId-000000000002");
    for (id, data) in [
        ("shardId-000000000001", "low"),
        ("shardId-000000000002", "high"),
    ] {
        let start = iterator(&client, "split", id, ShardIteratorType::TrimHorizon).await;
        let records = common::read_at_least(&client, start, 1).await;
        assert_eq!(payloads(&records), [data]);
    }
}

#[tokio::test]
async fn merge_shards_closes_both_parents_into_one_child() {
    let server = ServerProcess::start(Throttle::Off).await;
    let client = server.client().await;
    create_stream(&client, "merge", 2).await;
    put_at(&client, "merge", 0, "left").await;
    put_at(&client, "merge", u128::MAX, "right").await;

    client
        .merge_shards()
        .stream_name("merge")
        .shard_to_merge("shardId-000000000000")
        .adjacent_shard_to_merge("shardId-000000000001")
        .send()
        .await
        .expect("MergeShards");
    wait_active(&client, "merge").await;

    let shards = list_all_shards(&client, "merge").await;
    assert_eq!(shards.len(), 3, "{shards:?}");
    let child = shard(&shards, "shardId-000000000002");
    assert!(is_open(child));
    assert_eq!(hash_range(child), (0, u128::MAX));
    assert_eq!(child.parent_shard_id(), Some("shardId-000000000000"));
    assert_eq!(
        child.adjacent_parent_shard_id(),
        Some("shardId-000000000001")
    );

    for (parent, data) in [
        ("shardId-000000000000", "left"),
        ("shardId-000000000001", "right"),
    ] {
        assert!(!is_open(shard(&shards, parent)));
        let closed = read_to_end(&client, "merge", parent).await;
        assert_eq!(payloads(&closed.records), [data]);
        assert_eq!(closed.children.len(), 1, "{:?}", closed.children);
        let named = &closed.children[0];
        assert_eq!(named.shard_id(), "shardId-000000000002");
        let named_parents: BTreeSet<&str> =
            named.parent_shards().iter().map(String::as_str).collect();
        assert_eq!(
            named_parents,
            BTreeSet::from(["shardId-000000000000", "shardId-000000000001"])
        );
    }

    let (to, _) = put_at(&client, "merge", 1 << 100, "merged").await;
    assert_eq!(to, "shardId-000000000002");
}

/// Reads every shard of the stream, each only after all its parents were read to their end (the
/// order a KCL-style consumer follows); returns the records in that order.
async fn read_following_lineage(client: &Client, name: &str) -> Vec<Record> {
    let shards = list_all_shards(client, name).await;
    let ids: BTreeSet<&str> = shards.iter().map(|shard| shard.shard_id()).collect();
    let mut finished: BTreeSet<String> = BTreeSet::new();
    let mut records = Vec::new();
    while finished.len() < shards.len() {
        let ready = shards
            .iter()
            .find(|shard| {
                !finished.contains(shard.shard_id())
                    && [shard.parent_shard_id(), shard.adjacent_parent_shard_id()]
                        .into_iter()
                        .flatten()
                        .filter(|parent| ids.contains(parent))
                        .all(|parent| finished.contains(parent))
            })
            .expect("some shard has all its parents read");
        let id = ready.shard_id();
        let mut shard_records = if is_open(ready) {
            read_open_shard(client, name, id).await
        } else {
            let closed = read_to_end(client, name, id).await;
            // The end of a parent names exactly the shards listed as its children.
            let named: BTreeSet<&str> = closed.children.iter().map(|c| c.shard_id()).collect();
            let listed: BTreeSet<&str> = shards
                .iter()
                .filter(|s| {
                    s.parent_shard_id() == Some(id) || s.adjacent_parent_shard_id() == Some(id)
                })
                .map(|s| s.shard_id())
                .collect();
            assert_eq!(named, listed, "children named at the end of {id}");
            for child in &closed.children {
                assert!(
                    child.parent_shards().iter().any(|p| p == id),
                    "{child:?} does not name its parent {id}"
                );
            }
            closed.records
        };
        assert_increasing(&shard_records);
        records.append(&mut shard_records);
        finished.insert(id.to_string());
    }
    records
}

/// Reads an open shard from TRIM_HORIZON until a page comes back empty at the tip.
async fn read_open_shard(client: &Client, name: &str, shard: &str) -> Vec<Record> {
    let deadline = Deadline::new(format!("the tip of shard {shard}"));
    let mut next = iterator(client, name, shard, ShardIteratorType::TrimHorizon).await;
    let mut records = Vec::new();
    loop {
        let page = client
            .get_records()
            .shard_iterator(&next)
            .send()
            .await
            .expect("GetRecords");
        records.extend(page.records().iter().cloned());
        if page.records().is_empty() && page.millis_behind_latest() == Some(0) {
            return records;
        }
        next = page
            .next_shard_iterator()
            .expect("an open shard has a next iterator")
            .to_string();
        deadline.pause().await;
    }
}

/// Puts 20 records for 10 partition keys in `phase`; returns (key, data) in put order.
async fn put_phase(client: &Client, name: &str, phase: u32) -> Vec<(String, String)> {
    let mut put = Vec::new();
    for i in 0..20 {
        let key = format!("key-{}", i % 10);
        let data = format!("phase{phase}-{i}");
        client
            .put_record()
            .stream_name(name)
            .partition_key(&key)
            .data(Blob::new(data.clone()))
            .send()
            .await
            .expect("PutRecord");
        put.push((key, data));
    }
    put
}

async fn update_shard_count(client: &Client, name: &str, target: i32) {
    let answer = client
        .update_shard_count()
        .stream_name(name)
        .target_shard_count(target)
        .scaling_type(ScalingType::UniformScaling)
        .send()
        .await
        .expect("UpdateShardCount");
    assert_eq!(answer.target_shard_count(), Some(target));
    wait_active(client, name).await;
    let open = open_shards(client, name).await;
    assert_eq!(open.len(), target as usize, "{open:?}");
    assert_open_shards_tile_the_hash_space(&open);
}

#[tokio::test]
async fn update_shard_count_up_and_down_keeps_every_record_in_key_order() {
    let server = ServerProcess::start(Throttle::Off).await;
    let client = server.client().await;
    create_stream(&client, "scaled", 2).await;

    let mut written = put_phase(&client, "scaled", 1).await;
    update_shard_count(&client, "scaled", 4).await;
    written.extend(put_phase(&client, "scaled", 2).await);
    update_shard_count(&client, "scaled", 2).await;
    written.extend(put_phase(&client, "scaled", 3).await);

    let summary = client
        .describe_stream_summary()
        .stream_name("scaled")
        .send()
        .await
        .expect("DescribeStreamSummary")
        .stream_description_summary
        .expect("a summary");
    assert_eq!(summary.open_shard_count(), 2);

    // Reading parents before children yields every record once, each key's in put order.
    let read = read_following_lineage(&client, "scaled").await;
    let mut by_key_read: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for record in &read {
        by_key_read
            .entry(record.partition_key().expect("a partition key").to_string())
            .or_default()
            .push(String::from_utf8(record.data().as_ref().to_vec()).expect("UTF-8"));
    }
    let mut by_key_written: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (key, data) in written {
        by_key_written.entry(key).or_default().push(data);
    }
    assert_eq!(read.len(), 60);
    assert_eq!(by_key_read, by_key_written);
}
