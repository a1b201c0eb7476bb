//! Seeded payloads and filters in Qdrant's JSON, for the conformance suite against Qdrant's own
//! code (`tests/qdrant_conformance.rs`): every kind of value a payload holds (keywords with
//! unicode, integers, floats, bools, null, `[]`, `[null]`, mixed arrays, arrays of objects,
//! nested objects, missing keys) and every condition of a filter, each labelled with its kind so
//! that disagreements are counted per kind.

use serde_json::{json, Map, Value};

use crate::Rng;

const WORDS: [&str; 8] = ["apple", "Äpfel", "pear", "naïve", "東京", "kiwi", "", "x y"];
const TEXTS: [&str; 6] = [
    "the quick brown fox",
    "Quick dogs, brown cats!",
    "naïve café au lait",
    "東京 tower",
    "",
    "fox",
];

/// The kind of a condition, as counted in the suite's report.
pub type Kind = &'static str;

/// A generated payload value of the key `a`, the key every kind of condition is tried on.
fn anything(rng: &mut Rng, depth: u32) -> Value {
    match rng.below(if depth > 0 { 9 } else { 11 }) {
        0 => Value::Null,
        1 => json!([]),
        2 => json!([null]),
        3 => json!(rng.pick(&WORDS)),
        4 => json!(rng.below(7) as i64 - 3),
        5 => json!((rng.below(13) as f64 - 6.0) / 2.0),
        6 => json!(rng.chance(0.5)),
        7 => json!([rng.pick(&WORDS), rng.below(5)]),
        8 => Value::Array((0..rng.below(4)).map(|_| json!(rng.below(5))).collect()),
        9 => json!({"b": anything(rng, depth + 1)}),
        _ => Value::Array(
            (0..rng.below(3))
                .map(|_| anything(rng, depth + 1))
                .collect(),
        ),
    }
}

/// A payload with a few fixed keys of known shape and the catch-all `a`; any key may be
/// missing.
pub fn payload(rng: &mut Rng) -> Value {
    let mut p = Map::new();
    let mut maybe = |rng: &mut Rng, key: &str, value: Value| {
        if rng.chance(0.85) {
            p.insert(key.to_owned(), value);
        }
    };
    let kw = json!(rng.pick(&WORDS));
    maybe(rng, "kw", kw);
    let n = match rng.below(4) {
        0 => json!(rng.below(10) as i64 - 2),
        1 => json!([rng.below(10), rng.below(10)]),
        2 => json!((rng.below(40) as f64) / 4.0),
        _ => json!(rng.below(10)),
    };
    maybe(rng, "n", n);
    let flag = json!(rng.chance(0.5));
    maybe(rng, "flag", flag);
    let tags = Value::Array((0..rng.below(4)).map(|_| json!(rng.pick(&WORDS))).collect());
    maybe(rng, "tags", tags);
    let obj = json!({"x": rng.below(5), "y": rng.pick(&WORDS)});
    maybe(rng, "obj", obj);
    let items = Value::Array(
        (0..rng.below(4))
            .map(|_| json!({"x": rng.below(5), "y": rng.pick(&WORDS)}))
            .collect(),
    );
    maybe(rng, "items", items);
    let desc = if rng.chance(0.7) {
        json!(rng.pick(&TEXTS))
    } else {
        json!([rng.pick(&TEXTS), rng.pick(&TEXTS)])
    };
    maybe(rng, "desc", desc);
    let a = anything(rng, 0);
    maybe(rng, "a", a);
    let ts = match rng.below(5) {
        0 => json!([timestamp(rng), timestamp(rng)]),
        1 if rng.chance(0.3) => json!(rng.pick(&["soon", "2024-13-01", "17"])),
        1 => json!(rng.below(1_000_000)),
        _ => json!(timestamp(rng)),
    };
    maybe(rng, "ts", ts);
    let loc = match rng.below(6) {
        0 => json!([geo_point(rng), geo_point(rng)]),
        1 => json!({"lon": rng.below(10)}),
        _ => geo_point(rng),
    };
    maybe(rng, "loc", loc);
    // A key with a dot in it, reached only by the quoted path `"q.k"`.
    let dotted = json!(rng.below(4));
    maybe(rng, "q.k", dotted);
    Value::Object(p)
}

