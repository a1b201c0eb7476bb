//! Payload filters in Qdrant's JSON shape, and their evaluation against one point.
//!
//! A [`Filter`] combines [`Condition`]s with `must` (all), `should` (at least one), `must_not`
//! (none) and `min_should` (at least `min_count`). Parsing happens once, when the request is
//! deserialised: key paths are split, types are checked and every mistake is reported with where it
//! is (`must[1].match: ...`), so evaluation during a scan is a cheap walk with no allocation.
//!
//! ```
//! use grape_vector_db::{Filter, Payload, PointId};
//! use serde_json::json;
//!
//! let filter: Filter = serde_json::from_value(json!({
//!     "must": [
//!         {"key": "city", "match": {"any": ["Lyon", "Paris"]}},
//!         {"key": "price", "range": {"gte": 10, "lt": 100}}
//!     ],
//!     "must_not": [{"key": "tags[].name", "match": {"value": "sold"}}]
//! }))?;
//! let payload: Payload = serde_json::from_value(json!(
//!     {"city": "Lyon", "price": 42, "tags": [{"name": "new"}]}
//! ))?;
//! assert!(filter.matches(PointId::Num(1), &payload));
//! # Ok::<(), serde_json::Error>(())
//! ```
//!
//! ## Key paths
//! Qdrant's grammar: `a.b` descends into objects, `a[]` into every element of an array, `a[2]`
//! into one element; a key is letters, digits, `_` and `-`, or any text in double quotes
//! (`"a.b"` is one key, `a."b c"` two). A step only descends into its own kind of value (`a.b`
//! reaches nothing through an array: write `a[].b`). When a value the path reaches is an
//! array, its elements are the values a `match` or `range` tests (one level), so
//! `{"key": "tags", "match": {"value": "x"}}` matches `{"tags": ["x", "y"]}`.
//!
//! ## Semantics of each condition
//! These are Qdrant's, checked against Qdrant's own code by `tests/qdrant_conformance.rs`.
//! - `match.value` / `match.any`: at least one value equals (one of) the given keyword, integer or
//!   bool, of the same type (`1` never equals `1.0`, `"1"` or `true`). `any` and `except` lists
//!   are all keywords or all integers.
//! - `match.except`: at least one value is outside the list: not null, and either of another
//!   type or not in it. A missing field, `null`, `[]` and `[null]` never match.
//! - `match.text` / `text_any` / `phrase`: full text, as Qdrant's text index does it: strings are
//!   split into words on everything that is not a letter or digit, compared lower-cased, and
//!   the words of all the field's strings are pooled. `text`: every word of the query occurs;
//!   `text_any`: one does; `phrase`: the words occur in order, next to each other, within one
//!   string. A query with no words matches nothing.
//! - `range`: at least one numeric value lies within all the given bounds (strings, bools and
//!   null never do). With string bounds it is a datetime range: RFC 3339 timestamps (a space
//!   for `T`, no seconds, a date alone and no offset, meaning UTC, are accepted too), compared
//!   as instants; values that are not timestamps never match.
//! - `geo_radius` (meters along the sphere, strictly closer), `geo_bounding_box` (strictly
//!   inside; a box whose west edge is east of its east edge crosses the antimeridian) and
//!   `geo_polygon` (strictly inside the exterior ring, outside every hole): on values that are
//!   objects with numeric `lon` and `lat`. Rings need 4 points or more, the last equal to the
//!   first; coordinates outside -180..180 / -90..90 are refused.
//! - `has_vector`: `""` names the dense vector every point has, a sparse vector's name the
//!   points with a non-empty one (resolved to their ids by the engine, which holds them); other
//!   names match nothing.
//! - `values_count`: each value the key reaches is counted on its own (an array counts its
//!   elements, nulls included; `null` counts 0; anything else 1), and one must be within the
//!   bounds; a missing field counts 0.
//! - Several parts in one field condition: `values_count`, when given, decides alone;
//!   otherwise a value passes if it satisfies `match` *or* `range` *or* a geo part (Qdrant's
//!   rule).
//! - `is_empty`: the field is missing, or a value it reaches is `null` or `[]` (`[null]` is
//!   not empty). `is_null`: a value it reaches is `null` or an array holding a `null`.
//! - `has_id`: the point's id is one of those given (refused inside `nested`).
//! - `nested`: at least one object element of the array at `key` satisfies the whole inner
//!   filter on its own (`key` and `key[]` alike; a lone object is not an array of one, and
//!   elements that are not objects are skipped).
//! - `{}` as a condition is an empty filter: it holds for every point.
//! - Ties: results with equal scores come in insertion order (Qdrant promises no order).
//! - `score_threshold` is strict: a result scoring exactly the threshold is dropped.
//!
//! ## Files
//! - `mod.rs`: the public types and the constructors that build filters in code.
//! - `key_path.rs`: [`KeyPath`], parsed from `a.b[].c`, and the walk to the values it reaches.
//! - `eval.rs`: evaluation of a filter against one point's id and payload.
//! - `datetime.rs`: datetime ranges (RFC 3339 bounds). `geo.rs`: radius, box and polygon.
//! - `json.rs`: Qdrant's JSON: parsing with errors that say where, writing, and the serde impls.

