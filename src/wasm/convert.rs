//! JS values in and out, and Rust errors as JS errors.
//!
//! Everything the class takes from JS goes through the parsers of the Rust API
//! ([`Point::from_json`], [`Filter::from_json`], [`PointId::from_json`]), so a malformed input
//! is refused with the same error in both languages. Search options are the one exception:
//! they come with every search, so they are read field by field (with the same refusals).

use js_sys::{Array, Float32Array, Float64Array, Reflect};
use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use crate::{Error, Filter, Point, PointId, QuantizationSearchParams, SearchRequest};

/// A JS `Error` carrying the Rust error's message and its `code`.
pub(super) fn js_error(e: Error) -> JsValue {
    let err = js_sys::Error::new(&e.to_string());
    let _ = Reflect::set(&err, &"code".into(), &e.code().into());
    err.into()
}

/// A malformed request (`MalformedRequest`, as the Rust API's point parser gives too; filters
/// keep `MalformedFilter`, from the filter parser itself).
pub(super) fn bad(what: &str, e: impl std::fmt::Display) -> JsValue {
    js_error(Error::MalformedRequest(format!("{what}: {e}")))
}

/// Plain JS objects out, through JSON text: one serializer (serde_json's) for every type keeps
/// the `.wasm` small, and `JSON.parse` is as fast as building the objects one call at a time.
pub(super) fn to_js<T: Serialize>(value: &T) -> Result<JsValue, JsValue> {
    let text = serde_json::to_string(value).map_err(|e| bad("result", e))?;
    js_sys::JSON::parse(&text)
}

/// A JS value as JSON, then parsed by the same code as the Rust API's JSON.
pub(super) fn json(value: JsValue, what: &str) -> Result<serde_json::Value, JsValue> {
    let text = js_sys::JSON::stringify(&value)
        .ok()
        .and_then(|t| t.as_string())
        .ok_or_else(|| bad(what, "not representable as JSON"))?;
    // As bytes: the stored payloads are parsed from bytes, and one reader type in the .wasm
    // instead of two saves some 20 KB of its code.
    serde_json::from_slice(text.as_bytes()).map_err(|e| bad(what, e))
}

/// A JS value as JSON, with typed arrays as arrays of numbers: `JSON.stringify` writes a
/// `Float32Array` as an object of indices, and the vectors of queries and of named points are
/// typed arrays more often than not. Arrays and objects are walked, numbers, text and booleans
/// taken as they are; anything with a `toJSON` (a `Date`) goes through [`json`].
pub(super) fn json_with_vectors(value: &JsValue, what: &str) -> Result<serde_json::Value, JsValue> {
    walk(value, what, 0)
}

/// Objects and arrays nested deeper than this are refused, as `serde_json` refuses JSON text
/// nested past 128: the walk is recursive, and a stack overflow would be a trap, not an error.
const MAX_DEPTH: usize = 128;

fn walk(value: &JsValue, what: &str, depth: usize) -> Result<serde_json::Value, JsValue> {
    use serde_json::Value;
    if depth > MAX_DEPTH {
        return Err(bad(
            what,
            format!("nested more than {MAX_DEPTH} levels deep"),
        ));
    }
    let numbers = js_sys::ArrayBuffer::is_view(value)
        && !(value.is_instance_of::<js_sys::DataView>()
            || value.is_instance_of::<js_sys::BigInt64Array>()
            || value.is_instance_of::<js_sys::BigUint64Array>());
    if numbers {
        // A typed array of numbers (`Float32Array` values, `Uint32Array` indices), copied out
        // at once. (A `Float64Array` cannot be made of BigInts: those go to JSON, which
        // refuses them.)
        return Ok(Float64Array::new(value)
            .to_vec()
            .into_iter()
            .map(number)
            .collect());
    }
    if let Some(n) = value.as_f64() {
        return Ok(number(n));
    }
    if let Some(text) = value.as_string() {
        return Ok(Value::String(text));
    }
    if let Some(flag) = value.as_bool() {
        return Ok(Value::Bool(flag));
    }
    if value.is_null() || value.is_undefined() {
        return Ok(Value::Null);
    }
    if let Some(items) = value.dyn_ref::<Array>() {
        return items.iter().map(|v| walk(&v, what, depth + 1)).collect();
    }
    let Some(object) = value.dyn_ref::<js_sys::Object>() else {
        return json(value.clone(), what);
    };
    if Reflect::has(object, &"toJSON".into()).unwrap_or(false) {
        return json(value.clone(), what);
    }
    let mut fields = serde_json::Map::new();
    for entry in js_sys::Object::entries(object).iter() {
        let entry: Array = entry.unchecked_into();
        let field = entry.get(1);
        // As JSON.stringify: a field whose value is undefined is not there.
        if !field.is_undefined() {
            let key = entry.get(0).as_string().unwrap_or_default();
            fields.insert(key, walk(&field, what, depth + 1)?);
        }
    }
    Ok(Value::Object(fields))
}

