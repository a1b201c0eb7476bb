//! A scripted workload and the model of what it leaves in a database: the oracle of the
//! power-loss and fault-injection tests. Each call says what it changes in the model, so a test
//! knows exactly which contents a database may hold after any prefix of the calls.

use std::collections::BTreeMap;
use std::sync::Arc;

use grape_vector_db::storage::{MemoryStorage, Storage};
use grape_vector_db::{
    Distance, Durability, EmbeddedConfig, EmbeddedVectorDB, Modifier, Payload, Point, PointId,
    Result, ScrollRequest, SparseVector, SparseVectorConfig,
};
use serde_json::{json, Value};

use crate::Rng;

/// Every point of a database: id -> (vector, payload, its other vectors).
pub type Contents = BTreeMap<PointId, (Vec<f32>, Payload, Others)>;

/// A point's named dense vectors and its sparse vectors, by name.
pub type Others = (BTreeMap<String, Vec<f32>>, BTreeMap<String, SparseVector>);

/// A point as [`Contents`] holds it.
pub fn entry(p: &Point) -> (Vec<f32>, Payload, Others) {
    let others = (p.named_vectors.clone(), p.sparse_vectors.clone());
    (p.vector.clone(), p.payload.clone(), others)
}

/// The workload's named dense vector (Euclid, so kept bit for bit): its log records and
/// segment sections go through every crash state and fault too.
pub const NAMED: &str = "n";

/// The workload's sparse vector (IDF-weighted, as BM25's): its log records and segment
/// section go through every crash state and fault too.
pub const SPARSE: &str = "s";

/// Dimension of the workload's vectors (small: states are many).
pub const DIM: usize = 4;

/// Euclid keeps vectors exactly as given (Cosine would normalise them), so contents compare bit
/// for bit; a small log threshold makes writes trigger automatic checkpoints.
pub fn config(durability: Durability) -> EmbeddedConfig {
    EmbeddedConfig::builder(DIM)
        .distance(Distance::Euclid)
        .sparse_vector(
            SPARSE,
            SparseVectorConfig {
                modifier: Modifier::Idf,
                bm25: None,
            },
        )
        .named_vector(NAMED, 3, Distance::Euclid)
        .durability(durability)
        .checkpoint_wal_bytes(1500)
        .build()
        .expect("valid configuration")
}

/// Everything in the database, read back through scroll.
pub fn contents(db: &EmbeddedVectorDB) -> Result<Contents> {
    let mut req = ScrollRequest {
        limit: 1000,
        with_vector: true,
        ..ScrollRequest::default()
    };
    let mut out = Contents::new();
    loop {
        let page = db.scroll(&req)?;
        for r in page.points {
            let vector = r.vector.expect("asked for vectors");
            // None for a point without them (written as Qdrant writes it).
            let others = (
                r.named_vectors.unwrap_or_default(),
                r.sparse_vectors.unwrap_or_default(),
            );
            out.insert(r.id, (vector, r.payload.unwrap_or_default(), others));
        }
        match page.next_page_offset {
            Some(next) => req.offset = Some(next),
            None => return Ok(out),
        }
    }
}

/// One call of the workload.
#[derive(Debug, Clone)]
pub enum Call {
    Upsert(Vec<Point>),
    Delete(Vec<u64>),
    SetPayload(Vec<u64>, Value),
    Checkpoint,
    Compact,
    Flush,
    /// `snapshot_to` a fresh memory storage, which is then opened and compared.
    Snapshot,
    /// `export_archive`, then `import_archive` into a fresh memory storage, opened and compared.
    ExportImport,
}

impl Call {
    /// Whether the call changes what the database holds.
    pub fn writes(&self) -> bool {
        matches!(
            self,
            Call::Upsert(_) | Call::Delete(_) | Call::SetPayload(..)
        )
    }

    /// The call's effect on the model (reads and maintenance change nothing).
    pub fn apply(&self, model: &mut Contents) {
        match self {
            Call::Upsert(points) => {
                for p in points {
                    model.insert(p.id, entry(p));
                }
            }
            Call::Delete(ids) => {
                for &id in ids {
                    model.remove(&PointId::Num(id));
                }
            }
            Call::SetPayload(ids, payload) => {
                for &id in ids {
                    if let Some((_, p, _)) = model.get_mut(&PointId::Num(id)) {
                        for (k, v) in payload.as_object().expect("an object") {
                            p.insert(k.clone(), v.clone());
                        }
                    }
                }
            }
            _ => {}
        }
    }

