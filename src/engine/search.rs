//! Search: each query takes the graph when it applies, else a payload index's candidates, else
//! the exact scan, which the queries left over share in one pass over the arena.

use std::sync::Arc;

use super::dense::{ArenaSpace, DenseSpace};
use super::hnsw::{Graph, Scorer, Space, SpaceQuery, Walk, PREFETCH_AHEAD};
use super::payload_index::Candidates;
use super::quantized::CodeScorer;
use super::sketch::{self, Sketch};
use super::topk::{Candidate, TopK};
use super::Engine;
use crate::distance::{self, closeness_key, score_from_raw};
use crate::error::{Error, Result};
use crate::filter::Filter;
use crate::point::Distance;
use crate::search::{ScoredPoint, SearchRequest, SearchResponse};

/// Filters matching less than this fraction of the points are searched by scanning: the graph
/// would walk through many non-matching nodes for each match it admits.
const SELECTIVE_FILTER: f64 = 0.03;

/// The same for a payload index's candidates that are exactly the matches: scanning them reads
/// only their vectors (no payload), so scanning pays up to a larger share.
const EXACT_CANDIDATES_SCAN: f64 = 0.07;

/// Vector components a filtered scan may read before the graph is the cheaper way, whatever
/// the share: a scan reads every match, a filtered walk about the same number of nodes at any
/// size. That many is about the time of a walk at the shares above (7% of WordNet's 100K x
/// 384); at 1M x 128, 5% of the points took eight times as long to scan as to walk
/// (PERFORMANCE.md).
const SCAN_BUDGET: usize = 2_700_000;

/// Index candidates from this many to [`SKETCH_SCAN_UP_TO`] are scanned in the order of their
/// sketches when the graph keeps sketches (see [`Engine::scan_by_sketch`]): fewer are scored
/// faster than sketched (the query's sketch and the sort cost more than they spare), more are
/// found faster by walking the graph around the others. Both ends measured on WordNet's 100K x
/// 384 (PERFORMANCE.md): 100 candidates scored exactly run 1.7x faster than sketched, 1,000 run
/// 2.7x slower; 14,500 walk the graph as fast as they are sketched, 25,000 1.25x faster.
const SKETCH_SCAN_FROM: usize = 500;
const SKETCH_SCAN_UP_TO: usize = 15_000;

/// How far ahead a sketched scan loads the candidates' sketches.
const SKETCHES_AHEAD: usize = 8;

/// Index candidates fewer than this fraction of the points are searched walking around the
/// nodes they leave out (see [`Walk::Around`]) when the graph has sketches, which spare most
/// of the two-hop loads; with more, walking through them is cheaper. Measured on WordNet's
/// 100K x 384 at recall 0.99 (PERFORMANCE.md): at half the points walking around answers
/// 1.25x the queries of walking through, at 90% walking through 1.05-1.3x those around.
const WALK_AROUND_BELOW: f64 = 0.6;

/// The same without sketches: each refused node walked around costs the loads of its links.
const UNSKETCHED_WALK_AROUND_BELOW: f64 = 0.2;

/// A walk around refused nodes widens its beam by this factor: it reaches admitted nodes only
/// through one refused node, so a match whose every link leads through two refused nodes in a
/// row is found later than walking through would find it (0.988 -> 0.991 recall@10 for a
/// tenant of 10% interleaved through WordNet at 1.3; PERFORMANCE.md).
const AROUND_BEAM_WIDER: f64 = 1.2;

/// With sketches, a walk around does not walk around refused nodes estimated beyond the worst
/// result (`sketch::walk_around_below`): that saves most of its link loads but misses a few
/// matches, more the fewer the filter admits, which a beam wider by `1 + this / share` finds
/// again (`share`: the candidates' share of the points; 1.65 at 10%, PERFORMANCE.md).
const PRUNED_AROUND_WIDER: f64 = 0.065;

/// Points sampled to estimate a filter's selectivity.
const SELECTIVITY_SAMPLE: usize = 512;