/// A JS number as JSON text would give it: integers as integers, NaN and infinities as null.
fn number(n: f64) -> serde_json::Value {
    if n.fract() == 0.0 && n.abs() <= MAX_SAFE_INTEGER {
        match n >= 0.0 {
            true => (n as u64).into(),
            false => (n as i64).into(),
        }
    } else {
        serde_json::Number::from_f64(n).map_or(serde_json::Value::Null, Into::into)
    }
}

pub(super) fn filter_of(value: JsValue) -> Result<Option<Filter>, JsValue> {
    if value.is_undefined() || value.is_null() {
        return Ok(None);
    }
    Filter::from_json(&json(value, "filter")?)
        .map(Some)
        .map_err(js_error)
}

pub(super) fn ids_of(value: JsValue) -> Result<Vec<PointId>, JsValue> {
    match json(value, "ids")? {
        serde_json::Value::Array(ids) => ids
            .iter()
            .map(|id| PointId::from_json(id).map_err(js_error))
            .collect(),
        _ => Err(bad("ids", "expected an array of ids")),
    }
}

pub(super) fn vector_of(value: &JsValue) -> Result<Vec<f32>, JsValue> {
    match value.dyn_ref::<Float32Array>() {
        Some(typed) => Ok(typed.to_vec()),
        None => serde_json::from_value(json(value.clone(), "vector")?)
            .map_err(|_| bad("vector", "expected a Float32Array or an array of numbers")),
    }
}

/// Points from JS: `Float32Array` vectors are copied once; everything else goes through
/// [`Point::from_json`], the parser of the Rust API, so errors are the same.
pub(super) fn points_of(value: JsValue) -> Result<Vec<Point>, JsValue> {
    let Some(items) = value.dyn_ref::<Array>() else {
        return Err(bad("points", "expected an array of {id, vector, payload}"));
    };
    items
        .iter()
        .map(|item| {
            let vector = Reflect::get(&item, &"vector".into()).unwrap_or(JsValue::UNDEFINED);
            match vector.dyn_ref::<Float32Array>() {
                Some(typed) => typed_point(&item, typed),
                // Vectors by name, which may hold typed arrays.
                None if vector.is_object() && !Array::is_array(&vector) => {
                    Point::from_json(&json_with_vectors(&item, "point")?).map_err(js_error)
                }
                None => Point::from_json(&json(item, "point")?).map_err(js_error),
            }
        })
        .collect()
}

/// A point whose vector is a `Float32Array`: its id and payload through the Rust API's parsers,
/// its vector copied straight out of the typed array.
fn typed_point(item: &JsValue, vector: &Float32Array) -> Result<Point, JsValue> {
    let get = |k: &str| Reflect::get(item, &k.into()).unwrap_or(JsValue::UNDEFINED);
    let id = PointId::from_json(&json(get("id"), "id")?).map_err(js_error)?;
    let point = Point::new(id, vector.to_vec());
    let payload = get("payload");
    if payload.is_undefined() || payload.is_null() {
        return Ok(point);
    }
    point
        .with_payload(json(payload, "payload")?)
        .map_err(js_error)
}