/// A timestamp in one of the forms Qdrant reads (offsets, no seconds, a date alone, a space for
/// the `T`), on a coarse grid of January 2024 so bounds often fall on values.
pub fn timestamp(rng: &mut Rng) -> String {
    let (day, hour) = (rng.below(5) + 1, rng.below(4) * 6);
    match rng.below(6) {
        0 => format!("2024-01-0{day}"),
        1 => format!("2024-01-0{day}T{hour:02}:00:00Z"),
        2 => format!("2024-01-0{day} {hour:02}:00:00"),
        3 => format!("2024-01-0{day}T{:02}:00:00+02:00", (hour + 2) % 24),
        4 => format!("2024-01-0{day}T{hour:02}:00"),
        _ => format!("2024-01-0{day}T{hour:02}:00:00.000000001Z"),
    }
}

/// A payload point on a 10-degree grid, so that box and polygon edges are often met exactly.
fn geo_point(rng: &mut Rng) -> Value {
    json!({"lon": rng.below(37) as f64 * 10.0 - 180.0, "lat": rng.below(19) as f64 * 10.0 - 90.0})
}

fn geo_condition(rng: &mut Rng) -> (&'static str, Value) {
    let grid = |rng: &mut Rng, n: usize, step: f64, from: f64| rng.below(n) as f64 * step + from;
    match rng.below(3) {
        0 => (
            "geo_radius",
            json!({"center": geo_point(rng), "radius": grid(rng, 20, 250_000.0, 100_000.0)}),
        ),
        1 => {
            let (west, east) = (grid(rng, 37, 10.0, -180.0), grid(rng, 37, 10.0, -180.0));
            let (south, north) = (grid(rng, 10, 10.0, -90.0), grid(rng, 10, 10.0, 0.0));
            (
                "geo_bounding_box",
                json!({"top_left": {"lon": west, "lat": north},
                       "bottom_right": {"lon": east, "lat": south}}),
            )
        }
        _ => {
            let (lon, lat) = (grid(rng, 30, 10.0, -150.0), grid(rng, 14, 10.0, -70.0));
            let (w, h) = (grid(rng, 4, 10.0, 20.0), grid(rng, 4, 10.0, 20.0));
            let ring = |x0: f64, y0: f64, x1: f64, y1: f64| {
                json!({"points": [
                    {"lon": x0, "lat": y0}, {"lon": x1, "lat": y0}, {"lon": x1, "lat": y1},
                    {"lon": x0, "lat": y1}, {"lon": x0, "lat": y0}
                ]})
            };
            let mut polygon = json!({"exterior": ring(lon, lat, lon + w, lat + h)});
            if rng.chance(0.5) {
                polygon["interiors"] =
                    json!([ring(lon + 10.0, lat + 10.0, lon + 20.0, lat + 20.0)]);
            }
            ("geo_polygon", polygon)
        }
    }
}

/// A value a `match` may ask for: keyword, integer or bool.
fn match_value(rng: &mut Rng) -> Value {
    match rng.below(3) {
        0 => json!(rng.pick(&WORDS)),
        1 => json!(rng.below(7) as i64 - 2),
        _ => json!(rng.chance(0.5)),
    }
}

/// A list for `any` / `except`: all keywords or all integers (as Qdrant's schema requires).
fn match_list(rng: &mut Rng) -> Value {
    let n = rng.below(3) + 1;
    if rng.chance(0.5) {
        Value::Array((0..n).map(|_| json!(rng.pick(&WORDS))).collect())
    } else {
        Value::Array((0..n).map(|_| json!(rng.below(7) as i64 - 2)).collect())
    }
}

