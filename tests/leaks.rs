//! Leak check: open, use and close a database many times; the heap must come back to where it
//! was. A counting global allocator sees every byte, so this runs in CI on any machine (for
//! valgrind's view of the same cycle, see `scripts/leak-check`).
//!
//! One test in this binary, so no other test allocates concurrently.

use grape_testkit as testkit;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering::Relaxed};
use std::sync::Arc;

use grape_vector_db::storage::MemoryStorage;
use grape_vector_db::{
    Condition, Durability, EmbeddedConfig, EmbeddedVectorDB, Filter, Point, SearchRequest,
};
use serde_json::json;
use testkit::Rng;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: defers every call to the system allocator unchanged; only counts bytes. Exercised by
// every allocation of this test binary.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// One full life of a database: open, bulk load, searches of every kind, updates, deletes,
/// checkpoint, health, metrics, close, reopen and close again.
fn one_life(seed: u64) {
    let storage = MemoryStorage::new();
    let cfg = EmbeddedConfig::builder(16)
        .durability(Durability::OnFlush)
        .payload_index("group")
        .enable_warmup(true)
        .thread_pool_size(2)
        .build()
        .unwrap();
    let mut rng = Rng::new(seed);
    let db = EmbeddedVectorDB::open_with_storage(cfg.clone(), Arc::new(storage.clone())).unwrap();
    let points: Vec<Point> = (0..1500u64)
        .map(|i| {
            Point::new(i, (0..16).map(|_| rng.signed()).collect())
                .with_payload(json!({"group": i % 10, "name": format!("p{i}")}))
                .unwrap()
        })
        .collect();
    db.upsert(points).unwrap();
    let filter = Filter::must([Condition::match_value("group", 3)]);
    for i in 0..50 {
        let q: Vec<f32> = (0..16).map(|_| rng.signed()).collect();
        let mut r = SearchRequest::new(q, 10).with_payload(true);
        if i % 2 == 0 {
            r = r.with_filter(filter.clone());
        }
        db.search(&r).unwrap();
    }
    db.search_batch(&vec![SearchRequest::new(vec![0.3; 16], 5); 16])
        .unwrap();
    db.set_payload([1u64, 2], json!({"extra": true})).unwrap();
    db.delete((0..750u64).step_by(2)).unwrap();
    db.checkpoint().unwrap();
    db.health();
    db.metrics().to_prometheus();
    db.on_shutdown(|| Ok(())).unwrap();
    db.close().unwrap();
    drop(db);
    let db = EmbeddedVectorDB::open_with_storage(cfg, Arc::new(storage)).unwrap();
    assert_eq!(db.count(None).unwrap(), 1125);
    db.close().unwrap();
}

#[test]
fn a_database_life_returns_every_byte() {
    // The first lives allocate what stays for the process (thread-local search scratch, the
    // kernel choice, lazily initialised statics).
    one_life(0);
    one_life(1);
    let baseline = LIVE.load(Relaxed);
    for seed in 2..8 {
        one_life(seed);
    }
    let growth = LIVE.load(Relaxed) - baseline;
    println!("heap growth over 6 lives: {growth} bytes");
    // Six lives each allocate megabytes; a leak of one point (vector and payload, over 200
    // bytes) per life would show. Measured growth: 0 bytes.
    assert!(
        growth.abs() < 1024,
        "heap grew by {growth} bytes over 6 database lives"
    );
}
