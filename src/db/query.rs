//! Qdrant's Query API over the engine: nearest points to a dense or a sparse vector, and
//! prefetches (nested sub-queries) whose results are fused (RRF, DBSF) or re-scored. One read
//! lock covers the whole query, so every stage sees the same points.

use std::collections::{BTreeMap, HashMap};

use super::EmbeddedVectorDB;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::filter::{Condition, Filter, MinShould};
use crate::lifecycle::OpKind;
use crate::point::{check_model, PointId};
use crate::search::{
    Fusion, Prefetch, Query, QueryRequest, QueryResponse, QueryVector, ScoredPoint, SearchParams,
    SearchRequest,
};

/// Qdrant's default `k` of reciprocal rank fusion.
const RRF_K: f32 = 2.0;

/// One level of a query: its vector or fusion, its prefetches, and what bounds its answer.
struct Stage<'a> {
    prefetch: &'a [Prefetch],
    query: Option<&'a Query>,
    using: &'a str,
    /// This level's filter and every filter above it.
    filter: Option<Filter>,
    limit: usize,
    score_threshold: Option<f32>,
    params: SearchParams,
}

impl EmbeddedVectorDB {
    /// Qdrant's Query API: the nearest points to a dense vector (as [`EmbeddedVectorDB::search`]),
    /// or the points whose sparse vector `using` has the largest dot products with a sparse
    /// query, found exactly by its inverted index (as in Qdrant, a point scoring 0, without
    /// that sparse vector, sharing no index with the query or whose products cancel out, is
    /// not returned); or, with `prefetch`, the best of its sub-queries' results fused by
    /// [`Fusion`](crate::Fusion) or re-scored exactly by the query's vector. The request's
    /// filter applies at every level, merged into each prefetch's as Qdrant merges them: their
    /// clauses' conditions joined (two `should` lists become one).
    ///
    /// ```
    /// use grape_vector_db::{
    ///     Bm25, Bm25Config, EmbeddedConfig, EmbeddedVectorDB, Modifier, Point, PointId,
    ///     QueryRequest, SparseVectorConfig,
    /// };
    /// let idf = SparseVectorConfig { modifier: Modifier::Idf, bm25: None };
    /// let db = EmbeddedVectorDB::open(EmbeddedConfig::builder(2).sparse_vector("text", idf).build()?)?;
    /// let bm25 = Bm25::new(Bm25Config::default())?;
    /// let texts = ["a red apple", "a green pear", "red wine and red grapes"];
    /// db.upsert(texts.iter().enumerate().map(|(i, t)| {
    ///     Point::new(i as u64, vec![1.0, i as f32]).with_sparse("text", bm25.embed_document(t))
    /// }).collect())?;
    /// let found = db.query(&QueryRequest::sparse("text", bm25.embed_query("red grapes"), 2))?;
    /// let ids: Vec<PointId> = found.points.iter().map(|p| p.id).collect();
    /// assert_eq!(ids, vec![PointId::Num(2), PointId::Num(0)]);
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn query(&self, request: &QueryRequest) -> Result<QueryResponse> {
        self.call(OpKind::Search, || {
            let engine = self.inner.engine.read();
            let points = answer(&engine, request);
            drop(engine);
            self.release_reads();
            let mut points = points?;
            if let Some(selector) = &request.payload_selector {
                for payload in points.iter_mut().filter_map(|p| p.payload.as_mut()) {
                    *payload = selector.apply(payload);
                }
            }
            if let Some(names) = &request.vector_selector {
                for p in &mut points {
                    if !names.iter().any(|n| n.is_empty()) {
                        p.vector = None;
                    }
                    let named = selected(p.named_vectors.take(), names);
                    let sparse = selected(p.sparse_vectors.take(), names);
                    // `{}` when none of the named ones is there.
                    let none = p.vector.is_none() && named.is_empty();
                    p.named_vectors = (!named.is_empty()).then_some(named);
                    p.sparse_vectors = (none || !sparse.is_empty()).then_some(sparse);
                }
            }
            Ok(QueryResponse { points })
        })
    }
}

/// The vectors of `map` that `names` selects.
fn selected<V>(map: Option<BTreeMap<String, V>>, names: &[String]) -> BTreeMap<String, V> {
    // Kept by inserts, not `retain` or `collect`: the map's insert is in the wasm module
    // already, the others would each bring kilobytes.
    let mut kept = BTreeMap::new();
    for (name, v) in map.into_iter().flatten() {
        if names.contains(&name) {
            kept.insert(name, v);
        }
    }
    kept
}

