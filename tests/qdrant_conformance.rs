//! Conformance with Qdrant, judged by Qdrant's own code: seeded payloads and filters (every kind
//! of condition, see `testkit::conformance`) answered by this crate and by Qdrant Edge (Qdrant's
//! segment code, embedded, through `tests/qdrant/oracle.py`), for all four distances: counts,
//! scroll order, exact search (ids in order, scores within 1e-4) and refusals.
//!
//! The oracle runs in the Python named by `GRAPE_QDRANT_PYTHON`, or `target/qdrant-venv` (which
//! `scripts/test` installs). Without one the test skips with a message, unless
//! `GRAPE_REQUIRE_ORACLES` is set (as `scripts/test` does), where a missing oracle fails.
//! `GRAPE_CONFORMANCE_QUERIES` sets the queries per distance (default 800: a few thousand queries in all).
//!
//! One more collection takes the way out to a Qdrant cluster: its points are stored in a
//! database directory, written by `grape export`, checked against qdrant-client's REST models
//! (the JSON Qdrant's upsert accepts) and loaded into Qdrant from that file; its filtered
//! searches, counts and scrolls must agree too.

use grape_testkit as testkit;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use grape_vector_db::{
    Bm25, Bm25Config, Distance, EmbeddedConfig, EmbeddedVectorDB, Filter, Modifier,
    PayloadSelector, Point, PointId, QueryRequest, ScrollRequest, SearchParams, SearchRequest,
    SparseVector, SparseVectorConfig,
};
use serde_json::{json, Value};
use testkit::conformance::{self, Kind};
use testkit::Rng;

const DIM: usize = 4;
const POINTS: usize = 160;
/// Results of a search.
const LIMIT: usize = 10;
/// The kinds whose every generated case must agree with Qdrant. The others are measured and
/// reported, and join this list as issue 16 aligns them.
const AGREED: &[Kind] = &[
    "refusal",
    "range.datetime",
    "geo_radius",
    "geo_bounding_box",
    "geo_polygon",
    "has_vector",
    "via grape export",
    "match.text_any",
    "match.phrase",
    "combined",
    "path.quoted",
    "empty_condition",
    "score_threshold",
    "match.except",
    "is_empty",
    "is_null",
    "values_count",
    "match.text",
    "nested",
    "key",
    "path.object",
    "path.array",
    "path.index",
    "match.value.keyword",
    "match.value.integer",
    "match.value.bool",
    "match.any",
    "range",
    "has_id",
    "should",
    "must_not",
    "min_should",
    "nested_filter",
];

struct Query {
    kind: &'static str,
    filter: Option<Value>,
    vector: Vec<f32>,
    score_threshold: Option<f32>,
    kinds: Vec<Kind>,
}

struct Collection {
    distance: Distance,
    points: Vec<Value>,
    queries: Vec<Query>,
    /// The points reach Qdrant through this file of `grape export` (the way to a cluster)
    /// rather than from the generator.
    exported: Option<PathBuf>,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Python with `qdrant_edge`, or why there is none.
fn oracle_python() -> Result<PathBuf, String> {
    let python = std::env::var_os("GRAPE_QDRANT_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/qdrant-venv/bin/python"));
    let works = Command::new(&python)
        .args(["-c", "import qdrant_edge, qdrant_client"])
        .output()
        .is_ok_and(|o| o.status.success());
    match works {
        true => Ok(python),
        false => Err(format!(
            "{} cannot import qdrant_edge and qdrant_client (scripts/test installs them: \
             python3 -m venv target/qdrant-venv && target/qdrant-venv/bin/pip install \
             qdrant-edge-py==0.9.0 qdrant-client==1.20.0 numpy)",
            python.display()
        )),
    }
}

fn vector(rng: &mut Rng) -> Vec<f32> {
    // Quarters: exact in f32 and f64 alike, and never all zero (Cosine refuses that).
    let mut v: Vec<f32> = (0..DIM)
        .map(|_| (rng.below(9) as f32 - 4.0) / 4.0)
        .collect();
    if v.iter().all(|x| *x == 0.0) {
        v[0] = 1.0;
    }
    v
}

fn collection(distance: Distance, seed: u64, queries: usize) -> Collection {
    let mut rng = Rng::new(seed);
    let ids: Vec<Value> = (0..POINTS)
        .map(|i| match i % 7 {
            0 => json!(format!(
                "{:08x}-0000-4000-8000-{:012x}",
                rng.next_u64() as u32,
                i
            )),
            _ => json!(i * 3 + 1),
        })
        .collect();
    let points = ids
        .iter()
        .map(|id| {
            let v = vector(&mut rng);
            json!({"id": id, "vector": v, "payload": conformance::payload(&mut rng)})
        })
        .collect();
    let queries = (0..queries)
        .map(|i| {
            let mut kinds = Vec::new();
            let filter =
                (!rng.chance(0.1)).then(|| conformance::filter(&mut rng, &ids, 0, &mut kinds));
            let kind = ["count", "scroll", "search"][i % 3];
            // Thresholds on the quarter grid hit scores exactly for Dot and Manhattan, whose
            // scores of quarter vectors are exact: the boundary is tested.
            let score_threshold = (kind == "search" && rng.chance(0.3)).then(|| {
                kinds.push("score_threshold");
                match distance {
                    Distance::Manhattan | Distance::Euclid => rng.below(17) as f32 / 4.0,
                    _ => (rng.below(17) as f32 - 8.0) / 8.0,
                }
            });
            Query {
                kind,
                filter,
                vector: vector(&mut rng),
                score_threshold,
                kinds,
            }
        })
        .collect();
    Collection {
        distance,
        points,
        queries,
        exported: None,
    }
}

