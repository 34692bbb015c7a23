//! Fixed-rate (open-loop) load: requests start on a schedule whether or not earlier ones have
//! finished, and each latency is measured from the request's intended start, so a stalled
//! server is charged for every request it delayed (no coordinated omission).
//!
//! The schedule runs on its own thread, sleeping and then spinning for the last few
//! microseconds, rather than on tokio timers, which round up to whole milliseconds: that
//! rounding would otherwise be charged to the server. How late each request actually started
//! is reported as the generator's own lag.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::histogram::Histogram;

/// The ticker sleeps until this long before a tick, then spins: a sleep overshoots by the
/// kernel's timer slack (50 µs by default), which would be charged to the server. Measured at
/// 1024 ticks/s, this takes the generator's lateness from 0.10 to 0.02 ms at the median and
/// from 0.16 to 0.06 ms at p99, for about 8 % of a core.
const SPIN: Duration = Duration::from_micros(80);

/// One scheduled request.
#[derive(Clone, Copy, Debug)]
pub struct Tick {
    /// 0, 1, 2, ... in schedule order.
    pub index: u64,
    /// When the request should start.
    pub intended: Instant,
}

/// The schedule of an open-loop run.
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    /// Requests per second.
    pub rate: f64,
    /// Requests before this much time has passed are sent but not measured.
    pub warmup: Duration,
    /// How long measured requests are sent for.
    pub measured: Duration,
}

impl Schedule {
    /// Total requests in the schedule.
    pub fn len(&self) -> u64 {
        ((self.warmup + self.measured).as_secs_f64() * self.rate).ceil() as u64
    }

    /// Starts the ticker thread; ticks stop when the schedule ends or the receiver is dropped.
    pub fn start(&self) -> (Instant, mpsc::UnboundedReceiver<Tick>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let interval = Duration::from_secs_f64(1.0 / self.rate);
        let count = self.len();
        // A little lead, so that the first tick is not already late when the thread starts.
        let start = Instant::now() + Duration::from_millis(5);
        std::thread::Builder::new()
            .name("open-loop-ticker".into())
            .spawn(move || {
                for index in 0..count {
                    let intended = start + interval.mul_f64(index as f64);
                    let now = Instant::now();
                    if intended > now + SPIN {
                        std::thread::sleep(intended - now - SPIN);
                    }
                    while Instant::now() < intended {
                        std::hint::spin_loop();
                    }
                    if tx.send(Tick { index, intended }).is_err() {
                        return;
                    }
                }
            })
            .expect("spawning a thread at start-up");
        (start, rx)
    }
}

/// What an open-loop run measured.
pub struct OpenLoopResult {
    /// From intended start to completion, of successful measured requests.
    pub latency: Histogram,
    /// From actual start to completion (what a closed-loop tool would report).
    pub service: Histogram,
    /// From intended to actual start: the generator's own lateness.
    pub lag: Histogram,
    /// Requests scheduled (measured or not).
    pub sent: u64,
    /// Measured requests that failed (errors, or abandoned when too many were outstanding).
    pub errors: u64,
    /// The first error, for the report.
    pub first_error: Option<String>,
    /// Every measured request, in completion order, for joining with system traces.
    pub requests: Vec<Traced>,
}

/// The times of one measured request.
#[derive(Clone, Copy, Debug)]
pub struct Traced {
    /// When it should have started.
    pub intended: Instant,
    /// When it started.
    pub started: Instant,
    /// When it completed (or failed).
    pub finished: Instant,
    /// Whether it succeeded.
    pub ok: bool,
}

struct Done {
    measured: bool,
    intended: Instant,
    started: Instant,
    finished: Instant,
    result: Result<()>,
}

