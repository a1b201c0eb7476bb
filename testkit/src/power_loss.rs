//! Power loss, modelled over the `Storage` trait.
//!
//! [`RecordingStorage`] runs a workload on a `MemoryStorage` and logs every operation that
//! changes what a disk holds: create, write, set_len, file sync, rename, remove and directory
//! sync. [`Disk`] replays that log; after each prefix of it, [`Disk::crash_states`] lists what
//! the disk may hold if power fails right there:
//!
//! - **file data**: writes since a file's last sync are all lost, all kept, kept as zeros with
//!   the new file size (the size reached the disk, the data did not), or torn: split at 512- or
//!   4096-byte boundaries, a prefix of the pieces kept (in order) or any subset (reordered);
//! - **names** (creations, renames, removals since the last directory sync), under two models:
//!   *ordered* (a journaling file system: a prefix of them is durable) and *weak* (any subset,
//!   each applied or not: file systems that reorder metadata).
//!
//! Synced data and synced names are always kept. The states are plain file maps, opened through
//! a fresh `MemoryStorage` by the test.

use grape_vector_db::storage::OpenMode;
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashSet};
use std::hash::{Hash, Hasher};
use std::io;
use std::sync::Arc;

use grape_vector_db::storage::{Bytes, MemoryStorage, Storage, StorageFile, StorageSpace};
use parking_lot::Mutex;

use crate::Rng;

/// One recorded operation; files are named by inode so renames keep their identity.
#[derive(Debug, Clone)]
pub enum FsOp {
    Create {
        name: String,
        inode: usize,
    },
    Write {
        inode: usize,
        offset: u64,
        data: Vec<u8>,
    },
    SetLen {
        inode: usize,
        len: u64,
    },
    Sync {
        inode: usize,
    },
    Rename {
        from: String,
        to: String,
        inode: usize,
    },
    Remove {
        name: String,
        inode: usize,
    },
    SyncDir,
}

#[derive(Default)]
struct Recording {
    ops: Vec<FsOp>,
    names: BTreeMap<String, usize>,
    inodes: usize,
}

/// A `MemoryStorage` that records every operation that changes the disk.
#[derive(Clone, Default)]
pub struct RecordingStorage {
    inner: MemoryStorage,
    log: Arc<Mutex<Recording>>,
}

impl RecordingStorage {
    pub fn new() -> Self {
        Self::default()
    }

    /// Operations recorded so far.
    pub fn op_count(&self) -> usize {
        self.log.lock().ops.len()
    }

    pub fn ops(&self) -> Vec<FsOp> {
        self.log.lock().ops.clone()
    }
}

struct RecordingFile {
    inner: Box<dyn StorageFile>,
    inode: usize,
    log: Arc<Mutex<Recording>>,
}

impl StorageFile for RecordingFile {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.inner.read_at(offset, buf)
    }
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut log = self.log.lock();
        self.inner.write_at(offset, data)?;
        log.ops.push(FsOp::Write {
            inode: self.inode,
            offset,
            data: data.to_vec(),
        });
        Ok(())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut log = self.log.lock();
        self.inner.set_len(len)?;
        log.ops.push(FsOp::SetLen {
            inode: self.inode,
            len,
        });
        Ok(())
    }
    fn sync(&self) -> io::Result<()> {
        let mut log = self.log.lock();
        self.inner.sync()?;
        log.ops.push(FsOp::Sync { inode: self.inode });
        Ok(())
    }
}

impl Storage for RecordingStorage {
    fn open(&self, name: &str, mode: OpenMode) -> io::Result<Box<dyn StorageFile>> {
        let mut log = self.log.lock();
        let file = self.inner.open(name, mode)?;
        let inode = match log.names.get(name) {
            Some(&inode) => inode,
            None => {
                let inode = log.inodes;
                log.inodes += 1;
                log.names.insert(name.to_owned(), inode);
                log.ops.push(FsOp::Create {
                    name: name.to_owned(),
                    inode,
                });
                inode
            }
        };
        Ok(Box::new(RecordingFile {
            inner: file,
            inode,
            log: self.log.clone(),
        }))
    }
    fn read_all(&self, name: &str) -> io::Result<Bytes> {
        self.inner.read_all(name)
    }
    fn list(&self) -> io::Result<Vec<String>> {
        self.inner.list()
    }
    fn remove(&self, name: &str) -> io::Result<()> {
        let mut log = self.log.lock();
        self.inner.remove(name)?;
        if let Some(inode) = log.names.remove(name) {
            log.ops.push(FsOp::Remove {
                name: name.to_owned(),
                inode,
            });
        }
        Ok(())
    }
    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let mut log = self.log.lock();
        self.inner.rename(from, to)?;
        let inode = log.names.remove(from).expect("renamed a recorded file");
        log.names.insert(to.to_owned(), inode);
        log.ops.push(FsOp::Rename {
            from: from.to_owned(),
            to: to.to_owned(),
            inode,
        });
        Ok(())
    }
    fn sync_dir(&self) -> io::Result<()> {
        let mut log = self.log.lock();
        self.inner.sync_dir()?;
        log.ops.push(FsOp::SyncDir);
        Ok(())
    }
    fn lock(&self) -> grape_vector_db::Result<Box<dyn Send + Sync>> {
        self.inner.lock()
    }
    fn location(&self) -> String {
        "recording storage".into()
    }
    fn space(&self) -> io::Result<Option<StorageSpace>> {
        self.inner.space()
    }
}

