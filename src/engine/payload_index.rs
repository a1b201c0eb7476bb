//! Payload indexes: for a configured key, each keyword, integer or bool value -> the slots whose
//! payload holds it. They turn a selective filter into a short list of candidate slots, so the
//! exact search scores only those instead of evaluating the filter on every point.
//!
//! An index is built on first use (opening a database parses no payloads) and then kept up to
//! date by writes. Entries are never removed: a slot whose payload changed or was deleted stays
//! listed under its old value, which is harmless because candidates are always checked against
//! the whole filter; compaction rebuilds the indexes from scratch.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::Value;

use crate::filter::{Condition, Filter, KeyPath, Match, MatchValue};
use crate::point::Payload;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum IndexKey {
    Bool(bool),
    Integer(i64),
    Keyword(String),
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
    slots: BTreeMap<IndexKey, Vec<u32>>,
    /// Some value of the field is a number that is not an `i64`: integer ranges cannot be
    /// answered from the index, which holds only integers.
    has_other_numbers: bool,
}

impl FieldIndex {
    fn build<'a>(key: &KeyPath, payloads: impl Iterator<Item = (u32, &'a Payload)>) -> Self {
        let mut built = FieldIndex::default();
        for (slot, payload) in payloads {
            built.add(key, slot, payload);
        }
        built
    }

    fn add(&mut self, key: &KeyPath, slot: u32, payload: &Payload) {
        key.for_each_leaf(payload, &mut |v| match IndexKey::of_value(v) {
            Some(k) => {
                let list = self.slots.entry(k).or_default();
                if list.last() != Some(&slot) {
                    list.push(slot);
                }
            }
            None => self.has_other_numbers |= v.is_number(),
        });
    }

    /// The slot lists holding the values `condition` accepts, or `None` if this index cannot
    /// narrow it down. Borrowed, so sizing a condition costs no copying.
    fn lists<'s>(&'s self, condition: &Condition) -> Option<Vec<&'s [u32]>> {
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
        let list = |k: IndexKey| self.slots.get(&k).map(Vec::as_slice);
        Some(match (&fc.r#match, &fc.range) {
            (Some(Match::Value(v)), _) => list(IndexKey::of_match(v)).into_iter().collect(),
            (Some(Match::Any(vs)), _) => vs
                .iter()
                .filter_map(|v| list(IndexKey::of_match(v)))
                .collect(),
            (None, Some(r)) if !self.has_other_numbers => {
                // Integer bounds that cover exactly the values within the float bounds.
                let lo = match (r.gt, r.gte) {
                    (Some(gt), _) => (gt.floor() as i64).saturating_add(1),
                    (None, Some(gte)) => gte.ceil() as i64,
                    (None, None) => i64::MIN,
                };
                let hi = match (r.lt, r.lte) {
                    (Some(lt), _) => (lt.ceil() as i64).saturating_sub(1),
                    (None, Some(lte)) => lte.floor() as i64,
                    (None, None) => i64::MAX,
                };
                if lo > hi {
                    return Some(Vec::new());
                }
                self.slots
                    .range(IndexKey::Integer(lo)..=IndexKey::Integer(hi))
                    .map(|(_, s)| s.as_slice())
                    .collect()
            }
            _ => return None,
        })
    }
}

/// The narrowest indexed condition of a filter: its slot lists, not yet merged.
pub(crate) struct Candidates<'s> {
    lists: Vec<&'s [u32]>,
    /// Every live candidate matches the filter: no need to evaluate it.
    pub exact: bool,
}

