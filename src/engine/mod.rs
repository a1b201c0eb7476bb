//! The engine: ids, vectors, payloads and exact search, single-threaded and free of I/O.
//!
//! Everything else in the crate wraps this: the native facade puts it behind a lock, the
//! persistence layer feeds it from segments (as an [`image::Image`]) and a write-ahead log, the JS
//! facade calls it from wasm.
//! Because it does no I/O and has no platform code, the same engine runs everywhere and is tested
//! once.
//!
//! Points live in *slots*: slot `s` has its vector in the arena at row `s`, its id in
//! `slot_ids[s]` and its payload in `payloads[s]`. Deleting a point turns its slot into a
//! tombstone (`slot_ids[s] == None`); [`Engine::compact`] squeezes tombstones out, which happens
//! on its own once they outnumber live points.

mod arena;
pub(crate) mod hnsw;
pub(crate) mod image;
mod payload_index;
mod payloads;
mod sketch;
mod topk;

use std::collections::BTreeMap;

use crate::config::HnswConfig;
use crate::distance::{self, closeness_key, score_from_raw, Kernel, Kernel4};
use crate::error::{Error, Result};
use crate::filter::{Filter, KeyPath};
use crate::point::{Distance, Payload, Point, PointId};
use crate::search::{
    Record, ScoredPoint, ScrollRequest, ScrollResponse, SearchRequest, SearchResponse,
};
use crate::stats::MemoryStats;
pub(crate) use arena::stride_for;
use arena::{ArenaView, VectorArena};
use hnsw::{Graph, GraphParams, InsertPlan, Space, NONE};
use image::{Image, ImageSource};
use payload_index::{Candidates, PayloadIndexes};
use payloads::{PayloadStore, RawPayloads};
use topk::{Candidate, TopK};

/// Tombstones are compacted away automatically once there are more of them than live points and
/// at least this many (below it, the wasted scan time is negligible).
const AUTO_COMPACT_MIN_DEAD: usize = 1024;

/// Nodes planned together (in parallel when a [`ParallelMap`] allows): large enough to keep
/// threads busy, small enough that nodes of one batch rarely need each other as neighbours
/// (they are linked to each other anyway, see `Graph::commit`).
const INSERT_BATCH: usize = 64;

/// Runs `count` independent jobs and returns their results in order. The engine itself is
/// single-threaded; the native facade supplies a version that uses several threads.
pub(crate) type ParallelMap =
    Box<dyn Fn(usize, &(dyn Fn(usize) -> InsertPlan + Sync)) -> Vec<InsertPlan> + Send + Sync>;

/// Filters matching less than this fraction of the points are searched by scanning: the graph
/// would walk through many non-matching nodes for each match it admits.
const SELECTIVE_FILTER: f64 = 0.03;

/// Points sampled to estimate a filter's selectivity.
const SELECTIVITY_SAMPLE: usize = 512;

/// Largest number of slots: slots are `u32` in the top-k heap (and, later, in the graph).
/// One below `u32::MAX` so the bound is a real check on 32-bit targets too.
const MAX_SLOTS: usize = (u32::MAX - 1) as usize;

/// What an engine holds and how it may grow.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EngineConfig {
    pub dimension: usize,
    pub distance: Distance,
    pub max_points: Option<usize>,
    pub max_search_limit: usize,
    /// The HNSW index, or `None` for exact search only.
    pub hnsw: Option<HnswConfig>,
    /// Payload keys with a value -> slots index.
    pub payload_indexes: Vec<KeyPath>,
}

/// How many points an upsert inserted and how many it replaced.
///
/// ```
/// use grape_vector_db::{EmbeddedConfig, EmbeddedVectorDB, Point};
/// let db = EmbeddedVectorDB::open(EmbeddedConfig::builder(1).build()?)?;
/// db.upsert(vec![Point::new(1, vec![1.0])])?;
/// let s = db.upsert(vec![Point::new(1, vec![2.0]), Point::new(2, vec![1.0])])?;
/// assert_eq!((s.inserted, s.updated), (1, 1));
/// # Ok::<(), grape_vector_db::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct UpsertSummary {
    /// Points whose id was new.
    pub inserted: usize,
    /// Points that replaced one with the same id.
    pub updated: usize,
}

/// A validated query, ready for the scan.
struct PreparedQuery<'a> {
    vector: Vec<f32>,
    filter: Option<&'a Filter>,
    /// Candidates with a larger closeness key fail the score threshold.
    max_key: f32,
    /// `offset + limit`: how many candidates the top-k keeps.
    keep: usize,
}

pub(crate) struct Engine {
    config: EngineConfig,
    kernel: Kernel,
    kernel4: Kernel4,
    vectors: VectorArena,
    slot_ids: Vec<Option<PointId>>,
    payloads: PayloadStore,
    ids: BTreeMap<PointId, u32>,
    dead: usize,
    /// One node per slot (dead ones included) when the index is enabled, except for a tail of
    /// slots past `graph.len()` that are not indexed yet (see `defer_indexing`).
    graph: Option<Graph>,
    /// While the log is replayed at open, new points are not inserted into the graph: opening
    /// stays fast, searches scan the few unindexed points exactly, and the next write or
    /// checkpoint indexes them.
    defer_indexing: bool,
    indexes: PayloadIndexes,
    parallel: ParallelMap,
}

