//! The native facade: [`EmbeddedVectorDB`], thread-safe and synchronous.
//!
//! One handle type; its methods live in files named by their job:
//! - `open.rs`: opening a directory, a storage backend or memory; warmup;
//! - `write.rs`: upsert, set_payload, delete, and the write path with its lock order;
//! - `read.rs`: search, search_batch, get, count, scroll;
//! - `maintenance.rs`: flush, checkpoint, compact, snapshots and archives;
//! - `lifecycle.rs`: state, uptime, shutdown hooks and the graceful close;
//! - `observe.rs`: stats, metrics and health;
//! - `background.rs`: the log syncer and health schedule threads (natively);
//! - `threads.rs`: the thread count and the parallel map of graph building and batches.

mod background;
mod lifecycle;
mod maintenance;
mod observe;
mod open;
mod query;
mod read;
mod threads;
mod write;

use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::clock::Instant;
use crate::config::EmbeddedConfig;
use crate::engine::Engine;
use crate::error::Result;
use crate::health::HealthChecker;
use crate::lifecycle::{DatabaseState, LifecycleManager, OpKind};
use crate::metrics::{IoCounters, MetricsCollector};
use crate::persist::{DatabaseFiles, OpenReport};
use crate::point::PointId;

pub use crate::engine::UpsertSummary;

/// An embedded vector database, safe to share between threads.
///
/// Cloning is cheap and gives another handle to the same database (an `Arc` inside). Every method
/// is synchronous and short: searches share a read lock and run in parallel with each other; a
/// write holds the write lock only for its own duration. It is fine to call from async code, as
/// with any fast synchronous function (use `spawn_blocking` for huge batches).
///
/// ```
/// use grape_vector_db::{Condition, EmbeddedConfig, EmbeddedVectorDB, Filter, Point, SearchRequest};
/// use serde_json::json;
///
/// let db = EmbeddedVectorDB::open(EmbeddedConfig::builder(3).build()?)?;
/// db.upsert(vec![
///     Point::new(1, vec![1.0, 0.0, 0.0]).with_payload(json!({"kind": "fruit"}))?,
///     Point::new(2, vec![0.0, 1.0, 0.0]).with_payload(json!({"kind": "tool"}))?,
/// ])?;
/// let hits = db.search(
///     &SearchRequest::new(vec![0.9, 0.1, 0.0], 1)
///         .with_filter(Filter::must([Condition::match_value("kind", "tool")])),
/// )?;
/// assert_eq!(hits.result[0].id, 2u64.into());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct EmbeddedVectorDB {
    inner: Arc<Inner>,
    /// Shared by the user's handles only. Background threads may hold `inner` for a moment,
    /// so the last `Arc<Inner>` can go on their thread; the last user handle closes the
    /// database on the user's thread, at once (the next open finds it free).
    _handles: Arc<LastHandle>,
}

/// Closes the database when the last user handle is dropped without `close`.
struct LastHandle(Arc<Inner>);

impl Drop for LastHandle {
    /// Makes what was acknowledged durable, runs the shutdown hooks and releases the directory
    /// lock (best effort, never panics; call `close` to see errors).
    fn drop(&mut self) {
        let inner = &self.0;
        if inner.life.state() != DatabaseState::Closed {
            // Waits for a background job holding the files to finish with them.
            let mut files = inner.files.lock();
            if let Some(files) = files.as_mut() {
                let _ = files.flush();
            }
            let _ = inner.life.run_hooks();
            *files = None;
            inner.life.set_state(DatabaseState::Closed);
            drop(files);
            inner.join_indexer();
        }
    }
}

struct Inner {
    config: EmbeddedConfig,
    /// Writers take `files` first, then `engine`: the lock order that keeps the log in the
    /// same order as the engine's changes. `None` in memory, and once closed.
    files: Mutex<Option<DatabaseFiles>>,
    engine: RwLock<Engine>,
    report: OpenReport,
    life: LifecycleManager,
    metrics: MetricsCollector,
    io: Arc<IoCounters>,
    /// Threads for graph building and search batches.
    threads: usize,
    /// Where the storage lives (`"memory"` without one), for `stats`.
    location: String,
    /// The health checks, their thresholds, schedule and last result.
    health: HealthChecker,
    /// The background indexer of a replayed log and the payload indexes, while it may run:
    /// joined at close, so that a closed database holds no thread and no memory.
    indexer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for EmbeddedVectorDB {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedVectorDB")
            .field("config", &self.inner.config)
            .field("state", &self.inner.life.state())
            .field("points", &self.inner.engine.read().len())
            .finish()
    }
}

fn collect_ids<I: Into<PointId>>(ids: impl IntoIterator<Item = I>) -> Vec<PointId> {
    ids.into_iter().map(Into::into).collect()
}

impl EmbeddedVectorDB {
    /// A user handle on a database just opened.
    fn new(inner: Inner) -> Self {
        let inner = Arc::new(inner);
        EmbeddedVectorDB {
            _handles: Arc::new(LastHandle(inner.clone())),
            inner,
        }
    }

    /// Runs one public call: admits it (or refuses it during shutdown), counts it in flight,
    /// times it and records it in the metrics.
    fn call<T>(&self, kind: OpKind, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let start = Instant::now();
        let result = self.inner.life.begin(kind).and_then(|_in_flight| f());
        self.inner
            .metrics
            .record(kind, start.elapsed(), result.as_ref().err());
        result
    }

    /// What opening found: points in the checkpoint, log records replayed, bytes of a torn
    /// log tail cut off.
    ///
    /// ```
    /// use grape_vector_db::{EmbeddedConfig, EmbeddedVectorDB};
    /// let db = EmbeddedVectorDB::open(EmbeddedConfig::builder(2).build()?)?;
    /// assert_eq!(db.open_report().wal_bytes_truncated, 0);
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn open_report(&self) -> OpenReport {
        self.inner.report
    }

    /// The configuration the database was opened with.
    ///
    /// ```
    /// use grape_vector_db::{EmbeddedConfig, EmbeddedVectorDB};
    /// let db = EmbeddedVectorDB::open(EmbeddedConfig::builder(4).build()?)?;
    /// assert_eq!(db.config().dimension, 4);
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn config(&self) -> &EmbeddedConfig {
        &self.inner.config
    }
}
