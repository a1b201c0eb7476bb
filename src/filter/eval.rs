//! Evaluation: whether a point passes a filter, a condition or a set of bounds. It runs in the
//! scan for every candidate, so it walks the payload in place and allocates nothing.

use serde_json::Value;

use super::{Condition, FieldCondition, Filter, Match, MatchValue, Range, ValuesCount};
use crate::point::{Payload, PointId};

impl Filter {
    /// Whether the point with this id and payload passes the filter.
    ///
    /// ```
    /// use grape_vector_db::{Filter, Payload, PointId};
    /// assert!(Filter::default().matches(PointId::Num(1), &Payload::new()));
    /// ```
    pub fn matches(&self, id: PointId, payload: &Payload) -> bool {
        self.check(Some(id), payload)
    }

    /// `id` is `None` inside `nested`, where Qdrant knows no id (`has_id` is refused there).
    fn check(&self, id: Option<PointId>, payload: &Payload) -> bool {
        self.must.iter().all(|c| c.check(id, payload))
            && (self.should.is_empty() || self.should.iter().any(|c| c.check(id, payload)))
            && !self.must_not.iter().any(|c| c.check(id, payload))
            && self.min_should.as_ref().is_none_or(|m| {
                m.conditions
                    .iter()
                    .filter(|c| c.check(id, payload))
                    .take(m.min_count)
                    .count()
                    >= m.min_count
            })
    }
}

impl Condition {
    /// Whether the point with this id and payload satisfies the condition.
    ///
    /// ```
    /// use grape_vector_db::{Condition, Payload, PointId};
    /// let c: Condition = serde_json::from_str(r#"{"key": "t", "match": {"text": "quick FOX"}}"#).unwrap();
    /// let p: Payload = serde_json::from_str(r#"{"t": "The quick brown fox"}"#).unwrap();
    /// assert!(c.matches(PointId::Num(0), &p));
    /// ```
    pub fn matches(&self, id: PointId, payload: &Payload) -> bool {
        self.check(Some(id), payload)
    }

    fn check(&self, id: Option<PointId>, payload: &Payload) -> bool {
        match self {
            Condition::Field(fc) => fc.matches(payload),
            // Missing, or a value that is null or an empty array.
            Condition::IsEmpty(key) => {
                let mut reached = false;
                let empty = key.any_value(payload, &mut |v| {
                    reached = true;
                    is_empty_value(v)
                });
                empty || !reached
            }
            // A value that is null, or an array holding a null.
            Condition::IsNull(key) => key.any_value(payload, &mut |v| match v {
                Value::Array(items) => items.iter().any(Value::is_null),
                other => other.is_null(),
            }),
            Condition::HasId(ids) => id.is_some_and(|id| ids.binary_search(&id).is_ok()),
            // Every point has the dense vector; nested elements have none. A sparse vector's
            // name arrives here already replaced by the ids of the points that have one
            // (`Engine::with_vectors_resolved`): a payload alone cannot tell.
            Condition::HasVector(name) => id.is_some() && name.is_empty(),
            // Only objects reached through the array are tested (a lone object is not an
            // array of one), each on its own.
            Condition::Nested { key, filter } => key.any_element(payload, &mut |v| match v {
                Value::Object(element) => filter.check(None, element),
                _ => false,
            }),
            Condition::Filter(f) => f.check(id, payload),
        }
    }
}

fn is_empty_value(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(items) => items.is_empty(),
        _ => false,
    }
}

impl FieldCondition {
    /// Qdrant's order: `values_count`, when given, decides alone; otherwise a value passes if
    /// it satisfies any of `match`, `range` and the geo parts. Each value the key
    /// reaches is tested, an array element by element; a missing field passes only a
    /// `values_count` that admits zero.
    fn matches(&self, payload: &Payload) -> bool {
        let key = &self.key;
        if let Some(count) = &self.values_count {
            let mut reached = false;
            let passes = key.any_value(payload, &mut |v| {
                reached = true;
                count.contains(count_of(v))
            });
            return passes || (!reached && count.contains(0));
        }
        // Full-text conditions test the words of all the field's strings together; the other
        // parts test values one at a time.
        let text = self.r#match.as_ref().and_then(Match::words);
        if text.as_ref().is_some_and(|t| t.matches(key, payload)) {
            return true;
        }
        let value_match = self.r#match.as_ref().filter(|_| text.is_none());
        let (range, datetime, geo) = (&self.range, &self.datetime_range, &self.geo);
        if value_match.is_none() && range.is_none() && datetime.is_none() && geo.is_empty() {
            return false;
        }
        key.any_leaf(payload, &mut |v| {
            value_match.is_some_and(|m| m.test(v))
                || range.as_ref().is_some_and(|r| r.contains_value(v))
                || datetime.as_ref().is_some_and(|r| r.contains_value(v))
                || geo.iter().any(|g| g.contains_value(v))
        })
    }
}

