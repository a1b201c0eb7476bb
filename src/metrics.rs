//! Counters and latency histograms of a database, exported as JSON or Prometheus text.
//!
//! Recording is a few relaxed atomic increments per call (no locks on the search path), so the
//! metrics are always on. Latencies go into log-linear histograms: 8 buckets per power of two of
//! nanoseconds, so a quantile is known to within about 9%, in fixed memory.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::lifecycle::{DatabaseState, OpKind};

/// Sub-buckets per power of two.
const SUB: usize = 8;
/// Powers of two of nanoseconds covered (2^40 ns is about 18 minutes; longer lands in the last).
const OCTAVES: usize = 40;
const BUCKETS: usize = OCTAVES * SUB;

/// I/O counters shared by the storage layer and the metrics.
#[derive(Debug, Default)]
pub(crate) struct IoCounters {
    pub wal_bytes_written: AtomicU64,
    pub wal_bytes_synced: AtomicU64,
    pub wal_size: AtomicU64,
    pub segment_bytes_written: AtomicU64,
    /// Size of the current checkpoint segment.
    pub segment_size: AtomicU64,
    pub checkpoints: AtomicU64,
    /// Checkpoints that failed (automatic ones are reported only here: the write that triggered
    /// one was already durable in the log).
    pub checkpoints_failed: AtomicU64,
}

