//! Damaged files: flipped bytes and truncations anywhere in the manifest, a segment or the log
//! give a clear error or a clean recovery of the log's intact prefix; never a panic, never a
//! wrong answer.

use grape_testkit as testkit;

use grape_vector_db::storage::OpenMode;
use std::collections::BTreeMap;
use std::sync::Arc;

use grape_vector_db::storage::{MemoryStorage, Storage};
use grape_vector_db::{
    Distance, EmbeddedConfig, EmbeddedVectorDB, Error, Point, PointId, Record, ScrollRequest,
};
use serde_json::json;
use testkit::Rng;

fn config() -> EmbeddedConfig {
    EmbeddedConfig::builder(5)
        .distance(Distance::Dot)
        .build()
        .unwrap()
}

fn contents(db: &EmbeddedVectorDB) -> BTreeMap<PointId, Record> {
    let page = db
        .scroll(&ScrollRequest {
            limit: 10_000,
            with_vector: true,
            ..ScrollRequest::default()
        })
        .unwrap();
    page.points.into_iter().map(|r| (r.id, r)).collect()
}

/// A database with a checkpoint segment and a log of several records, and the contents after
/// each of those records (index k: the first k records applied).
fn build() -> (MemoryStorage, Vec<BTreeMap<PointId, Record>>) {
    let storage = MemoryStorage::new();
    let db = EmbeddedVectorDB::open_with_storage(config(), Arc::new(storage.clone())).unwrap();
    let point = |i: u64| {
        Point::new(i, (0..5).map(|j| (i * 5 + j) as f32 * 0.1).collect())
            .with_payload(json!({"i": i, "tag": format!("t{}", i % 4)}))
            .unwrap()
    };
    db.upsert((0..40).map(point).collect()).unwrap();
    db.checkpoint().unwrap();
    let mut states = vec![contents(&db)];
    db.upsert((40..45).map(point).collect()).unwrap();
    states.push(contents(&db));
    db.delete([3u64, 41]).unwrap();
    states.push(contents(&db));
    db.set_payload([7u64], json!({"note": "changed"})).unwrap();
    states.push(contents(&db));
    db.upsert((100..102).map(point).collect()).unwrap();
    states.push(contents(&db));
    (storage, states)
}

fn copy(src: &MemoryStorage) -> MemoryStorage {
    let dst = MemoryStorage::new();
    for name in src.list().unwrap() {
        let bytes = src.read_all(&name).unwrap();
        dst.open(&name, OpenMode::CreateIfMissing)
            .unwrap()
            .write_at(0, &bytes)
            .unwrap();
    }
    dst
}

fn file_named(storage: &MemoryStorage, prefix: &str) -> String {
    storage
        .list()
        .unwrap()
        .into_iter()
        .find(|n| n.starts_with(prefix))
        .unwrap()
}

/// Opens `storage` and checks the outcome: an error of the storage kinds, or contents equal to
/// one of `allowed`.
fn check_open(storage: &MemoryStorage, allowed: &[BTreeMap<PointId, Record>], what: &str) -> bool {
    match EmbeddedVectorDB::open_with_storage(config(), Arc::new(storage.clone())) {
        Ok(db) => {
            let got = contents(&db);
            assert!(allowed.contains(&got), "{what}: opened with wrong contents");
            true
        }
        Err(e) => {
            assert!(
                matches!(e, Error::Corrupt { .. } | Error::UnsupportedFormat { .. }),
                "{what}: unexpected error kind {e:?}"
            );
            assert!(!e.to_string().is_empty());
            false
        }
    }
}

fn positions(len: usize, rng: &mut Rng, samples: usize) -> Vec<usize> {
    if len <= 4096 {
        return (0..len).collect();
    }
    let mut out: Vec<usize> = (0..256).chain(len - 256..len).collect();
    out.extend((0..samples).map(|_| rng.below(len)));
    out
}

#[test]
fn flipped_bytes_in_any_file_are_caught_or_harmless() {
    let (storage, states) = build();
    let full = states.last().unwrap().clone();
    let mut rng = Rng::new(3);
    for (prefix, allowed) in [
        ("MANIFEST", vec![full.clone()]),
        ("seg-", vec![full.clone()]),
        ("wal-", states.clone()),
    ] {
        let name = file_named(&storage, prefix);
        let original = storage.read_all(&name).unwrap().to_vec();
        let mut errors = 0;
        let positions = positions(original.len(), &mut rng, 600);
        for &pos in &positions {
            let damaged = copy(&storage);
            let mut bytes = original.clone();
            bytes[pos] ^= 1 << rng.below(8);
            damaged
                .open(&name, OpenMode::Existing)
                .unwrap()
                .write_at(0, &bytes)
                .unwrap();
            if !check_open(&damaged, &allowed, &format!("{name} byte {pos}")) {
                errors += 1;
            }
        }
        assert!(errors > 0, "no flip in {name} was detected");
        if prefix != "wal-" {
            // Only padding is outside the checksums: most flips must be reported.
            assert!(
                errors * 10 >= positions.len() * 7,
                "{name}: only {errors} flips detected"
            );
        }
    }
}

