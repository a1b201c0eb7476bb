//! Files held in memory and committed in chunks, all changes at once: the logic of the
//! IndexedDB backend without the platform, so the tests run it natively.
//!
//! IndexedDB is asynchronous, so the database's files live in memory while it is open:
//! [`ChunkedStorage`] is loaded from what the store holds, the engine reads and writes it
//! synchronously, and a commit writes what changed since the last one as one list of
//! [`ChunkOp`]s that the store applies atomically (one IndexedDB transaction). After a crash the
//! database is exactly at its last completed commit. Files are stored in 256 KiB chunks (key
//! `[file, index]`) with their lengths, so a commit after a few writes rewrites a few chunks,
//! not whole files.

use crate::storage::OpenMode;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use super::{Bytes, LockFlag, Storage, StorageFile, StorageSpace};
use crate::error::Result;

/// Bytes per stored chunk in IndexedDB.
pub(crate) const CHUNK: usize = 256 << 10;

/// One change of a commit, applied by the store with all the others or not at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkOp {
    /// Chunk `index` of `file` holds `bytes` (the last chunk of a file may be shorter).
    PutChunk {
        /// The file's name.
        file: String,
        /// Which chunk: bytes `index * 256 KiB ..`.
        index: u32,
        /// Its content.
        bytes: Vec<u8>,
    },
    /// Chunk `index` of `file` is gone.
    DeleteChunk {
        /// The file's name.
        file: String,
        /// Which chunk.
        index: u32,
    },
    /// `file` is `len` bytes long.
    PutLen {
        /// The file's name.
        file: String,
        /// Its length in bytes.
        len: u64,
    },
    /// `file` is gone (its chunks are deleted by their own ops).
    DeleteFile {
        /// The file's name.
        file: String,
    },
}

struct FileData {
    bytes: Vec<u8>,
    /// Chunks written since the last commit.
    dirty: BTreeSet<u32>,
    chunk: usize,
}

impl FileData {
    fn new(len: usize, chunk: usize) -> FileData {
        FileData {
            bytes: vec![0; len],
            dirty: BTreeSet::new(),
            chunk,
        }
    }

    fn touch(&mut self, from: usize, to: usize) {
        if to > from {
            for c in from / self.chunk..=(to - 1) / self.chunk {
                self.dirty.insert(c as u32);
            }
        }
    }

    fn chunks(&self) -> u32 {
        self.bytes.len().div_ceil(self.chunk) as u32
    }
}

type SharedFile = Arc<RwLock<FileData>>;

/// Files in memory, committed in chunks (see the module docs). In the browser this is
/// `IdbStorage`, committing to IndexedDB; natively, [`MemoryChunkStore`] is the store, which is
/// how the tests run the browser's logic.
///
/// ```
/// use grape_vector_db::storage::{ChunkedStorage, MemoryChunkStore, OpenMode, Storage};
/// let store = MemoryChunkStore::default();
/// let files = ChunkedStorage::open_in(&store)?;
/// files.open("a", OpenMode::CreateIfMissing)?.write_at(0, b"hello")?;
/// assert!(files.has_changes());
/// files.commit_to(&store)?;
/// let again = ChunkedStorage::open_in(&store)?;
/// assert_eq!(&*again.read_all("a")?, b"hello");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct ChunkedStorage {
    inner: Arc<Inner>,
}

struct Inner {
    location: String,
    /// Bytes per chunk.
    chunk: usize,
    files: Mutex<BTreeMap<String, SharedFile>>,
    /// What the store holds: file name -> number of chunks.
    stored: Mutex<BTreeMap<String, u32>>,
    /// Names whose content must be written whole at the next commit (created or renamed).
    fresh: Mutex<BTreeSet<String>>,
    locked: LockFlag,
    space: Mutex<Option<StorageSpace>>,
}

/// A commit planned: its ops, and what to put back if the store fails to apply them.
pub(crate) struct CommitPlan {
    pub ops: Vec<ChunkOp>,
    fresh: BTreeSet<String>,
    taken: Vec<(SharedFile, BTreeSet<u32>)>,
    stored: BTreeMap<String, u32>,
}

