//! Indexing: the graph over the arena's vectors (as the [`Space`] it searches), built as points
//! arrive or, during log replay, deferred to the next write or checkpoint; and warming up.

use super::arena::ArenaView;
use super::hnsw::{Graph, GraphParams, Space};
use super::quantized::Codes;
use super::{sketch, Engine};
use crate::config::{EngineConfig, HnswConfig, Quantization};
use crate::distance::{self, closeness_key, Kernel, Kernel4};
use crate::error::Result;
use crate::point::{Distance, Payload};
use crate::search::SearchRequest;

/// Nodes planned together (in parallel when a [`ParallelMap`](super::ParallelMap) allows): large enough to keep
/// threads busy, small enough that nodes of one batch rarely need each other as neighbours
/// (they are linked to each other anyway, see `Graph::commit`).
const INSERT_BATCH: usize = 64;
/// The same over vectors kept on disk and read on first use, so that the rows a batch reads
/// stay few between the checks of their budget.
const LAZY_INSERT_BATCH: usize = 8;

/// The engine's vectors as seen by the graph: closeness keys through the chosen kernel.
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

/// The graph's parameters for an engine's configuration: sketches only where they pay off.
pub(super) fn graph_params(h: &HnswConfig, config: &EngineConfig) -> GraphParams {
    GraphParams {
        m: h.m,
        ef_construction: h.ef_construction,
        sketch_dim: sketch::worth_it(config.distance, config.dimension).then_some(config.dimension),
    }
}

impl Engine {
    /// Live slots with their payloads, for building payload indexes.
    pub(super) fn live_payloads(&self) -> impl Iterator<Item = (u32, &Payload)> + '_ {
        self.ids
            .iter()
            .map(|(slot, _)| (slot as u32, self.payloads.get(slot)))
    }

    /// Makes the first queries as fast as the rest: indexes points still outside the graph,
    /// builds the payload indexes, reads a word of every page of the vectors (unless they are
    /// kept on disk) and of the graph
    /// (faulting in mapped files) and runs a few searches through the upper layers. Returns a
    /// checksum of what it read, so the reads cannot be optimised away.
    pub fn warm_up(&mut self) -> u64 {
        // A failed read leaves the rest to be searched exactly, and the next write retries.
        let _ = self.index_pending();
        self.build_payload_indexes();
        const PAGE: usize = 4096;
        let slots = self.ids.slots();
        let rows_per_page = (PAGE / (self.vectors.stride() * 4)).max(1);
        let mut sum = 0u64;
        // Vectors kept on disk are to stay there: the search walks the codes.
        let warmed = match self.vectors.reads_base() {
            true => 0,
            false => slots,
        };
        for slot in (0..warmed).step_by(rows_per_page) {
            sum = sum.wrapping_add(u64::from(self.vectors.get(slot)[0].to_bits()));
        }
        if let Some(graph) = &self.graph {
            for &word in graph.links0().iter().step_by(PAGE / 4) {
                sum = sum.wrapping_add(u64::from(word));
            }
        }
        for k in 0..8 {
            if let Some((_, vector)) = self.sample_live(k * 7919) {
                let request = SearchRequest::new(vector, 10);
                if let Ok(found) = self.search_batch(std::slice::from_ref(&request)) {
                    sum = sum.wrapping_add(found[0].result.len() as u64);
                }
            }
        }
        std::hint::black_box(sum)
    }

    /// Builds the payload indexes not built yet (parsing every payload of the segment), so that
    /// no filtered search waits for them. Takes `&self`: searches keep running beside it.
    pub fn build_payload_indexes(&self) {
        self.indexes.build_all(|| Box::new(self.live_payloads()));
    }

    /// Whether some work waits for the background: points outside the graph, or payload
    /// indexes not built.
    pub fn background_work(&self) -> bool {
        !self.unindexed_slots().is_empty() || !self.indexes.all_built()
    }

    /// Turns deferred indexing on (log replay) or off; see the `defer_indexing` field.
    pub fn set_deferred_indexing(&mut self, on: bool) {
        self.defer_indexing = on;
    }

    /// How many slots wait outside the graph (searched exactly meanwhile): a replayed log's.
    pub fn unindexed(&self) -> usize {
        self.unindexed_slots().len()
    }

    /// Slots past the end of the graph, waiting to be indexed: `graph.len()..slots`.
    pub(super) fn unindexed_slots(&self) -> std::ops::Range<usize> {
        let indexed = self.graph.as_ref().map_or(self.ids.slots(), Graph::len);
        indexed..self.ids.slots()
    }

    /// Inserts every unindexed slot into the graph.
    pub fn index_pending(&mut self) -> Result<()> {
        self.index_pending_up_to(usize::MAX).map(drop)
    }

    /// Inserts up to `max` unindexed slots into the graph, in batches whose plans may be
    /// computed in parallel (the result does not depend on how they are scheduled or chunked);
    /// returns how many remain. Fails if vectors kept on disk cannot be read: the slots not
    /// inserted stay unindexed (searched exactly) until the next try.
    pub fn index_pending_up_to(&mut self, max: usize) -> Result<usize> {
        let remaining = self.insert_pending_up_to(max);
        self.code_graph_nodes();
        remaining
    }

    /// Keeps the quantized codes in step with the graph, a row per node: codes the new nodes,
    /// or all of them when the range is chosen (the first time, and again while the graph is
    /// small and has doubled since).
    fn code_graph_nodes(&mut self) {
        let Some(graph) = self
            .graph
            .as_ref()
            .filter(|_| self.config.quantization != Quantization::None)
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
            let (distance, dim) = (self.config.distance, self.config.dimension);
            let quantization = self.config.quantization;
            self.codes = Codes::train(quantization, distance, dim, nodes, |s| vectors.get(s));
        }
        if let Some(codes) = &mut self.codes {
            // Room for every slot, indexed or waiting: a bulk load's, in one allocation.
            if codes.rows() < nodes {
                codes.reserve(self.ids.slots());
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

    fn insert_pending_up_to(&mut self, max: usize) -> Result<usize> {
        let pending = self.unindexed_slots();
        let remaining = pending.len().saturating_sub(max);
        let pending = pending.start..pending.end - remaining;
        let Some(graph) = self.graph.as_mut() else {
            return Ok(0);
        };
        let failures = self.vectors.read_failures();
        let slots: Vec<u32> = pending.map(|s| s as u32).collect();
        let ids = &self.ids;
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
                distance: self.config.distance,
            };
            let levels = graph.draw_levels(batch.len());
            let plans = {
                let graph = &*graph;
                (self.parallel)(batch.len(), &|i| {
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

    /// The engine's vectors as the graph sees them.
    pub(super) fn space(&self) -> ArenaSpace<'_> {
        ArenaSpace {
            vectors: self.vectors.view(),
            kernel: self.kernel,
            kernel4: self.kernel4,
            distance: self.config.distance,
        }
    }
}
