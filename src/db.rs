//! The native facade: [`EmbeddedVectorDB`], thread-safe and synchronous.

use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock, RwLockUpgradableReadGuard, RwLockWriteGuard};
use serde::{Deserialize, Serialize};

use crate::engine::{Engine, EngineConfig};
use crate::error::{Error, Result};
use crate::filter::{Filter, KeyPath};
use crate::persist::wal::WalOp;
use crate::persist::{apply, Applied, Durability, OpenReport, Store};
use crate::point::{Distance, Point, PointId};
use crate::search::{
    HnswConfig, Record, ScrollRequest, ScrollResponse, SearchRequest, SearchResponse,
};
use crate::stats::DatabaseStats;
use crate::storage::Storage;

pub use crate::engine::UpsertSummary;

/// Points inserted into the graph per hold of the write lock (tens of milliseconds).
const INDEX_CHUNK: usize = 256;

/// Largest supported dimension; beyond it a single vector would be over 256 KiB.
pub const MAX_DIMENSION: usize = 65_536;

/// How a database is opened. Build it with [`EmbeddedConfig::builder`], which validates.
///
/// ```
/// use grape_vector_db::{Distance, EmbeddedConfig};
/// let config = EmbeddedConfig::builder(384)
///     .distance(Distance::Dot)
///     .max_points(1_000_000)
///     .build()?;
/// assert_eq!(config.dimension, 384);
/// # Ok::<(), grape_vector_db::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddedConfig {
    /// Length of every vector.
    pub dimension: usize,
    /// How vectors are compared.
    pub distance: Distance,
    /// Most live points the database accepts (`None`: up to 2^32 - 1).
    pub max_points: Option<usize>,
    /// Largest `limit + offset` of a search or `limit` of a scroll.
    pub max_search_limit: usize,
    /// Where the database lives on disk; `None` keeps it in memory only (native builds).
    pub data_dir: Option<PathBuf>,
    /// When writes become durable (ignored without storage).
    pub durability: Durability,
    /// A checkpoint runs by itself once the write-ahead log exceeds this many bytes.
    pub checkpoint_wal_bytes: u64,
    /// The HNSW index (default on); `None` for exact search only, and faster upserts.
    pub hnsw: Option<HnswConfig>,
    /// Payload keys to index (keyword, integer and bool values), so that filters on them
    /// (`match` value/any, integer `range`) score only matching points. Built on first use.
    pub payload_indexes: Vec<String>,
    /// Threads that build the HNSW graph during large upserts (0, the default: all cores).
    /// Searches always run on the calling thread; run them from several threads at once.
    pub index_threads: usize,
}

impl EmbeddedConfig {
    /// Starts a configuration for vectors of `dimension` floats, with Cosine distance.
    ///
    /// ```
    /// let c = grape_vector_db::EmbeddedConfig::builder(3).build().unwrap();
    /// assert_eq!(c.distance, grape_vector_db::Distance::Cosine);
    /// ```
    pub fn builder(dimension: usize) -> EmbeddedConfigBuilder {
        EmbeddedConfigBuilder {
            config: EmbeddedConfig {
                dimension,
                distance: Distance::default(),
                max_points: None,
                max_search_limit: 10_000,
                data_dir: None,
                durability: Durability::default(),
                checkpoint_wal_bytes: 64 << 20,
                hnsw: Some(HnswConfig::default()),
                payload_indexes: Vec::new(),
                index_threads: 0,
            },
        }
    }

