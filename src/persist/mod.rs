//! Durability: the write-ahead log, segments, the manifest, checkpoints and recovery.
//!
//! This layer knows only the [`Storage`] trait, so the same code runs on native files, in memory,
//! on OPFS and on IndexedDB. A database directory holds:
//!
//! - `MANIFEST`: the dimension, distance and current generation `g` (replaced atomically);
//! - `seg-<g>.seg`: a checkpoint of every live point (absent before the first checkpoint);
//! - `wal-<g>.log`: the changes since that checkpoint.
//!
//! Opening maps the segment, replays the log up to its first torn or damaged record and cuts the
//! tail there. A checkpoint writes `seg-<g+1>` and an empty `wal-<g+1>`, then swaps the manifest:
//! that rename is the commit point, so a crash at any moment leaves either the old or the new
//! generation complete. FORMAT.md documents every byte.
//!
//! The files of this module, by job: `mod.rs` ([`DatabaseFiles`]: the open files of one
//! database, logging, checkpoints, snapshots), `open.rs` (opening and recovery), `generation.rs`
//! (staging a generation, which names are ours, clearing stale files), `inspect.rs` (what a
//! storage holds, read without opening it), `wal.rs` (the log),
//! `segment.rs` (checkpoint segments), `manifest.rs`, `codec.rs` (the byte encoding they share)
//! and `archive.rs` (a database packed into one byte string).

#[cfg(target_endian = "big")]
compile_error!(
    "the file formats are little-endian and read in place; big-endian targets are not supported"
);

pub(crate) mod archive;
pub(crate) mod codec;
pub(crate) mod manifest;
pub(crate) mod segment;
pub(crate) mod wal;

mod generation;
mod inspect;
mod open;

pub(crate) use generation::{destroy, is_database_file};

/// The file a health probe writes; it ends in `.tmp`, so an open after a crash mid-probe
/// removes it.
const HEALTH_PROBE: &str = "health-probe.tmp";
pub use inspect::{StoredDatabase, StoredFile};

use crate::storage::OpenMode;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::config::{Durability, EngineConfig, LogRecovery};
use crate::engine::{Engine, UpsertSummary};
use crate::error::{Error, Result};
use crate::lifecycle::StartupReport;
use crate::metrics::IoCounters;
use crate::storage::{io_error, Storage, StorageSpace};
use generation::{remove_generation, stage_generation, Staged};
use manifest::Manifest;
use wal::{WalOp, WalWriter};

/// What opening found and did.
///
/// ```
/// use grape_vector_db::{EmbeddedConfig, EmbeddedVectorDB};
/// let db = EmbeddedVectorDB::open(EmbeddedConfig::builder(2).build()?)?;
/// assert_eq!(db.open_report().wal_records_replayed, 0);
/// # Ok::<(), grape_vector_db::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct OpenReport {
    /// Whether the database was created by this open.
    pub created: bool,
    /// Points loaded from the checkpoint segment.
    pub segment_points: usize,
    /// Log records replayed on top of it.
    pub wal_records_replayed: usize,
    /// Bytes of a torn or damaged log tail that were cut off (writes that were never
    /// acknowledged, or damage after the last good record).
    pub wal_bytes_truncated: u64,
    /// Where the log was found damaged and cut, with [`LogRecovery::Salvage`] (the records
    /// from there on were dropped).
    pub wal_damaged_at: Option<u64>,
    /// How long each phase of the open took.
    pub startup: StartupReport,
}

/// A log shorter than this is replayed at the next open rather than checkpointed at close:
/// replaying it takes milliseconds.
const CLOSE_CHECKPOINT_LOG: u64 = 1 << 20;

/// `close` checkpoints when the log is at least this fraction of the segment (inverted): at
/// 1/32, rewriting a 150 MiB segment (100K x 384) saves indexing ~3K points at the next open.
const CLOSE_CHECKPOINT_SHARE: u64 = 32;

/// How the log is written, and where its counters go.
pub(crate) struct FileOptions {
    pub durability: Durability,
    pub checkpoint_bytes: u64,
    pub log_recovery: LogRecovery,
    pub io: Arc<IoCounters>,
}

/// An open database directory: the lock, the manifest and the log writer.
pub(crate) struct DatabaseFiles {
    storage: Arc<dyn Storage>,
    manifest: Manifest,
    wal: WalWriter,
    next_seq: u64,
    durability: Durability,
    checkpoint_bytes: u64,
    /// Log size at which the next automatic checkpoint is tried (pushed back after a failure,
    /// so a full disk does not make every write attempt a checkpoint).
    auto_checkpoint_at: u64,
    io: Arc<IoCounters>,
    // Dropped last: the lock outlives every file handle above.
    _lock: Box<dyn Send + Sync>,
}

