//! The demo: builds a 100K-vector database, runs searches with and without filters, and prints
//! timings and stats.
//!
//! It uses the real WordNet glosses embedded with all-MiniLM-L6-v2 from
//! `../shared/data/wordnet-minilm` when that folder exists, and synthetic clustered vectors
//! otherwise. Run it with `cargo run --release --example demo`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use grape_vector_db::{EmbeddedConfig, EmbeddedVectorDB, Filter, Point, PointId, SearchRequest};
use serde_json::json;

const N: usize = 100_000;

struct Data {
    base: common::Matrix,
    queries: common::Matrix,
    texts: Option<(Vec<String>, Vec<String>)>,
    ground_truth: Option<Vec<u32>>,
}

fn load() -> Result<Data, Box<dyn std::error::Error>> {
    if let Some(dir) = common::wordnet_dir() {
        let read_lines = |name: &str| -> std::io::Result<Vec<String>> {
            Ok(std::fs::read_to_string(dir.join(name))?
                .lines()
                .map(str::to_owned)
                .collect())
        };
        let gt = std::fs::read(dir.join("gt100-cosine.i32.npy"))?;
        // The ground truth is a 1000 x 100 <i4 array after a 128-byte header.
        let gt: Vec<u32> = gt[128..]
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        println!(
            "data: WordNet glosses, all-MiniLM-L6-v2 embeddings ({})",
            dir.display()
        );
        return Ok(Data {
            base: common::read_npy(&dir.join("base.f16.npy"))?,
            queries: common::read_npy(&dir.join("query.f16.npy"))?,
            texts: Some((read_lines("base.txt")?, read_lines("query.txt")?)),
            ground_truth: Some(gt),
        });
    }
    println!("data: synthetic, 100 clusters (seed 42)");
    let all = common::clustered(N + 1000, 384, 100, 42);
    let split = N * all.dim;
    Ok(Data {
        queries: common::Matrix {
            rows: 1000,
            dim: all.dim,
            data: all.data[split..].to_vec(),
        },
        base: common::Matrix {
            rows: N,
            dim: all.dim,
            data: all.data[..split].to_vec(),
        },
        texts: None,
        ground_truth: None,
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let t = Instant::now();
    let data = load()?;
    println!(
        "loaded {} x {} vectors and {} queries in {:.2?}",
        data.base.rows,
        data.base.dim,
        data.queries.rows,
        t.elapsed()
    );

    let db = EmbeddedVectorDB::open(EmbeddedConfig::builder(data.base.dim).build()?)?;
    let mut points: Vec<Point> = (0..data.base.rows)
        .map(|i| {
            let payload = match &data.texts {
                Some((base, _)) => {
                    let line = &base[i];
                    let (lemmas, gloss) = line.split_once(": ").unwrap_or((line, ""));
                    json!({
                        "text": line,
                        "lemmas": lemmas.split(", ").collect::<Vec<_>>(),
                        "gloss_words": gloss.split_whitespace().count(),
                    })
                }
                None => json!({"cluster_hint": i % 100, "gloss_words": i % 40}),
            };
            Point::new(i as u64, data.base.row(i).to_vec()).with_payload(payload)
        })
        .collect::<Result<_, _>>()?;
    let mut batches = Vec::new();
    while !points.is_empty() {
        let rest = points.split_off(points.len().min(10_000));
        batches.push(std::mem::replace(&mut points, rest));
    }
    let t = Instant::now();
    for batch in batches {
        db.upsert(batch)?;
    }
    let took = t.elapsed();
    println!(
        "upserted {} points in {:.2?} ({:.0} points/s)",
        db.count(None),
        took,
        data.base.rows as f64 / took.as_secs_f64()
    );

    // Exact search, one query at a time.
    let k = 10;
    let mut latencies = Vec::new();
    let mut hits = 0usize;
    let n_queries = 200.min(data.queries.rows);
    for q in 0..n_queries {
        let t = Instant::now();
        let res = db.search(&SearchRequest::new(data.queries.row(q).to_vec(), k))?;
        latencies.push(t.elapsed());
        if let Some(gt) = &data.ground_truth {
            let truth = &gt[q * 100..q * 100 + k];
            hits += res
                .result
                .iter()
                .filter(|p| matches!(p.id, PointId::Num(n) if truth.contains(&(n as u32))))
                .count();
        }
    }
    latencies.sort();
    println!(
        "search (exact, top {k}, {n_queries} queries): p50 {:.2?}, p99 {:.2?}",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99)
    );
    if data.ground_truth.is_some() {
        println!(
            "recall@{k} against the dataset's ground truth: {:.4}",
            hits as f64 / (n_queries * k) as f64
        );
    }

    // A batch shares one pass over memory.
    let batch: Vec<SearchRequest> = (0..64)
        .map(|q| SearchRequest::new(data.queries.row(q).to_vec(), k))
        .collect();
    let t = Instant::now();
    db.search_batch(&batch)?;
    let took = t.elapsed();
    println!(
        "search_batch of 64: {:.2?} ({:.0} queries/s)",
        took,
        64.0 / took.as_secs_f64()
    );

    // Filtered searches: a text match and a numeric range on the payload.
    let (word, query_row) = match &data.texts {
        Some(_) => ("water", 0),
        None => ("", 0),
    };
    let filter: Filter = if data.texts.is_some() {
        serde_json::from_value(json!({"must": [
            {"key": "text", "match": {"text": word}},
            {"key": "gloss_words", "range": {"lte": 12}}
        ]}))?
    } else {
        serde_json::from_value(json!({"must": [{"key": "gloss_words", "range": {"lt": 4}}]}))?
    };
    let matching = db.count(Some(&filter));
    let t = Instant::now();
    let res = db.search(
        &SearchRequest::new(data.queries.row(query_row).to_vec(), 5)
            .with_filter(filter)
            .with_payload(true),
    )?;
    println!(
        "filtered search ({matching} of {} points match) in {:.2?}:",
        db.count(None),
        t.elapsed()
    );
    if let Some((_, queries)) = &data.texts {
        println!("  query: {}", queries[query_row]);
    }
    for p in &res.result {
        let label = p.payload.as_ref().and_then(|m| m.get("text")).map_or_else(
            || format!("{}", p.payload.as_ref().map_or(json!(null), |m| json!(m))),
            |t| t.as_str().unwrap_or_default().chars().take(90).collect(),
        );
        println!("  {:>6}  {:.4}  {label}", p.id.to_string(), p.score);
    }

    let stats = db.stats();
    println!(
        "stats: {} vectors, kernel {}, memory {:.1} MiB (vectors {:.1}, payloads {:.1}, ids {:.1})",
        stats.total_vectors,
        stats.kernel,
        stats.memory.total() as f64 / 1048576.0,
        stats.memory.vectors as f64 / 1048576.0,
        stats.memory.payloads as f64 / 1048576.0,
        stats.memory.ids as f64 / 1048576.0
    );
    Ok(())
}
