//! Writes: upsert, set_payload and delete, and the write path they share (check, log, apply,
//! index in chunks, checkpoint when the log is long).
//!
//! Lock order: the files' mutex first, then the engine's lock. Holding the files' mutex for the
//! whole write keeps the log in the order the engine changed; the engine's lock is upgradable so
//! searches keep running while a write checks its request and logs it.

use std::sync::atomic::Ordering::Relaxed;

use parking_lot::{RwLockReadGuard, RwLockUpgradableReadGuard, RwLockWriteGuard};

use super::{collect_ids, EmbeddedVectorDB, Inner};
use crate::engine::{Engine, UpsertSummary};
use crate::error::{Error, Result};
use crate::filter::Filter;
use crate::lifecycle::{DatabaseState, OpKind};
use crate::persist::wal::WalOp;
use crate::persist::{apply, Applied};
use crate::point::{Point, PointId};

/// Points inserted into the graph per hold of the write lock (tens of milliseconds).
pub(super) const INDEX_CHUNK: usize = 256;

/// Bytes of vectors in one upsert from which the allocator's free pages are handed back to
/// the system after it (see [`return_free_memory`]): a batch this large has freed at least as
/// much, and the hand-back (tens of milliseconds for hundreds of MiB) is small beside it.
const RETURN_MEMORY_AFTER: usize = 16 << 20;

/// Hands the allocator's free pages back to the system. glibc keeps memory freed in the middle
/// of its heap resident until told (it returns only the top of the heap by itself), so after
/// one large upsert the caller's freed vectors stayed resident: WordNet's 100K x 384 points in
/// one batch left 394 MiB resident for 185 MiB held, 243 MiB after this. Other allocators
/// return such memory themselves, and WebAssembly memory never shrinks.
pub(super) fn return_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim has no preconditions and is thread-safe (it takes each arena's lock
    // in turn); it only releases pages no allocation uses. Exercised by tests/memory.rs.
    unsafe {
        libc::malloc_trim(0);
    }
}

impl Inner {
    /// Inserts up to `max` points still outside the graph (a log replayed at open) into it,
    /// holding the locks as a write does; returns how many remain, or `None` once the database
    /// is closing (or closed, and its engine emptied) or its vectors on disk cannot be read.
    pub(super) fn index_replayed(&self, max: usize) -> Option<usize> {
        let closing = || {
            matches!(
                self.life.state(),
                DatabaseState::Shutting | DatabaseState::Closed
            )
        };
        if closing() {
            return None;
        }
        let files = self.files.lock();
        if closing() {
            return None;
        }
        // A failed read of vectors kept on disk stops the background work too: the next
        // write retries, and searches meanwhile scan the rest exactly.
        let remaining = self.engine.write().index_pending_up_to(max).ok();
        drop(files);
        remaining
    }

    /// Builds the payload indexes not built yet, under the read lock (searches continue);
    /// nothing once the database is closing.
    pub(super) fn build_payload_indexes(&self) {
        let engine = self.engine.read();
        if !matches!(
            self.life.state(),
            DatabaseState::Shutting | DatabaseState::Closed
        ) {
            engine.build_payload_indexes();
        }
    }
}

impl EmbeddedVectorDB {
    /// Whether points wait outside the graph or payload indexes are not built (after an open
    /// without warmup): work for the background indexer.
    pub(crate) fn has_background_work(&self) -> bool {
        self.inner.engine.read().background_work()
    }

    /// [`Inner::index_replayed`], for the browser's indexer (it runs in the page's idle time).
    #[cfg(target_arch = "wasm32")]
    pub(crate) fn index_replayed(&self, max: usize) -> Option<usize> {
        self.inner.index_replayed(max)
    }

    /// [`Inner::build_payload_indexes`], for the browser's indexer.
    #[cfg(target_arch = "wasm32")]
    pub(crate) fn build_payload_indexes(&self) {
        self.inner.build_payload_indexes()
    }

    /// Marks the database `Busy` while the browser's indexer has work (from `Ready` only);
    /// whether it did.
    #[cfg(target_arch = "wasm32")]
    pub(crate) fn begin_indexing(&self) -> bool {
        self.inner.life.begin_busy()
    }

    /// `Ready` again once the indexer that [`EmbeddedVectorDB::begin_indexing`] marked is done.
    #[cfg(target_arch = "wasm32")]
    pub(crate) fn end_indexing(&self) {
        self.inner.life.end_busy()
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
            let vector_bytes: usize = points.iter().map(|p| p.vector.len() * 4).sum();
            let applied = self.write(|engine| {
                let mut points = points;
                engine.embed_documents(&mut points)?;
                engine.validate_upsert(&points)?;
                self.check_memory_budget(engine, &points)?;
                Ok(Some(WalOp::Upsert(points)))
            })?;
            if vector_bytes >= RETURN_MEMORY_AFTER {
                return_free_memory();
            }
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
        let mut files = self.inner.files.lock();
        let engine = self.inner.engine.upgradable_read();
        let Some(op) = prepare(&engine)? else {
            return Ok(Applied::Nothing);
        };
        if let Some(files) = files.as_mut() {
            files.log(&op)?;
        }
        let mut engine = RwLockUpgradableReadGuard::upgrade(engine);
        let applied = apply(&mut engine, op);
        drop(engine);
        match files.as_mut().filter(|f| f.wants_checkpoint()) {
            // The write is already durable in the log; a failed automatic checkpoint is retried
            // later (after the log grows further) and reported by an explicit `checkpoint()`.
            Some(files) => {
                if files.auto_checkpoint(&self.lock_for_export()).is_ok() {
                    self.rebase_onto_segment(files);
                }
            }
            None => drop(self.lock_indexed()),
        }
        Ok(applied)
    }

    /// The write guard once every point is in the graph. New points are searchable at once
    /// (scanned exactly as the unindexed tail); they are inserted into the graph a chunk per
    /// hold of the lock, so that a bulk load or a graph rebuild never stops searches for long.
    /// Call with the files' mutex held: writers stay serialised.
    pub(super) fn lock_indexed(&self) -> RwLockWriteGuard<'_, Engine> {
        let mut busy = None;
        loop {
            let mut engine = self.inner.engine.write();
            // A failed read leaves the rest unindexed (scanned exactly) rather than looping.
            if !matches!(engine.index_pending_up_to(INDEX_CHUNK), Ok(n) if n > 0) {
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
    /// Call with the files' mutex held.
    pub(super) fn lock_for_export(&self) -> RwLockReadGuard<'_, Engine> {
        let mut engine = self.lock_indexed();
        if engine.export_wants_compaction() {
            // Optional: a failed read of vectors kept on disk leaves the tombstones, and the
            // export, which reads them too, reports it.
            let _ = engine.compact();
            drop(engine);
            engine = self.lock_indexed();
        }
        RwLockWriteGuard::downgrade(engine)
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
}
