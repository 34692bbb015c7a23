//! The gateway's side of a data-plane exchange: sending a request to one endpoint, recognising
//! a shard group that does not host the shard asked for, and reading whole answers where the
//! gateway has to look inside them.
//!
//! A replicated shard group's endpoint reaches any of its replicas. The gateway follows the
//! leader a replica names and then keeps sending that group's requests, reads included, to
//! that leader, so reads through the gateway see every write it had acknowledged; a leader
//! that cannot be reached is forgotten and the group's endpoint is used again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, HOST};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use riffle_wire::{AwsError, Format, Value};

use super::metrics::GatewayMetrics;

/// Header a shard group sets on the `ServiceUnavailable` it answers for a shard it does not
/// host: the group that does (its index) or `unknown`.
pub use crate::kinesis::NOT_HOSTED_HEADER as NOT_HOSTED;

/// Header giving RegisterStreamConsumer the consumer's creation time (epoch seconds), so every
/// group of a stream gives the consumer the same ARN.
pub use crate::kinesis::CONSUMER_CREATED_HEADER as CONSUMER_CREATED;

/// How long a request for a shard that is not where the routes say waits for the routes (or
/// the groups) to agree before the client gets `ServiceUnavailable`.
pub const NOT_HOSTED_PATIENCE: Duration = Duration::from_secs(10);

/// First and longest pause between two attempts at a shard that was not hosted.
pub const RETRY_PAUSES: (Duration, Duration) =
    (Duration::from_millis(25), Duration::from_millis(500));

/// Header a replica of a replicated shard group sets on the `ServiceUnavailable` it answers for
/// a write: the Kinesis API address (`host:port`) of the replica that leads.
pub use crate::replicated::LEADER_HEADER as LEADER;

/// How many times one request follows [`LEADER`] hints before the last answer is relayed as it
/// is: enough for a hint that is one election behind, bounded so replicas that disagree cannot
/// keep a request bouncing.
pub const LEADER_HOPS: u32 = 3;

/// How long connecting to a data-plane endpoint, or looking up a replicated group's replicas,
/// may take. Pods answer a connection within milliseconds; an address of a pod that is gone
/// (one a name goes on resolving to for a moment after a restart) answers nothing, and without
/// a bound the client's request would wait for the kernel to give up, many seconds later.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Pause before the second and later resends to a named leader (the first is immediate: the
/// hint is fresh); it doubles each time.
pub const LEADER_PAUSE: Duration = Duration::from_millis(50);

/// A client of data-plane endpoints, shared by every request (and cheap to clone into tasks).
#[derive(Clone)]
pub struct Upstream {
    client: Client<HttpConnector, Full<Bytes>>,
    /// The leader last found behind each endpoint (`base` URL) of a replicated group.
    leaders: Arc<Mutex<HashMap<String, String>>>,
    metrics: Arc<GatewayMetrics>,
}

/// A whole answer of a data-plane endpoint.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Its HTTP status.
    pub status: http::StatusCode,
    /// Its headers.
    pub headers: HeaderMap,
    /// Its body.
    pub body: Bytes,
}

impl Answer {
    /// The body decoded in `format` (the request's, which the data plane answers in).
    pub fn document(&self, format: Format) -> Option<Value> {
        format.decode(&self.body).ok()
    }

    /// The AWS error type of a failed answer (`__type`), if it names one.
    pub fn error_kind(&self, format: Format) -> Option<String> {
        let document = self.document(format)?;
        let kind = document.get("__type")?.as_str()?;
        // Some services prefix the type with a namespace (`ns#Type`).
        Some(kind.rsplit('#').next().unwrap_or(kind).to_string())
    }

    /// The error message of a failed answer.
    pub fn error_message(&self, format: Format) -> Option<String> {
        let document = self.document(format)?;
        document
            .get("message")
            .or_else(|| document.get("Message"))
            .and_then(Value::as_str)
            .map(str::to_string)
    }
}

impl Default for Upstream {
    fn default() -> Self {
        Upstream::with_metrics(Arc::default())
    }
}

impl Upstream {
    /// A client counting what it does in `metrics`.
    pub fn with_metrics(metrics: Arc<GatewayMetrics>) -> Upstream {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        Upstream {
            client: Client::builder(TokioExecutor::new()).build(connector),
            leaders: Arc::default(),
            metrics,
        }
    }

