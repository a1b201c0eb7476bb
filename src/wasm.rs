//! The JavaScript API (WebAssembly only): the `GrapeDB` class of the npm package.
//!
//! A thin layer over [`EmbeddedVectorDB`]: it parses JS values into the same request types as
//! the Rust API (so filters, points and errors behave identically), chooses and opens a browser
//! storage backend, holds a Web Lock so one tab or worker writes a database, flushes on page
//! hide, and turns every [`Error`] into a thrown JS `Error` with a `code`.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use js_sys::{Array, Float32Array, Function, Promise, Reflect, Uint8Array};
use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::{future_to_promise, JsFuture};

use crate::storage::{IdbStorage, MemoryStorage, OpfsStorage, Storage, StorageSpace};
use crate::{
    Distance, Durability, EmbeddedConfig, EmbeddedVectorDB, Error, Filter, HnswConfig, LogRecovery,
    Point, PointId, SearchRequest,
};

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &'static str = r#"
/** Where the database keeps its files. `auto`: OPFS in a dedicated worker, else IndexedDB, else memory. */
export type StorageKind = "auto" | "opfs" | "indexeddb" | "memory";

export interface OpenOptions {
  /** Database name (one OPFS directory or IndexedDB database per name). Default "default". */
  name?: string;
  dimension: number;
  distance?: "Cosine" | "Dot" | "Euclid" | "Manhattan";
  storage?: StorageKind;
  /** "batched" (default: durable within flushIntervalMs), "onFlush" (at `flush()`), "sync" (OPFS only: every write). */
  durability?: "batched" | "onFlush" | "sync";
  flushIntervalMs?: number;
  /** Open without writing, when another tab or worker holds the database. */
  readOnly?: boolean;
  /** Ask the browser to keep the data under storage pressure (`navigator.storage.persist()`). */
  persist?: boolean;
  /** HNSW parameters, or `false` for exact search only. */
  hnsw?: { m?: number; efConstruction?: number; ef?: number; fullScanThreshold?: number } | false;
  payloadIndexes?: string[];
  maxPoints?: number;
  maxMemoryMb?: number;
  enableWarmup?: boolean;
  /** A database exported by `exportBytes()` (or natively by `export_archive`), opened into an empty storage. */
  import?: Uint8Array;
  /** A log damaged before its end: "strict" (default) refuses to open (`Corrupt`); "salvage" opens with the records before the damage (see `openReport().wal_damaged_at`). */
  logRecovery?: "strict" | "salvage";
}

export interface PointInput {
  id: number | string;
  vector: Float32Array | number[];
  payload?: Record<string, unknown>;
}

export interface SearchOptions {
  /** How many points to return (default 10). */
  limit?: number;
  /** How many of the best to skip first (default 0). */
  offset?: number;
  /** A filter in Qdrant's JSON shape: `{ must: [{ key: "color", match: { value: "red" } }] }`. */
  filter?: Record<string, unknown>;
  /** The HNSW beam width for this search (default: the database's `ef`, 64). */
  ef?: number;
  /** Scan every point instead of the graph (default false). */
  exact?: boolean;
  /** Return each point's payload (default true). */
  withPayload?: boolean;
  /** Return each point's vector (default false). */
  withVector?: boolean;
  /** Leave out points scoring worse than this. */
  scoreThreshold?: number;
}

export interface ScoredPoint {
  id: number | string;
  score: number;
  payload?: Record<string, unknown>;
  vector?: number[];
}

export interface PointRecord {
  id: number | string;
  payload?: Record<string, unknown>;
  vector?: number[];
}
"#;

/// A JS `Error` carrying the Rust error's message and its `code`.
fn js_error(e: Error) -> JsValue {
    let err = js_sys::Error::new(&e.to_string());
    let _ = Reflect::set(&err, &"code".into(), &e.code().into());
    err.into()
}

fn bad(what: &str, e: impl std::fmt::Display) -> JsValue {
    js_error(Error::MalformedFilter(format!("{what}: {e}")))
}

/// Plain JS objects out, through JSON text: one serializer (serde_json's) for every type keeps
/// the `.wasm` small, and `JSON.parse` is as fast as building the objects one call at a time.
fn to_js<T: Serialize>(value: &T) -> Result<JsValue, JsValue> {
    let text = serde_json::to_string(value).map_err(|e| bad("result", e))?;
    js_sys::JSON::parse(&text)
}

