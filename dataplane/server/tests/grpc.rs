//! The native gRPC API end to end: a real server on loopback, driven by the generated client.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use riffle_proto::v1;
use riffle_proto::v1::starting_position::Type;
use riffle_proto::v1::streams_client::StreamsClient;
use riffle_server::grpc;
use riffle_server::streams::{Catalog, StreamsConfig};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::Channel;
use tonic::{Code, Streaming};

/// Longest wait for anything the server should do promptly.
const PATIENCE: Duration = Duration::from_secs(30);

struct Server {
    client: StreamsClient<Channel>,
    catalog: Arc<Catalog>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), tonic::transport::Error>>>,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start() -> Server {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut config = StreamsConfig::new(dir.path().to_path_buf(), [7u8; 32]);
        config.limits.enabled = false;
        let catalog = Catalog::open(config).expect("catalog opens");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("local address");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(grpc::serve(catalog.clone(), listener, async {
            let _ = stopped.await;
        }));
        let client = StreamsClient::connect(format!("http://{address}"))
            .await
            .expect("client connects")
            .max_decoding_message_size(64 << 20);
        Server {
            client,
            catalog,
            stop: Some(stop),
            task: Some(task),
            _dir: dir,
        }
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            within(task)
                .await
                .expect("server task")
                .expect("server ends cleanly");
        }
    }
}

async fn within<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(PATIENCE, future)
        .await
        .expect("timed out waiting for the server")
}

fn position(kind: Type, sequence_number: &str) -> Option<v1::StartingPosition> {
    Some(v1::StartingPosition {
        r#type: kind.into(),
        sequence_number: sequence_number.to_string(),
        timestamp_ms: 0,
    })
}

async fn create(client: &mut StreamsClient<Channel>, name: &str, shards: u32) {
    client
        .create_stream(v1::CreateStreamRequest {
            name: name.into(),
            shard_count: shards,
            ..Default::default()
        })
        .await
        .expect("stream created");
}

/// A record as written: (partition key, data).
type Written = (String, Bytes);

/// Puts records `from..to` (key `key-<i % 37>`, data `record-<i>`) in Puts of up to 500 and
/// returns them by shard, in sequence order, with their sequence numbers.
async fn put_range(
    client: &mut StreamsClient<Channel>,
    stream: &str,
    from: usize,
    to: usize,
) -> BTreeMap<String, Vec<(String, Written)>> {
    let mut by_shard: BTreeMap<String, Vec<(String, Written)>> = BTreeMap::new();
    let indexes: Vec<usize> = (from..to).collect();
    for chunk in indexes.chunks(500) {
        let records: Vec<v1::PutRecord> = chunk
            .iter()
            .map(|i| v1::PutRecord {
                partition_key: format!("key-{}", i % 37),
                data: Bytes::from(format!("record-{i}")),
                explicit_hash_key: None,
            })
            .collect();
        let response = client
            .put(v1::PutRequest {
                stream: stream.into(),
                records: records.clone(),
            })
            .await
            .expect("put")
            .into_inner();
        assert_eq!(response.failed_record_count, 0, "{:?}", response.results);
        assert_eq!(response.results.len(), records.len());
        for (record, result) in records.into_iter().zip(response.results) {
            assert!(result.error_code.is_empty(), "{result:?}");
            assert!(!result.sequence_number.is_empty());
            by_shard
                .entry(result.shard_id)
                .or_default()
                .push((result.sequence_number, (record.partition_key, record.data)));
        }
    }
    for records in by_shard.values_mut() {
        records.sort_by_key(|(sequence, _)| sequence.parse::<u128>().expect("decimal"));
    }
    by_shard
}

/// Reads a whole shard with GetRecords, 100 records a call, following `next_position`.
async fn get_all(
    client: &mut StreamsClient<Channel>,
    stream: &str,
    shard: &str,
) -> (Vec<(String, Written)>, v1::GetRecordsResponse) {
    let mut records = Vec::new();
    let mut from = position(Type::TrimHorizon, "");
    loop {
        let response = client
            .get_records(v1::GetRecordsRequest {
                stream: stream.into(),
                shard_id: shard.into(),
                position: from.clone(),
                limit: 100,
            })
            .await
            .expect("get records")
            .into_inner();
        assert!(response.records.len() <= 100);
        records.extend(response.records.iter().map(|r| {
            (
                r.sequence_number.clone(),
                (r.partition_key.clone(), r.data.clone()),
            )
        }));
        if response.records.is_empty() || response.shard_closed {
            return (records, response);
        }
        from = response.next_position.clone();
        assert!(from.is_some(), "an open shard always has a next position");
    }
}