impl ChunkedStorage {
    /// The files a store holds: names with their lengths, and chunks by `(name, index)`.
    /// Chunks of files the lengths do not name are ignored (unreachable leftovers).
    // Not generic, and filled by inserts rather than `collect`: each instantiation of a
    // BTreeMap built from an iterator carries its own sort, which the .wasm pays for in size.
    pub(crate) fn load(
        location: String,
        chunk_bytes: usize,
        lens: &mut dyn Iterator<Item = (String, u64)>,
        chunks: &mut dyn Iterator<Item = ((String, u32), Vec<u8>)>,
    ) -> ChunkedStorage {
        let mut files = BTreeMap::new();
        for (name, len) in lens {
            files.insert(name, FileData::new(len as usize, chunk_bytes));
        }
        for ((name, index), chunk) in chunks {
            let Some(file) = files.get_mut(&name) else {
                continue;
            };
            let start = (index as usize).saturating_mul(chunk_bytes);
            let end = start.saturating_add(chunk.len()).min(file.bytes.len());
            if start < end {
                file.bytes[start..end].copy_from_slice(&chunk[..end - start]);
            }
        }
        let (mut shared, mut stored) = (BTreeMap::new(), BTreeMap::new());
        for (name, file) in files {
            stored.insert(name.clone(), file.chunks());
            shared.insert(name, Arc::new(RwLock::new(file)));
        }
        ChunkedStorage {
            inner: Arc::new(Inner {
                location,
                chunk: chunk_bytes,
                files: Mutex::new(shared),
                stored: Mutex::new(stored),
                fresh: Mutex::new(BTreeSet::new()),
                locked: LockFlag::default(),
                space: Mutex::new(None),
            }),
        }
    }

    /// Whether anything was written since the last commit.
    ///
    /// ```
    /// use grape_vector_db::storage::{ChunkedStorage, MemoryChunkStore};
    /// let files = ChunkedStorage::open_in(&MemoryChunkStore::default())?;
    /// assert!(!files.has_changes());
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn has_changes(&self) -> bool {
        let inner = &self.inner;
        let files = inner.files.lock();
        !inner.fresh.lock().is_empty()
            || files.values().any(|f| !f.read().dirty.is_empty())
            || inner.stored.lock().keys().any(|n| !files.contains_key(n))
    }

    /// Everything that changed since the last commit, as ops to apply at once. The state is
    /// taken in this one synchronous stretch, so the commit holds exactly this moment's files.
    /// Pass the plan back to [`Self::committed`] or [`Self::commit_failed`].
    pub(crate) fn plan_commit(&self) -> CommitPlan {
        let inner = &self.inner;
        let fresh = std::mem::take(&mut *inner.fresh.lock());
        let files = inner.files.lock().clone();
        let stored = inner.stored.lock().clone();
        let mut new_stored = stored.clone();
        let mut ops = Vec::new();
        let mut taken = Vec::new();
        for (name, file) in &files {
            let mut data = file.write();
            let count = data.chunks();
            let old = stored.get(name).copied();
            let whole = fresh.contains(name) || old.is_none();
            let dirty = std::mem::take(&mut data.dirty);
            if !whole && dirty.is_empty() && old == Some(count) {
                continue;
            }
            let to_write: Vec<u32> = if whole {
                (0..count).collect()
            } else {
                dirty.iter().copied().filter(|&c| c < count).collect()
            };
            taken.push((file.clone(), dirty));
            for index in to_write {
                let start = index as usize * data.chunk;
                let end = (start + data.chunk).min(data.bytes.len());
                ops.push(ChunkOp::PutChunk {
                    file: name.clone(),
                    index,
                    bytes: data.bytes[start..end].to_vec(),
                });
            }
            for index in count..old.unwrap_or(0).max(count) {
                ops.push(ChunkOp::DeleteChunk {
                    file: name.clone(),
                    index,
                });
            }
            ops.push(ChunkOp::PutLen {
                file: name.clone(),
                len: data.bytes.len() as u64,
            });
            new_stored.insert(name.clone(), count);
        }
        for (name, &count) in &stored {
            if !files.contains_key(name) {
                for index in 0..count {
                    ops.push(ChunkOp::DeleteChunk {
                        file: name.clone(),
                        index,
                    });
                }
                ops.push(ChunkOp::DeleteFile { file: name.clone() });
                new_stored.remove(name);
            }
        }
        CommitPlan {
            ops,
            fresh,
            taken,
            stored: new_stored,
        }
    }

    /// The store applied `plan`: it now holds these files.
    pub(crate) fn committed(&self, plan: CommitPlan) {
        *self.inner.stored.lock() = plan.stored;
    }

