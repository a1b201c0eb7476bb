//! A storage backend that fails or stalls on command, wrapping `MemoryStorage`: how tests cause
//! full disks, failed fsyncs, failed reads, read-only media and writes that hang.

use grape_vector_db::storage::OpenMode;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex};

use grape_vector_db::storage::{Bytes, MemoryStorage, Storage, StorageFile, StorageSpace};

#[derive(Clone, Default)]
pub struct FaultyStorage {
    pub inner: MemoryStorage,
    /// Writes tear (half lands) and fail as on a full disk.
    pub fail_writes: Arc<AtomicBool>,
    /// fsync fails.
    pub fail_syncs: Arc<AtomicBool>,
    /// Writes fail with `PermissionDenied`, writing nothing.
    pub read_only: Arc<AtomicBool>,
    /// Positional reads fail as on a failing disk (whole-file reads still succeed).
    pub fail_reads: Arc<AtomicBool>,
    /// Positional reads so far.
    pub reads: Arc<AtomicUsize>,
    /// While set, writes wait (see `stall_writes`).
    stall: Arc<(Mutex<bool>, Condvar)>,
    /// Writes waiting on the stall now.
    pub stalled: Arc<AtomicUsize>,
}

struct FaultyFile {
    inner: Box<dyn StorageFile>,
    storage: FaultyStorage,
}

fn full() -> io::Error {
    io::Error::new(
        io::ErrorKind::StorageFull,
        "no space left (simulated by the test)",
    )
}

impl FaultyStorage {
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every write wait until `stall_writes(false)`.
    pub fn stall_writes(&self, on: bool) {
        let (lock, cvar) = &*self.stall;
        *lock.lock().unwrap() = on;
        cvar.notify_all();
    }

    fn before_write(&self) -> io::Result<()> {
        let (lock, cvar) = &*self.stall;
        self.stalled.fetch_add(1, SeqCst);
        let _released = cvar.wait_while(lock.lock().unwrap(), |stalled| *stalled);
        self.stalled.fetch_sub(1, SeqCst);
        if self.read_only.load(SeqCst) {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "read-only file system (simulated by the test)",
            ));
        }
        Ok(())
    }
}

impl StorageFile for FaultyFile {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.storage.reads.fetch_add(1, SeqCst);
        if self.storage.fail_reads.load(SeqCst) {
            return Err(io::Error::other(
                "input/output error (simulated by the test)",
            ));
        }
        self.inner.read_at(offset, buf)
    }
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.storage.before_write()?;
        if self.storage.fail_writes.load(SeqCst) {
            // A torn write: half of it lands, then the error.
            self.inner.write_at(offset, &data[..data.len() / 2])?;
            return Err(full());
        }
        self.inner.write_at(offset, data)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
    fn sync(&self) -> io::Result<()> {
        if self.storage.fail_syncs.load(SeqCst) {
            return Err(io::Error::other("fsync failed (simulated by the test)"));
        }
        self.inner.sync()
    }
}

impl Storage for FaultyStorage {
    fn open(&self, name: &str, mode: OpenMode) -> io::Result<Box<dyn StorageFile>> {
        if mode == OpenMode::CreateIfMissing && self.read_only.load(SeqCst) {
            self.before_write()?;
        }
        Ok(Box::new(FaultyFile {
            inner: self.inner.open(name, mode)?,
            storage: self.clone(),
        }))
    }
    fn read_all(&self, name: &str) -> io::Result<Bytes> {
        self.inner.read_all(name)
    }
    fn list(&self) -> io::Result<Vec<String>> {
        self.inner.list()
    }
    fn remove(&self, name: &str) -> io::Result<()> {
        self.inner.remove(name)
    }
    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn sync_dir(&self) -> io::Result<()> {
        self.inner.sync_dir()
    }
    fn lock(&self) -> grape_vector_db::Result<Box<dyn Send + Sync>> {
        self.inner.lock()
    }
    fn location(&self) -> String {
        "faulty test storage".into()
    }
    fn space(&self) -> io::Result<Option<StorageSpace>> {
        self.inner.space()
    }
}
