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

/// One step of a payload field's path, as a walk over a payload builds it: a key, or any
/// element of an array.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Step<'a> {
    Key(&'a str),
    Each,
}

impl KeyPath {
    /// Whether this path and the field's `path` agree step by step as far as both go (one may
    /// lead to the other): Qdrant's include pattern.
    pub(crate) fn agrees_with(&self, path: &[Step]) -> bool {
        self.segments.iter().zip(path).all(|(s, p)| match (s, p) {
            (Segment::Key(a), Step::Key(b)) => a == b,
            (Segment::Each, Step::Each) => true,
            _ => false,
        })
    }

    /// Whether this path leads to the field's `path` (or is it): Qdrant's exclude pattern.
    pub(crate) fn leads_to(&self, path: &[Step]) -> bool {
        self.segments.len() <= path.len() && self.agrees_with(path)
    }
}

impl std::str::FromStr for KeyPath {
    type Err = Error;

    /// Qdrant's grammar: a first key, then `.key`, `[n]` or `[]` steps. A key is letters,
    /// digits, `_` and `-`, or any text but `"` and `\` between double quotes (`"a.b"` is one
    /// key with a dot in it).
    fn from_str(text: &str) -> Result<Self> {
        let bad = |why: &str| Error::MalformedFilter(format!("key {text:?}: {why}"));
        let mut rest = text;
        let mut segments = vec![Segment::Key(take_key(&mut rest).map_err(bad)?)];
        while let Some(c) = rest.chars().next() {
            match c {
                '.' => {
                    rest = &rest[1..];
                    segments.push(Segment::Key(take_key(&mut rest).map_err(bad)?));
                }
                '[' => {
                    let close = rest
                        .find(']')
                        .ok_or_else(|| bad("'[' without a closing ']'"))?;
                    let inner = &rest[1..close];
                    segments.push(match inner {
                        "" => Segment::Each,
                        digits if digits.bytes().all(|b| b.is_ascii_digit()) => Segment::Index(
                            digits
                                .parse()
                                .map_err(|_| bad("array index out of range"))?,
                        ),
                        _ => return Err(bad("an array step is [] or [n] with a number n")),
                    });
                    rest = &rest[close + 1..];
                }
                _ => {
                    return Err(bad(&format!(
                        "unexpected {c:?} after a key (use \"...\" to quote keys)"
                    )))
                }
            }
        }
        Ok(KeyPath {
            text: text.to_owned(),
            segments,
        })
    }
}

/// Takes one key from the front of `rest`: a quoted one, or letters, digits, `_` and `-`.
fn take_key(rest: &mut &str) -> std::result::Result<String, &'static str> {
    if let Some(quoted) = rest.strip_prefix('"') {
        let end = quoted
            .find(['"', '\\'])
            .ok_or("a quoted key without its closing '\"'")?;
        if quoted[end..].starts_with('\\') {
            return Err("a quoted key cannot hold '\\'");
        }
        let key = quoted[..end].to_owned();
        *rest = &quoted[end + 1..];
        return Ok(key);
    }
    let end = rest
        .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-'))
        .unwrap_or(rest.len());
    if end == 0 {
        return Err(
            "empty or invalid field name (check for '..', a leading or trailing '.', \
                    or characters that need quotes)",
        );
    }
    let key = rest[..end].to_owned();
    *rest = &rest[end..];
    Ok(key)
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

    /// Calls `visit` on every element of the arrays the path reaches, as Qdrant's `nested`
    /// reads its key: `a` and `a[]` alike, and a lone object is not an array of one.
    pub(super) fn any_element<'a>(
        &self,
        payload: &'a Payload,
        visit: &mut dyn FnMut(&'a Value) -> bool,
    ) -> bool {
        if self.segments.last() == Some(&Segment::Each) {
            return self.any_value(payload, visit);
        }
        self.any_value(payload, &mut |v| match v {
            Value::Array(items) => items.iter().any(&mut *visit),
            _ => false,
        })
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
