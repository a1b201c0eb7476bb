//! Payload indexes: for a configured key, each keyword, integer or bool value, each datetime
//! (strings that are timestamps) and each word of a string (full text, lower-cased) -> the
//! slots whose payload holds it. They turn a selective filter into a short list of candidate
//! slots, so the exact search scores only those instead of evaluating the filter on every
//! point. Geo conditions are not indexed: they scan.
//!
//! A checkpoint stores the indexes in its segment (`stored.rs`), and opening uses them in place.
//! An index the segment does not hold (a key configured since, an older segment) is built after
//! open, in the background (opening itself parses no payloads), or by the first filtered search
//! if that comes first. Writes then add to an in-memory part beside the stored one. Entries are
//! never removed: a slot whose payload changed or was deleted stays listed under its old value,
//! which is harmless because candidates are always checked against the whole filter; compaction
//! rebuilds the indexes from scratch, and a checkpoint stores them without dead slots.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use serde_json::Value;

use crate::filter::{parse_datetime, words, Condition, Filter, KeyPath, Match, MatchValue, Range};
use crate::point::Payload;

mod cache;
mod column;
mod stored;
use cache::{Built, Form, Key};
use column::Column;
pub(crate) use column::ColumnFilter;
pub(crate) use stored::StoredIndexes;
use stored::{FieldToStore, StoredField};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum IndexKey {
    Bool(bool),
    Integer(i64),
    Keyword(String),
    /// A timestamp string, in microseconds since the Unix epoch.
    Datetime(i64),
    /// A word of a string, lower-cased.
    Word(String),
}

impl IndexKey {
    fn of_value(v: &Value) -> Option<IndexKey> {
        match v {
            Value::String(s) => Some(IndexKey::Keyword(s.clone())),
            Value::Bool(b) => Some(IndexKey::Bool(*b)),
            Value::Number(n) => n.as_i64().map(IndexKey::Integer),
            _ => None,
        }
    }

    fn of_match(m: &MatchValue) -> IndexKey {
        match m {
            MatchValue::Keyword(s) => IndexKey::Keyword(s.clone()),
            MatchValue::Integer(n) => IndexKey::Integer(*n),
            MatchValue::Bool(b) => IndexKey::Bool(*b),
        }
    }
}

#[derive(Default)]
struct FieldIndex {
    /// The index the segment stored, used in place (its slots are the segment's rows).
    stored: Option<StoredField>,
    /// Entries built here: all of them when built from the payloads, else those of the writes
    /// since the segment was opened.
    slots: BTreeMap<IndexKey, Vec<u32>>,
    /// Some value of the field is a number that is not an `i64`: integer ranges cannot be
    /// answered from the index, which holds only integers.
    has_other_numbers: bool,
    /// Each slot's value, built when a filter first needs it (see `column.rs`).
    column: OnceLock<Column>,
}

impl FieldIndex {
    fn from_stored(stored: StoredField) -> Self {
        FieldIndex {
            has_other_numbers: stored.has_other_numbers,
            stored: Some(stored),
            ..FieldIndex::default()
        }
    }

    fn build<'a>(key: &KeyPath, payloads: impl Iterator<Item = (u32, &'a Payload)>) -> Self {
        let mut built = FieldIndex::default();
        for (slot, payload) in payloads {
            built.add(key, slot, payload);
        }
        built
    }

    fn add(&mut self, key: &KeyPath, slot: u32, payload: &Payload) {
        if let Some(column) = self.column.get_mut() {
            column.add(key, slot, payload);
        }
        key.for_each_leaf(payload, &mut |v| {
            match IndexKey::of_value(v) {
                Some(k) => self.insert(k, slot),
                None => self.has_other_numbers |= v.is_number(),
            }
            if let Value::String(s) = v {
                if let Some(t) = parse_datetime(s) {
                    self.insert(IndexKey::Datetime(t), slot);
                }
                for word in words(s) {
                    self.insert(IndexKey::Word(lower(word)), slot);
                }
            }
        });
    }

    fn insert(&mut self, key: IndexKey, slot: u32) {
        let list = self.slots.entry(key).or_default();
        if list.last() != Some(&slot) {
            list.push(slot);
        }
    }

    /// The lists under `key` (stored and added since).
    fn list(&self, key: &IndexKey) -> Vec<&[u32]> {
        let stored = self.stored.as_ref().and_then(|s| s.get(key.as_key_ref()));
        let added = self.slots.get(key).map(Vec::as_slice);
        stored.into_iter().chain(added).collect()
    }

    /// The column of the field over `slots` slots, built on first use.
    fn column(&self, slots: usize) -> &Column {
        self.column
            .get_or_init(|| Column::build(self.entries(), slots))
    }

    /// Every entry, stored then added (a key may come twice).
    fn entries(&self) -> impl Iterator<Item = (IndexKey, &[u32])> {
        let stored = self.stored.iter().flat_map(StoredField::entries);
        let added = self.slots.iter().map(|(k, l)| (k.clone(), l.as_slice()));
        stored.chain(added)
    }

    /// The lists of the entries between two keys, both included.
    fn between(&self, lo: IndexKey, hi: IndexKey) -> Vec<&[u32]> {
        if lo > hi {
            return Vec::new();
        }
        let mut lists: Vec<&[u32]> = self
            .stored
            .iter()
            .flat_map(|s| s.between(lo.as_key_ref(), hi.as_key_ref()))
            .collect();
        lists.extend(self.slots.range(lo..=hi).map(|(_, s)| s.as_slice()));
        lists
    }

    /// Every entry with its slots renumbered by `row_of` (dead slots, `NONE`, dropped), as a
    /// new segment stores them.
    fn remapped(&self, row_of: &[u32]) -> BTreeMap<IndexKey, Vec<u32>> {
        let mut all: BTreeMap<IndexKey, Vec<u32>> = BTreeMap::new();
        for (key, list) in self.entries() {
            let rows = list
                .iter()
                .filter_map(|&slot| row_of.get(slot as usize).copied())
                .filter(|&row| row != crate::engine::hnsw::NONE);
            all.entry(key).or_default().extend(rows);
        }
        all.retain(|_, rows| {
            rows.sort_unstable();
            rows.dedup();
            !rows.is_empty()
        });
        all
    }

    fn bytes(&self) -> usize {
        let added: usize = self
            .slots
            .iter()
            .map(|(k, s)| {
                s.capacity() * 4
                    + std::mem::size_of::<(IndexKey, Vec<u32>)>()
                    + match k {
                        IndexKey::Keyword(w) | IndexKey::Word(w) => w.capacity(),
                        _ => 0,
                    }
            })
            .sum();
        added
            + self.stored.as_ref().map_or(0, StoredField::bytes)
            + self.column.get().map_or(0, Column::bytes)
    }

    /// The slot lists holding the values `condition` accepts, and whether they are exactly
    /// its matches (rather than a superset); `None` if this index cannot narrow it down.
    /// Borrowed, so sizing a condition costs no copying.
    fn lists<'s>(&'s self, condition: &Condition) -> Option<(Vec<&'s [u32]>, bool)> {
        let Condition::Field(fc) = condition else {
            return None;
        };
        // A condition of several parts (`match` with `range` or `values_count`) is not one
        // index lookup: its candidates could be taken for exactly its matches (finding D12).
        let parts = [
            fc.r#match.is_some(),
            fc.range.is_some(),
            fc.values_count.is_some(),
            fc.datetime_range.is_some(),
            !fc.geo.is_empty(),
        ];
        if parts.iter().filter(|&&part| part).count() != 1 {
            return None;
        }
        let word_list = |w: &str| self.list(&IndexKey::Word(lower(w)));
        if let Some(m) = &fc.r#match {
            return Some(match m {
                Match::Value(v) => (self.list(&IndexKey::of_match(v)), true),
                Match::Any(vs) => (
                    vs.iter()
                        .flat_map(|v| self.list(&IndexKey::of_match(v)))
                        .collect(),
                    true,
                ),
                // Points holding any of the words: exactly the matches.
                Match::TextAny(q) => (words(q).flat_map(word_list).collect(), true),
                // Points holding the rarest word: all the matches, exactly them for one word.
                Match::Text(q) | Match::Phrase(q) => {
                    let mut distinct: Vec<String> = words(q).map(lower).collect();
                    distinct.sort_unstable();
                    distinct.dedup();
                    let size = |lists: &Vec<&[u32]>| lists.iter().map(|l| l.len()).sum::<usize>();
                    let rarest = distinct.iter().map(|w| word_list(w)).min_by_key(size);
                    let exact = distinct.len() == 1 && matches!(m, Match::Text(_));
                    (rarest.unwrap_or_default(), exact || distinct.is_empty())
                }
                Match::Except(_) => return None,
            });
        }
        if let Some(d) = &fc.datetime_range {
            let [gt, gte, lt, lte] = d.instants();
            let lo = gt.map_or(gte.unwrap_or(i64::MIN), |t| t.saturating_add(1));
            let hi = lt.map_or(lte.unwrap_or(i64::MAX), |t| t.saturating_sub(1));
            let lo = lo.max(gte.unwrap_or(i64::MIN));
            let hi = hi.min(lte.unwrap_or(i64::MAX));
            return Some((
                self.between(IndexKey::Datetime(lo), IndexKey::Datetime(hi)),
                true,
            ));
        }
        match &fc.range {
            Some(r) if !self.has_other_numbers => {
                let (lo, hi) = integer_bounds(r);
                Some((
                    self.between(IndexKey::Integer(lo), IndexKey::Integer(hi)),
                    true,
                ))
            }
            _ => None,
        }
    }
}

