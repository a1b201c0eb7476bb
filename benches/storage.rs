//! Storage figures, printed: reopen time of a 100K x 384 database plus 1,000 log records (beside
//! hnswlib's `load_index` and usearch's `restore`/`view` on the same vectors when a Python with
//! those packages is given), upsert throughput per durability mode, checkpoint time, file size.
//!
//! `./scripts/bench-storage` sets up the Python peers and runs this; `cargo bench --bench storage`
//! alone prints our figures only. Uses `../shared/data/wordnet-minilm` when present, synthetic
//! clustered vectors otherwise.

use grape_testkit as testkit;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use grape_vector_db::{Durability, EmbeddedConfig, EmbeddedVectorDB, Point};

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

fn config(dir: &Path, durability: Durability) -> EmbeddedConfig {
    EmbeddedConfig::builder(384)
        .data_dir(dir)
        .durability(durability)
        .checkpoint_wal_bytes(1 << 40)
        .build()
        .unwrap()
}

fn main() {
    let work = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-storage");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let data = match testkit::wordnet_dir() {
        Some(dir) => testkit::read_npy(&dir.join("base.f16.npy")).unwrap(),
        None => testkit::clustered(100_000, 384, 100, 11),
    };
    let raw_bytes = (data.rows * data.dim * 4) as u64;
    let point = |i: usize| {
        Point::new(i as u64, data.row(i).to_vec())
            .with_payload(serde_json::json!({"row": i}))
            .unwrap()
    };

    // Build: one bulk upsert, a checkpoint, then 1,000 single-point writes left in the log.
    let db_dir = work.join("db");
    let cfg = config(&db_dir, Durability::OnFlush);
    {
        let db = EmbeddedVectorDB::open(cfg.clone()).unwrap();
        let t = Instant::now();
        db.upsert((0..data.rows).map(point).collect()).unwrap();
        let upsert = t.elapsed();
        let t = Instant::now();
        db.checkpoint().unwrap();
        let checkpoint = t.elapsed();
        println!(
            "bulk upsert of {} x {}: {:.2?} ({:.0} points/s); checkpoint: {:.2?}",
            data.rows,
            data.dim,
            upsert,
            data.rows as f64 / upsert.as_secs_f64(),
            checkpoint
        );
        let none = serde_json::json!({});
        testkit::result(
            "storage",
            "bulk_upsert",
            data.rows as f64 / upsert.as_secs_f64(),
            "points/s",
            none.clone(),
        );
        testkit::result(
            "storage",
            "checkpoint",
            checkpoint.as_secs_f64() * 1e3,
            "ms",
            none,
        );
        for i in 0..1000 {
            db.upsert(vec![point(i)]).unwrap();
        }
        db.flush().unwrap();
    }
    let size = dir_bytes(&db_dir);
    println!(
        "files: {:.1} MiB = {:.3} x the raw f32 vectors",
        size as f64 / 1048576.0,
        size as f64 / raw_bytes as f64
    );
    testkit::result(
        "storage",
        "files_vs_raw_vectors",
        size as f64 / raw_bytes as f64,
        "x",
        serde_json::json!({}),
    );

    // Reopen, warm cache: lock, manifest, map + checksum the segment, replay 1,000 records.
    let mut times = Vec::new();
    for _ in 0..7 {
        let t = Instant::now();
        let db = EmbeddedVectorDB::open(cfg.clone()).unwrap();
        times.push(t.elapsed());
        assert_eq!(db.open_report().wal_records_replayed, 1000);
        drop(db);
    }
    let open = testkit::median(times);
    testkit::result(
        "storage",
        "reopen",
        open.as_secs_f64() * 1e3,
        "ms",
        serde_json::json!({"lib": "ours", "wal_records": 1000}),
    );
    println!(
        "reopen ({} points + 1,000 log records, warm cache): {open:.2?}",
        data.rows
    );

    // Upsert throughput per durability mode, single-point calls and batches of 100.
    for (name, durability) in [
        ("Sync", Durability::Sync),
        (
            "Batched(10ms)",
            Durability::Batched {
                interval: Duration::from_millis(10),
            },
        ),
        ("OnFlush", Durability::OnFlush),
    ] {
        let dir = work.join(format!("mode-{name}"));
        let db = EmbeddedVectorDB::open(config(&dir, durability)).unwrap();
        let t = Instant::now();
        for i in 0..2000 {
            db.upsert(vec![point(i)]).unwrap();
        }
        db.flush().unwrap();
        let single = 2000.0 / t.elapsed().as_secs_f64();
        let t = Instant::now();
        for b in 0..100 {
            db.upsert((b * 100..b * 100 + 100).map(point).collect())
                .unwrap();
        }
        db.flush().unwrap();
        let batched = 10_000.0 / t.elapsed().as_secs_f64();
        testkit::result(
            "storage",
            "upsert_single",
            single,
            "points/s",
            serde_json::json!({"durability": name}),
        );
        testkit::result(
            "storage",
            "upsert_batch100",
            batched,
            "points/s",
            serde_json::json!({"durability": name}),
        );
        println!(
            "upsert, {name:>13}: {single:>8.0} points/s one per call, {batched:>8.0} points/s in batches of 100"
        );
    }

    // Peers, on the same vectors, in this run.
    let Ok(python) = std::env::var("GRAPE_PEERS_PYTHON") else {
        println!("peers: set GRAPE_PEERS_PYTHON (./scripts/bench-storage does) to compare with hnswlib and usearch");
        return;
    };
    let npy = work.join("base.f32.npy");
    testkit::write_npy(&npy, &data);
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/peers_open.py");
    let out = std::process::Command::new(python)
        .arg(script)
        .arg(&npy)
        .arg(work.join("peers"))
        .output()
        .unwrap();
    if !out.status.success() {
        println!("peers failed: {}", String::from_utf8_lossy(&out.stderr));
        return;
    }
    let peers: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for (key, label) in [
        ("hnswlib_load_index_s", "hnswlib load_index"),
        ("faiss_read_index_s", "faiss read_index"),
        ("usearch_restore_s", "usearch restore"),
        ("usearch_view_s", "usearch restore(view=True)"),
    ] {
        let Some(secs) = peers[key].as_f64() else {
            continue;
        };
        testkit::result(
            "storage",
            "reopen",
            secs * 1e3,
            "ms",
            serde_json::json!({"lib": label}),
        );
        println!(
            "{label:>28}: {:.2?}; ours takes {:.3} x its time",
            Duration::from_secs_f64(secs),
            open.as_secs_f64() / secs
        );
    }
}
