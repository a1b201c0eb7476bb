//! HNSW benchmark beside hnswlib and faiss, measured in the same run on the same vectors.
//!
//! `./scripts/bench-hnsw` (sets up the Python peers) or
//! `cargo bench --bench hnsw -- [--base B] [--query Q] [--gt G] [--m 16] [--ef-construction 200]
//! [--quantization none|sq8|binary] [--vectors-on-disk] [--oversampling X]`
//! with `.npy` (float16/float32; int32 ground truth) or `.fvecs`/`.ivecs` files. Defaults to
//! `../shared/data/wordnet-minilm` (cosine); without `--gt` the exact top 10 is computed here.
//! Prints build time (1 thread), index memory, recall@10 and queries/s over `ef` (1 thread), and
//! the ratio of our queries/s to hnswlib's at equal recall. With `--quantization sq8` or `binary`
//! the same graph is also searched through its codes (the `f32` curve walks the vectors, as
//! `params.quantization.ignore` asks), out to a wider beam (codes need one to reach the recall the
//! vectors do), and the ratio of the two at equal recall is printed. `--vectors-on-disk` builds
//! the one-thread database in a directory with its vectors kept on disk (moved there by a
//! checkpoint), so the codes re-score by reading the file; `--oversampling` re-scores that many
//! times the limit instead of the whole beam.

use grape_testkit as testkit;

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Instant;

use grape_vector_db::{
    EmbeddedConfig, EmbeddedVectorDB, HnswConfig, Point, PointId, Quantization,
    QuantizationSearchParams, SearchParams, SearchRequest,
};

const EFS: [usize; 8] = [16, 24, 32, 48, 64, 96, 128, 256];

/// Recall@10 and queries/s by `ef`.
type Curve = Vec<(usize, f64, f64)>;

struct Args {
    base: PathBuf,
    query: PathBuf,
    /// `N,DIM`: generate clustered vectors instead of reading files.
    synthetic: Option<(usize, usize)>,
    gt: Option<PathBuf>,
    m: usize,
    ef_construction: usize,
    limit_queries: usize,
    quantization: Quantization,
    vectors_on_disk: bool,
    oversampling: Option<f64>,
}

fn args() -> Option<Args> {
    let mut it = std::env::args().skip(1);
    let wordnet = testkit::wordnet_dir();
    let (base, query) = testkit::wordnet_vectors().unwrap_or_default();
    let mut a = Args {
        base,
        query,
        gt: wordnet.as_ref().map(|d| d.join("gt100-cosine.i32.npy")),
        synthetic: None,
        m: 16,
        ef_construction: 200,
        limit_queries: 1000,
        quantization: Quantization::None,
        vectors_on_disk: false,
        oversampling: None,
    };
    while let Some(flag) = it.next() {
        let mut value = || it.next().expect("flag needs a value");
        match flag.as_str() {
            "--base" => {
                a.base = value().into();
                a.gt = None;
            }
            "--query" => a.query = value().into(),
            "--gt" => a.gt = Some(value().into()),
            "--synthetic" => {
                let v = value();
                let (n, d) = v.split_once(',').expect("--synthetic N,DIM");
                a.synthetic = Some((n.parse().unwrap(), d.parse().unwrap()));
                a.gt = None;
            }
            "--m" => a.m = value().parse().unwrap(),
            "--ef-construction" => a.ef_construction = value().parse().unwrap(),
            "--queries" => a.limit_queries = value().parse().unwrap(),
            "--quantization" => {
                let v = value();
                a.quantization = serde_json::from_value(serde_json::json!(v))
                    .unwrap_or_else(|_| panic!("--quantization none|sq8|binary, not {v}"));
            }
            "--vectors-on-disk" => a.vectors_on_disk = true,
            "--oversampling" => a.oversampling = Some(value().parse().unwrap()),
            _ => {} // cargo bench passes `--bench`
        }
    }
    if a.base.as_os_str().is_empty() && a.synthetic.is_none() {
        eprintln!("no dataset: pass --base and --query, or provide ../shared/data/wordnet-minilm");
        return None;
    }
    Some(a)
}

