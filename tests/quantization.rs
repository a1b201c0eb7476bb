//! Quantized (SQ8 and binary) graph search against the exact `f32` answer: recall floors for
//! every distance they support, with and without filters; re-scored scores equal to the exact ones;
//! `ignore` equal to a database without codes; reopening, replay and compaction; vectors kept
//! on disk; and the configurations and parameters it refuses.

use grape_testkit as testkit;

use std::collections::HashSet;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;

use grape_testkit::faulty::FaultyStorage;
use grape_vector_db::storage::MemoryStorage;
use grape_vector_db::{
    Distance, EmbeddedConfig, EmbeddedVectorDB, Error, Filter, HnswConfig, Point, PointId,
    Quantization, QuantizationSearchParams, SearchParams, SearchRequest, SearchResponse,
};
use serde_json::json;

const N: usize = 6_000;
/// Not a multiple of the codes' 64-byte rows (in bytes or in bits), so their padding is
/// exercised.
const DIM: usize = 72;

fn config(distance: Distance, quantization: Quantization) -> EmbeddedConfig {
    config_on_disk(distance, quantization, false)
}

fn config_on_disk(distance: Distance, quantization: Quantization, on_disk: bool) -> EmbeddedConfig {
    EmbeddedConfig::builder(DIM)
        .vectors_on_disk(on_disk)
        .distance(distance)
        .payload_index("tenant")
        .hnsw(Some(HnswConfig {
            full_scan_threshold: 1_000,
            ..HnswConfig::default()
        }))
        .quantization(quantization)
        .build()
        .unwrap()
}

fn load(db: &EmbeddedVectorDB, data: &testkit::Matrix, rows: std::ops::Range<usize>) {
    let points: Vec<Point> = rows
        .map(|i| {
            Point::new(i as u64, data.row(i).to_vec())
                .with_payload(json!({"tenant": format!("t{}", i % 10)}))
                .unwrap()
        })
        .collect();
    for chunk in points.chunks(1_500) {
        db.upsert(chunk.to_vec()).unwrap();
    }
}

fn request(
    q: &[f32],
    filter: Option<&Filter>,
    quantization: Option<QuantizationSearchParams>,
) -> SearchRequest {
    let mut req = SearchRequest::new(q.to_vec(), 10);
    req.filter = filter.cloned();
    req.params = SearchParams {
        quantization,
        ..SearchParams::default()
    };
    req
}

fn exact(db: &EmbeddedVectorDB, q: &[f32], filter: Option<&Filter>) -> SearchResponse {
    let mut req = request(q, filter, None);
    req.params.exact = true;
    let res = db.search(&req).unwrap();
    assert!(res.exact);
    res
}

/// Recall@10 against the exact answer; also checks that every returned score is the exact
/// `f32` score of its point, bit for bit.
fn recall(
    db: &EmbeddedVectorDB,
    queries: &[&[f32]],
    filter: Option<&Filter>,
    ef: Option<usize>,
) -> f64 {
    let (mut hits, mut total) = (0, 0);
    for q in queries {
        let mut req = request(q, filter, None);
        req.params.hnsw_ef = ef;
        let approx = db.search(&req).unwrap();
        assert!(!approx.exact, "the graph answers");
        let truth = exact(db, q, filter);
        let truth_ids: HashSet<PointId> = truth.result.iter().map(|p| p.id).collect();
        hits += approx
            .result
            .iter()
            .filter(|p| truth_ids.contains(&p.id))
            .count();
        total += truth.result.len();
        for p in &approx.result {
            let mut one = request(q, Some(&id_filter(p.id)), None);
            one.params.exact = true;
            let score = db.search(&one).unwrap().result[0].score;
            assert_eq!(
                p.score.to_bits(),
                score.to_bits(),
                "re-scored score of {:?}",
                p.id
            );
        }
    }
    hits as f64 / total as f64
}

fn id_filter(id: PointId) -> Filter {
    Filter::from_json(&json!({"must": [{"has_id": [id]}]})).unwrap()
}

fn tenant(share_of_ten: u32) -> Filter {
    let values: Vec<String> = (0..share_of_ten).map(|t| format!("t{t}")).collect();
    Filter::from_json(&json!({"must": [{"key": "tenant", "match": {"any": values}}]})).unwrap()
}

/// Both codings, each with the beam (`hnsw_ef`) it searches with. A bit per dimension tells
/// neighbours apart less well than a byte, and 72 bits least of all: binary keeps the recall
/// floors with a wider beam, as its documentation advises at low dimensions.
const CODINGS: [(Quantization, Option<usize>); 2] =
    [(Quantization::Sq8, None), (Quantization::Binary, Some(256))];

