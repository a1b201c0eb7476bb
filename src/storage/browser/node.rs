//! Node's file system as a storage backend: a directory of files in the native format, through
//! `node:fs`'s synchronous calls (which map one to one onto the storage trait), so a database
//! moves between Rust, Node and the browser as files. Node has no `flock`: the directory is
//! held through the owner record that native opens claim too (`storage/owner.rs`).

use std::io;

use js_sys::{Function, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use super::{read_fully, write_fully, Js};
use crate::error::{Error, Result};
use crate::storage::owner::{self, OwnerHost, LOCK_FILE};
use crate::storage::{Bytes, OpenMode, Storage, StorageFile, StorageSpace};

#[wasm_bindgen]
extern "C" {
    /// The `node:fs` module.
    #[derive(Clone, Debug)]
    type NodeFs;
    #[wasm_bindgen(method, catch, js_name = openSync)]
    fn open_sync(this: &NodeFs, path: &str, flags: &str) -> std::result::Result<f64, JsValue>;
    #[wasm_bindgen(method, catch, js_name = closeSync)]
    fn close_sync(this: &NodeFs, fd: f64) -> std::result::Result<(), JsValue>;
    #[wasm_bindgen(method, catch, js_name = readSync)]
    fn read_sync(
        this: &NodeFs,
        fd: f64,
        buffer: &mut [u8],
        offset: f64,
        length: f64,
        position: f64,
    ) -> std::result::Result<f64, JsValue>;
    #[wasm_bindgen(method, catch, js_name = writeSync)]
    fn write_sync(
        this: &NodeFs,
        fd: f64,
        buffer: &[u8],
        offset: f64,
        length: f64,
        position: f64,
    ) -> std::result::Result<f64, JsValue>;
    #[wasm_bindgen(method, catch, js_name = ftruncateSync)]
    fn ftruncate_sync(this: &NodeFs, fd: f64, len: f64) -> std::result::Result<(), JsValue>;
    #[wasm_bindgen(method, catch, js_name = fsyncSync)]
    fn fsync_sync(this: &NodeFs, fd: f64) -> std::result::Result<(), JsValue>;
    #[wasm_bindgen(method, catch, js_name = fdatasyncSync)]
    fn fdatasync_sync(this: &NodeFs, fd: f64) -> std::result::Result<(), JsValue>;
    #[wasm_bindgen(method, catch, js_name = fstatSync)]
    fn fstat_sync(this: &NodeFs, fd: f64) -> std::result::Result<JsValue, JsValue>;
    #[wasm_bindgen(method, catch, js_name = readFileSync)]
    fn read_file_sync(this: &NodeFs, path: &str) -> std::result::Result<Uint8Array, JsValue>;
    #[wasm_bindgen(method, catch, js_name = writeFileSync)]
    fn write_file_sync(this: &NodeFs, path: &str, data: &[u8]) -> std::result::Result<(), JsValue>;
    #[wasm_bindgen(method, catch, js_name = readdirSync)]
    fn readdir_sync(this: &NodeFs, path: &str) -> std::result::Result<js_sys::Array, JsValue>;
    #[wasm_bindgen(method, catch, js_name = unlinkSync)]
    fn unlink_sync(this: &NodeFs, path: &str) -> std::result::Result<(), JsValue>;
    #[wasm_bindgen(method, catch, js_name = renameSync)]
    fn rename_sync(this: &NodeFs, from: &str, to: &str) -> std::result::Result<(), JsValue>;
    #[wasm_bindgen(method, catch, js_name = linkSync)]
    fn link_sync(this: &NodeFs, from: &str, to: &str) -> std::result::Result<(), JsValue>;
    #[wasm_bindgen(method, catch, js_name = mkdirSync)]
    fn mkdir_sync(
        this: &NodeFs,
        path: &str,
        options: &JsValue,
    ) -> std::result::Result<JsValue, JsValue>;
    #[wasm_bindgen(method, catch, js_name = rmdirSync)]
    fn rmdir_sync(this: &NodeFs, path: &str) -> std::result::Result<(), JsValue>;
    #[wasm_bindgen(method, catch, js_name = statfsSync)]
    fn statfs_sync(this: &NodeFs, path: &str) -> std::result::Result<JsValue, JsValue>;
}

/// Whether this host is Node (`process.versions.node`), whose file system this backend uses.
pub fn is_node() -> bool {
    node_process()
        .and_then(|p| Reflect::get(&p, &"versions".into()).ok())
        .and_then(|v| Reflect::get(&v, &"node".into()).ok())
        .is_some_and(|v| v.is_string())
}

fn node_process() -> Option<JsValue> {
    Reflect::get(&js_sys::global(), &"process".into())
        .ok()
        .filter(|p| p.is_object())
}

/// A Node built-in module (`node:fs`, ...) by `process.getBuiltinModule` (Node 20.16 and 22.3
/// on), which bundlers building for the browser leave alone, unlike an `import`.
fn builtin(name: &str) -> Result<JsValue> {
    let missing = || {
        Error::InvalidConfig(format!(
            "storage \"fs\" needs Node 20.16 or later (process.getBuiltinModule(\"{name}\") is \
             missing here); in a browser use \"opfs\", \"indexeddb\" or \"auto\""
        ))
    };
    let process = node_process().ok_or_else(missing)?;
    let get = Reflect::get(&process, &"getBuiltinModule".into())
        .ok()
        .and_then(|f| f.dyn_into::<Function>().ok())
        .ok_or_else(missing)?;
    get.call1(&process, &name.into())
        .ok()
        .filter(|m| m.is_object())
        .ok_or_else(missing)
}

/// A Node exception (`err.code`: `ENOENT`, `ENOSPC`, ...) as an I/O error: a full disk becomes
/// `StorageFull`, so the database reports [`Error::StorageFull`].
fn node_io_error(e: JsValue) -> io::Error {
    let code = Reflect::get(&e, &"code".into())
        .ok()
        .and_then(|c| c.as_string())
        .unwrap_or_default();
    let message = e
        .dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .unwrap_or_else(|| format!("{e:?}"));
    let kind = match code.as_str() {
        "ENOENT" => io::ErrorKind::NotFound,
        "EEXIST" => io::ErrorKind::AlreadyExists,
        "ENOSPC" | "EDQUOT" => io::ErrorKind::StorageFull,
        "EACCES" | "EPERM" | "EROFS" => io::ErrorKind::PermissionDenied,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, message)
}

/// A database directory on Node's file system, in the native format.
#[derive(Clone, Debug)]
pub struct NodeFsStorage {
    fs: Js<NodeFs>,
    /// Absolute, without a trailing separator.
    dir: String,
}

impl NodeFsStorage {
    /// Uses directory `path` (relative to the working directory), creating it and its parents
    /// if needed, with their names made durable as native opens make them.
    pub fn create(path: &str) -> Result<NodeFsStorage> {
        let NodeFsStorage { fs, dir } = Self::resolve(path)?;
        let fs = fs.0;
        let options = js_sys::Object::new();
        let _ = Reflect::set(&options, &"recursive".into(), &true.into());
        // The first directory created, if any: each created one's parent must be synced for
        // its name to survive a power loss.
        let first = fs
            .mkdir_sync(&dir, &options)
            .map_err(|e| Error::io("create directory", dir.clone(), node_io_error(e)))?;
        let storage = NodeFsStorage { fs: Js(fs), dir };
        if let Some(first) = first.as_string() {
            let mut made = storage.dir.as_str();
            while let Some((parent, _)) = made.rsplit_once(['/', '\\']) {
                storage
                    .sync_path(if parent.is_empty() { "/" } else { parent })
                    .map_err(|e| Error::io("sync directory", parent.to_owned(), e))?;
                if made.len() <= first.trim_end_matches(['/', '\\']).len() {
                    break;
                }
                made = parent;
            }
        }
        Ok(storage)
    }

    /// Deletes the database in directory `path`: claims it as an open does (so a database open
    /// in any process, Node or native, is refused with `AlreadyOpen`), removes the database's
    /// files, then the directory if nothing else is in it. Other files stay, so a mistaken
    /// path loses nothing but a database. A missing directory is nothing to delete.
    pub fn destroy(path: &str) -> Result<()> {
        let storage = Self::resolve(path)?;
        match storage.fs.readdir_sync(&storage.dir).map_err(node_io_error) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io("list", storage.dir.clone(), e)),
            Ok(_) => {}
        }
        crate::persist::destroy(&storage)?;
        // Left in place when other files are in it (ENOTEMPTY).
        let _ = storage.fs.rmdir_sync(&storage.dir);
        Ok(())
    }

    /// `node:fs` and `path` made absolute, without a trailing separator.
    fn resolve(path: &str) -> Result<NodeFsStorage> {
        let fs: NodeFs = builtin("node:fs")?.unchecked_into();
        let node_path = builtin("node:path")?;
        let resolve: Function = Reflect::get(&node_path, &"resolve".into())
            .ok()
            .and_then(|f| f.dyn_into().ok())
            .ok_or_else(|| Error::InvalidConfig("node:path has no resolve".into()))?;
        let dir = resolve
            .call1(&node_path, &path.into())
            .ok()
            .and_then(|d| d.as_string())
            .ok_or_else(|| Error::InvalidConfig(format!("path {path:?} cannot be resolved")))?;
        let dir = dir.trim_end_matches(['/', '\\']).to_owned();
        Ok(NodeFsStorage { fs: Js(fs), dir })
    }

    fn path(&self, name: &str) -> String {
        format!("{}/{name}", self.dir)
    }

    /// Makes a directory's entries durable (fsync of the directory; Windows has no such call
    /// and makes renames durable without it).
    fn sync_path(&self, dir: &str) -> io::Result<()> {
        let windows = node_process()
            .and_then(|p| Reflect::get(&p, &"platform".into()).ok())
            .and_then(|p| p.as_string())
            .is_some_and(|p| p == "win32");
        if windows {
            return Ok(());
        }
        let fd = self.fs.open_sync(dir, "r").map_err(node_io_error)?;
        let synced = self.fs.fsync_sync(fd).map_err(node_io_error);
        let _ = self.fs.close_sync(fd);
        synced
    }
}

