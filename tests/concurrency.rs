//! Searches from several threads while another thread upserts and deletes: no panic, and every
//! result is internally consistent with one state of the database.

use grape_testkit as testkit;

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use grape_vector_db::{
    Condition, Distance, EmbeddedConfig, EmbeddedVectorDB, Filter, Point, PointId, SearchRequest,
};
use serde_json::json;
use testkit::Rng;

const DIM: usize = 8;

/// Point `id` at generation `gen`: the vector and payload both encode (id, gen), so a reader can
/// tell a torn or mismatched record from a real one.
fn point(id: u64, gen: u64) -> Point {
    let mut v = vec![0.0f32; DIM];
    v[0] = id as f32;
    v[1] = gen as f32;
    v[2] = (id % 7) as f32;
    Point::new(id, v)
        .with_payload(json!({"id": id, "gen": gen, "parity": id % 2}))
        .unwrap()
}

#[test]
fn readers_see_consistent_results_while_a_writer_mutates() {
    let db = EmbeddedVectorDB::open(
        EmbeddedConfig::builder(DIM)
            .distance(Distance::Euclid)
            .build()
            .unwrap(),
    )
    .unwrap();
    db.upsert((0..2000).map(|id| point(id, 0)).collect())
        .unwrap();
    let stop = AtomicBool::new(false);

    thread::scope(|s| {
        s.spawn(|| {
            let mut rng = Rng::new(1);
            for gen in 1..400u64 {
                let batch: Vec<Point> = (0..50)
                    .map(|_| point(rng.below(3000) as u64, gen))
                    .collect();
                db.upsert(batch).unwrap();
                let doomed: Vec<u64> = (0..30).map(|_| rng.below(3000) as u64).collect();
                db.delete(doomed).unwrap();
                if gen % 50 == 0 {
                    db.delete_by_filter(&Filter::must([Condition::match_value(
                        "gen",
                        gen as i64 - 1,
                    )]))
                    .unwrap();
                }
            }
            stop.store(true, Ordering::Release);
        });
        for reader in 0..3u64 {
            let (db, stop) = (&db, &stop);
            s.spawn(move || {
                let mut rng = Rng::new(100 + reader);
                let mut searches = 0;
                while !stop.load(Ordering::Acquire) || searches < 50 {
                    let parity = rng.below(2) as i64;
                    let q: Vec<f32> = (0..DIM).map(|_| rng.unit() as f32 * 3000.0).collect();
                    let req = SearchRequest::new(q.clone(), 20)
                        .with_filter(Filter::must([Condition::match_value("parity", parity)]))
                        .with_payload(true)
                        .with_vector(true);
                    let res = db.search(&req).unwrap();
                    assert_eq!(res.result.len(), 20, "enough points always match");
                    let mut last = f32::NEG_INFINITY;
                    for p in &res.result {
                        let payload = p.payload.as_ref().unwrap();
                        let v = p.vector.as_ref().unwrap();
                        let PointId::Num(id) = p.id else {
                            panic!("numeric ids only")
                        };
                        assert_eq!(payload["id"], json!(id), "payload belongs to the id");
                        assert_eq!(payload["parity"], json!(parity), "filter holds");
                        assert_eq!(v[0], id as f32, "vector belongs to the id");
                        assert_eq!(
                            payload["gen"],
                            json!(v[1] as u64),
                            "vector and payload agree"
                        );
                        let d = q
                            .iter()
                            .zip(v)
                            .map(|(a, b)| (a - b) * (a - b))
                            .sum::<f32>()
                            .sqrt();
                        assert!(
                            (d - p.score).abs() <= 1e-3 * d.max(1.0),
                            "score is the distance"
                        );
                        assert!(p.score >= last, "sorted");
                        last = p.score;
                    }
                    searches += 1;
                }
            });
        }
    });
    // Every id the database reports can be read back whole.
    let n = db.count(None).unwrap();
    let all: Vec<u64> = (0..3000).collect();
    assert_eq!(db.get(all).unwrap().len(), n);
}

#[test]
fn the_handle_is_send_sync_and_cheap_to_clone() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<EmbeddedVectorDB>();
    let db = EmbeddedVectorDB::open(EmbeddedConfig::builder(2).build().unwrap()).unwrap();
    let other = db.clone();
    other.upsert(vec![Point::new(1, vec![1.0, 1.0])]).unwrap();
    assert_eq!(db.count(None).unwrap(), 1, "clones share one database");
}
