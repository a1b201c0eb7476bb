//! An open database and what it holds: its storage, its Web Lock, its flushes and its page.
//!
//! The JS class and the page's event listeners share this state (through `Rc`, the target
//! having one thread): writes are made durable on a timer ("batched") and when the page is
//! hidden, flushes run one at a time, and a final `pagehide` closes the database so that its
//! lock and handles are let go even if the page never calls `close()`.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

use js_sys::{Function, Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::{future_to_promise, JsFuture};

use super::backend::{self, Backend};
use super::convert::js_error;
use super::lock::{lock_for, WebLock};
use super::options::OpenOptions;
use crate::{EmbeddedVectorDB, Error};

pub(super) struct Shared {
    pub(super) db: EmbeddedVectorDB,
    /// Dropped at close (set to `Memory`), which closes the OPFS handles or the IndexedDB
    /// connection so that the database can be reopened or deleted.
    pub(super) backend: RefCell<Backend>,
    name: String,
    pub(super) read_only: bool,
    pub(super) persisted: Cell<bool>,
    auto_flush: Option<u32>,
    flush_scheduled: Cell<bool>,
    /// The flush in progress; the next one waits for it (commits must not interleave).
    flushing: RefCell<Option<Promise>>,
    lock: RefCell<Option<WebLock>>,
    listeners: RefCell<Vec<(JsValue, &'static str, Function)>>,
}

impl Shared {
    /// Opens the database `options` describe. An open refused once the lock is held lets the
    /// lock go before it returns, so that a retry (say, with other options) is not refused as
    /// `AlreadyOpen`.
    pub(super) async fn open(options: OpenOptions) -> Result<Rc<Shared>, Error> {
        let config = options.config()?;
        let kind = backend::choose(&options);
        options.check_for(kind)?;
        let lock = lock_for(&options.name, kind, options.read_only).await?;
        let (backend, db) = match backend::open(&options, config, kind).await {
            Ok(opened) => opened,
            Err(e) => {
                if let Some(lock) = lock {
                    lock.release().await;
                }
                return Err(e);
            }
        };
        let persisted = options.persist && backend::persist().await;
        let durable = backend.is_durable();
        let shared = Rc::new(Shared {
            db,
            auto_flush: options.flush_timer(durable),
            backend: RefCell::new(backend),
            name: options.name,
            read_only: options.read_only,
            persisted: Cell::new(persisted),
            flush_scheduled: Cell::new(false),
            flushing: RefCell::new(None),
            lock: RefCell::new(lock),
            listeners: RefCell::new(Vec::new()),
        });
        if durable {
            shared.watch_page();
        }
        if shared.db.has_background_work() {
            shared.index_when_idle();
        }
        Ok(shared)
    }

    pub(super) fn writable(&self) -> Result<(), JsValue> {
        match self.read_only {
            true => Err(js_error(Error::ReadOnly(format!(
                "opened with readOnly: true ({})",
                self.name
            )))),
            false => Ok(()),
        }
    }

    /// Flushes the log, then (IndexedDB) commits; one at a time.
    pub(super) fn flush(self: &Rc<Self>) -> Promise {
        let this = self.clone();
        let previous = self.flushing.borrow_mut().take();
        let promise = future_to_promise(async move {
            if let Some(p) = previous {
                let _ = JsFuture::from(p).await;
            }
            this.db.flush().map_err(js_error)?;
            let backend = this.backend.borrow().clone();
            if let Backend::Idb(idb) = backend {
                idb.commit().await.map_err(js_error)?;
            }
            Ok(JsValue::UNDEFINED)
        });
        *self.flushing.borrow_mut() = Some(promise.clone());
        promise
    }

    /// After a write: durable within `flushIntervalMs` ("batched").
    pub(super) fn after_write(self: &Rc<Self>) {
        let Some(ms) = self.auto_flush else { return };
        if self.flush_scheduled.replace(true) {
            return;
        }
        let this = self.clone();
        wasm_bindgen_futures::spawn_local(async move {
            sleep(ms).await;
            this.flush_scheduled.set(false);
            if this.closing() {
                return; // close flushed
            }
            // A close may also come while this flush waits behind the one close started: it
            // then fails on a closed database whose writes close has already flushed.
            if let Err(e) = JsFuture::from(this.flush()).await {
                if !this.closing() {
                    web_sys::console::error_2(
                        &"grape-vector-db: background flush failed:".into(),
                        &e,
                    );
                }
            }
        });
    }

    /// Whether the database is closed or closing (close flushes its writes itself).
    fn closing(&self) -> bool {
        matches!(
            self.db.state(),
            crate::DatabaseState::Shutting | crate::DatabaseState::Closed
        )
    }

    /// Inserts the points of a replayed log into the graph a few at a time, yielding to the
    /// page between steps (the page has one thread): searches meanwhile scan the points not
    /// yet inserted. Then builds the payload indexes in one step, so that the first filtered
    /// search does not. The database is `Busy` meanwhile, as natively. Stops when the database
    /// closes.
    fn index_when_idle(self: &Rc<Self>) {
        /// Points per step: tens of milliseconds of the page's thread.
        const STEP: usize = 16;
        let busy = self.db.begin_indexing();
        let weak = Rc::downgrade(self);
        wasm_bindgen_futures::spawn_local(async move {
            loop {
                sleep(0).await;
                let Some(this) = weak.upgrade() else { return };
                match this.db.index_replayed(STEP) {
                    Some(0) => {
                        this.db.build_payload_indexes();
                        if busy {
                            this.db.end_indexing();
                        }
                        return;
                    }
                    Some(_) => {}
                    None => return,
                }
            }
        });
    }

    /// Flush on `visibilitychange` to hidden and on `pagehide`; close on a final `pagehide`
    /// (not when the page enters the back/forward cache, from which it may come back).
    fn watch_page(self: &Rc<Self>) {
        let global = js_sys::global();
        let Ok(document) = Reflect::get(&global, &"document".into()) else {
            return;
        };
        if document.is_undefined() {
            return;
        }
        let weak = Rc::downgrade(self);
        let on_visibility = flush_when_hidden(weak.clone(), document.clone());
        self.listen(&document, "visibilitychange", on_visibility);
        self.listen(&global, "pagehide", close_on_pagehide(weak));
    }

    /// Adds `f` as `target`'s listener of `event`, kept so that close can remove it again.
    fn listen(&self, target: &JsValue, event: &'static str, f: Function) {
        if let Ok(add) = Reflect::get(target, &"addEventListener".into()) {
            let add: Function = add.unchecked_into();
            let _ = add.call2(target, &event.into(), &f);
            self.listeners.borrow_mut().push((target.clone(), event, f));
        }
    }

    /// Closes the database (its log flushed, its lock and handles released) and forgets the
    /// page listeners; IndexedDB changes must have been committed by a flush first.
    pub(super) fn close_now(&self) -> Result<crate::ShutdownReport, Error> {
        for (target, event, f) in self.listeners.borrow_mut().drain(..) {
            if let Ok(remove) = Reflect::get(&target, &"removeEventListener".into()) {
                let remove: Function = remove.unchecked_into();
                let _ = remove.call2(&target, &event.into(), &f);
            }
        }
        let report = self.db.close();
        if report.is_ok() {
            *self.backend.borrow_mut() = Backend::Memory;
            self.lock.borrow_mut().take();
        }
        report
    }
}

/// The `visibilitychange` listener: a hidden page may be discarded without another event, so
/// its writes are flushed as it is hidden. Holds the state weakly, so as not to keep it alive.
fn flush_when_hidden(weak: Weak<Shared>, document: JsValue) -> Function {
    Closure::<dyn Fn()>::new(move || {
        let hidden = Reflect::get(&document, &"visibilityState".into())
            .ok()
            .and_then(|v| v.as_string())
            .is_some_and(|s| s == "hidden");
        if let (true, Some(this)) = (hidden, weak.upgrade()) {
            let _ = this.flush();
        }
    })
    .into_js_value()
    .unchecked_into()
}

/// The `pagehide` listener: flushes, then closes unless the page enters the back/forward cache.
fn close_on_pagehide(weak: Weak<Shared>) -> Function {
    Closure::<dyn Fn(JsValue)>::new(move |event: JsValue| {
        let Some(this) = weak.upgrade() else { return };
        let persisted = Reflect::get(&event, &"persisted".into())
            .ok()
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        let flushed = this.flush();
        if !persisted {
            let this = this.clone();
            wasm_bindgen_futures::spawn_local(async move {
                let _ = JsFuture::from(flushed).await;
                let _ = this.close_now();
            });
        }
    })
    .into_js_value()
    .unchecked_into()
}

/// Resolves after `ms` milliseconds, giving the page or worker its thread back meanwhile.
pub(super) async fn sleep(ms: u32) {
    let promise = Promise::new(&mut |resolve, _| {
        let set_timeout: Function = Reflect::get(&js_sys::global(), &"setTimeout".into())
            .expect("setTimeout exists in every JS host")
            .unchecked_into();
        let _ = set_timeout.call2(&JsValue::NULL, &resolve, &ms.into());
    });
    let _ = JsFuture::from(promise).await;
}
