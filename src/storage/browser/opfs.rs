//! OPFS backend: the database's files in the origin-private file system, read and written
//! synchronously through `FileSystemSyncAccessHandle` (dedicated workers only).
//!
//! The layout (a pool of blobs opened ahead and a double-buffered directory file mapping names
//! onto them, because creating, renaming and deleting OPFS files are asynchronous) is
//! [`PooledStorage`], which is platform-free and tested natively; this module only opens the
//! OPFS handles and turns them into [`StorageFile`]s.

use std::collections::BTreeMap;
use std::io;

use wasm_bindgen::JsCast;
use web_sys::{
    FileSystemDirectoryHandle, FileSystemFileHandle, FileSystemGetDirectoryOptions,
    FileSystemGetFileOptions, FileSystemReadWriteOptions, FileSystemSyncAccessHandle,
};

use super::{js_io_error, read_fully, wait, write_fully, Js};
use crate::error::{Error, Result};
use crate::storage::pool::{blob_name, Handle, Layout, PooledStorage, DIR_FILE};
use crate::storage::{io_error, StorageFile};

/// A database directory in OPFS: a [`PooledStorage`] whose blobs and directory file are OPFS
/// files (directory `grape-<name>`: `directory`, `blob-0`, `blob-1`, ...).
pub type OpfsStorage = PooledStorage;

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

/// One OPFS file's synchronous access handle, closed (releasing OPFS's exclusive lock on the
/// file) when the last user drops it.
struct OpfsFile(Js<FileSystemSyncAccessHandle>);

impl Drop for OpfsFile {
    fn drop(&mut self) {
        self.0.close();
    }
}

impl StorageFile for OpfsFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.get_size().map_err(js_io_error)? as u64)
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        if offset + buf.len() as u64 > self.len()? {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        read_fully(offset, buf, |at, rest| {
            let options = FileSystemReadWriteOptions::new();
            options.set_at(at);
            let n = self
                .0
                .read_with_u8_array_and_options(rest, &options)
                .map_err(js_io_error)?;
            Ok(n as usize)
        })
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        write_fully(offset, data, |at, rest| {
            let options = FileSystemReadWriteOptions::new();
            options.set_at(at);
            let n = self
                .0
                .write_with_u8_array_and_options(rest, &options)
                .map_err(js_io_error)?;
            Ok(n as usize)
        })
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.truncate_with_f64(len as f64).map_err(js_io_error)
    }

    fn sync(&self) -> io::Result<()> {
        self.0.flush().map_err(js_io_error)
    }
}

impl PooledStorage {
    /// Opens (creating if needed) the database directory `name` in OPFS and every file handle
    /// it needs. Fails with [`Error::AlreadyOpen`] when another tab or worker has it open
    /// (OPFS allows one synchronous handle per file).
    pub async fn open(name: &str) -> Result<OpfsStorage> {
        let io = |e| io_error("open OPFS directory", name)(js_io_error(e));
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
        let dir_file: Handle = std::sync::Arc::new(OpfsFile(Js(dir_file)));
        let layout = Layout::read(&*dir_file).map_err(io_error("read", DIR_FILE))?;
        let mut blobs = BTreeMap::new();
        for n in layout.blobs() {
            let handle = sync_handle(&dir, &blob_name(n)).await.map_err(io)?;
            blobs.insert(n, std::sync::Arc::new(OpfsFile(Js(handle))) as Handle);
        }
        PooledStorage::assemble(format!("opfs:{name}"), dir_file, layout, blobs)
            .map_err(io_error("open", "OPFS blobs"))
    }

    /// Deletes the database directory `name` from OPFS (it must not be open).
    pub async fn destroy(name: &str) -> Result<()> {
        let io = |e| io_error("delete OPFS directory", name)(js_io_error(e));
        let root = root_directory().await.map_err(io)?;
        let options = web_sys::FileSystemRemoveOptions::new();
        options.set_recursive(true);
        match wait(root.remove_entry_with_options(&format!("grape-{name}"), &options)).await {
            Ok(_) => Ok(()),
            Err(e) if super::exception_name(&e) == "NotFoundError" => Ok(()),
            Err(e) => Err(io(e)),
        }
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