/// The smallest and the largest integer within a range's bounds (every bound holds: a range
/// may give both `gt` and `gte`).
fn integer_bounds(r: &Range) -> (i64, i64) {
    let lo = [
        r.gt.map(|gt| (gt.floor() as i64).saturating_add(1)),
        r.gte.map(|gte| gte.ceil() as i64),
    ];
    let hi = [
        r.lt.map(|lt| (lt.ceil() as i64).saturating_sub(1)),
        r.lte.map(|lte| lte.floor() as i64),
    ];
    (
        lo.into_iter().flatten().max().unwrap_or(i64::MIN),
        hi.into_iter().flatten().min().unwrap_or(i64::MAX),
    )
}

/// A column answers for a whole filter when fewer than one slot in this many is unknown to it:
/// each unknown one costs a look at its payload.
const MOSTLY_KNOWN: usize = 64;

/// The slots of `lists` that `keep` accepts as a bitset over `slots` slots.
fn bitset(lists: &[&[u32]], slots: usize, mut keep: impl FnMut(u32) -> bool) -> Vec<u64> {
    let mut bits = vec![0u64; slots.div_ceil(64)];
    for &slot in lists.iter().flat_map(|l| l.iter()).filter(|&&s| keep(s)) {
        if let Some(word) = bits.get_mut(slot as usize / 64) {
            *word |= 1 << (slot % 64);
        }
    }
    bits
}

fn has(bits: &[u64], slot: u32) -> bool {
    bits.get(slot as usize / 64)
        .is_some_and(|w| w & (1 << (slot % 64)) != 0)
}

/// The slots set in `bits`, in order; `count` is a hint of how many.
fn set_slots(bits: &[u64], count: usize) -> Vec<u32> {
    let mut out = Vec::with_capacity(count);
    for (w, &word) in bits.iter().enumerate() {
        let mut word = word;
        while word != 0 {
            out.push((w * 64) as u32 + word.trailing_zeros());
            word &= word - 1;
        }
    }
    out
}

/// A filter's live matches, found by evaluating it on every payload, for a filter no index
/// narrows that is used again (see [`PayloadIndexes::repeated_filter_matches`]).
pub(crate) struct Matches {
    bits: Arc<Vec<u64>>,
    /// The matching slots in order, when they take less room than the bitset (one in 32 slots
    /// or fewer): a scan of them then needs no pass over the bitset.
    few: Option<Arc<Vec<u32>>>,
    count: usize,
}

impl Matches {
    /// The `matching` slots of `slots` slots.
    pub fn new(slots: usize, matching: impl Iterator<Item = u32>) -> Self {
        let mut bits = vec![0u64; slots.div_ceil(64)];
        let mut count = 0;
        for slot in matching {
            if let Some(word) = bits.get_mut(slot as usize / 64) {
                *word |= 1 << (slot % 64);
                count += 1;
            }
        }
        let few = (count * 32 <= slots).then(|| Arc::new(set_slots(&bits, count)));
        Matches {
            bits: Arc::new(bits),
            few,
            count,
        }
    }

    fn bytes(&self) -> usize {
        self.bits.len() * 8 + self.few.as_ref().map_or(0, |f| f.len() * 4)
    }

    fn slots(&self) -> Arc<Vec<u32>> {
        match &self.few {
            Some(few) => Arc::clone(few),
            None => Arc::new(set_slots(&self.bits, self.count)),
        }
    }
}

/// An indexed part of a filter: the lists holding its matches, whether they are exactly its
/// matches, and its conditions (any of which it takes).
type Lookup<'s, 'f> = (Vec<&'s [u32]>, bool, &'f [Condition]);

/// A part of a filter that candidates are tested against (see `PayloadIndexes::part`).
enum Part<'s> {
    /// Any of these holds.
    Columns(Vec<column::Test<'s>>),
    Bits(Arc<Vec<u64>>),
}

