//! Flat-scan throughput against the machine's memory bandwidth, measured in the same run.
//!
//! `cargo bench --bench scan` prints the sequential read bandwidth of one core (a summing loop
//! over a buffer far larger than any cache: the peer), then the GB/s of an exact search over
//! 100K x 384 vectors, single queries and batches, and the ratio. Absolute times drift on shared
//! machines; the ratio is the figure to watch (target: at least 0.8).

use grape_testkit as testkit;

use std::hint::black_box;
use std::time::Instant;

use grape_vector_db::{Distance, EmbeddedConfig, EmbeddedVectorDB, Point, SearchRequest};

const ROWS: usize = 100_000;
const DIM: usize = 384;

/// Read bandwidth of one core: sum a 1 GiB buffer with independent accumulators (vectorised by
/// the compiler), best of several passes.
fn memory_bandwidth_gbs() -> f64 {
    let words = (1usize << 30) / 8;
    let buf: Vec<u64> = (0..words as u64).collect();
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        let mut acc = [0u64; 8];
        for chunk in buf.chunks_exact(8) {
            for i in 0..8 {
                acc[i] = acc[i].wrapping_add(chunk[i]);
            }
        }
        black_box(acc);
        best = best.min(t.elapsed().as_secs_f64());
    }
    (words * 8) as f64 / best / 1e9
}

fn main() {
    let bandwidth = memory_bandwidth_gbs();
    println!("memory read bandwidth (1 core, 1 GiB sum): {bandwidth:.1} GB/s");
    testkit::result(
        "scan",
        "memory_bandwidth",
        bandwidth,
        "GB/s",
        serde_json::json!({}),
    );

    let data = testkit::clustered(ROWS, DIM, 100, 7);
    for distance in [Distance::Dot, Distance::Euclid] {
        let db = EmbeddedVectorDB::open(
            // No index: this measures the exact scan.
            EmbeddedConfig::builder(DIM)
                .distance(distance)
                .hnsw(None)
                .build()
                .unwrap(),
        )
        .unwrap();
        db.upsert(
            (0..ROWS)
                .map(|i| Point::new(i as u64, data.row(i).to_vec()))
                .collect(),
        )
        .unwrap();
        let bytes = (ROWS * DIM * 4) as f64;
        let queries: Vec<Vec<f32>> = (0..64).map(|i| data.row(i * 1000).to_vec()).collect();

        let single = testkit::median(
            queries
                .iter()
                .map(|q| {
                    let t = Instant::now();
                    black_box(db.search(&SearchRequest::new(q.clone(), 10)).unwrap());
                    t.elapsed()
                })
                .collect(),
        );
        let gbs = bytes / single.as_secs_f64() / 1e9;
        println!(
            "{distance:?}: exact search {ROWS} x {DIM}: {:.2?} per query, {gbs:.1} GB/s = {:.2} x memory bandwidth{}",
            single,
            gbs / bandwidth,
            if gbs / bandwidth >= 0.8 { "" } else { "  (below the 0.8 target)" }
        );

        let tag = serde_json::json!({"distance": format!("{distance:?}")});
        testkit::result("scan", "scan_throughput", gbs, "GB/s", tag.clone());
        testkit::result(
            "scan",
            "scan_vs_bandwidth",
            gbs / bandwidth,
            "x",
            tag.clone(),
        );
        let batch: Vec<SearchRequest> = queries
            .iter()
            .map(|q| SearchRequest::new(q.clone(), 10))
            .collect();
        let t = Instant::now();
        black_box(db.search_batch(&batch).unwrap());
        let took = t.elapsed();
        let batch_qps = batch.len() as f64 / took.as_secs_f64();
        testkit::result("scan", "exact_batch_qps", batch_qps, "queries/s", tag);
        println!(
            "{distance:?}: search_batch of {}: {:.2?} ({:.0} queries/s, {:.1}x the single-query rate)",
            batch.len(),
            took,
            batch.len() as f64 / took.as_secs_f64(),
            single.as_secs_f64() * batch.len() as f64 / took.as_secs_f64()
        );
    }
}
