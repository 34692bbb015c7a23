//! The gateway: a stateless front door that speaks the Kinesis API and relays each request to
//! the data-plane endpoint hosting the stream it names (and stream-management calls to the
//! operator), so clients see one endpoint however streams are placed.
//!
//! It never needs Kubernetes: it learns placement from its route file (see [`routes`]).

pub mod routes;
pub mod target;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use riffle_wire::{AwsError, Doc, Format, Value};
use tokio::net::TcpListener;

use crate::http::{Body, BodyError, full, read_body, text};
use crate::kinesis::MAX_BODY_BYTES;
use routes::{RouteTable, Routes};
use target::{Target, stream_from_arn};

const TARGET_PREFIX: &str = "Kinesis_20131202.";

/// Settings of the gateway process.
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    /// Address of the Kinesis API, `/healthz` and `/readyz`.
    pub listen: SocketAddr,
    /// The route file.
    pub routes: PathBuf,
    /// Account named in error messages.
    pub account: String,
}

struct Gateway {
    routes: Routes,
    client: Client<HttpConnector, Full<Bytes>>,
    account: String,
}

/// Runs the gateway until `shutdown` resolves.
pub async fn run(
    options: GatewayOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let routes = Routes::load(&options.routes)?;
    let reloader = routes.spawn_reloader();
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let gateway = Arc::new(Gateway {
        routes,
        client: Client::builder(TokioExecutor::new()).build(connector),
        account: options.account,
    });
    let listener = TcpListener::bind(options.listen).await?;
    tracing::info!(listen = %options.listen, routes = %options.routes.display(), "gateway is serving");
    let served = crate::http::serve_with(listener, shutdown, move |request| {
        let gateway = gateway.clone();
        async move { gateway.handle(request).await }
    })
    .await;
    reloader.abort();
    served
}

