//! The index of one sparse vector (issue 20): every slot's vector, and for every index (a
//! term, for BM25) the slots whose vectors have a value there, with those values. A search
//! walks the posting lists of the query's indices together, slot by slot, and skips the slots
//! that cannot reach the current top `k` (MaxScore: Turtle and Flood, 1995), so its answer is
//! exact: the `k` best dot products over the shared indices, as a full scan would find them.
//!
//! ## MaxScore in brief
//! Each query index `t` has a bound `b_t = max(0, w_t * max value in its list, w_t * min)`
//! on what it adds to any slot. Lists are ordered by bound, smallest first. Once the top `k` is
//! full with worst score `θ`, the longest prefix of lists whose bounds sum below `θ` is
//! *non-essential*: a slot found only in them cannot enter the top `k`. Candidates come from the
//! essential lists alone; the non-essential ones are looked up (by galloping search) only while
//! the candidate's partial score plus their remaining bounds still reaches `θ`. As `θ` rises,
//! more lists become non-essential, which is what makes long lists of common terms cheap.
//!
//! The essential lists are read a window of slots at a time, each in a tight loop adding into
//! one accumulator per slot of the window; the window's slots are then taken in order from a
//! bitmap. Stepping every essential list for every candidate instead cost the queries of many
//! common words (the long tail of BM25 over short texts) most of their time.
//!
//! Scores of the candidates kept are computed again from the slot's stored vector, in index
//! order, so a score does not depend on which path (this search, a filtered scan, a re-score of
//! a prefetch) found it.
//!
//! Removed slots (deleted or overwritten points) stay in the lists until the engine compacts
//! (`rebuilt`), and are skipped; the document frequencies that IDF needs count live slots only.

use std::collections::HashMap;

use super::topk::{Candidate, TopK};
use crate::point::sparse_dot;

/// The slots with a value at one index, ascending, with those values.
#[derive(Debug, Default)]
struct Posting {
    slots: Vec<u32>,
    values: Vec<f32>,
    /// Largest and smallest value stored. Kept when a slot is removed: still bounds, only looser
    /// until the next rebuild.
    max: f32,
    min: f32,
    /// Live slots in the list: the document frequency of the index.
    live: u32,
}

/// One sparse vector of every slot, and its inverted index. Single-threaded, no I/O.
#[derive(Debug, Default)]
pub(crate) struct SparseIndex {
    /// Slot `s`'s components are `indices[starts[s]..starts[s + 1]]` (and `values` alike); a
    /// slot without this vector has none.
    starts: Vec<usize>,
    indices: Vec<u32>,
    values: Vec<f32>,
    /// Slots removed since the last rebuild.
    removed: Vec<bool>,
    /// Live slots with a non-empty vector: the `N` of IDF.
    live: usize,
    postings: HashMap<u32, Posting>,
}

impl SparseIndex {
    pub fn new() -> Self {
        SparseIndex {
            starts: vec![0],
            ..SparseIndex::default()
        }
    }

    /// Slots known, with or without a vector.
    pub fn slots(&self) -> usize {
        self.starts.len() - 1
    }

    /// Live slots with a non-empty vector.
    pub fn live(&self) -> usize {
        self.live
    }

    /// Live slots whose vectors have a value at `index`.
    pub fn document_frequency(&self, index: u32) -> usize {
        self.postings.get(&index).map_or(0, |p| p.live as usize)
    }

    /// Appends slot `slot`'s vector, sorted indices and their values (none: the point has no
    /// such vector). Slots come in order; skipped slots get no vector.
    pub fn push(&mut self, slot: u32, indices: &[u32], values: &[f32]) {
        let slot = slot as usize;
        debug_assert!(slot >= self.slots(), "slots are appended in order");
        while self.slots() < slot {
            self.starts.push(self.indices.len());
            self.removed.push(false);
        }
        debug_assert!(indices.len() == values.len() && indices.is_sorted());
        self.indices.extend_from_slice(indices);
        self.values.extend_from_slice(values);
        for (&index, &value) in indices.iter().zip(values) {
            let p = self.postings.entry(index).or_insert_with(|| Posting {
                max: value,
                min: value,
                ..Posting::default()
            });
            p.slots.push(slot as u32);
            p.values.push(value);
            p.max = p.max.max(value);
            p.min = p.min.min(value);
            p.live += 1;
        }
        self.live += usize::from(!indices.is_empty());
        self.starts.push(self.indices.len());
        self.removed.push(false);
    }

