//! Sizing of on-demand streams, following the Kinesis rules: a new stream starts with 4 MiB/s of
//! write capacity (4 shards of 1 MiB/s and 1,000 records/s each), and capacity grows to twice
//! the recent peak of writes; a stream that is throttled doubles at once. Capacity shrinks, by at
//! most half per step, only after a cool-down without changes, and never below the default.
//!
//! The operator samples each shard group's write counters (the data plane's ShardMetrics) on
//! every pass over an on-demand stream; [`Tracker`] turns the samples into rates and keeps the
//! peak, and [`decide`] is a pure function of them, tested without a cluster.

use std::collections::VecDeque;
use std::time::Duration;

/// Write capacity of one shard in bytes per second.
pub const SHARD_BYTES_PER_SECOND: f64 = 1024.0 * 1024.0;
/// Write capacity of one shard in records per second.
pub const SHARD_RECORDS_PER_SECOND: f64 = 1000.0;
/// Shards of a new on-demand stream, and the fewest it is scaled down to (4 MiB/s).
pub const DEFAULT_SHARDS: u32 = 4;
/// How long the peak is remembered.
pub const PEAK_WINDOW: Duration = Duration::from_secs(15 * 60);
/// How long a stream keeps its capacity after a change before it may shrink.
pub const COOL_DOWN: Duration = Duration::from_secs(15 * 60);

/// Counters of a whole stream (summed over its shards), as the data plane reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    /// Data bytes accepted.
    pub bytes: u64,
    /// Records accepted.
    pub records: u64,
    /// Records refused by a shard's write limit.
    pub throttled: u64,
}

/// Writes per second over one sampling interval.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Load {
    /// Bytes accepted per second.
    pub bytes_per_second: f64,
    /// Records accepted per second.
    pub records_per_second: f64,
    /// Records throttled per second.
    pub throttled_per_second: f64,
}

impl Load {
    /// The shards needed to take this load at full capacity.
    pub fn shards_needed(&self) -> f64 {
        (self.bytes_per_second / SHARD_BYTES_PER_SECOND)
            .max(self.records_per_second / SHARD_RECORDS_PER_SECOND)
    }
}

/// The samples of one stream: the last counters, recent rates, and when it was last resized.
#[derive(Debug, Clone, Default)]
pub struct Tracker {
    last: Option<(Duration, Counters)>,
    rates: VecDeque<(Duration, Load)>,
    last_change: Option<Duration>,
}

impl Tracker {
    /// Records `counters` read at `now` (time since any fixed instant) and returns the load since
    /// the previous sample. Counters that went down (a data-plane pod restarted) start afresh.
    pub fn observe(&mut self, now: Duration, counters: Counters) -> Option<Load> {
        let previous = self.last.replace((now, counters));
        // Nothing is known of the time before the first sample: the cool-down counts from it.
        self.last_change.get_or_insert(now);
        let (then, before) = previous?;
        let seconds = now.checked_sub(then)?.as_secs_f64();
        if seconds < 0.5
            || counters.bytes < before.bytes
            || counters.records < before.records
            || counters.throttled < before.throttled
        {
            return None;
        }
        let load = Load {
            bytes_per_second: (counters.bytes - before.bytes) as f64 / seconds,
            records_per_second: (counters.records - before.records) as f64 / seconds,
            throttled_per_second: (counters.throttled - before.throttled) as f64 / seconds,
        };
        self.rates.push_back((now, load));
        while self
            .rates
            .front()
            .is_some_and(|(at, _)| now.saturating_sub(*at) > PEAK_WINDOW)
        {
            self.rates.pop_front();
        }
        Some(load)
    }

    /// The highest load of the window, per dimension.
    pub fn peak(&self) -> Load {
        self.rates
            .iter()
            .fold(Load::default(), |peak, (_, load)| Load {
                bytes_per_second: peak.bytes_per_second.max(load.bytes_per_second),
                records_per_second: peak.records_per_second.max(load.records_per_second),
                throttled_per_second: peak.throttled_per_second.max(load.throttled_per_second),
            })
    }

    /// Notes that the stream was resized at `now`.
    pub fn changed(&mut self, now: Duration) {
        self.last_change = Some(now);
    }

    /// When the stream was last resized, or when sampling began.
    pub fn last_change(&self) -> Option<Duration> {
        self.last_change
    }
}

/// A new size for an on-demand stream and the figures behind it.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The shard count to ask for.
    pub target: u32,
    /// The figures, for the Event.
    pub reason: String,
}

