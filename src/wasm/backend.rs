//! The storage a database lives in: which one this host offers, and opening the database in
//! it (OPFS, IndexedDB, Node's files or memory), from an exported archive if one is given.
//!
//! What a host offers is found by feature tests, never by calling and catching: OPFS's
//! synchronous handles exist only in dedicated workers, and on the main thread the call is not
//! even a function. Deleting a stored database lives here too, as it must reach every storage.

use std::sync::Arc;

use js_sys::{Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use super::lock::web_lock;
use super::options::{OpenOptions, StorageKind};
use crate::persist::archive::Unpacker;
use crate::storage::{
    is_node, IdbStorage, MemoryStorage, NodeFsStorage, OpenMode, OpfsStorage, Storage, StorageSpace,
};
use crate::{EmbeddedConfig, EmbeddedVectorDB, Error};

/// Where the data lives.
#[derive(Clone)]
pub(super) enum Backend {
    Memory,
    Opfs(OpfsStorage),
    Idb(IdbStorage),
    Fs,
}

impl Backend {
    pub(super) fn set_space(&self, space: Option<StorageSpace>) {
        match self {
            Backend::Opfs(s) => s.set_space(space),
            Backend::Idb(s) => s.set_space(space),
            // The disk's space is asked of the file system itself (`Storage::space`).
            Backend::Memory | Backend::Fs => {}
        }
    }

    /// The name `stats().backend` reports, as `OpenOptions.storage` spells it.
    pub(super) fn name(&self) -> &'static str {
        match self {
            Backend::Memory => "memory",
            Backend::Opfs(_) => "opfs",
            Backend::Idb(_) => "indexeddb",
            Backend::Fs => "fs",
        }
    }

    /// Whether writes outlive the page, so that they are worth flushing before it goes.
    pub(super) fn is_durable(&self) -> bool {
        matches!(self, Backend::Opfs(_) | Backend::Idb(_) | Backend::Fs)
    }
}

/// Whether `name` is a property of the global object (feature tests: a missing API must not be
/// called, see `createSyncAccessHandle` on the main thread).
fn global_has(name: &str) -> bool {
    Reflect::has(&js_sys::global(), &name.into()).unwrap_or(false)
}

fn navigator_storage() -> Option<web_sys::StorageManager> {
    let navigator = Reflect::get(&js_sys::global(), &"navigator".into()).ok()?;
    let storage = Reflect::get(&navigator, &"storage".into()).ok()?;
    (!storage.is_undefined()).then(|| storage.unchecked_into())
}

/// The storage `options.storage` stands for here (`auto`: the best this host has).
pub(super) fn choose(options: &OpenOptions) -> StorageKind {
    match options.storage {
        StorageKind::Auto => auto_storage(options),
        chosen => chosen,
    }
}

/// The storage `auto` picks here: in Node, its files when a `path` says where (a name alone
/// says nothing about which directory), else memory; in a browser OPFS, whose synchronous
/// handles exist only in dedicated workers, else IndexedDB.
fn auto_storage(options: &OpenOptions) -> StorageKind {
    if is_node() {
        match options.path {
            Some(_) => StorageKind::Fs,
            None => StorageKind::Memory,
        }
    } else if global_has("FileSystemSyncAccessHandle") && navigator_storage().is_some() {
        StorageKind::Opfs
    } else if global_has("indexedDB") {
        StorageKind::Indexeddb
    } else {
        StorageKind::Memory
    }
}

/// `navigator.storage.estimate()` as free and total bytes.
pub(super) async fn estimate() -> Option<StorageSpace> {
    let promise = navigator_storage()?.estimate().ok()?;
    let estimate = JsFuture::from(promise).await.ok()?;
    let number = |key: &str| Reflect::get(&estimate, &key.into()).ok()?.as_f64();
    let (quota, usage) = (number("quota")?, number("usage").unwrap_or(0.0));
    Some(StorageSpace {
        free: (quota - usage).max(0.0) as u64,
        total: quota as u64,
    })
}

/// Asks the browser to keep the data under storage pressure (`navigator.storage.persist()`);
/// whether it agreed.
pub(super) async fn persist() -> bool {
    let Some(promise) = navigator_storage().and_then(|s| s.persist().ok()) else {
        return false;
    };
    JsFuture::from(promise)
        .await
        .ok()
        .and_then(|v| v.as_bool())
        .unwrap_or(false)
}

/// Opens the storage of `kind` and the database in it (the Web Lock, if any, is held).
pub(super) async fn open(
    options: &OpenOptions,
    config: EmbeddedConfig,
    kind: StorageKind,
) -> Result<(Backend, EmbeddedVectorDB), Error> {
    let (backend, storage) = match kind {
        StorageKind::Memory | StorageKind::Auto => (Backend::Memory, None),
        StorageKind::Opfs => open_opfs(options).await?,
        StorageKind::Indexeddb => open_idb(options).await?,
        StorageKind::Fs => open_fs(options)?,
    };
    let db = open_db(config, storage, options.import.as_ref()).await?;
    Ok((backend, db))
}

