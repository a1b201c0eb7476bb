//! Crash test: a child process writes with `Durability::Sync` and is killed with SIGKILL at
//! random moments; after every kill the database must hold every acknowledged write, no half of
//! an unacknowledged one, and answer searches like a brute-force oracle.
//!
//! 50 rounds by default; `GRAPE_CRASH_ROUNDS=1000 cargo test --release --test crash` soaks.

use grape_testkit as testkit;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use grape_vector_db::{
    Distance, Durability, EmbeddedConfig, EmbeddedVectorDB, Payload, Point, PointId, ScrollRequest,
    SearchRequest,
};
use serde_json::json;
use testkit::Rng;

const DIM: usize = 16;
const IDS: u64 = 600;

fn config(dir: &Path) -> EmbeddedConfig {
    EmbeddedConfig::builder(DIM)
        .distance(Distance::Euclid)
        .data_dir(dir)
        .durability(Durability::Sync)
        // Small, so checkpoints (and crashes during them) happen often.
        .checkpoint_wal_bytes(40_000)
        .build()
        .unwrap()
}

/// One write of the workload: step `s` is a single call, so it is atomic.
enum Step {
    Upsert(Vec<Point>),
    Delete(Vec<u64>),
}

fn step(s: u64) -> Step {
    if s % 4 == 3 {
        return Step::Delete(vec![(s * 17) % IDS, (s * 29) % IDS, (s * 31) % IDS]);
    }
    Step::Upsert(
        (0..10u64)
            .map(|j| {
                let id = (s * 13 + j * 37) % IDS;
                let v: Vec<f32> = (0..DIM as u64)
                    .map(|d| (((s * 31 + j * 7 + d * 3) % 101) as f32) / 10.0)
                    .collect();
                Point::new(id, v)
                    .with_payload(json!({"step": s, "j": j}))
                    .unwrap()
            })
            .collect(),
    )
}

type Model = BTreeMap<PointId, (Vec<f32>, Payload)>;

fn apply(model: &mut Model, s: u64) {
    match step(s) {
        Step::Upsert(points) => {
            for p in points {
                model.insert(p.id, (p.vector, p.payload));
            }
        }
        Step::Delete(ids) => {
            for id in ids {
                model.remove(&PointId::Num(id));
            }
        }
    }
}

fn contents(db: &EmbeddedVectorDB) -> Model {
    db.scroll(&ScrollRequest {
        limit: 10_000,
        with_vector: true,
        ..ScrollRequest::default()
    })
    .unwrap()
    .points
    .into_iter()
    .map(|r| (r.id, (r.vector.unwrap(), r.payload.unwrap())))
    .collect()
}

/// The child: writes steps from `GRAPE_CRASH_START` on, printing `ack N` after each returns.
#[test]
fn crash_child_process() {
    let Ok(dir) = std::env::var("GRAPE_CRASH_CHILD") else {
        return; // run directly: nothing to do
    };
    let start: u64 = std::env::var("GRAPE_CRASH_START").unwrap().parse().unwrap();
    let db = EmbeddedVectorDB::open(config(Path::new(&dir))).unwrap();
    for s in start.. {
        match step(s) {
            Step::Upsert(points) => {
                db.upsert(points).unwrap();
            }
            Step::Delete(ids) => {
                db.delete(ids).unwrap();
            }
        }
        // Written and flushed explicitly: the parent counts these lines as acknowledgements.
        let mut out = std::io::stdout().lock();
        writeln!(out, "ack {s}").unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn killed_writers_lose_nothing_acknowledged() {
    let rounds: u64 = std::env::var("GRAPE_CRASH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(50);
    let dir = std::env::temp_dir().join(format!("grape-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut rng = Rng::new(99);
    let mut applied = 0u64; // steps known to be in the database
    let mut model = Model::new();
    let mut kills_mid_write = 0;
    for round in 0..rounds {
        let acked = Arc::new(AtomicU64::new(0));
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "crash_child_process",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("GRAPE_CRASH_CHILD", &dir)
            .env("GRAPE_CRASH_START", applied.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = {
            let acked = acked.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    // Not `strip_prefix`: libtest prints "test crash_child_process ... " with no
                    // newline before the test runs, so the first ack shares its line.
                    if let Some((_, n)) = line.rsplit_once("ack ") {
                        acked.store(n.trim().parse::<u64>().unwrap() + 1, Ordering::SeqCst);
                    }
                }
            })
        };
        std::thread::sleep(Duration::from_millis(5 + rng.below(80) as u64));
        child.kill().unwrap(); // SIGKILL on Unix
        let status = child.wait().unwrap();
        reader.join().unwrap();
        assert!(
            !status.success(),
            "round {round}: the child exited on its own"
        );
        let acked = acked.load(Ordering::SeqCst).max(applied);

        let db = EmbeddedVectorDB::open(config(&dir)).unwrap();
        let got = contents(&db);
        // Every acknowledged step is there; the step in flight is wholly there or wholly not.
        let mut expected = model.clone();
        for s in applied..acked {
            apply(&mut expected, s);
        }
        if got != expected {
            let before = expected.clone();
            apply(&mut expected, acked);
            assert!(
                got == expected,
                "round {round}: neither {acked} nor {} steps; against {acked}: {}; against {}: {}",
                acked + 1,
                diff(&got, &before),
                acked + 1,
                diff(&got, &expected)
            );
            applied = acked + 1;
            kills_mid_write += 1;
        } else {
            applied = acked;
        }
        model = expected;
        check_searches(&db, &model, &mut rng, round);
        drop(db);
    }
    eprintln!(
        "{rounds} kills, {applied} steps written, {kills_mid_write} kills after a write reached \
         the log but before its acknowledgement was read"
    );
    assert!(
        applied > rounds,
        "the child made too little progress to test anything"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The ids on which two states differ, for failure messages.
fn diff(got: &Model, want: &Model) -> String {
    let mut out = Vec::new();
    for (id, g) in got {
        match want.get(id) {
            None => out.push(format!("{id} extra {:?}", g.1)),
            Some(w) if w != g => out.push(format!("{id} is {:?}, expected {:?}", g.1, w.1)),
            _ => {}
        }
    }
    for (id, w) in want {
        if !got.contains_key(id) {
            out.push(format!("{id} missing {:?}", w.1));
        }
    }
    out.truncate(12);
    out.join("; ")
}

fn check_searches(db: &EmbeddedVectorDB, model: &Model, rng: &mut Rng, round: u64) {
    for _ in 0..3 {
        let q: Vec<f32> = (0..DIM).map(|_| rng.unit() as f32 * 10.0).collect();
        let got = db.search(&SearchRequest::new(q.clone(), 5)).unwrap().result;
        let mut want: Vec<f64> = model
            .values()
            .map(|(v, _)| {
                v.iter()
                    .zip(&q)
                    .map(|(a, b)| f64::from(a - b).powi(2))
                    .sum::<f64>()
                    .sqrt()
            })
            .collect();
        want.sort_by(f64::total_cmp);
        assert_eq!(got.len(), want.len().min(5), "round {round}");
        for (g, w) in got.iter().zip(&want) {
            assert!(
                (f64::from(g.score) - w).abs() < 1e-3,
                "round {round}: {} vs {w}",
                g.score
            );
        }
    }
}
