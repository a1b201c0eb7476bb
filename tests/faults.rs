//! A fault at every I/O call: for each call a workload makes through the storage trait (open,
//! writes, automatic and explicit checkpoints, compaction, snapshot, export and import, close),
//! a run where exactly that call fails, as EIO, ENOSPC or EMFILE (a failed write half lands).
//! Checked in every run: the error reaches the caller, a failed write is not applied, nothing
//! acknowledged is lost, and the directory reopens (with the failed write present or not).

use grape_testkit as testkit;

use grape_vector_db::storage::OpenMode;
use std::collections::BTreeSet;
use std::io;
use std::sync::Arc;

use grape_vector_db::storage::{
    Bytes, MemoryStorage, PooledStorage, Storage, StorageFile, StorageSpace,
};
use grape_vector_db::{Durability, EmbeddedVectorDB, Error};
use parking_lot::Mutex;
use testkit::workload::{self, contents, diff, Call, Contents};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    Eio,
    Enospc,
    Emfile,
}

impl Fault {
    fn error(self) -> io::Error {
        io::Error::from_raw_os_error(match self {
            Fault::Eio => 5,
            Fault::Enospc => 28,
            Fault::Emfile => 24,
        })
    }
}

#[derive(Default)]
struct Counter {
    calls: usize,
    /// The call to fail, and how.
    fail: Option<(usize, Fault)>,
    /// The call that failed: (method, file).
    hit: Option<(&'static str, String)>,
    /// Every call so far: (method, file).
    trace: Vec<(&'static str, String)>,
}

/// Memory storages whose I/O calls share one counter; exactly the chosen call fails.
#[derive(Clone)]
struct FaultAt {
    inner: MemoryStorage,
    counter: Arc<Mutex<Counter>>,
}

impl FaultAt {
    /// Counts this call; the error if it is the one to fail.
    fn tick(&self, op: &'static str, file: &str) -> Result<(), Fault> {
        let mut c = self.counter.lock();
        c.calls += 1;
        c.trace.push((op, file.to_owned()));
        match c.fail {
            Some((at, fault)) if at == c.calls - 1 => {
                c.hit = Some((op, file.to_owned()));
                Err(fault)
            }
            _ => Ok(()),
        }
    }

    /// Another directory counted by the same counter (a snapshot's or an import's destination).
    fn sibling(&self) -> FaultAt {
        FaultAt {
            inner: MemoryStorage::new(),
            counter: self.counter.clone(),
        }
    }
}

struct FaultFile {
    inner: Box<dyn StorageFile>,
    name: String,
    storage: FaultAt,
}

impl StorageFile for FaultFile {
    fn len(&self) -> io::Result<u64> {
        self.storage.tick("len", &self.name).map_err(Fault::error)?;
        self.inner.len()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.storage
            .tick("read_at", &self.name)
            .map_err(Fault::error)?;
        self.inner.read_at(offset, buf)
    }
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        if let Err(fault) = self.storage.tick("write_at", &self.name) {
            // A failed write may have landed in part.
            self.inner.write_at(offset, &data[..data.len() / 2])?;
            return Err(fault.error());
        }
        self.inner.write_at(offset, data)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.storage
            .tick("set_len", &self.name)
            .map_err(Fault::error)?;
        self.inner.set_len(len)
    }
    fn sync(&self) -> io::Result<()> {
        self.storage
            .tick("sync", &self.name)
            .map_err(Fault::error)?;
        self.inner.sync()
    }
}

impl Storage for FaultAt {
    fn open(&self, name: &str, mode: OpenMode) -> io::Result<Box<dyn StorageFile>> {
        self.tick("open", name).map_err(Fault::error)?;
        Ok(Box::new(FaultFile {
            inner: self.inner.open(name, mode)?,
            name: name.to_owned(),
            storage: self.clone(),
        }))
    }
    fn read_all(&self, name: &str) -> io::Result<Bytes> {
        self.tick("read_all", name).map_err(Fault::error)?;
        self.inner.read_all(name)
    }
    fn list(&self) -> io::Result<Vec<String>> {
        self.tick("list", "").map_err(Fault::error)?;
        self.inner.list()
    }
    fn remove(&self, name: &str) -> io::Result<()> {
        self.tick("remove", name).map_err(Fault::error)?;
        self.inner.remove(name)
    }
    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        self.tick("rename", from).map_err(Fault::error)?;
        self.inner.rename(from, to)
    }
    fn sync_dir(&self) -> io::Result<()> {
        self.tick("sync_dir", "").map_err(Fault::error)?;
        self.inner.sync_dir()
    }
    fn lock(&self) -> grape_vector_db::Result<Box<dyn Send + Sync>> {
        if let Err(fault) = self.tick("lock", "LOCK") {
            return Err(Error::io("lock", "LOCK", fault.error()));
        }
        self.inner.lock()
    }
    fn location(&self) -> String {
        "fault-injecting storage".into()
    }
    /// As native files are: `read_all` gives the whole file (a copy here, a mapping there),
    /// so a database keeping its vectors on disk reads a segment whole.
    fn maps_files(&self) -> bool {
        true
    }
    fn space(&self) -> io::Result<Option<StorageSpace>> {
        self.inner.space()
    }
}

