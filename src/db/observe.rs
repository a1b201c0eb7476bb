//! What the database can tell about itself: stats, metrics and health.

use std::sync::atomic::Ordering::Relaxed;

use super::{EmbeddedVectorDB, Inner};
use crate::clock::Instant;
use crate::health::{self, CheckStatus, HealthChecker, HealthStatus};
use crate::lifecycle::{DatabaseState, OpKind};
use crate::metrics::{DatabaseFigures, Metrics};
use crate::stats::DatabaseStats;

impl EmbeddedVectorDB {
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
            unindexed: engine.unindexed(),
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
            Ok(_in_flight) => self.inner.run_health_checks(),
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
        self.inner.health.last()
    }

    /// The health checker of this database: the checks, their thresholds and their schedule
    /// (see [`HealthChecker`]).
    ///
    /// ```
    /// use grape_vector_db::{EmbeddedConfig, EmbeddedVectorDB};
    /// let db = EmbeddedVectorDB::open(EmbeddedConfig::builder(2).max_memory_mb(64).build()?)?;
    /// assert_eq!(db.health_checker().thresholds().max_memory_mb, Some(64));
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn health_checker(&self) -> &HealthChecker {
        &self.inner.health
    }
}

impl Inner {
    /// Runs the checks, each under the lock it needs and only for its own duration: the
    /// files' mutex for storage and disk, the engine's read lock for the engine and memory.
    pub(super) fn run_health_checks(&self) -> HealthStatus {
        let checker = &self.health;
        let [storage, disk] = checker.check_files(self.files.lock().as_ref(), &self.location);
        let [engine, memory] = checker.check_engine(&self.engine.read());
        HealthStatus::new(vec![storage, engine, memory, disk], self.life.uptime())
    }
}
