//! One dense vector's part of the engine: its dimension and distance, every slot's row in the
//! arena, the HNSW graph over them and the graph nodes' quantized codes, with what indexing
//! does to them (the graph and codes kept in step with the arena). A search, an upsert or a
//! checkpoint takes the [`DenseSpace`] it is about; the ids, payloads and payload indexes it
//! shares with the others stay in the [`Engine`](super::Engine).

use super::arena::{ArenaView, VectorArena};
use super::hnsw::{Graph, GraphParams, InsertPlan, Space};
use super::ids::IdMap;
use super::quantized::Codes;
use super::sketch;
use crate::config::{HnswConfig, Quantization};
use crate::distance::{self, closeness_key, Kernel, Kernel4};
use crate::error::{Error, Result};
use crate::point::Distance;

/// Nodes planned together (in parallel when a [`ParallelMap`](super::ParallelMap) allows): large enough to keep
/// threads busy, small enough that nodes of one batch rarely need each other as neighbours
/// (they are linked to each other anyway, see `Graph::commit`).
const INSERT_BATCH: usize = 64;
/// The same over vectors kept on disk and read on first use, so that the rows a batch reads
/// stay few between the checks of their budget.
const LAZY_INSERT_BATCH: usize = 8;

/// A dense vector's rows, graph and codes, over the engine's slots (row `s` is slot `s`).
pub(super) struct DenseSpace {
    pub dimension: usize,
    pub distance: Distance,
    pub kernel: Kernel,
    pub kernel4: Kernel4,
    pub vectors: VectorArena,
    /// One node per slot (dead ones included) when the index is enabled, except for a tail of
    /// slots past `graph.len()` that are not indexed yet (see `Engine::defer_indexing`).
    pub graph: Option<Graph>,
    /// The graph nodes' quantized codes, one row per node, when the configuration asks for
    /// them (kept in step by [`DenseSpace::code_graph_nodes`]).
    pub codes: Option<Codes>,
    pub hnsw: Option<HnswConfig>,
    pub quantization: Quantization,
}

impl DenseSpace {
    /// An empty space of vectors of `dimension` compared by `distance`, with a graph when
    /// `hnsw` asks for one.
    pub fn new(
        dimension: usize,
        distance: Distance,
        hnsw: Option<HnswConfig>,
        quantization: Quantization,
    ) -> Self {
        DenseSpace {
            dimension,
            distance,
            kernel: distance::best().for_distance(distance),
            kernel4: distance::best().for_distance4(distance),
            vectors: VectorArena::new(dimension),
            graph: hnsw.map(|h| Graph::new(graph_params(&h, distance, dimension))),
            codes: None,
            hnsw,
            quantization,
        }
    }

    /// The parameters of this space's graph: sketches only where they pay off.
    pub fn graph_params(&self, h: &HnswConfig) -> GraphParams {
        graph_params(h, self.distance, self.dimension)
    }