/// What one run of the workload saw.
struct Outcome {
    /// Every error a call returned.
    errors: Vec<String>,
    /// Contents the reopened directory may hold.
    allowed: BTreeSet<String>,
    /// What the handle showed at the end, for messages.
    shown: Contents,
    /// Failed checkpoints counted in the metrics (automatic ones report nowhere else).
    checkpoints_failed: u64,
    storage: MemoryStorage,
}

fn key(c: &Contents) -> String {
    format!("{c:?}")
}

/// The database's files as files of the faulty storage, or in the OPFS layout over it (a pool
/// of blobs and a directory file: the browser backend's logic, run natively).
#[derive(Clone, Copy, PartialEq)]
enum Layout {
    Files,
    Pool,
    /// Files, of a database that keeps its vectors on disk (SQ8): opens check the segment by
    /// reads, and each checkpoint is followed by an engine over the new segment.
    FilesVectorsOnDisk,
    /// The OPFS layout, of a database that keeps its vectors on disk: a pool cannot map its
    /// files, so the vectors are read on first use, by searches and checks too.
    PoolVectorsOnDisk,
}

impl Layout {
    fn over(self, disk: impl Storage + 'static) -> grape_vector_db::Result<Arc<dyn Storage>> {
        Ok(match self {
            Layout::Files | Layout::FilesVectorsOnDisk => Arc::new(disk),
            Layout::Pool | Layout::PoolVectorsOnDisk => Arc::new(PooledStorage::open_in(&disk)?),
        })
    }

    fn config(self) -> grape_vector_db::EmbeddedConfig {
        let config = workload::config(Durability::Sync);
        match self {
            Layout::FilesVectorsOnDisk | Layout::PoolVectorsOnDisk => {
                grape_vector_db::EmbeddedConfig {
                    quantization: grape_vector_db::Quantization::Sq8,
                    vectors_on_disk: true,
                    ..config
                }
            }
            _ => config,
        }
    }
}

/// Runs open, the workload and close on a storage whose call `fail` fails.
fn run(calls: &[Call], layout: Layout, fail: Option<(usize, Fault)>) -> (Outcome, Counter) {
    let storage = FaultAt {
        inner: MemoryStorage::new(),
        counter: Arc::new(Mutex::new(Counter {
            fail,
            ..Counter::default()
        })),
    };
    let config = layout.config();
    let mut errors = Vec::new();
    // Contents the directory may hold: writes that failed may or may not be in the log.
    let mut candidates = vec![Contents::new()];
    let mut live = Contents::new();
    let mut checkpoints_failed = 0;
    let opened = layout
        .over(storage.clone())
        .and_then(|s| EmbeddedVectorDB::open_with_storage(config, s));
    match opened {
        Err(e) => errors.push(format!("open: {e}")),
        Ok(db) => {
            let siblings = storage.clone();
            let new_storage = move || -> Arc<dyn Storage> { Arc::new(siblings.sibling()) };
            for (i, call) in calls.iter().enumerate() {
                // What the call logs: a delete, only the ids that exist now.
                let logged = call.as_logged(&live);
                match call.run(&db, &live, &new_storage) {
                    Ok(()) => {
                        call.apply(&mut live);
                        candidates.iter_mut().for_each(|c| logged.apply(c));
                    }
                    Err(e) => {
                        errors.push(format!("call {i} {call:?}: {e}"));
                        // Refused before logging (bad input, a poisoned writer), or not.
                        let maybe = matches!(e, Error::Io { .. } | Error::StorageFull { .. });
                        if call.writes() && maybe {
                            let with: Vec<Contents> = candidates
                                .iter()
                                .map(|c| {
                                    let mut c = c.clone();
                                    logged.apply(&mut c);
                                    c
                                })
                                .collect();
                            candidates.extend(with);
                        }
                    }
                }
                // A failed call changed nothing that the handle shows. Vectors read on first
                // use may meet the fault here: the read reports it, and the next one works.
                let shown = match contents(&db) {
                    Err(e @ (Error::Io { .. } | Error::StorageFull { .. }))
                        if layout == Layout::PoolVectorsOnDisk =>
                    {
                        errors.push(format!("reads after call {i}: {e}"));
                        contents(&db)
                    }
                    shown => shown,
                }
                .expect("reads work after a failed write");
                assert!(
                    shown == live,
                    "call {i} {call:?} (fault {fail:?}): the handle shows other contents: {}",
                    diff(&shown, &live)
                );
            }
            checkpoints_failed = db.metrics().checkpoints_failed;
            if let Err(e) = db.close() {
                errors.push(format!("close: {e}"));
            }
        }
    }
    let counter = std::mem::take(&mut *storage.counter.lock());
    let outcome = Outcome {
        errors,
        allowed: candidates.iter().map(key).collect(),
        shown: live,
        checkpoints_failed,
        storage: storage.inner,
    };
    (outcome, counter)
}

