//! Per-shard provisioned throughput limits, enforced with token buckets.

use std::sync::Mutex;
use std::time::Instant;

/// Per-shard limits; Kinesis defaults for provisioned shards.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShardLimits {
    /// Whether limits are enforced at all.
    pub enabled: bool,
    /// Bytes per second written (data plus partition keys).
    pub write_bytes_per_sec: f64,
    /// Records per second written.
    pub write_records_per_sec: f64,
    /// Bytes per second read by GetRecords.
    pub read_bytes_per_sec: f64,
    /// GetRecords calls per second.
    pub read_calls_per_sec: f64,
    /// Bytes per second pushed to one enhanced fan-out consumer by SubscribeToShard.
    pub subscriber_bytes_per_sec: f64,
}

impl Default for ShardLimits {
    fn default() -> ShardLimits {
        ShardLimits {
            enabled: true,
            write_bytes_per_sec: 1024.0 * 1024.0,
            write_records_per_sec: 1000.0,
            read_bytes_per_sec: 2.0 * 1024.0 * 1024.0,
            read_calls_per_sec: 5.0,
            subscriber_bytes_per_sec: 2.0 * 1024.0 * 1024.0,
        }
    }
}

/// Paces what one subscription pushes to `rate` bytes per second, allowing a burst of one
/// second's worth: after each event, [`Pace::sent`] says until when the next must wait.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    rate: f64,
    /// The moment the bytes sent so far are paid for.
    paid_until: Instant,
}

impl Pace {
    /// A pace of `rate` bytes per second (no pacing if `None`), starting with a full burst.
    pub fn new(rate: Option<f64>, now: Instant) -> Option<Pace> {
        rate.filter(|r| *r > 0.0).map(|rate| Pace {
            rate,
            paid_until: now,
        })
    }

    /// Records `bytes` sent at `now`; returns when the next event may be sent, if not at once.
    pub fn sent(&mut self, bytes: usize, now: Instant) -> Option<Instant> {
        let burst = std::time::Duration::from_secs(1);
        let from = self.paid_until.max(now.checked_sub(burst).unwrap_or(now));
        self.paid_until = from + std::time::Duration::from_secs_f64(bytes as f64 / self.rate);
        (self.paid_until > now).then_some(self.paid_until)
    }
}

/// A token bucket that refills continuously up to one second's worth of tokens.
#[derive(Debug)]
struct Bucket {
    rate: f64,
    tokens: f64,
    refilled: Instant,
}

impl Bucket {
    fn new(rate: f64) -> Bucket {
        Bucket {
            rate,
            tokens: rate,
            refilled: Instant::now(),
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        self.refilled = now;
    }
}

/// The four buckets of one shard.
#[derive(Debug)]
pub struct ShardThrottle {
    limits: ShardLimits,
    buckets: Mutex<[Bucket; 4]>,
}

const WRITE_BYTES: usize = 0;
const WRITE_RECORDS: usize = 1;
const READ_BYTES: usize = 2;
const READ_CALLS: usize = 3;

impl ShardThrottle {
    /// Buckets that start full.
    pub fn new(limits: ShardLimits) -> ShardThrottle {
        ShardThrottle {
            limits,
            buckets: Mutex::new([
                Bucket::new(limits.write_bytes_per_sec),
                Bucket::new(limits.write_records_per_sec),
                Bucket::new(limits.read_bytes_per_sec),
                Bucket::new(limits.read_calls_per_sec),
            ]),
        }
    }

    /// Takes capacity for one record of `bytes`; false (and nothing taken) when over the limit.
    pub fn admit_write(&self, bytes: usize) -> bool {
        if !self.limits.enabled {
            return true;
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        buckets[WRITE_BYTES].refill(now);
        buckets[WRITE_RECORDS].refill(now);
        let bytes = bytes as f64;
        if buckets[WRITE_BYTES].tokens < bytes || buckets[WRITE_RECORDS].tokens < 1.0 {
            return false;
        }
        buckets[WRITE_BYTES].tokens -= bytes;
        buckets[WRITE_RECORDS].tokens -= 1.0;
        true
    }

    /// Takes one GetRecords call; false when over the call rate or while earlier reads
    /// overdrew the byte rate.
    pub fn admit_read_call(&self) -> bool {
        if !self.limits.enabled {
            return true;
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        buckets[READ_CALLS].refill(now);
        buckets[READ_BYTES].refill(now);
        if buckets[READ_CALLS].tokens < 1.0 || buckets[READ_BYTES].tokens < 0.0 {
            return false;
        }
        buckets[READ_CALLS].tokens -= 1.0;
        true
    }

    /// Charges bytes already read; a large read may overdraw the bucket, which then delays
    /// the following calls, as Kinesis does.
    pub fn charge_read_bytes(&self, bytes: usize) {
        if !self.limits.enabled {
            return;
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        buckets[READ_BYTES].tokens -= bytes as f64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_limits_bound_a_burst() {
        let throttle = ShardThrottle::new(ShardLimits::default());
        let admitted = (0..2000).filter(|_| throttle.admit_write(10)).count();
        // One second of records, plus whatever refilled while the loop ran.
        assert!((1000..1100).contains(&admitted), "admitted {admitted}");
        let throttle = ShardThrottle::new(ShardLimits::default());
        assert!(throttle.admit_write(1024 * 1024));
        assert!(!throttle.admit_write(1024));
    }

    #[test]
    fn read_calls_are_limited_to_five_per_second() {
        let throttle = ShardThrottle::new(ShardLimits::default());
        let admitted = (0..20).filter(|_| throttle.admit_read_call()).count();
        assert_eq!(admitted, 5);
    }

    #[test]
    fn a_subscription_is_paced_after_a_one_second_burst() {
        let start = Instant::now();
        let mut pace = Pace::new(Some(1000.0), start).unwrap();
        // A second's worth at once, after a quiet second: no wait.
        let later = start + std::time::Duration::from_secs(1);
        assert_eq!(pace.sent(1000, later), None);
        // Another second's worth: wait one second.
        let wait = pace.sent(1000, later).unwrap();
        assert_eq!(wait - later, std::time::Duration::from_secs(1));
        // Sent when allowed, half a second's worth: half a second more.
        let next = pace.sent(500, wait).unwrap();
        assert_eq!(next - wait, std::time::Duration::from_millis(500));
        assert!(Pace::new(None, start).is_none());
    }

    #[test]
    fn disabled_limits_admit_everything() {
        let throttle = ShardThrottle::new(ShardLimits {
            enabled: false,
            ..ShardLimits::default()
        });
        assert!((0..10_000).all(|_| throttle.admit_write(1 << 20)));
        assert!((0..100).all(|_| throttle.admit_read_call()));
    }
}