    /// The call as the log records it on a database holding `live`: a delete names only the
    /// ids that exist (so replaying a write that failed, and came back, is not undone by it).
    pub fn as_logged(&self, live: &Contents) -> Call {
        match self {
            Call::Delete(ids) => Call::Delete(
                ids.iter()
                    .copied()
                    .filter(|&id| live.contains_key(&PointId::Num(id)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    /// Runs the call on `db`. `Snapshot` and `ExportImport` write into `new_storage()`; a copy
    /// written without error must open and hold `model` (the contents before the call, which
    /// does not change them).
    pub fn run(
        &self,
        db: &EmbeddedVectorDB,
        model: &Contents,
        new_storage: &dyn Fn() -> Arc<dyn Storage>,
    ) -> Result<()> {
        match self {
            Call::Upsert(points) => db.upsert(points.clone()).map(drop),
            Call::Delete(ids) => db.delete(ids.iter().copied()).map(drop),
            Call::SetPayload(ids, payload) => db.set_payload(ids.iter().copied(), payload.clone()),
            Call::Checkpoint => db.checkpoint(),
            Call::Compact => db.compact(),
            Call::Flush => db.flush(),
            Call::Snapshot => {
                let copy = new_storage();
                db.snapshot_to(&*copy)?;
                check_copy(db, copy, model)
            }
            Call::ExportImport => {
                let bytes = db.export_archive()?;
                let copy = new_storage();
                // Read in pieces of a few kilobytes, as a download arrives: files span pieces.
                let mut source = crate::decoders::Pieces(&bytes, 4000);
                if let Err(e) = EmbeddedVectorDB::import_archive_from(&mut source, &*copy) {
                    let left = copy.list();
                    assert!(
                        left.as_ref().map_or(true, Vec::is_empty),
                        "a failed import ({e}) left files: {left:?}"
                    );
                    return Err(e);
                }
                check_copy(db, copy, model)
            }
        }
    }
}

/// A copy that was written without error must open and hold exactly the model.
fn check_copy(db: &EmbeddedVectorDB, copy: Arc<dyn Storage>, model: &Contents) -> Result<()> {
    let names = copy.list();
    let opened = EmbeddedVectorDB::open_with_storage(db.config().clone(), copy)?;
    assert_eq!(
        &contents(&opened)?,
        model,
        "a copy acknowledged as written differs (files {names:?})"
    );
    Ok(())
}

/// Fresh memory storages, for the copies of `Snapshot` and `ExportImport`.
pub fn memory() -> Arc<dyn Storage> {
    Arc::new(MemoryStorage::new())
}

fn point(rng: &mut Rng, id: u64) -> Point {
    let vector = (0..DIM).map(|_| rng.signed()).collect();
    // Some payloads of a few hundred bytes, so that log records and batches span several
    // 512-byte sectors and a torn write can keep a later record but lose an earlier one.
    let payload = match rng.below(4) {
        0 => json!({}),
        1 => json!({"i": id, "tag": format!("t{}", id % 5)}),
        2 => json!({"i": id, "text": "lorem ipsum dolor ".repeat(1 + rng.below(30))}),
        _ => json!({"i": id, "nested": {"list": [1, "two", null], "f": rng.unit()}}),
    };
    let point = Point::new(id, vector)
        .with_payload(payload)
        .expect("an object payload");
    // A named vector for two points in three, independently of the sparse one.
    let point = match rng.below(3) {
        0 => point,
        _ => point.with_named(NAMED, (0..3).map(|_| rng.unit() as f32 - 0.5).collect()),
    };
    match rng.below(2) {
        0 => point,
        _ => {
            let indices: Vec<u32> = (0..1 + rng.below(6))
                .map(|i| (i * 50 + rng.below(50)) as u32)
                .collect();
            let values = indices.iter().map(|_| rng.unit() as f32 + 0.1).collect();
            let v = SparseVector::new(indices, values).expect("ascending, finite");
            point.with_sparse(SPARSE, v)
        }
    }
}

/// A seeded mix of every kind of call: batched and single upserts (new ids and replacements),
/// deletes, payload updates, explicit checkpoints and compactions, flushes, snapshots and
/// archive round trips; with [`config`]'s small log threshold, writes also trigger automatic
/// checkpoints.
pub fn script(seed: u64, calls: usize) -> Vec<Call> {
    let mut rng = Rng::new(seed);
    let mut live: Vec<u64> = Vec::new();
    let mut next_id = 1u64;
    let mut out = Vec::with_capacity(calls);
    for i in 0..calls {
        let call = match (i % 12, rng.below(4)) {
            (0, _) | (_, 0) => {
                let n = 1 + rng.below(6);
                let points: Vec<Point> = (0..n)
                    .map(|_| {
                        // Some replacements of live points, mostly new ones.
                        let id = if !live.is_empty() && rng.chance(0.25) {
                            live[rng.below(live.len())]
                        } else {
                            next_id += 1;
                            next_id - 1
                        };
                        point(&mut rng, id)
                    })
                    .collect();
                for p in &points {
                    if let PointId::Num(id) = p.id {
                        if !live.contains(&id) {
                            live.push(id);
                        }
                    }
                }
                Call::Upsert(points)
            }
            (3, _) if !live.is_empty() => {
                let n = 1 + rng.below(3.min(live.len()));
                let ids = (0..n)
                    .map(|_| live.swap_remove(rng.below(live.len())))
                    .collect();
                Call::Delete(ids)
            }
            (5, _) if !live.is_empty() => {
                let id = live[rng.below(live.len())];
                Call::SetPayload(vec![id], json!({"changed": i, "tag": null}))
            }
            // A flush after some buffered writes (`OnFlush` writes them together), checkpoints
            // after some more.
            (4, _) => Call::Flush,
            (6, _) => Call::Checkpoint,
            (8, _) => Call::Compact,
            (10, _) => Call::Snapshot,
            (11, _) => Call::ExportImport,
            _ => {
                next_id += 1;
                let p = point(&mut rng, next_id - 1);
                live.push(next_id - 1);
                Call::Upsert(vec![p])
            }
        };
        out.push(call);
    }
    out
}

/// The contents after each prefix of `calls`: `models[k]` holds the first `k` applied.
pub fn models(calls: &[Call]) -> Vec<Contents> {
    let mut model = Contents::new();
    let mut out = vec![model.clone()];
    for call in calls {
        call.apply(&mut model);
        out.push(model.clone());
    }
    out
}

/// A short description of a difference between two contents, for failure messages.
pub fn diff(got: &Contents, want: &Contents) -> String {
    let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(k)).collect();
    let extra: Vec<_> = got.keys().filter(|k| !want.contains_key(k)).collect();
    let changed: Vec<_> = want
        .iter()
        .filter(|(k, v)| got.get(k).is_some_and(|g| g != *v))
        .map(|(k, _)| k)
        .collect();
    format!("missing {missing:?}, unexpected {extra:?}, changed {changed:?}")
}
