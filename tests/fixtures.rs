//! Frozen format fixtures: small databases and archives written by the real writers of every
//! on-disk format version so far (`tests/fixtures/README.md` names the commit and program behind
//! each), opened by today's code. Each must read back exactly what its writer read back
//! (`expected.json`), and the database must keep working on top of the old bytes: a write, a
//! reopen, a checkpoint and another reopen. The committed files are never opened in place
//! (opening may write to the log): each test works on a copy in a fresh temporary directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use grape_vector_db::storage::{MemoryStorage, Storage};
use grape_vector_db::{
    Distance, EmbeddedConfig, EmbeddedVectorDB, Filter, HnswConfig, Modifier, Payload, Point,
    PointId, Quantization, Query, QueryRequest, QueryVector, ScrollRequest, SearchParams,
    SearchRequest, SparseVector, SparseVectorConfig,
};
use serde_json::{json, Value};

/// Every point: its vector as f32 bit patterns (so `-0.0` and `0.0` differ) and its payload.
type Model = BTreeMap<PointId, (Vec<u32>, Payload)>;

/// What a fixture's writer read back from it, from its `expected.json`.
struct Expected {
    points: Model,
    segment_points: usize,
    wal_records_replayed: usize,
    /// Queries of a sparse vector (`using`: "text" unless named; from manifest v2 on also text
    /// queries of the BM25 vector "words") and their answers, ids and score bits (segment v6 on).
    sparse: Vec<SparseQuery>,
    /// Searches of the named vector "img" (exact, and through its graph) and their answers, and
    /// the points' "img" vectors as bits (segment v7 on).
    named: Vec<NamedQuery>,
    named_vectors: BTreeMap<PointId, Vec<u32>>,
}

/// A recorded search of a named vector: the query, whether exact, its answer.
type NamedQuery = (Vec<f32>, bool, Vec<(PointId, u32)>);

/// The answers match the recorded ones (tied points in id order), and so do the vectors.
fn assert_named(db: &EmbeddedVectorDB, expected: &Expected, context: &str) {
    for (query, exact, want) in &expected.named {
        let mut request = SearchRequest::new(query.clone(), 50).using("img");
        request.params.exact = *exact;
        let hits = db.search(&request).unwrap().result;
        let got = hits.iter().map(|h| (h.id, h.score.to_bits())).collect();
        assert_eq!(
            ties_by_id(got),
            ties_by_id(want.clone()),
            "{context}: {query:?}"
        );
    }
    let request = ScrollRequest {
        limit: 1000,
        with_vector: true,
        ..ScrollRequest::default()
    };
    let got: BTreeMap<PointId, Vec<u32>> = db
        .scroll(&request)
        .unwrap()
        .points
        .into_iter()
        .filter_map(|r| {
            let v = r.named_vectors?.remove("img")?;
            Some((r.id, v.iter().map(|f| f.to_bits()).collect()))
        })
        .collect();
    assert_eq!(got, expected.named_vectors, "{context}: the img vectors");
}

/// Hits with tied points in id order (ties come in slot order, which a checkpoint renumbers).
fn ties_by_id(mut hits: Vec<(PointId, u32)>) -> Vec<(PointId, u32)> {
    hits.sort_by(|a, b| {
        f32::from_bits(b.1)
            .total_cmp(&f32::from_bits(a.1))
            .then(a.0.cmp(&b.0))
    });
    hits
}

/// A recorded sparse query: the vector searched, the query, its answer.
type SparseQuery = (String, QueryVector, Vec<(PointId, u32)>);

/// The answers to the fixture's sparse queries, as its writer recorded them.
fn sparse_answers(db: &EmbeddedVectorDB, queries: &[SparseQuery]) -> Vec<Vec<(PointId, u32)>> {
    queries
        .iter()
        .map(|(using, query, _)| {
            let request = QueryRequest {
                query: Some(Query::Vector(query.clone())),
                ..QueryRequest::sparse(using.as_str(), SparseVector::default(), 50)
            };
            let hits = db.query(&request).unwrap().points;
            hits.iter().map(|h| (h.id, h.score.to_bits())).collect()
        })
        .collect()
}