impl Part<'_> {
    /// Whether the part lists `slot`; `None` when a column cannot tell.
    fn lists(&self, slot: u32) -> Option<bool> {
        match self {
            Part::Bits(bits) => Some(has(bits, slot)),
            Part::Columns(tests) => {
                let mut unsure = false;
                for t in tests {
                    match t.holds(slot) {
                        Some(true) => return Some(true),
                        Some(false) => {}
                        None => unsure = true,
                    }
                }
                (!unsure).then_some(false)
            }
        }
    }
}

/// A word lower-cased character by character, as full-text matching compares words (no
/// context-sensitive rules such as a final sigma).
fn lower(word: &str) -> String {
    word.chars().flat_map(char::to_lowercase).collect()
}

/// The candidates of a filter's indexed conditions: the slots the lists of the narrowest part
/// hold (not merged) that the other parts list too. The other parts are tested only where a
/// slot is looked at, so sizing the candidates or walking the graph among them costs nothing
/// per slot they hold; a scan has them listed.
pub(crate) struct Candidates<'s> {
    lists: Vec<&'s [u32]>,
    others: Vec<Part<'s>>,
    /// The lists of the other parts, one `Vec` per part: with `lists`, what the candidates
    /// are built from (see `cache.rs`).
    others_lists: Vec<Vec<&'s [u32]>>,
    /// The generation of the indexes holding the lists (see `cache.rs`).
    generation: u64,
    /// A filter's matches, when the candidates are those (see [`Candidates::of_matches`]).
    matches: Option<Arc<Matches>>,
    /// Every live candidate matches the filter: no need to evaluate it (unless a part cannot
    /// tell, see [`Candidates::others_list`]).
    pub exact: bool,
    /// How many slots the candidates are: the lists' length when there are no other parts,
    /// else estimated from a sample of the lists.
    estimate: usize,
}

/// Slots of the narrowest part tested against the others to estimate how many pass.
const INTERSECTION_SAMPLE: usize = 256;

impl<'s> Candidates<'s> {
    fn new(
        lists: Vec<&'s [u32]>,
        others: Vec<(Part<'s>, Vec<&'s [u32]>)>,
        exact: bool,
        generation: u64,
    ) -> Self {
        let listed: usize = lists.iter().map(|l| l.len()).sum();
        let (others, others_lists) = others.into_iter().unzip();
        let mut c = Candidates {
            lists,
            others,
            others_lists,
            generation,
            matches: None,
            exact,
            estimate: listed,
        };
        if !c.others.is_empty() && listed > 0 {
            // Few: all of them, and the estimate is the count.
            let sampled: Vec<u32> = match listed <= INTERSECTION_SAMPLE {
                true => c.listed().collect(),
                false => c.sample(INTERSECTION_SAMPLE),
            };
            let pass = sampled
                .iter()
                .filter(|&&slot| c.others_list(slot) != Some(false))
                .count();
            c.estimate = (listed * pass).div_ceil(sampled.len());
        }
        c
    }

    /// Candidates that are exactly a filter's live `matches`.
    pub fn of_matches(matches: Arc<Matches>) -> Self {
        let mut c = Candidates::new(Vec::new(), Vec::new(), true, 0);
        c.estimate = matches.count;
        c.matches = Some(matches);
        c
    }

    /// `n` of the listed slots, at positions spread by a multiplicative hash: an even stride
    /// would alias with periodic payloads (a field derived from the insertion order, as in
    /// `Engine::estimate_selectivity`).
    fn sample(&self, n: usize) -> Vec<u32> {
        let ends: Vec<usize> = self
            .lists
            .iter()
            .scan(0, |end, l| {
                *end += l.len();
                Some(*end)
            })
            .collect();
        let listed = ends.last().copied().unwrap_or(0) as u64;
        (0..n as u64)
            .map(|i| {
                let at = ((i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 16) % listed) as usize;
                let list = ends.partition_point(|&end| end <= at);
                let start = if list == 0 { 0 } else { ends[list - 1] };
                self.lists[list][at - start]
            })
            .collect()
    }

    /// Every slot the narrowest part lists.
    fn listed(&self) -> impl Iterator<Item = u32> + '_ {
        self.lists.iter().flat_map(|l| l.iter().copied())
    }

    /// How many slots the candidates are (see `estimate`): an upper bound of the matches when
    /// the filter has one indexed part.
    pub fn len(&self) -> usize {
        self.estimate
    }

    /// Whether the parts other than the narrowest list `slot` too; `None` when one cannot tell
    /// (the filter must then be evaluated on the slot).
    pub fn others_list(&self, slot: u32) -> Option<bool> {
        let mut sure = true;
        for part in &self.others {
            match part.lists(slot) {
                Some(false) => return Some(false),
                Some(true) => {}
                None => sure = false,
            }
        }
        sure.then_some(true)
    }

    /// The candidates as a bitset over `slots` slots: the live slots (those `live` accepts,
    /// of which `dead` are not) that the narrowest part lists and no other part refuses; and
    /// whether it is complete, every other part sure of each slot it holds (else
    /// [`Candidates::others_list`] must still be asked). Shared with the searches before and
    /// after it on this thread until the next write (see `cache.rs`), so `live` must say exactly which
    /// slots are live.
    pub fn bitset(
        &self,
        slots: usize,
        dead: usize,
        live: impl Fn(u32) -> bool,
    ) -> (Arc<Vec<u64>>, bool) {
        if let Some(m) = &self.matches {
            return (Arc::clone(&m.bits), true);
        }
        let key = self.key(slots, Form::LiveBits(dead));
        if let Some(Built::Bits(bits, complete)) = cache::find(&key) {
            return (bits, complete);
        }
        let mut complete = true;
        let keep = |slot: u32| {
            (dead == 0 || live(slot))
                && match self.others_list(slot) {
                    Some(listed) => listed,
                    None => {
                        complete = false;
                        true
                    }
                }
        };
        let bits = Arc::new(bitset(&self.lists, slots, keep));
        cache::keep(key, Built::Bits(Arc::clone(&bits), complete));
        (bits, complete)
    }

    /// Their bitset (see [`Candidates::bitset`]) if this thread keeps it or they were asked
    /// for before; else `None`, and they are remembered, so that a filter used once (a range
    /// of a moving window, say) is not charged a bitset over all its candidates where it
    /// tests a few thousand of them.
    pub fn repeated_bitset(
        &self,
        slots: usize,
        dead: usize,
        live: impl Fn(u32) -> bool,
    ) -> Option<(Arc<Vec<u64>>, bool)> {
        if self.matches.is_none() {
            let key = self.key(slots, Form::LiveBits(dead));
            match cache::find(&key) {
                Some(Built::Bits(bits, complete)) => return Some((bits, complete)),
                Some(_) => {}
                None => {
                    cache::keep(key, Built::Seen);
                    return None;
                }
            }
        }
        Some(self.bitset(slots, dead, live))
    }

    /// What the candidates are built from (see `cache.rs`).
    fn key(&self, slots: usize, form: Form) -> Key {
        let others = self.others_lists.iter().map(Vec::as_slice);
        let parts = std::iter::once(&self.lists[..]).chain(others);
        Key::new(self.generation, parts, slots, form)
    }

    /// The candidate slots (of `capacity` slots), sorted and without repeats, and whether they
    /// are exactly the matches (a part that cannot tell about some slot leaves it in, to be
    /// checked).
    pub fn slots(&self, capacity: usize) -> (Arc<Vec<u32>>, bool) {
        if let Some(m) = &self.matches {
            return (m.slots(), true);
        }
        // Shared with other filters of the same lists (see `cache.rs`): what it holds says
        // whether the parts were sure, not whether this filter is all in them.
        let key = self.key(capacity, Form::Slots);
        let (slots, sure) = match cache::find(&key) {
            Some(Built::Slots(slots, sure)) => (slots, sure),
            _ => {
                let (slots, sure) = self.merged(capacity);
                let slots = Arc::new(slots);
                cache::keep(key, Built::Slots(Arc::clone(&slots), sure));
                (slots, sure)
            }
        };
        (slots, sure && self.exact)
    }

    /// [`Candidates::slots`], built: the slots, and whether every other part was sure of each.
    fn merged(&self, capacity: usize) -> (Vec<u32>, bool) {
        let mut sure = true;
        let mut keep = |slot: u32| match self.others_list(slot) {
            Some(listed) => listed,
            None => {
                sure = false;
                true
            }
        };
        let listed: usize = self.lists.iter().map(|l| l.len()).sum();
        let out = if self.lists.len() <= 1 {
            // One list is sorted and without repeats already.
            self.listed().filter(|&s| keep(s)).collect()
        } else if listed >= capacity / DENSE_LISTED {
            // Many lists of many slots: merged through a bitset, which costs a pass over its
            // words where sorting would cost a comparison sort of every slot.
            set_slots(&bitset(&self.lists, capacity, &mut keep), listed)
        } else {
            let mut out: Vec<u32> = self.listed().filter(|&s| keep(s)).collect();
            out.sort_unstable();
            out.dedup();
            out
        };
        (out, sure)
    }
}