    /// Slot `slot`'s vector, as sorted indices and their values (both empty when it has none).
    pub fn get(&self, slot: u32) -> (&[u32], &[f32]) {
        match self.starts.get(slot as usize..=slot as usize + 1) {
            Some(&[a, b]) => (&self.indices[a..b], &self.values[a..b]),
            _ => (&[], &[]),
        }
    }

    /// Marks a slot's vector removed: it leaves the document frequencies and searches.
    pub fn remove(&mut self, slot: u32) {
        let Some(removed) = self.removed.get_mut(slot as usize) else {
            return;
        };
        if std::mem::replace(removed, true) {
            return;
        }
        let (a, b) = (self.starts[slot as usize], self.starts[slot as usize + 1]);
        for index in &self.indices[a..b] {
            if let Some(p) = self.postings.get_mut(index) {
                p.live -= 1;
            }
        }
        self.live -= usize::from(b > a);
    }

    /// A new index holding the vectors of the slots `order` lists, which become slots 0, 1, ...
    /// (compaction: removed slots leave, the bounds tighten).
    pub fn rebuilt(&self, order: impl IntoIterator<Item = u32>) -> SparseIndex {
        let mut fresh = SparseIndex::new();
        for (new, old) in order.into_iter().enumerate() {
            let (indices, values) = self.get(old);
            fresh.push(new as u32, indices, values);
        }
        fresh
    }

    /// The dot product of slot `slot`'s vector with a query (sorted indices, their weights), or
    /// `None` when it is 0: Qdrant returns no point of score 0 from a sparse search (checked
    /// with Qdrant Edge: shared indices whose products cancel out, or are zero, find nothing).
    pub fn score(&self, slot: u32, indices: &[u32], weights: &[f32]) -> Option<f32> {
        let (si, sv) = self.get(slot);
        sparse_dot(si, sv, indices, weights).filter(|&score| score != 0.0)
    }

