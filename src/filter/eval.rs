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
        self.must.iter().all(|c| c.matches(id, payload))
            && (self.should.is_empty() || self.should.iter().any(|c| c.matches(id, payload)))
            && !self.must_not.iter().any(|c| c.matches(id, payload))
            && self.min_should.as_ref().is_none_or(|m| {
                m.conditions
                    .iter()
                    .filter(|c| c.matches(id, payload))
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
        match self {
            Condition::Field(fc) => fc.matches(payload),
            Condition::IsEmpty(key) => !key.any_leaf(payload, &mut |v| !v.is_null()),
            Condition::IsNull(key) => key.any_value(payload, &mut |v| v.is_null()),
            Condition::HasId(ids) => ids.binary_search(&id).is_ok(),
            Condition::Nested { key, filter } => key.any_leaf(payload, &mut |v| match v {
                Value::Object(element) => filter.matches(id, element),
                _ => false,
            }),
            Condition::Filter(f) => f.matches(id, payload),
        }
    }
}

impl FieldCondition {
    fn matches(&self, payload: &Payload) -> bool {
        let key = &self.key;
        let match_ok = match &self.r#match {
            None => true,
            Some(Match::Value(m)) => key.any_leaf(payload, &mut |v| m.equals(v)),
            Some(Match::Any(ms)) => key.any_leaf(payload, &mut |v| ms.iter().any(|m| m.equals(v))),
            Some(Match::Except(ms)) => {
                let mut seen_any = false;
                let outside = key.any_leaf(payload, &mut |v| {
                    seen_any |= !v.is_null();
                    !v.is_null() && !ms.iter().any(|m| m.equals(v))
                });
                outside || !seen_any
            }
            Some(Match::Text(query)) => key.any_leaf(payload, &mut |v| match v {
                Value::String(s) => contains_all_words(s, query),
                _ => false,
            }),
        };
        match_ok
            && self.range.as_ref().is_none_or(|r| {
                key.any_leaf(payload, &mut |v| v.as_f64().is_some_and(|x| r.contains(x)))
            })
            && self.values_count.as_ref().is_none_or(|c| {
                let mut n = 0usize;
                key.any_leaf(payload, &mut |v| {
                    n += usize::from(!v.is_null());
                    false
                });
                c.contains(n)
            })
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

/// Alphanumeric words of `s` (split on everything else).
fn words(s: &str) -> impl Iterator<Item = &str> {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
}

/// Whether every word of `query` occurs, ignoring case, among the words of `text`. Runs in the
/// scan for every candidate, so it compares lazily lower-cased characters instead of allocating
/// lower-cased copies.
fn contains_all_words(text: &str, query: &str) -> bool {
    let same = |a: &str, b: &str| {
        if a.is_ascii() && b.is_ascii() {
            a.eq_ignore_ascii_case(b)
        } else {
            a.chars()
                .flat_map(char::to_lowercase)
                .eq(b.chars().flat_map(char::to_lowercase))
        }
    };
    words(query).all(|q| words(text).any(|t| same(t, q)))
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
        assert!(f(
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
}
