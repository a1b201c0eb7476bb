//! Test, example and benchmark support: a seeded RNG, synthetic clustered vectors and a reader
//! for the real embedding set in `$GRAPE_DATA`, by default `../shared/data` (absent in users'
//! clones: callers skip).
//!
//! The test kit of Grape Vector DB, shared by `tests/`, `examples/`, `benches/` and `fuzz/` so
//! that no logic is written twice. Also: `decoders` (the fuzz entry points), `faulty` and
//! `power_loss` (storages that fail or record their calls), `workload` (a seeded script of
//! calls and its model), and `js` (in WebAssembly: driving the JS API from Rust).

use std::path::PathBuf;

pub mod conformance;
pub mod decoders;
pub mod faulty;
pub mod power_loss;
pub mod workload;

#[cfg(target_arch = "wasm32")]
pub mod js;

/// The two copies of `db` a user can make, each opened with `config` (its `data_dir`
/// replaced): a snapshot into the directory `snapshot`, and an archive imported into memory.
#[cfg(not(target_arch = "wasm32"))]
pub fn copies(
    db: &grape_vector_db::EmbeddedVectorDB,
    snapshot: &std::path::Path,
    config: &grape_vector_db::EmbeddedConfig,
) -> [grape_vector_db::EmbeddedVectorDB; 2] {
    use grape_vector_db::{EmbeddedConfig, EmbeddedVectorDB};
    db.snapshot(snapshot).expect("a snapshot");
    let copy = EmbeddedVectorDB::open(EmbeddedConfig {
        data_dir: Some(snapshot.to_owned()),
        ..config.clone()
    })
    .expect("the snapshot opens");
    let archive = db.export_archive().expect("an archive");
    let dest = grape_vector_db::storage::MemoryStorage::new();
    EmbeddedVectorDB::import_archive(&archive, &dest).expect("the archive imports");
    let imported = EmbeddedVectorDB::open_with_storage(
        EmbeddedConfig {
            data_dir: None,
            ..config.clone()
        },
        std::sync::Arc::new(dest),
    )
    .expect("the imported archive opens");
    [copy, imported]
}

/// CRC-32C (Castagnoli), from a table built on first use: an implementation independent of the
/// crate's, for tests that write checksummed bytes themselves.
pub fn crc32c(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, entry) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 == 1 {
                    (c >> 1) ^ 0x82F6_3B78
                } else {
                    c >> 1
                };
            }
            *entry = c;
        }
        t
    });
    !data.iter().fold(!0u32, |crc, &b| {
        table[((crc ^ u32::from(b)) & 0xFF) as usize] ^ (crc >> 8)
    })
}

/// Writes `m` as a float32 `.npy`, for the Python peers.
pub fn write_npy(path: &std::path::Path, m: &Matrix) {
    let header = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {}), }}",
        m.rows, m.dim
    );
    let pad = 64 - (10 + header.len() + 1) % 64;
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&((header.len() + pad + 1) as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend(std::iter::repeat_n(b' ', pad));
    out.push(b'\n');
    out.extend_from_slice(bytemuck::cast_slice(&m.data));
    std::fs::write(path, out).unwrap();
}

/// Prints one machine-readable figure, for the report of `scripts/bench`:
/// `RESULT {"bench": .., "name": .., "value": .., "unit": .., ...extra}`.
pub fn result(bench: &str, name: &str, value: f64, unit: &str, extra: serde_json::Value) {
    let mut line = serde_json::json!({"bench": bench, "name": name, "value": value, "unit": unit});
    if let (Some(line), serde_json::Value::Object(extra)) = (line.as_object_mut(), extra) {
        line.extend(extra);
    }
    println!("RESULT {line}");
}

/// The `p` quantile (0..=1) of `xs` (sorted in place).
pub fn percentile(xs: &mut [std::time::Duration], p: f64) -> std::time::Duration {
    xs.sort_unstable();
    xs[((xs.len() - 1) as f64 * p).round() as usize]
}

/// The median of `xs`.
pub fn median(mut xs: Vec<std::time::Duration>) -> std::time::Duration {
    percentile(&mut xs, 0.5)
}

/// Resident memory of this process in bytes (Linux; 0 elsewhere).
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// Resident memory of this process by kind, in bytes (Linux; zeros elsewhere): anonymous
/// (the heap: private, gone only when freed) and file-backed (mapped files' pages in use: the
/// kernel's page cache, which it may drop under pressure and read again).
pub fn rss_by_kind() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024)
    };
    (field("RssAnon:"), field("RssFile:"))
}