mod datetime;
mod eval;
mod geo;
mod json;
mod key_path;

use serde::{Deserialize, Serialize};

use crate::point::PointId;
pub(crate) use datetime::parse as parse_datetime;
pub use datetime::DatetimeRange;
pub(crate) use eval::words;
pub use geo::{GeoCondition, GeoPoint};
use key_path::literal_key;
pub use key_path::KeyPath;
pub(crate) use key_path::Step;

/// A boolean combination of conditions; the empty filter matches every point.
///
/// ```
/// use grape_vector_db::{Condition, Filter};
/// let f = Filter::must([Condition::match_value("color", "red")]);
/// assert_eq!(serde_json::to_value(&f).unwrap()["must"][0]["match"]["value"], "red");
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Filter {
    /// All of these must hold.
    pub must: Vec<Condition>,
    /// At least one of these must hold (when not empty).
    pub should: Vec<Condition>,
    /// None of these may hold.
    pub must_not: Vec<Condition>,
    /// At least `min_count` of its conditions must hold.
    pub min_should: Option<MinShould>,
}

/// `min_should`: at least `min_count` of `conditions` must hold.
///
/// ```
/// use grape_vector_db::{Condition, Filter, MinShould};
/// let f = Filter {
///     min_should: Some(MinShould { conditions: vec![Condition::match_value("a", 1)], min_count: 1 }),
///     ..Filter::default()
/// };
/// assert!(f.min_should.is_some());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct MinShould {
    /// The candidate conditions.
    pub conditions: Vec<Condition>,
    /// How many of them must hold.
    pub min_count: usize,
}

/// One condition of a [`Filter`].
///
/// ```
/// use grape_vector_db::Condition;
/// let c: Condition = serde_json::from_str(r#"{"is_empty": {"key": "tags"}}"#).unwrap();
/// assert!(matches!(c, Condition::IsEmpty(_)));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// A condition on the values of one payload field.
    Field(FieldCondition),
    /// The field is missing, null or an empty array.
    IsEmpty(KeyPath),
    /// The field is null.
    IsNull(KeyPath),
    /// The point's id is one of these (kept sorted for binary search).
    HasId(Vec<PointId>),
    /// The point has the vector of this name (`""`: the one unnamed vector every point has).
    HasVector(String),
    /// At least one element of the array at `key` satisfies `filter`.
    Nested {
        /// Path of the array of objects.
        key: KeyPath,
        /// Filter applied to each element on its own.
        filter: Box<Filter>,
    },
    /// A nested boolean filter.
    Filter(Box<Filter>),
}

