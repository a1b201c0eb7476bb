//! [`EmbeddedConfig`]: everything chosen when a database is opened, validated in one place.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::filter::KeyPath;
use crate::point::Distance;

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
    /// Length of the unnamed vector; 0 for a database of named vectors only (Qdrant's
    /// collections of named vectors: see [`EmbeddedConfig::named_vectors`]).
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
    /// What opening does with a log damaged before its end (default: refuse to open).
    #[serde(default)]
    pub log_recovery: LogRecovery,
    /// The HNSW index (default on); `None` for exact search only, and faster upserts.
    pub hnsw: Option<HnswConfig>,
    /// How the HNSW search holds the vectors it walks by (default: as they are). See
    /// [`Quantization`].
    #[serde(default)]
    pub quantization: Quantization,
    /// With quantization: leave the original vectors of the last checkpoint in its file and
    /// read each one only when a search re-scores it (Qdrant's `on_disk` for vectors), so that
    /// resident memory is about the codes and the graph. Searches pay a read per re-scored
    /// vector (see `PERFORMANCE.md`); points written since the last checkpoint stay in memory
    /// until the next one. Default off: the vectors are mapped, and become resident as they
    /// are used.
    #[serde(default)]
    pub vectors_on_disk: bool,
    /// Payload keys to index (keyword, integer and bool values), so that filters on them
    /// (`match` value/any, integer `range`) score only matching points. Built in the background
    /// after open (natively, or in the page's idle time), or by the first filtered search if it
    /// comes first.
    pub payload_indexes: Vec<String>,
    /// Sparse vectors by name (Qdrant's `sparse_vectors`), which points may carry beside their
    /// dense vector and [`EmbeddedVectorDB::query`](crate::EmbeddedVectorDB::query) searches
    /// by name. Stored with the rest (log records, a segment section); a database that holds
    /// a sparse vector refuses to open without its declaration, and one may be added to an
    /// existing database (its points then have none).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sparse_vectors: BTreeMap<String, SparseVectorConfig>,
    /// Dense vectors by name beside the unnamed one (Qdrant's named vectors), each with its
    /// own dimension and distance, indexed and quantized as the database is. A point may lack
    /// any of them; searches name one with `using`. Stored with the rest, refused at open when
    /// a database holds one its configuration does not declare (or declares otherwise), and
    /// one may be added to an existing database (its points then have none).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub named_vectors: BTreeMap<String, DenseVectorConfig>,
    /// Threads for parallel work: building the HNSW graph during large upserts and answering
    /// large `search_batch` calls (0, the default: all cores; 1: the calling thread only).
    /// Single searches always run on the calling thread: call from several threads at once.
    /// In WebAssembly everything runs on the calling thread.
    pub thread_pool_size: usize,
    /// Most memory the database may hold, in MiB (`None`: no limit). An upsert that would
    /// exceed it fails with [`Error::MemoryBudgetExceeded`]; the health check warns above 90%.
    /// Counts vectors (mapped ones too), graph, payloads, ids and indexes.
    pub max_memory_mb: Option<usize>,
    /// Warm up on open: fault in the mapped files, build the payload indexes, index points
    /// replayed from the log and run a few searches, so that the first queries are as fast as
    /// the rest. Costs open time (see `OpenReport::startup`).
    pub enable_warmup: bool,
    /// Opening fails with [`Error::StartupTimeout`] (releasing the lock) when it takes longer.
    pub startup_timeout: Option<Duration>,
    /// How long `close` waits for calls in flight before giving up with
    /// [`Error::ShutdownTimeout`].
    pub shutdown_timeout: Duration,
    /// Write a checkpoint on every `close`, so the next open replays no log (slower close,
    /// faster open). Without it `close` still checkpoints a log of at least 1 MiB and 1/32 of
    /// the segment, whose points the next open would otherwise index again.
    pub checkpoint_on_close: bool,
    /// Run the health checks in a background thread at this interval (native only); read the
    /// last result with `EmbeddedVectorDB::last_health`.
    pub health_check_interval: Option<Duration>,
    /// The disk check warns when free space falls below this many MiB (or 10% of the disk).
    pub disk_warning_mb: u64,
    /// The disk check is critical when free space falls below this many MiB.
    pub disk_critical_mb: u64,
}

