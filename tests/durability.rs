//! Persistence: what was acknowledged is there after reopening, whatever happened in between.

use grape_testkit as testkit;

use grape_vector_db::storage::OpenMode;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use grape_vector_db::storage::{MemoryStorage, Storage};
use grape_vector_db::{
    Condition, Distance, Durability, EmbeddedConfig, EmbeddedVectorDB, Error, Filter, Payload,
    Point, PointId, ScrollRequest, SearchRequest,
};
use serde_json::json;
use testkit::faulty::FaultyStorage;
use testkit::Rng;

type Model = BTreeMap<PointId, (Vec<f32>, Payload)>;

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("grape-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn config(dim: usize) -> EmbeddedConfig {
    EmbeddedConfig::builder(dim)
        .distance(Distance::Euclid)
        .build()
        .unwrap()
}

/// Everything in the database, read back through scroll.
fn contents(db: &EmbeddedVectorDB) -> Model {
    let mut req = ScrollRequest {
        limit: 1000,
        with_vector: true,
        ..ScrollRequest::default()
    };
    let mut out = Model::new();
    loop {
        let page = db.scroll(&req).unwrap();
        for r in page.points {
            out.insert(r.id, (r.vector.unwrap(), r.payload.unwrap()));
        }
        match page.next_page_offset {
            Some(next) => req.offset = Some(next),
            None => return out,
        }
    }
}

