//! The engine: ids, vectors, payloads and exact search, single-threaded and free of I/O.
//!
//! Everything else in the crate wraps this: the native facade puts it behind a lock, the
//! persistence layer feeds it from segments (as an [`image::Image`]) and a write-ahead log, the JS
//! facade calls it from wasm.
//! Because it does no I/O and has no platform code, the same engine runs everywhere and is tested
//! once.
//!
//! Points live in *slots*: slot `s` has its vector in the arena at row `s`, its id in
//! `ids.id_at(s)` and its payload in `payloads[s]`. Deleting a point turns its slot into a
//! tombstone (`ids.id_at(s) == None`); [`Engine::compact`] squeezes tombstones out, which happens
//! on its own once they outnumber live points.
//!
//! ## Files
//! [`Engine`] is one struct; its methods are grouped by job, one `impl Engine` block a file:
//! - `mod.rs`: the struct, construction and sizes (its configuration, `EngineConfig`, lives
//!   with the others in `config.rs`).
//! - `write.rs`: validation and writes: upserts, payload updates, deletes.
//! - `read.rs`: points by id, counts, scrolling and filter matches.
//! - `search.rs`: the search paths: the graph, a payload index's candidates, the exact scan.
//! - `query.rs`: queries of a sparse vector, by its inverted index.
//! - `index.rs`: the graph over the arena: deferred indexing and warming up.
//! - `compact.rs`: compaction of tombstones and memory accounting.
//! - `image.rs`: checkpoints: the engine from a segment's image, and its export to a new one.
//!
//! Beneath them, the parts the engine is made of: `dense.rs` (a dense vector's rows, graph and
//! codes, and their indexing), `arena.rs` (vectors by slot), `ids.rs` (ids
//! by slot and slots by id), `payloads.rs` (payloads by slot), `hnsw.rs` and `sketch.rs` (the
//! graph index), `quantized.rs` (its nodes' codes), `payload_index/` (value -> slots indexes),
//! `sparse.rs` (a sparse vector's inverted index) and `topk.rs` (the k closest candidates).

mod arena;
mod compact;
mod dense;
pub(crate) mod hnsw;
mod ids;
pub(crate) mod image;
mod in_place;
mod index;
pub(crate) mod payload_index;
mod payloads;
pub(crate) mod quantized;
mod query;
mod read;
mod search;
mod sketch;
pub(crate) mod sparse;
mod topk;
mod write;

use crate::config::EngineConfig;
use crate::error::{Error, Result};
use crate::point::PointId;
pub(crate) use arena::{stride_for, RowReader};
use dense::DenseSpace;
use hnsw::InsertPlan;
use ids::IdMap;
use payload_index::PayloadIndexes;
use payloads::PayloadStore;
pub(crate) use read::Sample;
use sparse::SparseIndexes;
pub use write::UpsertSummary;

/// Runs `count` independent jobs and returns their results in order. The engine itself is
/// single-threaded; the native facade supplies a version that uses several threads.
pub(crate) type ParallelMap =
    Box<dyn Fn(usize, &(dyn Fn(usize) -> InsertPlan + Sync)) -> Vec<InsertPlan> + Send + Sync>;

/// Largest number of slots: slots are `u32` in the top-k heap and in the graph.
/// One below `u32::MAX` so the bound is a real check on 32-bit targets too.
const MAX_SLOTS: usize = (u32::MAX - 1) as usize;

pub(crate) struct Engine {
    config: EngineConfig,
    /// The dense vector: its rows, graph and codes.
    dense: DenseSpace,
    /// The named dense vectors, by name (ascending), over the same slots; points may lack
    /// them.
    named: Vec<(String, DenseSpace)>,
    /// Which point is in which slot, and which slots are live.
    ids: IdMap,
    payloads: PayloadStore,
    /// While the log is replayed at open, new points are not inserted into the graph: opening
    /// stays fast, searches scan the few unindexed points exactly, and the next write or
    /// checkpoint indexes them.
    defer_indexing: bool,
    indexes: PayloadIndexes,
    /// One index per configured sparse vector, by name, over the same slots.
    sparse: SparseIndexes,
    parallel: ParallelMap,
}

impl Engine {
    pub fn new(config: EngineConfig) -> Self {
        Engine {
            // A database of named vectors only has no unnamed one: dimension 0, no graph.
            dense: DenseSpace::new(
                config.dimension,
                config.distance,
                config.hnsw.filter(|_| config.dimension > 0),
                config.quantization,
                false,
            ),
            named: config
                .named_vectors
                .iter()
                .map(|(name, v)| {
                    let space =
                        DenseSpace::new(v.size, v.distance, config.hnsw, config.quantization, true);
                    (name.clone(), space)
                })
                .collect(),
            ids: IdMap::new(),
            payloads: PayloadStore::new(),
            defer_indexing: false,
            indexes: PayloadIndexes::new(&config.payload_indexes),
            sparse: SparseIndexes::new(config.sparse_vectors.keys()),
            parallel: Box::new(|count, job| (0..count).map(job).collect()),
            config,
        }
    }

