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

#[cfg(target_endian = "big")]
compile_error!(
    "the file formats are little-endian and read in place; big-endian targets are not supported"
);

pub(crate) mod archive;
pub(crate) mod codec;
pub(crate) mod manifest;
pub(crate) mod segment;
pub(crate) mod wal;

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::config::{Durability, LogRecovery};
use crate::engine::{stride_for, Engine, EngineConfig, UpsertSummary};
use crate::error::{Error, Result};
use crate::lifecycle::{StartupClock, StartupReport};
use crate::metrics::IoCounters;
use crate::storage::{io_error, Storage, StorageFile, StorageSpace};
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
    /// Opens (or creates) the database in `storage` and rebuilds the engine from it, timing
    /// each phase on `clock` (which fails the open once past the startup timeout; the lock is
    /// released on every error path, as the guard is dropped).
    pub fn open(
        storage: Arc<dyn Storage>,
        config: EngineConfig,
        options: FileOptions,
        clock: &mut StartupClock,
    ) -> Result<(DatabaseFiles, Engine, OpenReport)> {
        let FileOptions {
            durability,
            checkpoint_bytes,
            log_recovery,
            io,
        } = options;
        let lock = storage.lock()?;
        clock.report.lock = clock.lap("lock")?;
        let mut report = OpenReport::default();
        let found = find_generation(&*storage, &config, &mut report)?;
        clock.report.manifest = clock.lap("manifest")?;

        let (mut engine, segment_seq) = match found.manifest.has_segment {
            true => {
                let seg = segment::read(
                    &*storage,
                    &found.segment,
                    config.dimension,
                    stride_for(config.dimension),
                    config.distance,
                )?;
                report.segment_points = seg.rows;
                io.segment_size.store(seg.file_bytes, Relaxed);
                let last_seq = seg.last_seq;
                (Engine::from_image(config, seg)?, last_seq)
            }
            false => (Engine::new(config), 0),
        };
        clock.report.segments = clock.lap("segments")?;

        let file = match found.created_log {
            Some(file) => file,
            None => storage
                .open(&found.log, false)
                .map_err(io_error("open", &found.log))?,
        };
        let replay = wal::replay(&*file, &found.log, engine.config().dimension, log_recovery)?;
        report.wal_bytes_truncated = replay.truncated_bytes;
        report.wal_damaged_at = replay.damaged_at;
        let last_seq = replay_onto(
            &mut engine,
            replay.ops,
            segment_seq,
            &found.log,
            clock,
            &mut report,
        )?;
        clock.report.wal_replay = clock.lap("wal_replay")?;
        // Only now that the generation opened and checked out: the files of an interrupted
        // checkpoint or an older generation go (best effort: a failure leaves them for the
        // next open).
        remove_stale(&*storage, &found.names, &[&found.segment, &found.log]);
        // Compactions during replay left the graph to rebuild, and points replayed are still
        // unindexed: both are done lazily (searches scan unindexed points exactly).
        let files = DatabaseFiles {
            wal: WalWriter::new(file, found.log, replay.format, replay.end, io.clone()),
            storage,
            manifest: found.manifest,
            next_seq: last_seq + 1,
            durability,
            checkpoint_bytes,
            auto_checkpoint_at: checkpoint_bytes,
            io,
            _lock: lock,
        };
        Ok((files, engine, report))
    }

    /// Appends `op` to the log with the configured durability. On error nothing was logged
    /// (or, after a failed fsync, the writer refuses further writes until reopened).
    pub fn log(&mut self, op: &WalOp) -> Result<()> {
        self.wal
            .append(self.next_seq, op, self.durability == Durability::OnFlush)?;
        if self.durability == Durability::Sync {
            self.wal.sync()?;
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
        // Ends in `.tmp`, so an open after a crash mid-probe removes it.
        const PROBE: &str = "health-probe.tmp";
        let pattern: Vec<u8> = (0..4096u32).map(|i| (i * 31 % 251) as u8).collect();
        let result = (|| -> std::io::Result<()> {
            let file = self.storage.open(PROBE, true)?;
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
        let removed = self.storage.remove(PROBE);
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
            ..self.manifest
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

    /// Writes a consistent copy of the engine's state into the empty directory `dest`; on
    /// failure, what it wrote is removed.
    pub fn snapshot(engine: &Engine, last_seq: u64, dest: &dyn Storage) -> Result<()> {
        let _lock = dest.lock()?;
        let names = dest.list().map_err(io_error("list", &dest.location()))?;
        if !names.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "snapshot destination {} is not empty",
                dest.location()
            )));
        }
        let config = engine.config();
        let manifest = Manifest {
            dimension: config.dimension,
            distance: config.distance,
            generation: 1,
            has_segment: true,
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

/// The generation an open starts from, with the names of its files.
struct FoundGeneration {
    manifest: Manifest,
    /// The segment's name (the file exists only if `manifest.has_segment`).
    segment: String,
    log: String,
    /// The log, still open, when this open created the database.
    created_log: Option<Box<dyn StorageFile>>,
    /// Every file in the storage, for clearing stale ones once the open succeeded.
    names: Vec<String>,
}

/// Reads the manifest, or creates the database in an empty storage, and checks that the files
/// it names exist and that it holds the configured dimension and distance.
fn find_generation(
    storage: &dyn Storage,
    config: &EngineConfig,
    report: &mut OpenReport,
) -> Result<FoundGeneration> {
    let where_ = storage.location();
    let mut names = storage.list().map_err(io_error("list", &where_))?;
    let (manifest, created_log) = match Manifest::read(storage, &names)? {
        Some(m) if m.dimension != config.dimension || m.distance != config.distance => {
            return Err(Error::InvalidConfig(format!(
                "{where_} holds a database of dimension {} with {:?} distance, \
                 but the configuration asks for dimension {} with {:?}",
                m.dimension, m.distance, config.dimension, config.distance
            )));
        }
        Some(m) => (m, None),
        None => {
            if let Some(seg) = names.iter().find(|n| is_segment(n)) {
                return Err(Error::Corrupt {
                    file: manifest::NAME.to_owned(),
                    offset: 0,
                    detail: format!("the manifest is missing but segment {seg} exists"),
                });
            }
            let m = Manifest {
                dimension: config.dimension,
                distance: config.distance,
                generation: 1,
                has_segment: false,
            };
            // Nothing names these files until the manifest is committed: an interrupted
            // creation leaves no database, and the next open starts again.
            let staged = stage_generation(storage, None, &m)?;
            Manifest::commit(storage)?;
            names = storage.list().map_err(io_error("list", &where_))?;
            report.created = true;
            (m, Some(staged.log))
        }
    };
    let segment = segment::file_name(manifest.generation);
    let log = wal::file_name(manifest.generation);
    for (needed, name) in [(manifest.has_segment, &segment), (true, &log)] {
        if needed && !names.contains(name) {
            return Err(Error::Corrupt {
                file: name.clone(),
                offset: 0,
                detail: format!(
                    "the manifest names generation {} but {name} is missing",
                    manifest.generation
                ),
            });
        }
    }
    Ok(FoundGeneration {
        manifest,
        segment,
        log,
        created_log,
        names,
    })
}

/// Applies the log's records newer than the segment (`segment_seq`) to `engine`; returns the
/// last sequence number applied.
fn replay_onto(
    engine: &mut Engine,
    ops: Vec<(u64, WalOp)>,
    segment_seq: u64,
    log: &str,
    clock: &StartupClock,
    report: &mut OpenReport,
) -> Result<u64> {
    let mut last_seq = segment_seq;
    engine.set_deferred_indexing(true);
    for (i, (seq, op)) in ops.into_iter().enumerate() {
        if i % 64 == 63 {
            clock.check("wal_replay")?;
        }
        if seq <= last_seq {
            continue; // already in the segment
        }
        if let WalOp::Upsert(points) = &op {
            // Acknowledged points are replayed whatever the configured limits are now.
            engine
                .validate_logged_upsert(points)
                .map_err(|e| Error::Corrupt {
                    file: log.to_owned(),
                    offset: 0,
                    detail: format!("record {seq} cannot be replayed: {e}"),
                })?;
        }
        apply(engine, op);
        last_seq = seq;
        report.wal_records_replayed += 1;
    }
    engine.set_deferred_indexing(false);
    Ok(last_seq)
}

fn is_segment(name: &str) -> bool {
    name.starts_with("seg-")
}

/// Whether `name` is a file this layer writes (the manifest, segments, logs, temp files).
pub(crate) fn is_database_file(name: &str) -> bool {
    let hex = |s: &str| s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit());
    name == manifest::NAME
        || name
            .strip_prefix("seg-")
            .and_then(|n| n.strip_suffix(".seg"))
            .is_some_and(hex)
        || name
            .strip_prefix("wal-")
            .and_then(|n| n.strip_suffix(".log"))
            .is_some_and(hex)
}

/// Removes (best effort) the files that are not `keep`: other generations' segments and logs,
/// and temp files left by an interrupted write.
fn remove_stale(storage: &dyn Storage, names: &[String], keep: &[&String]) {
    let stale: Vec<&String> = names
        .iter()
        .filter(|n| (is_database_file(n) || n.ends_with(".tmp")) && n.as_str() != manifest::NAME)
        .filter(|n| !keep.contains(n))
        .collect();
    for name in &stale {
        let _ = storage.remove(name);
    }
    if !stale.is_empty() {
        let _ = storage.sync_dir();
    }
}

/// Removes (best effort) what staging `generation` may have written: its segment, temp files
/// and log, and the staged manifest.
fn remove_generation(storage: &dyn Storage, generation: u64) {
    let seg = segment::file_name(generation);
    for name in [
        format!("{seg}.tmp"),
        seg,
        wal::file_name(generation),
        manifest::TMP.to_owned(),
    ] {
        let _ = storage.remove(&name);
    }
}

/// A generation written but not yet committed.
struct Staged {
    /// Its log, open, so that nothing after the commit needs to open a file.
    log: Box<dyn StorageFile>,
    format: wal::LogFormat,
    segment_bytes: u64,
}

/// Writes everything of `manifest.generation` but the commit: its segment (from `engine` at
/// `last_seq`, when given) and empty log, a sync of the directory so that both names are
/// durable before any manifest can name them, and the staged manifest.
fn stage_generation(
    storage: &dyn Storage,
    segment: Option<(&Engine, u64)>,
    manifest: &Manifest,
) -> Result<Staged> {
    let segment_bytes = match segment {
        Some((engine, last_seq)) => {
            let seg_name = segment::file_name(manifest.generation);
            segment::write(storage, &seg_name, &engine.export(last_seq))?
        }
        None => 0,
    };
    let (log, format) = wal::create(
        storage,
        &wal::file_name(manifest.generation),
        manifest.dimension,
        manifest.generation,
    )?;
    storage
        .sync_dir()
        .map_err(io_error("sync", &storage.location()))?;
    manifest.stage(storage)?;
    Ok(Staged {
        log,
        format,
        segment_bytes,
    })
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