/// A JS value as JSON, then parsed by the same code as the Rust API's JSON.
fn json(value: JsValue, what: &str) -> Result<serde_json::Value, JsValue> {
    let text = js_sys::JSON::stringify(&value)
        .ok()
        .and_then(|t| t.as_string())
        .ok_or_else(|| bad(what, "not representable as JSON"))?;
    serde_json::from_str(&text).map_err(|e| bad(what, e))
}

fn filter_of(value: JsValue) -> Result<Option<Filter>, JsValue> {
    if value.is_undefined() || value.is_null() {
        return Ok(None);
    }
    Filter::from_json(&json(value, "filter")?)
        .map(Some)
        .map_err(js_error)
}

fn ids_of(value: JsValue) -> Result<Vec<PointId>, JsValue> {
    match json(value, "ids")? {
        serde_json::Value::Array(ids) => ids
            .iter()
            .map(|id| PointId::from_json(id).map_err(js_error))
            .collect(),
        _ => Err(bad("ids", "expected an array of ids")),
    }
}

fn vector_of(value: &JsValue) -> Result<Vec<f32>, JsValue> {
    match value.dyn_ref::<Float32Array>() {
        Some(typed) => Ok(typed.to_vec()),
        None => serde_json::from_value(json(value.clone(), "vector")?)
            .map_err(|_| bad("vector", "expected a Float32Array or an array of numbers")),
    }
}

/// Points from JS: `Float32Array` vectors are copied once; everything else goes through
/// [`Point::from_json`], the parser of the Rust API, so errors are the same.
fn points_of(value: JsValue) -> Result<Vec<Point>, JsValue> {
    let Some(items) = value.dyn_ref::<Array>() else {
        return Err(bad("points", "expected an array of {id, vector, payload}"));
    };
    items
        .iter()
        .map(|item| {
            let vector = Reflect::get(&item, &"vector".into()).unwrap_or(JsValue::UNDEFINED);
            match vector.dyn_ref::<Float32Array>() {
                Some(typed) => {
                    let get =
                        |k: &str| Reflect::get(&item, &k.into()).unwrap_or(JsValue::UNDEFINED);
                    let id = PointId::from_json(&json(get("id"), "id")?).map_err(js_error)?;
                    let point = Point::new(id, typed.to_vec());
                    let payload = get("payload");
                    if payload.is_undefined() || payload.is_null() {
                        return Ok(point);
                    }
                    point
                        .with_payload(json(payload, "payload")?)
                        .map_err(js_error)
                }
                None => Point::from_json(&json(item, "point")?).map_err(js_error),
            }
        })
        .collect()
}

/// The options of `search` / `searchBatch` as a request without its vector. Read field by
/// field rather than through JSON text: this runs on every search, and the JSON round trip
/// cost about 5 us of a 150 us search. Unknown fields are refused, as everywhere in the API.
fn search_template(options: &JsValue) -> Result<SearchRequest, JsValue> {
    let mut request = SearchRequest::new(Vec::new(), 10);
    // The JS API returns payloads unless told not to (the Rust API's default is the opposite).
    request.with_payload = true;
    if options.is_undefined() || options.is_null() {
        return Ok(request);
    }
    let Some(object) = options.dyn_ref::<js_sys::Object>() else {
        return Err(bad("search options", "expected an object"));
    };
    for key in js_sys::Object::keys(object).iter() {
        let value = Reflect::get(options, &key).unwrap_or(JsValue::UNDEFINED);
        // As JSON would have it: an undefined or null option is an option not given.
        if value.is_undefined() || value.is_null() {
            continue;
        }
        let name = key.as_string().unwrap_or_default();
        match name.as_str() {
            "limit" => request.limit = count_option(&name, &value)?,
            "offset" => request.offset = count_option(&name, &value)?,
            "ef" => request.params.hnsw_ef = Some(count_option(&name, &value)?),
            "exact" => request.params.exact = flag_option(&name, &value)?,
            "withPayload" => request.with_payload = flag_option(&name, &value)?,
            "withVector" => request.with_vector = flag_option(&name, &value)?,
            "scoreThreshold" => {
                let threshold = value
                    .as_f64()
                    .filter(|t| t.is_finite())
                    .ok_or_else(|| bad("search options", "scoreThreshold: expected a number"))?;
                request.score_threshold = Some(threshold as f32);
            }
            "filter" => request.filter = filter_of(value)?,
            _ => {
                return Err(bad(
                    "search options",
                    format!(
                        "unknown field `{name}`, expected one of `limit`, `offset`, `filter`, \
                         `ef`, `exact`, `withPayload`, `withVector`, `scoreThreshold`"
                    ),
                ))
            }
        }
    }
    Ok(request)
}