/// Runs `request` for every tick of `schedule`; at most `max_outstanding` may be in flight
/// (further ticks are counted as errors, so an overwhelmed server cannot hide behind them).
pub async fn run<F, Fut>(schedule: Schedule, max_outstanding: usize, request: F) -> OpenLoopResult
where
    F: Fn(Tick) -> Fut,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    let (start, mut ticks) = schedule.start();
    let measure_from = start + schedule.warmup;
    let outstanding = Arc::new(AtomicUsize::new(0));
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
    let mut tasks = JoinSet::new();
    let mut out = OpenLoopResult {
        latency: Histogram::new(),
        service: Histogram::new(),
        lag: Histogram::new(),
        sent: 0,
        errors: 0,
        first_error: None,
        requests: Vec::new(),
    };
    let record = |out: &mut OpenLoopResult, d: Done| {
        if !d.measured {
            return;
        }
        out.requests.push(Traced {
            intended: d.intended,
            started: d.started,
            finished: d.finished,
            ok: d.result.is_ok(),
        });
        out.lag.record_duration(d.started - d.intended);
        match d.result {
            Ok(()) => {
                out.latency.record_duration(d.finished - d.intended);
                out.service.record_duration(d.finished - d.started);
            }
            Err(e) => {
                out.errors += 1;
                out.first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    };
    loop {
        tokio::select! {
            biased;
            tick = ticks.recv() => {
                let Some(tick) = tick else { break };
                out.sent += 1;
                let measured = tick.intended >= measure_from;
                if outstanding.load(Ordering::Relaxed) >= max_outstanding {
                    let now = Instant::now();
                    record(&mut out, Done {
                        measured,
                        intended: tick.intended,
                        started: now,
                        finished: now,
                        result: Err(anyhow::anyhow!("more than {max_outstanding} requests outstanding")),
                    });
                    continue;
                }
                outstanding.fetch_add(1, Ordering::Relaxed);
                let started = Instant::now();
                let fut = request(tick);
                let done_tx = done_tx.clone();
                let outstanding = outstanding.clone();
                tasks.spawn(async move {
                    let result = fut.await;
                    let finished = Instant::now();
                    outstanding.fetch_sub(1, Ordering::Relaxed);
                    let _ = done_tx.send(Done { measured, intended: tick.intended, started, finished, result });
                });
            }
            Some(d) = done_rx.recv() => record(&mut out, d),
            Some(_) = tasks.join_next() => {}
        }
    }
    drop(done_tx);
    // Stragglers get a generous deadline; whatever is still out then counts as failed.
    let deadline = tokio::time::sleep(Duration::from_secs(30));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            d = done_rx.recv() => match d {
                Some(d) => record(&mut out, d),
                None => break,
            },
            () = &mut deadline => {
                let left = outstanding.load(Ordering::Relaxed) as u64;
                out.errors += left;
                if left > 0 {
                    out.first_error.get_or_insert_with(|| "no answer within 30 s".into());
                }
                tasks.abort_all();
                break;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn latency_counts_from_the_intended_start() {
        // Every request takes 20 ms but requests are due every 5 ms with only one allowed in
        // flight: a closed-loop tool would report 20 ms, the open loop must report far more
        // for the ones that were held up, or count them as errors.
        let schedule = Schedule {
            rate: 200.0,
            warmup: Duration::ZERO,
            measured: Duration::from_millis(200),
        };
        let gate = Arc::new(tokio::sync::Mutex::new(()));
        let result = run(schedule, 1000, |_| {
            let gate = gate.clone();
            async move {
                let _held = gate.lock().await;
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok(())
            }
        })
        .await;
        assert_eq!(result.sent, schedule.len());
        assert_eq!(result.errors, 0);
        assert!(
            result.latency.max() > 100_000_000,
            "{}",
            result.latency.max()
        );
        assert!(result.lag.quantile(0.5) < 5_000_000);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn warm_up_requests_are_not_measured() {
        let schedule = Schedule {
            rate: 100.0,
            warmup: Duration::from_millis(100),
            measured: Duration::from_millis(100),
        };
        let result = run(schedule, 1000, |_| async { Ok(()) }).await;
        assert_eq!(result.sent, 20);
        assert!(
            (9..=11).contains(&result.latency.count()),
            "{}",
            result.latency.count()
        );
    }
}
