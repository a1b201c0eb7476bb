//! Sparse vectors through the public API (issue 20): compaction, replacements and deletes
//! leave the same answers as a database that only ever held the live points, and every misuse
//! is a typed error. Agreement with Qdrant itself is in `tests/qdrant_conformance.rs`.

use grape_testkit::Rng;
use grape_vector_db::{
    Bm25, Bm25Config, EmbeddedConfig, EmbeddedVectorDB, Error, Modifier, Point, PointId,
    QueryRequest, QueryVector, SparseVector, SparseVectorConfig,
};

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
    let dir = std::env::temp_dir().join(format!("grape-sparse-{}", std::process::id()));
    let with_dir = EmbeddedConfig::builder(2)
        .data_dir(&dir)
        .sparse_vector("text", SparseVectorConfig::default())
        .build();
    assert!(matches!(with_dir, Err(Error::InvalidConfig(m)) if m.contains("memory only")));
    assert!(!dir.exists());
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
        q.query = query;
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
    // Storing would lose the sparse vectors: refused until they have a format.
    let snapshot = db.snapshot(&dir);
    assert!(matches!(snapshot, Err(Error::InvalidConfig(m)) if m.contains("memory only")));
    assert!(db.export_archive().is_err());
    let _ = std::fs::remove_dir_all(&dir);
}