/// A change to a file's bytes not yet made durable by a sync.
#[derive(Debug, Clone)]
enum Change {
    Write(u64, Vec<u8>),
    SetLen(u64),
}

fn apply(bytes: &mut Vec<u8>, change: &Change, zeros: bool) {
    match change {
        Change::Write(offset, data) => {
            let (start, end) = (*offset as usize, *offset as usize + data.len());
            if bytes.len() < end {
                bytes.resize(end, 0);
            }
            if zeros {
                bytes[start..end].fill(0);
            } else {
                bytes[start..end].copy_from_slice(data);
            }
        }
        Change::SetLen(len) => bytes.resize(*len as usize, 0),
    }
}

/// Splits writes at multiples of `sector` (absolute file offsets): the units a disk persists.
fn pieces(changes: &[Change], sector: u64) -> Vec<Change> {
    let mut out = Vec::new();
    for change in changes {
        match change {
            Change::Write(offset, data) => {
                let mut at = *offset;
                let mut rest = &data[..];
                while !rest.is_empty() {
                    let room = (sector - at % sector) as usize;
                    let (head, tail) = rest.split_at(room.min(rest.len()));
                    out.push(Change::Write(at, head.to_vec()));
                    at += head.len() as u64;
                    rest = tail;
                }
            }
            set_len => out.push(set_len.clone()),
        }
    }
    out
}

#[derive(Debug, Clone, Default)]
struct FileImage {
    synced: Vec<u8>,
    pending: Vec<Change>,
}

#[derive(Debug, Clone)]
enum NameOp {
    Link(String, usize),
    Unlink(String, usize),
}

/// How the unsynced writes of the files are kept in one state.
#[derive(Debug, Clone)]
enum Data {
    Lost,
    Kept,
    Zeros,
    /// One file's unsynced writes torn (`keep` over its pieces of `sector` bytes; the rest
    /// dropped, or with `zeros` written as zeros: the size persisted); the other files' lost.
    Torn {
        inode: usize,
        sector: u64,
        keep: Vec<bool>,
        zeros: bool,
    },
}

/// Which metadata-ordering model a crash state belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Ordering {
    /// A prefix of the unsynced name changes is durable.
    Ordered,
    /// Any subset of them is.
    Weak,
}

/// A disk after a crash: file name -> bytes.
pub struct CrashState {
    pub ordering: Ordering,
    /// What was kept, for failure messages.
    pub label: String,
    pub files: BTreeMap<String, Vec<u8>>,
}

impl CrashState {
    /// A fresh storage holding the state's files.
    pub fn storage(&self) -> MemoryStorage {
        let storage = MemoryStorage::new();
        for (name, bytes) in &self.files {
            storage
                .open(name, OpenMode::CreateIfMissing)
                .and_then(|f| f.write_at(0, bytes))
                .expect("memory storage writes");
        }
        storage
    }

    /// A hash of the files, to skip states already checked.
    pub fn fingerprint(&self) -> u64 {
        let mut h = DefaultHasher::new();
        self.files.hash(&mut h);
        h.finish()
    }
}

/// The disk as the recorded operations leave it, with what is durable and what is not.
#[derive(Default)]
pub struct Disk {
    files: Vec<FileImage>,
    /// Names as of the last directory sync.
    durable: BTreeMap<String, usize>,
    /// Name changes since then, in order.
    pending: Vec<NameOp>,
    /// The file written last: the write in flight, which a crash tears.
    last_written: Option<usize>,
}

impl Disk {
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies the next recorded operation.
    pub fn apply(&mut self, op: &FsOp) {
        fn file(files: &mut Vec<FileImage>, inode: usize) -> &mut FileImage {
            if files.len() <= inode {
                files.resize(inode + 1, FileImage::default());
            }
            &mut files[inode]
        }
        match op {
            FsOp::Create { name, inode } => {
                file(&mut self.files, *inode);
                self.pending.push(NameOp::Link(name.clone(), *inode));
            }
            FsOp::Write {
                inode,
                offset,
                data,
            } => {
                file(&mut self.files, *inode)
                    .pending
                    .push(Change::Write(*offset, data.clone()));
                self.last_written = Some(*inode);
            }
            FsOp::SetLen { inode, len } => {
                file(&mut self.files, *inode)
                    .pending
                    .push(Change::SetLen(*len));
                self.last_written = Some(*inode);
            }
            FsOp::Sync { inode } => {
                let f = file(&mut self.files, *inode);
                for change in std::mem::take(&mut f.pending) {
                    apply(&mut f.synced, &change, false);
                }
            }
            FsOp::Rename { from, to, inode } => {
                self.pending.push(NameOp::Unlink(from.clone(), *inode));
                self.pending.push(NameOp::Link(to.clone(), *inode));
            }
            FsOp::Remove { name, inode } => self.pending.push(NameOp::Unlink(name.clone(), *inode)),
            FsOp::SyncDir => {
                let pending = std::mem::take(&mut self.pending);
                self.durable = names_with(&self.durable, &pending, &vec![true; pending.len()]);
            }
        }
    }

