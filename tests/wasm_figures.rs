//! Browser figures (not a test: run by `scripts/bench-wasm`, which passes `--include-ignored`):
//! in a dedicated worker of headless Chromium, builds a 100K x 384 database in OPFS, reopens it
//! through the JS API and searches it. `benches/browser_peer.rs` does the same natively on the
//! same data, so the script can print ratios.
#![cfg(target_arch = "wasm32")]

use grape_testkit as data;

use std::sync::Arc;

use grape_testkit::js::*;
use grape_vector_db::storage::OpfsStorage;
use grape_vector_db::{Durability, EmbeddedConfig, EmbeddedVectorDB, GrapeDB, Point};
use js_sys::Reflect;
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

/// The same machine-readable line as `grape_testkit::result` natively (which prints to stdout).
fn result(name: &str, value: f64, unit: &str) {
    let line = format!(
        r#"RESULT {{"bench": "browser", "name": "{name}", "value": {value}, "unit": "{unit}", "where": "headless Chromium (wasm, OPFS)"}}"#
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
        for start in (0..ROWS).step_by(10_000) {
            db.upsert(
                (start..start + 10_000)
                    .map(|i| Point::new(i as u64, data.row(i).to_vec()))
                    .collect(),
            )
            .unwrap();
        }
        let build = now_ms() - t;
        result("build", build, "ms");
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
    result("open", open_ms, "ms");
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
    result("search_mean", mean, "us");
    log(format!(
        "search_mean_us {mean:.1} p50_us {:.1} p99_us {:.1} ({QUERIES} queries, top 10, ef 64, through the JS API)",
        percentile(&mut latencies, 0.5) * 1000.0,
        percentile(&mut latencies, 0.99) * 1000.0
    ));
    let scan = data::in_cache_scan_ns(&data, now_ms);
    result("scan_in_cache", scan, "ns/vector");
    log(format!(
        "scan_ns {scan:.1} (exact search over 512 vectors in cache, per vector)"
    ));
    let stats = text(&db.stats().unwrap());
    log(format!("stats {stats}"));
    done(db.close()).await.unwrap();
    done(GrapeDB::destroy(name.into())).await.unwrap();
}