#[test]
fn recall_holds_against_the_exact_answer_for_every_coding_distance_and_filter() {
    let data = testkit::clustered(N + 20, DIM, 60, 21);
    for (quantization, ef) in CODINGS {
        for distance in [Distance::Cosine, Distance::Dot, Distance::Euclid] {
            let db = EmbeddedVectorDB::open(config(distance, quantization)).unwrap();
            load(&db, &data, 0..N);
            let queries: Vec<&[f32]> = (N..N + 20).map(|i| data.row(i)).collect();
            for (name, filter, floor) in [
                ("none", None, 0.95),
                ("90%", Some(tenant(9)), 0.95),
                ("30%", Some(tenant(3)), 0.93),
            ] {
                let r = recall(&db, &queries, filter.as_ref(), ef);
                eprintln!("{quantization:?} {distance:?} {name}: recall@10 {r:.3}");
                assert!(
                    r >= floor,
                    "{quantization:?} {distance:?} {name}: recall@10 {r}"
                );
            }
        }
    }
}

#[test]
fn codes_cost_a_fraction_of_the_vectors_and_ignore_walks_the_vectors_instead() {
    let data = testkit::clustered(N + 20, DIM, 60, 22);
    let plain = EmbeddedVectorDB::open(config(Distance::Cosine, Quantization::None)).unwrap();
    load(&plain, &data, 0..N);
    // A 72-float vector is 80 floats (320 bytes) in the arena. Its SQ8 codes are one 128-byte
    // row; its bits one 64-byte row and 5 floats beside it, with the mean and up to 256
    // centres (and their norms) for all. Each in a buffer that grows by half again, or to fit
    // a batch. Estimates are within the codes' error of the exact scores.
    let centres = 4 * (DIM + 256 * (DIM + 1));
    for (quantization, row, tolerance) in [
        (Quantization::Sq8, 128, 0.05),
        (Quantization::Binary, 64 + 20, 0.25),
    ] {
        let coded = EmbeddedVectorDB::open(config(Distance::Cosine, quantization)).unwrap();
        load(&coded, &data, 0..N);
        let extra = coded.stats().memory.index - plain.stats().memory.index;
        assert!(
            (N * row..=N * row * 3 / 2 + centres).contains(&extra),
            "{quantization:?}: codes took {extra} bytes"
        );

        let ignore = QuantizationSearchParams {
            ignore: true,
            ..QuantizationSearchParams::default()
        };
        let estimates = QuantizationSearchParams {
            rescore: Some(false),
            ..QuantizationSearchParams::default()
        };
        let mut estimated_differs = false;
        for i in N..N + 20 {
            let q = data.row(i);
            // The graphs are built from the vectors alike: walking the vectors gives the same.
            let walked = coded.search(&request(q, None, Some(ignore))).unwrap();
            assert_eq!(walked, plain.search(&request(q, None, None)).unwrap());
            // Without re-scoring, scores are the codes' estimates: close, not exact.
            let rescored = coded.search(&request(q, None, None)).unwrap();
            let estimated = coded.search(&request(q, None, Some(estimates))).unwrap();
            for p in &estimated.result {
                let truth = exact(&coded, q, Some(&id_filter(p.id))).result[0].score;
                assert!(
                    (p.score - truth).abs() < tolerance,
                    "{quantization:?}: {} vs {truth}",
                    p.score
                );
                estimated_differs |= p.score != truth;
            }
            assert!(rescored.scored > estimated.scored, "re-scoring is counted");
        }
        assert!(
            estimated_differs,
            "{quantization:?}: estimates equal to the exact scores: not from the codes"
        );
    }
}

#[test]
fn oversampling_widens_the_rescored_candidates_and_bad_values_are_refused() {
    let data = testkit::clustered(N, DIM, 60, 23);
    let db = EmbeddedVectorDB::open(config(Distance::Euclid, Quantization::Binary)).unwrap();
    load(&db, &data, 0..N);
    let q = data.row(7);
    let scored = |oversampling: f64| {
        let params = QuantizationSearchParams {
            oversampling: Some(oversampling),
            ..QuantizationSearchParams::default()
        };
        db.search(&request(q, None, Some(params))).unwrap()
    };
    let (one, many) = (scored(1.0), scored(20.0));
    assert_eq!(one.result.len(), 10);
    // 200 candidates re-scored, from a beam widened to 200: more keys computed.
    assert!(
        many.scored > one.scored + 190,
        "{} vs {}",
        many.scored,
        one.scored
    );
    for bad in [0.5, f64::NAN, -1.0] {
        let params = QuantizationSearchParams {
            oversampling: Some(bad),
            ..QuantizationSearchParams::default()
        };
        let err = db.search(&request(q, None, Some(params))).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{bad}: {err}");
    }
    // A huge oversampling is bounded by the configured page size, not obeyed to exhaustion.
    assert_eq!(scored(1e300).result.len(), 10);
}

