//! IndexedDB backend: works on the main thread and in workers (and wherever OPFS's synchronous
//! handles are missing).
//!
//! IndexedDB is asynchronous, so the database's files live in memory while it is open: `open`
//! loads them, the engine reads and writes them synchronously, and [`IdbStorage::commit`] writes
//! what changed since the last commit in **one** IndexedDB transaction. Transactions are atomic,
//! so after a crash the database is exactly at its last completed commit. Files are stored in
//! 256 KiB chunks (object store `chunks`, key `[file, index]`) with their lengths (store `files`,
//! key `file`), so a commit after a few writes rewrites a few chunks, not whole files.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use js_sys::{Array, Promise, Uint8Array};
use parking_lot::{Mutex, RwLock};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{IdbDatabase, IdbObjectStore, IdbRequest, IdbTransaction, IdbTransactionMode};

use super::{exception_name, js_io_error, wait, Js, SpaceCache};
use crate::error::{Error, Result};
use crate::storage::{io_error, Bytes, Storage, StorageFile, StorageSpace};

const CHUNK: usize = 256 << 10;
const FILES: &str = "files";
const CHUNKS: &str = "chunks";

/// A database held in IndexedDB (see the module docs).
#[derive(Clone)]
pub struct IdbStorage {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    db: Js<IdbDatabase>,
    files: Mutex<BTreeMap<String, Arc<RwLock<FileData>>>>,
    /// What IndexedDB holds: file name -> number of chunks.
    stored: Mutex<BTreeMap<String, u32>>,
    /// Names whose content must be written whole at the next commit (created or renamed).
    fresh: Mutex<BTreeSet<String>>,
    locked: AtomicBool,
    space: SpaceCache,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.db.close();
    }
}

#[derive(Default)]
struct FileData {
    bytes: Vec<u8>,
    /// Chunks written since the last commit.
    dirty: BTreeSet<u32>,
}

impl FileData {
    fn touch(&mut self, from: usize, to: usize) {
        if to > from {
            for c in from / CHUNK..=(to - 1) / CHUNK {
                self.dirty.insert(c as u32);
            }
        }
    }

    fn chunks(&self) -> u32 {
        self.bytes.len().div_ceil(CHUNK) as u32
    }
}

/// Resolves when `req` succeeds (with its result), rejects with its error.
fn request(req: &IdbRequest) -> Promise {
    let req = req.clone();
    Promise::new(&mut |resolve, reject| {
        let done = req.clone();
        let ok = Closure::once_into_js(move |_: JsValue| {
            let _ = resolve.call1(&JsValue::NULL, &done.result().unwrap_or(JsValue::UNDEFINED));
        });
        let failed = req.clone();
        let err = Closure::once_into_js(move |_: JsValue| {
            let e = failed
                .error()
                .ok()
                .flatten()
                .map_or(JsValue::UNDEFINED, JsValue::from);
            let _ = reject.call1(&JsValue::NULL, &e);
        });
        req.set_onsuccess(Some(ok.unchecked_ref()));
        req.set_onerror(Some(err.unchecked_ref()));
    })
}

/// Resolves when `tx` commits, rejects with its error when it fails or aborts.
fn transaction_done(tx: &IdbTransaction) -> Promise {
    let tx = tx.clone();
    Promise::new(&mut |resolve, reject| {
        let ok = Closure::once_into_js(move |_: JsValue| {
            let _ = resolve.call0(&JsValue::NULL);
        });
        let failed = tx.clone();
        let reject2 = reject.clone();
        let failed2 = tx.clone();
        let err = Closure::once_into_js(move |_: JsValue| {
            let e = failed.error().map_or(JsValue::UNDEFINED, JsValue::from);
            let _ = reject.call1(&JsValue::NULL, &e);
        });
        let abort = Closure::once_into_js(move |_: JsValue| {
            let e = failed2.error().map_or_else(
                || JsValue::from_str("the transaction was aborted"),
                JsValue::from,
            );
            let _ = reject2.call1(&JsValue::NULL, &e);
        });
        tx.set_oncomplete(Some(ok.unchecked_ref()));
        tx.set_onerror(Some(err.unchecked_ref()));
        tx.set_onabort(Some(abort.unchecked_ref()));
    })
}

fn chunk_key(name: &str, index: u32) -> JsValue {
    Array::of2(&name.into(), &index.into()).into()
}

fn io<'a>(op: &'static str, name: &'a str) -> impl Fn(JsValue) -> Error + 'a {
    move |e| io_error(op, name)(js_io_error(e))
}

