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
//! `a.b` descends into objects; `a[]` steps into every element of the array `a`; `a[2]` into one
//! element. When the value a path reaches is itself an array, its elements are the values a
//! `match`, `range` or `text` condition tests, so `{"key": "tags", "match": {"value": "x"}}`
//! matches `{"tags": ["x", "y"]}`.
//!
//! ## Semantics of each condition
//! - `match.value` / `match.any`: at least one value equals (one of) the given keyword, integer or
//!   bool. `match.except`: the field is missing or empty, or at least one value is outside the list.
//! - `match.text`: every word of the query (lower-cased, split on non-alphanumerics) occurs among
//!   the words of one string value.
//! - `range`: at least one numeric value lies within all the given bounds.
//! - `values_count`: the number of non-null values is within the bounds.
//! - `is_empty`: the field is missing, null, or an empty array. `is_null`: the field is null.
//! - `has_id`: the point's id is one of those given.
//! - `nested`: at least one element of the array at `key` satisfies the whole inner filter.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{json, Map, Value};

use crate::error::{Error, Result};
use crate::point::{Payload, PointId};

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

/// A test on the values found at `key`: exactly one of `match`, `range`, `values_count` is usually
/// given; when several are, all must hold.
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
    /// `{"text": "words"}`: all words occur in the string (lower-cased token match).
    Text(String),
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

/// A parsed payload key such as `country.cities[].name` or `items[0].price`.
///
/// ```
/// use grape_vector_db::KeyPath;
/// let k: KeyPath = "a.b[].c".parse()?;
/// assert_eq!(k.to_string(), "a.b[].c");
/// assert!("a..b".parse::<KeyPath>().is_err());
/// # Ok::<(), grape_vector_db::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPath {
    text: String,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Key(String),
    /// `[]`: every element of an array.
    Each,
    /// `[n]`: one element of an array.
    Index(usize),
}