#[test]
fn codes_follow_the_graph_through_replay_checkpoints_and_compaction() {
    let data = testkit::clustered(N + 20, DIM, 60, 24);
    let queries: Vec<&[f32]> = (N..N + 20).map(|i| data.row(i)).collect();
    for (quantization, ef) in CODINGS {
        for on_disk in [false, true] {
            codes_follow_the_graph(quantization, ef, on_disk, &queries, &data);
        }
    }
}

fn codes_follow_the_graph(
    quantization: Quantization,
    ef: Option<usize>,
    on_disk: bool,
    queries: &[&[f32]],
    data: &testkit::Matrix,
) {
    let storage = MemoryStorage::new();
    let open = || {
        let config = config_on_disk(Distance::Cosine, quantization, on_disk);
        EmbeddedVectorDB::open_with_storage(config, Arc::new(storage.clone())).unwrap()
    };
    let db = open();
    load(&db, data, 0..N / 2);
    drop(db);
    // Replayed from the log, indexed again, coded again.
    let db = open();
    db.checkpoint().unwrap();
    load(&db, data, N / 2..N);
    drop(db);
    // The first half from the segment (its graph used in place), the rest replayed.
    let db = open();
    let r = recall(&db, queries, None, ef);
    assert!(r >= 0.95, "{quantization:?} after reopening: {r}");
    // Half the points deleted: compaction rebuilds the graph, and the codes with it.
    db.delete((0..N as u64).filter(|i| i % 2 == 0)).unwrap();
    db.compact().unwrap();
    assert_eq!(db.stats().tombstones, 0);
    let r = recall(&db, queries, None, ef);
    assert!(r >= 0.95, "{quantization:?} after compaction: {r}");
    let res = db.search(&request(queries[0], None, None)).unwrap();
    assert!(res
        .result
        .iter()
        .all(|p| matches!(p.id, PointId::Num(i) if i % 2 == 1)));
}

