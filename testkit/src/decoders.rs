//! One function per decoder of untrusted bytes, each taking arbitrary input: the fuzz targets.
//! `tests/fuzz.rs` runs them on mutated seeds for a bounded time (stable toolchain, in the
//! README's test command); `fuzz/` runs the same functions under cargo-fuzz (libFuzzer, nightly)
//! for long campaigns. Each must return whatever the input, never panic; an input that opens
//! must then answer reads and take a write.

use grape_vector_db::storage::OpenMode;
use std::sync::Arc;

use grape_vector_db::storage::{MemoryStorage, PooledStorage, Storage};
use grape_vector_db::{
    Condition, Distance, EmbeddedConfig, EmbeddedVectorDB, Filter, Point, PointId, QueryRequest,
    Range, ScrollRequest, SearchRequest, SparseVector, SparseVectorConfig,
};
use serde_json::Value;

/// A fuzz target: takes any bytes, must not panic.
pub type Target = fn(&[u8]);

/// Every target, by name.
pub const TARGETS: [(&str, Target); 7] = [
    ("manifest", manifest),
    ("segment", segment),
    ("log", log),
    ("archive", archive),
    ("opfs_directory", opfs_directory),
    ("json", json),
    ("npy", npy),
];

/// Dimension, distance and payload indexes of the seed database (and of every open here): the
/// indexes put a payload indexes section in its segment.
pub fn config() -> EmbeddedConfig {
    EmbeddedConfig::builder(4)
        .distance(Distance::Cosine)
        .payload_index("tag")
        .payload_index("i")
        .sparse_vector("s", SparseVectorConfig::default())
        .named_vector("v", 3, Distance::Dot)
        .build()
        .expect("valid configuration")
}

/// A small database with a segment (graph included) and a log holding every record kind: the
/// files the directory targets replace one at a time.
pub fn seed_database() -> MemoryStorage {
    let storage = MemoryStorage::new();
    fill(Arc::new(storage.clone()));
    storage
}

/// Writes the seed contents into a new database in `storage`.
fn fill(storage: Arc<dyn Storage>) {
    let db =
        EmbeddedVectorDB::open_with_storage(config(), storage).expect("a fresh database opens");
    let point = |i: u64| {
        let v = vec![i as f32 + 1.0, (i % 3) as f32, (i % 5) as f32 - 2.0, 0.5];
        let sparse = SparseVector::new(vec![i as u32 % 7, 9], vec![1.0, i as f32 * 0.5])
            .expect("ascending, finite");
        let point = Point::new(i, v)
            .with_payload(serde_json::json!({"i": i, "tag": format!("t{}", i % 3), "xs": [i]}))
            .expect("an object")
            .with_sparse("s", sparse);
        // The named vector for every other point: its presence bits have gaps.
        match i % 2 {
            0 => point.with_named("v", vec![i as f32, 1.0, -0.5]),
            _ => point,
        }
    };
    db.upsert((0..40).map(point).collect()).expect("upsert");
    db.checkpoint().expect("checkpoint");
    db.upsert((40..45).map(point).collect()).expect("upsert");
    db.delete([3u64, 41]).expect("delete");
    db.set_payload([7u64], serde_json::json!({"note": "x"}))
        .expect("set payload");
}

/// The seed database's file whose name starts with `prefix`.
pub fn seed_file(storage: &MemoryStorage, prefix: &str) -> (String, Vec<u8>) {
    let name = storage
        .list()
        .expect("lists")
        .into_iter()
        .find(|n| n.starts_with(prefix))
        .expect("the seed database has the file");
    let bytes = storage.read_all(&name).expect("reads").to_vec();
    (name, bytes)
}

/// Reads, searches and writes once: an opened database must work whatever it was opened from.
fn exercise(db: &EmbeddedVectorDB) {
    let _ = db.count(None);
    let _ = db.scroll(&ScrollRequest {
        limit: 100,
        with_vector: true,
        ..ScrollRequest::default()
    });
    let _ = db.search(&SearchRequest::new(vec![1.0, 0.5, -0.5, 0.25], 5).with_payload(true));
    let _ = db.get([0u64, 7, 44]);
    // Through the payload indexes (stored in the segment).
    for filter in [
        Filter::must([Condition::match_value("tag", "t1")]),
        Filter::must([Condition::range(
            "i",
            Range {
                gte: Some(5.0),
                lt: Some(30.0),
                ..Range::default()
            },
        )]),
    ] {
        let _ = db.count(Some(&filter));
        let _ = db.search(&SearchRequest::new(vec![1.0, 0.5, -0.5, 0.25], 5).with_filter(filter));
    }
    let sparse = SparseVector::new(vec![1, 9], vec![1.0, 0.5]).expect("ascending, finite");
    let _ = db.query(&QueryRequest::sparse("s", sparse, 5));
    for exact in [false, true] {
        let mut named = SearchRequest::new(vec![1.0, 0.5, -0.5], 5).using("v");
        named.params.exact = exact;
        let _ = db.search(&named);
    }
    let _ = db.upsert(vec![Point::new(1000, vec![0.1, 0.2, 0.3, 0.4])]);
    let _ = db.checkpoint();
}

