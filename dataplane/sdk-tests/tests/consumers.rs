//! Enhanced fan-out through the AWS SDK: consumer registration and SubscribeToShard over the
//! event stream, from TRIM_HORIZON through records put after subscribing and across a split.

mod common;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::operation::subscribe_to_shard::SubscribeToShardOutput;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{
    ConsumerStatus, Record, ShardIteratorType, StartingPosition, SubscribeToShardEvent,
    SubscribeToShardEventStream,
};
use common::{
    ServerProcess, Throttle, big, create_stream, payloads, stream_arn, wait_active, wait_for,
    within,
};

/// Registers a consumer and waits (bounded) until it is ACTIVE; returns its ARN.
async fn register_active(client: &Client, stream: &str, name: &str) -> String {
    let consumer = client
        .register_stream_consumer()
        .stream_arn(stream_arn(stream))
        .consumer_name(name)
        .send()
        .await
        .expect("RegisterStreamConsumer")
        .consumer
        .expect("the registered consumer");
    assert_eq!(consumer.consumer_name(), name);
    let arn = consumer.consumer_arn().to_string();
    wait_for(&format!("consumer {name} to be ACTIVE"), || async {
        let description = client
            .describe_stream_consumer()
            .consumer_arn(&arn)
            .send()
            .await
            .expect("DescribeStreamConsumer")
            .consumer_description
            .expect("a consumer description");
        (description.consumer_status() == &ConsumerStatus::Active).then_some(())
    })
    .await;
    arn
}

async fn put(client: &Client, stream: &str, data: &str) -> String {
    client
        .put_record()
        .stream_name(stream)
        .partition_key("p")
        .data(Blob::new(data))
        .send()
        .await
        .expect("PutRecord")
        .sequence_number()
        .to_string()
}

fn after(sequence_number: &str) -> StartingPosition {
    StartingPosition::builder()
        .r#type(ShardIteratorType::AfterSequenceNumber)
        .sequence_number(sequence_number)
        .build()
        .expect("a complete starting position")
}

fn from_trim_horizon() -> StartingPosition {
    StartingPosition::builder()
        .r#type(ShardIteratorType::TrimHorizon)
        .build()
        .expect("a complete starting position")
}

async fn subscribe(client: &Client, consumer: &str, shard: &str) -> SubscribeToShardOutput {
    subscribe_at(client, consumer, shard, from_trim_horizon()).await
}

async fn subscribe_at(
    client: &Client,
    consumer: &str,
    shard: &str,
    position: StartingPosition,
) -> SubscribeToShardOutput {
    within(
        "SubscribeToShard to answer",
        client
            .subscribe_to_shard()
            .consumer_arn(consumer)
            .shard_id(shard)
            .starting_position(position)
            .send(),
    )
    .await
    .expect("SubscribeToShard")
}

/// Receives events until `count` records arrived (bounded); checks each event's continuation
/// sequence number is its last record's.
async fn receive(subscription: &mut SubscribeToShardOutput, count: usize) -> Vec<Record> {
    let mut received: Vec<Record> = Vec::new();
    while received.len() < count {
        let event = next_event(subscription).await;
        received.extend(event.records().iter().cloned());
        if let Some(last) = event.records().last() {
            // The continuation point is the last record delivered.
            assert_eq!(
                event.continuation_sequence_number(),
                last.sequence_number(),
                "{event:?}"
            );
        } else {
            big(event.continuation_sequence_number());
        }
        assert!(event.millis_behind_latest() >= 0, "{event:?}");
        assert!(event.child_shards().is_empty(), "{event:?}");
    }
    received
}

/// The next SubscribeToShardEvent (bounded); panics on anything else, including the end.
async fn next_event(subscription: &mut SubscribeToShardOutput) -> SubscribeToShardEvent {
    let event = within(
        "the next SubscribeToShard event",
        subscription.event_stream.recv(),
    )
    .await
    .unwrap_or_else(|err| panic!("the event stream failed: {err:?}"))
    .expect("the event stream ended early");
    match event {
        SubscribeToShardEventStream::SubscribeToShardEvent(event) => event,
        other => panic!("unexpected event {other:?}"),
    }
}

