//! The engine: ids, vectors, payloads and exact search, single-threaded and free of I/O.
//!
//! Everything else in the crate wraps this: the native facade puts it behind a lock, the storage
//! layer (to come) feeds it from segments and a write-ahead log, the JS facade calls it from wasm.
//! Because it does no I/O and has no platform code, the same engine runs everywhere and is tested
//! once.
//!
//! Points live in *slots*: slot `s` has its vector in the arena at row `s`, its id in
//! `slot_ids[s]` and its payload in `payloads[s]`. Deleting a point turns its slot into a
//! tombstone (`slot_ids[s] == None`); [`Engine::compact`] squeezes tombstones out, which happens
//! on its own once they outnumber live points.

mod arena;
mod topk;

use std::collections::BTreeMap;

use serde_json::Value;

use crate::distance::{self, closeness_key, score_from_raw, Kernel};
use crate::error::{Error, Result};
use crate::filter::Filter;
use crate::point::{Distance, Payload, Point, PointId};
use crate::search::{
    Record, ScoredPoint, ScrollRequest, ScrollResponse, SearchRequest, SearchResponse,
};
use crate::stats::MemoryStats;
use arena::VectorArena;
use topk::{Candidate, TopK};

/// Tombstones are compacted away automatically once there are more of them than live points and
/// at least this many (below it, the wasted scan time is negligible).
const AUTO_COMPACT_MIN_DEAD: usize = 1024;

/// Largest number of slots: slots are `u32` in the top-k heap (and, later, in the graph).
const MAX_SLOTS: usize = u32::MAX as usize;

/// What an engine holds and how it may grow.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EngineConfig {
    pub dimension: usize,
    pub distance: Distance,
    pub max_points: Option<usize>,
    pub max_search_limit: usize,
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
    vectors: VectorArena,
    slot_ids: Vec<Option<PointId>>,
    payloads: Vec<Payload>,
    ids: BTreeMap<PointId, u32>,
    dead: usize,
    payload_bytes: usize,
}

