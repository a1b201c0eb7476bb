//! The storage layer: a small positional-file trait and its backends.
//!
//! [`Storage`] is a directory of named files; [`StorageFile`] is one file, read and written at
//! offsets. Both are synchronous and map one to one onto native files and onto the browser's OPFS
//! `FileSystemSyncAccessHandle` (`read`/`write` at an offset, `truncate`, `getSize`, `flush`), so
//! the format code in `persist/` runs unchanged on every backend. Platform code lives only in the
//! backends: `FsStorage` (native files, memory-mapped reads, `flock`), [`MemoryStorage`]
//! (tests, and databases that need no persistence), and in the browser `OpfsStorage` (a
//! [`PooledStorage`] of OPFS files) and `IdbStorage` (a [`ChunkedStorage`] committed to
//! IndexedDB). The browser backends' logic is platform-free and runs natively in the tests.

use std::io;
use std::sync::Arc;

use crate::error::{Error, Result};

#[cfg(target_arch = "wasm32")]
mod browser;
pub(crate) mod chunked;
mod memory;
#[cfg(not(target_arch = "wasm32"))]
mod native;
mod owner;
pub(crate) mod pool;

pub use crate::bytes::Bytes;
#[cfg(target_arch = "wasm32")]
pub use browser::{is_node, IdbStorage, NodeFsStorage, OpfsStorage};
pub use chunked::{ChunkOp, ChunkedStorage, MemoryChunkStore};
pub use memory::MemoryStorage;
#[cfg(not(target_arch = "wasm32"))]
pub use native::FsStorage;
pub(crate) use owner::LOCK_FILE;
pub use pool::PooledStorage;

/// One file, accessed at byte offsets.
///
/// ```
/// use grape_vector_db::storage::{MemoryStorage, OpenMode, Storage};
/// let dir = MemoryStorage::new();
/// let f = dir.open("a", OpenMode::CreateIfMissing)?;
/// f.write_at(0, b"hello")?;
/// let mut buf = [0u8; 3];
/// f.read_at(1, &mut buf)?;
/// assert_eq!(&buf, b"ell");
/// assert_eq!(f.len()?, 5);
/// # Ok::<(), std::io::Error>(())
/// ```
pub trait StorageFile: Send + Sync {
    /// Current size in bytes.
    fn len(&self) -> io::Result<u64>;
    /// Whether the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Fills `buf` from `offset`; reading past the end is an `UnexpectedEof` error.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Writes all of `data` at `offset`, extending the file if needed.
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()>;
    /// Truncates or extends (with zeros) to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Makes everything written so far durable (fsync).
    fn sync(&self) -> io::Result<()>;
    /// Says that reads from now on land at random places, a row at a time (a database that
    /// keeps its vectors on disk re-scoring): a backend that reads ahead should stop, since
    /// what it would read ahead is never used and evicts cached pages that are. Advice only:
    /// the default does nothing.
    fn advise_random_reads(&self) {}
}

/// Whether [`Storage::open`] may create the file.
///
/// ```
/// use grape_vector_db::storage::{MemoryStorage, OpenMode, Storage};
/// let dir = MemoryStorage::new();
/// assert!(dir.open("log", OpenMode::Existing).is_err());
/// dir.open("log", OpenMode::CreateIfMissing)?.write_at(0, b"kept")?;
/// let again = dir.open("log", OpenMode::CreateIfMissing)?;
/// assert_eq!(again.len()?, 4, "an existing file is never truncated");
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// The file must exist (`NotFound` otherwise).
    Existing,
    /// The file is created empty if missing; an existing one is opened as it is.
    CreateIfMissing,
}

