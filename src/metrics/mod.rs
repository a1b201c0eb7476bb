//! Counters and latency histograms of a database, exported as JSON or Prometheus text.
//!
//! Recording is a few relaxed atomic increments per call (no locks on the search path), so the
//! metrics are always on. Latencies go into log-linear histograms: 8 buckets per power of two of
//! nanoseconds, so a quantile is known to within about 9%, in fixed memory.
//!
//! `collector.rs` gathers the figures as calls run (and holds the I/O counters the storage layer
//! increments), `histogram.rs` is the latency histogram, `prometheus.rs` the text export; this
//! file has the public snapshot, [`Metrics`].

mod collector;
mod histogram;
mod prometheus;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::lifecycle::DatabaseState;

pub(crate) use collector::{DatabaseFigures, IoCounters, MetricsCollector};

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
    /// Errors returned, by [`Error::code`](crate::Error::code).
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
}
