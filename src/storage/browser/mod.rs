//! Backends of the storage trait for JS hosts (WebAssembly only): in the browser OPFS through
//! synchronous access handles in a dedicated worker, and IndexedDB (anywhere) with writes
//! committed by `commit`; in Node, `node:fs` (`node.rs`).
//!
//! All keep the bytes of the native format: a database exported from one opens in the others
//! and natively (Node's directory is a native one as it is). Their asynchronous parts (opening handles, loading, committing) are `async fn`s
//! the JS facade awaits around the synchronous engine.

mod idb;
mod node;
mod opfs;

use std::ops::Deref;

use wasm_bindgen::{JsCast, JsValue};

pub use idb::IdbStorage;
pub use node::{is_node, NodeFsStorage};
pub use opfs::OpfsStorage;

/// A JS value shared by the storage trait's `Send + Sync` objects.
///
/// JS objects cannot cross threads. This wrapper claims they can, which holds only because the
/// target has one thread: without the `atomics` feature a `wasm32-unknown-unknown` module runs on
/// the thread that instantiated it, so no other thread exists to see the value. A build with
/// threads fails to compile instead of being unsound.
#[derive(Clone, Debug, Default)]
pub(crate) struct Js<T>(pub T);

// SAFETY: see the type's docs: one thread only (checked by the cfg). Exercised by every browser
// test, which runs these backends through `Arc<dyn Storage>`.
#[cfg(not(target_feature = "atomics"))]
unsafe impl<T> Send for Js<T> {}
// SAFETY: as above.
#[cfg(not(target_feature = "atomics"))]
unsafe impl<T> Sync for Js<T> {}

impl<T> Deref for Js<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// The name of a JS exception (`"QuotaExceededError"`, `"NoModificationAllowedError"`, ...).
pub(crate) fn exception_name(e: &JsValue) -> String {
    e.dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.name()))
        .or_else(|| {
            js_sys::Reflect::get(e, &"name".into())
                .ok()
                .and_then(|n| n.as_string())
        })
        .unwrap_or_default()
}

/// A JS exception as an I/O error: quota errors become `StorageFull`, so the database reports
/// [`Error::StorageFull`](crate::Error::StorageFull).
pub(crate) fn js_io_error(e: JsValue) -> std::io::Error {
    let name = exception_name(&e);
    let message = e
        .dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| e.as_string())
        .unwrap_or_else(|| format!("{e:?}"));
    let kind = match name.as_str() {
        "QuotaExceededError" => std::io::ErrorKind::StorageFull,
        "NotFoundError" => std::io::ErrorKind::NotFound,
        "NoModificationAllowedError" | "InvalidStateError" => std::io::ErrorKind::PermissionDenied,
        _ => std::io::ErrorKind::Other,
    };
    std::io::Error::new(kind, format!("{name}: {message}"))
}

/// Awaits a JS promise.
pub(crate) async fn wait(promise: js_sys::Promise) -> Result<JsValue, JsValue> {
    wasm_bindgen_futures::JsFuture::from(promise).await
}

/// Fills `buf` from file position `offset` by calls of `read(position, rest)`, each of which may
/// read less than asked (nothing: the end of the file).
pub(crate) fn read_fully(
    offset: u64,
    buf: &mut [u8],
    mut read: impl FnMut(f64, &mut [u8]) -> std::io::Result<usize>,
) -> std::io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match read((offset + done as u64) as f64, &mut buf[done..])? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => done += n,
        }
    }
    Ok(())
}

/// Writes all of `data` at file position `offset` by calls of `write(position, rest)`, each of
/// which may write less than given.
pub(crate) fn write_fully(
    offset: u64,
    data: &[u8],
    mut write: impl FnMut(f64, &[u8]) -> std::io::Result<usize>,
) -> std::io::Result<()> {
    let mut done = 0;
    while done < data.len() {
        match write((offset + done as u64) as f64, &data[done..])? {
            0 => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::WriteZero,
                    "the file system wrote nothing",
                ))
            }
            n => done += n,
        }
    }
    Ok(())
}