/// The page `request` asks for.
fn answer(engine: &Engine, request: &QueryRequest) -> Result<Vec<ScoredPoint>> {
    let config = engine.config();
    let unknown = request.vector_selector.iter().flatten().find(|name| {
        !name.is_empty()
            && !config.sparse_vectors.contains_key(name.as_str())
            && !config.named_vectors.contains_key(name.as_str())
    });
    if let Some(name) = unknown {
        return Err(Error::InvalidArgument(format!(
            "with_vector names {name:?}, which is not a vector of this database (\"\" is the \
             unnamed one; named and sparse ones are declared)"
        )));
    }
    let keep = request
        .limit
        .checked_add(request.offset)
        .ok_or_else(|| Error::InvalidArgument("limit + offset is too large".to_owned()))?;
    let stage = Stage {
        prefetch: &request.prefetch,
        query: request.query.as_ref(),
        using: request.using.as_deref().unwrap_or(""),
        filter: request.filter.clone(),
        limit: keep,
        score_threshold: request.score_threshold,
        params: request.params,
    };
    if request.prefetch.is_empty() {
        // One search: paged, with payloads and vectors, by the engine itself.
        let vector = nearest_vector(&stage)?;
        return nearest(engine, &stage, vector, request);
    }
    let hits = run(engine, &stage)?;
    let page: Vec<(PointId, f32)> = hits.into_iter().skip(request.offset).collect();
    if !(request.with_payload || request.with_vector) {
        return Ok(page
            .into_iter()
            .map(|(id, score)| ScoredPoint {
                id,
                score,
                payload: None,
                vector: None,
                named_vectors: None,
                sparse_vectors: None,
            })
            .collect());
    }
    let ids: Vec<PointId> = page.iter().map(|&(id, _)| id).collect();
    let records = engine.get(&ids)?;
    Ok(records
        .into_iter()
        .zip(page)
        .map(|(r, (_, score))| ScoredPoint {
            id: r.id,
            score,
            payload: r.payload.filter(|_| request.with_payload),
            vector: r.vector.filter(|_| request.with_vector),
            named_vectors: r.named_vectors.filter(|_| request.with_vector),
            sparse_vectors: r.sparse_vectors.filter(|_| request.with_vector),
        })
        .collect())
}

/// A stage's best points, best first, at most `limit`.
fn run(engine: &Engine, stage: &Stage) -> Result<Vec<(PointId, f32)>> {
    if stage.prefetch.is_empty() {
        let vector = nearest_vector(stage)?;
        let page = QueryRequest {
            limit: stage.limit,
            ..QueryRequest::sparse("", crate::point::SparseVector::default(), 0)
        };
        return Ok(nearest(engine, stage, vector, &page)?
            .into_iter()
            .map(|p| (p.id, p.score))
            .collect());
    }
    let lists = stage
        .prefetch
        .iter()
        .map(|p| {
            run(
                engine,
                &Stage {
                    prefetch: &p.prefetch,
                    query: p.query.as_ref(),
                    using: p.using.as_deref().unwrap_or(""),
                    filter: both(stage.filter.as_ref(), p.filter.as_ref()),
                    limit: p.limit,
                    score_threshold: p.score_threshold,
                    params: p.params,
                },
            )
        })
        .collect::<Result<Vec<_>>>()?;
    let mut fused = match stage.query {
        Some(Query::Fusion { fusion }) => fuse(*fusion, &lists),
        Some(Query::Rrf { rrf }) => {
            let weights = rrf.weights.as_deref();
            if weights.is_some_and(|w| w.len() != lists.len()) {
                return Err(Error::InvalidArgument(format!(
                    "rrf has {} weights for {} prefetches: give one weight per prefetch",
                    weights.map_or(0, <[f32]>::len),
                    lists.len()
                )));
            }
            let k = rrf.k.map_or(RRF_K, |k| k as f32);
            combine(&lists, &|list, rank, _| match weights {
                None => 1.0 / (rank as f32 + k),
                Some(w) => 1.0 / ((rank as f32 + 1.0) / w[list] + k - 1.0),
            })
        }
        Some(_) => {
            // Re-scored by the stage's vector: the union of the candidates, searched exactly.
            let mut ids: Vec<PointId> = lists.iter().flatten().map(|&(id, _)| id).collect();
            ids.sort_unstable();
            ids.dedup();
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            // The candidates alone: each already passed this stage's filter, merged into its
            // prefetch's (as Qdrant re-scores: by ids, the filter not applied again, which
            // matters where merged `should` lists let in what this stage's alone would not).
            let rescore = Stage {
                prefetch: &[],
                filter: Some(Filter::must([Condition::has_id(ids)])),
                params: SearchParams {
                    exact: true,
                    ..stage.params
                },
                ..*stage
            };
            return run(engine, &rescore);
        }
        None => {
            return Err(Error::InvalidArgument(
                "a query with prefetch needs query: {\"fusion\": \"rrf\"} or \"dbsf\" to fuse \
                 their results, or a vector to re-score them by"
                    .to_owned(),
            ))
        }
    };
    if let Some(t) = stage.score_threshold {
        fused.retain(|&(_, score)| score > t);
    }
    fused.truncate(stage.limit);
    Ok(fused)
}