impl DatabaseFiles {
    /// Appends `op` to the log with the configured durability. On error nothing was logged
    /// (or, after a failed fsync, the writer refuses further writes until reopened).
    pub fn log(&mut self, op: &WalOp) -> Result<()> {
        match self.durability {
            Durability::OnFlush => self.wal.append_buffered(self.next_seq, op)?,
            Durability::Sync => {
                self.wal.append(self.next_seq, op)?;
                self.wal.sync()?;
            }
            Durability::Batched { .. } => self.wal.append(self.next_seq, op)?,
        }
        self.next_seq += 1;
        Ok(())
    }

    /// Makes every acknowledged write durable.
    pub fn flush(&mut self) -> Result<()> {
        self.wal.sync()
    }

    /// Checks that the storage accepts writes: the log writer is usable, and a probe file can be
    /// written, read back identical, synced and removed. Returns what failed.
    pub fn probe(&self) -> std::result::Result<(), String> {
        if let Some(why) = self.wal.poisoned() {
            return Err(format!("the write-ahead log refuses writes: {why}"));
        }
        let pattern: Vec<u8> = (0..4096u32).map(|i| (i * 31 % 251) as u8).collect();
        let result = (|| -> std::io::Result<()> {
            let file = self.storage.open(HEALTH_PROBE, OpenMode::CreateIfMissing)?;
            file.set_len(0)?;
            file.write_at(0, &pattern)?;
            file.sync()?;
            let mut back = vec![0u8; pattern.len()];
            file.read_at(0, &mut back)?;
            if back != pattern {
                return Err(std::io::Error::other("read back different bytes"));
            }
            Ok(())
        })();
        let removed = self.storage.remove(HEALTH_PROBE);
        match (result, removed) {
            (Ok(()), Ok(())) => Ok(()),
            (Err(e), _) | (Ok(()), Err(e)) => Err(format!(
                "probe write to {} failed: {e}",
                self.storage.location()
            )),
        }
    }

    /// Free and total space where the database lives, if the backend knows.
    pub fn space(&self) -> std::io::Result<Option<StorageSpace>> {
        self.storage.space()
    }

    /// Whether the log has grown past the automatic checkpoint threshold.
    pub fn wants_checkpoint(&self) -> bool {
        self.wal.size() > self.auto_checkpoint_at
    }

    /// Whether `close` should checkpoint although not asked to: the log holds at least
    /// [`CLOSE_CHECKPOINT_LOG`] bytes and at least 1/[`CLOSE_CHECKPOINT_SHARE`] of the
    /// segment's. The next open would replay the log and insert its points into the graph
    /// again (hundreds of distance computations each, at every open until a checkpoint), while
    /// the checkpoint writes each byte of the segment once.
    pub fn checkpoint_pays_at_close(&self) -> bool {
        let log = self.wal.size();
        let segment = self.io.segment_size.load(Relaxed);
        log >= CLOSE_CHECKPOINT_LOG && log.saturating_mul(CLOSE_CHECKPOINT_SHARE) >= segment
    }

    /// A checkpoint triggered by the log's size; after a failure the next attempt waits until
    /// the log has grown by half the threshold again.
    pub fn auto_checkpoint(&mut self, engine: &Engine) -> Result<()> {
        let result = self.checkpoint(engine);
        if result.is_err() {
            self.auto_checkpoint_at = self.wal.size() + self.checkpoint_bytes / 2;
        }
        result
    }

