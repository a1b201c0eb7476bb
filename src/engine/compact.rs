//! Compaction, which squeezes tombstones out of the slots, and memory accounting.

use super::dense::DenseSpace;
use super::Engine;
use crate::error::Result;
use crate::stats::MemoryStats;

/// Tombstones are compacted away automatically once there are more of them than live points and
/// at least this many (below it, the wasted scan time is negligible).
const AUTO_COMPACT_MIN_DEAD: usize = 1024;

impl Engine {
    /// Removes tombstones: live points move down to fill the gaps, keeping their relative order.
    /// Fails, changing nothing, if vectors kept on disk cannot be read.
    pub fn compact(&mut self) -> Result<()> {
        if self.ids.dead() == 0 {
            return Ok(());
        }
        let ids = &self.ids;
        let live = |slot: usize| ids.is_live(slot as u32);
        // Every space's rows first: a failed read leaves them all as they were.
        let rows = self
            .spaces()
            .map(|s| s.vectors.retained(live))
            .collect::<Result<Vec<_>>>()?;
        // Rebuild the graphs over the live points: when half the nodes are gone, patching
        // their neighbours' lists leaves too many holes (measured: recall@10 0.25 after two
        // rounds of rewrites), and a build is what the compaction is amortised against anyway.
        let named = self.named.iter_mut().map(|(_, s)| s);
        for (space, rows) in std::iter::once(&mut self.dense).chain(named).zip(rows) {
            space.compacted(rows, live);
        }
        let kept: Vec<u32> = (0..ids.slots() as u32)
            .filter(|&s| ids.is_live(s))
            .collect();
        for (_, index) in self.sparse.iter_mut() {
            *index = index.rebuilt(kept.iter().copied());
        }
        self.indexes.reset();
        self.payloads.retain(live);
        self.ids.compact();
        // Every vector is in memory now: no read can fail.
        if !self.defer_indexing {
            let _ = self.index_pending();
        }
        Ok(())
    }

    /// Compacts once tombstones outnumber live points (and pass the minimum): after deletes,
    /// and after upserts, which leave a tombstone per replaced point when there is an index.
    /// If vectors kept on disk cannot be read, the tombstones wait for the next try (or the
    /// checkpoint's compaction, which reports the error).
    pub(super) fn maybe_compact(&mut self) {
        let dead = self.ids.dead();
        if dead >= AUTO_COMPACT_MIN_DEAD && dead > self.len() {
            let _ = self.compact();
        }
    }

    /// Whether to compact before [`Engine::export`]: more than a tenth of the slots are dead,
    /// and the segment's graph only patches the lists that lose dead neighbours (fine for a few,
    /// not for many).
    pub fn export_wants_compaction(&self) -> bool {
        self.ids.dead() * 10 > self.ids.slots()
    }

    pub fn memory(&self) -> MemoryStats {
        MemoryStats {
            vectors: self.spaces().map(|s| s.vectors.allocated_bytes()).sum(),
            mapped: self.spaces().map(|s| s.vectors.mapped_bytes()).sum(),
            payloads: self.payloads.heap_bytes(),
            index: self.spaces().map(DenseSpace::index_bytes).sum::<usize>()
                + self.indexes.bytes()
                + self.sparse.iter().map(|(_, i)| i.bytes()).sum::<usize>(),
            ids: self.ids.heap_bytes(),
        }
    }

    /// How many payloads of the mapped segment did not parse when read, and the first one's
    /// row: the segment was altered or badly written although its checksums hold.
    pub fn unreadable_payloads(&self) -> Option<(usize, usize)> {
        self.payloads.unreadable()
    }
}

#[cfg(test)]
mod tests {
    use crate::engine::tests::{engine, p};
    use crate::point::{Distance, PointId};
    use crate::search::SearchRequest;
    use serde_json::json;

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
        assert_eq!(e.ids.slots(), e.len());
        for i in (0..n).step_by(3) {
            let r = &e.get(&[PointId::Num(i)]).unwrap()[0];
            assert_eq!(r.vector.as_deref(), Some(&[i as f32, 0.0][..]));
            assert_eq!(r.payload.as_ref().unwrap()["i"], json!(i));
        }
        let hit = e
            .search_batch(&[SearchRequest::new(vec![301.0, 0.0], 1)])
            .unwrap();
        assert_eq!(hit[0].result[0].id, PointId::Num(300));
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
            e.get(&[PointId::Num(1)]).unwrap()[0]
                .payload
                .as_ref()
                .unwrap()
                .len(),
            3
        );
        e.delete(&[PointId::Num(1)]);
        e.compact().unwrap();
        assert!(e.memory().payloads < base + 100);
    }
}
