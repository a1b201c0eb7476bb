//! In-memory backend: for tests, and for databases that need no persistence.

use crate::storage::OpenMode;
use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use super::{Bytes, LockFlag, Storage, StorageFile, StorageSpace};
use crate::error::Result;

type SharedFile = Arc<RwLock<Vec<u8>>>;

/// A directory held in memory. Clones share the same files, so a test can close a database and
/// open it again from the same `MemoryStorage`.
///
/// ```
/// use grape_vector_db::storage::{MemoryStorage, OpenMode, Storage};
/// let a = MemoryStorage::new();
/// let b = a.clone();
/// a.open("f", OpenMode::CreateIfMissing)?.write_at(0, b"x")?;
/// assert_eq!(b.list()?, vec!["f".to_string()]);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Default)]
pub struct MemoryStorage {
    files: Arc<Mutex<BTreeMap<String, SharedFile>>>,
    locked: LockFlag,
    quota: Arc<Quota>,
}

/// Bytes held by all files, and the most they may hold.
#[derive(Default)]
struct Quota {
    limit: Option<u64>,
    used: AtomicU64,
}

impl Quota {
    /// Accounts a file growing from `old` to `new` bytes, or fails like a full disk.
    fn resize(&self, old: usize, new: usize) -> io::Result<()> {
        let (old, new) = (old as u64, new as u64);
        if new <= old {
            self.used.fetch_sub(old - new, Ordering::AcqRel);
            return Ok(());
        }
        let grow = new - old;
        let limit = self.limit.unwrap_or(u64::MAX);
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(grow).filter(|&u| u <= limit)
            })
            .map(drop)
            .map_err(|used| {
                io::Error::new(
                    io::ErrorKind::StorageFull,
                    format!("quota of {limit} bytes exceeded ({used} used, {grow} more asked)"),
                )
            })
    }
}

impl MemoryStorage {
    /// An empty directory.
    ///
    /// ```
    /// use grape_vector_db::storage::{MemoryStorage, Storage};
    /// assert!(MemoryStorage::new().list().unwrap().is_empty());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty directory that holds at most `bytes` in all its files: writes beyond fail as on
    /// a full disk (`ErrorKind::StorageFull`), like a browser storage quota.
    ///
    /// ```
    /// use grape_vector_db::storage::{MemoryStorage, OpenMode, Storage};
    /// let dir = MemoryStorage::with_quota(4);
    /// let f = dir.open("f", OpenMode::CreateIfMissing)?;
    /// f.write_at(0, b"abcd")?;
    /// assert_eq!(f.write_at(4, b"e").unwrap_err().kind(), std::io::ErrorKind::StorageFull);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn with_quota(bytes: u64) -> Self {
        MemoryStorage {
            quota: Arc::new(Quota {
                limit: Some(bytes),
                used: AtomicU64::new(0),
            }),
            ..Self::default()
        }
    }

    fn get(&self, name: &str) -> io::Result<SharedFile> {
        self.files
            .lock()
            .get(name)
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no file {name}")))
    }
}

struct MemoryFile(SharedFile, Arc<Quota>);

impl StorageFile for MemoryFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.read().len() as u64)
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        super::read_in(&self.0.read(), offset, buf)
    }

    fn write_at(&self, offset: u64, src: &[u8]) -> io::Result<()> {
        let mut data = self.0.write();
        let start = usize::try_from(offset).map_err(|_| io::ErrorKind::InvalidInput)?;
        let end = start + src.len();
        if data.len() < end {
            self.1.resize(data.len(), end)?;
            data.resize(end, 0);
        }
        data[start..end].copy_from_slice(src);
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let len = usize::try_from(len).map_err(|_| io::ErrorKind::InvalidInput)?;
        let mut data = self.0.write();
        self.1.resize(data.len(), len)?;
        data.resize(len, 0);
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        Ok(())
    }
}

impl Storage for MemoryStorage {
    fn open(&self, name: &str, mode: OpenMode) -> io::Result<Box<dyn StorageFile>> {
        let file = if mode == OpenMode::CreateIfMissing {
            self.files
                .lock()
                .entry(name.to_owned())
                .or_default()
                .clone()
        } else {
            self.get(name)?
        };
        Ok(Box::new(MemoryFile(file, self.quota.clone())))
    }

    fn read_all(&self, name: &str) -> io::Result<Bytes> {
        Ok(Bytes::copy_aligned(&self.get(name)?.read()))
    }

    fn list(&self) -> io::Result<Vec<String>> {
        Ok(self.files.lock().keys().cloned().collect())
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        if let Some(file) = self.files.lock().remove(name) {
            // Open handles keep the bytes alive, but they no longer count, as on a disk.
            self.quota.resize(file.read().len(), 0)?;
        }
        Ok(())
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let mut files = self.files.lock();
        let file = files
            .remove(from)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no file {from}")))?;
        if let Some(replaced) = files.insert(to.to_owned(), file) {
            self.quota.resize(replaced.read().len(), 0)?;
        }
        Ok(())
    }

    fn sync_dir(&self) -> io::Result<()> {
        Ok(())
    }

    fn lock(&self) -> Result<Box<dyn Send + Sync>> {
        self.locked.take(self.location())
    }

    fn location(&self) -> String {
        "memory storage".to_owned()
    }

    fn space(&self) -> io::Result<Option<StorageSpace>> {
        Ok(self.quota.limit.map(|total| StorageSpace {
            total,
            free: total.saturating_sub(self.quota.used.load(Ordering::Acquire)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_file_reads_start_on_a_cache_line() {
        // Segments lay vectors out on cache lines; a misaligned read made every vector span one
        // more line (browser search about 5% slower).
        let dir = MemoryStorage::new();
        for len in [0usize, 1, 63, 64, 65, 1000, 4096 + 3] {
            let name = format!("f{len}");
            dir.open(&name, OpenMode::CreateIfMissing)
                .unwrap()
                .write_at(0, &vec![9u8; len])
                .unwrap();
            let bytes = dir.read_all(&name).unwrap();
            assert_eq!(bytes.len(), len);
            assert!(bytes.iter().all(|&b| b == 9));
            if len > 0 {
                assert_eq!(bytes.as_ptr() as usize % 64, 0, "length {len}");
            }
        }
    }
}
