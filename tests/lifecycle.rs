//! The lifecycle: states and what every call does in each, graceful close under load, startup
//! phases and timeout, hooks, warmup, health checks caused to fail, metrics, the memory budget.

use grape_testkit as testkit;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use grape_vector_db::storage::{MemoryStorage, Storage};
use grape_vector_db::{
    CheckStatus, Condition, DatabaseState, Durability, EmbeddedConfig, EmbeddedVectorDB, Error,
    Filter, Point, PointId, ScrollRequest, SearchRequest,
};
use serde_json::json;
use testkit::faulty::FaultyStorage;
use testkit::Rng;

const DIM: usize = 8;

fn config() -> EmbeddedConfig {
    EmbeddedConfig::builder(DIM).build().unwrap()
}

fn points(rng: &mut Rng, ids: std::ops::Range<u64>) -> Vec<Point> {
    ids.map(|i| {
        Point::new(i, (0..DIM).map(|_| rng.signed()).collect())
            .with_payload(json!({"group": i % 4}))
            .unwrap()
    })
    .collect()
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("grape-life-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Every public call that can be refused, with the error it returned (`None`: it succeeded).
fn every_call(db: &EmbeddedVectorDB) -> Vec<(&'static str, Option<Error>)> {
    let q = vec![0.5; DIM];
    let filter = Filter::must([Condition::match_value("group", 1)]);
    let err = |r: Result<(), Error>| r.err();
    vec![
        (
            "upsert",
            err(db.upsert(vec![Point::new(900, q.clone())]).map(drop)),
        ),
        (
            "search",
            err(db.search(&SearchRequest::new(q.clone(), 3)).map(drop)),
        ),
        (
            "search_batch",
            err(db
                .search_batch(&[SearchRequest::new(q.clone(), 3)])
                .map(drop)),
        ),
        ("get", err(db.get([1u64]).map(drop))),
        ("set_payload", err(db.set_payload([1u64], json!({"x": 1})))),
        ("delete", err(db.delete([900u64]).map(drop))),
        (
            "delete_by_filter",
            err(db
                .delete_by_filter(&Filter::must([Condition::has_id([901u64])]))
                .map(drop)),
        ),
        ("count", err(db.count(Some(&filter)).map(drop))),
        (
            "scroll",
            err(db.scroll(&ScrollRequest::default()).map(drop)),
        ),
        ("flush", err(db.flush())),
        ("checkpoint", err(db.checkpoint())),
        ("compact", err(db.compact())),
        ("snapshot_to", err(db.snapshot_to(&MemoryStorage::new()))),
        ("on_shutdown", err(db.on_shutdown(|| Ok(())))),
    ]
}

#[test]
fn every_call_in_every_state() {
    let storage = FaultyStorage::new();
    let cfg = EmbeddedConfig::builder(DIM)
        .shutdown_timeout(Duration::from_millis(50))
        .build()
        .unwrap();
    let db = EmbeddedVectorDB::open_with_storage(cfg, Arc::new(storage.clone())).unwrap();
    db.upsert(points(&mut Rng::new(1), 0..50)).unwrap();

    // Ready: everything works.
    assert_eq!(db.state(), DatabaseState::Ready);
    for (call, e) in every_call(&db) {
        assert_eq!(e, None, "{call} in Ready");
    }

    // A write stuck in storage keeps one call in flight: close times out naming it, and the
    // database stays Shutting, refusing every call.
    storage.stall_writes(true);
    let stuck = {
        let db = db.clone();
        std::thread::spawn(move || db.upsert(vec![Point::new(1000, vec![0.1; DIM])]))
    };
    while storage.stalled.load(SeqCst) == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    match db.close() {
        Err(Error::ShutdownTimeout { still_running, .. }) => {
            assert_eq!(still_running, "1 upsert")
        }
        other => panic!("close with a stuck write: {other:?}"),
    }
    assert_eq!(db.state(), DatabaseState::Shutting);
    for (call, e) in every_call(&db) {
        assert_eq!(e, Some(Error::ShuttingDown), "{call} in Shutting");
    }
    assert_eq!(db.health().status, CheckStatus::Critical);
    assert_eq!(db.stats().state, DatabaseState::Shutting);

    // The write completes (it was admitted before shutdown); the second close finishes.
    storage.stall_writes(false);
    stuck.join().unwrap().expect("the admitted write completes");
    let report = db.close().unwrap();
    assert!(report.hook_errors.is_empty());
    assert_eq!(db.state(), DatabaseState::Closed);
    for (call, e) in every_call(&db) {
        assert_eq!(e, Some(Error::Closed), "{call} in Closed");
    }
    assert_eq!(db.close().unwrap_err(), Error::Closed);
    let stats = db.stats();
    assert_eq!(
        (stats.total_vectors, stats.state),
        (0, DatabaseState::Closed)
    );
    assert_eq!(db.metrics().state, DatabaseState::Closed);

    // The lock was released and the acknowledged write is there.
    let db = EmbeddedVectorDB::open_with_storage(config(), Arc::new(storage)).unwrap();
    assert_eq!(db.count(None).unwrap(), 51);
}

#[test]
fn busy_during_a_bulk_load_and_reads_still_served() {
    let db = EmbeddedVectorDB::open(
        EmbeddedConfig::builder(DIM)
            .thread_pool_size(1)
            .build()
            .unwrap(),
    )
    .unwrap();
    db.upsert(points(&mut Rng::new(2), 0..10)).unwrap();
    let seen_busy = Arc::new(AtomicBool::new(false));
    let loader = {
        let db = db.clone();
        std::thread::spawn(move || db.upsert(points(&mut Rng::new(3), 10..20_010)).unwrap())
    };
    let mut searches = 0;
    while !loader.is_finished() {
        if db.state() == DatabaseState::Busy {
            seen_busy.store(true, SeqCst);
            // Reads are served while Busy.
            db.search(&SearchRequest::new(vec![0.1; DIM], 5)).unwrap();
            searches += 1;
        }
    }
    loader.join().unwrap();
    assert!(seen_busy.load(SeqCst), "a 20,000-point load is a long job");
    assert!(searches > 0);
    assert_eq!(
        db.state(),
        DatabaseState::Ready,
        "back to Ready after the load"
    );
}

#[test]
fn close_while_eight_threads_search_and_write_keeps_every_acknowledged_write() {
    let dir = temp_dir("close-under-load");
    let cfg = EmbeddedConfig::builder(DIM)
        .data_dir(&dir)
        .durability(Durability::Batched {
            interval: Duration::from_millis(5),
        })
        .build()
        .unwrap();
    let db = EmbeddedVectorDB::open(cfg.clone()).unwrap();
    let acknowledged = Arc::new(Mutex::new(BTreeSet::new()));
    let mut workers = Vec::new();
    for t in 0..8u64 {
        let db = db.clone();
        let acknowledged = acknowledged.clone();
        workers.push(std::thread::spawn(move || {
            let mut rng = Rng::new(t);
            for i in 0.. {
                let result = if t < 4 {
                    let id = t * 1_000_000 + i;
                    let r = db.upsert(points(&mut rng, id..id + 1));
                    if r.is_ok() {
                        acknowledged.lock().unwrap().insert(id);
                    }
                    r.map(drop)
                } else {
                    db.search(&SearchRequest::new(vec![rng.signed(); DIM], 10))
                        .map(drop)
                };
                match result {
                    Ok(()) => {}
                    Err(Error::ShuttingDown | Error::Closed) => return i,
                    Err(e) => panic!("thread {t}: {e}"),
                }
            }
            unreachable!()
        }));
    }
    std::thread::sleep(Duration::from_millis(300));
    let report = db.close().unwrap();
    let calls: Vec<u64> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    assert!(
        calls.iter().all(|&n| n > 0),
        "every thread got work done: {calls:?}"
    );
    assert!(report.total < Duration::from_secs(5), "{report:?}");
    let acknowledged = acknowledged.lock().unwrap().clone();
    let db = EmbeddedVectorDB::open(cfg).unwrap();
    assert_eq!(db.count(None).unwrap(), acknowledged.len());
    let found = db.get(acknowledged.iter().copied()).unwrap();
    assert_eq!(
        found.len(),
        acknowledged.len(),
        "an acknowledged write was lost"
    );
    drop(db);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn close_reports_flush_checkpoint_and_hook_errors() {
    let storage = MemoryStorage::new();
    let cfg = EmbeddedConfig::builder(DIM)
        .durability(Durability::OnFlush)
        .checkpoint_on_close(true)
        .build()
        .unwrap();
    let db = EmbeddedVectorDB::open_with_storage(cfg.clone(), Arc::new(storage.clone())).unwrap();
    db.upsert(points(&mut Rng::new(4), 0..100)).unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    for i in 0..3 {
        let order = order.clone();
        db.on_shutdown(move || {
            order.lock().unwrap().push(i);
            match i {
                1 => Err(Error::InvalidArgument("hook one fails".into())),
                _ => Ok(()),
            }
        })
        .unwrap();
    }
    let report = db.close().unwrap();
    assert_eq!(
        *order.lock().unwrap(),
        vec![0, 1, 2],
        "hooks run in order, all of them"
    );
    assert_eq!(report.hook_errors.len(), 1);
    assert!(report.hook_errors[0].contains("hook one fails"));
    assert!(report.bytes_flushed > 0);
    assert!(report.checkpoint.is_some());
    let db = EmbeddedVectorDB::open_with_storage(cfg, Arc::new(storage)).unwrap();
    assert_eq!(
        db.open_report().wal_records_replayed,
        0,
        "checkpointed on close"
    );
    assert_eq!(db.open_report().segment_points, 100);
}

#[test]
fn close_checkpoints_a_long_log_unasked_and_leaves_a_short_one() {
    let storage = MemoryStorage::new();
    let cfg = EmbeddedConfig::builder(DIM)
        .durability(Durability::OnFlush)
        .build()
        .unwrap();
    let open = || EmbeddedVectorDB::open_with_storage(cfg.clone(), Arc::new(storage.clone()));
    let mut rng = Rng::new(11);
    // A short log: replaying it at the next open costs less than rewriting the segment.
    let db = open().unwrap();
    db.upsert(points(&mut rng, 0..100)).unwrap();
    assert_eq!(db.close().unwrap().checkpoint, None);
    let db = open().unwrap();
    assert_eq!(db.open_report().wal_records_replayed, 1);
    // Past 1 MiB (and 1/32 of the segment, which does not exist yet): checkpointed.
    for chunk in (100..30_100u64).step_by(1_000) {
        db.upsert(points(&mut rng, chunk..chunk + 1_000)).unwrap();
    }
    assert!(db.close().unwrap().checkpoint.is_some());
    let db = open().unwrap();
    assert_eq!(db.open_report().wal_records_replayed, 0);
    assert_eq!(db.open_report().segment_points, 30_100);
    // A little more: the log is now small beside the segment.
    db.upsert(points(&mut rng, 30_100..30_200)).unwrap();
    assert_eq!(db.close().unwrap().checkpoint, None);
    assert_eq!(open().unwrap().count(None).unwrap(), 30_200);
}

#[test]
fn a_replayed_log_is_indexed_in_the_background_while_searches_are_served() {
    let storage = MemoryStorage::new();
    let cfg = EmbeddedConfig::builder(DIM)
        .durability(Durability::OnFlush)
        .hnsw(Some(grape_vector_db::HnswConfig {
            full_scan_threshold: 1_000,
            ..Default::default()
        }))
        .build()
        .unwrap();
    let open = || EmbeddedVectorDB::open_with_storage(cfg.clone(), Arc::new(storage.clone()));
    let data = points(&mut Rng::new(12), 0..4_000);
    {
        // Dropped without close: the log is flushed, not checkpointed.
        let db = open().unwrap();
        db.upsert(data.clone()).unwrap();
    }
    let db = open().unwrap();
    assert_eq!(db.open_report().wal_records_replayed, 1);
    let query = SearchRequest::new(data[7].vector.clone(), 5);
    let mut unindexed = Vec::new();
    let start = std::time::Instant::now();
    loop {
        let stats = db.stats();
        unindexed.push(stats.unindexed);
        // Every search is right whatever is indexed yet.
        let found = db.search(&query).unwrap();
        assert_eq!(found.result[0].id, PointId::Num(7));
        if stats.unindexed == 0 {
            // The indexer leaves `Busy` just after its last chunk.
            while db.stats().state == DatabaseState::Busy {
                assert!(start.elapsed() < Duration::from_secs(120));
                std::thread::sleep(Duration::from_millis(1));
            }
            assert_eq!(db.stats().state, DatabaseState::Ready);
            assert!(found.scored < 2_000, "the graph answers: {}", found.scored);
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "still {} points to index",
            stats.unindexed
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        unindexed[0] > 0,
        "opened with the log's points outside the graph"
    );
    assert!(unindexed.windows(2).all(|w| w[1] <= w[0]), "{unindexed:?}");
    // A close while the indexer works stops it (the next open indexes again).
    drop(db);
    {
        let db = open().unwrap();
        db.upsert(points(&mut Rng::new(13), 4_000..5_000)).unwrap();
    }
    let db = open().unwrap();
    db.close().unwrap();
    assert_eq!(open().unwrap().count(None).unwrap(), 5_000);
}

#[test]
fn payload_indexes_open_from_the_segment_and_new_keys_build_in_the_background() {
    let storage = MemoryStorage::new();
    let cfg = EmbeddedConfig::builder(DIM)
        .payload_index("group")
        .checkpoint_on_close(true)
        .build()
        .unwrap();
    let open = |cfg: &EmbeddedConfig| {
        EmbeddedVectorDB::open_with_storage(cfg.clone(), Arc::new(storage.clone()))
    };
    let db = open(&cfg).unwrap();
    db.upsert(points(&mut Rng::new(14), 0..2_000)).unwrap();
    db.close().unwrap();

    // The segment stored the index: it is used at once, and parses no payload (parsed ones
    // would count in the payloads' memory).
    let db = open(&cfg).unwrap();
    let unparsed = db.stats().memory.payloads;
    assert_eq!(db.stats().state, DatabaseState::Ready, "nothing to build");
    let filter = Filter::must([Condition::match_value("group", 1)]);
    assert_eq!(db.count(Some(&filter)).unwrap(), 500);
    assert_eq!(db.stats().memory.payloads, unparsed);
    db.close().unwrap();

    // A key the segment has no index for is built after open: the payloads are parsed for it.
    let mut with_new_key = cfg.clone();
    with_new_key.payload_indexes.push("other".to_owned());
    let db = open(&with_new_key).unwrap();
    let start = std::time::Instant::now();
    while db.stats().memory.payloads <= unparsed || db.stats().state != DatabaseState::Ready {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no index built: {:?}",
            db.stats()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(db.count(Some(&filter)).unwrap(), 500);
}

#[test]
fn dropping_without_close_flushes_and_runs_hooks() {
    let storage = MemoryStorage::new();
    let cfg = EmbeddedConfig::builder(DIM)
        .durability(Durability::OnFlush)
        .build()
        .unwrap();
    let ran = Arc::new(AtomicBool::new(false));
    {
        let db =
            EmbeddedVectorDB::open_with_storage(cfg.clone(), Arc::new(storage.clone())).unwrap();
        db.upsert(points(&mut Rng::new(5), 0..10)).unwrap();
        let ran = ran.clone();
        db.on_shutdown(move || {
            ran.store(true, SeqCst);
            Ok(())
        })
        .unwrap();
    }
    assert!(ran.load(SeqCst));
    let db = EmbeddedVectorDB::open_with_storage(cfg, Arc::new(storage)).unwrap();
    assert_eq!(db.count(None).unwrap(), 10);
}

#[test]
fn startup_is_timed_by_phase_and_a_timeout_releases_the_lock() {
    let storage = MemoryStorage::new();
    let db = EmbeddedVectorDB::open_with_storage(config(), Arc::new(storage.clone())).unwrap();
    db.upsert(points(&mut Rng::new(6), 0..2000)).unwrap();
    db.checkpoint().unwrap();
    db.upsert(points(&mut Rng::new(7), 2000..2100)).unwrap();
    db.close().unwrap();

    let mut cfg = config();
    cfg.startup_timeout = Some(Duration::from_nanos(1));
    let err = EmbeddedVectorDB::open_with_storage(cfg, Arc::new(storage.clone())).unwrap_err();
    assert!(
        matches!(err, Error::StartupTimeout { phase: "lock", .. }),
        "{err}"
    );
    assert!(err.to_string().contains("unlocked"));

    let cfg = EmbeddedConfig::builder(DIM)
        .enable_warmup(true)
        .payload_index("group")
        .startup_timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let db = EmbeddedVectorDB::open_with_storage(cfg, Arc::new(storage)).unwrap();
    let s = db.open_report().startup;
    let phases = s.lock + s.manifest + s.segments + s.wal_replay + s.warmup;
    assert!(phases <= s.total, "{s:?}");
    assert!(
        s.segments > Duration::ZERO && s.warmup > Duration::ZERO,
        "{s:?}"
    );
    assert_eq!(db.count(None).unwrap(), 2100);
    assert!(
        db.stats().memory.index > 0,
        "warmup indexed the replayed points and built the payload index"
    );
}

#[test]
fn health_checks_fail_when_their_resource_does() {
    // Storage: a read-only medium fails the probe write.
    let storage = FaultyStorage::new();
    let db = EmbeddedVectorDB::open_with_storage(config(), Arc::new(storage.clone())).unwrap();
    db.upsert(points(&mut Rng::new(8), 0..300)).unwrap();
    let healthy = db.health();
    assert_eq!(healthy.status, CheckStatus::Healthy, "{healthy:#?}");
    assert!(healthy
        .check("engine")
        .unwrap()
        .message
        .contains("found itself"));
    storage.read_only.store(true, SeqCst);
    let h = db.health();
    let check = h.check("storage").unwrap();
    assert_eq!(check.status, CheckStatus::Critical, "{h:#?}");
    assert!(check.message.contains("read-only"), "{}", check.message);
    assert_eq!(h.status, CheckStatus::Critical);
    storage.read_only.store(false, SeqCst);
    // A failed fsync poisons the log: the storage check says so.
    storage.fail_syncs.store(true, SeqCst);
    assert!(db.upsert(points(&mut Rng::new(9), 300..301)).is_err());
    storage.fail_syncs.store(false, SeqCst);
    let h = db.health();
    assert!(
        h.check("storage")
            .unwrap()
            .message
            .contains("refuses writes"),
        "{h:#?}"
    );
    drop(db);

    // Disk: a quota nearly used up.
    let small = MemoryStorage::with_quota(600 << 10);
    let cfg = EmbeddedConfig::builder(DIM)
        .disk_thresholds_mb(1, 0)
        .build()
        .unwrap();
    let db = EmbeddedVectorDB::open_with_storage(cfg, Arc::new(small.clone())).unwrap();
    assert_eq!(
        db.health().check("disk").unwrap().status,
        CheckStatus::Warning
    );
    let mut rng = Rng::new(10);
    let mut stored = 0;
    let full = loop {
        match db.upsert(points(&mut rng, stored..stored + 500)) {
            Ok(_) => stored += 500,
            Err(e) => break e,
        }
    };
    assert!(matches!(full, Error::StorageFull { .. }), "{full}");
    assert_eq!(
        db.count(None).unwrap() as u64,
        stored,
        "nothing half-applied"
    );
    let disk = db.health();
    let disk = disk.check("disk").unwrap();
    assert_ne!(disk.status, CheckStatus::Healthy, "{disk:?}");
    assert!(small.space().unwrap().unwrap().free < 64 << 10);
    drop(db);

    // Disk on a real file system: thresholds above its size make it critical.
    let dir = temp_dir("disk");
    let cfg = EmbeddedConfig::builder(DIM)
        .data_dir(&dir)
        .disk_thresholds_mb(u64::MAX >> 21, u64::MAX >> 21)
        .build()
        .unwrap();
    let db = EmbeddedVectorDB::open(cfg).unwrap();
    let h = db.health();
    let disk = h.check("disk").unwrap();
    assert_eq!(disk.status, CheckStatus::Critical, "{disk:?}");
    assert!(disk.message.contains("MiB free of"), "{}", disk.message);
    assert_eq!(h.check("storage").unwrap().status, CheckStatus::Healthy);
    drop(db);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_memory_budget_refuses_whole_upserts_and_the_check_follows_it() {
    let cfg = EmbeddedConfig::builder(DIM)
        .max_memory_mb(1)
        .build()
        .unwrap();
    let storage = MemoryStorage::new();
    let db = EmbeddedVectorDB::open_with_storage(cfg, Arc::new(storage.clone())).unwrap();
    let mut rng = Rng::new(11);
    let mut stored = 0u64;
    let err = loop {
        match db.upsert(points(&mut rng, stored..stored + 1000)) {
            Ok(_) => stored += 1000,
            Err(e) => break e,
        }
    };
    let Error::MemoryBudgetExceeded {
        budget,
        used,
        needed,
    } = err
    else {
        panic!("{err}")
    };
    assert_eq!(budget, 1 << 20);
    assert!(used + needed > budget && used <= budget);
    assert_eq!(
        db.count(None).unwrap() as u64,
        stored,
        "nothing half-applied"
    );
    assert!(stored > 0);
    assert_eq!(db.metrics().errors_by_kind["MemoryBudgetExceeded"], 1);
    let memory = db.health();
    let memory = memory.check("memory").unwrap();
    assert!(
        memory.message.contains("of the 1 MiB budget"),
        "{}",
        memory.message
    );
    db.close().unwrap();

    // Reopened with a budget below what the data holds: critical.
    let cfg = EmbeddedConfig::builder(DIM)
        .max_memory_mb(1)
        .build()
        .unwrap();
    let bigger = points(&mut rng, 0..3000);
    let db = EmbeddedVectorDB::open_with_storage(
        EmbeddedConfig::builder(DIM).build().unwrap(),
        Arc::new(storage.clone()),
    )
    .unwrap();
    db.upsert(bigger).unwrap();
    drop(db);
    let db = EmbeddedVectorDB::open_with_storage(cfg, Arc::new(storage)).unwrap();
    let h = db.health();
    assert_eq!(
        h.check("memory").unwrap().status,
        CheckStatus::Critical,
        "{h:#?}"
    );
}

#[test]
fn the_background_checker_keeps_the_last_result() {
    let cfg = EmbeddedConfig::builder(DIM)
        .health_check_interval(Duration::from_millis(10))
        .build()
        .unwrap();
    let db = EmbeddedVectorDB::open(cfg).unwrap();
    db.upsert(points(&mut Rng::new(12), 0..20)).unwrap();
    let start = std::time::Instant::now();
    while db.last_health().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the checker never ran"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(db.last_health().unwrap().status, CheckStatus::Healthy);
}

#[test]
fn metrics_count_calls_errors_and_bytes() {
    let storage = MemoryStorage::new();
    let db = EmbeddedVectorDB::open_with_storage(config(), Arc::new(storage)).unwrap();
    db.upsert(points(&mut Rng::new(13), 0..100)).unwrap();
    db.search_batch(&vec![SearchRequest::new(vec![0.2; DIM], 5); 3])
        .unwrap();
    assert!(db.search(&SearchRequest::new(vec![0.2; 3], 5)).is_err());
    assert_eq!(db.delete([1u64, 2, 3]).unwrap(), 3);
    db.checkpoint().unwrap();
    let m = db.metrics();
    assert_eq!(m.points_upserted, 100);
    assert_eq!(m.points_deleted, 3);
    assert_eq!(m.queries, 3, "the failed search answered nothing");
    assert_eq!(m.operations["search"].calls, 2);
    assert_eq!(m.operations["search"].errors, 1);
    assert_eq!(m.errors_by_kind["DimensionMismatch"], 1);
    assert_eq!(m.checkpoints, 1);
    assert!(m.wal_bytes_written > 100 * DIM as u64 * 4);
    assert_eq!(m.wal_bytes_synced, m.wal_bytes_written, "Sync durability");
    assert!(m.segment_bytes_written > 0 && m.disk_bytes > 0);
    let upsert = m.operations["upsert"].latency;
    assert!(
        upsert.p50_us > 0.0 && upsert.p50_us <= upsert.p99_us && upsert.p99_us <= upsert.max_us
    );
    let text = m.to_prometheus();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (name, value) = line.rsplit_once(' ').unwrap();
        assert!(name.starts_with("grape_"), "{line}");
        value.parse::<f64>().unwrap_or_else(|_| panic!("{line}"));
    }
    assert!(text.contains("grape_errors_total{kind=\"DimensionMismatch\"} 1"));
    assert!(text.contains("grape_operations_total{op=\"delete\"} 1"));
    let json = m.to_json();
    assert_eq!(json["points_deleted"], 3);
}

#[test]
fn a_parallel_search_batch_answers_like_a_serial_one() {
    let mut rng = Rng::new(14);
    let pts = points(&mut rng, 0..3000);
    let queries: Vec<SearchRequest> = (0..40)
        .map(|i| {
            let mut r = SearchRequest::new((0..DIM).map(|_| rng.signed()).collect(), 7);
            if i % 3 == 0 {
                r = r.with_filter(Filter::must([Condition::match_value("group", 2)]));
            }
            r
        })
        .collect();
    let answers: Vec<Vec<Vec<PointId>>> = [1, 2, 3]
        .iter()
        .map(|&threads| {
            let db = EmbeddedVectorDB::open(
                EmbeddedConfig::builder(DIM)
                    .thread_pool_size(threads)
                    .build()
                    .unwrap(),
            )
            .unwrap();
            db.upsert(pts.clone()).unwrap();
            db.search_batch(&queries)
                .unwrap()
                .into_iter()
                .map(|r| r.result.into_iter().map(|p| p.id).collect())
                .collect()
        })
        .collect();
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0], answers[2]);
}

#[test]
fn the_engine_check_accepts_ties_and_longer_dot_vectors() {
    use grape_vector_db::Distance;
    // Parallel vectors: identical after Cosine normalisation (ties within rounding); with Dot,
    // the longest one outscores every point's own vector.
    for distance in [Distance::Cosine, Distance::Dot] {
        let db = EmbeddedVectorDB::open(
            EmbeddedConfig::builder(8)
                .distance(distance)
                .build()
                .unwrap(),
        )
        .unwrap();
        db.upsert(
            (1..=600u64)
                .map(|i| Point::new(i, vec![i as f32; 8]))
                .collect(),
        )
        .unwrap();
        for _ in 0..20 {
            let h = db.health();
            assert_eq!(h.status, CheckStatus::Healthy, "{distance:?}: {h:#?}");
        }
    }
}

#[test]
fn dropping_the_last_handle_releases_the_database_at_once_while_a_background_check_runs() {
    // The health schedule holds a strong reference while it checks. If the user dropped the
    // last handle meanwhile, the database used to close on that thread, after the check, and
    // an immediate reopen failed with AlreadyOpen although every handle was gone.
    let storage = FaultyStorage::new();
    let cfg = EmbeddedConfig::builder(DIM)
        .health_check_interval(Duration::from_millis(1))
        .build()
        .unwrap();
    let db = EmbeddedVectorDB::open_with_storage(cfg.clone(), Arc::new(storage.clone())).unwrap();
    db.upsert(points(&mut Rng::new(3), 0..10)).unwrap();
    // The scheduled storage probe writes a file: stall it there, mid-check.
    storage.stall_writes(true);
    while storage.stalled.load(SeqCst) == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let release = {
        let storage = storage.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            storage.stall_writes(false);
        })
    };
    drop(db);
    let again = EmbeddedVectorDB::open_with_storage(cfg, Arc::new(storage.clone()))
        .expect("the last handle is gone, so the database is free to open");
    assert_eq!(again.count(None).unwrap(), 10);
    release.join().unwrap();
}

#[test]
fn destroy_deletes_a_closed_database_and_leaves_other_files() {
    let dir = temp_dir("destroy");
    let config = || EmbeddedConfig::builder(DIM).data_dir(&dir).build().unwrap();
    let mut rng = Rng::new(5);
    let db = EmbeddedVectorDB::open(config()).unwrap();
    db.upsert(points(&mut rng, 0..50)).unwrap();
    db.checkpoint().unwrap();
    db.upsert(points(&mut rng, 50..60)).unwrap();
    let err = EmbeddedVectorDB::destroy(&dir).unwrap_err();
    assert!(matches!(err, Error::AlreadyOpen(_)), "{err}");
    assert_eq!(
        db.count(None).unwrap(),
        60,
        "a refused destroy takes nothing"
    );
    drop(db);
    std::fs::write(dir.join("notes.txt"), "mine").unwrap();
    EmbeddedVectorDB::destroy(&dir).unwrap();
    let left: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(left, ["notes.txt"]);
    let fresh = EmbeddedVectorDB::open(config()).unwrap();
    assert_eq!(fresh.count(None).unwrap(), 0);
    assert!(fresh.open_report().created);
    drop(fresh);
    std::fs::remove_file(dir.join("notes.txt")).unwrap();
    EmbeddedVectorDB::destroy(&dir).unwrap();
    assert!(!dir.exists());
    // Nothing there: nothing to do.
    EmbeddedVectorDB::destroy(&dir).unwrap();
}
