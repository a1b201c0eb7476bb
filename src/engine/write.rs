//! Writes: validation, upserts, payload updates and deletes (which leave tombstones for
//! `compact.rs` to squeeze out).

use super::dense::DenseSpace;
use super::{payloads, Engine, MAX_SLOTS};
use crate::bm25::Bm25;
use crate::error::{Error, Result};
use crate::point::{Payload, Point, PointId};

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

/// The error for stored sparse vectors (in a segment or the log) whose name the configuration
/// does not declare: opening without them would lose them.
pub(super) fn undeclared_sparse(name: &str) -> Error {
    Error::InvalidConfig(format!(
        "the database holds sparse vectors named {name:?}, which the configuration does not \
         declare: declare it in EmbeddedConfig::sparse_vectors to open it"
    ))
}

/// The error for stored named vectors (in a segment or the log) whose name the configuration
/// does not declare: opening without them would lose them.
pub(super) fn undeclared_named(name: &str) -> Error {
    Error::InvalidConfig(format!(
        "the database holds dense vectors named {name:?}, which the configuration does not \
         declare: declare it in EmbeddedConfig::named_vectors to open it"
    ))
}

impl Engine {
    /// Checks a vector against the database's dimension and distance. A database of named
    /// vectors only takes none.
    pub(super) fn check_vector(&self, v: &[f32]) -> Result<()> {
        match (self.dense.dimension, v.len()) {
            (0, 0) => Ok(()),
            (0, _) => Err(Error::InvalidArgument(
                "the database has named vectors only: give the point's vectors by name, \
                 without \"\""
                    .to_owned(),
            )),
            _ => self.dense.check_vector(v),
        }
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
        let names = points.iter().flat_map(|p| p.sparse_vectors.keys());
        if let Some(name) = names.into_iter().find(|n| !self.sparse.contains(n)) {
            return Err(undeclared_sparse(name));
        }
        let mut named = points.iter().flat_map(|p| p.named_vectors.keys());
        if let Some(name) = named.find(|n| !self.named.iter().any(|(m, _)| m == *n)) {
            return Err(undeclared_named(name));
        }
        self.validate_upsert_within(points, MAX_SLOTS)
    }

