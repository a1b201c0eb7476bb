//! The JS API in a page of headless Chromium: IndexedDB storage (what `auto` picks on the main
//! thread), data surviving close and reopen, one writer per database (Web Locks), read-only
//! opens, the shared test vectors.
#![cfg(target_arch = "wasm32")]

use grape_testkit::js::*;
use grape_vector_db::GrapeDB;
use js_sys::Reflect;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

fn backend(db: &GrapeDB) -> String {
    text(&Reflect::get(&db.stats().unwrap(), &"backend".into()).unwrap())
}

#[wasm_bindgen_test]
async fn indexeddb_data_survives_close_and_reopen() {
    let options = r#"{"name": "page-reopen", "dimension": 16, "storage": "auto", "payloadIndexes": ["even"]}"#;
    let db = open(options).await.unwrap();
    assert_eq!(backend(&db), "\"indexeddb\"");
    db.upsert(points(0, 300, 16)).unwrap();
    assert_eq!(db.delete(js("[5, 6]")).unwrap(), 2);
    done(db.flush()).await.unwrap();
    db.upsert(points(300, 20, 16)).unwrap();
    // Close flushes what the timer has not.
    done(db.close()).await.unwrap();

    let db = open(options).await.unwrap();
    assert_eq!(db.count(None).unwrap(), 318);
    let report = text(&db.open_report().unwrap());
    assert!(report.contains(r#""created":false"#), "{report}");
    assert_eq!(ids(&db.get(js("[5, 7, 319]")).unwrap()), "[7,319]");
    done(db.close()).await.unwrap();
    done(GrapeDB::destroy("page-reopen".into())).await.unwrap();
    let db = open(options).await.unwrap();
    assert_eq!(db.count(None).unwrap(), 0, "destroyed");
    done(db.close()).await.unwrap();
}

#[wasm_bindgen_test]
async fn a_second_writer_is_refused_and_read_only_sees_the_last_flush() {
    let options = r#"{"name": "page-two", "dimension": 4, "storage": "indexeddb"}"#;
    let first = open(options).await.unwrap();
    first.upsert(points(0, 10, 4)).unwrap();
    done(first.flush()).await.unwrap();
    let err = open(options)
        .await
        .err()
        .expect("a second writer must be refused");
    assert_eq!(code(&err), "AlreadyOpen");
    let reader =
        open(r#"{"name": "page-two", "dimension": 4, "storage": "indexeddb", "readOnly": true}"#)
            .await
            .unwrap();
    assert_eq!(reader.count(None).unwrap(), 10);
    let err = reader.upsert(points(10, 1, 4)).unwrap_err();
    assert_eq!(code(&err), "ReadOnly");
    done(reader.close()).await.unwrap();
    done(first.close()).await.unwrap();
    // The lock was released by close.
    let again = open(options).await.unwrap();
    assert_eq!(again.count(None).unwrap(), 10);
    done(again.close()).await.unwrap();
    done(GrapeDB::destroy("page-two".into())).await.unwrap();
}

#[wasm_bindgen_test]
async fn opfs_on_the_main_thread_is_a_clear_error() {
    let err = open(r#"{"name": "page-opfs", "dimension": 4, "storage": "opfs"}"#)
        .await
        .err()
        .unwrap();
    assert_eq!(code(&err), "InvalidConfig");
    assert!(text(&Reflect::get(&err, &"message".into()).unwrap()).contains("dedicated worker"));
}

#[wasm_bindgen_test]
async fn health_uses_the_storage_estimate() {
    let db = open(r#"{"name": "page-health", "dimension": 4, "storage": "indexeddb"}"#)
        .await
        .unwrap();
    db.upsert(points(0, 5, 4)).unwrap();
    let health = done(db.health()).await.unwrap();
    let t = text(&health);
    assert!(t.contains(r#""status":"Healthy""#), "{t}");
    assert!(
        t.contains("MiB free of"),
        "the disk check saw navigator.storage.estimate(): {t}"
    );
    done(db.close()).await.unwrap();
    done(GrapeDB::destroy("page-health".into())).await.unwrap();
}

#[wasm_bindgen_test]
async fn shared_vectors_in_a_page() {
    shared_vectors("indexeddb").await;
}

#[wasm_bindgen_test]
async fn pagehide_flushes_and_a_final_pagehide_closes() {
    // A long timer: only the pagehide handler can have committed the write.
    let options = r#"{"name": "page-hide", "dimension": 4, "storage": "indexeddb", "flushIntervalMs": 600000}"#;
    let db = open(options).await.unwrap();
    db.upsert(points(0, 7, 4)).unwrap();
    let reader_options =
        r#"{"name": "page-hide", "dimension": 4, "storage": "indexeddb", "readOnly": true}"#;
    let before = open(reader_options).await.unwrap();
    assert_eq!(before.count(None).unwrap(), 0, "nothing committed yet");
    done(before.close()).await.unwrap();

    let fire = |persisted: bool| {
        let init = web_sys::PageTransitionEventInit::new();
        init.set_persisted(persisted);
        let event =
            web_sys::PageTransitionEvent::new_with_event_init_dict("pagehide", &init).unwrap();
        web_sys::window().unwrap().dispatch_event(&event).unwrap();
    };
    // Into the back/forward cache: flushed, still open.
    fire(true);
    sleep_ms(200).await;
    let after = open(reader_options).await.unwrap();
    assert_eq!(
        after.count(None).unwrap(),
        7,
        "pagehide committed the write"
    );
    done(after.close()).await.unwrap();
    assert_eq!(db.state(), "Ready");
    // The page is going away for good: flushed and closed.
    db.upsert(points(7, 1, 4)).unwrap();
    fire(false);
    sleep_ms(200).await;
    assert_eq!(db.state(), "Closed");
    let again = open(options).await.unwrap();
    assert_eq!(again.count(None).unwrap(), 8);
    done(again.close()).await.unwrap();
    done(GrapeDB::destroy("page-hide".into())).await.unwrap();
}

#[wasm_bindgen_test]
async fn a_replayed_log_enters_the_graph_in_idle_time() {
    let options = r#"{"name": "page-idle", "dimension": 16, "storage": "indexeddb"}"#;
    let unindexed = |db: &GrapeDB| {
        let stats = db.stats().unwrap();
        Reflect::get(&stats, &"unindexed".into())
            .unwrap()
            .as_f64()
            .unwrap()
    };
    let db = open(options).await.unwrap();
    db.upsert(points(0, 1_500, 16)).unwrap();
    assert_eq!(unindexed(&db), 0.0, "writes index their points");
    // A short log: close leaves it to be replayed.
    done(db.close()).await.unwrap();

    let db = open(options).await.unwrap();
    let mut seen = vec![unindexed(&db)];
    assert!(seen[0] > 0.0, "the replayed points start outside the graph");
    assert_eq!(
        db.state(),
        "Busy",
        "indexing in the background, as natively"
    );
    for _ in 0..3_000 {
        if *seen.last().unwrap() == 0.0 && db.state() == "Ready" {
            break;
        }
        sleep_ms(10).await;
        seen.push(unindexed(&db));
    }
    assert_eq!(
        *seen.last().unwrap(),
        0.0,
        "still outside the graph: {seen:?}"
    );
    assert_eq!(db.state(), "Ready", "the indexer is done");
    assert!(
        seen.len() > 2,
        "indexed in several slices, not at once: {seen:?}"
    );
    assert_eq!(db.count(None).unwrap(), 1_500);
    done(db.close()).await.unwrap();
    done(GrapeDB::destroy("page-idle".into())).await.unwrap();
}

async fn sleep_ms(ms: i32) {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        web_sys::window()
            .unwrap()
            .set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms)
            .unwrap();
    });
    done(promise).await.unwrap();
}

/// A background flush that finds the database closed under it has nothing left to do: close
/// flushed everything first. It used to log "background flush failed: the database is closed".
#[wasm_bindgen_test]
async fn a_close_during_a_background_flush_logs_no_error() {
    let console = Reflect::get(&js_sys::global(), &"console".into()).unwrap();
    let original = Reflect::get(&console, &"error".into()).unwrap();
    let logged = js_sys::Array::new();
    let recorder =
        js_sys::Function::new_with_args("...args", "this.push(args.join(' '))").bind0(&logged);
    Reflect::set(&console, &"error".into(), &recorder).unwrap();
    let options = r#"{"name": "page-close-flush", "dimension": 4, "storage": "indexeddb", "flushIntervalMs": 0}"#;
    for round in 0..5 {
        let db = open(options).await.unwrap();
        db.upsert(points(round * 10, 10, 4)).unwrap();
        // The flush timer fires while close is committing to IndexedDB.
        done(db.close()).await.unwrap();
        sleep_ms(20).await;
    }
    Reflect::set(&console, &"error".into(), &original).unwrap();
    let db = open(options).await.unwrap();
    assert_eq!(db.count(None).unwrap(), 50, "every round's points kept");
    done(db.close()).await.unwrap();
    done(GrapeDB::destroy("page-close-flush".into()))
        .await
        .unwrap();
    assert_eq!(logged.length(), 0, "{:?}", logged.join("\n"));
}
