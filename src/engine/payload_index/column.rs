//! Columns: each slot's one value of an indexed field, as a code, so a condition on the field is
//! tested on a slot with one load. The lists of an index answer "which slots?" (few matches);
//! a column answers "does this slot?" (many matches), where building a bitset of the lists
//! would cost as much as the search: at 1M points, `pct < 90` lists 900K slots.

use std::collections::BTreeMap;

use serde_json::Value;

use super::IndexKey;
use crate::filter::{Condition, KeyPath, Match};
use crate::point::Payload;

/// The slot holds no value a `match` or `range` condition could accept.
const ABSENT: u32 = u32::MAX;
/// The slot holds several values, or its payload changed after the column was built: the
/// column cannot tell, the payload must.
const UNKNOWN: u32 = u32::MAX - 1;

/// The values of one indexed field, per slot.
pub(super) struct Column {
    /// The field's values (keywords, integers, bools; not the words and datetimes derived from
    /// strings), sorted as the index sorts them: a code is a position here, so a range of
    /// integers is a range of codes.
    keys: Vec<IndexKey>,
    /// Per slot, the code of its value, `ABSENT` or `UNKNOWN`.
    codes: Vec<u32>,
    /// How many slots are `UNKNOWN`.
    unknown: usize,
}

/// A key that a slot's value is, rather than one derived from it.
fn is_value(key: &IndexKey) -> bool {
    matches!(
        key,
        IndexKey::Bool(_) | IndexKey::Integer(_) | IndexKey::Keyword(_)
    )
}

impl Column {
    /// The column of an index whose entries are `entries` (key order, a key may come twice:
    /// stored and added), over `slots` slots.
    pub fn build<'a>(entries: impl Iterator<Item = (IndexKey, &'a [u32])>, slots: usize) -> Column {
        let mut lists: BTreeMap<IndexKey, Vec<&[u32]>> = BTreeMap::new();
        for (key, list) in entries.filter(|(k, _)| is_value(k)) {
            lists.entry(key).or_default().push(list);
        }
        let mut column = Column {
            keys: Vec::with_capacity(lists.len()),
            codes: vec![ABSENT; slots],
            unknown: 0,
        };
        for (code, (key, slot_lists)) in lists.into_iter().enumerate() {
            let code = code as u32;
            column.keys.push(key);
            for &slot in slot_lists.iter().flat_map(|l| l.iter()) {
                match column.codes.get(slot as usize) {
                    Some(&ABSENT) => column.codes[slot as usize] = code,
                    Some(&c) if c != code => column.forget(slot as usize),
                    _ => {}
                }
            }
        }
        column
    }

    /// Makes `slot` (within the column) `UNKNOWN`.
    fn forget(&mut self, slot: usize) {
        if self.codes[slot] != UNKNOWN {
            self.codes[slot] = UNKNOWN;
            self.unknown += 1;
        }
    }

    /// How many slots the column cannot tell about (see `UNKNOWN`).
    pub fn unknown(&self) -> usize {
        self.unknown
    }

    /// How many slots the column covers.
    pub fn len(&self) -> usize {
        self.codes.len()
    }

    /// Records `slot`'s payload written after the build: a new slot gets its value's code; a
    /// slot whose payload changed in place becomes `UNKNOWN` (its old value may still list it,
    /// and an in-place change is rare enough to leave to the payload).
    pub fn add(&mut self, key: &KeyPath, slot: u32, payload: &Payload) {
        let slot = slot as usize;
        if slot < self.codes.len() {
            self.forget(slot);
            return;
        }
        let mut values = Vec::new();
        key.for_each_leaf(payload, &mut |v: &Value| {
            values.extend(IndexKey::of_value(v));
        });
        values.sort_unstable();
        values.dedup();
        let code = match &values[..] {
            [] => Some(ABSENT),
            [one] => self.keys.binary_search(one).ok().map(|code| code as u32),
            _ => None,
        };
        // Slots never recorded stay unknown (none: every write is recorded), and so does a
        // value the column has no code for.
        let skipped = slot - self.codes.len();
        self.codes.resize(slot, UNKNOWN);
        self.codes.push(code.unwrap_or(UNKNOWN));
        self.unknown += skipped + usize::from(code.is_none());
    }

    /// A test of `condition` on a slot's value, when the column can answer it: a `match` of
    /// values or an integer `range` alone (the conditions whose index lists are exactly their
    /// matches; `integers_only`: the field holds no other numbers).
    pub fn test(&self, condition: &Condition, integers_only: bool) -> Option<Test<'_>> {
        let Condition::Field(fc) = condition else {
            return None;
        };
        let alone = fc.values_count.is_none() && fc.datetime_range.is_none() && fc.geo.is_empty();
        let code_of = |k: &IndexKey| self.keys.binary_search(k).ok().map(|c| c as u32);
        let accept = match (&fc.r#match, &fc.range) {
            (Some(Match::Value(v)), None) if alone => {
                Accept::Codes(code_of(&IndexKey::of_match(v)).into_iter().collect())
            }
            (Some(Match::Any(vs)), None) if alone => {
                let mut codes: Vec<u32> = vs
                    .iter()
                    .filter_map(|v| code_of(&IndexKey::of_match(v)))
                    .collect();
                codes.sort_unstable();
                Accept::Codes(codes)
            }
            (None, Some(r)) if alone && integers_only => {
                let (lo, hi) = super::integer_bounds(r);
                let first =
                    |past: &dyn Fn(&IndexKey) -> bool| self.keys.partition_point(|k| !past(k));
                let from = first(&|k| *k >= IndexKey::Integer(lo));
                let to = first(&|k| *k > IndexKey::Integer(hi));
                Accept::Between(from as u32, to.max(from) as u32)
            }
            _ => return None,
        };
        Some(Test {
            codes: &self.codes,
            accept,
        })
    }

    /// Bytes held (an estimate).
    pub fn bytes(&self) -> usize {
        self.codes.len() * 4
            + self
                .keys
                .iter()
                .map(|k| match k {
                    IndexKey::Keyword(w) => w.capacity() + std::mem::size_of::<IndexKey>(),
                    _ => std::mem::size_of::<IndexKey>(),
                })
                .sum::<usize>()
    }
}

