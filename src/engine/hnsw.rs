//! HNSW: a navigable small-world graph over the arena's slots, for approximate search.
//!
//! Layout, in the spirit of hnswlib and usearch: layer 0 (where almost all the work happens) is
//! one flat `u32` array with a fixed stride of `1 + m0` per node (a count, then neighbour slots),
//! so a node's neighbours are one cache-friendly slice with no per-node allocation; the upper
//! layers, which hold about `1/m` of the nodes, live in a second flat array addressed through
//! `upper_at`. Searches take their visited set and heaps from a per-thread scratch space, so a
//! search allocates nothing in steady state.
//!
//! Graphs over cosine similarity of 256 dimensions or more keep a 64-byte sketch of each node
//! (see `sketch.rs`): once a beam search has `ef` results, neighbours whose sketch says they are
//! almost certainly farther than the worst one are skipped instead of loaded. Construction does
//! not use them, so the graph is the same with or without.
//!
//! Deleted points stay in the graph as waypoints (their links keep it navigable) and are never
//! returned; [`Graph::remapped`] drops them, refilling the neighbour lists that lost members from
//! two-hop candidates, when the engine compacts or writes a segment.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::in_place::{room_for, InPlace};
use super::sketch::{self, Sketch, Sketcher};
use super::topk::Candidate;
use crate::bytes::Bytes;

/// No node / no upper-layer block.
pub(crate) const NONE: u32 = u32::MAX;
/// How many neighbours ahead of the one being scored the greedy upper-layer search prefetches.
pub(super) const PREFETCH_AHEAD: usize = 3;
/// How many groups of four neighbours ahead of the group being scored a beam search prefetches.
const PREFETCH_GROUPS: usize = 1;
/// Levels above this are never drawn (the probability is below 16^-16).
const MAX_LEVEL: u8 = 16;

/// A node links to at most this many copies of its own vector, and to half its list's
/// capacity at most (see `Graph::select`).
const COPIES_LINKED: usize = 4;

/// Construction parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GraphParams {
    /// Neighbours per node on the upper layers (twice as many on layer 0).
    pub m: usize,
    /// Candidate list size while inserting.
    pub ef_construction: usize,
    /// The vectors' dimension when the graph keeps a sketch of each node to skip far
    /// neighbours in searches: for cosine similarity, where sketch distance bounds the score.
    pub sketch_dim: Option<usize>,
}

/// Distances between stored vectors and queries, as closeness keys (smaller is closer): what
/// the graph is built with.
pub(crate) trait Space {
    fn key_to(&self, query: &[f32], slot: u32) -> f32;
    /// [`Space::key_to`] for four slots at once (faster where the kernel interleaves them).
    fn keys_to4(&self, query: &[f32], slots: [u32; 4]) -> [f32; 4];
    fn vector(&self, slot: u32) -> &[f32];
    /// Hints that `slot`'s vector will be read soon.
    fn prefetch(&self, slot: u32);
}

/// Closeness keys of nodes to one query: what a search walks the graph with. The vectors
/// themselves ([`SpaceQuery`]), or their quantized codes (`quantized.rs`), whose keys
/// approximate the same ones.
pub(crate) trait Scorer {
    fn key(&self, slot: u32) -> f32;
    /// [`Scorer::key`] for four slots at once.
    fn keys4(&self, slots: [u32; 4]) -> [f32; 4];
    /// Hints that `slot`'s data will be read soon.
    fn prefetch(&self, slot: u32);
}

/// A [`Space`] scoring one query.
pub(crate) struct SpaceQuery<'a, S> {
    pub space: &'a S,
    pub query: &'a [f32],
}

impl<S: Space> Scorer for SpaceQuery<'_, S> {
    #[inline]
    fn key(&self, slot: u32) -> f32 {
        self.space.key_to(self.query, slot)
    }
    #[inline]
    fn keys4(&self, slots: [u32; 4]) -> [f32; 4] {
        self.space.keys_to4(self.query, slots)
    }
    #[inline]
    fn prefetch(&self, slot: u32) {
        self.space.prefetch(slot);
    }
}

/// How a beam search treats the nodes its filter refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Walk {
    /// Scores them and walks through them like any other node: right when the filter admits
    /// most nodes, or is too costly to check on the nodes two hops away.
    Through,
    /// Never scores them: their own neighbours are taken in their place (two hops, as ACORN
    /// does), so the beam moves among admitted nodes and computes no distance it cannot use.
    /// For filters that refuse many nodes and cost a bit test to check.
    Around,
}

/// How a beam search goes beyond its scorer: the query's sketch, to skip far neighbours, and how
/// it passes the nodes its filter refuses.
#[derive(Clone, Copy)]
struct Query {
    sketch: Option<Sketch>,
    walk: Walk,
}

/// One sketch per node (see [`sketch`]), for graphs over cosine similarity.
struct Sketches {
    sketcher: Sketcher,
    per_node: InPlace<Sketch>,
}