/// Exact top 10 by cosine, computed with our own exact search when no ground truth is given.
fn exact_top10(base: &testkit::Matrix, queries: &testkit::Matrix) -> Vec<Vec<u32>> {
    let db = EmbeddedVectorDB::open(
        EmbeddedConfig::builder(base.dim)
            .hnsw(None)
            .build()
            .unwrap(),
    )
    .unwrap();
    db.upsert(
        (0..base.rows)
            .map(|i| Point::new(i as u64, base.row(i).to_vec()))
            .collect(),
    )
    .unwrap();
    let reqs: Vec<SearchRequest> = (0..queries.rows)
        .map(|q| SearchRequest::new(queries.row(q).to_vec(), 10))
        .collect();
    reqs.chunks(64)
        .flat_map(|chunk| db.search_batch(chunk).unwrap())
        .map(|r| r.result.iter().map(|p| num(p.id)).collect())
        .collect()
}

fn num(id: PointId) -> u32 {
    match id {
        PointId::Num(n) => n as u32,
        PointId::Uuid(_) => unreachable!("the benchmark uses integer ids"),
    }
}

/// Recall@10 and queries/s of filtered searches at 50%, 10% and 1% selectivity (ef 64),
/// against the exact filtered answer.
fn filtered(db: &EmbeddedVectorDB, queries: &testkit::Matrix) {
    let n = queries.rows.min(200);
    for pct in [50, 10, 1] {
        let filter: grape_vector_db::Filter = serde_json::from_value(
            serde_json::json!({"must": [{"key": "pct", "range": {"lt": pct}}]}),
        )
        .unwrap();
        let req = |q: usize, exact: bool| {
            let mut r = SearchRequest::new(queries.row(q).to_vec(), 10).with_filter(filter.clone());
            r.params = SearchParams {
                hnsw_ef: Some(64),
                exact,
                ..SearchParams::default()
            };
            r
        };
        let t = Instant::now();
        let approx: Vec<_> = (0..n).map(|q| db.search(&req(q, false)).unwrap()).collect();
        let qps = n as f64 / t.elapsed().as_secs_f64();
        let mut hits = 0;
        for (q, a) in approx.iter().enumerate() {
            let exact = db.search(&req(q, true)).unwrap();
            let truth: HashSet<PointId> = exact.result.iter().map(|p| p.id).collect();
            hits += a.result.iter().filter(|p| truth.contains(&p.id)).count();
        }
        let path = if approx.iter().all(|a| a.exact) {
            "exact scan"
        } else {
            "graph"
        };
        let recall = hits as f64 / (10 * n) as f64;
        println!("ours, filter matching {pct:>2}%: recall@10 {recall:.4}  {qps:>8.0} q/s ({path})");
        testkit::result(
            "hnsw",
            "filtered_qps",
            qps,
            "queries/s",
            serde_json::json!({"selectivity_pct": pct, "recall": recall, "path": path}),
        );
    }
}

/// Our queries/s at `recall`, interpolated log-linearly between the two points of the curve
/// around it (the first point if even it is above `recall`).
fn qps_at_recall(curve: &[(usize, f64, f64)], recall: f64) -> Option<f64> {
    let first = curve.first()?;
    if first.1 >= recall {
        return Some(first.2);
    }
    curve.windows(2).find_map(|w| {
        let ((_, r1, q1), (_, r2, q2)) = (w[0], w[1]);
        (r1 < recall && recall <= r2).then(|| q1 * (q2 / q1).powf((recall - r1) / (r2 - r1)))
    })
}

