//! The shared test vectors (`tests/vectors/shared.json`) through the Rust API. The wasm suites
//! run the same file through the JS API: both must give these answers and error codes.

use grape_vector_db::{
    Distance, EmbeddedConfig, EmbeddedVectorDB, Filter, Point, PointId, SearchRequest,
};
use serde_json::Value;

fn ids(v: &Value) -> Vec<PointId> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|id| PointId::from_json(id).unwrap())
        .collect()
}

fn request(case: &Value) -> Result<SearchRequest, grape_vector_db::Error> {
    let query: Vec<f32> = serde_json::from_value(case["query"].clone()).unwrap();
    let mut r = SearchRequest::new(query, case["limit"].as_u64().unwrap() as usize);
    if !case["filter"].is_null() {
        r = r.with_filter(Filter::from_json(&case["filter"])?);
    }
    Ok(r)
}

#[test]
fn shared_vectors_native() {
    let v: Value = serde_json::from_str(include_str!("vectors/shared.json")).unwrap();
    let distance: Distance = serde_json::from_value(v["distance"].clone()).unwrap();
    let db = EmbeddedVectorDB::open(
        EmbeddedConfig::builder(v["dimension"].as_u64().unwrap() as usize)
            .distance(distance)
            .build()
            .unwrap(),
    )
    .unwrap();
    let points: Vec<Point> = v["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| Point::from_json(p).unwrap())
        .collect();
    db.upsert(points).unwrap();
    for case in v["searches"].as_array().unwrap() {
        let found = db.search(&request(case).unwrap()).unwrap();
        let got: Vec<PointId> = found.result.iter().map(|p| p.id).collect();
        assert_eq!(got, ids(&case["expect"]), "{case}");
    }
    for case in v["bad_searches"].as_array().unwrap() {
        let err = request(case)
            .and_then(|r| db.search(&r))
            .expect_err(&case.to_string());
        assert_eq!(err.code(), case["code"], "{case}: {err}");
    }
    for case in v["bad_points"].as_array().unwrap() {
        let err = case["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(Point::from_json)
            .collect::<Result<Vec<_>, _>>()
            .and_then(|pts| db.upsert(pts))
            .expect_err(&case.to_string());
        assert_eq!(err.code(), case["code"], "{case}: {err}");
    }
    assert_eq!(db.count(None).unwrap(), 5);
}