/// The vector of a stage without prefetches, which must have one.
fn nearest_vector<'a>(stage: &Stage<'a>) -> Result<&'a QueryVector> {
    match stage.query {
        Some(q) => q.vector().ok_or_else(|| {
            Error::InvalidArgument(
                "a fusion combines the results of prefetch: give prefetch, or a vector as query"
                    .to_owned(),
            )
        }),
        None => Err(Error::InvalidArgument(
            "query is missing: give a vector (dense or sparse), or prefetch and a fusion"
                .to_owned(),
        )),
    }
}

/// The nearest points to `vector` under the stage's filter, paged and dressed as `page` asks.
fn nearest(
    engine: &Engine,
    stage: &Stage,
    vector: &QueryVector,
    page: &QueryRequest,
) -> Result<Vec<ScoredPoint>> {
    match (vector, stage.using) {
        (QueryVector::Dense(v), name) if !engine.is_sparse(name) => {
            let request = SearchRequest {
                vector: v.clone(),
                using: Some(name.to_owned()),
                limit: page.limit.min(stage.limit),
                offset: page.offset,
                filter: stage.filter.clone(),
                score_threshold: stage.score_threshold,
                with_payload: page.with_payload,
                with_vector: page.with_vector,
                params: stage.params,
            };
            let mut answers = engine.search_batch(std::slice::from_ref(&request))?;
            Ok(answers.pop().expect("one answer per request").result)
        }
        (QueryVector::Sparse(_) | QueryVector::Document(_), name) if !name.is_empty() => {
            let request = QueryRequest {
                filter: stage.filter.clone(),
                score_threshold: stage.score_threshold,
                limit: page.limit.min(stage.limit),
                ..page.clone()
            };
            let made;
            let sparse = match vector {
                QueryVector::Document(d) => {
                    d.model.as_deref().map_or(Ok(()), check_model)?;
                    made = engine.bm25_of(name)?.embed_query(&d.text);
                    &made
                }
                QueryVector::Sparse(v) => v,
                QueryVector::Dense(_) => unreachable!("matched above"),
            };
            engine.query_sparse(name, sparse, &request)
        }
        (QueryVector::Document(_), _) => Err(Error::InvalidArgument(
            "query is text: name the sparse vector declared with bm25 in using (the dense \
             vector has no embedding model here)"
                .to_owned(),
        )),
        (QueryVector::Dense(_), name) => Err(Error::InvalidArgument(format!(
            "query is a dense vector but using names the sparse vector {name:?}: name a dense \
             vector, or leave using out for the unnamed one"
        ))),
        (QueryVector::Sparse(_), _) => Err(Error::InvalidArgument(
            "query is a sparse vector: name the sparse vector to search in using".to_owned(),
        )),
    }
}

/// A filter and the one above it, merged as Qdrant merges them (`Filter::merge_owned` in its
/// `lib/segment`): each clause's conditions joined into one list, so that two `should` lists
/// become one (a condition of either will do), and `min_should`'s conditions joined with the
/// larger of the two counts. Either may be absent.
fn both(a: Option<&Filter>, b: Option<&Filter>) -> Option<Filter> {
    match (a, b) {
        (None, None) => None,
        (Some(f), None) | (None, Some(f)) => Some(f.clone()),
        (Some(a), Some(b)) => {
            let mut merged = a.clone();
            merged.must.extend(b.must.iter().cloned());
            merged.should.extend(b.should.iter().cloned());
            merged.must_not.extend(b.must_not.iter().cloned());
            merged.min_should = match (&a.min_should, &b.min_should) {
                (Some(x), Some(y)) => Some(MinShould {
                    conditions: x.conditions.iter().chain(&y.conditions).cloned().collect(),
                    min_count: x.min_count.max(y.min_count),
                }),
                (x, y) => x.clone().or_else(|| y.clone()),
            };
            Some(merged)
        }
    }
}

