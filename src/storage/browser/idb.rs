//! IndexedDB backend: works on the main thread and in workers (and wherever OPFS's synchronous
//! handles are missing).
//!
//! The files live in memory while the database is open and are committed in chunks, all
//! changes in one transaction: that logic is [`ChunkedStorage`], platform-free and tested
//! natively. This module loads a `ChunkedStorage` from IndexedDB (database `grape-<name>`,
//! object store `files`: name -> length, `chunks`: `[name, index]` -> bytes) and applies its
//! commits as IndexedDB transactions, which are atomic: after a crash the database is exactly at
//! its last completed commit.

use std::ops::Deref;
use std::sync::Arc;

use js_sys::{Array, Promise, Uint8Array};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{IdbDatabase, IdbRequest, IdbTransaction, IdbTransactionMode};

use super::{exception_name, js_io_error, wait, Js};
use crate::error::{Error, Result};
use crate::storage::chunked::{ChunkOp, ChunkedStorage, CHUNK};
use crate::storage::io_error;

const FILES: &str = "files";
const CHUNKS: &str = "chunks";

/// A database held in IndexedDB: its files, a [`ChunkedStorage`] (which the database opens as
/// its storage), and the connection its commits go to.
#[derive(Clone)]
pub struct IdbStorage {
    files: ChunkedStorage,
    db: Arc<Connection>,
    name: String,
}

/// The IndexedDB connection, closed when the last handle goes (so that the database can be
/// deleted or opened elsewhere).
struct Connection(Js<IdbDatabase>);

impl Drop for Connection {
    fn drop(&mut self) {
        self.0.close();
    }
}

impl Deref for IdbStorage {
    type Target = ChunkedStorage;
    fn deref(&self) -> &ChunkedStorage {
        &self.files
    }
}

/// Resolves when `req` succeeds (with its result), rejects with its error.
fn request(req: &IdbRequest) -> Promise {
    let req = req.clone();
    Promise::new(&mut |resolve, reject| {
        let done = req.clone();
        let ok = Closure::once_into_js(move |_: JsValue| {
            let _ = resolve.call1(&JsValue::NULL, &done.result().unwrap_or(JsValue::UNDEFINED));
        });
        let failed = req.clone();
        let err = Closure::once_into_js(move |_: JsValue| {
            let e = failed
                .error()
                .ok()
                .flatten()
                .map_or(JsValue::UNDEFINED, JsValue::from);
            let _ = reject.call1(&JsValue::NULL, &e);
        });
        req.set_onsuccess(Some(ok.unchecked_ref()));
        req.set_onerror(Some(err.unchecked_ref()));
    })
}

/// Resolves when `tx` commits, rejects with its error when it fails or aborts.
fn transaction_done(tx: &IdbTransaction) -> Promise {
    let tx = tx.clone();
    Promise::new(&mut |resolve, reject| {
        let ok = Closure::once_into_js(move |_: JsValue| {
            let _ = resolve.call0(&JsValue::NULL);
        });
        let failed = tx.clone();
        let reject2 = reject.clone();
        let failed2 = tx.clone();
        let err = Closure::once_into_js(move |_: JsValue| {
            let e = failed.error().map_or(JsValue::UNDEFINED, JsValue::from);
            let _ = reject.call1(&JsValue::NULL, &e);
        });
        let abort = Closure::once_into_js(move |_: JsValue| {
            let e = failed2.error().map_or_else(
                || JsValue::from_str("the transaction was aborted"),
                JsValue::from,
            );
            let _ = reject2.call1(&JsValue::NULL, &e);
        });
        tx.set_oncomplete(Some(ok.unchecked_ref()));
        tx.set_onerror(Some(err.unchecked_ref()));
        tx.set_onabort(Some(abort.unchecked_ref()));
    })
}

fn chunk_key(name: &str, index: u32) -> JsValue {
    Array::of2(&name.into(), &index.into()).into()
}

fn io<'a>(op: &'static str, name: &'a str) -> impl Fn(JsValue) -> Error + 'a {
    move |e| io_error(op, name)(js_io_error(e))
}