/// Candidates listed by several lists are merged through a bitset when they are at least one
/// in this many slots, else sorted.
const DENSE_LISTED: usize = 64;

/// The indexes of the configured keys.
pub(crate) struct PayloadIndexes {
    fields: Vec<(KeyPath, OnceLock<FieldIndex>)>,
    /// A live slot's payload changed in place since the last reset: its old values may still
    /// list it, so candidates are a superset of the matches, never exactly them.
    stale: bool,
    /// Changes at every change to the indexes (see `cache.rs`).
    generation: u64,
}

impl PayloadIndexes {
    pub fn new(keys: &[KeyPath]) -> Self {
        PayloadIndexes {
            fields: keys.iter().map(|k| (k.clone(), OnceLock::new())).collect(),
            stale: false,
            generation: cache::new_generation(),
        }
    }

    /// The indexes of `keys`, those a segment stored used in place (the others are built
    /// later, as [`PayloadIndexes::new`]'s are; stored indexes of keys no longer configured are
    /// dropped).
    pub fn with_stored(keys: &[KeyPath], mut stored: StoredIndexes) -> Self {
        let mut indexes = PayloadIndexes::new(keys);
        for (key, index) in &mut indexes.fields {
            if let Some(field) = stored.take(&key.to_string()) {
                *index = OnceLock::from(FieldIndex::from_stored(field));
            }
        }
        indexes
    }

    /// The bytes of a segment's payload indexes section for a checkpoint whose rows are
    /// numbered by `row_of` (slot -> row, `NONE` for dead slots). Indexes not built are built
    /// first, and after a payload changed in place (stale) each is built afresh, so a segment
    /// always stores exact indexes. `payloads` gives the live slots' payloads.
    pub fn export<'a>(
        &self,
        row_of: &[u32],
        payloads: impl Fn() -> Box<dyn Iterator<Item = (u32, &'a Payload)> + 'a>,
    ) -> Vec<u8> {
        let fields: Vec<FieldToStore> = self
            .fields
            .iter()
            .map(|(key, index)| {
                let fresh;
                let index = if self.stale {
                    fresh = FieldIndex::build(key, payloads());
                    &fresh
                } else {
                    index.get_or_init(|| FieldIndex::build(key, payloads()))
                };
                (
                    key.to_string(),
                    index.has_other_numbers,
                    index.remapped(row_of),
                )
            })
            .collect();
        stored::encode(&fields)
    }

    /// Records `slot`'s payload in every index already built (the others will see it when
    /// they are built).
    pub fn add(&mut self, slot: u32, payload: &Payload) {
        self.generation = cache::new_generation();
        for (key, index) in &mut self.fields {
            if let Some(index) = index.get_mut() {
                index.add(key, slot, payload);
            }
        }
    }

    /// Records that a live slot's payload changed in place (see `stale`).
    pub fn mark_stale(&mut self) {
        self.generation = cache::new_generation();
        self.stale = true;
    }

    /// Forgets every index; they are rebuilt on next use (after slots are renumbered).
    pub fn reset(&mut self) {
        self.generation = cache::new_generation();
        for (_, index) in &mut self.fields {
            *index = OnceLock::new();
        }
        self.stale = false;
    }

