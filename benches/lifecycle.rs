//! Lifecycle figures, printed: open of a 100K x 384 database (with and without warmup) and the
//! first-query latency after each, close after 10,000 unflushed upserts, search latency while 4
//! threads write (against the same searches alone), and resident memory after 1,000,000 mixed
//! operations against after 1,000.
//!
//! `cargo bench --bench lifecycle`. Uses `../shared/data/wordnet-minilm` when present, synthetic
//! clustered vectors otherwise.

use grape_testkit as testkit;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use grape_vector_db::{
    Condition, Distance, Durability, EmbeddedConfig, EmbeddedVectorDB, Filter, Point, SearchRequest,
};
use serde_json::json;
use testkit::{percentile, Rng};

fn main() {
    let work = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-lifecycle");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    // First, while the process holds nothing else, so resident memory is the database's.
    memory_after_mixed_operations(&work);
    let data = match testkit::wordnet_dir() {
        Some(dir) => {
            println!("data: wordnet-minilm 100K x 384");
            testkit::read_npy(&dir.join("base.f16.npy")).unwrap()
        }
        None => {
            println!("data: synthetic 100K x 384 (../shared/data absent)");
            testkit::clustered(100_000, 384, 100, 11)
        }
    };
    open_and_first_query(&work, &data);
    close_after_unflushed_writes(&work, &data);
    search_while_writing(&data);
}

fn config(dir: &std::path::Path) -> grape_vector_db::EmbeddedConfigBuilder {
    EmbeddedConfig::builder(384)
        .data_dir(dir)
        .payload_index("bucket")
        .checkpoint_wal_bytes(1 << 40)
}

fn open_and_first_query(work: &std::path::Path, data: &testkit::Matrix) {
    let dir = work.join("open");
    {
        let db = EmbeddedVectorDB::open(config(&dir).build().unwrap()).unwrap();
        db.upsert(
            (0..data.rows)
                .map(|i| {
                    Point::new(i as u64, data.row(i).to_vec())
                        .with_payload(json!({"bucket": i % 100, "row": i}))
                        .unwrap()
                })
                .collect(),
        )
        .unwrap();
        db.checkpoint().unwrap();
        db.close().unwrap();
    }
    let filter = Filter::must([Condition::match_value("bucket", 7)]);
    for warmup in [false, true] {
        let (mut opens, mut firsts, mut filtered) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..7 {
            let cfg = config(&dir).enable_warmup(warmup).build().unwrap();
            let t = Instant::now();
            let db = EmbeddedVectorDB::open(cfg).unwrap();
            opens.push(t.elapsed());
            let q = data.row(round * 997 + 1).to_vec();
            // A fresh thread: its search scratch starts cold, as in a new request handler.
            let (first, with_filter) = std::thread::scope(|s| {
                s.spawn(|| {
                    let t = Instant::now();
                    db.search(&SearchRequest::new(q.clone(), 10)).unwrap();
                    let first = t.elapsed();
                    let t = Instant::now();
                    db.search(&SearchRequest::new(q, 10).with_filter(filter.clone()))
                        .unwrap();
                    (first, t.elapsed())
                })
                .join()
                .unwrap()
            });
            firsts.push(first);
            filtered.push(with_filter);
            db.close().unwrap();
        }
        let (open, first, first_filtered) = (
            testkit::median(opens),
            testkit::median(firsts),
            testkit::median(filtered),
        );
        println!(
            "open 100K x 384 {} warmup: median {open:.2?} (seed goal < 1 s, ours < 20 ms without \
             warmup); first search {first:.2?}, first filtered search {first_filtered:.2?}",
            if warmup { "with" } else { "without" },
        );
        let tag = serde_json::json!({"warmup": warmup});
        testkit::result(
            "lifecycle",
            "open",
            open.as_secs_f64() * 1e3,
            "ms",
            tag.clone(),
        );
        testkit::result(
            "lifecycle",
            "first_search",
            first.as_secs_f64() * 1e6,
            "us",
            tag.clone(),
        );
        testkit::result(
            "lifecycle",
            "first_filtered_search",
            first_filtered.as_secs_f64() * 1e6,
            "us",
            tag,
        );
    }
}

fn close_after_unflushed_writes(work: &std::path::Path, data: &testkit::Matrix) {
    for durability in [
        Durability::Batched {
            interval: Duration::from_millis(100),
        },
        Durability::OnFlush,
    ] {
        let dir = work.join(format!("close-{durability:?}").replace([' ', '{', '}', ':'], ""));
        let db =
            EmbeddedVectorDB::open(config(&dir).durability(durability).build().unwrap()).unwrap();
        for i in 0..10_000 {
            db.upsert(vec![Point::new(i as u64, data.row(i).to_vec())])
                .unwrap();
        }
        let report = db.close().unwrap();
        let reopened = EmbeddedVectorDB::open(config(&dir).build().unwrap()).unwrap();
        assert_eq!(reopened.count(None).unwrap(), 10_000);
        testkit::result(
            "lifecycle",
            "close_after_10k_unflushed",
            report.total.as_secs_f64() * 1e3,
            "ms",
            serde_json::json!({"durability": format!("{durability:?}")}),
        );
        println!(
            "close after 10,000 single-point upserts, {durability:?}: {:.2?} (seed goal < 5 s, \
             ours < 50 ms); {} log bytes made durable by the close in {:.2?}",
            report.total, report.bytes_flushed, report.flush
        );
    }
}

