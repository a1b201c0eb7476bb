//! OPFS backend: the database's files in the origin-private file system, read and written
//! synchronously through `FileSystemSyncAccessHandle` (dedicated workers only).
//!
//! Creating, renaming and deleting OPFS files are asynchronous, but the storage trait (and the
//! format code above it) is synchronous. So the backend keeps a *pool* of OPFS files opened ahead
//! (`blob-0`, `blob-1`, ...), and a small *directory file* maps the database's file names onto
//! them. Creating a file takes a spare blob, renaming or removing one rewrites the directory.
//! The directory is written as two alternating 4 KiB slots, each with a sequence number and a
//! CRC32C, so a torn write leaves the other, older slot valid: a rename (the manifest's commit
//! point) is atomic. Removed files go back to the pool, so checkpoints reuse the same blobs.

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use wasm_bindgen::JsCast;
use web_sys::{
    FileSystemDirectoryHandle, FileSystemFileHandle, FileSystemGetDirectoryOptions,
    FileSystemGetFileOptions, FileSystemReadWriteOptions, FileSystemSyncAccessHandle,
};

use super::{js_io_error, wait, Js, SpaceCache};
use crate::error::{Error, Result};
use crate::storage::{Bytes, Storage, StorageFile, StorageSpace};

const DIR_FILE: &str = "directory";
const SLOT: usize = 4096;
const MAGIC: &[u8; 8] = b"GRAPEDIR";
/// Spare blobs opened with the database. Creating a database takes two (log, manifest); a
/// checkpoint takes three (segment, next log, manifest) before it frees three (the old segment,
/// log and manifest), and a health probe one more for a moment: eight leave room for all of it,
/// and the pool then stays level however many checkpoints run (tested).
const SPARES: usize = 8;

/// A database directory in OPFS (see the module docs).
#[derive(Clone)]
pub struct OpfsStorage {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    dir_file: Js<FileSystemSyncAccessHandle>,
    state: Mutex<DirState>,
    locked: AtomicBool,
    pub(super) space: SpaceCache,
}

struct DirState {
    /// Database file name -> blob number.
    files: BTreeMap<String, u32>,
    /// Every open blob handle, by number.
    blobs: BTreeMap<u32, Js<FileSystemSyncAccessHandle>>,
    spare: Vec<u32>,
    seq: u64,
}

impl Drop for Inner {
    /// Closes every handle, releasing OPFS's exclusive locks on the files.
    fn drop(&mut self) {
        for blob in self.state.get_mut().blobs.values() {
            blob.close();
        }
        self.dir_file.close();
    }
}

async fn sync_handle(
    dir: &FileSystemDirectoryHandle,
    name: &str,
) -> std::result::Result<FileSystemSyncAccessHandle, wasm_bindgen::JsValue> {
    let options = FileSystemGetFileOptions::new();
    options.set_create(true);
    let file: FileSystemFileHandle = wait(dir.get_file_handle_with_options(name, &options))
        .await?
        .unchecked_into();
    Ok(wait(file.create_sync_access_handle())
        .await?
        .unchecked_into())
}

fn read_exact(handle: &FileSystemSyncAccessHandle, offset: u64, buf: &mut [u8]) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let options = FileSystemReadWriteOptions::new();
        options.set_at((offset + done as u64) as f64);
        let n = handle
            .read_with_u8_array_and_options(&mut buf[done..], &options)
            .map_err(js_io_error)? as usize;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        done += n;
    }
    Ok(())
}

fn write_all(handle: &FileSystemSyncAccessHandle, offset: u64, data: &[u8]) -> io::Result<()> {
    let mut done = 0;
    while done < data.len() {
        let options = FileSystemReadWriteOptions::new();
        options.set_at((offset + done as u64) as f64);
        let n = handle
            .write_with_u8_array_and_options(&data[done..], &options)
            .map_err(js_io_error)? as usize;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "OPFS wrote nothing",
            ));
        }
        done += n;
    }
    Ok(())
}

