//! Qdrant's JSON: parsing, which checks everything once and says where each mistake is
//! (`filter.must[1].match: ...`), writing, and the serde impls built on both.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{json, Map, Value};

use super::datetime::{DatetimeRange, BOUNDS};
use super::{
    Condition, FieldCondition, Filter, GeoCondition, GeoPoint, KeyPath, Match, MatchValue,
    MinShould, Range, ValuesCount,
};
use crate::error::{Error, Result};
use crate::point::PointId;

impl Filter {
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
    fn to_json(&self) -> Value {
        match self {
            Condition::Field(fc) => {
                let mut out = Map::new();
                out.insert("key".into(), json!(fc.key.as_str()));
                if let Some(m) = &fc.r#match {
                    out.insert("match".into(), m.to_json());
                }
                if let Some(r) = &fc.range {
                    out.insert("range".into(), json!(r));
                }
                if let Some(c) = &fc.values_count {
                    out.insert("values_count".into(), json!(c));
                }
                if let Some(d) = &fc.datetime_range {
                    let bounds = BOUNDS
                        .iter()
                        .zip(d.bounds())
                        .filter_map(|(name, b)| b.as_ref().map(|b| (name.to_string(), json!(b))));
                    out.insert("range".into(), Value::Object(bounds.collect()));
                }
                for g in &fc.geo {
                    let (name, value) = geo_json(g);
                    out.insert(name.into(), value);
                }
                Value::Object(out)
            }
            Condition::IsEmpty(k) => json!({"is_empty": {"key": k.as_str()}}),
            Condition::IsNull(k) => json!({"is_null": {"key": k.as_str()}}),
            Condition::HasId(ids) => json!({ "has_id": ids }),
            Condition::HasVector(name) => json!({ "has_vector": name }),
            Condition::Nested { key, filter } => {
                json!({"nested": {"key": key.as_str(), "filter": filter.to_json()}})
            }
            Condition::Filter(f) => f.to_json(),
        }
    }
}

fn geo_json(g: &GeoCondition) -> (&'static str, Value) {
    let point = |p: &GeoPoint| json!({"lon": p.lon, "lat": p.lat});
    let ring = |r: &[GeoPoint]| json!({"points": r.iter().map(point).collect::<Vec<_>>()});
    match g {
        GeoCondition::Radius { center, radius } => (
            "geo_radius",
            json!({"center": point(center), "radius": radius}),
        ),
        GeoCondition::BoundingBox {
            top_left,
            bottom_right,
        } => (
            "geo_bounding_box",
            json!({"top_left": point(top_left), "bottom_right": point(bottom_right)}),
        ),
        GeoCondition::Polygon {
            exterior,
            interiors,
        } => {
            let mut out = json!({"exterior": ring(exterior)});
            if !interiors.is_empty() {
                out["interiors"] = interiors.iter().map(|r| ring(r)).collect();
            }
            ("geo_polygon", out)
        }
    }
}

impl Match {
    fn to_json(&self) -> Value {
        let list = |vs: &[MatchValue]| -> Value { vs.iter().map(MatchValue::to_json).collect() };
        match self {
            Match::Value(v) => json!({"value": v.to_json()}),
            Match::Any(vs) => json!({"any": list(vs)}),
            Match::Except(vs) => json!({"except": list(vs)}),
            Match::Text(t) => json!({"text": t}),
            Match::TextAny(t) => json!({"text_any": t}),
            Match::Phrase(t) => json!({"phrase": t}),
        }
    }
}

