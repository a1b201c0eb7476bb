//! One dense vector's part of the engine: its dimension and distance, every slot's row in the
//! arena, the HNSW graph over them and the graph nodes' quantized codes, with what indexing
//! does to them (the graph and codes kept in step with the arena). A search, an upsert or a
//! checkpoint takes the [`DenseSpace`] it is about; the ids, payloads and payload indexes it
//! shares with the others stay in the [`Engine`](super::Engine).

use std::sync::Arc;

use super::arena::{ArenaView, VectorArena};
use super::hnsw::{Graph, GraphParams, InsertPlan, Space};
use super::ids::IdMap;
use super::image::{ImageVectors, SpaceImage, SpaceSource};
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
/// A named vector may be missing from a point: its row is then zeros, absent from `present`,
/// and its graph node has no links, so no walk reaches it.
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
    /// Which slots hold a vector, for a vector points may lack (a named one); `None`: every
    /// slot does.
    pub present: Option<Presence>,
}

/// Which slots of a [`DenseSpace`] hold a vector: a bit per slot.
#[derive(Default)]
pub(super) struct Presence {
    bits: Vec<u64>,
    len: usize,
}

impl Presence {
    /// Presence from `len` bits (a segment's section), or `None` when `bits` is too short.
    pub fn from_bits(bits: Vec<u64>, len: usize) -> Option<Self> {
        (bits.len() >= len.div_ceil(64)).then_some(Presence { bits, len })
    }

    pub fn get(&self, slot: usize) -> bool {
        slot < self.len && self.bits[slot / 64] & (1 << (slot % 64)) != 0
    }

    fn set(&mut self, slot: usize, on: bool) {
        let (word, bit) = (slot / 64, 1u64 << (slot % 64));
        match on {
            true => self.bits[word] |= bit,
            false => self.bits[word] &= !bit,
        }
    }

    fn push(&mut self, on: bool) {
        if self.len.is_multiple_of(64) {
            self.bits.push(0);
        }
        self.len += 1;
        self.set(self.len - 1, on);
    }

    /// Keeps the bits of the slots `keep` accepts, in order (compaction).
    fn retain(&mut self, keep: impl Fn(usize) -> bool) {
        let old = std::mem::take(self);
        for slot in (0..old.len).filter(|&s| keep(s)) {
            self.push(old.get(slot));
        }
    }
}

