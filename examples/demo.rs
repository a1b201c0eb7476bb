//! The demo: the whole life of a database. Opens (building a 100K-vector database with its HNSW
//! index on disk, or reopening and warming up the one the previous run built), registers a
//! shutdown hook, checks health, runs searches through the index and exactly, with and without
//! filters, prints timings, recall, stats and metrics, and closes gracefully with its report.
//!
//! It uses the real WordNet glosses embedded with all-MiniLM-L6-v2 from
//! `../shared/data/wordnet-minilm` when that folder exists, and synthetic clustered vectors
//! otherwise. Run it with `cargo run --release --example demo`.

use grape_testkit as testkit;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use grape_vector_db::{
    Durability, EmbeddedConfig, EmbeddedVectorDB, Filter, Point, PointId, SearchRequest,
};
use serde_json::json;

const N: usize = 100_000;

/// The data set: real WordNet embeddings when `../shared` has them, synthetic otherwise.
enum Source {
    WordNet(PathBuf),
    Synthetic,
}

/// Queries, their texts and the exact top-100 ids of each (WordNet only).
struct Queries {
    vectors: testkit::Matrix,
    texts: Option<Vec<String>>,
    ground_truth: Option<Vec<u32>>,
}

fn read_lines(path: &Path) -> std::io::Result<Vec<String>> {
    Ok(std::fs::read_to_string(path)?
        .lines()
        .map(str::to_owned)
        .collect())
}

fn synthetic() -> testkit::Matrix {
    testkit::clustered(N + 1000, 384, 100, 42)
}

fn load_queries(source: &Source) -> Result<Queries, Box<dyn std::error::Error>> {
    Ok(match source {
        Source::WordNet(dir) => {
            let gt = std::fs::read(dir.join("gt100-cosine.i32.npy"))?;
            // The ground truth is a 1000 x 100 <i4 array after a 128-byte header.
            let gt = gt[128..]
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            Queries {
                vectors: testkit::read_npy(&dir.join("query.f16.npy"))?,
                texts: Some(read_lines(&dir.join("query.txt"))?),
                ground_truth: Some(gt),
            }
        }
        Source::Synthetic => {
            let all = synthetic();
            Queries {
                vectors: testkit::Matrix {
                    rows: 1000,
                    dim: all.dim,
                    data: all.data[N * all.dim..].to_vec(),
                },
                texts: None,
                ground_truth: None,
            }
        }
    })
}