impl IdbStorage {
    /// Opens (creating if needed) the IndexedDB database `grape-<name>` and loads its files.
    pub async fn open(name: &str) -> Result<IdbStorage> {
        let db_name = format!("grape-{name}");
        let factory = indexed_db().map_err(io("open IndexedDB", &db_name))?;
        let open = factory
            .open_with_u32(&db_name, 1)
            .map_err(io("open IndexedDB", &db_name))?;
        let upgrading = open.clone();
        let upgrade = Closure::once_into_js(move |_: JsValue| {
            if let Ok(db) = upgrading.result() {
                let db: IdbDatabase = db.unchecked_into();
                let _ = db.create_object_store(FILES);
                let _ = db.create_object_store(CHUNKS);
            }
        });
        open.set_onupgradeneeded(Some(upgrade.unchecked_ref()));
        let db: IdbDatabase = wait(request(&open))
            .await
            .map_err(io("open IndexedDB", &db_name))?
            .unchecked_into();
        let load = io("read IndexedDB", &db_name);
        let tx = db
            .transaction_with_str_sequence_and_mode(
                &Array::of2(&FILES.into(), &CHUNKS.into()),
                IdbTransactionMode::Readonly,
            )
            .map_err(&load)?;
        let get_all = |store: &str, keys: bool| -> std::result::Result<Promise, JsValue> {
            let store = tx.object_store(store)?;
            Ok(request(&if keys {
                store.get_all_keys()?
            } else {
                store.get_all()?
            }))
        };
        let (file_names, file_lens, chunk_keys, chunk_values) = (
            get_all(FILES, true).map_err(&load)?,
            get_all(FILES, false).map_err(&load)?,
            get_all(CHUNKS, true).map_err(&load)?,
            get_all(CHUNKS, false).map_err(&load)?,
        );
        let file_names: Array = wait(file_names).await.map_err(&load)?.unchecked_into();
        let file_lens: Array = wait(file_lens).await.map_err(&load)?.unchecked_into();
        let chunk_keys: Array = wait(chunk_keys).await.map_err(&load)?.unchecked_into();
        let chunk_values: Array = wait(chunk_values).await.map_err(&load)?.unchecked_into();

        let mut files = BTreeMap::new();
        let mut stored = BTreeMap::new();
        for (name, len) in file_names.iter().zip(file_lens.iter()) {
            let (Some(name), Some(len)) = (name.as_string(), len.as_f64()) else {
                continue;
            };
            let data = FileData {
                bytes: vec![0; len as usize],
                dirty: BTreeSet::new(),
            };
            stored.insert(name.clone(), data.chunks());
            files.insert(name, data);
        }
        for (key, value) in chunk_keys.iter().zip(chunk_values.iter()) {
            let key: Array = key.unchecked_into();
            let (Some(name), Some(index)) = (key.get(0).as_string(), key.get(1).as_f64()) else {
                continue;
            };
            let Some(file) = files.get_mut(&name) else {
                continue; // a chunk of a file removed by a later commit: unreachable
            };
            let chunk: Uint8Array = value.unchecked_into();
            let start = index as usize * CHUNK;
            let end = (start + chunk.length() as usize).min(file.bytes.len());
            if start < end {
                chunk
                    .subarray(0, (end - start) as u32)
                    .copy_to(&mut file.bytes[start..end]);
            }
        }
        Ok(IdbStorage {
            inner: Arc::new(Inner {
                name: name.to_owned(),
                db: Js(db),
                files: Mutex::new(
                    files
                        .into_iter()
                        .map(|(k, v)| (k, Arc::new(RwLock::new(v))))
                        .collect(),
                ),
                stored: Mutex::new(stored),
                fresh: Mutex::new(BTreeSet::new()),
                locked: AtomicBool::new(false),
                space: SpaceCache::default(),
            }),
        })
    }

    /// Deletes the IndexedDB database of `name` (it must not be open).
    pub async fn destroy(name: &str) -> Result<()> {
        let db_name = format!("grape-{name}");
        let factory = indexed_db().map_err(io("delete IndexedDB", &db_name))?;
        let req = factory
            .delete_database(&db_name)
            .map_err(io("delete IndexedDB", &db_name))?;
        // Blocked means a connection elsewhere is open: say so instead of waiting for ever.
        let blocked = Promise::new(&mut |_, reject| {
            let on_blocked = Closure::once_into_js(move |_: JsValue| {
                let _ = reject.call1(&JsValue::NULL, &"blocked".into());
            });
            req.set_onblocked(Some(on_blocked.unchecked_ref()));
        });
        let race = Promise::race(&Array::of2(&request(&req), &blocked));
        match wait(race).await {
            Ok(_) => Ok(()),
            Err(e) if e.as_string().as_deref() == Some("blocked") => Err(Error::AlreadyOpen(
                format!("IndexedDB database {db_name} (close it everywhere before deleting it)"),
            )),
            Err(e) => Err(io("delete IndexedDB", &db_name)(e)),
        }
    }

    /// Whether anything was written since the last commit.
    pub fn has_changes(&self) -> bool {
        !self.inner.fresh.lock().is_empty()
            || self
                .inner
                .files
                .lock()
                .values()
                .any(|f| !f.read().dirty.is_empty())
            || self
                .inner
                .stored
                .lock()
                .keys()
                .any(|n| !self.inner.files.lock().contains_key(n))
    }