impl Gateway {
    async fn handle(&self, request: Request<Incoming>) -> Response<Body> {
        match (request.method(), request.uri().path()) {
            (&Method::POST, "/") => self.relay(request).await,
            (&Method::GET, "/healthz") | (&Method::GET, "/readyz") => text(StatusCode::OK, "ok\n"),
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }

    async fn relay(&self, request: Request<Incoming>) -> Response<Body> {
        let (parts, body) = request.into_parts();
        let format = parts
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map_or(Some(Format::Json), Format::from_content_type)
            .unwrap_or(Format::Json);
        let operation = parts
            .headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .and_then(|t| t.strip_prefix(TARGET_PREFIX))
            .unwrap_or_default()
            .to_string();
        let body = match read_body(body, MAX_BODY_BYTES).await {
            Ok(body) => body,
            Err(BodyError::TooLarge) => {
                return error_response(
                    format,
                    &AwsError::new(
                        riffle_wire::kind::SERIALIZATION,
                        413,
                        "Request body is too large.",
                    ),
                );
            }
            Err(BodyError::Broken(reason)) => {
                return error_response(format, &AwsError::serialization(reason));
            }
        };
        let routes = self.routes.current();
        let decided = format.decode(&body).and_then(|value| {
            let doc = Doc::new(&value, format)?;
            target::target(&operation, &doc, stream_from_arn)
        });
        let target = match decided {
            Ok(target) => target,
            // Let a data-plane endpoint produce the exact error for malformed requests.
            Err(_) => Target::Any,
        };
        let destination = match &target {
            Target::Stream(name) => routes.streams.get(name).cloned().ok_or_else(|| {
                AwsError::resource_not_found(format!(
                    "Stream {name} under account {} not found.",
                    self.account
                ))
            }),
            Target::Admin => routes.admin.clone().ok_or_else(|| {
                AwsError::access_denied(format!(
                    "{operation} is not enabled on this gateway: manage streams as Stream objects."
                ))
            }),
            Target::Any => first_backend(&routes).ok_or_else(no_backend),
            Target::AllStreams => return self.list_streams(&parts, body, format, &routes).await,
        };
        match destination {
            Ok(base) => self.forward(&parts, body, &base).await,
            Err(error) => error_response(format, &error),
        }
    }

    /// Sends the request unchanged to `base` and relays the answer as it streams back.
    async fn forward(
        &self,
        parts: &http::request::Parts,
        body: Bytes,
        base: &str,
    ) -> Response<Body> {
        let uri = format!("{}/", base.trim_end_matches('/'));
        let mut builder = Request::builder().method(Method::POST).uri(&uri);
        for (name, value) in &parts.headers {
            if name != http::header::HOST && name != http::header::CONTENT_LENGTH {
                builder = builder.header(name, value);
            }
        }
        let request = match builder.body(Full::new(body)) {
            Ok(request) => request,
            Err(error) => return unavailable(&format!("cannot relay the request: {error}")),
        };
        match self.client.request(request).await {
            Ok(response) => {
                let (parts, incoming) = response.into_parts();
                Response::from_parts(parts, incoming.map_err(Into::into).boxed())
            }
            Err(error) => {
                tracing::warn!(%uri, %error, "data-plane endpoint unreachable");
                unavailable(&format!(
                    "the endpoint serving this stream is unreachable: {error}"
                ))
            }
        }
    }

    /// ListStreams across every data-plane endpoint: the union, ordered by name, paged as the
    /// request asks.
    async fn list_streams(
        &self,
        parts: &http::request::Parts,
        body: Bytes,
        format: Format,
        routes: &RouteTable,
    ) -> Response<Body> {
        let request = format.decode(&body).unwrap_or(Value::map().build());
        let doc = match Doc::new(&request, format) {
            Ok(doc) => doc,
            Err(error) => return error_response(format, &error),
        };
        let limit = doc
            .int_opt("Limit")
            .ok()
            .flatten()
            .unwrap_or(100)
            .clamp(1, 10_000) as usize;
        let after = doc
            .str_opt("ExclusiveStartStreamName")
            .ok()
            .flatten()
            .map(str::to_string);
        let mut backends: Vec<&String> = routes.streams.values().collect();
        backends.sort();
        backends.dedup();
        let everything = format.encode(&Value::map().with("Limit", 10_000i64).build());
        let mut summaries: Vec<(String, Value)> = Vec::new();
        for base in backends {
            let response = self
                .forward(parts, Bytes::from(everything.clone()), base)
                .await;
            if !response.status().is_success() {
                return response;
            }
            let Ok(collected) = response.into_body().collect().await else {
                return unavailable("a data-plane endpoint broke off its answer");
            };
            let Ok(answer) = format.decode(&collected.to_bytes()) else {
                return unavailable("a data-plane endpoint answered ListStreams unreadably");
            };
            if let Some(Value::List(items)) = answer.get("StreamSummaries") {
                for item in items {
                    if let Some(name) = item.get("StreamName").and_then(Value::as_str)
                        && routes.streams.contains_key(name)
                    {
                        summaries.push((name.to_string(), item.clone()));
                    }
                }
            }
        }
        summaries.sort_by(|a, b| a.0.cmp(&b.0));
        summaries.dedup_by(|a, b| a.0 == b.0);
        let remaining: Vec<(String, Value)> = summaries
            .into_iter()
            .filter(|(name, _)| after.as_deref().is_none_or(|after| name.as_str() > after))
            .collect();
        let page: Vec<&(String, Value)> = remaining.iter().take(limit).collect();
        let reply = Value::map()
            .with(
                "StreamNames",
                Value::List(
                    page.iter()
                        .map(|(name, _)| Value::from(name.as_str()))
                        .collect(),
                ),
            )
            .with("HasMoreStreams", remaining.len() > limit)
            .with(
                "StreamSummaries",
                Value::List(page.iter().map(|(_, v)| v.clone()).collect()),
            )
            .build();
        Response::builder()
            .header("content-type", format.content_type())
            .body(full(format.encode(&reply)))
            .unwrap_or_else(|_| unavailable("cannot build the answer"))
    }
}

fn first_backend(routes: &RouteTable) -> Option<String> {
    routes.streams.values().next().cloned()
}

fn no_backend() -> AwsError {
    AwsError::service_unavailable("No data-plane endpoint is configured yet.")
}

fn unavailable(message: &str) -> Response<Body> {
    error_response(
        Format::Json,
        &AwsError::service_unavailable(message.to_string()),
    )
}

fn error_response(format: Format, error: &AwsError) -> Response<Body> {
    Response::builder()
        .status(error.status)
        .header("content-type", format.content_type())
        .body(full(error.to_body(format)))
        .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "error\n"))
}