/// SplitMix64: tiny, fast and good enough for test data; a seed reproduces a failure.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [-1, 1).
    pub fn signed(&mut self) -> f32 {
        (self.unit() * 2.0 - 1.0) as f32
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f32 {
        let u = self.unit().max(1e-12);
        let v = self.unit();
        ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()) as f32
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

/// Row-major vectors with their dimension.
pub struct Matrix {
    pub rows: usize,
    pub dim: usize,
    pub data: Vec<f32>,
}

impl Matrix {
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// The first `rows` rows and the rest, as two matrices (a base and its queries).
    pub fn split(&self, rows: usize) -> (Matrix, Matrix) {
        let (head, tail) = self.data.split_at(rows * self.dim);
        let part = |data: &[f32]| Matrix {
            rows: data.len() / self.dim,
            dim: self.dim,
            data: data.to_vec(),
        };
        (part(head), part(tail))
    }
}

/// `n` vectors around `clusters` random centres: what real embeddings look like to an index
/// (independent uniform vectors do not, and make recall tests meaningless).
pub fn clustered(n: usize, dim: usize, clusters: usize, seed: u64) -> Matrix {
    let mut rng = Rng::new(seed);
    let centres: Vec<f32> = (0..clusters * dim).map(|_| rng.normal()).collect();
    let mut data = Vec::with_capacity(n * dim);
    for _ in 0..n {
        let c = rng.below(clusters);
        data.extend((0..dim).map(|j| centres[c * dim + j] + 0.35 * rng.normal()));
    }
    Matrix { rows: n, dim, data }
}

/// Nanoseconds per stored vector of an exact search over the first 512 rows of `data`, held
/// in memory (768 KiB at 384 dimensions: within the L2 cache of current CPUs), best of 5
/// rounds of 200 queries taken from the end of `data`. That is the cost of the distance kernel
/// and the scan loop without memory stalls, the part of a search where native SIMD width
/// counts most. `now_ms` is the caller's clock (`Instant` natively, `performance.now()` in a
/// browser), so both sides of `scripts/bench-wasm` run the same procedure.
pub fn in_cache_scan_ns(data: &Matrix, now_ms: impl Fn() -> f64) -> f64 {
    use grape_vector_db::{EmbeddedConfig, EmbeddedVectorDB, Point, SearchParams, SearchRequest};
    const ROWS: usize = 512;
    const QUERIES: usize = 200;
    let db = EmbeddedVectorDB::open(EmbeddedConfig::builder(data.dim).build().unwrap()).unwrap();
    db.upsert(
        (0..ROWS)
            .map(|i| Point::new(i as u64, data.row(i).to_vec()))
            .collect(),
    )
    .unwrap();
    let requests: Vec<SearchRequest> = (data.rows - QUERIES..data.rows)
        .map(|q| {
            let mut r = SearchRequest::new(data.row(q).to_vec(), 10);
            r.params = SearchParams {
                exact: true,
                ..SearchParams::default()
            };
            r
        })
        .collect();
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = now_ms();
        for r in &requests {
            assert_eq!(db.search(r).unwrap().result.len(), 10);
        }
        best = best.min(now_ms() - t);
    }
    best * 1e6 / (QUERIES * ROWS) as f64
}

/// Upserts the first `rows` rows of `m` into `db` as points numbered by their rows, 10,000 to a
/// call (as an app loading a set would).
pub fn upsert_rows(db: &grape_vector_db::EmbeddedVectorDB, m: &Matrix, rows: usize) {
    for start in (0..rows).step_by(10_000) {
        db.upsert(
            (start..rows.min(start + 10_000))
                .map(|i| grape_vector_db::Point::new(i as u64, m.row(i).to_vec()))
                .collect(),
        )
        .unwrap();
    }
}

/// The searches of issue 19's million figure, the same on both sides of `scripts/bench-wasm`
/// (`benches/browser_peer.rs` natively, `tests/wasm_figures.rs` in the browser): each `ef`,
/// re-scoring the whole beam (the default; `None`) or 3x `limit` (fewer vectors read).
pub fn million_sweep() -> impl Iterator<Item = (usize, Option<f64>)> {
    [None, Some(3.0)]
        .into_iter()
        .flat_map(|o| [32, 48, 64, 96, 128, 192].map(|ef| (ef, o)))
}

/// One point of [`quantized_sweep`]: a search at `ef`, walked by the vectors or by the codes.
#[derive(Debug, Clone, Copy)]
pub struct SweepPoint {
    pub ef: usize,
    /// Walked by the quantized codes (re-scored with the vectors), else by the vectors.
    pub quantized: bool,
    /// Recall@10 against the exact answer.
    pub recall: f64,
    /// Mean latency of a query in microseconds, best of three rounds.
    pub mean_us: f64,
}

/// The `ef` values of [`quantized_sweep`]: from below recall 0.95 to above 0.99 on the
/// generated sets.
pub const SWEEP_EFS: [usize; 8] = [10, 16, 24, 32, 48, 64, 96, 128];

/// The same graph walked by its vectors and by its quantized codes at each of [`SWEEP_EFS`],
/// alternating at each `ef` so that both see the same machine: `search(query, ef, quantized)`
/// returns the ids of the top 10 of query number `query`, `exact[query]` the exact top 10.
/// Both sides of `scripts/bench-wasm` run this procedure, so their figures pair up at equal
/// recall (`benches/report.py` pairs them).
pub fn quantized_sweep(
    exact: &[Vec<u64>],
    mut search: impl FnMut(usize, usize, bool) -> Vec<u64>,
    now_ms: impl Fn() -> f64,
) -> Vec<SweepPoint> {
    let mut points = Vec::new();
    for ef in SWEEP_EFS {
        for quantized in [false, true] {
            let (mut best, mut hits) = (f64::MAX, 0);
            for _ in 0..3 {
                hits = 0;
                let t = now_ms();
                for (q, want) in exact.iter().enumerate() {
                    hits += search(q, ef, quantized)
                        .iter()
                        .filter(|id| want.contains(id))
                        .count();
                }
                best = best.min(now_ms() - t);
            }
            points.push(SweepPoint {
                ef,
                quantized,
                recall: hits as f64 / (10 * exact.len()) as f64,
                mean_us: best * 1000.0 / exact.len() as f64,
            });
        }
    }
    points
}