    /// The store did not apply `plan` (it keeps the previous commit): its changes stay pending
    /// for the next commit.
    pub(crate) fn commit_failed(&self, plan: CommitPlan) {
        self.inner.fresh.lock().extend(plan.fresh);
        for (file, dirty) in plan.taken {
            file.write().dirty.extend(dirty);
        }
    }

    /// Loads the files a [`MemoryChunkStore`] holds.
    ///
    /// ```
    /// use grape_vector_db::storage::{ChunkedStorage, MemoryChunkStore, Storage};
    /// let files = ChunkedStorage::open_in(&MemoryChunkStore::default())?;
    /// assert!(files.list()?.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open_in(store: &MemoryChunkStore) -> Result<ChunkedStorage> {
        let state = store.state.lock();
        Ok(Self::load(
            "memory chunk store".to_owned(),
            store.chunk,
            &mut state.lens.iter().map(|(name, len)| (name.clone(), *len)),
            &mut state.chunks.iter().map(|(k, v)| (k.clone(), v.clone())),
        ))
    }

    /// Commits every change since the last commit to `store`, atomically. If the store refuses
    /// it, it keeps the previous commit and the changes stay pending for the next attempt.
    ///
    /// ```
    /// use grape_vector_db::storage::{ChunkedStorage, MemoryChunkStore, OpenMode, Storage};
    /// let store = MemoryChunkStore::default();
    /// let files = ChunkedStorage::open_in(&store)?;
    /// files.open("a", OpenMode::CreateIfMissing)?.write_at(0, b"x")?;
    /// store.fail_commits(1);
    /// assert!(files.commit_to(&store).is_err());
    /// files.commit_to(&store)?;
    /// assert_eq!(ChunkedStorage::open_in(&store)?.list()?, vec!["a".to_string()]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn commit_to(&self, store: &MemoryChunkStore) -> Result<()> {
        let plan = self.plan_commit();
        match store.apply(&plan.ops) {
            Ok(()) => {
                self.committed(plan);
                Ok(())
            }
            Err(e) => {
                self.commit_failed(plan);
                Err(super::io_error("commit to", "memory chunk store")(e))
            }
        }
    }

    /// Records the latest free-space figures, which [`Storage::space`] returns.
    pub fn set_space(&self, space: Option<StorageSpace>) {
        *self.inner.space.lock() = space;
    }

    fn file(&self, name: &str) -> io::Result<SharedFile> {
        self.inner
            .files
            .lock()
            .get(name)
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no file {name}")))
    }
}

/// A store of chunks in memory that applies a commit atomically, or refuses it whole: what
/// IndexedDB is to the browser backend, for tests.
///
/// ```
/// use grape_vector_db::storage::MemoryChunkStore;
/// let store = MemoryChunkStore::default();
/// store.fail_commits(2); // the next two commits fail, as on a full quota
/// ```
#[derive(Clone)]
pub struct MemoryChunkStore {
    state: Arc<Mutex<ChunkState>>,
    chunk: usize,
}

impl Default for MemoryChunkStore {
    /// A store with IndexedDB's chunks of 256 KiB.
    fn default() -> Self {
        Self::with_chunk_bytes(CHUNK)
    }
}

#[derive(Default)]
struct ChunkState {
    lens: BTreeMap<String, u64>,
    chunks: BTreeMap<(String, u32), Vec<u8>>,
    /// Commits still to refuse.
    failing: usize,
}

