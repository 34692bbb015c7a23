//! The gateway: a stateless front door that speaks the Kinesis API and relays each request to
//! the data-plane endpoint hosting the stream it names (and stream-management calls to the
//! operator), so clients see one endpoint however streams are placed.
//!
//! It never needs Kubernetes: it learns placement from its route file (see [`routes`]).
//!
//! A stream may be spread over several shard groups, each holding the whole description but
//! storing only some shards. The gateway then makes it look like one stream: record and shard
//! requests go to the group storing their shard ([`target::within`]), PutRecords is split and
//! merged ([`fan_out`]), changes are made in every group ([`broadcast`]), shard listings come
//! from group 0 with closed shards' ends from their own groups ([`listing`]), and a group that
//! does not host the shard it was sent is retried while the routes catch up ([`upstream`]).
//!
//! A replicated group's replicas that do not lead answer writes with the leader's address;
//! every request the gateway forwards follows that answer to the leader ([`upstream`]), so a
//! route may name any replica, or a DNS name that resolves to all of them.

pub mod broadcast;
pub mod fan_out;
pub mod listing;
pub mod metrics;
pub mod routes;
pub mod target;
pub mod upstream;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use riffle_wire::{AwsError, Doc, Format, Value};
use tokio::net::TcpListener;
use tokio::time::Instant;

use crate::http::{Body, BodyError, full, read_body, text};
use crate::kinesis::MAX_BODY_BYTES;
use metrics::GatewayMetrics;
use routes::{RouteTable, Routes, StreamRoute};
use target::{Target, Within, stream_from_arn};
use upstream::{Answer, NOT_HOSTED_PATIENCE, Upstream, not_hosted, retry_pause};

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
    upstream: Upstream,
    account: String,
    metrics: Arc<GatewayMetrics>,
}

/// A client request, read whole.
struct Call {
    parts: http::request::Parts,
    body: Bytes,
    format: Format,
    operation: String,
}

