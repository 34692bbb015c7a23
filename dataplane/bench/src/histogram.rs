//! A log-bucket latency histogram in the manner of HdrHistogram.
//!
//! Values below 64 are counted exactly; above, each power of two is split into 64 equal
//! buckets, so a reported quantile is within 1/64 (1.6 %) of the true value. Quantiles report
//! the upper edge of their bucket (never under-reporting), capped at the largest value seen.

use std::time::Duration;

/// Sub-buckets per power of two, as a power of two.
const SUB_BITS: u32 = 6;
const SUB_COUNT: usize = 1 << SUB_BITS;
/// Exact buckets for 0..64, then 64 buckets for each exponent 6..=63.
const BUCKETS: usize = SUB_COUNT + (64 - SUB_BITS as usize) * SUB_COUNT;

/// Counts of values (nanoseconds, for latencies) in log-spaced buckets.
#[derive(Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    sum: u128,
    min: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
            sum: 0,
            min: u64::MAX,
            max: 0,
        }
    }
}

fn index(value: u64) -> usize {
    if value < SUB_COUNT as u64 {
        return value as usize;
    }
    let exp = 63 - value.leading_zeros();
    let shift = exp - SUB_BITS;
    let mantissa = (value >> shift) as usize - SUB_COUNT;
    SUB_COUNT + (shift as usize) * SUB_COUNT + mantissa
}

/// The largest value that lands in bucket `i`.
fn upper_edge(i: usize) -> u64 {
    if i < SUB_COUNT {
        return i as u64;
    }
    let shift = ((i - SUB_COUNT) / SUB_COUNT) as u32;
    let mantissa = ((i - SUB_COUNT) % SUB_COUNT + SUB_COUNT) as u64;
    let low = mantissa << shift;
    low.saturating_add((1u64 << shift) - 1)
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Histogram {
        Histogram::default()
    }

    /// Counts one value.
    pub fn record(&mut self, value: u64) {
        self.counts[index(value)] += 1;
        self.total += 1;
        self.sum += u128::from(value);
        self.min = self.min.min(value);
        self.max = self.max.max(value);
    }

    /// Counts one duration, in nanoseconds.
    pub fn record_duration(&mut self, d: Duration) {
        self.record(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Adds every value counted by `other`.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// How many values were counted.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The largest value counted (0 when empty).
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The mean of the values counted (0 when empty).
    pub fn mean(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.sum as f64 / self.total as f64
        }
    }

    /// The value below or at which a fraction `q` (0..=1) of the values lie: the upper edge of
    /// the bucket holding the value of rank ⌈q·n⌉, capped at the maximum (0 when empty).
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return upper_edge(i).min(self.max).max(self.min);
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_values_are_exact() {
        let mut h = Histogram::new();
        for v in 0..64 {
            h.record(v);
        }
        assert_eq!(h.quantile(0.0), 0);
        assert_eq!(h.quantile(0.5), 31);
        assert_eq!(h.quantile(1.0), 63);
    }

    #[test]
    fn every_value_lands_in_a_bucket_whose_edge_is_within_one_sixty_fourth() {
        let mut v = 1u64;
        while v < u64::MAX / 3 {
            for probe in [v, v + 1, v * 3 / 2, 2 * v - 1] {
                let i = index(probe);
                assert!(i < BUCKETS, "{probe}");
                let edge = upper_edge(i);
                assert!(edge >= probe, "{probe} -> {edge}");
                assert!(
                    (edge - probe) as f64 <= probe as f64 / 64.0,
                    "{probe} -> {edge}"
                );
            }
            v *= 2;
        }
        assert_eq!(index(u64::MAX), BUCKETS - 1);
        assert_eq!(upper_edge(BUCKETS - 1), u64::MAX);
    }

    #[test]
    fn quantiles_of_a_uniform_range() {
        let mut h = Histogram::new();
        for v in 1..=100_000u64 {
            h.record(v * 1_000);
        }
        let close = |got: u64, want: u64| {
            let err = (got as f64 - want as f64).abs() / want as f64;
            assert!(err < 0.02, "got {got}, want {want}");
        };
        close(h.quantile(0.5), 50_000_000);
        close(h.quantile(0.99), 99_000_000);
        close(h.quantile(0.999), 99_900_000);
        assert_eq!(h.quantile(1.0), 100_000_000);
        assert_eq!(h.count(), 100_000);
        close(h.mean() as u64, 50_000_500);
    }

    #[test]
    fn a_single_value_is_reported_exactly() {
        let mut h = Histogram::new();
        h.record(1_234_567);
        assert_eq!(h.quantile(0.5), 1_234_567);
        assert_eq!(h.quantile(0.999), 1_234_567);
    }

    #[test]
    fn merging_adds_counts() {
        let mut a = Histogram::new();
        let mut b = Histogram::new();
        for v in 0..1000 {
            a.record(v);
            b.record(v + 1000);
        }
        a.merge(&b);
        assert_eq!(a.count(), 2000);
        assert_eq!(a.max(), 1999);
        let median = a.quantile(0.5);
        assert!((985..=1000).contains(&median), "{median}");
    }

    #[test]
    fn empty_histogram_reports_zero() {
        let h = Histogram::new();
        assert_eq!(h.quantile(0.99), 0);
        assert_eq!(h.mean(), 0.0);
    }
}
