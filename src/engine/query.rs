//! Queries of a sparse vector (Qdrant's Query API with `using` a sparse vector's name): its
//! inverted index (`sparse.rs`) finds the largest dot products among the points the filter
//! admits, after the configured modifier (IDF) has weighted the query.

use std::borrow::Cow;

use super::sparse::SparseIndex;
use super::Engine;
use crate::config::Modifier;
use crate::error::{Error, Result};
use crate::filter::{Condition, Filter};
use crate::point::SparseVector;
use crate::search::{QueryRequest, ScoredPoint};

impl Engine {
    /// `filter` with each `has_vector` of a sparse or named dense vector's name replaced by the
    /// ids of the live points that have one (for a sparse vector, a non-empty one): conditions
    /// are evaluated on a point's id and payload alone. Borrowed as it is when it names none (the usual
    /// case); otherwise the walk over the index's slots costs one pass per such condition.
    pub fn with_vectors_resolved<'f>(&self, filter: &'f Filter) -> Cow<'f, Filter> {
        if !self.names_vector(filter) {
            return Cow::Borrowed(filter);
        }
        let mut resolved = filter.clone();
        self.resolve(&mut resolved);
        Cow::Owned(resolved)
    }

    /// Whether `filter` has a `has_vector` of a sparse or named dense vector's name (nested
    /// filters apart: their array elements have no vectors).
    pub(super) fn names_vector(&self, filter: &Filter) -> bool {
        parts(filter).any(|c| match c {
            Condition::HasVector(name) => {
                self.sparse.get(name).is_some() || self.named.iter().any(|(n, _)| n == name)
            }
            Condition::Filter(inner) => self.names_vector(inner),
            _ => false,
        })
    }

    fn resolve(&self, filter: &mut Filter) {
        let Filter {
            must,
            should,
            must_not,
            min_should,
        } = filter;
        let min = min_should.iter_mut().flat_map(|m| m.conditions.iter_mut());
        for c in must.iter_mut().chain(should).chain(must_not).chain(min) {
            match c {
                Condition::HasVector(name) => {
                    if let Some(index) = self.sparse.get(name) {
                        let with = (0..index.slots() as u32)
                            .filter(|&slot| !index.get(slot).0.is_empty())
                            .filter_map(|slot| self.ids.id_at(slot as usize));
                        *c = Condition::has_id(with);
                    } else if let Some((_, space)) = self.named.iter().find(|(n, _)| n == name) {
                        let with = (0..self.ids.slots())
                            .filter(|&slot| space.has(slot))
                            .filter_map(|slot| self.ids.id_at(slot));
                        *c = Condition::has_id(with);
                    }
                }
                Condition::Filter(inner) => self.resolve(inner),
                _ => {}
            }
        }
    }

    /// The best points for a sparse `vector` of the vector named `using`, as `req` asks
    /// (filter, paging, threshold, payloads).
    pub fn query_sparse(
        &self,
        using: &str,
        vector: &SparseVector,
        req: &QueryRequest,
    ) -> Result<Vec<ScoredPoint>> {
        let index = self
            .sparse
            .get(using)
            .ok_or_else(|| self.unknown_sparse(using))?;
        let keep = req.limit.saturating_add(req.offset);
        self.check_limit(keep)?;
        if req.score_threshold.is_some_and(f32::is_nan) {
            return Err(Error::InvalidArgument("score_threshold is NaN".to_owned()));
        }
        let weights = self.weights(using, index, vector);
        let filter = req.filter.as_ref().map(|f| self.with_vectors_resolved(f));
        let admit = |slot: u32| match (filter.as_deref(), self.ids.id_at(slot as usize)) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(f), Some(id)) => f.matches(id, self.payloads.get(slot as usize)),
        };
        let (found, _) = index.search(vector.indices(), &weights, keep, &admit);
        Ok(found
            .into_iter()
            .skip(req.offset)
            .map(|c| (c.slot, -c.key))
            // Strictly better, as Qdrant's `score_threshold`.
            .take_while(|&(_, score)| req.score_threshold.is_none_or(|t| score > t))
            .map(|(slot, score)| {
                let record = self.record(slot as usize, req.with_payload, req.with_vector);
                ScoredPoint::of(record, score)
            })
            .collect())
    }

    /// The query's values, weighted as the vector's modifier says.
    fn weights(&self, using: &str, index: &SparseIndex, vector: &SparseVector) -> Vec<f32> {
        match self.config.sparse_vectors[using].modifier {
            Modifier::None => vector.values().to_vec(),
            Modifier::Idf => vector
                .indices()
                .iter()
                .zip(vector.values())
                .map(|(&i, &v)| v * idf(index.live(), index.document_frequency(i)))
                .collect(),
        }
    }
}

/// Qdrant's inverse document frequency of an index found in `n` of `total` vectors.
fn idf(total: usize, n: usize) -> f32 {
    let (total, n) = (total as f64, n as f64);
    ((total - n + 0.5) / (n + 0.5)).ln_1p() as f32
}

/// The top-level conditions of a filter, every clause's.
fn parts(filter: &Filter) -> impl Iterator<Item = &Condition> {
    let min = filter.min_should.iter().flat_map(|m| &m.conditions);
    filter
        .must
        .iter()
        .chain(&filter.should)
        .chain(&filter.must_not)
        .chain(min)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idf_is_qdrants() {
        // Qdrant Edge scored a query value of 1 at these weights (3 points, 1 or 2 with it).
        assert!((idf(3, 1) - 0.980_829_2).abs() < 1e-6);
        assert!((idf(3, 2) - 0.470_003_6).abs() < 1e-6);
    }
}