/// One open file: its descriptor, closed when the last user drops it.
struct NodeFile {
    fs: Js<NodeFs>,
    fd: f64,
}

impl Drop for NodeFile {
    fn drop(&mut self) {
        let _ = self.fs.close_sync(self.fd);
    }
}

impl StorageFile for NodeFile {
    fn len(&self) -> io::Result<u64> {
        let stat = self.fs.fstat_sync(self.fd).map_err(node_io_error)?;
        Reflect::get(&stat, &"size".into())
            .ok()
            .and_then(|s| s.as_f64())
            .map(|s| s as u64)
            .ok_or_else(|| io::Error::other("fstat gave no size"))
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        read_fully(offset, buf, |at, rest| {
            let len = rest.len() as f64;
            let n = self.fs.read_sync(self.fd, rest, 0.0, len, at);
            Ok(n.map_err(node_io_error)? as usize)
        })
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        write_fully(offset, data, |at, rest| {
            let n = self
                .fs
                .write_sync(self.fd, rest, 0.0, rest.len() as f64, at);
            Ok(n.map_err(node_io_error)? as usize)
        })
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.fs
            .ftruncate_sync(self.fd, len as f64)
            .map_err(node_io_error)
    }

    fn sync(&self) -> io::Result<()> {
        self.fs.fdatasync_sync(self.fd).map_err(node_io_error)
    }
}