/// A test on the values found at `key`: usually one of `match`, `range`, `values_count`. When
/// several are given, Qdrant's rule applies: `values_count` decides alone, otherwise `match`
/// *or* `range`.
///
/// ```
/// use grape_vector_db::{Condition, Range};
/// let c = Condition::range("price", Range { gte: Some(1.0), ..Range::default() });
/// assert!(matches!(c, Condition::Field(_)));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct FieldCondition {
    /// Where the values are.
    pub key: KeyPath,
    /// Equality or text test.
    pub r#match: Option<Match>,
    /// Numeric bounds.
    pub range: Option<Range>,
    /// Bounds on the number of values.
    pub values_count: Option<ValuesCount>,
    /// Datetime bounds (a `range` whose bounds are strings).
    pub datetime_range: Option<Box<DatetimeRange>>,
    /// `geo_radius`, `geo_bounding_box`, `geo_polygon`.
    pub geo: Vec<GeoCondition>,
}

/// The `match` part of a field condition.
///
/// ```
/// use grape_vector_db::{Match, MatchValue};
/// let m: Match = serde_json::from_str(r#"{"any": ["a", "b"]}"#).unwrap();
/// assert_eq!(m, Match::Any(vec![MatchValue::Keyword("a".into()), MatchValue::Keyword("b".into())]));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum Match {
    /// `{"value": v}`
    Value(MatchValue),
    /// `{"any": [v, ...]}`
    Any(Vec<MatchValue>),
    /// `{"except": [v, ...]}`
    Except(Vec<MatchValue>),
    /// `{"text": "words"}`: every word occurs among the words of the field's strings
    /// (lower-cased alphanumeric words, all the strings of an array pooled).
    Text(String),
    /// `{"text_any": "words"}`: at least one of the words occurs.
    TextAny(String),
    /// `{"phrase": "words"}`: the words occur next to each other, in order, in one string.
    Phrase(String),
}

/// A value to match exactly: keyword, integer or bool.
///
/// ```
/// use grape_vector_db::MatchValue;
/// assert_eq!(MatchValue::from("x"), MatchValue::Keyword("x".into()));
/// assert_eq!(MatchValue::from(3), MatchValue::Integer(3));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MatchValue {
    /// A string compared byte for byte.
    Keyword(String),
    /// An integer (a payload float never equals it).
    Integer(i64),
    /// A boolean.
    Bool(bool),
}

impl From<&str> for MatchValue {
    fn from(s: &str) -> Self {
        MatchValue::Keyword(s.to_owned())
    }
}
impl From<String> for MatchValue {
    fn from(s: String) -> Self {
        MatchValue::Keyword(s)
    }
}
impl From<i64> for MatchValue {
    fn from(n: i64) -> Self {
        MatchValue::Integer(n)
    }
}
impl From<i32> for MatchValue {
    fn from(n: i32) -> Self {
        MatchValue::Integer(n.into())
    }
}
impl From<bool> for MatchValue {
    fn from(b: bool) -> Self {
        MatchValue::Bool(b)
    }
}

/// Numeric bounds; absent bounds are open.
///
/// ```
/// use grape_vector_db::Range;
/// let r = Range { gt: Some(1.0), lte: Some(2.0), ..Range::default() };
/// assert!(r.contains(2.0) && !r.contains(1.0));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Range {
    /// Greater than.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gt: Option<f64>,
    /// Greater than or equal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gte: Option<f64>,
    /// Less than.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lt: Option<f64>,
    /// Less than or equal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lte: Option<f64>,
}

/// Bounds on how many values a field has.
///
/// ```
/// use grape_vector_db::ValuesCount;
/// let c = ValuesCount { gte: Some(2), ..ValuesCount::default() };
/// assert!(c.contains(2) && !c.contains(1));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValuesCount {
    /// Greater than.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gt: Option<usize>,
    /// Greater than or equal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gte: Option<usize>,
    /// Less than.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lt: Option<usize>,
    /// Less than or equal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lte: Option<usize>,
}

impl Filter {
    /// A filter whose conditions must all hold.
    ///
    /// ```
    /// use grape_vector_db::{Condition, Filter};
    /// assert_eq!(Filter::must([Condition::has_id([1u64])]).must.len(), 1);
    /// ```
    pub fn must(conditions: impl IntoIterator<Item = Condition>) -> Self {
        Filter {
            must: conditions.into_iter().collect(),
            ..Filter::default()
        }
    }