    /// Checks every field; [`EmbeddedVectorDB::open`] calls it too, so a hand-built or
    /// deserialised config is checked as well.
    ///
    /// ```
    /// let mut c = grape_vector_db::EmbeddedConfig::builder(3).build().unwrap();
    /// c.dimension = 0;
    /// assert!(c.validate().is_err());
    /// ```
    pub fn validate(&self) -> Result<()> {
        if self.dimension == 0 || self.dimension > MAX_DIMENSION {
            return Err(Error::InvalidConfig(format!(
                "dimension is {} but must be between 1 and {MAX_DIMENSION}",
                self.dimension
            )));
        }
        if self.max_search_limit == 0 {
            return Err(Error::InvalidConfig(
                "max_search_limit must be at least 1".to_owned(),
            ));
        }
        if self.checkpoint_wal_bytes == 0 {
            return Err(Error::InvalidConfig(
                "checkpoint_wal_bytes must be at least 1".to_owned(),
            ));
        }
        if let Durability::Batched { interval } = self.durability {
            if interval.is_zero() {
                return Err(Error::InvalidConfig(
                    "Durability::Batched needs an interval above zero (or use Durability::Sync)"
                        .to_owned(),
                ));
            }
        }
        if let Some(h) = &self.hnsw {
            if !(2..=128).contains(&h.m) || h.ef_construction == 0 || h.ef == 0 {
                return Err(Error::InvalidConfig(format!(
                    "hnsw: m must be between 2 and 128 and ef_construction and ef at least 1 \
                     (got m {}, ef_construction {}, ef {})",
                    h.m, h.ef_construction, h.ef
                )));
            }
        }
        for key in &self.payload_indexes {
            key.parse::<KeyPath>()
                .map_err(|e| Error::InvalidConfig(format!("payload_indexes: {e}")))?;
        }
        if self.max_points == Some(0) {
            return Err(Error::InvalidConfig(
                "max_points must be at least 1 (or None for no limit)".to_owned(),
            ));
        }
        Ok(())
    }
}

/// Builder of [`EmbeddedConfig`].
///
/// ```
/// let b = grape_vector_db::EmbeddedConfig::builder(8).max_search_limit(100);
/// assert_eq!(b.build()?.max_search_limit, 100);
/// # Ok::<(), grape_vector_db::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct EmbeddedConfigBuilder {
    config: EmbeddedConfig,
}

impl EmbeddedConfigBuilder {
    /// Sets the distance (default Cosine).
    ///
    /// ```
    /// use grape_vector_db::{Distance, EmbeddedConfig};
    /// assert_eq!(EmbeddedConfig::builder(2).distance(Distance::Euclid).build()?.distance, Distance::Euclid);
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn distance(mut self, distance: Distance) -> Self {
        self.config.distance = distance;
        self
    }

    /// Caps the number of live points; an upsert that would exceed it fails as a whole.
    ///
    /// ```
    /// let c = grape_vector_db::EmbeddedConfig::builder(2).max_points(10).build()?;
    /// assert_eq!(c.max_points, Some(10));
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn max_points(mut self, max: usize) -> Self {
        self.config.max_points = Some(max);
        self
    }

    /// Caps `limit + offset` of searches and `limit` of scrolls (default 10,000).
    ///
    /// ```
    /// let c = grape_vector_db::EmbeddedConfig::builder(2).max_search_limit(5).build()?;
    /// assert_eq!(c.max_search_limit, 5);
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn max_search_limit(mut self, max: usize) -> Self {
        self.config.max_search_limit = max;
        self
    }

    /// Stores the database in `dir` (created if missing); reopening the same directory finds
    /// the data again.
    ///
    /// ```
    /// let c = grape_vector_db::EmbeddedConfig::builder(2).data_dir("/tmp/grape-example").build()?;
    /// assert!(c.data_dir.is_some());
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config.data_dir = Some(dir.into());
        self
    }

    /// Sets when writes become durable (default [`Durability::Sync`]).
    ///
    /// ```
    /// use grape_vector_db::{Durability, EmbeddedConfig};
    /// let c = EmbeddedConfig::builder(2).durability(Durability::OnFlush).build()?;
    /// assert_eq!(c.durability, Durability::OnFlush);
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn durability(mut self, durability: Durability) -> Self {
        self.config.durability = durability;
        self
    }

    /// Sets the log size that triggers an automatic checkpoint (default 64 MiB).
    ///
    /// ```
    /// let c = grape_vector_db::EmbeddedConfig::builder(2).checkpoint_wal_bytes(1 << 20).build()?;
    /// assert_eq!(c.checkpoint_wal_bytes, 1 << 20);
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn checkpoint_wal_bytes(mut self, bytes: u64) -> Self {
        self.config.checkpoint_wal_bytes = bytes;
        self
    }

    /// Indexes a payload key, so filters on it (`match` value/any, integer `range`) score only
    /// the points that can match instead of checking every payload.
    ///
    /// ```
    /// let c = grape_vector_db::EmbeddedConfig::builder(2).payload_index("tenant").build()?;
    /// assert_eq!(c.payload_indexes, vec!["tenant".to_string()]);
    /// assert!(grape_vector_db::EmbeddedConfig::builder(2).payload_index("a..b").build().is_err());
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn payload_index(mut self, key: impl Into<String>) -> Self {
        self.config.payload_indexes.push(key.into());
        self
    }

    /// Sets how many threads build the graph during large upserts (0: all cores; 1: the calling
    /// thread only). The graph is the same whatever the number.
    ///
    /// ```
    /// let c = grape_vector_db::EmbeddedConfig::builder(2).index_threads(1).build()?;
    /// assert_eq!(c.index_threads, 1);
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn index_threads(mut self, threads: usize) -> Self {
        self.config.index_threads = threads;
        self
    }

    /// Sets the HNSW index parameters, or `None` to search exactly only.
    ///
    /// ```
    /// use grape_vector_db::{EmbeddedConfig, HnswConfig};
    /// let c = EmbeddedConfig::builder(2)
    ///     .hnsw(Some(HnswConfig { m: 32, ..HnswConfig::default() }))
    ///     .build()?;
    /// assert_eq!(c.hnsw.unwrap().m, 32);
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn hnsw(mut self, hnsw: Option<HnswConfig>) -> Self {
        self.config.hnsw = hnsw;
        self
    }

    /// Validates and returns the configuration.
    ///
    /// ```
    /// assert!(grape_vector_db::EmbeddedConfig::builder(0).build().is_err());
    /// ```
    pub fn build(self) -> Result<EmbeddedConfig> {
        self.config.validate()?;
        Ok(self.config)
    }
}

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
    /// same order as the engine's changes.
    store: Mutex<Option<Store>>,
    engine: RwLock<Engine>,
    report: OpenReport,
}

