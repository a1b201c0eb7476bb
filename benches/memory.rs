//! Resident memory of a database in use, by quantization (issue 19's memory goal: with SQ8,
//! resident memory at most 0.35x the `f32` configuration's).
//!
//! `cargo bench --bench memory`: builds WordNet 100K x 384 (generated clustered data without
//! `$GRAPE_DATA`) once without codes and once with SQ8, in files, checkpointed; then, for each,
//! a fresh process opens it and answers the 1,000 queries at ef 64 (a database an app opens and
//! searches), and reports its resident memory over the process before the open: in all, on the
//! heap (anonymous) and in mapped files (the segment's pages the search touched, which the
//! kernel may reclaim), beside what `stats()` counts as held.

use grape_testkit as testkit;

use std::path::{Path, PathBuf};
use std::process::Command;

use grape_vector_db::{EmbeddedConfig, EmbeddedVectorDB, Quantization, SearchRequest};

const MODES: [(&str, Quantization); 2] = [("none", Quantization::None), ("sq8", Quantization::Sq8)];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, mode, dir, queries] = &args[..] {
        if flag == "--child" {
            return child(mode, Path::new(dir), Path::new(queries));
        }
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-memory");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let (set, base, queries) = match testkit::wordnet_vectors() {
        Some((base, queries)) => ("wordnet-minilm", testkit::read_npy(&base).unwrap(), queries),
        None => {
            let data = testkit::clustered(101_000, 384, 100, 42);
            let (base, queries) = data.split(100_000);
            let path = root.join("queries.npy");
            testkit::write_npy(&path, &queries);
            ("generated", base, path)
        }
    };
    for (name, quantization) in MODES {
        let dir = root.join(name);
        let db = EmbeddedVectorDB::open(config(&dir, base.dim, quantization)).unwrap();
        testkit::upsert_rows(&db, &base, base.rows);
        db.checkpoint().unwrap();
        db.close().unwrap();
    }
    let mut totals = Vec::new();
    for (name, _) in MODES {
        let out = Command::new(std::env::current_exe().unwrap())
            .args(["--child", name])
            .arg(root.join(name))
            .arg(&queries)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = String::from_utf8(out.stdout).unwrap();
        let figures: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
        let mib = |k: &str| figures[k].as_f64().unwrap() / 1048576.0;
        println!(
            "{set}, {name}: resident {:.1} MiB over the empty process (heap {:.1}, mapped files \
             {:.1}, of which {:.1} right after the open); held {:.1} MiB by stats()",
            mib("rss"),
            mib("anon"),
            mib("file"),
            mib("file_at_open"),
            mib("held")
        );
        for kind in ["rss", "anon", "file", "file_at_open", "held"] {
            testkit::result(
                "memory",
                kind,
                mib(kind),
                "MiB",
                serde_json::json!({"set": set, "quantization": name}),
            );
        }
        totals.push((mib("rss"), mib("anon")));
    }
    let (f32, sq8) = (totals[0], totals[1]);
    println!(
        "sq8 / none: resident {:.2}x, heap {:.2}x (goal: resident <= 0.35x)",
        sq8.0 / f32.0,
        sq8.1 / f32.1
    );
    testkit::result(
        "memory",
        "sq8_vs_none",
        sq8.0 / f32.0,
        "x",
        serde_json::json!({"set": set}),
    );
    let _ = std::fs::remove_dir_all(&root);
}

fn config(dir: &Path, dim: usize, quantization: Quantization) -> EmbeddedConfig {
    EmbeddedConfig::builder(dim)
        .data_dir(dir)
        .quantization(quantization)
        .thread_pool_size(1)
        .build()
        .unwrap()
}

/// Opens the database in `dir`, answers every query, prints the memory figures as JSON.
fn child(mode: &str, dir: &Path, queries: &Path) {
    let queries = testkit::read_npy(queries).unwrap();
    let quantization = MODES.iter().find(|m| m.0 == mode).unwrap().1;
    let (rss, (anon, file)) = (testkit::rss_bytes(), testkit::rss_by_kind());
    let db = EmbeddedVectorDB::open(config(dir, queries.dim, quantization)).unwrap();
    let file_open = testkit::rss_by_kind().1.saturating_sub(file);
    for q in 0..queries.rows {
        db.search(&SearchRequest::new(queries.row(q).to_vec(), 10))
            .unwrap();
    }
    let (anon_after, file_after) = testkit::rss_by_kind();
    println!(
        "{}",
        serde_json::json!({
            "rss": testkit::rss_bytes().saturating_sub(rss),
            "anon": anon_after.saturating_sub(anon),
            "file": file_after.saturating_sub(file),
            "file_at_open": file_open,
            "held": db.stats().memory.total(),
        })
    );
}
