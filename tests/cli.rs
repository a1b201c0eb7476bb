//! The `grape` command line, run as a user runs it: every command on a real directory, the
//! JSON it prints in Qdrant's shapes, exit codes, and `verify` on a damaged file.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{json, Value};

fn grape(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_grape"))
        .args(args)
        .output()
        .expect("grape runs")
}

/// Runs `grape` and returns its standard output, failing the test if it failed.
fn ok(args: &[&str]) -> String {
    let out = grape(args);
    assert!(
        out.status.success(),
        "grape {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn json_of(args: &[&str]) -> Value {
    serde_json::from_str(&ok(args)).expect("grape prints JSON")
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("grape-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A two-dimensional database in `root/db` made by `grape create` and `grape import` of
/// `points` as JSON lines (with a blank line at the end, which import skips).
fn imported(root: &Path, distance: &str, points: impl Iterator<Item = Value>) -> PathBuf {
    let db = root.join("db");
    ok(&["create", s(&db), "--dimension", "2", "--distance", distance]);
    let file = root.join("points.jsonl");
    let lines: Vec<String> = points
        .map(|p| p.to_string())
        .chain([String::new()])
        .collect();
    std::fs::write(&file, lines.join("\n")).unwrap();
    ok(&["import", s(&db), s(&file)]);
    db
}

#[test]
fn create_import_query_count_scroll_export_info_compact_snapshot() {
    let root = temp("all");
    let points = (0..25u64).map(
        |i| json!({"id": i, "vector": [i as f32, 0.0], "payload": {"even": i % 2 == 0, "i": i}}),
    );
    let db = imported(&root, "euclid", points);

    let count = json_of(&[
        "count",
        s(&db),
        r#"{"filter": {"must": [{"key": "even", "match": {"value": true}}]}}"#,
    ]);
    assert_eq!(count["result"]["count"], 13);
    assert_eq!(count["status"], "ok");
    assert_eq!(json_of(&["count", s(&db)])["result"]["count"], 25);

    let request = root.join("query.json");
    std::fs::write(
        &request,
        r#"{"query": [3.2, 0], "limit": 2, "with_payload": true}"#,
    )
    .unwrap();
    let found = json_of(&["query", s(&db), s(&request)]);
    let hits = found["result"]["points"].as_array().unwrap();
    assert_eq!(
        (hits[0]["id"].clone(), hits[1]["id"].clone()),
        (json!(3), json!(4))
    );
    assert_eq!(hits[0]["payload"]["i"], 3);
    let nearest = json_of(&[
        "query",
        s(&db),
        r#"{"query": {"nearest": [0, 0]}, "limit": 1}"#,
    ]);
    assert_eq!(nearest["result"]["points"][0]["id"], 0);

    let page = json_of(&["scroll", s(&db), r#"{"limit": 10, "offset": 20}"#]);
    assert_eq!(page["result"]["points"].as_array().unwrap().len(), 5);
    assert_eq!(page["result"]["next_page_offset"], Value::Null);

    // Export and import again: the same points.
    let exported = root.join("export.jsonl");
    ok(&["export", s(&db), s(&exported)]);
    let text = std::fs::read_to_string(&exported).unwrap();
    assert_eq!(text.lines().count(), 25);
    let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(
        first,
        json!({"id": 0, "vector": [0.0, 0.0], "payload": {"even": true, "i": 0}})
    );
    let copy = root.join("copy");
    ok(&[
        "create",
        s(&copy),
        "--dimension",
        "2",
        "--distance",
        "euclid",
    ]);
    ok(&["import", s(&copy), s(&exported)]);
    assert_eq!(ok(&["export", s(&copy)]), text, "export of the copy");

    let info = json_of(&["info", s(&db)]);
    assert_eq!(
        (info["dimension"].clone(), info["distance"].clone()),
        (json!(2), json!("Euclid"))
    );
    assert_eq!(info["points"], 25);
    assert!(info["files"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["name"] == "MANIFEST"));

    let snap = root.join("snap");
    ok(&["snapshot", s(&db), s(&snap)]);
    assert_eq!(json_of(&["count", s(&snap)])["result"]["count"], 25);
    ok(&["compact", s(&db)]);
    ok(&["verify", s(&db)]);
    std::fs::remove_dir_all(&root).unwrap();
}

/// A database moved as one archive file: the same points in the copy; a damaged archive, or a
/// directory that already holds a database, is refused and changes nothing.
#[test]
fn export_and_import_an_archive() {
    let root = temp("archive");
    let points =
        (0..40u64).map(|i| json!({"id": i, "vector": [1.0, i as f32], "payload": {"i": i}}));
    let db = imported(&root, "cosine", points);
    let archive = root.join("db.grape");
    ok(&["export", s(&db), "--archive", s(&archive)]);
    let copy = root.join("copy");
    ok(&["import", s(&copy), "--archive", s(&archive)]);
    assert_eq!(ok(&["export", s(&copy)]), ok(&["export", s(&db)]));

    let out = grape(&["import", s(&copy), "--archive", s(&archive)]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not empty"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut bytes = std::fs::read(&archive).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    let damaged = root.join("damaged.grape");
    std::fs::write(&damaged, &bytes).unwrap();
    let elsewhere = root.join("elsewhere");
    let out = grape(&["import", s(&elsewhere), "--archive", s(&damaged)]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("checksum mismatch"), "{err}");
    let left: Vec<_> = std::fs::read_dir(&elsewhere)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != "LOCK" && n != "OWNER")
        .collect();
    assert!(left.is_empty(), "a refused import left {left:?}");
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn npy_vectors_with_payload_lines() {
    let root = temp("npy");
    let db = root.join("db");
    ok(&["create", s(&db), "--dimension", "3"]);
    let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    npy.extend_from_slice(&(header.len() as u16).to_le_bytes());
    npy.extend_from_slice(header.as_bytes());
    for x in [1.0f32, 0.0, 0.0, 0.0, 1.0, 0.0] {
        npy.extend_from_slice(&x.to_le_bytes());
    }
    std::fs::write(root.join("v.npy"), npy).unwrap();
    std::fs::write(root.join("p.jsonl"), "{\"t\": \"a\"}\n{\"t\": \"b\"}\n").unwrap();
    let npy = root.join("v.npy");
    let payloads = root.join("p.jsonl");
    ok(&[
        "import",
        s(&db),
        "--npy",
        s(&npy),
        "--payloads",
        s(&payloads),
        "--first-id",
        "7",
    ]);
    let page = json_of(&["scroll", s(&db), "{}"]);
    assert_eq!(
        page["result"]["points"],
        json!([{"id": 7, "payload": {"t": "a"}}, {"id": 8, "payload": {"t": "b"}}])
    );
    // A payload file of the wrong length is refused before anything is written.
    std::fs::write(&payloads, "{}\n").unwrap();
    let out = grape(&[
        "import",
        s(&db),
        "--npy",
        s(&npy),
        "--payloads",
        s(&payloads),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 lines but"));
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn verify_finds_damage_and_changes_nothing() {
    let root = temp("verify");
    let db = imported(
        &root,
        "cosine",
        (1..=50u64).map(|i| json!({"id": i, "vector": [1.0, i as f32]})),
    );
    ok(&["compact", s(&db)]); // checkpoints: the points are in a segment now
    let report = ok(&["verify", s(&db)]);
    assert!(report.contains("50 points read back"), "{report}");

    let segment = std::fs::read_dir(&db)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "seg"))
        .expect("a segment");
    let mut bytes = std::fs::read(&segment).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&segment, &bytes).unwrap();
    let before: Vec<_> = std::fs::read_dir(&db)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let out = grape(&["verify", s(&db)]);
    assert_eq!(out.status.code(), Some(1), "damage is exit code 1");
    assert!(String::from_utf8_lossy(&out.stdout).contains("damaged"));
    let after: Vec<_> = std::fs::read_dir(&db)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(before, after, "verify changes nothing");
    assert_eq!(std::fs::read(&segment).unwrap(), bytes);
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn bad_usage_is_explained() {
    let out = grape(&["frobnicate", "x"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown command"));
    assert_eq!(grape(&[]).status.code(), Some(64));
    let help = grape(&["--help"]);
    assert!(
        help.status.success() && String::from_utf8_lossy(&help.stdout).contains("usage: grape")
    );
    let root = temp("usage");
    let out = grape(&["count", s(&root)]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("holds no database"));
    let out = grape(&["create", s(&root), "--dimension", "2", "--dimensions", "3"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown option --dimensions"));
    let out = grape(&["query", s(&root), "{\"query\": [1, 0], \"limt\": 3}"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown field `limt`"));
    std::fs::remove_dir_all(&root).unwrap();
}

/// Sparse vectors from the shell: `create --sparse` declares them (kept in the manifest, so
/// every later command opens the database as declared), `import` takes points carrying text
/// and sparse vectors by name, and `query` runs Qdrant's Query API: BM25, a sparse vector, and
/// a hybrid fusion. The older search request's `vector` still stands for `query`.
#[test]
fn sparse_vectors_and_hybrid_queries_from_the_shell() {
    let root = temp("sparse");
    let db = root.join("db");
    ok(&[
        "create",
        s(&db),
        "--dimension",
        "2",
        "--distance",
        "dot",
        "--sparse",
        "words=bm25,tags",
    ]);
    let texts = [
        "red grapes and red wine",
        "a green pear",
        "grapes of wrath",
        "a red apple",
    ];
    let lines: Vec<String> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            json!({"id": i, "vector": {"": [1.0, i as f32], "words": {"text": t},
                   "tags": {"indices": [i, 10], "values": [1.0, 0.5]}},
                   "payload": {"text": t}})
            .to_string()
        })
        .collect();
    let file = root.join("points.jsonl");
    std::fs::write(&file, lines.join("\n")).unwrap();
    ok(&["import", s(&db), s(&file)]);
    let info = json_of(&["info", s(&db)]);
    assert_eq!(info["sparse_vectors"]["words"]["modifier"], "idf");
    assert_eq!(info["sparse_vectors"]["tags"]["modifier"], "none");
    let ids = |answer: &Value| -> Vec<u64> {
        answer["result"]["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_u64().unwrap())
            .collect()
    };
    let bm25 = json_of(&[
        "query",
        s(&db),
        r#"{"query": {"text": "red grapes"}, "using": "words", "limit": 3, "with_payload": true}"#,
    ]);
    assert_eq!(ids(&bm25), [0, 2, 3]);
    assert_eq!(bm25["result"]["points"][0]["payload"]["text"], texts[0]);
    let tags = json_of(&[
        "query",
        s(&db),
        r#"{"query": {"indices": [2], "values": [3.0]}, "using": "tags"}"#,
    ]);
    assert_eq!(ids(&tags), [2]);
    let hybrid = json_of(&[
        "query",
        s(&db),
        r#"{"prefetch": [{"query": [0, 1], "limit": 2}, {"query": {"text": "pear"}, "using": "words"}],
            "query": {"fusion": "rrf"}, "limit": 3}"#,
    ]);
    // Dense: 3 then 2 (dot product with [0, 1]); words: 1 alone. RRF: 3 and 1, both first
    // in their lists, tie, and keep the order of the prefetches; then 2.
    assert_eq!(ids(&hybrid), [3, 1, 2]);
    let legacy = json_of(&["query", s(&db), r#"{"vector": [0, 1], "limit": 1}"#]);
    assert_eq!(ids(&legacy), [3]);
    let out = grape(&[
        "query",
        s(&db),
        r#"{"query": {"text": "red"}, "using": "body"}"#,
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("body"));
    let out = grape(&[
        "create",
        s(&root.join("bad")),
        "--dimension",
        "2",
        "--sparse",
        "w=bm52",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown sparse vector kind"));
    std::fs::remove_dir_all(&root).unwrap();
}

/// Named dense vectors from the shell: `create --named` declares them (in the manifest),
/// `import` takes points carrying them by name, `info` shows them, `query` searches one with
/// `using`, and `export` writes them back in Qdrant's shape.
#[test]
fn named_vectors_from_the_shell() {
    let root = temp("named");
    let db = root.join("db");
    ok(&[
        "create",
        s(&db),
        "--dimension",
        "2",
        "--named",
        "img=3:euclid,title=2",
    ]);
    let lines = [
        json!({"id": 1, "vector": {"": [1.0, 0.0], "img": [0.0, 0.0, 1.0]}}),
        json!({"id": 2, "vector": {"": [0.0, 1.0], "img": [5.0, 5.0, 5.0], "title": [1.0, 1.0]}}),
        json!({"id": 3, "vector": [0.0, 1.0]}),
    ];
    let file = root.join("points.jsonl");
    let text: Vec<String> = lines.iter().map(Value::to_string).collect();
    std::fs::write(&file, text.join("\n")).unwrap();
    ok(&["import", s(&db), s(&file)]);
    let info = json_of(&["info", s(&db)]);
    assert_eq!(
        info["named_vectors"]["img"],
        json!({"size": 3, "distance": "Euclid"})
    );
    assert_eq!(info["named_vectors"]["title"]["distance"], "Cosine");
    let found = json_of(&[
        "query",
        s(&db),
        r#"{"query": [4, 4, 4], "using": "img", "with_vector": ["img"]}"#,
    ]);
    assert_eq!(
        found["result"]["points"],
        json!([
            {"id": 2, "score": 3.0f32.sqrt(), "vector": {"img": [5.0, 5.0, 5.0]}},
            {"id": 1, "score": 41.0f32.sqrt(), "vector": {"img": [0.0, 0.0, 1.0]}},
        ])
    );
    let exported = root.join("out.jsonl");
    ok(&["export", s(&db), s(&exported)]);
    let back: Vec<Value> = std::fs::read_to_string(&exported)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(back[0]["vector"], lines[0]["vector"]);
    assert_eq!(back[2]["vector"], lines[2]["vector"]);
    // Named vectors only: every command opens it as its manifest states.
    let only = root.join("only");
    ok(&[
        "create",
        s(&only),
        "--dimension",
        "0",
        "--named",
        "img=3:dot",
    ]);
    std::fs::write(&file, r#"{"id": 7, "vector": {"img": [1, 2, 3]}}"#).unwrap();
    ok(&["import", s(&only), s(&file)]);
    let found = json_of(&["query", s(&only), r#"{"query": [1, 0, 0], "using": "img"}"#]);
    assert_eq!(found["result"]["points"], json!([{"id": 7, "score": 1.0}]));
    ok(&["verify", s(&only)]);
    // Qdrant's older search request names the vector beside it.
    let legacy = r#"{"vector": {"name": "img", "vector": [1, 0, 0]}, "limit": 1}"#;
    assert_eq!(
        json_of(&["query", s(&only), legacy])["result"],
        found["result"]
    );
    assert_eq!(json_of(&["info", s(&only)])["dimension"], 0);
    let out = grape(&[
        "create",
        s(&root.join("bad")),
        "--dimension",
        "2",
        "--named",
        "img",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("name=size:distance"));
    std::fs::remove_dir_all(&root).unwrap();
}