fn size(handle: &FileSystemSyncAccessHandle) -> io::Result<u64> {
    Ok(handle.get_size().map_err(js_io_error)? as u64)
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
            "too many files for the OPFS directory",
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

impl OpfsStorage {
    /// Opens (creating if needed) the database directory `name` in OPFS and every file handle
    /// it needs. Fails with [`Error::AlreadyOpen`] when another tab or worker has it open
    /// (OPFS allows one synchronous handle per file).
    pub async fn open(name: &str) -> Result<OpfsStorage> {
        let io = |e| crate::storage::io_error("open OPFS directory", name)(js_io_error(e));
        let root = root_directory().await.map_err(io)?;
        let options = FileSystemGetDirectoryOptions::new();
        options.set_create(true);
        let dir: FileSystemDirectoryHandle =
            wait(root.get_directory_handle_with_options(&format!("grape-{name}"), &options))
                .await
                .map_err(io)?
                .unchecked_into();
        let dir_file = sync_handle(&dir, DIR_FILE).await.map_err(|e| {
            if super::exception_name(&e) == "NoModificationAllowedError" {
                Error::AlreadyOpen(format!("OPFS database {name:?}"))
            } else {
                io(e)
            }
        })?;
        let mut slots = vec![0u8; 2 * SLOT];
        let len = size(&dir_file).map_err(crate::storage::io_error("read", DIR_FILE))?;
        if len >= slots.len() as u64 {
            read_exact(&dir_file, 0, &mut slots)
                .map_err(crate::storage::io_error("read", DIR_FILE))?;
        }
        let (seq, files) = [decode_slot(&slots[..SLOT]), decode_slot(&slots[SLOT..])]
            .into_iter()
            .flatten()
            .max_by_key(|(seq, _)| *seq)
            .unwrap_or_default();
        // Every blob in use, plus spares: the lowest free numbers, reusing orphans.
        let mut blobs = BTreeMap::new();
        let used: Vec<u32> = files.values().copied().collect();
        for &b in &used {
            blobs.insert(
                b,
                Js(sync_handle(&dir, &format!("blob-{b}")).await.map_err(io)?),
            );
        }
        let mut spare = Vec::new();
        let mut n = 0u32;
        while spare.len() < SPARES {
            if !used.contains(&n) {
                let handle = sync_handle(&dir, &format!("blob-{n}")).await.map_err(io)?;
                // An orphan of an interrupted operation: its bytes mean nothing now.
                handle
                    .truncate_with_f64(0.0)
                    .map_err(|e| crate::storage::io_error("truncate", "blob")(js_io_error(e)))?;
                blobs.insert(n, Js(handle));
                spare.push(n);
            }
            n += 1;
        }
        Ok(OpfsStorage {
            inner: Arc::new(Inner {
                name: name.to_owned(),
                dir_file: Js(dir_file),
                state: Mutex::new(DirState {
                    files,
                    blobs,
                    spare,
                    seq,
                }),
                locked: AtomicBool::new(false),
                space: SpaceCache::default(),
            }),
        })
    }

    /// Deletes the database directory `name` from OPFS (it must not be open).
    pub async fn destroy(name: &str) -> Result<()> {
        let io = |e| crate::storage::io_error("delete OPFS directory", name)(js_io_error(e));
        let root = root_directory().await.map_err(io)?;
        let options = web_sys::FileSystemRemoveOptions::new();
        options.set_recursive(true);
        match wait(root.remove_entry_with_options(&format!("grape-{name}"), &options)).await {
            Ok(_) => Ok(()),
            Err(e) if super::exception_name(&e) == "NotFoundError" => Ok(()),
            Err(e) => Err(io(e)),
        }
    }

    /// Records the browser's latest free-space figures for the disk health check.
    pub fn set_space(&self, space: Option<StorageSpace>) {
        self.inner.space.set(space);
    }

    /// Writes the directory into the older slot and flushes: the commit point of a change.
    fn write_dir(&self, state: &mut DirState) -> io::Result<()> {
        let seq = state.seq + 1;
        let slot = encode_slot(seq, &state.files)?;
        let at = (seq % 2) * SLOT as u64;
        write_all(&self.inner.dir_file, at, &slot)?;
        self.inner.dir_file.flush().map_err(js_io_error)?;
        state.seq = seq;
        Ok(())
    }

    /// Returns a blob to the pool, emptied.
    fn release(state: &mut DirState, blob: u32) -> io::Result<()> {
        state.blobs[&blob]
            .truncate_with_f64(0.0)
            .map_err(js_io_error)?;
        state.spare.push(blob);
        Ok(())
    }
}

/// `navigator.storage.getDirectory()`, in a worker or a page.
async fn root_directory() -> std::result::Result<FileSystemDirectoryHandle, wasm_bindgen::JsValue> {
    let global = js_sys::global();
    let navigator = js_sys::Reflect::get(&global, &"navigator".into())?;
    let storage: web_sys::StorageManager =
        js_sys::Reflect::get(&navigator, &"storage".into())?.unchecked_into();
    Ok(wait(storage.get_directory()).await?.unchecked_into())
}

struct OpfsFile(Js<FileSystemSyncAccessHandle>);

impl StorageFile for OpfsFile {
    fn len(&self) -> io::Result<u64> {
        size(&self.0)
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        if offset + buf.len() as u64 > size(&self.0)? {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        read_exact(&self.0, offset, buf)
    }
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        write_all(&self.0, offset, data)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.truncate_with_f64(len as f64).map_err(js_io_error)
    }
    fn sync(&self) -> io::Result<()> {
        self.0.flush().map_err(js_io_error)
    }
}

impl Storage for OpfsStorage {
    fn open(&self, name: &str, create: bool) -> io::Result<Box<dyn StorageFile>> {
        let mut state = self.inner.state.lock();
        let blob = match state.files.get(name) {
            Some(&b) => b,
            None if create => {
                let Some(b) = state.spare.pop() else {
                    return Err(io::Error::other(
                        "no spare OPFS file open; reopen the database",
                    ));
                };
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
        Ok(Box::new(OpfsFile(state.blobs[&blob].clone())))
    }

    fn read_all(&self, name: &str) -> io::Result<Bytes> {
        let file = self.open(name, false)?;
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
        // Other tabs and workers are kept out by OPFS itself (one sync handle per file) and by
        // the facade's Web Lock; this flag keeps out a second open in this worker.
        if self.inner.locked.swap(true, Ordering::AcqRel) {
            return Err(Error::AlreadyOpen(self.location()));
        }
        Ok(Box::new(LockGuard(self.inner.clone())))
    }

    fn location(&self) -> String {
        format!("opfs:{}", self.inner.name)
    }

    fn space(&self) -> io::Result<Option<StorageSpace>> {
        Ok(self.inner.space.get())
    }
}

struct LockGuard(Arc<Inner>);

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.0.locked.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasm_bindgen_test::wasm_bindgen_test;

    #[wasm_bindgen_test]
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
}