    /// The candidates of `filter`'s indexed conditions among `slots` slots: those every indexed
    /// `must` condition lists and, when each `should` condition is indexed, one of them lists.
    /// Indexes are built on first use from `payloads` (slot -> payload of live slots).
    pub fn candidates<'a>(
        &self,
        filter: &Filter,
        slots: usize,
        payloads: impl Fn() -> Box<dyn Iterator<Item = (u32, &'a Payload)> + 'a>,
    ) -> Option<Candidates<'_>> {
        let lookup = |condition: &Condition| {
            let Condition::Field(fc) = condition else {
                return None;
            };
            self.field(&fc.key, &payloads)?.lists(condition)
        };
        let mut parts: Vec<Lookup> = filter
            .must
            .iter()
            .filter_map(|c| lookup(c).map(|(lists, exact)| (lists, exact, std::slice::from_ref(c))))
            .collect();
        let indexed_must = parts.len();
        // A `should` narrows only when every one of its conditions is indexed: its candidates
        // are then what any of them lists.
        let should = match filter.should.is_empty() {
            true => None,
            false => filter.should.iter().map(lookup).collect::<Option<Vec<_>>>(),
        };
        let should_answered = filter.should.is_empty() || should.is_some();
        if let Some(alternatives) = should {
            let exact = alternatives.iter().all(|(_, exact)| *exact);
            parts.push((
                alternatives.into_iter().flat_map(|(l, _)| l).collect(),
                exact,
                &filter.should,
            ));
        }
        let size = |lists: &[&[u32]]| lists.iter().map(|l| l.len()).sum::<usize>();
        // Narrowest first, by an insertion sort: a part per indexed condition is a handful, and
        // a std sort instantiated for this tuple would cost the .wasm some 15 KB of code.
        for i in 1..parts.len() {
            let mut j = i;
            while j > 0 && size(&parts[j - 1].0) > size(&parts[j].0) {
                parts.swap(j - 1, j);
                j -= 1;
            }
        }
        // The lists are exactly the filter's matches (among live slots) when each is exactly
        // its conditions', the filter is nothing but these conditions and no payload changed
        // in place.
        let exact = !self.stale
            && indexed_must == filter.must.len()
            && should_answered
            && parts.iter().all(|(_, exact, _)| *exact)
            && filter.must_not.is_empty()
            && filter.min_should.is_none();
        let mut parts = parts.into_iter();
        let (narrowest, ..) = parts.next()?;
        let others: Vec<(Part, Vec<&[u32]>)> = parts
            .map(|(lists, _, conditions)| (self.part(&lists, conditions, slots), lists))
            .collect();
        Some(Candidates::new(narrowest, others, exact, self.generation))
    }

    /// The live matches of `filter`, one that no index narrows, among `slots` slots of
    /// which `dead` are dead: found by `matching` on the filter's second use since the indexes
    /// last changed (or a point died), then kept in this thread's cache (see `cache.rs`);
    /// `None` on its first use.
    pub fn repeated_filter_matches<I: Iterator<Item = u32>>(
        &self,
        filter: &Filter,
        slots: usize,
        dead: usize,
        matching: impl FnOnce() -> I,
    ) -> Option<Arc<Matches>> {
        let key = Key::of_matches(self.generation, filter, slots, dead);
        match cache::find(&key) {
            Some(Built::Matches(m)) => Some(m),
            // Seen once before (no other entry has a key of this form).
            Some(_) => {
                let m = Arc::new(Matches::new(slots, matching()));
                cache::keep(key, Built::Matches(Arc::clone(&m)));
                Some(m)
            }
            None => {
                cache::keep(key, Built::Seen);
                None
            }
        }
    }

    /// The index of `key`, built first if need be; `None` if `key` is not indexed.
    fn field<'a>(
        &self,
        key: &KeyPath,
        payloads: &impl Fn() -> Box<dyn Iterator<Item = (u32, &'a Payload)> + 'a>,
    ) -> Option<&FieldIndex> {
        let (key, index) = self.fields.iter().find(|(k, _)| k == key)?;
        Some(index.get_or_init(|| FieldIndex::build(key, payloads())))
    }

    /// A part of a filter other than the narrowest, to test the narrowest one's slots against:
    /// through the columns of its conditions when they answer them (a load per slot tested),
    /// else as a bitset of its lists (a write per slot listed, however many).
    fn part<'s>(&'s self, lists: &[&[u32]], conditions: &[Condition], slots: usize) -> Part<'s> {
        let no_payloads =
            || -> Box<dyn Iterator<Item = (u32, &Payload)>> { Box::new(std::iter::empty()) };
        let test = |c: &Condition| {
            let Condition::Field(fc) = c else {
                return None;
            };
            // Built: its lists were looked up.
            let index = self.field(&fc.key, &no_payloads)?;
            let column = index.column(slots);
            // A column that cannot tell about some slot would leave it among the candidates,
            // and make them all need the filter: the lists tell exactly.
            (column.unknown() == 0).then_some(())?;
            column.test(c, !index.has_other_numbers)
        };
        match conditions.iter().map(test).collect::<Option<Vec<_>>>() {
            Some(tests) => Part::Columns(tests),
            None => {
                let key = Key::new(self.generation, [lists], slots, Form::Bits);
                if let Some(Built::Bits(bits, _)) = cache::find(&key) {
                    return Part::Bits(bits);
                }
                let bits = Arc::new(bitset(lists, slots, |_| true));
                cache::keep(key, Built::Bits(Arc::clone(&bits), true));
                Part::Bits(bits)
            }
        }
    }

    /// `filter` as tests on columns, when a column answers each of its conditions for nearly
    /// every slot (see `column.rs`; the others are left to the payload). Builds the indexes
    /// and columns it needs.
    pub fn column_filter<'a>(
        &self,
        filter: &Filter,
        slots: usize,
        payloads: impl Fn() -> Box<dyn Iterator<Item = (u32, &'a Payload)> + 'a>,
    ) -> Option<ColumnFilter<'_>> {
        if filter.min_should.is_some() {
            return None;
        }
        let tests = |conditions: &[Condition]| {
            conditions
                .iter()
                .map(|c| {
                    let Condition::Field(fc) = c else {
                        return None;
                    };
                    let index = self.field(&fc.key, &payloads)?;
                    let column = index.column(slots);
                    (column.unknown() < column.len() / MOSTLY_KNOWN + 1).then_some(())?;
                    column.test(c, !index.has_other_numbers)
                })
                .collect::<Option<Vec<_>>>()
        };
        Some(ColumnFilter {
            must: tests(&filter.must)?,
            should: tests(&filter.should)?,
            must_not: tests(&filter.must_not)?,
        })
    }

    /// Whether every index is built.
    pub fn all_built(&self) -> bool {
        self.fields.iter().all(|(_, index)| index.get().is_some())
    }

    /// Builds every index not built yet (warmup), so no query pays for it.
    pub fn build_all<'a>(
        &self,
        payloads: impl Fn() -> Box<dyn Iterator<Item = (u32, &'a Payload)> + 'a>,
    ) {
        for (key, index) in &self.fields {
            index.get_or_init(|| FieldIndex::build(key, payloads()));
        }
    }

    /// Bytes held by the built indexes (an estimate; not the candidates each thread keeps,
    /// see `cache.rs`).
    pub fn bytes(&self) -> usize {
        self.fields
            .iter()
            .filter_map(|(_, i)| i.get())
            .map(FieldIndex::bytes)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::tests::{filter, payload};
    use serde_json::json;

    /// The candidates' slots (as the cache shares them) and whether they are exactly the matches.
    fn listed(c: &Candidates, capacity: usize) -> (Vec<u32>, bool) {
        let (slots, exact) = c.slots(capacity);
        (slots.to_vec(), exact)
    }

    /// The payloads of `data` with their slots, as the engine hands them to the indexes.
    fn rows(data: &[Payload]) -> Box<dyn Iterator<Item = (u32, &Payload)> + '_> {
        Box::new(data.iter().enumerate().map(|(i, p)| (i as u32, p)))
    }

    #[test]
    fn candidates_cover_every_match_and_nothing_else_is_needed() {
        let keys: Vec<KeyPath> = vec!["color".parse().unwrap(), "n".parse().unwrap()];
        let data = [
            payload(json!({"color": "red", "n": 1})),
            payload(json!({"color": ["blue", "red"], "n": 5})),
            payload(json!({"color": "green", "n": -3})),
            payload(json!({"n": 5})),
        ];
        let mut idx = PayloadIndexes::new(&keys);
        let all = || rows(&data);
        let c = |f: Value| {
            idx.candidates(&filter(f), 16, all)
                .map(|c| listed(&c, 16).0)
        };
        assert_eq!(
            c(json!({"must": [{"key": "color", "match": {"value": "red"}}]})),
            Some(vec![0, 1])
        );
        assert_eq!(
            c(json!({"must": [{"key": "color", "match": {"any": ["green", "blue"]}}]})),
            Some(vec![1, 2])
        );
        assert_eq!(
            c(json!({"must": [{"key": "n", "range": {"gt": 0.5, "lte": 5}}]})),
            Some(vec![0, 1, 3])
        );
        assert_eq!(
            c(json!({"must": [{"key": "n", "range": {"gt": 5}}]})),
            Some(vec![])
        );
        // Both lower bounds hold, whichever is given first (the index took `gt` alone).
        assert_eq!(
            c(json!({"must": [{"key": "n", "range": {"gt": 0.5, "gte": 5}}]})),
            Some(vec![1, 3])
        );
        assert_eq!(
            c(json!({"must": [{"key": "n", "range": {"lte": 4, "lt": 10}}]})),
            Some(vec![0, 2])
        );
        // The smallest list wins; unindexed keys do not narrow.
        assert_eq!(
            c(json!({"must": [
                {"key": "n", "range": {"gte": -10}},
                {"key": "color", "match": {"value": "green"}}
            ]})),
            Some(vec![2])
        );
        assert_eq!(
            c(json!({"must": [{"key": "other", "match": {"value": 1}}]})),
            None
        );
        // A `should` narrows when each of its conditions is indexed: to what any of them lists.
        assert_eq!(
            c(json!({"should": [
                {"key": "color", "match": {"value": "green"}},
                {"key": "n", "range": {"gte": 5}}
            ]})),
            Some(vec![1, 2, 3])
        );
        assert_eq!(
            c(json!({"should": [
                {"key": "color", "match": {"value": "green"}},
                {"key": "other", "match": {"value": 1}}
            ]})),
            None
        );
        // A condition of two parts is not one lookup (finding D12).
        assert_eq!(
            c(json!({"must": [{"key": "n", "match": {"value": 1}, "range": {"gt": 3}}]})),
            None
        );
        assert_eq!(
            c(json!({"must": [{"key": "n", "range": {"gt": 0}, "values_count": {"gt": 1}}]})),
            None
        );
        // Writes after the index is built are seen.
        let extra = payload(json!({"color": "red"}));
        idx.add(9, &extra);
        let c = idx.candidates(
            &filter(json!({"must": [{"key": "color", "match": {"value": "red"}}]})),
            16,
            all,
        );
        assert_eq!(c.map(|c| listed(&c, 16).0), Some(vec![0, 1, 9]));
    }

    #[test]
    fn float_values_disable_integer_ranges() {
        let keys: Vec<KeyPath> = vec!["x".parse().unwrap()];
        let data = [payload(json!({"x": 1})), payload(json!({"x": 1.5}))];
        let idx = PayloadIndexes::new(&keys);
        let all = || rows(&data);
        let f = filter(json!({"must": [{"key": "x", "range": {"gte": 1}}]}));
        assert!(idx.candidates(&f, 16, all).is_none(), "1.5 would be missed");
    }

    #[test]
    fn words_and_datetimes_give_candidates() {
        let keys: Vec<KeyPath> = vec!["t".parse().unwrap()];
        let data = [
            payload(json!({"t": "The quick brown fox"})),
            payload(json!({"t": ["QUICK dogs", "2024-01-02T00:00:00Z"]})),
            payload(json!({"t": "2024-01-05"})),
            payload(json!({"t": 7})),
        ];
        let idx = PayloadIndexes::new(&keys);
        let all = || rows(&data);
        let c = |f: Value| {
            idx.candidates(&filter(json!({"must": [f]})), 16, all)
                .map(|c| listed(&c, data.len()))
        };
        let text = |m: Value| c(json!({"key": "t", "match": m}));
        assert_eq!(text(json!({"text": "quick"})), Some((vec![0, 1], true)));
        // The rarest word's points: a superset for two words, checked against the filter.
        assert_eq!(text(json!({"text": "quick fox"})), Some((vec![0], false)));
        assert_eq!(
            text(json!({"text_any": "fox dogs"})),
            Some((vec![0, 1], true))
        );
        assert_eq!(text(json!({"phrase": "brown fox"})), Some((vec![0], false)));
        assert_eq!(
            text(json!({"text": "!!"})),
            Some((vec![], true)),
            "no words: nothing"
        );
        let range = |r: Value| c(json!({"key": "t", "range": r}));
        assert_eq!(
            range(json!({"gte": "2024-01-02T00:00:00Z", "lt": "2024-01-05"})),
            Some((vec![1], true))
        );
        assert_eq!(
            range(json!({"gt": "2024-01-02T00:00:00Z"})),
            Some((vec![2], true))
        );
        assert_eq!(
            c(json!({"key": "t", "geo_radius": {"center": {"lon": 0, "lat": 0}, "radius": 1}})),
            None,
            "geo is not indexed"
        );
    }

    #[test]
    fn several_indexed_conditions_give_the_slots_all_of_them_list() {
        let keys: Vec<KeyPath> = vec!["a".parse().unwrap(), "b".parse().unwrap()];
        let data: Vec<Payload> = (0..40)
            .map(|i| payload(json!({"a": i % 4, "b": format!("x{}", i % 5)})))
            .collect();
        let idx = PayloadIndexes::new(&keys);
        let all = || rows(&data);
        let c = |f: Value| {
            let c = idx.candidates(&filter(f), data.len(), all).unwrap();
            listed(&c, data.len())
        };
        let both = json!({"must": [
            {"key": "a", "match": {"value": 1}},
            {"key": "b", "match": {"any": ["x1", "x2"]}}
        ]});
        assert_eq!(c(both.clone()), (vec![1, 17, 21, 37], true));
        let sized = idx.candidates(&filter(both), data.len(), all).unwrap();
        assert_eq!(sized.len(), 4, "few candidates are counted");
        // A condition the index cannot answer keeps the candidates a superset.
        let with_unindexed = json!({"must": [
            {"key": "a", "range": {"lt": 1}},
            {"key": "c", "match": {"value": 1}}
        ]});
        assert!(!c(with_unindexed).1);
        // A `should` of indexed conditions is exact too, alone or beside a `must`.
        let either = json!({"should": [
            {"key": "a", "match": {"value": 1}},
            {"key": "b", "match": {"value": "x0"}}
        ]});
        let (slots, exact) = c(either.clone());
        assert!(exact);
        let expected: Vec<u32> = (0..40).filter(|i| i % 4 == 1 || i % 5 == 0).collect();
        assert_eq!(slots, expected);
        let mut narrowed = either;
        narrowed["must"] = json!([{"key": "a", "range": {"lte": 1}}]);
        let expected: Vec<u32> = (0..40)
            .filter(|i| i % 4 <= 1 && (i % 4 == 1 || i % 5 == 0))
            .collect();
        assert_eq!(c(narrowed), (expected, true));
        let with_must_not = json!({
            "should": [{"key": "a", "match": {"value": 1}}],
            "must_not": [{"key": "b", "match": {"value": "x0"}}]
        });
        assert!(!c(with_must_not).1, "must_not is left to the filter");
    }

    #[test]
    fn several_conditions_on_fields_of_several_values_give_exactly_the_matches() {
        // The column of `b` cannot tell about the slots holding two values: its lists do.
        let keys: Vec<KeyPath> = vec!["a".parse().unwrap(), "b".parse().unwrap()];
        let data: Vec<Payload> = (0..40)
            .map(|i| match i % 2 {
                0 => payload(json!({"a": i % 4, "b": ["x0", "x1"]})),
                _ => payload(json!({"a": i % 4, "b": "x1"})),
            })
            .collect();
        let idx = PayloadIndexes::new(&keys);
        let all = || rows(&data);
        let f = filter(json!({"must": [
            {"key": "a", "range": {"lte": 1}},
            {"key": "b", "match": {"value": "x0"}}
        ]}));
        let c = idx.candidates(&f, data.len(), all).unwrap();
        let expected: Vec<u32> = (0..40).filter(|i| i % 4 == 0).collect();
        assert_eq!(listed(&c, data.len()), (expected, true));
    }

    #[test]
    fn many_lists_merge_alike_through_a_bitset_or_a_sort() {
        // Several lists (a range over many values, and a multi-valued field listing a slot
        // twice): merged through a bitset when dense, sorted when sparse; the same slots.
        let keys: Vec<KeyPath> = vec!["a".parse().unwrap(), "b".parse().unwrap()];
        let data: Vec<Payload> = (0..2_000)
            .map(|i| payload(json!({"a": i % 50, "b": [i % 7, i % 11]})))
            .collect();
        let idx = PayloadIndexes::new(&keys);
        let all = || rows(&data);
        for f in [
            json!({"must": [{"key": "a", "range": {"lt": 20}}]}),
            json!({"must": [{"key": "b", "match": {"any": [1, 2, 3]}}]}),
            json!({"must": [{"key": "a", "range": {"lt": 20}}, {"key": "b", "match": {"any": [1, 2]}}]}),
        ] {
            let c = idx.candidates(&filter(f.clone()), data.len(), all).unwrap();
            let dense = listed(&c, data.len());
            let sparse = listed(&c, data.len() * DENSE_LISTED * 64);
            let expected: Vec<u32> = (0..data.len())
                .filter(|&i| {
                    filter(f.clone()).matches(crate::point::PointId::Num(i as u64), &data[i])
                })
                .map(|i| i as u32)
                .collect();
            assert_eq!(dense, (expected.clone(), true), "{f}");
            assert_eq!(sparse, (expected, true), "{f}");
        }
    }

    #[test]
    fn the_size_of_an_intersection_is_estimated_without_listing_it() {
        // Periodic payloads: an evenly strided sample of `b`'s slots would see one `a` only.
        let keys: Vec<KeyPath> = vec!["a".parse().unwrap(), "b".parse().unwrap()];
        let data: Vec<Payload> = (0..10_000)
            .map(|i| payload(json!({"a": i % 4, "b": i % 5})))
            .collect();
        let idx = PayloadIndexes::new(&keys);
        let all = || rows(&data);
        let f = filter(json!({"must": [
            {"key": "a", "match": {"value": 1}},
            {"key": "b", "match": {"value": 2}}
        ]}));
        let c = idx.candidates(&f, data.len(), all).unwrap();
        assert!(
            (350..=650).contains(&c.len()),
            "500 matches, {} estimated",
            c.len()
        );
        assert_eq!(listed(&c, data.len()).0.len(), 500);
    }

    #[test]
    fn a_bitset_is_shared_until_a_write_or_a_death_changes_what_it_holds() {
        let keys: Vec<KeyPath> = vec!["a".parse().unwrap(), "b".parse().unwrap()];
        let mut data: Vec<Payload> = (0..1_000)
            .map(|i| payload(json!({"a": i % 10, "b": i % 7})))
            .collect();
        let mut idx = PayloadIndexes::new(&keys);
        let f = filter(json!({"must": [{"key": "a", "range": {"lt": 3}}]}));
        let count = |bits: &[u64]| (0..2_000).filter(|&s| has(bits, s)).count();
        let (first, again) = {
            let all = || rows(&data);
            let c = idx.candidates(&f, data.len(), all).unwrap();
            (
                c.bitset(data.len(), 0, |_| true),
                c.bitset(data.len(), 0, |_| true),
            )
        };
        assert!(
            Arc::ptr_eq(&first.0, &again.0),
            "the same lists: the same bitset"
        );
        assert_eq!((count(&first.0), first.1), (300, true));
        // A death leaves the dead slot out, in a bitset of its own.
        let all = || rows(&data);
        let c = idx.candidates(&f, data.len(), all).unwrap();
        let without_0 = c.bitset(data.len(), 1, |s| s != 0).0;
        assert!(!has(&without_0, 0) && count(&without_0) == 299);
        assert!(Arc::ptr_eq(&first.0, &c.bitset(data.len(), 0, |_| true).0));
        // Two indexed conditions: the bitset holds what both list, and says it is complete.
        let both = filter(json!({"must": [
            {"key": "a", "range": {"lt": 3}},
            {"key": "b", "match": {"value": 2}}
        ]}));
        let c = idx.candidates(&both, data.len(), all).unwrap();
        let (bits, complete) = c.bitset(data.len(), 0, |_| true);
        let expected: Vec<u32> = (0..1_000).filter(|i| i % 10 < 3 && i % 7 == 2).collect();
        let held: Vec<u32> = (0..1_000).filter(|&s| has(&bits, s)).collect();
        assert_eq!((held, complete), (expected.clone(), true));
        // And their slot list is kept as well.
        let (slots, exact) = c.slots(data.len());
        assert_eq!((slots.to_vec(), exact), (expected, true));
        assert!(Arc::ptr_eq(&slots, &c.slots(data.len()).0));
        // A write empties the cache: the new slot is in the next bitset.
        data.push(payload(json!({"a": 1, "b": 2})));
        idx.add(1_000, &data[1_000]);
        let all = || rows(&data);
        let c = idx.candidates(&f, data.len(), all).unwrap();
        let after = c.bitset(data.len(), 0, |_| true).0;
        assert!(has(&after, 1_000) && count(&after) == 301);
        // No more than eight bitsets' worth are kept.
        for lt in 1..=10 {
            let f = filter(json!({"must": [{"key": "a", "range": {"lt": lt}}]}));
            idx.candidates(&f, data.len(), all)
                .unwrap()
                .bitset(data.len(), 0, |_| true);
        }
        assert_eq!(cache::kept(), 8);
    }

    #[test]
    fn shared_candidates_are_exact_only_for_a_filter_they_answer_whole() {
        // The same lists answer `color = red` exactly and a filter adding an unindexed
        // condition only in part: sharing the first's slot list must not make the second exact.
        let keys: Vec<KeyPath> = vec!["color".parse().unwrap()];
        let data: Vec<Payload> = (0..1_000)
            .map(|i| payload(json!({"color": if i % 10 == 0 { "red" } else { "blue" }, "n": i})))
            .collect();
        let idx = PayloadIndexes::new(&keys);
        let all = || rows(&data);
        let red = filter(json!({"must": [{"key": "color", "match": {"value": "red"}}]}));
        let red_and_small = filter(json!({"must": [
            {"key": "color", "match": {"value": "red"}},
            {"key": "n", "range": {"lt": 10}}
        ]}));
        for _ in 0..2 {
            let whole = idx.candidates(&red, data.len(), all).unwrap();
            assert!(whole.slots(data.len()).1 && whole.bitset(data.len(), 0, |_| true).1);
            let part = idx.candidates(&red_and_small, data.len(), all).unwrap();
            assert!(
                !part.slots(data.len()).1,
                "a filter answered in part taken as exact"
            );
            assert!(!part.exact);
        }
    }

    #[test]
    fn filters_used_once_do_not_push_out_what_repeated_ones_keep() {
        let keys: Vec<KeyPath> = vec!["a".parse().unwrap()];
        let data: Vec<Payload> = (0..1_000).map(|i| payload(json!({"a": i % 10}))).collect();
        let idx = PayloadIndexes::new(&keys);
        let f = filter(json!({"must": [{"key": "a", "range": {"lt": 3}}]}));
        let all = || rows(&data);
        let kept = idx.candidates(&f, data.len(), all).unwrap();
        let first = kept.bitset(data.len(), 0, |_| true).0;
        for n in 0..200 {
            let once = filter(json!({"must": [{"key": "n", "match": {"value": n}}]}));
            let matching = || -> std::iter::Empty<u32> { unreachable!("used once") };
            assert!(idx
                .repeated_filter_matches(&once, 1_000, 0, matching)
                .is_none());
        }
        assert!(Arc::ptr_eq(&first, &kept.bitset(data.len(), 0, |_| true).0));
    }

    #[test]
    fn candidates_have_their_bitset_built_when_asked_for_again() {
        let keys: Vec<KeyPath> = vec!["a".parse().unwrap()];
        let data: Vec<Payload> = (0..1_000).map(|i| payload(json!({"a": i % 10}))).collect();
        let mut idx = PayloadIndexes::new(&keys);
        let f = filter(json!({"must": [{"key": "a", "range": {"lt": 5}}]}));
        let ask = |idx: &PayloadIndexes| {
            let all = || rows(&data);
            let c = idx.candidates(&f, data.len(), all).unwrap();
            c.repeated_bitset(data.len(), 0, |_| true)
        };
        assert!(ask(&idx).is_none(), "asked once: no bitset built");
        let (second, complete) = ask(&idx).unwrap();
        assert!(complete && (0..1_000).all(|s| has(&second, s) == (s % 10 < 5)));
        assert!(Arc::ptr_eq(&second, &ask(&idx).unwrap().0), "then kept");
        // A bitset built for another reason (a walk around) is used from the first ask.
        let other = filter(json!({"must": [{"key": "a", "range": {"lt": 2}}]}));
        let all = || rows(&data);
        let c = idx.candidates(&other, data.len(), all).unwrap();
        let built = c.bitset(data.len(), 0, |_| true).0;
        assert!(Arc::ptr_eq(
            &built,
            &c.repeated_bitset(data.len(), 0, |_| true).unwrap().0
        ));
        // A write starts over.
        idx.add(0, &data[0]);
        assert!(ask(&idx).is_none());
    }

    #[test]
    fn an_unindexed_filter_has_its_matches_found_on_its_second_use_until_a_change() {
        let keys: Vec<KeyPath> = vec!["a".parse().unwrap()];
        let data: Vec<Payload> = (0..1_000).map(|i| payload(json!({"n": i % 10}))).collect();
        let mut idx = PayloadIndexes::new(&keys);
        let f = filter(json!({"must": [{"key": "n", "match": {"value": 3}}]}));
        let found = std::cell::Cell::new(0);
        let ask = |idx: &PayloadIndexes, dead: usize, every: u32| {
            idx.repeated_filter_matches(&f, 1_000, dead, || {
                found.set(found.get() + 1);
                (0..1_000).filter(move |i| i % every == 3 % every)
            })
        };
        assert!(ask(&idx, 0, 10).is_none(), "used once: nothing found");
        assert_eq!(found.get(), 0);
        let second = ask(&idx, 0, 10).unwrap();
        assert_eq!((second.count, found.get()), (100, 1));
        let third = ask(&idx, 0, 10).unwrap();
        assert!(Arc::ptr_eq(&second, &third) && found.get() == 1);
        // Candidates made of them are exactly the matches, as a bitset and as slots.
        let c = Candidates::of_matches(third);
        let want: Vec<u32> = (0..1_000).filter(|i| i % 10 == 3).collect();
        assert!(c.exact && c.len() == 100);
        assert_eq!(*c.slots(1_000).0, want);
        let (bits, complete) = c.bitset(1_000, 0, |_| unreachable!("no look at liveness"));
        assert!(complete && (0..1_000).all(|s| has(&bits, s) == (s % 10 == 3)));
        // A death, then a write: each starts over.
        assert!(ask(&idx, 1, 10).is_none());
        idx.add(0, &data[0]);
        assert!(ask(&idx, 0, 10).is_none());
        assert!(ask(&idx, 0, 10).is_some() && found.get() == 2);
        // Few matches are listed beside their bitset, many are not (and read from it).
        let few = Candidates::of_matches(ask(&idx, 2, 40).or_else(|| ask(&idx, 2, 40)).unwrap());
        let many = Candidates::of_matches(ask(&idx, 3, 2).or_else(|| ask(&idx, 3, 2)).unwrap());
        assert!(few.matches.as_ref().unwrap().few.is_some() && few.len() == 25);
        assert!(many.matches.as_ref().unwrap().few.is_none() && many.len() == 500);
        let odd: Vec<u32> = (0..1_000).filter(|i| i % 2 == 1).collect();
        assert_eq!(*many.slots(1_000).0, odd);
    }
}