async fn subscribe(
    client: &mut StreamsClient<Channel>,
    stream: &str,
    kind: Type,
    stop_when_caught_up: bool,
) -> Streaming<v1::SubscribeResponse> {
    client
        .subscribe(v1::SubscribeRequest {
            stream: stream.into(),
            position: position(kind, ""),
            stop_when_caught_up,
        })
        .await
        .expect("subscribe")
        .into_inner()
}

/// What a subscription delivered, in arrival order: (shard, sequence number, record), and the
/// arrival position of each shard's closing batch.
#[derive(Default)]
struct Received {
    records: Vec<(String, String, Written)>,
    closed_at: HashMap<String, (usize, Vec<String>)>,
}

impl Received {
    async fn until(
        &mut self,
        subscription: &mut Streaming<v1::SubscribeResponse>,
        mut done: impl FnMut(&Received) -> bool,
    ) {
        while !done(self) {
            let batch = within(subscription.message())
                .await
                .expect("subscription stays healthy")
                .expect("subscription stays open");
            self.take(batch);
        }
    }

    fn take(&mut self, batch: v1::SubscribeResponse) {
        assert!(
            !self.closed_at.contains_key(&batch.shard_id),
            "records of {} after its closing batch",
            batch.shard_id
        );
        for record in batch.records {
            self.records.push((
                batch.shard_id.clone(),
                record.sequence_number,
                (record.partition_key, record.data),
            ));
        }
        if batch.shard_closed {
            self.closed_at.insert(
                batch.shard_id.clone(),
                (self.records.len(), batch.child_shard_ids),
            );
        }
    }

    fn of_shard(&self, shard: &str) -> Vec<(String, Written)> {
        self.records
            .iter()
            .filter(|(s, _, _)| s == shard)
            .map(|(_, sequence, record)| (sequence.clone(), record.clone()))
            .collect()
    }

    fn count_in(&self, shards: &[String]) -> usize {
        self.records
            .iter()
            .filter(|(s, _, _)| shards.contains(s))
            .count()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn put_read_subscribe_and_follow_a_reshard() {
    let mut server = Server::start().await;
    let client = &mut server.client;
    create(client, "orders", 2).await;

    let described = client
        .describe_stream(v1::DescribeStreamRequest {
            name: "orders".into(),
        })
        .await
        .expect("describe")
        .into_inner()
        .stream
        .expect("a description");
    assert_eq!(
        described.arn,
        "arn:aws:kinesis:us-east-1:000000000000:stream/orders"
    );
    assert_eq!(described.status, i32::from(v1::StreamStatus::Active));
    assert_eq!(described.retention_hours, 24);
    let ids: Vec<&str> = described.shards.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["shardId-000000000000", "shardId-000000000001"]);
    assert_eq!(described.shards[0].starting_hash_key, "0");
    assert_eq!(described.shards[1].ending_hash_key, u128::MAX.to_string());
    assert!(
        described
            .shards
            .iter()
            .all(|s| s.open && s.parent_shard_id.is_none())
    );

    let listed = client
        .list_streams(v1::ListStreamsRequest {})
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.names, ["orders"]);

    // 1000 records, read back exactly from both shards.
    let first = put_range(client, "orders", 0, 1000).await;
    assert_eq!(first.len(), 2, "37 keys land on both shards");
    for (shard, expected) in &first {
        let (records, last) = get_all(client, "orders", shard).await;
        assert_eq!(&records, expected, "contents of {shard}");
        assert!(!last.shard_closed);
    }

    // A subscription from TRIM_HORIZON delivers all of them, each shard in sequence order.
    let mut subscription = subscribe(client, "orders", Type::TrimHorizon, false).await;
    let mut received = Received::default();
    received
        .until(&mut subscription, |r| r.records.len() >= 1000)
        .await;
    assert_eq!(received.records.len(), 1000);
    for (shard, expected) in &first {
        assert_eq!(&received.of_shard(shard), expected, "subscribed {shard}");
    }

    // Records the parents still hold when they close, then a reshard, then records for the
    // children: the subscription delivers each parent to its end before any of its children.
    let remaining = put_range(client, "orders", 1000, 1200).await;
    let change = client
        .update_shard_count(v1::UpdateShardCountRequest {
            name: "orders".into(),
            target_shard_count: 4,
        })
        .await
        .expect("scale")
        .into_inner();
    assert_eq!(
        (change.current_shard_count, change.target_shard_count),
        (2, 4)
    );
    let later = put_range(client, "orders", 1200, 1600).await;
    let parents: Vec<String> = first.keys().cloned().collect();
    assert!(remaining.keys().all(|shard| parents.contains(shard)));
    let children: Vec<String> = later.keys().cloned().collect();
    assert!(children.iter().all(|shard| !parents.contains(shard)));
    received
        .until(&mut subscription, |r| r.records.len() >= 1600)
        .await;
    assert_eq!(received.records.len(), 1600);

