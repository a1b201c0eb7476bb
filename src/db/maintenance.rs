//! Maintenance: flush, checkpoint and compact, and copies of the whole database (snapshots into
//! a directory or any storage, archives as one byte string).

use super::threads::engine_parallel_map;
use super::write::return_free_memory;
use super::EmbeddedVectorDB;
use crate::error::Result;
use crate::lifecycle::OpKind;
use crate::persist::DatabaseFiles;
use crate::storage::Storage;

impl EmbeddedVectorDB {
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
            let mut files = self.inner.files.lock();
            let _busy = self.inner.life.busy();
            self.inner.engine.write().compact()?;
            let engine = self.lock_for_export();
            match files.as_mut() {
                Some(files) => {
                    files.checkpoint(&engine)?;
                    drop(engine);
                    self.rebase_onto_segment(files);
                    Ok(())
                }
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
            let mut files = self.inner.files.lock();
            let _busy = self.inner.life.busy();
            match files.as_mut() {
                Some(files) => {
                    files.checkpoint(&self.lock_for_export())?;
                    self.rebase_onto_segment(files);
                    Ok(())
                }
                None => Ok(()),
            }
        })
    }

    /// After a checkpoint, with vectors kept on disk: swaps the engine for one over the
    /// segment just written, as a reopen would build it, so that the vectors written since
    /// open leave memory for the file (read only to re-score). The caller holds `files`, so no
    /// write came in between; searches run on the old engine until the swap. A failure (the
    /// new segment unreadable) keeps the old engine, which is whole: only memory is lost.
    pub(super) fn rebase_onto_segment(&self, files: &DatabaseFiles) {
        if !self.inner.config.vectors_on_disk {
            return;
        }
        let Ok(mut fresh) = files.engine_from_segment(self.inner.config.engine_config()) else {
            return;
        };
        fresh.set_parallel_map(engine_parallel_map(self.inner.threads));
        fresh.set_deferred_indexing(true);
        let old = std::mem::replace(&mut *self.inner.engine.write(), fresh);
        // Freed outside the lock, and handed back: the old engine held every vector written
        // since open.
        drop(old);
        return_free_memory();
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
        self.call(OpKind::Flush, || match self.inner.files.lock().as_mut() {
            Some(files) => files.flush(),
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

    /// Like `snapshot` (natively, into a directory), into any storage backend.
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
            let files = self.inner.files.lock();
            let _busy = self.inner.life.busy();
            let engine = self.lock_for_export();
            let last_seq = files.as_ref().map_or(0, DatabaseFiles::last_seq);
            DatabaseFiles::snapshot(&engine, last_seq, dest)
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
        let mut archive = Vec::new();
        self.pack_snapshot(&mut archive)?;
        Ok(archive)
    }

    /// Writes the archive of [`EmbeddedVectorDB::export_archive`] to `out` (a file, a socket)
    /// file by file, in pieces of a megabyte, rather than as one byte string: for a database
    /// of gigabytes. The snapshot is taken in memory first.
    ///
    /// ```
    /// use grape_vector_db::{EmbeddedConfig, EmbeddedVectorDB, Point};
    /// let db = EmbeddedVectorDB::open(EmbeddedConfig::builder(2).build()?)?;
    /// db.upsert(vec![Point::new(7, vec![1.0, 0.5])])?;
    /// let mut out = Vec::new();
    /// db.export_archive_to(&mut out)?; // a `File`, natively
    /// assert!(out.starts_with(b"GRAPEPAK"));
    /// assert_eq!(out.len(), db.export_archive()?.len());
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn export_archive_to(&self, out: &mut dyn std::io::Write) -> Result<()> {
        self.pack_snapshot(out)
    }

    /// A snapshot in memory, packed into `out`. Generic, so that `export_archive` (the
    /// browser's `exportBytes`) packs into its `Vec` without the machinery of `dyn Write`.
    fn pack_snapshot<W: std::io::Write + ?Sized>(&self, out: &mut W) -> Result<()> {
        let copy = crate::storage::MemoryStorage::new();
        self.snapshot_to(&copy)?;
        crate::persist::archive::pack(&copy, out)
    }

    /// Writes the database packed by [`EmbeddedVectorDB::export_archive`] into the empty
    /// `dest`; then open `dest`. A damaged archive is refused (`Error::Corrupt`) and leaves
    /// nothing in `dest`.
    ///
    /// ```
    /// use grape_vector_db::{EmbeddedVectorDB, Error, storage::MemoryStorage};
    /// let err = EmbeddedVectorDB::import_archive(b"not an archive", &MemoryStorage::new());
    /// assert!(matches!(err, Err(Error::Corrupt { .. })));
    /// ```
    pub fn import_archive(archive: &[u8], dest: &dyn Storage) -> Result<()> {
        crate::persist::archive::unpack(archive, dest)
    }

    /// [`EmbeddedVectorDB::import_archive`] reading the archive from `source` (a file, a
    /// download) a megabyte at a time, so that it is never whole in memory. Each file is
    /// written as its bytes arrive and takes its name only once the archive's checksum holds:
    /// a damaged, truncated or failed import leaves nothing in `dest`.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use grape_vector_db::{EmbeddedConfig, EmbeddedVectorDB, Point, storage::MemoryStorage};
    /// let db = EmbeddedVectorDB::open(EmbeddedConfig::builder(2).build()?)?;
    /// db.upsert(vec![Point::new(7, vec![1.0, 0.5])])?;
    /// let mut file = Vec::new(); // any `std::io::Write`, such as a `File`
    /// db.export_archive_to(&mut file)?;
    /// let dest = MemoryStorage::new();
    /// EmbeddedVectorDB::import_archive_from(&mut file.as_slice(), &dest)?;
    /// let copy = EmbeddedVectorDB::open_with_storage(db.config().clone(), Arc::new(dest))?;
    /// assert_eq!(copy.count(None)?, 1);
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn import_archive_from(source: &mut dyn std::io::Read, dest: &dyn Storage) -> Result<()> {
        let mut unpacker = crate::persist::archive::Unpacker::new(dest)?;
        let mut piece = vec![0; 1 << 20];
        loop {
            let n = match source.read(&mut piece) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(crate::storage::io_error("read", "the archive")(e)),
            };
            unpacker.push(&piece[..n])?;
        }
        unpacker.finish()
    }
}
