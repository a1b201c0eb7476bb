//! A fault at every I/O call: for each call a workload makes through the storage trait (open,
//! writes, automatic and explicit checkpoints, compaction, snapshot, export and import, close),
//! a run where exactly that call fails, as EIO, ENOSPC or EMFILE (a failed write half lands).
//! Checked in every run: the error reaches the caller, a failed write is not applied, nothing
//! acknowledged is lost, and the directory reopens (with the failed write present or not).

mod common;

use std::collections::BTreeSet;
use std::io;
use std::sync::Arc;

use common::workload::{self, contents, diff, Call, Contents};
use grape_vector_db::storage::{
    Bytes, MemoryStorage, PooledStorage, Storage, StorageFile, StorageSpace,
};
use grape_vector_db::{Durability, EmbeddedVectorDB, Error};
use parking_lot::Mutex;

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
    fn open(&self, name: &str, create: bool) -> io::Result<Box<dyn StorageFile>> {
        self.tick("open", name).map_err(Fault::error)?;
        Ok(Box::new(FaultFile {
            inner: self.inner.open(name, create)?,
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
            return Err(Error::Io {
                op: "lock",
                file: "LOCK".into(),
                message: fault.error().to_string(),
            });
        }
        self.inner.lock()
    }
    fn location(&self) -> String {
        "fault-injecting storage".into()
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
}

impl Layout {
    fn over(self, disk: impl Storage + 'static) -> grape_vector_db::Result<Arc<dyn Storage>> {
        Ok(match self {
            Layout::Files => Arc::new(disk),
            Layout::Pool => Arc::new(PooledStorage::open_in(&disk)?),
        })
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
    let config = workload::config(Durability::Sync);
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
                // A failed call changed nothing that the handle shows.
                let shown = contents(&db).expect("reads work after a failed write");
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

fn faults_everywhere(layout: Layout, name: &str) {
    let calls = workload::script(7, 30);
    let (clean, counted) = run(&calls, layout, None);
    assert!(clean.errors.is_empty(), "{:?}", clean.errors);
    let total = counted.calls;
    let config = workload::config(Durability::Sync);
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
                    Layout::Pool => {
                        matches!((op, file.as_str()), ("write_at" | "sync", "directory"))
                            || (op == "set_len" && file.starts_with("blob-"))
                            || op == "list"
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