    let described = client
        .describe_stream(v1::DescribeStreamRequest {
            name: "orders".into(),
        })
        .await
        .expect("describe")
        .into_inner()
        .stream
        .expect("a description");
    assert_eq!(described.shards.len(), 6);
    assert_eq!(described.shards.iter().filter(|s| s.open).count(), 4);
    for parent in &parents {
        let (closed_at, child_ids) = received
            .closed_at
            .get(parent)
            .unwrap_or_else(|| panic!("{parent} was reported closed"));
        let expected_children: Vec<String> = described
            .shards
            .iter()
            .filter(|s| s.parent_shard_id.as_ref() == Some(parent))
            .map(|s| s.id.clone())
            .collect();
        assert_eq!(child_ids, &expected_children);
        assert_eq!(expected_children.len(), 2);
        // Every record of the parent arrived before its closing batch ended, and every record
        // of its children after it.
        let mut whole: Vec<(String, Written)> = first[parent].clone();
        whole.extend(remaining.get(parent).cloned().unwrap_or_default());
        assert_eq!(received.of_shard(parent), whole, "{parent} read to its end");
        let first_child_record = received
            .records
            .iter()
            .position(|(s, _, _)| expected_children.contains(s))
            .expect("children delivered");
        assert!(
            first_child_record >= *closed_at,
            "a child of {parent} started at {first_child_record}, before the parent ended at {closed_at}"
        );
        // The parent, read directly, ends there too.
        let (records, last) = get_all(client, "orders", parent).await;
        assert_eq!(records, whole);
        assert!(last.shard_closed && last.next_position.is_none());
        assert_eq!(last.child_shard_ids, expected_children);
    }
    for (child, expected) in &later {
        assert_eq!(&received.of_shard(child), expected, "subscribed {child}");
    }
    assert_eq!(received.count_in(&children), 400);
    drop(subscription);