/// Runs the gateway until `shutdown` resolves.
pub async fn run(
    options: GatewayOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let routes = Routes::load(&options.routes)?;
    let reloader = routes.spawn_reloader();
    let metrics = Arc::new(GatewayMetrics::default());
    let gateway = Arc::new(Gateway {
        routes,
        upstream: Upstream::with_metrics(metrics.clone()),
        account: options.account,
        metrics,
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
            (&Method::POST, "/") => {
                let started = Instant::now();
                let operation = operation_of(request.headers());
                let response = self.relay(request).await;
                self.metrics.request(
                    &operation,
                    response.status().as_u16(),
                    started.elapsed().as_secs_f64(),
                );
                response
            }
            (&Method::GET, "/healthz") | (&Method::GET, "/readyz") => text(StatusCode::OK, "ok\n"),
            (&Method::GET, "/metrics") => {
                let body = self.metrics.render(self.routes.current().streams.len());
                Response::builder()
                    .header("content-type", "text/plain; version=0.0.4")
                    .body(full(body))
                    .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "error\n"))
            }
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
        let operation = operation_of(&parts.headers);
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
        let call = Call {
            parts,
            body,
            format,
            operation,
        };
        let routes = self.routes.current();
        let request = format.decode(&call.body).ok();
        let doc = request
            .as_ref()
            .and_then(|value| Doc::new(value, format).ok());
        let target = match &doc {
            Some(doc) => {
                target::target(&call.operation, doc, stream_from_arn).unwrap_or(Target::Any)
            }
            // Let a data-plane endpoint produce the exact error for malformed requests.
            None => Target::Any,
        };
        match target {
            Target::Stream(name) => {
                let Some(route) = routes.streams.get(&name) else {
                    return error_response(
                        format,
                        &AwsError::resource_not_found(format!(
                            "Stream {name} under account {} not found.",
                            self.account
                        )),
                    );
                };
                let within = match (route.spread(), &doc) {
                    (Some(_), Some(doc)) => target::within(&call.operation, doc),
                    _ => Within::First,
                };
                self.relay_in_stream(&call, request.as_ref(), &name, route, within)
                    .await
            }
            Target::Admin => match routes.admin.clone() {
                Some(base) => self.forward(&call, &base).await,
                None => error_response(
                    format,
                    &AwsError::access_denied(format!(
                        "{} is not enabled on this gateway: manage streams as Stream objects.",
                        call.operation
                    )),
                ),
            },
            Target::Any => match first_backend(&routes) {
                Some(base) => self.forward(&call, &base).await,
                None => error_response(format, &no_backend()),
            },
            Target::AllStreams => self.list_streams(&call, &routes).await,
        }
    }

    /// Relays a request addressing stream `stream`, routed by `route`, to the part of it
    /// `within` names.
    async fn relay_in_stream(
        &self,
        call: &Call,
        request: Option<&Value>,
        stream: &str,
        route: &StreamRoute,
        within: Within,
    ) -> Response<Body> {
        let format = call.format;
        match within {
            Within::Everywhere => {
                match broadcast::everywhere(
                    &self.upstream,
                    &call.parts.headers,
                    call.body.clone(),
                    route.groups(),
                    &call.operation,
                    format,
                )
                .await
                {
                    Ok(answer) => answer_response(answer),
                    Err(message) => error_response(format, &AwsError::service_unavailable(message)),
                }
            }
            Within::ShardListing => self.shard_listing(call, stream).await,
            Within::Records => {
                match request.and_then(|request| fan_out::Records::read(request, format)) {
                    Some(records) => self.put_records(call, stream, &records).await,
                    None => self.relay_to_shard(call, stream, Within::First).await,
                }
            }
            Within::First | Within::Shard(_) | Within::HashKey(_) => {
                self.relay_to_shard(call, stream, within).await
            }
        }
    }

    /// Sends the request unchanged to the group `within` names (group 0 for [`Within::First`])
    /// and relays the answer as it streams back. A group answering that it does not host the
    /// shard is asked again, or the group it names, while the routes catch up, for at most
    /// [`NOT_HOSTED_PATIENCE`].
    async fn relay_to_shard(&self, call: &Call, stream: &str, within: Within) -> Response<Body> {
        let deadline = Instant::now() + NOT_HOSTED_PATIENCE;
        let mut table = self.routes.current();
        let mut named: Option<usize> = None;
        let mut attempt = 0u32;
        loop {
            let Some(route) = table.streams.get(stream) else {
                return error_response(
                    call.format,
                    &AwsError::resource_not_found(format!(
                        "Stream {stream} under account {} not found.",
                        self.account
                    )),
                );
            };
            let groups = route.groups();
            let group = named
                .take()
                .filter(|&g| g < groups.len())
                .unwrap_or_else(|| group_of(route, within));
            let response = match self
                .upstream
                .send(&call.parts.headers, call.body.clone(), &groups[group], &[])
                .await
            {
                Ok(response) => response,
                Err(message) => return unavailable(call.format, &message),
            };
            let Some(hint) = not_hosted(response.status(), response.headers()) else {
                let (parts, incoming) = response.into_parts();
                return Response::from_parts(parts, incoming.map_err(Into::into).boxed());
            };
            if Instant::now() >= deadline {
                let what = match within {
                    Within::Shard(index) => crate::streams::model::shard_id(index),
                    _ => "The shard of this request".to_string(),
                };
                return error_response(call.format, &upstream::still_not_hosted(stream, &what));
            }
            tracing::debug!(
                stream,
                group,
                ?hint,
                "shard not hosted where the routes say; retrying"
            );
            tokio::time::sleep(retry_pause(attempt)).await;
            attempt += 1;
            named = hint.filter(|&g| g != group);
            table = self.routes.refresh();
        }
    }

    /// PutRecords on a spread stream: split by group, sent concurrently, merged.
    async fn put_records(
        &self,
        call: &Call,
        stream: &str,
        records: &fan_out::Records,
    ) -> Response<Body> {
        let outcome = fan_out::put_records(
            &self.upstream,
            &self.routes,
            &call.parts.headers,
            call.body.clone(),
            records,
            stream,
            call.format,
        )
        .await;
        match outcome {
            fan_out::Outcome::Relay(answer) => answer_response(answer),
            fan_out::Outcome::Merged(merged) => document_response(call.format, &merged),
            fan_out::Outcome::Gone => error_response(
                call.format,
                &AwsError::resource_not_found(format!(
                    "Stream {stream} under account {} not found.",
                    self.account
                )),
            ),
        }
    }

    /// DescribeStream or ListShards on a spread stream: group 0's answer with each closed
    /// shard's end from the group storing it.
    async fn shard_listing(&self, call: &Call, stream: &str) -> Response<Body> {
        let table = self.routes.current();
        let Some(route) = table.streams.get(stream) else {
            return error_response(call.format, &no_backend());
        };
        let answer = match self
            .upstream
            .exchange(&call.parts.headers, call.body.clone(), route.first(), &[])
            .await
        {
            Ok(answer) => answer,
            Err(message) => return unavailable(call.format, &message),
        };
        let (Some(spread), true) = (route.spread(), answer.status.is_success()) else {
            return answer_response(answer);
        };
        let Some(mut document) = answer.document(call.format) else {
            return answer_response(answer);
        };
        match listing::complete(
            &self.upstream,
            &call.parts.headers,
            spread,
            stream,
            &call.operation,
            call.format,
            &mut document,
        )
        .await
        {
            Ok(()) => document_response(call.format, &document),
            Err(error) => error_response(call.format, &error),
        }
    }

    /// Sends the request unchanged to `base` and relays the answer as it streams back.
    async fn forward(&self, call: &Call, base: &str) -> Response<Body> {
        match self
            .upstream
            .send(&call.parts.headers, call.body.clone(), base, &[])
            .await
        {
            Ok(response) => {
                let (parts, incoming) = response.into_parts();
                Response::from_parts(parts, incoming.map_err(Into::into).boxed())
            }
            Err(message) => unavailable(call.format, &message),
        }
    }

    /// ListStreams across every data-plane endpoint: the union, ordered by name, paged as the
    /// request asks. Group 0 of each stream is asked (every group of a stream holds its whole
    /// description), so a stream spread over several groups counts once.
    async fn list_streams(&self, call: &Call, routes: &RouteTable) -> Response<Body> {
        let format = call.format;
        let request = format.decode(&call.body).unwrap_or(Value::map().build());
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
        let mut backends: Vec<&str> = routes.streams.values().map(StreamRoute::first).collect();
        backends.sort();
        backends.dedup();
        let everything = Bytes::from(format.encode(&Value::map().with("Limit", 10_000i64).build()));
        let mut summaries: Vec<(String, Value)> = Vec::new();
        for base in backends {
            let answer = match self
                .upstream
                .exchange(&call.parts.headers, everything.clone(), base, &[])
                .await
            {
                Ok(answer) => answer,
                Err(message) => return unavailable(format, &message),
            };
            if !answer.status.is_success() {
                return answer_response(answer);
            }
            let Some(answer) = answer.document(format) else {
                return unavailable(
                    format,
                    "a data-plane endpoint answered ListStreams unreadably",
                );
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
        document_response(format, &reply)
    }
}

/// The group of `route` that `within` addresses: the one storing the shard named, or the open
/// shard owning the hash key; group 0 otherwise (and for shards the routes do not list).
/// The Kinesis operation a request names in `X-Amz-Target` (empty if none).
fn operation_of(headers: &http::HeaderMap) -> String {
    headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.strip_prefix(TARGET_PREFIX))
        .unwrap_or_default()
        .to_string()
}

