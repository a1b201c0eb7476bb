//! The database's life seen from the handle: its state, uptime and shutdown hooks (kept by the
//! [`LifecycleManager`]), and the graceful close.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use super::EmbeddedVectorDB;
use crate::clock::Instant;
use crate::engine::Engine;
use crate::error::Result;
use crate::lifecycle::{DatabaseState, LifecycleManager, ShutdownReport};
use crate::persist::DatabaseFiles;

impl EmbeddedVectorDB {
    /// The lifecycle of this database: state, uptime, calls in flight, the startup and
    /// shutdown reports, and the shutdown hooks.
    ///
    /// ```
    /// use grape_vector_db::{DatabaseState, EmbeddedConfig, EmbeddedVectorDB};
    /// let db = EmbeddedVectorDB::open(EmbeddedConfig::builder(2).build()?)?;
    /// let life = db.lifecycle();
    /// assert_eq!(life.state(), DatabaseState::Ready);
    /// assert!(life.startup().total >= life.startup().wal_replay);
    /// db.close()?;
    /// assert_eq!(life.state(), DatabaseState::Closed);
    /// assert!(life.shutdown_report().is_some());
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn lifecycle(&self) -> &LifecycleManager {
        &self.inner.life
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
        self.inner.life.on_shutdown(hook)
    }

    /// Closes the database gracefully: refuses new calls, waits for the calls in flight (up to
    /// `shutdown_timeout`), flushes the log, writes a checkpoint if `checkpoint_on_close` (or
    /// when the log has grown to 1/32 of the segment and at least 1 MiB), runs
    /// the shutdown hooks and releases the directory lock and the memory. Every handle then
    /// answers [`Error::Closed`](crate::Error::Closed).
    ///
    /// If calls are still running after `shutdown_timeout`, it fails with
    /// [`Error::ShutdownTimeout`](crate::Error::ShutdownTimeout) naming them; the database stays `Shutting` and `close` can be
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
        let _closing = life.begin_close()?;
        let mut report = ShutdownReport {
            operations_drained: life.drain(self.inner.config.shutdown_timeout)?,
            drain: start.elapsed(),
            ..ShutdownReport::default()
        };
        // Shutting: the indexer stops at its next chunk (it takes the files' lock taken below).
        self.inner.join_indexer();
        let mut files = self.inner.files.lock();
        if let Some(f) = files.as_mut() {
            self.flush_for_close(f, &mut report)?;
        }
        let phase = Instant::now();
        report.hook_errors = life.run_hooks();
        report.hooks = phase.elapsed();
        // Release the lock (dropping the files) and the memory (mapped files included).
        *files = None;
        *self.inner.engine.write() = Engine::new(self.inner.config.engine_config());
        report.total = start.elapsed();
        life.closed(report.clone());
        Ok(report)
    }

    /// The close's flush, and its checkpoint when `checkpoint_on_close` asks for one or the
    /// log is long enough that the next open would spend longer indexing it again.
    fn flush_for_close(
        &self,
        files: &mut DatabaseFiles,
        report: &mut ShutdownReport,
    ) -> Result<()> {
        let phase = Instant::now();
        let synced_before = self.inner.io.wal_bytes_synced.load(Relaxed);
        files.flush()?;
        report.bytes_flushed = self.inner.io.wal_bytes_synced.load(Relaxed) - synced_before;
        report.flush = phase.elapsed();
        let phase = Instant::now();
        if self.inner.config.checkpoint_on_close {
            files.checkpoint(&self.lock_for_export())?;
            report.checkpoint = Some(phase.elapsed());
        } else if files.checkpoint_pays_at_close() {
            // Not asked for: a failure leaves the log (already durable) to the next open.
            if files.auto_checkpoint(&self.lock_for_export()).is_ok() {
                report.checkpoint = Some(phase.elapsed());
            }
        }
        Ok(())
    }
}