/// The codes a test accepts.
enum Accept {
    /// These (sorted; few, as a `match any` names).
    Codes(Vec<u32>),
    /// Those from the first to before the second.
    Between(u32, u32),
}

/// One condition, tested on a slot through its field's column.
pub(crate) struct Test<'c> {
    codes: &'c [u32],
    accept: Accept,
}

impl Test<'_> {
    /// Whether `slot` meets the condition; `None` when its column cannot tell (see `UNKNOWN`;
    /// also a slot written after the column was built and not yet recorded).
    pub fn holds(&self, slot: u32) -> Option<bool> {
        let code = *self.codes.get(slot as usize)?;
        match code {
            ABSENT => Some(false),
            UNKNOWN => None,
            _ => Some(match &self.accept {
                Accept::Codes(codes) => codes.contains(&code),
                Accept::Between(from, to) => (*from..*to).contains(&code),
            }),
        }
    }
}

/// A whole filter tested through columns: each of its conditions has one.
pub(crate) struct ColumnFilter<'c> {
    pub(super) must: Vec<Test<'c>>,
    pub(super) should: Vec<Test<'c>>,
    pub(super) must_not: Vec<Test<'c>>,
}

impl ColumnFilter<'_> {
    /// Whether `slot`'s payload passes the filter; `None` when a column cannot tell.
    pub fn holds(&self, slot: u32) -> Option<bool> {
        for t in &self.must {
            if !t.holds(slot)? {
                return Some(false);
            }
        }
        for t in &self.must_not {
            if t.holds(slot)? {
                return Some(false);
            }
        }
        if self.should.is_empty() {
            return Some(true);
        }
        for t in &self.should {
            if t.holds(slot)? {
                return Some(true);
            }
        }
        Some(false)
    }
}

#[cfg(test)]
mod tests {
    use super::super::PayloadIndexes;
    use crate::filter::tests::{filter, payload};
    use crate::filter::KeyPath;
    use crate::point::{Payload, PointId};
    use serde_json::{json, Value};

