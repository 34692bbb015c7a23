//! `grpc-put-throughput` and `grpc-drain`: the same measurements over Riffle's native
//! `riffle.v1.Streams` API.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use riffle_proto::v1::streams_client::StreamsClient;
use riffle_proto::v1::{
    CreateStreamRequest, DeleteStreamRequest, DescribeStreamRequest, GetRecordsRequest, PutRecord,
    PutRequest, StartingPosition, starting_position,
};
use tonic::transport::{Channel, Endpoint};

use super::Timing;
use crate::closed_loop::{self, Sent};
use crate::cpu::Probe;
use crate::histogram::Histogram;
use crate::kinesis::unique_stream_name;
use crate::put_body::{KeySource, random_payloads};
use crate::report::Outcome;
use crate::workloads::drain::{DrainArgs, Drained, outcome, preload};

/// Largest message either side may send: records of up to 10 MiB, with room to spare.
const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// Options of `grpc-put-throughput`.
#[derive(clap::Args, Clone, Debug)]
pub struct GrpcPutThroughputArgs {
    /// gRPC endpoint, e.g. http://127.0.0.1:4568.
    #[arg(long)]
    pub endpoint: String,
    /// Bytes of data per record.
    #[arg(long, default_value_t = 1024)]
    pub record_bytes: usize,
    /// Records per Put call.
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
    /// Calls in flight at once, each on its own HTTP/2 connection.
    #[arg(long, default_value_t = 8, env = "BENCH_CONCURRENCY")]
    pub concurrency: usize,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub timing: Timing,
}

/// A client on a fresh HTTP/2 connection.
async fn connect(endpoint: &str) -> Result<StreamsClient<Channel>> {
    let channel = Endpoint::from_shared(endpoint.to_string())?
        .tcp_nodelay(true)
        .http2_adaptive_window(true)
        .connect()
        .await
        .with_context(|| format!("connecting to {endpoint}"))?;
    Ok(StreamsClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE))
}

/// Creates a one-shard stream; returns its shard id.
async fn create_stream(client: &mut StreamsClient<Channel>, name: &str) -> Result<String> {
    client
        .create_stream(CreateStreamRequest {
            name: name.to_string(),
            shard_count: 1,
            ..Default::default()
        })
        .await?;
    let described = client
        .describe_stream(DescribeStreamRequest {
            name: name.to_string(),
        })
        .await?
        .into_inner();
    described
        .stream
        .and_then(|s| s.shards.into_iter().next())
        .map(|s| s.id)
        .ok_or_else(|| anyhow!("stream {name} has no shard"))
}

async fn delete_stream(client: &mut StreamsClient<Channel>, name: &str) {
    let _ = client
        .delete_stream(DeleteStreamRequest {
            name: name.to_string(),
            enforce_consumer_deletion: true,
        })
        .await;
}

/// Builds Put requests with fresh partition keys over a fixed set of payloads.
struct PutSource {
    stream: String,
    payloads: Vec<Bytes>,
    keys: KeySource,
}

impl PutSource {
    fn request(&self) -> PutRequest {
        let first = self.keys.take(self.payloads.len());
        PutRequest {
            stream: self.stream.clone(),
            records: self
                .payloads
                .iter()
                .enumerate()
                .map(|(i, data)| PutRecord {
                    partition_key: format!("pk-{:016x}", first + i as u64),
                    data: data.clone(),
                    explicit_hash_key: None,
                })
                .collect(),
        }
    }

    async fn put(&self, client: &mut StreamsClient<Channel>) -> Result<Sent> {
        let request = self.request();
        let record_bytes: u64 = request.records.iter().map(|r| r.data.len() as u64).sum();
        let response = client.put(request).await?.into_inner();
        let failed = u64::from(response.failed_record_count);
        let batch = self.payloads.len() as u64;
        let ok = batch.saturating_sub(failed);
        Ok(Sent {
            records: ok,
            bytes: record_bytes / batch.max(1) * ok,
            failed_records: failed,
        })
    }
}