impl Storage for NodeFsStorage {
    fn open(&self, name: &str, mode: OpenMode) -> io::Result<Box<dyn StorageFile>> {
        let path = self.path(name);
        // "r+" fails on a missing file; "a+" would create it but append every write.
        let fd = match (self.fs.open_sync(&path, "r+"), mode) {
            (Ok(fd), _) => fd,
            (Err(e), OpenMode::CreateIfMissing)
                if node_io_error(e.clone()).kind() == io::ErrorKind::NotFound =>
            {
                // "wx" creates it, and fails if another open created it meanwhile: then
                // that file is opened as it is, never truncated.
                match self.fs.open_sync(&path, "wx+") {
                    Ok(fd) => fd,
                    Err(_) => self.fs.open_sync(&path, "r+").map_err(node_io_error)?,
                }
            }
            (Err(e), _) => return Err(node_io_error(e)),
        };
        Ok(Box::new(NodeFile {
            fs: self.fs.clone(),
            fd,
        }))
    }

    fn read_all(&self, name: &str) -> io::Result<Bytes> {
        let bytes = self
            .fs
            .read_file_sync(&self.path(name))
            .map_err(node_io_error)?;
        Ok(Bytes::from(bytes.to_vec()))
    }

    fn list(&self) -> io::Result<Vec<String>> {
        let entries = self.fs.readdir_sync(&self.dir).map_err(node_io_error)?;
        let mut names: Vec<String> = entries
            .iter()
            .filter_map(|n| n.as_string())
            .filter(|n| !n.starts_with(LOCK_FILE))
            .collect();
        names.sort_unstable();
        Ok(names)
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        match self.fs.unlink_sync(&self.path(name)).map_err(node_io_error) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        self.fs
            .rename_sync(&self.path(from), &self.path(to))
            .map_err(node_io_error)
    }