impl MatchValue {
    fn to_json(&self) -> Value {
        match self {
            MatchValue::Keyword(s) => json!(s),
            MatchValue::Integer(n) => json!(n),
            MatchValue::Bool(b) => json!(b),
        }
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
                m.get("conditions")
                    .ok_or_else(|| malformed(&at, "missing \"conditions\""))?,
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
    if let Some(inner) = map.get("has_vector") {
        reject_unknown(map, &["has_vector"], at)?;
        return match inner {
            Value::String(name) => Ok(Condition::HasVector(name.clone())),
            other => Err(malformed(
                &format!("{at}.has_vector"),
                format!("expected a vector name, found {}", kind(other)),
            )),
        };
    }
    if let Some(inner) = map.get("nested") {
        reject_unknown(map, &["nested"], at)?;
        return parse_nested(inner, &format!("{at}.nested"));
    }
    // `{}` is an empty filter, as in Qdrant: it holds for every point.
    if map.is_empty()
        || ["must", "should", "must_not", "min_should"]
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

/// The inside of `{"nested": {"key": ..., "filter": ...}}`.
fn parse_nested(v: &Value, at: &str) -> Result<Condition> {
    let n = as_object(v, at)?;
    reject_unknown(n, &["key", "filter"], at)?;
    let key = parse_key(n.get("key"), at)?;
    let filter = parse_filter(
        n.get("filter")
            .ok_or_else(|| malformed(at, "missing \"filter\""))?,
        &format!("{at}.filter"),
    )?;
    if uses_has_id(&filter) {
        return Err(malformed(
            &format!("{at}.filter"),
            "has_id cannot be used inside nested (the elements of an array have no ids); \
             put it beside the nested condition",
        ));
    }
    Ok(Condition::Nested {
        key,
        filter: Box::new(filter),
    })
}

fn uses_has_id(filter: &Filter) -> bool {
    let mut conditions = (filter
        .must
        .iter()
        .chain(&filter.should)
        .chain(&filter.must_not))
    .chain(filter.min_should.iter().flat_map(|m| &m.conditions));
    conditions.any(|c| match c {
        Condition::HasId(_) => true,
        Condition::Filter(f) => uses_has_id(f),
        _ => false,
    })
}

fn parse_field_condition(map: &Map<String, Value>, at: &str) -> Result<FieldCondition> {
    const PARTS: [&str; 6] = [
        "match",
        "range",
        "values_count",
        "geo_radius",
        "geo_bounding_box",
        "geo_polygon",
    ];
    let mut known = vec!["key"];
    known.extend(PARTS);
    reject_unknown(map, &known, at)?;
    let key = parse_key(map.get("key"), at)?;
    let part = |name: &str| -> Result<Option<&Value>> {
        match map.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => as_object(v, &format!("{at}.{name}")).map(|_| Some(v)),
        }
    };
    let r#match = part("match")?
        .map(|m| parse_match(m, &format!("{at}.match")))
        .transpose()?;
    let (range, datetime_range) = match part("range")? {
        Some(r) => parse_range(r, &format!("{at}.range"))?,
        None => (None, None),
    };
    let values_count: Option<ValuesCount> = part("values_count")?
        .map(|v| serde_json::from_value(v.clone()))
        .transpose()
        .map_err(|e| malformed(&format!("{at}.values_count"), e))?;
    let mut geo = Vec::new();
    for name in &PARTS[3..] {
        if let Some(v) = part(name)? {
            let at = format!("{at}.{name}");
            let g = parse_geo(name, v, &at)?;
            g.validate().map_err(|why| malformed(&at, why))?;
            geo.push(g);
        }
    }
    if PARTS
        .iter()
        .all(|p| matches!(map.get(*p), None | Some(Value::Null)))
    {
        return Err(malformed(
            at,
            format!(
                "condition on {key} needs \"match\", \"range\", \"values_count\" or a geo \
                 condition"
            ),
        ));
    }
    Ok(FieldCondition {
        key,
        r#match,
        range,
        values_count,
        datetime_range,
        geo,
    })
}

/// A numeric range, or a datetime range when a bound is a string (then all must be).
fn parse_range(v: &Value, at: &str) -> Result<(Option<Range>, Option<Box<DatetimeRange>>)> {
    let map = as_object(v, at)?;
    reject_unknown(map, &BOUNDS, at)?;
    if !map.values().any(Value::is_string) {
        let range = serde_json::from_value(v.clone()).map_err(|e| malformed(at, e))?;
        return Ok((Some(range), None));
    }
    let mut bounds: [Option<String>; 4] = Default::default();
    for (i, name) in BOUNDS.iter().enumerate() {
        bounds[i] = match map.get(*name) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                return Err(malformed(
                    at,
                    format!(
                        "{name}: a datetime range takes strings only, found {}",
                        kind(other)
                    ),
                ))
            }
        };
    }
    let range = DatetimeRange::new(bounds).map_err(|why| malformed(at, why))?;
    Ok((None, Some(Box::new(range))))
}

fn parse_geo_point(v: Option<&Value>, at: &str) -> Result<GeoPoint> {
    let v = v.ok_or_else(|| malformed(at, "missing"))?;
    let map = as_object(v, at)?;
    reject_unknown(map, &["lon", "lat"], at)?;
    let coordinate = |name: &str| {
        map.get(name)
            .and_then(Value::as_f64)
            .ok_or_else(|| malformed(at, format!("{name} must be a number")))
    };
    Ok(GeoPoint {
        lon: coordinate("lon")?,
        lat: coordinate("lat")?,
    })
}

fn parse_ring(v: Option<&Value>, at: &str) -> Result<Vec<GeoPoint>> {
    let map = as_object(v.ok_or_else(|| malformed(at, "missing"))?, at)?;
    reject_unknown(map, &["points"], at)?;
    let points = map
        .get("points")
        .and_then(Value::as_array)
        .ok_or_else(|| malformed(at, "points must be a list of {\"lon\", \"lat\"}"))?;
    points
        .iter()
        .enumerate()
        .map(|(i, p)| parse_geo_point(Some(p), &format!("{at}.points[{i}]")))
        .collect()
}