impl IdbStorage {
    /// Opens (creating if needed) the IndexedDB database `grape-<name>` and loads its files.
    pub async fn open(name: &str) -> Result<IdbStorage> {
        let db_name = format!("grape-{name}");
        let factory = indexed_db().map_err(io("open IndexedDB", &db_name))?;
        let open = factory
            .open_with_u32(&db_name, 1)
            .map_err(io("open IndexedDB", &db_name))?;
        let upgrading = open.clone();
        let upgrade = Closure::once_into_js(move |_: JsValue| {
            if let Ok(db) = upgrading.result() {
                let db: IdbDatabase = db.unchecked_into();
                let _ = db.create_object_store(FILES);
                let _ = db.create_object_store(CHUNKS);
            }
        });
        open.set_onupgradeneeded(Some(upgrade.unchecked_ref()));
        let db: IdbDatabase = wait(request(&open))
            .await
            .map_err(io("open IndexedDB", &db_name))?
            .unchecked_into();
        let db = Arc::new(Connection(Js(db)));
        let load = io("read IndexedDB", &db_name);
        let tx =
            db.0.transaction_with_str_sequence_and_mode(
                &Array::of2(&FILES.into(), &CHUNKS.into()),
                IdbTransactionMode::Readonly,
            )
            .map_err(&load)?;
        let get_all = |store: &str, keys: bool| -> std::result::Result<Promise, JsValue> {
            let store = tx.object_store(store)?;
            Ok(request(&if keys {
                store.get_all_keys()?
            } else {
                store.get_all()?
            }))
        };
        let (file_names, file_lens, chunk_keys, chunk_values) = (
            get_all(FILES, true).map_err(&load)?,
            get_all(FILES, false).map_err(&load)?,
            get_all(CHUNKS, true).map_err(&load)?,
            get_all(CHUNKS, false).map_err(&load)?,
        );
        let file_names: Array = wait(file_names).await.map_err(&load)?.unchecked_into();
        let file_lens: Array = wait(file_lens).await.map_err(&load)?.unchecked_into();
        let chunk_keys: Array = wait(chunk_keys).await.map_err(&load)?.unchecked_into();
        let chunk_values: Array = wait(chunk_values).await.map_err(&load)?.unchecked_into();
        let mut lens = file_names
            .iter()
            .zip(file_lens.iter())
            .filter_map(|(name, len)| Some((name.as_string()?, len.as_f64()? as u64)));
        let mut chunks = chunk_keys
            .iter()
            .zip(chunk_values.iter())
            .filter_map(|(key, value)| {
                let key: Array = key.unchecked_into();
                let (name, index) = (key.get(0).as_string()?, key.get(1).as_f64()?);
                let chunk: Uint8Array = value.unchecked_into();
                Some(((name, index as u32), chunk.to_vec()))
            });
        Ok(IdbStorage {
            files: ChunkedStorage::load(format!("indexeddb:{name}"), CHUNK, &mut lens, &mut chunks),
            db,
            name: name.to_owned(),
        })
    }

    /// Deletes the IndexedDB database of `name` (it must not be open).
    pub async fn destroy(name: &str) -> Result<()> {
        let db_name = format!("grape-{name}");
        let factory = indexed_db().map_err(io("delete IndexedDB", &db_name))?;
        let req = factory
            .delete_database(&db_name)
            .map_err(io("delete IndexedDB", &db_name))?;
        // Blocked means a connection elsewhere is open: say so instead of waiting for ever.
        let blocked = Promise::new(&mut |_, reject| {
            let on_blocked = Closure::once_into_js(move |_: JsValue| {
                let _ = reject.call1(&JsValue::NULL, &"blocked".into());
            });
            req.set_onblocked(Some(on_blocked.unchecked_ref()));
        });
        let race = Promise::race(&Array::of2(&request(&req), &blocked));
        match wait(race).await {
            Ok(_) => Ok(()),
            Err(e) if e.as_string().as_deref() == Some("blocked") => Err(Error::AlreadyOpen(
                format!("IndexedDB database {db_name} (close it everywhere before deleting it)"),
            )),
            Err(e) => Err(io("delete IndexedDB", &db_name)(e)),
        }
    }

    /// The files, as the database's storage.
    pub fn files(&self) -> ChunkedStorage {
        self.files.clone()
    }

    /// Writes every change since the last commit in one IndexedDB transaction. If it fails
    /// (a full quota: [`Error::StorageFull`]), IndexedDB keeps the previous commit and the
    /// changes stay pending for the next attempt.
    pub async fn commit(&self) -> Result<()> {
        let db_name = format!("grape-{}", self.name);
        let fail = io("write IndexedDB", &db_name);
        // Plan and issue every request in this one synchronous stretch: IndexedDB copies each
        // value when it is put, so the transaction holds exactly this moment's state.
        let plan = self.files.plan_commit();
        let issued = (|| -> std::result::Result<IdbTransaction, JsValue> {
            let tx = self.db.0.transaction_with_str_sequence_and_mode(
                &Array::of2(&FILES.into(), &CHUNKS.into()),
                IdbTransactionMode::Readwrite,
            )?;
            let meta = tx.object_store(FILES)?;
            let chunks = tx.object_store(CHUNKS)?;
            for op in &plan.ops {
                match op {
                    ChunkOp::PutChunk { file, index, bytes } => {
                        chunks.put_with_key(
                            &Uint8Array::from(&bytes[..]),
                            &chunk_key(file, *index),
                        )?;
                    }
                    ChunkOp::DeleteChunk { file, index } => {
                        chunks.delete(&chunk_key(file, *index))?;
                    }
                    ChunkOp::PutLen { file, len } => {
                        meta.put_with_key(&(*len as f64).into(), &file.into())?;
                    }
                    ChunkOp::DeleteFile { file } => {
                        meta.delete(&file.into())?;
                    }
                }
            }
            Ok(tx)
        })();
        let tx = match issued {
            Ok(tx) => tx,
            Err(e) => {
                self.files.commit_failed(plan);
                return Err(fail(e));
            }
        };
        match wait(transaction_done(&tx)).await {
            Ok(_) => {
                self.files.committed(plan);
                Ok(())
            }
            Err(e) => {
                self.files.commit_failed(plan);
                if exception_name(&e) == "QuotaExceededError" {
                    return Err(Error::io(
                        "write",
                        db_name.clone(),
                        std::io::Error::new(
                            std::io::ErrorKind::QuotaExceeded,
                            "the browser's storage quota is used up",
                        ),
                    ));
                }
                Err(fail(e))
            }
        }
    }
}

/// `indexedDB` of the page, worker or any global that has one.
fn indexed_db() -> std::result::Result<web_sys::IdbFactory, JsValue> {
    let factory = js_sys::Reflect::get(&js_sys::global(), &"indexedDB".into())?;
    if factory.is_undefined() || factory.is_null() {
        return Err(js_sys::Error::new("IndexedDB is not available here").into());
    }
    Ok(factory.unchecked_into())
}