impl std::str::FromStr for KeyPath {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        let bad = |why: &str| Error::MalformedFilter(format!("key {text:?}: {why}"));
        let mut segments = Vec::new();
        for part in text.split('.') {
            let (name, mut rest) = match part.find('[') {
                Some(i) => part.split_at(i),
                None => (part, ""),
            };
            if name.is_empty() {
                return Err(bad(
                    "empty field name (check for '..' or a leading or trailing '.')",
                ));
            }
            segments.push(Segment::Key(name.to_owned()));
            while !rest.is_empty() {
                let close = rest
                    .find(']')
                    .ok_or_else(|| bad("'[' without a closing ']'"))?;
                let inner = &rest[1..close];
                segments.push(if inner.is_empty() {
                    Segment::Each
                } else {
                    Segment::Index(
                        inner
                            .parse()
                            .map_err(|_| bad("array index must be empty or a number"))?,
                    )
                });
                rest = &rest[close + 1..];
                if !rest.is_empty() && !rest.starts_with('[') {
                    return Err(bad("unexpected text after ']'"));
                }
            }
        }
        Ok(KeyPath {
            text: text.to_owned(),
            segments,
        })
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl KeyPath {
    /// Calls `visit` on every value the path reaches, stopping early when it returns `true`;
    /// returns whether it did. Missing keys reach nothing.
    fn any_value<'a>(
        &self,
        payload: &'a Payload,
        visit: &mut dyn FnMut(&'a Value) -> bool,
    ) -> bool {
        let Some(Segment::Key(first)) = self.segments.first() else {
            return false;
        };
        match payload.get(first) {
            Some(v) => walk(v, &self.segments[1..], visit),
            None => false,
        }
    }

    /// Calls `visit` on every value a `match` condition on this key tests (arrays at the end of
    /// the path flattened).
    pub(crate) fn for_each_leaf<'a>(&self, payload: &'a Payload, visit: &mut dyn FnMut(&'a Value)) {
        self.any_leaf(payload, &mut |v| {
            visit(v);
            false
        });
    }

    /// Like [`Self::any_value`], with arrays at the end of the path flattened into their elements.
    fn any_leaf<'a>(&self, payload: &'a Payload, visit: &mut dyn FnMut(&'a Value) -> bool) -> bool {
        self.any_value(payload, &mut |v| match v {
            Value::Array(items) => items.iter().any(&mut *visit),
            other => visit(other),
        })
    }
}

fn walk<'a>(v: &'a Value, rest: &[Segment], visit: &mut dyn FnMut(&'a Value) -> bool) -> bool {
    let Some((seg, rest)) = rest.split_first() else {
        return visit(v);
    };
    match (seg, v) {
        (Segment::Key(k), Value::Object(map)) => map.get(k).is_some_and(|v| walk(v, rest, visit)),
        (Segment::Each, Value::Array(items)) => items.iter().any(|v| walk(v, rest, visit)),
        (Segment::Index(i), Value::Array(items)) => {
            items.get(*i).is_some_and(|v| walk(v, rest, visit))
        }
        _ => false,
    }
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

impl MatchValue {
    fn equals(&self, v: &Value) -> bool {
        match (self, v) {
            (MatchValue::Keyword(a), Value::String(b)) => a == b,
            (MatchValue::Integer(a), Value::Number(b)) => b.as_i64() == Some(*a),
            (MatchValue::Bool(a), Value::Bool(b)) => a == b,
            _ => false,
        }
    }

    fn to_json(&self) -> Value {
        match self {
            MatchValue::Keyword(s) => json!(s),
            MatchValue::Integer(n) => json!(n),
            MatchValue::Bool(b) => json!(b),
        }
    }
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

    /// Parses a filter from Qdrant's JSON, naming where any mistake is.
    ///
    /// ```
    /// use grape_vector_db::Filter;
    /// let err = Filter::from_json(&serde_json::json!({"must": [{"key": "a"}]})).unwrap_err();
    /// assert!(err.to_string().contains("must[0]"));
    /// ```
    pub fn from_json(value: &Value) -> Result<Filter> {
        parse_filter(value, "filter")
    }

    /// The filter as Qdrant's JSON.
    ///
    /// ```
    /// use grape_vector_db::{Condition, Filter};
    /// let f = Filter::must([Condition::match_value("k", 1)]);
    /// assert_eq!(Filter::from_json(&f.to_json()).unwrap(), f);
    /// ```
    pub fn to_json(&self) -> Value {
        let list = |cs: &[Condition]| Value::Array(cs.iter().map(Condition::to_json).collect());
        let mut out = Map::new();
        if !self.must.is_empty() {
            out.insert("must".into(), list(&self.must));
        }
        if !self.should.is_empty() {
            out.insert("should".into(), list(&self.should));
        }
        if !self.must_not.is_empty() {
            out.insert("must_not".into(), list(&self.must_not));
        }
        if let Some(m) = &self.min_should {
            out.insert(
                "min_should".into(),
                json!({"conditions": list(&m.conditions), "min_count": m.min_count}),
            );
        }
        Value::Object(out)
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

    fn to_json(&self) -> Value {
        match self {
            Condition::Field(fc) => {
                let mut out = Map::new();
                out.insert("key".into(), json!(fc.key.text));
                if let Some(m) = &fc.r#match {
                    out.insert("match".into(), m.to_json());
                }
                if let Some(r) = &fc.range {
                    out.insert("range".into(), json!(r));
                }
                if let Some(c) = &fc.values_count {
                    out.insert("values_count".into(), json!(c));
                }
                Value::Object(out)
            }
            Condition::IsEmpty(k) => json!({"is_empty": {"key": k.text}}),
            Condition::IsNull(k) => json!({"is_null": {"key": k.text}}),
            Condition::HasId(ids) => json!({ "has_id": ids }),
            Condition::Nested { key, filter } => {
                json!({"nested": {"key": key.text, "filter": filter.to_json()}})
            }
            Condition::Filter(f) => f.to_json(),
        }
    }
}

/// The key path `key`, or, when it does not parse, a top-level field named `key` literally.
fn literal_key(key: &str) -> KeyPath {
    key.parse().unwrap_or_else(|_| KeyPath {
        text: key.to_owned(),
        segments: vec![Segment::Key(key.to_owned())],
    })
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

// ---- parsing ------------------------------------------------------------------------------

fn malformed(at: &str, why: impl fmt::Display) -> Error {
    Error::MalformedFilter(format!("{at}: {why}"))
}

fn as_object<'a>(v: &'a Value, at: &str) -> Result<&'a Map<String, Value>> {
    v.as_object()
        .ok_or_else(|| malformed(at, format!("expected an object, found {}", kind(v))))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a bool",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn reject_unknown(map: &Map<String, Value>, known: &[&str], at: &str) -> Result<()> {
    match map.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(malformed(
            at,
            format!("unknown field {k:?}; expected one of {}", known.join(", ")),
        )),
        None => Ok(()),
    }
}

