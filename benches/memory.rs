//! Memory of a database in use, by quantization (issue 19's memory goal: with SQ8, resident
//! memory at most 0.35x the `f32` configuration's).
//!
//! `cargo bench --bench memory`: builds WordNet 100K x 384 (generated clustered data without
//! `$GRAPE_DATA`) once without codes and once with SQ8, in files, checkpointed; then, for each
//! configuration (the SQ8 database also with its vectors kept on disk), a fresh process opens it and answers the 1,000 queries at ef 64 (a database an app opens and
//! searches), and reports its resident memory over the process before the open: in all, on the
//! heap (anonymous) and in mapped files (the segment's pages the search touched, which the
//! kernel may reclaim), beside what `stats()` counts as held.
//!
//! Then the same searches under a memory limit smaller than the `f32` database (a Linux memory
//! cgroup holding the process, its heap and the file pages it reads; skipped with a message
//! where no cgroup can be made): what a device short of memory sees. The files' cached pages
//! are dropped before each run, so each open reads them from the disk (it reads every page to
//! verify it); a round of queries stops after 20 s.

use grape_testkit as testkit;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use grape_vector_db::{EmbeddedConfig, EmbeddedVectorDB, Quantization, SearchRequest};

/// Each configuration measured: its name, the database it opens (built once per quantization),
/// its quantization and whether it keeps its vectors on disk.
const MODES: [(&str, &str, Quantization, bool); 3] = [
    ("none", "none", Quantization::None, false),
    ("sq8", "sq8", Quantization::Sq8, false),
    ("sq8-on-disk", "sq8", Quantization::Sq8, true),
];

