//! The native facade: [`EmbeddedVectorDB`], thread-safe and synchronous, with its lifecycle
//! (open, warmup, close), health checks and metrics.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock, RwLockUpgradableReadGuard, RwLockWriteGuard};

use crate::clock::Instant;
use crate::config::EmbeddedConfig;
use crate::engine::{Engine, EngineConfig};
use crate::error::{Error, Result};
use crate::filter::{Condition, Filter};
use crate::health::{self, CheckStatus, HealthStatus};
use crate::lifecycle::{DatabaseState, LifecycleManager, OpKind, ShutdownReport, StartupClock};
use crate::metrics::{DatabaseFigures, IoCounters, Metrics, MetricsCollector};
use crate::persist::wal::WalOp;
use crate::persist::{apply, Applied, OpenReport, Store, StoreOptions};
use crate::point::{Point, PointId};
use crate::search::{
    Record, ScrollRequest, ScrollResponse, SearchParams, SearchRequest, SearchResponse,
};
use crate::stats::DatabaseStats;
use crate::storage::Storage;

pub use crate::engine::UpsertSummary;

/// Points inserted into the graph per hold of the write lock (tens of milliseconds).
const INDEX_CHUNK: usize = 256;

/// Searches in a batch from which `search_batch` spreads the work over the thread pool.
const PARALLEL_BATCH: usize = 8;

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
}

struct Inner {
    config: EmbeddedConfig,
    /// Writers take `store` first, then `engine`: the lock order that keeps the log in the
    /// same order as the engine's changes. `None` in memory, and once closed.
    store: Mutex<Option<Store>>,
    engine: RwLock<Engine>,
    report: OpenReport,
    life: LifecycleManager,
    metrics: MetricsCollector,
    io: Arc<IoCounters>,
    /// Threads for graph building and search batches.
    threads: usize,
    /// Where the storage lives (`"memory"` without one), for `stats`.
    location: String,
    /// The last result of the background health checker.
    last_health: Mutex<Option<HealthStatus>>,
    /// Which live point the next engine health check searches for.
    health_probe: AtomicUsize,
}

