//! A stream spread over two shard groups (two data-plane servers, each storing two of its four
//! shards) behind the gateway, driven through the Kinesis API: it looks like one stream.

#![allow(clippy::unwrap_used)] // test fixtures fail loudly by design

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http_body_util::BodyExt;
use riffle_proto::v1;
use riffle_proto::v1::streams_client::StreamsClient;
use riffle_server::gateway::{self, GatewayOptions};
use riffle_server::streams::hash_key::hash_partition_key;
use riffle_server::streams::{Catalog, StreamsConfig};
use riffle_wire::event_stream::{self, EventStreamError};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::time::Instant;

mod common;
use common::{Caller, caller};

/// Longest wait for anything that should happen promptly.
const PATIENCE: Duration = Duration::from_secs(30);

/// One shard group: a data-plane server with its Kinesis API and gRPC API.
struct Group {
    http: SocketAddr,
    grpc: StreamsClient<tonic::transport::Channel>,
    _dir: tempfile::TempDir,
}

async fn group() -> Group {
    let dir = tempfile::tempdir().unwrap();
    let mut config = StreamsConfig::new(dir.path().to_path_buf(), [1u8; 32]);
    config.limits.enabled = false;
    let catalog = Catalog::open(config).unwrap();
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http_address = http.local_addr().unwrap();
    tokio::spawn(riffle_server::http::serve(
        catalog.clone(),
        http,
        std::future::pending(),
    ));
    let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc_address = grpc.local_addr().unwrap();
    tokio::spawn(riffle_server::grpc::serve(
        catalog,
        grpc,
        std::future::pending(),
    ));
    let grpc = StreamsClient::connect(format!("http://{grpc_address}"))
        .await
        .unwrap();
    Group {
        http: http_address,
        grpc,
        _dir: dir,
    }
}