/// The engine's vectors as seen by the graph: closeness keys through the chosen kernel.
struct ArenaSpace<'a> {
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

fn graph_params(h: &HnswConfig, config: &EngineConfig) -> GraphParams {
    GraphParams {
        m: h.m,
        ef_construction: h.ef_construction,
        sketch_dim: sketch::worth_it(config.distance, config.dimension).then_some(config.dimension),
    }
}

impl Engine {
    pub fn new(config: EngineConfig) -> Self {
        Engine {
            kernel: distance::best().for_distance(config.distance),
            kernel4: distance::best().for_distance4(config.distance),
            vectors: VectorArena::new(config.dimension),
            slot_ids: Vec::new(),
            payloads: PayloadStore::new(),
            ids: BTreeMap::new(),
            dead: 0,
            graph: config
                .hnsw
                .as_ref()
                .map(|h| Graph::new(graph_params(h, &config))),
            defer_indexing: false,
            indexes: PayloadIndexes::new(&config.payload_indexes),
            parallel: Box::new(|count, job| (0..count).map(job).collect()),
            config,
        }
    }

    /// Lets graph construction plan nodes on several threads.
    pub fn set_parallel_map(&mut self, parallel: ParallelMap) {
        self.parallel = parallel;
    }

    /// Slots that may match `filter`, from the payload indexes, when an indexed `must`
    /// condition narrows it down (the whole filter must still be checked on each).
    fn index_candidates(&self, filter: &Filter) -> Option<Candidates<'_>> {
        self.indexes
            .candidates(filter, || Box::new(self.live_payloads()))
    }

    /// Live slots with their payloads, for building payload indexes.
    fn live_payloads(&self) -> impl Iterator<Item = (u32, &Payload)> + '_ {
        self.slot_ids
            .iter()
            .enumerate()
            .filter(|(_, id)| id.is_some())
            .map(|(slot, _)| (slot as u32, self.payloads.get(slot)))
    }

    /// Makes the first queries as fast as the rest: indexes points still outside the graph,
    /// builds the payload indexes, reads a word of every page of the vectors and of the graph
    /// (faulting in mapped files) and runs a few searches through the upper layers. Returns a
    /// checksum of what it read, so the reads cannot be optimised away.
    pub fn warm_up(&mut self) -> u64 {
        self.index_pending();
        self.indexes.build_all(|| Box::new(self.live_payloads()));
        const PAGE: usize = 4096;
        let slots = self.slot_ids.len();
        let rows_per_page = (PAGE / (self.vectors.stride() * 4)).max(1);
        let mut sum = 0u64;
        for slot in (0..slots).step_by(rows_per_page) {
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

    /// Turns deferred indexing on (log replay) or off; see the `defer_indexing` field.
    pub fn set_deferred_indexing(&mut self, on: bool) {
        self.defer_indexing = on;
    }

    /// Slots not yet in the graph: `graph.len()..slots`.
    fn unindexed(&self) -> std::ops::Range<usize> {
        let indexed = self.graph.as_ref().map_or(self.slot_ids.len(), Graph::len);
        indexed..self.slot_ids.len()
    }

    /// Inserts every unindexed slot into the graph.
    pub fn index_pending(&mut self) {
        self.index_pending_up_to(usize::MAX);
    }

    /// Inserts up to `max` unindexed slots into the graph, in batches whose plans may be
    /// computed in parallel (the result does not depend on how they are scheduled or chunked);
    /// returns how many remain.
    pub fn index_pending_up_to(&mut self, max: usize) -> usize {
        let pending = self.unindexed();
        let remaining = pending.len().saturating_sub(max);
        let pending = pending.start..pending.end - remaining;
        let Some(graph) = self.graph.as_mut() else {
            return 0;
        };
        let space = ArenaSpace {
            vectors: self.vectors.view(),
            kernel: self.kernel,
            kernel4: self.kernel4,
            distance: self.config.distance,
        };
        let slots: Vec<u32> = pending.map(|s| s as u32).collect();
        let slot_ids = &self.slot_ids;
        // Without tombstones every node is live: skip the per-candidate lookup.
        let all_live = self.dead == 0;
        let live = |s: u32| all_live || slot_ids[s as usize].is_some();
        for batch in slots.chunks(INSERT_BATCH) {
            let levels = graph.draw_levels(batch.len());
            let plans = {
                let graph = &*graph;
                (self.parallel)(batch.len(), &|i| {
                    graph.plan(batch[i], levels[i], &space, &live)
                })
            };
            for (i, plan) in plans.into_iter().enumerate() {
                graph.commit(batch[i], plan, &batch[..i], &space);
            }
        }
        remaining
    }

    fn space(&self) -> ArenaSpace<'_> {
        ArenaSpace {
            vectors: self.vectors.view(),
            kernel: self.kernel,
            kernel4: self.kernel4,
            distance: self.config.distance,
        }
    }

    /// An engine over a checkpoint: its vectors used in place, its payloads parsed on first use.
    /// The segment's rows are in id order, which makes building the id map linear.
    pub fn from_image(config: EngineConfig, seg: Image) -> Result<Self> {
        let mut engine = Engine::new(config);
        let rows = seg.rows;
        if rows > MAX_SLOTS {
            return Err(Error::InvalidConfig(format!(
                "the segment holds {rows} points, more than the {MAX_SLOTS} supported"
            )));
        }
        // A `max_points` below `rows` (lowered since) keeps the points; it refuses new ones.
        engine.ids = seg
            .ids
            .iter()
            .enumerate()
            .map(|(slot, &id)| (id, slot as u32))
            .collect();
        if engine.ids.len() != rows {
            return Err(Error::Corrupt {
                file: "segment".to_owned(),
                offset: 0,
                detail: "the ids section repeats an id".to_owned(),
            });
        }
        engine.slot_ids = seg.ids.into_iter().map(Some).collect();
        engine.vectors = VectorArena::with_base(engine.config.dimension, seg.vectors, rows);
        engine.payloads = PayloadStore::with_raw(
            rows,
            RawPayloads {
                offsets: seg.payload_offsets,
                data: seg.payload_data,
            },
        );
        engine.graph = match (engine.config.hnsw, seg.graph) {
            (None, _) => None,
            (Some(h), Some(mut parts)) => {
                parts.params.sketch_dim = graph_params(&h, &engine.config).sketch_dim;
                Some(Graph::from_parts(parts))
            }
            (Some(h), None) => Some(Graph::new(graph_params(&h, &engine.config))),
        };
        // Segments of version 2 have no sketches: compute them once (the next checkpoint
        // stores them).
        if let Some(mut graph) = engine.graph.take() {
            graph.complete_sketches(&engine.space());
            engine.graph = Some(graph);
        }
        // A segment written without an index has all its rows unindexed: build the graph now.
        engine.index_pending();
        Ok(engine)
    }

    /// The live points in id order, as a new segment stores them, with the graph renumbered to
    /// match. Callers index pending slots first; if some remain, the segment is written without
    /// a graph (and the next open rebuilds it) rather than with an incomplete one.
    pub fn export(&self, last_seq: u64) -> ImageSource<'_> {
        debug_assert!(self.unindexed().is_empty(), "export before index_pending");
        let complete = self.unindexed().is_empty();
        let graph = self.graph.as_ref().filter(|_| complete).map(|g| {
            let mut row_of = vec![NONE; self.slot_ids.len()];
            for (row, &slot) in self.ids.values().enumerate() {
                row_of[slot as usize] = row as u32;
            }
            g.remapped(&row_of, &self.space())
        });
        ImageSource {
            graph,
            dim: self.config.dimension,
            stride: self.vectors.stride(),
            distance: self.config.distance,
            last_seq,
            rows: self
                .ids
                .iter()
                .map(|(&id, &slot)| {
                    let slot = slot as usize;
                    (id, self.vectors.get(slot), self.payloads.json(slot))
                })
                .collect(),
        }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Number of live points.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether a point with this id is stored.
    pub fn contains(&self, id: PointId) -> bool {
        self.ids.contains_key(&id)
    }

    /// Number of tombstoned slots awaiting compaction.
    pub fn tombstones(&self) -> usize {
        self.dead
    }

    /// Checks a vector against the database's dimension and distance.
    fn check_vector(&self, v: &[f32]) -> Result<()> {
        if v.len() != self.config.dimension {
            return Err(Error::DimensionMismatch {
                expected: self.config.dimension,
                found: v.len(),
            });
        }
        if let Some((index, &value)) = v.iter().enumerate().find(|(_, x)| !x.is_finite()) {
            return Err(Error::NonFiniteComponent { index, value });
        }
        if self.config.distance == Distance::Cosine {
            let norm2 = (self.kernel)(v, v);
            // Squares of tiny components underflow to zero, and huge ones overflow: either way
            // the vector cannot be normalised in f32.
            if !(norm2 > 0.0 && norm2.is_finite()) {
                return Err(Error::ZeroVector);
            }
        }
        Ok(())
    }

    /// Checks a batch for [`Engine::apply_upsert`]: every vector, and the `max_points` limit.
    pub fn validate_upsert(&self, points: &[Point]) -> Result<()> {
        let max = self
            .config
            .max_points
            .map_or(MAX_SLOTS, |m| m.min(MAX_SLOTS));
        self.validate_upsert_within(points, max)
    }

    /// Checks a logged upsert before it is replayed: its points were acknowledged, so a
    /// `max_points` lowered since does not refuse them (new writes are refused while over it);
    /// only what the engine cannot hold at all does.
    pub fn validate_logged_upsert(&self, points: &[Point]) -> Result<()> {
        self.validate_upsert_within(points, MAX_SLOTS)
    }

    fn validate_upsert_within(&self, points: &[Point], max: usize) -> Result<()> {
        for p in points {
            self.check_vector(&p.vector)?;
        }
        let mut new_ids: Vec<PointId> = points
            .iter()
            .map(|p| p.id)
            .filter(|id| !self.ids.contains_key(id))
            .collect();
        new_ids.sort_unstable();
        new_ids.dedup();
        let live_after = self.len() + new_ids.len();
        // Replacements are allowed even over the limit (it may have been lowered since the
        // points were written). Replacing a point of a mapped segment takes a new slot, so
        // count every point against the slots.
        let over = !new_ids.is_empty() && live_after > max;
        if over || self.slot_ids.len().saturating_add(points.len()) > MAX_SLOTS {
            return Err(Error::LimitExceeded {
                limit: "max_points",
                max,
                requested: live_after,
            });
        }
        Ok(())
    }

    /// Inserts new points and replaces existing ones; the batch must have passed
    /// [`Engine::validate_upsert`].
    pub fn apply_upsert(&mut self, points: Vec<Point>) -> UpsertSummary {
        if !self.defer_indexing {
            self.index_pending();
        }
        self.vectors.reserve(points.len());
        let mut summary = UpsertSummary::default();
        for Point {
            id,
            vector,
            payload,
        } in points
        {
            let existing = self.ids.get(&id).map(|&s| s as usize);
            // With an index, a changed vector would leave its node's links stale: it moves to
            // a new slot instead, like a vector of the read-only mapped segment.
            let in_place =
                existing.filter(|&s| self.vectors.is_writable(s) && self.graph.is_none());
            let slot = match in_place {
                Some(slot) => {
                    self.vectors.get_mut(slot).copy_from_slice(&vector);
                    self.indexes.mark_stale();
                    self.indexes.add(slot as u32, &payload);
                    self.payloads.set(slot, payload);
                    slot
                }
                _ => {
                    // New, or in the read-only mapped base: the old slot (if any) becomes a
                    // tombstone and the point moves to a new slot.
                    if let Some(old) = existing {
                        self.tombstone(old);
                    }
                    let slot = self.vectors.push(&vector);
                    self.slot_ids.push(Some(id));
                    self.indexes.add(slot as u32, &payload);
                    self.payloads.push(payload);
                    self.ids.insert(id, slot as u32);
                    slot
                }
            };
            if existing.is_some() {
                summary.updated += 1;
            } else {
                summary.inserted += 1;
            }
            if self.config.distance == Distance::Cosine {
                let normalised = distance::normalize(self.vectors.get_mut(slot));
                debug_assert!(normalised, "check_vector refuses unnormalisable vectors");
            }
        }
        if !self.defer_indexing {
            self.index_pending();
        }
        self.maybe_compact();
        summary
    }

    /// Validates, then applies, a batch: all or nothing.
    #[cfg(test)]
    pub fn upsert(&mut self, points: Vec<Point>) -> Result<UpsertSummary> {
        self.validate_upsert(&points)?;
        Ok(self.apply_upsert(points))
    }

    fn record(&self, slot: usize, with_payload: bool, with_vector: bool) -> Record {
        Record {
            id: self.slot_ids[slot].expect("records are made for live slots only"),
            payload: with_payload.then(|| self.payloads.get(slot).clone()),
            vector: with_vector.then(|| self.vectors.get(slot).to_vec()),
        }
    }

    /// The points with these ids, in the order asked; ids not stored are skipped (as Qdrant).
    pub fn get(&self, ids: &[PointId], with_payload: bool, with_vector: bool) -> Vec<Record> {
        ids.iter()
            .filter_map(|id| self.ids.get(id))
            .map(|&slot| self.record(slot as usize, with_payload, with_vector))
            .collect()
    }

    /// Fails with [`Error::UnknownId`] naming the first id that is not stored.
    pub fn check_known(&self, ids: &[PointId]) -> Result<()> {
        match ids.iter().find(|id| !self.ids.contains_key(id)) {
            Some(id) => Err(Error::UnknownId(id.to_string())),
            None => Ok(()),
        }
    }

    /// Merges `payload` into the payloads of the given points (keys in `payload` overwrite);
    /// ids not stored are skipped (callers check with [`Engine::check_known`] first).
    pub fn apply_set_payload(&mut self, ids: &[PointId], payload: &Payload) {
        for id in ids {
            if let Some(&slot) = self.ids.get(id) {
                let target = self.payloads.get_mut(slot as usize);
                for (k, v) in payload {
                    target.insert(k.clone(), v.clone());
                }
                self.indexes.mark_stale();
                self.indexes.add(slot, self.payloads.get(slot as usize));
            }
        }
    }

    fn tombstone(&mut self, slot: usize) {
        if let Some(id) = self.slot_ids[slot].take() {
            self.ids.remove(&id);
            self.payloads.set(slot, Payload::new());
            self.dead += 1;
        }
    }

    /// Compacts once tombstones outnumber live points (and pass the minimum): after deletes,
    /// and after upserts, which leave a tombstone per replaced point when there is an index.
    fn maybe_compact(&mut self) {
        if self.dead >= AUTO_COMPACT_MIN_DEAD && self.dead > self.len() {
            self.compact();
        }
    }

    /// Deletes the points with these ids; returns how many existed.
    pub fn delete(&mut self, ids: &[PointId]) -> usize {
        let before = self.len();
        for id in ids {
            if let Some(&slot) = self.ids.get(id) {
                self.tombstone(slot as usize);
            }
        }
        self.maybe_compact();
        before - self.len()
    }

    /// The ids of the points matching `filter`, in id order (delete-by-filter resolves to
    /// these, so the log records ids rather than a filter).
    pub fn matching_ids(&self, filter: &Filter) -> Vec<PointId> {
        let mut ids: Vec<PointId> = self
            .matching_slots(Some(filter))
            .filter_map(|slot| self.slot_ids[slot])
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Live slots matching `filter`, from the index's candidates when it has them.
    fn matching_slots<'a>(
        &'a self,
        filter: Option<&'a Filter>,
    ) -> Box<dyn Iterator<Item = usize> + 'a> {
        if let Some(candidates) = filter.and_then(|f| self.index_candidates(f)) {
            return Box::new(candidates.slots().into_iter().map(|s| s as usize).filter(
                move |&slot| {
                    self.slot_ids[slot].is_some_and(|id| {
                        filter.is_none_or(|f| f.matches(id, self.payloads.get(slot)))
                    })
                },
            ));
        }
        Box::new(self.all_matching_slots(filter))
    }

    fn all_matching_slots<'a>(
        &'a self,
        filter: Option<&'a Filter>,
    ) -> impl Iterator<Item = usize> + 'a {
        self.slot_ids
            .iter()
            .enumerate()
            .filter_map(move |(slot, id)| {
                let id = (*id)?;
                filter
                    .is_none_or(|f| f.matches(id, self.payloads.get(slot)))
                    .then_some(slot)
            })
    }

    /// Number of points matching `filter` (all points when `None`).
    pub fn count(&self, filter: Option<&Filter>) -> usize {
        match filter {
            None => self.len(),
            Some(f) => self.matching_slots(Some(f)).count(),
        }
    }

    /// One page of points in id order.
    pub fn scroll(&self, req: &ScrollRequest) -> Result<ScrollResponse> {
        self.check_limit(req.limit)?;
        let start = req
            .offset
            .map_or(std::ops::Bound::Unbounded, std::ops::Bound::Included);
        let mut matching =
            self.ids
                .range((start, std::ops::Bound::Unbounded))
                .filter(|(&id, &slot)| {
                    req.filter
                        .as_ref()
                        .is_none_or(|f| f.matches(id, self.payloads.get(slot as usize)))
                });
        let points = matching
            .by_ref()
            .take(req.limit)
            .map(|(_, &slot)| self.record(slot as usize, req.with_payload, req.with_vector))
            .collect();
        Ok(ScrollResponse {
            points,
            next_page_offset: matching.next().map(|(&id, _)| id),
        })
    }

    fn check_limit(&self, requested: usize) -> Result<()> {
        if requested == 0 {
            return Err(Error::InvalidArgument(
                "limit must be at least 1".to_owned(),
            ));
        }
        if requested > self.config.max_search_limit {
            return Err(Error::LimitExceeded {
                limit: "max_search_limit",
                max: self.config.max_search_limit,
                requested,
            });
        }
        Ok(())
    }

    fn prepare<'a>(&self, req: &'a SearchRequest) -> Result<PreparedQuery<'a>> {
        self.check_vector(&req.vector)?;
        self.check_limit(req.limit.saturating_add(req.offset))?;
        if req.params.hnsw_ef == Some(0) {
            return Err(Error::InvalidArgument(
                "params.hnsw_ef must be at least 1".to_owned(),
            ));
        }
        let mut vector = req.vector.clone();
        if self.config.distance == Distance::Cosine {
            distance::normalize(&mut vector);
        }
        let max_key = match (req.score_threshold, self.config.distance) {
            (None, _) => f32::INFINITY,
            (Some(t), _) if t.is_nan() => {
                return Err(Error::InvalidArgument("score_threshold is NaN".to_owned()))
            }
            (Some(t), Distance::Cosine | Distance::Dot) => -t,
            // Scores are distances (>= 0): a negative threshold admits nothing.
            (Some(t), Distance::Euclid) if t < 0.0 => f32::NEG_INFINITY,
            (Some(t), Distance::Euclid) => t * t,
            (Some(t), Distance::Manhattan) => t,
        };
        Ok(PreparedQuery {
            vector,
            filter: req.filter.as_ref(),
            max_key,
            keep: req.limit + req.offset,
        })
    }

    /// Searches for several queries. Each uses the HNSW index when it applies (see
    /// [`Engine::approximate`]); the others share one exact pass over the arena.
    pub fn search_batch(&self, reqs: &[SearchRequest]) -> Result<Vec<SearchResponse>> {
        let queries = reqs
            .iter()
            .map(|r| self.prepare(r))
            .collect::<Result<Vec<_>>>()?;
        let mut answers: Vec<Option<(Vec<Candidate>, usize, bool)>> = queries
            .iter()
            .zip(reqs)
            .map(|(q, r)| {
                let candidates = q.filter.and_then(|f| self.index_candidates(f));
                match self.approximate(q, r, candidates.as_ref()) {
                    Some((found, scored)) => Some((found, scored, false)),
                    // An indexed filter: score its candidates only.
                    None => candidates.map(|c| {
                        let (found, scored) = self.scan_slots(q, &c.slots());
                        (found, scored, true)
                    }),
                }
            })
            .collect();
        let exact: Vec<usize> = (0..reqs.len()).filter(|&i| answers[i].is_none()).collect();
        if !exact.is_empty() {
            let subset: Vec<&PreparedQuery> = exact.iter().map(|&i| &queries[i]).collect();
            for (i, (found, scored)) in exact.into_iter().zip(self.scan(&subset)) {
                answers[i] = Some((found, scored, true));
            }
        }
        Ok(reqs
            .iter()
            .zip(answers)
            .map(|(req, answer)| {
                let (found, scored, exact) = answer.expect("every query was answered");
                SearchResponse {
                    result: found
                        .into_iter()
                        .skip(req.offset)
                        .map(|c| self.scored_point(c, req))
                        .collect(),
                    exact,
                    scored,
                }
            })
            .collect())
    }

    /// Exact search of one query over the given slots (a payload index's candidates).
    fn scan_slots(&self, q: &PreparedQuery, slots: &[u32]) -> (Vec<Candidate>, usize) {
        let mut top = TopK::new(q.keep);
        let mut scored = 0;
        let space = self.space();
        for &slot in slots {
            let Some(id) = self.slot_ids[slot as usize] else {
                continue;
            };
            if q.filter
                .is_some_and(|f| !f.matches(id, self.payloads.get(slot as usize)))
            {
                continue;
            }
            scored += 1;
            let key = space.key_to(&q.vector, slot);
            if key <= q.max_key && top.admits(key) {
                top.push(Candidate { key, slot });
            }
        }
        (top.into_sorted(), scored)
    }

    /// Exact search for several queries in one pass over the arena: each stored vector is read
    /// from memory once and compared with every query while it is in cache, so a batch costs
    /// little more than a single query.
    fn scan(&self, queries: &[&PreparedQuery]) -> Vec<(Vec<Candidate>, usize)> {
        let mut tops: Vec<TopK> = queries.iter().map(|q| TopK::new(q.keep)).collect();
        let mut scored = vec![0usize; queries.len()];
        let distance = self.config.distance;
        let vectors = self.vectors.view();
        for (slot, id) in self.slot_ids.iter().enumerate() {
            let Some(id) = *id else { continue };
            let v = vectors.get(slot);
            for ((q, top), scored) in queries.iter().zip(&mut tops).zip(&mut scored) {
                if q.filter
                    .is_some_and(|f| !f.matches(id, self.payloads.get(slot)))
                {
                    continue;
                }
                *scored += 1;
                let key = closeness_key(distance, (self.kernel)(&q.vector, v));
                if key <= q.max_key && top.admits(key) {
                    top.push(Candidate {
                        key,
                        slot: slot as u32,
                    });
                }
            }
        }
        tops.into_iter()
            .map(TopK::into_sorted)
            .zip(scored)
            .collect()
    }

    /// Graph search, when it applies: the index exists, the collection is past the full-scan
    /// threshold, the request does not ask for `exact`, and a filter (if any) is not so
    /// selective that scanning its matches is cheaper. `None` sends the query to the exact
    /// scan, which also happens when the graph finds fewer than `limit + offset` admissible
    /// points: a result is never cut short because the filter or deletions starved the beam.
    fn approximate(
        &self,
        q: &PreparedQuery,
        req: &SearchRequest,
        candidates: Option<&Candidates>,
    ) -> Option<(Vec<Candidate>, usize)> {
        let (graph, hnsw) = (self.graph.as_ref()?, self.config.hnsw.as_ref()?);
        if req.params.exact || self.len() < hnsw.full_scan_threshold {
            return None;
        }
        let selectivity = |f: &Filter| match candidates {
            // An upper bound: candidates may fail the rest of the filter.
            Some(c) => c.len() as f64 / self.len().max(1) as f64,
            None => self.estimate_selectivity(f),
        };
        if q.filter.is_some_and(|f| selectivity(f) < SELECTIVE_FILTER) {
            return None;
        }
        let ef = req.params.hnsw_ef.unwrap_or(hnsw.ef).max(q.keep);
        // With a payload index, a bitset of its candidates rejects most non-matching nodes
        // before their payloads are looked at.
        let bits = candidates.map(|c| c.bitset(self.slot_ids.len()));
        let exact = candidates.is_some_and(|c| c.exact);
        let admit = |slot: u32| {
            if bits
                .as_ref()
                .is_some_and(|b| b[slot as usize / 64] & (1 << (slot % 64)) == 0)
            {
                return false;
            }
            match self.slot_ids[slot as usize] {
                // An exact candidate set answers the filter without reading the payload.
                Some(_) if exact => true,
                Some(id) => q
                    .filter
                    .is_none_or(|f| f.matches(id, self.payloads.get(slot as usize))),
                None => false,
            }
        };
        let (mut found, mut scored) = if q.filter.is_none() && self.dead == 0 {
            // Every node is admissible: skip the per-candidate check (a cache miss each).
            graph.search(&q.vector, ef, &self.space(), &|_| true)
        } else {
            graph.search(&q.vector, ef, &self.space(), &admit)
        };
        let tail = self.unindexed();
        if !tail.is_empty() {
            let space = self.space();
            for slot in tail.map(|s| s as u32).filter(|&s| admit(s)) {
                scored += 1;
                found.push(Candidate {
                    key: space.key_to(&q.vector, slot),
                    slot,
                });
            }
            found.sort_unstable();
        }
        if found.len() < q.keep {
            return None;
        }
        let kept = found
            .into_iter()
            .filter(|c| c.key <= q.max_key)
            .take(q.keep)
            .collect();
        Some((kept, scored))
    }

    /// The fraction of live points matching `filter`, estimated from a sample of slots spread
    /// by a multiplicative hash (an even stride would alias with periodic payloads, such as a
    /// field derived from the insertion order).
    fn estimate_selectivity(&self, filter: &Filter) -> f64 {
        let slots = self.slot_ids.len() as u64;
        if slots == 0 {
            return 0.0;
        }
        let (mut seen, mut matched) = (0usize, 0usize);
        for i in 0..SELECTIVITY_SAMPLE.min(slots as usize) as u64 {
            let slot = if slots as usize <= SELECTIVITY_SAMPLE {
                i
            } else {
                (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 16) % slots
            } as usize;
            if let Some(id) = self.slot_ids[slot] {
                seen += 1;
                matched += usize::from(filter.matches(id, self.payloads.get(slot)));
            }
        }
        if seen == 0 {
            0.0
        } else {
            matched as f64 / seen as f64
        }
    }

    fn scored_point(&self, c: Candidate, req: &SearchRequest) -> ScoredPoint {
        let distance = self.config.distance;
        let raw = if distance.higher_is_better() {
            -c.key
        } else {
            c.key
        };
        let Record {
            id,
            payload,
            vector,
        } = self.record(c.slot as usize, req.with_payload, req.with_vector);
        ScoredPoint {
            id,
            score: score_from_raw(distance, raw),
            payload,
            vector,
        }
    }

    /// Removes tombstones: live points move down to fill the gaps, keeping their relative order.
    pub fn compact(&mut self) {
        if self.dead == 0 {
            return;
        }
        self.indexes.reset();
        let live = |slot: usize| self.slot_ids[slot].is_some();
        self.vectors.retain(live);
        self.payloads.retain(live);
        self.slot_ids.retain(Option::is_some);
        self.slot_ids.shrink_to_fit();
        for (slot, id) in self.slot_ids.iter().enumerate() {
            let id = id.expect("only live slots were kept");
            self.ids.insert(id, slot as u32);
        }
        self.dead = 0;
        // Rebuild the graph over the live points: when half the nodes are gone, patching their
        // neighbours' lists leaves too many holes (measured: recall@10 0.25 after two rounds of
        // rewrites), and a build is what the compaction is amortised against anyway.
        if let Some(graph) = &self.graph {
            self.graph = Some(Graph::new(graph.params()));
            if !self.defer_indexing {
                self.index_pending();
            }
        }
    }

    /// Whether to compact before [`Engine::export`]: more than a tenth of the slots are dead,
    /// and the segment's graph only patches the lists that lose dead neighbours (fine for a few,
    /// not for many).
    pub fn export_wants_compaction(&self) -> bool {
        self.dead * 10 > self.slot_ids.len()
    }

    /// Bytes an upsert of `points` would add to [`Engine::memory`]: each point takes a new slot
    /// (replacements too), its vector row, a node of the graph, id entries and its payload.
    pub fn bytes_for_upsert(&self, points: &[Point]) -> usize {
        let graph_node = self.config.hnsw.as_ref().map_or(0, |h| {
            // A level-0 list (count + 2m slots), its level byte, and on average a 1/m share of
            // an upper-layer list (count + m slots).
            (1 + 2 * h.m) * 4 + 1 + (1 + h.m) * 4 / h.m.max(1)
        });
        let per_point = self.vectors.stride() * 4
            + graph_node
            + std::mem::size_of::<(PointId, u32)>()
            + std::mem::size_of::<usize>()
            + std::mem::size_of::<Option<PointId>>()
            + std::mem::size_of::<std::sync::OnceLock<Payload>>();
        points
            .iter()
            .map(|p| per_point + payloads::heap_bytes(&p.payload))
            .sum()
    }

    /// How many payloads of the mapped segment did not parse when read, and the first one's
    /// row: the segment was altered or badly written although its checksums hold.
    pub fn unreadable_payloads(&self) -> Option<(usize, usize)> {
        self.payloads.unreadable()
    }

    /// The `k`-th live point (counting from the `k % slots`-th slot onwards), with its vector:
    /// the health check searches for it.
    pub fn sample_live(&self, k: usize) -> Option<(PointId, Vec<f32>)> {
        let slots = self.slot_ids.len();
        if self.ids.is_empty() || slots == 0 {
            return None;
        }
        (0..slots)
            .map(|i| (k + i) % slots)
            .find_map(|s| self.slot_ids[s].map(|id| (id, self.vectors.get(s).to_vec())))
    }

    pub fn memory(&self) -> MemoryStats {
        // A BTreeMap entry costs its key and value plus roughly one pointer of node overhead.
        let id_entry = std::mem::size_of::<(PointId, u32)>() + std::mem::size_of::<usize>();
        MemoryStats {
            vectors: self.vectors.allocated_bytes(),
            mapped: self.vectors.mapped_bytes(),
            payloads: self.payloads.heap_bytes(),
            index: self.graph.as_ref().map_or(0, Graph::bytes) + self.indexes.bytes(),
            ids: self.ids.len() * id_entry
                + self.slot_ids.capacity() * std::mem::size_of::<Option<PointId>>(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn engine(distance: Distance) -> Engine {
        Engine::new(EngineConfig {
            dimension: 2,
            distance,
            max_points: None,
            max_search_limit: 100,
            hnsw: None,
            payload_indexes: Vec::new(),
        })
    }

    fn p(id: u64, v: [f32; 2], payload: Value) -> Point {
        Point::new(id, v.to_vec()).with_payload(payload).unwrap()
    }

    #[test]
    fn compaction_keeps_every_live_point_reachable() {
        let mut e = engine(Distance::Euclid);
        let n = 3000u64;
        e.upsert(
            (0..n)
                .map(|i| p(i, [i as f32, 0.0], json!({"i": i})))
                .collect(),
        )
        .unwrap();
        // Delete two thirds: more dead than live and above the threshold, so it compacts itself.
        let doomed: Vec<PointId> = (0..n).filter(|i| i % 3 != 0).map(PointId::Num).collect();
        assert_eq!(e.delete(&doomed), doomed.len());
        assert_eq!(e.tombstones(), 0, "auto-compaction ran");
        assert_eq!(e.slot_ids.len(), e.len());
        for i in (0..n).step_by(3) {
            let r = &e.get(&[PointId::Num(i)], true, true)[0];
            assert_eq!(r.vector.as_deref(), Some(&[i as f32, 0.0][..]));
            assert_eq!(r.payload.as_ref().unwrap()["i"], json!(i));
        }
        let hit = e
            .search_batch(&[SearchRequest::new(vec![301.0, 0.0], 1)])
            .unwrap();
        assert_eq!(hit[0].result[0].id, PointId::Num(300));
    }

    #[test]
    fn replacing_a_point_keeps_its_slot_and_updates_everything() {
        let mut e = engine(Distance::Dot);
        e.upsert(vec![p(1, [1.0, 0.0], json!({"a": 1}))]).unwrap();
        let s = e.upsert(vec![p(1, [0.0, 2.0], json!({"b": 2}))]).unwrap();
        assert_eq!(
            s,
            UpsertSummary {
                inserted: 0,
                updated: 1
            }
        );
        assert_eq!(e.len(), 1);
        let r = &e.get(&[PointId::Num(1)], true, true)[0];
        assert_eq!(r.vector.as_deref(), Some(&[0.0, 2.0][..]));
        assert_eq!(
            r.payload.as_ref().unwrap(),
            json!({"b": 2}).as_object().unwrap()
        );
    }

    #[test]
    fn a_bad_point_rejects_the_whole_batch() {
        let mut e = engine(Distance::Cosine);
        let err = e
            .upsert(vec![
                p(1, [1.0, 0.0], json!({})),
                p(2, [0.0, 0.0], json!({})),
            ])
            .unwrap_err();
        assert_eq!(err, Error::ZeroVector);
        assert_eq!(e.len(), 0);
    }

    #[test]
    fn payload_accounting_follows_the_payloads() {
        let mut e = engine(Distance::Dot);
        let base = e.memory().payloads;
        e.upsert(vec![p(
            1,
            [1.0, 0.0],
            json!({"s": "x".repeat(100), "l": [1, 2]}),
        )])
        .unwrap();
        assert!(e.memory().payloads >= base + 100);
        e.check_known(&[PointId::Num(1)]).unwrap();
        assert!(e.check_known(&[PointId::Num(2)]).is_err());
        e.apply_set_payload(&[PointId::Num(1)], json!({"t": "y"}).as_object().unwrap());
        assert_eq!(
            e.get(&[PointId::Num(1)], true, false)[0]
                .payload
                .as_ref()
                .unwrap()
                .len(),
            3
        );
        e.delete(&[PointId::Num(1)]);
        e.compact();
        assert!(e.memory().payloads < base + 100);
    }
}
