//! The decoders of untrusted bytes under mutated input, on the stable toolchain: manifest,
//! segment, log, archive, the OPFS layout's directory file, and the JSON of points, filters and
//! requests (`common/decoders.rs`). Seeds are valid files and JSON; each execution applies a
//! few random mutations (bit flips, interesting integers at aligned offsets, cuts, insertions,
//! repeats, splices) and must return without panicking. A panicking input is saved under
//! `target/tmp/fuzz-failures/` to replay.
//!
//! `GRAPE_FUZZ_SECS` sets the time per target (default 3), `GRAPE_FUZZ_SEED` the seed. For
//! coverage-guided campaigns, `fuzz/` runs the same targets under cargo-fuzz;
//! `GRAPE_FUZZ_CORPUS=DIR` writes the seeds to `DIR/<target>/` as its starting corpus.

use grape_testkit as testkit;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use grape_vector_db::EmbeddedVectorDB;
use testkit::decoders::{self, seed_database, seed_file, TARGETS};
use testkit::Rng;

/// Valid inputs of `target`, from which mutations start.
fn seeds(target: &str) -> Vec<Vec<u8>> {
    let db = seed_database();
    match target {
        "manifest" => vec![seed_file(&db, "MANIFEST").1],
        "segment" => vec![seed_file(&db, "seg-").1],
        "log" => vec![seed_file(&db, "wal-").1],
        "archive" => {
            let copy = EmbeddedVectorDB::open_with_storage(
                decoders::config(),
                std::sync::Arc::new(db.clone()),
            )
            .expect("the seed database opens");
            vec![copy.export_archive().expect("exports")]
        }
        "opfs_directory" => {
            let pool = decoders::seed_pool();
            vec![seed_file(&pool, "directory").1]
        }
        "json" => json_seeds(),
        "npy" => npy_seeds(),
        other => panic!("no seeds for {other}"),
    }
}

/// `.npy` files of each element type the parser reads.
fn npy_seeds() -> Vec<Vec<u8>> {
    let file = |descr: &str, body: &[u8]| {
        let header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': (2, 2), }}");
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(body);
        out
    };
    vec![
        file("<f4", &[0x3f; 16]),
        file("<f2", &[0x3c, 0x00, 0x00, 0xc0, 0x01, 0x00, 0xff, 0x7b]),
        file("<i4", &[7; 16]),
    ]
}