#[test]
fn data_survives_reopen_in_every_durability_mode() {
    for (i, durability) in [
        Durability::Sync,
        Durability::Batched {
            interval: Duration::from_millis(5),
        },
        Durability::OnFlush,
    ]
    .into_iter()
    .enumerate()
    {
        let dir = temp_dir(&format!("modes-{i}"));
        let mut cfg = config(3);
        cfg.data_dir = Some(dir.clone());
        cfg.durability = durability;
        {
            let db = EmbeddedVectorDB::open(cfg.clone()).unwrap();
            assert!(db.open_report().created);
            db.upsert(vec![
                Point::new(1, vec![1.0, 2.0, 3.0])
                    .with_payload(json!({"k": "a"}))
                    .unwrap(),
                Point::new(2, vec![0.0, 0.0, 1.0]),
            ])
            .unwrap();
            db.set_payload([2u64], json!({"k": "b"})).unwrap();
            db.delete([1u64]).unwrap();
            db.upsert(vec![Point::new(3, vec![5.0, 5.0, 5.0])]).unwrap();
        }
        let db = EmbeddedVectorDB::open(cfg).unwrap();
        let report = db.open_report();
        assert!(!report.created);
        assert_eq!(report.wal_records_replayed, 4, "{durability:?}");
        let got = contents(&db);
        assert_eq!(got.len(), 2);
        assert_eq!(got[&PointId::Num(2)].1["k"], json!("b"));
        assert_eq!(got[&PointId::Num(3)].0, vec![5.0, 5.0, 5.0]);
        drop(db);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn a_second_open_of_the_same_directory_is_refused_until_the_first_closes() {
    let dir = temp_dir("lock");
    let mut cfg = config(2);
    cfg.data_dir = Some(dir.clone());
    let db = EmbeddedVectorDB::open(cfg.clone()).unwrap();
    let err = EmbeddedVectorDB::open(cfg.clone()).unwrap_err();
    assert!(matches!(err, Error::AlreadyOpen(_)), "{err}");
    assert!(err.to_string().contains("already open"));
    drop(db);
    EmbeddedVectorDB::open(cfg).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The owner record Node processes go by (they have no `flock`): written at open, removed at
/// close, taken over from a dead process, and respected when another live process holds it.
#[cfg(unix)]
#[test]
fn the_owner_record_names_the_process_and_is_taken_over_only_when_it_is_gone() {
    let dir = temp_dir("owner");
    let mut cfg = config(4);
    cfg.data_dir = Some(dir.clone());
    let record = dir.join("LOCK.owner");
    let db = EmbeddedVectorDB::open(cfg.clone()).unwrap();
    let held = std::fs::read_to_string(&record).unwrap();
    assert!(
        held.starts_with(&format!("{} ", std::process::id())),
        "{held:?}"
    );
    drop(db);
    assert!(!record.exists(), "close removes the record");

    let host = held.split_once(' ').unwrap().1.trim_end().to_owned();
    let mut child = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    // A native record (no start): our flock proves its process does not hold the directory.
    std::fs::write(&record, format!("{} {host}\n", child.id())).unwrap();
    drop(EmbeddedVectorDB::open(cfg.clone()).unwrap());
    // A Node record (with its start) of a live process: refused.
    std::fs::write(&record, format!("{} {host} 1000\n", child.id())).unwrap();
    let err = EmbeddedVectorDB::open(cfg.clone()).unwrap_err();
    assert!(matches!(err, Error::AlreadyOpen(_)), "{err}");
    assert!(
        err.to_string().contains(&format!("process {}", child.id())),
        "{err}"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    // The same record, now naming a process that is gone (a Node process's crash): taken over.
    let db = EmbeddedVectorDB::open(cfg).unwrap();
    let held = std::fs::read_to_string(&record).unwrap();
    assert!(
        held.starts_with(&format!("{} ", std::process::id())),
        "{held:?}"
    );
    assert!(
        db.export_archive().is_ok_and(|a| !a.is_empty()),
        "the lock's files are not the database's"
    );
    drop(db);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn opening_with_another_dimension_or_distance_is_a_clear_error() {
    let storage = MemoryStorage::new();
    drop(EmbeddedVectorDB::open_with_storage(config(4), Arc::new(storage.clone())).unwrap());
    let err =
        EmbeddedVectorDB::open_with_storage(config(5), Arc::new(storage.clone())).unwrap_err();
    assert!(err.to_string().contains("dimension 4"), "{err}");
    let cosine = EmbeddedConfig::builder(4).build().unwrap();
    assert!(EmbeddedVectorDB::open_with_storage(cosine, Arc::new(storage)).is_err());
}

#[test]
fn checkpoint_compact_and_snapshot_keep_everything() {
    let dir = temp_dir("checkpoint");
    let mut cfg = config(4);
    cfg.data_dir = Some(dir.join("db"));
    let db = EmbeddedVectorDB::open(cfg.clone()).unwrap();
    let points = |range: std::ops::Range<u64>| -> Vec<Point> {
        range
            .map(|i| {
                Point::new(i, vec![i as f32, 1.0, 2.0, 3.0])
                    .with_payload(json!({"i": i, "even": i % 2 == 0}))
                    .unwrap()
            })
            .collect()
    };
    db.upsert(points(0..500)).unwrap();
    db.checkpoint().unwrap();
    db.upsert(points(500..700)).unwrap();
    db.delete_by_filter(&Filter::must([Condition::match_value("even", true)]))
        .unwrap();
    let before = contents(&db);
    assert_eq!(before.len(), 350);
    db.snapshot(dir.join("snap")).unwrap();
    drop(db);

    let db = EmbeddedVectorDB::open(cfg.clone()).unwrap();
    assert_eq!(db.open_report().segment_points, 500);
    assert_eq!(db.open_report().wal_records_replayed, 2);
    assert_eq!(contents(&db), before);
    // Updating points of the mapped segment moves them to new slots; compaction reclaims.
    db.upsert(points(1..4)).unwrap();
    assert!(db.stats().tombstones > 0);
    db.compact().unwrap();
    assert_eq!(db.stats().tombstones, 0);
    let after = contents(&db);
    drop(db);
    let db = EmbeddedVectorDB::open(cfg).unwrap();
    assert_eq!(db.open_report().wal_records_replayed, 0);
    assert_eq!(contents(&db), after);
    let hit = db
        .search(&SearchRequest::new(vec![301.2, 1.0, 2.0, 3.0], 1))
        .unwrap();
    assert_eq!(hit.result[0].id, PointId::Num(301));

    let mut snap_cfg = config(4);
    snap_cfg.data_dir = Some(dir.join("snap"));
    let snap = EmbeddedVectorDB::open(snap_cfg).unwrap();
    assert_eq!(contents(&snap), before);
    drop((db, snap));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn snapshots_refuse_a_directory_in_use() {
    let db = EmbeddedVectorDB::open(config(2)).unwrap();
    let dest = MemoryStorage::new();
    dest.open("something", OpenMode::CreateIfMissing).unwrap();
    assert!(matches!(
        db.snapshot_to(&dest),
        Err(Error::InvalidArgument(_))
    ));
}

/// Random operations with random checkpoints, compactions and reopenings equal a model.
#[test]
fn random_operations_with_reopens_equal_a_model() {
    for seed in 0..40u64 {
        let mut rng = Rng::new(seed);
        let storage = MemoryStorage::new();
        let dim = 1 + rng.below(6);
        let mut cfg = config(dim);
        cfg.checkpoint_wal_bytes = 1 + rng.below(20_000) as u64;
        cfg.durability = rng.pick(&[Durability::Sync, Durability::OnFlush]);
        let open = |cfg: &EmbeddedConfig| {
            EmbeddedVectorDB::open_with_storage(cfg.clone(), Arc::new(storage.clone())).unwrap()
        };
        let mut db = open(&cfg);
        let mut model = Model::new();
        for step in 0..200 {
            match rng.below(10) {
                0..=3 => {
                    let batch: Vec<Point> = (0..1 + rng.below(8))
                        .map(|_| {
                            let id = PointId::Num(rng.below(60) as u64);
                            let v: Vec<f32> = (0..dim).map(|_| rng.signed()).collect();
                            Point::new(id, v)
                                .with_payload(json!({"g": rng.below(3), "s": step}))
                                .unwrap()
                        })
                        .collect();
                    for p in &batch {
                        model.insert(p.id, (p.vector.clone(), p.payload.clone()));
                    }
                    db.upsert(batch).unwrap();
                }
                4 => {
                    let ids: Vec<u64> = (0..rng.below(5)).map(|_| rng.below(60) as u64).collect();
                    let existing = ids
                        .iter()
                        .collect::<std::collections::BTreeSet<_>>()
                        .iter()
                        .filter(|&&&i| model.remove(&PointId::Num(i)).is_some())
                        .count();
                    assert_eq!(db.delete(ids).unwrap(), existing);
                }
                5 => {
                    let g = rng.below(3) as i64;
                    let n = db
                        .delete_by_filter(&Filter::must([Condition::match_value("g", g)]))
                        .unwrap();
                    let before = model.len();
                    model.retain(|_, (_, p)| p["g"] != json!(g));
                    assert_eq!(n, before - model.len());
                }
                6 => {
                    if let Some((&id, _)) = model.iter().nth(rng.below(model.len().max(1))) {
                        db.set_payload([id], json!({"extra": step})).unwrap();
                        model
                            .get_mut(&id)
                            .unwrap()
                            .1
                            .insert("extra".into(), json!(step));
                    }
                }
                7 => db.checkpoint().unwrap(),
                8 => db.compact().unwrap(),
                _ => {
                    if cfg.durability == Durability::OnFlush {
                        db.flush().unwrap();
                    }
                    drop(db);
                    db = open(&cfg);
                }
            }
            if step % 25 == 0 {
                assert_eq!(contents(&db), model, "seed {seed} step {step}");
            }
        }
        drop(db);
        assert_eq!(contents(&open(&cfg)), model, "seed {seed} at the end");
    }
}

/// A storage whose writes and syncs can be made to fail, like a full or failing disk.
#[test]
fn a_failed_write_changes_nothing_and_loses_nothing_acknowledged() {
    use std::sync::atomic::Ordering::SeqCst;
    for durability in [Durability::Sync, Durability::OnFlush] {
        let storage = FaultyStorage::new();
        let mut cfg = config(2);
        cfg.durability = durability;
        let db =
            EmbeddedVectorDB::open_with_storage(cfg.clone(), Arc::new(storage.clone())).unwrap();
        db.upsert(vec![Point::new(1, vec![1.0, 1.0])]).unwrap();
        storage.fail_writes.store(true, SeqCst);
        // OnFlush buffers small writes, so force this one out with a flush.
        let failed = db
            .upsert(vec![Point::new(2, vec![2.0, 2.0])])
            .and_then(|_| db.flush());
        let err = failed.unwrap_err();
        assert!(
            matches!(err, Error::StorageFull { .. }),
            "{durability:?}: {err}"
        );
        assert!(err.to_string().contains("no space left"));
        storage.fail_writes.store(false, SeqCst);
        if durability == Durability::Sync {
            assert_eq!(
                db.count(None).unwrap(),
                1,
                "the failed upsert was not applied"
            );
        }
        db.upsert(vec![Point::new(3, vec![3.0, 3.0])]).unwrap();
        db.flush().unwrap();
        let expected = contents(&db);
        drop(db);
        let db = EmbeddedVectorDB::open_with_storage(cfg, Arc::new(storage.clone())).unwrap();
        assert_eq!(
            contents(&db),
            expected,
            "{durability:?}: reopened state differs"
        );
        assert!(expected.contains_key(&PointId::Num(1)) && expected.contains_key(&PointId::Num(3)));
    }
}

#[test]
fn a_failed_fsync_refuses_further_writes_until_reopened() {
    use std::sync::atomic::Ordering::SeqCst;
    let storage = FaultyStorage::new();
    let db = EmbeddedVectorDB::open_with_storage(config(2), Arc::new(storage.clone())).unwrap();
    db.upsert(vec![Point::new(1, vec![1.0, 1.0])]).unwrap();
    storage.fail_syncs.store(true, SeqCst);
    assert!(matches!(
        db.upsert(vec![Point::new(2, vec![2.0, 2.0])]),
        Err(Error::Io { .. })
    ));
    storage.fail_syncs.store(false, SeqCst);
    let err = db.upsert(vec![Point::new(3, vec![3.0, 3.0])]).unwrap_err();
    assert!(matches!(err, Error::WriterPoisoned(_)), "{err}");
    assert_eq!(
        db.count(None).unwrap(),
        1,
        "reads still work, with acknowledged data only"
    );
    drop(db);
    let db = EmbeddedVectorDB::open_with_storage(config(2), Arc::new(storage)).unwrap();
    assert!(db.get([1u64]).unwrap().len() == 1);
    db.upsert(vec![Point::new(3, vec![3.0, 3.0])]).unwrap();
}

#[test]
fn checkpoints_leave_only_the_current_generation() {
    let storage = MemoryStorage::new();
    let db = EmbeddedVectorDB::open_with_storage(config(2), Arc::new(storage.clone())).unwrap();
    for round in 0..5u64 {
        db.upsert(vec![Point::new(round, vec![round as f32, 1.0])])
            .unwrap();
        db.checkpoint().unwrap();
        db.health();
        assert_eq!(
            storage.list().unwrap().len(),
            3,
            "round {round}: {:?}",
            storage.list().unwrap()
        );
    }
}

#[test]
fn a_lower_max_points_on_reopen_is_a_limit_not_corruption() {
    // Found by the power-loss review (F): with the points in the log, reopening under a lower
    // `max_points` was reported as corruption (from a segment, as a refused limit). A
    // configuration change keeps acknowledged points either way: new points are refused while
    // over the limit, replacements are not.
    for checkpoint in [false, true] {
        let storage = MemoryStorage::new();
        let db = EmbeddedVectorDB::open_with_storage(config(2), Arc::new(storage.clone())).unwrap();
        db.upsert(
            (0..10u64)
                .map(|i| Point::new(i, vec![i as f32, 1.0]))
                .collect(),
        )
        .unwrap();
        if checkpoint {
            db.checkpoint().unwrap();
        }
        drop(db);
        let mut lower = config(2);
        lower.max_points = Some(5);
        let db = EmbeddedVectorDB::open_with_storage(lower, Arc::new(storage)).unwrap();
        assert_eq!(db.count(None).unwrap(), 10, "checkpoint {checkpoint}");
        let err = db.upsert(vec![Point::new(99, vec![0.0, 1.0])]).unwrap_err();
        assert!(matches!(err, Error::LimitExceeded { .. }), "{err}");
        db.upsert(vec![Point::new(3, vec![3.5, 1.0])]).unwrap();
    }
}

#[test]
fn payload_numbers_come_back_bit_for_bit_from_the_log_and_the_segment() {
    // Found by the fault-injection test's copy check: without serde_json's correctly rounded
    // float parser, some payload floats came back one unit in the last place off.
    let storage = MemoryStorage::new();
    let values = [
        0.9867460520668244f64,
        0.1 + 0.2,
        1e-310,
        123456.789e-12,
        -0.0,
    ];
    let payload = json!({ "xs": values });
    let db = EmbeddedVectorDB::open_with_storage(config(2), Arc::new(storage.clone())).unwrap();
    db.upsert(vec![Point::new(1, vec![1.0, 0.0])
        .with_payload(payload)
        .unwrap()])
        .unwrap();
    let check = |db: &EmbeddedVectorDB, from: &str| {
        let got = &db.get([1u64]).unwrap()[0];
        let xs = got.payload.as_ref().unwrap()["xs"]
            .as_array()
            .unwrap()
            .clone();
        let bits: Vec<u64> = xs.iter().map(|x| x.as_f64().unwrap().to_bits()).collect();
        let want: Vec<u64> = values.iter().map(|x| x.to_bits()).collect();
        assert_eq!(bits, want, "from the {from}");
    };
    drop(db);
    let db = EmbeddedVectorDB::open_with_storage(config(2), Arc::new(storage.clone())).unwrap();
    check(&db, "log");
    db.checkpoint().unwrap();
    drop(db);
    let db = EmbeddedVectorDB::open_with_storage(config(2), Arc::new(storage)).unwrap();
    check(&db, "segment");
}

#[test]
fn a_failed_checkpoint_leaves_no_debris_and_the_database_in_use() {
    // Found by the power-loss review (E): a failed checkpoint left `seg-*.seg.tmp` and
    // `MANIFEST.tmp` behind until the next open, keeping a full disk full.
    let storage = FaultyStorage::new();
    let db = EmbeddedVectorDB::open_with_storage(config(3), Arc::new(storage.clone())).unwrap();
    db.upsert(
        (0..50u64)
            .map(|i| Point::new(i, vec![i as f32, 0.0, 1.0]))
            .collect(),
    )
    .unwrap();
    let before = storage.inner.list().unwrap();
    storage
        .fail_writes
        .store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(db.checkpoint().is_err());
    storage
        .fail_writes
        .store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        storage.inner.list().unwrap(),
        before,
        "only the generation in use is left"
    );
    assert_eq!(db.metrics().checkpoints_failed, 1);
    // The database goes on in the old generation, and a later checkpoint works.
    db.upsert(vec![Point::new(100, vec![1.0, 1.0, 1.0])])
        .unwrap();
    db.checkpoint().unwrap();
    drop(db);
    let db = EmbeddedVectorDB::open_with_storage(config(3), Arc::new(storage)).unwrap();
    assert_eq!(db.count(None).unwrap(), 51);
}

#[test]
fn an_io_error_keeps_the_operating_systems_cause() {
    // A file where the database directory should go: creating it fails in the OS.
    let parent = temp_dir("io-cause");
    std::fs::create_dir_all(&parent).unwrap();
    let blocker = parent.join("not-a-dir");
    std::fs::write(&blocker, b"x").unwrap();
    let config = EmbeddedConfig::builder(2)
        .data_dir(blocker.join("db"))
        .build()
        .unwrap();
    let err = EmbeddedVectorDB::open(config).unwrap_err();
    let Error::Io { cause, file, .. } = &err else {
        panic!("expected an I/O error, got {err:?}");
    };
    assert_eq!(cause.kind(), std::io::ErrorKind::NotADirectory, "{err}");
    assert!(file.ends_with("db"), "{file}");
    let source = std::error::Error::source(&err).expect("the cause is the error's source");
    assert_eq!(source.to_string(), cause.error().to_string());
    assert!(err.to_string().contains(&cause.to_string()), "{err}");
    std::fs::remove_dir_all(&parent).unwrap();
}
