//! The JS API and the OPFS backend in a dedicated worker of headless Chromium: `auto` picks
//! OPFS there; data survives close and reopen; a torn log tail is cut on reopen; checkpoints
//! reuse the pool of OPFS files; one writer per database; the shared test vectors.
#![cfg(target_arch = "wasm32")]

use grape_vector_db::storage::OpenMode;
use std::sync::Arc;

use grape_testkit::js::*;
use grape_vector_db::storage::{OpfsStorage, Storage};
use grape_vector_db::{EmbeddedConfig, EmbeddedVectorDB, GrapeDB, Point};
use js_sys::Reflect;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_dedicated_worker);

#[wasm_bindgen_test]
async fn opfs_data_survives_close_and_reopen() {
    let options = r#"{"name": "w-reopen", "dimension": 16, "storage": "auto"}"#;
    let db = open(options).await.unwrap();
    let stats = text(&db.stats().unwrap());
    assert!(stats.contains(r#""backend":"opfs""#), "{stats}");
    db.upsert(points(0, 500, 16)).unwrap();
    assert_eq!(db.delete(js("[1, 2, 3]")).unwrap(), 3);
    done(db.close()).await.unwrap();

    let db = open(options).await.unwrap();
    assert_eq!(db.count(None).unwrap(), 497);
    let q: Vec<f32> = (0..16)
        .map(|d| ((10 * 31 + d * 17) % 97) as f32 / 97.0 - 0.5)
        .collect();
    let found = db.search(q.clone(), Some(js(r#"{"limit": 1}"#))).unwrap();
    assert_eq!(ids(&found), "[10]");
    done(db.close()).await.unwrap();
    done(GrapeDB::destroy("w-reopen".into())).await.unwrap();
}

#[wasm_bindgen_test]
async fn sync_durability_and_a_second_writer() {
    let options = r#"{"name": "w-sync", "dimension": 4, "storage": "opfs", "durability": "sync"}"#;
    let db = open(options).await.unwrap();
    db.upsert(points(0, 20, 4)).unwrap();
    let err = open(options)
        .await
        .err()
        .expect("a second writer must be refused");
    assert_eq!(code(&err), "AlreadyOpen");
    done(db.close()).await.unwrap();
    let db = open(options).await.unwrap();
    assert_eq!(db.count(None).unwrap(), 20);
    done(db.close()).await.unwrap();
    done(GrapeDB::destroy("w-sync".into())).await.unwrap();
}

/// The log file of the database in `storage`.
fn log_file(storage: &OpfsStorage) -> Box<dyn grape_vector_db::storage::StorageFile> {
    let wal = storage
        .list()
        .unwrap()
        .into_iter()
        .find(|n| n.starts_with("wal-"))
        .unwrap();
    storage.open(&wal, OpenMode::Existing).unwrap()
}

#[wasm_bindgen_test]
async fn a_torn_log_tail_is_cut_on_reopen() {
    let options = r#"{"name": "w-torn", "dimension": 4, "storage": "opfs"}"#;
    let db = open(options).await.unwrap();
    db.upsert(points(0, 30, 4)).unwrap();
    done(db.close()).await.unwrap();
    {
        // A write torn by a crash: half a record at the end of the log.
        let storage = OpfsStorage::open("w-torn").await.unwrap();
        let file = log_file(&storage);
        let end = file.len().unwrap();
        file.write_at(end, &[0x55; 37]).unwrap();
        file.sync().unwrap();
    }
    let db = open(options).await.unwrap();
    let report = text(&db.open_report().unwrap());
    assert!(report.contains(r#""wal_bytes_truncated":37"#), "{report}");
    assert_eq!(db.count(None).unwrap(), 30);
    done(db.close()).await.unwrap();
    done(GrapeDB::destroy("w-torn".into())).await.unwrap();
}

#[wasm_bindgen_test]
async fn damage_before_synced_records_is_refused_unless_salvaging() {
    let options =
        r#"{"name": "w-damage", "dimension": 4, "storage": "opfs", "durability": "sync"}"#;
    let db = open(options).await.unwrap();
    for batch in 0..3 {
        db.upsert(points(batch * 10, 10, 4)).unwrap();
    }
    done(db.close()).await.unwrap();
    {
        // Damage in the second of three records, each synced before the next was written.
        let storage = OpfsStorage::open("w-damage").await.unwrap();
        let file = log_file(&storage);
        let middle = file.len().unwrap() / 2;
        let mut byte = [0u8];
        file.read_at(middle, &mut byte).unwrap();
        file.write_at(middle, &[byte[0] ^ 0x20]).unwrap();
        file.sync().unwrap();
    }
    let err = open(options).await.err().expect("a damaged log is refused");
    assert_eq!(code(&err), "Corrupt");
    let salvage =
        r#"{"name": "w-damage", "dimension": 4, "storage": "opfs", "logRecovery": "salvage"}"#;
    let db = open(salvage).await.unwrap();
    assert_eq!(db.count(None).unwrap(), 10);
    let report = text(&db.open_report().unwrap());
    assert!(report.contains(r#""wal_damaged_at":"#), "{report}");
    done(db.close()).await.unwrap();
    done(GrapeDB::destroy("w-damage".into())).await.unwrap();
}

#[wasm_bindgen_test]
async fn vectors_on_disk_in_opfs_are_read_on_first_use() {
    let options = r#"{"name": "w-on-disk", "dimension": 32, "storage": "opfs", "quantization": "sq8", "vectorsOnDisk": true, "hnsw": {"fullScanThreshold": 100}}"#;
    let q: Vec<f32> = (0..32)
        .map(|d| ((10 * 31 + d * 17) % 97) as f32 / 97.0 - 0.5)
        .collect();
    let search = |db: &GrapeDB| text(&db.search(q.clone(), Some(js(r#"{"limit": 5}"#))).unwrap());
    let memory = |db: &GrapeDB| -> serde_json::Value {
        let stats: serde_json::Value = serde_json::from_str(&text(&db.stats().unwrap())).unwrap();
        stats["memory"].clone()
    };
    let db = open(options).await.unwrap();
    db.upsert(points(0, 2_000, 32)).unwrap();
    let before = search(&db);
    let held = memory(&db)["vectors"].as_u64().unwrap();
    assert!(held >= 2_000 * 32 * 4, "{held}");
    // The checkpoint moves the vectors to the segment, read from OPFS from then on.
    done(db.checkpoint()).await.unwrap();
    let after = memory(&db);
    assert!(after["vectors"].as_u64().unwrap() < held / 4, "{after}");
    assert_eq!(after["mapped"], 0, "{after}");
    assert_eq!(search(&db), before);
    db.upsert(points(2_000, 100, 32)).unwrap();
    let grown = search(&db);
    done(db.close()).await.unwrap();

    let db = open(options).await.unwrap();
    assert_eq!(db.count(None).unwrap(), 2_100);
    assert_eq!(search(&db), grown);
    let got = text(&db.get(js("[5]")).unwrap());
    assert!(got.contains(r#""vector":["#), "{got}");
    done(db.close()).await.unwrap();
    done(GrapeDB::destroy("w-on-disk".into())).await.unwrap();
}

#[wasm_bindgen_test]
async fn checkpoints_reuse_the_pool_of_opfs_files() {
    let config = EmbeddedConfig::builder(8).build().unwrap();
    {
        let storage = OpfsStorage::open("w-pool").await.unwrap();
        let db = EmbeddedVectorDB::open_with_storage(config.clone(), Arc::new(storage)).unwrap();
        for round in 0..12u64 {
            let pts: Vec<Point> = (0..50)
                .map(|i| Point::new(round * 50 + i, vec![(round * 50 + i) as f32 + 1.0; 8]))
                .collect();
            db.upsert(pts).unwrap();
            db.checkpoint().unwrap();
        }
        db.delete((0..100u64).collect::<Vec<_>>()).unwrap();
        db.compact().unwrap();
        let health = db.health();
        assert_eq!(
            health.status,
            grape_vector_db::CheckStatus::Healthy,
            "{health:?}"
        );
        db.close().unwrap();
    }
    let storage = OpfsStorage::open("w-pool").await.unwrap();
    let db = EmbeddedVectorDB::open_with_storage(config, Arc::new(storage)).unwrap();
    assert_eq!(db.count(None).unwrap(), 500);
    assert_eq!(db.open_report().wal_records_replayed, 0);
    db.close().unwrap();
    drop(db);
    done(GrapeDB::destroy("w-pool".into())).await.unwrap();
}

#[wasm_bindgen_test]
async fn export_from_opfs_import_into_indexeddb() {
    let db = open(r#"{"name": "w-export", "dimension": 4, "storage": "opfs"}"#)
        .await
        .unwrap();
    db.upsert(points(0, 25, 4)).unwrap();
    let bytes = db.export_bytes().unwrap();
    done(db.close()).await.unwrap();
    let options = js(r#"{"name": "w-import", "dimension": 4, "storage": "indexeddb"}"#);
    Reflect::set(&options, &"import".into(), &bytes).unwrap();
    let copy = GrapeDB::connect(options).await.unwrap();
    assert_eq!(copy.count(None).unwrap(), 25);
    done(copy.close()).await.unwrap();
    done(GrapeDB::destroy("w-export".into())).await.unwrap();
    done(GrapeDB::destroy("w-import".into())).await.unwrap();
}

#[wasm_bindgen_test]
async fn shared_vectors_in_a_worker() {
    shared_vectors("opfs").await;
}