    /// The `k` live slots with the largest non-zero dot products with the query (sorted
    /// indices, their weights) that `admit` lets in, best first, as candidates
    /// keyed by the negated score; and how many slots were scored.
    pub fn search(
        &self,
        indices: &[u32],
        weights: &[f32],
        k: usize,
        admit: &dyn Fn(u32) -> bool,
    ) -> (Vec<Candidate>, usize) {
        let mut lists: Vec<List> = indices
            .iter()
            .zip(weights)
            .filter_map(|(index, &weight)| {
                let p = self.postings.get(index)?;
                (p.live > 0).then(|| List {
                    slots: &p.slots,
                    values: &p.values,
                    at: 0,
                    weight,
                    bound: (weight * p.max).max(weight * p.min).max(0.0),
                })
            })
            .collect();
        lists.sort_by(|a, b| a.bound.total_cmp(&b.bound));
        // below[i]: the sum of the bounds of lists[..i].
        let below: Vec<f64> = std::iter::once(0.0)
            .chain(lists.iter().scan(0f64, |sum, l| {
                *sum += f64::from(l.bound);
                Some(*sum)
            }))
            .collect();
        let mut top = TopK::new(k);
        // The worst score in a full top `k` (`-inf` before), and the first essential list.
        let (mut floor, mut first) = (f64::NEG_INFINITY, 0);
        let mut scored = 0;
        if k == 0 {
            return (Vec::new(), 0);
        }
        // A floor before the walk: the slots of the short lists of the strongest indices
        // (rare words, for BM25) are scored first, so that the lists of common words can be
        // skipped from the start rather than once the walk has found `k` good slots. The walk
        // then passes over those slots.
        let mut seeded: Vec<u32> = Vec::new();
        for l in lists.iter().rev().take(SEED_LISTS) {
            if l.slots.len() <= SEED_LIST_LEN && seeded.len() + l.slots.len() <= SEED_LIST_LEN {
                seeded.extend_from_slice(l.slots);
            }
        }
        seeded.sort_unstable();
        seeded.dedup();
        for &slot in &seeded {
            if self.removed[slot as usize] || !admit(slot) {
                continue;
            }
            scored += 1;
            if let Some(score) = self.score(slot, indices, weights) {
                top.push(Candidate { key: -score, slot });
            }
        }
        let lists_len = lists.len();
        let raise = |top: &TopK, floor: &mut f64, first: &mut usize| {
            if let Some(worst) = top.worst_when_full() {
                *floor = f64::from(-worst);
                while *first < lists_len && below_floor(below[*first + 1], *floor) {
                    *first += 1;
                }
            }
        };
        raise(&top, &mut floor, &mut first);
        let mut next_seeded = 0;
        // The essential lists are walked a window of slots at a time: their values are added
        // into one accumulator per slot (a tight loop per list, rather than a step of every
        // list per slot), then the window's slots are taken in order, each probed in the
        // non-essential lists and scored as MaxScore does. Which lists are essential is fixed
        // for a window (its accumulators hold their values); a floor raised within it takes
        // effect in the pruning at once and in the lists from the next window.
        let mut sums = vec![0f64; WINDOW as usize];
        let mut hit = [0u64; WINDOW as usize / 64];
        while let Some(low) = lists[first..].iter().filter_map(List::current).min() {
            let high = low.saturating_add(WINDOW);
            let essential = first;
            for l in &mut lists[essential..] {
                while let Some(&slot) = l.slots.get(l.at).filter(|&&s| s < high) {
                    let at = (slot - low) as usize;
                    sums[at] += f64::from(l.weight * l.values[l.at]);
                    hit[at / 64] |= 1 << (at % 64);
                    l.at += 1;
                }
            }
            for (word, bits) in hit.iter_mut().enumerate() {
                while *bits != 0 {
                    let at = word * 64 + bits.trailing_zeros() as usize;
                    *bits &= *bits - 1;
                    let partial = std::mem::take(&mut sums[at]);
                    let slot = low + at as u32;
                    // Slots arrive in increasing order: the seeded ones are passed by a cursor.
                    while seeded.get(next_seeded).is_some_and(|&s| s < slot) {
                        next_seeded += 1;
                    }
                    if seeded.get(next_seeded) == Some(&slot) {
                        continue;
                    }
                    if !reaches(&mut lists[..essential], &below, slot, partial, floor)
                        || self.removed[slot as usize]
                        || !admit(slot)
                    {
                        continue;
                    }
                    scored += 1;
                    let Some(score) = self.score(slot, indices, weights) else {
                        continue;
                    };
                    // `push` orders equal scores by slot, as a scan in slot order would: the
                    // seeded slots came first, out of that order.
                    top.push(Candidate { key: -score, slot });
                    raise(&top, &mut floor, &mut first);
                }
            }
        }
        (top.into_sorted(), scored)
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        let postings: usize = self
            .postings
            .values()
            .map(|p| p.slots.capacity() * 4 + p.values.capacity() * 4 + size_of::<Posting>() + 4)
            .sum();
        self.starts.capacity() * size_of::<usize>()
            + self.indices.capacity() * 4
            + self.values.capacity() * 4
            + self.removed.capacity()
            + postings
    }
}

/// The indexes of the declared sparse vectors, in name order. A list rather than a map: a
/// database declares a few, and a map's code is kilobytes of wasm.
#[derive(Debug, Default)]
pub(crate) struct SparseIndexes(Vec<(String, SparseIndex)>);