/// How many values `values_count` sees in one reached value.
fn count_of(v: &Value) -> usize {
    match v {
        Value::Null => 0,
        Value::Array(items) => items.len(),
        _ => 1,
    }
}

impl Match {
    /// Whether one value (an element, if the field is an array) passes a `value`, `any` or
    /// `except` match.
    fn test(&self, v: &Value) -> bool {
        match self {
            Match::Value(m) => m.equals(v),
            Match::Any(ms) => ms.iter().any(|m| m.equals(v)),
            // A value outside the list: null never is; a value of another type always is.
            Match::Except(ms) => match v {
                Value::Null => false,
                Value::String(_) if ms.iter().all(|m| matches!(m, MatchValue::Keyword(_))) => {
                    !ms.iter().any(|m| m.equals(v))
                }
                Value::Number(n) if ms.iter().all(|m| matches!(m, MatchValue::Integer(_))) => {
                    n.as_i64().is_none() || !ms.iter().any(|m| m.equals(v))
                }
                _ => true,
            },
            Match::Text(_) | Match::TextAny(_) | Match::Phrase(_) => false,
        }
    }

    /// The full-text query of a `text`, `text_any` or `phrase` match.
    fn words(&self) -> Option<TextQuery<'_>> {
        match self {
            Match::Text(q) => Some(TextQuery::All(q)),
            Match::TextAny(q) => Some(TextQuery::Any(q)),
            Match::Phrase(q) => Some(TextQuery::Phrase(q)),
            _ => None,
        }
    }
}

/// A full-text query, matched as Qdrant's text index does: strings split into lower-cased
/// alphanumeric words; a query without words matches nothing.
enum TextQuery<'q> {
    /// Every word occurs among the words of the field's strings.
    All(&'q str),
    /// At least one word occurs.
    Any(&'q str),
    /// The words occur in this order, next to each other, within one string.
    Phrase(&'q str),
}

impl TextQuery<'_> {
    fn matches(&self, key: &super::KeyPath, payload: &Payload) -> bool {
        let in_field = |word: &str| {
            key.any_leaf(payload, &mut |v| match v {
                Value::String(s) => words(s).any(|w| same_word(w, word)),
                _ => false,
            })
        };
        match *self {
            TextQuery::All(q) => words(q).next().is_some() && words(q).all(in_field),
            TextQuery::Any(q) => words(q).any(in_field),
            TextQuery::Phrase(q) => {
                let phrase: Vec<&str> = words(q).collect();
                !phrase.is_empty()
                    && key.any_leaf(payload, &mut |v| match v {
                        Value::String(s) => contains_phrase(s, &phrase),
                        _ => false,
                    })
            }
        }
    }
}

impl MatchValue {
    fn equals(&self, v: &Value) -> bool {
        match (self, v) {
            (MatchValue::Keyword(a), Value::String(b)) => a == b,
            (MatchValue::Integer(a), Value::Number(b)) => b.as_i64() == Some(*a),
            (MatchValue::Bool(a), Value::Bool(b)) => a == b,
            _ => false,
        }
    }
}

impl Range {
    /// Whether a payload value is a number within the bounds (strings, bools, null, objects
    /// and arrays never are).
    fn contains_value(&self, v: &Value) -> bool {
        v.as_f64().is_some_and(|x| self.contains(x))
    }

    /// Whether `x` satisfies every bound.
    ///
    /// ```
    /// assert!(grape_vector_db::Range::default().contains(-5.0));
    /// ```
    pub fn contains(&self, x: f64) -> bool {
        within(x, self.gt, self.gte, self.lt, self.lte)
    }
}

impl ValuesCount {
    /// Whether `n` satisfies every bound.
    ///
    /// ```
    /// assert!(grape_vector_db::ValuesCount::default().contains(0));
    /// ```
    pub fn contains(&self, n: usize) -> bool {
        within(n, self.gt, self.gte, self.lt, self.lte)
    }
}

/// Whether `x` satisfies every given bound (absent bounds are open).
fn within<T: PartialOrd>(
    x: T,
    gt: Option<T>,
    gte: Option<T>,
    lt: Option<T>,
    lte: Option<T>,
) -> bool {
    gt.is_none_or(|b| x > b)
        && gte.is_none_or(|b| x >= b)
        && lt.is_none_or(|b| x < b)
        && lte.is_none_or(|b| x <= b)
}

/// Alphanumeric words of `s` (split on everything else): the tokens of full-text matching.
pub(crate) fn words(s: &str) -> impl Iterator<Item = &str> {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
}

/// Whether two words are equal, ignoring case. Runs in the scan for every candidate, so it
/// compares lazily lower-cased characters instead of allocating lower-cased copies.
fn same_word(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        a.eq_ignore_ascii_case(b)
    } else {
        a.chars()
            .flat_map(char::to_lowercase)
            .eq(b.chars().flat_map(char::to_lowercase))
    }
}

