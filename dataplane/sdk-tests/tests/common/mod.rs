//! Fixtures shared by the SDK tests: a real `riffle` server process, an SDK client pointed at it,
//! and bounded waits on conditions.

// Each test binary compiles this module and uses only part of it.
#![allow(dead_code)]

use std::fs::File;
use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::config::retry::RetryConfig;
use aws_sdk_kinesis::config::timeout::TimeoutConfig;
use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kinesis::types::{ChildShard, Record, Shard, ShardIteratorType, StreamStatus};
use md5::{Digest, Md5};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest wait for anything the server should do promptly.
pub const PATIENCE: Duration = Duration::from_secs(30);
/// Pause between two polls of a condition.
const POLL: Duration = Duration::from_millis(20);

/// Region the server names in ARNs and the client signs for.
pub const REGION: &str = "us-east-1";
/// Account the server names in ARNs.
pub const ACCOUNT: &str = "000000000000";

/// Whether the server enforces the per-shard throughput limits.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Throttle {
    /// The default limits of a provisioned shard.
    On,
    /// No limits, so tests can read and write as fast as they like.
    Off,
}

/// A `riffle server` child process on free loopback ports with its own data directory; killed
/// when dropped.
pub struct ServerProcess {
    child: Child,
    /// Address of the Kinesis API.
    pub address: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// Path of the `riffle` binary under test.
fn riffle_bin() -> PathBuf {
    let path = match std::env::var_os("RIFFLE_BIN") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/riffle"),
    };
    assert!(
        path.is_file(),
        "the riffle binary is missing at {}: build it first with `cargo build -p riffle` \
         (or point RIFFLE_BIN at one)",
        path.display()
    );
    path
}

/// A loopback port that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

impl ServerProcess {
    /// Starts a server and waits (bounded) until `GET /healthz` answers 200.
    pub async fn start(throttle: Throttle) -> ServerProcess {
        ServerProcess::start_with(throttle, &[]).await
    }

    /// Like [`ServerProcess::start`], with more `riffle server` options.
    pub async fn start_with(throttle: Throttle, extra: &[&str]) -> ServerProcess {
        let bin = riffle_bin();
        // A port picked free can be taken before the server binds it; try again on new ports.
        let mut last_log = String::new();
        for _ in 0..3 {
            let dir = tempfile::tempdir().expect("temporary directory");
            let address = SocketAddr::from(([127, 0, 0, 1], free_port()));
            let grpc = SocketAddr::from(([127, 0, 0, 1], free_port()));
            let log = dir.path().join("server.log");
            let stderr = File::create(&log).expect("server log file");
            let child = Command::new(&bin)
                .arg("server")
                .args(["--listen", &address.to_string()])
                .args(["--grpc-listen", &grpc.to_string()])
                .arg("--data-dir")
                .arg(dir.path().join("data"))
                .args([
                    "--throttle",
                    match throttle {
                        Throttle::On => "on",
                        Throttle::Off => "off",
                    },
                ])
                .args(extra)
                .env("RIFFLE_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
            let mut server = ServerProcess {
                child,
                address,
                log,
                _dir: dir,
            };
            if server.wait_healthy().await {
                return server;
            }
            last_log = server.log_text();
        }
        panic!("riffle server never became healthy; its last log:\n{last_log}");
    }

    /// Polls `/healthz` until it answers 200 (true) or the process exits or time runs out (false).
    async fn wait_healthy(&mut self) -> bool {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if healthz(self.address).await {
                return true;
            }
            tokio::time::sleep(POLL).await;
        }
        false
    }

    /// What the server wrote to stderr so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `http://` URL of the Kinesis API.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// An SDK client for this server with retries off, so every error reaches the test.
    pub async fn client(&self) -> Client {
        let config = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .credentials_provider(Credentials::new("test", "test", None, None, "static"))
            .endpoint_url(self.endpoint())
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .operation_timeout(PATIENCE)
                    .build(),
            )
            .load()
            .await;
        Client::new(&config)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// True when `GET /healthz` answers 200.
async fn healthz(address: SocketAddr) -> bool {
    let probe = async {
        let mut stream = TcpStream::connect(address).await?;
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: riffle\r\nConnection: close\r\n\r\n")
            .await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        std::io::Result::Ok(answer.starts_with(b"HTTP/1.1 200"))
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), probe).await,
        Ok(Ok(true))
    )
}

/// Polls `check` until it yields `Some`, which is returned; panics after [`PATIENCE`].
pub async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {PATIENCE:?} waiting for {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Runs `future`, panicking if it takes longer than [`PATIENCE`].
pub async fn within<F: Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(PATIENCE, future)
        .await
        .unwrap_or_else(|_| panic!("timed out after {PATIENCE:?} waiting for {what}"))
}

/// The ARN of a stream on the test server.
pub fn stream_arn(name: &str) -> String {
    format!("arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{name}")
}

/// Kinesis routing: MD5 of the UTF-8 partition key, read as a big-endian 128-bit integer.
pub fn hash_of(partition_key: &str) -> u128 {
    u128::from_be_bytes(Md5::digest(partition_key.as_bytes()).into())
}

/// Parses a decimal sequence number or hash key the way clients compare them.
pub fn big(decimal: &str) -> u128 {
    decimal
        .parse()
        .unwrap_or_else(|e| panic!("{decimal:?} is not a 128-bit decimal: {e}"))
}

/// Waits (bounded) until the stream's status is ACTIVE.
pub async fn wait_active(client: &Client, name: &str) {
    wait_for(&format!("stream {name} to be ACTIVE"), || async {
        let summary = client
            .describe_stream_summary()
            .stream_name(name)
            .send()
            .await
            .expect("DescribeStreamSummary");
        let status = summary
            .stream_description_summary()?
            .stream_status()
            .clone();
        (status == StreamStatus::Active).then_some(())
    })
    .await;
}