impl Drop for Inner {
    /// The last handle is gone: make what was acknowledged durable (best effort; call
    /// [`EmbeddedVectorDB::flush`] to see errors). The directory lock is released after.
    fn drop(&mut self) {
        if let Some(store) = self.store.get_mut() {
            let _ = store.flush();
        }
    }
}

impl std::fmt::Debug for EmbeddedVectorDB {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedVectorDB")
            .field("config", &self.inner.config)
            .field("points", &self.inner.engine.read().len())
            .finish()
    }
}

/// How many threads build the graph for the configured `index_threads` (0: all cores). Asked
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
    if threads < 2 || count < 2 * threads {
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
    /// assert_eq!(db.count(None), 1);
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
            None => {
                let engine = Engine::new(Self::engine_config(&config));
                Ok(Self::from_parts(
                    config,
                    None,
                    engine,
                    OpenReport::default(),
                ))
            }
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
    /// assert_eq!(again.count(None), 1);
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn open_with_storage(config: EmbeddedConfig, storage: Arc<dyn Storage>) -> Result<Self> {
        config.validate()?;
        let (store, engine, report) = Store::open(
            storage,
            Self::engine_config(&config),
            config.durability,
            config.checkpoint_wal_bytes,
        )?;
        Ok(Self::from_parts(config, Some(store), engine, report))
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

    fn from_parts(
        config: EmbeddedConfig,
        store: Option<Store>,
        mut engine: Engine,
        report: OpenReport,
    ) -> Self {
        let threads = build_threads(config.index_threads);
        engine.set_parallel_map(Box::new(move |count, job| {
            parallel_map(threads, count, job)
        }));
        // `write` indexes new points itself, a chunk at a time.
        engine.set_deferred_indexing(true);
        let batched = match (&store, config.durability) {
            (Some(_), Durability::Batched { interval }) => Some(interval),
            _ => None,
        };
        let db = EmbeddedVectorDB {
            inner: Arc::new(Inner {
                config,
                store: Mutex::new(store),
                engine: RwLock::new(engine),
                report,
            }),
        };
        if let Some(interval) = batched {
            db.spawn_syncer(interval);
        }
        db
    }

    /// `Durability::Batched`: a thread that fsyncs the log every `interval` while writes are
    /// pending. It holds only a weak reference, so it ends within one interval of the last
    /// handle being dropped. A failed fsync poisons the log writer, so the next write reports it.
    #[cfg(not(target_arch = "wasm32"))]
    fn spawn_syncer(&self, interval: std::time::Duration) {
        let weak = Arc::downgrade(&self.inner);
        let spawned = std::thread::Builder::new()
            .name("grape-wal-sync".to_owned())
            .spawn(move || loop {
                std::thread::sleep(interval);
                let Some(inner) = weak.upgrade() else { break };
                let mut store = inner.store.lock();
                if let Some(store) = store.as_mut() {
                    let _ = store.flush();
                }
            });
        // Without the thread, writes are still durable at the next flush, checkpoint or drop.
        drop(spawned);
    }

    #[cfg(target_arch = "wasm32")]
    fn spawn_syncer(&self, _interval: std::time::Duration) {}

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
    /// assert_eq!(db.count(None), 2);
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn upsert(&self, points: Vec<Point>) -> Result<UpsertSummary> {
        let applied = self.write(|engine| {
            engine.validate_upsert(&points)?;
            Ok(Some(WalOp::Upsert(points)))
        })?;
        Ok(match applied {
            Applied::Upserted(summary) => summary,
            _ => UpsertSummary::default(),
        })
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
        loop {
            let mut engine = self.inner.engine.write();
            if engine.index_pending_up_to(INDEX_CHUNK) == 0 {
                return engine;
            }
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
        let mut responses = self.search_batch(std::slice::from_ref(request))?;
        Ok(responses.pop().expect("one response per request"))
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
        self.inner.engine.read().search_batch(requests)
    }

    /// The stored points with these ids (payload and vector), in the order asked; ids that do
    /// not exist are left out.
    ///
    /// ```
    /// use grape_vector_db::{EmbeddedConfig, EmbeddedVectorDB, Point};
    /// let db = EmbeddedVectorDB::open(EmbeddedConfig::builder(2).build()?)?;
    /// db.upsert(vec![Point::new(1, vec![1.0, 0.0])])?;
    /// let got = db.get([1u64, 99]);
    /// assert_eq!(got.len(), 1);
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn get<I: Into<PointId>>(&self, ids: impl IntoIterator<Item = I>) -> Vec<Record> {
        self.inner.engine.read().get(&collect_ids(ids), true, true)
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
    /// assert_eq!(db.get([1u64])[0].payload.as_ref().unwrap().len(), 2);
    /// assert!(db.set_payload([2u64], json!({"b": 2})).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_payload<I: Into<PointId>>(
        &self,
        ids: impl IntoIterator<Item = I>,
        payload: serde_json::Value,
    ) -> Result<()> {
        let serde_json::Value::Object(payload) = payload else {
            return Err(Error::PayloadNotObject);
        };
        let ids = collect_ids(ids);
        self.write(|engine| {
            engine.check_known(&ids)?;
            Ok(Some(WalOp::SetPayload(ids, payload)))
        })?;
        Ok(())
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
        let applied = self.write(|engine| {
            let ids = resolve(engine);
            Ok((!ids.is_empty()).then_some(WalOp::Delete(ids)))
        })?;
        Ok(match applied {
            Applied::Deleted(n) => n,
            _ => 0,
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
    /// assert_eq!(db.count(None), 1);
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
    /// assert_eq!(db.count(Some(&Filter::must([Condition::has_id([1u64, 3])]))), 2);
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn count(&self, filter: Option<&Filter>) -> usize {
        self.inner.engine.read().count(filter)
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
        self.inner.engine.read().scroll(request)
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
        let mut store = self.inner.store.lock();
        self.inner.engine.write().compact();
        let engine = self.exportable();
        match store.as_mut() {
            Some(store) => store.checkpoint(&engine),
            None => Ok(()),
        }
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
        let mut store = self.inner.store.lock();
        match store.as_mut() {
            Some(store) => store.checkpoint(&self.exportable()),
            None => Ok(()),
        }
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
        match self.inner.store.lock().as_mut() {
            Some(store) => store.flush(),
            None => Ok(()),
        }
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
    /// assert_eq!(copy.count(None), 1);
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
        // Holding the writer lock keeps the copy at one point of the log.
        let store = self.inner.store.lock();
        let engine = self.exportable();
        let last_seq = store.as_ref().map_or(0, Store::last_seq);
        Store::snapshot(&engine, last_seq, dest)
    }

    /// Counts and memory use.
    ///
    /// ```
    /// use grape_vector_db::{EmbeddedConfig, EmbeddedVectorDB};
    /// let db = EmbeddedVectorDB::open(EmbeddedConfig::builder(2).build()?)?;
    /// assert_eq!(db.stats().dimension, 2);
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
            kernel: crate::distance::best().name.to_owned(),
        }
    }
}
