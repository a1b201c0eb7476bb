//! Sparse vectors through the public API (issue 20): compaction, replacements and deletes
//! leave the same answers as a database that only ever held the live points, and every misuse
//! is a typed error. Agreement with Qdrant itself is in `tests/qdrant_conformance.rs`.

use grape_testkit::Rng;
use grape_vector_db::{
    Bm25, Bm25Config, EmbeddedConfig, EmbeddedVectorDB, Error, Filter, Modifier, Point, PointId,
    Query, QueryRequest, QueryVector, ScrollRequest, SearchRequest, SparseVector,
    SparseVectorConfig,
};
use serde_json::{json, Value};

const WORDS: &[&str] = &[
    "red", "green", "blue", "apple", "pear", "grape", "wine", "juice", "tree", "leaf", "seed",
    "sweet", "sour", "dry", "fresh", "old", "a", "the", "of", "and",
];

fn config() -> EmbeddedConfig {
    EmbeddedConfig::builder(2)
        .sparse_vector(
            "text",
            SparseVectorConfig {
                modifier: Modifier::Idf,
                bm25: None,
            },
        )
        .build()
        .unwrap()
}

fn sentence(rng: &mut Rng) -> String {
    (0..1 + rng.below(12))
        .map(|_| WORDS[rng.below(WORDS.len())])
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn compaction_replacements_and_deletes_answer_as_a_fresh_database() {
    let bm25 = Bm25::new(Bm25Config::default()).unwrap();
    let mut rng = Rng::new(20);
    let point = |rng: &mut Rng, id: u64| {
        let p = Point::new(id, vec![1.0, id as f32]);
        match rng.below(10) {
            0 => p, // no sparse vector
            _ => p.with_sparse("text", bm25.embed_document(&sentence(rng))),
        }
    };
    let db = EmbeddedVectorDB::open(config()).unwrap();
    let mut live = std::collections::BTreeMap::new();
    for round in 0..3u64 {
        let batch: Vec<Point> = (0..1500)
            .map(|i| point(&mut rng, (i * 7 + round) % 2000))
            .collect();
        for p in &batch {
            live.insert(p.id, p.clone());
        }
        db.upsert(batch).unwrap();
        // Deleting most of them leaves more tombstones than live points: the engine compacts.
        let doomed: Vec<PointId> = live.keys().copied().filter(|_| rng.below(3) != 0).collect();
        db.delete(doomed.clone()).unwrap();
        for id in doomed {
            live.remove(&id);
        }
    }
    let fresh = EmbeddedVectorDB::open(config()).unwrap();
    fresh.upsert(live.values().cloned().collect()).unwrap();
    assert_eq!(db.count(None).unwrap(), live.len());
    for _ in 0..200 {
        let q = QueryRequest::sparse("text", bm25.embed_query(&sentence(&mut rng)), 15);
        let (a, b) = (
            db.query(&q).unwrap().points,
            fresh.query(&q).unwrap().points,
        );
        let scores =
            |r: &[grape_vector_db::ScoredPoint]| r.iter().map(|p| p.score).collect::<Vec<_>>();
        assert_eq!(scores(&a), scores(&b), "{q:?}");
    }
}

#[test]
fn misuse_is_a_typed_error() {
    let db = EmbeddedVectorDB::open(config()).unwrap();
    let v = SparseVector::new(vec![1], vec![1.0]).unwrap();
    let unknown = db.upsert(vec![
        Point::new(1, vec![1.0, 0.0]).with_sparse("body", v.clone())
    ]);
    assert!(matches!(unknown, Err(Error::InvalidArgument(m)) if m.contains("\"body\"")));
    assert_eq!(db.count(None).unwrap(), 0, "the batch was refused whole");
    db.upsert(vec![
        Point::new(1, vec![1.0, 0.0]).with_sparse("text", v.clone())
    ])
    .unwrap();
    let ask = |query: QueryVector, using: Option<&str>| {
        let mut q = QueryRequest::sparse("text", v.clone(), 3);
        q.query = Some(Query::Vector(query));
        q.using = using.map(str::to_owned);
        db.query(&q)
    };
    for (query, using) in [
        (QueryVector::Sparse(v.clone()), Some("body")),
        (QueryVector::Sparse(v.clone()), None),
        (QueryVector::Dense(vec![1.0, 0.0]), Some("text")),
    ] {
        assert!(matches!(ask(query, using), Err(Error::InvalidArgument(_))));
    }
    assert_eq!(
        ask(QueryVector::Dense(vec![1.0, 0.0]), None)
            .unwrap()
            .points
            .len(),
        1
    );
    assert_eq!(
        ask(QueryVector::Sparse(v.clone()), Some("text"))
            .unwrap()
            .points
            .len(),
        1
    );
}

/// A malformed Query API request is refused with a message naming what is wrong, at every
/// level of its prefetches, in the JSON users write.
#[test]
fn malformed_query_json_says_what_is_wrong() {
    let refused = |json: &str, says: &str| {
        let e = serde_json::from_str::<QueryRequest>(json).expect_err(json);
        assert!(e.to_string().contains(says), "{json}: {e}");
    };
    refused(r#"{"query": {"nearst": [1, 2]}}"#, "unknown field `nearst`");
    refused(r#"{"query": {"fusion": "max"}}"#, "unknown fusion \"max\"");
    refused(
        r#"{"query": {"recommend": {}}}"#,
        "`recommend` is not supported",
    );
    refused(
        r#"{"query": {"rrf": {"k": 0}}}"#,
        "`k` must be an integer of at least 1",
    );
    refused(
        r#"{"query": {"rrf": {"weights": [1, -2]}}}"#,
        "numbers above 0",
    );
    refused(r#"{"query": {"rrf": {"c": 1}}}"#, "unknown field `c`");
    refused(r#"{"query": [1, "a"]}"#, "array of numbers");
    refused(
        r#"{"query": {"indices": [1], "values": [1, 2]}}"#,
        "indices",
    );
    refused(
        r#"{"query": {"text": "a", "model": "bert"}}"#,
        "\"bert\" is not available",
    );
    refused(
        r#"{"prefetch": [{"query": [1, 0]}, {"query": {"nearest": 3}}], "query": {"fusion": "rrf"}}"#,
        "expected a vector",
    );
    refused(r#"{"prefetch": {"limt": 3}}"#, "unknown field `limt`");
    let ok: QueryRequest = serde_json::from_str(
        r#"{"prefetch": {"query": {"text": "red"}, "using": "text"}, "query": {"nearest": [1, 0]}}"#,
    )
    .unwrap();
    assert_eq!(ok.prefetch.len(), 1);
    // Weights name the prefetches one by one: a count that differs is refused.
    let db = EmbeddedVectorDB::open(config()).unwrap();
    db.upsert(vec![Point::new(1, vec![1.0, 0.0])]).unwrap();
    let weighted: QueryRequest = serde_json::from_str(
        r#"{"prefetch": [{"query": [1, 0]}, {"query": [0, 1]}], "query": {"rrf": {"weights": [1, 2, 3]}}}"#,
    )
    .unwrap();
    let refused = db.query(&weighted);
    assert!(
        matches!(&refused, Err(Error::InvalidArgument(m)) if m.contains("3 weights for 2 prefetches")),
        "{refused:?}"
    );
}

/// `has_vector` of a sparse vector's name matches the points that have one, in every path a
/// filter takes: count, scroll, a dense search, a sparse query, a delete; nested in a boolean
/// filter too. `""` is every point's dense vector; an undeclared name matches nothing.
#[test]
fn has_vector_names_a_sparse_vector() {
    let db = EmbeddedVectorDB::open(config()).unwrap();
    let v = SparseVector::new(vec![1, 2], vec![1.0, 0.5]).unwrap();
    db.upsert(
        (0..30u64)
            .map(|i| match i % 3 {
                0 => Point::new(i, vec![1.0, i as f32]),
                _ => Point::new(i, vec![1.0, i as f32]).with_sparse("text", v.clone()),
            })
            .collect(),
    )
    .unwrap();
    let filter = |json: Value| Filter::from_json(&json).unwrap();
    let has = filter(json!({"must": [{"has_vector": "text"}]}));
    let lacks = filter(json!({"must_not": [{"has_vector": "text"}]}));
    let nested = filter(json!({"should": [{"must": [{"has_vector": "text"}]}, {"has_id": [0]}]}));
    assert_eq!(db.count(Some(&has)).unwrap(), 20);
    assert_eq!(db.count(Some(&lacks)).unwrap(), 10);
    assert_eq!(db.count(Some(&nested)).unwrap(), 21);
    assert_eq!(
        db.count(Some(&filter(json!({"must": [{"has_vector": ""}]}))))
            .unwrap(),
        30
    );
    assert_eq!(
        db.count(Some(&filter(json!({"must": [{"has_vector": "body"}]}))))
            .unwrap(),
        0
    );
    let page = db
        .scroll(&ScrollRequest {
            limit: 100,
            filter: Some(lacks.clone()),
            ..ScrollRequest::default()
        })
        .unwrap();
    assert!(page
        .points
        .iter()
        .all(|p| matches!(p.id, PointId::Num(n) if n % 3 == 0)));
    let dense = db
        .search(&SearchRequest::new(vec![1.0, 0.0], 30).with_filter(lacks.clone()))
        .unwrap();
    assert_eq!(dense.result.len(), 10);
    let mut sparse = QueryRequest::sparse("text", v.clone(), 30);
    sparse.filter = Some(has.clone());
    assert_eq!(db.query(&sparse).unwrap().points.len(), 20);
    sparse.filter = Some(lacks.clone());
    assert!(db.query(&sparse).unwrap().points.is_empty());
    // Replaced without the vector, a point no longer has it; deleted, it is gone.
    db.upsert(vec![Point::new(1u64, vec![1.0, 1.0])]).unwrap();
    assert_eq!(db.count(Some(&has)).unwrap(), 19);
    assert_eq!(db.delete_by_filter(&has).unwrap(), 19);
    assert_eq!(db.count(None).unwrap(), 11);
    assert_eq!(db.count(Some(&has)).unwrap(), 0);
}

/// The request's filter joins each prefetch's as Qdrant merges filters (`Filter::merge_owned`):
/// the clauses' conditions in one list each, so two `should` lists become one; and a re-score
/// takes the prefetched points as they are, without applying the request's filter again.
#[test]
fn filters_merge_into_prefetches_as_in_qdrant() {
    let db = EmbeddedVectorDB::open(config()).unwrap();
    db.upsert(
        (0..12u64)
            .map(|i| {
                Point::new(i, vec![1.0, i as f32])
                    .with_payload(json!({"c": i % 3}))
                    .unwrap()
            })
            .collect(),
    )
    .unwrap();
    let classes = |request: Value| -> Vec<u64> {
        let request: QueryRequest = serde_json::from_value(request).unwrap();
        let mut c: Vec<u64> = db
            .query(&request)
            .unwrap()
            .points
            .iter()
            .map(|p| match p.id {
                PointId::Num(n) => n % 3,
                other => panic!("{other:?}"),
            })
            .collect();
        c.sort_unstable();
        c.dedup();
        c
    };
    let prefetch = json!({"query": [1.0, 1.0], "limit": 12, "filter": {"should": [{"key": "c", "match": {"value": 1}}]}});
    let request_should = json!({"should": [{"key": "c", "match": {"value": 2}}]});
    // Either `should` will do: classes 1 and 2, though no point is in both.
    for query in [json!({"fusion": "rrf"}), json!([1.0, 0.0])] {
        let merged =
            json!({"prefetch": prefetch, "query": query, "filter": request_should, "limit": 12});
        assert_eq!(classes(merged), [1, 2], "{query}");
    }
    // `must` clauses still both hold.
    let both_must = json!({"prefetch": {"query": [1.0, 1.0], "limit": 12, "filter": {"must": [{"key": "c", "match": {"value": 1}}]}},
                           "query": {"fusion": "rrf"}, "filter": {"must": [{"key": "c", "match": {"value": 2}}]}});
    assert!(classes(both_must).is_empty());
}

/// Every stored form holds the sparse vectors: the log, a segment, a segment with a log after
/// it, a snapshot and an archive; the manifest holds their declaration, which a later open
/// may leave out but not change.
#[test]
fn sparse_vectors_are_stored_and_declarations_checked() {
    let bm25 = Bm25::new(Bm25Config::default()).unwrap();
    let mut rng = Rng::new(21);
    let root = std::env::temp_dir().join(format!("grape-sparse-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let dir = root.join("db");
    let on_disk = |extra: Option<&str>| {
        let mut b = EmbeddedConfig::builder(2).data_dir(&dir).sparse_vector(
            "text",
            SparseVectorConfig {
                modifier: Modifier::Idf,
                bm25: None,
            },
        );
        if let Some(name) = extra {
            b = b.sparse_vector(name, SparseVectorConfig::default());
        }
        b.build().unwrap()
    };
    let queries: Vec<QueryRequest> = (0..50)
        .map(|_| QueryRequest::sparse("text", bm25.embed_query(&sentence(&mut rng)), 10))
        .collect();
    let answers = |db: &EmbeddedVectorDB| -> Vec<Vec<(PointId, f32)>> {
        queries
            .iter()
            .map(|q| {
                db.query(q)
                    .unwrap()
                    .points
                    .iter()
                    .map(|p| (p.id, p.score))
                    .collect()
            })
            .collect()
    };
    let mut batch = |first: u64| -> Vec<Point> {
        (first..first + 300)
            .map(|i| {
                Point::new(i, vec![1.0, i as f32])
                    .with_sparse("text", bm25.embed_document(&sentence(&mut rng)))
            })
            .collect()
    };
    let db = EmbeddedVectorDB::open(on_disk(None)).unwrap();
    db.upsert(batch(0)).unwrap();
    db.delete((0..300u64).step_by(7)).unwrap();
    let expected = answers(&db);
    assert!(expected.iter().all(|a| !a.is_empty()));
    drop(db);
    // The log alone.
    let db = EmbeddedVectorDB::open(on_disk(None)).unwrap();
    assert_eq!(answers(&db), expected);
    // A segment, then a segment and a log.
    db.checkpoint().unwrap();
    drop(db);
    let db = EmbeddedVectorDB::open(on_disk(None)).unwrap();
    assert_eq!(answers(&db), expected);
    db.upsert(batch(1000)).unwrap();
    let expected = answers(&db);
    drop(db);
    let db = EmbeddedVectorDB::open(on_disk(None)).unwrap();
    assert_eq!(answers(&db), expected);
    // A snapshot and an archive.
    for copy in grape_testkit::copies(&db, &root.join("snapshot"), &on_disk(None)) {
        assert_eq!(answers(&copy), expected);
    }
    drop(db);
    // The manifest keeps the declaration: an open that declares nothing (the `grape` CLI, an
    // app's next version) searches them as declared, from the log and from a segment alike;
    // one that declares them otherwise is refused, as their index was made for the stored one.
    let undeclared = || EmbeddedConfig {
        sparse_vectors: Default::default(),
        ..on_disk(None)
    };
    let otherwise = || EmbeddedConfig {
        sparse_vectors: [("text".to_owned(), SparseVectorConfig::default())].into(),
        ..on_disk(None)
    };
    for checkpoint in [false, true] {
        let db = EmbeddedVectorDB::open(undeclared()).unwrap();
        assert_eq!(answers(&db), expected);
        if checkpoint {
            db.checkpoint().unwrap();
        }
        drop(db);
        let refused = EmbeddedVectorDB::open(otherwise());
        assert!(matches!(refused, Err(Error::InvalidConfig(m)) if m.contains("\"text\"")));
    }
    // A sparse vector declared later: the stored points have none of it.
    let db = EmbeddedVectorDB::open(on_disk(Some("title"))).unwrap();
    assert_eq!(answers(&db), expected);
    let title = QueryRequest::sparse("title", SparseVector::new(vec![1], vec![1.0]).unwrap(), 5);
    assert!(db.query(&title).unwrap().points.is_empty());
    db.upsert(vec![Point::new(1, vec![1.0, 0.0]).with_sparse(
        "title",
        SparseVector::new(vec![1], vec![2.0]).unwrap(),
    )])
    .unwrap();
    assert_eq!(db.query(&title).unwrap().points[0].score, 2.0);
    drop(db);
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn points_come_back_with_their_sparse_vectors_in_qdrants_shape() {
    let db = EmbeddedVectorDB::open(config()).unwrap();
    let v = SparseVector::new(vec![9, 2], vec![0.5, 1.5]).unwrap();
    db.upsert(vec![
        Point::new(1, vec![1.0, 0.0]).with_sparse("text", v.clone()),
        Point::new(2, vec![0.0, 1.0]),
    ])
    .unwrap();
    let records = db.get([1u64, 2]).unwrap();
    assert_eq!(
        serde_json::to_value(&records).unwrap(),
        serde_json::json!([
            {"id": 1, "payload": {}, "vector": {"": [1.0, 0.0], "text": {"indices": [2, 9], "values": [1.5, 0.5]}}},
            // Without sparse vectors, the dense one alone, as Qdrant writes it (checked with
            // Qdrant Edge: a point holding only the default vector comes back as a list).
            {"id": 2, "payload": {}, "vector": [0.0, 1.0]},
        ])
    );
    // Read back as they were written, and a point read back upserts unchanged.
    let json = serde_json::to_string(&records).unwrap();
    assert_eq!(
        serde_json::from_str::<Vec<grape_vector_db::Record>>(&json).unwrap(),
        records
    );
    let p = Point::from_json(&serde_json::to_value(&records[0]).unwrap()).unwrap();
    assert_eq!(p.sparse_vectors["text"], v);
    let mut q = QueryRequest::sparse("text", v, 1);
    q.with_vector = true;
    let hit = &db.query(&q).unwrap().points[0];
    assert_eq!(
        hit.sparse_vectors.as_ref().unwrap()["text"].indices(),
        &[2, 9]
    );
    // A database without sparse vectors keeps the plain array.
    let plain = EmbeddedVectorDB::open(EmbeddedConfig::builder(1).build().unwrap()).unwrap();
    plain.upsert(vec![Point::new(1, vec![1.0])]).unwrap();
    let json = serde_json::to_value(plain.get([1u64]).unwrap()).unwrap();
    assert_eq!(
        json,
        serde_json::json!([{"id": 1, "payload": {}, "vector": [1.0]}])
    );
}

/// BM25 built in: points and queries give text (Qdrant's document shape), the database makes
/// the vectors, and the answers are those of the vectors made by hand.
#[test]
fn text_in_bm25_out() {
    let bm25 = Bm25::new(Bm25Config::default()).unwrap();
    let built_in = EmbeddedVectorDB::open(
        EmbeddedConfig::builder(2)
            .sparse_vector("text", SparseVectorConfig::bm25())
            .build()
            .unwrap(),
    )
    .unwrap();
    let by_hand = EmbeddedVectorDB::open(config()).unwrap();
    let mut rng = Rng::new(22);
    let texts: Vec<String> = (0..500).map(|_| sentence(&mut rng)).collect();
    let points: Vec<Point> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            Point::from_json(&serde_json::json!({
                "id": i, "vector": {"": [1.0, i as f32], "text": {"text": t, "model": "qdrant/bm25"}}
            }))
            .unwrap()
        })
        .collect();
    built_in.upsert(points).unwrap();
    by_hand
        .upsert(
            texts
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    Point::new(i as u64, vec![1.0, i as f32])
                        .with_sparse("text", bm25.embed_document(t))
                })
                .collect(),
        )
        .unwrap();
    for _ in 0..50 {
        let text = sentence(&mut rng);
        let q: QueryRequest = serde_json::from_value(serde_json::json!({
            "query": {"text": text}, "using": "text", "limit": 10
        }))
        .unwrap();
        let manual = QueryRequest::sparse("text", bm25.embed_query(&text), 10);
        assert_eq!(built_in.query(&q).unwrap(), by_hand.query(&manual).unwrap());
    }
    // What is stored is the vector.
    let stored = &built_in.get([3u64]).unwrap()[0];
    assert_eq!(
        stored.sparse_vectors.as_ref().unwrap()["text"],
        bm25.embed_document(&texts[3])
    );
    // Text where no model applies, another model, or text and a vector at once: refused.
    let text_for = |name: &str, model: &str| serde_json::json!({"id": 9000, "vector": {"": [1.0, 0.0], name: {"text": "x", "model": model}}});
    assert!(matches!(
        Point::from_json(&text_for("text", "openai/text-embedding-3")),
        Err(Error::InvalidArgument(m)) if m.contains("qdrant/bm25")
    ));
    let no_model = by_hand.upsert(vec![
        Point::from_json(&text_for("text", "qdrant/bm25")).unwrap()
    ]);
    assert!(matches!(no_model, Err(Error::InvalidArgument(m)) if m.contains("takes no text")));
    let twice = Point::new(1, vec![1.0, 0.0])
        .with_sparse("text", SparseVector::new(vec![1], vec![1.0]).unwrap())
        .with_text("text", "red");
    assert!(
        matches!(built_in.upsert(vec![twice]), Err(Error::InvalidArgument(m)) if m.contains("twice"))
    );
    let dense_text: QueryRequest =
        serde_json::from_value(serde_json::json!({"query": {"text": "red"}})).unwrap();
    assert!(matches!(
        built_in.query(&dense_text),
        Err(Error::InvalidArgument(_))
    ));
    assert!(EmbeddedConfig::builder(2)
        .sparse_vector(
            "text",
            SparseVectorConfig {
                bm25: Some(Bm25Config {
                    b: 2.0,
                    ..Bm25Config::default()
                }),
                ..SparseVectorConfig::bm25()
            }
        )
        .build()
        .is_err());
}