    fn sync_dir(&self) -> io::Result<()> {
        self.sync_path(&self.dir)
    }

    fn lock(&self) -> Result<Box<dyn Send + Sync>> {
        let host = NodeHost::new(self)?;
        let claim = owner::claim(&host, &self.location())?;
        Ok(Box::new(HeldDirectory(host, claim)))
    }

    fn location(&self) -> String {
        self.dir.clone()
    }

    fn space(&self) -> io::Result<Option<StorageSpace>> {
        let stat = self.fs.statfs_sync(&self.dir).map_err(node_io_error)?;
        let number = |key: &str| Reflect::get(&stat, &key.into()).ok()?.as_f64();
        Ok(
            match (number("bavail"), number("blocks"), number("bsize")) {
                (Some(free), Some(total), Some(size)) => Some(StorageSpace {
                    free: (free * size) as u64,
                    total: (total * size) as u64,
                }),
                _ => None,
            },
        )
    }
}

/// The owner protocol's operations in a [`NodeFsStorage`]'s directory.
struct NodeHost {
    storage: NodeFsStorage,
    process: Js<JsValue>,
    host: String,
}

impl NodeHost {
    fn new(storage: &NodeFsStorage) -> Result<NodeHost> {
        let os = builtin("node:os")?;
        let host = Reflect::get(&os, &"hostname".into())
            .ok()
            .and_then(|f| f.dyn_into::<Function>().ok())
            .and_then(|f| f.call0(&os).ok())
            .and_then(|h| h.as_string())
            .unwrap_or_else(|| "localhost".to_owned());
        Ok(NodeHost {
            storage: storage.clone(),
            process: Js(node_process().unwrap_or(JsValue::UNDEFINED)),
            host,
        })
    }
}

impl OwnerHost for NodeHost {
    fn write(&self, name: &str, content: &[u8]) -> io::Result<()> {
        let s = &self.storage;
        s.fs.write_file_sync(&s.path(name), content)
            .map_err(node_io_error)
    }
    fn link(&self, from: &str, to: &str) -> io::Result<()> {
        let s = &self.storage;
        s.fs.link_sync(&s.path(from), &s.path(to))
            .map_err(node_io_error)
    }
    fn read(&self, name: &str) -> io::Result<Vec<u8>> {
        Ok(self.storage.read_all(name)?.to_vec())
    }
    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        self.storage.rename(from, to)
    }
    fn remove(&self, name: &str) -> io::Result<()> {
        self.storage.remove(name)
    }
    fn pid(&self) -> u32 {
        Reflect::get(&self.process, &"pid".into())
            .ok()
            .and_then(|p| p.as_f64())
            .unwrap_or(0.0) as u32
    }
    fn started(&self) -> Option<u64> {
        let uptime = Reflect::get(&self.process, &"uptime".into())
            .ok()
            .and_then(|f| f.dyn_into::<Function>().ok())
            .and_then(|f| f.call0(&self.process).ok())
            .and_then(|s| s.as_f64())?;
        Some((js_sys::Date::now() - uptime * 1000.0).max(0.0) as u64)
    }
    fn holds_flock(&self) -> bool {
        false
    }
    fn host(&self) -> String {
        self.host.clone()
    }
    fn alive(&self, pid: u32) -> bool {
        let Some(kill) = Reflect::get(&self.process, &"kill".into())
            .ok()
            .and_then(|f| f.dyn_into::<Function>().ok())
        else {
            return true;
        };
        // Signal 0 sends nothing: it tells whether the process exists (EPERM: it does, owned
        // by someone else).
        match kill.call2(&self.process, &pid.into(), &0.into()) {
            Ok(_) => true,
            Err(e) => Reflect::get(&e, &"code".into())
                .ok()
                .and_then(|c| c.as_string())
                .is_none_or(|code| code != "ESRCH"),
        }
    }
}

/// The owner record, held until dropped (its JS values are `Js`, so it is `Send`).
struct HeldDirectory(NodeHost, owner::Claim);

impl Drop for HeldDirectory {
    fn drop(&mut self) {
        owner::release(&self.0, &self.1);
    }
}
