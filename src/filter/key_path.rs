//! Key paths: [`KeyPath`], parsed once from text such as `a.b[].c`, and the walk through a
//! payload to the values a path reaches.

use std::fmt;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::point::Payload;

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
    /// The path as it was written.
    pub(super) fn as_str(&self) -> &str {
        &self.text
    }

    /// Calls `visit` on every value the path reaches, stopping early when it returns `true`;
    /// returns whether it did. Missing keys reach nothing.
    pub(super) fn any_value<'a>(
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
    pub(super) fn any_leaf<'a>(
        &self,
        payload: &'a Payload,
        visit: &mut dyn FnMut(&'a Value) -> bool,
    ) -> bool {
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

/// The key path `key`, or, when it does not parse, a top-level field named `key` literally.
pub(super) fn literal_key(key: &str) -> KeyPath {
    key.parse().unwrap_or_else(|_| KeyPath {
        text: key.to_owned(),
        segments: vec![Segment::Key(key.to_owned())],
    })
}

#[cfg(test)]
mod tests {
    use crate::filter::tests::{filter, payload};
    use crate::point::PointId;
    use serde_json::json;

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
}
