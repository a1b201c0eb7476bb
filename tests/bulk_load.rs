//! Searches are not shut out while a large upsert is being indexed. In its own test binary so
//! that other tests' threads do not compete with its reader for the CPU.

use grape_testkit as testkit;

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use grape_vector_db::{
    Distance, EmbeddedConfig, EmbeddedVectorDB, HnswConfig, Point, PointId, SearchRequest,
};

#[test]
fn searches_keep_running_while_a_bulk_load_is_indexed() {
    let data = testkit::clustered(8_000, 16, 20, 3);
    let db = EmbeddedVectorDB::open(
        EmbeddedConfig::builder(16)
            .distance(Distance::Euclid)
            // One building thread, so the reader has a core of its own on a 2-core machine.
            .thread_pool_size(1)
            .hnsw(Some(HnswConfig {
                full_scan_threshold: 100,
                ..HnswConfig::default()
            }))
            .build()
            .unwrap(),
    )
    .unwrap();
    db.upsert(
        (0..200u64)
            .map(|i| Point::new(i, data.row(i as usize).to_vec()))
            .collect(),
    )
    .unwrap();
    let loading = AtomicBool::new(true);
    let during = thread::scope(|s| {
        let reader = s.spawn(|| {
            // Searches that found a point of the load before the load returned: they ran after
            // the points were stored, while the graph was being built.
            let mut during_indexing = 0;
            while loading.load(Ordering::Acquire) {
                let res = db
                    .search(&SearchRequest::new(data.row(7_999).to_vec(), 1))
                    .unwrap();
                if loading.load(Ordering::Acquire) && res.result[0].id == PointId::Num(7_999) {
                    during_indexing += 1;
                }
            }
            during_indexing
        });
        // One call: the points are stored at once, then indexed a chunk at a time.
        db.upsert(
            (200..8_000u64)
                .map(|i| Point::new(i, data.row(i as usize).to_vec()))
                .collect(),
        )
        .unwrap();
        loading.store(false, Ordering::Release);
        reader.join().unwrap()
    });
    assert!(
        during >= 3,
        "only {during} searches ran while the load was being indexed"
    );
}