#[test]
fn truncated_files_are_caught_or_recover_the_log_prefix() {
    let (storage, states) = build();
    let full = states.last().unwrap().clone();
    let mut rng = Rng::new(4);
    for (prefix, allowed) in [
        ("MANIFEST", vec![full.clone()]),
        ("seg-", vec![full.clone()]),
        ("wal-", states.clone()),
    ] {
        let name = file_named(&storage, prefix);
        let len = storage.read_all(&name).unwrap().len();
        for cut in positions(len, &mut rng, 300) {
            let damaged = copy(&storage);
            damaged
                .open(&name, OpenMode::Existing)
                .unwrap()
                .set_len(cut as u64)
                .unwrap();
            let opened = check_open(&damaged, &allowed, &format!("{name} cut at {cut}"));
            if prefix != "wal-" {
                assert!(!opened, "{name} cut at {cut} opened");
            }
        }
    }
}

#[test]
fn a_torn_log_tail_is_cut_and_reported() {
    let (storage, states) = build();
    let name = file_named(&storage, "wal-");
    let len = storage.read_all(&name).unwrap().len() as u64;
    storage
        .open(&name, OpenMode::Existing)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    let db = EmbeddedVectorDB::open_with_storage(config(), Arc::new(storage.clone())).unwrap();
    let report = db.open_report();
    assert_eq!(report.wal_records_replayed, 3);
    assert!(report.wal_bytes_truncated > 0);
    assert_eq!(contents(&db), states[3]);
    // The tail is gone from the file: writing again and reopening keeps the new record.
    db.upsert(vec![Point::new(500, vec![1.0; 5])]).unwrap();
    drop(db);
    let db = EmbeddedVectorDB::open_with_storage(config(), Arc::new(storage)).unwrap();
    assert_eq!(db.open_report().wal_bytes_truncated, 0);
    assert_eq!(db.count(None).unwrap(), states[3].len() + 1);
}

#[test]
fn a_missing_manifest_with_a_segment_is_an_error_not_an_empty_database() {
    let (storage, _) = build();
    storage.remove("MANIFEST").unwrap();
    let err = EmbeddedVectorDB::open_with_storage(config(), Arc::new(storage)).unwrap_err();
    assert!(err.to_string().contains("manifest is missing"), "{err}");
}

/// A database holding 10 points, each written by its own `Sync` upsert, closed.
fn ten_points() -> (MemoryStorage, String) {
    let storage = MemoryStorage::new();
    let db = EmbeddedVectorDB::open_with_storage(config(), Arc::new(storage.clone())).unwrap();
    for i in 0..10u64 {
        db.upsert(vec![Point::new(i, vec![i as f32; 5])]).unwrap();
    }
    drop(db);
    let log = file_named(&storage, "wal-");
    (storage, log)
}

#[test]
fn a_log_tail_of_zeros_is_a_torn_append_not_damage() {
    // Finding A: an append cut by power loss after the file size was persisted leaves zeros;
    // 8 or more read as an empty record (length 0, CRC of nothing 0) and the open failed.
    for zeros in [1u64, 7, 8, 9, 64, 4096] {
        let (storage, log) = ten_points();
        let file = storage.open(&log, OpenMode::Existing).unwrap();
        let len = file.len().unwrap();
        file.set_len(len + zeros).unwrap();
        let db = EmbeddedVectorDB::open_with_storage(config(), Arc::new(storage.clone()))
            .unwrap_or_else(|e| panic!("{zeros} zeros: {e}"));
        assert_eq!(db.count(None).unwrap(), 10);
        assert_eq!(db.open_report().wal_bytes_truncated, zeros);
        assert_eq!(
            storage
                .open(&log, OpenMode::Existing)
                .unwrap()
                .len()
                .unwrap(),
            len
        );
    }
}

