//! A distribution recorded from many threads without a lock: fixed
//! log-linear buckets (`histogram::AtomicHistogram`), plus the exact count,
//! sum and maximum, read as percentiles when a snapshot is taken.

use histogram::AtomicHistogram;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Buckets are `2^-GROUPING_POWER` of their value wide: a percentile is
/// reported within about 3% of the value recorded.
const GROUPING_POWER: u8 = 5;
/// Values up to `2^MAX_VALUE_POWER` are bucketed (about 78 hours in
/// nanoseconds, 256 TiB in bytes); larger ones count in the top bucket.
const MAX_VALUE_POWER: u8 = 48;
const LARGEST_BUCKETED: u64 = (1 << MAX_VALUE_POWER) - 1;

/// Records values; see the module documentation.
pub struct AtomicDistribution {
    buckets: Option<AtomicHistogram>,
    count: AtomicU64,
    sum: AtomicU64,
    max: AtomicU64,
}

impl std::fmt::Debug for AtomicDistribution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AtomicDistribution")
            .field("count", &self.count.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Default for AtomicDistribution {
    fn default() -> Self {
        AtomicDistribution {
            // The parameters are constants the crate accepts; were they
            // refused, only the percentiles would be missing.
            buckets: AtomicHistogram::new(GROUPING_POWER, MAX_VALUE_POWER).ok(),
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0),
            max: AtomicU64::new(0),
        }
    }
}

impl AtomicDistribution {
    /// Records `value`.
    pub fn record(&self, value: u64) {
        if let Some(buckets) = &self.buckets {
            // Cannot fail for a value in range.
            let _ = buckets.increment(value.min(LARGEST_BUCKETED));
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(value, Ordering::Relaxed);
        self.max.fetch_max(value, Ordering::Relaxed);
    }

    /// Records a duration in nanoseconds.
    pub fn record_duration(&self, duration: Duration) {
        self.record(u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX));
    }

    /// What was recorded so far.
    pub fn snapshot(&self) -> Distribution {
        let mut snapshot = Distribution {
            count: self.count.load(Ordering::Relaxed),
            sum: self.sum.load(Ordering::Relaxed),
            max: self.max.load(Ordering::Relaxed),
            ..Distribution::default()
        };
        let Some(buckets) = &self.buckets else {
            return snapshot;
        };
        let loaded = buckets.load();
        let quantiles = [0.5, 0.9, 0.99, 0.999];
        let mut found = [None, None, None, None];
        if loaded.quantile_buckets_into(&quantiles, &mut found).is_ok() {
            // The end of a bucket is the value its recordings stay below,
            // capped by the true maximum.
            let value =
                |bucket: Option<histogram::Bucket>| bucket.map_or(0, |b| b.end().min(snapshot.max));
            let [p50, p90, p99, p999] = found;
            snapshot.p50 = value(p50);
            snapshot.p90 = value(p90);
            snapshot.p99 = value(p99);
            snapshot.p999 = value(p999);
        }
        snapshot
    }
}

/// A snapshot of a distribution: how many values were recorded, their
/// sum, percentiles (each within about 3% of a value recorded, never above
/// the maximum) and the exact maximum. Durations are in nanoseconds.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// let store = evstore::Store::open(dir.path(), evstore::Options::default()).unwrap();
/// store.append("s", evstore::ExpectedVersion::Any, &[evstore::EventData::new("E", &b""[..])]).unwrap();
/// let syncs = store.metrics().sync.latency;
/// assert!(syncs.count >= 1);
/// assert!(syncs.p50 <= syncs.p99 && syncs.p99 <= syncs.max);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Distribution {
    /// Values recorded.
    pub count: u64,
    /// Their sum (wrapping past `u64::MAX`).
    pub sum: u64,
    /// The median.
    pub p50: u64,
    /// The 90th percentile.
    pub p90: u64,
    /// The 99th percentile.
    pub p99: u64,
    /// The 99.9th percentile.
    pub p999: u64,
    /// The largest value recorded.
    pub max: u64,
}

impl Distribution {
    /// The mean, or 0 if nothing was recorded.
    #[must_use]
    #[expect(
        clippy::cast_precision_loss,
        reason = "a mean for display; 53 bits of precision are plenty"
    )]
    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum as f64 / self.count as f64
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_stay_within_their_bucket_of_the_values_recorded() {
        let distribution = AtomicDistribution::default();
        for value in 1..=1000u64 {
            distribution.record(value * 1000);
        }
        let s = distribution.snapshot();
        assert_eq!((s.count, s.max), (1000, 1_000_000));
        assert_eq!(s.sum, 1000 * 1001 / 2 * 1000);
        for (got, want) in [
            (s.p50, 500_000),
            (s.p90, 900_000),
            (s.p99, 990_000),
            (s.p999, 999_000),
        ] {
            assert!(got >= want && got <= want + want / 16, "{got} vs {want}");
        }
    }

    #[test]
    fn a_value_past_the_buckets_is_counted_and_kept_as_the_maximum() {
        let distribution = AtomicDistribution::default();
        distribution.record(u64::MAX);
        distribution.record_duration(Duration::MAX);
        let s = distribution.snapshot();
        assert_eq!((s.count, s.max), (2, u64::MAX));
        assert!(s.p50 >= LARGEST_BUCKETED / 2);
    }

    #[test]
    fn an_empty_distribution_reads_as_zeros() {
        let s = AtomicDistribution::default().snapshot();
        assert_eq!(s, Distribution::default());
        assert!(s.mean().abs() < f64::EPSILON);
    }
}
