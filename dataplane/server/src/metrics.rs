//! Prometheus metrics named after the CloudWatch metrics of Kinesis Data Streams.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::streams::Catalog;
use crate::streams::model::shard_id;

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The current count.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    /// Sets the value.
    pub fn set(&self, value: u64) {
        self.0.store(value, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Upper bounds (seconds) of the latency histogram buckets.
const LATENCY_BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// A latency histogram with fixed buckets.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Records one observation in seconds.
    pub fn observe(&self, seconds: f64) {
        if let Some(i) = LATENCY_BUCKETS.iter().position(|bound| seconds <= *bound) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
    }

    pub(crate) fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (bound, bucket) in LATENCY_BUCKETS.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

/// The per-shard metrics.
#[derive(Debug, Default)]
pub struct ShardMetrics {
    /// IncomingBytes.
    pub incoming_bytes: Counter,
    /// IncomingRecords.
    pub incoming_records: Counter,
    /// OutgoingBytes.
    pub outgoing_bytes: Counter,
    /// OutgoingRecords.
    pub outgoing_records: Counter,
    /// WriteProvisionedThroughputExceeded.
    pub write_throttled: Counter,
    /// ReadProvisionedThroughputExceeded.
    pub read_throttled: Counter,
    /// GetRecords.IteratorAgeMilliseconds of the latest read.
    pub iterator_age_ms: Gauge,
    /// GetRecords.Latency.
    pub get_records_latency: Histogram,
}

const COUNTERS: [(&str, &str); 6] = [
    (
        "riffle_incoming_bytes_total",
        "Bytes put to the shard (IncomingBytes).",
    ),
    (
        "riffle_incoming_records_total",
        "Records put to the shard (IncomingRecords).",
    ),
    (
        "riffle_outgoing_bytes_total",
        "Bytes returned by GetRecords (OutgoingBytes).",
    ),
    (
        "riffle_outgoing_records_total",
        "Records returned by GetRecords (OutgoingRecords).",
    ),
    (
        "riffle_write_provisioned_throughput_exceeded_total",
        "Records refused by the shard's write limit (WriteProvisionedThroughputExceeded).",
    ),
    (
        "riffle_read_provisioned_throughput_exceeded_total",
        "GetRecords calls refused by the shard's read limit (ReadProvisionedThroughputExceeded).",
    ),
];

/// Renders every stream's metrics in the Prometheus text format.
pub async fn render(catalog: &Catalog) -> String {
    let mut series: Vec<(String, std::sync::Arc<crate::streams::shard::Shard>)> = Vec::new();
    for stream in catalog.streams() {
        let shards = catalog
            .describe(&stream.name, |_, state| {
                state.shards.values().cloned().collect::<Vec<_>>()
            })
            .await
            .unwrap_or_default();
        for shard in shards {
            let labels = format!(
                "stream=\"{}\",shard=\"{}\"",
                stream.name,
                shard_id(shard.index)
            );
            series.push((labels, shard));
        }
    }
    let mut out = String::with_capacity(256 + series.len() * 1024);
    for (i, (name, help)) in COUNTERS.iter().enumerate() {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (labels, shard) in &series {
            let m = &shard.metrics;
            let value = [
                &m.incoming_bytes,
                &m.incoming_records,
                &m.outgoing_bytes,
                &m.outgoing_records,
                &m.write_throttled,
                &m.read_throttled,
            ][i]
                .get();
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
    let name = "riffle_get_records_iterator_age_milliseconds";
    let _ = writeln!(
        out,
        "# HELP {name} How far the latest GetRecords read lagged the shard's tip (GetRecords.IteratorAgeMilliseconds).\n# TYPE {name} gauge"
    );
    for (labels, shard) in &series {
        let _ = writeln!(
            out,
            "{name}{{{labels}}} {}",
            shard.metrics.iterator_age_ms.get()
        );
    }
    let name = "riffle_get_records_latency_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Time to serve GetRecords (GetRecords.Latency).\n# TYPE {name} histogram"
    );
    for (labels, shard) in &series {
        shard
            .metrics
            .get_records_latency
            .render(&mut out, name, labels);
    }
    let name = "riffle_shard_log_bytes";
    let _ = writeln!(
        out,
        "# HELP {name} Bytes stored in the shard's log.\n# TYPE {name} gauge"
    );
    for (labels, shard) in &series {
        let _ = writeln!(out, "{name}{{{labels}}} {}", shard.log.size_bytes());
    }
    let name = "riffle_deletion_backlog_bytes";
    let _ = writeln!(
        out,
        "# HELP {name} Bytes of deleted streams and expired segments not freed on disk yet (they are freed at a pace).\n# TYPE {name} gauge\n{name} {}",
        catalog.deletion_backlog_bytes()
    );
    out
}