#[test]
fn damage_before_acknowledged_records_is_refused_unless_salvaging() {
    // Finding I: a damaged record in the middle of the log opened `Ok`, dropping it and every
    // acknowledged record after it; only `wal_bytes_truncated` showed it.
    let (storage, log) = ten_points();
    let bytes = storage.read_all(&log).unwrap().to_vec();
    let mut damaged = bytes.clone();
    damaged[bytes.len() / 2] ^= 0x40;
    storage
        .open(&log, OpenMode::Existing)
        .unwrap()
        .write_at(0, &damaged)
        .unwrap();
    let err = EmbeddedVectorDB::open_with_storage(config(), Arc::new(storage.clone())).unwrap_err();
    let Error::Corrupt { file, offset, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!((file, *offset <= bytes.len() as u64 / 2), (&log, true));
    assert!(err.to_string().contains("LogRecovery::Salvage"), "{err}");
    assert_eq!(
        &*storage.read_all(&log).unwrap(),
        &damaged[..],
        "a refused open changes nothing"
    );

    let mut salvage = config();
    salvage.log_recovery = grape_vector_db::LogRecovery::Salvage;
    let db = EmbeddedVectorDB::open_with_storage(salvage, Arc::new(storage.clone())).unwrap();
    let kept = db.count(None).unwrap();
    assert!((1..10).contains(&kept), "kept {kept}");
    assert_eq!(db.open_report().wal_damaged_at, Some(*offset));
    drop(db);
    // Cut at the damage: a strict open works again, with the records before it.
    let db = EmbeddedVectorDB::open_with_storage(config(), Arc::new(storage)).unwrap();
    assert_eq!(db.count(None).unwrap(), kept);
}

#[test]
fn a_damaged_version_field_is_corruption_a_newer_version_is_unsupported() {
    // Finding H: the version was checked before the checksum, so damage to it read as a file
    // from a newer release.
    let (storage, _) = build();
    for prefix in ["MANIFEST", "seg-", "wal-"] {
        let name = file_named(&storage, prefix);
        let damaged = copy(&storage);
        let mut bytes = storage.read_all(&name).unwrap().to_vec();
        bytes[8] = 77;
        damaged
            .open(&name, OpenMode::Existing)
            .unwrap()
            .write_at(0, &bytes)
            .unwrap();
        let err = EmbeddedVectorDB::open_with_storage(config(), Arc::new(damaged)).unwrap_err();
        assert!(
            matches!(&err, Error::Corrupt { offset: 8, .. }),
            "{name}: {err:?}"
        );
    }
    // A manifest written by a newer release (its checksum holds): unsupported.
    let newer = copy(&storage);
    let mut bytes = storage.read_all("MANIFEST").unwrap().to_vec();
    bytes[8] = 4;
    let crc = testkit::crc32c(&bytes[..32]);
    bytes[32..36].copy_from_slice(&crc.to_le_bytes());
    newer
        .open("MANIFEST", OpenMode::Existing)
        .unwrap()
        .write_at(0, &bytes)
        .unwrap();
    let err = EmbeddedVectorDB::open_with_storage(config(), Arc::new(newer)).unwrap_err();
    assert!(
        matches!(err, Error::UnsupportedFormat { found: 4, .. }),
        "{err:?}"
    );
}

#[test]
fn a_payload_that_does_not_parse_behind_valid_checksums_reads_empty_and_fails_health() {
    // Found by the fuzz runner (tests/fuzz.rs): a segment payload that is not JSON although its
    // section checksum holds (an altered file) panicked on first read in debug builds.
    let (storage, _) = build();
    // Section 4, payload data: the first payload's opening brace.
    edit_segment_section(&storage, 3, |payloads| payloads[0] = b'#');
    let db = EmbeddedVectorDB::open_with_storage(config(), Arc::new(storage)).unwrap();
    let all = contents(&db);
    assert!(all
        .values()
        .any(|r| r.payload.as_ref().is_some_and(|p| p.is_empty())));
    let health = db.health();
    let engine = health.checks.iter().find(|c| c.name == "engine").unwrap();
    assert_eq!(
        engine.status,
        grape_vector_db::CheckStatus::Critical,
        "{engine:?}"
    );
    assert!(
        engine.message.contains("do not parse"),
        "{}",
        engine.message
    );
}

#[test]
fn graph_links_to_no_row_behind_valid_checksums_are_refused() {
    // Found by the fuzz runner: a layer-0 link naming a row past the end, in a segment whose
    // checksums were recomputed, panicked the first search (index out of bounds).
    let storage = MemoryStorage::new();
    let config = EmbeddedConfig::builder(3)
        .distance(Distance::Euclid)
        .hnsw(Some(grape_vector_db::HnswConfig {
            full_scan_threshold: 0,
            ..Default::default()
        }))
        .build()
        .unwrap();
    checkpoint_50_points(&storage, &config, |_| None);
    // Section 5, graph layer 0: row 0's first link (it has one).
    edit_segment_section(&storage, 4, |links| {
        assert!(links[0] > 0);
        links[4..8].copy_from_slice(&5_000_000u32.to_le_bytes());
    });
    let err = EmbeddedVectorDB::open_with_storage(config, Arc::new(storage)).unwrap_err();
    assert!(
        matches!(&err, Error::Corrupt { detail, .. } if detail.contains("links to no row")),
        "{err:?}"
    );
}

#[test]
fn a_payload_index_naming_no_row_behind_valid_checksums_is_refused() {
    // A stored list is used in place: a row past the end would make a filtered search read
    // out of bounds, so opening checks every one.
    let storage = MemoryStorage::new();
    let config = EmbeddedConfig::builder(3)
        .distance(Distance::Euclid)
        .payload_index("g")
        .build()
        .unwrap();
    checkpoint_50_points(&storage, &config, |i| Some(json!({"g": i % 2})));
    // Section 10, payload indexes: its last bytes are the last row of the last list (49).
    edit_segment_section(&storage, 9, |section| {
        let last = section.len() - 4;
        assert_eq!(section[last..], 49u32.to_le_bytes());
        section[last..].copy_from_slice(&50u32.to_le_bytes());
    });
    let err = EmbeddedVectorDB::open_with_storage(config, Arc::new(storage)).unwrap_err();
    assert!(
        matches!(&err, Error::Corrupt { detail, .. } if detail.contains("names a row past the end")),
        "{err:?}"
    );
}

#[test]
fn sparse_vectors_out_of_order_behind_valid_checksums_are_refused() {
    // Posting lists are built from the stored rows at open, and a search walks them in order
    // of index: a row whose indices are not ascending is damage, refused at open.
    let storage = MemoryStorage::new();
    let config = EmbeddedConfig::builder(3)
        .distance(Distance::Euclid)
        .sparse_vector("s", grape_vector_db::SparseVectorConfig::default())
        .build()
        .unwrap();
    let db =
        EmbeddedVectorDB::open_with_storage(config.clone(), Arc::new(storage.clone())).unwrap();
    let v = grape_vector_db::SparseVector::new(vec![3, 7], vec![1.0, 2.0]).unwrap();
    db.upsert(vec![Point::new(1, vec![1.0, 0.0, 0.0]).with_sparse("s", v)])
        .unwrap();
    db.checkpoint().unwrap();
    drop(db);
    // Section 12, sparse vectors: count, name "s" (padded), entries, two starts, then the
    // indices 3 and 7, swapped here.
    edit_segment_section(&storage, 11, |section| {
        let indices = 4 + 4 + 4 + 8 + 16;
        assert_eq!(section[indices..indices + 8], [3, 0, 0, 0, 7, 0, 0, 0]);
        section[indices..indices + 8].copy_from_slice(&[7, 0, 0, 0, 3, 0, 0, 0]);
    });
    let err = EmbeddedVectorDB::open_with_storage(config, Arc::new(storage)).unwrap_err();
    assert!(
        matches!(&err, Error::Corrupt { detail, .. } if detail.contains("not ascending")),
        "{err:?}"
    );
}

/// A database of 50 points of dimension 3 (with `payload(i)`), checkpointed into a segment.
fn checkpoint_50_points(
    storage: &MemoryStorage,
    config: &EmbeddedConfig,
    payload: impl Fn(u64) -> Option<serde_json::Value>,
) {
    let db =
        EmbeddedVectorDB::open_with_storage(config.clone(), Arc::new(storage.clone())).unwrap();
    let points = (0..50u64).map(|i| {
        let point = Point::new(i, vec![i as f32, 1.0, 0.0]);
        match payload(i) {
            Some(p) => point.with_payload(p).unwrap(),
            None => point,
        }
    });
    db.upsert(points.collect()).unwrap();
    db.checkpoint().unwrap();
}

/// Changes section `index` (0-based) of the segment of a version 7 database with `edit`, and
/// recomputes that section's checksum and the header's: damage that checksums cannot see, as a
/// faulty writer or a deliberate edit would leave.
fn edit_segment_section(storage: &MemoryStorage, index: usize, edit: impl FnOnce(&mut [u8])) {
    let name = file_named(storage, "seg-");
    let mut bytes = storage.read_all(&name).unwrap().to_vec();
    let d = 56 + index * 24; // the section's descriptor: offset, length, checksum
    let at = u64::from_le_bytes(bytes[d..d + 8].try_into().unwrap()) as usize;
    let len = u64::from_le_bytes(bytes[d + 8..d + 16].try_into().unwrap()) as usize;
    edit(&mut bytes[at..at + len]);
    let crc = testkit::crc32c(&bytes[at..at + len]);
    bytes[d + 16..d + 20].copy_from_slice(&crc.to_le_bytes());
    // The header checksum covers the fixed fields and the thirteen descriptors (FORMAT.md).
    let crc = testkit::crc32c(&bytes[..368]);
    bytes[368..372].copy_from_slice(&crc.to_le_bytes());
    storage
        .open(&name, OpenMode::Existing)
        .unwrap()
        .write_at(0, &bytes)
        .unwrap();
}