pub(crate) struct Graph {
    params: GraphParams,
    /// Capacity of a layer-0 list.
    m0: usize,
    links0: InPlace<u32>,
    levels: Vec<u8>,
    /// Per node: index in `upper` of its layer-1 block, or `NONE` for layer-0-only nodes.
    upper_at: Vec<u32>,
    /// Blocks of `1 + m` u32 (count, neighbours), one per upper layer of each node.
    upper: Vec<u32>,
    entry: u32,
    max_level: u8,
    rng: u64,
    /// `Some` when `params.sketch_dim` is; then it holds one sketch per node.
    sketches: Option<Sketches>,
}

/// The neighbours a node will be linked to, found before it joins: see [`Graph::plan`].
pub(crate) struct InsertPlan {
    level: u8,
    /// Per layer the node joins (that existed when planned), closest first.
    layers: Vec<Vec<Candidate>>,
}

/// The parts of a graph as stored in a segment.
pub(crate) struct GraphParts {
    pub params: GraphParams,
    pub entry: u32,
    pub max_level: u8,
    pub links0: Bytes,
    pub levels: Vec<u8>,
    pub upper_at: Vec<u32>,
    pub upper: Vec<u32>,
    /// One [`Sketch`] per node, when the segment stores them (version 3 onwards).
    pub sketches: Option<Bytes>,
}

/// The lists of one layer: `links[at..at + stride]` is a node's count, neighbours and unused
/// room, where `at` is `slot * stride` on layer 0 and `index[slot] + offset` above.
#[derive(Clone, Copy)]
struct LayerView<'a> {
    links: &'a [u32],
    index: Option<&'a [u32]>,
    stride: usize,
    offset: usize,
}

impl<'a> LayerView<'a> {
    #[inline(always)]
    fn block(&self, slot: u32) -> &'a [u32] {
        let at = match self.index {
            None => slot as usize * self.stride,
            Some(index) => index[slot as usize] as usize + self.offset,
        };
        &self.links[at..at + self.stride]
    }

    #[inline(always)]
    fn neighbours(&self, slot: u32) -> &'a [u32] {
        let block = self.block(slot);
        &block[1..1 + block[0] as usize]
    }
}

struct Scratch {
    visited: Vec<u16>,
    epoch: u16,
    candidates: BinaryHeap<Reverse<Candidate>>,
    results: BinaryHeap<Candidate>,
    /// Distances computed since the last reset.
    computed: usize,
    /// The unvisited neighbours of the node being expanded.
    fresh: Vec<u32>,
    /// Its refused neighbours, walked around in [`Walk::Around`].
    refused: Vec<u32>,
    /// Room for rotating the query into its sketch.
    rotated: Vec<f32>,
}

impl Scratch {
    /// Starts a new visited set over `n` nodes: bumping the epoch forgets every mark at once.
    fn reset(&mut self, n: usize) {
        if self.visited.len() < n {
            self.visited.resize(n, 0);
        }
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.visited.fill(0);
            self.epoch = 1;
        }
        self.candidates.clear();
        self.results.clear();
        self.computed = 0;
    }

    /// Marks `slot` visited; false if it already was.
    #[inline]
    fn visit(&mut self, slot: u32) -> bool {
        let mark = &mut self.visited[slot as usize];
        if *mark == self.epoch {
            false
        } else {
            *mark = self.epoch;
            true
        }
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = const { RefCell::new(Scratch {
        visited: Vec::new(),
        epoch: 0,
        candidates: BinaryHeap::new(),
        results: BinaryHeap::new(),
        computed: 0,
        fresh: Vec::new(),
        refused: Vec::new(),
        rotated: Vec::new(),
    }) };
}

impl Graph {
    pub fn new(params: GraphParams) -> Self {
        Graph {
            m0: params.m * 2,
            params,
            links0: InPlace::Owned(Vec::new()),
            levels: Vec::new(),
            upper_at: Vec::new(),
            upper: Vec::new(),
            entry: NONE,
            max_level: 0,
            rng: 0x853c_49e6_748f_ea9b,
            sketches: Self::no_sketches(params),
        }
    }

    /// Empty sketches when `params` wants them.
    fn no_sketches(params: GraphParams) -> Option<Sketches> {
        params.sketch_dim.map(|dim| Sketches {
            sketcher: Sketcher::new(dim),
            per_node: InPlace::Owned(Vec::new()),
        })
    }

    /// A graph read from a segment (layer 0 and sketches used in place when aligned, which a
    /// memory map always is; copied otherwise). A segment without sketches leaves them to
    /// [`Graph::complete_sketches`].
    pub fn from_parts(p: GraphParts) -> Self {
        let mut sketches = Self::no_sketches(p.params);
        if let (Some(s), Some(bytes)) = (&mut sketches, p.sketches) {
            s.per_node = InPlace::new(bytes);
        }
        Graph {
            m0: p.params.m * 2,
            params: p.params,
            links0: InPlace::new(p.links0),
            levels: p.levels,
            upper_at: p.upper_at,
            upper: p.upper,
            entry: p.entry,
            max_level: p.max_level,
            rng: 0x853c_49e6_748f_ea9b ^ p.entry as u64,
            sketches,
        }
    }

