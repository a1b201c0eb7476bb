//! A directory of named files kept in a pool of numbered blobs, mapped by a double-buffered
//! directory file: the layout of the OPFS backend, written against [`StorageFile`] so the same
//! code runs natively (over any [`Storage`]) under the crash-state explorer and fault injection.
//!
//! Creating, renaming and deleting OPFS files are asynchronous, but the storage trait (and the
//! format code above it) is synchronous. So the pool's blobs (`blob-0`, `blob-1`, ...) are
//! opened ahead, and a small *directory file* maps the database's file names onto them.
//! Creating a file takes a spare blob, renaming or removing one rewrites the directory. The
//! directory is written as two alternating 4 KiB slots, each with a sequence number and a
//! CRC32C, so a torn write leaves the other, older slot valid: a rename (the manifest's commit
//! point) is atomic. Removed files go back to the pool, so checkpoints reuse the same blobs.

use crate::storage::OpenMode;
use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;

use parking_lot::Mutex;

use super::{Bytes, LockFlag, Storage, StorageFile, StorageSpace};
use crate::error::Result;

/// Name of the directory file beside the blobs.
pub(crate) const DIR_FILE: &str = "directory";
const SLOT: usize = 4096;
const MAGIC: &[u8; 8] = b"GRAPEDIR";
/// Spare blobs opened with the database. Creating a database takes two (log, manifest); a
/// checkpoint takes three (segment, next log, manifest) before it frees three (the old segment,
/// log and manifest), and a health probe one more for a moment: eight leave room for all of it,
/// and the pool then stays level however many checkpoints run (tested).
const SPARES: usize = 8;

/// Name of blob `n` beside the directory file.
pub(crate) fn blob_name(n: u32) -> String {
    format!("blob-{n}")
}

/// A shared handle to one blob (or the directory file).
pub(crate) type Handle = Arc<dyn StorageFile>;

/// What the directory file says, read before the blobs are opened.
pub(crate) struct Layout {
    /// Database file name -> blob number.
    files: BTreeMap<String, u32>,
    seq: u64,
}

impl Layout {
    /// Reads the newest valid slot of `dir_file` (empty when there is none).
    pub fn read(dir_file: &dyn StorageFile) -> io::Result<Layout> {
        let mut slots = vec![0u8; 2 * SLOT];
        if dir_file.len()? >= slots.len() as u64 {
            dir_file.read_at(0, &mut slots)?;
        }
        let (seq, files) = [decode_slot(&slots[..SLOT]), decode_slot(&slots[SLOT..])]
            .into_iter()
            .flatten()
            .max_by_key(|(seq, _)| *seq)
            .unwrap_or_default();
        Ok(Layout { files, seq })
    }

    /// The blobs to open: every one in use, and as spares the lowest free numbers.
    pub fn blobs(&self) -> Vec<u32> {
        let used: Vec<u32> = self.files.values().copied().collect();
        let spares = (0..).filter(|n| !used.contains(n)).take(SPARES);
        let mut all: Vec<u32> = used.iter().copied().chain(spares).collect();
        all.sort_unstable();
        all.dedup();
        all
    }
}

/// Files in a pool of blobs (see the module docs). In the browser this is `OpfsStorage`, the
/// pool in OPFS files; natively, [`PooledStorage::open_in`] keeps the pool in another storage,
/// which is how the tests run the browser's logic under power loss and failed I/O.
///
/// ```
/// use grape_vector_db::storage::{MemoryStorage, OpenMode, PooledStorage, Storage};
/// let backing = MemoryStorage::new();
/// let pool = PooledStorage::open_in(&backing)?;
/// pool.open("MANIFEST.tmp", OpenMode::CreateIfMissing)?.write_at(0, b"m")?;
/// pool.rename("MANIFEST.tmp", "MANIFEST")?;
/// assert_eq!(pool.list()?, vec!["MANIFEST".to_string()]);
/// drop(pool);
/// let again = PooledStorage::open_in(&backing)?;
/// assert_eq!(&*again.read_all("MANIFEST")?, b"m");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct PooledStorage {
    inner: Arc<Inner>,
}

struct Inner {
    location: String,
    dir_file: Handle,
    state: Mutex<DirState>,
    locked: LockFlag,
    space: Mutex<Option<StorageSpace>>,
}

