//! `drain`: preload a one-shard stream with PutRecords, then read it from TRIM_HORIZON with
//! GetRecords (Limit 10000) as fast as one reader can; MiB/s of record data read.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use http_body_util::BodyExt;
use hyper::StatusCode;
use serde_json::json;

use crate::closed_loop::Sent;
use crate::cpu::Probe;
use crate::histogram::Histogram;
use crate::kinesis::{Kinesis, unique_stream_name};
use crate::put_body::{KeySource, PutRecordsTemplate};
use crate::report::Outcome;
use crate::response_scan::PageScanner;
use crate::workloads::put_records_throughput::put_batch;

/// Options of `drain` (and of `grpc-drain`).
#[derive(clap::Args, Clone, Debug)]
pub struct DrainArgs {
    /// Kinesis endpoint (http://127.0.0.1:4567), or for grpc-drain the gRPC endpoint.
    #[arg(long)]
    pub endpoint: String,
    /// MiB of record data to preload.
    #[arg(long, default_value_t = 512, env = "BENCH_DRAIN_MB")]
    pub preload_mb: u64,
    /// Stop preloading after this many seconds, even if short of --preload-mb (slow servers).
    #[arg(long, default_value_t = 120.0, env = "BENCH_PRELOAD_MAX_SECONDS")]
    pub preload_max_seconds: f64,
    /// Bytes of data per record.
    #[arg(long, default_value_t = 1024)]
    pub record_bytes: usize,
    /// Records per PutRecords call while preloading.
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
    /// Calls in flight while preloading.
    #[arg(long, default_value_t = 8, env = "BENCH_CONCURRENCY")]
    pub concurrency: usize,
    /// Records per GetRecords call.
    #[arg(long, default_value_t = 10_000)]
    pub limit: u32,
    /// Pid of the server, to report the CPU it used while drained (several: comma-separated).
    #[arg(long = "server-pid", value_delimiter = ',')]
    pub server_pids: Vec<u32>,
}

/// What a preload wrote.
pub struct Preloaded {
    /// Records acknowledged.
    pub records: u64,
    /// Data bytes acknowledged.
    pub bytes: u64,
    /// How long it took.
    pub elapsed: Duration,
    /// Whether it stopped at the time limit.
    pub cut_short: bool,
}

/// Puts batches with `concurrency` workers until `args.preload_mb` MiB are acknowledged or the
/// time limit passes.
pub async fn preload<F, Fut>(args: &DrainArgs, put: F) -> Result<Preloaded>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Sent>> + Send + 'static,
{
    let batch_bytes = (args.batch * args.record_bytes) as u64;
    let batches = (args.preload_mb * 1024 * 1024).div_ceil(batch_bytes.max(1));
    let claimed = Arc::new(AtomicU64::new(0));
    let records = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let put = Arc::new(put);
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(args.preload_max_seconds);
    let mut workers = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let (claimed, records, bytes, put) =
            (claimed.clone(), records.clone(), bytes.clone(), put.clone());
        workers.push(tokio::spawn(async move {
            while Instant::now() < deadline && claimed.fetch_add(1, Ordering::Relaxed) < batches {
                let sent = put().await?;
                if sent.failed_records > 0 {
                    bail!("{} records of a preload batch failed", sent.failed_records);
                }
                records.fetch_add(sent.records, Ordering::Relaxed);
                bytes.fetch_add(sent.bytes, Ordering::Relaxed);
            }
            Ok(())
        }));
    }
    for w in workers {
        w.await.map_err(|e| anyhow!("preload worker: {e}"))??;
    }
    Ok(Preloaded {
        records: records.load(Ordering::Relaxed),
        bytes: bytes.load(Ordering::Relaxed),
        elapsed: start.elapsed(),
        cut_short: claimed.load(Ordering::Relaxed) < batches,
    })
}

/// What a drain read.
pub struct Drained {
    /// Records read.
    pub records: u64,
    /// Data bytes read.
    pub bytes: u64,
    /// From the first call to the last answer.
    pub elapsed: Duration,
    /// Per-call latency.
    pub calls: Histogram,
    /// From sending a call to its response head (Kinesis only): the server's read and encode.
    pub first_byte: Histogram,
    /// From the response head to the end of its body (Kinesis only): transfer and receipt,
    /// with the body counted as it arrives.
    pub body: Histogram,
}