/// The answers match, but for the order of tied points (by slot: a checkpoint renumbers them).
fn assert_sparse(db: &EmbeddedVectorDB, expected: &Expected, context: &str) {
    let want: Vec<_> = expected
        .sparse
        .iter()
        .map(|(_, _, hits)| ties_by_id(hits.clone()))
        .collect();
    let got: Vec<_> = sparse_answers(db, &expected.sparse)
        .into_iter()
        .map(ties_by_id)
        .collect();
    assert_eq!(got, want, "{context}: sparse queries");
}

fn fixture_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A fresh, empty directory of its own for each call.
fn temp_dir(name: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "grape-fixture-{name}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The fixture's database files copied into a fresh temporary directory.
fn copy_fixture(name: &str) -> PathBuf {
    let dir = temp_dir(name);
    for entry in std::fs::read_dir(fixture_dir(name)).unwrap() {
        let entry = entry.unwrap();
        let file = entry.file_name();
        assert_ne!(file, "LOCK", "{name}: fixtures must not hold a LOCK file");
        if file != "expected.json" {
            std::fs::copy(entry.path(), dir.join(&file)).unwrap();
        }
    }
    dir
}

/// The payload indexes the segment v4 fixtures store (older fixtures build them after open).
const INDEXED_KEYS: [&str; 6] = ["rank", "name", "tags", "text", "stage", "meta.flags[]"];

fn config(dir: Option<&Path>) -> EmbeddedConfig {
    // Segment v6 fixtures hold the sparse vector "text"; older ones give their rows none.
    let idf = SparseVectorConfig {
        modifier: Modifier::Idf,
        bm25: None,
    };
    let builder = INDEXED_KEYS.iter().fold(
        EmbeddedConfig::builder(4)
            .distance(Distance::Euclid)
            .sparse_vector("text", idf),
        |builder, key| builder.payload_index(*key),
    );
    match dir {
        Some(dir) => builder.data_dir(dir).build().unwrap(),
        None => builder.build().unwrap(),
    }
}

fn read_expected(name: &str) -> Expected {
    let path = fixture_dir(name).join("expected.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let json: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["dimension"], 4, "{name}");
    assert_eq!(json["distance"], "Euclid", "{name}");
    let mut points = Model::new();
    for p in json["points"].as_array().unwrap() {
        let id: PointId = serde_json::from_value(p["id"].clone()).unwrap();
        let bits: Vec<u32> = p["vector_bits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| u32::try_from(b.as_u64().unwrap()).unwrap())
            .collect();
        // The decimal vector is there for people; it must say the same as the bits.
        let decimal: Vec<u32> = p["vector"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| (f.as_f64().unwrap() as f32).to_bits())
            .collect();
        assert_eq!(decimal, bits, "{name}: point {id}");
        assert_eq!(bits.len(), 4, "{name}: point {id}");
        let payload = p["payload"].as_object().unwrap().clone();
        assert!(
            points.insert(id, (bits, payload)).is_none(),
            "{name}: {id} twice"
        );
    }
    let count = |key: &str| json["open_report"][key].as_u64().unwrap() as usize;
    let sparse = json["sparse_queries"]
        .as_array()
        .map_or_else(Vec::new, |queries| {
            queries
                .iter()
                .map(|q| {
                    let using = q["using"].as_str().unwrap_or("text").to_owned();
                    let v = QueryVector::from_json(&q["query"]).unwrap();
                    let hits = q["hits"].as_array().unwrap().iter().map(|h| {
                        let id: PointId = serde_json::from_value(h[0].clone()).unwrap();
                        (id, u32::try_from(h[1].as_u64().unwrap()).unwrap())
                    });
                    (using, v, hits.collect())
                })
                .collect()
        });
    let hits_of = |hits: &Value| -> Vec<(PointId, u32)> {
        let hits = hits.as_array().unwrap().iter().map(|h| {
            let id: PointId = serde_json::from_value(h[0].clone()).unwrap();
            (id, u32::try_from(h[1].as_u64().unwrap()).unwrap())
        });
        hits.collect()
    };
    let named = json["named"]["queries"]
        .as_array()
        .map_or_else(Vec::new, |queries| {
            queries
                .iter()
                .map(|q| {
                    let v: Vec<f32> = serde_json::from_value(q["query"].clone()).unwrap();
                    (v, q["exact"].as_bool().unwrap(), hits_of(&q["hits"]))
                })
                .collect()
        });
    let named_vectors = json["named"]["vectors"]
        .as_array()
        .map_or_else(BTreeMap::new, |vectors| {
            vectors
                .iter()
                .map(|pair| {
                    let id: PointId = serde_json::from_value(pair[0].clone()).unwrap();
                    (id, serde_json::from_value(pair[1].clone()).unwrap())
                })
                .collect()
        });
    Expected {
        points,
        segment_points: count("segment_points"),
        wal_records_replayed: count("wal_records_replayed"),
        sparse,
        named,
        named_vectors,
    }
}

/// Everything in the database, read back through scroll.
fn contents(db: &EmbeddedVectorDB) -> Model {
    let mut req = ScrollRequest {
        limit: 1000,
        with_vector: true,
        with_payload: true,
        ..ScrollRequest::default()
    };
    let mut out = Model::new();
    loop {
        let page = db.scroll(&req).unwrap();
        for r in page.points {
            let bits = r.vector.unwrap().iter().map(|f| f.to_bits()).collect();
            out.insert(r.id, (bits, r.payload.unwrap()));
        }
        match page.next_page_offset {
            Some(next) => req.offset = Some(next),
            None => return out,
        }
    }
}

/// Filters on every indexed key (integer range, keyword, array of keywords, word, booleans in
/// arrays, a `should` and a `must_not`) answer as the filter itself does on every point:
/// through the stored indexes of a v4 segment, through indexes built after open otherwise.
fn assert_filters(db: &EmbeddedVectorDB, expected: &Model, context: &str) {
    for filter in [
        json!({"must": [{"key": "rank", "range": {"gte": 3, "lt": 20}}]}),
        json!({"must": [{"key": "name", "match": {"value": "point-12"}}]}),
        json!({"must": [{"key": "tags", "match": {"any": ["tag-1"]}}]}),
        json!({"must": [{"key": "text", "match": {"text": "QUOTED"}}]}),
        json!({"should": [
            {"key": "stage", "match": {"value": "log"}},
            {"key": "meta.flags[]", "match": {"value": true}}
        ]}),
        json!({
            "must": [{"key": "name", "match": {"any": ["point-3", "point-4", "point-6"]}}],
            "must_not": [{"key": "rank", "range": {"lt": 0}}]
        }),
    ] {
        let filter: Filter = serde_json::from_value(filter).unwrap();
        let matching: Vec<PointId> = expected
            .iter()
            .filter(|(id, (_, payload))| filter.matches(**id, payload))
            .map(|(id, _)| *id)
            .collect();
        assert!(
            !matching.is_empty(),
            "{context}: {filter:?} matches nothing"
        );
        assert_eq!(
            db.count(Some(&filter)).unwrap(),
            matching.len(),
            "{context}: {filter:?}"
        );
        let found = db
            .search(&SearchRequest::new(vec![0.0; 4], 100).with_filter(filter.clone()))
            .unwrap();
        let mut ids: Vec<PointId> = found.result.iter().map(|p| p.id).collect();
        ids.sort();
        assert_eq!(ids, matching, "{context}: {filter:?}");
    }
}

/// Compares point by point, so that a failure names the first point that differs.
fn assert_contents(db: &EmbeddedVectorDB, expected: &Model, context: &str) {
    let actual = contents(db);
    for (id, want) in expected {
        assert_eq!(actual.get(id), Some(want), "{context}: point {id}");
    }
    let extra: Vec<&PointId> = actual
        .keys()
        .filter(|id| !expected.contains_key(id))
        .collect();
    assert!(extra.is_empty(), "{context}: unexpected points {extra:?}");
}

fn u32_at(bytes: &[u8], offset: usize) -> u32 {
    u32::from_le_bytes(bytes[offset..offset + 4].try_into().unwrap())
}

/// The format version of a file, after checking its magic.
fn version(bytes: &[u8], magic: &[u8; 8], file: &str) -> u32 {
    assert_eq!(&bytes[..8], magic, "{file}: magic");
    u32_at(bytes, 8)
}

/// The kinds of the log records, walked as FORMAT.md describes them (header of 32 bytes in
/// version 1, 64 in version 2).
fn log_record_kinds(bytes: &[u8], log_version: u32) -> Vec<u8> {
    let mut kinds = Vec::new();
    let mut at = if log_version == 1 { 32 } else { 64 };
    while at < bytes.len() {
        let len = u32_at(bytes, at) as usize;
        kinds.push(bytes[at + 8]);
        at += 8 + len;
    }
    assert_eq!(at, bytes.len(), "the log ends inside a record");
    kinds
}

/// The committed bytes are what the fixture's name claims: these segment and log versions (a
/// graph from segment version 2 on), manifest version 1, and a log holding one record of each
/// kind after the segment. Guards against a fixture rewritten by newer code.
fn check_directory_bytes(name: &str, segment_version: u32, log_version: u32) {
    let dir = fixture_dir(name);
    let files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let named = |prefix: &str| -> Vec<u8> {
        let found: Vec<&String> = files.iter().filter(|f| f.starts_with(prefix)).collect();
        assert_eq!(found.len(), 1, "{name}: one {prefix}* file in {files:?}");
        std::fs::read(dir.join(found[0])).unwrap()
    };
    assert_eq!(files.len(), 4, "{name}: {files:?}");
    // Fixture names say the manifest's version from version 2 on.
    let manifest = match name {
        _ if name.contains("manifest-v3") => 3,
        _ if name.contains("manifest-v2") => 2,
        _ => 1,
    };
    assert_eq!(
        version(&named("MANIFEST"), b"GRAPEMAN", "MANIFEST"),
        manifest
    );
    let segment = named("seg-");
    assert_eq!(version(&segment, b"GRAPESEG", "segment"), segment_version);
    if segment_version >= 2 {
        assert_eq!(segment[17], 1, "{name}: the segment holds no graph");
    }
    let log = named("wal-");
    assert_eq!(version(&log, b"GRAPEWAL", "log"), log_version);
    // From segment v6 on, the fixture's upsert carries sparse vectors: a record of kind 4; from
    // segment v7 on named vectors too: kind 5.
    let upsert = match segment_version {
        7.. => 5,
        6 => 4,
        _ => 1,
    };
    assert_eq!(
        log_record_kinds(&log, log_version),
        [upsert, 2, 3],
        "{name}: log records"
    );
    named("expected.json");
}

/// The point every check adds on top of the old bytes.
fn new_point() -> Point {
    Point::new(1_000_000u64, vec![1.5, -2.0, 0.0, 4.25])
        .with_payload(json!({"added": "by the current version", "n": [1, null]}))
        .unwrap()
}

/// Opens the fixture through `open`, checks it reads back as its writer saw it, then writes one
/// point, reopens, checkpoints and reopens again, checking everything each time.
fn check_lifecycle(name: &str, open: impl Fn() -> EmbeddedVectorDB) {
    let expected = read_expected(name);
    let db = open();
    let report = db.open_report();
    assert_eq!(report.segment_points, expected.segment_points, "{name}");
    assert_eq!(
        report.wal_records_replayed, expected.wal_records_replayed,
        "{name}"
    );
    assert_eq!(report.wal_bytes_truncated, 0, "{name}");
    assert_contents(&db, &expected.points, &format!("{name}, first open"));
    assert_filters(&db, &expected.points, &format!("{name}, first open"));
    assert_sparse(&db, &expected, &format!("{name}, first open"));
    assert_named(&db, &expected, &format!("{name}, first open"));

    let added = new_point();
    db.upsert(vec![added.clone()]).unwrap();
    drop(db);
    let mut points = expected.points.clone();
    let bits = added.vector.iter().map(|f| f.to_bits()).collect();
    points.insert(added.id, (bits, added.payload));

    let db = open();
    assert_eq!(
        db.open_report().wal_records_replayed,
        expected.wal_records_replayed + 1,
        "{name}"
    );
    assert_contents(&db, &points, &format!("{name}, after a write and a reopen"));
    assert_filters(&db, &points, &format!("{name}, after a write and a reopen"));
    assert_sparse(
        &db,
        &expected,
        &format!("{name}, after a write and a reopen"),
    );
    assert_named(
        &db,
        &expected,
        &format!("{name}, after a write and a reopen"),
    );
    db.checkpoint().unwrap();
    drop(db);

    let db = open();
    let report = db.open_report();
    assert_eq!(report.segment_points, points.len(), "{name}");
    assert_eq!(report.wal_records_replayed, 0, "{name}");
    assert_contents(&db, &points, &format!("{name}, after a checkpoint"));
    assert_filters(&db, &points, &format!("{name}, after a checkpoint"));
    assert_sparse(&db, &expected, &format!("{name}, after a checkpoint"));
    assert_named(&db, &expected, &format!("{name}, after a checkpoint"));
}

fn check_directory_fixture(name: &str, segment_version: u32, log_version: u32) {
    check_directory_bytes(name, segment_version, log_version);
    let dir = copy_fixture(name);
    check_lifecycle(name, || EmbeddedVectorDB::open(config(Some(&dir))).unwrap());
    std::fs::remove_dir_all(&dir).unwrap();
}

fn check_archive_fixture(name: &str, segment_version: u32) {
    let bytes = std::fs::read(fixture_dir(name).join("archive.grapepak")).unwrap();
    assert_eq!(version(&bytes, b"GRAPEPAK", "archive.grapepak"), 1);
    let storage = MemoryStorage::new();
    EmbeddedVectorDB::import_archive(&bytes, &storage).unwrap();
    let files = storage.list().unwrap();
    let segment = files.iter().find(|f| f.starts_with("seg-")).unwrap();
    let segment = storage.read_all(segment).unwrap();
    assert_eq!(version(&segment, b"GRAPESEG", "segment"), segment_version);
    check_lifecycle(name, || {
        EmbeddedVectorDB::open_with_storage(config(None), Arc::new(storage.clone())).unwrap()
    });
}

/// Searches through the fixture's graph (stored in segments from version 2, built at open from
/// version 1 rows) find what an exact scan finds: scroll alone never reads the graph sections.
fn check_graph_search(name: &str, quantization: Quantization) {
    let expected = read_expected(name);
    let dir = copy_fixture(name);
    let mut cfg = config(Some(&dir));
    cfg.quantization = quantization;
    cfg.hnsw = Some(HnswConfig {
        full_scan_threshold: 0,
        ..HnswConfig::default()
    });
    let db = EmbeddedVectorDB::open(cfg).unwrap();
    for (id, (bits, _)) in &expected.points {
        // Near each point, off its exact position so that distances do not tie.
        let query: Vec<f32> = bits
            .iter()
            .enumerate()
            .map(|(i, &b)| f32::from_bits(b) + 0.01 * (i as f32 + 1.0))
            .collect();
        let ids = |exact: bool| -> Vec<PointId> {
            let mut req = SearchRequest::new(query.clone(), 5);
            req.params = SearchParams {
                exact,
                ..SearchParams::default()
            };
            db.search(&req)
                .unwrap()
                .result
                .iter()
                .map(|p| p.id)
                .collect()
        };
        let found = ids(false);
        assert_eq!(found, ids(true), "{name}: search near {id}");
        assert_eq!(found.len(), 5, "{name}: search near {id}");
    }
    drop(db);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Segment format v1 (no graph) with log v1, written by the last commit that wrote segment v1:
/// today's reader decodes its rows, builds the graph from them and replays the log on top.
#[test]
fn segment_v1_with_log_v1_reads_back_and_keeps_working() {
    check_directory_fixture("segment-v1-log-v1", 1, 1);
}

/// Segment format v2 (graph, no sketches) with log v1, written by the last commit that wrote
/// segment v2: today's reader uses its graph, computes the missing sketches and replays the log.
#[test]
fn segment_v2_with_log_v1_reads_back_and_keeps_working() {
    check_directory_fixture("segment-v2-log-v1", 2, 1);
}

/// Segment format v3 with log v1, written by the commit that added this test: the current
/// format, frozen so that a later change to it cannot go unnoticed.
#[test]
fn segment_v3_with_log_v1_reads_back_and_keeps_working() {
    check_directory_fixture("segment-v3-log-v1", 3, 1);
}

/// Segment format v3 with log v2 (salted record checksums, durable marks), written by the
/// commit that introduced log v2.
#[test]
fn segment_v3_with_log_v2_reads_back_and_keeps_working() {
    check_directory_fixture("segment-v3-log-v2", 3, 2);
}

/// Segment format v4 (payload indexes stored) with log v2, written by the commit that
/// introduced segment v4: its indexes answer filters as the filter itself does.
#[test]
fn segment_v4_with_log_v2_reads_back_and_keeps_working() {
    check_directory_fixture("segment-v4-log-v2", 4, 2);
}

/// Segment format v6 (sparse vectors stored) with log v2 (an upsert of kind 4, carrying them),
/// written by the commit that introduced segment v6: sparse queries answer as they did there.
#[test]
fn segment_v6_with_log_v2_reads_back_and_keeps_working() {
    check_directory_fixture("segment-v6-log-v2", 6, 2);
    assert!(!read_expected("segment-v6-log-v2").sparse.is_empty());
}

/// Archive format v1 holding a segment v6, exported by the commit that introduced segment v6.
#[test]
fn archive_v1_with_segment_v6_imports_and_keeps_working() {
    check_archive_fixture("archive-v1-segment-v6", 6);
    assert!(!read_expected("archive-v1-segment-v6").sparse.is_empty());
}

/// Segment format v5 (SQ8 codes stored) with log v2, written by the commit that introduced
/// segment v5, opened without quantization: the codes are ignored.
#[test]
fn segment_v5_with_log_v2_reads_back_and_keeps_working() {
    check_directory_fixture("segment-v5-log-v2", 5, 2);
}

/// Archive format v1 holding a segment v5, exported by the commit that introduced segment v5.
#[test]
fn archive_v1_with_segment_v5_imports_and_keeps_working() {
    check_archive_fixture("archive-v1-segment-v5", 5);
}

/// Archive format v1 holding a segment v4, exported by the commit that introduced segment v4.
#[test]
fn archive_v1_with_segment_v4_imports_and_keeps_working() {
    check_archive_fixture("archive-v1-segment-v4", 4);
}

/// Archive format v1 holding a segment v2, exported by the last commit that wrote segment v2:
/// importing it and opening the result gives what its writer read back.
#[test]
fn archive_v1_with_segment_v2_imports_and_keeps_working() {
    check_archive_fixture("archive-v1-segment-v2", 2);
}

/// Archive format v1 holding a segment v3, exported by the commit that added this test.
#[test]
fn archive_v1_with_segment_v3_imports_and_keeps_working() {
    check_archive_fixture("archive-v1-segment-v3", 3);
}

/// Archive format v1 holding a segment v3 and an (empty) log v2, exported by the commit that
/// introduced log v2.
#[test]
fn archive_v1_with_log_v2_imports_and_keeps_working() {
    check_archive_fixture("archive-v1-log-v2", 3);
}

/// The graphs of the old segments are decoded correctly (v2, v3) or built from old rows (v1):
/// graph search agrees with exact search on every fixture.
#[test]
fn graph_search_on_old_segments_matches_exact_search() {
    for name in [
        "segment-v1-log-v1",
        "segment-v2-log-v1",
        "segment-v3-log-v1",
        "segment-v3-log-v2",
        "segment-v4-log-v2",
        "segment-v5-log-v2",
        "segment-v6-log-v2",
        "manifest-v3-segment-v7",
    ] {
        check_graph_search(name, Quantization::None);
    }
    // Walked through codes: the stored ones (v5 on) or made at open (older segments).
    for name in [
        "segment-v4-log-v2",
        "segment-v5-log-v2",
        "segment-v6-log-v2",
        "manifest-v3-segment-v7",
    ] {
        check_graph_search(name, Quantization::Sq8);
    }
}

/// A configuration that declares no sparse or named vector: a manifest v2 or v3 declares them
/// itself.
fn undeclared(dir: Option<&Path>) -> EmbeddedConfig {
    EmbeddedConfig {
        sparse_vectors: BTreeMap::new(),
        named_vectors: BTreeMap::new(),
        ..config(dir)
    }
}

/// Manifest v2 (the sparse vectors' declarations: "text" with IDF, "words" with BM25 at k 1.5,
/// b 0.5, avg_len 12), written by the commit that introduced it, opened by a configuration that
/// declares no sparse vector: the sparse and the text queries answer as they did there; a
/// configuration that declares "words" otherwise is refused.
#[test]
fn manifest_v2_with_segment_v6_declares_its_sparse_vectors() {
    let name = "manifest-v2-segment-v6";
    check_directory_bytes(name, 6, 2);
    assert!(read_expected(name)
        .sparse
        .iter()
        .any(|(using, ..)| using == "words"));
    let dir = copy_fixture(name);
    check_lifecycle(name, || {
        EmbeddedVectorDB::open(undeclared(Some(&dir))).unwrap()
    });
    let otherwise = EmbeddedConfig {
        sparse_vectors: [("words".to_owned(), SparseVectorConfig::bm25())].into(),
        ..config(Some(&dir))
    };
    let refused = EmbeddedVectorDB::open(otherwise);
    assert!(
        matches!(refused, Err(grape_vector_db::Error::InvalidConfig(m)) if m.contains("words"))
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Archive format v1 holding a manifest v2, exported by the commit that introduced it.
#[test]
fn archive_v1_with_manifest_v2_imports_and_keeps_working() {
    let name = "archive-v1-manifest-v2";
    let bytes = std::fs::read(fixture_dir(name).join("archive.grapepak")).unwrap();
    let storage = MemoryStorage::new();
    EmbeddedVectorDB::import_archive(&bytes, &storage).unwrap();
    assert_eq!(
        version(
            &storage.read_all("MANIFEST").unwrap(),
            b"GRAPEMAN",
            "MANIFEST"
        ),
        2
    );
    check_lifecycle(name, || {
        EmbeddedVectorDB::open_with_storage(undeclared(None), Arc::new(storage.clone())).unwrap()
    });
}

/// Manifest v3 (the named vector "img", 3 floats by Dot, beside the sparse declarations of v2)
/// and segment v7 (its rows, presence, graph and codes), with a log record of kind 5, written
/// by the commit that introduced them, opened by a configuration that declares nothing: the
/// searches of "img", exact and through its stored graph, answer as they did there, and every
/// point keeps its vector or its lack of one; a configuration that declares "img" otherwise is
/// refused.
#[test]
fn manifest_v3_with_segment_v7_declares_its_named_vectors() {
    let name = "manifest-v3-segment-v7";
    check_directory_bytes(name, 7, 2);
    let expected = read_expected(name);
    assert!(expected.named.len() >= 6 && !expected.named_vectors.is_empty());
    assert!(
        expected.named_vectors.len() < expected.points.len(),
        "some lack it"
    );
    let dir = copy_fixture(name);
    check_lifecycle(name, || {
        EmbeddedVectorDB::open(undeclared(Some(&dir))).unwrap()
    });
    let otherwise = EmbeddedConfig {
        named_vectors: [(
            "img".to_owned(),
            grape_vector_db::DenseVectorConfig {
                size: 3,
                distance: Distance::Cosine,
            },
        )]
        .into(),
        ..undeclared(Some(&dir))
    };
    let refused = EmbeddedVectorDB::open(otherwise);
    assert!(matches!(refused, Err(grape_vector_db::Error::InvalidConfig(m)) if m.contains("img")));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Archive format v1 holding a manifest v3 and a segment v7, exported by the commit that
/// introduced them.
#[test]
fn archive_v1_with_manifest_v3_imports_and_keeps_working() {
    let name = "archive-v1-manifest-v3";
    let bytes = std::fs::read(fixture_dir(name).join("archive.grapepak")).unwrap();
    let storage = MemoryStorage::new();
    EmbeddedVectorDB::import_archive(&bytes, &storage).unwrap();
    let manifest = storage.read_all("MANIFEST").unwrap();
    assert_eq!(version(&manifest, b"GRAPEMAN", "MANIFEST"), 3);
    check_lifecycle(name, || {
        EmbeddedVectorDB::open_with_storage(undeclared(None), Arc::new(storage.clone())).unwrap()
    });
}