/// Fuses ranked lists (best first) into one, best first; ties keep the order in which the
/// points were first seen.
fn fuse(fusion: Fusion, lists: &[Vec<(PointId, f32)>]) -> Vec<(PointId, f32)> {
    match fusion {
        Fusion::Rrf => combine(lists, &|_, rank, _| 1.0 / (rank as f32 + RRF_K)),
        Fusion::Dbsf => {
            let spreads: Vec<_> = lists.iter().map(|l| spread(l)).collect();
            combine(lists, &|list, _, score| match spreads[list] {
                None => 0.5,
                Some((low, width)) => (score - low) / width,
            })
        }
    }
}

/// Sums each point's `part(list, rank, score)` over the lists it is in, best first; ties keep
/// the order in which the points were first seen. (`dyn`: one copy of the map and the sort in
/// the wasm module for every fusion.)
fn combine(
    lists: &[Vec<(PointId, f32)>],
    part: &dyn Fn(usize, usize, f32) -> f32,
) -> Vec<(PointId, f32)> {
    let mut order: Vec<PointId> = Vec::new();
    let mut scores: HashMap<PointId, f32> = HashMap::new();
    for (list, hits) in lists.iter().enumerate() {
        for (rank, &(id, score)) in hits.iter().enumerate() {
            let total = scores.entry(id).or_insert_with(|| {
                order.push(id);
                0.0
            });
            *total += part(list, rank, score);
        }
    }
    let mut fused: Vec<(PointId, f32)> = order.into_iter().map(|id| (id, scores[&id])).collect();
    fused.sort_by(|a, b| b.1.total_cmp(&a.1));
    fused
}

/// DBSF's range of a list's scores: from `μ - 3σ`, `6σ` wide (σ the sample standard
/// deviation); `None` when the scores do not spread (one score, or all equal).
fn spread(list: &[(PointId, f32)]) -> Option<(f32, f32)> {
    if list.len() < 2 {
        return None;
    }
    let n = list.len() as f64;
    let mean = list.iter().map(|&(_, s)| f64::from(s)).sum::<f64>() / n;
    let var = list
        .iter()
        .map(|&(_, s)| (f64::from(s) - mean).powi(2))
        .sum::<f64>()
        / (n - 1.0);
    let sd = var.sqrt();
    (sd > 0.0).then_some(((mean - 3.0 * sd) as f32, (6.0 * sd) as f32))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(scores: &[(u64, f32)]) -> Vec<(PointId, f32)> {
        scores
            .iter()
            .map(|&(id, s)| (PointId::Num(id), s))
            .collect()
    }

    #[test]
    fn rrf_and_dbsf_give_qdrants_scores() {
        // Qdrant Edge 0.9's answers for these two lists (dense and sparse prefetches).
        let lists = [
            list(&[(6, 6.0), (5, 5.0), (4, 4.0), (3, 3.0), (2, 2.0), (1, 1.0)]),
            list(&[(4, 6.0), (1, 5.0), (5, 4.0), (2, 3.0), (6, 2.0), (3, 1.0)]),
        ];
        let close = |got: Vec<(PointId, f32)>, want: &[(u64, f32)]| {
            assert_eq!(got.len(), want.len());
            for ((id, s), &(wid, ws)) in got.iter().zip(want) {
                assert_eq!(*id, PointId::Num(wid));
                assert!((s - ws).abs() < 1e-5, "{id}: {s} vs {ws}");
            }
        };
        close(
            fuse(Fusion::Rrf, &lists),
            &[
                (4, 0.75),
                (6, 0.666_667),
                (5, 0.583_333),
                (1, 0.476_191),
                (2, 0.366_667),
                (3, 0.342_857),
            ],
        );
        close(
            fuse(Fusion::Dbsf, &lists),
            &[
                (4, 1.267_261),
                (5, 1.178_174),
                (6, 1.089_087),
                (1, 0.910_913),
                (2, 0.821_826),
                (3, 0.732_739),
            ],
        );
        let short = [
            list(&[(6, 6.0), (5, 5.0), (4, 4.0)]),
            list(&[(4, 6.0), (1, 5.0)]),
        ];
        close(
            fuse(Fusion::Dbsf, &short),
            &[(4, 0.951_185), (6, 0.666_667), (5, 0.5), (1, 0.382_149)],
        );
        let single = [list(&[(6, 6.0)]), list(&[(4, 6.0)])];
        close(fuse(Fusion::Dbsf, &single), &[(6, 0.5), (4, 0.5)]);
    }
}