impl SparseIndexes {
    /// Empty indexes for these names (ascending).
    pub fn new<'a>(names: impl Iterator<Item = &'a String>) -> Self {
        SparseIndexes(names.map(|n| (n.clone(), SparseIndex::new())).collect())
    }

    pub fn get(&self, name: &str) -> Option<&SparseIndex> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, i)| i)
    }

    pub fn get_mut(&mut self, name: &str) -> Option<&mut SparseIndex> {
        self.0.iter_mut().find(|(n, _)| n == name).map(|(_, i)| i)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(n, _)| n.as_str())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &SparseIndex)> {
        self.0.iter().map(|(n, i)| (n.as_str(), i))
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&str, &mut SparseIndex)> {
        self.0.iter_mut().map(|(n, i)| (n.as_str(), i))
    }
}

/// The sparse vectors section of a segment: the vectors of `slots` (the segment's rows, in
/// order) under each index, by name (FORMAT.md):
///
/// ```text
/// count u32, then per sparse vector, in name order:
///   name_len u32 | name (UTF-8), zero-padded to 4 bytes | entries u64
///   starts (rows + 1) x u64 | indices entries x u32 | values entries x f32
/// ```
pub(crate) fn section(indexes: &SparseIndexes, slots: &[u32]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(indexes.0.len() as u32).to_le_bytes());
    for (name, index) in indexes.iter() {
        out.extend_from_slice(&(name.len() as u32).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.resize(out.len().next_multiple_of(4), 0);
        let entries: usize = slots.iter().map(|&s| index.get(s).0.len()).sum();
        out.extend_from_slice(&(entries as u64).to_le_bytes());
        let mut start = 0u64;
        out.extend_from_slice(&start.to_le_bytes());
        for &slot in slots {
            start += index.get(slot).0.len() as u64;
            out.extend_from_slice(&start.to_le_bytes());
        }
        for &slot in slots {
            index
                .get(slot)
                .0
                .iter()
                .for_each(|i| out.extend_from_slice(&i.to_le_bytes()));
        }
        for &slot in slots {
            index
                .get(slot)
                .1
                .iter()
                .for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
        }
    }
    out
}

/// One sparse vector of a segment's rows, as read back from its section.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct StoredSparse {
    pub name: String,
    /// Row `r`'s entries are `starts[r]..starts[r + 1]`.
    pub starts: Vec<usize>,
    pub indices: Vec<u32>,
    pub values: Vec<f32>,
}

impl StoredSparse {
    /// Reads a sparse vectors [`section`] of `rows` rows, checking everything a search relies
    /// on (names unique and not empty, starts ascending within the entries, each row's indices
    /// ascending, values finite); an error is the offset of the damage and what it is.
    pub fn parse(bytes: &[u8], rows: usize) -> std::result::Result<Vec<Self>, (usize, String)> {
        if bytes.is_empty() {
            return Ok(Vec::new()); // no sparse vectors (and version 5 and before)
        }
        let mut at = 0usize;
        let mut take = |n: usize, what: &str| -> std::result::Result<&[u8], (usize, String)> {
            let piece = at
                .checked_add(n)
                .and_then(|end| bytes.get(at..end))
                .ok_or_else(|| (at, format!("sparse vectors: {what} runs past the section")))?;
            at += n;
            Ok(piece)
        };
        let word = |b: &[u8]| u32::from_le_bytes(b.try_into().expect("4 bytes"));
        let long = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
        let count = word(take(4, "the count")?);
        let mut stored: Vec<StoredSparse> = Vec::new();
        for _ in 0..count {
            let name_len = word(take(4, "a name's length")?) as usize;
            let name = take(name_len.next_multiple_of(4), "a name")?;
            let name = std::str::from_utf8(&name[..name_len])
                .ok()
                .filter(|n| !n.is_empty() && !stored.iter().any(|s| s.name == *n))
                .ok_or_else(|| {
                    (
                        0,
                        "sparse vectors: a name is empty, repeated or not UTF-8".to_owned(),
                    )
                })?
                .to_owned();
            let entries = usize::try_from(long(take(8, "the entry count")?))
                .map_err(|_| (0, "sparse vectors: too many entries".to_owned()))?;
            let bad = |what: &str| (0, format!("sparse vectors: {name}: {what}"));
            let starts_bytes = rows
                .checked_add(1)
                .and_then(|n| n.checked_mul(8))
                .ok_or_else(|| bad("too many rows"))?;
            let starts: Vec<usize> = take(starts_bytes, "the starts")?
                .chunks_exact(8)
                .map(|b| usize::try_from(long(b)).unwrap_or(usize::MAX))
                .collect();
            let sound = starts.first() == Some(&0)
                && starts.last() == Some(&entries)
                && starts.windows(2).all(|w| w[0] <= w[1]);
            if !sound {
                return Err(bad("row starts are out of order"));
            }
            let n = entries
                .checked_mul(4)
                .ok_or_else(|| bad("too many entries"))?;
            let indices: Vec<u32> = take(n, "the indices")?.chunks_exact(4).map(word).collect();
            let values: Vec<f32> = take(n, "the values")?
                .chunks_exact(4)
                .map(|b| f32::from_bits(word(b)))
                .collect();
            if !starts
                .windows(2)
                .all(|w| indices[w[0]..w[1]].windows(2).all(|p| p[0] < p[1]))
            {
                return Err(bad("a row's indices are not ascending"));
            }
            if !values.iter().all(|v| v.is_finite()) {
                return Err(bad("a value is not finite"));
            }
            stored.push(StoredSparse {
                name,
                starts,
                indices,
                values,
            });
        }
        if at != bytes.len() {
            return Err((at, "sparse vectors: bytes after the last vector".to_owned()));
        }
        Ok(stored)
    }
}