    /// Writes every change since the last commit in one IndexedDB transaction. If it fails
    /// (a full quota: [`Error::StorageFull`]), IndexedDB keeps the previous commit and the
    /// changes stay pending for the next attempt.
    pub async fn commit(&self) -> Result<()> {
        let inner = &self.inner;
        let db_name = format!("grape-{}", inner.name);
        let fail = io("write IndexedDB", &db_name);
        // Plan and issue every request in this one synchronous stretch: IndexedDB copies each
        // value when it is put, so the transaction holds exactly this moment's state.
        let fresh = std::mem::take(&mut *inner.fresh.lock());
        let files = inner.files.lock().clone();
        let stored = inner.stored.lock().clone();
        let mut taken: Vec<(String, BTreeSet<u32>)> = Vec::new();
        let mut new_stored = stored.clone();
        let issued = (|| -> std::result::Result<IdbTransaction, JsValue> {
            let tx = inner.db.transaction_with_str_sequence_and_mode(
                &Array::of2(&FILES.into(), &CHUNKS.into()),
                IdbTransactionMode::Readwrite,
            )?;
            let meta = tx.object_store(FILES)?;
            let chunks = tx.object_store(CHUNKS)?;
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
                taken.push((name.clone(), dirty));
                for c in to_write {
                    let start = c as usize * CHUNK;
                    let end = (start + CHUNK).min(data.bytes.len());
                    let value = Uint8Array::from(&data.bytes[start..end]);
                    chunks.put_with_key(&value, &chunk_key(name, c))?;
                }
                delete_chunks(&chunks, name, count, old.unwrap_or(0).max(count))?;
                meta.put_with_key(&(data.bytes.len() as f64).into(), &name.into())?;
                new_stored.insert(name.clone(), count);
            }
            for (name, &count) in &stored {
                if !files.contains_key(name) {
                    delete_chunks(&chunks, name, 0, count)?;
                    meta.delete(&name.into())?;
                    new_stored.remove(name);
                }
            }
            Ok(tx)
        })();
        let restore = || {
            inner.fresh.lock().extend(fresh.iter().cloned());
            for (name, dirty) in &taken {
                if let Some(f) = files.get(name) {
                    f.write().dirty.extend(dirty);
                }
            }
        };
        let tx = match issued {
            Ok(tx) => tx,
            Err(e) => {
                restore();
                return Err(fail(e));
            }
        };
        match wait(transaction_done(&tx)).await {
            Ok(_) => {
                *inner.stored.lock() = new_stored;
                Ok(())
            }
            Err(e) => {
                restore();
                if exception_name(&e) == "QuotaExceededError" {
                    return Err(Error::StorageFull {
                        op: "write",
                        file: db_name.clone(),
                        message: "the browser's storage quota is used up".into(),
                    });
                }
                Err(fail(e))
            }
        }
    }

    /// Records the browser's latest free-space figures for the disk health check.
    pub fn set_space(&self, space: Option<StorageSpace>) {
        self.inner.space.set(space);
    }

    fn file(&self, name: &str) -> io::Result<Arc<RwLock<FileData>>> {
        self.inner
            .files
            .lock()
            .get(name)
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no file {name}")))
    }
}

/// Deletes chunks `from..to` of `name`.
fn delete_chunks(
    chunks: &IdbObjectStore,
    name: &str,
    from: u32,
    to: u32,
) -> std::result::Result<(), JsValue> {
    for c in from..to {
        chunks.delete(&chunk_key(name, c))?;
    }
    Ok(())
}

/// `indexedDB` of the page, worker or any global that has one.
fn indexed_db() -> std::result::Result<web_sys::IdbFactory, JsValue> {
    let factory = js_sys::Reflect::get(&js_sys::global(), &"indexedDB".into())?;
    if factory.is_undefined() || factory.is_null() {
        return Err(js_sys::Error::new("IndexedDB is not available here").into());
    }
    Ok(factory.unchecked_into())
}

struct IdbFile(Arc<RwLock<FileData>>);

impl StorageFile for IdbFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.read().bytes.len() as u64)
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let data = self.0.read();
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let src = start
            .checked_add(buf.len())
            .and_then(|end| data.bytes.get(start..end))
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(src);
        Ok(())
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
        // Durable at the next commit (`flush()` of the JS API).
        Ok(())
    }
}

impl Storage for IdbStorage {
    fn open(&self, name: &str, create: bool) -> io::Result<Box<dyn StorageFile>> {
        let file = if create {
            let mut files = self.inner.files.lock();
            files
                .entry(name.to_owned())
                .or_insert_with(|| {
                    self.inner.fresh.lock().insert(name.to_owned());
                    Arc::default()
                })
                .clone()
        } else {
            self.file(name)?
        };
        Ok(Box::new(IdbFile(file)))
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
        if self.inner.locked.swap(true, Ordering::AcqRel) {
            return Err(Error::AlreadyOpen(self.location()));
        }
        Ok(Box::new(LockGuard(self.inner.clone())))
    }

    fn location(&self) -> String {
        format!("indexeddb:{}", self.inner.name)
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
