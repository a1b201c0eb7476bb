//! Browser figures (not a test: run by `scripts/bench-wasm`, which passes `--include-ignored`):
//! in a dedicated worker of headless Chromium, builds a 100K x 384 database in OPFS, reopens it
//! through the JS API and searches it. `benches/browser_peer.rs` does the same natively on the
//! same data, so the script can print ratios.
#![cfg(target_arch = "wasm32")]

use grape_testkit as data;

use std::sync::Arc;

use grape_testkit::js::*;
use grape_vector_db::storage::OpfsStorage;
use grape_vector_db::{Durability, EmbeddedConfig, EmbeddedVectorDB, GrapeDB, Quantization};
use js_sys::Reflect;
use wasm_bindgen::JsValue;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_dedicated_worker);

const ROWS: usize = 100_000;
const DIM: usize = 384;
const QUERIES: usize = 1000;

fn now_ms() -> f64 {
    let performance = Reflect::get(&js_sys::global(), &"performance".into()).unwrap();
    let now: js_sys::Function = Reflect::get(&performance, &"now".into()).unwrap().into();
    now.call0(&performance).unwrap().as_f64().unwrap()
}

fn log(line: String) {
    web_sys::console::log_1(&format!("FIGURE {line}").into());
}

/// The same machine-readable line as `grape_testkit::result` natively (which prints to stdout);
/// `extra` is more fields, each with its leading comma.
fn result(name: &str, value: f64, unit: &str, extra: &str) {
    let line = format!(
        r#"RESULT {{"bench": "browser", "name": "{name}", "value": {value}, "unit": "{unit}", "where": "headless Chromium (wasm, OPFS)"{extra}}}"#
    );
    web_sys::console::log_1(&line.into());
}

fn percentile(xs: &mut [f64], p: f64) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[((xs.len() - 1) as f64 * p).round() as usize]
}

