//! Named dense vectors through the public API (issue 20): searched by `using` over the points
//! that have them, kept by the log, segments, snapshots and archives, declared once in the
//! manifest, and read and written in Qdrant's JSON. Agreement with Qdrant itself is in
//! `tests/qdrant_conformance.rs`.

use grape_testkit::Rng;
use grape_vector_db::{
    CheckStatus, Distance, EmbeddedConfig, EmbeddedVectorDB, Error, Filter, Point, PointId,
    QueryRequest, Record, SearchParams, SearchRequest,
};
use serde_json::json;

/// Points 0.. with a 2-d vector, and a 6-d "img" vector unless `i` is a multiple of 3.
fn batch(rng: &mut Rng, first: u64, n: u64) -> Vec<Point> {
    (first..first + n)
        .map(|i| {
            let p = Point::new(i, vec![1.0, rng.signed()]);
            match i % 3 {
                0 => p,
                _ => p.with_named("img", (0..6).map(|_| rng.signed() * 2.0).collect()),
            }
        })
        .collect()
}

/// The ids and scores of `requests`' answers.
fn answers(db: &EmbeddedVectorDB, requests: &[SearchRequest]) -> Vec<Vec<(PointId, f32)>> {
    requests
        .iter()
        .map(|r| {
            let found = db.search(r).unwrap().result;
            found.iter().map(|p| (p.id, p.score)).collect()
        })
        .collect()
}

/// The "img" vectors nearest `q` by brute force, as Euclid scores them.
fn brute_force(points: &[Point], q: &[f32], k: usize) -> Vec<(PointId, f32)> {
    let mut scored: Vec<(PointId, f32)> = points
        .iter()
        .filter_map(|p| {
            let v = p.named_vectors.get("img")?;
            let d2: f32 = v.iter().zip(q).map(|(a, b)| (a - b) * (a - b)).sum();
            Some((p.id, d2.sqrt()))
        })
        .collect();
    scored.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    scored.truncate(k);
    scored
}