    fn bytes(&self, inode: usize, data: &Data) -> Vec<u8> {
        let f = &self.files[inode];
        let mut out = f.synced.clone();
        match data {
            Data::Lost => {}
            Data::Kept | Data::Zeros => {
                let zeros = matches!(data, Data::Zeros);
                f.pending.iter().for_each(|c| apply(&mut out, c, zeros));
            }
            Data::Torn {
                inode: torn,
                sector,
                keep,
                zeros,
            } if *torn == inode => {
                for (piece, &kept) in pieces(&f.pending, *sector).iter().zip(keep) {
                    if kept || *zeros {
                        apply(&mut out, piece, !kept);
                    }
                }
            }
            Data::Torn { .. } => {}
        }
        out
    }

    fn state(&self, ordering: Ordering, names: &[bool], data: &Data) -> CrashState {
        let files = names_with(&self.durable, &self.pending, names)
            .into_iter()
            .map(|(name, inode)| (name, self.bytes(inode, data)))
            .collect();
        let kept: String = names.iter().map(|&k| if k { '1' } else { '0' }).collect();
        CrashState {
            ordering,
            label: format!("names kept {kept:?}, data {data:?}"),
            files,
        }
    }

    /// The crash states of the disk as it is now (a bounded sample where there are many
    /// combinations; `rng` picks it reproducibly).
    pub fn crash_states(&self, rng: &mut Rng) -> Vec<CrashState> {
        let mut datas = vec![Data::Lost, Data::Kept, Data::Zeros];
        // The file written last is the one in flight: tear its unsynced writes.
        let last = self
            .last_written
            .filter(|&i| !self.files[i].pending.is_empty());
        if let Some(inode) = last {
            for sector in [512u64, 4096] {
                let n = pieces(&self.files[inode].pending, sector).len();
                if n < 2 {
                    continue;
                }
                // Every cut of a short write, a spread of cuts of a long one.
                let mut cuts: Vec<usize> = (1..n).filter(|c| n <= 9 || c % (n / 8) == 0).collect();
                cuts.push(n - 1);
                cuts.dedup();
                for cut in cuts {
                    for zeros in [false, true] {
                        let keep = (0..n).map(|i| i < cut).collect();
                        datas.push(Data::Torn {
                            inode,
                            sector,
                            keep,
                            zeros,
                        });
                    }
                }
                for _ in 0..8 {
                    let keep = (0..n).map(|_| rng.chance(0.5)).collect();
                    datas.push(Data::Torn {
                        inode,
                        sector,
                        keep,
                        zeros: false,
                    });
                }
            }
        }
        let n = self.pending.len();
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        // Ordered: every prefix of the name changes, with every data variant.
        for p in 0..=n {
            let names: Vec<bool> = (0..n).map(|i| i < p).collect();
            seen.insert(names.clone());
            for data in &datas {
                out.push(self.state(Ordering::Ordered, &names, data));
            }
        }
        // Weak: the other subsets (all of them when few), with every data variant.
        let subsets: Vec<Vec<bool>> = if n <= 6 {
            (0..1u32 << n)
                .map(|m| (0..n).map(|i| m >> i & 1 == 1).collect())
                .collect()
        } else {
            (0..48)
                .map(|_| (0..n).map(|_| rng.chance(0.5)).collect())
                .collect()
        };
        for names in subsets {
            if seen.insert(names.clone()) {
                for data in &datas {
                    out.push(self.state(Ordering::Weak, &names, data));
                }
            }
        }
        out
    }
}

/// `durable` with the name changes of `pending` that `kept` selects applied in order.
fn names_with(
    durable: &BTreeMap<String, usize>,
    pending: &[NameOp],
    kept: &[bool],
) -> BTreeMap<String, usize> {
    let mut names = durable.clone();
    for (op, _) in pending.iter().zip(kept).filter(|(_, &k)| k) {
        match op {
            NameOp::Link(name, inode) => {
                names.insert(name.clone(), *inode);
            }
            NameOp::Unlink(name, inode) => {
                if names.get(name) == Some(inode) {
                    names.remove(name);
                }
            }
        }
    }
    names
}
