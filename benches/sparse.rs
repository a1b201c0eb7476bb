//! Sparse and hybrid retrieval on the WordNet passages (issue 20), beside Qdrant Edge doing
//! the same queries in the same run.
//!
//! `cargo bench --bench sparse` reads `base.txt` and `query.txt` (and the MiniLM vectors) of
//! `$GRAPE_DATA/wordnet-minilm` (skips with a message without them) and prints, one thread:
//! the BM25 index's build time (text in: tokenizing, weighting, the inverted index) and size;
//! the latency p50/p99 of a BM25 query (text in, top 10), of a dense query and of a hybrid
//! one (dense and BM25 prefetches of 20, fused by RRF); then the same figures of Qdrant Edge
//! (`benches/peers_sparse.py`, when `GRAPE_QDRANT_PYTHON` names a Python with `qdrant_edge`,
//! as `scripts/bench` sets it) and the ratios.

use grape_testkit as testkit;

use std::process::Command;
use std::time::{Duration, Instant};

use grape_vector_db::{
    EmbeddedConfig, EmbeddedVectorDB, Point, QueryRequest, SearchParams, SearchRequest,
    SparseVectorConfig,
};
use serde_json::{json, Value};

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// p50 and p99 of `run` over every query, in microseconds.
fn latencies(queries: usize, mut run: impl FnMut(usize)) -> (f64, f64) {
    let mut times: Vec<Duration> = (0..queries)
        .map(|i| {
            let t = Instant::now();
            run(i);
            t.elapsed()
        })
        .collect();
    let p50 = testkit::percentile(&mut times, 0.5);
    let p99 = testkit::percentile(&mut times, 0.99);
    (micros(p50), micros(p99))
}