    /// Lets graph construction plan nodes on several threads.
    pub fn set_parallel_map(&mut self, parallel: ParallelMap) {
        self.parallel = parallel;
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Every dense vector's space: the unnamed one first, then the named ones by name.
    fn spaces(&self) -> impl Iterator<Item = &DenseSpace> {
        std::iter::once(&self.dense).chain(self.named.iter().map(|(_, s)| s))
    }

    /// The same, to change them.
    fn spaces_mut(&mut self) -> impl Iterator<Item = &mut DenseSpace> {
        std::iter::once(&mut self.dense).chain(self.named.iter_mut().map(|(_, s)| s))
    }

    /// The dense vector `using` names: the unnamed one for `None` or `""`.
    fn space_named(&self, using: Option<&str>) -> Result<&DenseSpace> {
        match using.filter(|n| !n.is_empty()) {
            None if self.dense.dimension == 0 => {
                let names: Vec<&str> = self.named.iter().map(|(n, _)| n.as_str()).collect();
                Err(Error::InvalidArgument(format!(
                    "the database has named vectors only ({names:?}): name the one to search \
                     in using"
                )))
            }
            None => Ok(&self.dense),
            Some(name) => self
                .named
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, s)| s)
                .ok_or_else(|| self.unknown_dense(name)),
        }
    }

    /// Whether `name` is a sparse vector's.
    pub fn is_sparse(&self, name: &str) -> bool {
        self.sparse.contains(name)
    }

    /// The error for a dense vector name the configuration does not declare.
    pub(super) fn unknown_dense(&self, name: &str) -> Error {
        let known: Vec<&str> = self.named.iter().map(|(n, _)| n.as_str()).collect();
        Error::InvalidArgument(format!(
            "no dense vector named {name:?}: the database declares {}",
            match known.is_empty() {
                true => "only the unnamed one, \"\"".to_owned(),
                false => format!("\"\" and {known:?}"),
            }
        ))
    }

    /// Reads of vectors kept on disk that failed so far, over every space (see
    /// `VectorArena::read_failures`).
    fn read_failures(&self) -> usize {
        self.spaces().map(|s| s.vectors.read_failures()).sum()
    }

    /// Fails with the first failed read when some read failed since `before` (a count from
    /// [`Engine::read_failures`]).
    fn failed_since(&self, before: usize) -> Result<()> {
        if self.read_failures() == before {
            return Ok(());
        }
        self.spaces().try_for_each(|s| s.vectors.failed_since(0))
    }

    /// Whether rows read from vectors kept on disk hold more than their budget; then
    /// [`Engine::release_reads`] lets them go.
    pub fn holds_too_many_reads(&self) -> bool {
        self.spaces().any(|s| s.vectors.holds_too_many_reads())
    }

    /// Lets go of rows read from vectors kept on disk past their budget (read again when next
    /// needed); see `VectorArena::release_reads`.
    pub fn release_reads(&mut self) {
        self.spaces_mut().for_each(|s| s.vectors.release_reads());
    }

    /// Number of live points.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether a point with this id is stored.
    pub fn contains(&self, id: PointId) -> bool {
        self.ids.contains(id)
    }

    /// Number of tombstoned slots awaiting compaction.
    pub fn tombstones(&self) -> usize {
        self.ids.dead()
    }
}

#[cfg(test)]
mod tests {
    //! Helpers for the tests of every file of the engine.
    use super::*;
    use crate::point::{Distance, Point};
    use serde_json::Value;

    /// An engine of two-dimensional vectors, without a graph.
    pub(super) fn engine(distance: Distance) -> Engine {
        Engine::new(EngineConfig {
            dimension: 2,
            distance,
            max_points: None,
            max_search_limit: 100,
            hnsw: None,
            quantization: crate::Quantization::None,
            vectors_on_disk: false,
            payload_indexes: Vec::new(),
            sparse_vectors: Default::default(),
            named_vectors: Default::default(),
        })
    }

    /// A point with a two-dimensional vector and a JSON object as payload.
    pub(super) fn p(id: u64, v: [f32; 2], payload: Value) -> Point {
        Point::new(id, v.to_vec()).with_payload(payload).unwrap()
    }
}
