//! Reads that are not searches: points by id, counts, scrolling in id order, and the points a
//! filter matches.

use super::Engine;
use crate::error::Result;
use crate::filter::Filter;
use crate::point::{PointId, SparseVector};
use crate::search::{Record, ScrollRequest, ScrollResponse};
use std::collections::BTreeMap;

impl Engine {
    /// The point in a live slot, with its payload and vector when asked for.
    pub(super) fn record(&self, slot: usize, with_payload: bool, with_vector: bool) -> Record {
        Record {
            id: self
                .ids
                .id_at(slot)
                .expect("records are made for live slots only"),
            payload: with_payload.then(|| self.payloads.get(slot).clone()),
            vector: (with_vector && self.dense.dimension > 0)
                .then(|| self.dense.vectors.get(slot).to_vec()),
            // The named dense vectors the point has; none when it has none.
            named_vectors: with_vector
                .then(|| {
                    // By inserts: collecting would bring a sort into the wasm module.
                    let mut vectors = BTreeMap::new();
                    for (name, s) in self.named.iter().filter(|(_, s)| s.has(slot)) {
                        vectors.insert(name.clone(), s.vectors.get(slot).to_vec());
                    }
                    vectors
                })
                // `{}` for a point without vectors in a database of named ones only.
                .filter(|vectors| !vectors.is_empty() || self.dense.dimension == 0),
            // The sparse vectors the point has; none (as Qdrant writes such a point: its dense
            // vector alone) when it has none.
            sparse_vectors: with_vector
                .then(|| {
                    let mut vectors = BTreeMap::new();
                    for (name, index) in self.sparse.iter() {
                        let (indices, values) = index.get(slot as u32);
                        if !indices.is_empty() {
                            let v = SparseVector::from_sorted(indices.to_vec(), values.to_vec());
                            vectors.insert(name.to_owned(), v);
                        }
                    }
                    vectors
                })
                .filter(|vectors| !vectors.is_empty()),
        }
    }

    /// The points with these ids, payload and vector included, in the order asked; ids not
    /// stored are skipped (as Qdrant). Fails if vectors kept on disk cannot be read.
    pub fn get(&self, ids: &[PointId]) -> Result<Vec<Record>> {
        let failures = self.read_failures();
        let records = ids
            .iter()
            .filter_map(|&id| self.ids.slot_of(id))
            .map(|slot| self.record(slot as usize, true, true))
            .collect();
        self.failed_since(failures)?;
        Ok(records)
    }

    /// The ids of the points matching `filter`, in id order (delete-by-filter resolves to
    /// these, so the log records ids rather than a filter).
    pub fn matching_ids(&self, filter: &Filter) -> Vec<PointId> {
        let filter = &*self.with_vectors_resolved(filter);
        let mut ids: Vec<PointId> = self
            .matching_slots(Some(filter))
            .filter_map(|slot| self.ids.id_at(slot))
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
            let (slots, exact) = candidates.slots(self.ids.slots());
            let slots = (0..slots.len()).map(move |i| slots[i] as usize);
            return Box::new(slots.filter(move |&slot| {
                self.ids.id_at(slot).is_some_and(|id| {
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
        self.ids.iter().filter_map(move |(slot, id)| {
            filter
                .is_none_or(|f| f.matches(id, self.payloads.get(slot)))
                .then_some(slot)
        })
    }

    /// Number of points matching `filter` (all points when `None`).
    pub fn count(&self, filter: Option<&Filter>) -> usize {
        match filter {
            None => self.len(),
            Some(f) => self
                .matching_slots(Some(&self.with_vectors_resolved(f)))
                .count(),
        }
    }

    /// One page of points in id order.
    pub fn scroll(&self, req: &ScrollRequest) -> Result<ScrollResponse> {
        self.check_limit(req.limit)?;
        let filter = req.filter.as_ref().map(|f| self.with_vectors_resolved(f));
        let mut matching = self.ids.by_id(req.offset).filter(|&(id, slot)| {
            filter
                .as_deref()
                .is_none_or(|f| f.matches(id, self.payloads.get(slot as usize)))
        });
        let failures = self.read_failures();
        let points = matching
            .by_ref()
            .take(req.limit)
            .map(|(_, slot)| self.record(slot as usize, req.with_payload, req.with_vector))
            .collect();
        self.failed_since(failures)?;
        Ok(ScrollResponse {
            points,
            next_page_offset: matching.next().map(|(id, _)| id),
        })
    }

    /// The `k`-th live point (counting from the `k % slots`-th slot onwards) that has the
    /// searched vector, with that vector: the health check and warm-up search for it. The
    /// vector is the unnamed one, or in a database without one the first named vector.
    pub fn sample_live(&self, k: usize) -> Option<Sample> {
        let slots = self.ids.slots();
        if self.ids.len() == 0 || slots == 0 {
            return None;
        }
        let (using, space) = match self.dense.dimension {
            0 => self.named.first().map(|(n, s)| (Some(n.clone()), s))?,
            _ => (None, &self.dense),
        };
        let failures = self.read_failures();
        let found = (0..slots)
            .map(|i| (k + i) % slots)
            .find_map(|s| Some((self.ids.id_at(s).filter(|_| space.has(s))?, s)));
        let (id, slot) = found?;
        let sample = Sample {
            id,
            vector: space.vectors.get(slot).to_vec(),
            using,
            distance: space.distance,
        };
        self.failed_since(failures).ok().map(|_| sample)
    }
}

/// A point to search for by its own vector (see [`Engine::sample_live`]).
pub(crate) struct Sample {
    pub id: PointId,
    pub vector: Vec<f32>,
    /// The vector's name (`None`: the unnamed one).
    pub using: Option<String>,
    /// How that vector is compared.
    pub distance: crate::point::Distance,
}