/// Whether the words of `phrase` occur consecutively among the words of `text`.
fn contains_phrase(text: &str, phrase: &[&str]) -> bool {
    let text: Vec<&str> = words(text).collect();
    text.windows(phrase.len())
        .any(|w| w.iter().zip(phrase).all(|(a, b)| same_word(a, b)))
}

#[cfg(test)]
mod tests {
    use crate::filter::tests::{filter, payload};
    use crate::point::PointId;
    use serde_json::json;

    #[test]
    fn nested_condition_applies_the_filter_per_element() {
        let p = payload(json!({"diet": [
            {"food": "meat", "likes": false},
            {"food": "veg", "likes": true}
        ]}));
        let id = PointId::Num(0);
        // Across elements both conditions hold, but never within one element.
        let flat = filter(json!({"must": [
            {"key": "diet[].food", "match": {"value": "meat"}},
            {"key": "diet[].likes", "match": {"value": true}}
        ]}));
        let nested = filter(
            json!({"must": [{"nested": {"key": "diet", "filter": {"must": [
                {"key": "food", "match": {"value": "meat"}},
                {"key": "likes", "match": {"value": true}}
            ]}}}]}),
        );
        assert!(flat.matches(id, &p));
        assert!(!nested.matches(id, &p));
    }

    #[test]
    fn should_must_not_and_min_should() {
        let p = payload(json!({"a": 1, "b": "x", "c": true}));
        let id = PointId::Num(9);
        let f = |v| filter(v).matches(id, &p);
        assert!(f(
            json!({"should": [{"key": "a", "match": {"value": 2}}, {"key": "b", "match": {"value": "x"}}]})
        ));
        assert!(!f(json!({"should": [{"key": "a", "match": {"value": 2}}]})));
        assert!(!f(json!({"must_not": [{"has_id": [9]}]})));
        assert!(f(
            json!({"must_not": [{"has_id": [8, "550e8400-e29b-41d4-a716-446655440000"]}]})
        ));
        let two_of = |n| {
            json!({"min_should": {"min_count": n, "conditions": [
                {"key": "a", "match": {"value": 1}},
                {"key": "b", "match": {"value": "y"}},
                {"key": "c", "match": {"value": true}}
            ]}})
        };
        assert!(f(two_of(2)));
        assert!(!f(two_of(3)));
        // A condition may itself be a filter.
        assert!(f(
            json!({"must": [{"should": [{"key": "a", "match": {"any": [5, 1]}}]}]})
        ));
    }

    #[test]
    fn match_except_text_range_null() {
        let p = payload(json!({"tags": ["a", "b"], "t": "Hello, World!", "x": 2.5, "n": null}));
        let id = PointId::Num(0);
        let f = |v| filter(v).matches(id, &p);
        assert!(f(
            json!({"must": [{"key": "tags", "match": {"except": ["a"]}}]})
        ));
        assert!(!f(
            json!({"must": [{"key": "tags", "match": {"except": ["a", "b"]}}]})
        ));
        // Qdrant: a missing field is never outside the list.
        assert!(!f(
            json!({"must": [{"key": "missing", "match": {"except": ["a"]}}]})
        ));
        assert!(f(
            json!({"must": [{"key": "t", "match": {"text": "world hello"}}]})
        ));
        assert!(!f(
            json!({"must": [{"key": "t", "match": {"text": "worlds"}}]})
        ));
        assert!(f(
            json!({"must": [{"key": "x", "range": {"gt": 2, "lte": 2.5}}]})
        ));
        assert!(!f(json!({"must": [{"key": "x", "range": {"gt": 2.5}}]})));
        assert!(f(
            json!({"must": [{"is_null": {"key": "n"}}, {"is_empty": {"key": "n"}}]})
        ));
        assert!(!f(json!({"must": [{"is_null": {"key": "missing"}}]})));
        assert!(f(json!({"must": [{"is_empty": {"key": "missing"}}]})));
        assert!(!f(json!({"must": [{"key": "x", "match": {"value": 2}}]})));
    }