    #[test]
    fn a_column_answers_as_the_filter_does_or_says_it_cannot() {
        let data: Vec<Payload> = [
            json!({"v": 3}),
            json!({"v": "a"}),
            json!({"v": [3, 4]}),
            json!({}),
            json!({"v": true}),
            json!({"v": 7}),
            json!({"v": "a b"}),
            json!({"v": null}),
            json!({"v": -2}),
            json!({"v": "2024-01-02T00:00:00Z"}),
        ]
        .into_iter()
        // Many slots the column knows: a few it does not are left to their payloads.
        .chain(std::iter::repeat_n(json!({"v": 5}), 200))
        .map(payload)
        .collect();
        let mut idx = PayloadIndexes::new(&["v".parse::<KeyPath>().unwrap()]);
        let all = || {
            Box::new(data.iter().enumerate().map(|(i, p)| (i as u32, p)))
                as Box<dyn Iterator<Item = (u32, &Payload)>>
        };
        let v = |m: Value| json!({"key": "v", "match": m});
        let answered = [
            json!({"must": [v(json!({"value": 3}))]}),
            json!({"must": [v(json!({"any": [3, 7, 99]}))]}),
            json!({"must": [v(json!({"any": ["a", "zz"]}))]}),
            json!({"must": [v(json!({"value": true}))]}),
            json!({"must": [{"key": "v", "range": {"gt": 0.5, "gte": 3}}]}),
            json!({"must": [{"key": "v", "range": {"lt": 7}}]}),
            json!({"must": [{"key": "v", "range": {"gt": 100}}]}),
            json!({"must_not": [v(json!({"value": "a"}))]}),
            json!({"should": [v(json!({"value": 7})), v(json!({"value": "a b"}))]}),
            json!({"must": [{"key": "v", "range": {"gte": -5}}], "must_not": [v(json!({"value": 3}))]}),
            json!({}),
        ];
        for f in answered {
            let f = filter(f);
            let columns = idx
                .column_filter(&f, data.len(), all)
                .unwrap_or_else(|| panic!("{f:?} has columns"));
            for (slot, p) in data.iter().enumerate() {
                let expected = f.matches(PointId::Num(slot as u64), p);
                match columns.holds(slot as u32) {
                    Some(holds) => assert_eq!(holds, expected, "{f:?} on slot {slot}"),
                    // Only the slot of two values is left to its payload.
                    None => assert_eq!(slot, 2, "{f:?}"),
                }
            }
        }
        // Conditions no column answers: words, datetimes, counts, other fields, `min_should`.
        for f in [
            json!({"must": [v(json!({"text": "a"}))]}),
            json!({"must": [{"key": "v", "range": {"gte": "2024-01-01T00:00:00Z"}}]}),
            json!({"must": [{"key": "v", "values_count": {"gt": 1}}]}),
            json!({"must": [{"key": "w", "match": {"value": 1}}]}),
            json!({"must": [{"key": "v", "match": {"value": 3}, "range": {"lt": 4}}]}),
            json!({"min_should": {"conditions": [v(json!({"value": 3}))], "min_count": 1}}),
        ] {
            assert!(
                idx.column_filter(&filter(f.clone()), data.len(), all)
                    .is_none(),
                "{f}"
            );
        }
        // Writes after the build: a new slot of a known value is answered, one of a new value
        // or changed in place is left to its payload.
        idx.add(210, &payload(json!({"v": 3})));
        idx.add(211, &payload(json!({"v": 99})));
        idx.add(212, &payload(json!({"w": 1})));
        idx.add(0, &payload(json!({"v": 5})));
        let f = filter(json!({"must": [v(json!({"value": 3}))]}));
        let columns = idx.column_filter(&f, data.len(), all).unwrap();
        let answers: Vec<Option<bool>> = (0..214).map(|s| columns.holds(s)).collect();
        assert_eq!(answers[210..], [Some(true), None, Some(false), None]);
        assert_eq!((answers[0], answers[1]), (None, Some(false)));
    }

    #[test]
    fn columns_left_unsure_by_many_slots_do_not_answer_for_a_filter() {
        let data: Vec<Payload> = (0..128)
            .map(|i| payload(json!({"tags": [i % 3, i % 5], "one": i % 3})))
            .collect();
        let idx = PayloadIndexes::new(&["tags".parse().unwrap(), "one".parse().unwrap()]);
        let all = || {
            Box::new(data.iter().enumerate().map(|(i, p)| (i as u32, p)))
                as Box<dyn Iterator<Item = (u32, &Payload)>>
        };
        let tags = filter(json!({"must": [{"key": "tags", "match": {"value": 1}}]}));
        assert!(idx.column_filter(&tags, data.len(), all).is_none());
        let one = filter(json!({"must": [{"key": "one", "match": {"value": 1}}]}));
        assert!(idx.column_filter(&one, data.len(), all).is_some());
    }
}