/// Every point, filter and request of the shared test vectors, and a few requests.
fn json_seeds() -> Vec<Vec<u8>> {
    let text = include_str!("vectors/shared.json");
    let vectors: serde_json::Value = serde_json::from_str(text).expect("valid JSON");
    let mut out = Vec::new();
    let mut walk = vec![&vectors];
    while let Some(v) = walk.pop() {
        match v {
            serde_json::Value::Object(map) => {
                out.push(serde_json::to_vec(v).expect("serialises"));
                walk.extend(map.values());
            }
            serde_json::Value::Array(items) => walk.extend(items),
            _ => {}
        }
    }
    out.push(br#"{"vector": [1, 0, 0, 0], "limit": 3, "filter": {"must": [{"key": "i", "range": {"gte": 2}}]}, "with_payload": true}"#.to_vec());
    out.push(
        br#"{"limit": 5, "filter": {"should": [{"key": "tag", "match": {"any": ["t1", "t2"]}}]}}"#
            .to_vec(),
    );
    // The conditions of Qdrant's that came later: datetimes, geo, full text, has_vector.
    out.push(br#"{"must": [{"key": "t", "range": {"gte": "2024-01-01T00:00:00+02:00", "lt": "2024-02-01"}}, {"has_vector": ""}]}"#.to_vec());
    out.push(br#"{"should": [{"key": "p", "geo_radius": {"center": {"lon": 2.35, "lat": 48.86}, "radius": 5000}}, {"key": "p", "geo_bounding_box": {"top_left": {"lon": 170, "lat": 10}, "bottom_right": {"lon": -170, "lat": -10}}}]}"#.to_vec());
    out.push(br#"{"must": [{"key": "p", "geo_polygon": {"exterior": {"points": [{"lon": 0, "lat": 0}, {"lon": 10, "lat": 0}, {"lon": 10, "lat": 10}, {"lon": 0, "lat": 0}]}, "interiors": []}}, {"key": ""a.b"[0]", "match": {"phrase": "quick fox"}}, {"key": "d", "match": {"text_any": "x y"}}]}"#.to_vec());
    out
}

const INTERESTING: [u64; 10] = [
    0,
    1,
    2,
    0x7F,
    0x80,
    0xFF,
    0xFFFF,
    0x7FFF_FFFF,
    0xFFFF_FFFF,
    u64::MAX,
];

/// One to four mutations of `input`, some using `other` (another seed) for splices.
fn mutate(input: &[u8], other: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = out.len();
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                out[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                out[i] = INTERESTING[rng.below(INTERESTING.len())] as u8;
            }
            2 if len >= 4 => {
                // A length, count or offset field: 4-byte aligned.
                let i = rng.below(len / 4) * 4;
                let v = INTERESTING[rng.below(INTERESTING.len())] as u32;
                let v = if rng.chance(0.3) {
                    v.wrapping_add(len as u32)
                } else {
                    v
                };
                out[i..i + 4].copy_from_slice(&v.to_le_bytes());
            }
            3 if len >= 8 => {
                let i = rng.below(len / 8) * 8;
                let v = INTERESTING[rng.below(INTERESTING.len())];
                out[i..i + 8].copy_from_slice(&v.to_le_bytes());
            }
            4 => out.truncate(rng.below(len + 1)),
            5 => {
                let at = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
                out.splice(at..at, bytes);
            }
            6 if len > 0 => {
                // Repeat a chunk (a duplicated record or section).
                let from = rng.below(len);
                let n = 1 + rng.below((len - from).min(256));
                let chunk = out[from..from + n].to_vec();
                let at = rng.below(len + 1);
                out.splice(at..at, chunk);
            }
            7 if len > 0 => {
                let from = rng.below(len);
                let n = 1 + rng.below((len - from).min(64));
                out.drain(from..from + n);
            }
            _ if !other.is_empty() => {
                // Splice: a prefix of this input, the rest from another.
                let cut = rng.below(len + 1);
                let from = rng.below(other.len());
                out.truncate(cut);
                out.extend_from_slice(&other[from..]);
            }
            _ => {}
        }
    }
    out
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// Writes the CRC-32C of `b[from..to]` at `at`, where all of it lies in `b`.
fn put_crc(b: &mut [u8], from: usize, to: usize, at: usize) {
    if from <= to && to <= b.len() && at + 4 <= b.len() {
        let crc = testkit::crc32c(&b[from..to]);
        b[at..at + 4].copy_from_slice(&crc.to_le_bytes());
    }
}

/// Recomputes the checksums of a mutated file, as FORMAT.md lays them out (written here
/// independently of the crate), so that mutations reach the decoding behind them instead of
/// stopping at a checksum mismatch.
fn fix_checksums(target: &str, b: &mut [u8]) {
    match target {
        "manifest" => {
            put_crc(b, 0, 32, 32);
            // Version 2: the sparse declarations after the first 48 bytes, then their checksum.
            if u32_at(b, 8) == Some(2) && b.len() >= 52 {
                put_crc(b, 48, b.len() - 4, b.len() - 4);
            }
        }
        "segment" => {
            let (sections, table, crc_at) = match u32_at(b, 8) {
                Some(1) => (4, 40, 136),
                Some(2) => (8, 56, 248),
                _ => (9, 56, 272),
            };
            for i in 0..sections {
                let d = table + 24 * i;
                if let (Some(at), Some(len)) = (u64_at(b, d), u64_at(b, d + 8)) {
                    if let Some(end) = at.checked_add(len).filter(|&e| e <= b.len() as u64) {
                        put_crc(b, at as usize, end as usize, d + 16);
                    }
                }
            }
            put_crc(b, 0, crc_at, crc_at);
        }
        "log" => {
            let v2 = u32_at(b, 8) != Some(1);
            let (header, crc_at) = if v2 { (64, 32) } else { (32, 24) };
            put_crc(b, 0, crc_at, crc_at);
            let salt = b.get(24..32).map(<[u8]>::to_vec).unwrap_or_default();
            let mut pos = header;
            while let Some(len) = u32_at(b, pos) {
                let end = pos + 8 + len as usize;
                if end > b.len() {
                    break;
                }
                let crc = if v2 {
                    let mut salted = salt.clone();
                    salted.extend_from_slice(&len.to_le_bytes());
                    salted.extend_from_slice(&b[pos + 8..end]);
                    testkit::crc32c(&salted)
                } else {
                    testkit::crc32c(&b[pos + 8..end])
                };
                b[pos + 4..pos + 8].copy_from_slice(&crc.to_le_bytes());
                pos = end;
            }
        }
        "archive" if b.len() >= 4 => {
            let end = b.len() - 4;
            put_crc(b, 0, end, end);
        }
        "opfs_directory" => {
            for slot in [0usize, 4096] {
                let mut at = slot + 20;
                let count = u32_at(b, slot + 16).unwrap_or(0).min(200);
                for _ in 0..count {
                    match b.get(at) {
                        Some(&len) => at += 5 + len as usize,
                        None => break,
                    }
                }
                if at + 4 <= (slot + 4096).min(b.len()) {
                    put_crc(b, slot, at, at);
                }
            }
        }
        _ => {}
    }
}

#[test]
fn decoders_never_panic_on_mutated_input() {
    let secs: f64 = std::env::var("GRAPE_FUZZ_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3.0);
    let seed: u64 = std::env::var("GRAPE_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(14);
    // Panics are caught and reported with their input; keep the default hook quiet meanwhile.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut report = Vec::new();
    let mut failures = Vec::new();
    let corpus = std::env::var_os("GRAPE_FUZZ_CORPUS").map(std::path::PathBuf::from);
    for (name, target) in TARGETS {
        let seeds = seeds(name);
        if let Some(dir) = &corpus {
            let dir = dir.join(name);
            std::fs::create_dir_all(&dir).expect("the corpus directory can be made");
            for (i, seed) in seeds.iter().enumerate() {
                std::fs::write(dir.join(format!("seed-{i}")), seed).expect("writes");
            }
        }
        let mut rng = Rng::new(seed ^ name.len() as u64);
        let deadline = Instant::now() + Duration::from_secs_f64(secs);
        let mut runs = 0u64;
        // The seeds themselves first, then mutations until the deadline.
        let mut inputs = seeds.clone().into_iter();
        while Instant::now() < deadline || runs < seeds.len() as u64 {
            let input = inputs.next().unwrap_or_else(|| {
                let base = &seeds[rng.below(seeds.len())];
                let other = &seeds[rng.below(seeds.len())];
                let mut input = mutate(base, other, &mut rng);
                // Mostly past the checksums; sometimes not, to test them too.
                if rng.chance(0.8) {
                    fix_checksums(name, &mut input);
                }
                input
            });
            runs += 1;
            if catch_unwind(AssertUnwindSafe(|| target(&input))).is_err() {
                let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-failures");
                let _ = std::fs::create_dir_all(&dir);
                let file = dir.join(format!("{name}-{runs}.bin"));
                let _ = std::fs::write(&file, &input);
                failures.push(format!("{name}: panicked on {}", file.display()));
                break;
            }
        }
        report.push(format!("{name} {runs}"));
    }
    std::panic::set_hook(hook);
    println!("fuzz executions: {}", report.join(", "));
    assert!(failures.is_empty(), "{failures:#?}");
}