#[wasm_bindgen_test]
#[ignore]
async fn browser_figures() {
    let name = "figures";
    done(GrapeDB::destroy(name.into())).await.unwrap();
    let data = data::clustered(ROWS + QUERIES, DIM, 100, 42);
    let config = EmbeddedConfig::builder(DIM)
        .durability(Durability::OnFlush)
        .checkpoint_wal_bytes(1 << 40)
        .build()
        .unwrap();
    {
        let storage = OpfsStorage::open(name).await.unwrap();
        let db = EmbeddedVectorDB::open_with_storage(config, Arc::new(storage)).unwrap();
        let t = now_ms();
        data::upsert_rows(&db, &data, ROWS);
        let build = now_ms() - t;
        result("build", build, "ms", "");
        let t = now_ms();
        db.checkpoint().unwrap();
        log(format!(
            "build_ms {build:.0} ({:.0} points/s, HNSW m 16 ef_construction 100, one thread); checkpoint_ms {:.0}",
            ROWS as f64 / build * 1000.0,
            now_ms() - t
        ));
        db.close().unwrap();
    }
    let options = format!(r#"{{"name": "{name}", "dimension": {DIM}, "storage": "opfs"}}"#);
    let mut opens = Vec::new();
    for _ in 0..5 {
        let t = now_ms();
        let db = open(&options).await.unwrap();
        opens.push(now_ms() - t);
        done(db.close()).await.unwrap();
    }
    let open_ms = percentile(&mut opens, 0.5);
    result("open", open_ms, "ms", "");
    log(format!(
        "open_ms {:.1} (median of 5: Web Lock, OPFS handles, read and verify the segment)",
        percentile(&mut opens, 0.5)
    ));
    let db = open(&options).await.unwrap();
    let options = js(r#"{"limit": 10, "withPayload": false}"#);
    let mut latencies = Vec::new();
    let all = now_ms();
    for q in 0..QUERIES {
        let query = data.row(ROWS + q);
        let t = now_ms();
        let found = db.search(query.to_vec(), Some(options.clone())).unwrap();
        latencies.push(now_ms() - t);
        assert_eq!(js_sys::Array::from(&found).length(), 10);
    }
    // Workers' clocks are coarsened (to 100 us without cross-origin isolation): the mean over
    // all queries is the precise figure, the percentiles are rounded.
    let mean = (now_ms() - all) / QUERIES as f64 * 1000.0;
    result("search_mean", mean, "us", "");
    log(format!(
        "search_mean_us {mean:.1} p50_us {:.1} p99_us {:.1} ({QUERIES} queries, top 10, ef 64, through the JS API)",
        percentile(&mut latencies, 0.5) * 1000.0,
        percentile(&mut latencies, 0.99) * 1000.0
    ));
    let scan = data::in_cache_scan_ns(&data, now_ms);
    result("scan_in_cache", scan, "ns/vector", "");
    log(format!(
        "scan_ns {scan:.1} (exact search over 512 vectors in cache, per vector)"
    ));
    let stats = text(&db.stats().unwrap());
    log(format!("stats {stats}"));
    done(db.close()).await.unwrap();
    done(GrapeDB::destroy(name.into())).await.unwrap();
    // The real WordNet set where scripts/bench-wasm serves it (the native side reads the same
    // files), else the generated data.
    match option_env!("GRAPE_WORDNET_URL") {
        Some(url) => {
            let base = fetch_npy(&format!("{url}/base.f16.npy")).await;
            let queries = fetch_npy(&format!("{url}/query.f16.npy")).await;
            sq8_sweep("wordnet-minilm", &base, &queries).await
        }
        None => {
            let (base, queries) = data.split(ROWS);
            sq8_sweep("generated", &base, &queries).await
        }
    }
}

/// The response to a GET of `url` (the worker's `fetch`).
async fn fetch_response(url: &str) -> JsValue {
    let global = js_sys::global();
    let fetch: js_sys::Function = Reflect::get(&global, &"fetch".into()).unwrap().into();
    done(fetch.call1(&global, &url.into()).unwrap().into())
        .await
        .unwrap_or_else(|e| panic!("fetching {url}: {e:?}"))
}

/// An `.npy` file fetched from `url`.
async fn fetch_npy(url: &str) -> data::Matrix {
    let response = fetch_response(url).await;
    let array_buffer: js_sys::Function = Reflect::get(&response, &"arrayBuffer".into())
        .unwrap()
        .into();
    let bytes = done(array_buffer.call0(&response).unwrap().into())
        .await
        .unwrap();
    data::parse_npy(&js_sys::Uint8Array::new(&bytes).to_vec())
        .unwrap_or_else(|e| panic!("{url}: {e}"))
}

/// The same points in an SQ8 database in OPFS, built, checkpointed and opened again through
/// the JS API, then searched by its vectors and by its codes at every `ef` of the sweep, as
/// `benches/browser_peer.rs` does natively (`grape_testkit::quantized_sweep`).
async fn sq8_sweep(set: &str, base: &data::Matrix, queries: &data::Matrix) {
    let name = "figures-sq8";
    done(GrapeDB::destroy(name.into())).await.unwrap();
    let config = EmbeddedConfig::builder(DIM)
        .durability(Durability::OnFlush)
        .checkpoint_wal_bytes(1 << 40)
        .quantization(Quantization::Sq8)
        .build()
        .unwrap();
    {
        let storage = OpfsStorage::open(name).await.unwrap();
        let db = EmbeddedVectorDB::open_with_storage(config, Arc::new(storage)).unwrap();
        data::upsert_rows(&db, base, base.rows);
        db.checkpoint().unwrap();
        db.close().unwrap();
    }
    let db = open(&format!(
        r#"{{"name": "{name}", "dimension": {DIM}, "storage": "opfs", "quantization": "sq8"}}"#
    ))
    .await
    .unwrap();
    let top10 = |q: usize, options: &str| -> Vec<u64> {
        let found = db
            .search(queries.row(q).to_vec(), Some(js(options)))
            .unwrap();
        js_sys::Array::from(&found)
            .iter()
            .map(|p| Reflect::get(&p, &"id".into()).unwrap().as_f64().unwrap() as u64)
            .collect()
    };
    let exact: Vec<Vec<u64>> = (0..queries.rows)
        .map(|q| top10(q, r#"{"limit": 10, "exact": true}"#))
        .collect();
    let sweep = data::quantized_sweep(
        &exact,
        |q, ef, quantized| {
            top10(
                q,
                &format!(
                    r#"{{"limit": 10, "ef": {ef}, "quantization": {{"ignore": {}}}}}"#,
                    !quantized
                ),
            )
        },
        now_ms,
    );
    for p in sweep {
        let mode = if p.quantized { "sq8" } else { "f32" };
        log(format!(
            "sweep {set} {mode} ef {} recall {:.4} mean_us {:.1}",
            p.ef, p.recall, p.mean_us
        ));
        let extra = format!(
            r#", "set": "{set}", "mode": "{mode}", "ef": {}, "recall": {}"#,
            p.ef, p.recall
        );
        result("sweep", p.mean_us, "us", &extra);
    }
    done(db.close()).await.unwrap();
    done(GrapeDB::destroy(name.into())).await.unwrap();
}

/// WebAssembly memory in MiB (it only grows: this is the peak so far).
fn wasm_memory_mib() -> f64 {
    let buffer = Reflect::get(&wasm_bindgen::memory(), &"buffer".into()).unwrap();
    let bytes = Reflect::get(&buffer, &"byteLength".into()).unwrap();
    bytes.as_f64().unwrap() / (1 << 20) as f64
}

/// Issue 19's browser goal at scale (run by `scripts/bench-wasm` with `GRAPE_MILLION=1`, which
/// builds the set natively and serves it): a 1M x 384 SQ8 database imported into OPFS straight
/// from its download, opened with its vectors on disk, and searched at the `ef`s of the native
/// run; recall@10 against the exact answers computed natively, and the WebAssembly memory
/// (issue 19: within 1 GiB); then a thousand writes, one point a call.
#[wasm_bindgen_test]
#[ignore]
async fn million_in_opfs() {
    let Some(url) = option_env!("GRAPE_MILLION_URL") else {
        log("million skipped: GRAPE_MILLION_URL was not set at build time".into());
        return;
    };
    let name = "figures-million";
    done(GrapeDB::destroy(name.into())).await.unwrap();
    let options = || {
        js(&format!(
            r#"{{"name": "{name}", "dimension": {DIM}, "storage": "opfs", "quantization": "sq8",
                "vectorsOnDisk": true}}"#
        ))
    };
    let before = wasm_memory_mib();
    let t = now_ms();
    let response = fetch_response(&format!("{url}/million.grape")).await;
    let with_import = options();
    Reflect::set(&with_import, &"import".into(), &response).unwrap();
    let db = GrapeDB::connect(with_import).await.unwrap();
    let import_ms = now_ms() - t;
    let count = db.count(None).unwrap();
    assert_eq!(count, 1_000_000);
    let after_import = wasm_memory_mib();
    log(format!(
        "million import_s {:.1} (fetched, written to OPFS as it arrived, opened) wasm_memory_mib {after_import:.0} (before {before:.0})",
        import_ms / 1000.0
    ));
    result("million_import", import_ms, "ms", "");
    done(db.close()).await.unwrap();
    let t = now_ms();
    let db = GrapeDB::connect(options()).await.unwrap();
    let open_ms = now_ms() - t;
    log(format!(
        "million open_ms {open_ms:.0} wasm_memory_mib {:.0} stats {}",
        wasm_memory_mib(),
        text(&db.stats().unwrap())
    ));
    result("million_open", open_ms, "ms", "");
    let queries = fetch_npy(&format!("{url}/queries.npy")).await;
    let exact = fetch_npy(&format!("{url}/exact.npy")).await;
    for (ef, oversampling) in data::million_sweep() {
        let quantization = oversampling.map_or(String::new(), |o| {
            format!(r#", "quantization": {{"oversampling": {o}}}"#)
        });
        let options = js(&format!(
            r#"{{"limit": 10, "ef": {ef}, "withPayload": false{quantization}}}"#
        ));
        let mut hits = 0;
        let t = now_ms();
        for q in 0..queries.rows {
            let found = db
                .search(queries.row(q).to_vec(), Some(options.clone()))
                .unwrap();
            let want = exact.row(q);
            hits += js_sys::Array::from(&found)
                .iter()
                .filter(|p| {
                    let id = Reflect::get(p, &"id".into()).unwrap().as_f64().unwrap();
                    want.contains(&(id as f32))
                })
                .count();
        }
        let mean_us = (now_ms() - t) * 1000.0 / queries.rows as f64;
        let recall = hits as f64 / (10 * queries.rows) as f64;
        let rescored = oversampling.map_or("the beam".to_owned(), |o| format!("{o}x limit"));
        log(format!(
            "million browser ef {ef} rescoring {rescored} recall {recall:.4} mean_us {mean_us:.1} wasm_memory_mib {:.0}",
            wasm_memory_mib()
        ));
        let oversampling = oversampling.map_or("null".to_owned(), |o| o.to_string());
        result(
            "million",
            mean_us,
            "us",
            &format!(
                r#", "ef": {ef}, "oversampling": {oversampling}, "recall": {recall}, "wasm_memory_mib": {}"#,
                wasm_memory_mib()
            ),
        );
    }
    // Writes after the import: each links its point to rows of the base, read from OPFS. Those
    // reads are let go past their budget, so the memory stays that of codes and graph.
    const WRITES: u32 = 1000;
    let t = now_ms();
    for i in 0..WRITES {
        let point = js_sys::Object::new();
        Reflect::set(&point, &"id".into(), &(2_000_000 + i).into()).unwrap();
        let vector = js_sys::Float32Array::from(queries.row(i as usize % queries.rows));
        Reflect::set(&point, &"vector".into(), &vector).unwrap();
        db.upsert(js_sys::Array::of1(&point).into()).unwrap();
    }
    let write_ms = (now_ms() - t) / WRITES as f64;
    let held = Reflect::get(&db.stats().unwrap(), &"memory".into()).unwrap();
    let vectors_mib = Reflect::get(&held, &"vectors".into())
        .unwrap()
        .as_f64()
        .unwrap()
        / (1 << 20) as f64;
    log(format!(
        "million writes {WRITES} one point a call: {write_ms:.2} ms each; vectors held {vectors_mib:.1} MiB; wasm_memory_mib {:.0}",
        wasm_memory_mib()
    ));
    result(
        "million_write",
        write_ms,
        "ms",
        &format!(
            r#", "wasm_memory_mib": {}, "vectors_held_mib": {vectors_mib}"#,
            wasm_memory_mib()
        ),
    );
    assert_eq!(db.count(None).unwrap(), 1_000_000 + WRITES as usize);
    done(db.close()).await.unwrap();
    done(GrapeDB::destroy(name.into())).await.unwrap();
}

/// Issue 20's figures in the browser, beside `benches/browser_peer.rs --sparse` natively: the
/// WordNet passages (text and MiniLM vectors, served by `scripts/bench-wasm`) put in a database
/// with a BM25 vector through the JS API (`upsert` of points `{"": vector, text: {text}}`), then
/// BM25, dense and hybrid queries through `db.query` and `db.search`, one at a time. Means over
/// all queries: a worker's clock is coarsened to 100 us, so percentiles are rounded.
#[wasm_bindgen_test]
#[ignore]
async fn sparse_in_the_browser() {
    let Some(url) = option_env!("GRAPE_WORDNET_URL") else {
        log("sparse skipped: GRAPE_WORDNET_URL was not set at build time".into());
        return;
    };
    let texts = fetch_text(&format!("{url}/base.txt")).await;
    let queries = fetch_text(&format!("{url}/query.txt")).await;
    let base = fetch_npy(&format!("{url}/base.f16.npy")).await;
    let vectors = fetch_npy(&format!("{url}/query.f16.npy")).await;
    let n = texts.len().min(base.rows);
    let count = queries.len().min(vectors.rows);
    let db = open(&format!(
        r#"{{"dimension": {}, "storage": "memory", "sparseVectors": {{"text": {{"bm25": true}}}}}}"#,
        base.dim
    ))
    .await
    .unwrap();
    let t = now_ms();
    for (start, chunk) in texts[..n].chunks(1000).enumerate() {
        let batch = js_sys::Array::new();
        for (k, text) in chunk.iter().enumerate() {
            let i = start * 1000 + k;
            let named = js_sys::Object::new();
            let dense = js_sys::Float32Array::from(base.row(i));
            Reflect::set(&named, &"".into(), &dense).unwrap();
            let document = js_sys::Object::new();
            Reflect::set(&document, &"text".into(), &text.as_str().into()).unwrap();
            Reflect::set(&named, &"text".into(), &document).unwrap();
            let point = js_sys::Object::new();
            Reflect::set(&point, &"id".into(), &(i as u32).into()).unwrap();
            Reflect::set(&point, &"vector".into(), &named).unwrap();
            batch.push(&point);
        }
        db.upsert(batch.into()).unwrap();
    }
    let build = now_ms() - t;
    result("sparse_build", build, "ms", "");
    log(format!(
        "sparse_build_ms {build:.0} ({n} passages with their vectors and BM25 text, HNSW too)"
    ));
    let query_js = |json: serde_json::Value| js(&json.to_string());
    let bm25: Vec<JsValue> = (0..count)
        .map(|i| {
            query_js(
                serde_json::json!({"query": {"text": queries[i]}, "using": "text", "limit": 10}),
            )
        })
        .collect();
    let hybrid: Vec<JsValue> = (0..count)
        .map(|i| {
            let request = query_js(serde_json::json!({
                "prefetch": [{"limit": 20, "params": {"hnsw_ef": 64}},
                             {"query": {"text": queries[i]}, "using": "text", "limit": 20}],
                "query": {"fusion": "rrf"}, "limit": 10,
            }));
            // The dense prefetch's vector as a typed array, as an app passes an embedding.
            let prefetch =
                js_sys::Array::from(&Reflect::get(&request, &"prefetch".into()).unwrap());
            let dense = js_sys::Float32Array::from(vectors.row(i));
            Reflect::set(&prefetch.get(0), &"query".into(), &dense).unwrap();
            request
        })
        .collect();
    let search = js(r#"{"limit": 10, "ef": 64, "withPayload": false}"#);
    let mean_us = |run: &mut dyn FnMut(usize)| {
        let t = now_ms();
        (0..count).for_each(&mut *run);
        (now_ms() - t) / count as f64 * 1000.0
    };
    let figures = [
        (
            "bm25",
            mean_us(&mut |i| drop(db.query(bm25[i].clone()).unwrap())),
        ),
        (
            "dense",
            mean_us(&mut |i| {
                drop(
                    db.search(vectors.row(i).to_vec(), Some(search.clone()))
                        .unwrap(),
                )
            }),
        ),
        (
            "hybrid",
            mean_us(&mut |i| drop(db.query(hybrid[i].clone()).unwrap())),
        ),
    ];
    for (name, mean) in figures {
        result(&format!("{name}_mean"), mean, "us", "");
        log(format!(
            "sparse_{name}_mean_us {mean:.1} ({count} queries, top 10, through the JS API)"
        ));
    }
    done(db.close()).await.unwrap();
}

/// The lines of a text file fetched from `url`.
async fn fetch_text(url: &str) -> Vec<String> {
    let response = fetch_response(url).await;
    let read: js_sys::Function = Reflect::get(&response, &"text".into()).unwrap().into();
    let text = done(read.call0(&response).unwrap().into()).await.unwrap();
    text.as_string()
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}
