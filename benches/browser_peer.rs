//! The native side of `scripts/bench-wasm`: the procedure of `tests/wasm_figures.rs` (build a
//! 100K x 384 database, reopen it, search it) on the same generated data, natively, so the
//! browser figures stand beside native ones from the same run.

use grape_testkit as testkit;

use std::time::Instant;

use grape_vector_db::{
    Durability, EmbeddedConfig, EmbeddedVectorDB, PointId, Quantization, QuantizationSearchParams,
    SearchParams, SearchRequest,
};

const ROWS: usize = 100_000;
const DIM: usize = 384;
const QUERIES: usize = 1000;

fn main() {
    let data = testkit::clustered(ROWS + QUERIES, DIM, 100, 42);
    let config = config("target/bench-browser-peer", Quantization::None);
    {
        let db = EmbeddedVectorDB::open(config.clone()).unwrap();
        let t = Instant::now();
        testkit::upsert_rows(&db, &data, ROWS);
        let build = t.elapsed().as_secs_f64() * 1000.0;
        let t = Instant::now();
        db.checkpoint().unwrap();
        testkit::result(
            "browser",
            "build",
            build,
            "ms",
            serde_json::json!({"where": "native"}),
        );
        println!(
            "FIGURE build_ms {build:.0} ({:.0} points/s, one thread); checkpoint_ms {:.0}",
            ROWS as f64 / build * 1000.0,
            t.elapsed().as_secs_f64() * 1000.0
        );
        db.close().unwrap();
    }
    let mut opens = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let db = EmbeddedVectorDB::open(config.clone()).unwrap();
        opens.push(t.elapsed());
        db.close().unwrap();
    }
    let open = testkit::median(opens).as_secs_f64() * 1000.0;
    println!("FIGURE open_ms {open:.1}");
    testkit::result(
        "browser",
        "open",
        open,
        "ms",
        serde_json::json!({"where": "native"}),
    );
    let db = EmbeddedVectorDB::open(config).unwrap();
    let all = Instant::now();
    let mut latencies: Vec<_> = (0..QUERIES)
        .map(|q| {
            let t = Instant::now();
            db.search(&SearchRequest::new(data.row(ROWS + q).to_vec(), 10))
                .unwrap();
            t.elapsed()
        })
        .collect();
    let mean = all.elapsed().as_secs_f64() * 1e6 / QUERIES as f64;
    testkit::result(
        "browser",
        "search_mean",
        mean,
        "us",
        serde_json::json!({"where": "native"}),
    );
    println!(
        "FIGURE search_mean_us {mean:.1} p50_us {:.1} p99_us {:.1}",
        testkit::percentile(&mut latencies, 0.5).as_secs_f64() * 1e6,
        testkit::percentile(&mut latencies, 0.99).as_secs_f64() * 1e6
    );
    let start = Instant::now();
    let scan = testkit::in_cache_scan_ns(&data, || start.elapsed().as_secs_f64() * 1000.0);
    testkit::result(
        "browser",
        "scan_in_cache",
        scan,
        "ns/vector",
        serde_json::json!({"where": "native"}),
    );
    println!("FIGURE scan_ns {scan:.1} (exact search over 512 vectors in cache, per vector)");
    drop(db);
    // The sweep runs on the real WordNet set where it is (scripts/bench-wasm then serves it to
    // the browser too): quantization is judged on real embeddings, whose structure the
    // generated clusters' isotropic noise lacks.
    match testkit::wordnet_vectors() {
        Some((base, queries)) => sq8_sweep(
            "wordnet-minilm",
            &testkit::read_npy(&base).unwrap(),
            &testkit::read_npy(&queries).unwrap(),
        ),
        None => {
            let (base, queries) = data.split(ROWS);
            sq8_sweep("generated", &base, &queries)
        }
    }
}

/// A database in `dir` (emptied first) under the repository, built on one thread as the
/// browser's.
fn config(dir: &str, quantization: Quantization) -> EmbeddedConfig {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(dir);
    let _ = std::fs::remove_dir_all(&dir);
    EmbeddedConfig::builder(DIM)
        .data_dir(&dir)
        .durability(Durability::OnFlush)
        .checkpoint_wal_bytes(1 << 40)
        .thread_pool_size(1)
        .quantization(quantization)
        .build()
        .unwrap()
}

/// The same points in an SQ8 database, built, checkpointed and opened again, then searched by
/// its vectors and by its codes at every `ef` of the sweep (`grape_testkit::quantized_sweep`,
/// which the browser runs too).
fn sq8_sweep(set: &str, base: &testkit::Matrix, queries: &testkit::Matrix) {
    let config = config("target/bench-browser-peer-sq8", Quantization::Sq8);
    {
        let db = EmbeddedVectorDB::open(config.clone()).unwrap();
        testkit::upsert_rows(&db, base, base.rows);
        db.checkpoint().unwrap();
        db.close().unwrap();
    }
    let db = EmbeddedVectorDB::open(config).unwrap();
    let top10 = |q: usize, params: SearchParams| -> Vec<u64> {
        let mut request = SearchRequest::new(queries.row(q).to_vec(), 10);
        request.params = params;
        let found = db.search(&request).unwrap().result;
        found
            .iter()
            .map(|p| match p.id {
                PointId::Num(id) => id,
                PointId::Uuid(_) => unreachable!("numeric ids only"),
            })
            .collect()
    };
    let exact: Vec<Vec<u64>> = (0..queries.rows)
        .map(|q| {
            let exact = SearchParams {
                exact: true,
                ..SearchParams::default()
            };
            top10(q, exact)
        })
        .collect();
    let start = Instant::now();
    let sweep = testkit::quantized_sweep(
        &exact,
        |q, ef, quantized| {
            let params = SearchParams {
                hnsw_ef: Some(ef),
                quantization: Some(QuantizationSearchParams {
                    ignore: !quantized,
                    ..QuantizationSearchParams::default()
                }),
                ..SearchParams::default()
            };
            top10(q, params)
        },
        || start.elapsed().as_secs_f64() * 1000.0,
    );
    for p in sweep {
        let mode = if p.quantized { "sq8" } else { "f32" };
        println!(
            "FIGURE sweep {set} {mode} ef {} recall {:.4} mean_us {:.1}",
            p.ef, p.recall, p.mean_us
        );
        testkit::result(
            "browser",
            "sweep",
            p.mean_us,
            "us",
            serde_json::json!({"where": "native", "set": set, "mode": mode, "ef": p.ef, "recall": p.recall}),
        );
    }
}
