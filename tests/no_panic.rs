//! No user input may panic: arbitrary requests, points and JSON get `Ok` or a typed `Error`.

use grape_testkit as testkit;

use grape_vector_db::{
    Distance, EmbeddedConfig, EmbeddedVectorDB, Error, Filter, Point, PointId, ScrollRequest,
    SearchRequest,
};
use serde_json::{json, Value};
use testkit::Rng;

/// Nasty floats: the ones that break naive code.
fn weird_float(rng: &mut Rng) -> f32 {
    let ordinary = rng.signed();
    rng.pick(&[
        0.0,
        -0.0,
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::MIN_POSITIVE,
        1e-45,
        f32::MAX,
        f32::MIN,
        1.0,
        -1.0,
        ordinary,
    ])
}

fn vector(rng: &mut Rng, dim: usize) -> Vec<f32> {
    let len = match rng.below(6) {
        0 => 0,
        1 => dim + 1 + rng.below(3),
        2 => dim.saturating_sub(1),
        _ => dim,
    };
    (0..len)
        .map(|_| {
            if rng.chance(0.1) {
                weird_float(rng)
            } else {
                rng.signed()
            }
        })
        .collect()
}

/// Random JSON, biased towards the words and shapes filters use, so the parser's deeper
/// paths are reached rather than failing on the first key.
fn junk(rng: &mut Rng, depth: u32) -> Value {
    const KEYS: [&str; 16] = [
        "must",
        "should",
        "must_not",
        "min_should",
        "key",
        "match",
        "range",
        "value",
        "any",
        "except",
        "text",
        "has_id",
        "is_empty",
        "is_null",
        "nested",
        "filter",
    ];
    let leaf = |rng: &mut Rng| match rng.below(8) {
        0 => Value::Null,
        1 => json!(rng.chance(0.5)),
        2 => json!(rng.below(10) as i64 - 3),
        3 => json!(rng.signed() * 1e6),
        4 => json!(u64::MAX),
        5 => json!(rng.pick(&[
            "a",
            "a.b",
            "a[]",
            "a[",
            "a..b",
            "",
            "a[x]",
            "tags[].name",
            "550e8400-e29b-41d4-a716-446655440000"
        ])),
        6 => json!("min_count"),
        _ => json!(rng.pick(&KEYS)),
    };
    if depth > 4 {
        return leaf(rng);
    }
    match rng.below(4) {
        0 => leaf(rng),
        1 => Value::Array((0..rng.below(4)).map(|_| junk(rng, depth + 1)).collect()),
        _ => {
            let mut m = serde_json::Map::new();
            for _ in 0..rng.below(4) {
                m.insert(rng.pick(&KEYS).to_string(), junk(rng, depth + 1));
            }
            if rng.chance(0.2) {
                m.insert("min_count".into(), json!(rng.below(3)));
            }
            Value::Object(m)
        }
    }
}

#[test]
fn arbitrary_requests_return_ok_or_a_typed_error() {
    let mut rng = Rng::new(7);
    let mut errors = std::collections::BTreeMap::<&'static str, usize>::new();
    let mut note = |r: Result<(), Error>| {
        if let Err(e) = r {
            assert!(!e.to_string().is_empty());
            *errors.entry(e.code()).or_default() += 1;
        }
    };
    for distance in [
        Distance::Cosine,
        Distance::Dot,
        Distance::Euclid,
        Distance::Manhattan,
    ] {
        let dim = 1 + rng.below(8);
        let db = EmbeddedVectorDB::open(
            EmbeddedConfig::builder(dim)
                .distance(distance)
                .max_points(300)
                .max_search_limit(50)
                .build()
                .unwrap(),
        )
        .unwrap();
        for _ in 0..3000 {
            match rng.below(7) {
                0 | 1 => {
                    let pts = (0..rng.below(5))
                        .map(|_| {
                            let id = PointId::Num(rng.below(400) as u64);
                            Point::new(id, vector(&mut rng, dim))
                        })
                        .collect();
                    note(db.upsert(pts).map(drop));
                }
                2 => {
                    let mut req = SearchRequest::new(vector(&mut rng, dim), rng.below(60));
                    req.offset = rng.pick(&[0, 1, 30, usize::MAX]);
                    req.score_threshold = rng.chance(0.3).then(|| weird_float(&mut rng));
                    req.params.hnsw_ef = rng.chance(0.2).then(|| rng.below(3));
                    if let Ok(f) = Filter::from_json(&junk(&mut rng, 0)) {
                        req.filter = Some(f);
                    }
                    note(db.search(&req).map(drop));
                }
                3 => {
                    // Whole requests from JSON, as a JS or HTTP caller would send them.
                    let mut v = json!({"vector": vector(&mut rng, dim), "limit": rng.below(70)});
                    if rng.chance(0.7) {
                        v["filter"] = junk(&mut rng, 0);
                    }
                    match serde_json::from_value::<SearchRequest>(v) {
                        Ok(req) => note(db.search(&req).map(drop)),
                        Err(e) => assert!(!e.to_string().is_empty()),
                    }
                }
                4 => {
                    let f = junk(&mut rng, 0);
                    match Filter::from_json(&f) {
                        Ok(f) => {
                            db.count(Some(&f)).unwrap();
                            if rng.chance(0.1) {
                                note(db.delete_by_filter(&f).map(drop));
                            }
                            let req = ScrollRequest {
                                limit: rng.below(70),
                                filter: Some(f),
                                offset: rng
                                    .chance(0.5)
                                    .then(|| PointId::Num(rng.below(400) as u64)),
                                ..ScrollRequest::default()
                            };
                            note(db.scroll(&req).map(drop));
                        }
                        Err(e) => note(Err(e)),
                    }
                }
                5 => {
                    let payload = junk(&mut rng, 1);
                    note(db.set_payload([rng.below(400) as u64], payload));
                }
                _ => {
                    let raw = json!({"id": junk(&mut rng, 3), "vector": vector(&mut rng, dim), "payload": junk(&mut rng, 2)});
                    if let Ok(p) = serde_json::from_value::<Point>(raw) {
                        note(db.upsert(vec![p]).map(drop));
                    }
                }
            }
        }
        db.compact().unwrap();
        assert!(db.count(None).unwrap() <= 300);
    }
    // The generator must reach the interesting error paths, or this test proves little.
    for code in [
        "DimensionMismatch",
        "NonFiniteComponent",
        "MalformedFilter",
        "InvalidArgument",
        "LimitExceeded",
        "UnknownId",
        "PayloadNotObject",
    ] {
        assert!(
            errors.contains_key(code),
            "never produced {code}: {errors:?}"
        );
    }
}