fn count_option(name: &str, value: &JsValue) -> Result<usize, JsValue> {
    match value.as_f64() {
        Some(n) if n >= 0.0 && n.fract() == 0.0 && n <= MAX_SAFE_INTEGER => Ok(n as usize),
        _ => Err(bad(
            "search options",
            format!("{name}: expected a non-negative integer"),
        )),
    }
}

fn flag_option(name: &str, value: &JsValue) -> Result<bool, JsValue> {
    value
        .as_bool()
        .ok_or_else(|| bad("search options", format!("{name}: expected true or false")))
}

/// The largest integer a JS number holds exactly (`Number.MAX_SAFE_INTEGER`).
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

#[derive(Deserialize, Default, Clone, Copy, PartialEq)]
#[serde(rename_all = "lowercase")]
enum StorageKind {
    #[default]
    Auto,
    Opfs,
    Indexeddb,
    Memory,
}

#[derive(Deserialize, Default, Clone, Copy, PartialEq)]
#[serde(rename_all = "camelCase")]
enum JsDurability {
    #[default]
    Batched,
    OnFlush,
    Sync,
}

#[derive(Deserialize, Default, Clone, Copy, PartialEq)]
#[serde(rename_all = "camelCase")]
enum JsLogRecovery {
    #[default]
    Strict,
    Salvage,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum HnswOption {
    Off(bool),
    On(HnswOptions),
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct HnswOptions {
    m: Option<usize>,
    ef_construction: Option<usize>,
    ef: Option<usize>,
    full_scan_threshold: Option<usize>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct OpenOptions {
    #[serde(default = "default_name")]
    name: String,
    dimension: usize,
    #[serde(default)]
    distance: Distance,
    #[serde(default)]
    storage: StorageKind,
    #[serde(default)]
    durability: JsDurability,
    #[serde(default = "default_flush_ms")]
    flush_interval_ms: u32,
    #[serde(default)]
    read_only: bool,
    #[serde(default)]
    persist: bool,
    hnsw: Option<HnswOption>,
    #[serde(default)]
    payload_indexes: Vec<String>,
    max_points: Option<usize>,
    max_memory_mb: Option<usize>,
    #[serde(default)]
    enable_warmup: bool,
    #[serde(default)]
    log_recovery: JsLogRecovery,
    /// Read separately (a `Uint8Array`), see `GrapeDB::open`.
    #[serde(skip)]
    import: Option<Vec<u8>>,
}

fn default_name() -> String {
    "default".to_owned()
}

fn default_flush_ms() -> u32 {
    100
}

impl OpenOptions {
    fn config(&self) -> Result<EmbeddedConfig, Error> {
        let mut b = EmbeddedConfig::builder(self.dimension).distance(self.distance);
        if let Some(max) = self.max_points {
            b = b.max_points(max);
        }
        if let Some(mb) = self.max_memory_mb {
            b = b.max_memory_mb(mb);
        }
        for key in &self.payload_indexes {
            b = b.payload_index(key.clone());
        }
        b = b.hnsw(match &self.hnsw {
            None | Some(HnswOption::Off(true)) => Some(HnswConfig::default()),
            Some(HnswOption::Off(false)) => None,
            Some(HnswOption::On(h)) => {
                let d = HnswConfig::default();
                Some(HnswConfig {
                    m: h.m.unwrap_or(d.m),
                    ef_construction: h.ef_construction.unwrap_or(d.ef_construction),
                    ef: h.ef.unwrap_or(d.ef),
                    full_scan_threshold: h.full_scan_threshold.unwrap_or(d.full_scan_threshold),
                })
            }
        });
        // The engine's log durability: only OPFS can fsync a write before returning; the other
        // modes buffer and become durable at `flush()` (called on a timer for "batched").
        b = b.durability(match self.durability {
            JsDurability::Sync => Durability::Sync,
            _ => Durability::OnFlush,
        });
        b = b.log_recovery(match self.log_recovery {
            JsLogRecovery::Strict => LogRecovery::Strict,
            JsLogRecovery::Salvage => LogRecovery::Salvage,
        });
        b.enable_warmup(self.enable_warmup).build()
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

/// The storage `auto` picks here: OPFS's synchronous handles exist only in dedicated workers.
fn auto_storage() -> StorageKind {
    if global_has("FileSystemSyncAccessHandle") && navigator_storage().is_some() {
        StorageKind::Opfs
    } else if global_has("indexedDB") {
        StorageKind::Indexeddb
    } else {
        StorageKind::Memory
    }
}

/// `navigator.storage.estimate()` as free and total bytes.
async fn estimate() -> Option<StorageSpace> {
    let promise = navigator_storage()?.estimate().ok()?;
    let estimate = JsFuture::from(promise).await.ok()?;
    let number = |key: &str| Reflect::get(&estimate, &key.into()).ok()?.as_f64();
    let (quota, usage) = (number("quota")?, number("usage").unwrap_or(0.0));
    Some(StorageSpace {
        free: (quota - usage).max(0.0) as u64,
        total: quota as u64,
    })
}

/// A held Web Lock: released (its promise resolved) on drop.
struct WebLock {
    /// Resolves the promise the lock's callback returned: the lock manager then lets it go.
    release: Function,
    /// `navigator.locks.request`'s promise, settled once the lock is let go.
    released: Promise,
}

impl WebLock {
    /// Releases the lock and waits until the lock manager has let it go, so that an open right
    /// after (say, retrying a refused open with other options) is not refused as `AlreadyOpen`.
    async fn release(self) {
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

/// Takes the exclusive Web Lock of database `name` if it is free: `Ok(None)` where Web Locks do
/// not exist (Node), `Err(AlreadyOpen)` when another tab or worker holds it.
async fn web_lock(name: &str) -> Result<Option<WebLock>, Error> {
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
    let options = js_sys::Object::new();
    let _ = Reflect::set(&options, &"ifAvailable".into(), &true.into());
    let request: Function = Reflect::get(&locks, &"request".into())
        .map_err(|_| Error::InvalidConfig("navigator.locks.request is missing".into()))?
        .unchecked_into();
    let lock_name = JsValue::from_str(&format!("grape-vector-db:{name}"));
    let released = request
        .call3(&locks, &lock_name, &options, &callback)
        .map_err(|e| Error::InvalidConfig(format!("navigator.locks.request failed: {e:?}")))?
        .unchecked_into::<Promise>();
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

/// Where the data lives.
#[derive(Clone)]
enum Backend {
    Memory,
    Opfs(OpfsStorage),
    Idb(IdbStorage),
}

impl Backend {
    fn set_space(&self, space: Option<StorageSpace>) {
        match self {
            Backend::Opfs(s) => s.set_space(space),
            Backend::Idb(s) => s.set_space(space),
            Backend::Memory => {}
        }
    }
}

struct Shared {
    db: EmbeddedVectorDB,
    /// Dropped at close (set to `Memory`), which closes the OPFS handles or the IndexedDB
    /// connection so that the database can be reopened or deleted.
    backend: RefCell<Backend>,
    name: String,
    read_only: bool,
    persisted: Cell<bool>,
    auto_flush: Option<u32>,
    flush_scheduled: Cell<bool>,
    /// The flush in progress; the next one waits for it (commits must not interleave).
    flushing: RefCell<Option<Promise>>,
    lock: RefCell<Option<WebLock>>,
    listeners: RefCell<Vec<(JsValue, &'static str, Function)>>,
}

impl Shared {
    fn writable(&self) -> Result<(), JsValue> {
        match self.read_only {
            true => Err(js_error(Error::ReadOnly(format!(
                "opened with readOnly: true ({})",
                self.name
            )))),
            false => Ok(()),
        }
    }

    /// Flushes the log, then (IndexedDB) commits; one at a time.
    fn flush(self: &Rc<Self>) -> Promise {
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
    fn after_write(self: &Rc<Self>) {
        let Some(ms) = self.auto_flush else { return };
        if self.flush_scheduled.replace(true) {
            return;
        }
        let this = self.clone();
        wasm_bindgen_futures::spawn_local(async move {
            sleep(ms).await;
            this.flush_scheduled.set(false);
            if matches!(
                this.db.state(),
                crate::DatabaseState::Shutting | crate::DatabaseState::Closed
            ) {
                return; // close flushed
            }
            if let Err(e) = JsFuture::from(this.flush()).await {
                web_sys::console::error_2(&"grape-vector-db: background flush failed:".into(), &e);
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
        let on_visibility = Closure::<dyn Fn()>::new({
            let weak = weak.clone();
            let document = document.clone();
            move || {
                let hidden = Reflect::get(&document, &"visibilityState".into())
                    .ok()
                    .and_then(|v| v.as_string())
                    .is_some_and(|s| s == "hidden");
                if let (true, Some(this)) = (hidden, weak.upgrade()) {
                    let _ = this.flush();
                }
            }
        });
        let on_pagehide = Closure::<dyn Fn(JsValue)>::new(move |event: JsValue| {
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
        });
        let add = |target: &JsValue, event: &'static str, f: Function| {
            if let Ok(add) = Reflect::get(target, &"addEventListener".into()) {
                let add: Function = add.unchecked_into();
                let _ = add.call2(target, &event.into(), &f);
                self.listeners.borrow_mut().push((target.clone(), event, f));
            }
        };
        add(
            &document,
            "visibilitychange",
            on_visibility.into_js_value().unchecked_into(),
        );
        add(
            &global,
            "pagehide",
            on_pagehide.into_js_value().unchecked_into(),
        );
    }

    /// Closes the database (its log flushed, its lock and handles released) and forgets the
    /// page listeners; IndexedDB changes must have been committed by a flush first.
    fn close_now(&self) -> Result<crate::ShutdownReport, Error> {
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

async fn sleep(ms: u32) {
    let promise = Promise::new(&mut |resolve, _| {
        let set_timeout: Function = Reflect::get(&js_sys::global(), &"setTimeout".into())
            .expect("setTimeout exists in every JS host")
            .unchecked_into();
        let _ = set_timeout.call2(&JsValue::NULL, &resolve, &ms.into());
    });
    let _ = JsFuture::from(promise).await;
}

/// An embedded vector database in the browser, a worker or Node.
///
/// ```js
/// const db = await GrapeDB.open({ name: "notes", dimension: 384 });
/// db.upsert([{ id: 1, vector: new Float32Array(384), payload: { title: "hello" } }]);
/// const hits = db.search(queryVector, { limit: 5, filter: { must: [{ key: "title", match: { value: "hello" } }] } });
/// await db.close();
/// ```
#[wasm_bindgen]
pub struct GrapeDB {
    shared: Rc<Shared>,
}

#[wasm_bindgen]
impl GrapeDB {
    /// Opens (or creates) a database. Rejects with an `Error` whose `code` says why
    /// (`InvalidConfig`, `AlreadyOpen`, `Corrupt`, ...).
    #[wasm_bindgen(unchecked_return_type = "Promise<GrapeDB>")]
    pub fn open(#[wasm_bindgen(unchecked_param_type = "OpenOptions")] options: JsValue) -> Promise {
        future_to_promise(async move { Self::connect(options).await.map(JsValue::from) })
    }

    /// What opening found: `{ created, segment_points, wal_records_replayed,
    /// wal_bytes_truncated, wal_damaged_at, startup }` (the Rust API's names, as in every
    /// result).
    #[wasm_bindgen(js_name = openReport)]
    pub fn open_report(&self) -> Result<JsValue, JsValue> {
        to_js(&self.shared.db.open_report())
    }

    /// Deletes the stored database `name` (OPFS directory and IndexedDB database). It must not
    /// be open anywhere.
    #[wasm_bindgen(js_name = destroy, unchecked_return_type = "Promise<void>")]
    pub fn destroy(name: String) -> Promise {
        future_to_promise(async move {
            if let Some(lock) = web_lock(&name).await.map_err(js_error)? {
                if global_has("FileSystemSyncAccessHandle") || navigator_storage().is_some() {
                    OpfsStorage::destroy(&name).await.map_err(js_error)?;
                }
                if global_has("indexedDB") {
                    IdbStorage::destroy(&name).await.map_err(js_error)?;
                }
                drop(lock);
            }
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Inserts or replaces points (all-or-nothing); returns `{ inserted, updated }`.
    #[wasm_bindgen(unchecked_return_type = "{ inserted: number; updated: number }")]
    pub fn upsert(
        &self,
        #[wasm_bindgen(unchecked_param_type = "PointInput[]")] points: JsValue,
    ) -> Result<JsValue, JsValue> {
        self.shared.writable()?;
        let summary = self
            .shared
            .db
            .upsert(points_of(points)?)
            .map_err(js_error)?;
        self.shared.after_write();
        to_js(&summary)
    }

    /// The nearest points to `query` (copied once into WebAssembly memory).
    #[wasm_bindgen(unchecked_return_type = "ScoredPoint[]")]
    pub fn search(
        &self,
        query: Vec<f32>,
        #[wasm_bindgen(unchecked_param_type = "SearchOptions | undefined")] options: JsValue,
    ) -> Result<JsValue, JsValue> {
        let request = SearchRequest {
            vector: query,
            ..search_template(&options)?
        };
        let found = self.shared.db.search(&request).map_err(js_error)?;
        to_js(&found.result)
    }

    /// Several searches with the same options, in one pass.
    #[wasm_bindgen(js_name = searchBatch, unchecked_return_type = "ScoredPoint[][]")]
    pub fn search_batch(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Float32Array[]")] queries: Array,
        #[wasm_bindgen(unchecked_param_type = "SearchOptions | undefined")] options: JsValue,
    ) -> Result<JsValue, JsValue> {
        let template = search_template(&options)?;
        let requests = queries
            .iter()
            .map(|q| {
                Ok(SearchRequest {
                    vector: vector_of(&q)?,
                    ..template.clone()
                })
            })
            .collect::<Result<Vec<_>, JsValue>>()?;
        let found = self.shared.db.search_batch(&requests).map_err(js_error)?;
        let results: Vec<_> = found.into_iter().map(|r| r.result).collect();
        to_js(&results)
    }

    /// The points with these ids (payload and vector), in order; missing ids are left out.
    #[wasm_bindgen(unchecked_return_type = "PointRecord[]")]
    pub fn get(
        &self,
        #[wasm_bindgen(unchecked_param_type = "(number | string)[]")] ids: JsValue,
    ) -> Result<JsValue, JsValue> {
        let records = self.shared.db.get(ids_of(ids)?).map_err(js_error)?;
        to_js(&records)
    }

    /// Deletes points by id; returns how many existed.
    pub fn delete(
        &self,
        #[wasm_bindgen(unchecked_param_type = "(number | string)[]")] ids: JsValue,
    ) -> Result<usize, JsValue> {
        self.shared.writable()?;
        let n = self.shared.db.delete(ids_of(ids)?).map_err(js_error)?;
        self.shared.after_write();
        Ok(n)
    }

    /// Deletes every point matching a filter; returns how many.
    #[wasm_bindgen(js_name = deleteByFilter)]
    pub fn delete_by_filter(&self, filter: JsValue) -> Result<usize, JsValue> {
        self.shared.writable()?;
        let Some(filter) = filter_of(filter)? else {
            return Err(bad(
                "filter",
                "a filter is required (use {} to delete everything)",
            ));
        };
        let n = self.shared.db.delete_by_filter(&filter).map_err(js_error)?;
        self.shared.after_write();
        Ok(n)
    }

    /// One page of points in id order: `{ points, next_page_offset }` (options in the Rust
    /// API's JSON shape: `{ limit, offset, filter, with_payload, with_vector }`).
    pub fn scroll(&self, options: JsValue) -> Result<JsValue, JsValue> {
        let request: crate::ScrollRequest = if options.is_undefined() || options.is_null() {
            crate::ScrollRequest::default()
        } else {
            serde_json::from_value(json(options, "scroll options")?)
                .map_err(|e| bad("scroll options", e))?
        };
        to_js(&self.shared.db.scroll(&request).map_err(js_error)?)
    }

    /// Number of points, or of points matching `filter`.
    pub fn count(&self, filter: JsValue) -> Result<usize, JsValue> {
        let filter = filter_of(filter)?;
        self.shared.db.count(filter.as_ref()).map_err(js_error)
    }

    /// Counts, memory, storage backend, state and uptime.
    pub fn stats(&self) -> Result<JsValue, JsValue> {
        let stats = self.shared.db.stats();
        let value = to_js(&stats)?;
        let _ = Reflect::set(
            &value,
            &"persisted".into(),
            &self.shared.persisted.get().into(),
        );
        let _ = Reflect::set(&value, &"readOnly".into(), &self.shared.read_only.into());
        let _ = Reflect::set(
            &value,
            &"backend".into(),
            &match *self.shared.backend.borrow() {
                Backend::Memory => "memory",
                Backend::Opfs(_) => "opfs",
                Backend::Idb(_) => "indexeddb",
            }
            .into(),
        );
        Ok(value)
    }

    /// Counters and latency percentiles per operation (as JSON), or Prometheus text.
    pub fn metrics(&self, prometheus: Option<bool>) -> Result<JsValue, JsValue> {
        let m = self.shared.db.metrics();
        match prometheus {
            Some(true) => Ok(m.to_prometheus().into()),
            _ => to_js(&m),
        }
    }

    /// Runs the health checks (the disk check uses `navigator.storage.estimate()`).
    #[wasm_bindgen(unchecked_return_type = "Promise<unknown>")]
    pub fn health(&self) -> Promise {
        let shared = self.shared.clone();
        future_to_promise(async move {
            let space = estimate().await;
            shared.backend.borrow().set_space(space);
            to_js(&shared.db.health())
        })
    }

    /// Makes every write durable (IndexedDB: one atomic transaction).
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn flush(&self) -> Promise {
        self.shared.flush()
    }

    /// Writes the whole database into a new segment and starts an empty log, so the next open
    /// replays nothing (then commits, like `flush`).
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn checkpoint(&self) -> Promise {
        if let Err(e) = self
            .shared
            .writable()
            .and_then(|_| self.shared.db.checkpoint().map_err(js_error))
        {
            return Promise::reject(&e);
        }
        self.shared.flush()
    }

    /// Flushes, closes and releases the database (its lock, handles and memory); returns the
    /// shutdown report. Every later call throws an `Error` with code `Closed`.
    #[wasm_bindgen(unchecked_return_type = "Promise<unknown>")]
    pub fn close(&self) -> Promise {
        let shared = self.shared.clone();
        future_to_promise(async move {
            if shared.db.state() == crate::DatabaseState::Closed {
                return Err(js_error(Error::Closed));
            }
            JsFuture::from(shared.flush()).await?;
            let report = shared.close_now().map_err(js_error)?;
            to_js(&report)
        })
    }

    /// The whole database as bytes (the native format, packed): `GrapeDB.open({ import })`
    /// here or `EmbeddedVectorDB::import_archive` natively opens it.
    #[wasm_bindgen(js_name = exportBytes)]
    pub fn export_bytes(&self) -> Result<Uint8Array, JsValue> {
        let bytes = self.shared.db.export_archive().map_err(js_error)?;
        Ok(Uint8Array::from(&bytes[..]))
    }

    /// `"Ready"`, `"Busy"`, `"Shutting"` or `"Closed"`.
    #[wasm_bindgen(getter)]
    pub fn state(&self) -> String {
        self.shared.db.state().name().to_owned()
    }
}

impl GrapeDB {
    /// `GrapeDB.open` for Rust callers (and the wasm tests): the database itself rather than a
    /// promise of it.
    pub async fn connect(options: JsValue) -> Result<GrapeDB, JsValue> {
        let import = Reflect::get(&options, &"import".into())
            .ok()
            .and_then(|v| v.dyn_into::<Uint8Array>().ok())
            .map(|a| a.to_vec());
        let rest = js_sys::Object::assign(&js_sys::Object::new(), options.unchecked_ref());
        let _ = Reflect::delete_property(&rest, &"import".into());
        // Through JSON, so that unknown (misspelt) options are refused.
        let mut options: OpenOptions =
            serde_json::from_value(json(rest.into(), "open options")?)
                .map_err(|e| js_error(Error::InvalidConfig(format!("open options: {e}"))))?;
        options.import = import;
        Self::start(options).await.map_err(js_error)
    }

    async fn start(options: OpenOptions) -> Result<GrapeDB, Error> {
        let config = options.config()?;
        let kind = match options.storage {
            StorageKind::Auto => auto_storage(),
            chosen => chosen,
        };
        if options.durability == JsDurability::Sync && kind != StorageKind::Opfs {
            return Err(Error::InvalidConfig(
                "durability \"sync\" needs OPFS (a dedicated worker); IndexedDB commits at \
                 flush(): use \"batched\" or \"onFlush\""
                    .into(),
            ));
        }
        let lock = match (kind, options.read_only) {
            (StorageKind::Memory, _) | (_, true) => None,
            _ => web_lock(&options.name).await?,
        };
        let (backend, db) = match Self::open_backend(&options, config, kind).await {
            Ok(opened) => opened,
            Err(e) => {
                if let Some(lock) = lock {
                    lock.release().await;
                }
                return Err(e);
            }
        };
        let persisted = if options.persist {
            match navigator_storage().and_then(|s| s.persist().ok()) {
                Some(p) => JsFuture::from(p)
                    .await
                    .ok()
                    .and_then(|v| v.as_bool())
                    .unwrap_or(false),
                None => false,
            }
        } else {
            false
        };
        let durable_backend = matches!(backend, Backend::Opfs(_) | Backend::Idb(_));
        let shared = Rc::new(Shared {
            db,
            auto_flush: (durable_backend && options.durability == JsDurability::Batched)
                .then_some(options.flush_interval_ms),
            backend: RefCell::new(backend),
            name: options.name,
            read_only: options.read_only,
            persisted: Cell::new(persisted),
            flush_scheduled: Cell::new(false),
            flushing: RefCell::new(None),
            lock: RefCell::new(lock),
            listeners: RefCell::new(Vec::new()),
        });
        if durable_backend {
            shared.watch_page();
        }
        Ok(GrapeDB { shared })
    }

    /// Opens the storage of `kind` and the database in it (the Web Lock, if any, is held).
    async fn open_backend(
        options: &OpenOptions,
        config: EmbeddedConfig,
        kind: StorageKind,
    ) -> Result<(Backend, EmbeddedVectorDB), Error> {
        let (backend, storage): (Backend, Option<Arc<dyn Storage>>) = match kind {
            StorageKind::Memory | StorageKind::Auto => (Backend::Memory, None),
            StorageKind::Opfs => {
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
                (Backend::Opfs(s.clone()), Some(Arc::new(s)))
            }
            StorageKind::Indexeddb => {
                let s = IdbStorage::open(&options.name).await?;
                if options.read_only {
                    // A private copy of the last commit: writes of the owner are not seen.
                    let copy = MemoryStorage::new();
                    for name in s
                        .list()
                        .map_err(crate::storage::io_error("list", "indexeddb"))?
                    {
                        let bytes = s
                            .read_all(&name)
                            .map_err(crate::storage::io_error("read", &name))?;
                        let f = copy
                            .open(&name, crate::storage::OpenMode::CreateIfMissing)
                            .map_err(crate::storage::io_error("copy", &name))?;
                        f.write_at(0, &bytes)
                            .map_err(crate::storage::io_error("copy", &name))?;
                    }
                    (Backend::Memory, Some(Arc::new(copy)))
                } else {
                    (Backend::Idb(s.clone()), Some(Arc::new(s.files())))
                }
            }
        };
        if let (Some(archive), Some(storage)) = (&options.import, &storage) {
            EmbeddedVectorDB::import_archive(archive, &**storage)?;
        }
        let db = match storage {
            Some(storage) => EmbeddedVectorDB::open_with_storage(config, storage)?,
            None => {
                if options.import.is_some() {
                    let memory = Arc::new(MemoryStorage::new());
                    EmbeddedVectorDB::import_archive(
                        options.import.as_deref().unwrap_or(&[]),
                        &*memory,
                    )?;
                    EmbeddedVectorDB::open_with_storage(config, memory)?
                } else {
                    EmbeddedVectorDB::open(config)?
                }
            }
        };
        Ok((backend, db))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasm_bindgen_test::wasm_bindgen_test;

    #[wasm_bindgen_test]
    fn options_map_onto_the_rust_config() {
        let options: OpenOptions = serde_json::from_str(
            r#"{"dimension": 4, "distance": "Dot", "hnsw": {"m": 8}, "maxPoints": 10}"#,
        )
        .unwrap();
        let config = options.config().unwrap();
        assert_eq!(config.distance, Distance::Dot);
        assert_eq!(config.hnsw.unwrap().m, 8);
        assert_eq!(config.max_points, Some(10));
        assert_eq!(config.durability, Durability::OnFlush);
        let off: OpenOptions = serde_json::from_str(r#"{"dimension": 4, "hnsw": false}"#).unwrap();
        assert!(off.config().unwrap().hnsw.is_none());
        assert!(serde_json::from_str::<OpenOptions>(r#"{"dimension": 4, "typo": 1}"#).is_err());
    }
}