/// The memory limit of the constrained runs, as a share of what the `f32` database holds.
const LIMIT_SHARE: f64 = 0.6;
/// The longest a round of queries runs; its rate is taken over the queries it answered.
const ROUND_SECONDS: f64 = 20.0;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, mode, dir, queries, rest @ ..] = &args[..] {
        if flag == "--child" {
            return child(mode, Path::new(dir), Path::new(queries), rest.first());
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
    for (name, _, quantization, _) in MODES.iter().filter(|m| m.0 == m.1) {
        let dir = root.join(name);
        let db = EmbeddedVectorDB::open(config(&dir, base.dim, *quantization, false)).unwrap();
        testkit::upsert_rows(&db, &base, base.rows);
        db.checkpoint().unwrap();
        db.close().unwrap();
    }
    drop(base);
    let run = |(name, dir, _, _): (&str, &str, Quantization, bool), limit: Option<&Cgroup>| {
        drop_cached_pages(&root.join(dir));
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .args(["--child", name])
            .arg(root.join(dir))
            .arg(&queries);
        if let Some(cgroup) = limit {
            command.arg(cgroup.procs());
        }
        let out = command.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let figures: serde_json::Value =
            serde_json::from_str(String::from_utf8(out.stdout).unwrap().trim()).unwrap();
        figures
    };
    let mut held_f32 = 0.0;
    let mut totals = Vec::new();
    for mode in MODES {
        let name = mode.0;
        let figures = run(mode, None);
        let mib = |k: &str| figures[k].as_f64().unwrap() / 1048576.0;
        println!(
            "{set}, {name}: resident {:.1} MiB over the empty process (heap {:.1}, mapped files \
             {:.1}, of which {:.1} right after the open); held {:.1} MiB by stats(); {:.0} \
             queries/s in the first round, then {:.0}",
            mib("rss"),
            mib("anon"),
            mib("file"),
            mib("file_at_open"),
            mib("held"),
            figures["qps_cold"].as_f64().unwrap(),
            figures["qps"].as_f64().unwrap(),
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
        result_qps(set, name, None, &figures);
        if name == "none" {
            held_f32 = mib("held");
        }
        totals.push(mib("rss"));
    }
    for (i, (name, ..)) in MODES.iter().enumerate().skip(1) {
        println!(
            "{name} / none: resident {:.2}x (goal for sq8: <= 0.35x)",
            totals[i] / totals[0]
        );
        testkit::result(
            "memory",
            "vs_none",
            totals[i] / totals[0],
            "x",
            serde_json::json!({"set": set, "quantization": name}),
        );
    }
    let limit_mib = (held_f32 * LIMIT_SHARE).round();
    match Cgroup::create(limit_mib as u64 * 1048576) {
        Ok(cgroup) => {
            for mode in MODES {
                let name = mode.0;
                let figures = run(mode, Some(&cgroup));
                println!(
                    "{set}, {name}, within {limit_mib} MiB: {:.1} queries/s in the first round, then \
                     {:.1}",
                    figures["qps_cold"].as_f64().unwrap(),
                    figures["qps"].as_f64().unwrap(),
                );
                result_qps(set, name, Some(limit_mib), &figures);
            }
        }
        Err(why) => println!("no run within a memory limit: {why}"),
    }
    let _ = std::fs::remove_dir_all(&root);
}

fn result_qps(set: &str, name: &str, limit_mib: Option<f64>, figures: &serde_json::Value) {
    for (kind, key) in [("qps_cold", "qps_cold"), ("qps", "qps")] {
        testkit::result(
            "memory",
            kind,
            figures[key].as_f64().unwrap(),
            "queries/s",
            serde_json::json!({"set": set, "quantization": name, "limit_mib": limit_mib}),
        );
    }
}

fn config(dir: &Path, dim: usize, quantization: Quantization, on_disk: bool) -> EmbeddedConfig {
    EmbeddedConfig::builder(dim)
        .data_dir(dir)
        .quantization(quantization)
        .vectors_on_disk(on_disk)
        .thread_pool_size(1)
        .build()
        .unwrap()
}

/// Asks the kernel to forget the cached pages of the files in `dir` (clean pages: nothing is
/// lost), so the next reader reads them from the disk and is charged for them.
fn drop_cached_pages(dir: &Path) {
    use std::os::fd::AsRawFd;
    for entry in std::fs::read_dir(dir).unwrap() {
        let file = std::fs::File::open(entry.unwrap().path()).unwrap();
        // SAFETY: the descriptor is open for the whole call; the advice changes no memory of
        // this process.
        unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    }
}

/// A memory cgroup made for the bench under this process's own (cgroup v1 or v2), removed on
/// drop.
struct Cgroup {
    dir: PathBuf,
}

impl Cgroup {
    fn create(limit_bytes: u64) -> Result<Cgroup, String> {
        let own = std::fs::read_to_string("/proc/self/cgroup").map_err(|e| e.to_string())?;
        let (root, path, file) = match own.lines().find_map(|l| l.split_once(":memory:")) {
            Some((_, path)) => ("/sys/fs/cgroup/memory", path, "memory.limit_in_bytes"),
            None => {
                let path = own
                    .lines()
                    .find_map(|l| l.strip_prefix("0::"))
                    .ok_or("no memory cgroup")?;
                ("/sys/fs/cgroup", path, "memory.max")
            }
        };
        let dir = Path::new(root)
            .join(path.trim_start_matches('/'))
            .join(format!("grape-bench-{}", std::process::id()));
        std::fs::create_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let cgroup = Cgroup { dir };
        std::fs::write(cgroup.dir.join(file), limit_bytes.to_string())
            .map_err(|e| format!("{file}: {e}"))?;
        Ok(cgroup)
    }

    /// The file a process writes its id into to join.
    fn procs(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Joins the cgroup whose `cgroup.procs` is given (if any), opens the database in `dir`,
/// answers every query three times, prints the figures as JSON.
fn child(mode: &str, dir: &Path, queries: &Path, procs: Option<&String>) {
    if let Some(procs) = procs {
        std::fs::write(procs, std::process::id().to_string()).unwrap();
    }
    let queries = testkit::read_npy(queries).unwrap();
    let (_, _, quantization, on_disk) = *MODES.iter().find(|m| m.0 == mode).unwrap();
    let (rss, (anon, file)) = (testkit::rss_bytes(), testkit::rss_by_kind());
    let db = EmbeddedVectorDB::open(config(dir, queries.dim, quantization, on_disk)).unwrap();
    let file_open = testkit::rss_by_kind().1.saturating_sub(file);
    let requests: Vec<SearchRequest> = (0..queries.rows)
        .map(|q| SearchRequest::new(queries.row(q).to_vec(), 10))
        .collect();
    // A round stops after ROUND_SECONDS: within a limit the vectors' walk reads from the disk at
    // every step (measured: over 14 minutes for 1,000 queries), and its rate is the figure.
    let mut rounds = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let mut answered = 0;
        for r in &requests {
            db.search(r).unwrap();
            answered += 1;
            if t.elapsed().as_secs_f64() >= ROUND_SECONDS {
                break;
            }
        }
        rounds.push(answered as f64 / t.elapsed().as_secs_f64());
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
            "qps_cold": rounds[0],
            "qps": rounds[1].max(rounds[2]),
        })
    );
}
