//! `put-record-latency`: PutRecord at a fixed byte rate (open loop); acknowledgement latency
//! from each call's intended start.

use std::sync::Arc;
use std::time::Instant;

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
    /// Write every measured call as `intended,started,finished,ok` in CLOCK_MONOTONIC
    /// nanoseconds (the clock of `perf record -k mono` timestamps) to this CSV file, to line
    /// calls up with server-side traces.
    #[arg(long)]
    pub trace: Option<std::path::PathBuf>,
}

/// CLOCK_MONOTONIC nanoseconds of `t`. `Instant` is that clock on Linux and shows its raw
/// value only through `Debug` (`Instant { tv_sec: .., tv_nsec: .. }`).
fn monotonic_ns(t: Instant) -> Option<u128> {
    let text = format!("{t:?}");
    let number = |key: &str| -> Option<u128> {
        let rest = &text[text.find(key)? + key.len()..];
        let digits: String = rest
            .trim_start()
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    };
    Some(number("tv_sec:")? * 1_000_000_000 + number("tv_nsec:")?)
}

/// Writes the trace CSV.
fn write_trace(path: &std::path::Path, requests: &[open_loop::Traced]) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(out, "intended_ns,started_ns,finished_ns,ok")?;
    for r in requests {
        let (Some(intended), Some(started), Some(finished)) = (
            monotonic_ns(r.intended),
            monotonic_ns(r.started),
            monotonic_ns(r.finished),
        ) else {
            bail!("this platform does not show Instant as CLOCK_MONOTONIC");
        };
        writeln!(out, "{intended},{started},{finished},{}", u8::from(r.ok))?;
    }
    out.flush()?;
    Ok(())
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
    if let Some(path) = &args.trace {
        write_trace(path, &result.requests)?;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_convert_to_monotonic_nanoseconds() {
        let a = Instant::now();
        let b = a + std::time::Duration::from_micros(1500);
        let (a_ns, b_ns) = (
            monotonic_ns(a).expect("linux"),
            monotonic_ns(b).expect("linux"),
        );
        assert_eq!(b_ns - a_ns, 1_500_000);
    }
}