struct DirState {
    /// Database file name -> blob number.
    files: BTreeMap<String, u32>,
    /// Every open blob handle, by number.
    blobs: BTreeMap<u32, Handle>,
    spare: Vec<u32>,
    seq: u64,
}

/// Encodes a directory slot: magic, sequence, count, entries (name length, name, blob), CRC.
fn encode_slot(seq: u64, files: &BTreeMap<String, u32>) -> io::Result<Vec<u8>> {
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&(files.len() as u32).to_le_bytes());
    for (name, blob) in files {
        out.push(u8::try_from(name.len()).map_err(|_| io::ErrorKind::InvalidInput)?);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&blob.to_le_bytes());
    }
    let crc = crate::checksum::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    if out.len() > SLOT {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "too many files for the directory of the blob pool",
        ));
    }
    out.resize(SLOT, 0);
    Ok(out)
}

/// Decodes a slot; `None` if it is empty, torn or damaged.
fn decode_slot(slot: &[u8]) -> Option<(u64, BTreeMap<String, u32>)> {
    if slot.get(..8)? != MAGIC {
        return None;
    }
    let seq = u64::from_le_bytes(slot.get(8..16)?.try_into().ok()?);
    let count = u32::from_le_bytes(slot.get(16..20)?.try_into().ok()?);
    let mut at = 20;
    let mut files = BTreeMap::new();
    for _ in 0..count {
        let len = *slot.get(at)? as usize;
        let name = std::str::from_utf8(slot.get(at + 1..at + 1 + len)?).ok()?;
        let blob = u32::from_le_bytes(slot.get(at + 1 + len..at + 5 + len)?.try_into().ok()?);
        files.insert(name.to_owned(), blob);
        at += 5 + len;
    }
    let crc = u32::from_le_bytes(slot.get(at..at + 4)?.try_into().ok()?);
    (crate::checksum::crc32c(&slot[..at]) == crc).then_some((seq, files))
}

impl PooledStorage {
    /// Builds the pool from the directory file and a handle to every blob of
    /// [`Layout::blobs`]. Spare blobs are emptied: orphans of an interrupted operation, whose
    /// bytes mean nothing now.
    pub(crate) fn assemble(
        location: String,
        dir_file: Handle,
        layout: Layout,
        mut blobs: BTreeMap<u32, Handle>,
    ) -> io::Result<PooledStorage> {
        let used: Vec<u32> = layout.files.values().copied().collect();
        let mut spare = Vec::new();
        for n in layout.blobs() {
            let handle = blobs.get(&n).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{} not open", blob_name(n)),
                )
            })?;
            if !used.contains(&n) {
                handle.set_len(0)?;
                spare.push(n);
            }
        }
        blobs.retain(|n, _| used.contains(n) || spare.contains(n));
        Ok(PooledStorage {
            inner: Arc::new(Inner {
                location,
                dir_file,
                state: Mutex::new(DirState {
                    files: layout.files,
                    blobs,
                    spare,
                    seq: layout.seq,
                }),
                locked: LockFlag::default(),
                space: Mutex::new(None),
            }),
        })
    }

    /// Opens (creating it if needed) a pool kept as files of `backing`: `directory` and
    /// `blob-<n>`. The created files' names are made durable at once (`sync_dir`), as OPFS
    /// does when its asynchronous creation completes.
    ///
    /// ```
    /// use grape_vector_db::storage::{MemoryStorage, PooledStorage, Storage};
    /// let backing = MemoryStorage::new();
    /// PooledStorage::open_in(&backing)?;
    /// assert!(backing.list()?.contains(&"directory".to_string()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open_in(backing: &dyn Storage) -> Result<PooledStorage> {
        let location = format!("blob pool in {}", backing.location());
        use super::io_error as io;
        let dir_file: Handle = backing
            .open(DIR_FILE, OpenMode::CreateIfMissing)
            .map_err(io("open", DIR_FILE))?
            .into();
        let layout = Layout::read(&*dir_file).map_err(io("read", DIR_FILE))?;
        let mut blobs = BTreeMap::new();
        for n in layout.blobs() {
            let name = blob_name(n);
            let handle: Handle = backing
                .open(&name, OpenMode::CreateIfMissing)
                .map_err(io("open", &name))?
                .into();
            blobs.insert(n, handle);
        }
        backing
            .sync_dir()
            .map_err(io("sync", &backing.location()))?;
        Self::assemble(location, dir_file, layout, blobs).map_err(io("open", "blob pool"))
    }

    /// Records the latest free-space figures, which [`Storage::space`] returns (the browser's
    /// `navigator.storage.estimate()` is asynchronous, the trait is not).
    pub fn set_space(&self, space: Option<StorageSpace>) {
        *self.inner.space.lock() = space;
    }

    /// Writes the directory into the older slot and flushes: the commit point of a change.
    fn write_dir(&self, state: &mut DirState) -> io::Result<()> {
        let seq = state.seq + 1;
        let slot = encode_slot(seq, &state.files)?;
        let at = (seq % 2) * SLOT as u64;
        self.inner.dir_file.write_at(at, &slot)?;
        self.inner.dir_file.sync()?;
        state.seq = seq;
        Ok(())
    }

    /// Returns a blob to the pool, emptied, or left as it is while a handle to the removed
    /// file is still open: as on a disk, a file removed stays readable through the handles
    /// open on it (an engine reads the vectors of the segment it was opened over until it is
    /// swapped for one over the next), and the blob is emptied when it is taken again.
    fn release(state: &mut DirState, blob: u32) -> io::Result<()> {
        if !Self::in_use(state, blob) {
            state.blobs[&blob].set_len(0)?;
        }
        state.spare.push(blob);
        Ok(())
    }

    /// Whether a handle other than the pool's is open on `blob`.
    fn in_use(state: &DirState, blob: u32) -> bool {
        Arc::strong_count(&state.blobs[&blob]) > 1
    }

    /// A spare blob on which no handle is open, emptied, taken out of the spares.
    fn take_spare(state: &mut DirState) -> io::Result<u32> {
        let Some(at) = state.spare.iter().rposition(|&b| !Self::in_use(state, b)) else {
            return Err(io::Error::other(
                "no spare blob open in the pool; reopen the database",
            ));
        };
        let blob = state.spare[at];
        // Emptied now if it was released while in use.
        if state.blobs[&blob].len()? > 0 {
            state.blobs[&blob].set_len(0)?;
        }
        state.spare.remove(at);
        Ok(blob)
    }
}