/// Vectors kept on disk: searches re-score by reading the segment file (counted), with the
/// answers and scores of the same database whose vectors are mapped; points written since the
/// checkpoint are re-scored from memory; a read that fails fails the search with the file's
/// name, and the next search after the disk recovers succeeds.
#[test]
fn vectors_on_disk_are_read_to_re_score_with_the_mapped_answers() {
    let data = testkit::clustered(N + 20, DIM, 60, 31);
    let queries: Vec<&[f32]> = (N..N + 20).map(|i| data.row(i)).collect();
    for (quantization, ef) in CODINGS {
        let storage = FaultyStorage::new();
        let open = |on_disk| {
            let config = config_on_disk(Distance::Cosine, quantization, on_disk);
            EmbeddedVectorDB::open_with_storage(config, Arc::new(storage.clone())).unwrap()
        };
        let db = open(false);
        load(&db, &data, 0..N - 500);
        db.checkpoint().unwrap();
        load(&db, &data, N - 500..N);
        let answers = |db: &EmbeddedVectorDB| -> Vec<Vec<(PointId, u32)>> {
            let mut all = Vec::new();
            for q in &queries {
                let mut req = request(q, None, None);
                req.params.hnsw_ef = ef;
                let res = db.search(&req).unwrap();
                all.push(
                    res.result
                        .iter()
                        .map(|p| (p.id, p.score.to_bits()))
                        .collect(),
                );
            }
            all
        };
        let mapped = answers(&db);
        drop(db);
        let db = open(true);
        let before = storage.reads.load(SeqCst);
        assert_eq!(answers(&db), mapped, "{quantization:?}");
        let reads = storage.reads.load(SeqCst) - before;
        assert!(
            reads >= queries.len() * 10,
            "{quantization:?}: {reads} reads for {} queries",
            queries.len()
        );
        assert!(recall(&db, &queries, None, ef) >= 0.95);
        storage.fail_reads.store(true, SeqCst);
        let failed = db.search(&request(queries[0], None, None));
        assert!(
            matches!(&failed, Err(Error::Io { file, .. }) if file.starts_with("seg-")),
            "{failed:?}"
        );
        storage.fail_reads.store(false, SeqCst);
        assert_eq!(
            answers(&db),
            mapped,
            "{quantization:?} after the disk recovered"
        );
    }
    // The same through a directory: the file read row by row is a real one.
    let dir = std::env::temp_dir().join(format!("grape-test-on-disk-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let open = |on_disk| {
        let config = EmbeddedConfig {
            data_dir: Some(dir.clone()),
            ..config_on_disk(Distance::Cosine, Quantization::Sq8, on_disk)
        };
        EmbeddedVectorDB::open(config).unwrap()
    };
    let db = open(false);
    load(&db, &data, 0..N);
    db.checkpoint().unwrap();
    let mapped = db.search(&request(queries[0], None, None)).unwrap();
    db.close().unwrap();
    let db = open(true);
    assert_eq!(
        db.search(&request(queries[0], None, None)).unwrap().result,
        mapped.result
    );
    db.close().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let on_disk_alone = EmbeddedConfig::builder(4).vectors_on_disk(true).build();
    assert!(matches!(on_disk_alone, Err(Error::InvalidConfig(m)) if m.contains("quantization")));
}

/// Where files cannot be mapped (the browser's OPFS layout, run here over memory), a database
/// that keeps its vectors on disk reads them on first use: searches, graph inserts after open,
/// reads of points and checkpoints give what a database holding them gives, bit for bit, while
/// only the rows read are held; a failed read fails the call that made it and loses nothing.
#[test]
fn where_files_cannot_be_mapped_vectors_on_disk_are_read_on_first_use() {
    use grape_vector_db::storage::{PooledStorage, Storage};
    let data = testkit::clustered(N + 20, DIM, 60, 41);
    let queries: Vec<&[f32]> = (N..N + 20).map(|i| data.row(i)).collect();
    let (plain, faulty) = (MemoryStorage::new(), FaultyStorage::new());
    let pool = |backing: &dyn Storage| -> Arc<dyn Storage> {
        Arc::new(PooledStorage::open_in(backing).unwrap())
    };
    let open = |backing: &dyn Storage, on_disk| {
        let config = config_on_disk(Distance::Cosine, Quantization::Sq8, on_disk);
        EmbeddedVectorDB::open_with_storage(config, pool(backing)).unwrap()
    };
    for backing in [&plain as &dyn Storage, &faulty] {
        let db = open(backing, false);
        load(&db, &data, 0..N - 500);
        db.checkpoint().unwrap();
        db.close().unwrap();
    }
    let answers = |db: &EmbeddedVectorDB| -> Vec<Vec<(PointId, u32)>> {
        queries
            .iter()
            .map(|q| {
                let res = db.search(&request(q, None, None)).unwrap();
                res.result
                    .iter()
                    .map(|p| (p.id, p.score.to_bits()))
                    .collect()
            })
            .collect()
    };
    let held = open(&plain, false);
    let lazy = open(&faulty, true);
    let (held_memory, lazy_memory) = (held.stats().memory, lazy.stats().memory);
    assert!(held_memory.mapped >= (N - 500) * DIM * 4);
    assert_eq!(lazy_memory.mapped, 0, "the vectors were not read whole");
    assert!(
        lazy_memory.vectors < held_memory.mapped / 10,
        "{} bytes of vectors held after open",
        lazy_memory.vectors
    );
    assert_eq!(answers(&lazy), answers(&held));
    // Inserted into the graph after open, beside rows read on first use.
    for db in [&held, &lazy] {
        load(db, &data, N - 500..N);
    }
    assert_eq!(answers(&lazy), answers(&held), "after writes");
    // The rows those inserts read (most of the base) were let go past their budget, as are
    // those of an exact scan: what stays held is a fraction of the base.
    let exact = |db: &EmbeddedVectorDB| {
        let mut r = request(queries[0], None, None);
        r.params.exact = true;
        db.search(&r).unwrap().result
    };
    assert_eq!(exact(&lazy), exact(&held));
    let (base, now) = (held_memory.mapped, lazy.stats().memory.vectors);
    let written = 500 * DIM * 4;
    assert!(
        now < written + base / 4,
        "{now} bytes of vectors held after the writes and a scan, for a base of {base}"
    );
    let ids = [0u64, 7, N as u64 - 1].map(PointId::Num);
    assert_eq!(lazy.get(ids).unwrap(), held.get(ids).unwrap());
    // A checkpoint streams every row from the file to the next segment.
    for db in [&held, &lazy] {
        db.checkpoint().unwrap();
    }
    assert_eq!(answers(&lazy), answers(&held), "after a checkpoint");

    faulty.fail_reads.store(true, SeqCst);
    let failed = lazy.get([3u64]);
    assert!(matches!(&failed, Err(Error::Io { .. })), "{failed:?}");
    // A write whose graph insert cannot read its neighbours is kept, searched exactly.
    let extra = Point::new(N as u64 + 100, data.row(N + 3).to_vec());
    lazy.upsert(vec![extra]).unwrap();
    faulty.fail_reads.store(false, SeqCst);
    let found = lazy.search(&request(data.row(N + 3), None, None)).unwrap();
    assert_eq!(found.result[0].id, PointId::Num(N as u64 + 100));
    lazy.close().unwrap();
    held.close().unwrap();
    let (held, lazy) = (open(&plain, false), open(&faulty, true));
    lazy.delete([N as u64 + 100]).unwrap();
    assert_eq!(answers(&lazy), answers(&held), "reopened");
}

/// With vectors on disk, a checkpoint in a running process moves the vectors written since open
/// out of memory (the engine is rebuilt over the segment just written, as a reopen would),
/// with the same answers; writes go on after it. Mapped, the vectors stay where they were.
#[test]
fn a_checkpoint_moves_the_vectors_written_since_open_to_disk() {
    let data = testkit::clustered(N + 20, DIM, 60, 37);
    let queries: Vec<&[f32]> = (N..N + 20).map(|i| data.row(i)).collect();
    for on_disk in [false, true] {
        let storage = FaultyStorage::new();
        let config = config_on_disk(Distance::Cosine, Quantization::Sq8, on_disk);
        let db = EmbeddedVectorDB::open_with_storage(config, Arc::new(storage.clone())).unwrap();
        load(&db, &data, 0..N);
        let answers = |db: &EmbeddedVectorDB| -> Vec<Vec<(PointId, u32)>> {
            let search = |q: &&[f32]| db.search(&request(q, None, None)).unwrap().result;
            let scored = |p: &grape_vector_db::ScoredPoint| (p.id, p.score.to_bits());
            queries
                .iter()
                .map(|q| search(q).iter().map(scored).collect())
                .collect()
        };
        let before = answers(&db);
        assert!(db.stats().memory.vectors > 0);
        db.checkpoint().unwrap();
        // Read on first use (this storage cannot map files): only the rows' bookkeeping.
        let held = db.stats().memory.vectors;
        assert_eq!(
            held < N * DIM * 4 / 20,
            on_disk,
            "vectors in memory after the checkpoint: {held}"
        );
        let reads = storage.reads.load(SeqCst);
        assert_eq!(answers(&db), before, "on disk: {on_disk}");
        assert_eq!(storage.reads.load(SeqCst) > reads, on_disk);
        // Writes after the swap: a point of the segment replaced, another deleted.
        let moved = data.row(N + 1).to_vec();
        db.upsert(vec![Point::new(0u64, moved.clone())]).unwrap();
        db.delete([1u64]).unwrap();
        let found = db.search(&request(&moved, None, None)).unwrap().result;
        assert_eq!(found[0].id, PointId::Num(0));
        assert!(found.iter().all(|p| p.id != PointId::Num(1)));
        assert_eq!(db.count(None).unwrap(), N - 1);
    }
}

#[test]
fn quantization_needs_the_graph_and_a_distance_codes_can_estimate() {
    for (quantization, _) in CODINGS {
        let manhattan = EmbeddedConfig::builder(4)
            .distance(Distance::Manhattan)
            .quantization(quantization)
            .build();
        assert!(matches!(manhattan, Err(Error::InvalidConfig(m)) if m.contains("Manhattan")));
    }
    let no_graph = EmbeddedConfig::builder(4)
        .hnsw(None)
        .quantization(Quantization::Sq8)
        .build();
    assert!(matches!(no_graph, Err(Error::InvalidConfig(m)) if m.contains("hnsw")));
    // Small databases are scanned exactly, codes or not.
    let db = EmbeddedVectorDB::open(
        EmbeddedConfig::builder(4)
            .quantization(Quantization::Sq8)
            .build()
            .unwrap(),
    )
    .unwrap();
    db.upsert(vec![
        Point::new(1, vec![1.0, 0.0, 0.0, 0.0]),
        Point::new(2, vec![0.0, 1.0, 0.0, 0.0]),
    ])
    .unwrap();
    let res = db
        .search(&SearchRequest::new(vec![1.0, 0.1, 0.0, 0.0], 1))
        .unwrap();
    assert!(res.exact);
    assert_eq!(res.result[0].id, PointId::Num(1));
}