/// A copy of the seed database with the file whose name starts with `prefix` replaced by
/// `data`.
fn seed_with(prefix: &str, data: &[u8]) -> MemoryStorage {
    let seed = seed_database_cached();
    let storage = MemoryStorage::new();
    for name in seed.list().expect("lists") {
        let bytes = if name.starts_with(prefix) {
            data.to_vec()
        } else {
            seed.read_all(&name).expect("reads").to_vec()
        };
        storage
            .open(&name, OpenMode::CreateIfMissing)
            .and_then(|f| f.write_at(0, &bytes))
            .expect("memory writes");
    }
    storage
}

/// Opens `storage` and, if it opens, uses it.
fn open_and_exercise(storage: impl Storage + 'static, config: EmbeddedConfig) {
    if let Ok(db) = EmbeddedVectorDB::open_with_storage(config, Arc::new(storage)) {
        exercise(&db);
    }
}

fn seed_database_cached() -> &'static MemoryStorage {
    static SEED: std::sync::OnceLock<MemoryStorage> = std::sync::OnceLock::new();
    SEED.get_or_init(seed_database)
}

/// `MANIFEST` bytes.
pub fn manifest(data: &[u8]) {
    open_and_exercise(seed_with("MANIFEST", data), config());
}

/// Segment bytes (`seg-*.seg`).
pub fn segment(data: &[u8]) {
    open_and_exercise(seed_with("seg-", data), config());
}

/// Log bytes (`wal-*.log`), replayed strictly and with salvage.
pub fn log(data: &[u8]) {
    open_and_exercise(seed_with("wal-", data), config());
    let mut salvage = config();
    salvage.log_recovery = grape_vector_db::LogRecovery::Salvage;
    open_and_exercise(seed_with("wal-", data), salvage);
}

/// An archive (`export_archive` bytes), imported as a stream in pieces of a size the input
/// chooses, and opened; an import refused must leave nothing behind.
pub fn archive(data: &[u8]) {
    let dest = MemoryStorage::new();
    let mut source = Pieces(data, 1 + data.len() % 251);
    match EmbeddedVectorDB::import_archive_from(&mut source, &dest) {
        Ok(()) => open_and_exercise(dest, config()),
        Err(e) => {
            let left = dest.list().expect("memory lists");
            assert!(left.is_empty(), "a refused import ({e}) left {left:?}");
        }
    }
}

/// A reader of `.0` giving at most `.1` bytes a read, as a download arrives.
pub struct Pieces<'a>(pub &'a [u8], pub usize);

impl std::io::Read for Pieces<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.0.len()).min(self.1);
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

/// The OPFS layout's directory file, beside the blobs of a database written through it.
pub fn opfs_directory(data: &[u8]) {
    let backing = seed_pool_cached().clone_files();
    backing
        .open("directory", OpenMode::CreateIfMissing)
        .and_then(|f| {
            f.set_len(0)?;
            f.write_at(0, data)
        })
        .expect("memory writes");
    if let Ok(pool) = PooledStorage::open_in(&backing) {
        open_and_exercise(pool, config());
    }
}

/// A copy of a memory storage's files.
trait CloneFiles {
    fn clone_files(&self) -> MemoryStorage;
}

impl CloneFiles for MemoryStorage {
    fn clone_files(&self) -> MemoryStorage {
        let copy = MemoryStorage::new();
        for name in self.list().expect("lists") {
            let bytes = self.read_all(&name).expect("reads");
            copy.open(&name, OpenMode::CreateIfMissing)
                .and_then(|f| f.write_at(0, &bytes))
                .expect("memory writes");
        }
        copy
    }
}

/// The seed database written through the OPFS layout: its blobs and directory file.
pub fn seed_pool() -> MemoryStorage {
    let backing = MemoryStorage::new();
    fill(Arc::new(
        PooledStorage::open_in(&backing).expect("the pool opens"),
    ));
    backing
}

fn seed_pool_cached() -> &'static MemoryStorage {
    static SEED: std::sync::OnceLock<MemoryStorage> = std::sync::OnceLock::new();
    SEED.get_or_init(seed_pool)
}

/// NumPy `.npy` files (`grape import --npy`); whatever parses is read row by row.
pub fn npy(data: &[u8]) {
    if let Ok(v) = grape_vector_db::npy::parse(data) {
        let rows: f32 = (0..v.rows).map(|i| v.row(i).iter().sum::<f32>()).sum();
        std::hint::black_box(rows);
    }
}

/// JSON of points, point ids, filters and search requests.
pub fn json(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let _ = Point::from_json(&value);
    let _ = PointId::from_json(&value);
    let _ = Filter::from_json(&value);
    // Whatever parses is also used: a filter evaluated, requests answered.
    let db = json_database_cached();
    if let Ok(filter) = Filter::from_json(&value) {
        let _ = db.count(Some(&filter));
    }
    if let Ok(request) = serde_json::from_value::<SearchRequest>(value.clone()) {
        let _ = db.search(&request);
    }
    if let Ok(request) = serde_json::from_value::<ScrollRequest>(value) {
        let _ = db.scroll(&request);
    }
}

fn json_database_cached() -> &'static EmbeddedVectorDB {
    static DB: std::sync::OnceLock<EmbeddedVectorDB> = std::sync::OnceLock::new();
    DB.get_or_init(|| {
        let storage = seed_database_cached().clone_files();
        EmbeddedVectorDB::open_with_storage(config(), Arc::new(storage)).expect("opens")
    })
}