/// What a graph search walks by: the vectors, or their quantized codes. One type for both, so
/// the beam search, the hottest and largest function, is compiled once for them (the `.wasm`
/// is size-budgeted); the match is predicted the same way at every call.
enum Walker<'a> {
    Vectors(SpaceQuery<'a, ArenaSpace<'a>>),
    Codes(CodeScorer<'a>),
}

impl Scorer for Walker<'_> {
    #[inline]
    fn key(&self, slot: u32) -> f32 {
        match self {
            Walker::Vectors(s) => s.key(slot),
            Walker::Codes(s) => s.key(slot),
        }
    }

    #[inline]
    fn keys4(&self, slots: [u32; 4]) -> [f32; 4] {
        match self {
            Walker::Vectors(s) => s.keys4(slots),
            Walker::Codes(s) => s.keys4(slots),
        }
    }

    #[inline]
    fn prefetch(&self, slot: u32) {
        match self {
            Walker::Vectors(s) => s.prefetch(slot),
            Walker::Codes(s) => s.prefetch(slot),
        }
    }
}

/// A validated query, ready for the scan.
struct PreparedQuery<'a> {
    /// The dense vector searched: its rows, graph and codes.
    space: &'a DenseSpace,
    vector: Vec<f32>,
    filter: Option<&'a Filter>,
    /// Candidates with this closeness key or a larger one fail the score threshold (strict,
    /// as in Qdrant: a score equal to the threshold is out).
    max_key: f32,
    /// `offset + limit`: how many candidates the top-k keeps.
    keep: usize,
    /// How a graph search uses quantized codes, if the database keeps them.
    codes: CodeUse,
}

/// How a query's graph search uses the quantized codes (see `quantized.rs`).
#[derive(Clone, Copy)]
struct CodeUse {
    /// Walk with the vectors instead (`params.quantization.ignore`).
    ignore: bool,
    /// Score the best candidates again with the vectors.
    rescore: bool,
    /// How many to re-score (`None`: the whole beam, see `QuantizationSearchParams`); the
    /// beam is at least this wide.
    rescored: Option<usize>,
}

