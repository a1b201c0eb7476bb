//! Opening: in a directory, in any storage backend or in memory; replaying the files, warming
//! up, then starting the background threads.

use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use super::threads::{build_threads, engine_parallel_map};
use super::{EmbeddedVectorDB, Inner};
use crate::config::EmbeddedConfig;
use crate::engine::Engine;
use crate::error::Result;
use crate::health::HealthChecker;
use crate::lifecycle::{DatabaseState, LifecycleManager, StartupClock};
use crate::metrics::{IoCounters, MetricsCollector};
use crate::persist::{DatabaseFiles, FileOptions, OpenReport};
use crate::storage::Storage;

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
            Some(_) => Err(crate::Error::InvalidConfig(
                "data_dir needs a native file system; in the browser use the JS API's storage \
                 option"
                    .to_owned(),
            )),
            None => Self::start(config, None),
        }
    }

    /// Deletes the database in directory `dir`: its files, then the directory unless other
    /// files are in it (those stay, so a mistaken path loses nothing but a database). It must
    /// not be open in any process ([`Error::AlreadyOpen`](crate::Error::AlreadyOpen)); a
    /// missing directory is nothing to delete. The JS package's `GrapeDB.destroy` does the same
    /// in Node.
    ///
    /// ```
    /// use grape_vector_db::{EmbeddedConfig, EmbeddedVectorDB, Error, Point};
    /// let dir = std::env::temp_dir().join(format!("grape-doc-destroy-{}", std::process::id()));
    /// let db = EmbeddedVectorDB::open(EmbeddedConfig::builder(2).data_dir(&dir).build()?)?;
    /// db.upsert(vec![Point::new(1, vec![1.0, 0.0])])?;
    /// assert!(matches!(EmbeddedVectorDB::destroy(&dir), Err(Error::AlreadyOpen(_))));
    /// drop(db);
    /// EmbeddedVectorDB::destroy(&dir)?;
    /// assert!(!dir.exists());
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    #[cfg(not(target_arch = "wasm32"))]
    pub fn destroy(dir: impl AsRef<std::path::Path>) -> Result<()> {
        let dir = dir.as_ref();
        if !dir.exists() {
            return Ok(());
        }
        crate::persist::destroy(&crate::storage::FsStorage::create(dir)?)?;
        // Refused when other files are in it: they stay, and the directory with them.
        let _ = std::fs::remove_dir(dir);
        Ok(())
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

    /// Deletes the database kept in `storage` (any backend of the storage trait), as
    /// `EmbeddedVectorDB::destroy` does a directory's natively: under the storage's lock, so
    /// an open database is refused with `AlreadyOpen`; files the database does not write stay.
    /// A destroy cut short by a crash leaves the whole database, or one an open refuses as
    /// `Corrupt` until it is destroyed again, or nothing.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use grape_vector_db::{EmbeddedConfig, EmbeddedVectorDB, Point, storage::MemoryStorage};
    /// let storage = MemoryStorage::new();
    /// let config = EmbeddedConfig::builder(1).build()?;
    /// let db = EmbeddedVectorDB::open_with_storage(config.clone(), Arc::new(storage.clone()))?;
    /// db.upsert(vec![Point::new(1, vec![1.0])])?;
    /// drop(db);
    /// EmbeddedVectorDB::destroy_with_storage(&storage)?;
    /// let again = EmbeddedVectorDB::open_with_storage(config, Arc::new(storage))?;
    /// assert_eq!(again.count(None)?, 0);
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn destroy_with_storage(storage: &dyn Storage) -> Result<()> {
        crate::persist::destroy(storage)
    }

    /// Opens (reading `storage` if any), warms up if configured, and reports `Ready`.
    fn start(config: EmbeddedConfig, storage: Option<Arc<dyn Storage>>) -> Result<Self> {
        let mut clock = StartupClock::new(config.startup_timeout);
        let io = Arc::new(IoCounters::default());
        let location = storage
            .as_ref()
            .map_or_else(|| "memory".to_owned(), |s| s.location());
        let (files, mut engine, mut report) = match storage {
            Some(storage) => {
                let (files, engine, report) = DatabaseFiles::open(
                    storage,
                    config.engine_config(),
                    file_options(&config, &io),
                    &mut clock,
                )?;
                (Some(files), engine, report)
            }
            None => (
                None,
                Engine::new(config.engine_config()),
                OpenReport::default(),
            ),
        };
        let threads = build_threads(config.thread_pool_size);
        engine.set_parallel_map(engine_parallel_map(threads));
        if config.enable_warmup {
            engine.warm_up();
            clock.report.warmup = clock.lap("warmup")?;
        }
        // `write` indexes new points itself, a chunk at a time.
        engine.set_deferred_indexing(true);
        report.startup = clock.finish();
        let db = EmbeddedVectorDB::new(Inner {
            files: Mutex::new(files),
            engine: RwLock::new(engine),
            life: LifecycleManager::new(report.startup),
            report,
            metrics: MetricsCollector::new(),
            io,
            threads,
            location,
            health: HealthChecker::new(&config),
            indexer: Mutex::new(None),
            config,
        });
        db.inner.life.set_state(DatabaseState::Ready);
        // After `Ready`: the indexer marks the database `Busy` while it works.
        db.spawn_background();
        Ok(db)
    }
}

/// The files' part of the configuration, counting their I/O into `io`.
fn file_options(config: &EmbeddedConfig, io: &Arc<IoCounters>) -> FileOptions {
    FileOptions {
        durability: config.durability,
        checkpoint_bytes: config.checkpoint_wal_bytes,
        log_recovery: config.log_recovery,
        io: io.clone(),
    }
}