/// A list of conditions; Qdrant also accepts a single condition object in place of a list.
fn parse_conditions(v: &Value, at: &str) -> Result<Vec<Condition>> {
    match v {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, c)| parse_condition(c, &format!("{at}[{i}]")))
            .collect(),
        Value::Object(_) => Ok(vec![parse_condition(v, at)?]),
        Value::Null => Ok(Vec::new()),
        other => Err(malformed(
            at,
            format!("expected a list of conditions, found {}", kind(other)),
        )),
    }
}

fn parse_filter(v: &Value, at: &str) -> Result<Filter> {
    let map = as_object(v, at)?;
    reject_unknown(map, &["must", "should", "must_not", "min_should"], at)?;
    let list = |name: &str| match map.get(name) {
        Some(v) => parse_conditions(v, &format!("{at}.{name}")),
        None => Ok(Vec::new()),
    };
    let min_should = match map.get("min_should") {
        None | Some(Value::Null) => None,
        Some(v) => {
            let at = format!("{at}.min_should");
            let m = as_object(v, &at)?;
            reject_unknown(m, &["conditions", "min_count"], &at)?;
            let conditions = parse_conditions(
                m.get("conditions").unwrap_or(&Value::Null),
                &format!("{at}.conditions"),
            )?;
            let min_count = m
                .get("min_count")
                .and_then(Value::as_u64)
                .ok_or_else(|| malformed(&at, "min_count must be an unsigned integer"))?;
            Some(MinShould {
                conditions,
                min_count: usize::try_from(min_count).unwrap_or(usize::MAX),
            })
        }
    };
    Ok(Filter {
        must: list("must")?,
        should: list("should")?,
        must_not: list("must_not")?,
        min_should,
    })
}

fn parse_key(v: Option<&Value>, at: &str) -> Result<KeyPath> {
    match v {
        Some(Value::String(s)) => s.parse().map_err(|e: Error| malformed(at, e)),
        Some(other) => Err(malformed(
            at,
            format!("key must be a string, found {}", kind(other)),
        )),
        None => Err(malformed(at, "missing \"key\"")),
    }
}

fn parse_key_object(v: &Value, at: &str) -> Result<KeyPath> {
    let map = as_object(v, at)?;
    reject_unknown(map, &["key"], at)?;
    parse_key(map.get("key"), at)
}

fn parse_condition(v: &Value, at: &str) -> Result<Condition> {
    let map = as_object(v, at)?;
    if map.contains_key("key") {
        return parse_field_condition(map, at).map(Condition::Field);
    }
    if let Some(inner) = map.get("is_empty") {
        reject_unknown(map, &["is_empty"], at)?;
        return parse_key_object(inner, &format!("{at}.is_empty")).map(Condition::IsEmpty);
    }
    if let Some(inner) = map.get("is_null") {
        reject_unknown(map, &["is_null"], at)?;
        return parse_key_object(inner, &format!("{at}.is_null")).map(Condition::IsNull);
    }
    if let Some(inner) = map.get("has_id") {
        reject_unknown(map, &["has_id"], at)?;
        let ids: Vec<PointId> = serde_json::from_value(inner.clone())
            .map_err(|e| malformed(&format!("{at}.has_id"), e))?;
        return Ok(Condition::has_id(ids));
    }
    if let Some(inner) = map.get("nested") {
        reject_unknown(map, &["nested"], at)?;
        let at = format!("{at}.nested");
        let n = as_object(inner, &at)?;
        reject_unknown(n, &["key", "filter"], &at)?;
        let key = parse_key(n.get("key"), &at)?;
        let filter = parse_filter(
            n.get("filter")
                .ok_or_else(|| malformed(&at, "missing \"filter\""))?,
            &format!("{at}.filter"),
        )?;
        return Ok(Condition::Nested {
            key,
            filter: Box::new(filter),
        });
    }
    if ["must", "should", "must_not", "min_should"]
        .iter()
        .any(|k| map.contains_key(*k))
    {
        return parse_filter(v, at).map(|f| Condition::Filter(Box::new(f)));
    }
    Err(malformed(
        at,
        "not a condition: expected \"key\", \"is_empty\", \"is_null\", \"has_id\", \"nested\" \
         or a nested filter (\"must\", \"should\", \"must_not\")",
    ))
}