/// How a query is answered (see [`Engine::plan`]).
enum Plan<'g> {
    /// A beam search of the graph, this wide, passing refused nodes this way.
    Graph(&'g Graph, usize, Walk),
    /// The index candidates, scored in the order of the graph's sketches.
    SketchScan(&'g Graph),
    /// An exact scan: of the index candidates if there are any, else of every point.
    Scan,
}

/// One query's answer before paging: the closest candidates, how many points were scored, and
/// whether the search was exact.
type Answer = (Vec<Candidate>, usize, bool);

impl Engine {
    /// Slots that may match `filter`, from the payload indexes, when an indexed `must`
    /// condition narrows it down (the whole filter must still be checked on each).
    pub(super) fn index_candidates(&self, filter: &Filter) -> Option<Candidates<'_>> {
        self.indexes
            .candidates(filter, self.ids.slots(), || Box::new(self.live_payloads()))
    }

    /// The candidates of `filter`: from the payload indexes, or else, for a filter used
    /// before, its matches (see `PayloadIndexes::repeated_filter_matches`).
    pub(super) fn filter_candidates(&self, filter: &Filter) -> Option<Candidates<'_>> {
        if let Some(c) = self.index_candidates(filter) {
            return Some(c);
        }
        let matches = self.indexes.repeated_filter_matches(
            filter,
            self.ids.slots(),
            self.ids.dead(),
            || {
                self.all_matching_slots(Some(filter))
                    .map(|slot| slot as u32)
            },
        )?;
        Some(Candidates::of_matches(matches))
    }

    pub(super) fn check_limit(&self, requested: usize) -> Result<()> {
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

    fn prepare<'a>(&'a self, req: &'a SearchRequest) -> Result<PreparedQuery<'a>> {
        let space = self.space_named(req.using.as_deref())?;
        space.check_vector(&req.vector)?;
        self.check_limit(req.limit.saturating_add(req.offset))?;
        if req.params.hnsw_ef == Some(0) {
            return Err(Error::InvalidArgument(
                "params.hnsw_ef must be at least 1".to_owned(),
            ));
        }
        let mut vector = req.vector.clone();
        if space.distance == Distance::Cosine {
            distance::normalize(&mut vector);
        }
        let max_key = match (req.score_threshold, space.distance) {
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
        let keep = req.limit + req.offset;
        let quantization = req.params.quantization.unwrap_or_default();
        let rescored = match quantization.oversampling {
            None => None,
            Some(o) if o >= 1.0 => {
                // Bounded like a result page, so no oversampling asks for a beam beyond reason.
                let most = keep.max(self.config.max_search_limit);
                Some(((keep as f64 * o).ceil() as usize).clamp(keep, most))
            }
            Some(_) => {
                return Err(Error::InvalidArgument(
                    "params.quantization.oversampling must be at least 1".to_owned(),
                ))
            }
        };
        Ok(PreparedQuery {
            space,
            vector,
            filter: req.filter.as_ref(),
            max_key,
            keep,
            codes: CodeUse {
                ignore: quantization.ignore,
                rescore: quantization.rescore.unwrap_or(true),
                rescored,
            },
        })
    }

    /// Searches for several queries. Each uses the HNSW index when it applies (see
    /// [`Engine::approximate`]); the others share one exact pass over the arena.
    pub fn search_batch(&self, reqs: &[SearchRequest]) -> Result<Vec<SearchResponse>> {
        // `has_vector` of a sparse vector's name, resolved to ids first (rare: copies).
        let resolved: Vec<SearchRequest>;
        let names_vector =
            |r: &SearchRequest| r.filter.as_ref().is_some_and(|f| self.names_vector(f));
        let reqs = match reqs.iter().any(names_vector) {
            false => reqs,
            true => {
                resolved = reqs
                    .iter()
                    .map(|r| SearchRequest {
                        filter: r
                            .filter
                            .as_ref()
                            .map(|f| self.with_vectors_resolved(f).into_owned()),
                        ..r.clone()
                    })
                    .collect();
                &resolved
            }
        };
        let failures = self.read_failures();
        let queries = reqs
            .iter()
            .map(|r| self.prepare(r))
            .collect::<Result<Vec<_>>>()?;
        let mut answers: Vec<Option<Answer>> = queries
            .iter()
            .zip(reqs)
            .map(|(q, r)| self.indexed_answer(q, r))
            .collect::<Result<_>>()?;
        self.scan_unanswered(&queries, &mut answers);
        let responses = queries
            .iter()
            .zip(reqs)
            .zip(answers)
            .map(|((q, req), answer)| {
                self.response(q, req, answer.expect("every query was answered"))
            })
            .collect();
        // Rows kept on disk that could not be read were scored as zeros: no answer then.
        self.failed_since(failures)?;
        Ok(responses)
    }

    /// A query's answer from an index: the graph when it applies, else the candidates of an
    /// indexed filter. `None` leaves the query to the shared exact scan. Fails only when
    /// vectors kept on disk cannot be read.
    fn indexed_answer(&self, q: &PreparedQuery, req: &SearchRequest) -> Result<Option<Answer>> {
        let candidates = q.filter.and_then(|f| self.filter_candidates(f));
        Ok(match self.plan(q, req, candidates.as_ref()) {
            Plan::Graph(graph, ef, walk) => {
                match self.approximate(q, graph, ef, walk, candidates.as_ref())? {
                    Some((found, scored)) => Some((found, scored, false)),
                    None => candidates.map(|c| self.scan_candidates(q, &c, None)),
                }
            }
            Plan::SketchScan(graph) => candidates.map(|c| self.scan_candidates(q, &c, Some(graph))),
            // An indexed filter: score its candidates only.
            Plan::Scan => candidates.map(|c| self.scan_candidates(q, &c, None)),
        })
    }

    /// Scores an indexed filter's candidates: all of them, or with `graph`'s sketches the
    /// plausible ones only (then the answer is not exact).
    fn scan_candidates(&self, q: &PreparedQuery, c: &Candidates, graph: Option<&Graph>) -> Answer {
        let (slots, exact) = c.slots(self.ids.slots());
        match graph.and_then(|g| Some((g, g.query_sketch(&q.vector)?))) {
            Some((g, sketch)) => {
                let (found, scored) = self.scan_by_sketch(q, &slots, exact, g.sketches(), &sketch);
                (found, scored, false)
            }
            None => {
                let (found, scored) = self.scan_slots(q, &slots, exact);
                (found, scored, true)
            }
        }
    }

    /// Answers the queries no index answered, in one exact pass over the arena of each dense
    /// vector they search.
    fn scan_unanswered(&self, queries: &[PreparedQuery], answers: &mut [Option<Answer>]) {
        let mut left: Vec<usize> = (0..answers.len())
            .filter(|&i| answers[i].is_none())
            .collect();
        while let Some(&first) = left.first() {
            let space = queries[first].space;
            let (same, others): (Vec<usize>, Vec<usize>) = left
                .iter()
                .partition(|&&i| std::ptr::eq(queries[i].space, space));
            let subset: Vec<&PreparedQuery> = same.iter().map(|&i| &queries[i]).collect();
            for (&i, (found, scored)) in same.iter().zip(self.scan(space, &subset)) {
                answers[i] = Some((found, scored, true));
            }
            left = others;
        }
    }

    /// The page of an answer that `req` asks for, as scored points.
    fn response(
        &self,
        q: &PreparedQuery,
        req: &SearchRequest,
        (found, scored, exact): Answer,
    ) -> SearchResponse {
        let distance = q.space.distance;
        let higher_is_better = distance.higher_is_better();
        // The keys compared against the threshold are squared for Euclid: the final scores
        // decide at the boundary, as Qdrant compares scores.
        let beyond = |score: f32| match req.score_threshold {
            None => true,
            Some(t) if higher_is_better => score > t,
            Some(t) => score < t,
        };
        SearchResponse {
            result: found
                .into_iter()
                .skip(req.offset)
                .map(|c| self.scored_point(c, distance, req))
                .filter(|p| beyond(p.score))
                .collect(),
            exact,
            scored,
        }
    }

    /// Whether index candidates must be looked at one by one: exact candidates of a collection
    /// without deletions need no look at the slot (a load each, for most of a sketched scan's
    /// time), unless some points lack the vector searched.
    fn candidates_need_checks(&self, q: &PreparedQuery, exact: bool) -> bool {
        !exact || self.ids.dead() > 0 || q.space.has_gaps()
    }

    /// Whether an index candidate is live, has the vector searched and, unless the candidates
    /// are `exact`, matches.
    fn candidate_passes(&self, q: &PreparedQuery, slot: u32, exact: bool) -> bool {
        if !q.space.has(slot as usize) {
            return false;
        }
        self.ids.id_at(slot as usize).is_some_and(|id| {
            exact
                || q.filter
                    .is_none_or(|f| f.matches(id, self.payloads.get(slot as usize)))
        })
    }

    /// Exact search of one query over the given slots (a payload index's candidates). With
    /// `exact` candidates the filter is already answered: no payload is read.
    fn scan_slots(&self, q: &PreparedQuery, slots: &[u32], exact: bool) -> (Vec<Candidate>, usize) {
        let mut top = TopK::new(q.keep);
        let mut scored = 0;
        let space = q.space.space();
        let checked = self.candidates_need_checks(q, exact);
        for &slot in slots {
            if checked && !self.candidate_passes(q, slot, exact) {
                continue;
            }
            scored += 1;
            let key = space.key_to(&q.vector, slot);
            if key < q.max_key && top.admits(key) {
                top.push(Candidate { key, slot });
            }
        }
        (top.into_sorted(), scored)
    }

    /// Search of one query over the given slots, scoring them in the order of their sketches'
    /// Hamming distance to the query's and stopping where a sketch puts the rest beyond the
    /// worst result (by the margin graph search skips neighbours with, `sketch::skip_from`).
    /// A sketch is one cache line where a vector is many, so this reads a fraction of what
    /// [`Engine::scan_slots`] reads. Slots past `sketches` (not in the graph yet) are scored.
    fn scan_by_sketch(
        &self,
        q: &PreparedQuery,
        slots: &[u32],
        exact: bool,
        sketches: &[Sketch],
        query: &Sketch,
    ) -> (Vec<Candidate>, usize) {
        let mut top = TopK::new(q.keep);
        let mut scored = 0;
        let space = q.space.space();
        let mut score = |slot: u32, top: &mut TopK| {
            scored += 1;
            let key = space.key_to(&q.vector, slot);
            if key < q.max_key && top.admits(key) {
                top.push(Candidate { key, slot });
            }
        };
        // Counting sort by Hamming distance: linear, where sorting would cost more than the
        // distances it orders.
        let mut sketched: Vec<(u32, u16)> = Vec::with_capacity(slots.len());
        let mut per_distance = [0u32; sketch::BITS + 2];
        let checked = self.candidates_need_checks(q, exact);
        for (i, &slot) in slots.iter().enumerate() {
            // The sketches of candidates spread through the database are a cache miss each:
            // load those a few places ahead.
            if let Some(ahead) = slots.get(i + SKETCHES_AHEAD) {
                if let Some(s) = sketches.get(*ahead as usize) {
                    crate::distance::prefetch(std::slice::from_ref(s));
                }
            }
            if checked && !self.candidate_passes(q, slot, exact) {
                continue;
            }
            match sketches.get(slot as usize) {
                Some(s) => {
                    let h = s.hamming(query) as u16;
                    per_distance[h as usize + 1] += 1;
                    sketched.push((slot, h));
                }
                None => score(slot, &mut top),
            }
        }
        for h in 1..per_distance.len() {
            per_distance[h] += per_distance[h - 1];
        }
        let mut ordered = vec![0u32; sketched.len()];
        for &(slot, h) in &sketched {
            let at = &mut per_distance[h as usize];
            ordered[*at as usize] = slot;
            *at += 1;
        }
        // `per_distance[h]` is now where distance `h + 1` starts.
        let mut h = 0;
        for (i, &slot) in ordered.iter().enumerate() {
            while per_distance[h] as usize <= i {
                h += 1;
            }
            if top
                .worst_when_full()
                .is_some_and(|worst| h as u32 >= sketch::scan_stop_from(worst))
            {
                break;
            }
            if let Some(&ahead) = ordered.get(i + PREFETCH_AHEAD) {
                space.prefetch(ahead);
            }
            score(slot, &mut top);
        }
        (top.into_sorted(), scored)
    }

    /// Exact search for several queries of `space` in one pass over its arena: each stored
    /// vector is read from memory once and compared with every query while it is in cache, so
    /// a batch costs little more than a single query.
    fn scan(&self, space: &DenseSpace, queries: &[&PreparedQuery]) -> Vec<(Vec<Candidate>, usize)> {
        let mut tops: Vec<TopK> = queries.iter().map(|q| TopK::new(q.keep)).collect();
        let mut scored = vec![0usize; queries.len()];
        let distance = space.distance;
        // Vectors kept on disk are read through once, not held (`scan_rows`).
        let gaps = space.has_gaps();
        let slots = self
            .ids
            .iter()
            .filter(|&(slot, _)| !gaps || space.has(slot));
        space.vectors.scan_rows(slots, |slot, id, v| {
            for ((q, top), scored) in queries.iter().zip(&mut tops).zip(&mut scored) {
                if q.filter
                    .is_some_and(|f| !f.matches(id, self.payloads.get(slot)))
                {
                    continue;
                }
                *scored += 1;
                let key = closeness_key(distance, (space.kernel)(&q.vector, v));
                if key < q.max_key && top.admits(key) {
                    top.push(Candidate {
                        key,
                        slot: slot as u32,
                    });
                }
            }
        });
        tops.into_iter()
            .map(TopK::into_sorted)
            .zip(scored)
            .collect()
    }

    /// Graph search of `graph` with beam `ef`. `None` sends the query to a scan, which
    /// happens when the graph finds fewer than `limit + offset` admissible points: a result is
    /// never cut short because the filter or deletions starved the beam.
    fn approximate(
        &self,
        q: &PreparedQuery,
        graph: &Graph,
        ef: usize,
        walk: Walk,
        candidates: Option<&Candidates>,
    ) -> Result<Option<(Vec<Candidate>, usize)>> {
        let admit = self.admission(q, candidates, walk);
        // Every node is admissible without a filter or deletions: skip the per-candidate check
        // (a cache miss each). (Nodes without the vector are never reached: they have no
        // links.)
        let all = q.filter.is_none() && self.ids.dead() == 0;
        let codes = q
            .space
            .codes
            .as_ref()
            .filter(|c| !q.codes.ignore && c.rows() == graph.len());
        let prepared = codes.map(|c| (c, c.prepare(&q.vector)));
        let space = q.space.space();
        let walker = match &prepared {
            Some((codes, query)) => Walker::Codes(codes.scorer(query)),
            None => Walker::Vectors(SpaceQuery {
                space: &space,
                query: &q.vector,
            }),
        };
        let ef = match prepared {
            Some(_) => ef.max(q.codes.rescored.unwrap_or(0)),
            None => ef,
        };
        // With vectors kept on disk (memory before speed), a walk by codes loads no sketch:
        // sketches would be 64 resident bytes a node, and natively codes walk about as fast
        // without them (PERFORMANCE.md).
        let sketch_of = match prepared.is_some() && self.config.vectors_on_disk {
            true => None,
            false => Some(&q.vector[..]),
        };
        let (mut found, mut scored) = match all {
            true => graph.search(sketch_of, ef, &walker, &|_| true, walk),
            false => graph.search(sketch_of, ef, &walker, &admit, walk),
        };
        if prepared.is_some() && q.codes.rescore {
            scored += self.rescore(q, &mut found)?;
        }
        scored += self.score_unindexed(q, &admit, &mut found);
        if found.len() < q.keep {
            return Ok(None);
        }
        let kept = found
            .into_iter()
            .filter(|c| c.key < q.max_key)
            .take(q.keep)
            .collect();
        Ok(Some((kept, scored)))
    }

    /// Keeps the best of `found` (candidates keyed by quantized codes, closest first) that `q`
    /// re-scores, with their keys from the vectors, closest first; returns how many.
    fn rescore(&self, q: &PreparedQuery, found: &mut Vec<Candidate>) -> Result<usize> {
        found.truncate(q.codes.rescored.unwrap_or(found.len()));
        let dense = q.space;
        if dense.vectors.reads_base() {
            // Vectors kept on disk: read the candidates' rows, then score the copies.
            let rows = dense.vectors.read_rows(found.iter().map(|c| c.slot))?;
            for (i, cands) in found.chunks_mut(4).enumerate() {
                let last = cands.len() - 1;
                let group = std::array::from_fn(|j| rows.get(4 * i + j.min(last)));
                let raw = (dense.kernel4)(&q.vector, group);
                for (c, raw) in cands.iter_mut().zip(raw) {
                    c.key = closeness_key(dense.distance, raw);
                }
            }
            found.sort_unstable();
            return Ok(found.len());
        }
        let space = dense.space();
        let scorer = SpaceQuery {
            space: &space,
            query: &q.vector,
        };
        // Scattered vectors: four at a time (their loads interleave), the next four loading.
        let groups: Vec<[u32; 4]> = found
            .chunks(4)
            .map(|g| std::array::from_fn(|i| g.get(i).map_or(g[0].slot, |c| c.slot)))
            .collect();
        if let Some(first) = groups.first() {
            for &s in first {
                scorer.prefetch(s);
            }
        }
        for (i, (group, cands)) in groups.iter().zip(found.chunks_mut(4)).enumerate() {
            if let Some(next) = groups.get(i + 1) {
                for &s in next {
                    scorer.prefetch(s);
                }
            }
            for (c, key) in cands.iter_mut().zip(scorer.keys4(*group)) {
                c.key = key;
            }
        }
        found.sort_unstable();
        Ok(found.len())
    }

    /// How to answer `q`: the graph applies when it exists, the collection is past the
    /// full-scan threshold, the request does not ask for `exact`, and a filter (if any) is not
    /// so selective that scanning its matches is cheaper.
    fn plan<'g>(
        &self,
        q: &PreparedQuery<'g>,
        req: &SearchRequest,
        candidates: Option<&Candidates>,
    ) -> Plan<'g> {
        let (Some(graph), Some(hnsw)) = (q.space.graph.as_ref(), q.space.hnsw.as_ref()) else {
            return Plan::Scan;
        };
        if req.params.exact || self.len() < hnsw.full_scan_threshold {
            return Plan::Scan;
        }
        let share = |f: &Filter| match candidates {
            // An upper bound: candidates may fail the rest of the filter.
            Some(c) => c.len() as f64 / self.len().max(1) as f64,
            None => self.estimate_selectivity(f),
        };
        let share = q.filter.map(share);
        let sketched = !graph.sketches().is_empty();
        if let (true, Some(c)) = (sketched, candidates) {
            if (SKETCH_SCAN_FROM..=SKETCH_SCAN_UP_TO).contains(&c.len()) {
                return Plan::SketchScan(graph);
            }
        }
        let scan_below = match candidates.is_some_and(|c| c.exact) {
            true => EXACT_CANDIDATES_SCAN,
            false => SELECTIVE_FILTER,
        };
        let scanned = |share: f64| share * self.len() as f64 * q.space.dimension as f64;
        if share.is_some_and(|share| share < scan_below && scanned(share) < SCAN_BUDGET as f64) {
            return Plan::Scan;
        }
        let ef = req.params.hnsw_ef.unwrap_or(hnsw.ef).max(q.keep);
        // Walking around refused nodes checks the nodes two hops away, so it needs a filter
        // that is a bit test for most of them: a payload index's bitset.
        let around_below = match sketched {
            true => WALK_AROUND_BELOW,
            false => UNSKETCHED_WALK_AROUND_BELOW,
        };
        match candidates {
            Some(c)
                if q.filter.is_some() && (c.len() as f64) < around_below * self.len() as f64 =>
            {
                let share = c.len() as f64 / self.len().max(1) as f64;
                let factor = match sketched {
                    false => AROUND_BEAM_WIDER,
                    true => 1.0 + PRUNED_AROUND_WIDER / share,
                };
                let wider = (ef as f64 * factor).ceil() as usize;
                Plan::Graph(graph, wider, Walk::Around)
            }
            _ => Plan::Graph(graph, ef, Walk::Through),
        }
    }

    /// Whether a slot may enter `q`'s result: it is live and passes the filter.
    fn admission<'a>(
        &'a self,
        q: &'a PreparedQuery<'a>,
        candidates: Option<&'a Candidates<'a>>,
        walk: Walk,
    ) -> impl Fn(u32) -> bool + 'a {
        let live = |slot: u32| self.ids.is_live(slot);
        let slots = self.ids.slots();
        // Walking through refused nodes, the filter passes most nodes: a bitset of its
        // candidates costs a write for each of them, its columns a load for each node the walk
        // reaches. A filter used again has its bitset kept: then a bit test is the cheaper
        // (1.1-1.25x the queries/s at half of WordNet, PERFORMANCE.md).
        let kept = match walk {
            Walk::Through => candidates
                .filter(|c| c.exact)
                .and_then(|c| c.repeated_bitset(slots, self.ids.dead(), live))
                .filter(|(_, complete)| *complete),
            Walk::Around => None,
        };
        let columns = match (walk, q.filter, &kept) {
            (Walk::Through, Some(f), None) => self
                .indexes
                .column_filter(f, slots, || Box::new(self.live_payloads())),
            _ => None,
        };
        // Else, with a payload index, a bitset of its candidates rejects most non-matching
        // nodes before their payloads are looked at. It holds live slots only, and every
        // indexed part of the filter when they are sure of each slot (complete), so an exact
        // candidate set admits with a bit test alone: no look at the slot's id or its values
        // (a cache miss each).
        let candidates = candidates.filter(|_| columns.is_none());
        let bits = kept.or_else(|| candidates.map(|c| c.bitset(slots, self.ids.dead(), live)));
        // An exact candidate set in a complete bitset: the bit is the answer, a test small
        // enough to be inlined into the walk (calling the general test below was 17% of a
        // walk's time at 25% of WordNet).
        let decisive = match (&bits, candidates) {
            (Some((b, true)), Some(c)) if c.exact => Some(Arc::clone(b)),
            _ => None,
        };
        let dead = self.ids.dead();
        let general: Box<dyn Fn(u32) -> bool + 'a> = Box::new(move |slot: u32| {
            if let Some(c) = &columns {
                if dead > 0 && !live(slot) {
                    return false;
                }
                // A slot the columns cannot tell about is left to its payload.
                if let Some(passes) = c.holds(slot) {
                    return passes;
                }
            }
            if let (Some((b, complete)), Some(c)) = (&bits, candidates) {
                if b[slot as usize / 64] & (1 << (slot % 64)) == 0 {
                    return false;
                }
                // An exact candidate set answers the filter without reading the payload.
                let others = match complete {
                    true => Some(true),
                    false => c.others_list(slot),
                };
                match others {
                    Some(false) => return false,
                    Some(true) if c.exact => return true,
                    _ => {}
                }
            }
            match self.ids.id_at(slot as usize) {
                Some(id) => q
                    .filter
                    .is_none_or(|f| f.matches(id, self.payloads.get(slot as usize))),
                None => false,
            }
        });
        move |slot: u32| match &decisive {
            Some(b) => b[slot as usize / 64] & (1 << (slot % 64)) != 0,
            None => general(slot),
        }
    }

    /// Adds the admissible slots past the graph (see `defer_indexing`) to `found`, scored
    /// exactly, keeping it sorted; returns how many it scored.
    fn score_unindexed(
        &self,
        q: &PreparedQuery,
        admit: &impl Fn(u32) -> bool,
        found: &mut Vec<Candidate>,
    ) -> usize {
        let tail = q.space.unindexed(self.ids.slots());
        let mut scored = 0;
        if !tail.is_empty() {
            let space = q.space.space();
            let tail = tail.filter(|&s| q.space.has(s));
            for slot in tail.map(|s| s as u32).filter(|&s| admit(s)) {
                scored += 1;
                found.push(Candidate {
                    key: space.key_to(&q.vector, slot),
                    slot,
                });
            }
            found.sort_unstable();
        }
        scored
    }

    /// The fraction of live points matching `filter`, estimated from a sample of slots spread
    /// by a multiplicative hash (an even stride would alias with periodic payloads, such as a
    /// field derived from the insertion order).
    fn estimate_selectivity(&self, filter: &Filter) -> f64 {
        let slots = self.ids.slots() as u64;
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
            if let Some(id) = self.ids.id_at(slot) {
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

    fn scored_point(&self, c: Candidate, distance: Distance, req: &SearchRequest) -> ScoredPoint {
        let raw = if distance.higher_is_better() {
            -c.key
        } else {
            c.key
        };
        let record = self.record(c.slot as usize, req.with_payload, req.with_vector);
        ScoredPoint::of(record, score_from_raw(distance, raw))
    }
}
