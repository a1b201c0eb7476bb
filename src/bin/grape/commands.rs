//! The commands: each opens the database (or, for `info` and `verify`, reads it without
//! changing it), does one thing and prints Qdrant's JSON or a short report.

use std::io::{BufReader, Read};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use grape_vector_db::storage::{FsStorage, MemoryStorage, OpenMode, Storage};
use grape_vector_db::{
    CheckStatus, Distance, EmbeddedConfig, EmbeddedVectorDB, Filter, HnswConfig, Modifier, Point,
    QueryRequest, ScrollRequest, SparseVectorConfig, StoredDatabase,
};
use serde_json::{json, Map, Value};

use crate::args::Args;
use crate::jsonl::{self, Progress};

pub(crate) fn run(args: &Args) -> Result<ExitCode, String> {
    match args.command.as_str() {
        "create" => create(args),
        "import" => import(args),
        "export" => export(args),
        "query" => query(args),
        "count" => count(args),
        "scroll" => scroll(args),
        "info" => info(args),
        "verify" => verify(args),
        "snapshot" => snapshot(args),
        "compact" => compact(args),
        other => Err(format!(
            "unknown command {other:?} (grape --help lists them)"
        )),
    }
    .map(|code| code.unwrap_or(ExitCode::SUCCESS))
}

type Done = Result<Option<ExitCode>, String>;

fn create(args: &Args) -> Done {
    args.only(&[
        "--dimension",
        "--distance",
        "--no-index",
        "--sparse",
        "--named",
    ])?;
    let dimension = args
        .option("--dimension")
        .ok_or("--dimension is required")?
        .parse()
        .map_err(|_| "--dimension must be a positive integer")?;
    let distance = distance_of(args.option("--distance").unwrap_or("cosine"))?;
    if args.dir.join("MANIFEST").exists() {
        return Err(format!("{} already holds a database", args.dir.display()));
    }
    let mut builder = EmbeddedConfig::builder(dimension)
        .distance(distance)
        .data_dir(&args.dir);
    if args.switch("--no-index") {
        builder = builder.hnsw(None);
    }
    for declared in args
        .option("--sparse")
        .into_iter()
        .flat_map(|v| v.split(','))
    {
        let (name, kind) = declared.split_once('=').unwrap_or((declared, "none"));
        let config = match kind {
            "none" => SparseVectorConfig::default(),
            "idf" => SparseVectorConfig {
                modifier: Modifier::Idf,
                bm25: None,
            },
            "bm25" => SparseVectorConfig::bm25(),
            other => {
                return Err(format!(
                    "unknown sparse vector kind {other:?} in --sparse {declared} (none, idf, bm25)"
                ))
            }
        };
        builder = builder.sparse_vector(name.trim(), config);
    }
    for declared in args
        .option("--named")
        .into_iter()
        .flat_map(|v| v.split(','))
    {
        let bad = || format!("--named {declared}: expected name=size:distance (img=512:dot)");
        let (name, rest) = declared.split_once('=').ok_or_else(bad)?;
        let (size, distance) = rest.split_once(':').unwrap_or((rest, "cosine"));
        let size = size.trim().parse().map_err(|_| bad())?;
        builder = builder.named_vector(name.trim(), size, distance_of(distance.trim())?);
    }
    let db = EmbeddedVectorDB::open(builder.build().map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    db.close().map_err(|e| e.to_string())?;
    eprintln!(
        "created {} ({dimension} dimensions, {distance:?})",
        args.dir.display()
    );
    Ok(None)
}

/// A distance by its name on the command line.
fn distance_of(name: &str) -> Result<Distance, String> {
    match name {
        "cosine" => Ok(Distance::Cosine),
        "dot" => Ok(Distance::Dot),
        "euclid" => Ok(Distance::Euclid),
        "manhattan" => Ok(Distance::Manhattan),
        other => Err(format!(
            "unknown distance {other:?} (cosine, dot, euclid, manhattan)"
        )),
    }
}

/// The database in `args.dir`, with the configuration its manifest states.
fn open(args: &Args) -> Result<EmbeddedVectorDB, String> {
    let stored = stored(args)?;
    let config = as_stored(&stored)
        .data_dir(&args.dir)
        .hnsw(Some(HnswConfig::default()))
        .build()
        .map_err(|e| e.to_string())?;
    EmbeddedVectorDB::open(config).map_err(|e| e.to_string())
}

/// A configuration as the manifest states it: dimension, distance and named vectors (those a
/// database of named vectors only cannot be declared without; the open adds the rest).
fn as_stored(stored: &StoredDatabase) -> grape_vector_db::EmbeddedConfigBuilder {
    let mut builder = EmbeddedConfig::builder(stored.dimension).distance(stored.distance);
    for (name, v) in &stored.named_vectors {
        builder = builder.named_vector(name.clone(), v.size, v.distance);
    }
    builder
}

fn stored(args: &Args) -> Result<StoredDatabase, String> {
    let dir = &args.dir;
    if !dir.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    let storage = FsStorage::create(dir).map_err(|e| e.to_string())?;
    StoredDatabase::read(&storage)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| {
            format!(
                "{} holds no database (make one with grape create)",
                dir.display()
            )
        })
}