impl EmbeddedConfig {
    /// Starts a configuration for vectors of `dimension` floats, with Cosine distance; 0 for a
    /// database of named vectors only (then declare them with
    /// [`EmbeddedConfigBuilder::named_vector`]).
    ///
    /// ```
    /// use grape_vector_db::{Distance, EmbeddedConfig};
    /// let c = EmbeddedConfig::builder(3).build().unwrap();
    /// assert_eq!(c.distance, Distance::Cosine);
    /// let named_only = EmbeddedConfig::builder(0).named_vector("image", 512, Distance::Dot).build();
    /// assert!(named_only.is_ok());
    /// assert!(EmbeddedConfig::builder(0).build().is_err(), "no vector at all");
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
                log_recovery: LogRecovery::default(),
                hnsw: Some(HnswConfig::default()),
                quantization: Quantization::None,
                vectors_on_disk: false,
                payload_indexes: Vec::new(),
                sparse_vectors: BTreeMap::new(),
                named_vectors: BTreeMap::new(),
                thread_pool_size: 0,
                max_memory_mb: None,
                enable_warmup: false,
                startup_timeout: None,
                shutdown_timeout: Duration::from_secs(5),
                checkpoint_on_close: false,
                health_check_interval: None,
                disk_warning_mb: 1024,
                disk_critical_mb: 64,
            },
        }
    }

    /// Checks every field; [`EmbeddedVectorDB::open`](crate::EmbeddedVectorDB::open) calls it too, so a hand-built or
    /// deserialised config is checked as well.
    ///
    /// ```
    /// let mut c = grape_vector_db::EmbeddedConfig::builder(3).build().unwrap();
    /// c.dimension = 0;
    /// assert!(c.validate().is_err(), "no vector at all");
    /// ```
    pub fn validate(&self) -> Result<()> {
        let named_only = self.dimension == 0 && !self.named_vectors.is_empty();
        if !named_only && (self.dimension == 0 || self.dimension > MAX_DIMENSION) {
            return Err(Error::InvalidConfig(format!(
                "dimension is {} but must be between 1 and {MAX_DIMENSION} (or 0 for a \
                 database of named vectors only)",
                self.dimension
            )));
        }
        if self.max_search_limit == 0 {
            return Err(Error::InvalidConfig(
                "max_search_limit must be at least 1".to_owned(),
            ));
        }
        if self.quantization != Quantization::None {
            if self.hnsw.is_none() {
                return Err(Error::InvalidConfig(
                    "quantization speeds up the HNSW index's search: enable hnsw, or leave \
                     quantization at none"
                        .to_owned(),
                ));
            }
            if self.distance == Distance::Manhattan {
                return Err(Error::InvalidConfig(
                    "quantization supports Cosine, Dot and Euclid distances, not Manhattan: \
                     leave quantization at none"
                        .to_owned(),
                ));
            }
        }
        if self.vectors_on_disk && self.quantization == Quantization::None {
            return Err(Error::InvalidConfig(
                "vectors_on_disk needs quantization (sq8 or binary): the search walks the codes \
                 in memory and reads the vectors from disk only to re-score its best candidates"
                    .to_owned(),
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
        for (name, sparse) in &self.sparse_vectors {
            if let Some(bm25) = sparse.bm25 {
                crate::Bm25::new(bm25).map_err(|e| match e {
                    Error::InvalidConfig(m) => {
                        Error::InvalidConfig(format!("sparse_vectors.{name}: {m}"))
                    }
                    e => e,
                })?;
            }
            if name.is_empty() {
                return Err(Error::InvalidConfig(
                    "sparse_vectors: a sparse vector needs a name (\"\" is the dense vector's)"
                        .to_owned(),
                ));
            }
        }
        for (name, named) in &self.named_vectors {
            if name.is_empty() || self.sparse_vectors.contains_key(name) {
                return Err(Error::InvalidConfig(format!(
                    "named_vectors: {name:?} cannot be a named vector's name (\"\" is the \
                     unnamed vector's, and a name is either dense or sparse)"
                )));
            }
            if named.size == 0 || named.size > MAX_DIMENSION {
                return Err(Error::InvalidConfig(format!(
                    "named_vectors.{name}: size is {} but must be between 1 and {MAX_DIMENSION}",
                    named.size
                )));
            }
        }
        if self.max_memory_mb == Some(0) {
            return Err(Error::InvalidConfig(
                "max_memory_mb must be at least 1 (or None for no limit)".to_owned(),
            ));
        }
        if self.health_check_interval.is_some_and(|d| d.is_zero()) {
            return Err(Error::InvalidConfig(
                "health_check_interval must be above zero (or None)".to_owned(),
            ));
        }
        if self.disk_critical_mb > self.disk_warning_mb {
            return Err(Error::InvalidConfig(format!(
                "disk_critical_mb ({}) must not exceed disk_warning_mb ({})",
                self.disk_critical_mb, self.disk_warning_mb
            )));
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

    /// Sets what opening does with a log damaged before its end (default
    /// [`LogRecovery::Strict`]: refuse, naming the offset).
    ///
    /// ```
    /// use grape_vector_db::{EmbeddedConfig, LogRecovery};
    /// let c = EmbeddedConfig::builder(2).log_recovery(LogRecovery::Salvage).build()?;
    /// assert_eq!(c.log_recovery, LogRecovery::Salvage);
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn log_recovery(mut self, recovery: LogRecovery) -> Self {
        self.config.log_recovery = recovery;
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

    /// Declares a sparse vector named `name`, which points may carry (Qdrant's
    /// `sparse_vectors`).
    ///
    /// ```
    /// use grape_vector_db::{EmbeddedConfig, Modifier, SparseVectorConfig};
    /// let c = EmbeddedConfig::builder(2)
    ///     .sparse_vector("text", SparseVectorConfig { modifier: Modifier::Idf, bm25: None })
    ///     .build()?;
    /// assert_eq!(c.sparse_vectors["text"].modifier, Modifier::Idf);
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn sparse_vector(mut self, name: impl Into<String>, config: SparseVectorConfig) -> Self {
        self.config.sparse_vectors.insert(name.into(), config);
        self
    }

    /// Declares a dense vector named `name` of `size` floats compared by `distance` (Qdrant's
    /// named vectors), which points may carry beside the unnamed one.
    ///
    /// ```
    /// use grape_vector_db::{Distance, EmbeddedConfig};
    /// let c = EmbeddedConfig::builder(384).named_vector("image", 512, Distance::Dot).build()?;
    /// assert_eq!(c.named_vectors["image"].size, 512);
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn named_vector(
        mut self,
        name: impl Into<String>,
        size: usize,
        distance: Distance,
    ) -> Self {
        let config = DenseVectorConfig { size, distance };
        self.config.named_vectors.insert(name.into(), config);
        self
    }

    /// Sets how many threads build the graph during large upserts and answer large search
    /// batches (0: all cores; 1: the calling thread only). Results are the same whatever the
    /// number.
    ///
    /// ```
    /// let c = grape_vector_db::EmbeddedConfig::builder(2).thread_pool_size(1).build()?;
    /// assert_eq!(c.thread_pool_size, 1);
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn thread_pool_size(mut self, threads: usize) -> Self {
        self.config.thread_pool_size = threads;
        self
    }

    /// Caps the memory the database holds, in MiB (see [`EmbeddedConfig::max_memory_mb`]).
    ///
    /// ```
    /// let c = grape_vector_db::EmbeddedConfig::builder(2).max_memory_mb(512).build()?;
    /// assert_eq!(c.max_memory_mb, Some(512));
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn max_memory_mb(mut self, mb: usize) -> Self {
        self.config.max_memory_mb = Some(mb);
        self
    }

    /// Warms the database up on open (see [`EmbeddedConfig::enable_warmup`]).
    ///
    /// ```
    /// let c = grape_vector_db::EmbeddedConfig::builder(2).enable_warmup(true).build()?;
    /// assert!(c.enable_warmup);
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn enable_warmup(mut self, on: bool) -> Self {
        self.config.enable_warmup = on;
        self
    }

    /// Fails an open that takes longer than `limit`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let c = grape_vector_db::EmbeddedConfig::builder(2).startup_timeout(Duration::from_secs(1)).build()?;
    /// assert_eq!(c.startup_timeout, Some(Duration::from_secs(1)));
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn startup_timeout(mut self, limit: Duration) -> Self {
        self.config.startup_timeout = Some(limit);
        self
    }

    /// Sets how long `close` waits for calls in flight (default 5 s).
    ///
    /// ```
    /// use std::time::Duration;
    /// let c = grape_vector_db::EmbeddedConfig::builder(2).shutdown_timeout(Duration::from_secs(1)).build()?;
    /// assert_eq!(c.shutdown_timeout, Duration::from_secs(1));
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn shutdown_timeout(mut self, limit: Duration) -> Self {
        self.config.shutdown_timeout = limit;
        self
    }

    /// Writes a checkpoint on every `close` (default off: only when the log is long, see
    /// [`EmbeddedConfig::checkpoint_on_close`]).
    ///
    /// ```
    /// let c = grape_vector_db::EmbeddedConfig::builder(2).checkpoint_on_close(true).build()?;
    /// assert!(c.checkpoint_on_close);
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn checkpoint_on_close(mut self, on: bool) -> Self {
        self.config.checkpoint_on_close = on;
        self
    }

    /// Runs the health checks in the background every `interval` (native only).
    ///
    /// ```
    /// use std::time::Duration;
    /// let c = grape_vector_db::EmbeddedConfig::builder(2).health_check_interval(Duration::from_secs(30)).build()?;
    /// assert_eq!(c.health_check_interval, Some(Duration::from_secs(30)));
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn health_check_interval(mut self, interval: Duration) -> Self {
        self.config.health_check_interval = Some(interval);
        self
    }

    /// Sets the free-space thresholds of the disk check, in MiB (defaults 1024 and 64).
    ///
    /// ```
    /// let c = grape_vector_db::EmbeddedConfig::builder(2).disk_thresholds_mb(100, 10).build()?;
    /// assert_eq!((c.disk_warning_mb, c.disk_critical_mb), (100, 10));
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn disk_thresholds_mb(mut self, warning: u64, critical: u64) -> Self {
        self.config.disk_warning_mb = warning;
        self.config.disk_critical_mb = critical;
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

    /// Sets how the HNSW search holds vectors (default [`Quantization::None`]).
    ///
    /// ```
    /// use grape_vector_db::{EmbeddedConfig, Quantization};
    /// let c = EmbeddedConfig::builder(384).quantization(Quantization::Sq8).build()?;
    /// assert_eq!(c.quantization, Quantization::Sq8);
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn quantization(mut self, quantization: Quantization) -> Self {
        self.config.quantization = quantization;
        self
    }

    /// Keeps the original vectors on disk, read only to re-score (needs quantization; see
    /// [`EmbeddedConfig::vectors_on_disk`]).
    ///
    /// ```
    /// use grape_vector_db::{EmbeddedConfig, Quantization};
    /// let c = EmbeddedConfig::builder(384)
    ///     .quantization(Quantization::Sq8)
    ///     .vectors_on_disk(true)
    ///     .build()?;
    /// assert!(c.vectors_on_disk);
    /// assert!(EmbeddedConfig::builder(384).vectors_on_disk(true).build().is_err());
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn vectors_on_disk(mut self, on_disk: bool) -> Self {
        self.config.vectors_on_disk = on_disk;
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

/// The HNSW index's parameters (Qdrant's names where they exist).
///
/// ```
/// let c = grape_vector_db::HnswConfig::default();
/// assert_eq!((c.m, c.ef_construction, c.ef), (16, 100, 64));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HnswConfig {
    /// Links per node (twice as many on the bottom layer): more is better recall, more memory.
    pub m: usize,
    /// Candidate list size while inserting: more is a better graph and a slower build.
    pub ef_construction: usize,
    /// Default candidate list size of a search (`params.hnsw_ef` overrides it per query).
    pub ef: usize,
    /// Below this many points every search is exact (a scan is as fast and always right).
    pub full_scan_threshold: usize,
}

impl Default for HnswConfig {
    fn default() -> Self {
        HnswConfig {
            m: 16,
            ef_construction: 100,
            ef: 64,
            full_scan_threshold: 10_000,
        }
    }
}

/// How the HNSW search holds the vectors it walks by.
///
/// With [`Quantization::Sq8`] the graph's vectors are also kept as one byte per dimension
/// (scalar quantization: every component mapped through one range covering the central 99% of
/// the data); a search walks the graph scoring those codes, a quarter of the memory per
/// neighbour, then scores its best candidates again with the original vectors, so the scores
/// it returns are exact and only the choice of candidates is approximate
/// ([`SearchParams::quantization`](crate::SearchParams::quantization) tunes it per query).
/// With [`Quantization::Binary`] they are kept as one bit per dimension (the sign of each
/// component's offset from the nearest of up to 256 centres trained on the data), a 32nd of
/// the `f32` vectors: the roughest
/// estimate, for embeddings of many dimensions (where many points are nearly as close to a
/// query as its nearest, as in tight clusters, it cannot tell them apart). Its
/// walk re-scores the whole beam, so give it a wider one ([`SearchParams::hnsw_ef`](crate::SearchParams::hnsw_ef)):
/// about twice the `f32` beam for the same recall at 384 dimensions, more below.
/// The codes are built from the vectors when the graph is (at open, and as points are
/// indexed); exact searches and scans use the originals. Cosine, Dot and Euclid.
///
/// ```
/// let q: grape_vector_db::Quantization = serde_json::from_str(r#""sq8""#).unwrap();
/// assert_eq!(q, grape_vector_db::Quantization::Sq8);
/// let b: grape_vector_db::Quantization = serde_json::from_str(r#""binary""#).unwrap();
/// assert_eq!(b, grape_vector_db::Quantization::Binary);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Quantization {
    /// The `f32` vectors only.
    #[default]
    None,
    /// Scalar quantization to 8 bits per dimension, with re-scoring.
    Sq8,
    /// Binary quantization to 1 bit per dimension, with re-scoring.
    Binary,
}

/// When an acknowledged write becomes durable.
///
/// With `Sync` and `Batched`, a write that returned `Ok` survives the *process* dying (it is in
/// the operating system's cache, or in a checkpoint); the modes differ on power loss and kernel
/// crashes. A write that returned an I/O error was not applied; after a failed fsync it may still
/// be found in the log on the next open, and the database refuses writes until it is reopened
/// ([`Error::WriterPoisoned`](crate::Error::WriterPoisoned)).
///
/// ```
/// use std::time::Duration;
/// use grape_vector_db::Durability;
/// let d: Durability = serde_json::from_str(r#"{"Batched": {"interval": {"secs": 1, "nanos": 0}}}"#).unwrap();
/// assert_eq!(d, Durability::Batched { interval: Duration::from_secs(1) });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Durability {
    /// Every write is fsynced before it returns: nothing acknowledged is ever lost.
    #[default]
    Sync,
    /// Writes reach the OS at once and are fsynced at least every `interval` by a background
    /// thread: a power loss loses at most the last `interval` of writes.
    Batched {
        /// Longest time an acknowledged write stays un-fsynced.
        interval: Duration,
    },
    /// Writes are buffered in memory and reach the disk on `flush()`, a checkpoint, or when the
    /// handle is dropped; a crash (even of the process) loses what was not flushed.
    OnFlush,
}

/// What opening does with a log that is damaged before its end.
///
/// Power loss can only tear the write in flight, at the log's end, and that tail is always cut
/// off. A record that does not check out, followed by a record written after it had been made
/// durable, is damage (a bad disk, a stray write), and acknowledged writes would be lost by
/// cutting there.
///
/// ```
/// use grape_vector_db::{EmbeddedConfig, LogRecovery};
/// let config = EmbeddedConfig::builder(3).log_recovery(LogRecovery::Salvage).build()?;
/// assert_eq!(config.log_recovery, LogRecovery::Salvage);
/// # Ok::<(), grape_vector_db::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum LogRecovery {
    /// Refuse to open with [`Error::Corrupt`](crate::Error::Corrupt) naming the damaged offset,
    /// changing nothing: restore from a snapshot, or reopen with `Salvage`.
    #[default]
    Strict,
    /// Open with the records before the damage; the damaged record and every record after it
    /// are dropped and cut from the file.
    /// [`OpenReport::wal_damaged_at`](crate::OpenReport::wal_damaged_at) says where.
    Salvage,
}

/// A named dense vector (Qdrant's `VectorParams`): its length and how it is compared. It is
/// indexed and quantized as the database's configuration says for all dense vectors.
///
/// ```
/// use grape_vector_db::{DenseVectorConfig, Distance};
/// let c: DenseVectorConfig = serde_json::from_str(r#"{"size": 3, "distance": "Dot"}"#)?;
/// assert_eq!((c.size, c.distance), (3, Distance::Dot));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DenseVectorConfig {
    /// Length of the vector (Qdrant's `size`).
    pub size: usize,
    /// How the vector is compared.
    pub distance: Distance,
}

/// How a sparse vector is searched (Qdrant's `SparseVectorParams`).
///
/// ```
/// use grape_vector_db::{Modifier, SparseVectorConfig};
/// let c: SparseVectorConfig = serde_json::from_str(r#"{"modifier": "idf"}"#)?;
/// assert_eq!(c.modifier, Modifier::Idf);
/// assert_eq!(SparseVectorConfig::default().modifier, Modifier::None);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SparseVectorConfig {
    /// What a search does to the query's values first.
    pub modifier: Modifier,
    /// Text may stand for this vector: points and queries give it as a document
    /// (`{"text": "..."}`, Qdrant's shape, `"model": "qdrant/bm25"` optional), which the
    /// database turns into a BM25 sparse vector with these parameters ([`Bm25`](crate::Bm25)).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bm25: Option<crate::Bm25Config>,
}

impl SparseVectorConfig {
    /// BM25 built in: text in, with the IDF modifier and Qdrant's default parameters.
    ///
    /// ```
    /// use grape_vector_db::{Modifier, SparseVectorConfig};
    /// let c = SparseVectorConfig::bm25();
    /// assert_eq!((c.modifier, c.bm25.unwrap().k), (Modifier::Idf, 1.2));
    /// ```
    pub fn bm25() -> Self {
        SparseVectorConfig {
            modifier: Modifier::Idf,
            bm25: Some(crate::Bm25Config::default()),
        }
    }
}

/// What a sparse search does to the query's values (Qdrant's `modifier`).
///
/// ```
/// let m: grape_vector_db::Modifier = serde_json::from_str(r#""none""#).unwrap();
/// assert_eq!(m, grape_vector_db::Modifier::None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Modifier {
    /// The values as given.
    #[default]
    None,
    /// Each value times its index's inverse document frequency among the stored vectors,
    /// `ln(1 + (N - n + 0.5) / (n + 0.5))`: what BM25 needs (see [`Bm25`](crate::Bm25)),
    /// kept current as points come and go.
    Idf,
}

/// What the engine holds and how it may grow: the engine's part of an [`EmbeddedConfig`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EngineConfig {
    pub dimension: usize,
    pub distance: Distance,
    pub max_points: Option<usize>,
    pub max_search_limit: usize,
    /// The HNSW index, or `None` for exact search only.
    pub hnsw: Option<HnswConfig>,
    /// How the graph search holds vectors.
    pub quantization: Quantization,
    /// Whether the segment's vectors are read on demand rather than through its mapping.
    pub vectors_on_disk: bool,
    /// Payload keys with a value -> slots index.
    pub payload_indexes: Vec<KeyPath>,
    /// Sparse vectors by name.
    pub sparse_vectors: BTreeMap<String, SparseVectorConfig>,
    /// Named dense vectors, beside the unnamed one.
    pub named_vectors: BTreeMap<String, DenseVectorConfig>,
}

impl EmbeddedConfig {
    /// The engine's part of the configuration.
    pub(crate) fn engine_config(&self) -> EngineConfig {
        EngineConfig {
            dimension: self.dimension,
            distance: self.distance,
            max_points: self.max_points,
            max_search_limit: self.max_search_limit,
            hnsw: self.hnsw,
            quantization: self.quantization,
            vectors_on_disk: self.vectors_on_disk,
            payload_indexes: self
                .payload_indexes
                .iter()
                .filter_map(|k| k.parse().ok())
                .collect(),
            sparse_vectors: self.sparse_vectors.clone(),
            named_vectors: self.named_vectors.clone(),
        }
    }
}
