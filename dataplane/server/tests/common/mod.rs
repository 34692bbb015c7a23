//! What the tests driving replicated groups share: an HTTP client and one Kinesis call that
//! reports the replica's leader hint.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// A plain HTTP/1.1 client.
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A client that gives up connecting after half a second.
pub fn client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(Duration::from_millis(500)));
    Client::builder(TokioExecutor::new()).build(connector)
}

/// One Kinesis call (JSON) to `address`: status, body and the `x-riffle-leader` header. `None`
/// if it could not be sent or was not answered (head and body) within `patience` each.
pub async fn call(
    client: &HttpClient,
    address: &str,
    operation: &str,
    body: &Value,
    patience: Duration,
) -> Option<(u16, Value, Option<String>)> {
    let request = http::Request::post(format!("http://{address}/"))
        .header("x-amz-target", format!("Kinesis_20131202.{operation}"))
        .header("content-type", "application/x-amz-json-1.1")
        .header("authorization", "AWS4-HMAC-SHA256 test")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let response = tokio::time::timeout(patience, client.request(request))
        .await
        .ok()?
        .ok()?;
    let status = response.status().as_u16();
    let leader = response
        .headers()
        .get("x-riffle-leader")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let bytes = tokio::time::timeout(patience, response.into_body().collect())
        .await
        .ok()?
        .ok()?
        .to_bytes();
    Some((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        leader,
    ))
}