impl SparseIndex {
    /// The index of a segment's rows (slots 0, 1, ...).
    pub fn from_stored(stored: &StoredSparse) -> SparseIndex {
        let mut index = SparseIndex::new();
        for (row, w) in stored.starts.windows(2).enumerate() {
            index.push(
                row as u32,
                &stored.indices[w[0]..w[1]],
                &stored.values[w[0]..w[1]],
            );
        }
        index
    }

    /// Makes the index know `slots` slots, those it did not know getting no vector.
    pub fn extend_to(&mut self, slots: usize) {
        if slots > self.slots() {
            self.push(slots as u32 - 1, &[], &[]);
        }
    }
}

/// How many of the strongest query indices seed the floor, and the most slots they may bring.
/// Measured on the WordNet passages (BM25, top 10, one thread, A/B in one run): seeding 2
/// lists of up to 256 slots took p50 from 131 to 102 us (p99 unchanged, 735 and 729 us); up to
/// 4,096 slots it was slower than none (182 against 111 us): scoring long lists costs more than
/// the floor saves.
const SEED_LISTS: usize = 2;
/// Slots per window of the essential lists' walk: 32 KiB of accumulators, in the L1 cache.
const WINDOW: u32 = 4096;
/// See [`SEED_LISTS`].
const SEED_LIST_LEN: usize = 256;

/// Whether a slot whose essential lists add up to `partial` may still beat `floor`: the
/// non-essential `lists` (smallest bound first, `below[i + 1]` the sum of the bounds of
/// `lists[..=i]`) are looked up from the largest bound down while it may.
fn reaches(lists: &mut [List], below: &[f64], slot: u32, mut partial: f64, floor: f64) -> bool {
    for i in (0..lists.len()).rev() {
        if below_floor(partial + below[i + 1], floor) {
            return false;
        }
        let l = &mut lists[i];
        l.seek(slot);
        if l.current() == Some(slot) {
            partial += f64::from(l.weight * l.values[l.at]);
        }
    }
    !below_floor(partial, floor)
}

/// Whether a score bounded by `bound` cannot beat `floor`. The bound sums the terms in another
/// order (and width) than the score, so it is trusted only past a margin of rounding.
fn below_floor(bound: f64, floor: f64) -> bool {
    bound + 1e-5 * (bound.abs() + floor.abs()) + 1e-30 < floor
}

/// A cursor in one query index's posting list.
struct List<'a> {
    slots: &'a [u32],
    values: &'a [f32],
    at: usize,
    weight: f32,
    bound: f32,
}

