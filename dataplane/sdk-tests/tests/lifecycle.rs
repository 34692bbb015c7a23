//! Stream lifecycle through the AWS SDK: create, describe, list (with paging), delete, and the
//! errors for a missing or duplicate stream.

mod common;

use aws_sdk_kinesis::operation::RequestId;
use aws_sdk_kinesis::types::{StreamMode, StreamStatus};
use common::{ServerProcess, Throttle, big, create_stream, list_all_shards, stream_arn, wait_for};

#[tokio::test]
async fn create_describe_list_shards_and_delete() {
    let server = ServerProcess::start(Throttle::Off).await;
    let client = server.client().await;
    create_stream(&client, "orders", 2).await;

    let answer = client
        .describe_stream()
        .stream_name("orders")
        .send()
        .await
        .expect("DescribeStream");
    // Every answer carries x-amzn-RequestId, which the SDK surfaces for support cases.
    assert!(
        answer.request_id().is_some_and(|id| !id.is_empty()),
        "{answer:?}"
    );
    let description = answer.stream_description.expect("a stream description");
    assert_eq!(description.stream_name(), "orders");
    assert_eq!(description.stream_arn(), stream_arn("orders"));
    assert_eq!(description.stream_status(), &StreamStatus::Active);
    assert!(!description.has_more_shards());
    assert_eq!(description.retention_period_hours(), 24);
    let ids: Vec<&str> = description.shards().iter().map(|s| s.shard_id()).collect();
    assert_eq!(ids, ["shardId-000000000000", "shardId-000000000001"]);
    // The two shards split the hash space evenly and cover all of it, without gaps.
    let ranges: Vec<(u128, u128)> = description
        .shards()
        .iter()
        .map(|shard| {
            let range = shard.hash_key_range().expect("hash key range");
            (big(range.starting_hash_key()), big(range.ending_hash_key()))
        })
        .collect();
    assert_eq!(ranges[0].0, 0);
    assert_eq!(ranges[0].1 + 1, ranges[1].0);
    assert_eq!(ranges[1].1, u128::MAX);
    assert!(ranges[0].1.abs_diff(u128::MAX / 2) <= 1, "{ranges:?}");
    for shard in description.shards() {
        let range = shard
            .sequence_number_range()
            .expect("sequence number range");
        big(range.starting_sequence_number());
        assert_eq!(range.ending_sequence_number(), None);
        assert_eq!(shard.parent_shard_id(), None);
    }

    // DescribeStream pages shards with Limit and ExclusiveStartShardId.
    let page = client
        .describe_stream()
        .stream_name("orders")
        .limit(1)
        .send()
        .await
        .expect("DescribeStream with a limit")
        .stream_description
        .expect("a stream description");
    assert!(page.has_more_shards());
    assert_eq!(page.shards().len(), 1);
    assert_eq!(page.shards()[0].shard_id(), "shardId-000000000000");
    let page = client
        .describe_stream()
        .stream_name("orders")
        .exclusive_start_shard_id("shardId-000000000000")
        .send()
        .await
        .expect("DescribeStream after the first shard")
        .stream_description
        .expect("a stream description");
    assert!(!page.has_more_shards());
    let ids: Vec<&str> = page.shards().iter().map(|s| s.shard_id()).collect();
    assert_eq!(ids, ["shardId-000000000001"]);

    let summary = client
        .describe_stream_summary()
        .stream_arn(stream_arn("orders"))
        .send()
        .await
        .expect("DescribeStreamSummary by ARN")
        .stream_description_summary
        .expect("a summary");
    assert_eq!(summary.stream_name(), "orders");
    assert_eq!(summary.stream_arn(), stream_arn("orders"));
    assert_eq!(summary.stream_status(), &StreamStatus::Active);
    assert_eq!(summary.open_shard_count(), 2);
    assert_eq!(summary.retention_period_hours(), 24);
    assert_eq!(
        summary
            .stream_mode_details()
            .map(|details| details.stream_mode().clone()),
        Some(StreamMode::Provisioned)
    );

    // ListShards, one shard a page, ends with the same two shards.
    let first = client
        .list_shards()
        .stream_name("orders")
        .max_results(1)
        .send()
        .await
        .expect("ListShards page 1");
    assert_eq!(first.shards().len(), 1);
    let token = first.next_token().expect("a token for page 2").to_string();
    let second = client
        .list_shards()
        .next_token(token)
        .max_results(1)
        .send()
        .await
        .expect("ListShards page 2");
    assert_eq!(second.shards().len(), 1);
    assert_eq!(first.shards()[0].shard_id(), "shardId-000000000000");
    assert_eq!(second.shards()[0].shard_id(), "shardId-000000000001");
    if let Some(token) = second.next_token() {
        let third = client
            .list_shards()
            .next_token(token)
            .send()
            .await
            .expect("ListShards page 3");
        assert!(third.shards().is_empty());
    }
    assert_eq!(list_all_shards(&client, "orders").await.len(), 2);

    client
        .delete_stream()
        .stream_name("orders")
        .send()
        .await
        .expect("DeleteStream");
    wait_for("the deleted stream to disappear", || async {
        match client.describe_stream().stream_name("orders").send().await {
            Ok(_) => None,
            Err(err) => {
                let err = err.into_service_error();
                assert!(err.is_resource_not_found_exception(), "{err:?}");
                Some(())
            }
        }
    })
    .await;
    let names = client
        .list_streams()
        .send()
        .await
        .expect("ListStreams")
        .stream_names;
    assert!(!names.contains(&"orders".to_string()), "{names:?}");
}