    // A subscription started after the reshard walks the lineage too: each parent from its
    // oldest record to its end, then its children, then the call ends.
    let mut replay = subscribe(client, "orders", Type::TrimHorizon, true).await;
    let mut replayed = Received::default();
    while let Some(batch) = within(replay.message()).await.expect("healthy") {
        replayed.take(batch);
    }
    assert_eq!(replayed.records.len(), 1600);
    for parent in &parents {
        let (closed_at, child_ids) = &replayed.closed_at[parent];
        assert_eq!(child_ids, &received.closed_at[parent].1);
        assert_eq!(replayed.of_shard(parent), received.of_shard(parent));
        let first_child_record = replayed
            .records
            .iter()
            .position(|(s, _, _)| child_ids.contains(s))
            .expect("children replayed");
        assert!(
            first_child_record >= *closed_at,
            "{parent}'s children replayed early"
        );
    }
    for (child, expected) in &later {
        assert_eq!(&replayed.of_shard(child), expected, "replayed {child}");
    }

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn subscriptions_start_at_latest_stop_when_caught_up_and_end_with_their_stream() {
    let mut server = Server::start().await;
    let client = &mut server.client;
    create(client, "events", 3).await;
    put_range(client, "events", 0, 300).await;

    // LATEST skips what was there; records written after the call arrive.
    let mut latest = subscribe(client, "events", Type::Latest, false).await;
    let after = put_range(client, "events", 300, 360).await;
    let mut received = Received::default();
    received.until(&mut latest, |r| r.records.len() >= 60).await;
    for (shard, expected) in &after {
        assert_eq!(&received.of_shard(shard), expected);
    }

    // Stopping when caught up: everything, then the end of the call.
    let mut catch_up = subscribe(client, "events", Type::TrimHorizon, true).await;
    let mut everything = Received::default();
    while let Some(batch) = within(catch_up.message()).await.expect("healthy") {
        everything.take(batch);
    }
    assert_eq!(everything.records.len(), 360);

    // Deleting the stream ends a following subscription with NOT_FOUND.
    client
        .delete_stream(v1::DeleteStreamRequest {
            name: "events".into(),
            enforce_consumer_deletion: false,
        })
        .await
        .expect("delete");
    let ended = loop {
        match within(latest.message()).await {
            Ok(Some(batch)) => received.take(batch),
            Ok(None) => panic!("the subscription ended without an error"),
            Err(status) => break status,
        }
    };
    assert_eq!(ended.code(), Code::NotFound, "{ended:?}");
    assert!(
        ended
            .message()
            .starts_with("ResourceNotFoundException: Stream events")
    );
    assert!(server.catalog.streams().is_empty());

    drop(latest);
    server.stop().await;
}

#[tokio::test]
async fn errors_map_onto_grpc_codes_with_the_kinesis_type() {
    let mut server = Server::start().await;
    let client = &mut server.client;

    let missing = client
        .describe_stream(v1::DescribeStreamRequest {
            name: "missing".into(),
        })
        .await
        .expect_err("no such stream");
    assert_eq!(missing.code(), Code::NotFound);
    assert_eq!(
        missing.message(),
        "ResourceNotFoundException: Stream missing under account 000000000000 not found."
    );
    let put = client
        .put(v1::PutRequest {
            stream: "missing".into(),
            records: vec![v1::PutRecord {
                partition_key: "k".into(),
                data: Bytes::from_static(b"x"),
                explicit_hash_key: None,
            }],
        })
        .await
        .expect_err("no such stream");
    assert_eq!(put.code(), Code::NotFound);
    let subscribe = client
        .subscribe(v1::SubscribeRequest {
            stream: "missing".into(),
            position: None,
            stop_when_caught_up: false,
        })
        .await
        .expect_err("no such stream");
    assert_eq!(subscribe.code(), Code::NotFound);

    create(client, "taken", 1).await;
    let again = client
        .create_stream(v1::CreateStreamRequest {
            name: "taken".into(),
            shard_count: 1,
            ..Default::default()
        })
        .await
        .expect_err("name taken");
    assert_eq!(again.code(), Code::AlreadyExists);
    assert!(again.message().starts_with("ResourceInUseException: "));

    let bad_name = client
        .create_stream(v1::CreateStreamRequest {
            name: "no spaces".into(),
            shard_count: 1,
            ..Default::default()
        })
        .await
        .expect_err("invalid name");
    assert_eq!(bad_name.code(), Code::InvalidArgument);

    let no_shard = client
        .get_records(v1::GetRecordsRequest {
            stream: "taken".into(),
            shard_id: "shardId-000000000009".into(),
            position: None,
            limit: 0,
        })
        .await
        .expect_err("no such shard");
    assert_eq!(no_shard.code(), Code::NotFound);

    let too_far = client
        .update_shard_count(v1::UpdateShardCountRequest {
            name: "taken".into(),
            target_shard_count: 100,
        })
        .await
        .expect_err("more than double");
    assert_eq!(too_far.code(), Code::InvalidArgument);
    assert!(too_far.message().starts_with("InvalidArgumentException: "));

    let empty_key = client
        .put(v1::PutRequest {
            stream: "taken".into(),
            records: vec![v1::PutRecord {
                partition_key: String::new(),
                data: Bytes::new(),
                explicit_hash_key: None,
            }],
        })
        .await
        .expect_err("empty partition key");
    assert_eq!(empty_key.code(), Code::InvalidArgument);

    let by_sequence = client
        .subscribe(v1::SubscribeRequest {
            stream: "taken".into(),
            position: position(Type::AtSequenceNumber, "1"),
            stop_when_caught_up: false,
        })
        .await
        .expect_err("subscribe takes TRIM_HORIZON or LATEST");
    assert_eq!(by_sequence.code(), Code::InvalidArgument);

    server.stop().await;
}

#[tokio::test]
async fn retention_moves_both_ways_within_the_kinesis_bounds() {
    let mut server = Server::start().await;
    create(&mut server.client, "kept", 1).await;
    let client = server.client.clone();
    let retention = || {
        let mut client = client.clone();
        async move {
            client
                .describe_stream(v1::DescribeStreamRequest {
                    name: "kept".into(),
                })
                .await
                .expect("described")
                .into_inner()
                .stream
                .expect("description")
                .retention_hours
        }
    };
    let update = |hours: u32| {
        let mut client = client.clone();
        async move {
            client
                .update_retention(v1::UpdateRetentionRequest {
                    name: "kept".into(),
                    retention_hours: hours,
                })
                .await
        }
    };
    let longer = update(168).await.expect("increase").into_inner();
    assert_eq!(longer.previous_retention_hours, 24);
    assert_eq!(retention().await, 168);
    let shorter = update(48).await.expect("decrease").into_inner();
    assert_eq!(shorter.previous_retention_hours, 168);
    assert_eq!(retention().await, 48);
    update(48).await.expect("unchanged is fine");

    let too_short = update(10).await.expect_err("below 24 hours");
    assert_eq!(too_short.code(), Code::InvalidArgument);
    assert!(
        too_short
            .message()
            .contains("Minimum allowed retention period is 24 hours"),
        "{}",
        too_short.message()
    );
    let missing = server
        .client
        .update_retention(v1::UpdateRetentionRequest {
            name: "missing".into(),
            retention_hours: 48,
        })
        .await
        .expect_err("no such stream");
    assert_eq!(missing.code(), Code::NotFound);
    server.stop().await;
}