    /// Computes the sketches the graph lacks (of a segment written before they were stored).
    pub fn complete_sketches<S: Space>(&mut self, space: &S) {
        let len = self.len();
        if let Some(s) = &mut self.sketches {
            let have = s.per_node.slice().len().min(len);
            if have == len {
                // Complete: stored sketches stay in place. Taking an owned copy here copied
                // every segment's sketches at open (6.4 MB for WordNet, twice resident).
                return;
            }
            let sketcher = &s.sketcher;
            let per_node = s.per_node.owned();
            per_node.truncate(have);
            per_node.extend((have..len).map(|slot| sketcher.sketch(space.vector(slot as u32))));
        }
    }

    /// One sketch per node, or nothing for graphs without them.
    pub fn sketches(&self) -> &[Sketch] {
        self.sketches.as_ref().map_or(&[], |s| s.per_node.slice())
    }

    pub fn params(&self) -> GraphParams {
        self.params
    }

    pub fn len(&self) -> usize {
        self.levels.len()
    }

    pub fn entry(&self) -> u32 {
        self.entry
    }

    pub fn max_level(&self) -> u8 {
        self.max_level
    }

    pub fn links0(&self) -> &[u32] {
        self.links0.slice()
    }

    pub fn levels(&self) -> &[u8] {
        &self.levels
    }

    pub fn upper_at(&self) -> &[u32] {
        &self.upper_at
    }

    pub fn upper(&self) -> &[u32] {
        &self.upper
    }

    /// Bytes held (mapped layer-0 links count too: they are part of what a search touches).
    pub fn bytes(&self) -> usize {
        self.links0.slice().len() * 4
            + self.levels.capacity()
            + self.upper_at.capacity() * 4
            + self.upper.capacity() * 4
            + std::mem::size_of_val(self.sketches())
    }

    fn stride0(&self) -> usize {
        1 + self.m0
    }