/// Runs `grpc-put-throughput`.
pub async fn put_throughput(args: &GrpcPutThroughputArgs) -> Result<Outcome> {
    let mut admin = connect(&args.endpoint).await?;
    let stream = unique_stream_name("grpc-put");
    create_stream(&mut admin, &stream).await?;
    let source = Arc::new(PutSource {
        stream: stream.clone(),
        payloads: random_payloads(args.batch, args.record_bytes),
        keys: KeySource::default(),
    });
    let mut clients = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        clients.push(connect(&args.endpoint).await?);
    }
    let clients = Arc::new(clients);
    let started = args.timing.probe().start();
    let result = closed_loop::run(
        args.concurrency,
        args.timing.warmup(),
        args.timing.measured(),
        move |worker| {
            let mut client = clients[worker % clients.len()].clone();
            let source = source.clone();
            async move { source.put(&mut client).await }
        },
    )
    .await;
    let usage = started.finish();
    delete_stream(&mut admin, &stream).await;
    let mut o = Outcome::new(&format!(
        "grpc-put-throughput ({} x {} B, concurrency {})",
        args.batch, args.record_bytes, args.concurrency
    ));
    o.metric("mib_per_s", result.mib_per_s(), "MiB/s");
    o.metric("records_per_s", result.records_per_s(), "records/s");
    o.metric("failed_records", result.failed_records as f64, "");
    o.metric("errors", result.errors as f64, "calls");
    o.latency("call_", &result.latency);
    o.cpu(usage);
    if let Some(e) = result.first_error {
        o.note(format!("first error: {e}"));
    }
    if result.records == 0 {
        bail!("no record was acknowledged ({:?})", o.notes.first());
    }
    Ok(o)
}

/// Runs `grpc-drain`.
pub async fn drain(args: &DrainArgs) -> Result<Outcome> {
    let mut admin = connect(&args.endpoint).await?;
    let stream = unique_stream_name("grpc-drain");
    let shard = create_stream(&mut admin, &stream).await?;
    let result = load_and_drain(args, &mut admin, &stream, &shard).await;
    delete_stream(&mut admin, &stream).await;
    result
}

async fn load_and_drain(
    args: &DrainArgs,
    admin: &mut StreamsClient<Channel>,
    stream: &str,
    shard: &str,
) -> Result<Outcome> {
    let source = Arc::new(PutSource {
        stream: stream.to_string(),
        payloads: random_payloads(args.batch, args.record_bytes),
        keys: KeySource::default(),
    });
    let mut clients = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        clients.push(connect(&args.endpoint).await?);
    }
    let clients = Arc::new(clients);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let loaded = preload(args, move || {
        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut client = clients[i % clients.len()].clone();
        let source = source.clone();
        async move { source.put(&mut client).await }
    })
    .await?;

    let started = Probe {
        server_pids: args.server_pids.clone(),
    }
    .start();
    let start = Instant::now();
    let mut drained = Drained {
        records: 0,
        bytes: 0,
        elapsed: Duration::ZERO,
        calls: Histogram::new(),
        first_byte: Histogram::new(),
        body: Histogram::new(),
    };
    let mut position = StartingPosition {
        r#type: starting_position::Type::TrimHorizon.into(),
        sequence_number: String::new(),
        timestamp_ms: 0,
    };
    while drained.records < loaded.records {
        let call = Instant::now();
        let page = admin
            .get_records(GetRecordsRequest {
                stream: stream.to_string(),
                shard_id: shard.to_string(),
                position: Some(position.clone()),
                limit: args.limit,
            })
            .await?
            .into_inner();
        drained.calls.record_duration(call.elapsed());
        drained.records += page.records.len() as u64;
        drained.bytes += page
            .records
            .iter()
            .map(|r| r.data.len() as u64)
            .sum::<u64>();
        if page.records.is_empty() && page.millis_behind_latest == 0 {
            bail!(
                "GetRecords reports the shard caught up after {} of {} records",
                drained.records,
                loaded.records
            );
        }
        position = page
            .next_position
            .ok_or_else(|| anyhow!("the shard closed while draining"))?;
    }
    drained.elapsed = start.elapsed();
    Ok(outcome(
        "grpc-drain",
        args,
        &loaded,
        &drained,
        started.finish(),
    ))
}