    /// The vectors as the graph sees them.
    pub fn space(&self) -> ArenaSpace<'_> {
        ArenaSpace {
            vectors: self.vectors.view(),
            kernel: self.kernel,
            kernel4: self.kernel4,
            distance: self.distance,
        }
    }

    /// Checks a vector against the dimension and the distance.
    pub fn check_vector(&self, v: &[f32]) -> Result<()> {
        if v.len() != self.dimension {
            return Err(Error::DimensionMismatch {
                expected: self.dimension,
                found: v.len(),
            });
        }
        if let Some((index, &value)) = v.iter().enumerate().find(|(_, x)| !x.is_finite()) {
            return Err(Error::NonFiniteComponent { index, value });
        }
        if self.distance == Distance::Cosine {
            let norm2 = (self.kernel)(v, v);
            // Squares of tiny components underflow to zero, and huge ones overflow: either way
            // the vector cannot be normalised in f32.
            if !(norm2 > 0.0 && norm2.is_finite()) {
                return Err(Error::ZeroVector);
            }
        }
        Ok(())
    }

    /// Slots past the end of the graph, waiting to be indexed: `graph.len()..slots` (none
    /// without a graph).
    pub fn unindexed(&self, slots: usize) -> std::ops::Range<usize> {
        let indexed = self.graph.as_ref().map_or(slots, Graph::len);
        indexed..slots
    }

    /// Bytes the graph and the codes take.
    pub fn index_bytes(&self) -> usize {
        self.graph.as_ref().map_or(0, Graph::bytes) + self.codes.as_ref().map_or(0, |c| c.bytes())
    }

    /// Bytes one more point takes: its row and its node of the graph.
    pub fn bytes_per_point(&self) -> usize {
        let graph_node = self.hnsw.as_ref().map_or(0, |h| {
            // A level-0 list (count + 2m slots), its level byte, and on average a 1/m share of
            // an upper-layer list (count + m slots).
            (1 + 2 * h.m) * 4 + 1 + (1 + h.m) * 4 / h.m.max(1)
        });
        self.vectors.stride() * 4 + graph_node
    }

    /// Empties the graph and the codes (their nodes are rebuilt by the next indexing), after
    /// compaction renumbered the slots.
    pub fn reset_index(&mut self) {
        if let Some(graph) = &self.graph {
            self.graph = Some(Graph::new(graph.params()));
            // Coded afresh with the new graph, their range chosen from the live points.
            self.codes = None;
        }
    }

    /// Inserts up to `max` of the unindexed slots below `slots` into the graph, in batches
    /// whose plans may be computed by `parallel` (the result does not depend on how they are
    /// scheduled or chunked), then codes the new nodes; returns how many remain. Fails if
    /// vectors kept on disk cannot be read: the slots not inserted stay unindexed (searched
    /// exactly) until the next try.
    pub fn index_up_to(
        &mut self,
        ids: &IdMap,
        parallel: &super::ParallelMap,
        max: usize,
    ) -> Result<usize> {
        let remaining = self.insert_up_to(ids, parallel, max);
        self.code_graph_nodes(ids.slots());
        remaining
    }

    fn insert_up_to(
        &mut self,
        ids: &IdMap,
        parallel: &super::ParallelMap,
        max: usize,
    ) -> Result<usize> {
        let pending = self.unindexed(ids.slots());
        let remaining = pending.len().saturating_sub(max);
        let pending = pending.start..pending.end - remaining;
        let Some(graph) = self.graph.as_mut() else {
            return Ok(0);
        };
        let failures = self.vectors.read_failures();
        let slots: Vec<u32> = pending.map(|s| s as u32).collect();
        // Without tombstones every node is live: skip the per-candidate lookup.
        let all_live = ids.dead() == 0;
        let live = |s: u32| all_live || ids.is_live(s);
        // Over vectors kept on disk, the rows each insert reads are let go between small
        // batches once they pass their budget (`VectorArena::release_reads`).
        let batch_size = match self.vectors.reads_base_lazily() {
            true => LAZY_INSERT_BATCH,
            false => INSERT_BATCH,
        };
        for batch in slots.chunks(batch_size) {
            self.vectors.release_reads();
            let vectors = &self.vectors;
            let space = ArenaSpace {
                vectors: vectors.view(),
                kernel: self.kernel,
                kernel4: self.kernel4,
                distance: self.distance,
            };
            let levels = graph.draw_levels(batch.len());
            let plans: Vec<InsertPlan> = {
                let graph = &*graph;
                parallel(batch.len(), &|i| {
                    graph.plan(batch[i], levels[i], &space, &live)
                })
            };
            // Plans made with rows that could not be read are not committed.
            vectors.failed_since(failures)?;
            for (i, plan) in plans.into_iter().enumerate() {
                graph.commit(batch[i], plan, &batch[..i], &space);
            }
        }
        self.vectors.release_reads();
        self.vectors.failed_since(failures)?;
        Ok(remaining)
    }

    /// Keeps the quantized codes in step with the graph, a row per node: codes the new nodes,
    /// or all of them when the range is chosen (the first time, and again while the graph is
    /// small and has doubled since). `slots` is how many there are, indexed or waiting.
    fn code_graph_nodes(&mut self, slots: usize) {
        let Some(graph) = self
            .graph
            .as_ref()
            .filter(|_| self.quantization != Quantization::None)
        else {
            return;
        };
        let nodes = graph.len();
        let failures = self.vectors.read_failures();
        let vectors = self.vectors.view();
        let stale = self
            .codes
            .as_ref()
            .is_none_or(|c| c.wants_retraining(nodes));
        if stale && nodes > 0 {
            self.codes = Codes::train(
                self.quantization,
                self.distance,
                self.dimension,
                nodes,
                |s| vectors.get(s),
            );
        }
        if let Some(codes) = &mut self.codes {
            // Room for every slot, indexed or waiting: a bulk load's, in one allocation.
            if codes.rows() < nodes {
                codes.reserve(slots);
            }
            for slot in codes.rows()..nodes {
                codes.push(vectors.get(slot));
            }
        }
        // Codes of rows that could not be read are wrong: the graph walks the vectors until
        // the next try codes them afresh.
        if self.vectors.failed_since(failures).is_err() {
            self.codes = None;
        }
    }
}

/// A graph's parameters for vectors of `dimension` compared by `distance`.
fn graph_params(h: &HnswConfig, distance: Distance, dimension: usize) -> GraphParams {
    GraphParams {
        m: h.m,
        ef_construction: h.ef_construction,
        sketch_dim: sketch::worth_it(distance, dimension).then_some(dimension),
    }
}

/// A space's vectors as seen by the graph: closeness keys through the chosen kernel.
pub(super) struct ArenaSpace<'a> {
    vectors: ArenaView<'a>,
    kernel: Kernel,
    kernel4: Kernel4,
    distance: Distance,
}

impl Space for ArenaSpace<'_> {
    #[inline]
    fn key_to(&self, query: &[f32], slot: u32) -> f32 {
        closeness_key(
            self.distance,
            (self.kernel)(query, self.vectors.get(slot as usize)),
        )
    }

    #[inline]
    fn keys_to4(&self, query: &[f32], slots: [u32; 4]) -> [f32; 4] {
        let raw = (self.kernel4)(query, slots.map(|s| self.vectors.get(s as usize)));
        raw.map(|r| closeness_key(self.distance, r))
    }

    #[inline]
    fn vector(&self, slot: u32) -> &[f32] {
        self.vectors.get(slot as usize)
    }

    #[inline]
    fn prefetch(&self, slot: u32) {
        distance::prefetch(self.vectors.get(slot as usize));
    }
}