/// The options of `search` / `searchBatch` as a request without its vector. Read field by
/// field rather than through JSON text: this runs on every search, and the JSON round trip
/// cost about 5 us of a 150 us search. Unknown fields are refused, as everywhere in the API.
pub(super) fn search_template(options: &JsValue) -> Result<SearchRequest, JsValue> {
    let mut request = SearchRequest::new(Vec::new(), 10);
    // The JS API returns payloads unless told not to (the Rust API's default is the opposite).
    request.with_payload = true;
    if options.is_undefined() || options.is_null() {
        return Ok(request);
    }
    let Some(object) = options.dyn_ref::<js_sys::Object>() else {
        return Err(bad("search options", "expected an object"));
    };
    for key in js_sys::Object::keys(object).iter() {
        let value = Reflect::get(options, &key).unwrap_or(JsValue::UNDEFINED);
        // As JSON would have it: an undefined or null option is an option not given.
        if value.is_undefined() || value.is_null() {
            continue;
        }
        search_option(&mut request, &key.as_string().unwrap_or_default(), value)?;
    }
    Ok(request)
}

/// Sets one search option, given and neither undefined nor null, on `request`.
fn search_option(request: &mut SearchRequest, name: &str, value: JsValue) -> Result<(), JsValue> {
    match name {
        "limit" => request.limit = count_option(name, &value)?,
        "offset" => request.offset = count_option(name, &value)?,
        "ef" => request.params.hnsw_ef = Some(count_option(name, &value)?),
        "exact" => request.params.exact = flag_option(name, &value)?,
        "withPayload" => request.with_payload = flag_option(name, &value)?,
        "withVector" => request.with_vector = flag_option(name, &value)?,
        "scoreThreshold" => {
            let threshold = value
                .as_f64()
                .filter(|t| t.is_finite())
                .ok_or_else(|| bad("search options", "scoreThreshold: expected a number"))?;
            request.score_threshold = Some(threshold as f32);
        }
        "filter" => request.filter = filter_of(value)?,
        "using" => {
            let name = value
                .as_string()
                .ok_or_else(|| bad("search options", "using: expected a vector's name"))?;
            request.using = Some(name);
        }
        "quantization" => request.params.quantization = Some(quantization_option(&value)?),
        _ => {
            return Err(bad(
                "search options",
                format!(
                    "unknown field `{name}`, expected one of `limit`, `offset`, `filter`, \
                     `using`, `ef`, `exact`, `withPayload`, `withVector`, `scoreThreshold`, \
                     `quantization`"
                ),
            ))
        }
    }
    Ok(())
}

/// The `quantization` search option, field by field like the others (no JSON round trip).
fn quantization_option(value: &JsValue) -> Result<QuantizationSearchParams, JsValue> {
    let mut params = QuantizationSearchParams::default();
    let Some(object) = value.dyn_ref::<js_sys::Object>() else {
        return Err(bad("search options", "quantization: expected an object"));
    };
    for key in js_sys::Object::keys(object).iter() {
        let field = Reflect::get(value, &key).unwrap_or(JsValue::UNDEFINED);
        if field.is_undefined() || field.is_null() {
            continue;
        }
        match key.as_string().unwrap_or_default().as_str() {
            "ignore" => params.ignore = flag_option("quantization.ignore", &field)?,
            "rescore" => params.rescore = Some(flag_option("quantization.rescore", &field)?),
            "oversampling" => {
                let o = field.as_f64().ok_or_else(|| {
                    bad(
                        "search options",
                        "quantization.oversampling: expected a number",
                    )
                })?;
                params.oversampling = Some(o);
            }
            other => {
                return Err(bad(
                    "search options",
                    format!(
                        "quantization: unknown field `{other}`, expected one of `ignore`, \
                         `rescore`, `oversampling`"
                    ),
                ))
            }
        }
    }
    Ok(params)
}

fn count_option(name: &str, value: &JsValue) -> Result<usize, JsValue> {
    match value.as_f64() {
        Some(n) if n >= 0.0 && n.fract() == 0.0 && n <= MAX_SAFE_INTEGER => Ok(n as usize),
        _ => Err(bad(
            "search options",
            format!("{name}: expected a non-negative integer"),
        )),
    }
}

fn flag_option(name: &str, value: &JsValue) -> Result<bool, JsValue> {
    value
        .as_bool()
        .ok_or_else(|| bad("search options", format!("{name}: expected true or false")))
}

/// The largest integer a JS number holds exactly (`Number.MAX_SAFE_INTEGER`).
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;