fn main() {
    let Some(testkit::Passages {
        dir,
        texts,
        queries,
        base,
        query_vectors: qvecs,
    }) = testkit::wordnet_passages()
    else {
        println!("sparse: no WordNet passages ($GRAPE_DATA/wordnet-minilm): skipped");
        return;
    };
    let n = texts.len().min(base.rows);
    println!(
        "data: {n} WordNet passages, {} queries, one thread",
        queries.len()
    );

    // The BM25 index alone: text in, no dense index.
    let bm25_only = EmbeddedVectorDB::open(
        EmbeddedConfig::builder(1)
            .hnsw(None)
            .thread_pool_size(1)
            .sparse_vector("text", SparseVectorConfig::bm25())
            .build()
            .unwrap(),
    )
    .unwrap();
    let empty = bm25_only.stats().memory.total();
    let t = Instant::now();
    for start in (0..n).step_by(1000) {
        let batch = (start..(start + 1000).min(n))
            .map(|i| Point::new(i as u64, vec![1.0]).with_text("text", texts[i].as_str()))
            .collect();
        bm25_only.upsert(batch).unwrap();
    }
    let build = t.elapsed().as_secs_f64();
    let stats = bm25_only.stats();
    let index_mib = (stats.memory.index as f64) / 1048576.0;
    let total_mib = (stats.memory.total() - empty) as f64 / 1048576.0;
    println!("ours: BM25 build {build:.2} s (text in), index {index_mib:.1} MiB ({total_mib:.1} MiB in all)");
    testkit::result("sparse", "bm25_build", build, "s", json!({"lib": "ours"}));
    testkit::result(
        "sparse",
        "bm25_index",
        index_mib,
        "MiB",
        json!({"lib": "ours"}),
    );

    // Dense and sparse together, for the hybrid queries.
    let db = EmbeddedVectorDB::open(
        EmbeddedConfig::builder(base.dim)
            .thread_pool_size(1)
            .sparse_vector("text", SparseVectorConfig::bm25())
            .build()
            .unwrap(),
    )
    .unwrap();
    for start in (0..n).step_by(1000) {
        let batch = (start..(start + 1000).min(n))
            .map(|i| {
                Point::new(i as u64, base.row(i).to_vec()).with_text("text", texts[i].as_str())
            })
            .collect();
        db.upsert(batch).unwrap();
    }
    let ef = SearchParams {
        hnsw_ef: Some(64),
        ..SearchParams::default()
    };
    let text_query = |i: usize| -> QueryRequest {
        serde_json::from_value(json!({"query": {"text": queries[i]}, "using": "text", "limit": 10}))
            .unwrap()
    };
    let hybrid = |i: usize| -> QueryRequest {
        serde_json::from_value(json!({
            "prefetch": [
                {"query": qvecs.row(i), "limit": 20, "params": {"hnsw_ef": 64}},
                {"query": {"text": queries[i]}, "using": "text", "limit": 20},
            ],
            "query": {"fusion": "rrf"}, "limit": 10,
        }))
        .unwrap()
    };
    let count = queries.len().min(qvecs.rows);
    // Requests are made before the clock starts: the figures are the searches'.
    let text_queries: Vec<QueryRequest> = (0..count).map(text_query).collect();
    let hybrids: Vec<QueryRequest> = (0..count).map(hybrid).collect();
    let denses: Vec<SearchRequest> = (0..count)
        .map(|i| {
            let mut r = SearchRequest::new(qvecs.row(i).to_vec(), 10);
            r.params = ef;
            r
        })
        .collect();
    let mut ours = serde_json::Map::new();
    for (name, (p50, p99)) in [
        (
            "sparse",
            latencies(count, |i| drop(bm25_only.query(&text_queries[i]).unwrap())),
        ),
        (
            "dense",
            latencies(count, |i| drop(db.search(&denses[i]).unwrap())),
        ),
        (
            "hybrid",
            latencies(count, |i| drop(db.query(&hybrids[i]).unwrap())),
        ),
    ] {
        println!("ours: {name:<6} p50 {p50:>7.0} us  p99 {p99:>7.0} us");
        testkit::result(
            "sparse",
            &format!("{name}_p50"),
            p50,
            "us",
            json!({"lib": "ours"}),
        );
        testkit::result(
            "sparse",
            &format!("{name}_p99"),
            p99,
            "us",
            json!({"lib": "ours"}),
        );
        ours.insert(name.to_owned(), json!({"p50_us": p50, "p99_us": p99}));
    }

    let Ok(python) = std::env::var("GRAPE_QDRANT_PYTHON") else {
        println!("peer: set GRAPE_QDRANT_PYTHON (scripts/bench does) to measure Qdrant Edge");
        return;
    };
    let script =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/peers_sparse.py");
    let out = Command::new(python)
        .arg(script)
        .args([
            dir.join("base.txt"),
            dir.join("query.txt"),
            dir.join("base.f16.npy"),
            dir.join("query.f16.npy"),
        ])
        .output()
        .expect("the peer runs");
    if !out.status.success() {
        println!("peer failed: {}", String::from_utf8_lossy(&out.stderr));
        return;
    }
    let theirs: Value = serde_json::from_slice(&out.stdout).unwrap();
    let build_peer = theirs["build_s"].as_f64().unwrap() + theirs["embed_s"].as_f64().unwrap();
    println!(
        "qdrant-edge: BM25 embedding {:.2} s, upsert and optimize (dense HNSW too) {:.2} s",
        theirs["embed_s"].as_f64().unwrap(),
        theirs["build_s"].as_f64().unwrap()
    );
    testkit::result(
        "sparse",
        "build_with_dense",
        build_peer,
        "s",
        json!({"lib": "qdrant-edge"}),
    );
    for name in ["sparse", "dense", "hybrid"] {
        let (p50, p99) = (
            theirs[name]["p50_us"].as_f64().unwrap(),
            theirs[name]["p99_us"].as_f64().unwrap(),
        );
        let ours_p50 = ours[name]["p50_us"].as_f64().unwrap();
        println!(
            "qdrant-edge: {name:<6} p50 {p50:>7.0} us  p99 {p99:>7.0} us; ours is {:.2}x faster at p50",
            p50 / ours_p50
        );
        testkit::result(
            "sparse",
            &format!("{name}_p50"),
            p50,
            "us",
            json!({"lib": "qdrant-edge"}),
        );
        testkit::result(
            "sparse",
            &format!("{name}_p99"),
            p99,
            "us",
            json!({"lib": "qdrant-edge"}),
        );
        testkit::result(
            "sparse",
            &format!("{name}_speedup_p50"),
            p50 / ours_p50,
            "x",
            json!({}),
        );
    }
}