    /// Sends `body` to the endpoint at `base` with the client's `headers` (and `extra` ones),
    /// returning the answer as it starts to stream back. A replica of a replicated group that
    /// answers a write with the leader's address ([`LEADER`]) is not relayed: the request is
    /// sent again to that leader, at most [`LEADER_HOPS`] times, so clients never see which
    /// replica leads. The group's later requests go straight to the leader found.
    pub async fn send(
        &self,
        headers: &HeaderMap,
        body: Bytes,
        base: &str,
        extra: &[(HeaderName, HeaderValue)],
    ) -> Result<Response<Incoming>, String> {
        let known = self.known_leader(base);
        let mut target = known.clone().unwrap_or_else(|| base.to_string());
        let mut attempt = self.send_once(headers, body.clone(), &target, extra).await;
        // A leader that lost its group (unreachable, or declining without naming another
        // leader) is forgotten; the group's endpoint reaches the others. Only requests that
        // were declined or never delivered go elsewhere: one delivered and then cut short may
        // have been carried out, and sending it again is the client's call.
        if known.is_some() && may_go_elsewhere(&attempt) {
            self.forget_leader(base);
            target = base.to_string();
            attempt = self.send_once(headers, body.clone(), base, extra).await;
        }
        // The endpoint's name may keep leading to the replica that cannot answer (one cut off
        // from its group still takes connections) while the others can: each is asked in turn.
        if may_go_elsewhere(&attempt) {
            for address in addresses_of(base).await {
                let other = self.send_once(headers, body.clone(), &address, extra).await;
                if !may_go_elsewhere(&other) {
                    attempt = other;
                    target = address;
                    break;
                }
            }
        }
        let mut response = attempt.map_err(|failure| failure.message)?;
        for hop in 0..LEADER_HOPS {
            let Some(leader) = leader_hint(response.status(), response.headers()) else {
                break;
            };
            if hop > 0 {
                tokio::time::sleep(leader_pause(hop)).await;
            }
            tracing::debug!(from = base, %leader, "following the shard group's leader");
            self.metrics.leader_follows.inc();
            response = self
                .send_once(headers, body.clone(), &leader, extra)
                .await
                .map_err(|failure| failure.message)?;
            target = leader;
        }
        if target != base && Some(&target) != known.as_ref() && !is_deposed(&response) {
            self.leaders
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(base.to_string(), target);
        }
        Ok(response)
    }

    fn known_leader(&self, base: &str) -> Option<String> {
        self.leaders
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(base)
            .cloned()
    }

    fn forget_leader(&self, base: &str) {
        self.leaders
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(base);
    }

    /// Sends once, without following leader hints.
    async fn send_once(
        &self,
        headers: &HeaderMap,
        body: Bytes,
        base: &str,
        extra: &[(HeaderName, HeaderValue)],
    ) -> Result<Response<Incoming>, Failure> {
        let uri = format!("{}/", base.trim_end_matches('/'));
        let mut builder = Request::builder().method(Method::POST).uri(&uri);
        for (name, value) in headers {
            // Headers the gateway speaks with the data plane are the gateway's to set.
            if name != HOST && name != CONTENT_LENGTH && !name.as_str().starts_with("x-riffle-") {
                builder = builder.header(name, value);
            }
        }
        for (name, value) in extra {
            builder = builder.header(name, value);
        }
        let request = builder.body(Full::new(body)).map_err(|error| Failure {
            message: format!("cannot relay the request: {error}"),
            delivered: false,
        })?;
        self.client.request(request).await.map_err(|error| {
            self.metrics.unreachable.inc();
            tracing::warn!(%uri, %error, "data-plane endpoint unreachable");
            Failure {
                message: format!("the shard group at {base} is unreachable: {error}"),
                delivered: !error.is_connect(),
            }
        })
    }

    /// Sends like [`Upstream::send`] and reads the whole answer.
    pub async fn exchange(
        &self,
        headers: &HeaderMap,
        body: Bytes,
        base: &str,
        extra: &[(HeaderName, HeaderValue)],
    ) -> Result<Answer, String> {
        let response = self.send(headers, body, base, extra).await?;
        collect(response)
            .await
            .map_err(|error| format!("the shard group at {base} broke off its answer: {error}"))
    }
}