fn search_while_writing(data: &testkit::Matrix) {
    let db = EmbeddedVectorDB::open(
        EmbeddedConfig::builder(384)
            .distance(Distance::Cosine)
            .thread_pool_size(1)
            .build()
            .unwrap(),
    )
    .unwrap();
    let base = data.rows - 20_000;
    db.upsert(
        (0..base)
            .map(|i| Point::new(i as u64, data.row(i).to_vec()))
            .collect(),
    )
    .unwrap();
    let measure = |label: &str| {
        let mut latencies: Vec<Duration> = (0..2000)
            .map(|q| {
                let t = Instant::now();
                db.search(&SearchRequest::new(data.row(q * 37 % base).to_vec(), 10))
                    .unwrap();
                t.elapsed()
            })
            .collect();
        let (p50, p99) = (
            percentile(&mut latencies, 0.5),
            percentile(&mut latencies, 0.99),
        );
        println!("search while {label}: p50 {p50:.2?}, p99 {p99:.2?}");
        let tag = serde_json::json!({"while": label});
        testkit::result(
            "lifecycle",
            "search_p50",
            p50.as_secs_f64() * 1e6,
            "us",
            tag.clone(),
        );
        testkit::result(
            "lifecycle",
            "search_p99",
            p99.as_secs_f64() * 1e6,
            "us",
            tag,
        );
        (p50, p99)
    };
    let (alone50, alone99) = measure("nothing else runs");
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let (db, stop) = (db.clone(), stop.clone());
            let rows: Vec<Vec<f32>> = (0..5000)
                .map(|i| data.row(base + t * 5000 + i).to_vec())
                .collect();
            std::thread::spawn(move || {
                let mut written = 0;
                for (i, v) in rows.into_iter().enumerate() {
                    if stop.load(SeqCst) {
                        break;
                    }
                    db.upsert(vec![Point::new((base + t * 5000 + i) as u64, v)])
                        .unwrap();
                    written += 1;
                }
                written
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(50));
    let (busy50, busy99) = measure("4 threads upsert one point per call");
    stop.store(true, SeqCst);
    let written: usize = writers.into_iter().map(|w| w.join().unwrap()).sum();
    println!(
        "  ratio with writers / alone: p50 {:.2}x, p99 {:.2}x ({written} points written \
         meanwhile, on {} cores)",
        busy50.as_secs_f64() / alone50.as_secs_f64(),
        busy99.as_secs_f64() / alone99.as_secs_f64(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
}

fn memory_after_mixed_operations(work: &std::path::Path) {
    const DIM: usize = 32;
    const IDS: usize = 20_000;
    let dir = work.join("mixed");
    let db = EmbeddedVectorDB::open(
        EmbeddedConfig::builder(DIM)
            .data_dir(&dir)
            .durability(Durability::Batched {
                interval: Duration::from_millis(50),
            })
            .checkpoint_wal_bytes(16 << 20)
            .payload_index("tag")
            .build()
            .unwrap(),
    )
    .unwrap();
    let mut rng = Rng::new(5);
    let op = |rng: &mut Rng| match rng.below(10) {
        0..=3 => {
            let id = rng.below(IDS) as u64;
            let v: Vec<f32> = (0..DIM).map(|_| rng.signed()).collect();
            db.upsert(vec![Point::new(id, v)
                .with_payload(json!({"tag": id % 10}))
                .unwrap()])
                .map(drop)
        }
        4 => db.delete([rng.below(IDS) as u64]).map(drop),
        _ => {
            let v: Vec<f32> = (0..DIM).map(|_| rng.signed()).collect();
            let mut r = SearchRequest::new(v, 10);
            if rng.chance(0.3) {
                r = r.with_filter(Filter::must([Condition::match_value("tag", 3)]));
            }
            db.search(&r).map(drop)
        }
    };
    // Fill the id space first, so both measurements hold about the same data.
    db.upsert(
        (0..IDS as u64)
            .map(|id| {
                let v: Vec<f32> = (0..DIM).map(|_| rng.signed()).collect();
                Point::new(id, v)
                    .with_payload(json!({"tag": id % 10}))
                    .unwrap()
            })
            .collect(),
    )
    .unwrap();
    let t = Instant::now();
    let mut done = 0;
    let mut first = None;
    for checkpoint in [1_000, 10_000, 100_000, 300_000, 1_000_000] {
        for _ in done..checkpoint {
            op(&mut rng).unwrap();
        }
        done = checkpoint;
        let stats = db.stats();
        let rss = testkit::rss_bytes();
        let (rss_first, _) = *first.get_or_insert((rss, stats.memory.total()));
        testkit::result(
            "lifecycle",
            "rss",
            rss as f64 / 1048576.0,
            "MiB",
            serde_json::json!({"operations": checkpoint, "database_mib": stats.memory.total() as f64 / 1048576.0, "points": stats.total_vectors}),
        );
        println!(
            "RSS after {checkpoint:>9} mixed operations: {:6.1} MiB ({:.2}x the first), database \
             holds {:5.1} MiB: {} points, {} deleted slots awaiting compaction",
            rss as f64 / 1048576.0,
            rss as f64 / rss_first as f64,
            stats.memory.total() as f64 / 1048576.0,
            stats.total_vectors,
            stats.tombstones
        );
    }
    let m = db.metrics();
    println!(
        "  1,000,000 operations in {:.1?}: {} checkpoints, {} points deleted",
        t.elapsed(),
        m.checkpoints,
        m.points_deleted
    );
    db.close().unwrap();
}