fn main() {
    let Some(args) = args() else { return };
    let dataset = match args.synthetic {
        Some((n, dim)) => format!("synthetic {n}x{dim}"),
        None => args.base.parent().and_then(|p| p.file_name()).map_or_else(
            || args.base.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        ),
    };
    let mut args = args;
    let (base, mut queries) = match args.synthetic {
        Some((n, dim)) => {
            let all = testkit::clustered(n + 1000, dim, (n / 1000).max(10), 7);
            let split = n * dim;
            (
                testkit::Matrix {
                    rows: n,
                    dim,
                    data: all.data[..split].to_vec(),
                },
                testkit::Matrix {
                    rows: 1000,
                    dim,
                    data: all.data[split..].to_vec(),
                },
            )
        }
        None => (
            testkit::read_matrix(&args.base).unwrap(),
            testkit::read_matrix(&args.query).unwrap(),
        ),
    };
    if args.synthetic.is_some() {
        // The peers read files: give them the same generated vectors.
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-hnsw-synthetic");
        std::fs::create_dir_all(&dir).unwrap();
        args.base = dir.join(format!("base-{}x{}.npy", base.rows, base.dim));
        args.query = dir.join(format!("query-{}x{}.npy", queries.rows, queries.dim));
        testkit::write_npy(&args.base, &base);
        testkit::write_npy(&args.query, &queries);
    }
    queries.rows = queries.rows.min(args.limit_queries);
    queries.data.truncate(queries.rows * queries.dim);
    let truth: Vec<Vec<u32>> = match &args.gt {
        Some(gt) => {
            let gt = testkit::read_matrix(gt).unwrap();
            (0..queries.rows)
                .map(|q| gt.row(q)[..10].iter().map(|&x| x as u32).collect())
                .collect()
        }
        None => exact_top10(&base, &queries),
    };
    println!(
        "data: {} x {} base, {} queries ({}); M={}, ef_construction={}, cosine, 1 thread",
        base.rows,
        base.dim,
        queries.rows,
        match args.synthetic {
            Some(_) => "synthetic clustered, seed 7".to_owned(),
            None => args.base.display().to_string(),
        },
        args.m,
        args.ef_construction
    );

    let config = |threads: usize| {
        EmbeddedConfig::builder(base.dim)
            .thread_pool_size(threads)
            .payload_index("pct")
            .hnsw(Some(HnswConfig {
                m: args.m,
                ef_construction: args.ef_construction,
                ef: 64,
                full_scan_threshold: 0,
            }))
            .quantization(args.quantization)
            .build()
            .unwrap()
    };
    // `pct` (row % 100) lets filtered searches pick their selectivity.
    let points: Vec<Point> = (0..base.rows)
        .map(|i| {
            Point::new(i as u64, base.row(i).to_vec())
                .with_payload(serde_json::json!({"pct": i % 100}))
                .unwrap()
        })
        .collect();
    // Build twice: on all cores, then on one thread (the peers' setting, and the index the
    // searches below use; both graphs are the same).
    let t = Instant::now();
    let db_all = EmbeddedVectorDB::open(config(0)).unwrap();
    db_all.upsert(points.clone()).unwrap();
    let build_all = t.elapsed();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-hnsw-db");
    let _ = std::fs::remove_dir_all(&dir);
    let db = match args.vectors_on_disk {
        true => EmbeddedConfig {
            data_dir: Some(dir.clone()),
            vectors_on_disk: true,
            ..config(1)
        },
        false => config(1),
    };
    let db = EmbeddedVectorDB::open(db).unwrap();
    let t = Instant::now();
    db.upsert(points).unwrap();
    let build = t.elapsed();
    // The checkpoint moves the vectors to the segment file, read from there to re-score.
    db.checkpoint().unwrap();
    let stats = db.stats();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let tag = serde_json::json!({"dataset": dataset, "lib": "ours"});
    testkit::result(
        "hnsw",
        "build_1_thread",
        build.as_secs_f64(),
        "s",
        tag.clone(),
    );
    testkit::result(
        "hnsw",
        "build_all_threads",
        build_all.as_secs_f64(),
        "s",
        serde_json::json!({"dataset": dataset, "lib": "ours", "threads": cores}),
    );
    testkit::result(
        "hnsw",
        "memory",
        stats.memory.total() as f64 / 1048576.0,
        "MiB",
        serde_json::json!({"dataset": dataset, "lib": "ours", "raw_vectors_mib": (base.rows * base.dim * 4) as f64 / 1048576.0, "bytes_per_vector": stats.memory.total() as f64 / base.rows as f64, "quantization": serde_json::to_value(args.quantization).unwrap()}),
    );
    println!(
        "ours: build {:.1} s on 1 thread, {:.1} s on {cores}; memory {:.1} MiB (vectors {:.1}, \
         graph and payload index {:.1}, ids {:.1})",
        build.as_secs_f64(),
        build_all.as_secs_f64(),
        stats.memory.total() as f64 / 1048576.0,
        (stats.memory.vectors + stats.memory.mapped) as f64 / 1048576.0,
        stats.memory.index as f64 / 1048576.0,
        stats.memory.ids as f64 / 1048576.0,
    );

    // The f32 curve walks the vectors (`ignore`: the same graph as the codes'), then, with
    // quantization, the codes' curve.
    let modes: &[Quantization] = match args.quantization {
        Quantization::None => &[Quantization::None],
        q => &[Quantization::None, q],
    };
    let on_disk = |name: &str| match args.vectors_on_disk && name != "none" {
        true => format!("{name}-on-disk"),
        false => name.to_owned(),
    };
    // Modes alternate at each ef, each timed best of three rounds, so that the noise of a
    // shared machine falls on both alike.
    let mut curves: Vec<(String, Curve)> = modes
        .iter()
        .map(|&m| {
            let name = serde_json::to_value(m).unwrap();
            (on_disk(name.as_str().unwrap_or_default()), Vec::new())
        })
        .collect();
    // Codes estimate keys, so their beam must be wider for the recall the vectors reach.
    let wider: &[usize] = match args.quantization {
        Quantization::None => &[],
        _ => &[384, 512],
    };
    for &ef in EFS.iter().chain(wider) {
        for (&mode, (name, curve)) in modes.iter().zip(&mut curves) {
            let reqs: Vec<SearchRequest> = (0..queries.rows)
                .map(|q| {
                    let mut r = SearchRequest::new(queries.row(q).to_vec(), 10);
                    r.params = SearchParams {
                        hnsw_ef: Some(ef),
                        exact: false,
                        quantization: Some(QuantizationSearchParams {
                            ignore: mode == Quantization::None,
                            oversampling: args.oversampling,
                            ..QuantizationSearchParams::default()
                        }),
                    };
                    r
                })
                .collect();
            let mut secs = f64::INFINITY;
            let mut results = Vec::new();
            for _ in 0..3 {
                let t = Instant::now();
                results = reqs.iter().map(|r| db.search(r).unwrap()).collect();
                secs = secs.min(t.elapsed().as_secs_f64());
            }
            let hits: usize = results
                .iter()
                .zip(&truth)
                .map(|(r, t)| {
                    let t: HashSet<u32> = t.iter().copied().collect();
                    r.result.iter().filter(|p| t.contains(&num(p.id))).count()
                })
                .sum();
            let recall = hits as f64 / (10 * queries.rows) as f64;
            let qps = queries.rows as f64 / secs;
            // All threads: one batch, which the facade splits over its thread pool.
            let t = Instant::now();
            db_all.search_batch(&reqs).unwrap();
            let qps_all = queries.rows as f64 / t.elapsed().as_secs_f64();
            println!("ours ({name}): ef {ef:>4}  recall@10 {recall:.4}  {qps:>8.0} q/s, {qps_all:>8.0} on all threads");
            testkit::result(
                "hnsw",
                "curve_all_threads",
                qps_all,
                "queries/s",
                serde_json::json!({"dataset": dataset, "lib": "ours", "quantization": name, "ef": ef, "recall": recall, "threads": cores}),
            );
            testkit::result(
                "hnsw",
                "curve",
                qps,
                "queries/s",
                serde_json::json!({"dataset": dataset, "lib": "ours", "quantization": name, "ef": ef, "recall": recall}),
            );
            curve.push((ef, recall, qps));
        }
    }
    // The codes against the vectors, at the recalls both curves reach.
    if let [(_, f32_curve), (name, coded)] = &curves[..] {
        for recall in [0.95, 0.97, 0.98, 0.99] {
            if let (Some(ours), Some(theirs)) = (
                qps_at_recall(coded, recall),
                qps_at_recall(f32_curve, recall),
            ) {
                let ratio = ours / theirs;
                println!(
                    "at recall@10 {recall}: {name} {ours:.0} q/s vs f32 {theirs:.0} q/s: ratio {ratio:.2}"
                );
                testkit::result(
                    "hnsw",
                    "quantized_vs_f32",
                    ratio,
                    "x",
                    serde_json::json!({"dataset": dataset, "quantization": name, "recall": recall}),
                );
            }
        }
    }

    filtered(&db, &queries);

    let Ok(python) = std::env::var("GRAPE_PEERS_PYTHON") else {
        println!(
            "peers: set GRAPE_PEERS_PYTHON (./scripts/bench-hnsw does) to run hnswlib and faiss"
        );
        return;
    };
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/peers_hnsw.py");
    let out = std::process::Command::new(python)
        .arg(script)
        .arg(&args.base)
        .arg(&args.query)
        .args([
            "--m",
            &args.m.to_string(),
            "--ef-construction",
            &args.ef_construction.to_string(),
        ])
        .args(["--queries", &queries.rows.to_string()])
        .args(EFS.iter().map(|e| format!("--ef={e}")))
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let peers: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    for p in &peers {
        println!("{}", p["line"].as_str().unwrap_or_default());
        let lib = p["lib"].as_str().unwrap_or_default();
        if let (Some(qps), Some(recall)) = (p["qps"].as_f64(), p["recall"].as_f64()) {
            testkit::result(
                "hnsw",
                "curve",
                qps,
                "queries/s",
                serde_json::json!({"dataset": dataset, "lib": lib, "ef": p["ef"], "recall": recall}),
            );
        }
        if let (Some(qps), Some(recall)) = (p["qps_all"].as_f64(), p["recall"].as_f64()) {
            testkit::result(
                "hnsw",
                "curve_all_threads",
                qps,
                "queries/s",
                serde_json::json!({"dataset": dataset, "lib": lib, "ef": p["ef"], "recall": recall, "threads": cores}),
            );
        }
        if let Some(b) = p["build_s"].as_f64() {
            testkit::result(
                "hnsw",
                "build_1_thread",
                b,
                "s",
                serde_json::json!({"dataset": dataset, "lib": lib}),
            );
        }
    }
    // Our queries/s at the smallest ef reaching each peer's recall, against the peer's: walking
    // the vectors, and walking the codes where the run has them.
    for (lib, (name, curve)) in ["hnswlib", "faiss"]
        .into_iter()
        .flat_map(|lib| curves.iter().map(move |c| (lib, c)))
    {
        let Some(peer) = peers
            .iter()
            .filter(|p| p["lib"] == lib && p["recall"].as_f64().is_some_and(|r| r >= 0.95))
            .min_by(|a, b| a["ef"].as_u64().cmp(&b["ef"].as_u64()))
        else {
            continue;
        };
        let (peer_recall, peer_qps) = (
            peer["recall"].as_f64().unwrap(),
            peer["qps"].as_f64().unwrap(),
        );
        match qps_at_recall(curve, peer_recall) {
            Some(qps) => {
                println!(
                    "at recall@10 {peer_recall:.4} ({lib}'s smallest ef reaching 0.95: {}): \
                     ours ({name}) {qps:.0} q/s (interpolated on our curve) vs {lib} \
                     {peer_qps:.0} q/s: ratio {:.2}",
                    peer["ef"],
                    qps / peer_qps
                );
                testkit::result(
                    "hnsw",
                    "qps_ratio_at_equal_recall",
                    qps / peer_qps,
                    "x",
                    serde_json::json!({"dataset": dataset, "peer": lib, "recall": peer_recall, "quantization": name}),
                );
            }
            None => println!("ours ({name}) never reached {lib}'s recall {peer_recall:.4}"),
        }
        if name != "none" {
            continue;
        }
        if let Some(b) = peers
            .iter()
            .find(|p| p["lib"] == lib && p["build_s"].is_f64())
        {
            println!(
                "build (1 thread): ours {:.1} s vs {lib} {:.1} s: ratio {:.2}",
                build.as_secs_f64(),
                b["build_s"].as_f64().unwrap(),
                build.as_secs_f64() / b["build_s"].as_f64().unwrap()
            );
        }
    }
}