fn parse_field_condition(map: &Map<String, Value>, at: &str) -> Result<FieldCondition> {
    reject_unknown(map, &["key", "match", "range", "values_count"], at)?;
    let key = parse_key(map.get("key"), at)?;
    let r#match = map
        .get("match")
        .map(|m| parse_match(m, &format!("{at}.match")))
        .transpose()?;
    let typed = |name: &str| -> Result<Option<Value>> {
        match map.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => {
                as_object(v, &format!("{at}.{name}"))?;
                Ok(Some(v.clone()))
            }
        }
    };
    let range: Option<Range> = typed("range")?
        .map(serde_json::from_value)
        .transpose()
        .map_err(|e| malformed(&format!("{at}.range"), e))?;
    let values_count: Option<ValuesCount> = typed("values_count")?
        .map(serde_json::from_value)
        .transpose()
        .map_err(|e| malformed(&format!("{at}.values_count"), e))?;
    if r#match.is_none() && range.is_none() && values_count.is_none() {
        return Err(malformed(
            at,
            format!("condition on {key} needs \"match\", \"range\" or \"values_count\""),
        ));
    }
    Ok(FieldCondition {
        key,
        r#match,
        range,
        values_count,
    })
}

fn parse_match_value(v: &Value, at: &str) -> Result<MatchValue> {
    match v {
        Value::String(s) => Ok(MatchValue::Keyword(s.clone())),
        Value::Bool(b) => Ok(MatchValue::Bool(*b)),
        Value::Number(n) => n.as_i64().map(MatchValue::Integer).ok_or_else(|| {
            malformed(
                at,
                format!("{n} is not an integer; use \"range\" to match floating-point values"),
            )
        }),
        other => Err(malformed(
            at,
            format!("expected a keyword, integer or bool, found {}", kind(other)),
        )),
    }
}

fn parse_match(v: &Value, at: &str) -> Result<Match> {
    let map = as_object(v, at)?;
    if map.len() != 1 {
        return Err(malformed(
            at,
            "expected exactly one of \"value\", \"any\", \"except\", \"text\"",
        ));
    }
    let (name, inner) = map.iter().next().expect("len checked above");
    let list = |v: &Value| -> Result<Vec<MatchValue>> {
        let items = v.as_array().ok_or_else(|| {
            malformed(
                &format!("{at}.{name}"),
                format!("expected a list, found {}", kind(v)),
            )
        })?;
        items
            .iter()
            .enumerate()
            .map(|(i, x)| parse_match_value(x, &format!("{at}.{name}[{i}]")))
            .collect()
    };
    match name.as_str() {
        "value" => parse_match_value(inner, &format!("{at}.value")).map(Match::Value),
        "any" => list(inner).map(Match::Any),
        "except" => list(inner).map(Match::Except),
        "text" => match inner {
            Value::String(s) => Ok(Match::Text(s.clone())),
            other => Err(malformed(
                &format!("{at}.text"),
                format!("expected a string, found {}", kind(other)),
            )),
        },
        other => Err(malformed(
            at,
            format!("unknown match {other:?}; expected value, any, except or text"),
        )),
    }
}

macro_rules! json_serde {
    ($ty:ty, $parse:expr) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                self.to_json().serialize(s)
            }
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let v = Value::deserialize(d)?;
                $parse(&v).map_err(serde::de::Error::custom)
            }
        }
    };
}

json_serde!(Filter, |v| parse_filter(v, "filter"));
json_serde!(Condition, |v| parse_condition(v, "condition"));