/// Reads a whole answer.
pub async fn collect(response: Response<Incoming>) -> Result<Answer, hyper::Error> {
    let (parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// Whether an answer says its group does not host the shard asked for; if so, the group that
/// does according to the answering group (`None` if it does not know).
pub fn not_hosted(status: http::StatusCode, headers: &HeaderMap) -> Option<Option<usize>> {
    if status != http::StatusCode::SERVICE_UNAVAILABLE {
        return None;
    }
    let value = headers.get(NOT_HOSTED)?.to_str().ok()?;
    Some(value.trim().parse().ok())
}

/// The base URL of the leader a replica names when it declines a write (503 with [`LEADER`]),
/// or `None` for any other answer.
pub fn leader_hint(status: http::StatusCode, headers: &HeaderMap) -> Option<String> {
    // Only replicas that do not lead set the header; the leader decides whether the shard is
    // hosted, so the hint wins over a not-hosted header.
    if status != http::StatusCode::SERVICE_UNAVAILABLE {
        return None;
    }
    let address = headers.get(LEADER)?.to_str().ok()?.trim();
    if address.is_empty() {
        return None;
    }
    Some(if address.contains("://") {
        address.to_string()
    } else {
        format!("http://{address}")
    })
}

/// Why a send got no answer.
#[derive(Debug)]
struct Failure {
    message: String,
    /// Whether the request may have reached the endpoint (the connection broke after it was
    /// sent): then it may have been carried out.
    delivered: bool,
}

/// Whether an attempt may be sent to another replica of the group: it was never delivered, or
/// a replica declined it without naming a leader.
fn may_go_elsewhere(attempt: &Result<Response<Incoming>, Failure>) -> bool {
    match attempt {
        Ok(response) => is_deposed(response),
        Err(failure) => !failure.delivered,
    }
}

/// Every address the host of endpoint `base` (`http://host:port`) resolves to, as endpoints
/// (a group's headless Service names each of its replicas); at most 8.
async fn addresses_of(base: &str) -> Vec<String> {
    let Some(authority) = base
        .strip_prefix("http://")
        .map(|rest| rest.split('/').next().unwrap_or(rest))
    else {
        return Vec::new();
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::lookup_host(authority)).await {
        Ok(Ok(addresses)) => addresses
            .take(8)
            .map(|address| format!("http://{address}"))
            .collect(),
        Ok(Err(_)) | Err(_) => Vec::new(),
    }
}

/// Whether a replica declined a request without naming another leader or another shard
/// group: it does not lead and knows no leader, or cannot reach its followers.
fn is_deposed(response: &Response<Incoming>) -> bool {
    response.status() == http::StatusCode::SERVICE_UNAVAILABLE
        && leader_hint(response.status(), response.headers()).is_none()
        && not_hosted(response.status(), response.headers()).is_none()
}

/// The pause before resend `hop` (1-based) to a named leader.
pub fn leader_pause(hop: u32) -> Duration {
    LEADER_PAUSE.saturating_mul(1u32 << hop.saturating_sub(1).min(8))
}

/// The pause before attempt `attempt` (0-based) at a shard that was not hosted.
pub fn retry_pause(attempt: u32) -> Duration {
    let (first, longest) = RETRY_PAUSES;
    first.saturating_mul(1u32 << attempt.min(16)).min(longest)
}

/// The error a client gets when the shard it asked for stayed unreachable where the routes
/// place it for [`NOT_HOSTED_PATIENCE`].
pub fn still_not_hosted(stream: &str, what: &str) -> AwsError {
    AwsError::service_unavailable(format!(
        "{what} of stream {stream} is moving between shard groups; try again shortly."
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_groups_that_do_not_host_the_shard() {
        let mut headers = HeaderMap::new();
        assert_eq!(
            not_hosted(http::StatusCode::SERVICE_UNAVAILABLE, &headers),
            None
        );
        headers.insert(NOT_HOSTED, HeaderValue::from_static("1"));
        assert_eq!(
            not_hosted(http::StatusCode::SERVICE_UNAVAILABLE, &headers),
            Some(Some(1))
        );
        assert_eq!(not_hosted(http::StatusCode::OK, &headers), None);
        headers.insert(NOT_HOSTED, HeaderValue::from_static("unknown"));
        assert_eq!(
            not_hosted(http::StatusCode::SERVICE_UNAVAILABLE, &headers),
            Some(None)
        );
    }

    #[test]
    fn recognises_a_replica_naming_its_leader() {
        let unavailable = http::StatusCode::SERVICE_UNAVAILABLE;
        let mut headers = HeaderMap::new();
        assert_eq!(leader_hint(unavailable, &headers), None, "no leader known");
        headers.insert(LEADER, HeaderValue::from_static("orders-g0-1.svc:4567"));
        assert_eq!(
            leader_hint(unavailable, &headers).as_deref(),
            Some("http://orders-g0-1.svc:4567")
        );
        assert_eq!(leader_hint(http::StatusCode::OK, &headers), None);
        headers.insert(NOT_HOSTED, HeaderValue::from_static("unknown"));
        assert_eq!(
            leader_hint(unavailable, &headers).as_deref(),
            Some("http://orders-g0-1.svc:4567"),
            "as a follower answers"
        );
        assert_eq!(leader_pause(1), LEADER_PAUSE);
        assert_eq!(leader_pause(2), LEADER_PAUSE * 2);
    }

    /// An endpoint answering every request with `status`, the leader hint `leader` (if any) and
    /// its own `name` as body, counting the requests it gets.
    async fn endpoint(
        name: &'static str,
        status: http::StatusCode,
        leader: Option<String>,
    ) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let count = std::sync::Arc::new(AtomicUsize::new(0));
        let counted = count.clone();
        tokio::spawn(crate::http::serve_with(
            listener,
            std::future::pending(),
            move |_request| {
                let leader = leader.clone();
                counted.fetch_add(1, Ordering::SeqCst);
                async move {
                    let mut response = Response::new(crate::http::full(name));
                    *response.status_mut() = status;
                    if let Some(leader) = leader {
                        response
                            .headers_mut()
                            .insert(LEADER, HeaderValue::from_str(&leader).unwrap());
                    }
                    response
                }
            },
        ));
        (address, count)
    }

    /// The address of a listener whose queue of connections is full, so it answers no further
    /// connection attempt, as the address of a pod that is gone does; and the listener.
    fn silent_address() -> (String, socket2::Socket, std::net::TcpStream) {
        use socket2::{Domain, Socket, Type};
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        socket.bind(&loopback.into()).unwrap();
        socket.listen(0).unwrap();
        let address = socket.local_addr().unwrap().as_socket().unwrap();
        let queued = std::net::TcpStream::connect(address).unwrap();
        (address.to_string(), socket, queued)
    }

    #[tokio::test]
    async fn an_endpoint_that_answers_no_connection_is_given_up_on() {
        let (silent, _listener, _queued) = silent_address();
        let upstream = Upstream::default();
        let base = format!("http://{silent}");
        let headers = HeaderMap::new();
        let send = upstream.exchange(&headers, Bytes::from_static(b"{}"), &base, &[]);
        // Without a bound, the kernel gives up on the connection after about two minutes.
        let failure = tokio::time::timeout(Duration::from_secs(60), send)
            .await
            .expect("the request waited for the connection for a minute")
            .unwrap_err();
        assert!(failure.contains("unreachable"), "{failure}");
    }

    #[tokio::test]
    async fn writes_follow_the_leader_a_follower_names() {
        use std::sync::atomic::Ordering;
        let (leader, leader_calls) = endpoint("leader", http::StatusCode::OK, None).await;
        let (follower, _) = endpoint(
            "follower",
            http::StatusCode::SERVICE_UNAVAILABLE,
            Some(leader.clone()),
        )
        .await;
        let answer = Upstream::default()
            .exchange(
                &HeaderMap::new(),
                Bytes::from_static(b"{}"),
                &format!("http://{follower}"),
                &[],
            )
            .await
            .unwrap();
        assert_eq!(answer.status, http::StatusCode::OK);
        assert_eq!(&answer.body[..], b"leader");
        assert_eq!(leader_calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_request_cut_short_after_delivery_is_not_sent_elsewhere() {
        use std::sync::atomic::Ordering;
        use tokio::io::AsyncReadExt;
        // Takes the request, then drops the connection without an answer (a pod killed while
        // writing): the write may have been made.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let breaking = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut buffer = [0u8; 1024];
                let _ = socket.read(&mut buffer).await;
            }
        });
        let (other, other_calls) = endpoint("other", http::StatusCode::OK, None).await;
        let upstream = Upstream::default();
        let base = format!("http://{other}");
        upstream
            .leaders
            .lock()
            .unwrap()
            .insert(base.clone(), format!("http://{breaking}"));
        let failed = upstream
            .exchange(&HeaderMap::new(), Bytes::from_static(b"{}"), &base, &[])
            .await;
        assert!(failed.is_err(), "{failed:?}");
        assert_eq!(other_calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn an_endpoint_name_gives_each_address_it_resolves_to() {
        assert_eq!(
            addresses_of("http://127.0.0.1:4567").await,
            ["http://127.0.0.1:4567"]
        );
        assert!(
            addresses_of("http://localhost:4567")
                .await
                .iter()
                .all(|a| a.ends_with(":4567")),
        );
        assert!(addresses_of("unix:/socket").await.is_empty());
    }

    #[tokio::test]
    async fn a_group_s_later_requests_go_straight_to_its_leader_while_it_answers() {
        use std::sync::atomic::Ordering;
        let (leader, leader_calls) = endpoint("leader", http::StatusCode::OK, None).await;
        let (follower, follower_calls) = endpoint(
            "follower",
            http::StatusCode::SERVICE_UNAVAILABLE,
            Some(leader.clone()),
        )
        .await;
        let upstream = Upstream::default();
        let base = format!("http://{follower}");
        for _ in 0..3 {
            let answer = upstream
                .exchange(&HeaderMap::new(), Bytes::from_static(b"{}"), &base, &[])
                .await
                .unwrap();
            assert_eq!(&answer.body[..], b"leader");
        }
        assert_eq!(follower_calls.load(Ordering::SeqCst), 1);
        assert_eq!(leader_calls.load(Ordering::SeqCst), 3);
        // A leader that cannot be reached is forgotten: the group's endpoint is asked again.
        let gone = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().to_string()
        };
        upstream
            .leaders
            .lock()
            .unwrap()
            .insert(base.clone(), format!("http://{gone}"));
        let answer = upstream
            .exchange(&HeaderMap::new(), Bytes::from_static(b"{}"), &base, &[])
            .await
            .unwrap();
        assert_eq!(&answer.body[..], b"leader");
        assert_eq!(follower_calls.load(Ordering::SeqCst), 2);
        assert_eq!(
            upstream.known_leader(&base),
            Some(format!("http://{leader}"))
        );
        // So is one that declines without naming another leader (cut off from its group).
        let (cut_off, cut_off_calls) =
            endpoint("cut off", http::StatusCode::SERVICE_UNAVAILABLE, None).await;
        upstream
            .leaders
            .lock()
            .unwrap()
            .insert(base.clone(), format!("http://{cut_off}"));
        let answer = upstream
            .exchange(&HeaderMap::new(), Bytes::from_static(b"{}"), &base, &[])
            .await
            .unwrap();
        assert_eq!(&answer.body[..], b"leader");
        assert_eq!(cut_off_calls.load(Ordering::SeqCst), 1);
        assert_eq!(
            upstream.known_leader(&base),
            Some(format!("http://{leader}"))
        );
    }

    #[tokio::test]
    async fn replicas_that_keep_naming_each_other_are_followed_a_bounded_number_of_times() {
        use std::sync::atomic::Ordering;
        // Each names the other: the request hops LEADER_HOPS times, then the last answer is
        // relayed.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let b_address = listener.local_addr().unwrap().to_string();
        drop(listener);
        let (a, a_calls) = endpoint(
            "a",
            http::StatusCode::SERVICE_UNAVAILABLE,
            Some(b_address.clone()),
        )
        .await;
        let listener = tokio::net::TcpListener::bind(&b_address).await.unwrap();
        let b_calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = b_calls.clone();
        tokio::spawn(crate::http::serve_with(
            listener,
            std::future::pending(),
            move |_request| {
                counted.fetch_add(1, Ordering::SeqCst);
                let a = a.clone();
                async move {
                    let mut response = Response::new(crate::http::full("b"));
                    *response.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
                    response
                        .headers_mut()
                        .insert(LEADER, HeaderValue::from_str(&a).unwrap());
                    response
                }
            },
        ));
        let answer = Upstream::default()
            .exchange(
                &HeaderMap::new(),
                Bytes::from_static(b"{}"),
                &format!("http://{b_address}"),
                &[],
            )
            .await
            .unwrap();
        assert_eq!(answer.status, http::StatusCode::SERVICE_UNAVAILABLE);
        let calls = a_calls.load(Ordering::SeqCst) + b_calls.load(Ordering::SeqCst);
        assert_eq!(calls, 1 + LEADER_HOPS as usize);
    }

    #[test]
    fn pauses_grow_to_a_bound() {
        assert_eq!(retry_pause(0), RETRY_PAUSES.0);
        assert!(retry_pause(1) > retry_pause(0));
        assert_eq!(retry_pause(30), RETRY_PAUSES.1);
    }

    #[test]
    fn error_answers_are_read_in_either_format() {
        for format in [Format::Json, Format::Cbor] {
            let answer = Answer {
                status: http::StatusCode::BAD_REQUEST,
                headers: HeaderMap::new(),
                body: Bytes::from(AwsError::resource_in_use("Consumer c exists.").to_body(format)),
            };
            assert_eq!(
                answer.error_kind(format).as_deref(),
                Some("ResourceInUseException")
            );
            assert_eq!(
                answer.error_message(format).as_deref(),
                Some("Consumer c exists.")
            );
        }
    }
}