    fn validate_upsert_within(&self, points: &[Point], max: usize) -> Result<()> {
        for p in points {
            self.check_vector(&p.vector)?;
            for (name, v) in &p.named_vectors {
                self.space_named(Some(name))?
                    .check_vector(v)
                    .map_err(|e| Error::InvalidArgument(format!("vector {name:?}: {e}")))?;
            }
            if let Some(name) = p.sparse_vectors.keys().find(|n| !self.sparse.contains(n)) {
                return Err(self.unknown_sparse(name));
            }
        }
        let mut new_ids: Vec<PointId> = points
            .iter()
            .map(|p| p.id)
            .filter(|&id| !self.ids.contains(id))
            .collect();
        new_ids.sort_unstable();
        new_ids.dedup();
        let live_after = self.len() + new_ids.len();
        // Replacements are allowed even over the limit (it may have been lowered since the
        // points were written). Replacing a point of a mapped segment takes a new slot, so
        // count every point against the slots.
        let over = !new_ids.is_empty() && live_after > max;
        if over || self.ids.slots().saturating_add(points.len()) > MAX_SLOTS {
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
        // The batch is in the log already: if vectors kept on disk cannot be read, its points
        // wait outside the graph (searched exactly) for the next try.
        if !self.defer_indexing {
            let _ = self.index_pending();
        }
        self.dense.vectors.reserve(points.len());
        self.ids.reserve(points.len());
        self.payloads.reserve(points.len());
        let mut summary = UpsertSummary::default();
        // By reference, and the batch dropped whole at the end: freeing each point's vector
        // as it is copied would let the id map's nodes, allocated meanwhile, fill the holes,
        // and they would pin the caller's memory in the heap long after the batch is gone.
        for point in &points {
            if self.write_point(point) {
                summary.updated += 1;
            } else {
                summary.inserted += 1;
            }
        }
        drop(points);
        if !self.defer_indexing {
            let _ = self.index_pending();
        }
        self.maybe_compact();
        summary
    }

    /// Stores one point of an upsert, in its slot or a new one; returns whether it replaced a
    /// point with the same id.
    fn write_point(&mut self, point: &Point) -> bool {
        let Point {
            id,
            vector,
            named_vectors,
            sparse_vectors,
            payload,
            documents: _, // turned into sparse vectors by `embed_documents`
        } = point;
        let id = *id;
        let existing = self.ids.slot_of(id).map(|s| s as usize);
        // With an index, a changed vector would leave its node's links stale: it moves to
        // a new slot instead, like a vector of the read-only mapped segment.
        // Posting lists are sorted by slot, so a point with sparse vectors moves too.
        let in_place = existing.filter(|&s| {
            self.spaces()
                .all(|d| d.vectors.is_writable(s) && d.graph.is_none())
                && self.sparse.is_empty()
        });
        match in_place {
            Some(slot) => {
                self.dense.set(slot, Some(vector));
                for (name, space) in &mut self.named {
                    space.set(slot, named_vectors.get(name).map(Vec::as_slice));
                }
                self.indexes.mark_stale();
                self.indexes.add(slot as u32, payload);
                self.payloads.set(slot, payload);
            }
            _ => {
                // New, or in the read-only mapped base: the old slot (if any) becomes a
                // tombstone and the point moves to a new slot.
                if let Some(old) = existing {
                    self.tombstone(old);
                }
                let slot = self.dense.push(Some(vector));
                for (name, space) in &mut self.named {
                    let pushed = space.push(named_vectors.get(name).map(Vec::as_slice));
                    debug_assert_eq!(pushed, slot, "every space has a row per slot");
                }
                let pushed = self.ids.push(id);
                debug_assert_eq!(pushed as usize, slot, "ids and vectors share slots");
                for (name, index) in self.sparse.iter_mut() {
                    let v = sparse_vectors.get(name);
                    let (indices, values) =
                        v.map_or((&[][..], &[][..]), |v| (v.indices(), v.values()));
                    index.push(pushed, indices, values);
                }
                self.indexes.add(slot as u32, payload);
                self.payloads.push(payload);
            }
        }
        existing.is_some()
    }

    /// Validates, then applies, a batch: all or nothing.
    #[cfg(test)]
    pub fn upsert(&mut self, points: Vec<Point>) -> Result<UpsertSummary> {
        self.validate_upsert(&points)?;
        Ok(self.apply_upsert(points))
    }

    /// Turns each point's documents into the sparse vectors they stand for (BM25), so that what
    /// is checked, logged and stored is the vector, never the text.
    pub fn embed_documents(&self, points: &mut [Point]) -> Result<()> {
        for p in points.iter_mut().filter(|p| !p.documents.is_empty()) {
            for (name, text) in std::mem::take(&mut p.documents) {
                let bm25 = self.bm25_of(&name)?;
                if p.sparse_vectors.contains_key(&name) {
                    return Err(Error::InvalidArgument(format!(
                        "point {} gives sparse vector {name:?} twice, as a vector and as text",
                        p.id
                    )));
                }
                p.sparse_vectors.insert(name, bm25.embed_document(&text));
            }
        }
        Ok(())
    }

    /// The BM25 model of the sparse vector `name`, which must be declared with one.
    pub fn bm25_of(&self, name: &str) -> Result<Bm25> {
        let config = self
            .config
            .sparse_vectors
            .get(name)
            .ok_or_else(|| self.unknown_sparse(name))?;
        let bm25 = config.bm25.ok_or_else(|| {
            Error::InvalidArgument(format!(
                "sparse vector {name:?} takes no text: declare it with bm25 \
                 (SparseVectorConfig::bm25), or give its vector"
            ))
        })?;
        Bm25::new(bm25)
    }

    /// The error for a sparse vector name the configuration does not declare.
    pub(super) fn unknown_sparse(&self, name: &str) -> Error {
        let known: Vec<&str> = self.sparse.names().collect();
        Error::InvalidArgument(format!(
            "no sparse vector named {name:?}: the database declares {}",
            match known.is_empty() {
                true => "none (EmbeddedConfig::sparse_vectors)".to_owned(),
                false => format!("{known:?}"),
            }
        ))
    }

    /// Fails with [`Error::UnknownId`] naming the first id that is not stored.
    pub fn check_known(&self, ids: &[PointId]) -> Result<()> {
        match ids.iter().find(|&&id| !self.ids.contains(id)) {
            Some(id) => Err(Error::UnknownId(id.to_string())),
            None => Ok(()),
        }
    }

    /// Merges `payload` into the payloads of the given points (keys in `payload` overwrite);
    /// ids not stored are skipped (callers check with [`Engine::check_known`] first).
    pub fn apply_set_payload(&mut self, ids: &[PointId], payload: &Payload) {
        for id in ids {
            if let Some(slot) = self.ids.slot_of(*id) {
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
        if self.ids.remove(slot).is_some() {
            self.payloads.set(slot, &Payload::new());
            for (_, index) in self.sparse.iter_mut() {
                index.remove(slot as u32);
            }
        }
    }

    /// Deletes the points with these ids; returns how many existed.
    pub fn delete(&mut self, ids: &[PointId]) -> usize {
        let before = self.len();
        for id in ids {
            if let Some(slot) = self.ids.slot_of(*id) {
                self.tombstone(slot as usize);
            }
        }
        self.maybe_compact();
        before - self.len()
    }

    /// Bytes an upsert of `points` would add to [`Engine::memory`]: each point takes a new slot
    /// (replacements too), its vector row, a node of the graph, id entries and its payload.
    pub fn bytes_for_upsert(&self, points: &[Point]) -> usize {
        let per_point = self
            .spaces()
            .map(DenseSpace::bytes_per_point)
            .sum::<usize>()
            + std::mem::size_of::<(PointId, u32)>()
            + std::mem::size_of::<usize>()
            + std::mem::size_of::<Option<PointId>>()
            + std::mem::size_of::<std::sync::OnceLock<Payload>>();
        points
            .iter()
            .map(|p| per_point + payloads::heap_bytes(&p.payload))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::tests::{engine, p};
    use crate::point::Distance;
    use serde_json::json;

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
        let r = &e.get(&[PointId::Num(1)]).unwrap()[0];
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
}