/// A file of the pool: its blob's handle.
struct PooledFile(Handle);

impl StorageFile for PooledFile {
    fn len(&self) -> io::Result<u64> {
        self.0.len()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.0.read_at(offset, buf)
    }
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.0.write_at(offset, data)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn sync(&self) -> io::Result<()> {
        self.0.sync()
    }
}

impl Storage for PooledStorage {
    fn open(&self, name: &str, mode: OpenMode) -> io::Result<Box<dyn StorageFile>> {
        let mut state = self.inner.state.lock();
        let blob = match state.files.get(name) {
            Some(&b) => b,
            None if mode == OpenMode::CreateIfMissing => {
                let b = Self::take_spare(&mut state)?;
                state.files.insert(name.to_owned(), b);
                if let Err(e) = self.write_dir(&mut state) {
                    state.files.remove(name);
                    state.spare.push(b);
                    return Err(e);
                }
                b
            }
            None => {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("no file {name}"),
                ))
            }
        };
        Ok(Box::new(PooledFile(state.blobs[&blob].clone())))
    }

    fn read_all(&self, name: &str) -> io::Result<Bytes> {
        let file = self.open(name, OpenMode::Existing)?;
        Bytes::read_aligned(file.len()? as usize, |buf| file.read_at(0, buf))
    }

    fn list(&self) -> io::Result<Vec<String>> {
        Ok(self.inner.state.lock().files.keys().cloned().collect())
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        let mut state = self.inner.state.lock();
        let Some(blob) = state.files.remove(name) else {
            return Ok(());
        };
        if let Err(e) = self.write_dir(&mut state) {
            state.files.insert(name.to_owned(), blob);
            return Err(e);
        }
        Self::release(&mut state, blob)
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let mut state = self.inner.state.lock();
        let Some(blob) = state.files.remove(from) else {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no file {from}"),
            ));
        };
        let replaced = state.files.insert(to.to_owned(), blob);
        if let Err(e) = self.write_dir(&mut state) {
            match replaced {
                Some(old) => state.files.insert(to.to_owned(), old),
                None => state.files.remove(to),
            };
            state.files.insert(from.to_owned(), blob);
            return Err(e);
        }
        match replaced {
            Some(old) => Self::release(&mut state, old),
            None => Ok(()),
        }
    }

    fn sync_dir(&self) -> io::Result<()> {
        // Every directory change was flushed as it was made.
        Ok(())
    }

    fn lock(&self) -> Result<Box<dyn Send + Sync>> {
        // In the browser, other tabs and workers are kept out by OPFS itself (one sync handle
        // per file) and by the facade's Web Lock; this flag keeps out a second open here.
        self.inner.locked.take(self.location())
    }

    fn location(&self) -> String {
        self.inner.location.clone()
    }

    fn space(&self) -> io::Result<Option<StorageSpace>> {
        Ok(*self.inner.space.lock())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryStorage;

    #[test]
    fn directory_slots_round_trip_and_reject_damage() {
        let files: BTreeMap<String, u32> =
            [("MANIFEST".to_owned(), 3), ("wal-1.log".to_owned(), 0)].into();
        let slot = encode_slot(9, &files).unwrap();
        assert_eq!(decode_slot(&slot), Some((9, files)));
        let mut torn = slot.clone();
        torn[21] ^= 1;
        assert_eq!(decode_slot(&torn), None);
        assert_eq!(decode_slot(&[0u8; SLOT]), None);
    }

    #[test]
    fn a_torn_directory_write_leaves_the_previous_mapping() {
        let backing = MemoryStorage::new();
        let pool = PooledStorage::open_in(&backing).unwrap();
        pool.open("a", OpenMode::CreateIfMissing)
            .unwrap()
            .write_at(0, b"1")
            .unwrap();
        drop(pool);
        let dir = backing.open(DIR_FILE, OpenMode::Existing).unwrap();
        let before = backing.read_all(DIR_FILE).unwrap().to_vec();
        let pool = PooledStorage::open_in(&backing).unwrap();
        pool.rename("a", "b").unwrap();
        drop(pool);
        // Tear the slot the rename wrote: the older slot, naming "a", is used again.
        let after = backing.read_all(DIR_FILE).unwrap().to_vec();
        let changed = (0..2)
            .find(|&s| before[s * SLOT..(s + 1) * SLOT] != after[s * SLOT..(s + 1) * SLOT])
            .unwrap();
        dir.write_at((changed * SLOT + 10) as u64, &[0xAB; 8])
            .unwrap();
        let pool = PooledStorage::open_in(&backing).unwrap();
        assert_eq!(pool.list().unwrap(), vec!["a".to_string()]);
        assert_eq!(&*pool.read_all("a").unwrap(), b"1");
    }

    #[test]
    fn the_pool_stays_level_however_many_files_come_and_go() {
        let backing = MemoryStorage::new();
        let pool = PooledStorage::open_in(&backing).unwrap();
        for i in 0..100 {
            let name = format!("f{i}");
            pool.open(&name, OpenMode::CreateIfMissing)
                .unwrap()
                .write_at(0, b"x")
                .unwrap();
            pool.rename(&name, "current").unwrap();
        }
        drop(pool);
        let blobs = backing.list().unwrap().len() - 1;
        assert!(blobs <= SPARES + 1, "{blobs} blobs");
    }

    #[test]
    fn a_removed_file_stays_readable_while_a_handle_is_open_on_it() {
        let backing = MemoryStorage::new();
        let pool = PooledStorage::open_in(&backing).unwrap();
        let old = pool.open("seg-1", OpenMode::CreateIfMissing).unwrap();
        old.write_at(0, b"vectors").unwrap();
        pool.remove("seg-1").unwrap();
        // Files come and go meanwhile, more than there are spares: none takes the blob.
        for i in 0..3 * SPARES {
            let f = pool
                .open(&format!("f{i}"), OpenMode::CreateIfMissing)
                .unwrap();
            f.write_at(0, b"other bytes").unwrap();
            drop(f);
            pool.remove(&format!("f{i}")).unwrap();
        }
        let mut read = [0u8; 7];
        old.read_at(0, &mut read).unwrap();
        assert_eq!(&read, b"vectors");
        // Once the handle is gone, the blob is taken again, and emptied first.
        drop(old);
        let mut fresh = Vec::new();
        for i in 0..SPARES {
            let f = pool
                .open(&format!("g{i}"), OpenMode::CreateIfMissing)
                .unwrap();
            fresh.push(f.len().unwrap());
        }
        assert_eq!(fresh, vec![0; SPARES], "every blob taken was empty");
        assert!(pool.open("one more", OpenMode::CreateIfMissing).is_err());
    }
}
