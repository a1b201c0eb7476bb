//! The JavaScript API (WebAssembly only): the `GrapeDB` class of the npm package.
//!
//! A thin layer over [`EmbeddedVectorDB`](crate::EmbeddedVectorDB): it parses JS values into the
//! same request types as the Rust API (so filters, points and errors behave identically),
//! chooses and opens a browser storage backend, holds a Web Lock so one tab or worker writes a
//! database, flushes on page hide, and turns every [`Error`] into a thrown JS `Error` with a
//! `code`. This file is the class; each of its jobs has a file of its own:
//! - `grape.d.ts`: the TypeScript of the option and result objects;
//! - `convert.rs`: JS values in and out, errors out;
//! - `options.rs`: `GrapeDB.open`'s options onto the Rust config;
//! - `backend.rs`: which storage, and the database opened in it;
//! - `lock.rs`: the Web Lock of a database;
//! - `session.rs`: an open database's state, its flushes and its page lifecycle.

mod backend;
mod convert;
mod lock;
mod options;
mod session;

use std::rc::Rc;

use js_sys::{Array, Promise, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{future_to_promise, JsFuture};

use crate::{Error, QueryRequest, SearchRequest};
use convert::{
    bad, filter_of, ids_of, js_error, json, json_with_vectors, points_of, search_template, to_js,
    vector_of,
};
use options::OpenOptions;
use session::Shared;

/// The TypeScript of the objects the methods take and return as `JsValue`, which wasm-bindgen
/// cannot derive: appended to the generated `.d.ts`, and named by the methods' typed signatures.
/// The leading newline sets the types apart from the generated file's header.
#[wasm_bindgen(typescript_custom_section)]
const TYPES: &str = concat!("\n", include_str!("grape.d.ts"));

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
    #[wasm_bindgen(js_name = openReport, unchecked_return_type = "OpenReport")]
    pub fn open_report(&self) -> Result<JsValue, JsValue> {
        to_js(&self.shared.db.open_report())
    }

    /// Deletes the stored database `name` (OPFS directory and IndexedDB database). It must not
    /// be open anywhere (`AlreadyOpen` otherwise). In Node, `name` is the database's directory
    /// (its `path`): the database's files go, and the directory with them unless other files
    /// are in it.
    #[wasm_bindgen(js_name = destroy, unchecked_return_type = "Promise<void>")]
    pub fn destroy(name: String) -> Promise {
        future_to_promise(async move {
            backend::destroy(&name).await.map_err(js_error)?;
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

    /// Inserts or replaces many points in batches (`batchSize`, default 256), giving the page
    /// or worker back its thread between them and calling `onProgress(done, total)` after each,
    /// so a large import neither freezes the page nor leaves the user without news. Resolves to
    /// `{ inserted, updated }`; on an error it rejects, and the batches before the failing one
    /// stay written (`done` of the last `onProgress` call says how many points that is).
    #[wasm_bindgen(
        js_name = uploadPoints,
        unchecked_return_type = "Promise<{ inserted: number; updated: number }>"
    )]
    pub fn upload_points(
        &self,
        #[wasm_bindgen(unchecked_param_type = "PointInput[]")] points: JsValue,
        #[wasm_bindgen(
            unchecked_optional_param_type = "{ batchSize?: number; onProgress?: (done: number, total: number) => void }"
        )]
        options: Option<JsValue>,
    ) -> Promise {
        let shared = self.shared.clone();
        future_to_promise(async move {
            let (batch, progress) = upload_options(options)?;
            let Some(points) = points.dyn_ref::<Array>() else {
                return Err(bad("points", "expected an array of {id, vector, payload}"));
            };
            let total = points.length();
            let mut summary = crate::UpsertSummary::default();
            let mut done = 0;
            while done < total {
                let end = total.min(done.saturating_add(batch));
                shared.writable()?;
                let written = shared
                    .db
                    .upsert(points_of(points.slice(done, end).into())?)
                    .map_err(js_error)?;
                shared.after_write();
                summary.inserted += written.inserted;
                summary.updated += written.updated;
                done = end;
                if let Some(f) = &progress {
                    f.call2(&JsValue::NULL, &done.into(), &total.into())?;
                }
                if done < total {
                    session::sleep(0).await;
                }
            }
            to_js(&summary)
        })
    }

    /// The nearest points to `query` (copied once into WebAssembly memory).
    #[wasm_bindgen(unchecked_return_type = "ScoredPoint[]")]
    pub fn search(
        &self,
        query: Vec<f32>,
        #[wasm_bindgen(unchecked_optional_param_type = "SearchOptions")] options: Option<JsValue>,
    ) -> Result<JsValue, JsValue> {
        let request = SearchRequest {
            vector: query,
            ..search_template(&options.unwrap_or_default())?
        };
        let found = self.shared.db.search(&request).map_err(js_error)?;
        to_js(&found.result)
    }

    /// Several searches with the same options, in one pass.
    #[wasm_bindgen(js_name = searchBatch, unchecked_return_type = "ScoredPoint[][]")]
    pub fn search_batch(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Float32Array[]")] queries: Array,
        #[wasm_bindgen(unchecked_optional_param_type = "SearchOptions")] options: Option<JsValue>,
    ) -> Result<JsValue, JsValue> {
        let template = search_template(&options.unwrap_or_default())?;
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

    /// Qdrant's Query API, in Qdrant's JSON (snake_case, as `scroll`): the nearest points to a
    /// dense vector, a sparse one (`{ indices, values }`) or a text (`{ text }`, for a sparse
    /// vector declared with `bm25`) in the vector `using` names; or, with `prefetch`, its
    /// sub-queries' results fused (`query: { fusion: "rrf" | "dbsf" }`) or re-scored by
    /// `query`. Vectors may be typed arrays. Returns `{ points }` (payloads only with
    /// `with_payload: true`, as in Qdrant).
    #[wasm_bindgen(unchecked_return_type = "QueryResponse")]
    pub fn query(
        &self,
        #[wasm_bindgen(unchecked_param_type = "QueryRequest")] request: JsValue,
    ) -> Result<JsValue, JsValue> {
        let request: QueryRequest =
            serde_json::from_value(json_with_vectors(&request, "db.query")?)
                .map_err(|e| bad("db.query", e))?;
        to_js(&self.shared.db.query(&request).map_err(js_error)?)
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
    pub fn delete_by_filter(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Filter")] filter: JsValue,
    ) -> Result<usize, JsValue> {
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
    #[wasm_bindgen(unchecked_return_type = "ScrollPage")]
    pub fn scroll(
        &self,
        #[wasm_bindgen(unchecked_optional_param_type = "ScrollOptions")] options: Option<JsValue>,
    ) -> Result<JsValue, JsValue> {
        let request: crate::ScrollRequest = match options.filter(|o| !o.is_null()) {
            None => crate::ScrollRequest::default(),
            Some(options) => serde_json::from_value(json(options, "scroll options")?)
                .map_err(|e| bad("scroll options", e))?,
        };
        to_js(&self.shared.db.scroll(&request).map_err(js_error)?)
    }

    /// One batch of the whole database as Qdrant points (`{ id, vector, payload }`, in id
    /// order): `{ points, next_page_offset }`. Each batch is the body of a Qdrant REST upsert
    /// (`{ points }`), so a loop from `offset` `null` to a `null` `next_page_offset` moves the
    /// database to a Qdrant cluster. Options: `{ offset, limit }` (default 1000 a batch).
    #[wasm_bindgen(
        js_name = exportPoints,
        unchecked_return_type = "{ points: PointInput[]; next_page_offset: number | string | null }"
    )]
    pub fn export_points(
        &self,
        #[wasm_bindgen(
            unchecked_optional_param_type = "{ offset?: number | string; limit?: number }"
        )]
        options: Option<JsValue>,
    ) -> Result<JsValue, JsValue> {
        let mut request = crate::ScrollRequest {
            limit: 1000,
            ..crate::ScrollRequest::default()
        };
        if let Some(options) = options.filter(|o| !o.is_null()) {
            let given: crate::ScrollRequest =
                serde_json::from_value(json(options, "export options")?)
                    .map_err(|e| bad("export options", e))?;
            if given.filter.is_some() {
                return Err(bad(
                    "export options",
                    "an export takes every point: use scroll to filter",
                ));
            }
            request.offset = given.offset;
            request.limit = given.limit;
        }
        request.with_payload = true;
        request.with_vector = true;
        to_js(&self.shared.db.scroll(&request).map_err(js_error)?)
    }

    /// Number of points, or of points matching `filter`.
    pub fn count(
        &self,
        #[wasm_bindgen(unchecked_optional_param_type = "Filter")] filter: Option<JsValue>,
    ) -> Result<usize, JsValue> {
        let filter = filter_of(filter.unwrap_or_default())?;
        self.shared.db.count(filter.as_ref()).map_err(js_error)
    }

    /// Counts, memory, storage backend, state and uptime.
    #[wasm_bindgen(unchecked_return_type = "Stats")]
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
            &self.shared.backend.borrow().name().into(),
        );
        Ok(value)
    }

    /// Counters and latency percentiles per operation (as JSON), or Prometheus text.
    #[wasm_bindgen(unchecked_return_type = "Metrics | string")]
    pub fn metrics(&self, prometheus: Option<bool>) -> Result<JsValue, JsValue> {
        let m = self.shared.db.metrics();
        match prometheus {
            Some(true) => Ok(m.to_prometheus().into()),
            _ => to_js(&m),
        }
    }

    /// Runs the health checks (the disk check uses `navigator.storage.estimate()`).
    #[wasm_bindgen(unchecked_return_type = "Promise<HealthStatus>")]
    pub fn health(&self) -> Promise {
        let shared = self.shared.clone();
        future_to_promise(async move {
            let space = backend::estimate().await;
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
    #[wasm_bindgen(unchecked_return_type = "Promise<ShutdownReport>")]
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
    #[wasm_bindgen(getter, unchecked_return_type = "DatabaseState")]
    pub fn state(&self) -> String {
        self.shared.db.state().name().to_owned()
    }
}

/// The id of a string key (a slug, a nanoid, a path): its name-based UUID (version 5) in
/// Grape's namespace, the same as `PointId::from_name` in Rust. Ids are Qdrant's (integers or
/// UUIDs); keep the key in the payload to read it back.
///
/// ```js
/// db.upsert([{ id: idFromString("note-1"), vector, payload: { key: "note-1" } }]);
/// ```
#[wasm_bindgen(js_name = idFromString)]
pub fn id_from_string(key: &str) -> String {
    crate::PointId::from_name(key).to_string()
}

/// `uploadPoints`' options: the batch size and the progress callback; other keys are refused,
/// as a misspelt option would otherwise be ignored.
fn upload_options(options: Option<JsValue>) -> Result<(u32, Option<js_sys::Function>), JsValue> {
    let Some(options) = options.filter(|o| !o.is_undefined() && !o.is_null()) else {
        return Ok((DEFAULT_UPLOAD_BATCH, None));
    };
    let mut batch = DEFAULT_UPLOAD_BATCH;
    let mut progress = None;
    for key in js_sys::Object::keys(options.unchecked_ref::<js_sys::Object>()).iter() {
        let value = Reflect::get(&options, &key)?;
        match key.as_string().as_deref() {
            Some("batchSize") => match value.as_f64() {
                Some(n) if n >= 1.0 && n.fract() == 0.0 && n <= u32::MAX as f64 => batch = n as u32,
                _ => {
                    return Err(bad(
                        "upload options",
                        "batchSize must be a whole number >= 1",
                    ))
                }
            },
            Some("onProgress") => match value.dyn_into::<js_sys::Function>() {
                Ok(f) => progress = Some(f),
                Err(_) => return Err(bad("upload options", "onProgress must be a function")),
            },
            other => {
                return Err(bad(
                    "upload options",
                    format!("unknown option {other:?} (known: batchSize, onProgress)"),
                ))
            }
        }
    }
    Ok((batch, progress))
}

/// Points per batch of `uploadPoints`: small enough that a batch holds the thread for a fraction
/// of a second, large enough that the yields between batches cost little.
const DEFAULT_UPLOAD_BATCH: u32 = 256;

impl GrapeDB {
    /// `GrapeDB.open` for Rust callers (and the wasm tests): the database itself rather than a
    /// promise of it.
    pub async fn connect(options: JsValue) -> Result<GrapeDB, JsValue> {
        let options = OpenOptions::from_js(options)?;
        let shared = Shared::open(options).await.map_err(js_error)?;
        Ok(GrapeDB { shared })
    }
}
