//! The latency histogram: fixed log-linear buckets of atomic counters, so recording is a few
//! relaxed increments and a quantile is known to within about 9%.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use super::LatencySummary;

/// Sub-buckets per power of two.
const SUB: usize = 8;
/// Powers of two of nanoseconds covered (2^40 ns is about 18 minutes; longer lands in the last).
const OCTAVES: usize = 40;
const BUCKETS: usize = OCTAVES * SUB;

/// A latency histogram with fixed, log-linear buckets.
pub(crate) struct Histogram {
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl Histogram {
    pub fn new() -> Self {
        Histogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_ns: AtomicU64::new(0),
        }
    }

    fn bucket_of(ns: u64) -> usize {
        if ns < SUB as u64 {
            return ns as usize;
        }
        let octave = 63 - ns.leading_zeros() as usize; // >= 3
        let sub = ((ns >> (octave - 3)) & (SUB as u64 - 1)) as usize;
        ((octave - 2) * SUB + sub).min(BUCKETS - 1)
    }

    /// The largest value that falls in `bucket`.
    fn upper_bound(bucket: usize) -> u64 {
        if bucket < SUB {
            return bucket as u64;
        }
        let octave = bucket / SUB + 2;
        let sub = (bucket % SUB) as u64;
        ((SUB as u64 + sub + 1) << (octave - 3)) - 1
    }

    pub fn record(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.buckets[Self::bucket_of(ns)].fetch_add(1, Relaxed);
        self.count.fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(ns, Relaxed);
    }

    /// The `q` quantile (0..=1), as the upper bound of its bucket; zero when empty.
    fn quantile(&self, counts: &[u64], total: u64, q: f64) -> Duration {
        if total == 0 {
            return Duration::ZERO;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, &c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Duration::from_nanos(Self::upper_bound(i));
            }
        }
        Duration::from_nanos(Self::upper_bound(BUCKETS - 1))
    }

    pub fn summary(&self) -> LatencySummary {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        LatencySummary {
            count: total,
            mean_us: if total == 0 {
                0.0
            } else {
                self.sum_ns.load(Relaxed) as f64 / total as f64 / 1e3
            },
            p50_us: us(self.quantile(&counts, total, 0.50)),
            p95_us: us(self.quantile(&counts, total, 0.95)),
            p99_us: us(self.quantile(&counts, total, 0.99)),
            max_us: us(counts
                .iter()
                .rposition(|&c| c > 0)
                .map_or(Duration::ZERO, |i| {
                    Duration::from_nanos(Self::upper_bound(i))
                })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_bound_their_values() {
        let mut last = 0;
        for ns in (0..100_000u64).chain((17..40).map(|p| (1u64 << p) + 12345)) {
            let b = Histogram::bucket_of(ns);
            assert!(b >= last, "bucket order at {ns}");
            last = b;
            assert!(
                Histogram::upper_bound(b) >= ns,
                "{ns} above its bucket's bound"
            );
            if b > 0 {
                assert!(
                    Histogram::upper_bound(b - 1) < ns,
                    "{ns} fits an earlier bucket"
                );
            }
            // Within 12.5% (one sub-bucket) of the value.
            assert!(Histogram::upper_bound(b) as f64 <= ns as f64 * 1.125 + 1.0);
        }
    }

    #[test]
    fn quantiles_match_a_sorted_sample() {
        let h = Histogram::new();
        let mut values: Vec<u64> = (1..=1000u64).map(|i| i * i * 37 % 100_000 + 1000).collect();
        for &v in &values {
            h.record(Duration::from_nanos(v));
        }
        values.sort_unstable();
        let s = h.summary();
        assert_eq!(s.count, 1000);
        for (q, got) in [(0.5, s.p50_us), (0.95, s.p95_us), (0.99, s.p99_us)] {
            let exact = values[(q * 1000.0) as usize - 1] as f64 / 1e3;
            assert!(
                got >= exact && got <= exact * 1.13,
                "q{q}: {got} vs exact {exact}"
            );
        }
    }

    #[test]
    fn an_empty_histogram_reports_zeros() {
        let s = Histogram::new().summary();
        assert_eq!((s.count, s.p99_us, s.max_us), (0, 0.0, 0.0));
    }
}
