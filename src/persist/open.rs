//! Opening a database's files: the manifest (or a new database), the checks that the files it
//! names exist, the segment, the replay of the log, and clearing what an interrupted
//! checkpoint left.

use crate::storage::OpenMode;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use super::generation::{is_segment, remove_stale, stage_generation};
use super::manifest::{self, Manifest};
use super::wal::{self, WalOp, WalWriter};
use super::{apply, segment, DatabaseFiles, FileOptions, OpenReport};
use crate::config::EngineConfig;
use crate::engine::{stride_for, Engine};
use crate::error::{Error, Result};
use crate::lifecycle::StartupClock;
use crate::storage::{io_error, Storage, StorageFile};

impl DatabaseFiles {
    /// Opens (or creates) the database in `storage` and rebuilds the engine from it, timing
    /// each phase on `clock` (which fails the open once past the startup timeout; the lock is
    /// released on every error path, as the guard is dropped).
    pub fn open(
        storage: Arc<dyn Storage>,
        mut config: EngineConfig,
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
        // The sparse and named vectors as stored and as declared now: an open need not
        // declare them again.
        config.sparse_vectors = found.manifest.sparse.clone();
        config.named_vectors = found.manifest.named.clone();
        clock.report.manifest = clock.lap("manifest")?;

        let (mut engine, segment_seq) = match found.manifest.has_segment {
            true => {
                let seg = segment::read(
                    &*storage,
                    &found.segment,
                    config.dimension,
                    stride_for(config.dimension),
                    config.distance,
                    config.vectors_on_disk,
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
                .open(&found.log, OpenMode::Existing)
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

/// Adds the `declared` vectors to the `stored` ones; returns whether some were new. One
/// declared otherwise than stored is refused.
fn add_declared<T: PartialEq + Copy + serde::Serialize>(
    stored: &mut BTreeMap<String, T>,
    declared: &BTreeMap<String, T>,
    what: &str,
    location: &str,
) -> Result<bool> {
    let mut added = false;
    for (name, declared) in declared {
        match stored.get(name) {
            Some(was) if was != declared => {
                // As JSON: the float formatting of `Debug` would cost the wasm module kilobytes.
                let json = |c| serde_json::to_string(c).unwrap_or_default();
                return Err(Error::InvalidConfig(format!(
                    "{location} stores {what} {name:?} declared as {}, but the configuration \
                     declares it as {} (leave it out to use it as stored)",
                    json(was),
                    json(declared)
                )));
            }
            Some(_) => {}
            None => {
                stored.insert(name.clone(), *declared);
                added = true;
            }
        }
    }
    Ok(added)
}

/// The manifest with the sparse and named vectors `config` declares beside those it names,
/// written (same generation) when some are new; a name declared otherwise than stored is
/// refused, as its stored values and index were made for the stored declaration.
fn declare(storage: &dyn Storage, stored: Manifest, config: &EngineConfig) -> Result<Manifest> {
    let mut m = stored;
    let at = storage.location();
    let sparse = add_declared(&mut m.sparse, &config.sparse_vectors, "sparse vector", &at)?;
    let named = add_declared(&mut m.named, &config.named_vectors, "vector", &at)?;
    if sparse || named {
        m.stage(storage)?;
        Manifest::commit(storage)?;
    }
    Ok(m)
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
        Some(m) => (declare(storage, m, config)?, None),
        None => {
            if let Some(seg) = names.iter().find(|n| is_segment(n)) {
                return Err(Error::Corrupt {
                    file: manifest::NAME.to_owned(),
                    offset: 0,
                    detail: format!(
                        "the manifest is missing but segment {seg} exists (a destroy cut \
                         short leaves this: destroy the database again to finish it)"
                    ),
                });
            }
            let m = Manifest {
                dimension: config.dimension,
                distance: config.distance,
                generation: 1,
                has_segment: false,
                sparse: config.sparse_vectors.clone(),
                named: config.named_vectors.clone(),
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