/// A directory of named files: where one database lives.
///
/// ```
/// use grape_vector_db::storage::{MemoryStorage, OpenMode, Storage};
/// let dir = MemoryStorage::new();
/// dir.open("x.tmp", OpenMode::CreateIfMissing)?.write_at(0, b"1")?;
/// dir.rename("x.tmp", "x")?;
/// assert_eq!(dir.list()?, vec!["x".to_string()]);
/// assert_eq!(&*dir.read_all("x")?, b"1");
/// # Ok::<(), std::io::Error>(())
/// ```
pub trait Storage: Send + Sync {
    /// Opens a file for reading and writing; `mode` says whether it may be created.
    fn open(&self, name: &str, mode: OpenMode) -> io::Result<Box<dyn StorageFile>>;
    /// The whole content of a file, without copying where the backend can (a memory map).
    /// The file must not change while the bytes are alive: only immutable files are read so.
    fn read_all(&self, name: &str) -> io::Result<Bytes>;
    /// Whether [`Storage::read_all`] maps files rather than copying them. A database that
    /// keeps its vectors on disk (`EmbeddedConfig::vectors_on_disk`) reads a segment whole
    /// where it is mapped, and otherwise reads every section but the vectors, so that they
    /// stay out of memory. `false` by default.
    ///
    /// ```
    /// use grape_vector_db::storage::{MemoryStorage, Storage};
    /// assert!(!MemoryStorage::new().maps_files());
    /// ```
    fn maps_files(&self) -> bool {
        false
    }
    /// Names of the files in the directory.
    fn list(&self) -> io::Result<Vec<String>>;
    /// Deletes a file; deleting a missing file is not an error.
    fn remove(&self, name: &str) -> io::Result<()>;
    /// Renames `from` to `to` atomically, replacing `to`; durable after [`Storage::sync_dir`].
    fn rename(&self, from: &str, to: &str) -> io::Result<()>;
    /// Makes creations, renames and removals durable (fsync of the directory).
    fn sync_dir(&self) -> io::Result<()>;
    /// Takes the exclusive lock on the directory, held until the guard is dropped (and released
    /// by the OS if the process dies). Fails with [`Error::AlreadyOpen`] if anyone holds it.
    fn lock(&self) -> Result<Box<dyn Send + Sync>>;
    /// Where the directory is, for messages.
    fn location(&self) -> String;
    /// Free and total bytes of the medium the directory is on, when the backend can tell
    /// (the health check's disk probe); `None` by default.
    fn space(&self) -> io::Result<Option<StorageSpace>> {
        Ok(None)
    }
}

/// Space on the medium that holds a [`Storage`].
///
/// ```
/// use grape_vector_db::storage::{MemoryStorage, OpenMode, Storage, StorageSpace};
/// let dir = MemoryStorage::with_quota(1000);
/// dir.open("f", OpenMode::CreateIfMissing)?.write_at(0, &[0u8; 100])?;
/// assert_eq!(dir.space()?, Some(StorageSpace { free: 900, total: 1000 }));
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StorageSpace {
    /// Bytes that can still be written.
    pub free: u64,
    /// Size of the medium (or quota).
    pub total: u64,
}

/// The lock of a backend that the operating system does not lock for us (memory, and the
/// browser's, where OPFS handles and a Web Lock keep other tabs out): a flag held by the guard.
#[derive(Clone, Default)]
pub(crate) struct LockFlag(Arc<std::sync::atomic::AtomicBool>);

impl LockFlag {
    /// Takes the flag, or fails with [`Error::AlreadyOpen`] naming `location`.
    pub fn take(&self, location: String) -> Result<Box<dyn Send + Sync>> {
        if self.0.swap(true, std::sync::atomic::Ordering::AcqRel) {
            return Err(Error::AlreadyOpen(location));
        }
        Ok(Box::new(HeldFlag(self.0.clone())))
    }
}

/// Releases a [`LockFlag`] when dropped.
struct HeldFlag(Arc<std::sync::atomic::AtomicBool>);

impl Drop for HeldFlag {
    fn drop(&mut self) {
        self.0.store(false, std::sync::atomic::Ordering::Release);
    }
}

/// Fills `buf` from `data` at `offset` (the bytes of an in-memory file); past the end is an
/// `UnexpectedEof` error, as for a file.
pub(crate) fn read_in(data: &[u8], offset: u64, buf: &mut [u8]) -> io::Result<()> {
    let start = usize::try_from(offset).unwrap_or(usize::MAX);
    let src = start
        .checked_add(buf.len())
        .and_then(|end| data.get(start..end))
        .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
    buf.copy_from_slice(src);
    Ok(())
}

/// Turns an I/O error into [`Error::Io`] (or [`Error::StorageFull`] for a full disk or quota)
/// naming the operation and the file.
pub(crate) fn io_error<'a>(
    op: &'static str,
    file: &'a str,
) -> impl FnOnce(io::Error) -> Error + 'a {
    move |e| Error::io(op, file, e)
}