fn group_of(route: &StreamRoute, within: Within) -> usize {
    let Some(spread) = route.spread() else {
        return 0;
    };
    match within {
        Within::Shard(index) => spread.group_of_shard(index).unwrap_or(0),
        Within::HashKey(key) => spread.shard_for_key(key).group,
        _ => 0,
    }
}

fn first_backend(routes: &RouteTable) -> Option<String> {
    routes
        .streams
        .values()
        .next()
        .map(|route| route.first().to_string())
}

fn no_backend() -> AwsError {
    AwsError::service_unavailable("No data-plane endpoint is configured yet.")
}

fn unavailable(format: Format, message: &str) -> Response<Body> {
    error_response(format, &AwsError::service_unavailable(message.to_string()))
}

/// A data-plane answer, relayed as it was given.
fn answer_response(answer: Answer) -> Response<Body> {
    let mut response = Response::new(full(answer.body));
    *response.status_mut() = answer.status;
    *response.headers_mut() = answer.headers;
    response.headers_mut().remove(http::header::CONTENT_LENGTH);
    response
        .headers_mut()
        .remove(http::header::TRANSFER_ENCODING);
    response
}

/// An answer the gateway composed.
fn document_response(format: Format, document: &Value) -> Response<Body> {
    Response::builder()
        .header("content-type", format.content_type())
        .header("x-amzn-requestid", uuid::Uuid::new_v4().to_string())
        .body(full(format.encode(document)))
        .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "error\n"))
}

fn error_response(format: Format, error: &AwsError) -> Response<Body> {
    Response::builder()
        .status(error.status)
        .header("content-type", format.content_type())
        .body(full(error.to_body(format)))
        .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "error\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::routes::tests::spread_route;
    use crate::streams::hash_key::HashRange;

    #[test]
    fn requests_reach_the_group_storing_their_shard() {
        let spread = StreamRoute::Groups(spread_route());
        assert_eq!(group_of(&spread, Within::Shard(1)), 1, "a closed shard");
        assert_eq!(group_of(&spread, Within::Shard(3)), 0);
        assert_eq!(group_of(&spread, Within::Shard(5)), 1);
        assert_eq!(
            group_of(&spread, Within::Shard(99)),
            0,
            "unlisted: group 0 answers"
        );
        let quarters = HashRange::divide_evenly(4);
        assert_eq!(group_of(&spread, Within::HashKey(quarters[1].end)), 0);
        assert_eq!(group_of(&spread, Within::HashKey(quarters[2].start)), 1);
        assert_eq!(group_of(&spread, Within::First), 0);
        let single = StreamRoute::Single("http://one".into());
        assert_eq!(group_of(&single, Within::Shard(5)), 0);
    }
}