fn import(args: &Args) -> Done {
    args.only(&["--npy", "--payloads", "--first-id", "--archive"])?;
    if let Some(archive) = args.option("--archive") {
        return import_archive(args, archive);
    }
    let db = open(args)?;
    match (args.option("--npy"), args.positional.as_slice()) {
        (Some(npy), []) => import_npy(args, &db, npy)?,
        (None, [file]) => {
            let f = std::fs::File::open(file).map_err(|e| format!("{file}: {e}"))?;
            let mut progress = Progress::new(f.metadata().ok().map(|m| m.len()));
            jsonl::import_points(&db, BufReader::new(f), &mut progress)
                .map_err(|e| format!("{file}: {e}"))?;
            progress.finish();
        }
        _ => return Err("give a points file, or --npy with a vectors file".to_owned()),
    }
    db.close().map_err(|e| e.to_string())?;
    Ok(None)
}

/// A whole database from an archive (`grape export --archive`, JS `exportBytes()`), read as a
/// stream into the empty (or new) directory; a damaged archive leaves nothing there.
fn import_archive(args: &Args, archive: &str) -> Done {
    if !args.positional.is_empty() || args.option("--npy").is_some() {
        return Err("--archive takes the whole database: no points file or --npy with it".into());
    }
    std::fs::create_dir_all(&args.dir).map_err(|e| format!("{}: {e}", args.dir.display()))?;
    let storage = FsStorage::create(&args.dir).map_err(|e| e.to_string())?;
    let file = std::fs::File::open(archive).map_err(|e| format!("{archive}: {e}"))?;
    EmbeddedVectorDB::import_archive_from(&mut BufReader::new(file), &storage)
        .map_err(|e| format!("{archive}: {e}"))?;
    drop(storage);
    let db = open(args)?;
    eprintln!(
        "imported {} points into {}",
        db.count(None).map_err(|e| e.to_string())?,
        args.dir.display()
    );
    db.close().map_err(|e| e.to_string())?;
    Ok(None)
}

/// Vectors from a `.npy` file, ids from `--first-id` (0) on, payloads from the lines of
/// `--payloads` in the same order.
fn import_npy(args: &Args, db: &EmbeddedVectorDB, npy: &str) -> Result<(), String> {
    let bytes = std::fs::read(npy).map_err(|e| format!("{npy}: {e}"))?;
    let vectors = grape_vector_db::npy::parse(&bytes).map_err(|e| format!("{npy}: {e}"))?;
    let first: u64 = args
        .option("--first-id")
        .map_or(Ok(0), str::parse)
        .map_err(|_| "--first-id must be an unsigned integer")?;
    let mut payloads = match args.option("--payloads") {
        Some(file) => {
            let text = std::fs::read_to_string(file).map_err(|e| format!("{file}: {e}"))?;
            let lines: Vec<String> = text.lines().map(str::to_owned).collect();
            if lines.len() != vectors.rows {
                return Err(format!(
                    "{file} has {} lines but {npy} has {} vectors",
                    lines.len(),
                    vectors.rows
                ));
            }
            Some(lines.into_iter())
        }
        None => None,
    };
    let mut progress = Progress::new(Some(vectors.rows as u64));
    let mut batch = Vec::new();
    for row in 0..vectors.rows {
        let mut point = Point::new(first + row as u64, vectors.row(row).to_vec());
        if let Some(line) = payloads.as_mut().and_then(Iterator::next) {
            let payload: Value = serde_json::from_str(&line)
                .map_err(|e| format!("payload line {}: {e}", row + 1))?;
            point = point
                .with_payload(payload)
                .map_err(|e| format!("payload line {}: {e}", row + 1))?;
        }
        batch.push(point);
        if batch.len() == 1000 {
            jsonl::upsert(db, &mut batch, &mut progress, row as u64 + 1)?;
        }
    }
    jsonl::upsert(db, &mut batch, &mut progress, vectors.rows as u64)?;
    progress.finish();
    Ok(())
}

