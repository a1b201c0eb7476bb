//! The Web Lock that lets one tab or worker at a time write a database.
//!
//! The browser storages have no file locks: two writers of one OPFS directory or IndexedDB
//! database would overwrite each other's commits. An exclusive `navigator.locks` lock per
//! database name, asked for without waiting, turns the second open into `AlreadyOpen`.

use js_sys::{Function, Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use super::options::StorageKind;
use crate::Error;

/// A held Web Lock: released (its promise resolved) on drop.
pub(super) struct WebLock {
    /// Resolves the promise the lock's callback returned: the lock manager then lets it go.
    release: Function,
    /// `navigator.locks.request`'s promise, settled once the lock is let go.
    released: Promise,
}

impl WebLock {
    /// Releases the lock and waits until the lock manager has let it go, so that an open right
    /// after (say, retrying a refused open with other options) is not refused as `AlreadyOpen`.
    pub(super) async fn release(self) {
        let released = self.released.clone();
        drop(self);
        let _ = JsFuture::from(released).await;
    }
}

impl Drop for WebLock {
    fn drop(&mut self) {
        let _ = self.release.call0(&JsValue::NULL);
    }
}

/// The Web Lock an open of database `name` in `kind` needs: none for memory (nothing is
/// shared), read-only (nothing is written) or Node's files (whose directory has its owner
/// record, `storage/owner.rs`), else the database's own.
pub(super) async fn lock_for(
    name: &str,
    kind: StorageKind,
    read_only: bool,
) -> Result<Option<WebLock>, Error> {
    match (kind, read_only) {
        (StorageKind::Memory | StorageKind::Fs, _) | (_, true) => Ok(None),
        _ => web_lock(name).await,
    }
}

/// Takes the exclusive Web Lock of database `name` if it is free: `Ok(None)` where Web Locks do
/// not exist (Node), `Err(AlreadyOpen)` when another tab or worker holds it.
pub(super) async fn web_lock(name: &str) -> Result<Option<WebLock>, Error> {
    let Ok(navigator) = Reflect::get(&js_sys::global(), &"navigator".into()) else {
        return Ok(None);
    };
    let locks = Reflect::get(&navigator, &"locks".into()).unwrap_or(JsValue::UNDEFINED);
    if locks.is_undefined() || navigator.is_undefined() {
        return Ok(None);
    }
    let mut release = None;
    let held = Promise::new(&mut |resolve, _| release = Some(resolve));
    let mut granted = None;
    let answer = Promise::new(&mut |resolve, _| granted = Some(resolve));
    let granted = granted.expect("the executor runs at once");
    let callback = Closure::once_into_js(move |lock: JsValue| -> JsValue {
        let got = !lock.is_null();
        let _ = granted.call1(&JsValue::NULL, &got.into());
        if got {
            held.into()
        } else {
            JsValue::UNDEFINED
        }
    });
    let released = request(&locks, name, &callback)?;
    let got = JsFuture::from(answer).await.ok().and_then(|v| v.as_bool());
    match got {
        Some(true) => Ok(Some(WebLock {
            release: release.expect("the executor runs at once"),
            released,
        })),
        _ => Err(Error::AlreadyOpen(format!(
            "database {name:?} (another tab or worker has it open; pass readOnly: true to read it)"
        ))),
    }
}

/// `navigator.locks.request` of database `name`'s lock, if it is available at once (else
/// `callback` gets `null`): the promise that settles when the lock is let go.
fn request(locks: &JsValue, name: &str, callback: &JsValue) -> Result<Promise, Error> {
    let options = js_sys::Object::new();
    let _ = Reflect::set(&options, &"ifAvailable".into(), &true.into());
    let request: Function = Reflect::get(locks, &"request".into())
        .map_err(|_| Error::InvalidConfig("navigator.locks.request is missing".into()))?
        .unchecked_into();
    let lock_name = JsValue::from_str(&format!("grape-vector-db:{name}"));
    Ok(request
        .call3(locks, &lock_name, &options, callback)
        .map_err(|e| Error::InvalidConfig(format!("navigator.locks.request failed: {e:?}")))?
        .unchecked_into::<Promise>())
}
