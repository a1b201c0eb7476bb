//! Memory as the outside world sees it: the process's resident memory (the kernel's count) and
//! the bytes the allocator hands out (a counting global allocator), against what `stats()`
//! says the database holds. Its own test binary: no other test allocates meanwhile, and the
//! tests here take turns (`ONE_AT_A_TIME`).

use grape_testkit as testkit;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering::Relaxed};
use std::sync::Mutex;

use grape_vector_db::{Condition, EmbeddedConfig, EmbeddedVectorDB, Filter, Point};
use serde_json::json;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

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

fn mib(bytes: usize) -> f64 {
    bytes as f64 / 1048576.0
}

/// 40K points of 256 dimensions (40 MiB of vectors) and a small payload each, as an app
/// builds them before one large upsert.
fn batch() -> Vec<Point> {
    let data = testkit::clustered(40_000, 256, 50, 11);
    (0..data.rows)
        .map(|i| {
            Point::new(i as u64, data.row(i).to_vec())
                .with_payload(json!({"pct": i % 100, "tag": format!("t{}", i % 7)}))
                .unwrap()
        })
        .collect()
}

/// The issue-19 finding: after one upsert of 100K x 384 WordNet points the process was
/// resident in 394 MiB for 185 MiB held. The caller's vectors, freed in the middle of the
/// heap, stayed resident (pinned there by maps the database kept from the batch).
#[test]
fn a_large_upsert_leaves_the_process_resident_in_little_more_than_it_holds() {
    let _turn = ONE_AT_A_TIME.lock().unwrap();
    if testkit::rss_bytes() == 0 {
        eprintln!("skipped: resident memory is read from /proc (Linux only)");
        return;
    }
    let db =
        EmbeddedVectorDB::open(EmbeddedConfig::builder(256).hnsw(None).build().unwrap()).unwrap();
    let before = testkit::rss_bytes() as usize;
    db.upsert(batch()).unwrap();
    let grown = (testkit::rss_bytes() as usize).saturating_sub(before);
    let held = db.stats().memory.total();
    eprintln!(
        "resident memory grew {:.1} MiB; the database holds {:.1} MiB",
        mib(grown),
        mib(held)
    );
    assert!(
        grown as f64 <= 1.3 * held as f64,
        "resident memory grew {:.1} MiB for {:.1} MiB held",
        mib(grown),
        mib(held)
    );
}

/// `stats().memory.payloads` is what `max_memory_mb` and the memory health check go by: parsed
/// payloads must count what they really take. It counted 96 bytes for `{"pct": 5}`, which
/// takes a 632-byte B-tree node and its key.
#[test]
fn parsed_payloads_count_within_a_quarter_of_what_the_allocator_gave() {
    let _turn = ONE_AT_A_TIME.lock().unwrap();
    let shapes = [
        json!({"pct": 5}),
        json!({"title": "a passage of some length, as apps store", "tags": ["a", "bb", "ccc"],
               "n": 7, "at": {"lat": 52.5, "lon": 13.4}}),
        serde_json::Value::Object(
            (0..30)
                .map(|k| (format!("field_{k}"), json!(k * 3)))
                .collect(),
        ),
    ];
    for shape in shapes {
        let db =
            EmbeddedVectorDB::open(EmbeddedConfig::builder(4).hnsw(None).build().unwrap()).unwrap();
        db.upsert(
            (0..5_000u64)
                .map(|i| {
                    Point::new(i, vec![1.0, i as f32, 0.5, 2.0])
                        .with_payload(shape.clone())
                        .unwrap()
                })
                .collect(),
        )
        .unwrap();
        let counted = db.stats().memory.payloads;
        let live = LIVE.load(Relaxed);
        // A filter on a field no payload has reads, and so parses, every payload.
        let missing = Filter::must([Condition::match_value("missing", 1)]);
        assert_eq!(db.count(Some(&missing)).unwrap(), 0);
        let given = (LIVE.load(Relaxed) - live) as f64;
        let counted = (db.stats().memory.payloads - counted) as f64;
        eprintln!("{shape}: counted {counted} bytes for {given} given");
        assert!(
            (0.75..=1.25).contains(&(counted / given)),
            "{shape}: counted {counted} bytes for {given} given"
        );
    }
}