impl DenseSpace {
    /// An empty space of vectors of `dimension` compared by `distance`, with a graph when
    /// `hnsw` asks for one.
    pub fn new(
        dimension: usize,
        distance: Distance,
        hnsw: Option<HnswConfig>,
        quantization: Quantization,
        optional: bool,
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
            present: optional.then(Presence::default),
        }
    }

    /// The vectors, graph and codes of a checkpoint's `rows` rows, used in place (the graph's
    /// sketches computed where the segment has none, the codes only when the configuration
    /// still asks for them and they cover the graph).
    pub fn load(&mut self, rows: usize, image: SpaceImage) {
        self.vectors = match image.vectors {
            ImageVectors::InPlace(base, reader) => {
                let mut arena = VectorArena::with_base(self.dimension, base, rows);
                if let Some(reader) = reader {
                    arena.set_reader(reader);
                }
                arena
            }
            ImageVectors::OnDisk(reader) => VectorArena::lazy(self.dimension, rows, reader),
        };
        self.graph = match (self.hnsw, image.graph) {
            (None, _) => None,
            (Some(h), Some(mut parts)) => {
                parts.params.sketch_dim = self.graph_params(&h).sketch_dim;
                Some(Graph::from_parts(parts))
            }
            (Some(h), None) => Some(Graph::new(self.graph_params(&h))),
        };
        // Segments of version 2 have no sketches: compute them once (the next checkpoint
        // stores them).
        if let Some(mut graph) = self.graph.take() {
            graph.complete_sketches(&self.space());
            self.graph = Some(graph);
        }
        // Otherwise the codes are coded afresh (by the next indexing) or not at all.
        let graph_rows = self.graph.as_ref().map(Graph::len);
        if let Some(stored) = image.codes.filter(|c| Some(c.rows) == graph_rows) {
            self.codes =
                Codes::from_stored(self.quantization, self.distance, self.dimension, stored);
        }
    }

    /// Adds rows without a vector up to `rows` (a named vector declared since the checkpoint).
    pub fn extend_absent(&mut self, rows: usize) {
        while self.vectors.rows() < rows {
            self.push(None);
        }
    }

    /// What a checkpoint writes of this space: its rows in the order of `slots` (row `r` holds
    /// slot `slots[r]`, and `row_of` maps back), the graph renumbered to match when it is
    /// `complete` (every slot indexed), and the codes.
    pub fn export<'a>(
        &'a self,
        row_of: &[u32],
        slots: &Arc<[u32]>,
        complete: bool,
    ) -> SpaceSource<'a> {
        let graph = self.graph.as_ref().filter(|_| complete);
        let codes = match (&self.codes, graph) {
            (Some(codes), Some(g)) if codes.rows() == g.len() => codes.section(slots),
            _ => Vec::new(),
        };
        let slots = Arc::clone(slots);
        SpaceSource {
            dim: self.dimension,
            stride: self.vectors.stride(),
            distance: self.distance,
            graph: graph.map(|g| g.remapped(row_of, &self.space())),
            codes,
            vectors: Box::new(move |row, out| self.vectors.copy_row(slots[row] as usize, out)),
        }
    }

    /// The presence bits in the order of `slots` (see [`DenseSpace::export`]).
    pub fn present_by_row(&self, slots: &[u32]) -> Vec<u64> {
        let mut by_row = Presence::default();
        for &slot in slots {
            by_row.push(self.has(slot as usize));
        }
        by_row.bits
    }

    /// Whether `slot` holds a vector.
    #[inline]
    pub fn has(&self, slot: usize) -> bool {
        self.present.as_ref().is_none_or(|p| p.get(slot))
    }

    /// Whether some slot lacks a vector.
    pub fn has_gaps(&self) -> bool {
        self.present.is_some()
    }

    /// Appends the next slot's row: `vector` (normalised for Cosine), or zeros when the point
    /// has none; returns the slot.
    pub fn push(&mut self, vector: Option<&[f32]>) -> usize {
        let slot = match vector {
            Some(v) => self.vectors.push(v),
            None => self.vectors.push(&vec![0.0; self.dimension]),
        };
        if let Some(p) = &mut self.present {
            p.push(vector.is_some());
        }
        self.normalise(slot, vector.is_some());
        slot
    }

    /// Writes `slot`'s row in place (it must be writable, see `VectorArena::is_writable`).
    pub fn set(&mut self, slot: usize, vector: Option<&[f32]>) {
        let row = self.vectors.get_mut(slot);
        match vector {
            Some(v) => row.copy_from_slice(v),
            None => row.fill(0.0),
        }
        if let Some(p) = &mut self.present {
            p.set(slot, vector.is_some());
        }
        self.normalise(slot, vector.is_some());
    }

    fn normalise(&mut self, slot: usize, has: bool) {
        // A space without a dimension (no unnamed vector) has nothing to normalise.
        if has && self.distance == Distance::Cosine && self.dimension > 0 {
            let normalised = distance::normalize(self.vectors.get_mut(slot));
            debug_assert!(normalised, "check_vector refuses unnormalisable vectors");
        }
    }

    /// Compaction: takes `rows` (the rows of the slots `live` accepts, from
    /// `VectorArena::retained`) in place of the arena, keeps the same slots' presence, and
    /// empties the graph and codes (their nodes are rebuilt by the next indexing).
    pub fn compacted(&mut self, rows: VectorArena, live: impl Fn(usize) -> bool) {
        self.vectors = rows;
        if let Some(p) = &mut self.present {
            p.retain(live);
        }
        if let Some(graph) = &self.graph {
            self.graph = Some(Graph::new(graph.params()));
            // Coded afresh with the new graph, their range chosen from the live points.
            self.codes = None;
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
            // Slots without a vector join the graph unlinked, in their place.
            let present = self.present.as_ref();
            let linked: Vec<u32> = batch
                .iter()
                .copied()
                .filter(|&s| present.is_none_or(|p| p.get(s as usize)))
                .collect();
            let levels = graph.draw_levels(linked.len());
            let plans: Vec<InsertPlan> = {
                let graph = &*graph;
                parallel(linked.len(), &|i| {
                    graph.plan(linked[i], levels[i], &space, &live)
                })
            };
            // Plans made with rows that could not be read are not committed.
            vectors.failed_since(failures)?;
            let mut plans = plans.into_iter().enumerate();
            for &slot in batch {
                match linked.binary_search(&slot) {
                    Ok(_) => {
                        let (i, plan) = plans.next().expect("a plan per linked slot");
                        graph.commit(slot, plan, &linked[..i], &space);
                    }
                    Err(_) => graph.push_unlinked(slot, &space),
                }
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
            // Trained on the rows that hold a vector: the zero rows of points lacking a named
            // vector would pull the coding (SQ8's range, binary's centres) toward zero.
            let present: Option<Vec<usize>> = self
                .present
                .as_ref()
                .map(|p| (0..nodes).filter(|&s| p.get(s)).collect());
            let rows = present.as_ref().map_or(nodes, Vec::len);
            let row = |i: usize| vectors.get(present.as_ref().map_or(i, |p| p[i]));
            if rows > 0 {
                self.codes =
                    Codes::train(self.quantization, self.distance, self.dimension, rows, row);
            }
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

#[cfg(test)]
mod tests {
    use crate::config::{DenseVectorConfig, EngineConfig, HnswConfig, Quantization};
    use crate::engine::Engine;
    use crate::error::Error;
    use crate::filter::{Condition, Filter};
    use crate::point::{Distance, Point, PointId};
    use crate::search::SearchRequest;

    /// An engine of 2-d vectors and a named 3-d one, "img" (Euclid), with a graph from the
    /// first point on.
    fn engine(quantization: Quantization) -> Engine {
        let hnsw = HnswConfig {
            full_scan_threshold: 0,
            ..HnswConfig::default()
        };
        Engine::new(EngineConfig {
            dimension: 2,
            distance: Distance::Cosine,
            max_points: None,
            max_search_limit: 1000,
            hnsw: Some(hnsw),
            quantization,
            vectors_on_disk: false,
            payload_indexes: Vec::new(),
            sparse_vectors: Default::default(),
            named_vectors: [(
                "img".to_owned(),
                DenseVectorConfig {
                    size: 3,
                    distance: Distance::Euclid,
                },
            )]
            .into(),
        })
    }

    /// Point `i`: a 2-d vector, and a 3-d "img" vector unless `i` is a multiple of 3.
    fn point(i: u64) -> Point {
        let x = i as f32;
        let p = Point::new(i, vec![1.0 + (x * 0.37).sin(), (x * 0.11).cos()]);
        match i % 3 {
            0 => p,
            _ => p.with_named(
                "img",
                vec![(x * 0.7).sin() * 10.0, (x * 1.3).cos(), x * 0.01],
            ),
        }
    }

    /// The ids nearest `q` by the "img" vector, by brute force over the points that have one.
    fn brute_force(points: &[Point], q: &[f32], k: usize) -> Vec<PointId> {
        let mut scored: Vec<(f32, PointId)> = points
            .iter()
            .filter_map(|p| {
                let v = p.named_vectors.get("img")?;
                Some((v.iter().zip(q).map(|(a, b)| (a - b) * (a - b)).sum(), p.id))
            })
            .collect();
        scored.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        scored.into_iter().take(k).map(|(_, id)| id).collect()
    }

    fn ids(e: &Engine, req: &SearchRequest) -> Vec<PointId> {
        let found = e.search_batch(std::slice::from_ref(req)).unwrap();
        found[0].result.iter().map(|p| p.id).collect()
    }

    #[test]
    fn a_named_vector_is_searched_over_the_points_that_have_it() {
        for quantization in [Quantization::None, Quantization::Sq8] {
            let mut e = engine(quantization);
            let points: Vec<Point> = (0..600).map(point).collect();
            e.upsert(points.clone()).unwrap();
            for (k, q) in [[3.0, 0.5, 2.0], [-9.0, -1.0, 5.0], [0.0, 0.0, 0.0]]
                .iter()
                .enumerate()
            {
                let want = brute_force(&points, q, 10);
                let exact = SearchRequest {
                    params: crate::SearchParams {
                        exact: true,
                        ..Default::default()
                    },
                    ..SearchRequest::new(q.to_vec(), 10).using("img")
                };
                assert_eq!(ids(&e, &exact), want, "exact, query {k}");
                let walked = ids(&e, &SearchRequest::new(q.to_vec(), 10).using("img"));
                let hits = walked.iter().filter(|id| want.contains(id)).count();
                assert!(hits >= 9, "graph, query {k}: {walked:?} vs {want:?}");
                assert!(walked
                    .iter()
                    .all(|id| matches!(id, PointId::Num(i) if i % 3 != 0)));
            }
            // The unnamed vector is searched as before, over every point.
            let all = ids(&e, &SearchRequest::new(vec![1.0, 0.0], 600));
            assert_eq!(all.len(), 600);
        }
    }

    #[test]
    fn named_vectors_read_back_filter_and_survive_compaction() {
        let mut e = engine(Quantization::None);
        let points: Vec<Point> = (0..3000).map(point).collect();
        e.upsert(points.clone()).unwrap();
        let r = &e.get(&[PointId::Num(1), PointId::Num(3)]).unwrap();
        assert_eq!(
            r[0].named_vectors.as_ref().unwrap()["img"],
            points[1].named_vectors["img"]
        );
        assert_eq!(r[1].named_vectors, None, "point 3 has no img vector");
        let with_img = Filter::must([Condition::HasVector("img".to_owned())]);
        assert_eq!(e.count(Some(&with_img)), 2000);
        // Delete two thirds: compaction renumbers the slots, the vectors follow their points.
        let doomed: Vec<PointId> = (0..3000).filter(|i| i % 3 != 1).map(PointId::Num).collect();
        e.delete(&doomed);
        assert_eq!(e.tombstones(), 0, "compacted");
        assert_eq!(e.count(Some(&with_img)), 1000);
        let kept: Vec<Point> = points
            .into_iter()
            .filter(|p| matches!(p.id, PointId::Num(i) if i % 3 == 1))
            .collect();
        let q = [2.0, -0.5, 10.0];
        let exact = SearchRequest {
            params: crate::SearchParams {
                exact: true,
                ..Default::default()
            },
            ..SearchRequest::new(q.to_vec(), 5).using("img")
        };
        assert_eq!(ids(&e, &exact), brute_force(&kept, &q, 5));
        assert_eq!(
            ids(&e, &SearchRequest::new(q.to_vec(), 5).using("img")),
            brute_force(&kept, &q, 5)
        );
    }

    #[test]
    fn codes_are_trained_on_the_rows_that_hold_a_vector() {
        let mut e = engine(Quantization::Sq8);
        // Components between 10 and 11 where present; a zero row for every other point.
        let points = (0..400u64).map(|i| {
            let p = Point::new(i, vec![1.0, 0.5]);
            match i % 2 {
                0 => p,
                _ => p.with_named("img", vec![10.0 + (i % 7) as f32 / 7.0, 10.5, 11.0]),
            }
        });
        e.upsert(points.collect()).unwrap();
        let (_, img) = &e.named[0];
        let section = img.codes.as_ref().expect("coded").section(&[]);
        // The preamble: kind, stride, then SQ8's range starts at `low`.
        let low = f32::from_le_bytes(section[8..12].try_into().unwrap());
        assert!(
            low >= 9.9,
            "the range starts at {low}, pulled down by the zero rows"
        );
    }

    #[test]
    fn named_vectors_are_checked() {
        let mut e = engine(Quantization::None);
        let short = Point::new(1, vec![1.0, 0.0]).with_named("img", vec![1.0]);
        let err = e.upsert(vec![short]).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidArgument(m) if m.contains("\"img\"")),
            "{err}"
        );
        let unknown = Point::new(1, vec![1.0, 0.0]).with_named("text", vec![1.0]);
        let err = e.upsert(vec![unknown]).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidArgument(m) if m.contains("no dense vector named \"text\"")),
            "{err}"
        );
        let err = e
            .search_batch(&[SearchRequest::new(vec![1.0], 1).using("audio")])
            .unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)));
        assert_eq!(e.len(), 0);
        // In the log, a vector the configuration does not declare refuses the open rather
        // than lose it.
        let logged = Point::new(1, vec![1.0, 0.0]).with_named("audio", vec![1.0]);
        let err = e.validate_logged_upsert(&[logged]).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidConfig(m) if m.contains("\"audio\"")),
            "{err}"
        );
    }
}
