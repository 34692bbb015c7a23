//! The gateway in front of a replicated shard group of three real processes
//! (`riffle-group-replica`) on loopback, its route pointing at a replica that does not lead:
//! writes sent through the gateway reach the leader by following the follower's
//! `x-riffle-leader` answer, and clients never see the 503.

#![allow(clippy::unwrap_used)] // test fixtures fail loudly by design

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use riffle_server::gateway::{self, GatewayOptions};
use serde_json::{Value, json};

mod common;
use common::group::{Group, metrics};
use common::{HttpClient, client, free_port};

const STREAM: &str = "orders";

/// One Kinesis call: status, body and the `x-riffle-leader` header; `None` if unanswered
/// within 10 s.
async fn call(
    client: &HttpClient,
    address: &str,
    operation: &str,
    body: &Value,
) -> Option<(u16, Value, Option<String>)> {
    common::call(client, address, operation, body, Duration::from_secs(10)).await
}

/// Creates the stream on the leader and returns (leader, a follower that knows the leader).
async fn leader_and_follower(client: &HttpClient, group: &Group) -> (String, String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let leader = loop {
        let mut found = None;
        for member in &group.members {
            if metrics(client, &member.api)
                .await
                .is_some_and(|m| m.get("riffle_replica_is_leader") == Some(&1))
            {
                found = Some(member.api.clone());
            }
        }
        if let Some(leader) = found {
            break leader;
        }
        assert!(Instant::now() < deadline, "no leader elected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (status, body, _) = call(
        client,
        &leader,
        "CreateStream",
        &json!({"StreamName": STREAM, "ShardCount": 2}),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    // A follower that answers writes with the leader's address.
    loop {
        for member in group.members.iter().filter(|m| m.api != leader) {
            if let Some((503, _, Some(named))) = call(
                client,
                &member.api,
                "PutRecord",
                &json!({"StreamName": STREAM, "PartitionKey": "probe", "Data": "cA=="}),
            )
            .await
                && named == leader
            {
                return (leader, member.api.clone());
            }
        }
        assert!(
            Instant::now() < deadline,
            "no follower named the leader {leader}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn start_gateway(client: &HttpClient, routes: PathBuf) -> String {
    let listen = format!("127.0.0.1:{}", free_port());
    tokio::spawn(gateway::run(
        GatewayOptions {
            listen: listen.parse().unwrap(),
            routes,
            account: "000000000000".into(),
        },
        std::future::pending(),
    ));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let request = http::Request::get(format!("http://{listen}/healthz"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        if client
            .request(request)
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return listen;
        }
        assert!(Instant::now() < deadline, "gateway did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_the_gateway_reach_the_leader_from_a_follower_route() {
    let group = Group::start();
    let client = client();
    let (_leader, follower) = leader_and_follower(&client, &group).await;
    let routes_dir = tempfile::tempdir().unwrap();
    let routes = routes_dir.path().join("routes.json");
    std::fs::write(
        &routes,
        json!({"streams": {STREAM: format!("http://{follower}")}}).to_string(),
    )
    .unwrap();
    let through = start_gateway(&client, routes).await;

    // Single writes, batched writes and settings changes all succeed through the follower.
    let mut acknowledged: HashMap<String, String> = HashMap::new();
    for i in 0..5 {
        let data = format!("{i:03}");
        let encoded = base64_of(&data);
        let (status, put, _) = call(
            &client,
            &through,
            "PutRecord",
            &json!({"StreamName": STREAM, "PartitionKey": format!("k{i}"), "Data": encoded}),
        )
        .await
        .unwrap();
        assert_eq!(status, 200, "PutRecord through the gateway: {put}");
        acknowledged.insert(put["SequenceNumber"].as_str().unwrap().into(), data);
    }
    let records: Vec<Value> = (5..15)
        .map(|i| json!({"PartitionKey": format!("k{i}"), "Data": base64_of(&format!("{i:03}"))}))
        .collect();
    let (status, batch, _) = call(
        &client,
        &through,
        "PutRecords",
        &json!({"StreamName": STREAM, "Records": records}),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "PutRecords through the gateway: {batch}");
    assert_eq!(batch["FailedRecordCount"], 0, "{batch}");
    for (i, entry) in batch["Records"].as_array().unwrap().iter().enumerate() {
        acknowledged.insert(
            entry["SequenceNumber"].as_str().unwrap().into(),
            format!("{:03}", i + 5),
        );
    }
    let (status, body, _) = call(
        &client,
        &through,
        "IncreaseStreamRetentionPeriod",
        &json!({"StreamName": STREAM, "RetentionPeriodHours": 48}),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "retention through the gateway: {body}");

    // Reads through the gateway go to the leader it found, so they see every acknowledged
    // record at once, under the sequence number it was given.
    let (_, described, _) = call(
        &client,
        &through,
        "DescribeStream",
        &json!({"StreamName": STREAM}),
    )
    .await
    .unwrap();
    let description = &described["StreamDescription"];
    assert_eq!(description["RetentionPeriodHours"], 48);
    let mut stored: HashMap<String, String> = HashMap::new();
    for shard in description["Shards"].as_array().unwrap() {
        let (_, iterator, _) = call(
            &client,
            &through,
            "GetShardIterator",
            &json!({"StreamName": STREAM, "ShardId": shard["ShardId"], "ShardIteratorType": "TRIM_HORIZON"}),
        )
        .await
        .unwrap();
        let (status, read, _) = call(
            &client,
            &through,
            "GetRecords",
            &json!({"ShardIterator": iterator["ShardIterator"]}),
        )
        .await
        .unwrap();
        assert_eq!(status, 200, "{read}");
        for record in read["Records"].as_array().unwrap() {
            stored.insert(
                record["SequenceNumber"].as_str().unwrap().into(),
                String::from_utf8(decode_base64(record["Data"].as_str().unwrap())).unwrap(),
            );
        }
    }
    for (sequence, data) in &acknowledged {
        assert_eq!(
            stored.get(sequence),
            Some(data),
            "record {data} at {sequence}"
        );
    }
    assert_eq!(stored.len(), acknowledged.len(), "nothing else was stored");
}

fn base64_of(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn decode_base64(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}
