//! Browser backends of the storage trait (WebAssembly only): OPFS through synchronous access
//! handles in a dedicated worker, and IndexedDB (anywhere) with writes committed by `commit`.
//!
//! Both keep the bytes of the native format: a database exported from one opens in the other
//! and natively. Their asynchronous parts (opening handles, loading, committing) are `async fn`s
//! the JS facade awaits around the synchronous engine.

mod idb;
mod opfs;

use std::ops::Deref;

use wasm_bindgen::{JsCast, JsValue};

pub use idb::IdbStorage;
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