/// A latency histogram with fixed, log-linear buckets.
pub(crate) struct Histogram {
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl Histogram {
    fn new() -> Self {
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

    fn record(&self, d: Duration) {
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

    fn summary(&self) -> LatencySummary {
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

/// Counts and latencies of every kind of call, collected as the database runs.
pub(crate) struct MetricsCollector {
    latency: Vec<Histogram>,
    errors_by_op: Vec<AtomicU64>,
    errors_by_kind: Mutex<BTreeMap<&'static str, u64>>,
    pub points_upserted: AtomicU64,
    pub points_deleted: AtomicU64,
    pub queries: AtomicU64,
}

impl MetricsCollector {
    pub fn new() -> Self {
        MetricsCollector {
            latency: OpKind::ALL.iter().map(|_| Histogram::new()).collect(),
            errors_by_op: OpKind::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
            errors_by_kind: Mutex::new(BTreeMap::new()),
            points_upserted: AtomicU64::new(0),
            points_deleted: AtomicU64::new(0),
            queries: AtomicU64::new(0),
        }
    }

    /// Records one finished call: its latency, and its error if it failed.
    pub fn record(&self, kind: OpKind, took: Duration, error: Option<&Error>) {
        self.latency[kind.index()].record(took);
        if let Some(e) = error {
            self.errors_by_op[kind.index()].fetch_add(1, Relaxed);
            *self.errors_by_kind.lock().entry(e.code()).or_default() += 1;
        }
    }

    pub fn snapshot(&self, io: &IoCounters, db: DatabaseFigures) -> Metrics {
        let operations = OpKind::ALL
            .iter()
            .map(|k| {
                let latency = self.latency[k.index()].summary();
                (
                    k.name().to_owned(),
                    OperationMetrics {
                        calls: latency.count,
                        errors: self.errors_by_op[k.index()].load(Relaxed),
                        latency,
                    },
                )
            })
            .collect();
        Metrics {
            state: db.state,
            uptime: db.uptime,
            total_vectors: db.total_vectors,
            memory_bytes: db.memory_bytes,
            disk_bytes: db.disk_bytes,
            points_upserted: self.points_upserted.load(Relaxed),
            points_deleted: self.points_deleted.load(Relaxed),
            queries: self.queries.load(Relaxed),
            operations,
            errors_by_kind: self
                .errors_by_kind
                .lock()
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            wal_bytes_written: io.wal_bytes_written.load(Relaxed),
            wal_bytes_synced: io.wal_bytes_synced.load(Relaxed),
            wal_size: io.wal_size.load(Relaxed),
            segment_bytes_written: io.segment_bytes_written.load(Relaxed),
            checkpoints: io.checkpoints.load(Relaxed),
            checkpoints_failed: io.checkpoints_failed.load(Relaxed),
        }
    }
}

/// Figures of the database itself that go into [`Metrics`].
pub(crate) struct DatabaseFigures {
    pub state: DatabaseState,
    pub uptime: Duration,
    pub total_vectors: usize,
    pub memory_bytes: usize,
    pub disk_bytes: u64,
}

/// Latency of one kind of call, in microseconds (quantiles within about 9%).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Calls measured.
    pub count: u64,
    /// Mean latency.
    pub mean_us: f64,
    /// Median.
    pub p50_us: f64,
    /// 95th percentile.
    pub p95_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// Slowest call.
    pub max_us: f64,
}

/// Counts of one kind of call.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct OperationMetrics {
    /// Calls made (successful or not).
    pub calls: u64,
    /// Calls that returned an error.
    pub errors: u64,
    /// Their latency.
    pub latency: LatencySummary,
}

/// Everything the database counts about itself, from
/// [`EmbeddedVectorDB::metrics`](crate::EmbeddedVectorDB::metrics).
///
/// ```
/// use grape_vector_db::{EmbeddedConfig, EmbeddedVectorDB, Point, SearchRequest};
/// let db = EmbeddedVectorDB::open(EmbeddedConfig::builder(2).build()?)?;
/// db.upsert(vec![Point::new(1, vec![1.0, 0.0])])?;
/// db.search(&SearchRequest::new(vec![1.0, 0.0], 1))?;
/// assert!(db.search(&SearchRequest::new(vec![1.0], 1)).is_err());
/// let m = db.metrics();
/// assert_eq!(m.operations["search"].calls, 2);
/// assert_eq!(m.errors_by_kind["DimensionMismatch"], 1);
/// assert!(m.to_prometheus().contains("grape_points_upserted_total 1"));
/// # Ok::<(), grape_vector_db::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// The state when the metrics were taken.
    pub state: DatabaseState,
    /// Time since the database was opened.
    pub uptime: Duration,
    /// Live points.
    pub total_vectors: usize,
    /// Bytes held in memory (see [`MemoryStats`](crate::MemoryStats)).
    pub memory_bytes: usize,
    /// Bytes of the database's files.
    pub disk_bytes: u64,
    /// Points written by upserts (replacements included).
    pub points_upserted: u64,
    /// Points removed by deletes.
    pub points_deleted: u64,
    /// Search queries answered (a batch counts each of its queries).
    pub queries: u64,
    /// Calls and latency by kind (`"upsert"`, `"search"`, `"get"`, ...).
    pub operations: BTreeMap<String, OperationMetrics>,
    /// Errors returned, by [`Error::code`].
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Bytes appended to the write-ahead log.
    pub wal_bytes_written: u64,
    /// Log bytes made durable by fsync.
    pub wal_bytes_synced: u64,
    /// Current size of the log.
    pub wal_size: u64,
    /// Bytes of checkpoint segments written.
    pub segment_bytes_written: u64,
    /// Checkpoints completed.
    pub checkpoints: u64,
    /// Checkpoints that failed; the previous checkpoint and the log stayed in effect, so no
    /// acknowledged write was lost (automatic ones are retried once the log grows further).
    pub checkpoints_failed: u64,
}

impl Metrics {
    /// The metrics as a JSON value.
    ///
    /// ```
    /// use grape_vector_db::{EmbeddedConfig, EmbeddedVectorDB};
    /// let db = EmbeddedVectorDB::open(EmbeddedConfig::builder(2).build()?)?;
    /// assert_eq!(db.metrics().to_json()["state"], "Ready");
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("metrics are plain data")
    }

    /// The metrics in Prometheus' text exposition format (version 0.0.4).
    ///
    /// ```
    /// use grape_vector_db::{EmbeddedConfig, EmbeddedVectorDB};
    /// let db = EmbeddedVectorDB::open(EmbeddedConfig::builder(2).build()?)?;
    /// let text = db.metrics().to_prometheus();
    /// assert!(text.contains("# TYPE grape_operations_total counter"));
    /// assert!(text.contains("grape_state{state=\"Ready\"} 1"));
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn to_prometheus(&self) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| {
            let _ = writeln!(
                out,
                "# HELP grape_{name} {help}\n# TYPE grape_{name} {kind}"
            );
            for (labels, value) in samples {
                let _ = writeln!(out, "grape_{name}{labels} {value}");
            }
        };
        let one = |v: f64| vec![(String::new(), v)];
        let states = [
            DatabaseState::Initializing,
            DatabaseState::Ready,
            DatabaseState::Busy,
            DatabaseState::Shutting,
            DatabaseState::Closed,
        ];
        metric(
            "state",
            "gauge",
            "1 for the current state of the database.",
            &states
                .iter()
                .map(|s| {
                    (
                        format!("{{state=\"{}\"}}", s.name()),
                        f64::from(u8::from(*s == self.state)),
                    )
                })
                .collect::<Vec<_>>(),
        );
        metric(
            "uptime_seconds",
            "gauge",
            "Seconds since the database was opened.",
            &one(self.uptime.as_secs_f64()),
        );
        metric(
            "vectors",
            "gauge",
            "Live points.",
            &one(self.total_vectors as f64),
        );
        metric(
            "memory_bytes",
            "gauge",
            "Bytes held in memory.",
            &one(self.memory_bytes as f64),
        );
        metric(
            "disk_bytes",
            "gauge",
            "Bytes of the database's files.",
            &one(self.disk_bytes as f64),
        );
        for (name, help, v) in [
            (
                "points_upserted_total",
                "Points written by upserts.",
                self.points_upserted,
            ),
            (
                "points_deleted_total",
                "Points removed by deletes.",
                self.points_deleted,
            ),
            ("queries_total", "Search queries answered.", self.queries),
            (
                "wal_written_bytes_total",
                "Bytes appended to the log.",
                self.wal_bytes_written,
            ),
            (
                "wal_synced_bytes_total",
                "Log bytes made durable.",
                self.wal_bytes_synced,
            ),
            (
                "segment_written_bytes_total",
                "Segment bytes written.",
                self.segment_bytes_written,
            ),
            (
                "checkpoints_total",
                "Checkpoints completed.",
                self.checkpoints,
            ),
            (
                "checkpoints_failed_total",
                "Checkpoints that failed (the previous one stayed in effect).",
                self.checkpoints_failed,
            ),
        ] {
            metric(name, "counter", help, &one(v as f64));
        }
        metric(
            "wal_bytes",
            "gauge",
            "Current size of the write-ahead log.",
            &one(self.wal_size as f64),
        );
        let by_op = |f: &dyn Fn(&OperationMetrics) -> f64| -> Vec<(String, f64)> {
            self.operations
                .iter()
                .map(|(op, m)| (format!("{{op=\"{op}\"}}"), f(m)))
                .collect()
        };
        metric(
            "operations_total",
            "counter",
            "Calls by kind.",
            &by_op(&|m| m.calls as f64),
        );
        metric(
            "operation_errors_total",
            "counter",
            "Failed calls by kind.",
            &by_op(&|m| m.errors as f64),
        );
        let mut quantiles = Vec::new();
        for (op, m) in &self.operations {
            for (q, v) in [
                ("0.5", m.latency.p50_us),
                ("0.95", m.latency.p95_us),
                ("0.99", m.latency.p99_us),
            ] {
                quantiles.push((format!("{{op=\"{op}\",quantile=\"{q}\"}}"), v / 1e6));
            }
        }
        metric(
            "operation_latency_seconds",
            "summary",
            "Latency of calls by kind.",
            &quantiles,
        );
        metric(
            "errors_total",
            "counter",
            "Errors by kind.",
            &self
                .errors_by_kind
                .iter()
                .map(|(k, v)| (format!("{{kind=\"{k}\"}}"), *v as f64))
                .collect::<Vec<_>>(),
        );
        out
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
