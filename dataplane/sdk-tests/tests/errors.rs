//! Errors as the AWS SDK sees them: validation of records and names, throttling on a server with
//! the default limits, and bad or expired shard iterators.

mod common;

use std::time::{Duration, Instant};

use aws_sdk_kinesis::error::ProvideErrorMetadata;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType};
use common::{PATIENCE, ServerProcess, Throttle, create_stream, iterator, wait_for};

const MIB: usize = 1 << 20;

#[tokio::test]
async fn a_record_over_1_mib_is_a_validation_error() {
    let server = ServerProcess::start(Throttle::Off).await;
    let client = server.client().await;
    create_stream(&client, "big", 1).await;

    let err = client
        .put_record()
        .stream_name("big")
        .partition_key("k")
        .data(Blob::new(vec![7u8; MIB + 1]))
        .send()
        .await
        .expect_err("PutRecord of 1 MiB + 1 byte fails")
        .into_service_error();
    assert_eq!(err.code(), Some("ValidationException"), "{err:?}");
    assert!(err.message().is_some(), "{err:?}");

    let oversized = PutRecordsRequestEntry::builder()
        .partition_key("k")
        .data(Blob::new(vec![7u8; MIB + 1]))
        .build()
        .expect("a complete entry");
    let err = client
        .put_records()
        .stream_name("big")
        .records(oversized)
        .send()
        .await
        .expect_err("PutRecords with an entry of 1 MiB + 1 byte fails")
        .into_service_error();
    assert_eq!(err.code(), Some("ValidationException"), "{err:?}");

    // Just under the limit is fine, and nothing of the refused records was stored.
    let put = client
        .put_record()
        .stream_name("big")
        .partition_key("k")
        .data(Blob::new(vec![9u8; MIB - 1024]))
        .send()
        .await
        .expect("PutRecord just under 1 MiB");
    let start = iterator(
        &client,
        "big",
        put.shard_id(),
        ShardIteratorType::TrimHorizon,
    )
    .await;
    let records = common::read_at_least(&client, start, 1).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].data().as_ref(), vec![9u8; MIB - 1024].as_slice());
}

#[tokio::test]
async fn invalid_stream_names_are_validation_errors() {
    let server = ServerProcess::start(Throttle::Off).await;
    let client = server.client().await;

    for name in ["has space", "slash/inside", "", &"x".repeat(129)] {
        let err = client
            .create_stream()
            .stream_name(name)
            .shard_count(1)
            .send()
            .await
            .expect_err("CreateStream with an invalid name fails")
            .into_service_error();
        assert!(err.is_validation_exception(), "name {name:?}: {err:?}");
    }

    let err = client
        .describe_stream_summary()
        .stream_name("no*stars")
        .send()
        .await
        .expect_err("DescribeStreamSummary with an invalid name fails")
        .into_service_error();
    assert_eq!(err.code(), Some("ValidationException"), "{err:?}");

    // The longest valid name is accepted.
    create_stream(&client, &"n".repeat(128), 1).await;
}

#[tokio::test]
async fn writing_past_1_mib_per_second_on_one_shard_is_throttled() {
    let server = ServerProcess::start(Throttle::On).await;
    let client = server.client().await;
    create_stream(&client, "hot", 1).await;

    // 128 KiB a record: the shard's 1 MiB/s is gone after a handful. Bounded in count and time.
    let payload = Blob::new(vec![1u8; 128 << 10]);
    let deadline = Instant::now() + PATIENCE;
    let mut accepted = 0;
    let err = loop {
        assert!(
            accepted < 400 && Instant::now() < deadline,
            "{accepted} records of 128 KiB were accepted without throttling"
        );
        match client
            .put_record()
            .stream_name("hot")
            .partition_key("same")
            .data(payload.clone())
            .send()
            .await
        {
            Ok(_) => accepted += 1,
            Err(err) => break err.into_service_error(),
        }
    };
    assert!(
        err.is_provisioned_throughput_exceeded_exception(),
        "{err:?}"
    );
    assert!(accepted >= 1, "even the first record was throttled");
}

#[tokio::test]
async fn garbage_shard_iterators_are_invalid_arguments() {
    let server = ServerProcess::start(Throttle::Off).await;
    let client = server.client().await;
    create_stream(&client, "iterators", 1).await;

    for garbage in [
        "garbage",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        let err = client
            .get_records()
            .shard_iterator(garbage)
            .send()
            .await
            .expect_err("GetRecords with a garbage iterator fails")
            .into_service_error();
        assert!(err.is_invalid_argument_exception(), "{garbage}: {err:?}");
    }

    // A real iterator with one character changed is no longer valid.
    let real = iterator(
        &client,
        "iterators",
        "shardId-000000000000",
        ShardIteratorType::TrimHorizon,
    )
    .await;
    let mut tampered: Vec<char> = real.chars().collect();
    let middle = tampered.len() / 2;
    tampered[middle] = if tampered[middle] == 'A' { 'B' } else { 'A' };
    let tampered: String = tampered.into_iter().collect();
    let err = client
        .get_records()
        .shard_iterator(tampered)
        .send()
        .await
        .expect_err("GetRecords with a tampered iterator fails")
        .into_service_error();
    assert!(err.is_invalid_argument_exception(), "{err:?}");

    let err = client
        .get_shard_iterator()
        .stream_name("iterators")
        .shard_id("shardId-000000000009")
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .expect_err("GetShardIterator of a missing shard fails")
        .into_service_error();
    assert!(err.is_resource_not_found_exception(), "{err:?}");
}

#[tokio::test]
async fn an_iterator_past_its_lifetime_is_expired() {
    let server = ServerProcess::start_with(Throttle::Off, &["--iterator-ttl-secs", "1"]).await;
    let client = server.client().await;
    create_stream(&client, "ageing", 1).await;
    let old = iterator(
        &client,
        "ageing",
        "shardId-000000000000",
        ShardIteratorType::TrimHorizon,
    )
    .await;
    let issued = Instant::now();

    let err = wait_for("the iterator to expire", || async {
        match client.get_records().shard_iterator(&old).send().await {
            Ok(_) => None,
            Err(err) => Some(err.into_service_error()),
        }
    })
    .await;
    assert!(err.is_expired_iterator_exception(), "{err:?}");
    assert!(
        issued.elapsed() >= Duration::from_millis(900),
        "expired after only {:?}",
        issued.elapsed()
    );
}