impl Engine {
    pub fn new(config: EngineConfig) -> Self {
        Engine {
            kernel: distance::best().for_distance(config.distance),
            vectors: VectorArena::new(config.dimension),
            slot_ids: Vec::new(),
            payloads: Vec::new(),
            ids: BTreeMap::new(),
            dead: 0,
            payload_bytes: 0,
            config,
        }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Number of live points.
    pub fn len(&self) -> usize {
        self.ids.len()
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

    /// Inserts new points and replaces existing ones. The whole batch is validated first, so
    /// either every point is stored or none is.
    pub fn upsert(&mut self, points: Vec<Point>) -> Result<UpsertSummary> {
        for p in &points {
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
        let max = self.config.max_points.unwrap_or(MAX_SLOTS).min(MAX_SLOTS);
        if live_after > max || self.slot_ids.len() + new_ids.len() > MAX_SLOTS {
            return Err(Error::LimitExceeded {
                limit: "max_points",
                max,
                requested: live_after,
            });
        }
        self.vectors.reserve(new_ids.len());
        let mut summary = UpsertSummary::default();
        for Point {
            id,
            vector,
            payload,
        } in points
        {
            self.payload_bytes += payload_heap_bytes(&payload);
            let slot = match self.ids.get(&id) {
                Some(&slot) => {
                    let slot = slot as usize;
                    self.vectors.get_mut(slot).copy_from_slice(&vector);
                    let old = std::mem::replace(&mut self.payloads[slot], payload);
                    self.payload_bytes -= payload_heap_bytes(&old);
                    summary.updated += 1;
                    slot
                }
                None => {
                    let slot = self.vectors.push(&vector);
                    self.slot_ids.push(Some(id));
                    self.payloads.push(payload);
                    self.ids.insert(id, slot as u32);
                    summary.inserted += 1;
                    slot
                }
            };
            if self.config.distance == Distance::Cosine {
                let normalised = distance::normalize(self.vectors.get_mut(slot));
                debug_assert!(normalised, "check_vector refuses unnormalisable vectors");
            }
        }
        Ok(summary)
    }

    fn record(&self, slot: usize, with_payload: bool, with_vector: bool) -> Record {
        Record {
            id: self.slot_ids[slot].expect("records are made for live slots only"),
            payload: with_payload.then(|| self.payloads[slot].clone()),
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

    /// Merges `payload` into the payloads of the given points (keys in `payload` overwrite).
    /// Every id must exist; otherwise nothing changes.
    pub fn set_payload(&mut self, ids: &[PointId], payload: &Payload) -> Result<()> {
        let slots = ids
            .iter()
            .map(|id| {
                self.ids
                    .get(id)
                    .map(|&s| s as usize)
                    .ok_or_else(|| Error::UnknownId(id.to_string()))
            })
            .collect::<Result<Vec<_>>>()?;
        for slot in slots {
            let target = &mut self.payloads[slot];
            self.payload_bytes -= payload_heap_bytes(target);
            for (k, v) in payload {
                target.insert(k.clone(), v.clone());
            }
            self.payload_bytes += payload_heap_bytes(target);
        }
        Ok(())
    }

    fn tombstone(&mut self, slot: usize) {
        if let Some(id) = self.slot_ids[slot].take() {
            self.ids.remove(&id);
            let old = std::mem::take(&mut self.payloads[slot]);
            self.payload_bytes -= payload_heap_bytes(&old);
            self.dead += 1;
        }
    }

    fn after_delete(&mut self) {
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
        self.after_delete();
        before - self.len()
    }

    /// Deletes every point matching `filter`; returns how many.
    pub fn delete_by_filter(&mut self, filter: &Filter) -> usize {
        let slots: Vec<usize> = self.matching_slots(Some(filter)).collect();
        for &slot in &slots {
            self.tombstone(slot);
        }
        self.after_delete();
        slots.len()
    }

    fn matching_slots<'a>(
        &'a self,
        filter: Option<&'a Filter>,
    ) -> impl Iterator<Item = usize> + 'a {
        self.slot_ids
            .iter()
            .enumerate()
            .filter_map(move |(slot, id)| {
                let id = (*id)?;
                filter
                    .is_none_or(|f| f.matches(id, &self.payloads[slot]))
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
                        .is_none_or(|f| f.matches(id, &self.payloads[slot as usize]))
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

    /// Exact search for several queries in one pass over the arena: each stored vector is read
    /// from memory once and compared with every query while it is in cache, so a batch costs
    /// little more than a single query.
    pub fn search_batch(&self, reqs: &[SearchRequest]) -> Result<Vec<SearchResponse>> {
        let queries = reqs
            .iter()
            .map(|r| self.prepare(r))
            .collect::<Result<Vec<_>>>()?;
        let mut tops: Vec<TopK> = queries.iter().map(|q| TopK::new(q.keep)).collect();
        let mut scored = vec![0usize; queries.len()];
        let distance = self.config.distance;
        for (slot, id) in self.slot_ids.iter().enumerate() {
            let Some(id) = *id else { continue };
            let v = self.vectors.get(slot);
            for ((q, top), scored) in queries.iter().zip(&mut tops).zip(&mut scored) {
                if q.filter
                    .is_some_and(|f| !f.matches(id, &self.payloads[slot]))
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
        Ok(reqs
            .iter()
            .zip(tops)
            .zip(scored)
            .map(|((req, top), scored)| SearchResponse {
                result: top
                    .into_sorted()
                    .into_iter()
                    .skip(req.offset)
                    .map(|c| self.scored_point(c, req))
                    .collect(),
                exact: true,
                scored,
            })
            .collect())
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
        let mut next = 0usize;
        for slot in 0..self.slot_ids.len() {
            let Some(id) = self.slot_ids[slot] else {
                continue;
            };
            if slot != next {
                self.vectors.move_row(slot, next);
                self.slot_ids[next] = Some(id);
                self.payloads.swap(slot, next);
                self.ids.insert(id, next as u32);
            }
            next += 1;
        }
        self.vectors.truncate(next);
        self.vectors.shrink_to_fit();
        self.slot_ids.truncate(next);
        self.slot_ids.shrink_to_fit();
        self.payloads.truncate(next);
        self.payloads.shrink_to_fit();
        self.dead = 0;
    }

    pub fn memory(&self) -> MemoryStats {
        // A BTreeMap entry costs its key and value plus roughly one pointer of node overhead.
        let id_entry = std::mem::size_of::<(PointId, u32)>() + std::mem::size_of::<usize>();
        MemoryStats {
            vectors: self.vectors.allocated_bytes(),
            payloads: self.payload_bytes
                + self.payloads.capacity() * std::mem::size_of::<Payload>(),
            ids: self.ids.len() * id_entry
                + self.slot_ids.capacity() * std::mem::size_of::<Option<PointId>>(),
        }
    }
}

/// An estimate of the heap bytes a payload holds (strings, arrays, map entries); exact accounting
/// would need a custom allocator, and this is within a small factor of it.
fn payload_heap_bytes(p: &Payload) -> usize {
    fn value(v: &Value) -> usize {
        match v {
            Value::String(s) => s.capacity(),
            Value::Array(items) => {
                items.capacity() * std::mem::size_of::<Value>()
                    + items.iter().map(value).sum::<usize>()
            }
            Value::Object(map) => object(map),
            _ => 0,
        }
    }
    fn object(map: &Payload) -> usize {
        map.iter()
            .map(|(k, v)| k.capacity() + std::mem::size_of::<(String, Value)>() + value(v))
            .sum()
    }
    object(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn engine(distance: Distance) -> Engine {
        Engine::new(EngineConfig {
            dimension: 2,
            distance,
            max_points: None,
            max_search_limit: 100,
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
    fn payload_accounting_returns_to_zero() {
        let mut e = engine(Distance::Dot);
        e.upsert(vec![p(
            1,
            [1.0, 0.0],
            json!({"s": "x".repeat(100), "l": [1, 2]}),
        )])
        .unwrap();
        assert!(e.payload_bytes >= 100);
        e.set_payload(&[PointId::Num(1)], json!({"t": "y"}).as_object().unwrap())
            .unwrap();
        e.delete(&[PointId::Num(1)]);
        assert_eq!(e.payload_bytes, 0);
    }
}