impl Candidates<'_> {
    /// How many slots the lists hold (an upper bound of the matches).
    pub fn len(&self) -> usize {
        self.lists.iter().map(|l| l.len()).sum()
    }

    /// The candidates as a bitset over `slots` slots, for a constant-time membership test.
    pub fn bitset(&self, slots: usize) -> Vec<u64> {
        let mut bits = vec![0u64; slots.div_ceil(64)];
        for &slot in self.lists.iter().flat_map(|l| l.iter()) {
            if let Some(word) = bits.get_mut(slot as usize / 64) {
                *word |= 1 << (slot % 64);
            }
        }
        bits
    }

    /// The candidate slots, sorted and without repeats.
    pub fn slots(&self) -> Vec<u32> {
        let mut out: Vec<u32> = self.lists.iter().flat_map(|l| l.iter().copied()).collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// The indexes of the configured keys.
pub(crate) struct PayloadIndexes {
    fields: Vec<(KeyPath, OnceLock<FieldIndex>)>,
    /// A live slot's payload changed in place since the last reset: its old values may still
    /// list it, so candidates are a superset of the matches, never exactly them.
    stale: bool,
}

impl PayloadIndexes {
    pub fn new(keys: &[KeyPath]) -> Self {
        PayloadIndexes {
            fields: keys.iter().map(|k| (k.clone(), OnceLock::new())).collect(),
            stale: false,
        }
    }

    /// Records `slot`'s payload in every index already built (the others will see it when
    /// they are built).
    pub fn add(&mut self, slot: u32, payload: &Payload) {
        for (key, index) in &mut self.fields {
            if let Some(index) = index.get_mut() {
                index.add(key, slot, payload);
            }
        }
    }

    /// Records that a live slot's payload changed in place (see `stale`).
    pub fn mark_stale(&mut self) {
        self.stale = true;
    }

    /// Forgets every index; they are rebuilt on next use (after slots are renumbered).
    pub fn reset(&mut self) {
        for (_, index) in &mut self.fields {
            *index = OnceLock::new();
        }
        self.stale = false;
    }

    /// The candidates of the narrowest indexed `must` condition of `filter`, building indexes
    /// on first use from `payloads` (slot -> payload of live slots).
    pub fn candidates<'a>(
        &self,
        filter: &Filter,
        payloads: impl Fn() -> Box<dyn Iterator<Item = (u32, &'a Payload)> + 'a>,
    ) -> Option<Candidates<'_>> {
        let mut best: Option<Candidates> = None;
        for condition in &filter.must {
            let Condition::Field(fc) = condition else {
                continue;
            };
            let Some((key, index)) = self.fields.iter().find(|(k, _)| *k == fc.key) else {
                continue;
            };
            let index = index.get_or_init(|| FieldIndex::build(key, payloads()));
            if let Some(lists) = index.lists(condition) {
                // The lists are exactly the filter's matches (among live slots) when the filter
                // is this one condition and no payload changed in place.
                let exact = !self.stale
                    && filter.must.len() == 1
                    && filter.should.is_empty()
                    && filter.must_not.is_empty()
                    && filter.min_should.is_none();
                let c = Candidates { lists, exact };
                if best.as_ref().is_none_or(|b| c.len() < b.len()) {
                    best = Some(c);
                }
            }
        }
        best
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

    /// Bytes held by the built indexes (an estimate).
    pub fn bytes(&self) -> usize {
        self.fields
            .iter()
            .filter_map(|(_, i)| i.get())
            .flat_map(|i| i.slots.iter())
            .map(|(k, s)| {
                s.capacity() * 4
                    + std::mem::size_of::<(IndexKey, Vec<u32>)>()
                    + match k {
                        IndexKey::Keyword(w) => w.capacity(),
                        _ => 0,
                    }
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::tests::{filter, payload};
    use serde_json::json;

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
        let all = || {
            Box::new(data.iter().enumerate().map(|(i, p)| (i as u32, p)))
                as Box<dyn Iterator<Item = (u32, &Payload)>>
        };
        let c = |f: Value| idx.candidates(&filter(f), all).map(|c| c.slots());
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
        // The smallest list wins; unindexed keys and `should` do not narrow.
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
        assert_eq!(
            c(json!({"should": [{"key": "color", "match": {"value": "red"}}]})),
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
            all,
        );
        assert_eq!(c.map(|c| c.slots()), Some(vec![0, 1, 9]));
    }

    #[test]
    fn float_values_disable_integer_ranges() {
        let keys: Vec<KeyPath> = vec!["x".parse().unwrap()];
        let data = [payload(json!({"x": 1})), payload(json!({"x": 1.5}))];
        let idx = PayloadIndexes::new(&keys);
        let all = || {
            Box::new(data.iter().enumerate().map(|(i, p)| (i as u32, p)))
                as Box<dyn Iterator<Item = (u32, &Payload)>>
        };
        let f = filter(json!({"must": [{"key": "x", "range": {"gte": 1}}]}));
        assert!(idx.candidates(&f, all).is_none(), "1.5 would be missed");
    }
}
