//! The storage a database lives in: which one this host offers, and opening the database in
//! it (OPFS, IndexedDB, Node's files or memory), from an exported archive if one is given.
//!
//! What a host offers is found by feature tests, never by calling and catching: OPFS's
//! synchronous handles exist only in dedicated workers, and on the main thread the call is not
//! even a function. Deleting a stored database lives here too, as it must reach every storage.

use std::sync::Arc;

use js_sys::Reflect;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use super::lock::web_lock;
use super::options::{OpenOptions, StorageKind};
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
    let db = open_db(config, storage, options.import.as_deref())?;
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
fn open_db(
    config: EmbeddedConfig,
    storage: Option<Arc<dyn Storage>>,
    archive: Option<&[u8]>,
) -> Result<EmbeddedVectorDB, Error> {
    let storage: Arc<dyn Storage> = match (storage, archive) {
        (Some(storage), _) => storage,
        (None, Some(_)) => Arc::new(MemoryStorage::new()),
        (None, None) => return EmbeddedVectorDB::open(config),
    };
    if let Some(archive) = archive {
        EmbeddedVectorDB::import_archive(archive, &*storage)?;
    }
    EmbeddedVectorDB::open_with_storage(config, storage)
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