/// Creates a provisioned stream and waits (bounded) until it is ACTIVE.
pub async fn create_stream(client: &Client, name: &str, shards: i32) {
    client
        .create_stream()
        .stream_name(name)
        .shard_count(shards)
        .send()
        .await
        .expect("CreateStream");
    wait_active(client, name).await;
}

/// Every shard of the stream, following ListShards paging.
pub async fn list_all_shards(client: &Client, name: &str) -> Vec<Shard> {
    let mut shards = Vec::new();
    let mut answer = client
        .list_shards()
        .stream_name(name)
        .send()
        .await
        .expect("ListShards");
    loop {
        shards.extend(answer.shards().iter().cloned());
        let Some(token) = answer.next_token().map(str::to_string) else {
            return shards;
        };
        answer = client
            .list_shards()
            .next_token(token)
            .send()
            .await
            .expect("ListShards with a token");
    }
}

/// True when the shard has no ending sequence number.
pub fn is_open(shard: &Shard) -> bool {
    shard
        .sequence_number_range()
        .and_then(|range| range.ending_sequence_number())
        .is_none()
}

/// The open shards of the stream.
pub async fn open_shards(client: &Client, name: &str) -> Vec<Shard> {
    list_all_shards(client, name)
        .await
        .into_iter()
        .filter(is_open)
        .collect()
}

/// The id of the open shard whose hash range contains `hash`; panics unless exactly one does.
pub fn shard_owning(shards: &[Shard], hash: u128) -> String {
    let owners: Vec<&str> = shards
        .iter()
        .filter(|shard| is_open(shard))
        .filter(|shard| {
            let range = shard.hash_key_range().expect("hash key range");
            big(range.starting_hash_key()) <= hash && hash <= big(range.ending_hash_key())
        })
        .map(|shard| shard.shard_id())
        .collect();
    assert_eq!(owners.len(), 1, "hash key {hash} is owned by {owners:?}");
    owners[0].to_string()
}

/// A shard iterator of the given type (no sequence number or timestamp).
pub async fn iterator(client: &Client, name: &str, shard: &str, kind: ShardIteratorType) -> String {
    client
        .get_shard_iterator()
        .stream_name(name)
        .shard_id(shard)
        .shard_iterator_type(kind)
        .send()
        .await
        .expect("GetShardIterator")
        .shard_iterator()
        .expect("an iterator")
        .to_string()
}

/// A bound on a polling loop: [`Deadline::pause`] panics once [`PATIENCE`] has passed.
pub struct Deadline {
    what: String,
    until: Instant,
}

impl Deadline {
    /// Starts the clock for waiting on `what`.
    pub fn new(what: impl Into<String>) -> Deadline {
        Deadline {
            what: what.into(),
            until: Instant::now() + PATIENCE,
        }
    }

    /// Waits one poll interval; panics if the deadline has passed.
    pub async fn pause(&self) {
        assert!(
            Instant::now() < self.until,
            "timed out after {PATIENCE:?} waiting for {}",
            self.what
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Reads from `iterator` until at least `count` records arrived (bounded); returns them all.
pub async fn read_at_least(client: &Client, mut iterator: String, count: usize) -> Vec<Record> {
    let deadline = Deadline::new(format!("{count} records"));
    let mut records = Vec::new();
    loop {
        let answer = client
            .get_records()
            .shard_iterator(&iterator)
            .send()
            .await
            .expect("GetRecords");
        records.extend(answer.records().iter().cloned());
        if records.len() >= count {
            return records;
        }
        iterator = answer
            .next_shard_iterator()
            .unwrap_or_else(|| panic!("the shard ended after {} records", records.len()))
            .to_string();
        if answer.records().is_empty() {
            deadline.pause().await;
        }
    }
}

/// What a closed shard holds: every record and the children named at its end.
pub struct ClosedShard {
    /// Every record, in order.
    pub records: Vec<Record>,
    /// The children listed by the GetRecords call that ended the shard.
    pub children: Vec<ChildShard>,
}

/// Reads a shard from TRIM_HORIZON until `NextShardIterator` is absent (bounded).
pub async fn read_to_end(client: &Client, name: &str, shard: &str) -> ClosedShard {
    let deadline = Deadline::new(format!("the end of shard {shard}"));
    let mut next = iterator(client, name, shard, ShardIteratorType::TrimHorizon).await;
    let mut records = Vec::new();
    loop {
        let answer = client
            .get_records()
            .shard_iterator(&next)
            .send()
            .await
            .expect("GetRecords");
        records.extend(answer.records().iter().cloned());
        match answer.next_shard_iterator() {
            Some(iterator) => next = iterator.to_string(),
            None => {
                return ClosedShard {
                    records,
                    children: answer.child_shards().to_vec(),
                };
            }
        }
        // A page with records means more may follow at once; only idle pages wait.
        if answer.records().is_empty() {
            deadline.pause().await;
        }
    }
}

/// The data of each record, as strings.
pub fn payloads(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .map(|record| String::from_utf8(record.data().as_ref().to_vec()).expect("UTF-8 data"))
        .collect()
}

/// Asserts that the records' sequence numbers strictly increase as 128-bit integers.
pub fn assert_increasing(records: &[Record]) {
    for pair in records.windows(2) {
        assert!(
            big(pair[0].sequence_number()) < big(pair[1].sequence_number()),
            "sequence numbers do not increase: {} then {}",
            pair[0].sequence_number(),
            pair[1].sequence_number()
        );
    }
}