fn bounds(rng: &mut Rng) -> Value {
    let mut r = Map::new();
    for op in ["gt", "gte", "lt", "lte"] {
        if rng.chance(0.35) {
            let v = (rng.below(24) as f64 - 6.0) / 2.0;
            r.insert(op.to_owned(), json!(v));
        }
    }
    if r.is_empty() {
        r.insert("gte".to_owned(), json!(rng.below(8) as i64 - 2));
    }
    Value::Object(r)
}

fn count_bounds(rng: &mut Rng) -> Value {
    let mut r = Map::new();
    for op in ["gt", "gte", "lt", "lte"] {
        if rng.chance(0.4) {
            r.insert(op.to_owned(), json!(rng.below(4)));
        }
    }
    if r.is_empty() {
        r.insert("gte".to_owned(), json!(1));
    }
    Value::Object(r)
}

/// A key to test a field condition on, with the kind of path it is.
fn key(rng: &mut Rng) -> (&'static str, Kind) {
    match rng.below(10) {
        0 => ("kw", "key"),
        1 => ("n", "key"),
        2 => ("flag", "key"),
        3 => ("tags", "key"),
        4 => ("obj.x", "path.object"),
        5 => ("obj.y", "path.object"),
        6 => ("items[].x", "path.array"),
        7 => ("items[0].y", "path.index"),
        8 => ("a.b", "path.object"),
        9 if rng.chance(0.3) => ("\"q.k\"", "path.quoted"),
        _ => ("a", "key"),
    }
}