fn parse_geo(name: &str, v: &Value, at: &str) -> Result<GeoCondition> {
    let map = as_object(v, at)?;
    let field = |f: &str| map.get(f);
    Ok(match name {
        "geo_radius" => {
            reject_unknown(map, &["center", "radius"], at)?;
            GeoCondition::Radius {
                center: parse_geo_point(field("center"), &format!("{at}.center"))?,
                radius: field("radius")
                    .and_then(Value::as_f64)
                    .ok_or_else(|| malformed(at, "radius must be a number of meters"))?,
            }
        }
        "geo_bounding_box" => {
            reject_unknown(map, &["top_left", "bottom_right"], at)?;
            GeoCondition::BoundingBox {
                top_left: parse_geo_point(field("top_left"), &format!("{at}.top_left"))?,
                bottom_right: parse_geo_point(
                    field("bottom_right"),
                    &format!("{at}.bottom_right"),
                )?,
            }
        }
        _ => {
            reject_unknown(map, &["exterior", "interiors"], at)?;
            let interiors = match field("interiors") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(rings)) => rings
                    .iter()
                    .enumerate()
                    .map(|(i, r)| parse_ring(Some(r), &format!("{at}.interiors[{i}]")))
                    .collect::<Result<_>>()?,
                Some(other) => {
                    return Err(malformed(
                        at,
                        format!("interiors: expected a list, found {}", kind(other)),
                    ))
                }
            };
            GeoCondition::Polygon {
                exterior: parse_ring(field("exterior"), &format!("{at}.exterior"))?,
                interiors,
            }
        }
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
            "expected exactly one of \"value\", \"any\", \"except\", \"text\", \"text_any\", \
             \"phrase\"",
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
        let values: Vec<MatchValue> = items
            .iter()
            .enumerate()
            .map(|(i, x)| parse_match_value(x, &format!("{at}.{name}[{i}]")))
            .collect::<Result<_>>()?;
        // Qdrant's lists are all keywords or all integers.
        let keywords = values.iter().all(|v| matches!(v, MatchValue::Keyword(_)));
        let integers = values.iter().all(|v| matches!(v, MatchValue::Integer(_)));
        match keywords || integers {
            true => Ok(values),
            false => Err(malformed(
                &format!("{at}.{name}"),
                "a list must be all keywords or all integers (bools and mixed lists are not \
                 accepted)",
            )),
        }
    };
    match name.as_str() {
        "value" => parse_match_value(inner, &format!("{at}.value")).map(Match::Value),
        "any" => list(inner).map(Match::Any),
        "except" => list(inner).map(Match::Except),
        "text" | "text_any" | "phrase" => {
            let Value::String(text) = inner else {
                return Err(malformed(
                    &format!("{at}.{name}"),
                    format!("expected a string, found {}", kind(inner)),
                ));
            };
            Ok(match name.as_str() {
                "text" => Match::Text(text.clone()),
                "text_any" => Match::TextAny(text.clone()),
                _ => Match::Phrase(text.clone()),
            })
        }
        other => Err(malformed(
            at,
            format!(
                "unknown match {other:?}; expected value, any, except, text, text_any or phrase"
            ),
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
json_serde!(Match, |v| parse_match(v, "match"));

#[cfg(test)]
mod tests {
    use crate::filter::tests::filter;
    use crate::filter::Filter;
    use serde_json::json;

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
                "invalid field name",
            ),
            (
                json!({"must": [{"key": "a", "range": {"gt": "x"}}]}),
                "filter.must[0].range",
            ),
            (json!({"must": [{"has_id": [-1]}]}), "negative"),
            (json!({"must": 3}), "expected a list"),
            (json!({"must": [{"foo": 1}]}), "not a condition"),
            // Issue 16, D8 and D11: what Qdrant refuses.
            (
                json!({"must": [{"key": "a b", "match": {"value": 1}}]}),
                "quote keys",
            ),
            (
                json!({"must": [{"key": "a]", "match": {"value": 1}}]}),
                "after a key",
            ),
            (
                json!({"must": [{"key": "", "match": {"value": 1}}]}),
                "invalid field name",
            ),
            (
                json!({"must": [{"key": "a", "match": {"any": ["x", 1]}}]}),
                "all keywords or all integers",
            ),
            (
                json!({"must": [{"key": "a", "match": {"except": [true]}}]}),
                "all keywords or all integers",
            ),
            (
                json!({"min_should": {"min_count": 1}}),
                "missing \"conditions\"",
            ),
            (
                json!({"must": [{"key": "t", "range": {"gt": "2024-01-01", "lt": 5}}]}),
                "takes strings only",
            ),
            (
                json!({"must": [{"key": "t", "range": {"gt": "yesterday"}}]}),
                "not an RFC 3339 datetime",
            ),
            (
                json!({"must": [{"key": "p", "geo_radius": {"center": {"lon": 0, "lat": 91}, "radius": 5}}]}),
                "lat within -90..90",
            ),
            (
                json!({"must": [{"key": "p", "geo_polygon": {"exterior": {"points": [
                    {"lon": 0, "lat": 0}, {"lon": 1, "lat": 0}, {"lon": 1, "lat": 1}
                ]}}}]}),
                "at least 4 points",
            ),
            (
                json!({"must": [{"has_vector": 3}]}),
                "expected a vector name",
            ),
            (
                json!({"must": [{"nested": {"key": "a", "filter": {"must": [{"has_id": [1]}]}}}]}),
                "has_id cannot be used inside nested",
            ),
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
    fn json_round_trips() {
        let v = json!({
            "must": [
                {"key": "a.b[].c", "match": {"any": ["x", "y"]}},
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