fn distance_name(d: Distance) -> &'static str {
    match d {
        Distance::Cosine => "Cosine",
        Distance::Dot => "Dot",
        Distance::Euclid => "Euclid",
        Distance::Manhattan => "Manhattan",
    }
}

/// A collection whose points go to Qdrant as a user moving to a cluster sends them: stored in a
/// database directory, written out by `grape export`, validated by qdrant-client's REST models
/// and upserted from that file. Its queries are labelled `via grape export`.
fn exported_collection(scratch: &Path, queries: usize) -> Collection {
    let mut c = collection(Distance::Dot, 16_100, queries / 2 + 1);
    let dir = scratch.join("db");
    let config = EmbeddedConfig::builder(DIM)
        .distance(c.distance)
        .data_dir(&dir)
        .build()
        .unwrap();
    let db = EmbeddedVectorDB::open(config).unwrap();
    db.upsert(
        c.points
            .iter()
            .map(|p| Point::from_json(p).unwrap())
            .collect(),
    )
    .unwrap();
    db.close().unwrap();
    let file = scratch.join("points.jsonl");
    let out = Command::new(env!("CARGO_BIN_EXE_grape"))
        .arg("export")
        .arg(&dir)
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "grape export: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for q in &mut c.queries {
        q.kinds.push("via grape export");
    }
    c.exported = Some(file);
    c
}

/// This crate's answer, in the oracle's shape.
fn ours(db: &EmbeddedVectorDB, query: &Query) -> Value {
    let filter = match query.filter.clone().map(serde_json::from_value::<Filter>) {
        Some(Err(e)) => return json!({"error": e.to_string()}),
        Some(Ok(f)) => Some(f),
        None => None,
    };
    let answer = match query.kind {
        "count" => db.count(filter.as_ref()).map(|n| json!({"count": n})),
        "scroll" => db
            .scroll(&ScrollRequest {
                limit: POINTS,
                filter,
                with_payload: false,
                ..ScrollRequest::default()
            })
            .map(|page| json!({"ids": page.points.iter().map(|r| r.id).collect::<Vec<_>>()})),
        _ => {
            let mut request = SearchRequest::new(query.vector.clone(), LIMIT);
            request.filter = filter;
            request.score_threshold = query.score_threshold;
            request.params = SearchParams {
                exact: true,
                ..SearchParams::default()
            };
            db.search(&request).map(|r| {
                json!({"hits": r.result.iter().map(|p| json!([p.id, p.score])).collect::<Vec<_>>()})
            })
        }
    };
    answer.unwrap_or_else(|e| json!({"error": e.to_string()}))
}

/// Whether two answers agree: both refused, or the same counts, ids in order and scores.
/// Equal scores have no order in Qdrant (ours is insertion order): hits tied within rounding
/// may come in any order, and at the cut-off of a full page any of the tied points may be in.
fn agree(ours: &Value, theirs: &Value) -> bool {
    match (ours.get("error"), theirs.get("error")) {
        (Some(_), Some(_)) => return true,
        (None, None) => {}
        _ => return false,
    }
    match (ours.get("hits"), theirs.get("hits")) {
        (Some(Value::Array(a)), Some(Value::Array(b))) => same_hits(a, b, LIMIT),
        _ => ours == theirs,
    }
}

fn same_hits(a: &[Value], b: &[Value], limit: usize) -> bool {
    let score = |h: &Value| h[1].as_f64().unwrap();
    let close = |x: f64, y: f64| (x - y).abs() <= 1e-4 * x.abs().max(1.0);
    if a.len() != b.len() || !a.iter().zip(b).all(|(x, y)| close(score(x), score(y))) {
        return false;
    }
    // Runs of tied scores; ids must match as sets within each run, but for the last run of a
    // full page.
    let mut start = 0;
    while start < a.len() {
        let mut end = start + 1;
        while end < a.len() && close(score(&a[start]), score(&a[end])) {
            end += 1;
        }
        let ids = |h: &[Value]| {
            let mut ids: Vec<String> = h.iter().map(|x| x[0].to_string()).collect();
            ids.sort();
            ids
        };
        let cut = end == a.len() && a.len() == limit;
        if !cut && ids(&a[start..end]) != ids(&b[start..end]) {
            return false;
        }
        start = end;
    }
    true
}

/// What `script` (in `tests/qdrant`) answers to `cases`.
fn ask<T: serde::de::DeserializeOwned>(python: &Path, script: &str, cases: &Value) -> T {
    // The tests of this file run at once: each call has a directory of its own.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("grape-conformance-{}-{call}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("cases.json");
    std::fs::write(&file, serde_json::to_vec(cases).unwrap()).unwrap();
    let out = Command::new(python)
        .arg(root().join("tests/qdrant").join(script))
        .arg(&file)
        .output()
        .expect("the oracle runs");
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        out.status.success(),
        "the oracle failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the oracle answers JSON")
}

#[derive(Default)]
struct Tally {
    cases: usize,
    disagreements: usize,
    examples: Vec<String>,
}