#[test]
fn a_fault_at_any_io_call_loses_nothing_acknowledged() {
    faults_everywhere(Layout::Files, "files");
}

/// The same over the OPFS layout: faults in its directory writes, flushes and blob truncations.
#[test]
fn a_fault_at_any_io_call_of_the_opfs_layout_loses_nothing_acknowledged() {
    faults_everywhere(Layout::Pool, "OPFS layout");
}

/// The same with the vectors kept on disk: faults in the reads that check a segment at open
/// and after each checkpoint.
#[test]
fn a_fault_at_any_io_call_with_vectors_on_disk_loses_nothing_acknowledged() {
    faults_everywhere(Layout::FilesVectorsOnDisk, "files, vectors on disk");
}

/// And in the OPFS layout, where the vectors on disk are read on first use: by searches,
/// reads, inserts into the graph and checkpoints, whose failures their callers see.
#[test]
fn a_fault_at_any_io_call_of_the_opfs_layout_with_vectors_on_disk_loses_nothing_acknowledged() {
    faults_everywhere(Layout::PoolVectorsOnDisk, "OPFS layout, vectors on disk");
}

fn faults_everywhere(layout: Layout, name: &str) {
    let calls = workload::script(7, 30);
    let (clean, counted) = run(&calls, layout, None);
    assert!(clean.errors.is_empty(), "{:?}", clean.errors);
    let total = counted.calls;
    let config = layout.config();
    let mut injected = 0;
    let mut failures = Vec::new();
    let mut silent = BTreeSet::new();
    for at in 0..total {
        for fault in [Fault::Eio, Fault::Enospc, Fault::Emfile] {
            let (outcome, counter) = run(&calls, layout, Some((at, fault)));
            let Some((op, file)) = counter.hit else {
                continue; // this run made fewer calls
            };
            injected += 1;
            let what = format!("{fault:?} at call {at} ({op} {file})");
            // The error reaches the caller, or the metrics for an automatic checkpoint; only
            // best-effort cleanup (removing files no longer needed) may fail unseen: in the
            // pool, a removal is a directory write and flush, then a blob emptied.
            if outcome.errors.is_empty() && outcome.checkpoints_failed == 0 {
                silent.insert(format!("{op} {file}"));
                let cleanup = match layout {
                    Layout::Files => matches!(op, "remove" | "sync_dir" | "list"),
                    // Also the reads of a new segment after its checkpoint, which swap the
                    // engine for one over it (best effort: a failure keeps the old engine,
                    // whole, as the checks after every call and the reopen show). Any other
                    // read of a segment is an open's, whose failure the caller sees.
                    Layout::FilesVectorsOnDisk => {
                        matches!(op, "remove" | "sync_dir" | "list")
                            || (matches!(op, "open" | "read_all" | "read_at")
                                && file.starts_with("seg-"))
                    }
                    Layout::Pool => pool_cleanup(op, &file),
                    // Also a read of a blob, which may be the swap after a checkpoint (see
                    // above), or a graph insert's read of a vector after an upsert already
                    // logged (the point waits outside the graph, searched exactly).
                    Layout::PoolVectorsOnDisk => {
                        pool_cleanup(op, &file)
                            || (matches!(op, "len" | "read_at") && file.starts_with("blob-"))
                    }
                };
                if !cleanup {
                    failures.push(format!("{what}: no call reported it"));
                }
            }
            let reopened = layout
                .over(outcome.storage)
                .and_then(|s| EmbeddedVectorDB::open_with_storage(config.clone(), s));
            match reopened {
                Err(e) => failures.push(format!("{what}: reopening failed: {e}")),
                Ok(db) => {
                    let got = contents(&db).expect("reads");
                    if !outcome.allowed.contains(&key(&got)) {
                        failures.push(format!(
                            "{what}: reopened with other contents than acknowledged: {} \
                             (errors {:?})",
                            diff(&got, &outcome.shown),
                            outcome.errors
                        ));
                    }
                }
            }
        }
    }
    println!(
        "faults ({name}): {total} I/O calls in the workload, {injected} faults injected, {} failed, \
         seen by no caller (cleanup): {silent:?}",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {injected} faults broke the database:\n{}",
        failures.len(),
        failures[..failures.len().min(12)].join("\n")
    );
}

