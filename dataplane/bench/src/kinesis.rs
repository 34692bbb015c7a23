//! A minimal Kinesis Data Streams client over HTTP/1.1 with AWS JSON 1.1 bodies.
//!
//! Requests carry a syntactically complete but unsigned `Authorization` header: Riffle accepts
//! any, and kinesalite only checks that one (and a date) is present. Connections are pooled and
//! kept alive, with `TCP_NODELAY`, so a measurement never includes a TCP handshake after warm-up.

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

const TARGET_PREFIX: &str = "Kinesis_20131202.";
const CONTENT_TYPE: &str = "application/x-amz-json-1.1";
const AUTHORIZATION: &str = "AWS4-HMAC-SHA256 Credential=bench/20200101/us-east-1/kinesis/aws4_request, SignedHeaders=host;x-amz-date, Signature=0000000000000000000000000000000000000000000000000000000000000000";
const AMZ_DATE: &str = "20200101T000000Z";

/// A Kinesis endpoint, cheap to clone (clones share the connection pool).
#[derive(Clone)]
pub struct Kinesis {
    client: Client<HttpConnector, Full<Bytes>>,
    endpoint: Uri,
}

/// A whole response: status and body.
pub struct Reply {
    /// The HTTP status.
    pub status: StatusCode,
    /// The body, read to its end.
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON, or an error naming the AWS exception when the status is not 200.
    pub fn json(&self) -> Result<Value> {
        if self.status != StatusCode::OK {
            bail!("{}", describe_error(self.status, &self.body));
        }
        // CreateStream, DeleteStream and a few others answer 200 with an empty body.
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&self.body).context("response is not JSON")
    }

    /// The AWS exception name of a failed call (`__type`, without any namespace prefix).
    pub fn error_type(&self) -> Option<String> {
        if self.status == StatusCode::OK {
            return None;
        }
        let v: Value = serde_json::from_slice(&self.body).ok()?;
        let t = v.get("__type")?.as_str()?;
        Some(t.rsplit('#').next().unwrap_or(t).to_string())
    }
}

fn describe_error(status: StatusCode, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]);
    format!("HTTP {status}: {text}")
}

impl Kinesis {
    /// A client of the endpoint at `url` (`http://host:port`).
    pub fn new(url: &str) -> Result<Kinesis> {
        let endpoint: Uri = url.parse().with_context(|| format!("bad endpoint {url}"))?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(1024)
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        Ok(Kinesis { client, endpoint })
    }

    /// Sends a request with the body exactly as given and returns the headers of the response,
    /// leaving its body unread (for SubscribeToShard's event stream).
    pub async fn send(&self, operation: &str, body: Bytes) -> Result<Response<Incoming>> {
        let request = Request::post(self.endpoint.clone())
            .header("content-type", CONTENT_TYPE)
            .header("x-amz-target", format!("{TARGET_PREFIX}{operation}"))
            .header("authorization", AUTHORIZATION)
            .header("x-amz-date", AMZ_DATE)
            .body(Full::new(body))?;
        self.client
            .request(request)
            .await
            .with_context(|| format!("{operation} request to {} failed", self.endpoint))
    }

    /// Sends a request and reads the whole response.
    pub async fn call_raw(&self, operation: &str, body: Bytes) -> Result<Reply> {
        let response = self.send(operation, body).await?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .with_context(|| format!("reading the {operation} response"))?
            .to_bytes();
        Ok(Reply { status, body })
    }

    /// GETs `path` (e.g. `/metrics`) from the endpoint's server and reads the whole response.
    pub async fn get(&self, path: &str) -> Result<Reply> {
        let uri: Uri = format!("{}{path}", self.endpoint.to_string().trim_end_matches('/'))
            .parse()
            .with_context(|| format!("bad path {path}"))?;
        let request = Request::get(uri).body(Full::new(Bytes::new()))?;
        let response = self
            .client
            .request(request)
            .await
            .with_context(|| format!("GET {path} from {} failed", self.endpoint))?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok(Reply { status, body })
    }