/// One condition and the kinds it exercises.
pub fn condition(rng: &mut Rng, ids: &[Value], depth: u32, kinds: &mut Vec<Kind>) -> Value {
    if depth < 2 && rng.chance(0.12) {
        kinds.push("nested_filter");
        return filter(rng, ids, depth + 1, kinds);
    }
    if rng.chance(0.02) {
        kinds.push("empty_condition");
        return json!({});
    }
    if rng.chance(0.02) {
        // Input Qdrant refuses (bad key paths, mixed or float lists, float values) beside odd
        // input it accepts (quoted keys, leading zeros, dashes, non-ASCII letters).
        kinds.push("refusal");
        let key = rng.pick(&[
            "a b",
            "a]",
            "",
            ".a",
            "a..b",
            "a[x]",
            "a[-1]",
            "a[]b",
            "\"a.b\"",
            "a.\"b c\"",
            "a[01]",
            "a-b_c",
            "été",
        ]);
        let matched = [
            json!({"value": "x"}),
            json!({"any": ["x", 1]}),
            json!({"any": [1.5]}),
            json!({"value": 1.5}),
            json!({"except": [2]}),
        ][rng.below(5)]
        .clone();
        return json!({"key": key, "match": matched});
    }
    if rng.chance(0.15) {
        return match rng.below(3) {
            0 => {
                kinds.push("range.datetime");
                let mut bounds = Map::new();
                for op in ["gt", "gte", "lt", "lte"] {
                    if rng.chance(0.4) {
                        bounds.insert(op.to_owned(), json!(timestamp(rng)));
                    }
                }
                if bounds.is_empty() {
                    bounds.insert("gte".to_owned(), json!(timestamp(rng)));
                }
                json!({"key": "ts", "range": bounds})
            }
            1 => {
                let (name, geo) = geo_condition(rng);
                kinds.push(name);
                let mut c = json!({"key": "loc"});
                c[name] = geo;
                c
            }
            _ => {
                kinds.push("has_vector");
                json!({"has_vector": rng.pick(&["", "", "other"])})
            }
        };
    }
    let (key, path_kind) = key(rng);
    let c = match rng.below(14) {
        0 | 1 => {
            let v = match_value(rng);
            kinds.push(match &v {
                Value::String(_) => "match.value.keyword",
                Value::Bool(_) => "match.value.bool",
                _ => "match.value.integer",
            });
            json!({"key": key, "match": {"value": v}})
        }
        2 => {
            kinds.push("match.any");
            json!({"key": key, "match": {"any": match_list(rng)}})
        }
        3 => {
            kinds.push("match.except");
            json!({"key": key, "match": {"except": match_list(rng)}})
        }
        4 | 5 => {
            kinds.push("range");
            json!({"key": key, "range": bounds(rng)})
        }
        6 => {
            kinds.push("values_count");
            json!({"key": key, "values_count": count_bounds(rng)})
        }
        7 => {
            kinds.push("is_empty");
            json!({"is_empty": {"key": key}})
        }
        8 => {
            kinds.push("is_null");
            json!({"is_null": {"key": key}})
        }
        9 => {
            kinds.push("has_id");
            let n = rng.below(4) + 1;
            let chosen: Vec<Value> = (0..n).map(|_| ids[rng.below(ids.len())].clone()).collect();
            return json!({"has_id": chosen});
        }
        10 => {
            let (kind, name) = rng.pick(&[
                ("match.text", "text"),
                ("match.text_any", "text_any"),
                ("match.phrase", "phrase"),
            ]);
            kinds.push(kind);
            let words = [
                "quick", "brown", "fox", "CAFÉ", "naïve", "東京", "cats", "dog", "!!",
            ];
            let n = rng.below(3) + usize::from(rng.chance(0.95));
            let text: Vec<&str> = (0..n).map(|_| rng.pick(&words)).collect();
            return json!({"key": "desc", "match": {name: text.join(" ")}});
        }
        12 => {
            // Qdrant's rule for several parts: values_count alone, else match or range.
            kinds.push("combined");
            let mut c = json!({"key": key, "match": {"value": match_value(rng)}});
            match rng.below(3) {
                0 => c["range"] = bounds(rng),
                1 => c["values_count"] = count_bounds(rng),
                _ => {
                    c = json!({"key": key, "range": bounds(rng), "values_count": count_bounds(rng)})
                }
            }
            c
        }
        _ => {
            kinds.push("nested");
            let inner = if rng.chance(0.5) {
                json!({"key": "x", "range": bounds(rng)})
            } else {
                json!({"key": "y", "match": {"value": rng.pick(&WORDS)}})
            };
            // `items[]` is the same array; `obj` is a lone object, which is not one.
            let array = rng.pick(&["items", "items[]", "obj"]);
            return json!({"nested": {"key": array, "filter": {"must": [inner]}}});
        }
    };
    kinds.push(path_kind);
    c
}

fn clauses(rng: &mut Rng, ids: &[Value], depth: u32, kinds: &mut Vec<Kind>) -> Vec<Value> {
    (0..rng.below(3) + 1)
        .map(|_| condition(rng, ids, depth, kinds))
        .collect()
}

/// A filter of `must`, `should`, `must_not` and `min_should` clauses over the generated
/// payloads, and the kinds of everything in it.
pub fn filter(rng: &mut Rng, ids: &[Value], depth: u32, kinds: &mut Vec<Kind>) -> Value {
    let mut f = Map::new();
    let mut any = false;
    for clause in ["must", "should", "must_not"] {
        if rng.chance(if clause == "must" { 0.7 } else { 0.3 }) {
            if clause != "must" {
                kinds.push(if clause == "should" {
                    "should"
                } else {
                    "must_not"
                });
            }
            f.insert(
                clause.to_owned(),
                Value::Array(clauses(rng, ids, depth, kinds)),
            );
            any = true;
        }
    }
    if rng.chance(0.1) {
        kinds.push("min_should");
        let conditions = clauses(rng, ids, depth, kinds);
        let min_count = rng.below(conditions.len()) + 1;
        f.insert(
            "min_should".to_owned(),
            json!({"conditions": conditions, "min_count": min_count}),
        );
        any = true;
    }
    if !any {
        f.insert(
            "must".to_owned(),
            Value::Array(clauses(rng, ids, depth, kinds)),
        );
    }
    Value::Object(f)
}
