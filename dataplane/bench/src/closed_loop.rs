//! Maximum-throughput (closed-loop) load: a fixed number of workers each send a request as soon
//! as their previous one is answered. Only requests answered inside the measured window count.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::histogram::Histogram;

/// What one request achieved.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sent {
    /// Records acknowledged.
    pub records: u64,
    /// Data bytes acknowledged.
    pub bytes: u64,
    /// Records the server answered with a per-record failure.
    pub failed_records: u64,
}

/// Totals of a closed-loop run, over the measured window.
#[derive(Default)]
pub struct ClosedLoopResult {
    /// Records acknowledged.
    pub records: u64,
    /// Data bytes acknowledged.
    pub bytes: u64,
    /// Records that failed individually.
    pub failed_records: u64,
    /// Requests that failed as a whole.
    pub errors: u64,
    /// The first failure, for the report.
    pub first_error: Option<String>,
    /// Request latencies (send to answer).
    pub latency: Histogram,
    /// The measured window's length.
    pub window: Duration,
}

impl ClosedLoopResult {
    /// Acknowledged records per second.
    pub fn records_per_s(&self) -> f64 {
        self.records as f64 / self.window.as_secs_f64()
    }

    /// Acknowledged data in MiB (2^20 bytes) per second.
    pub fn mib_per_s(&self) -> f64 {
        self.bytes as f64 / self.window.as_secs_f64() / (1024.0 * 1024.0)
    }
}

/// Runs `concurrency` workers calling `op` for `warmup` + `measured`.
pub async fn run<F, Fut>(
    concurrency: usize,
    warmup: Duration,
    measured: Duration,
    op: F,
) -> ClosedLoopResult
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Sent>> + Send + 'static,
{
    let op = Arc::new(op);
    let start = Instant::now();
    let from = start + warmup;
    let until = from + measured;
    let total = Arc::new(Mutex::new(ClosedLoopResult {
        window: measured,
        ..ClosedLoopResult::default()
    }));
    let mut workers = Vec::new();
    for worker in 0..concurrency.max(1) {
        let op = op.clone();
        let total = total.clone();
        workers.push(tokio::spawn(async move {
            let mut mine = ClosedLoopResult::default();
            while Instant::now() < until {
                let sent_at = Instant::now();
                let result = op(worker).await;
                let done = Instant::now();
                let counted = done >= from && done <= until;
                match result {
                    Ok(sent) => {
                        if counted {
                            mine.records += sent.records;
                            mine.bytes += sent.bytes;
                            mine.failed_records += sent.failed_records;
                            mine.latency.record_duration(done - sent_at);
                        }
                    }
                    Err(e) => {
                        if counted {
                            mine.errors += 1;
                        }
                        mine.first_error.get_or_insert_with(|| format!("{e:#}"));
                        // Do not spin on a server that refuses everything.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            let mut t = total
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            t.records += mine.records;
            t.bytes += mine.bytes;
            t.failed_records += mine.failed_records;
            t.errors += mine.errors;
            if t.first_error.is_none() {
                t.first_error = mine.first_error;
            }
            t.latency.merge(&mine.latency);
        }));
    }
    for w in workers {
        let _ = w.await;
    }
    let mut t = total
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    std::mem::take(&mut *t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_only_the_measured_window() {
        let r = run(
            2,
            Duration::from_millis(50),
            Duration::from_millis(200),
            |_| async {
                tokio::time::sleep(Duration::from_millis(10)).await;
                Ok(Sent {
                    records: 10,
                    bytes: 1000,
                    failed_records: 0,
                })
            },
        )
        .await;
        // Two workers, ~20 requests each in 200 ms.
        assert!((20..=42).contains(&(r.records / 10)), "{}", r.records);
        assert_eq!(r.bytes, r.records * 100);
        assert_eq!(r.window, Duration::from_millis(200));
    }
}
