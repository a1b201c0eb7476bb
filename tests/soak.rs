//! Soak: mixed writes, searches, checkpoints and close/reopen cycles for a while, checked against
//! a model of what was acknowledged. CI runs it for 2 seconds; `GRAPE_SOAK_SECS=3600 cargo test
//! --release --test soak -- --nocapture` runs it for an hour.

use grape_testkit as testkit;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use grape_vector_db::{
    Condition, Distance, Durability, EmbeddedConfig, EmbeddedVectorDB, Error, Filter, Point,
    PointId, ScrollRequest, SearchRequest,
};
use parking_lot::RwLock;
use serde_json::json;
use testkit::Rng;

const DIM: usize = 12;

fn vector(rng: &mut Rng) -> Vec<f32> {
    (0..DIM).map(|_| rng.signed()).collect()
}

/// Everything stored: id -> (vector, group).
fn contents(db: &EmbeddedVectorDB) -> BTreeMap<PointId, (Vec<f32>, u64)> {
    let mut req = ScrollRequest {
        limit: 500,
        with_vector: true,
        ..ScrollRequest::default()
    };
    let mut out = BTreeMap::new();
    loop {
        let page = db.scroll(&req).unwrap();
        for r in page.points {
            let group = r.payload.unwrap()["group"].as_u64().unwrap();
            out.insert(r.id, (r.vector.unwrap(), group));
        }
        match page.next_page_offset {
            Some(next) => req.offset = Some(next),
            None => return out,
        }
    }
}

#[test]
fn soak() {
    let secs: f64 = std::env::var("GRAPE_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let dir = std::env::temp_dir().join(format!("grape-soak-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // Euclid keeps vectors as given (Cosine normalises them), so they compare with the model.
    let cfg = EmbeddedConfig::builder(DIM)
        .distance(Distance::Euclid)
        .data_dir(&dir)
        .durability(Durability::Batched {
            interval: Duration::from_millis(10),
        })
        .checkpoint_wal_bytes(256 << 10)
        .payload_index("group")
        .build()
        .unwrap();
    let db = Arc::new(RwLock::new(EmbeddedVectorDB::open(cfg.clone()).unwrap()));
    let stop = Arc::new(AtomicBool::new(false));
    let searches = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = (0..3u64)
        .map(|t| {
            let (db, stop, searches) = (db.clone(), stop.clone(), searches.clone());
            std::thread::spawn(move || {
                let mut rng = Rng::new(100 + t);
                while !stop.load(SeqCst) {
                    let group = rng.below(5) as u64;
                    let req = SearchRequest::new(vector(&mut rng), 10)
                        .with_filter(Filter::must([Condition::match_value(
                            "group",
                            group as i64,
                        )]))
                        .with_payload(true);
                    let handle = db.read().clone();
                    match handle.search(&req) {
                        Ok(found) => {
                            for p in &found.result {
                                let payload = p.payload.as_ref().unwrap();
                                assert_eq!(payload["group"], group, "a result outside the filter");
                            }
                            searches.fetch_add(1, SeqCst);
                        }
                        // The writer is reopening the database under us.
                        Err(Error::ShuttingDown | Error::Closed) => {}
                        Err(e) => panic!("search: {e}"),
                    }
                }
            })
        })
        .collect();

    let mut rng = Rng::new(7);
    let mut model: BTreeMap<PointId, (Vec<f32>, u64)> = BTreeMap::new();
    let start = Instant::now();
    let (mut ops, mut reopens) = (0u64, 0u64);
    while start.elapsed().as_secs_f64() < secs {
        let handle = db.read().clone();
        match rng.below(100) {
            0..=59 => {
                let batch: Vec<Point> = (0..1 + rng.below(20))
                    .map(|_| {
                        let id = rng.below(5000) as u64;
                        let v = vector(&mut rng);
                        let group = rng.below(5) as u64;
                        model.insert(PointId::Num(id), (v.clone(), group));
                        Point::new(id, v)
                            .with_payload(json!({"group": group}))
                            .unwrap()
                    })
                    .collect();
                handle.upsert(batch).unwrap();
            }
            60..=84 => {
                let ids: Vec<u64> = (0..1 + rng.below(10))
                    .map(|_| rng.below(5000) as u64)
                    .collect();
                let expected = {
                    let mut unique = ids.clone();
                    unique.sort_unstable();
                    unique.dedup();
                    unique
                        .iter()
                        .filter(|id| model.remove(&PointId::Num(**id)).is_some())
                        .count()
                };
                assert_eq!(handle.delete(ids).unwrap(), expected);
            }
            85..=94 => {
                let group = rng.below(5) as u64;
                let f = Filter::must([Condition::match_value("group", group as i64)]);
                let expected = model.values().filter(|(_, g)| *g == group).count();
                assert_eq!(handle.count(Some(&f)).unwrap(), expected);
            }
            95..=97 => handle.checkpoint().unwrap(),
            _ => {
                // Close and reopen: everything acknowledged is there.
                let mut slot = db.write();
                slot.close().unwrap();
                *slot = EmbeddedVectorDB::open(cfg.clone()).unwrap();
                assert_eq!(contents(&slot), model, "after reopen {reopens}");
                reopens += 1;
            }
        }
        ops += 1;
    }
    stop.store(true, SeqCst);
    for r in readers {
        r.join().unwrap();
    }
    let handle = db.read().clone();
    assert_eq!(contents(&handle), model);
    let health = handle.health();
    assert_eq!(
        health.status,
        grape_vector_db::CheckStatus::Healthy,
        "{health:#?}"
    );
    println!(
        "soak: {ops} writes/counts, {reopens} reopens, {} searches in {secs} s; {} points",
        searches.load(SeqCst),
        model.len()
    );
    handle.close().unwrap();
    drop((handle, db));
    std::fs::remove_dir_all(&dir).unwrap();
}