/// Creates `orders` (four shards, two per group) in group 0 and imports it into group 1.
async fn spread_stream(g0: &mut Group, g1: &mut Group) {
    g0.grpc
        .create_stream(v1::CreateStreamRequest {
            name: "orders".into(),
            shard_count: 4,
            placement: Some(v1::Placement {
                group: 0,
                shards_per_group: 2,
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let exported = g0
        .grpc
        .export_stream(v1::ExportStreamRequest {
            name: "orders".into(),
        })
        .await
        .unwrap()
        .into_inner();
    g1.grpc
        .import_stream(v1::ImportStreamRequest {
            description: exported.description,
            placement: Some(v1::Placement {
                group: 1,
                shards_per_group: 2,
            }),
        })
        .await
        .unwrap();
}

/// A retained shard: (index, first hash key, last hash key, group, open).
type ShardLayout = (u32, u128, u128, usize, bool);

/// The shards as group 0 describes them over gRPC.
async fn layout(g0: &mut Group) -> Vec<ShardLayout> {
    let description = g0
        .grpc
        .describe_stream(v1::DescribeStreamRequest {
            name: "orders".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .stream
        .unwrap();
    description
        .shards
        .iter()
        .map(|s| {
            (
                s.id.strip_prefix("shardId-").unwrap().parse().unwrap(),
                s.starting_hash_key.parse().unwrap(),
                s.ending_hash_key.parse().unwrap(),
                s.group as usize,
                s.open,
            )
        })
        .collect()
}

/// Writes the route file placing `orders` in `groups` with `shards`.
fn write_routes(path: &Path, groups: &[String], shards: &[ShardLayout]) {
    let shards: Vec<Value> = shards
        .iter()
        .map(|(index, start, end, group, open)| {
            json!({"index": index, "start": start.to_string(), "end": end.to_string(),
                   "group": group, "open": open})
        })
        .collect();
    let table = json!({"streams": {"orders": {"groups": groups, "shards": shards}}});
    // Write then rename, as kubelet swaps a mounted ConfigMap, so no read sees half a file.
    let staging = path.with_extension("new");
    std::fs::write(&staging, table.to_string()).unwrap();
    std::fs::rename(&staging, path).unwrap();
}

/// Starts a gateway over the route file at `routes`, once it answers.
async fn gateway(routes: PathBuf) -> Caller {
    let probe = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let listen = probe.local_addr().unwrap();
    drop(probe);
    tokio::spawn(gateway::run(
        GatewayOptions {
            listen,
            routes,
            account: "000000000000".into(),
        },
        std::future::pending(),
    ));
    let caller = caller(listen);
    let deadline = Instant::now() + PATIENCE;
    loop {
        let ready = caller
            .client
            .get(format!("http://{listen}/healthz").parse().unwrap())
            .await;
        if ready.is_ok_and(|r| r.status().is_success()) {
            return caller;
        }
        assert!(Instant::now() < deadline, "gateway did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The open shard owning `key`.
fn shard_of(shards: &[ShardLayout], key: u128) -> u32 {
    shards
        .iter()
        .find(|(_, start, end, _, open)| *open && *start <= key && key <= *end)
        .unwrap()
        .0
}

fn shard_id(index: u32) -> String {
    format!("shardId-{index:012}")
}

/// Every record of shard `index` through the gateway, from TRIM_HORIZON, as (partition key,
/// data); reads until `expected` records came back.
async fn read_shard(through: &Caller, index: u32, expected: usize) -> Vec<(String, String)> {
    let iterator = through
        .ok(
            "GetShardIterator",
            json!({"StreamName": "orders", "ShardId": shard_id(index), "ShardIteratorType": "TRIM_HORIZON"}),
        )
        .await;
    let mut iterator = iterator["ShardIterator"].as_str().unwrap().to_string();
    let mut records = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    while records.len() < expected {
        assert!(
            Instant::now() < deadline,
            "shard {index}: {} of {expected} records",
            records.len()
        );
        let answer = through
            .ok("GetRecords", json!({"ShardIterator": iterator}))
            .await;
        for record in answer["Records"].as_array().unwrap() {
            records.push((
                record["PartitionKey"].as_str().unwrap().to_string(),
                record["Data"].as_str().unwrap().to_string(),
            ));
        }
        iterator = answer["NextShardIterator"].as_str().unwrap().to_string();
    }
    records
}

#[tokio::test]
async fn a_stream_spread_over_two_groups_looks_like_one_stream() {
    let (mut g0, mut g1) = (group().await, group().await);
    spread_stream(&mut g0, &mut g1).await;
    let shards = layout(&mut g0).await;
    let groups: Vec<usize> = shards.iter().map(|s| s.3).collect();
    assert_eq!(
        groups,
        [0, 0, 1, 1],
        "two shards per group, packed in order"
    );
    let routes_dir = tempfile::tempdir().unwrap();
    let routes = routes_dir.path().join("routes.json");
    let bases = [format!("http://{}", g0.http), format!("http://{}", g1.http)];
    write_routes(&routes, &bases, &shards);
    let through = gateway(routes).await;

    // PutRecords with keys spread over all four shards: explicit keys in each, and partition
    // keys routed by their MD5.
    let mut records = Vec::new();
    let mut expected_shard = Vec::new();
    for (i, (index, start, _, _, _)) in shards.iter().enumerate() {
        for j in 0..3u128 {
            let key = start + 1_000 * j + i as u128;
            records.push(json!({"PartitionKey": format!("explicit-{i}-{j}"),
                                "ExplicitHashKey": key.to_string(),
                                "Data": STANDARD.encode(format!("explicit-{i}-{j}"))}));
            expected_shard.push(*index);
        }
    }
    for k in 0..20 {
        let key = format!("pk-{k}");
        expected_shard.push(shard_of(&shards, hash_partition_key(&key)));
        records.push(json!({"PartitionKey": key, "Data": "aGk="}));
    }
    let put = through
        .ok(
            "PutRecords",
            json!({"StreamName": "orders", "Records": records}),
        )
        .await;
    assert_eq!(put["FailedRecordCount"], 0, "{put}");
    assert_eq!(put["EncryptionType"], "NONE");
    let results = put["Records"].as_array().unwrap();
    assert_eq!(results.len(), records.len());
    for (result, shard) in results.iter().zip(&expected_shard) {
        assert_eq!(result["ShardId"], shard_id(*shard), "{result}");
        assert!(result["SequenceNumber"].is_string());
    }

    // A CBOR PutRecords, split the same way, answers in CBOR in request order.
    let cbor_records: Vec<riffle_wire::Value> = [3usize, 0, 2, 1]
        .iter()
        .map(|&i| {
            riffle_wire::Value::map()
                .with("PartitionKey", format!("cbor-{i}"))
                .with("ExplicitHashKey", (shards[i].1 + 7).to_string())
                .with(
                    "Data",
                    riffle_wire::Value::from(format!("cbor-{i}").into_bytes()),
                )
                .build()
        })
        .collect();
    let (status, cbor) = through
        .call_cbor(
            "PutRecords",
            &riffle_wire::Value::map()
                .with("StreamName", "orders")
                .with("Records", riffle_wire::Value::List(cbor_records))
                .build(),
        )
        .await;
    assert_eq!(status, 200, "{cbor:?}");
    let Some(riffle_wire::Value::List(cbor_results)) = cbor.get("Records") else {
        panic!("no CBOR results: {cbor:?}")
    };
    let cbor_shards: Vec<&str> = cbor_results
        .iter()
        .map(|r| {
            r.get("ShardId")
                .and_then(riffle_wire::Value::as_str)
                .unwrap()
        })
        .collect();
    assert_eq!(
        cbor_shards,
        [shard_id(3), shard_id(0), shard_id(2), shard_id(1)]
    );

    // PutRecord reaches the group storing the key's shard.
    let single = through
        .ok(
            "PutRecord",
            json!({"StreamName": "orders", "PartitionKey": "single",
                   "ExplicitHashKey": (shards[3].1 + 99).to_string(), "Data": "c2luZ2xl"}),
        )
        .await;
    assert_eq!(single["ShardId"], shard_id(3));

    // Every record is readable from its shard through the gateway, in order, data intact.
    let mut by_shard: Vec<Vec<(String, String)>> = Vec::new();
    for (index, _, _, _, _) in &shards {
        let mut wanted: Vec<(String, String)> = records
            .iter()
            .zip(&expected_shard)
            .filter(|(_, shard)| *shard == index)
            .map(|(record, _)| {
                (
                    record["PartitionKey"].as_str().unwrap().to_string(),
                    record["Data"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        wanted.push((
            format!("cbor-{index}"),
            STANDARD.encode(format!("cbor-{index}")),
        ));
        if *index == 3 {
            wanted.push(("single".into(), "c2luZ2xl".into()));
        }
        let read = read_shard(&through, *index, wanted.len()).await;
        assert_eq!(read, wanted, "shard {index}");
        by_shard.push(wanted);
    }

    // Group 1 stores shards 2 and 3, group 0 does not: the gateway, not luck, placed them.
    let (status, not_hosted, _) = caller(g0.http)
        .call_with_headers(
            "GetShardIterator",
            json!({"StreamName": "orders", "ShardId": shard_id(2), "ShardIteratorType": "TRIM_HORIZON"}),
        )
        .await;
    assert_eq!((status, not_hosted.as_deref()), (503, Some("1")));

    // The stream is described once, with its four open shards.
    let described = through
        .ok("DescribeStream", json!({"StreamName": "orders"}))
        .await;
    let description = &described["StreamDescription"];
    assert_eq!(description["StreamStatus"], "ACTIVE");
    let listed = description["Shards"].as_array().unwrap();
    assert_eq!(listed.len(), 4);
    for shard in listed {
        assert!(
            shard["SequenceNumberRange"]["EndingSequenceNumber"].is_null(),
            "{shard}"
        );
    }
    let listed = through
        .ok("ListShards", json!({"StreamName": "orders"}))
        .await;
    assert_eq!(listed["Shards"].as_array().unwrap().len(), 4);
    let summary = through
        .ok("DescribeStreamSummary", json!({"StreamName": "orders"}))
        .await;
    assert_eq!(summary["StreamDescriptionSummary"]["OpenShardCount"], 4);
    let streams = through.ok("ListStreams", json!({})).await;
    assert_eq!(streams["StreamNames"], json!(["orders"]));

    // Changes reach every group.
    through
        .ok(
            "AddTagsToStream",
            json!({"StreamName": "orders", "Tags": {"team": "payments"}}),
        )
        .await;
    for group in [&g0, &g1] {
        let tags = caller(group.http)
            .ok("ListTagsForStream", json!({"StreamName": "orders"}))
            .await;
        assert_eq!(tags["Tags"], json!([{"Key": "team", "Value": "payments"}]));
    }

    // A split is made in both groups, which open the same children in the same groups.
    through
        .ok(
            "SplitShard",
            json!({"StreamName": "orders", "ShardToSplit": shard_id(0),
                   "NewStartingHashKey": "12345"}),
        )
        .await;
    let mut listings = Vec::new();
    for group in [&g0, &g1] {
        let listed = caller(group.http)
            .ok("ListShards", json!({"StreamName": "orders"}))
            .await;
        let shards: Vec<(String, Option<String>, String)> = listed["Shards"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["ShardId"].as_str().unwrap().to_string(),
                    s["ParentShardId"].as_str().map(str::to_string),
                    s["HashKeyRange"]["StartingHashKey"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                )
            })
            .collect();
        listings.push(shards);
    }
    assert_eq!(listings[0], listings[1], "both groups hold the same shards");
    assert_eq!(listings[0].len(), 6);
    assert_eq!(
        listings[0][5],
        (shard_id(5), Some(shard_id(0)), "12345".to_string())
    );
    // Asking again finds the parent closed in group 0 and leaves both groups as they are.
    let (status, again) = through
        .call(
            "SplitShard",
            json!({"StreamName": "orders", "ShardToSplit": shard_id(0),
                   "NewStartingHashKey": "12345"}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(again["__type"], "ResourceInUseException");

    // An enhanced fan-out consumer is registered in both groups with one ARN and can
    // subscribe to a shard of group 1.
    let stream_arn = summary["StreamDescriptionSummary"]["StreamARN"]
        .as_str()
        .unwrap()
        .to_string();
    let registered = through
        .ok(
            "RegisterStreamConsumer",
            json!({"StreamARN": stream_arn, "ConsumerName": "auditor"}),
        )
        .await;
    let consumer_arn = registered["Consumer"]["ConsumerARN"]
        .as_str()
        .unwrap()
        .to_string();
    for group in [&g0, &g1] {
        let described = caller(group.http)
            .ok(
                "DescribeStreamConsumer",
                json!({"ConsumerARN": consumer_arn}),
            )
            .await;
        assert_eq!(
            described["ConsumerDescription"]["ConsumerARN"],
            consumer_arn
        );
    }
    let subscribed = subscribe(&through, &consumer_arn, 3, by_shard[3].len()).await;
    assert_eq!(
        subscribed, by_shard[3],
        "pushed records are shard 3's records"
    );
}

/// Subscribes `consumer` to shard `index` from TRIM_HORIZON and collects pushed records as
/// (partition key, base64 data) until at least `wanted` arrived.
async fn subscribe(
    through: &Caller,
    consumer: &str,
    index: u32,
    wanted: usize,
) -> Vec<(String, String)> {
    let body = json!({"ConsumerARN": consumer, "ShardId": shard_id(index),
                      "StartingPosition": {"Type": "TRIM_HORIZON"}});
    let request = through.request(
        "SubscribeToShard",
        Bytes::from(body.to_string()),
        "application/x-amz-json-1.1",
    );
    let response = through.client.request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/vnd.amazon.eventstream"
    );
    let mut body = response.into_body();
    let mut buffer = Vec::new();
    let mut records = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    while records.len() < wanted {
        let frame = tokio::time::timeout_at(deadline, body.frame())
            .await
            .expect("records pushed in time")
            .expect("the event stream stays open")
            .unwrap();
        let Ok(data) = frame.into_data() else {
            continue;
        };
        buffer.extend_from_slice(&data);
        loop {
            let (message, used) = match event_stream::decode_message(&buffer) {
                Ok(decoded) => decoded,
                Err(EventStreamError::Incomplete { .. }) => break,
                Err(error) => panic!("bad event stream: {error}"),
            };
            buffer.drain(..used);
            assert_eq!(message.header_str(":message-type"), Some("event"));
            if message.header_str(":event-type") != Some("SubscribeToShardEvent") {
                continue;
            }
            let event: Value = serde_json::from_slice(&message.payload).unwrap();
            for record in event["Records"].as_array().unwrap() {
                records.push((
                    record["PartitionKey"].as_str().unwrap().to_string(),
                    record["Data"].as_str().unwrap().to_string(),
                ));
            }
        }
    }
    records
}

/// Records for each of the four shards (`per_shard` each), as PutRecords entries.
fn records_for_every_shard(shards: &[ShardLayout], per_shard: usize, tag: &str) -> Vec<Value> {
    shards
        .iter()
        .flat_map(|(index, start, _, _, _)| {
            (0..per_shard).map(move |j| {
                json!({"PartitionKey": format!("{tag}-{index}-{j}"),
                       "ExplicitHashKey": (start + j as u128).to_string(), "Data": "aGk="})
            })
        })
        .collect()
}

#[tokio::test]
async fn requests_reach_the_right_group_while_the_routes_are_wrong_or_a_group_is_down() {
    let (mut g0, mut g1) = (group().await, group().await);
    spread_stream(&mut g0, &mut g1).await;
    let shards = layout(&mut g0).await;
    let bases = [format!("http://{}", g0.http), format!("http://{}", g1.http)];
    let routes_dir = tempfile::tempdir().unwrap();

    // Routes that place shard 3 in group 0: the group answering "not hosted here" names
    // group 1, and the gateway goes there at once.
    let mut misplaced = shards.clone();
    misplaced[3].3 = 0;
    let routes = routes_dir.path().join("routes.json");
    write_routes(&routes, &bases, &misplaced);
    let through = gateway(routes.clone()).await;
    let started = Instant::now();
    let put = through
        .ok(
            "PutRecord",
            json!({"StreamName": "orders", "PartitionKey": "p",
                   "ExplicitHashKey": (shards[3].1 + 5).to_string(), "Data": "aGk="}),
        )
        .await;
    assert_eq!(put["ShardId"], shard_id(3));
    assert_eq!(read_shard(&through, 3, 1).await[0].0, "p");
    // PutRecords: group 0 refuses its part (shards 0, 1 and the misplaced 3) whole; shard by
    // shard, 0 and 1 are written there and 3 where group 0 points.
    let records = records_for_every_shard(&shards, 2, "misplaced");
    let put = through
        .ok(
            "PutRecords",
            json!({"StreamName": "orders", "Records": records}),
        )
        .await;
    assert_eq!(put["FailedRecordCount"], 0, "{put}");
    for (i, result) in put["Records"].as_array().unwrap().iter().enumerate() {
        assert_eq!(result["ShardId"], shard_id(i as u32 / 2), "{result}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the named group is asked at once, not after the gateway's patience"
    );

    // Routes that send group 1's shards to group 0's endpoint (group 1 not routed yet):
    // the records of shards 2 and 3 fail with ServiceUnavailable once the gateway's patience is
    // spent, the others are written.
    write_routes(&routes, &[bases[0].clone(), bases[0].clone()], &shards);
    let through = gateway(routes.clone()).await;
    let records = records_for_every_shard(&shards, 2, "stuck");
    // Both wait out the gateway's patience, so they wait together.
    let ((status, put), (refused_status, refused)) = tokio::join!(
        through.call(
            "PutRecords",
            json!({"StreamName": "orders", "Records": records}),
        ),
        through.call(
            "GetShardIterator",
            json!({"StreamName": "orders", "ShardId": shard_id(2), "ShardIteratorType": "LATEST"}),
        ),
    );
    assert_eq!(status, 200, "{put}");
    assert_eq!(put["FailedRecordCount"], 4, "{put}");
    for (i, result) in put["Records"].as_array().unwrap().iter().enumerate() {
        if i < 4 {
            assert_eq!(result["ShardId"], shard_id(i as u32 / 2), "{result}");
        } else {
            assert_eq!(result["ErrorCode"], "ServiceUnavailable", "{result}");
        }
    }
    assert_eq!(
        (refused_status, refused["__type"].as_str()),
        (503, Some("ServiceUnavailable")),
        "{refused}"
    );

    // The routes corrected while a PutRecords waits: it completes.
    let records = records_for_every_shard(&shards, 2, "fixed");
    let call = {
        let through = through.clone();
        tokio::spawn(async move {
            through
                .ok(
                    "PutRecords",
                    json!({"StreamName": "orders", "Records": records}),
                )
                .await
        })
    };
    write_routes(&routes, &bases, &shards);
    let put = tokio::time::timeout(PATIENCE, call).await.unwrap().unwrap();
    assert_eq!(put["FailedRecordCount"], 0, "{put}");

    // A group that cannot be reached fails only the records bound for it.
    let dead = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_base = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let half_down = routes_dir.path().join("half-down.json");
    write_routes(&half_down, &[bases[0].clone(), dead_base], &shards);
    let through = gateway(half_down).await;
    let records = records_for_every_shard(&shards, 2, "half");
    let put = through
        .ok(
            "PutRecords",
            json!({"StreamName": "orders", "Records": records}),
        )
        .await;
    assert_eq!(put["FailedRecordCount"], 4, "{put}");
    for (i, result) in put["Records"].as_array().unwrap().iter().enumerate() {
        if i < 4 {
            assert_eq!(result["ShardId"], shard_id(i as u32 / 2), "{result}");
        } else {
            assert_eq!(result["ErrorCode"], "ServiceUnavailable", "{result}");
            assert!(
                result["ErrorMessage"]
                    .as_str()
                    .unwrap()
                    .contains("unreachable"),
                "{result}"
            );
        }
    }
}

/// The ending sequence number of each closed shard as `caller` lists it, by shard index.
async fn ends(caller: &Caller) -> Vec<(u32, Option<String>)> {
    let listed = caller
        .ok("ListShards", json!({"StreamName": "orders"}))
        .await;
    listed["Shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|shard| {
            (
                shard["ShardId"]
                    .as_str()
                    .unwrap()
                    .strip_prefix("shardId-")
                    .unwrap()
                    .parse()
                    .unwrap(),
                shard["SequenceNumberRange"]["EndingSequenceNumber"]
                    .as_str()
                    .map(str::to_string),
            )
        })
        .collect()
}

#[tokio::test]
async fn closed_shards_end_where_their_own_group_says() {
    let (mut g0, mut g1) = (group().await, group().await);
    spread_stream(&mut g0, &mut g1).await;
    let shards = layout(&mut g0).await;
    let bases = [format!("http://{}", g0.http), format!("http://{}", g1.http)];
    let routes_dir = tempfile::tempdir().unwrap();
    let routes = routes_dir.path().join("routes.json");
    write_routes(&routes, &bases, &shards);
    let through = gateway(routes.clone()).await;
    let records = records_for_every_shard(&shards, 3, "before");
    let put = through
        .ok(
            "PutRecords",
            json!({"StreamName": "orders", "Records": records}),
        )
        .await;
    assert_eq!(put["FailedRecordCount"], 0, "{put}");
    let last_in_shard_3 = put["Records"][11]["SequenceNumber"]
        .as_str()
        .unwrap()
        .to_string();

    // Both groups take the same reshard step (as the operator has them do): four shards
    // merged into two.
    for group in [&mut g0, &mut g1] {
        group
            .grpc
            .update_shard_count(v1::UpdateShardCountRequest {
                name: "orders".into(),
                target_shard_count: 2,
            })
            .await
            .unwrap();
    }
    let after = layout(&mut g0).await;
    assert_eq!(after, layout(&mut g1).await);
    let closed_in_g1: Vec<u32> = after
        .iter()
        .filter(|s| !s.4 && s.3 == 1)
        .map(|s| s.0)
        .collect();
    assert_eq!(closed_in_g1, [2, 3], "{after:?}");
    write_routes(&routes, &bases, &after);

    // Through the gateway, every closed shard ends where the group storing it says.
    let by_g0 = ends(&caller(g0.http)).await;
    let by_g1 = ends(&caller(g1.http)).await;
    assert_ne!(
        by_g0[3], by_g1[3],
        "group 0 cannot know where shard 3's records ended"
    );
    let seen = ends(&through).await;
    assert_eq!(seen.len(), after.len());
    for ((index, end), (_, _, _, group, open)) in seen.iter().zip(&after) {
        let own = if *group == 0 { &by_g0 } else { &by_g1 };
        let expected = &own.iter().find(|(i, _)| i == index).unwrap().1;
        assert_eq!(end, expected, "shard {index}");
        assert_eq!(end.is_none(), *open, "shard {index}");
    }
    let end_of_3 = seen[3].1.clone().unwrap();
    assert!(
        end_of_3.parse::<u128>().unwrap() >= last_in_shard_3.parse::<u128>().unwrap(),
        "shard 3 ends at {end_of_3}, after its last record {last_in_shard_3}"
    );
    let described = through
        .ok("DescribeStream", json!({"StreamName": "orders"}))
        .await;
    let described_end =
        &described["StreamDescription"]["Shards"][3]["SequenceNumberRange"]["EndingSequenceNumber"];
    assert_eq!(described_end, &json!(end_of_3));
    // The same in CBOR, whose timestamps and all survive the gateway's patching.
    let (status, cbor) = through
        .call_cbor(
            "DescribeStream",
            &riffle_wire::Value::map()
                .with("StreamName", "orders")
                .build(),
        )
        .await;
    assert_eq!(status, 200, "{cbor:?}");
    let description = cbor.get("StreamDescription").unwrap();
    assert!(matches!(
        description.get("StreamCreationTimestamp"),
        Some(riffle_wire::Value::Timestamp(_))
    ));
    let Some(riffle_wire::Value::List(cbor_shards)) = description.get("Shards") else {
        panic!("no shards: {cbor:?}")
    };
    let cbor_end = cbor_shards[3]
        .get("SequenceNumberRange")
        .and_then(|range| range.get("EndingSequenceNumber"))
        .and_then(riffle_wire::Value::as_str);
    assert_eq!(cbor_end, Some(end_of_3.as_str()));

    // The closed shard of group 1 reads to its end through the gateway, then names its child.
    let iterator = through
        .ok(
            "GetShardIterator",
            json!({"StreamName": "orders", "ShardId": shard_id(3), "ShardIteratorType": "TRIM_HORIZON"}),
        )
        .await;
    let mut iterator = iterator["ShardIterator"].as_str().map(str::to_string);
    let mut read = 0;
    let mut children = Value::Null;
    let deadline = Instant::now() + PATIENCE;
    while let Some(current) = iterator {
        assert!(Instant::now() < deadline, "shard 3 not read to its end");
        let answer = through
            .ok("GetRecords", json!({"ShardIterator": current}))
            .await;
        read += answer["Records"].as_array().unwrap().len();
        if !answer["ChildShards"].is_null() {
            children = answer["ChildShards"].clone();
        }
        iterator = answer["NextShardIterator"].as_str().map(str::to_string);
    }
    assert_eq!(read, 3);
    assert_eq!(children[0]["ShardId"], shard_id(5), "{children}");

    // New records reach the children.
    let records = records_for_every_shard(&shards, 1, "after");
    let put = through
        .ok(
            "PutRecords",
            json!({"StreamName": "orders", "Records": records}),
        )
        .await;
    assert_eq!(put["FailedRecordCount"], 0, "{put}");
    let children: Vec<&str> = put["Records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["ShardId"].as_str().unwrap())
        .collect();
    assert_eq!(
        children,
        [shard_id(4), shard_id(4), shard_id(5), shard_id(5)]
    );
}

#[tokio::test]
async fn a_retried_consumer_change_completes_in_every_group() {
    let (mut g0, mut g1) = (group().await, group().await);
    spread_stream(&mut g0, &mut g1).await;
    let shards = layout(&mut g0).await;
    let bases = [format!("http://{}", g0.http), format!("http://{}", g1.http)];
    let routes_dir = tempfile::tempdir().unwrap();
    let routes = routes_dir.path().join("routes.json");
    write_routes(&routes, &bases, &shards);
    let through = gateway(routes).await;
    let summary = through
        .ok("DescribeStreamSummary", json!({"StreamName": "orders"}))
        .await;
    let stream_arn = summary["StreamDescriptionSummary"]["StreamARN"].clone();

    // A registration that reached group 0 only (group 1 failed): the client's retry is
    // refused by group 0 as Kinesis would, and completes the registration in group 1 with
    // group 0's ARN.
    let registered = caller(g0.http)
        .ok(
            "RegisterStreamConsumer",
            json!({"StreamARN": stream_arn, "ConsumerName": "late"}),
        )
        .await;
    let consumer_arn = registered["Consumer"]["ConsumerARN"].clone();
    let (status, _) = caller(g1.http)
        .call(
            "DescribeStreamConsumer",
            json!({"ConsumerARN": consumer_arn}),
        )
        .await;
    assert_eq!(status, 400, "group 1 does not know the consumer yet");
    let (status, retried) = through
        .call(
            "RegisterStreamConsumer",
            json!({"StreamARN": stream_arn, "ConsumerName": "late"}),
        )
        .await;
    assert_eq!(
        (status, retried["__type"].as_str()),
        (400, Some("ResourceInUseException"))
    );
    let described = caller(g1.http)
        .ok(
            "DescribeStreamConsumer",
            json!({"ConsumerARN": consumer_arn}),
        )
        .await;
    assert_eq!(
        described["ConsumerDescription"]["ConsumerARN"],
        consumer_arn
    );

    // Likewise a deregistration that reached group 0 only.
    caller(g0.http)
        .ok(
            "DeregisterStreamConsumer",
            json!({"ConsumerARN": consumer_arn}),
        )
        .await;
    let (status, retried) = through
        .call(
            "DeregisterStreamConsumer",
            json!({"ConsumerARN": consumer_arn}),
        )
        .await;
    assert_eq!(
        (status, retried["__type"].as_str()),
        (400, Some("ResourceNotFoundException"))
    );
    let listed = caller(g1.http)
        .ok("ListStreamConsumers", json!({"StreamARN": stream_arn}))
        .await;
    assert_eq!(listed["Consumers"], json!([]), "{listed}");
}
