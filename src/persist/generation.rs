//! Generations: which files belong to the database, staging a new generation before its commit,
//! and removing what is not (or no longer) part of the committed one.

use super::manifest::{self, Manifest};
use super::{segment, wal};
use crate::engine::Engine;
use crate::error::Result;
use crate::storage::{io_error, Storage, StorageFile, LOCK_FILE};

pub(super) fn is_segment(name: &str) -> bool {
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

/// Whether this layer writes files of this name: the manifest, segments and logs, their temp
/// files, and the health probe. No other file in the directory is ever removed.
fn is_ours(name: &str) -> bool {
    name == super::HEALTH_PROBE
        || is_database_file(name)
        || name.strip_suffix(".tmp").is_some_and(is_database_file)
}

/// Deletes the database in `storage` under its lock (so one open anywhere is refused with
/// `AlreadyOpen`): its files, then the lock's own file while the claim still keeps others out.
pub(crate) fn destroy(storage: &dyn Storage) -> Result<()> {
    let held = storage.lock()?;
    remove_database(storage)?;
    // Best effort: a platform that will not remove a file it holds open keeps it, harmlessly.
    let _ = storage.remove(LOCK_FILE);
    drop(held);
    Ok(())
}

/// Removes the database in `storage`: the manifest first, made durable before anything else
/// goes (what remains is then no longer a database an open could mistake for a whole one, and
/// a crash cannot leave a manifest naming removed files), then its segments, logs and temp
/// files. Files this layer does not write are left where they are.
pub(crate) fn remove_database(storage: &dyn Storage) -> Result<()> {
    let names = storage
        .list()
        .map_err(io_error("list", &storage.location()))?;
    let (manifest, rest): (Vec<&String>, Vec<&String>) = names
        .iter()
        .filter(|n| is_ours(n))
        .partition(|n| n.as_str() == manifest::NAME);
    let sync_dir = || {
        storage
            .sync_dir()
            .map_err(io_error("sync directory", &storage.location()))
    };
    for name in &manifest {
        storage.remove(name).map_err(io_error("remove", name))?;
        sync_dir()?;
    }
    for name in rest {
        storage.remove(name).map_err(io_error("remove", name))?;
    }
    sync_dir()
}

/// Removes (best effort) the files that are not `keep`: other generations' segments and logs,
/// and our temp files left by an interrupted write (others' files stay, see [`is_ours`]).
pub(super) fn remove_stale(storage: &dyn Storage, names: &[String], keep: &[&String]) {
    let stale: Vec<&String> = names
        .iter()
        .filter(|n| is_ours(n) && n.as_str() != manifest::NAME)
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
pub(super) fn remove_generation(storage: &dyn Storage, generation: u64) {
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
pub(super) struct Staged {
    /// Its log, open, so that nothing after the commit needs to open a file.
    pub log: Box<dyn StorageFile>,
    pub format: wal::LogFormat,
    pub segment_bytes: u64,
}

/// Writes everything of `manifest.generation` but the commit: its segment (from `engine` at
/// `last_seq`, when given) and empty log, a sync of the directory so that both names are
/// durable before any manifest can name them, and the staged manifest.
pub(super) fn stage_generation(
    storage: &dyn Storage,
    segment: Option<(&Engine, u64)>,
    manifest: &Manifest,
) -> Result<Staged> {
    let segment_bytes = match segment {
        Some((engine, last_seq)) => {
            let seg_name = segment::file_name(manifest.generation);
            segment::write(storage, &seg_name, &engine.export(last_seq)?)?
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{MemoryStorage, OpenMode};

    /// A storage holding a byte in each of `names`.
    fn with_files<'a>(names: impl IntoIterator<Item = &'a &'a str>) -> MemoryStorage {
        let s = MemoryStorage::new();
        for name in names {
            let file = s.open(name, OpenMode::CreateIfMissing).unwrap();
            file.write_at(0, b"x").unwrap();
        }
        s
    }

    /// The names `s` holds, sorted.
    fn listed(s: &MemoryStorage) -> Vec<String> {
        let mut names = s.list().unwrap();
        names.sort();
        names
    }

    #[test]
    fn stale_files_are_ours_only() {
        // An open removes what an interrupted checkpoint or an older generation left, never a
        // file someone else put in the directory, whatever its name ends with.
        let kept = [
            "MANIFEST",
            "seg-0000000000000004.seg",
            "wal-0000000000000004.log",
        ];
        let stale = [
            "MANIFEST.tmp",
            "seg-0000000000000003.seg",
            "wal-0000000000000003.log",
            "seg-0000000000000005.seg.tmp",
            "health-probe.tmp",
        ];
        let others = ["notes.txt", "report.tmp", "seg-mine.seg.tmp", "wal-1.log"];
        let s = with_files(kept.iter().chain(&stale).chain(&others));
        let (seg, log) = (kept[1].to_owned(), kept[2].to_owned());
        remove_stale(&s, &s.list().unwrap(), &[&seg, &log]);
        assert_eq!(listed(&s), listed(&with_files(kept.iter().chain(&others))));
    }

    #[test]
    fn removing_a_database_leaves_other_files_alone() {
        let ours = [
            "MANIFEST",
            "MANIFEST.tmp",
            "seg-0000000000000003.seg",
            "seg-0000000000000004.seg.tmp",
            "wal-0000000000000004.log",
            "health-probe.tmp",
        ];
        let others = ["notes.txt", "seg-mine.seg", "report.tmp", "wal-1.log"];
        let s = with_files(ours.iter().chain(&others));
        remove_database(&s).unwrap();
        assert_eq!(listed(&s), listed(&with_files(&others)));
        // Nothing of ours left: removing again is no error.
        remove_database(&s).unwrap();
    }
}
