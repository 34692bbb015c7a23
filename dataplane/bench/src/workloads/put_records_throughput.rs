//! `put-records-throughput`: closed-loop PutRecords of full batches into a one-shard stream.

use std::sync::Arc;

use anyhow::{Result, anyhow, bail};
use hyper::StatusCode;

use super::Timing;
use crate::closed_loop::{self, Sent};
use crate::kinesis::{Kinesis, unique_stream_name};
use crate::put_body::{KeySource, PutRecordsTemplate};
use crate::report::Outcome;
use crate::response_scan::failed_record_count;

/// Options of `put-records-throughput`.
#[derive(clap::Args, Clone, Debug)]
pub struct PutRecordsThroughputArgs {
    /// Kinesis endpoint, e.g. http://127.0.0.1:4567.
    #[arg(long)]
    pub endpoint: String,
    /// Bytes of data per record.
    #[arg(long, default_value_t = 1024)]
    pub record_bytes: usize,
    /// Records per PutRecords call.
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
    /// Calls in flight at once.
    #[arg(long, default_value_t = 8, env = "BENCH_CONCURRENCY")]
    pub concurrency: usize,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub timing: Timing,
}

/// Sends one pre-encoded PutRecords body with fresh partition keys; a per-record failure is
/// counted, a failed call is an error.
pub async fn put_batch(
    kinesis: &Kinesis,
    template: &PutRecordsTemplate,
    keys: &KeySource,
) -> Result<Sent> {
    let body = template.body(keys.take(template.batch()));
    let reply = kinesis.call_raw("PutRecords", body).await?;
    if reply.status != StatusCode::OK {
        bail!(
            "PutRecords: HTTP {} {}",
            reply.status,
            reply.error_type().unwrap_or_default()
        );
    }
    let failed = failed_record_count(&reply.body)
        .ok_or_else(|| anyhow!("PutRecords response without FailedRecordCount"))?;
    let batch = template.batch() as u64;
    let ok = batch.saturating_sub(failed);
    Ok(Sent {
        records: ok,
        bytes: template.data_bytes() / batch.max(1) * ok,
        failed_records: failed,
    })
}

/// Runs the workload.
pub async fn run(args: &PutRecordsThroughputArgs) -> Result<Outcome> {
    let kinesis = Kinesis::new(&args.endpoint)?;
    let stream = unique_stream_name("put-records");
    kinesis.create_stream(&stream, 1).await?;
    let template = Arc::new(PutRecordsTemplate::new(
        &stream,
        args.batch,
        args.record_bytes,
    ));
    let keys = Arc::new(KeySource::default());
    let started = args.timing.probe().start();
    let result = {
        let kinesis = kinesis.clone();
        closed_loop::run(
            args.concurrency,
            args.timing.warmup(),
            args.timing.measured(),
            move |_| {
                let kinesis = kinesis.clone();
                let template = template.clone();
                let keys = keys.clone();
                async move { put_batch(&kinesis, &template, &keys).await }
            },
        )
        .await
    };
    let usage = started.finish();
    kinesis.delete_stream(&stream).await;
    let mut o = Outcome::new(&format!(
        "put-records-throughput ({} x {} B, concurrency {})",
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
        bail!(
            "no record was acknowledged{}",
            o.notes
                .first()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default()
        );
    }
    Ok(o)
}
