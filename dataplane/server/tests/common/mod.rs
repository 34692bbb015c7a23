//! What the integration tests share: Kinesis API callers, and for the tests driving replicated
//! groups an HTTP client, one Kinesis call that reports the replica's leader hint and the group
//! of replica processes itself ([`group`]).

// Each test binary uses part of this module.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

pub mod group;

/// A loopback port nothing listens on at the time of asking.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

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
    call_as(client, address, operation, body, patience, false).await
}

/// [`call`], asking a replica that does not lead to answer a read from its own copy
/// (`x-riffle-read-local`), to see what that replica stores.
pub async fn call_local(
    client: &HttpClient,
    address: &str,
    operation: &str,
    body: &Value,
    patience: Duration,
) -> Option<(u16, Value, Option<String>)> {
    call_as(client, address, operation, body, patience, true).await
}

async fn call_as(
    client: &HttpClient,
    address: &str,
    operation: &str,
    body: &Value,
    patience: Duration,
    read_local: bool,
) -> Option<(u16, Value, Option<String>)> {
    let mut request = http::Request::post(format!("http://{address}/"))
        .header("x-amz-target", format!("Kinesis_20131202.{operation}"))
        .header("content-type", "application/x-amz-json-1.1")
        .header("authorization", "AWS4-HMAC-SHA256 test");
    if read_local {
        request = request.header("x-riffle-read-local", "1");
    }
    let request = request
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

/// Kinesis API calls to one endpoint.
#[derive(Clone)]
pub struct Caller {
    /// The HTTP client.
    pub client: Client<HttpConnector, Full<Bytes>>,
    /// `http://<address>/`.
    pub endpoint: String,
}

/// A caller of the Kinesis API at `address`.
pub fn caller(address: SocketAddr) -> Caller {
    Caller {
        client: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
        endpoint: format!("http://{address}/"),
    }
}

impl Caller {
    /// A request of `operation` with `body` of `content_type`.
    pub fn request(
        &self,
        operation: &str,
        body: Bytes,
        content_type: &str,
    ) -> http::Request<Full<Bytes>> {
        http::Request::post(&self.endpoint)
            .header("x-amz-target", format!("Kinesis_20131202.{operation}"))
            .header("content-type", content_type)
            .header("authorization", "AWS4-HMAC-SHA256 test")
            .body(Full::new(body))
            .unwrap()
    }

    /// A JSON call: (status, not-hosted header, answer).
    pub async fn call_with_headers(
        &self,
        operation: &str,
        body: Value,
    ) -> (u16, Option<String>, Value) {
        let request = self.request(
            operation,
            Bytes::from(body.to_string()),
            "application/x-amz-json-1.1",
        );
        let response = self.client.request(request).await.unwrap();
        let status = response.status().as_u16();
        let not_hosted = response
            .headers()
            .get("x-riffle-not-hosted")
            .map(|v| v.to_str().unwrap().to_string());
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            not_hosted,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// A JSON call: (status, answer).
    pub async fn call(&self, operation: &str, body: Value) -> (u16, Value) {
        let (status, _, answer) = self.call_with_headers(operation, body).await;
        (status, answer)
    }

    /// A call that must succeed.
    pub async fn ok(&self, operation: &str, body: Value) -> Value {
        let (status, answer) = self.call(operation, body).await;
        assert_eq!(status, 200, "{operation}: {answer}");
        answer
    }

    /// A CBOR call: (status, answer).
    pub async fn call_cbor(
        &self,
        operation: &str,
        body: &riffle_wire::Value,
    ) -> (u16, riffle_wire::Value) {
        let format = riffle_wire::Format::Cbor;
        let request = self.request(
            operation,
            Bytes::from(format.encode(body)),
            riffle_wire::CBOR_CONTENT_TYPE,
        );
        let response = self.client.request(request).await.unwrap();
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, format.decode(&bytes).unwrap())
    }
}