/// Reads a 2-D little-endian `float16`, `float32` or `int32` `.npy` file (the library's own
/// parser, which `grape import` uses too).
pub fn read_npy(path: &std::path::Path) -> Result<Matrix, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse_npy(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// [`read_npy`] of bytes already read (in a browser: fetched).
pub fn parse_npy(bytes: &[u8]) -> Result<Matrix, String> {
    let v = grape_vector_db::npy::parse(bytes).map_err(|e| e.to_string())?;
    Ok(Matrix {
        rows: v.rows,
        dim: v.dim,
        data: v.data,
    })
}

/// Reads `.fvecs` (float32 rows) or `.ivecs` (int32 rows, returned as f32): each row is a
/// little-endian `i32` dimension followed by that many values.
pub fn read_vecs(path: &std::path::Path) -> Result<Matrix, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let ints = path.extension().is_some_and(|e| e == "ivecs");
    let mut data = Vec::new();
    let mut dim = 0usize;
    let mut rows = 0usize;
    let mut at = 0usize;
    while at < bytes.len() {
        let d = bytes
            .get(at..at + 4)
            .map(|b| i32::from_le_bytes(b.try_into().unwrap()))
            .filter(|&d| d > 0)
            .ok_or_else(|| format!("{}: bad row header at byte {at}", path.display()))?
            as usize;
        if rows > 0 && d != dim {
            return Err(format!(
                "{}: row {rows} has dimension {d}, not {dim}",
                path.display()
            ));
        }
        dim = d;
        let row = bytes
            .get(at + 4..at + 4 + 4 * d)
            .ok_or_else(|| format!("{}: truncated row {rows}", path.display()))?;
        data.extend(row.chunks_exact(4).map(|c| {
            let b: [u8; 4] = c.try_into().unwrap();
            if ints {
                i32::from_le_bytes(b) as f32
            } else {
                f32::from_le_bytes(b)
            }
        }));
        rows += 1;
        at += 4 + 4 * d;
    }
    Ok(Matrix { rows, dim, data })
}

/// Reads vectors from `.npy` (float16/float32, or int32 for ground truth) or `.fvecs`/`.ivecs`.
pub fn read_matrix(path: &std::path::Path) -> Result<Matrix, String> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("fvecs" | "ivecs") => read_vecs(path),
        _ => read_npy(path),
    }
}

/// The base and query vectors of the WordNet set (see [`wordnet_dir`]), or `None` without it.
pub fn wordnet_vectors() -> Option<(PathBuf, PathBuf)> {
    wordnet_dir().map(|d| (d.join("base.f16.npy"), d.join("query.f16.npy")))
}

/// The lines of a text file (`base.txt`, `query.txt`: one passage a line).
fn read_lines(path: &std::path::Path) -> std::io::Result<Vec<String>> {
    Ok(std::fs::read_to_string(path)?
        .lines()
        .map(str::to_owned)
        .collect())
}

/// The WordNet passages of `$GRAPE_DATA/wordnet-minilm` as text and as MiniLM vectors: the
/// sparse and hybrid benchmarks' data.
pub struct Passages {
    /// The directory they were read from.
    pub dir: PathBuf,
    /// `base.txt`: one passage a line, row `i` of `base`.
    pub texts: Vec<String>,
    /// `query.txt`: one query a line, row `i` of `query_vectors`.
    pub queries: Vec<String>,
    pub base: Matrix,
    pub query_vectors: Matrix,
}

/// The WordNet passages, or `None` (with a note on stderr) when the set is absent.
pub fn wordnet_passages() -> Option<Passages> {
    let dir = wordnet_dir()?;
    let read = |name: &str| read_lines(&dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    Some(Passages {
        texts: read("base.txt"),
        queries: read("query.txt"),
        base: read_matrix(&dir.join("base.f16.npy")).unwrap(),
        query_vectors: read_matrix(&dir.join("query.f16.npy")).unwrap(),
        dir,
    })
}

/// The real WordNet/MiniLM set in `$GRAPE_DATA` (default: `shared/data` beside the repository,
/// as the scripts set it), or `None` (with a note on stderr) when it is absent.
pub fn wordnet_dir() -> Option<PathBuf> {
    let data = std::env::var_os("GRAPE_DATA").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"),
        PathBuf::from,
    );
    let dir = data.join("wordnet-minilm");
    if dir.join("base.f16.npy").is_file() {
        Some(dir)
    } else {
        eprintln!(
            "note: {} not found; using synthetic clustered data instead",
            dir.display()
        );
        None
    }
}