impl Drop for Inner {
    /// The last handle is gone without `close`: make what was acknowledged durable and run the
    /// shutdown hooks (best effort, never panics; call `close` to see errors). The directory
    /// lock is released after.
    fn drop(&mut self) {
        if self.life.state() != DatabaseState::Closed {
            if let Some(store) = self.store.get_mut() {
                let _ = store.flush();
            }
            let _ = self.life.run_hooks();
            self.life.set_state(DatabaseState::Closed);
        }
    }
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

/// How many threads the configured `thread_pool_size` means (0: all cores). Asked
/// once at open: the system call behind `available_parallelism` costs more than inserting a
/// point into a small graph. In wasm (no threads here) it is always 1.
fn build_threads(configured: usize) -> usize {
    #[cfg(target_arch = "wasm32")]
    let threads = {
        let _ = configured;
        1
    };
    #[cfg(not(target_arch = "wasm32"))]
    let threads = match configured {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    threads
}

/// Runs the engine's independent jobs (graph insertion plans) on `threads` threads, each taking
/// a contiguous share, results in order.
fn parallel_map<T: Send>(
    threads: usize,
    count: usize,
    job: &(dyn Fn(usize) -> T + Sync),
) -> Vec<T> {
    if threads < 2 || count < threads {
        return (0..count).map(job).collect();
    }
    let share = count.div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..count)
            .step_by(share)
            .map(|start| {
                scope.spawn(move || {
                    (start..(start + share).min(count))
                        .map(job)
                        .collect::<Vec<T>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| match h.join() {
                Ok(part) => part,
                // A job panicking is a bug; surface it on the calling thread as it would have
                // appeared without threads.
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    })
}

/// The engine health check: the `k`-th live point, searched with its own vector through the
/// index, must come back (or a point exactly as close, for duplicates). Missed by the index but
/// found by an exact scan is a warning (recall is degraded); missed by both is critical.
fn self_search(engine: &Engine, k: usize) -> (CheckStatus, String) {
    if let Some((count, row)) = engine.unreadable_payloads() {
        return (
            CheckStatus::Critical,
            format!(
                "{count} payload(s) of the checkpoint segment do not parse (first: row {row}) \
                 and read as empty, although the file's checksums hold: it was altered or \
                 written by a faulty writer; restore from a snapshot"
            ),
        );
    }
    let Some((id, vector)) = engine.sample_live(k) else {
        return (
            CheckStatus::Healthy,
            "empty: nothing to search for".to_owned(),
        );
    };
    let search = |exact: bool, filter: Option<Filter>| {
        let mut request = SearchRequest::new(vector.clone(), 10);
        request.params = SearchParams {
            exact,
            ..SearchParams::default()
        };
        request.filter = filter;
        engine
            .search_batch(std::slice::from_ref(&request))
            .map(|mut r| r.remove(0).result)
    };
    let own_score = match search(true, Some(Filter::must([Condition::has_id([id])]))) {
        Ok(found) if !found.is_empty() => found[0].score,
        Ok(_) => {
            return (
                CheckStatus::Critical,
                format!("point {id} is listed but cannot be read"),
            )
        }
        Err(e) => {
            return (
                CheckStatus::Critical,
                format!("searching for point {id} failed: {e}"),
            )
        }
    };
    // Found: the point itself, or a first result at least as close as the point is to itself
    // (duplicates and parallel vectors tie within rounding; with Dot a longer vector in the same
    // direction scores higher than the point itself).
    let higher_is_better = engine.config().distance.higher_is_better();
    let finds_itself = |found: &[crate::search::ScoredPoint]| {
        let tolerance = 1e-5 * (1.0 + own_score.abs());
        found.iter().any(|p| p.id == id)
            || found.first().is_some_and(|p| match higher_is_better {
                true => p.score >= own_score - tolerance,
                false => p.score <= own_score + tolerance,
            })
    };
    match (search(false, None), search(true, None)) {
        (Ok(approx), _) if finds_itself(&approx) => (
            CheckStatus::Healthy,
            format!("point {id} found itself among {} points", engine.len()),
        ),
        (Ok(_), Ok(exact)) if finds_itself(&exact) => (
            CheckStatus::Warning,
            format!("the index missed point {id} but an exact scan found it: recall is degraded"),
        ),
        (Err(e), _) | (_, Err(e)) => (CheckStatus::Critical, format!("search failed: {e}")),
        _ => (
            CheckStatus::Critical,
            format!("point {id} is not found by its own vector"),
        ),
    }
}

fn collect_ids<I: Into<PointId>>(ids: impl IntoIterator<Item = I>) -> Vec<PointId> {
    ids.into_iter().map(Into::into).collect()
}

impl EmbeddedVectorDB {
    /// Opens the database: in `config.data_dir` if set (creating it on first use), otherwise
    /// in memory only.
    ///
    /// ```
    /// use grape_vector_db::{EmbeddedConfig, EmbeddedVectorDB, Point};
    /// let dir = std::env::temp_dir().join(format!("grape-doc-open-{}", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// let config = EmbeddedConfig::builder(2).data_dir(&dir).build()?;
    /// {
    ///     let db = EmbeddedVectorDB::open(config.clone())?;
    ///     db.upsert(vec![Point::new(1, vec![1.0, 0.0])])?;
    /// } // dropping the last handle closes the database
    /// let db = EmbeddedVectorDB::open(config)?;
    /// assert_eq!(db.count(None)?, 1);
    /// assert_eq!(db.open_report().wal_records_replayed, 1);
    /// # drop(db);
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn open(config: EmbeddedConfig) -> Result<Self> {
        config.validate()?;
        match &config.data_dir {
            #[cfg(not(target_arch = "wasm32"))]
            Some(dir) => {
                let storage = crate::storage::FsStorage::create(dir)?;
                Self::open_with_storage(config, Arc::new(storage))
            }
            #[cfg(target_arch = "wasm32")]
            Some(_) => Err(Error::InvalidConfig(
                "data_dir needs a native file system; in the browser use the JS API's storage \
                 option"
                    .to_owned(),
            )),
            None => Self::start(config, None),
        }
    }

    /// Opens the database kept in `storage` (any backend of the storage trait), creating it if
    /// the storage is empty. `config.data_dir` is ignored.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use grape_vector_db::{EmbeddedConfig, EmbeddedVectorDB, Point, storage::MemoryStorage};
    /// let storage = MemoryStorage::new();
    /// let config = EmbeddedConfig::builder(1).build()?;
    /// let db = EmbeddedVectorDB::open_with_storage(config.clone(), Arc::new(storage.clone()))?;
    /// db.upsert(vec![Point::new(1, vec![1.0])])?;
    /// drop(db);
    /// let again = EmbeddedVectorDB::open_with_storage(config, Arc::new(storage))?;
    /// assert_eq!(again.count(None)?, 1);
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn open_with_storage(config: EmbeddedConfig, storage: Arc<dyn Storage>) -> Result<Self> {
        config.validate()?;
        Self::start(config, Some(storage))
    }

    /// Opens (reading `storage` if any), warms up if configured, and reports `Ready`.
    fn start(config: EmbeddedConfig, storage: Option<Arc<dyn Storage>>) -> Result<Self> {
        let mut clock = StartupClock::new(config.startup_timeout);
        let io = Arc::new(IoCounters::default());
        let location = storage
            .as_ref()
            .map_or_else(|| "memory".to_owned(), |s| s.location());
        let (store, mut engine, mut report) = match storage {
            Some(storage) => {
                let options = StoreOptions {
                    durability: config.durability,
                    checkpoint_bytes: config.checkpoint_wal_bytes,
                    log_recovery: config.log_recovery,
                    io: io.clone(),
                };
                let (store, engine, report) =
                    Store::open(storage, Self::engine_config(&config), options, &mut clock)?;
                (Some(store), engine, report)
            }
            None => (
                None,
                Engine::new(Self::engine_config(&config)),
                OpenReport::default(),
            ),
        };
        let threads = build_threads(config.thread_pool_size);
        engine.set_parallel_map(Box::new(move |count, job| {
            parallel_map(threads, count, job)
        }));
        if config.enable_warmup {
            engine.warm_up();
            clock.report.warmup = clock.lap("warmup")?;
        }
        // `write` indexes new points itself, a chunk at a time.
        engine.set_deferred_indexing(true);
        report.startup = clock.finish();
        let db = EmbeddedVectorDB {
            inner: Arc::new(Inner {
                store: Mutex::new(store),
                engine: RwLock::new(engine),
                report,
                life: LifecycleManager::new(),
                metrics: MetricsCollector::new(),
                io,
                threads,
                location,
                last_health: Mutex::new(None),
                health_probe: AtomicUsize::new(0),
                config,
            }),
        };
        db.spawn_background();
        db.inner.life.set_state(DatabaseState::Ready);
        Ok(db)
    }

    fn engine_config(config: &EmbeddedConfig) -> EngineConfig {
        EngineConfig {
            dimension: config.dimension,
            distance: config.distance,
            max_points: config.max_points,
            max_search_limit: config.max_search_limit,
            hnsw: config.hnsw,
            payload_indexes: config
                .payload_indexes
                .iter()
                .filter_map(|k| k.parse().ok())
                .collect(),
        }
    }

    /// Starts the background threads (natively): the log syncer of `Durability::Batched` and
    /// the health checker. Each holds only a weak reference and ends within one interval of
    /// the database closing or its last handle being dropped.
    #[cfg(not(target_arch = "wasm32"))]
    fn spawn_background(&self) {
        let has_store = self.inner.store.lock().is_some();
        if let (true, crate::Durability::Batched { interval }) =
            (has_store, self.inner.config.durability)
        {
            // A failed fsync poisons the log writer, so the next write reports it.
            self.spawn_every("grape-wal-sync", interval, |inner| {
                if let Some(store) = inner.store.lock().as_mut() {
                    let _ = store.flush();
                }
            });
        }
        if let Some(interval) = self.inner.config.health_check_interval {
            self.spawn_every("grape-health", interval, |inner| {
                let status = EmbeddedVectorDB {
                    inner: inner.clone(),
                }
                .run_health_checks();
                *inner.last_health.lock() = Some(status);
            });
        }
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn spawn_every(
        &self,
        name: &str,
        interval: Duration,
        job: impl Fn(&Arc<Inner>) + Send + 'static,
    ) {
        let weak: std::sync::Weak<Inner> = Arc::downgrade(&self.inner);
        let spawned = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || loop {
                std::thread::sleep(interval);
                let Some(inner) = weak.upgrade() else { break };
                if matches!(
                    inner.life.state(),
                    DatabaseState::Shutting | DatabaseState::Closed
                ) {
                    break;
                }
                job(&inner);
            });
        // Without the thread, writes are still durable at the next flush, checkpoint or close,
        // and `health()` still runs the checks on demand.
        drop(spawned);
    }

    #[cfg(target_arch = "wasm32")]
    fn spawn_background(&self) {}

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

    /// Where the database is in its life.
    ///
    /// ```
    /// use grape_vector_db::{DatabaseState, EmbeddedConfig, EmbeddedVectorDB};
    /// let db = EmbeddedVectorDB::open(EmbeddedConfig::builder(2).build()?)?;
    /// assert_eq!(db.state(), DatabaseState::Ready);
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn state(&self) -> DatabaseState {
        self.inner.life.state()
    }

    /// Time since the database was opened.
    ///
    /// ```
    /// use grape_vector_db::{EmbeddedConfig, EmbeddedVectorDB};
    /// let db = EmbeddedVectorDB::open(EmbeddedConfig::builder(2).build()?)?;
    /// assert!(db.uptime() < std::time::Duration::from_secs(60));
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn uptime(&self) -> Duration {
        self.inner.life.uptime()
    }

    /// Registers `hook` to run once when the database closes (by `close`, or when the last
    /// handle is dropped), after the log is flushed. A failing hook is reported in the
    /// [`ShutdownReport`] and does not stop the others.
    ///
    /// ```
    /// use std::sync::{Arc, atomic::{AtomicBool, Ordering}};
    /// use grape_vector_db::{EmbeddedConfig, EmbeddedVectorDB};
    /// let db = EmbeddedVectorDB::open(EmbeddedConfig::builder(2).build()?)?;
    /// let ran = Arc::new(AtomicBool::new(false));
    /// let flag = ran.clone();
    /// db.on_shutdown(move || { flag.store(true, Ordering::SeqCst); Ok(()) })?;
    /// db.close()?;
    /// assert!(ran.load(Ordering::SeqCst));
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn on_shutdown(&self, hook: impl FnOnce() -> Result<()> + Send + 'static) -> Result<()> {
        let _in_flight = self.inner.life.begin(OpKind::Health)?;
        self.inner.life.add_hook(Box::new(hook));
        Ok(())
    }

    /// Closes the database gracefully: refuses new calls, waits for the calls in flight (up to
    /// `shutdown_timeout`), flushes the log, writes a checkpoint if `checkpoint_on_close`, runs
    /// the shutdown hooks and releases the directory lock and the memory. Every handle then
    /// answers [`Error::Closed`].
    ///
    /// If calls are still running after `shutdown_timeout`, it fails with
    /// [`Error::ShutdownTimeout`] naming them; the database stays `Shutting` and `close` can be
    /// called again. Dropping every handle without `close` flushes too, but reports nothing.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use grape_vector_db::{Durability, EmbeddedConfig, EmbeddedVectorDB, Error, Point, storage::MemoryStorage};
    /// let storage = MemoryStorage::new();
    /// let config = EmbeddedConfig::builder(1).durability(Durability::OnFlush).build()?;
    /// let db = EmbeddedVectorDB::open_with_storage(config.clone(), Arc::new(storage.clone()))?;
    /// db.upsert(vec![Point::new(1, vec![1.0])])?;
    /// let report = db.close()?;
    /// assert!(report.bytes_flushed > 0, "the unflushed upsert was made durable");
    /// assert_eq!(db.count(None), Err(Error::Closed));
    /// let db = EmbeddedVectorDB::open_with_storage(config, Arc::new(storage))?;
    /// assert_eq!(db.count(None)?, 1);
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn close(&self) -> Result<ShutdownReport> {
        let start = Instant::now();
        let life = &self.inner.life;
        let Some(_closing) = life.closing.try_lock() else {
            return Err(Error::ShuttingDown);
        };
        if life.state() == DatabaseState::Closed {
            return Err(Error::Closed);
        }
        life.set_state(DatabaseState::Shutting);
        let mut report = ShutdownReport {
            operations_drained: life.drain(self.inner.config.shutdown_timeout)?,
            drain: start.elapsed(),
            ..ShutdownReport::default()
        };
        let mut store = self.inner.store.lock();
        if let Some(s) = store.as_mut() {
            let phase = Instant::now();
            let synced_before = self.inner.io.wal_bytes_synced.load(Relaxed);
            s.flush()?;
            report.bytes_flushed = self.inner.io.wal_bytes_synced.load(Relaxed) - synced_before;
            report.flush = phase.elapsed();
            if self.inner.config.checkpoint_on_close {
                let phase = Instant::now();
                s.checkpoint(&self.exportable())?;
                report.checkpoint = Some(phase.elapsed());
            }
        }
        let phase = Instant::now();
        report.hook_errors = life.run_hooks();
        report.hooks = phase.elapsed();
        // Release the lock (dropping the store) and the memory (mapped files included).
        *store = None;
        *self.inner.engine.write() = Engine::new(Self::engine_config(&self.inner.config));
        life.set_state(DatabaseState::Closed);
        report.total = start.elapsed();
        Ok(report)
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

    /// Inserts points, replacing any with the same id. The batch is all-or-nothing: if one point
    /// is invalid, none is stored and the error says why.
    ///
    /// ```
    /// use grape_vector_db::{EmbeddedConfig, EmbeddedVectorDB, Point};
    /// let db = EmbeddedVectorDB::open(EmbeddedConfig::builder(2).build()?)?;
    /// let s = db.upsert(vec![Point::new(1, vec![1.0, 0.0]), Point::new(2, vec![0.0, 1.0])])?;
    /// assert_eq!((s.inserted, s.updated), (2, 0));
    /// assert!(db.upsert(vec![Point::new(3, vec![f32::NAN, 0.0])]).is_err());
    /// assert_eq!(db.count(None)?, 2);
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn upsert(&self, points: Vec<Point>) -> Result<UpsertSummary> {
        self.call(OpKind::Upsert, || {
            let n = points.len() as u64;
            let applied = self.write(|engine| {
                engine.validate_upsert(&points)?;
                self.check_memory_budget(engine, &points)?;
                Ok(Some(WalOp::Upsert(points)))
            })?;
            self.inner.metrics.points_upserted.fetch_add(n, Relaxed);
            Ok(match applied {
                Applied::Upserted(summary) => summary,
                _ => UpsertSummary::default(),
            })
        })
    }

    /// Refuses an upsert that would take the database past `max_memory_mb`.
    fn check_memory_budget(&self, engine: &Engine, points: &[Point]) -> Result<()> {
        let Some(mb) = self.inner.config.max_memory_mb else {
            return Ok(());
        };
        let budget = mb.saturating_mul(1 << 20);
        let used = engine.memory().total();
        let needed = engine.bytes_for_upsert(points);
        if used.saturating_add(needed) > budget {
            return Err(Error::MemoryBudgetExceeded {
                budget,
                used,
                needed,
            });
        }
        Ok(())
    }

    /// Runs one write. `prepare` checks the request against the engine and says what to log
    /// (`None`: nothing changes); the record is logged with the configured durability, and only
    /// then applied. Readers keep running through `prepare` and the log write (an upgradable
    /// read lock); they wait only while the engine changes.
    fn write(&self, prepare: impl FnOnce(&Engine) -> Result<Option<WalOp>>) -> Result<Applied> {
        let mut store = self.inner.store.lock();
        let engine = self.inner.engine.upgradable_read();
        let Some(op) = prepare(&engine)? else {
            return Ok(Applied::Nothing);
        };
        if let Some(store) = store.as_mut() {
            store.log(&op)?;
        }
        let mut engine = RwLockUpgradableReadGuard::upgrade(engine);
        let applied = apply(&mut engine, op);
        drop(engine);
        match store.as_mut().filter(|s| s.wants_checkpoint()) {
            // The write is already durable in the log; a failed automatic checkpoint is retried
            // later (after the log grows further) and reported by an explicit `checkpoint()`.
            Some(store) => {
                let _ = store.auto_checkpoint(&self.exportable());
            }
            None => drop(self.indexed()),
        }
        Ok(applied)
    }

    /// The write guard once every point is in the graph. New points are searchable at once
    /// (scanned exactly as the unindexed tail); they are inserted into the graph a chunk per
    /// hold of the lock, so that a bulk load or a graph rebuild never stops searches for long.
    /// Call with the store lock held: writers stay serialised.
    fn indexed(&self) -> RwLockWriteGuard<'_, Engine> {
        let mut busy = None;
        loop {
            let mut engine = self.inner.engine.write();
            if engine.index_pending_up_to(INDEX_CHUNK) == 0 {
                return engine;
            }
            // A bulk load or a graph rebuild: more chunks follow.
            busy.get_or_insert_with(|| self.inner.life.busy());
            // Hand the lock to waiting searches rather than taking it straight back.
            RwLockWriteGuard::unlock_fair(engine);
        }
    }

    /// A read guard on an engine ready for a segment: compacted first when many slots are dead
    /// (see `Engine::export_wants_compaction`), with the rebuilt graph indexed in chunks too.
    /// Call with the store lock held.
    fn exportable(&self) -> parking_lot::RwLockReadGuard<'_, Engine> {
        let mut engine = self.indexed();
        if engine.export_wants_compaction() {
            engine.compact();
            drop(engine);
            engine = self.indexed();
        }
        RwLockWriteGuard::downgrade(engine)
    }

    /// The nearest points to the request's vector.
    ///
    /// ```
    /// use grape_vector_db::{Distance, EmbeddedConfig, EmbeddedVectorDB, Point, SearchRequest};
    /// let db = EmbeddedVectorDB::open(EmbeddedConfig::builder(1).distance(Distance::Euclid).build()?)?;
    /// db.upsert((0..10u64).map(|i| Point::new(i, vec![i as f32])).collect())?;
    /// let res = db.search(&SearchRequest::new(vec![3.2], 2))?;
    /// let ids: Vec<u64> = res.result.iter().map(|p| match p.id { grape_vector_db::PointId::Num(n) => n, _ => 0 }).collect();
    /// assert_eq!(ids, vec![3, 4]);
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn search(&self, request: &SearchRequest) -> Result<SearchResponse> {
        self.call(OpKind::Search, || {
            let mut responses = self.searched(std::slice::from_ref(request))?;
            Ok(responses.pop().expect("one response per request"))
        })
    }

    /// Several searches in one pass over the data (much cheaper than one call each).
    ///
    /// ```
    /// use grape_vector_db::{EmbeddedConfig, EmbeddedVectorDB, Point, SearchRequest};
    /// let db = EmbeddedVectorDB::open(EmbeddedConfig::builder(2).build()?)?;
    /// db.upsert(vec![Point::new(1, vec![1.0, 0.0]), Point::new(2, vec![0.0, 1.0])])?;
    /// let res = db.search_batch(&[
    ///     SearchRequest::new(vec![1.0, 0.0], 1),
    ///     SearchRequest::new(vec![0.0, 1.0], 1),
    /// ])?;
    /// assert_eq!(res[1].result[0].id, 2u64.into());
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn search_batch(&self, requests: &[SearchRequest]) -> Result<Vec<SearchResponse>> {
        self.call(OpKind::Search, || self.searched(requests))
    }

    /// Answers a batch; a large one is split over the thread pool (each share in one pass).
    fn searched(&self, requests: &[SearchRequest]) -> Result<Vec<SearchResponse>> {
        let engine = self.inner.engine.read();
        let threads = self.inner.threads;
        let responses = if threads < 2 || requests.len() < PARALLEL_BATCH {
            engine.search_batch(requests)?
        } else {
            let share = requests.len().div_ceil(threads);
            let shares = requests.len().div_ceil(share);
            let engine = &*engine;
            let parts = parallel_map(threads, shares, &|i| {
                let end = ((i + 1) * share).min(requests.len());
                engine.search_batch(&requests[i * share..end])
            });
            let mut all = Vec::with_capacity(requests.len());
            for part in parts {
                all.extend(part?);
            }
            all
        };
        self.inner
            .metrics
            .queries
            .fetch_add(requests.len() as u64, Relaxed);
        Ok(responses)
    }

    /// The stored points with these ids (payload and vector), in the order asked; ids that do
    /// not exist are left out.
    ///
    /// ```
    /// use grape_vector_db::{EmbeddedConfig, EmbeddedVectorDB, Point};
    /// let db = EmbeddedVectorDB::open(EmbeddedConfig::builder(2).build()?)?;
    /// db.upsert(vec![Point::new(1, vec![1.0, 0.0])])?;
    /// let got = db.get([1u64, 99])?;
    /// assert_eq!(got.len(), 1);
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn get<I: Into<PointId>>(&self, ids: impl IntoIterator<Item = I>) -> Result<Vec<Record>> {
        self.call(OpKind::Get, || {
            Ok(self.inner.engine.read().get(&collect_ids(ids), true, true))
        })
    }

    /// Merges `payload`'s keys into the payload of each point. Fails with
    /// [`Error::UnknownId`], changing nothing, if any id does not exist.
    ///
    /// ```
    /// use grape_vector_db::{EmbeddedConfig, EmbeddedVectorDB, Point};
    /// use serde_json::json;
    /// let db = EmbeddedVectorDB::open(EmbeddedConfig::builder(1).build()?)?;
    /// db.upsert(vec![Point::new(1, vec![1.0]).with_payload(json!({"a": 1}))?])?;
    /// db.set_payload([1u64], json!({"b": 2}))?;
    /// assert_eq!(db.get([1u64])?[0].payload.as_ref().unwrap().len(), 2);
    /// assert!(db.set_payload([2u64], json!({"b": 2})).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_payload<I: Into<PointId>>(
        &self,
        ids: impl IntoIterator<Item = I>,
        payload: serde_json::Value,
    ) -> Result<()> {
        self.call(OpKind::SetPayload, || {
            let serde_json::Value::Object(payload) = payload else {
                return Err(Error::PayloadNotObject);
            };
            let ids = collect_ids(ids);
            self.write(|engine| {
                engine.check_known(&ids)?;
                Ok(Some(WalOp::SetPayload(ids, payload)))
            })?;
            Ok(())
        })
    }

    /// Deletes the points with these ids; returns how many existed.
    ///
    /// ```
    /// use grape_vector_db::{EmbeddedConfig, EmbeddedVectorDB, Point};
    /// let db = EmbeddedVectorDB::open(EmbeddedConfig::builder(1).build()?)?;
    /// db.upsert(vec![Point::new(1, vec![1.0])])?;
    /// assert_eq!(db.delete([1u64, 2])?, 1);
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn delete<I: Into<PointId>>(&self, ids: impl IntoIterator<Item = I>) -> Result<usize> {
        let mut ids = collect_ids(ids);
        self.delete_existing(|engine| {
            ids.sort_unstable();
            ids.dedup();
            ids.retain(|id| engine.contains(*id));
            ids
        })
    }

    fn delete_existing(&self, resolve: impl FnOnce(&Engine) -> Vec<PointId>) -> Result<usize> {
        self.call(OpKind::Delete, || {
            let applied = self.write(|engine| {
                let ids = resolve(engine);
                Ok((!ids.is_empty()).then_some(WalOp::Delete(ids)))
            })?;
            let deleted = match applied {
                Applied::Deleted(n) => n,
                _ => 0,
            };
            self.inner
                .metrics
                .points_deleted
                .fetch_add(deleted as u64, Relaxed);
            Ok(deleted)
        })
    }

    /// Deletes every point matching `filter`; returns how many.
    ///
    /// ```
    /// use grape_vector_db::{Condition, EmbeddedConfig, EmbeddedVectorDB, Filter, Point};
    /// use serde_json::json;
    /// let db = EmbeddedVectorDB::open(EmbeddedConfig::builder(1).build()?)?;
    /// db.upsert(vec![
    ///     Point::new(1, vec![1.0]).with_payload(json!({"old": true}))?,
    ///     Point::new(2, vec![1.0]).with_payload(json!({"old": false}))?,
    /// ])?;
    /// assert_eq!(db.delete_by_filter(&Filter::must([Condition::match_value("old", true)]))?, 1);
    /// assert_eq!(db.count(None)?, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn delete_by_filter(&self, filter: &Filter) -> Result<usize> {
        self.delete_existing(|engine| engine.matching_ids(filter))
    }

    /// Number of points, or of points matching `filter`.
    ///
    /// ```
    /// use grape_vector_db::{Condition, EmbeddedConfig, EmbeddedVectorDB, Filter, Point};
    /// let db = EmbeddedVectorDB::open(EmbeddedConfig::builder(1).build()?)?;
    /// db.upsert((1..=4u64).map(|i| Point::new(i, vec![1.0])).collect())?;
    /// assert_eq!(db.count(Some(&Filter::must([Condition::has_id([1u64, 3])])))?, 2);
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn count(&self, filter: Option<&Filter>) -> Result<usize> {
        self.call(OpKind::Count, || Ok(self.inner.engine.read().count(filter)))
    }

    /// One page of points in id order (see [`ScrollResponse`] for paging).
    ///
    /// ```
    /// use grape_vector_db::{EmbeddedConfig, EmbeddedVectorDB, Point, ScrollRequest};
    /// let db = EmbeddedVectorDB::open(EmbeddedConfig::builder(1).build()?)?;
    /// db.upsert((1..=5u64).rev().map(|i| Point::new(i, vec![1.0])).collect())?;
    /// let mut req = ScrollRequest { limit: 2, ..ScrollRequest::default() };
    /// let mut seen = Vec::new();
    /// loop {
    ///     let page = db.scroll(&req)?;
    ///     seen.extend(page.points.iter().map(|r| r.id));
    ///     match page.next_page_offset {
    ///         Some(next) => req.offset = Some(next),
    ///         None => break,
    ///     }
    /// }
    /// assert_eq!(seen, (1..=5u64).map(Into::into).collect::<Vec<_>>());
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn scroll(&self, request: &ScrollRequest) -> Result<ScrollResponse> {
        self.call(OpKind::Scroll, || self.inner.engine.read().scroll(request))
    }

    /// Reclaims the space of deleted points now, in memory and (with storage) on disk through
    /// a checkpoint, instead of waiting for the automatic compaction (which runs when deleted
    /// slots outnumber live points).
    ///
    /// ```
    /// use grape_vector_db::{EmbeddedConfig, EmbeddedVectorDB, Point};
    /// let db = EmbeddedVectorDB::open(EmbeddedConfig::builder(1).build()?)?;
    /// db.upsert(vec![Point::new(1, vec![1.0]), Point::new(2, vec![1.0])])?;
    /// db.delete([1u64])?;
    /// assert_eq!(db.stats().tombstones, 1);
    /// db.compact()?;
    /// assert_eq!(db.stats().tombstones, 0);
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn compact(&self) -> Result<()> {
        self.call(OpKind::Compact, || {
            let mut store = self.inner.store.lock();
            let _busy = self.inner.life.busy();
            self.inner.engine.write().compact();
            let engine = self.exportable();
            match store.as_mut() {
                Some(store) => store.checkpoint(&engine),
                None => Ok(()),
            }
        })
    }

    /// Writes the whole state into a new segment and starts an empty log, so the next open
    /// replays nothing. Runs by itself when the log exceeds `checkpoint_wal_bytes`; searches
    /// continue meanwhile, writes wait. Without storage it does nothing.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use grape_vector_db::{EmbeddedConfig, EmbeddedVectorDB, Point, storage::MemoryStorage};
    /// let storage = MemoryStorage::new();
    /// let config = EmbeddedConfig::builder(1).build()?;
    /// let db = EmbeddedVectorDB::open_with_storage(config.clone(), Arc::new(storage.clone()))?;
    /// db.upsert(vec![Point::new(1, vec![1.0])])?;
    /// db.checkpoint()?;
    /// drop(db);
    /// let db = EmbeddedVectorDB::open_with_storage(config, Arc::new(storage))?;
    /// assert_eq!(db.open_report().segment_points, 1);
    /// assert_eq!(db.open_report().wal_records_replayed, 0);
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn checkpoint(&self) -> Result<()> {
        self.call(OpKind::Checkpoint, || {
            let mut store = self.inner.store.lock();
            let _busy = self.inner.life.busy();
            match store.as_mut() {
                Some(store) => store.checkpoint(&self.exportable()),
                None => Ok(()),
            }
        })
    }

    /// Makes every acknowledged write durable now (fsync), whatever the durability mode.
    ///
    /// ```
    /// use grape_vector_db::{EmbeddedConfig, EmbeddedVectorDB};
    /// let db = EmbeddedVectorDB::open(EmbeddedConfig::builder(1).build()?)?;
    /// db.flush()?;
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn flush(&self) -> Result<()> {
        self.call(OpKind::Flush, || match self.inner.store.lock().as_mut() {
            Some(store) => store.flush(),
            None => Ok(()),
        })
    }

    /// Writes a consistent copy of the live database into `dest`, which must be empty or
    /// missing. The copy is a database of its own: `open` it to restore a backup.
    ///
    /// ```
    /// use grape_vector_db::{EmbeddedConfig, EmbeddedVectorDB, Point};
    /// let dest = std::env::temp_dir().join(format!("grape-doc-snap-{}", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dest);
    /// let db = EmbeddedVectorDB::open(EmbeddedConfig::builder(1).build()?)?;
    /// db.upsert(vec![Point::new(1, vec![1.0])])?;
    /// db.snapshot(&dest)?;
    /// let copy = EmbeddedVectorDB::open(EmbeddedConfig::builder(1).data_dir(&dest).build()?)?;
    /// assert_eq!(copy.count(None)?, 1);
    /// # drop(copy);
    /// # std::fs::remove_dir_all(&dest).unwrap();
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    #[cfg(not(target_arch = "wasm32"))]
    pub fn snapshot(&self, dest: impl AsRef<std::path::Path>) -> Result<()> {
        self.snapshot_to(&crate::storage::FsStorage::create(dest)?)
    }

    /// Like [`EmbeddedVectorDB::snapshot`], into any storage backend.
    ///
    /// ```
    /// use grape_vector_db::{EmbeddedConfig, EmbeddedVectorDB, storage::{MemoryStorage, Storage}};
    /// let db = EmbeddedVectorDB::open(EmbeddedConfig::builder(1).build()?)?;
    /// let dest = MemoryStorage::new();
    /// db.snapshot_to(&dest)?;
    /// assert!(dest.list().unwrap().contains(&"MANIFEST".to_string()));
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn snapshot_to(&self, dest: &dyn Storage) -> Result<()> {
        self.call(OpKind::Snapshot, || {
            // Holding the writer lock keeps the copy at one point of the log.
            let store = self.inner.store.lock();
            let _busy = self.inner.life.busy();
            let engine = self.exportable();
            let last_seq = store.as_ref().map_or(0, Store::last_seq);
            Store::snapshot(&engine, last_seq, dest)
        })
    }

    /// The whole database as one byte string (a consistent snapshot of every file, in the
    /// native format): open it anywhere with [`EmbeddedVectorDB::import_archive`], natively or
    /// in the browser (OPFS, IndexedDB).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use grape_vector_db::{EmbeddedConfig, EmbeddedVectorDB, Point, storage::MemoryStorage};
    /// let db = EmbeddedVectorDB::open(EmbeddedConfig::builder(2).build()?)?;
    /// db.upsert(vec![Point::new(7, vec![1.0, 0.5])])?;
    /// let bytes = db.export_archive()?;
    /// let dest = MemoryStorage::new();
    /// EmbeddedVectorDB::import_archive(&bytes, &dest)?;
    /// let copy = EmbeddedVectorDB::open_with_storage(db.config().clone(), Arc::new(dest))?;
    /// assert_eq!(copy.count(None)?, 1);
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn export_archive(&self) -> Result<Vec<u8>> {
        let copy = crate::storage::MemoryStorage::new();
        self.snapshot_to(&copy)?;
        crate::persist::archive::pack(&copy)
    }

    /// Writes the database packed by [`EmbeddedVectorDB::export_archive`] into the empty
    /// `dest`; then open `dest`. A damaged archive is refused (`Error::Corrupt`) before anything
    /// is written.
    ///
    /// ```
    /// use grape_vector_db::{EmbeddedVectorDB, Error, storage::MemoryStorage};
    /// let err = EmbeddedVectorDB::import_archive(b"not an archive", &MemoryStorage::new());
    /// assert!(matches!(err, Err(Error::Corrupt { .. })));
    /// ```
    pub fn import_archive(archive: &[u8], dest: &dyn Storage) -> Result<()> {
        crate::persist::archive::unpack(archive, dest)
    }

    /// Counts, sizes, state and uptime; answered in every state (all zeros once closed).
    ///
    /// ```
    /// use grape_vector_db::{DatabaseState, EmbeddedConfig, EmbeddedVectorDB};
    /// let db = EmbeddedVectorDB::open(EmbeddedConfig::builder(2).build()?)?;
    /// let stats = db.stats();
    /// assert_eq!((stats.dimension, stats.state), (2, DatabaseState::Ready));
    /// assert_eq!(stats.storage, "memory");
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn stats(&self) -> DatabaseStats {
        let engine = self.inner.engine.read();
        DatabaseStats {
            total_vectors: engine.len(),
            tombstones: engine.tombstones(),
            dimension: engine.config().dimension,
            distance: engine.config().distance,
            memory: engine.memory(),
            disk_bytes: self.disk_bytes(),
            state: self.inner.life.state(),
            uptime: self.inner.life.uptime(),
            storage: self.inner.location.clone(),
            kernel: crate::distance::best().name.to_owned(),
        }
    }

    /// Bytes of the database's files: segment, log and manifest.
    fn disk_bytes(&self) -> u64 {
        if self.inner.location == "memory" || self.inner.life.state() == DatabaseState::Closed {
            return 0;
        }
        let io = &self.inner.io;
        io.segment_size.load(Relaxed)
            + io.wal_size.load(Relaxed)
            + crate::persist::manifest::BYTES as u64
    }

    /// Counters and latency histograms of every kind of call since open (see [`Metrics`]),
    /// with `to_json` and `to_prometheus` exports; answered in every state.
    ///
    /// ```
    /// use grape_vector_db::{EmbeddedConfig, EmbeddedVectorDB, Point};
    /// let db = EmbeddedVectorDB::open(EmbeddedConfig::builder(1).build()?)?;
    /// db.upsert(vec![Point::new(1, vec![1.0]), Point::new(2, vec![2.0])])?;
    /// let m = db.metrics();
    /// assert_eq!((m.points_upserted, m.operations["upsert"].calls), (2, 1));
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn metrics(&self) -> Metrics {
        let engine = self.inner.engine.read();
        let figures = DatabaseFigures {
            state: self.inner.life.state(),
            uptime: self.inner.life.uptime(),
            total_vectors: engine.len(),
            memory_bytes: engine.memory().total(),
            disk_bytes: self.disk_bytes(),
        };
        drop(engine);
        self.inner.metrics.snapshot(&self.inner.io, figures)
    }

    /// Runs every health check now: storage (a probe write, read and sync; the log writer
    /// usable), engine (a stored vector searched through the index finds itself), memory
    /// (against `max_memory_mb`) and disk (free space). Never fails: a closed database reports
    /// a critical lifecycle check.
    ///
    /// ```
    /// use grape_vector_db::{CheckStatus, EmbeddedConfig, EmbeddedVectorDB};
    /// let db = EmbeddedVectorDB::open(EmbeddedConfig::builder(2).build()?)?;
    /// assert_eq!(db.health().status, CheckStatus::Healthy);
    /// db.close()?;
    /// assert_eq!(db.health().status, CheckStatus::Critical);
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn health(&self) -> HealthStatus {
        let start = Instant::now();
        let status = match self.inner.life.begin(OpKind::Health) {
            Ok(_in_flight) => self.run_health_checks(),
            Err(e) => HealthStatus::new(
                vec![health::timed("lifecycle", || {
                    (CheckStatus::Critical, e.to_string())
                })],
                self.uptime(),
            ),
        };
        self.inner
            .metrics
            .record(OpKind::Health, start.elapsed(), None);
        status
    }

    /// The last result of the background health checker (`health_check_interval`), if it ran.
    ///
    /// ```
    /// use grape_vector_db::{EmbeddedConfig, EmbeddedVectorDB};
    /// let db = EmbeddedVectorDB::open(EmbeddedConfig::builder(2).build()?)?;
    /// assert!(db.last_health().is_none(), "no interval configured");
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn last_health(&self) -> Option<HealthStatus> {
        self.inner.last_health.lock().clone()
    }

    fn run_health_checks(&self) -> HealthStatus {
        let config = &self.inner.config;
        let (storage, disk) = {
            let store = self.inner.store.lock();
            let storage = health::timed("storage", || match store.as_ref() {
                None => (
                    CheckStatus::Healthy,
                    "in memory: nothing is written to storage".to_owned(),
                ),
                Some(s) => match s.probe() {
                    Ok(()) => (
                        CheckStatus::Healthy,
                        format!(
                            "{}: write, read back and sync succeeded",
                            self.inner.location
                        ),
                    ),
                    Err(why) => (CheckStatus::Critical, why),
                },
            });
            let disk = health::timed("disk", || match store.as_ref() {
                None => (CheckStatus::Healthy, "in memory: no disk used".to_owned()),
                Some(s) => health::disk(s.space(), config.disk_warning_mb, config.disk_critical_mb),
            });
            (storage, disk)
        };
        let engine = self.inner.engine.read();
        let k = self.inner.health_probe.fetch_add(7919, Relaxed);
        let engine_check = health::timed("engine", || self_search(&engine, k));
        let memory = health::timed("memory", || {
            health::memory(engine.memory().total(), config.max_memory_mb)
        });
        drop(engine);
        HealthStatus::new(vec![storage, engine_check, memory, disk], self.uptime())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_map_uses_every_thread_even_for_one_job_each() {
        // `searched` splits a batch into exactly `threads` shares: they must not run serially.
        let ids = parallel_map(2, 2, &|_| std::thread::current().id());
        assert_eq!(ids.len(), 2);
        assert_ne!(ids[0], ids[1], "two shares ran on one thread");
        let squares = parallel_map(3, 10, &|i| i * i);
        assert_eq!(
            squares,
            (0..10).map(|i| i * i).collect::<Vec<_>>(),
            "order kept"
        );
        assert_eq!(
            parallel_map(4, 1, &|i| i + 1),
            vec![1],
            "fewer jobs than threads"
        );
    }
}