impl MemoryChunkStore {
    /// A store whose files are cut into chunks of `bytes` (small ones make tests cross chunk
    /// boundaries often).
    ///
    /// ```
    /// use grape_vector_db::storage::{ChunkedStorage, MemoryChunkStore, OpenMode, Storage};
    /// let store = MemoryChunkStore::with_chunk_bytes(3);
    /// let files = ChunkedStorage::open_in(&store)?;
    /// files.open("a", OpenMode::CreateIfMissing)?.write_at(0, b"1234567")?;
    /// files.commit_to(&store)?;
    /// assert_eq!(&*ChunkedStorage::open_in(&store)?.read_all("a")?, b"1234567");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_chunk_bytes(bytes: usize) -> MemoryChunkStore {
        MemoryChunkStore {
            state: Arc::default(),
            chunk: bytes.max(1),
        }
    }

    /// An independent copy of what the store holds (not of its pending failures).
    ///
    /// ```
    /// use grape_vector_db::storage::{ChunkedStorage, MemoryChunkStore, OpenMode, Storage};
    /// let store = MemoryChunkStore::default();
    /// let copy = store.fork();
    /// let files = ChunkedStorage::open_in(&copy)?;
    /// files.open("a", OpenMode::CreateIfMissing)?;
    /// files.commit_to(&copy)?;
    /// assert!(ChunkedStorage::open_in(&store)?.list()?.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn fork(&self) -> MemoryChunkStore {
        let state = self.state.lock();
        MemoryChunkStore {
            state: Arc::new(Mutex::new(ChunkState {
                lens: state.lens.clone(),
                chunks: state.chunks.clone(),
                failing: 0,
            })),
            chunk: self.chunk,
        }
    }

    /// Makes the next `n` commits fail (with `StorageFull`, as a full quota does).
    pub fn fail_commits(&self, n: usize) {
        self.state.lock().failing = n;
    }

    fn apply(&self, ops: &[ChunkOp]) -> io::Result<()> {
        let mut state = self.state.lock();
        if state.failing > 0 {
            state.failing -= 1;
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "the chunk store refused the commit",
            ));
        }
        for op in ops {
            match op {
                ChunkOp::PutChunk { file, index, bytes } => {
                    state.chunks.insert((file.clone(), *index), bytes.clone());
                }
                ChunkOp::DeleteChunk { file, index } => {
                    state.chunks.remove(&(file.clone(), *index));
                }
                ChunkOp::PutLen { file, len } => {
                    state.lens.insert(file.clone(), *len);
                }
                ChunkOp::DeleteFile { file } => {
                    state.lens.remove(file);
                }
            }
        }
        Ok(())
    }
}

struct ChunkedFile(SharedFile);

impl StorageFile for ChunkedFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.read().bytes.len() as u64)
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        super::read_in(&self.0.read().bytes, offset, buf)
    }
    fn write_at(&self, offset: u64, src: &[u8]) -> io::Result<()> {
        let mut data = self.0.write();
        let start = usize::try_from(offset).map_err(|_| io::ErrorKind::InvalidInput)?;
        let end = start + src.len();
        if data.bytes.len() < end {
            data.bytes.resize(end, 0);
        }
        data.bytes[start..end].copy_from_slice(src);
        data.touch(start, end);
        Ok(())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        let len = usize::try_from(len).map_err(|_| io::ErrorKind::InvalidInput)?;
        let mut data = self.0.write();
        let old = data.bytes.len();
        data.bytes.resize(len, 0);
        // The chunk holding the new end changes; whole chunks past it are deleted by count.
        data.touch(old.min(len).saturating_sub(1), old.max(len));
        Ok(())
    }
    fn sync(&self) -> io::Result<()> {
        // Durable at the next commit.
        Ok(())
    }
}

impl Storage for ChunkedStorage {
    fn open(&self, name: &str, mode: OpenMode) -> io::Result<Box<dyn StorageFile>> {
        let file = if mode == OpenMode::CreateIfMissing {
            let mut files = self.inner.files.lock();
            files
                .entry(name.to_owned())
                .or_insert_with(|| {
                    self.inner.fresh.lock().insert(name.to_owned());
                    Arc::new(RwLock::new(FileData::new(0, self.inner.chunk)))
                })
                .clone()
        } else {
            self.file(name)?
        };
        Ok(Box::new(ChunkedFile(file)))
    }

    fn read_all(&self, name: &str) -> io::Result<Bytes> {
        Ok(Bytes::copy_aligned(&self.file(name)?.read().bytes))
    }

    fn list(&self) -> io::Result<Vec<String>> {
        Ok(self.inner.files.lock().keys().cloned().collect())
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        self.inner.files.lock().remove(name);
        self.inner.fresh.lock().remove(name);
        Ok(())
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let mut files = self.inner.files.lock();
        let file = files
            .remove(from)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no file {from}")))?;
        files.insert(to.to_owned(), file);
        let mut fresh = self.inner.fresh.lock();
        fresh.remove(from);
        fresh.insert(to.to_owned());
        Ok(())
    }

    fn sync_dir(&self) -> io::Result<()> {
        Ok(())
    }

    fn lock(&self) -> Result<Box<dyn Send + Sync>> {
        self.inner.locked.take(self.location())
    }

    fn location(&self) -> String {
        self.inner.location.clone()
    }

    fn space(&self) -> io::Result<Option<StorageSpace>> {
        Ok(*self.inner.space.lock())
    }
}
