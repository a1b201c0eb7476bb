//! Helpers of the wasm suites (Node, page, dedicated worker): drive the JS API (`GrapeDB`) from
//! Rust as a JS program would, with JS values.
#![allow(dead_code)]

use grape_vector_db::GrapeDB;
use js_sys::{Float32Array, Reflect, JSON};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

/// A JS value from JSON text.
pub fn js(json: &str) -> JsValue {
    JSON::parse(json).unwrap_or_else(|e| panic!("bad JSON in a test: {json}: {e:?}"))
}

/// A JS value as JSON text.
pub fn text(v: &JsValue) -> String {
    JSON::stringify(v).map(String::from).unwrap_or_default()
}

pub async fn open(options: &str) -> Result<GrapeDB, JsValue> {
    GrapeDB::connect(js(options)).await
}

pub async fn done(p: js_sys::Promise) -> Result<JsValue, JsValue> {
    JsFuture::from(p).await
}

/// The `code` of a thrown error.
pub fn code(e: &JsValue) -> String {
    Reflect::get(e, &"code".into())
        .ok()
        .and_then(|c| c.as_string())
        .unwrap_or_else(|| format!("no code on {e:?}"))
}

pub fn ids(found: &JsValue) -> String {
    let arr: js_sys::Array = found.clone().unchecked_into();
    let ids: Vec<String> = arr
        .iter()
        .map(|p| text(&Reflect::get(&p, &"id".into()).unwrap()))
        .collect();
    format!("[{}]", ids.join(","))
}

/// Runs `tests/vectors/shared.json` through the JS API: the same answers and error codes as
/// the Rust API gives in `tests/shared_vectors.rs`.
pub async fn shared_vectors(storage: &str) {
    let v = js(include_str!("../../tests/vectors/shared.json"));
    let get = |o: &JsValue, k: &str| Reflect::get(o, &k.into()).unwrap();
    let db = open(&format!(
        r#"{{"name": "shared-{storage}", "dimension": 3, "distance": "Euclid", "storage": "{storage}"}}"#
    ))
    .await
    .unwrap();
    db.upsert(get(&v, "points")).unwrap();
    let options = |case: &JsValue| {
        let o = js_sys::Object::new();
        Reflect::set(&o, &"limit".into(), &get(case, "limit")).unwrap();
        let filter = get(case, "filter");
        if !filter.is_undefined() {
            Reflect::set(&o, &"filter".into(), &filter).unwrap();
        }
        JsValue::from(o)
    };
    let query = |case: &JsValue| {
        let q: js_sys::Array = get(case, "query").unchecked_into();
        Float32Array::from(
            &q.iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect::<Vec<_>>()[..],
        )
        .to_vec()
    };
    let searches: js_sys::Array = get(&v, "searches").unchecked_into();
    for case in searches.iter() {
        let found = db.search(query(&case), Some(options(&case))).unwrap();
        assert_eq!(ids(&found), text(&get(&case, "expect")), "{}", text(&case));
    }
    let bad: js_sys::Array = get(&v, "bad_searches").unchecked_into();
    for case in bad.iter() {
        let err = db.search(query(&case), Some(options(&case))).unwrap_err();
        assert_eq!(
            code(&err),
            get(&case, "code").as_string().unwrap(),
            "{}",
            text(&case)
        );
    }
    let bad: js_sys::Array = get(&v, "bad_points").unchecked_into();
    for case in bad.iter() {
        let err = db.upsert(get(&case, "points")).unwrap_err();
        assert_eq!(
            code(&err),
            get(&case, "code").as_string().unwrap(),
            "{}",
            text(&case)
        );
    }
    assert_eq!(db.count(None).unwrap(), 5);
    done(db.close()).await.unwrap();
    done(GrapeDB::destroy(format!("shared-{storage}")))
        .await
        .unwrap();
}

/// `n` points of dimension `dim` with a payload, as a JS array (`Float32Array` vectors).
pub fn points(from: u32, n: u32, dim: usize) -> JsValue {
    let arr = js_sys::Array::new();
    for i in from..from + n {
        let p = js_sys::Object::new();
        Reflect::set(&p, &"id".into(), &i.into()).unwrap();
        let v: Vec<f32> = (0..dim)
            .map(|d| ((i as usize * 31 + d * 17) % 97) as f32 / 97.0 - 0.5)
            .collect();
        Reflect::set(&p, &"vector".into(), &Float32Array::from(&v[..])).unwrap();
        Reflect::set(
            &p,
            &"payload".into(),
            &js(&format!(r#"{{"i": {i}, "even": {}}}"#, i % 2 == 0)),
        )
        .unwrap();
        arr.push(&p);
    }
    arr.into()
}
