//! Reads that are not searches: points by id, counts, scrolling in id order, and the points a
//! filter matches.

use super::Engine;
use crate::error::Result;
use crate::filter::Filter;
use crate::point::PointId;
use crate::search::{Record, ScrollRequest, ScrollResponse};

impl Engine {
    /// The point in a live slot, with its payload and vector when asked for.
    pub(super) fn record(&self, slot: usize, with_payload: bool, with_vector: bool) -> Record {
        Record {
            id: self.slot_ids[slot].expect("records are made for live slots only"),
            payload: with_payload.then(|| self.payloads.get(slot).clone()),
            vector: with_vector.then(|| self.vectors.get(slot).to_vec()),
        }
    }

    /// The points with these ids, payload and vector included, in the order asked; ids not
    /// stored are skipped (as Qdrant).
    pub fn get(&self, ids: &[PointId]) -> Vec<Record> {
        ids.iter()
            .filter_map(|id| self.ids.get(id))
            .map(|&slot| self.record(slot as usize, true, true))
            .collect()
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

    /// Live slots matching `filter`, from the index's candidates when it has them (evaluating
    /// the filter on each only when they are not exactly its matches, so an indexed count
    /// parses no payload).
    fn matching_slots<'a>(
        &'a self,
        filter: Option<&'a Filter>,
    ) -> Box<dyn Iterator<Item = usize> + 'a> {
        if let Some(candidates) = filter.and_then(|f| self.filter_candidates(f)) {
            let (slots, exact) = candidates.slots(self.slot_ids.len());
            let slots = (0..slots.len()).map(move |i| slots[i] as usize);
            return Box::new(slots.filter(move |&slot| {
                self.slot_ids[slot].is_some_and(|id| {
                    exact || filter.is_none_or(|f| f.matches(id, self.payloads.get(slot)))
                })
            }));
        }
        Box::new(self.all_matching_slots(filter))
    }

    pub(super) fn all_matching_slots<'a>(
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
}
