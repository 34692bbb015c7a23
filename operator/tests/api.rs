//! The operator's Kinesis API against a real API server: CreateStream makes a `Stream` object,
//! a name taken in any namespace is `ResourceInUseException`, UpdateShardCount waits for an
//! ACTIVE stream and then sets `spec.shardCount`, DeleteStream (by name or ARN) deletes the object,
//! and CBOR bodies are answered in CBOR. The test runs no controller; the status a controller
//! would write is patched in by hand.
//!
//! Needs `KUBECONFIG`, like `tests/crd.rs`; run with
//! `KUBECONFIG=e2e/.cluster/kubeconfig cargo test -p riffle-operator --test api -- --include-ignored`.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::{TestNamespace, setup, wait_gone};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;
use kube::api::{Patch, PatchParams};
use riffle_operator::{
    api::{self, ApiState},
    metrics::Metrics,
    settings::Settings,
};
use riffle_wire::{Format, Value};
use serde_json::json;

struct Endpoint {
    address: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
}

async fn start(client: kube::Client, namespace: &str) -> Endpoint {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let state = Arc::new(ApiState {
        client,
        settings: Settings {
            image: "riffle:test".into(),
            image_pull_policy: "IfNotPresent".into(),
            namespace: namespace.into(),
            api_namespace: namespace.into(),
            region: "us-east-1".into(),
            account: "000000000000".into(),
        },
        metrics: Arc::new(Metrics::default()),
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(api::serve(listener, state, async {
        let _ = stopped.await;
    }));
    Endpoint { address, stop }
}

/// Sends `operation` with `body` in `format`; returns the HTTP status and the decoded answer.
async fn call(
    endpoint: &Endpoint,
    format: Format,
    operation: &str,
    body: serde_json::Value,
) -> (u16, Value) {
    let json_body = Format::Json
        .decode(body.to_string().as_bytes())
        .expect("request as a document");
    let request = hyper::Request::post(format!("http://{}/", endpoint.address))
        .header("x-amz-target", format!("Kinesis_20131202.{operation}"))
        .header("content-type", format.content_type())
        .header("authorization", "AWS4-HMAC-SHA256 Credential=test/...")
        .body(Full::new(Bytes::from(format.encode(&json_body))))
        .expect("request");
    let client = HttpClient::builder(TokioExecutor::new()).build_http();
    let response = client.request(request).await.expect("answered");
    let status = response.status().as_u16();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, format.decode(&bytes).expect("decodable answer"))
}

fn error_type(answer: &Value) -> &str {
    answer
        .get("__type")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

#[tokio::test]
#[ignore = "needs a real API server (KUBECONFIG); run with --include-ignored"]
async fn stream_management_calls_become_changes_of_stream_objects() {
    let client = setup().await;
    let ns = TestNamespace::new(&client, "api").await;
    let other = TestNamespace::new(&client, "api-other").await;
    let endpoint = start(client.clone(), &ns.name).await;
    let name = format!("made-{}", std::process::id());

    let (status, answer) = call(
        &endpoint,
        Format::Json,
        "CreateStream",
        json!({"StreamName": name, "ShardCount": 2}),
    )
    .await;
    assert_eq!((status, error_type(&answer)), (200, ""), "{answer:?}");
    let stream = ns.typed().get(&name).await.expect("the Stream object");
    assert_eq!(stream.spec.shard_count, Some(2));
    assert_eq!(stream.spec.replication_factor, 3);

    let (status, answer) = call(
        &endpoint,
        Format::Json,
        "CreateStream",
        json!({"StreamName": name, "ShardCount": 1}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(error_type(&answer), "ResourceInUseException");

    // A namesake in another namespace takes the name as well: names are cluster-wide.
    other
        .create("taken", json!({"shardCount": 1}))
        .await
        .expect("namesake");
    let (_, answer) = call(
        &endpoint,
        Format::Cbor,
        "CreateStream",
        json!({"StreamName": "taken", "ShardCount": 1}),
    )
    .await;
    assert_eq!(
        error_type(&answer),
        "ResourceInUseException",
        "answered in CBOR"
    );

    let scale =
        json!({"StreamName": name, "TargetShardCount": 4, "ScalingType": "UNIFORM_SCALING"});
    let (_, answer) = call(&endpoint, Format::Json, "UpdateShardCount", scale.clone()).await;
    assert_eq!(
        error_type(&answer),
        "ResourceInUseException",
        "not ACTIVE before the controller reports it"
    );
    // What the controller writes once the stream serves.
    let status_patch = json!({
        "apiVersion": "riffle.dev/v1alpha1", "kind": "Stream",
        "status": {"openShardCount": 2, "conditions": [{
            "type": "Ready", "status": "True", "reason": "Serving", "message": "",
            "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
    });
    ns.typed()
        .patch_status(
            &name,
            &PatchParams::apply("riffle-operator").force(),
            &Patch::Apply(status_patch),
        )
        .await
        .expect("status");
    let (status, answer) = call(&endpoint, Format::Json, "UpdateShardCount", scale).await;
    assert_eq!(status, 200, "{answer:?}");
    assert_eq!(answer.get("CurrentShardCount"), Some(&Value::Int(2)));
    assert_eq!(
        ns.typed().get(&name).await.expect("get").spec.shard_count,
        Some(4)
    );

    let arn = format!("arn:aws:kinesis:us-east-1:000000000000:stream/{name}");
    let (status, answer) = call(
        &endpoint,
        Format::Json,
        "DeleteStream",
        json!({"StreamARN": arn}),
    )
    .await;
    assert_eq!(status, 200, "{answer:?}");
    // An operator installed in the cluster may have put its finalizer on the object; it goes
    // once that operator has released it.
    let streams = ns.typed();
    wait_gone(
        "the Stream object to go",
        Duration::from_secs(60),
        &streams,
        &name,
    )
    .await;
    let (_, answer) = call(
        &endpoint,
        Format::Json,
        "DeleteStream",
        json!({"StreamName": name}),
    )
    .await;
    assert_eq!(error_type(&answer), "ResourceNotFoundException");

    let (_, answer) = call(
        &endpoint,
        Format::Json,
        "PutRecord",
        json!({"StreamName": name}),
    )
    .await;
    assert_eq!(error_type(&answer), "UnknownOperationException");

    let _ = endpoint.stop.send(());
    ns.finish().await;
    other.finish().await;
}