    /// Writes the engine's state as the next generation and switches to it.
    ///
    /// Before the commit point (the manifest's rename), a failure leaves the current generation
    /// in effect and removes what was written. A failure of the rename or of the directory sync
    /// after it leaves the disk naming either generation, both complete: the writer is then
    /// poisoned (writes are refused until reopening), since a write logged to either log could
    /// be lost with the other. After the commit nothing can fail.
    pub fn checkpoint(&mut self, engine: &Engine) -> Result<()> {
        if let Some(why) = self.wal.poisoned() {
            return Err(Error::WriterPoisoned(why.to_owned()));
        }
        let next = Manifest {
            generation: self.manifest.generation + 1,
            has_segment: true,
            ..self.manifest.clone()
        };
        let staged = stage_generation(&*self.storage, Some((engine, self.last_seq())), &next);
        let staged = match staged {
            Ok(staged) => staged,
            Err(e) => {
                remove_generation(&*self.storage, next.generation);
                self.io.checkpoints_failed.fetch_add(1, Relaxed);
                return Err(e);
            }
        };
        if let Err(e) = Manifest::commit(&*self.storage) {
            self.wal
                .poison(format!("a checkpoint could not be committed: {e}"));
            self.io.checkpoints_failed.fetch_add(1, Relaxed);
            return Err(e);
        }
        // Committed: the new generation is the database.
        self.auto_checkpoint_at = self.checkpoint_bytes;
        self.io.checkpoints.fetch_add(1, Relaxed);
        let Staged {
            log,
            format,
            segment_bytes,
        } = staged;
        self.io
            .segment_bytes_written
            .fetch_add(segment_bytes, Relaxed);
        self.io.segment_size.store(segment_bytes, Relaxed);
        let wal_name = wal::file_name(next.generation);
        let end = format.header_bytes();
        let old = std::mem::replace(
            &mut self.wal,
            WalWriter::new(log, wal_name, format, end, self.io.clone()),
        );
        let old_seg = segment::file_name(self.manifest.generation);
        self.manifest = next;
        // Best effort: a failure leaves stale files that the next open removes.
        let _ = self.storage.remove(old.name());
        let _ = self.storage.remove(&old_seg);
        let _ = self.storage.sync_dir();
        Ok(())
    }

    /// An engine over the current generation's segment, as an open with an empty log builds
    /// it. Right after a checkpoint (the caller holding these files, so no write came since)
    /// that is the state the checkpoint wrote.
    pub fn engine_from_segment(&self, config: EngineConfig) -> Result<Engine> {
        let name = segment::file_name(self.manifest.generation);
        let stride = crate::engine::stride_for(config.dimension);
        let (dim, distance, on_disk) = (config.dimension, config.distance, config.vectors_on_disk);
        let seg = segment::read(&*self.storage, &name, dim, stride, distance, on_disk)?;
        Engine::from_image(config, seg)
    }

    /// Writes a consistent copy of the engine's state into the empty directory `dest`; on
    /// failure, what it wrote is removed.
    pub fn snapshot(engine: &Engine, last_seq: u64, dest: &dyn Storage) -> Result<()> {
        let _lock = lock_empty(dest, "snapshot")?;
        let config = engine.config();
        let manifest = Manifest {
            dimension: config.dimension,
            distance: config.distance,
            generation: 1,
            has_segment: true,
            sparse: config.sparse_vectors.clone(),
            named: config.named_vectors.clone(),
        };
        let written = stage_generation(dest, Some((engine, last_seq)), &manifest)
            .and_then(|_| Manifest::commit(dest));
        if written.is_err() {
            // Nothing of it is a database yet, unless the commit's rename landed: then the
            // copy is complete but not known durable; remove it all the same.
            remove_generation(dest, manifest.generation);
            let _ = dest.remove(manifest::NAME);
            let _ = dest.sync_dir();
        }
        written
    }

    /// Sequence number of the last logged write.
    pub fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }
}

/// What applying a write did.
pub(crate) enum Applied {
    Nothing,
    Upserted(UpsertSummary),
    Deleted(usize),
    PayloadSet,
}

/// Applies a logged write to the engine: the one place where a [`WalOp`] changes state, for live
/// writes and for replay alike. Upserts must have been validated.
pub(crate) fn apply(engine: &mut Engine, op: WalOp) -> Applied {
    match op {
        WalOp::Upsert(points) => Applied::Upserted(engine.apply_upsert(points)),
        WalOp::Delete(ids) => Applied::Deleted(engine.delete(&ids)),
        WalOp::SetPayload(ids, payload) => {
            engine.apply_set_payload(&ids, &payload);
            Applied::PayloadSet
        }
    }
}

/// Takes the lock of `dest`, the destination of a `what` (a snapshot, an import), and checks
/// that it holds no file (`Error::InvalidArgument` otherwise): a copy never mixes with
/// another database.
pub(crate) fn lock_empty(dest: &dyn Storage, what: &str) -> Result<Box<dyn Send + Sync>> {
    let lock = dest.lock()?;
    let names = dest.list().map_err(io_error("list", &dest.location()))?;
    if !names.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "{what} destination {} is not empty",
            dest.location()
        )));
    }
    Ok(lock)
}