    /// A filter of which at least one condition must hold.
    ///
    /// ```
    /// use grape_vector_db::{Condition, Filter};
    /// assert_eq!(Filter::should([Condition::match_value("a", true)]).should.len(), 1);
    /// ```
    pub fn should(conditions: impl IntoIterator<Item = Condition>) -> Self {
        Filter {
            should: conditions.into_iter().collect(),
            ..Filter::default()
        }
    }

    /// A filter none of whose conditions may hold.
    ///
    /// ```
    /// use grape_vector_db::{Condition, Filter};
    /// assert_eq!(Filter::must_not([Condition::is_null("a")]).must_not.len(), 1);
    /// ```
    pub fn must_not(conditions: impl IntoIterator<Item = Condition>) -> Self {
        Filter {
            must_not: conditions.into_iter().collect(),
            ..Filter::default()
        }
    }
}

impl Condition {
    /// `{"key": key, "match": {"value": value}}` for a literal key.
    ///
    /// `key` is a key path (`a.b[].c`); a string that is not a valid path (such as `"a..b"`)
    /// names a top-level field literally, so these helpers never fail.
    ///
    /// ```
    /// use grape_vector_db::{Condition, Payload, PointId};
    /// let p: Payload = serde_json::from_str(r#"{"color": "red"}"#).unwrap();
    /// assert!(Condition::match_value("color", "red").matches(PointId::Num(0), &p));
    /// ```
    pub fn match_value(key: &str, value: impl Into<MatchValue>) -> Self {
        Condition::Field(FieldCondition {
            key: literal_key(key),
            r#match: Some(Match::Value(value.into())),
            range: None,
            values_count: None,
            datetime_range: None,
            geo: Vec::new(),
        })
    }

    /// `{"key": key, "range": range}` for a literal key.
    ///
    /// `key` as in [`Condition::match_value`].
    ///
    /// ```
    /// use grape_vector_db::{Condition, Payload, PointId, Range};
    /// let p: Payload = serde_json::from_str(r#"{"x": 2.5}"#).unwrap();
    /// let c = Condition::range("x", Range { lt: Some(3.0), ..Range::default() });
    /// assert!(c.matches(PointId::Num(0), &p));
    /// ```
    pub fn range(key: &str, range: Range) -> Self {
        Condition::Field(FieldCondition {
            key: literal_key(key),
            r#match: None,
            range: Some(range),
            values_count: None,
            datetime_range: None,
            geo: Vec::new(),
        })
    }

    /// `{"has_id": ids}`.
    ///
    /// ```
    /// use grape_vector_db::{Condition, Payload, PointId};
    /// assert!(Condition::has_id([4u64, 2]).matches(PointId::Num(2), &Payload::new()));
    /// ```
    pub fn has_id<I: Into<PointId>>(ids: impl IntoIterator<Item = I>) -> Self {
        let mut ids: Vec<PointId> = ids.into_iter().map(Into::into).collect();
        ids.sort_unstable();
        ids.dedup();
        Condition::HasId(ids)
    }

    /// `{"is_null": {"key": key}}` for a literal key.
    ///
    /// `key` as in [`Condition::match_value`].
    ///
    /// ```
    /// use grape_vector_db::{Condition, Payload, PointId};
    /// let p: Payload = serde_json::from_str(r#"{"a": null}"#).unwrap();
    /// assert!(Condition::is_null("a").matches(PointId::Num(0), &p));
    /// ```
    pub fn is_null(key: &str) -> Self {
        Condition::IsNull(literal_key(key))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::point::Payload;
    use serde_json::{json, Value};

    /// A payload from a JSON object literal (test helper, shared with other modules' tests).
    pub(crate) fn payload(v: Value) -> Payload {
        v.as_object().unwrap().clone()
    }

    /// A filter from JSON that must parse (test helper).
    pub(crate) fn filter(v: Value) -> Filter {
        Filter::from_json(&v).unwrap()
    }

    #[test]
    fn helper_keys_that_are_not_paths_name_a_field_literally() {
        let p = payload(json!({"a..b": 1, "a": {"b": 2}}));
        let c = Condition::match_value("a..b", 1);
        assert!(c.matches(PointId::Num(0), &p));
        assert!(Condition::match_value("a.b", 2).matches(PointId::Num(0), &p));
    }
}