#[tokio::test]
async fn list_streams_pages_through_every_stream() {
    let server = ServerProcess::start(Throttle::Off).await;
    let client = server.client().await;
    let mut expected: Vec<String> = (0..5).map(|i| format!("paged-{i}")).collect();
    for name in &expected {
        create_stream(&client, name, 1).await;
    }
    expected.sort();

    // Paging by NextToken.
    let mut seen = Vec::new();
    let mut answer = client
        .list_streams()
        .limit(2)
        .send()
        .await
        .expect("ListStreams");
    loop {
        assert!(answer.stream_names().len() <= 2, "{answer:?}");
        assert_eq!(answer.stream_names().len(), answer.stream_summaries().len());
        for (name, summary) in answer.stream_names().iter().zip(answer.stream_summaries()) {
            assert_eq!(summary.stream_name(), name);
            assert_eq!(summary.stream_arn(), stream_arn(name));
            assert_eq!(summary.stream_status(), &StreamStatus::Active);
        }
        seen.extend(answer.stream_names().iter().cloned());
        if !answer.has_more_streams() {
            break;
        }
        let token = answer
            .next_token()
            .expect("a NextToken while HasMoreStreams");
        answer = client
            .list_streams()
            .next_token(token)
            .limit(2)
            .send()
            .await
            .expect("ListStreams with a token");
    }
    assert_eq!(seen, expected);

    // Paging by ExclusiveStartStreamName, as older clients do.
    let rest = client
        .list_streams()
        .exclusive_start_stream_name("paged-1")
        .send()
        .await
        .expect("ListStreams after paged-1");
    assert_eq!(rest.stream_names(), &expected[2..]);
    assert!(!rest.has_more_streams());
}

#[tokio::test]
async fn missing_stream_is_resource_not_found() {
    let server = ServerProcess::start(Throttle::Off).await;
    let client = server.client().await;

    let err = client
        .describe_stream()
        .stream_name("nowhere")
        .send()
        .await
        .expect_err("DescribeStream of a missing stream fails")
        .into_service_error();
    assert!(err.is_resource_not_found_exception(), "{err:?}");
    assert!(err.request_id().is_some(), "{err:?}");
    assert!(
        err.meta().message().is_some_and(|m| m.contains("nowhere")),
        "the message should name the stream: {err:?}"
    );

    let err = client
        .describe_stream_summary()
        .stream_name("nowhere")
        .send()
        .await
        .expect_err("DescribeStreamSummary of a missing stream fails")
        .into_service_error();
    assert!(err.is_resource_not_found_exception(), "{err:?}");

    let err = client
        .list_shards()
        .stream_name("nowhere")
        .send()
        .await
        .expect_err("ListShards of a missing stream fails")
        .into_service_error();
    assert!(err.is_resource_not_found_exception(), "{err:?}");

    let err = client
        .delete_stream()
        .stream_name("nowhere")
        .send()
        .await
        .expect_err("DeleteStream of a missing stream fails")
        .into_service_error();
    assert!(err.is_resource_not_found_exception(), "{err:?}");
}

#[tokio::test]
async fn duplicate_create_is_resource_in_use() {
    let server = ServerProcess::start(Throttle::Off).await;
    let client = server.client().await;
    create_stream(&client, "twice", 1).await;

    let err = client
        .create_stream()
        .stream_name("twice")
        .shard_count(1)
        .send()
        .await
        .expect_err("a second CreateStream of the same name fails")
        .into_service_error();
    assert!(err.is_resource_in_use_exception(), "{err:?}");
    assert!(err.meta().message().is_some(), "{err:?}");
}