/// The points to index, with payloads: the gloss, its lemmas and its length in words.
fn load_points(source: &Source) -> Result<Vec<Point>, Box<dyn std::error::Error>> {
    let (base, texts) = match source {
        Source::WordNet(dir) => (
            testkit::read_npy(&dir.join("base.f16.npy"))?,
            Some(read_lines(&dir.join("base.txt"))?),
        ),
        Source::Synthetic => (synthetic(), None),
    };
    let points = (0..N)
        .map(|i| {
            let payload = match &texts {
                Some(texts) => {
                    let line = &texts[i];
                    let (lemmas, gloss) = line.split_once(": ").unwrap_or((line, ""));
                    json!({
                        "text": line,
                        "lemmas": lemmas.split(", ").collect::<Vec<_>>(),
                        "gloss_words": gloss.split_whitespace().count(),
                    })
                }
                None => json!({"cluster_hint": i % 100, "gloss_words": i % 40}),
            };
            Point::new(i as u64, base.row(i).to_vec()).with_payload(payload)
        })
        .collect::<Result<_, _>>()?;
    Ok(points)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let source = match testkit::wordnet_dir() {
        Some(dir) => {
            println!(
                "data: WordNet glosses, all-MiniLM-L6-v2 embeddings ({})",
                dir.display()
            );
            Source::WordNet(dir)
        }
        None => {
            println!("data: synthetic, 100 clusters (seed 42)");
            Source::Synthetic
        }
    };
    let name = match source {
        Source::WordNet(_) => "demo-db-wordnet",
        Source::Synthetic => "demo-db-synthetic",
    };
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join(name);
    let config = EmbeddedConfig::builder(384)
        .data_dir(&dir)
        // The bulk load is made durable by the checkpoint that follows it.
        .durability(Durability::OnFlush)
        .enable_warmup(true)
        .startup_timeout(Duration::from_secs(30))
        .build()?;

    let t = Instant::now();
    let db = EmbeddedVectorDB::open(config)?;
    let opened = t.elapsed();
    println!("state: {:?}", db.state());
    db.on_shutdown(|| {
        println!("shutdown hook: ran after the log was flushed");
        Ok(())
    })?;
    if db.count(None)? == N {
        let r = db.open_report();
        let s = r.startup;
        println!(
            "reopened {} in {opened:.2?} ({} points from the checkpoint, {} log records replayed); \
             delete the folder to rebuild",
            dir.display(),
            r.segment_points,
            r.wal_records_replayed
        );
        println!(
            "  phases: lock {:.2?}, manifest {:.2?}, segments {:.2?}, log replay {:.2?}, \
             warmup {:.2?}",
            s.lock, s.manifest, s.segments, s.wal_replay, s.warmup
        );
    } else {
        db.delete_by_filter(&Filter::default())?;
        let t = Instant::now();
        let mut points = load_points(&source)?;
        println!("loaded {N} points in {:.2?}", t.elapsed());
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
        let t = Instant::now();
        db.checkpoint()?;
        println!(
            "upserted {} points in {took:.2?} ({:.0} points/s), checkpoint to {} in {:.2?}; \
             the next run reopens it",
            db.count(None)?,
            N as f64 / took.as_secs_f64(),
            dir.display(),
            t.elapsed()
        );
    }
    let queries = load_queries(&source)?;
    let data = &queries;

    // One query at a time: through the HNSW index, then exactly (a full scan), to compare.
    let k = 10;
    let n_queries = 500.min(data.vectors.rows);
    for exact in [false, true] {
        let mut latencies = Vec::new();
        let mut hits = 0usize;
        let mut scored = 0usize;
        for q in 0..n_queries {
            let mut req = SearchRequest::new(data.vectors.row(q).to_vec(), k);
            req.params.exact = exact;
            let t = Instant::now();
            let res = db.search(&req)?;
            latencies.push(t.elapsed());
            scored += res.scored;
            if let Some(gt) = &data.ground_truth {
                let truth = &gt[q * 100..q * 100 + k];
                hits += res
                    .result
                    .iter()
                    .filter(|p| matches!(p.id, PointId::Num(n) if truth.contains(&(n as u32))))
                    .count();
            }
        }
        let recall = match data.ground_truth {
            Some(_) => format!(", recall@{k} {:.4}", hits as f64 / (n_queries * k) as f64),
            None => String::new(),
        };
        println!(
            "search ({}, top {k}, {n_queries} queries): p50 {:.2?}, p99 {:.2?}, \
             {} distances per query{recall}",
            if exact {
                "exact scan"
            } else {
                "HNSW index, ef 64"
            },
            testkit::percentile(&mut latencies, 0.5),
            testkit::percentile(&mut latencies, 0.99),
            scored / n_queries
        );
    }

    // A batch of exact searches shares one pass over memory.
    let batch: Vec<SearchRequest> = (0..64)
        .map(|q| {
            let mut req = SearchRequest::new(data.vectors.row(q).to_vec(), k);
            req.params.exact = true;
            req
        })
        .collect();
    let t = Instant::now();
    db.search_batch(&batch)?;
    let took = t.elapsed();
    println!(
        "search_batch of 64 exact searches: {:.2?} ({:.0} queries/s)",
        took,
        64.0 / took.as_secs_f64()
    );

    // Filtered searches: a text match and a numeric range on the payload.
    let query_row = 0;
    let filter: Filter = if data.texts.is_some() {
        serde_json::from_value(json!({"must": [
            {"key": "text", "match": {"text": "water"}},
            {"key": "gloss_words", "range": {"lte": 12}}
        ]}))?
    } else {
        serde_json::from_value(json!({"must": [{"key": "gloss_words", "range": {"lt": 4}}]}))?
    };
    let matching = db.count(Some(&filter))?;
    let t = Instant::now();
    let res = db.search(
        &SearchRequest::new(data.vectors.row(query_row).to_vec(), 5)
            .with_filter(filter)
            .with_payload(true),
    )?;
    println!(
        "filtered search ({matching} of {} points match) in {:.2?}:",
        db.count(None)?,
        t.elapsed()
    );
    if let Some(texts) = &data.texts {
        println!("  query: {}", texts[query_row]);
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
        "stats: {} vectors, kernel {}, memory {:.1} MiB (vectors owned {:.1}, mapped {:.1}, \
         payloads {:.1}, ids {:.1}, graph {:.1})",
        stats.total_vectors,
        stats.kernel,
        stats.memory.total() as f64 / 1048576.0,
        stats.memory.vectors as f64 / 1048576.0,
        stats.memory.mapped as f64 / 1048576.0,
        stats.memory.payloads as f64 / 1048576.0,
        stats.memory.ids as f64 / 1048576.0,
        stats.memory.index as f64 / 1048576.0
    );

    let health = db.health();
    println!("health: {:?}", health.status);
    for check in &health.checks {
        println!(
            "  {:<8} {:<8} {} ({:.2?})",
            check.name,
            format!("{:?}", check.status),
            check.message,
            check.duration
        );
    }
    let metrics = db.metrics();
    let search = metrics.operations["search"];
    println!(
        "metrics: {} searches (p50 {:.0} us, p99 {:.0} us), {} points upserted, uptime {:.2?}; \
         `metrics().to_prometheus()` exports them",
        search.calls,
        search.latency.p50_us,
        search.latency.p99_us,
        metrics.points_upserted,
        metrics.uptime
    );

    let report = db.close()?;
    println!(
        "closed in {:.2?}: {} calls drained, {} log bytes flushed in {:.2?}, hooks {:.2?}, state {:?}",
        report.total,
        report.operations_drained,
        report.bytes_flushed,
        report.flush,
        report.hooks,
        db.state()
    );
    Ok(())
}