async fn open_opfs(options: &OpenOptions) -> Result<(Backend, Option<Arc<dyn Storage>>), Error> {
    if !global_has("FileSystemSyncAccessHandle") {
        return Err(Error::InvalidConfig(
            "storage \"opfs\" needs a dedicated worker (FileSystemSyncAccessHandle \
             is missing here); use \"indexeddb\" or \"auto\" on the main thread"
                .into(),
        ));
    }
    if options.read_only {
        return Err(Error::InvalidConfig(
            "readOnly is supported with IndexedDB storage only".into(),
        ));
    }
    let s = OpfsStorage::open(&options.name).await?;
    Ok((Backend::Opfs(s.clone()), Some(Arc::new(s))))
}

fn open_fs(options: &OpenOptions) -> Result<(Backend, Option<Arc<dyn Storage>>), Error> {
    if !is_node() {
        return Err(Error::InvalidConfig(
            "storage \"fs\" needs Node (node:fs); in a browser use \"opfs\", \"indexeddb\" \
             or \"auto\""
                .into(),
        ));
    }
    if options.read_only {
        return Err(Error::InvalidConfig(
            "readOnly is supported with IndexedDB storage only".into(),
        ));
    }
    let s = NodeFsStorage::create(options.directory())?;
    Ok((Backend::Fs, Some(Arc::new(s))))
}

async fn open_idb(options: &OpenOptions) -> Result<(Backend, Option<Arc<dyn Storage>>), Error> {
    let s = IdbStorage::open(&options.name).await?;
    if options.read_only {
        Ok((Backend::Memory, Some(Arc::new(private_copy(&s)?))))
    } else {
        Ok((Backend::Idb(s.clone()), Some(Arc::new(s.files()))))
    }
}

/// A private copy of the last commit, for a read-only open: writes of the owner are not seen.
fn private_copy(s: &IdbStorage) -> Result<MemoryStorage, Error> {
    let copy = MemoryStorage::new();
    for name in s
        .list()
        .map_err(crate::storage::io_error("list", "indexeddb"))?
    {
        let bytes = s
            .read_all(&name)
            .map_err(crate::storage::io_error("read", &name))?;
        let f = copy
            .open(&name, OpenMode::CreateIfMissing)
            .map_err(crate::storage::io_error("copy", &name))?;
        f.write_at(0, &bytes)
            .map_err(crate::storage::io_error("copy", &name))?;
    }
    Ok(copy)
}

/// The database in `storage` (none: memory only), `archive` imported into it first; an archive
/// without a storage gets one in memory.
async fn open_db(
    config: EmbeddedConfig,
    storage: Option<Arc<dyn Storage>>,
    archive: Option<&JsValue>,
) -> Result<EmbeddedVectorDB, Error> {
    let storage: Arc<dyn Storage> = match (storage, archive) {
        (Some(storage), _) => storage,
        (None, Some(_)) => Arc::new(MemoryStorage::new()),
        (None, None) => return EmbeddedVectorDB::open(config),
    };
    if let Some(archive) = archive {
        import(archive, &*storage).await?;
    }
    EmbeddedVectorDB::open_with_storage(config, storage)
}

/// Bytes copied into WebAssembly memory at a time from an archive given whole.
const PIECE: u32 = 1 << 20;

/// Unpacks the archive `source` into `storage` piece by piece, so that it is never whole in
/// WebAssembly memory: bytes (`Uint8Array`, `ArrayBuffer`) a megabyte at a time, anything
/// readable (`ReadableStream`, `Response`, `Blob`, an async iterable of bytes) as its pieces
/// arrive. A stream given up on is cancelled.
async fn import(source: &JsValue, storage: &dyn Storage) -> Result<(), Error> {
    let mut unpacker = Unpacker::new(storage)?;
    let mut piece = Vec::new();
    let mut push = |bytes: &Uint8Array| {
        piece.resize(bytes.length() as usize, 0);
        bytes.copy_to(&mut piece);
        unpacker.push(&piece)
    };
    if let Some(bytes) = whole_bytes(source) {
        for at in (0..bytes.length()).step_by(PIECE as usize) {
            push(&bytes.subarray(at, at.saturating_add(PIECE).min(bytes.length())))?;
        }
    } else {
        let (pieces, next) = pieces_of(source)?;
        // A source that failed is left as it is; one we refuse is cancelled (below).
        while let Some(bytes) = read_piece(&pieces, &next).await? {
            if let Err(e) = push(&bytes) {
                // Stop the download: nothing more of it will be read.
                for stop in ["cancel", "return"] {
                    if let Ok(f) = Reflect::get(&pieces, &stop.into()) {
                        if let Some(f) = f.dyn_ref::<js_sys::Function>() {
                            let _ = f.call0(&pieces);
                            break;
                        }
                    }
                }
                return Err(e);
            }
        }
    }
    unpacker.finish()
}

