//! The JS API in Node (memory storage): round trip, errors with codes, shared test vectors,
//! export and import of a database as bytes. `cargo test --target wasm32-unknown-unknown`.
#![cfg(target_arch = "wasm32")]

use grape_testkit::js::*;
use grape_vector_db::{id_from_string, GrapeDB};
use wasm_bindgen::JsValue;
use wasm_bindgen_test::wasm_bindgen_test;

#[wasm_bindgen_test]
async fn round_trip_in_memory() {
    let db = open(r#"{"dimension": 8, "storage": "auto"}"#)
        .await
        .unwrap();
    let stats = db.stats().unwrap();
    assert_eq!(
        text(&js_sys::Reflect::get(&stats, &"backend".into()).unwrap()),
        "\"memory\""
    );
    let summary = db.upsert(points(0, 50, 8)).unwrap();
    assert_eq!(text(&summary), r#"{"inserted":50,"updated":0}"#);
    let q: Vec<f32> = (0..8)
        .map(|d| ((7 * 31 + d * 17) % 97) as f32 / 97.0 - 0.5)
        .collect();
    let found = db.search(q.clone(), Some(js(r#"{"limit": 3}"#))).unwrap();
    assert!(ids(&found).starts_with("[7,"), "{}", ids(&found));
    let even = db
        .search(
            q.clone(),
            Some(js(
                r#"{"limit": 3, "filter": {"must": [{"key": "even", "match": {"value": true}}]}}"#,
            )),
        )
        .unwrap();
    assert!(!ids(&even).contains("7"), "{}", ids(&even));
    assert_eq!(
        db.count(Some(js(r#"{"must": [{"key": "i", "range": {"lt": 10}}]}"#)))
            .unwrap(),
        10
    );
    let page = db
        .scroll(Some(js(r#"{"limit": 2, "offset": 10, "filter": {"must": [{"key": "even", "match": {"value": true}}]}}"#)))
        .unwrap();
    assert_eq!(text(&page).matches(r#""id""#).count(), 2, "{}", text(&page));
    assert!(
        text(&page).contains(r#""next_page_offset":14"#),
        "{}",
        text(&page)
    );
    let got = db.get(js("[3, 999]")).unwrap();
    assert_eq!(ids(&got), "[3]");
    assert_eq!(db.delete(js("[1, 2, 999]")).unwrap(), 2);
    assert_eq!(
        db.delete_by_filter(js(r#"{"must": [{"key": "i", "range": {"gte": 40}}]}"#))
            .unwrap(),
        10
    );
    assert_eq!(db.count(None).unwrap(), 38);
    let batch = db
        .search_batch(
            js_sys::Array::of2(
                &js_sys::Float32Array::from(&q[..]),
                &js_sys::Float32Array::from(&q[..]),
            ),
            None,
        )
        .unwrap();
    assert_eq!(js_sys::Array::from(&batch).length(), 2);
    assert_eq!(db.state(), "Ready");
    let report = done(db.close()).await.unwrap();
    assert!(text(&report).contains("hook_errors"));
    assert_eq!(db.state(), "Closed");
    let err = db.count(None).unwrap_err();
    assert_eq!(code(&err), "Closed");
    assert!(js_sys::Error::from(err)
        .message()
        .as_string()
        .unwrap()
        .contains("closed"));
}

#[wasm_bindgen_test]
async fn bad_options_are_errors_with_codes() {
    for (options, expected) in [
        (r#"{"dimension": 0}"#, "InvalidConfig"),
        (r#"{"dimension": 3, "storage": "floppy"}"#, "InvalidConfig"),
        (r#"{"dimension": 3, "durability": "sync"}"#, "InvalidConfig"),
        (r#"{"dimension": 3, "unknownOption": 1}"#, "InvalidConfig"),
        (
            r#"{"dimension": 3, "quantization": "sq4"}"#,
            "InvalidConfig",
        ),
        (
            r#"{"dimension": 3, "quantization": "sq8", "hnsw": false}"#,
            "InvalidConfig",
        ),
        (
            r#"{"dimension": 3, "logRecovery": "maybe"}"#,
            "InvalidConfig",
        ),
    ] {
        let err = open(options)
            .await
            .err()
            .unwrap_or_else(|| panic!("{options} opened"));
        assert_eq!(code(&err), expected, "{options}");
    }
}

#[wasm_bindgen_test]
async fn shared_vectors_in_node() {
    shared_vectors("memory").await;
}

#[wasm_bindgen_test]
async fn export_and_import_bytes() {
    let db = open(r#"{"dimension": 8}"#).await.unwrap();
    db.upsert(points(0, 30, 8)).unwrap();
    let bytes = db.export_bytes().unwrap();
    let options = js(r#"{"dimension": 8}"#);
    js_sys::Reflect::set(&options, &"import".into(), &bytes).unwrap();
    let copy = GrapeDB::connect(options).await.unwrap();
    assert_eq!(copy.count(None).unwrap(), 30);
    let broken = js(r#"{"dimension": 8}"#);
    js_sys::Reflect::set(
        &broken,
        &"import".into(),
        &js_sys::Uint8Array::from(&b"garbage"[..]),
    )
    .unwrap();
    let err = GrapeDB::connect(broken).await.err().unwrap();
    assert_eq!(code(&err), "Corrupt");
}

#[wasm_bindgen_test]
async fn quantized_search_through_the_js_options() {
    // 8 bits tell these vectors apart poorly: binary codes are walked with a wider beam, and
    // more of it is re-scored to find the exact answer.
    for (coding, ef, oversampling) in [("sq8", 64, 3), ("binary", 500, 100)] {
        quantized_search(coding, ef, oversampling).await;
    }
}

async fn quantized_search(coding: &str, ef: usize, oversampling: usize) {
    // Past the full-scan threshold, so the graph and its codes answer.
    let options = format!(
        r#"{{"dimension": 8, "quantization": "{coding}", "hnsw": {{"fullScanThreshold": 100}}}}"#
    );
    let db = open(&options).await.unwrap();
    db.upsert(points(0, 1_000, 8)).unwrap();
    let q: Vec<f32> = (0..8)
        .map(|d| ((7 * 31 + d * 17) % 97) as f32 / 97.0 - 0.5)
        .collect();
    // The test points repeat every 97 ids, so ties make ids differ in order: compare scores.
    let scores = |found: JsValue| {
        let found: serde_json::Value = serde_json::from_str(&text(&found)).unwrap();
        let all = found.as_array().unwrap().iter();
        all.map(|p| p["score"].as_f64().unwrap())
            .collect::<Vec<_>>()
    };
    let exact = scores(
        db.search(q.clone(), Some(js(r#"{"limit": 5, "exact": true}"#)))
            .unwrap(),
    );
    // Re-scored with the vectors: the exact answer's scores.
    let plain = format!(r#"{{"limit": 5, "ef": {ef}}}"#);
    let coded = db.search(q.clone(), Some(js(&plain))).unwrap();
    assert_eq!(scores(coded), exact, "{coding}");
    let tuned = format!(
        r#"{{"limit": 5, "ef": {ef}, "quantization": {{"rescore": true, "oversampling": {oversampling}}}}}"#
    );
    assert_eq!(
        scores(db.search(q.clone(), Some(js(&tuned))).unwrap()),
        exact,
        "{coding}"
    );
    for (options, complaint) in [
        (
            r#"{"quantization": {"oversample": 2}}"#,
            "unknown field `oversample`",
        ),
        (r#"{"quantization": {"oversampling": 0.5}}"#, "at least 1"),
    ] {
        let err = db.search(q.clone(), Some(js(options))).unwrap_err();
        let message = text(&js_sys::Reflect::get(&err, &"message".into()).unwrap());
        assert!(message.contains(complaint), "{options}: {message}");
    }
}

#[wasm_bindgen_test]
async fn misspelt_search_options_are_refused() {
    let db = open(r#"{"dimension": 2}"#).await.unwrap();
    let err = db
        .search(
            vec![1.0, 0.0],
            Some(js(r#"{"limit": 1, "withPayloads": true}"#)),
        )
        .unwrap_err();
    assert_eq!(code(&err), "MalformedRequest");
    assert!(text(&js_sys::Reflect::get(&err, &"message".into()).unwrap()).contains("withPayloads"));
}

#[wasm_bindgen_test]
async fn search_options_are_checked_one_by_one() {
    let db = open(r#"{"dimension": 2}"#).await.unwrap();
    db.upsert(js(r#"[{"id": 1, "vector": [1, 0], "payload": {"n": 1}}, {"id": 2, "vector": [0, 1]}, {"id": 3, "vector": [1, 1]}]"#))
        .unwrap();
    // Payloads come back unless asked not to (the JS API's default; the demo relies on it).
    let found = db
        .search(vec![1.0, 0.0], Some(js(r#"{"limit": 1}"#)))
        .unwrap();
    assert_eq!(text(&found), r#"[{"id":1,"score":1,"payload":{"n":1}}]"#);
    let found = db.search(vec![1.0, 0.0], None).unwrap();
    assert!(
        text(&found).starts_with(r#"[{"id":1,"score":1,"payload":{"n":1}}"#),
        "{}",
        text(&found)
    );
    for (options, complaint) in [
        (r#"{"limit": -1}"#, "limit: expected a non-negative integer"),
        (
            r#"{"limit": 1.5}"#,
            "limit: expected a non-negative integer",
        ),
        (
            r#"{"offset": "2"}"#,
            "offset: expected a non-negative integer",
        ),
        (r#"{"ef": 1e300}"#, "ef: expected a non-negative integer"),
        (r#"{"exact": 1}"#, "exact: expected true or false"),
        (
            r#"{"withVector": "yes"}"#,
            "withVector: expected true or false",
        ),
        (
            r#"{"scoreThreshold": "high"}"#,
            "scoreThreshold: expected a number",
        ),
        ("[1]", "unknown field `0`"),
        ("7", "expected an object"),
    ] {
        let err = db.search(vec![1.0, 0.0], Some(js(options))).unwrap_err();
        assert_eq!(code(&err), "MalformedRequest", "{options}");
        let message = text(&js_sys::Reflect::get(&err, &"message".into()).unwrap());
        assert!(message.contains(complaint), "{options}: {message}");
    }
    // null and undefined options are options not given; the others take effect.
    let found = db
        .search(
            vec![1.0, 0.0],
            Some(js(r#"{"limit": null, "ef": null, "filter": null}"#)),
        )
        .unwrap();
    assert_eq!(ids(&found), "[1,3,2]");
    let found = db
        .search(
            vec![1.0, 0.0],
            Some(js(
                r#"{"limit": 1, "offset": 1, "exact": true, "withVector": true}"#,
            )),
        )
        .unwrap();
    assert_eq!(ids(&found), "[3]");
    assert!(text(&found).contains("\"vector\":[0.7"), "{}", text(&found));
    let found = db
        .search(
            vec![1.0, 0.0],
            Some(js(r#"{"scoreThreshold": 0.5, "withPayload": false}"#)),
        )
        .unwrap();
    assert_eq!(ids(&found), "[1,3]");
    let queries = js_sys::Array::of2(
        &js_sys::Float32Array::from(&[0.0f32, 1.0][..]),
        &js_sys::Float32Array::from(&[1.0f32, 0.0][..]),
    );
    let batch = db
        .search_batch(queries, Some(js(r#"{"limit": 1, "withPayload": false}"#)))
        .unwrap();
    assert_eq!(
        text(&batch),
        r#"[[{"id":2,"score":1}],[{"id":1,"score":1}]]"#
    );
}

#[wasm_bindgen_test]
async fn export_points_walks_the_database_in_qdrant_upsert_batches() {
    let db = open(r#"{"dimension": 4}"#).await.unwrap();
    db.upsert(points(0, 25, 4)).unwrap();
    let mut offset = JsValue::NULL;
    let mut seen = 0;
    loop {
        let options = js_sys::Object::new();
        js_sys::Reflect::set(&options, &"limit".into(), &10.into()).unwrap();
        js_sys::Reflect::set(&options, &"offset".into(), &offset).unwrap();
        let batch = db.export_points(Some(options.into())).unwrap();
        let points: js_sys::Array = js_sys::Reflect::get(&batch, &"points".into())
            .unwrap()
            .into();
        for p in points.iter() {
            // A Qdrant point: id, vector and payload, nothing else.
            let keys: Vec<String> = js_sys::Object::keys(&p.into())
                .iter()
                .map(|k| k.as_string().unwrap())
                .collect();
            assert_eq!(keys, ["id", "payload", "vector"]);
        }
        seen += points.length();
        offset = js_sys::Reflect::get(&batch, &"next_page_offset".into()).unwrap();
        if offset.is_null() {
            break;
        }
    }
    assert_eq!(seen, 25);
    let err = db
        .export_points(Some(js(r#"{"filter": {"must": [{"has_id": [1]}]}}"#)))
        .unwrap_err();
    assert_eq!(code(&err), "MalformedRequest");
}

#[wasm_bindgen_test]
async fn string_keys_become_ids_through_id_from_string() {
    // The same UUID as `PointId::from_name` in Rust and Python's uuid5 (see src/point.rs).
    assert_eq!(
        id_from_string("note-1"),
        "4ab00615-3876-5be4-9fff-3f43b7be16f5"
    );
    let db = open(r#"{"dimension": 2}"#).await.unwrap();
    let err = db
        .upsert(js(r#"[{"id": "note-1", "vector": [1, 0]}]"#))
        .unwrap_err();
    assert_eq!(code(&err), "InvalidPointId");
    let message = text(&js_sys::Reflect::get(&err, &"message".into()).unwrap());
    assert!(message.contains("idFromString"), "{message}");
    let id = id_from_string("note-1");
    let point = format!(r#"[{{"id": "{id}", "vector": [1, 0], "payload": {{"key": "note-1"}}}}]"#);
    db.upsert(js(&point)).unwrap();
    let found = db.get(js(&format!(r#"["{id}"]"#))).unwrap();
    assert!(
        text(&found).contains(r#""key":"note-1""#),
        "{}",
        text(&found)
    );
    done(db.close()).await.unwrap();
}

#[wasm_bindgen_test]
async fn upload_points_writes_in_batches_reports_progress_and_yields() {
    let db = open(r#"{"dimension": 8}"#).await.unwrap();
    let seen = js_sys::Array::new();
    let progress =
        js_sys::Function::new_with_args("done, total", "this.push([done, total])").bind0(&seen);
    // A timer set before the upload fires before it ends only if the upload yields.
    let timer_fired = js_sys::Array::new();
    let mark = js_sys::Function::new_no_args("this.push(1)").bind0(&timer_fired);
    let set_timeout: js_sys::Function =
        js_sys::Reflect::get(&js_sys::global(), &"setTimeout".into())
            .unwrap()
            .into();
    set_timeout.call2(&JsValue::NULL, &mark, &0.into()).unwrap();
    let options = js_sys::Object::new();
    js_sys::Reflect::set(&options, &"batchSize".into(), &100.into()).unwrap();
    js_sys::Reflect::set(&options, &"onProgress".into(), &progress).unwrap();
    let summary = done(db.upload_points(points(0, 1_000, 8), Some(options.into())))
        .await
        .unwrap();
    assert_eq!(text(&summary), r#"{"inserted":1000,"updated":0}"#);
    assert_eq!(timer_fired.length(), 1, "the upload gave the thread back");
    let expected: Vec<String> = (1..=10).map(|i| format!("[{},1000]", i * 100)).collect();
    assert_eq!(text(&seen), format!("[{}]", expected.join(",")));
    assert_eq!(db.count(None).unwrap(), 1_000);

    // A bad point in the third batch: the first two stay written, and the error has its code.
    let batch = js_sys::Array::from(&points(2_000, 300, 8));
    batch.set(250, js(r#"{"id": 5000, "vector": [1, 2]}"#));
    let options = js(r#"{"batchSize": 100}"#);
    let err = done(db.upload_points(batch.into(), Some(options)))
        .await
        .unwrap_err();
    assert_eq!(code(&err), "DimensionMismatch");
    assert_eq!(db.count(None).unwrap(), 1_200);
    for bad in [
        r#"{"batchSize": 0}"#,
        r#"{"batchsize": 10}"#,
        r#"{"onProgress": 1}"#,
    ] {
        let err = done(db.upload_points(points(0, 1, 8), Some(js(bad))))
            .await
            .unwrap_err();
        assert_eq!(code(&err), "MalformedRequest", "{bad}");
    }
    done(db.close()).await.unwrap();
}

/// WebAssembly memory never shrinks, so whatever a load borrows stays with the page: the
/// memory grown by a load in batches (as apps and `uploadPoints` write) must stay near what
/// the database holds. The vector arena used to grow by copying into a block 1.5x larger, and
/// each old block stayed behind: 100K x 384 took 473 MiB of memory for 203 MiB held.
#[wasm_bindgen_test]
fn a_load_in_batches_grows_memory_by_little_more_than_it_holds() {
    use grape_vector_db::{EmbeddedConfig, EmbeddedVectorDB, Point};
    use wasm_bindgen::JsCast;
    let memory = || {
        wasm_bindgen::memory()
            .unchecked_into::<js_sys::WebAssembly::Memory>()
            .buffer()
            .unchecked_into::<js_sys::ArrayBuffer>()
            .byte_length() as f64
    };
    let db =
        EmbeddedVectorDB::open(EmbeddedConfig::builder(384).hnsw(None).build().unwrap()).unwrap();
    let before = memory();
    for batch in 0..26u64 {
        db.upsert(
            (batch * 1000..(batch + 1) * 1000)
                .map(|i| Point::new(i, (0..384).map(|d| ((i + d) % 13) as f32 + 1.0).collect()))
                .collect(),
        )
        .unwrap();
    }
    let grown = memory() - before;
    let held = db.stats().memory.total() as f64;
    assert!(
        grown <= 1.3 * held,
        "memory grew {:.1} MiB for {:.1} MiB held",
        grown / 1048576.0,
        held / 1048576.0
    );
}