    /// Sends a JSON request and returns the JSON response; an AWS error is an `Err`.
    pub async fn call(&self, operation: &str, request: &Value) -> Result<Value> {
        let body = Bytes::from(serde_json::to_vec(request)?);
        self.call_raw(operation, body)
            .await?
            .json()
            .with_context(|| format!("{operation} failed"))
    }

    /// Whether the endpoint answers ListStreams.
    pub async fn ping(&self) -> Result<()> {
        self.call("ListStreams", &json!({})).await.map(|_| ())
    }

    /// Creates a stream and waits until it is ACTIVE; returns its ARN and its shard ids.
    pub async fn create_stream(&self, name: &str, shards: u32) -> Result<StreamInfo> {
        self.call(
            "CreateStream",
            &json!({"StreamName": name, "ShardCount": shards}),
        )
        .await?;
        for _ in 0..600 {
            let d = self
                .call("DescribeStream", &json!({"StreamName": name}))
                .await?;
            let desc = &d["StreamDescription"];
            if desc["StreamStatus"] == "ACTIVE" {
                let arn = desc["StreamARN"]
                    .as_str()
                    .ok_or_else(|| anyhow!("DescribeStream without StreamARN"))?
                    .to_string();
                let shards = desc["Shards"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|s| s["ShardId"].as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                return Ok(StreamInfo { arn, shards });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("stream {name} did not become ACTIVE within 30 s")
    }

    /// Deletes a stream (and its consumers), ignoring errors: it is clean-up only.
    pub async fn delete_stream(&self, name: &str) {
        let _ = self
            .call(
                "DeleteStream",
                &json!({"StreamName": name, "EnforceConsumerDeletion": true}),
            )
            .await;
    }

    /// A shard iterator of type `kind` (TRIM_HORIZON, LATEST, ...).
    pub async fn shard_iterator(&self, stream: &str, shard: &str, kind: &str) -> Result<String> {
        let r = self
            .call(
                "GetShardIterator",
                &json!({"StreamName": stream, "ShardId": shard, "ShardIteratorType": kind}),
            )
            .await?;
        r["ShardIterator"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("GetShardIterator without ShardIterator"))
    }

    /// Registers an enhanced fan-out consumer and waits until it is ACTIVE; returns its ARN.
    pub async fn register_consumer(&self, stream_arn: &str, name: &str) -> Result<String> {
        let r = self
            .call(
                "RegisterStreamConsumer",
                &json!({"StreamARN": stream_arn, "ConsumerName": name}),
            )
            .await?;
        let arn = r["Consumer"]["ConsumerARN"]
            .as_str()
            .ok_or_else(|| anyhow!("RegisterStreamConsumer without ConsumerARN"))?
            .to_string();
        for _ in 0..600 {
            let d = self
                .call("DescribeStreamConsumer", &json!({"ConsumerARN": arn}))
                .await?;
            if d["ConsumerDescription"]["ConsumerStatus"] == "ACTIVE" {
                return Ok(arn);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("consumer {name} did not become ACTIVE within 30 s")
    }
}

/// What the benchmarks need to know about a new stream.
pub struct StreamInfo {
    /// The stream's ARN.
    pub arn: String,
    /// Its shard ids, in the order DescribeStream lists them.
    pub shards: Vec<String>,
}

impl StreamInfo {
    /// The first shard (the only one of the single-shard streams the benchmarks use).
    pub fn shard(&self) -> Result<&str> {
        self.shards
            .first()
            .map(String::as_str)
            .ok_or_else(|| anyhow!("stream has no shards"))
    }
}

/// A stream name unique to this run, so that runs never see each other's records.
pub fn unique_stream_name(workload: &str) -> String {
    format!("bench-{workload}-{:08x}", rand::random::<u32>())
}