/// The outcome of a drain, shared by the Kinesis and gRPC variants.
pub fn outcome(
    name: &str,
    args: &DrainArgs,
    loaded: &Preloaded,
    drained: &Drained,
    usage: crate::cpu::Usage,
) -> Outcome {
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let mut o = Outcome::new(&format!(
        "{name} ({:.0} MiB of {} B records, Limit {})",
        mib(loaded.bytes),
        args.record_bytes,
        args.limit
    ));
    o.metric(
        "mib_per_s",
        mib(drained.bytes) / drained.elapsed.as_secs_f64(),
        "MiB/s",
    );
    o.metric(
        "records_per_s",
        drained.records as f64 / drained.elapsed.as_secs_f64(),
        "records/s",
    );
    o.metric("drained_mib", mib(drained.bytes), "MiB");
    o.metric("seconds", drained.elapsed.as_secs_f64(), "s");
    o.latency("call_", &drained.calls);
    if drained.first_byte.count() > 0 {
        o.metric(
            "call_head_p50_ms",
            drained.first_byte.quantile(0.5) as f64 / 1e6,
            "ms",
        );
        o.metric(
            "call_body_p50_ms",
            drained.body.quantile(0.5) as f64 / 1e6,
            "ms",
        );
    }
    o.metric(
        "preload_mib_per_s",
        mib(loaded.bytes) / loaded.elapsed.as_secs_f64(),
        "MiB/s",
    );
    o.cpu(usage);
    if loaded.cut_short {
        o.note(format!(
            "preload stopped after {:.0} s at {:.0} of {} MiB",
            args.preload_max_seconds,
            mib(loaded.bytes),
            args.preload_mb
        ));
    }
    o
}

/// Runs the workload.
pub async fn run(args: &DrainArgs) -> Result<Outcome> {
    let kinesis = Kinesis::new(&args.endpoint)?;
    let stream = unique_stream_name("drain");
    let info = kinesis.create_stream(&stream, 1).await?;
    let shard = info.shard()?.to_string();
    let result = load_and_drain(args, &kinesis, &stream, &shard).await;
    kinesis.delete_stream(&stream).await;
    result
}

async fn load_and_drain(
    args: &DrainArgs,
    kinesis: &Kinesis,
    stream: &str,
    shard: &str,
) -> Result<Outcome> {
    let template = Arc::new(PutRecordsTemplate::new(
        stream,
        args.batch,
        args.record_bytes,
    ));
    let keys = Arc::new(KeySource::default());
    let loaded = {
        let kinesis = kinesis.clone();
        preload(args, move || {
            let (kinesis, template, keys) = (kinesis.clone(), template.clone(), keys.clone());
            async move { put_batch(&kinesis, &template, &keys).await }
        })
        .await?
    };
    let mut iterator = kinesis
        .shard_iterator(stream, shard, "TRIM_HORIZON")
        .await?;
    let probe = Probe {
        server_pids: args.server_pids.clone(),
    };
    let started = probe.start();
    let start = Instant::now();
    let mut drained = Drained {
        records: 0,
        bytes: 0,
        elapsed: Duration::ZERO,
        calls: Histogram::new(),
        first_byte: Histogram::new(),
        body: Histogram::new(),
    };
    while drained.records < loaded.records {
        let call = Instant::now();
        let body = json!({"ShardIterator": iterator, "Limit": args.limit}).to_string();
        let response = kinesis.send("GetRecords", body.into()).await?;
        // The server sends the head with the first body bytes, once the page is encoded.
        let head = call.elapsed();
        let status = response.status();
        let mut body = response.into_body();
        let mut scanner = PageScanner::new();
        let mut error_body = Vec::new();
        while let Some(frame) = body.frame().await {
            if let Ok(chunk) = frame?.into_data() {
                if status == StatusCode::OK {
                    scanner.feed(&chunk);
                } else if error_body.len() < 300 {
                    error_body.extend_from_slice(&chunk);
                }
            }
        }
        let whole = call.elapsed();
        drained.calls.record_duration(whole);
        drained.first_byte.record_duration(head);
        drained.body.record_duration(whole - head);
        if status != StatusCode::OK {
            bail!(
                "GetRecords: HTTP {status} {}",
                String::from_utf8_lossy(&error_body)
            );
        }
        let page = scanner.finish()?;
        drained.records += page.records;
        drained.bytes += page.data_bytes;
        if page.records == 0 && page.millis_behind_latest == Some(0) {
            bail!(
                "GetRecords reports the shard caught up after {} of {} records",
                drained.records,
                loaded.records
            );
        }
        iterator = page
            .next_iterator
            .ok_or_else(|| anyhow!("the shard closed while draining"))?;
    }
    drained.elapsed = start.elapsed();
    Ok(outcome("drain", args, &loaded, &drained, started.finish()))
}