/// The oracle's Python; `None` (after saying why) when there is none and none is required.
fn python_or_skip() -> Option<PathBuf> {
    match oracle_python() {
        Ok(python) => Some(python),
        Err(why) if std::env::var_os("GRAPE_REQUIRE_ORACLES").is_some() => {
            panic!("GRAPE_REQUIRE_ORACLES is set but {why}")
        }
        Err(why) => {
            eprintln!("skipped: {why}");
            None
        }
    }
}

#[test]
fn filters_counts_scrolls_and_searches_agree_with_qdrant() {
    let Some(python) = python_or_skip() else {
        return;
    };
    let queries: usize = std::env::var("GRAPE_CONFORMANCE_QUERIES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(800);
    let mut collections: Vec<Collection> = [
        Distance::Cosine,
        Distance::Dot,
        Distance::Euclid,
        Distance::Manhattan,
    ]
    .into_iter()
    .enumerate()
    .map(|(i, d)| collection(d, 16_000 + i as u64, queries))
    .collect();
    let scratch =
        std::env::temp_dir().join(format!("grape-conformance-export-{}", std::process::id()));
    collections.push(exported_collection(&scratch, queries));
    let cases: Vec<Value> = collections
        .iter()
        .map(|c| {
            json!({
                "distance": distance_name(c.distance),
                "dimension": DIM,
                "text_keys": ["desc"],
                "points": if c.exported.is_some() { Value::Null } else { json!(c.points) },
                "points_file": c.exported,
                "queries": c.queries.iter().map(|q| json!({
                    "kind": q.kind, "filter": q.filter, "vector": q.vector,
                    "score_threshold": q.score_threshold,
                    "limit": if q.kind == "search" { LIMIT } else { POINTS },
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let theirs: Vec<Vec<Value>> = ask(&python, "oracle.py", &Value::Array(cases));
    std::fs::remove_dir_all(&scratch).unwrap();

    let mut tally: BTreeMap<Kind, Tally> = BTreeMap::new();
    let mut strict_failures = Vec::new();
    let mut total = 0;
    let mut agreeing = 0;
    for (c, answers) in collections.iter().zip(&theirs) {
        let mut builder = EmbeddedConfig::builder(DIM).distance(c.distance).hnsw(None);
        // Half the collections answer through payload indexes (candidates from value, word and
        // datetime lists), the other half by evaluating every point: both must agree.
        if matches!(c.distance, Distance::Dot | Distance::Manhattan) {
            for key in [
                "kw",
                "n",
                "flag",
                "tags",
                "desc",
                "ts",
                "items[].x",
                "obj.y",
            ] {
                builder = builder.payload_index(key);
            }
        }
        let db = EmbeddedVectorDB::open(builder.build().unwrap()).unwrap();
        let points: Vec<Point> = c
            .points
            .iter()
            .map(|p| Point::from_json(p).unwrap())
            .collect();
        db.upsert(points).unwrap();
        for (q, their) in c.queries.iter().zip(answers) {
            total += 1;
            let our = ours(&db, q);
            let ok = agree(&our, their);
            agreeing += usize::from(ok);
            let mut kinds = q.kinds.clone();
            kinds.sort_unstable();
            kinds.dedup();
            if kinds.is_empty() {
                kinds.push("no filter");
            }
            let report = || {
                format!(
                    "{} {} filter {}\n    ours:   {our}\n    qdrant: {their}",
                    distance_name(c.distance),
                    q.kind,
                    q.filter
                        .as_ref()
                        .map_or("none".to_owned(), Value::to_string)
                )
            };
            for kind in &kinds {
                let t = tally.entry(kind).or_default();
                t.cases += 1;
                if !ok {
                    t.disagreements += 1;
                    if t.examples.len() < 2 {
                        t.examples.push(report());
                    }
                }
            }
            let strict = kinds
                .iter()
                .all(|k| *k == "no filter" || AGREED.contains(k));
            if strict && !ok {
                strict_failures.push(report());
            }
        }
    }
    eprintln!(
        "conformance with Qdrant Edge: {agreeing} of {total} queries agree ({:.1}%); per kind \
         of condition:",
        agreeing as f64 * 100.0 / total as f64
    );
    for (kind, t) in &tally {
        let agreed = if AGREED.contains(kind) || *kind == "no filter" {
            "must agree"
        } else {
            "measured"
        };
        eprintln!(
            "  {kind:<22} {:>5} cases, {:>4} disagree ({agreed})",
            t.cases, t.disagreements
        );
        for e in &t.examples {
            eprintln!("    e.g. {e}");
        }
    }
    assert!(
        strict_failures.is_empty(),
        "{} cases of agreed kinds disagree with Qdrant, e.g.:\n{}",
        strict_failures.len(),
        strict_failures
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// A text of words from many scripts and cases, joined by the separators Qdrant's word
/// tokenizer splits on (and some it does not: letters and digits of other scripts).
fn text(rng: &mut Rng) -> String {
    const WORDS: &[&str] = &[
        "the",
        "The",
        "THE",
        "fox",
        "Fox",
        "jumps",
        "naïve",
        "Café",
        "über",
        "STRASSE",
        "straße",
        "ΣΟΦΙΑ",
        "σοφία",
        "ΟΔΟΣ",
        "Ὀδυσσεύς",
        "Москва",
        "МОСКВА",
        "東京",
        "日本語のテキスト",
        "한국어",
        "İstanbul",
        "ǅemal",
        "x1",
        "42",
        "3",
        "٣٤",
        "e",
        "I",
        "a",
        "ﬁne",
        "Ⅻ",
        "½",
    ];
    const GLUE: &[&str] = &[
        " ", "  ", ", ", ". ", "-", "_", "'", "’", "\n", "\t", "/", "(", ")", "…", " — ", "🙂",
        "@", "#", "=",
    ];
    let n = rng.below(30);
    let mut s = String::new();
    for i in 0..n {
        if i > 0 || rng.below(4) == 0 {
            s.push_str(GLUE[rng.below(GLUE.len())]);
        }
        s.push_str(WORDS[rng.below(WORDS.len())]);
    }
    s
}

/// A sparse vector as the oracle writes it: indices and their values.
type Pairs = (Vec<u32>, Vec<f32>);

#[test]
fn bm25_vectors_are_qdrants() {
    let Some(python) = python_or_skip() else {
        return;
    };
    let mut rng = Rng::new(25);
    for config in [
        Bm25Config::default(),
        Bm25Config {
            k: 0.9,
            b: 0.4,
            avg_len: 12.5,
        },
    ] {
        let documents: Vec<String> = (0..400).map(|_| text(&mut rng)).collect();
        let queries: Vec<String> = (0..100).map(|_| text(&mut rng)).collect();
        let case = json!({
            "config": {"k": config.k, "b": config.b, "avg_len": config.avg_len},
            "documents": documents,
            "queries": queries,
        });
        let theirs: BTreeMap<String, Vec<Pairs>> = ask(&python, "bm25_oracle.py", &case);
        let bm25 = Bm25::new(config).unwrap();
        for (kind, texts) in [("documents", &documents), ("queries", &queries)] {
            for (text, (indices, values)) in texts.iter().zip(&theirs[kind]) {
                let ours = match kind {
                    "documents" => bm25.embed_document(text),
                    _ => bm25.embed_query(text),
                };
                assert_eq!(ours.indices(), &indices[..], "{kind} {text:?}");
                for (a, b) in ours.values().iter().zip(values) {
                    assert!(
                        (a - b).abs() <= 1e-6 * b.abs(),
                        "{kind} {text:?}: {a} vs {b}"
                    );
                }
            }
        }
    }
}

/// A sparse vector of random indices and values of either sign (what a learned sparse model
/// gives), over few indices so that vectors overlap.
fn random_sparse(rng: &mut Rng) -> SparseVector {
    sparse_of(
        (0..1 + rng.below(8)).map(|_| (rng.below(40) as u32, (rng.below(33) as f32 - 12.0) / 8.0)),
    )
}

/// A sparse vector of these pairs (an index given twice keeps its last value).
fn sparse_of(pairs: impl Iterator<Item = (u32, f32)>) -> SparseVector {
    let pairs: BTreeMap<u32, f32> = pairs.collect();
    SparseVector::new(
        pairs.keys().copied().collect(),
        pairs.values().copied().collect(),
    )
    .unwrap()
}

#[test]
fn sparse_queries_agree_with_qdrant() {
    let Some(python) = python_or_skip() else {
        return;
    };
    let bm25 = Bm25::new(Bm25Config::default()).unwrap();
    let mut rng = Rng::new(20_20);
    for modifier in [Modifier::Idf, Modifier::None] {
        let name = "text";
        let ids: Vec<Value> = (0..POINTS)
            .map(|i| match i % 9 {
                0 => json!(format!("{:08x}-0000-4000-8000-{:012x}", i * 7, i)),
                _ => json!(i * 3 + 1),
            })
            .collect();
        // BM25 documents under IDF; signed random vectors without it. Some points have none,
        // some are written twice (the second replaces the first) and some are deleted: the
        // document frequencies must follow.
        let make = |rng: &mut Rng, id: &Value| {
            let mut vectors = json!({"": [1.0]});
            if !rng.chance(0.1) {
                let v = match modifier {
                    Modifier::Idf => bm25.embed_document(&text(rng)),
                    Modifier::None => random_sparse(rng),
                };
                vectors[name] = json!(v);
            }
            json!({"id": id, "vector": vectors, "payload": conformance::payload(rng)})
        };
        let mut points: Vec<Value> = ids.iter().map(|id| make(&mut rng, id)).collect();
        for _ in 0..30 {
            let id = ids[rng.below(ids.len())].clone();
            points.push(make(&mut rng, &id));
        }
        let deletes: Vec<Value> = (0..20).map(|_| ids[rng.below(ids.len())].clone()).collect();
        let mut queries = Vec::new();
        while queries.len() < 300 {
            let mut kinds = Vec::new();
            let mut filter = rng
                .chance(0.4)
                .then(|| conformance::filter(&mut rng, &ids, 0, &mut kinds));
            // `has_vector` of the sparse vector in place of the generator's "other"; Qdrant's
            // side has no dense vector here, so `has_vector: ""` would differ.
            let names_dense = filter.as_mut().is_some_and(|f| name_the_vector(f, name));
            if names_dense || !kinds.iter().all(|k| AGREED.contains(k)) {
                continue;
            }
            let vector = match modifier {
                Modifier::Idf => bm25.embed_query(&text(&mut rng)),
                Modifier::None => random_sparse(&mut rng),
            };
            let score_threshold = rng.chance(0.2).then(|| rng.below(20) as f32 / 4.0);
            let limit = 1 + rng.below(2 * LIMIT);
            queries.push(json!({
                "kind": "sparse", "using": name, "vector": vector, "filter": filter,
                "limit": limit, "score_threshold": score_threshold,
            }));
        }
        let naming = format!(r#""has_vector":"{name}""#);
        let named = queries
            .iter()
            .filter(|q| q["filter"].to_string().contains(&naming))
            .count();
        assert!(named >= 5, "only {named} queries test has_vector of {name}");
        let modifier_name = serde_json::to_value(modifier).unwrap();
        let case = json!([{
            "sparse": {name: modifier_name},
            "text_keys": ["desc"],
            "points": points,
            "deletes": deletes,
            "queries": queries,
        }]);
        let theirs: Vec<Vec<Value>> = ask(&python, "oracle.py", &case);

        let config = EmbeddedConfig::builder(1)
            .distance(Distance::Dot)
            .sparse_vector(
                name,
                SparseVectorConfig {
                    modifier,
                    bm25: None,
                },
            )
            .build()
            .unwrap();
        let db = EmbeddedVectorDB::open(config).unwrap();
        for p in &points {
            db.upsert(vec![Point::from_json(p).unwrap()]).unwrap();
        }
        let deletes: Vec<PointId> = deletes
            .iter()
            .map(|id| serde_json::from_value(id.clone()).unwrap())
            .collect();
        db.delete(deletes).unwrap();
        let mut disagreements = Vec::new();
        for (q, their) in queries.iter().zip(&theirs[0]) {
            let limit = q["limit"].as_u64().unwrap() as usize;
            let request = json!({
                "query": q["vector"], "using": name, "limit": limit, "filter": q["filter"],
                "score_threshold": q["score_threshold"],
            });
            let ours = our_query_answer(&db, request);
            let agree = match (ours.get("hits"), their.get("hits")) {
                (Some(Value::Array(a)), Some(Value::Array(b))) => {
                    // Qdrant's filtered path returns points of score 0, its unfiltered path does
                    // not; ours never does. Compare without them: on a full page of Qdrant's,
                    // on as many of our hits as are left of it.
                    let nonzero: Vec<Value> = b.iter().filter(|h| h[1] != 0.0).cloned().collect();
                    let a = match b.len() == limit {
                        true => &a[..a.len().min(nonzero.len())],
                        false => &a[..],
                    };
                    same_hits(a, &nonzero, limit)
                }
                _ => ours.get("error").is_some() && their.get("error").is_some(),
            };
            if !agree {
                disagreements.push(format!("{q}\n  ours   {ours}\n  Qdrant {their}"));
            }
        }
        assert!(
            disagreements.is_empty(),
            "{modifier:?}: {} of {} sparse queries disagree with Qdrant, e.g.\n{}",
            disagreements.len(),
            queries.len(),
            disagreements[..disagreements.len().min(3)].join("\n")
        );
    }
}

/// Our answer to a Query API request given as JSON, in the oracle's shape: hits or an error.
fn our_query_answer(db: &EmbeddedVectorDB, request: Value) -> Value {
    let answer = serde_json::from_value::<QueryRequest>(request)
        .map_err(|e| e.to_string())
        .and_then(|r| db.query(&r).map_err(|e| e.to_string()));
    match answer {
        Ok(r) => {
            json!({"hits": r.points.iter().map(|p| json!([p.id, p.score])).collect::<Vec<_>>()})
        }
        Err(e) => json!({ "error": e }),
    }
}

/// Agreement of a page of ours with Qdrant's, for queries whose ties Qdrant orders its own way.
fn same_page(ours: &Value, theirs: &Value, limit: usize) -> bool {
    match (ours.get("hits"), theirs.get("hits")) {
        (Some(Value::Array(a)), Some(Value::Array(b))) => same_hits(a, b, limit),
        _ => ours.get("error").is_some() && theirs.get("error").is_some(),
    }
}

/// A vector of continuous components: ranks of results are free of ties, which Qdrant breaks
/// its own way, and which fusion by rank would carry into scores.
fn continuous(rng: &mut Rng) -> Vec<f32> {
    (0..DIM).map(|_| rng.unit() as f32 * 2.0 - 1.0).collect()
}

/// A sparse vector of continuous positive values over few indices (see [`continuous`]).
fn continuous_sparse(rng: &mut Rng) -> SparseVector {
    sparse_of((0..1 + rng.below(6)).map(|_| (rng.below(30) as u32, rng.unit() as f32 + 0.01)))
}

#[test]
fn hybrid_queries_agree_with_qdrant() {
    let Some(python) = python_or_skip() else {
        return;
    };
    let mut rng = Rng::new(20_21);
    let name = "text";
    let ids: Vec<Value> = (0..POINTS).map(|i| json!(i * 3 + 1)).collect();
    let points: Vec<Value> = ids
        .iter()
        .map(|id| {
            let mut vectors = json!({"": continuous(&mut rng)});
            if !rng.chance(0.1) {
                vectors[name] = json!(continuous_sparse(&mut rng));
            }
            json!({"id": id, "vector": vectors, "payload": conformance::payload(&mut rng)})
        })
        .collect();
    let filter = |rng: &mut Rng| loop {
        let mut kinds = Vec::new();
        let f = conformance::filter(rng, &ids, 0, &mut kinds);
        if kinds.iter().all(|k| AGREED.contains(k)) {
            return f;
        }
    };
    let queries: Vec<Value> = (0..300)
        .map(|_| {
            let dense = json!({"query": continuous(&mut rng), "limit": 1 + rng.below(25)});
            let mut sparse = json!({
                "query": continuous_sparse(&mut rng), "using": name, "limit": 1 + rng.below(25),
            });
            if rng.chance(0.3) {
                sparse["filter"] = filter(&mut rng);
            }
            let query = match rng.below(5) {
                0 => json!({"fusion": "rrf"}),
                1 => json!({"fusion": "dbsf"}),
                // Qdrant's parameterized RRF: its k, and weights per prefetch.
                2 => json!({"rrf": {"k": 1 + rng.below(60)}}),
                3 => json!({"rrf": {"weights": [rng.unit() * 3.0 + 0.1, rng.unit() * 3.0 + 0.1]}}),
                _ => json!(continuous(&mut rng)),
            };
            json!({
                "kind": "hybrid", "prefetch": [dense, sparse], "query": query,
                "filter": rng.chance(0.3).then(|| filter(&mut rng)),
                "limit": 1 + rng.below(2 * LIMIT),
            })
        })
        .collect();
    let case = json!([{
        "sparse": {name: "idf"}, "dimension": DIM, "distance": "Dot", "text_keys": ["desc"],
        "points": points, "queries": queries,
    }]);
    let theirs: Vec<Vec<Value>> = ask(&python, "oracle.py", &case);
    let config = EmbeddedConfig::builder(DIM)
        .distance(Distance::Dot)
        .sparse_vector(
            name,
            SparseVectorConfig {
                modifier: Modifier::Idf,
                bm25: None,
            },
        )
        .build()
        .unwrap();
    let db = EmbeddedVectorDB::open(config).unwrap();
    let points: Vec<Point> = points
        .iter()
        .map(|p| Point::from_json(p).unwrap())
        .collect();
    db.upsert(points).unwrap();
    let mut disagreements = Vec::new();
    let mut joined = 0;
    for (q, their) in queries.iter().zip(&theirs[0]) {
        let mut request = q.clone();
        request.as_object_mut().unwrap().remove("kind");
        let limit = q["limit"].as_u64().unwrap() as usize;
        let ours = our_query_answer(&db, request);
        // Queries whose request and prefetch filters both have `should`: Qdrant merges them
        // into one list (`Filter::merge_owned`), and so must we.
        let has_should = |f: &Value| f["should"].as_array().is_some_and(|s| !s.is_empty());
        joined += usize::from(
            has_should(&q["filter"])
                && q["prefetch"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|p| has_should(&p["filter"])),
        );
        if !same_page(&ours, their, limit) {
            disagreements.push(format!("{q}\n  ours   {ours}\n  Qdrant {their}"));
        }
    }
    assert!(joined >= 2, "only {joined} queries join two `should` lists");
    assert!(
        disagreements.is_empty(),
        "{} of {} hybrid queries disagree with Qdrant, e.g.\n{}",
        disagreements.len(),
        queries.len(),
        disagreements[..disagreements.len().min(3)].join("\n")
    );
}

/// Puts the vector `name` (sparse or named dense) in each `has_vector: "other"` of a generated
/// filter (found anywhere in it); whether it names `""`, the unnamed vector.
fn name_the_vector(filter: &mut Value, name: &str) -> bool {
    // Every part is visited (not `any`, which would stop at the first `""`).
    let mut dense = false;
    match filter {
        Value::Object(map) => {
            if let Some(Value::String(vector)) = map.get_mut("has_vector") {
                match vector.as_str() {
                    "" => dense = true,
                    "other" => *vector = name.to_owned(),
                    _ => {}
                }
            }
            for v in map.values_mut() {
                dense |= name_the_vector(v, name);
            }
        }
        Value::Array(items) => {
            for v in items {
                dense |= name_the_vector(v, name);
            }
        }
        _ => {}
    }
    dense
}

/// The paths the payload selectors are made of: fields, fields inside objects and inside
/// arrays' elements, indices, and paths that reach nothing.
#[rustfmt::skip]
const PATHS: &[&str] = &[
    "kw", "n", "flag", "tags", "tags[]", "obj", "obj.x", "obj.y", "obj.z", "items",
    "items[].x", "items[].y", "items[0].x", "desc", "a", "a.b", "a[]", "a[].c", "ts",
    "missing", "k", "ob",
];

/// `with_payload` as a list of fields or `{"include" | "exclude": [..]}`: the payloads Qdrant
/// Edge returns for every point equal ours (`PayloadSelector::apply`, as `db.query` applies
/// it), on the generated payloads (nested objects, arrays of objects, anything), with paths
/// that reach fields, fields inside objects and inside arrays' elements, and nothing.
#[test]
fn payload_selectors_agree_with_qdrant() {
    let Some(python) = python_or_skip() else {
        return;
    };
    let mut rng = Rng::new(20_22);
    let points: Vec<Value> = (0..60u64)
        .map(|i| json!({"id": i, "vector": [1.0], "payload": conformance::payload(&mut rng)}))
        .collect();
    let selections: Vec<(bool, Vec<String>)> = (0..120)
        .map(|_| {
            let paths = (0..1 + rng.below(3))
                .map(|_| PATHS[rng.below(PATHS.len())].to_owned())
                .collect();
            (rng.chance(0.5), paths)
        })
        .collect();
    let queries: Vec<Value> = selections
        .iter()
        .map(|(include, paths)| json!({"kind": "select", "include": include, "paths": paths, "limit": 100}))
        .collect();
    let case = json!([{"dimension": 1, "distance": "Dot", "points": points, "queries": queries}]);
    let theirs: Vec<Vec<Value>> = ask(&python, "oracle.py", &case);
    let db = EmbeddedVectorDB::open(
        EmbeddedConfig::builder(1)
            .distance(Distance::Dot)
            .build()
            .unwrap(),
    )
    .unwrap();
    db.upsert(
        points
            .iter()
            .map(|p| Point::from_json(p).unwrap())
            .collect(),
    )
    .unwrap();
    let mut disagreements = Vec::new();
    for ((include, paths), their) in selections.iter().zip(&theirs[0]) {
        let selector = match include {
            true => PayloadSelector::include(paths).unwrap(),
            false => PayloadSelector::exclude(paths).unwrap(),
        };
        for pair in their["payloads"].as_array().unwrap() {
            let id: PointId = serde_json::from_value(pair[0].clone()).unwrap();
            let stored = db.get(vec![id]).unwrap()[0].payload.clone().unwrap();
            let ours = Value::Object(selector.apply(&stored));
            if ours != pair[1] {
                disagreements.push(format!(
                    "{selector:?} on {id:?}\n  ours   {ours}\n  Qdrant {}",
                    pair[1]
                ));
            }
        }
    }
    assert!(
        disagreements.is_empty(),
        "{} payloads differ from Qdrant's, e.g.\n{}",
        disagreements.len(),
        disagreements[..disagreements.len().min(3)].join("\n")
    );
    // Through the Query API: the selector reaches the results.
    let request: QueryRequest = serde_json::from_value(json!({
        "query": [1.0], "limit": 60, "with_payload": {"exclude": ["a", "desc"]}
    }))
    .unwrap();
    let found = db.query(&request).unwrap().points;
    assert_eq!(found.len(), 60);
    assert!(found.iter().all(|p| {
        let payload = p.payload.as_ref().unwrap();
        !payload.contains_key("a") && !payload.contains_key("desc")
    }));
}

/// `with_vector` as `true` or a list of names (`""` the dense vector): the vectors Qdrant Edge
/// returns for every point, in its JSON shape (the dense vector alone as a list when it is the
/// only one, `{}` when the named ones are missing), equal ours.
#[test]
fn vector_selectors_agree_with_qdrant() {
    let Some(python) = python_or_skip() else {
        return;
    };
    let mut rng = Rng::new(20_23);
    let points: Vec<Value> = (0..40u64)
        .map(|i| {
            let mut vectors = json!({"": continuous(&mut rng)});
            if rng.chance(0.6) {
                vectors["text"] = json!(continuous_sparse(&mut rng));
            }
            json!({"id": i, "vector": vectors})
        })
        .collect();
    let selections = [
        json!(true),
        json!(["text"]),
        json!([""]),
        json!(["", "text"]),
        json!(["text", ""]),
    ];
    let queries: Vec<Value> = selections
        .iter()
        .map(|s| json!({"kind": "vectors", "with_vector": s, "limit": 100}))
        .collect();
    let case = json!([{
        "sparse": {"text": "none"}, "dimension": DIM, "distance": "Dot", "points": points,
        "queries": queries,
    }]);
    let theirs: Vec<Vec<Value>> = ask(&python, "oracle.py", &case);
    let config = EmbeddedConfig::builder(DIM)
        .distance(Distance::Dot)
        .sparse_vector("text", SparseVectorConfig::default())
        .build()
        .unwrap();
    let db = EmbeddedVectorDB::open(config).unwrap();
    db.upsert(
        points
            .iter()
            .map(|p| Point::from_json(p).unwrap())
            .collect(),
    )
    .unwrap();
    for (selection, their) in selections.iter().zip(&theirs[0]) {
        let request: QueryRequest = serde_json::from_value(json!({
            "query": vec![0.0; DIM], "limit": 100, "with_vector": selection
        }))
        .unwrap();
        let ours: BTreeMap<String, Value> = db
            .query(&request)
            .unwrap()
            .points
            .iter()
            .map(|p| {
                let json = serde_json::to_value(p).unwrap();
                (
                    json["id"].to_string(),
                    json.get("vector").cloned().unwrap_or(Value::Null),
                )
            })
            .collect();
        for pair in their["vectors"].as_array().unwrap() {
            let id = pair[0].to_string();
            let (a, b) = (&ours[&id], &pair[1]);
            assert!(
                same_vectors(a, b),
                "with_vector {selection} on {id}: ours {a}, Qdrant {b}"
            );
        }
    }
    let refused: Result<QueryRequest, _> =
        serde_json::from_value(json!({"query": vec![0.0; DIM], "with_vector": ["other"]}));
    assert!(matches!(
        db.query(&refused.unwrap()),
        Err(grape_vector_db::Error::InvalidArgument(_))
    ));
}

/// Vectors in JSON equal up to f32 rounding of their numbers.
fn same_vectors(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            (x.as_f64().unwrap() - y.as_f64().unwrap()).abs()
                <= 1e-6 * (1.0 + y.as_f64().unwrap().abs())
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_vectors(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_vectors(v, w)))
        }
        _ => a == b,
    }
}

/// A vector of `n` continuous components (see [`continuous`]).
fn continuous_of(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.unit() as f32 * 2.0 - 1.0).collect()
}

#[test]
fn named_vectors_agree_with_qdrant() {
    let Some(python) = python_or_skip() else {
        return;
    };
    // Beside the unnamed vector, and in a collection of named vectors only.
    named_vectors_case(&python, 20_24, true);
    named_vectors_case(&python, 20_25, false);
}

fn named_vectors_case(python: &Path, seed: u64, unnamed: bool) {
    let mut rng = Rng::new(seed);
    // Named dense vectors, each with its own size and distance; points carry them or not.
    let named = [("img", 6, Distance::Euclid), ("txt", 3, Distance::Cosine)];
    let ids: Vec<Value> = (0..POINTS).map(|i| json!(i * 5 + 2)).collect();
    let points: Vec<Value> = ids
        .iter()
        .map(|id| {
            let mut vectors = match unnamed {
                true => json!({"": continuous(&mut rng)}),
                false => json!({}),
            };
            for (name, size, _) in named {
                if rng.chance(0.7) {
                    vectors[name] = json!(continuous_of(&mut rng, size));
                }
            }
            json!({"id": id, "vector": vectors, "payload": conformance::payload(&mut rng)})
        })
        .collect();
    let filter = |rng: &mut Rng| loop {
        let mut kinds = Vec::new();
        let mut f = conformance::filter(rng, &ids, 0, &mut kinds);
        if kinds.iter().all(|k| AGREED.contains(k)) {
            // `has_vector` of a named vector where the generator names another; not `""`
            // where there is no unnamed vector.
            if !name_the_vector(&mut f, named[rng.below(2)].0) || unnamed {
                return f;
            }
        }
    };
    let nearest = |rng: &mut Rng| {
        let (using, size) = match rng.below(2 + usize::from(unnamed)) {
            2 => ("", DIM),
            i => (named[i].0, named[i].1),
        };
        (using, continuous_of(rng, size))
    };
    let queries: Vec<Value> = (0..300)
        .map(|i| {
            let (using, vector) = nearest(&mut rng);
            let limit = 1 + rng.below(2 * LIMIT);
            let f = rng.chance(0.4).then(|| filter(&mut rng));
            if i % 3 != 0 {
                return json!({
                    "kind": "search", "using": (!using.is_empty()).then_some(using),
                    "vector": vector, "limit": limit, "filter": f,
                });
            }
            let prefetch: Vec<Value> = (0..2)
                .map(|_| {
                    let (using, vector) = nearest(&mut rng);
                    json!({"query": vector, "using": (!using.is_empty()).then_some(using),
                           "limit": 1 + rng.below(25)})
                })
                .collect();
            let (using, query) = match rng.below(3) {
                0 => (None, json!({"fusion": "rrf"})),
                1 => (None, json!({"fusion": "dbsf"})),
                // Re-scored by a vector of its own.
                _ => (Some(using).filter(|u| !u.is_empty()), json!(vector)),
            };
            json!({"kind": "hybrid", "prefetch": prefetch, "query": query, "using": using,
                   "filter": f, "limit": limit})
        })
        .collect();
    let named_json: serde_json::Map<String, Value> = named
        .iter()
        .map(|(name, size, d)| {
            (
                name.to_string(),
                json!({"size": size, "distance": distance_name(*d)}),
            )
        })
        .collect();
    let mut case = json!({
        "named": named_json, "text_keys": ["desc"], "points": points, "queries": queries,
    });
    if unnamed {
        case["dimension"] = json!(DIM);
        case["distance"] = json!("Dot");
    }
    let theirs: Vec<Vec<Value>> = ask(python, "oracle.py", &json!([case]));
    let dimension = if unnamed { DIM } else { 0 };
    let mut config = EmbeddedConfig::builder(dimension).distance(Distance::Dot);
    for (name, size, d) in named {
        config = config.named_vector(name, size, d);
    }
    let db = EmbeddedVectorDB::open(config.build().unwrap()).unwrap();
    let points: Vec<Point> = points
        .iter()
        .map(|p| Point::from_json(p).unwrap())
        .collect();
    db.upsert(points).unwrap();
    let mut disagreements = Vec::new();
    let (mut with_vector, mut answered) = (0, 0);
    for (q, their) in queries.iter().zip(&theirs[0]) {
        let mut request = q.clone();
        let object = request.as_object_mut().unwrap();
        object.remove("kind");
        if let Some(vector) = object.remove("vector") {
            object.insert("query".into(), vector);
            object.insert("params".into(), json!({"exact": true}));
        }
        object.retain(|_, v| !v.is_null());
        with_vector += usize::from(q["filter"].to_string().contains("has_vector"));
        let limit = q["limit"].as_u64().unwrap() as usize;
        let ours = our_query_answer(&db, request);
        let hits = |a: &Value| a["hits"].as_array().is_some_and(|h| !h.is_empty());
        answered += usize::from(hits(&ours) && hits(their));
        if !same_page(&ours, their, limit) {
            disagreements.push(format!("{q}\n  ours   {ours}\n  Qdrant {their}"));
        }
    }
    assert!(with_vector >= 5, "only {with_vector} filters name a vector");
    // Most queries find points on both sides (filters that admit none aside).
    assert!(answered >= 200, "only {answered} queries found points");
    assert!(
        disagreements.is_empty(),
        "{} of {} named vector queries disagree with Qdrant (unnamed vector: {unnamed}), e.g.\n{}",
        disagreements.len(),
        queries.len(),
        disagreements[..disagreements.len().min(3)].join("\n")
    );
}