#[tokio::test]
async fn consumers_register_describe_list_and_deregister() {
    let server = ServerProcess::start(Throttle::Off).await;
    let client = server.client().await;
    create_stream(&client, "fanout", 1).await;

    let first = register_active(&client, "fanout", "first").await;
    let second = register_active(&client, "fanout", "second").await;
    // ARN: <stream ARN>/consumer/<name>:<creation epoch seconds>.
    let prefix = format!("{}/consumer/first:", stream_arn("fanout"));
    let epoch = first
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{first} does not start with {prefix}"));
    assert!(epoch.parse::<u64>().is_ok(), "{first}");

    let description = client
        .describe_stream_consumer()
        .stream_arn(stream_arn("fanout"))
        .consumer_name("first")
        .send()
        .await
        .expect("DescribeStreamConsumer by stream ARN and name")
        .consumer_description
        .expect("a consumer description");
    assert_eq!(description.consumer_arn(), first);
    assert_eq!(description.consumer_name(), "first");
    assert_eq!(description.stream_arn(), stream_arn("fanout"));
    assert_eq!(description.consumer_status(), &ConsumerStatus::Active);

    let listed = client
        .list_stream_consumers()
        .stream_arn(stream_arn("fanout"))
        .send()
        .await
        .expect("ListStreamConsumers");
    let mut arns: Vec<&str> = listed
        .consumers()
        .iter()
        .map(|consumer| consumer.consumer_arn())
        .collect();
    arns.sort();
    let mut expected = vec![first.as_str(), second.as_str()];
    expected.sort();
    assert_eq!(arns, expected);

    let err = client
        .register_stream_consumer()
        .stream_arn(stream_arn("fanout"))
        .consumer_name("first")
        .send()
        .await
        .expect_err("registering the same name twice fails")
        .into_service_error();
    assert!(err.is_resource_in_use_exception(), "{err:?}");

    client
        .deregister_stream_consumer()
        .consumer_arn(&first)
        .send()
        .await
        .expect("DeregisterStreamConsumer");
    wait_for("the deregistered consumer to disappear", || async {
        match client
            .describe_stream_consumer()
            .consumer_arn(&first)
            .send()
            .await
        {
            Ok(_) => None,
            Err(err) => {
                let err = err.into_service_error();
                assert!(err.is_resource_not_found_exception(), "{err:?}");
                Some(())
            }
        }
    })
    .await;
    let listed = client
        .list_stream_consumers()
        .stream_arn(stream_arn("fanout"))
        .send()
        .await
        .expect("ListStreamConsumers after deregistering");
    let arns: Vec<&str> = listed
        .consumers()
        .iter()
        .map(|consumer| consumer.consumer_arn())
        .collect();
    assert_eq!(arns, [second.as_str()]);
}

#[tokio::test]
async fn subscribe_to_shard_delivers_old_and_new_records_in_order() {
    let server = ServerProcess::start(Throttle::Off).await;
    let client = server.client().await;
    create_stream(&client, "live", 1).await;
    let consumer = register_active(&client, "live", "reader").await;
    let shard = "shardId-000000000000";

    let mut expected = Vec::new();
    let mut sequences = Vec::new();
    for i in 0..5 {
        expected.push(format!("before-{i}"));
        sequences.push(put(&client, "live", &expected[i]).await);
    }

    let mut subscription = subscribe(&client, &consumer, shard).await;

    // A second subscription of the same consumer and shard within 5 seconds is refused.
    let err = client
        .subscribe_to_shard()
        .consumer_arn(&consumer)
        .shard_id(shard)
        .starting_position(from_trim_horizon())
        .send()
        .await
        .expect_err("a second SubscribeToShard within 5 s fails")
        .into_service_error();
    assert!(err.is_resource_in_use_exception(), "{err:?}");

    for i in 0..5 {
        expected.push(format!("after-{i}"));
        sequences.push(put(&client, "live", &expected[5 + i]).await);
    }

    let received = receive(&mut subscription, expected.len()).await;
    assert_eq!(payloads(&received), expected);
    let received_sequences: Vec<&str> = received.iter().map(|r| r.sequence_number()).collect();
    assert_eq!(received_sequences, sequences);
    for record in &received {
        assert_eq!(record.partition_key(), Some("p"));
        assert!(record.approximate_arrival_timestamp().is_some());
    }
}

#[tokio::test]
async fn a_subscription_resumes_after_a_continuation_sequence_number() {
    let server = ServerProcess::start(Throttle::Off).await;
    let client = server.client().await;
    create_stream(&client, "resume", 1).await;
    let first = register_active(&client, "resume", "first").await;
    let second = register_active(&client, "resume", "second").await;
    let shard = "shardId-000000000000";
    let mut expected = Vec::new();
    for i in 0..6 {
        expected.push(format!("r{i}"));
        put(&client, "resume", &expected[i]).await;
    }

    let mut subscription = subscribe(&client, &first, shard).await;
    let received = receive(&mut subscription, 6).await;
    assert_eq!(payloads(&received), expected);
    let resume_point = received[2].sequence_number();

    // Another consumer picks up after the third record, as a worker taking over a lease does.
    let mut resumed = subscribe_at(&client, &second, shard, after(resume_point)).await;
    assert_eq!(payloads(&receive(&mut resumed, 3).await), expected[3..]);
}

#[tokio::test]
async fn subscription_ends_with_child_shards_after_a_split() {
    let server = ServerProcess::start(Throttle::Off).await;
    let client = server.client().await;
    create_stream(&client, "splitting", 1).await;
    let consumer = register_active(&client, "splitting", "reader").await;
    let parent = "shardId-000000000000";
    let last = put(&client, "splitting", "only").await;

    let mut subscription = subscribe(&client, &consumer, parent).await;
    client
        .split_shard()
        .stream_name("splitting")
        .shard_to_split(parent)
        .new_starting_hash_key((1u128 << 127).to_string())
        .send()
        .await
        .expect("SplitShard");
    wait_active(&client, "splitting").await;

    let mut received = Vec::new();
    let children = loop {
        let event = next_event(&mut subscription).await;
        received.extend(event.records().iter().cloned());
        if !event.child_shards().is_empty() {
            break event.child_shards().to_vec();
        }
    };
    assert_eq!(payloads(&received), ["only"]);
    assert_eq!(received[0].sequence_number(), last);
    let mut ids: Vec<&str> = children.iter().map(|child| child.shard_id()).collect();
    ids.sort();
    assert_eq!(ids, ["shardId-000000000001", "shardId-000000000002"]);
    for child in &children {
        assert_eq!(child.parent_shards(), [parent]);
    }
    // After the children are named the subscription is over.
    let end = within(
        "the end of the event stream",
        subscription.event_stream.recv(),
    )
    .await;
    assert!(matches!(end, Ok(None)), "{end:?}");
}