    #[test]
    fn qdrant_semantics_of_the_issue_16_findings() {
        let id = PointId::Num(0);
        let passes =
            |f: serde_json::Value, p: serde_json::Value| filter(f).matches(id, &payload(p));
        let cond = |c: serde_json::Value| json!({"must": [c]});
        // D1: except needs a non-null value outside the list.
        let except = cond(json!({"key": "a", "match": {"except": ["x"]}}));
        let d1 = [
            json!({}),
            json!({"a": null}),
            json!({"a": []}),
            json!({"a": [null]}),
        ];
        for p in d1 {
            assert!(!passes(except.clone(), p.clone()), "{p}");
        }
        assert!(passes(except.clone(), json!({"a": "y"})));
        assert!(
            passes(except, json!({"a": [null, 1]})),
            "1 is of another type"
        );
        // D2, D3: null inside arrays.
        let is_null = cond(json!({"is_null": {"key": "a"}}));
        assert!(passes(is_null.clone(), json!({"a": [null]})));
        assert!(passes(is_null, json!({"a": [null, 1]})));
        let is_empty = cond(json!({"is_empty": {"key": "a"}}));
        assert!(!passes(is_empty.clone(), json!({"a": [null]})));
        assert!(passes(is_empty, json!({"a": []})));
        // D4: each reached value counted on its own, nulls inside arrays included.
        let count = |key: &str, gte: usize| cond(json!({"key": key, "values_count": {"gte": gte}}));
        assert!(!passes(count("a[]", 2), json!({"a": [1, 2, 3]})));
        assert!(passes(count("a", 3), json!({"a": [1, null, 3]})));
        // D5: match or range.
        let either = cond(json!({"key": "n", "match": {"value": 1}, "range": {"gt": 3}}));
        assert!(passes(either.clone(), json!({"n": 1})));
        assert!(passes(either.clone(), json!({"n": 5})));
        assert!(!passes(either, json!({"n": 2})));
        // D6: nested reaches objects in arrays only.
        let nested = cond(json!({"nested": {"key": "a", "filter": {"must": [
            {"key": "x", "match": {"value": 1}}
        ]}}}));
        assert!(
            !passes(nested.clone(), json!({"a": {"x": 1}})),
            "a lone object"
        );
        assert!(
            !passes(nested.clone(), json!({"a": [[{"x": 1}]]})),
            "arrays of arrays"
        );
        assert!(passes(nested, json!({"a": [{"x": 2}, {"x": 1}]})));
        // D7: the words of all strings pooled; no words match nothing.
        let text = |q: &str| cond(json!({"key": "d", "match": {"text": q}}));
        let desc = json!({"d": ["quick dog", "brown cat"]});
        assert!(passes(text("quick brown"), desc.clone()));
        assert!(!passes(text(""), desc.clone()));
        assert!(!passes(text("!!!"), desc.clone()));
        let phrase = |q: &str| cond(json!({"key": "d", "match": {"phrase": q}}));
        assert!(passes(phrase("Quick dog"), desc.clone()));
        assert!(
            !passes(phrase("dog brown"), desc.clone()),
            "a phrase stays in one string"
        );
        let any = cond(json!({"key": "d", "match": {"text_any": "zebra CAT"}}));
        assert!(passes(any, desc));
        // D8: quoted keys.
        let quoted = cond(json!({"key": "\"a.b\"", "match": {"value": 1}}));
        assert!(passes(quoted.clone(), json!({"a.b": 1})));
        assert!(!passes(quoted, json!({"a": {"b": 1}})));
        // D11: {} is an empty filter.
        assert!(passes(cond(json!({})), json!({})));
    }
}