/// What may fail unseen in the pool: a removal is a directory write and flush, then a blob
/// emptied; listing is best effort.
fn pool_cleanup(op: &str, file: &str) -> bool {
    matches!((op, file), ("write_at" | "sync", "directory"))
        || (op == "set_len" && file.starts_with("blob-"))
        || op == "list"
}

/// The index, in a clean run of `calls`, of the call matching the last of `steps` (a method
/// and a file-name prefix), found after the first match of each step before it.
fn index_of(calls: &[Call], steps: &[(&str, &str)]) -> usize {
    let (_, counter) = run(calls, Layout::Files, None);
    let mut at = 0;
    for (i, (op, file)) in steps.iter().enumerate() {
        let from = if i == 0 { 0 } else { at + 1 };
        at = from
            + counter.trace[from..]
                .iter()
                .position(|(o, f)| o == op && f.starts_with(file))
                .expect("the run makes that call");
    }
    at
}

/// Upserts, an explicit checkpoint (the second generation), more upserts.
fn checkpoint_between_writes() -> Vec<Call> {
    let point = |i: u64| grape_vector_db::Point::new(i, vec![i as f32, 1.0, 0.5, 0.25]);
    vec![
        Call::Upsert((0..10).map(point).collect()),
        Call::Checkpoint,
        Call::Upsert((10..20).map(point).collect()),
        Call::Upsert((20..30).map(point).collect()),
    ]
}

fn reopen(storage: MemoryStorage) -> EmbeddedVectorDB {
    EmbeddedVectorDB::open_with_storage(workload::config(Durability::Sync), Arc::new(storage))
        .expect("the directory reopens")
}

#[test]
fn a_failed_directory_sync_after_the_manifest_rename_poisons_and_deletes_nothing() {
    // Finding B: the error branch deleted the new generation although MANIFEST named it, the
    // handle kept acknowledging writes into the old log, and the next open deleted that and
    // failed: every point lost.
    let calls = checkpoint_between_writes();
    let at = index_of(
        &calls,
        &[
            ("write_at", "seg-"),
            ("rename", "MANIFEST.tmp"),
            ("sync_dir", ""),
        ],
    );
    let (outcome, counter) = run(&calls, Layout::Files, Some((at, Fault::Eio)));
    assert_eq!(counter.hit, Some(("sync_dir", String::new())));
    assert!(
        outcome.errors[0].starts_with("call 1 Checkpoint"),
        "{:?}",
        outcome.errors
    );
    assert!(
        outcome.errors[1..].iter().all(|e| e.contains("refused")),
        "later writes are refused, not acknowledged: {:?}",
        outcome.errors
    );
    let db = reopen(outcome.storage);
    assert_eq!(db.count(None).unwrap(), 10);
}

#[test]
fn every_fault_during_a_checkpoint_keeps_the_writes_acknowledged_after_it() {
    // Finding C: a checkpoint that failed after its commit point (opening the new log failed,
    // EMFILE) returned an error but kept writing to the old log, which the next open deleted:
    // later `Ok` writes vanished (30 acknowledged, 20 found). Now the new log is created and
    // kept open before the commit, and nothing after it can fail. Each call of the checkpoint,
    // up to the next write's append, fails in turn.
    let calls = checkpoint_between_writes();
    let first = index_of(&calls, &[("write_at", "seg-")]);
    let last = index_of(
        &calls,
        &[
            ("write_at", "seg-"),
            ("rename", "MANIFEST.tmp"),
            ("write_at", "wal-"),
        ],
    );
    let mut hits: Vec<String> = Vec::new();
    for at in first..last {
        for fault in [Fault::Emfile, Fault::Eio, Fault::Enospc] {
            let (outcome, counter) = run(&calls, Layout::Files, Some((at, fault)));
            let hit = counter.hit.expect("the call is made");
            hits.push(format!("{} {}", hit.0, hit.1));
            let db = reopen(outcome.storage);
            let got = contents(&db).unwrap();
            assert!(
                outcome.allowed.contains(&key(&got)),
                "{fault:?} at {hit:?}: {} (errors {:?})",
                diff(&got, &outcome.shown),
                outcome.errors
            );
        }
    }
    hits.dedup();
    assert!(
        hits.iter().any(|h| h.starts_with("rename MANIFEST")),
        "{hits:?}"
    );
    assert!(hits.iter().any(|h| h.starts_with("remove")), "{hits:?}");
}