fn export(args: &Args) -> Done {
    args.only(&["--archive"])?;
    let db = open(args)?;
    if let Some(archive) = args.option("--archive") {
        if !args.positional.is_empty() {
            return Err("--archive writes the whole database: no points file with it".into());
        }
        return export_archive(&db, archive);
    }
    let written = match args.positional.as_slice() {
        [] => jsonl::export_points(&db, &mut std::io::stdout().lock())?,
        [file] => {
            let f = std::fs::File::create(file).map_err(|e| format!("{file}: {e}"))?;
            jsonl::export_points(&db, &mut std::io::BufWriter::new(f))?
        }
        _ => return Err("export takes at most one output file".to_owned()),
    };
    eprintln!("exported {written} points");
    Ok(None)
}

/// The whole database as one archive file, written as a stream; removed again if it fails.
fn export_archive(db: &EmbeddedVectorDB, archive: &str) -> Done {
    let file = std::fs::File::create(archive).map_err(|e| format!("{archive}: {e}"))?;
    let mut out = std::io::BufWriter::new(file);
    if let Err(e) = db.export_archive_to(&mut out) {
        drop(out);
        let _ = std::fs::remove_file(archive);
        return Err(format!("{archive}: {e}"));
    }
    let bytes = out.into_inner().map_err(|e| format!("{archive}: {e}"))?;
    bytes.sync_all().map_err(|e| format!("{archive}: {e}"))?;
    eprintln!(
        "archive of {} points written to {archive} ({:.1} MiB)",
        db.count(None).map_err(|e| e.to_string())?,
        bytes.metadata().map_or(0, |m| m.len()) as f64 / (1 << 20) as f64
    );
    Ok(None)
}

/// The request argument: JSON text, a file holding it, `-` for standard input, or `{}`.
fn request(args: &Args) -> Result<Map<String, Value>, String> {
    let text = match args.positional.as_slice() {
        [] => "{}".to_owned(),
        [arg] if arg == "-" => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| e.to_string())?;
            text
        }
        [arg] if arg.trim_start().starts_with('{') => arg.clone(),
        [file] => std::fs::read_to_string(file).map_err(|e| format!("{file}: {e}"))?,
        _ => return Err("give one request".to_owned()),
    };
    match serde_json::from_str(&text).map_err(|e| format!("the request is not JSON: {e}"))? {
        Value::Object(map) => Ok(map),
        _ => Err("the request must be a JSON object".to_owned()),
    }
}

/// Prints Qdrant's response envelope around `result`.
fn respond(result: Value, started: Instant) -> Done {
    let out = json!({"result": result, "status": "ok", "time": started.elapsed().as_secs_f64()});
    println!("{out}");
    Ok(None)
}

/// Qdrant's query request (a dense, sparse or text `query` with `using`, or `prefetch` fused
/// or re-scored: `EmbeddedVectorDB::query`); the older search request's `vector` stands for
/// `query`, and its named form `{"name": ..., "vector": [...]}` for `using` and `query`.
fn query(args: &Args) -> Done {
    args.only(&[])?;
    let mut map = request(args)?;
    let started = Instant::now();
    if let Some(mut vector) = map.remove("vector") {
        if map.contains_key("query") {
            return Err("give \"query\" or \"vector\", not both".to_owned());
        }
        let named = vector.as_object_mut().filter(|v| v.contains_key("name"));
        if let Some(named) = named {
            let shape = "a named vector is {\"name\": ..., \"vector\": [...]}";
            if named.len() != 2 {
                return Err(shape.to_owned());
            }
            let (Some(name), Some(dense)) = (named.remove("name"), named.remove("vector")) else {
                return Err(shape.to_owned());
            };
            map.insert("using".to_owned(), name);
            vector = dense;
        }
        map.insert("query".to_owned(), vector);
    }
    let request = QueryRequest::from_json(&Value::Object(map)).map_err(|e| e.to_string())?;
    let db = open(args)?;
    let found = db.query(&request).map_err(|e| e.to_string())?;
    respond(json!({"points": found.points}), started)
}