impl Match {
    fn to_json(&self) -> Value {
        let list = |vs: &[MatchValue]| -> Value { vs.iter().map(MatchValue::to_json).collect() };
        match self {
            Match::Value(v) => json!({"value": v.to_json()}),
            Match::Any(vs) => json!({"any": list(vs)}),
            Match::Except(vs) => json!({"except": list(vs)}),
            Match::Text(t) => json!({"text": t}),
        }
    }
}
json_serde!(Match, |v| parse_match(v, "match"));

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A payload from a JSON object literal (test helper, shared with other modules' tests).
    pub(crate) fn payload(v: Value) -> Payload {
        v.as_object().unwrap().clone()
    }

    /// A filter from JSON that must parse (test helper).
    pub(crate) fn filter(v: Value) -> Filter {
        Filter::from_json(&v).unwrap()
    }

    #[test]
    fn nested_arrays_are_reached_by_brackets() {
        let p = payload(json!({"country": {"cities": [
            {"name": "Lyon", "sights": ["park", "old town"]},
            {"name": "Nice", "sights": []}
        ]}}));
        let f = |v| filter(v).matches(PointId::Num(0), &p);
        assert!(f(
            json!({"must": [{"key": "country.cities[].name", "match": {"value": "Nice"}}]})
        ));
        assert!(f(
            json!({"must": [{"key": "country.cities[0].name", "match": {"value": "Lyon"}}]})
        ));
        assert!(!f(
            json!({"must": [{"key": "country.cities[1].name", "match": {"value": "Lyon"}}]})
        ));
        assert!(f(
            json!({"must": [{"key": "country.cities[].sights", "match": {"value": "park"}}]})
        ));
        assert!(f(
            json!({"must": [{"key": "country.cities[].sights", "values_count": {"gte": 2}}]})
        ));
        assert!(f(
            json!({"must": [{"is_empty": {"key": "country.cities[1].sights"}}]})
        ));
        assert!(!f(
            json!({"must": [{"is_empty": {"key": "country.cities[0].sights"}}]})
        ));
    }

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

    #[test]
    fn malformed_filters_say_where() {
        let cases = [
            (
                json!({"must": [{"key": "a", "match": {"value": 1.5}}]}),
                "filter.must[0].match.value",
            ),
            (
                json!({"must": [{"key": "a", "match": {"valu": 1}}]}),
                "unknown match",
            ),
            (json!({"must": [{"key": "a"}]}), "needs"),
            (json!({"mus": []}), "unknown field \"mus\""),
            (
                json!({"must": [{"key": "a..b", "match": {"value": 1}}]}),
                "empty field name",
            ),
            (
                json!({"must": [{"key": "a", "range": {"gt": "x"}}]}),
                "filter.must[0].range",
            ),
            (json!({"must": [{"has_id": [-1]}]}), "negative"),
            (json!({"must": 3}), "expected a list"),
            (json!({"must": [{"foo": 1}]}), "not a condition"),
            (json!([]), "expected an object"),
        ];
        for (json, needle) in cases {
            let err = Filter::from_json(&json).unwrap_err().to_string();
            assert!(
                err.contains(needle),
                "{json} gave {err:?}, expected {needle:?}"
            );
        }
    }

    #[test]
    fn helper_keys_that_are_not_paths_name_a_field_literally() {
        let p = payload(json!({"a..b": 1, "a": {"b": 2}}));
        let c = Condition::match_value("a..b", 1);
        assert!(c.matches(PointId::Num(0), &p));
        assert!(Condition::match_value("a.b", 2).matches(PointId::Num(0), &p));
    }

    #[test]
    fn json_round_trips() {
        let v = json!({
            "must": [
                {"key": "a.b[].c", "match": {"any": ["x", 2, true]}},
                {"key": "p", "range": {"gte": 1.0, "lt": 2.0}},
                {"key": "q", "values_count": {"gt": 1}},
                {"key": "t", "match": {"text": "hi"}}
            ],
            "should": [{"is_empty": {"key": "e"}}, {"is_null": {"key": "n"}}],
            "must_not": [
                {"has_id": [1, 2]},
                {"nested": {"key": "arr", "filter": {"must": [{"key": "k", "match": {"except": [1]}}]}}},
                {"must": [{"key": "z", "match": {"value": false}}]}
            ],
            "min_should": {"conditions": [{"key": "m", "match": {"value": "v"}}], "min_count": 1}
        });
        let f = filter(v.clone());
        assert_eq!(f.to_json(), v);
        let again: Filter = serde_json::from_str(&serde_json::to_string(&f).unwrap()).unwrap();
        assert_eq!(again, f);
    }
}