/// `source` as bytes, when it is bytes.
fn whole_bytes(source: &JsValue) -> Option<Uint8Array> {
    if let Some(bytes) = source.dyn_ref::<Uint8Array>() {
        return Some(bytes.clone());
    }
    source
        .dyn_ref::<js_sys::ArrayBuffer>()
        .map(|buffer| Uint8Array::new(buffer))
}

/// A reader of `source`'s pieces and its method that promises the next (`{done, value}`): a
/// `ReadableStream`'s reader, a `Response`'s or a `Blob`'s stream, or an async iterator.
fn pieces_of(source: &JsValue) -> Result<(JsValue, js_sys::Function), Error> {
    let method = |target: &JsValue, name: &JsValue| {
        Reflect::get(target, name)
            .ok()
            .and_then(|f| f.dyn_into::<js_sys::Function>().ok())
    };
    let refused = |what: String| {
        Error::InvalidArgument(format!(
            "open: import {what}; give the archive as a Uint8Array, an ArrayBuffer, a Blob, a \
             ReadableStream, a Response or an async iterable of Uint8Arrays"
        ))
    };
    let mut stream = source.clone();
    let is_response = Reflect::has(source, &"body".into()).unwrap_or(false)
        && Reflect::has(source, &"status".into()).unwrap_or(false);
    if is_response {
        if Reflect::get(source, &"ok".into())
            .ok()
            .and_then(|v| v.as_bool())
            == Some(false)
        {
            let status = Reflect::get(source, &"status".into())
                .ok()
                .and_then(|v| v.as_f64())
                .unwrap_or_default();
            return Err(refused(format!("is a response of HTTP status {status}")));
        }
        stream = Reflect::get(source, &"body".into()).unwrap_or_default();
        if stream.is_null() {
            return Err(refused("is a response without a body".into()));
        }
    } else if let Some(blob_stream) = method(source, &"stream".into()) {
        stream = blob_stream
            .call0(source)
            .map_err(|e| refused(format!("could not be read ({})", describe(&e))))?;
    }
    if let Some(get_reader) = method(&stream, &"getReader".into()) {
        let reader = get_reader
            .call0(&stream)
            .map_err(|e| refused(format!("could not be read ({})", describe(&e))))?;
        let read =
            method(&reader, &"read".into()).ok_or_else(|| refused("has no reader".into()))?;
        return Ok((reader, read));
    }
    if let Some(iterate) = method(&stream, &js_sys::Symbol::async_iterator().into()) {
        let iterator = iterate
            .call0(&stream)
            .map_err(|e| refused(format!("could not be read ({})", describe(&e))))?;
        let next = method(&iterator, &"next".into())
            .ok_or_else(|| refused("is an async iterable without next()".into()))?;
        return Ok((iterator, next));
    }
    Err(refused(format!(
        "is a {}",
        source.js_typeof().as_string().unwrap_or_default()
    )))
}

/// The next piece from `pieces` (`None` at the end).
async fn read_piece(
    pieces: &JsValue,
    next: &js_sys::Function,
) -> Result<Option<Uint8Array>, Error> {
    let failed = |e: JsValue| Error::io("read", "the archive", std::io::Error::other(describe(&e)));
    let promise = next.call0(pieces).map_err(failed)?;
    let step = JsFuture::from(js_sys::Promise::resolve(&promise))
        .await
        .map_err(failed)?;
    if Reflect::get(&step, &"done".into())
        .ok()
        .and_then(|v| v.as_bool())
        == Some(true)
    {
        return Ok(None);
    }
    let value = Reflect::get(&step, &"value".into()).unwrap_or_default();
    whole_bytes(&value).map(Some).ok_or_else(|| {
        Error::InvalidArgument(format!(
            "open: import gave a piece that is not bytes but a {}; a stream of the archive \
             gives Uint8Arrays",
            value.js_typeof().as_string().unwrap_or_default()
        ))
    })
}

/// A JS error's message, for ours.
fn describe(e: &JsValue) -> String {
    Reflect::get(e, &"message".into())
        .ok()
        .and_then(|m| m.as_string())
        .or_else(|| e.as_string())
        .unwrap_or_else(|| format!("{e:?}"))
}

/// Deletes the stored database `name` (OPFS directory and IndexedDB database), under its Web
/// Lock so that no open database loses its files; in Node, the database in directory `name`,
/// under its owner record.
pub(super) async fn destroy(name: &str) -> Result<(), Error> {
    if is_node() {
        return NodeFsStorage::destroy(name);
    }
    if let Some(lock) = web_lock(name).await? {
        if global_has("FileSystemSyncAccessHandle") || navigator_storage().is_some() {
            OpfsStorage::destroy(name).await?;
        }
        if global_has("indexedDB") {
            IdbStorage::destroy(name).await?;
        }
        drop(lock);
    }
    Ok(())
}
