//! `put-record-latency`: PutRecord at a fixed byte rate (open loop); acknowledgement latency
//! from each call's intended start.

use std::sync::Arc;

use anyhow::{Result, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use hyper::StatusCode;

use super::Timing;
use crate::kinesis::{Kinesis, unique_stream_name};
use crate::open_loop::{self, Schedule};
use crate::put_body::random_payloads;
use crate::report::Outcome;

/// Options of `put-record-latency`.
#[derive(clap::Args, Clone, Debug)]
pub struct PutRecordLatencyArgs {
    /// Kinesis endpoint, e.g. http://127.0.0.1:4567.
    #[arg(long)]
    pub endpoint: String,
    /// Bytes of data per second; the call rate is this over --record-bytes.
    #[arg(long, default_value_t = 1_048_576)]
    pub rate_bytes: u64,
    /// Bytes of data per record.
    #[arg(long, default_value_t = 1024)]
    pub record_bytes: usize,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub timing: Timing,
}

/// Most calls in flight before further ones are counted as failed.
const MAX_OUTSTANDING: usize = 10_000;

/// Runs the workload.
pub async fn run(args: &PutRecordLatencyArgs) -> Result<Outcome> {
    let kinesis = Kinesis::new(&args.endpoint)?;
    let stream = unique_stream_name("put-record");
    kinesis.create_stream(&stream, 1).await?;
    let rate = args.rate_bytes as f64 / args.record_bytes.max(1) as f64;
    let schedule = Schedule {
        rate,
        warmup: args.timing.warmup(),
        measured: args.timing.measured(),
    };
    // Bodies are encoded up front, so the schedule is never held up by the encoder.
    let payloads = random_payloads(64, args.record_bytes);
    let stream_json = serde_json::Value::from(stream.as_str()).to_string();
    let bodies: Arc<Vec<Bytes>> = Arc::new(
        (0..schedule.len())
            .map(|i| {
                let data = STANDARD.encode(&payloads[i as usize % payloads.len()]);
                Bytes::from(format!(
                    "{{\"StreamName\":{stream_json},\"PartitionKey\":\"pk-{i:016x}\",\"Data\":\"{data}\"}}"
                ))
            })
            .collect(),
    );
    let started = args.timing.probe().start();
    let result = {
        let kinesis = kinesis.clone();
        open_loop::run(schedule, MAX_OUTSTANDING, move |tick| {
            let kinesis = kinesis.clone();
            let body = bodies[tick.index as usize].clone();
            async move {
                let reply = kinesis.call_raw("PutRecord", body).await?;
                if reply.status != StatusCode::OK {
                    bail!(
                        "PutRecord: HTTP {} {}",
                        reply.status,
                        reply.error_type().unwrap_or_default()
                    );
                }
                Ok(())
            }
        })
        .await
    };
    let usage = started.finish();
    kinesis.delete_stream(&stream).await;
    let mut o = Outcome::new(&format!(
        "put-record-latency ({rate:.0} calls/s of {} B, open loop)",
        args.record_bytes
    ));
    o.latency("", &result.latency);
    o.metric("errors", result.errors as f64, "calls");
    o.metric(
        "service_p99_ms",
        result.service.quantile(0.99) as f64 / 1e6,
        "ms",
    );
    o.metric(
        "generator_lag_p99_ms",
        result.lag.quantile(0.99) as f64 / 1e6,
        "ms",
    );
    o.cpu(usage);
    if let Some(e) = result.first_error {
        o.note(format!("first error: {e}"));
    }
    if result.latency.count() == 0 {
        bail!(
            "no call succeeded{}",
            o.notes
                .first()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default()
        );
    }
    Ok(o)
}
