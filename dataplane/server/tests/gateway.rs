//! The gateway in front of two data-plane endpoints: requests reach the endpoint hosting their
//! stream, answers (including errors) come back unchanged, ListStreams is the union.

#![allow(clippy::unwrap_used)] // test fixtures fail loudly by design

use std::net::SocketAddr;
use std::time::Duration;

use riffle_server::gateway::{self, GatewayOptions};
use riffle_server::streams::{Catalog, StreamsConfig};
use serde_json::json;
use tokio::net::TcpListener;

mod common;
use common::caller;

/// Starts a data-plane endpoint over its own data directory.
async fn data_plane(dir: &std::path::Path) -> SocketAddr {
    let mut config = StreamsConfig::new(dir.to_path_buf(), [1u8; 32]);
    config.limits.enabled = false;
    let catalog = Catalog::open(config).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(riffle_server::http::serve(
        catalog,
        listener,
        std::future::pending(),
    ));
    address
}

#[tokio::test]
async fn routes_each_stream_to_its_endpoint() {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let first = data_plane(dirs[0].path()).await;
    let second = data_plane(dirs[1].path()).await;
    for (address, stream) in [(first, "orders"), (second, "clicks")] {
        let (status, _) = caller(address)
            .call(
                "CreateStream",
                json!({"StreamName": stream, "ShardCount": 2}),
            )
            .await;
        assert_eq!(status, 200);
    }
    let routes_dir = tempfile::tempdir().unwrap();
    let routes = routes_dir.path().join("routes.json");
    std::fs::write(
        &routes,
        json!({"streams": {"orders": format!("http://{first}"), "clicks": format!("http://{second}")}})
            .to_string(),
    )
    .unwrap();
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
    let through = caller(listen);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let ready = through
            .client
            .get(format!("http://{listen}/healthz").parse().unwrap())
            .await;
        if ready.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gateway did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Writes and reads reach the endpoint that hosts the stream.
    let (status, put) = through
        .call(
            "PutRecord",
            json!({"StreamName": "clicks", "PartitionKey": "k", "Data": "aGk="}),
        )
        .await;
    assert_eq!(status, 200, "{put}");
    let shard = put["ShardId"].as_str().unwrap().to_string();
    let (_, direct) = caller(second)
        .call("DescribeStreamSummary", json!({"StreamName": "clicks"}))
        .await;
    assert_eq!(direct["StreamDescriptionSummary"]["OpenShardCount"], 2);
    let (_, iterator) = through
        .call(
            "GetShardIterator",
            json!({"StreamName": "clicks", "ShardId": shard, "ShardIteratorType": "TRIM_HORIZON"}),
        )
        .await;
    let (status, records) = through
        .call(
            "GetRecords",
            json!({"ShardIterator": iterator["ShardIterator"]}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(records["Records"][0]["Data"], "aGk=");
    let (_, on_first) = caller(first).call("ListStreams", json!({})).await;
    assert_eq!(on_first["StreamNames"], json!(["orders"]));

    // ListStreams is the union; unknown streams and management calls get AWS errors.
    let (_, listed) = through.call("ListStreams", json!({})).await;
    assert_eq!(listed["StreamNames"], json!(["clicks", "orders"]));
    let (_, paged) = through.call("ListStreams", json!({"Limit": 1})).await;
    assert_eq!(paged["StreamNames"], json!(["clicks"]));
    assert_eq!(paged["HasMoreStreams"], true);
    let (status, missing) = through
        .call("DescribeStream", json!({"StreamName": "nope"}))
        .await;
    assert_eq!(
        (status, missing["__type"].as_str()),
        (400, Some("ResourceNotFoundException"))
    );
    let (status, refused) = through
        .call(
            "CreateStream",
            json!({"StreamName": "new", "ShardCount": 1}),
        )
        .await;
    assert_eq!(
        (status, refused["__type"].as_str()),
        (400, Some("AccessDeniedException"))
    );
    // A data-plane error comes back as the data plane wrote it.
    let (status, invalid) = through
        .call(
            "PutRecord",
            json!({"StreamName": "orders", "PartitionKey": "", "Data": "aGk="}),
        )
        .await;
    assert_eq!(
        (status, invalid["__type"].as_str()),
        (400, Some("ValidationException"))
    );
    // The gateway counts what it relayed.
    let metrics = through
        .client
        .get(format!("http://{listen}/metrics").parse().unwrap())
        .await
        .unwrap();
    assert!(metrics.status().is_success());
    let text = String::from_utf8(
        http_body_util::BodyExt::collect(metrics.into_body())
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    assert!(
        text.contains("riffle_gateway_requests_total{operation=\"PutRecord\",status=\"400\"} 1"),
        "{text}"
    );
    assert!(text.contains("riffle_gateway_routed_streams 2"), "{text}");
}