/// The size an on-demand stream with `open` shards should move to, given the last interval's
/// `load` and the window's `peak`, or `None` to keep it. Grows at once (at most doubling per
/// step); shrinks only when `since_change` exceeds [`COOL_DOWN`] (at most halving per step).
pub fn decide(
    open: u32,
    load: &Load,
    peak: &Load,
    since_change: Option<Duration>,
) -> Option<Decision> {
    let open = open.max(1);
    let from_peak = (2.0 * peak.shards_needed()).ceil() as u32;
    let mut wanted = from_peak.max(DEFAULT_SHARDS);
    let throttled = load.throttled_per_second > 0.0;
    if throttled {
        wanted = wanted.max(open * 2);
    }
    let target = if wanted > open {
        wanted.min(open * 2)
    } else if wanted < open && since_change.is_none_or(|d| d >= COOL_DOWN) {
        wanted.max(open.div_ceil(2))
    } else {
        return None;
    };
    if target == open {
        return None;
    }
    let mib = |bytes: f64| bytes / SHARD_BYTES_PER_SECOND;
    let reason = format!(
        "peak writes {:.2} MiB/s and {:.0} records/s in the last {} min{}: {open} \u{2192} {target} \
         shards (capacity twice the peak, at least {DEFAULT_SHARDS})",
        mib(peak.bytes_per_second),
        peak.records_per_second,
        PEAK_WINDOW.as_secs() / 60,
        if throttled {
            format!(", {:.0} records/s throttled now", load.throttled_per_second)
        } else {
            String::new()
        },
    );
    Some(Decision { target, reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(mib_per_second: f64) -> Load {
        Load {
            bytes_per_second: mib_per_second * SHARD_BYTES_PER_SECOND,
            records_per_second: 10.0,
            throttled_per_second: 0.0,
        }
    }

    #[test]
    fn rates_come_from_the_difference_of_two_samples() {
        let mut tracker = Tracker::default();
        let t = Duration::from_secs;
        assert_eq!(tracker.observe(t(100), Counters::default()), None);
        assert_eq!(
            tracker.last_change(),
            Some(t(100)),
            "the cool-down starts now"
        );
        let second = tracker
            .observe(
                t(110),
                Counters {
                    bytes: 30 * 1024 * 1024,
                    records: 5_000,
                    throttled: 20,
                },
            )
            .expect("a rate");
        assert!((second.bytes_per_second - 3.0 * SHARD_BYTES_PER_SECOND).abs() < 1.0);
        assert_eq!(second.records_per_second, 500.0);
        assert_eq!(second.throttled_per_second, 2.0);
        // A restarted pod's counters start again at zero: no rate, no negative load.
        assert_eq!(tracker.observe(t(120), Counters::default()), None);
        assert!((tracker.peak().bytes_per_second - 3.0 * SHARD_BYTES_PER_SECOND).abs() < 1.0);
        // The peak is forgotten after the window.
        tracker.observe(t(130), Counters::default());
        tracker.observe(t(2_000), Counters::default());
        assert_eq!(tracker.peak().bytes_per_second, 0.0);
    }

    #[test]
    fn capacity_grows_to_twice_the_peak_at_most_doubling() {
        // 3 MiB/s at peak needs 6 shards of capacity.
        let decision = decide(4, &load(3.0), &load(3.0), None).expect("grow");
        assert_eq!(decision.target, 6);
        assert!(
            decision.reason.contains("3.00 MiB/s"),
            "{}",
            decision.reason
        );
        assert!(
            decision.reason.contains("4 \u{2192} 6"),
            "{}",
            decision.reason
        );
        // 10 MiB/s would need 20: one step doubles.
        assert_eq!(
            decide(4, &load(10.0), &load(10.0), None).map(|d| d.target),
            Some(8)
        );
        // Enough capacity: nothing to do.
        assert_eq!(decide(6, &load(2.9), &load(2.9), None), None);
    }

    #[test]
    fn throttling_doubles_at_once() {
        let mut now = load(0.5);
        now.throttled_per_second = 40.0;
        let decision = decide(4, &now, &load(0.5), Some(Duration::ZERO)).expect("grow");
        assert_eq!(decision.target, 8);
        assert!(
            decision.reason.contains("40 records/s throttled"),
            "{}",
            decision.reason
        );
    }

    #[test]
    fn capacity_shrinks_only_after_the_cool_down_and_never_below_the_default() {
        let quiet = load(0.1);
        assert_eq!(
            decide(16, &quiet, &quiet, Some(Duration::from_secs(60))),
            None
        );
        assert_eq!(
            decide(16, &quiet, &quiet, Some(COOL_DOWN)).map(|d| d.target),
            Some(8)
        );
        assert_eq!(decide(8, &quiet, &quiet, None).map(|d| d.target), Some(4));
        assert_eq!(decide(4, &quiet, &quiet, None), None);
        // Records, not bytes, can be what needs capacity.
        let small_records = Load {
            bytes_per_second: 1000.0,
            records_per_second: 3_000.0,
            throttled_per_second: 0.0,
        };
        assert_eq!(
            decide(4, &small_records, &small_records, None).map(|d| d.target),
            Some(6)
        );
    }
}