fn count(args: &Args) -> Done {
    args.only(&[])?;
    let mut map = request(args)?;
    let started = Instant::now();
    // Counts are always exact here.
    map.remove("exact");
    let filter = match map.remove("filter") {
        None | Some(Value::Null) => None,
        Some(f) => Some(Filter::from_json(&f).map_err(|e| e.to_string())?),
    };
    if let Some(key) = map.keys().next() {
        return Err(format!("unknown field {key:?} in a count request"));
    }
    let db = open(args)?;
    let n = db.count(filter.as_ref()).map_err(|e| e.to_string())?;
    respond(json!({"count": n}), started)
}

fn scroll(args: &Args) -> Done {
    args.only(&[])?;
    let request: ScrollRequest =
        serde_json::from_value(Value::Object(request(args)?)).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let db = open(args)?;
    let page = db.scroll(&request).map_err(|e| e.to_string())?;
    respond(
        json!({"points": page.points, "next_page_offset": page.next_page_offset}),
        started,
    )
}

fn info(args: &Args) -> Done {
    args.only(&[])?;
    let stored = stored(args)?;
    let mut out = serde_json::to_value(&stored).map_err(|e| e.to_string())?;
    // The counts need an open; a database open elsewhere still shows its files.
    match open(args) {
        Ok(db) => {
            let stats = db.stats();
            out["points"] = json!(stats.total_vectors);
            out["tombstones"] = json!(stats.tombstones);
            out["disk_bytes"] = json!(stats.disk_bytes);
            out["memory"] = json!(stats.memory);
        }
        Err(why) => out["points"] = json!(format!("unknown: {why}")),
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?
    );
    Ok(None)
}

/// Opens a private copy in memory (nothing in the directory changes, not even a torn tail
/// cut), which checks every checksum and graph link; then reads every point back and runs the
/// engine's health check.
fn verify(args: &Args) -> Done {
    args.only(&[])?;
    let stored = stored(args)?;
    let disk = FsStorage::create(&args.dir).map_err(|e| e.to_string())?;
    let copy = MemoryStorage::new();
    for file in &stored.files {
        let bytes = disk
            .read_all(&file.name)
            .map_err(|e| format!("{}: {e}", file.name))?;
        let f = copy
            .open(&file.name, OpenMode::CreateIfMissing)
            .map_err(|e| e.to_string())?;
        f.write_at(0, &bytes).map_err(|e| e.to_string())?;
    }
    let config = as_stored(&stored).build().map_err(|e| e.to_string())?;
    let db = match EmbeddedVectorDB::open_with_storage(config, Arc::new(copy)) {
        Ok(db) => db,
        Err(e) => {
            println!("damaged: {e}");
            return Ok(Some(ExitCode::from(1)));
        }
    };
    let report = db.open_report();
    let mut request = ScrollRequest {
        limit: 1000,
        with_payload: true,
        with_vector: true,
        ..ScrollRequest::default()
    };
    let mut read = 0;
    loop {
        let page = db.scroll(&request).map_err(|e| e.to_string())?;
        read += page.points.len();
        match page.next_page_offset {
            Some(next) => request.offset = Some(next),
            None => break,
        }
    }
    println!(
        "{read} points read back ({} from the segment, {} log records replayed, {} bytes of \
         torn log tail)",
        report.segment_points, report.wal_records_replayed, report.wal_bytes_truncated
    );
    let health = db.health();
    for check in &health.checks {
        println!("{:<8} {:?}: {}", check.name, check.status, check.message);
    }
    Ok(Some(match health.status {
        CheckStatus::Healthy => ExitCode::SUCCESS,
        CheckStatus::Warning => ExitCode::from(2),
        CheckStatus::Critical => ExitCode::from(1),
    }))
}

fn snapshot(args: &Args) -> Done {
    args.only(&[])?;
    let [dest] = args.positional.as_slice() else {
        return Err("give the destination directory".to_owned());
    };
    let db = open(args)?;
    db.snapshot(dest).map_err(|e| e.to_string())?;
    eprintln!("snapshot written to {dest}");
    Ok(None)
}

fn compact(args: &Args) -> Done {
    args.only(&[])?;
    let db = open(args)?;
    let before = db.stats().tombstones;
    db.compact().map_err(|e| e.to_string())?;
    db.close().map_err(|e| e.to_string())?;
    eprintln!("compacted: {before} deleted slots reclaimed");
    Ok(None)
}
