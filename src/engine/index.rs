//! Indexing: the graph over the arena's vectors (`dense.rs` does the work), built as points
//! arrive or, during log replay, deferred to the next write or checkpoint; and warming up.

use super::Engine;
use crate::error::Result;
use crate::point::Payload;
use crate::search::SearchRequest;

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
        let mut sum = 0u64;
        for space in self.spaces().filter(|s| s.dimension > 0) {
            let rows_per_page = (PAGE / (space.vectors.stride() * 4)).max(1);
            // Vectors kept on disk are to stay there: the search walks the codes.
            let warmed = match space.vectors.reads_base() {
                true => 0,
                false => slots,
            };
            for slot in (0..warmed).step_by(rows_per_page) {
                sum = sum.wrapping_add(u64::from(space.vectors.get(slot)[0].to_bits()));
            }
            if let Some(graph) = &space.graph {
                for &word in graph.links0().iter().step_by(PAGE / 4) {
                    sum = sum.wrapping_add(u64::from(word));
                }
            }
        }
        for k in 0..8 {
            if let Some(sample) = self.sample_live(k * 7919) {
                let request = SearchRequest {
                    using: sample.using,
                    ..SearchRequest::new(sample.vector, 10)
                };
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
        self.unindexed() > 0 || !self.indexes.all_built()
    }

    /// Turns deferred indexing on (log replay) or off; see the `defer_indexing` field.
    pub fn set_deferred_indexing(&mut self, on: bool) {
        self.defer_indexing = on;
    }

    /// How many slots wait outside a graph (searched exactly meanwhile): a replayed log's.
    pub fn unindexed(&self) -> usize {
        let slots = self.ids.slots();
        self.spaces()
            .map(|s| s.unindexed(slots).len())
            .max()
            .unwrap_or(0)
    }

    /// Inserts every unindexed slot into the graph.
    pub fn index_pending(&mut self) -> Result<()> {
        self.index_pending_up_to(usize::MAX).map(drop)
    }

    /// Inserts up to `max` unindexed slots into each dense vector's graph (see
    /// [`DenseSpace::index_up_to`]); returns how many remain in the graph furthest behind.
    ///
    /// [`DenseSpace::index_up_to`]: super::dense::DenseSpace::index_up_to
    pub fn index_pending_up_to(&mut self, max: usize) -> Result<usize> {
        let (ids, parallel) = (&self.ids, &self.parallel);
        let mut remaining = 0;
        // The fields, not `spaces_mut`: the ids and the map are borrowed beside them.
        let named = self.named.iter_mut().map(|(_, s)| s);
        for space in std::iter::once(&mut self.dense).chain(named) {
            remaining = remaining.max(space.index_up_to(ids, parallel, max)?);
        }
        Ok(remaining)
    }
}