#[test]
fn named_vectors_are_searched_stored_and_declared_once() {
    let mut rng = Rng::new(20);
    let root = std::env::temp_dir().join(format!("grape-named-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let dir = root.join("db");
    let on_disk = |extra: Option<&str>| {
        let mut b =
            EmbeddedConfig::builder(2)
                .data_dir(&dir)
                .named_vector("img", 6, Distance::Euclid);
        if let Some(name) = extra {
            b = b.named_vector(name, 3, Distance::Dot);
        }
        b.build().unwrap()
    };
    let requests: Vec<SearchRequest> = (0..40)
        .map(|i| {
            let q = (0..6).map(|_| rng.signed() * 2.0).collect();
            let r = SearchRequest::new(q, 10).using("img");
            match i % 2 {
                0 => r,
                _ => r.with_filter(
                    Filter::from_json(&json!({"must": [{"key": "k", "match": {"value": 1}}]}))
                        .unwrap(),
                ),
            }
        })
        .collect();
    let db = EmbeddedVectorDB::open(on_disk(None)).unwrap();
    let mut points = batch(&mut rng, 0, 900);
    for p in &mut points {
        p.payload
            .insert("k".into(), json!(p.id.to_string().len() % 2));
    }
    db.upsert(points.clone()).unwrap();
    db.delete((0..900u64).step_by(7)).unwrap();
    points.retain(|p| !matches!(p.id, PointId::Num(i) if i % 7 == 0));
    // Exact answers equal a brute force over the points that have the vector.
    for r in requests.iter().filter(|r| r.filter.is_none()) {
        let exact = SearchRequest {
            params: SearchParams {
                exact: true,
                ..SearchParams::default()
            },
            ..r.clone()
        };
        let found = &answers(&db, std::slice::from_ref(&exact))[0];
        let want = brute_force(&points, &r.vector, 10);
        assert_eq!(found.len(), want.len());
        for (f, w) in found.iter().zip(&want) {
            assert_eq!(f.0, w.0);
            assert!((f.1 - w.1).abs() < 1e-4, "{f:?} vs {w:?}");
        }
    }
    let expected = answers(&db, &requests);
    drop(db);
    // The log alone.
    let db = EmbeddedVectorDB::open(on_disk(None)).unwrap();
    assert_eq!(answers(&db, &requests), expected);
    // A segment, then a segment and a log.
    db.checkpoint().unwrap();
    drop(db);
    let db = EmbeddedVectorDB::open(on_disk(None)).unwrap();
    assert_eq!(answers(&db, &requests), expected);
    db.upsert(batch(&mut rng, 1000, 200)).unwrap();
    let expected = answers(&db, &requests);
    drop(db);
    let db = EmbeddedVectorDB::open(on_disk(None)).unwrap();
    assert_eq!(answers(&db, &requests), expected);
    // A snapshot and an archive.
    for copy in grape_testkit::copies(&db, &root.join("snapshot"), &on_disk(None)) {
        assert_eq!(answers(&copy, &requests), expected);
    }
    drop(db);
    // The manifest keeps the declaration: an open that declares nothing searches the vector
    // as declared, from the log and from a segment alike; one that declares it otherwise is
    // refused, as its rows and graph were made for the stored one.
    let undeclared = || EmbeddedConfig {
        named_vectors: Default::default(),
        ..on_disk(None)
    };
    let otherwise = || {
        EmbeddedConfig::builder(2)
            .data_dir(&dir)
            .named_vector("img", 6, Distance::Cosine)
            .build()
            .unwrap()
    };
    for checkpoint in [false, true] {
        let db = EmbeddedVectorDB::open(undeclared()).unwrap();
        assert_eq!(answers(&db, &requests), expected);
        db.upsert(batch(&mut rng, 5000, 1)).unwrap();
        if checkpoint {
            db.checkpoint().unwrap();
        }
        drop(db);
        let refused = EmbeddedVectorDB::open(otherwise());
        assert!(matches!(refused, Err(Error::InvalidConfig(m)) if m.contains("\"img\"")));
    }
    // A vector declared later: the stored points have none of it.
    let db = EmbeddedVectorDB::open(on_disk(Some("title"))).unwrap();
    let title = SearchRequest::new(vec![1.0, 0.0, 0.0], 5).using("title");
    assert!(db.search(&title).unwrap().result.is_empty());
    db.upsert(vec![
        Point::new(1, vec![1.0, 0.0]).with_named("title", vec![2.0, 0.0, 1.0])
    ])
    .unwrap();
    assert_eq!(db.search(&title).unwrap().result[0].score, 2.0);
    drop(db);
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn points_come_back_with_their_named_vectors_in_qdrants_shape() {
    let config = EmbeddedConfig::builder(2)
        .distance(Distance::Dot)
        .named_vector("img", 3, Distance::Dot)
        .build()
        .unwrap();
    let db = EmbeddedVectorDB::open(config).unwrap();
    let point = Point::from_json(&json!(
        {"id": 1, "vector": {"": [1.0, 0.0], "img": [0.5, 0.25, 2.0]}}
    ))
    .unwrap();
    db.upsert(vec![point, Point::new(2, vec![0.0, 1.0])])
        .unwrap();
    let records = db.get([1u64, 2]).unwrap();
    assert_eq!(
        serde_json::to_value(&records).unwrap(),
        json!([
            {"id": 1, "payload": {}, "vector": {"": [1.0, 0.0], "img": [0.5, 0.25, 2.0]}},
            {"id": 2, "payload": {}, "vector": [0.0, 1.0]},
        ])
    );
    // Read back as they were written, and a point read back upserts unchanged.
    let text = serde_json::to_string(&records).unwrap();
    assert_eq!(serde_json::from_str::<Vec<Record>>(&text).unwrap(), records);
    let p = Point::from_json(&serde_json::to_value(&records[0]).unwrap()).unwrap();
    assert_eq!(p.named_vectors["img"], vec![0.5, 0.25, 2.0]);
    // The Query API: `using` a named vector, `with_vector` naming it, `has_vector`.
    let request: QueryRequest = serde_json::from_value(json!({
        "query": [1.0, 1.0, 1.0], "using": "img", "with_vector": ["img"], "limit": 5
    }))
    .unwrap();
    let found = db.query(&request).unwrap().points;
    assert_eq!(found.len(), 1, "point 2 has no img vector");
    assert_eq!(
        serde_json::to_value(&found[0]).unwrap(),
        json!({"id": 1, "score": 2.75, "vector": {"img": [0.5, 0.25, 2.0]}})
    );
    let request: QueryRequest = serde_json::from_value(json!({
        "query": [0.0, 1.0], "with_vector": ["img"], "limit": 5,
        "filter": {"must_not": [{"has_vector": "img"}]}
    }))
    .unwrap();
    let found = db.query(&request).unwrap().points;
    assert_eq!(
        serde_json::to_value(&found).unwrap(),
        json!([{"id": 2, "score": 1.0, "vector": {}}])
    );
    // Fusion of the unnamed and the named vector.
    let request: QueryRequest = serde_json::from_value(json!({
        "prefetch": [{"query": [0.0, 1.0]}, {"query": [1.0, 0.0, 0.0], "using": "img"}],
        "query": {"fusion": "rrf"}, "limit": 5
    }))
    .unwrap();
    let ids: Vec<PointId> = db
        .query(&request)
        .unwrap()
        .points
        .iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(
        ids,
        [PointId::Num(1), PointId::Num(2)],
        "1 is in both lists"
    );
}

#[test]
fn misuse_of_named_vectors_is_a_typed_error() {
    let config = |name: &str| {
        EmbeddedConfig::builder(2)
            .named_vector(name, 3, Distance::Cosine)
            .build()
    };
    assert!(matches!(config(""), Err(Error::InvalidConfig(_))));
    let both = EmbeddedConfig::builder(2)
        .named_vector("t", 3, Distance::Cosine)
        .sparse_vector("t", Default::default())
        .build();
    assert!(matches!(both, Err(Error::InvalidConfig(m)) if m.contains("\"t\"")));
    let huge = EmbeddedConfig::builder(2)
        .named_vector("img", 0, Distance::Dot)
        .build();
    assert!(matches!(huge, Err(Error::InvalidConfig(_))));
    let db = EmbeddedVectorDB::open(config("img").unwrap()).unwrap();
    for bad in [
        Point::new(1, vec![1.0, 0.0]).with_named("img", vec![1.0]),
        Point::new(1, vec![1.0, 0.0]).with_named("img", vec![0.0, 0.0, 0.0]),
        Point::new(1, vec![1.0, 0.0]).with_named("img", vec![f32::NAN, 0.0, 0.0]),
        Point::new(1, vec![1.0, 0.0]).with_named("audio", vec![1.0]),
    ] {
        assert!(matches!(
            db.upsert(vec![bad]),
            Err(Error::InvalidArgument(_))
        ));
    }
    assert_eq!(db.count(None).unwrap(), 0, "nothing was written");
    for bad in [
        SearchRequest::new(vec![1.0, 0.0], 1).using("img"),
        SearchRequest::new(vec![1.0, 0.0, 0.0], 1).using("audio"),
    ] {
        assert!(db.search(&bad).is_err());
    }
    let unknown: QueryRequest =
        serde_json::from_value(json!({"query": [1.0, 0.0], "with_vector": ["audio"]})).unwrap();
    assert!(matches!(db.query(&unknown), Err(Error::InvalidArgument(m)) if m.contains("audio")));
}

/// A database of named vectors only (Qdrant's collections declared with named vectors alone):
/// dimension 0, points carry their vectors by name without `""` (or none at all), searches
/// name the vector, and the rest works as with an unnamed vector: the log, a checkpoint, the
/// health check's self-search and the warm-up.
#[test]
fn a_database_of_named_vectors_only() {
    let root = std::env::temp_dir().join(format!("grape-named-only-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let config = || {
        EmbeddedConfig::builder(0)
            .named_vector("img", 3, Distance::Euclid)
            .named_vector("txt", 2, Distance::Dot)
            .data_dir(&root)
            .enable_warmup(true)
            .build()
            .unwrap()
    };
    let db = EmbeddedVectorDB::open(config()).unwrap();
    let points: Vec<Point> = [
        json!({"id": 1, "vector": {"img": [0.0, 0.0, 1.0], "txt": [1.0, 0.0]}}),
        json!({"id": 2, "vector": {"img": [3.0, 0.0, 0.0]}, "payload": {"k": 1}}),
        json!({"id": 3, "vector": {}}),
    ]
    .iter()
    .map(|p| Point::from_json(p).unwrap())
    .collect();
    db.upsert(points).unwrap();
    let near = SearchRequest::new(vec![3.0, 0.0, 1.0], 5)
        .using("img")
        .with_vector(true);
    let ids = |db: &EmbeddedVectorDB| -> Vec<PointId> {
        db.search(&near)
            .unwrap()
            .result
            .iter()
            .map(|p| p.id)
            .collect()
    };
    assert_eq!(ids(&db), [PointId::Num(2), PointId::Num(1)]);
    let unnamed = db.search(&SearchRequest::new(vec![1.0, 0.0], 5));
    assert!(matches!(unnamed, Err(Error::InvalidArgument(m)) if m.contains("using")));
    let with_unnamed =
        Point::from_json(&json!({"id": 4, "vector": {"": [1.0], "img": [1.0, 1.0, 1.0]}}));
    assert!(matches!(
        db.upsert(vec![with_unnamed.unwrap()]),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(
        serde_json::to_value(db.get([1u64, 3]).unwrap()).unwrap(),
        json!([
            {"id": 1, "payload": {}, "vector": {"img": [0.0, 0.0, 1.0], "txt": [1.0, 0.0]}},
            {"id": 3, "payload": {}, "vector": {}},
        ])
    );
    assert_engine_healthy(&db);
    drop(db);
    // The log, then a segment: warmed up at each open.
    for checkpoint in [false, true] {
        let db = EmbeddedVectorDB::open(config()).unwrap();
        assert_eq!(ids(&db), [PointId::Num(2), PointId::Num(1)]);
        assert_eq!(db.count(None).unwrap(), 3);
        if checkpoint {
            db.checkpoint().unwrap();
        }
    }
    let db = EmbeddedVectorDB::open(config()).unwrap();
    assert_eq!(ids(&db), [PointId::Num(2), PointId::Num(1)]);
    assert_engine_healthy(&db);
    drop(db);
    // Without its named vectors declared there is nothing to open it as.
    let none = EmbeddedConfig::builder(0).data_dir(&root).build();
    assert!(matches!(none, Err(Error::InvalidConfig(_))));
    std::fs::remove_dir_all(&root).unwrap();
}

/// The health check's engine part (a point found by its own vector) is healthy.
fn assert_engine_healthy(db: &EmbeddedVectorDB) {
    let health = db.health();
    let engine = health.checks.iter().find(|c| c.name == "engine").unwrap();
    assert_eq!(engine.status, CheckStatus::Healthy, "{}", engine.message);
}
