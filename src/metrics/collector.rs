//! Collecting the figures as the database runs: counts, errors and latencies of every kind of
//! call, and the I/O counters the storage layer increments.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use parking_lot::Mutex;

use super::histogram::Histogram;
use super::{Metrics, OperationMetrics};
use crate::error::Error;
use crate::lifecycle::{DatabaseState, OpKind};

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
        // Maps filled by inserts, not `collect`: a collected BTreeMap brings its own sort into
        // the .wasm.
        let mut operations = BTreeMap::new();
        for k in OpKind::ALL {
            let latency = self.latency[k.index()].summary();
            let figures = OperationMetrics {
                calls: latency.count,
                errors: self.errors_by_op[k.index()].load(Relaxed),
                latency,
            };
            operations.insert(k.name().to_owned(), figures);
        }
        let mut errors_by_kind = BTreeMap::new();
        for (kind, count) in self.errors_by_kind.lock().iter() {
            errors_by_kind.insert(kind.to_string(), *count);
        }
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
            errors_by_kind,
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