impl List<'_> {
    fn current(&self) -> Option<u32> {
        self.slots.get(self.at).copied()
    }

    /// Moves to the first slot at or after `slot`: galloping, then a binary search, so a long
    /// list is crossed in a logarithmic number of steps per lookup.
    fn seek(&mut self, slot: u32) {
        let rest = &self.slots[self.at..];
        let mut step = 1;
        while step < rest.len() && rest[step] < slot {
            step *= 2;
        }
        let end = (step + 1).min(rest.len());
        self.at += rest[..end].partition_point(|&s| s < slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::point::SparseVector;

    /// SplitMix64: seeded, platform-independent.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// A vector over a Zipf-like vocabulary of `terms` (low indices common, as words are), with
    /// values of either sign when `signed`.
    fn random_vector(rng: &mut Rng, terms: u64, signed: bool) -> SparseVector {
        let n = rng.below(12);
        let mut pairs = std::collections::BTreeMap::new();
        for _ in 0..n {
            let a = rng.below(terms) + 1;
            let index = (rng.below(a) + 1) as u32; // skewed toward small indices
            let mut value = (rng.below(1000) as f32 + 1.0) / 250.0;
            if signed && rng.below(4) == 0 {
                value = -value;
            }
            pairs.insert(index, value);
        }
        SparseVector::new(
            pairs.keys().copied().collect(),
            pairs.values().copied().collect(),
        )
        .unwrap()
    }

    /// The brute-force answer: every live admitted slot sharing an index, by score.
    fn exact(
        index: &SparseIndex,
        removed: &[bool],
        q: &SparseVector,
        k: usize,
        admit: &dyn Fn(u32) -> bool,
    ) -> Vec<Candidate> {
        let mut top = TopK::new(k);
        for slot in 0..index.slots() as u32 {
            if removed[slot as usize] || !admit(slot) {
                continue;
            }
            if let Some(score) = index.score(slot, q.indices(), q.values()) {
                top.push(Candidate { key: -score, slot });
            }
        }
        top.into_sorted()
    }

    #[test]
    fn maxscore_finds_exactly_what_a_scan_finds() {
        let mut rng = Rng(20);
        for round in 0..40 {
            let signed = round % 2 == 1;
            let terms = [5, 40, 400][round % 3];
            let mut index = SparseIndex::new();
            let mut removed = Vec::new();
            // Some indexes span several windows of the walk (`WINDOW` slots each).
            let slots = match round % 4 {
                3 => 2 * WINDOW + rng.below(u64::from(2 * WINDOW)) as u32,
                _ => 300 + rng.below(700) as u32,
            };
            let mut slot = 0;
            while slot < slots {
                // Some slots carry no vector, and some slot numbers are skipped.
                slot += u32::from(rng.below(10) == 0);
                let v = match rng.below(8) {
                    0 => SparseVector::default(),
                    _ => random_vector(&mut rng, terms, signed),
                };
                index.push(slot, v.indices(), v.values());
                slot += 1;
            }
            removed.resize(index.slots(), false);
            for _ in 0..rng.below(100) {
                let s = rng.below(index.slots() as u64) as u32;
                index.remove(s);
                removed[s as usize] = true;
            }
            for _ in 0..30 {
                let q = random_vector(&mut rng, terms, signed);
                let k = [1, 3, 10, 50][rng.below(4) as usize];
                let modulo = 1 + rng.below(4) as u32;
                let admit = move |s: u32| s.is_multiple_of(modulo);
                let (found, _) = index.search(q.indices(), q.values(), k, &admit);
                assert_eq!(
                    found,
                    exact(&index, &removed, &q, k, &admit),
                    "round {round}, q {q:?}"
                );
            }
        }
    }

    #[test]
    fn pruning_skips_most_of_a_common_terms_list() {
        // Term 1 is in every vector with a small value; term 2 in ten with large ones. Once
        // five of those are found, term 1's list can no longer lift a slot into the top 5.
        let mut index = SparseIndex::new();
        for slot in 0..10_000u32 {
            let v = match slot % 10 == 0 && slot < 100 {
                true => SparseVector::new(vec![1, 2], vec![0.01, 5.0]),
                false => SparseVector::new(vec![1], vec![0.01]),
            };
            let v = v.unwrap();
            index.push(slot, v.indices(), v.values());
        }
        let (found, scored) = index.search(&[1, 2], &[1.0, 1.0], 5, &|_| true);
        let slots: Vec<u32> = found.iter().map(|c| c.slot).collect();
        assert_eq!(slots, vec![0, 10, 20, 30, 40]);
        assert!(scored < 100, "scored {scored} of 10,000 slots");
    }

    #[test]
    fn document_frequencies_count_live_slots_and_rebuild_renumbers() {
        let mut index = SparseIndex::new();
        index.push(0, &[1, 2], &[1.0, 1.0]);
        index.push(1, &[2], &[1.0]);
        index.push(3, &[2, 3], &[1.0, 1.0]);
        assert_eq!(
            (index.document_frequency(2), index.live(), index.slots()),
            (3, 3, 4)
        );
        index.remove(1);
        index.remove(1); // twice is once
        assert_eq!((index.document_frequency(2), index.live()), (2, 2));
        let fresh = index.rebuilt([0, 3]);
        assert_eq!(
            (fresh.slots(), fresh.live(), fresh.document_frequency(2)),
            (2, 2, 2)
        );
        assert_eq!(fresh.get(1), (&[2, 3][..], &[1.0, 1.0][..]));
        let (found, _) = fresh.search(&[3], &[2.0], 10, &|_| true);
        assert_eq!((found.len(), found[0].slot, found[0].key), (1, 1, -2.0));
        assert!(index.bytes() > 0);
    }

    #[test]
    fn a_section_reads_back_the_same_vectors_and_refuses_damage() {
        let mut text = SparseIndex::new();
        text.push(0, &[1, 9], &[0.5, 2.0]);
        text.push(2, &[3], &[-1.0]);
        text.push(3, &[1], &[4.0]);
        let mut other = SparseIndex::new();
        other.extend_to(4);
        let indexes = SparseIndexes(vec![("ab".to_owned(), other), ("text".to_owned(), text)]);
        // Rows in another order than the slots, one slot left out.
        let bytes = section(&indexes, &[3, 0, 2]);
        let stored = StoredSparse::parse(&bytes, 3).unwrap();
        assert_eq!(stored.len(), 2);
        let text = SparseIndex::from_stored(&stored[1]);
        assert_eq!(
            (stored[1].name.as_str(), text.slots(), text.live()),
            ("text", 3, 3)
        );
        assert_eq!(text.get(0), (&[1][..], &[4.0][..]));
        assert_eq!(text.get(1), (&[1, 9][..], &[0.5, 2.0][..]));
        assert_eq!(text.get(2), (&[3][..], &[-1.0][..]));
        assert_eq!(SparseIndex::from_stored(&stored[0]).live(), 0);
        assert_eq!(StoredSparse::parse(&[], 3).unwrap(), Vec::new());
        // Every cut is refused, and so is a wrong row count.
        for cut in 0..bytes.len() {
            assert!(
                StoredSparse::parse(&bytes[..cut], 3).is_err() || cut == 0,
                "cut {cut}"
            );
        }
        assert!(StoredSparse::parse(&bytes, 2).is_err());
        // A flipped bit either still reads as sound vectors or is refused; never a panic.
        for i in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[i / 8] ^= 1 << (i % 8);
            if let Ok(stored) = StoredSparse::parse(&damaged, 3) {
                stored
                    .iter()
                    .for_each(|s| drop(SparseIndex::from_stored(s)));
            }
        }
    }

    #[test]
    fn seek_gallops_to_the_first_slot_not_before() {
        let slots: Vec<u32> = (0..100).map(|s| s * 3).collect();
        let values = vec![1.0; 100];
        let mut l = List {
            slots: &slots,
            values: &values,
            at: 0,
            weight: 1.0,
            bound: 1.0,
        };
        for (target, expect) in [
            (0, Some(0)),
            (4, Some(6)),
            (6, Some(6)),
            (200, Some(201)),
            (298, None),
        ] {
            l.seek(target);
            assert_eq!(l.current(), expect);
        }
    }
}
