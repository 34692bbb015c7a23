//! A shard at run time: its log, its throughput buckets, its metrics and a signal for readers
//! waiting on new records.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use riffle_log::{LogConfig, RecordIn, ShardLog};
use tokio::sync::{Notify, oneshot, watch};

use super::error::{ApiError, ApiResult};
use super::throttle::{ShardLimits, ShardThrottle};
use crate::metrics::ShardMetrics;

/// A retained shard's run-time handles.
pub struct Shard {
    /// Shard index.
    pub index: u32,
    /// The durable log.
    pub log: Arc<ShardLog>,
    /// Throughput limits.
    pub throttle: ShardThrottle,
    /// Counters exported on `/metrics`.
    pub metrics: ShardMetrics,
    tip: watch::Sender<u64>,
    /// Appends enqueued whose callback has not run yet, and a signal when that reaches zero.
    in_flight: Arc<(AtomicUsize, Notify)>,
}

impl Shard {
    /// Opens (recovering if needed) the shard's log in `dir`.
    pub fn open(
        index: u32,
        dir: &Path,
        log: LogConfig,
        limits: ShardLimits,
    ) -> ApiResult<Arc<Shard>> {
        let log = Arc::new(ShardLog::open(dir, log)?);
        let (tip, _) = watch::channel(log.end_offset());
        let shard = Arc::new(Shard {
            index,
            log,
            throttle: ShardThrottle::new(limits),
            metrics: ShardMetrics::default(),
            tip,
            in_flight: Arc::new((AtomicUsize::new(0), Notify::new())),
        });
        let notify = shard.tip.clone();
        shard.log.set_commit_listener(Box::new(move |end| {
            notify.send_replace(end);
        }));
        Ok(shard)
    }

    /// Appends records; resolves once they are durable, with the first record's offset and
    /// their arrival time.
    pub fn append(
        &self,
        records: Vec<RecordIn>,
    ) -> impl std::future::Future<Output = ApiResult<riffle_log::AppendAck>> + use<> {
        self.enqueue(records, None)
    }

    /// Like [`Shard::append`], stamping the records `arrival_ms` (see
    /// [`riffle_log::ShardLog::append_at`]) instead of the commit time.
    pub fn append_at(
        &self,
        records: Vec<RecordIn>,
        arrival_ms: i64,
    ) -> impl std::future::Future<Output = ApiResult<riffle_log::AppendAck>> + use<> {
        self.enqueue(records, Some(arrival_ms))
    }

    fn enqueue(
        &self,
        records: Vec<RecordIn>,
        arrival_ms: Option<i64>,
    ) -> impl std::future::Future<Output = ApiResult<riffle_log::AppendAck>> + use<> {
        let (sender, receiver) = oneshot::channel();
        let in_flight = self.in_flight.clone();
        in_flight.0.fetch_add(1, Ordering::SeqCst);
        let done: riffle_log::AppendCallback = Box::new(move |result| {
            let _ = sender.send(result);
            if in_flight.0.fetch_sub(1, Ordering::SeqCst) == 1 {
                in_flight.1.notify_waiters();
            }
        });
        match arrival_ms {
            Some(at) => self.log.append_at(records, at, done),
            None => self.log.append(records, done),
        }
        async move {
            match receiver.await {
                Ok(result) => result.map_err(ApiError::from),
                Err(_) => Err(ApiError::internal("the shard log stopped")),
            }
        }
    }

    /// Waits until every append enqueued so far has completed and returns the end offset
    /// then. The caller must keep new appends out (the stream's write lock does).
    pub async fn barrier(&self) -> ApiResult<u64> {
        loop {
            let drained = self.in_flight.1.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            if self.in_flight.0.load(Ordering::SeqCst) == 0 {
                return Ok(self.log.end_offset());
            }
            drained.await;
        }
    }

    /// Wakes every reader waiting on [`Shard::watch_tip`] without new records, e.g. because
    /// the shard was closed and readers should move on to its children.
    pub fn wake_readers(&self) {
        self.tip.send_modify(|_| {});
    }

    /// A receiver that changes whenever new records become durable.
    pub fn watch_tip(&self) -> watch::Receiver<u64> {
        self.tip.subscribe()
    }
}
