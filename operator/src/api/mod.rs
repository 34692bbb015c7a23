//! The operator's Kinesis API: CreateStream, DeleteStream and UpdateShardCount in the AWS JSON
//! 1.1 (and CBOR) protocol, on port 4570. The gateway sends these three operations here (its
//! route file names this endpoint as `admin`), so `aws kinesis create-stream` against the gateway
//! creates a `Stream` object that `kubectl get streams` lists, and the controller does the rest.
//!
//! Requests are not authenticated here: the gateway is the front door and relays them as they
//! came. Everything else about a stream is served by its shard group, never by the operator.

pub mod operations;

use std::future::Future;
use std::sync::Arc;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use kube::Client;
use riffle_wire::{AwsError, Doc, Format, Value};
use tokio::net::TcpListener;

use crate::metrics::Metrics;
use crate::settings::Settings;

const TARGET_PREFIX: &str = "Kinesis_20131202.";
/// Largest request accepted; these operations carry a few names and numbers.
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// The operations served here.
pub const OPERATIONS: [&str; 3] = ["CreateStream", "DeleteStream", "UpdateShardCount"];

/// What every request needs.
pub struct ApiState {
    /// Kubernetes client.
    pub client: Client,
    /// Installation settings (account, region, the namespace of API-created streams).
    pub settings: Settings,
    /// Operator metrics.
    pub metrics: Arc<Metrics>,
}

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    state: Arc<ApiState>,
    shutdown: impl Future<Output = ()>,
) {
    crate::listener::serve(listener, "stream API", shutdown, move |request| {
        let state = state.clone();
        async move { handle(&state, request).await }
    })
    .await;
}

/// Answers one request.
pub async fn handle(state: &ApiState, request: Request<Incoming>) -> Response<Full<Bytes>> {
    if request.method() != Method::POST || request.uri().path() != "/" {
        let mut response = Response::new(Full::new(Bytes::from_static(b"not found\n")));
        *response.status_mut() = StatusCode::NOT_FOUND;
        return response;
    }
    let (parts, body) = request.into_parts();
    let operation = operation(&parts.headers);
    let format = match content_format(&parts.headers) {
        Ok(format) => format,
        Err(error) => return answer(state, &operation, Format::Json, Err(error)),
    };
    let body = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) => {
            let error = AwsError::serialization(format!("Cannot read the request body: {error}"));
            return answer(state, &operation, format, Err(error));
        }
    };
    let result = dispatch(state, &operation, format, &body).await;
    answer(state, &operation, format, result)
}

async fn dispatch(
    state: &ApiState,
    operation: &str,
    format: Format,
    body: &[u8],
) -> Result<Value, AwsError> {
    let value = format.decode(body)?;
    let doc = Doc::new(&value, format)?;
    let (client, settings) = (&state.client, &state.settings);
    match operation {
        "CreateStream" => operations::create_stream(client, settings, &doc).await,
        "DeleteStream" => operations::delete_stream(client, settings, &doc).await,
        "UpdateShardCount" => operations::update_shard_count(client, settings, &doc).await,
        "" => Err(AwsError::unknown_operation(
            "Missing or unrecognized X-Amz-Target header.",
        )),
        other => Err(AwsError::unknown_operation(format!(
            "Operation {other} is not supported by the stream-management endpoint; send it to the gateway."
        ))),
    }
}

fn operation(headers: &HeaderMap) -> String {
    headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.strip_prefix(TARGET_PREFIX))
        .unwrap_or_default()
        .to_owned()
}

/// The body format named by `Content-Type`; JSON when absent.
fn content_format(headers: &HeaderMap) -> Result<Format, AwsError> {
    match headers.get("content-type").and_then(|v| v.to_str().ok()) {
        None => Ok(Format::Json),
        Some(content_type) => Format::from_content_type(content_type).ok_or_else(|| {
            AwsError::serialization(format!("Unsupported Content-Type {content_type}."))
        }),
    }
}

fn answer(
    state: &ApiState,
    operation: &str,
    format: Format,
    result: Result<Value, AwsError>,
) -> Response<Full<Bytes>> {
    // Only known operation names become metric labels.
    let label = if OPERATIONS.contains(&operation) {
        operation
    } else {
        "other"
    };
    let (status, body) = match result {
        Ok(value) => {
            state.metrics.api_request(label, "ok");
            (StatusCode::OK, format.encode(&value))
        }
        Err(error) => {
            state.metrics.api_request(label, error.kind);
            tracing::debug!(operation, %error, "API request refused");
            let status =
                StatusCode::from_u16(error.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (status, error.to_body(format))
        }
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = format.content_type().parse() {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operation_comes_from_the_target_header() {
        let mut headers = HeaderMap::new();
        assert_eq!(operation(&headers), "");
        headers.insert(
            "x-amz-target",
            "Kinesis_20131202.CreateStream".parse().expect("header"),
        );
        assert_eq!(operation(&headers), "CreateStream");
        headers.insert(
            "x-amz-target",
            "Other.CreateStream".parse().expect("header"),
        );
        assert_eq!(operation(&headers), "");
    }

    #[test]
    fn bodies_are_json_unless_they_say_cbor() {
        let mut headers = HeaderMap::new();
        assert_eq!(content_format(&headers), Ok(Format::Json));
        headers.insert(
            "content-type",
            "application/x-amz-cbor-1.1".parse().expect("header"),
        );
        assert_eq!(content_format(&headers), Ok(Format::Cbor));
        headers.insert("content-type", "text/plain".parse().expect("header"));
        assert_eq!(
            content_format(&headers).map_err(|e| e.kind),
            Err("SerializationException")
        );
    }
}