    /// One layer's lists as plain slices, resolved once per search rather than per node.
    fn layer(&self, layer: u8) -> LayerView<'_> {
        if layer == 0 {
            LayerView {
                links: self.links0.slice(),
                index: None,
                stride: self.stride0(),
                offset: 0,
            }
        } else {
            LayerView {
                links: &self.upper,
                index: Some(&self.upper_at),
                stride: 1 + self.params.m,
                offset: (layer as usize - 1) * (1 + self.params.m),
            }
        }
    }

    fn neighbours(&self, slot: u32, layer: u8) -> &[u32] {
        self.layer(layer).neighbours(slot)
    }

    fn set_neighbours(&mut self, slot: u32, layer: u8, list: &[u32]) {
        let block = if layer == 0 {
            let stride = self.stride0();
            let s = slot as usize * stride;
            &mut self.links0.owned()[s..s + stride]
        } else {
            let s =
                self.upper_at[slot as usize] as usize + (layer as usize - 1) * (1 + self.params.m);
            &mut self.upper[s..s + 1 + self.params.m]
        };
        block[0] = list.len() as u32;
        block[1..1 + list.len()].copy_from_slice(list);
    }

    fn capacity(&self, layer: u8) -> usize {
        if layer == 0 {
            self.m0
        } else {
            self.params.m
        }
    }

    fn draw_level(&mut self) -> u8 {
        // SplitMix64, deterministic so builds (and the tests on them) reproduce.
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let uniform = ((z >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        let ml = 1.0 / (self.params.m.max(2) as f64).ln();
        ((-uniform.ln() * ml) as u64).min(MAX_LEVEL as u64) as u8
    }

    /// Appends an unlinked node of `level`: empty lists on layer 0 and on each upper layer.
    fn push_node(&mut self, level: u8) {
        let stride = self.stride0();
        let links = self.links0.owned();
        room_for(links, stride);
        links.resize(links.len() + stride, 0);
        room_for(&mut self.levels, 1);
        self.levels.push(level);
        room_for(&mut self.upper_at, 1);
        if level > 0 {
            self.upper_at.push(self.upper.len() as u32);
            self.upper
                .resize(self.upper.len() + level as usize * (1 + self.params.m), 0);
        } else {
            self.upper_at.push(NONE);
        }
    }

    /// Levels for the next `n` nodes, drawn in order so a build is the same however its plans
    /// are scheduled.
    pub fn draw_levels(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.draw_level()).collect()
    }

    /// What inserting `slot` at `level` needs from the graph as it stands: for each layer it
    /// joins, the `ef_construction` closest nodes that `live` accepts (a new node never links to
    /// a deleted one, or it would lose those links when the graph is compacted). Read-only, so
    /// the plans of a batch can be computed in parallel; [`Graph::commit`] then links each node
    /// in order.
    pub fn plan<S: Space>(
        &self,
        slot: u32,
        level: u8,
        space: &S,
        live: &impl Fn(u32) -> bool,
    ) -> InsertPlan {
        let mut layers = Vec::new();
        if self.entry != NONE {
            let scorer = SpaceQuery {
                space,
                query: space.vector(slot),
            };
            let mut ep = Candidate {
                key: scorer.key(self.entry),
                slot: self.entry,
            };
            for layer in (level + 1..=self.max_level).rev() {
                ep = self.greedy(&scorer, ep, layer);
            }
            let top = level.min(self.max_level);
            layers = vec![Vec::new(); top as usize + 1];
            let mut entry_points = vec![ep];
            for layer in (0..=top).rev() {
                // No sketch skipping while building: the graph stays what it was without.
                let query = Query {
                    sketch: None,
                    walk: Walk::Through,
                };
                let (found, _) = self.search_layer(
                    query,
                    &entry_points,
                    self.params.ef_construction,
                    layer,
                    &scorer,
                    live,
                );
                layers[layer as usize] = found.clone();
                if !found.is_empty() {
                    entry_points = found;
                }
            }
        }
        InsertPlan { level, layers }
    }

    /// The sketch of a new node's vector, when the graph keeps sketches.
    fn push_sketch<S: Space>(&mut self, slot: u32, space: &S) {
        if let Some(s) = &mut self.sketches {
            let sketch = s.sketcher.sketch(space.vector(slot));
            let per_node = s.per_node.owned();
            room_for(per_node, 1);
            per_node.push(sketch);
        }
    }

    /// Adds `slot` (the next slot) as a node without links, for a slot that has no vector in
    /// this graph's space (a named vector the point lacks): no walk reaches it, and nodes keep
    /// the numbers of their slots. Its sketch (of the row's zeros) keeps the sketches aligned.
    pub fn push_unlinked<S: Space>(&mut self, slot: u32, space: &S) {
        debug_assert_eq!(slot as usize, self.len());
        self.push_node(0);
        self.push_sketch(slot, space);
    }

    /// Adds `slot` (the next slot) with its plan. `batch` holds the nodes committed since the
    /// plan was made (earlier nodes of the same batch): they are candidates too, so nodes
    /// planned together still link to each other.
    pub fn commit<S: Space>(&mut self, slot: u32, plan: InsertPlan, batch: &[u32], space: &S) {
        debug_assert_eq!(slot as usize, self.len());
        let level = plan.level;
        self.push_node(level);
        self.push_sketch(slot, space);
        if self.entry == NONE {
            self.entry = slot;
            self.max_level = level;
            return;
        }
        let query = space.vector(slot);
        for layer in (0..=level).rev() {
            let mut cands = plan.layers.get(layer as usize).cloned().unwrap_or_default();
            cands.extend(
                batch
                    .iter()
                    .filter(|&&b| self.levels[b as usize] >= layer)
                    .map(|&b| Candidate {
                        key: space.key_to(query, b),
                        slot: b,
                    }),
            );
            cands.sort_unstable();
            let chosen = self.select((slot, query), &cands, self.params.m, space);
            let ids: Vec<u32> = chosen.iter().map(|c| c.slot).collect();
            self.set_neighbours(slot, layer, &ids);
            for c in &chosen {
                self.link(c.slot, slot, c.key, layer, space);
            }
        }
        if level > self.max_level {
            self.max_level = level;
            self.entry = slot;
        }
    }

    /// Adds `new` (at closeness `key`) to `node`'s list on `layer`, pruning with the heuristic
    /// when the list is full.
    fn link<S: Space>(&mut self, node: u32, new: u32, key: f32, layer: u8, space: &S) {
        let cap = self.capacity(layer);
        let current = self.neighbours(node, layer);
        if current.len() < cap {
            let mut list = current.to_vec();
            list.push(new);
            self.set_neighbours(node, layer, &list);
            return;
        }
        let base = space.vector(node).to_vec();
        let mut cands: Vec<Candidate> = current
            .iter()
            .map(|&n| Candidate {
                key: space.key_to(&base, n),
                slot: n,
            })
            .collect();
        cands.push(Candidate { key, slot: new });
        cands.sort_unstable();
        let kept: Vec<u32> = self
            .select((node, &base), &cands, cap, space)
            .iter()
            .map(|c| c.slot)
            .collect();
        self.set_neighbours(node, layer, &kept);
    }

    /// The neighbour-selection heuristic of the HNSW paper: walk candidates from the closest and
    /// keep one only if it is closer to the base than to every neighbour kept so far, which keeps
    /// links pointing in diverse directions. `cands` must be sorted, closest first; `base` is
    /// the node's slot and vector.
    ///
    /// Copies of the base's vector are the exception: a copy is as close to everything as the
    /// base itself, so it would cover every later candidate, and the copies of a vector stored
    /// many times would link to one another only and be lost. A node keeps at most
    /// [`COPIES_LINKED`] copies, those nearest its own slot (so the copies form a lattice that
    /// reaches each of them whatever their number), and a copy covers nothing.
    fn select<S: Space>(
        &self,
        (slot, base): (u32, &[f32]),
        cands: &[Candidate],
        m: usize,
        space: &S,
    ) -> Vec<Candidate> {
        let is_copy: Vec<bool> = cands.iter().map(|c| space.vector(c.slot) == base).collect();
        let mut kept: Vec<Candidate> = cands
            .iter()
            .zip(&is_copy)
            .filter(|(_, &copy)| copy)
            .map(|(c, _)| *c)
            .collect();
        // The nearest few by selection: copies are rare, and a sort would cost code size in
        // the browser build.
        // Half the list at most: a node whose list holds only copies would close them off
        // from the rest of the graph.
        let nearest = COPIES_LINKED.min(m / 2).min(kept.len());
        for i in 0..nearest {
            let best = (i..kept.len())
                .min_by_key(|&j| kept[j].slot.abs_diff(slot))
                .unwrap_or(i);
            kept.swap(i, best);
        }
        kept.truncate(nearest);
        let copies = kept.len();
        for (c, _) in cands.iter().zip(&is_copy).filter(|(_, &copy)| !copy) {
            if kept.len() >= m {
                break;
            }
            let v = space.vector(c.slot);
            if kept[copies..]
                .iter()
                .all(|k| space.key_to(v, k.slot) > c.key)
            {
                kept.push(*c);
            }
        }
        kept
    }

    fn greedy(&self, scorer: &impl Scorer, mut best: Candidate, layer: u8) -> Candidate {
        loop {
            let mut improved = false;
            let neighbours = self.neighbours(best.slot, layer);
            for &n in neighbours.iter().take(PREFETCH_AHEAD) {
                scorer.prefetch(n);
            }
            for (i, &n) in neighbours.iter().enumerate() {
                if let Some(&ahead) = neighbours.get(i + PREFETCH_AHEAD) {
                    scorer.prefetch(ahead);
                }
                let key = scorer.key(n);
                if key < best.key {
                    best = Candidate { key, slot: n };
                    improved = true;
                }
            }
            if !improved {
                return best;
            }
        }
    }

    /// Beam search of one layer: explores from `entry_points`, keeping the `ef` closest nodes
    /// that `admit` accepts; nodes it refuses are walked through or around (see [`Walk`]).
    /// Returns them sorted, closest first, and the number of distances computed.
    ///
    /// Kept as one function: it is the hot loop of every search, and its state should stay in
    /// one frame.
    fn search_layer(
        &self,
        query: Query,
        entry_points: &[Candidate],
        ef: usize,
        layer: u8,
        scorer: &impl Scorer,
        admit: &impl Fn(u32) -> bool,
    ) -> (Vec<Candidate>, usize) {
        let view = self.layer(layer);
        // Sketches of layer-0 nodes, to skip neighbours far beyond the worst result.
        let skip = query
            .sketch
            .as_ref()
            .filter(|_| layer == 0)
            .map(|q| (q, self.sketches()))
            .filter(|(_, per_node)| !per_node.is_empty());
        SCRATCH.with(|scratch| {
            let s = &mut *scratch.borrow_mut();
            s.reset(self.len());
            for &ep in entry_points {
                if s.visit(ep.slot) {
                    s.candidates.push(Reverse(ep));
                    if admit(ep.slot) {
                        s.results.push(ep);
                    }
                }
            }
            while s.results.len() > ef {
                s.results.pop();
            }
            while let Some(Reverse(c)) = s.candidates.pop() {
                if s.results.len() >= ef && s.results.peek().is_some_and(|w| c.key > w.key) {
                    break;
                }
                // The next candidate is likely the next one expanded: start loading its links.
                if let Some(Reverse(next)) = s.candidates.peek() {
                    crate::distance::prefetch(view.block(next.slot));
                }
                let neighbours = view.neighbours(c.slot);
                // Mark the unvisited neighbours, then compute their distances with the vectors
                // a few places ahead already loading: enough in flight to hide memory latency,
                // not so many that the CPU's miss queues overflow and drop prefetches.
                s.fresh.clear();
                let skip = skip.filter(|_| s.results.len() >= ef);
                match query.walk {
                    Walk::Through => {
                        for &n in neighbours {
                            if s.visit(n) {
                                s.fresh.push(n);
                            }
                        }
                    }
                    Walk::Around => {
                        s.refused.clear();
                        for &n in neighbours {
                            if s.visit(n) {
                                match admit(n) {
                                    true => s.fresh.push(n),
                                    false => s.refused.push(n),
                                }
                            }
                        }
                        // Once the results are full, a refused node whose sketch puts it beyond
                        // the worst result is not walked around: most of what lies past it is
                        // farther still, and loading its links is most of this walk's time.
                        if let (Some((q, per_node)), Some(worst)) = (skip, s.results.peek()) {
                            let below = sketch::walk_around_below(worst.key);
                            s.refused
                                .retain(|&r| q.hamming(&per_node[r as usize]) < below);
                        }
                        // All the refused nodes' lists load at once, then their admitted
                        // neighbours join (refused ones two hops away stay unmarked: a later
                        // expansion may still walk around them).
                        for &r in &s.refused {
                            crate::distance::prefetch(view.block(r));
                        }
                        for &r in &s.refused {
                            // The filter first: a bit test that refuses most, where the
                            // visited mark would be a load from a larger array.
                            for &n in view.neighbours(r) {
                                if admit(n) && s.visited[n as usize] != s.epoch {
                                    s.visited[n as usize] = s.epoch;
                                    s.fresh.push(n);
                                }
                            }
                        }
                    }
                }
                if let Some((_, per_node)) = skip {
                    for &n in &s.fresh {
                        crate::distance::prefetch(std::slice::from_ref(&per_node[n as usize]));
                    }
                }
                // Once the results are full, a neighbour whose sketch is far from the query's
                // would be rejected after loading its vector: skip it (see `sketch`).
                if let (Some((q, per_node)), Some(worst)) = (skip, s.results.peek()) {
                    let from = sketch::skip_from(worst.key);
                    s.fresh.retain(|&n| q.hamming(&per_node[n as usize]) < from);
                }
                // Keys four at a time (see `Kernel4`), the group after next already loading.
                let count = s.fresh.len();
                for &n in &s.fresh[..count.min(PREFETCH_GROUPS * 4)] {
                    scorer.prefetch(n);
                }
                for start in (0..count).step_by(4) {
                    let ahead = (start + PREFETCH_GROUPS * 4).min(count);
                    for &n in &s.fresh[ahead..(ahead + 4).min(count)] {
                        scorer.prefetch(n);
                    }
                    let group = &s.fresh[start..(start + 4).min(count)];
                    let mut keys = [0f32; 4];
                    if let Ok(&four) = <&[u32; 4]>::try_from(group) {
                        keys = scorer.keys4(four);
                    } else {
                        for (key, &n) in keys.iter_mut().zip(group) {
                            *key = scorer.key(n);
                        }
                    }
                    s.computed += group.len();
                    for (&key, &n) in keys.iter().zip(group) {
                        let full = s.results.len() >= ef;
                        if !full || s.results.peek().is_some_and(|w| key < w.key) {
                            let cand = Candidate { key, slot: n };
                            s.candidates.push(Reverse(cand));
                            if query.walk == Walk::Around || admit(n) {
                                s.results.push(cand);
                                if s.results.len() > ef {
                                    s.results.pop();
                                }
                            }
                        }
                    }
                }
                // The sketches the next expansion will check: its links were prefetched at the
                // start of this one, so they are in cache now.
                if let (Some((_, per_node)), Some(Reverse(next))) = (skip, s.candidates.peek()) {
                    for &n in view.neighbours(next.slot) {
                        if s.visited[n as usize] != s.epoch {
                            crate::distance::prefetch(std::slice::from_ref(&per_node[n as usize]));
                        }
                    }
                }
            }
            let mut out: Vec<Candidate> = s.results.drain().collect();
            out.sort_unstable();
            (out, s.computed)
        })
    }

    /// The `ef` closest admitted nodes to a query as `scorer` keys them, closest first, and
    /// how many keys were computed on the way. `sketch_of` is the query's own vector, whose
    /// sketch lets the walk skip far neighbours, or `None` to walk without sketches.
    pub fn search(
        &self,
        sketch_of: Option<&[f32]>,
        ef: usize,
        scorer: &impl Scorer,
        admit: &impl Fn(u32) -> bool,
        walk: Walk,
    ) -> (Vec<Candidate>, usize) {
        if self.entry == NONE {
            return (Vec::new(), 0);
        }
        let mut ep = Candidate {
            key: scorer.key(self.entry),
            slot: self.entry,
        };
        for layer in (1..=self.max_level).rev() {
            ep = self.greedy(scorer, ep, layer);
        }
        let query = Query {
            sketch: sketch_of.and_then(|v| self.query_sketch(v)),
            walk,
        };
        self.search_layer(query, &[ep], ef, 0, scorer, admit)
    }

    /// The sketch of a query vector, for graphs that keep sketches of their nodes.
    pub fn query_sketch(&self, query: &[f32]) -> Option<Sketch> {
        self.sketches.as_ref().map(|s| {
            SCRATCH.with(|scratch| {
                s.sketcher
                    .sketch_into(query, &mut scratch.borrow_mut().rotated)
            })
        })
    }

    /// A graph over the nodes for which `new_slot[old]` is not `NONE`, renumbered. Lists that
    /// lose dropped neighbours are refilled from the neighbours of those neighbours, then pruned
    /// with the heuristic. `space` addresses old slots.
    pub fn remapped<S: Space>(&self, new_slot: &[u32], space: &S) -> Graph {
        let live = |s: u32| new_slot[s as usize] != NONE;
        let order = self.live_in_new_order(new_slot);
        let mut g = self.unlinked_copy(&order);
        for &old in &order {
            let new = new_slot[old as usize];
            let base = space.vector(old).to_vec();
            for layer in 0..=self.levels[old as usize] {
                let keep = self.refilled(old, layer, &base, &live, space);
                let mapped: Vec<u32> = keep.iter().map(|&n| new_slot[n as usize]).collect();
                g.set_neighbours(new, layer, &mapped);
            }
        }
        // The entry point: the old one if it survives, else the highest live node.
        let entry_old = if self.entry != NONE && live(self.entry) {
            Some(self.entry)
        } else {
            order
                .iter()
                .copied()
                .max_by_key(|&s| self.levels[s as usize])
        };
        if let Some(e) = entry_old {
            g.entry = new_slot[e as usize];
            g.max_level = self.levels[e as usize];
        }
        g
    }

    /// Placed rather than sorted, as new slots number the live nodes from 0: no sort's log factor.
    fn live_in_new_order(&self, new_slot: &[u32]) -> Vec<u32> {
        let mut order = vec![NONE; self.len()];
        for (old, &new) in new_slot.iter().enumerate().take(self.len()) {
            if new != NONE {
                order[new as usize] = old as u32;
            }
        }
        order.retain(|&old| old != NONE);
        order
    }

    /// Every node must exist before a list naming it is set, so nodes are copied before links.
    fn unlinked_copy(&self, order: &[u32]) -> Graph {
        let mut g = Graph::new(self.params);
        g.rng = self.rng;
        for &old in order {
            g.push_node(self.levels[old as usize]);
        }
        if let Some(to) = &mut g.sketches {
            let from = self.sketches();
            debug_assert_eq!(from.len(), self.len(), "a sketched graph has one per node");
            to.per_node
                .owned()
                .extend(order.iter().map(|&old| from[old as usize]));
        }
        g
    }

    /// A list that lost members is refilled from two hops away, or compaction would thin the graph.
    fn refilled<S: Space>(
        &self,
        old: u32,
        layer: u8,
        base: &[f32],
        live: &impl Fn(u32) -> bool,
        space: &S,
    ) -> Vec<u32> {
        let current = self.neighbours(old, layer);
        let keep: Vec<u32> = current.iter().copied().filter(|&n| live(n)).collect();
        if keep.len() == current.len() {
            return keep;
        }
        // Two-hop candidates through the dropped neighbours.
        let mut cands: Vec<u32> = keep;
        for &gone in current.iter().filter(|&&n| !live(n)) {
            cands.extend(
                self.neighbours(gone, layer)
                    .iter()
                    .copied()
                    .filter(|&n| live(n) && n != old),
            );
        }
        cands.sort_unstable();
        cands.dedup();
        let mut scored: Vec<Candidate> = cands
            .into_iter()
            .map(|n| Candidate {
                key: space.key_to(base, n),
                slot: n,
            })
            .collect();
        scored.sort_unstable();
        self.select((old, base), &scored, self.capacity(layer), space)
            .iter()
            .map(|c| c.slot)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Vectors in a plain `Vec`, compared by squared Euclidean distance, or for unit vectors
    /// by cosine similarity (the key `-cos`, as sketches expect).
    struct Plain {
        dim: usize,
        data: Vec<f32>,
        cosine: bool,
    }

    impl Space for Plain {
        fn key_to(&self, query: &[f32], slot: u32) -> f32 {
            let v = self.vector(slot);
            match self.cosine {
                true => -query.iter().zip(v).map(|(a, b)| a * b).sum::<f32>(),
                false => query.iter().zip(v).map(|(a, b)| (a - b) * (a - b)).sum(),
            }
        }
        fn keys_to4(&self, query: &[f32], slots: [u32; 4]) -> [f32; 4] {
            slots.map(|s| self.key_to(query, s))
        }
        fn vector(&self, slot: u32) -> &[f32] {
            &self.data[slot as usize * self.dim..][..self.dim]
        }
        fn prefetch(&self, _: u32) {}
    }

    /// A graph over `n` pseudo-random points, inserted one by one; `sketched`, over unit
    /// vectors by cosine similarity with sketches of its nodes.
    fn sketched_graph(n: usize, dim: usize, sketched: bool) -> (Graph, Plain) {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut data: Vec<f32> = (0..n * dim)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 40) as f32 / (1u64 << 24) as f32 - f32::from(u8::from(sketched)) * 0.5
            })
            .collect();
        if sketched {
            for v in data.chunks_exact_mut(dim) {
                crate::distance::normalize(v);
            }
        }
        let space = Plain {
            dim,
            data,
            cosine: sketched,
        };
        let graph = inserted_one_by_one(
            GraphParams {
                m: 8,
                ef_construction: 64,
                sketch_dim: sketched.then_some(dim),
            },
            &space,
            n,
        );
        (graph, space)
    }

    /// A graph of `params` over the first `n` points of `space`, inserted one by one.
    fn inserted_one_by_one(params: GraphParams, space: &Plain, n: usize) -> Graph {
        let mut graph = Graph::new(params);
        let levels = graph.draw_levels(n);
        for (slot, level) in levels.into_iter().enumerate() {
            let plan = graph.plan(slot as u32, level, space, &|_| true);
            graph.commit(slot as u32, plan, &[], space);
        }
        graph
    }

    #[test]
    fn copies_of_a_vector_stay_linked_to_the_rest_of_a_sparse_graph() {
        // With two links per node, copies stored first would fill one another's lists and
        // keep them when later nodes link to them: the copies must still lead to the rest,
        // be reachable, and be found by a search at their vector.
        let (dim, n, copies) = (4, 400, 9);
        let (_, random) = sketched_graph(n, dim, false);
        let copy = random.vector(7).to_vec();
        let mut data = copy.repeat(copies);
        data.extend_from_slice(&random.data);
        let space = Plain {
            dim,
            data,
            cosine: false,
        };
        let params = GraphParams {
            m: 2,
            ef_construction: 32,
            sketch_dim: None,
        };
        let graph = inserted_one_by_one(params, &space, copies + n);
        let is_copy = |s: usize| s < copies || s == copies + 7;
        let reached_from = |start: u32| {
            let mut seen = vec![false; graph.len()];
            let mut todo = vec![start];
            while let Some(node) = todo.pop() {
                if !std::mem::replace(&mut seen[node as usize], true) {
                    todo.extend_from_slice(graph.neighbours(node, 0));
                }
            }
            seen
        };
        let from_copy = reached_from(4);
        let beyond = (0..graph.len())
            .filter(|&s| !is_copy(s) && from_copy[s])
            .count();
        assert!(
            beyond > n / 2,
            "the copies lead to {beyond} other nodes only"
        );
        let from_entry = reached_from(graph.entry);
        let lost: Vec<usize> = (0..graph.len())
            .filter(|&s| is_copy(s) && !from_entry[s])
            .collect();
        assert!(lost.is_empty(), "copies unreachable on layer 0: {lost:?}");
        let scorer = SpaceQuery {
            space: &space,
            query: &copy,
        };
        let (found, _) = graph.search(Some(&copy), 16, &scorer, &|_| true, Walk::Through);
        let at_copy = found.iter().filter(|c| c.key == 0.0).count();
        assert_eq!(at_copy, copies + 1, "{found:?}");
    }

    #[test]
    fn walking_around_refused_nodes_finds_the_matches_without_scoring_the_rest() {
        // With sketches, refused nodes estimated beyond the worst result are not walked around,
        // and the beam is wider as the engine makes it (`PRUNED_AROUND_WIDER` at 10%).
        for (sketched, dim, around_ef) in [(false, 8, 32), (true, 64, 53)] {
            walk_around_finds_the_matches(sketched_graph(3_000, dim, sketched), around_ef);
        }
    }

    fn walk_around_finds_the_matches((graph, space): (Graph, Plain), around_ef: usize) {
        // One node in ten, spread over the whole graph: most neighbours are refused.
        let admit = |slot: u32| slot % 10 == 3;
        let (mut through_hits, mut around_hits, mut total) = (0, 0, 0);
        let (mut through_scored, mut around_scored) = (0, 0);
        for q in 0..40 {
            let query = space.vector(q * 71 % 3_000).to_vec();
            let mut exact: Vec<Candidate> = (0..3_000u32)
                .filter(|&s| admit(s))
                .map(|slot| Candidate {
                    key: space.key_to(&query, slot),
                    slot,
                })
                .collect();
            exact.sort_unstable();
            let truth: Vec<u32> = exact[..10].iter().map(|c| c.slot).collect();
            for walk in [Walk::Through, Walk::Around] {
                let ef = match walk {
                    Walk::Through => 32,
                    Walk::Around => around_ef,
                };
                let scorer = SpaceQuery {
                    space: &space,
                    query: &query,
                };
                let (found, scored) = graph.search(Some(&query), ef, &scorer, &admit, walk);
                assert!(
                    found.iter().all(|c| admit(c.slot)),
                    "{walk:?} admitted a refused node"
                );
                assert!(found.windows(2).all(|w| w[0].key <= w[1].key));
                let hits = found[..10]
                    .iter()
                    .filter(|c| truth.contains(&c.slot))
                    .count();
                match walk {
                    Walk::Through => {
                        (through_hits, through_scored) =
                            (through_hits + hits, through_scored + scored)
                    }
                    Walk::Around => {
                        (around_hits, around_scored) = (around_hits + hits, around_scored + scored)
                    }
                }
            }
            total += 10;
        }
        let recall = |hits: usize| hits as f64 / total as f64;
        assert!(
            recall(through_hits) >= 0.9,
            "through: {}",
            recall(through_hits)
        );
        assert!(
            recall(around_hits) >= 0.9,
            "around: {}",
            recall(around_hits)
        );
        // Walking around scores admitted nodes only: far fewer distances.
        assert!(
            around_scored * 2 < through_scored,
            "around scored {around_scored}, through {through_scored}"
        );
    }
}
