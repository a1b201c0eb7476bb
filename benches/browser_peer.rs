//! The native side of `scripts/bench-wasm`: the procedure of `tests/wasm_figures.rs` (build a
//! 100K x 384 database, reopen it, search it) on the same generated data, natively, so the
//! browser figures stand beside native ones from the same run.

use grape_testkit as testkit;

use std::time::Instant;

use grape_vector_db::{
    Durability, EmbeddedConfig, EmbeddedVectorDB, Point, PointId, Quantization,
    QuantizationSearchParams, QueryRequest, SearchParams, SearchRequest, SparseVectorConfig,
};

const ROWS: usize = 100_000;
const DIM: usize = 384;
const QUERIES: usize = 1000;

fn main() {
    // `--sparse`: issue 20's figures only (scripts/bench-wasm runs everything).
    if std::env::args().any(|a| a == "--sparse") {
        return sparse();
    }
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
    if let Some(dir) = std::env::var_os("GRAPE_MILLION_DIR") {
        million(std::path::Path::new(&dir));
    }
    // The sweep runs on the real WordNet set where it is (scripts/bench-wasm then serves it to
    // the browser too): quantization is judged on real embeddings, whose structure the
    // generated clusters' isotropic noise lacks.
    sparse();
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
    let top10 = |q: usize, params: SearchParams| top10(&db, queries.row(q), params);
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

/// Rows of the million set and its queries.
const MILLION: usize = 1_000_000;
const MILLION_QUERIES: usize = 1000;

/// Issue 19's browser goal at scale: a 1M x 384 SQ8 database built natively, exported as one
/// archive that the browser imports into OPFS as it downloads and searches with its vectors
/// on disk (`tests/wasm_figures.rs`, `million_in_opfs`), beside its queries and their exact
/// top 10 (ids as float32, exact below 2^24). Built once into `dir` (the build takes minutes)
/// and reused while `million.grape` is there; then the same searches here, one thread.
/// Generated data: a thousand clusters of a thousand points, the neighbourhoods of the 100K
/// set's hundred clusters.
fn million(dir: &std::path::Path) {
    let archive = dir.join("million.grape");
    let db_dir = dir.join("db");
    let config = EmbeddedConfig::builder(DIM)
        .data_dir(&db_dir)
        .durability(Durability::OnFlush)
        .checkpoint_wal_bytes(1 << 40)
        .quantization(Quantization::Sq8)
        .vectors_on_disk(true)
        .build()
        .unwrap();
    if archive.exists() {
        println!("FIGURE million: reusing {}", archive.display());
    } else {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).unwrap();
        let data = testkit::clustered(MILLION + MILLION_QUERIES, DIM, MILLION / 1000, 7);
        let (base, queries) = data.split(MILLION);
        drop(data);
        let db = EmbeddedVectorDB::open(config.clone()).unwrap();
        let t = Instant::now();
        testkit::upsert_rows(&db, &base, MILLION);
        db.checkpoint().unwrap();
        println!(
            "FIGURE million build_s {:.0} (two threads, with the checkpoint)",
            t.elapsed().as_secs_f64()
        );
        drop(base);
        // The exact answers, on both cores.
        let exact: Vec<f32> = std::thread::scope(|scope| {
            let halves: Vec<_> = [0..MILLION_QUERIES / 2, MILLION_QUERIES / 2..MILLION_QUERIES]
                .into_iter()
                .map(|range| {
                    let (db, queries) = (&db, &queries);
                    scope.spawn(move || {
                        range
                            .flat_map(|q| {
                                let params = SearchParams {
                                    exact: true,
                                    ..SearchParams::default()
                                };
                                top10(db, queries.row(q), params)
                            })
                            .map(|id| id as f32)
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            halves.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        let exact = testkit::Matrix {
            rows: MILLION_QUERIES,
            dim: 10,
            data: exact,
        };
        testkit::write_npy(&dir.join("queries.npy"), &queries);
        testkit::write_npy(&dir.join("exact.npy"), &exact);
        let t = Instant::now();
        let partial = dir.join("million.grape.partial");
        let mut out = std::io::BufWriter::new(std::fs::File::create(&partial).unwrap());
        db.export_archive_to(&mut out).unwrap();
        drop(out);
        std::fs::rename(&partial, &archive).unwrap();
        println!(
            "FIGURE million archive_mib {:.0} (exported in {:.1} s)",
            std::fs::metadata(&archive).unwrap().len() as f64 / (1 << 20) as f64,
            t.elapsed().as_secs_f64()
        );
        db.close().unwrap();
    }
    let queries = testkit::read_npy(&dir.join("queries.npy")).unwrap();
    let exact = testkit::read_npy(&dir.join("exact.npy")).unwrap();
    let rss = testkit::rss_bytes();
    let t = Instant::now();
    let db = EmbeddedVectorDB::open(config).unwrap();
    println!(
        "FIGURE million native open_ms {:.0} resident_mib {:.0}",
        t.elapsed().as_secs_f64() * 1000.0,
        testkit::rss_bytes().saturating_sub(rss) as f64 / (1 << 20) as f64
    );
    for (ef, oversampling) in testkit::million_sweep() {
        let params = SearchParams {
            hnsw_ef: Some(ef),
            quantization: oversampling.map(|o| QuantizationSearchParams {
                oversampling: Some(o),
                ..QuantizationSearchParams::default()
            }),
            ..SearchParams::default()
        };
        let t = Instant::now();
        let hits: usize = (0..queries.rows)
            .map(|q| {
                let want = exact.row(q);
                top10(&db, queries.row(q), params)
                    .iter()
                    .filter(|&&id| want.contains(&(id as f32)))
                    .count()
            })
            .sum();
        let mean_us = t.elapsed().as_secs_f64() * 1e6 / queries.rows as f64;
        let recall = hits as f64 / (10 * queries.rows) as f64;
        let rescored = oversampling.map_or("the beam".to_owned(), |o| format!("{o}x limit"));
        println!(
            "FIGURE million native ef {ef} rescoring {rescored} recall {recall:.4} mean_us {mean_us:.1}"
        );
        testkit::result(
            "browser",
            "million",
            mean_us,
            "us",
            serde_json::json!({"where": "native", "ef": ef, "oversampling": oversampling, "recall": recall}),
        );
    }
    println!(
        "FIGURE million native resident_mib {:.0} after the searches",
        testkit::rss_bytes().saturating_sub(rss) as f64 / (1 << 20) as f64
    );
}

/// The numeric ids of the top 10 of `query` in `db`.
fn top10(db: &EmbeddedVectorDB, query: &[f32], params: SearchParams) -> Vec<u64> {
    let mut request = SearchRequest::new(query.to_vec(), 10);
    request.params = params;
    db.search(&request)
        .unwrap()
        .result
        .iter()
        .map(|p| match p.id {
            PointId::Num(id) => id,
            PointId::Uuid(_) => unreachable!("numeric ids only"),
        })
        .collect()
}

/// What `tests/wasm_figures.rs` (`sparse_in_the_browser`) does through the JS API, here through
/// the Rust API: the WordNet passages with their vectors and BM25 text in memory, built on one
/// thread, then the mean latency of BM25, dense and hybrid queries.
fn sparse() {
    let Some(testkit::Passages {
        texts,
        queries,
        base,
        query_vectors: vectors,
        ..
    }) = testkit::wordnet_passages()
    else {
        println!("sparse skipped: no WordNet passages ($GRAPE_DATA/wordnet-minilm)");
        return;
    };
    let (n, count) = (texts.len().min(base.rows), queries.len().min(vectors.rows));
    let db = EmbeddedVectorDB::open(
        EmbeddedConfig::builder(base.dim)
            .thread_pool_size(1)
            .sparse_vector("text", SparseVectorConfig::bm25())
            .build()
            .unwrap(),
    )
    .unwrap();
    let t = Instant::now();
    for (start, chunk) in texts[..n].chunks(1000).enumerate() {
        let batch = chunk
            .iter()
            .enumerate()
            .map(|(k, text)| {
                let i = start * 1000 + k;
                Point::new(i as u64, base.row(i).to_vec()).with_text("text", text.as_str())
            })
            .collect();
        db.upsert(batch).unwrap();
    }
    let build = t.elapsed().as_secs_f64() * 1000.0;
    let native = serde_json::json!({"where": "native"});
    testkit::result("browser", "sparse_build", build, "ms", native.clone());
    println!("FIGURE sparse_build_ms {build:.0} ({n} passages with their vectors and BM25 text, HNSW too)");
    let request =
        |json: serde_json::Value| -> QueryRequest { serde_json::from_value(json).unwrap() };
    let bm25: Vec<QueryRequest> = (0..count)
        .map(|i| {
            request(
                serde_json::json!({"query": {"text": queries[i]}, "using": "text", "limit": 10}),
            )
        })
        .collect();
    let hybrid: Vec<QueryRequest> = (0..count)
        .map(|i| {
            request(serde_json::json!({
                "prefetch": [{"query": vectors.row(i), "limit": 20, "params": {"hnsw_ef": 64}},
                             {"query": {"text": queries[i]}, "using": "text", "limit": 20}],
                "query": {"fusion": "rrf"}, "limit": 10,
            }))
        })
        .collect();
    let dense: Vec<SearchRequest> = (0..count)
        .map(|i| {
            let mut r = SearchRequest::new(vectors.row(i).to_vec(), 10);
            r.params.hnsw_ef = Some(64);
            r
        })
        .collect();
    let mean_us = |run: &mut dyn FnMut(usize)| {
        let t = Instant::now();
        (0..count).for_each(&mut *run);
        t.elapsed().as_secs_f64() / count as f64 * 1e6
    };
    let figures = [
        ("bm25", mean_us(&mut |i| drop(db.query(&bm25[i]).unwrap()))),
        (
            "dense",
            mean_us(&mut |i| drop(db.search(&dense[i]).unwrap())),
        ),
        (
            "hybrid",
            mean_us(&mut |i| drop(db.query(&hybrid[i]).unwrap())),
        ),
    ];
    for (name, mean) in figures {
        testkit::result(
            "browser",
            &format!("{name}_mean"),
            mean,
            "us",
            native.clone(),
        );
        println!("FIGURE sparse_{name}_mean_us {mean:.1} ({count} queries, top 10)");
    }
}
