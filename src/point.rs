//! Points, their ids and payloads, and the distance functions: the data model users see.
//!
//! The JSON shapes are Qdrant's, so points exported from one load into the other unchanged:
//! `{"id": 7, "vector": [0.1, 0.2], "payload": {"color": "red"}}`.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

/// A point's payload: an arbitrary JSON object.
pub type Payload = serde_json::Map<String, serde_json::Value>;

/// The external id of a point: an unsigned integer or a UUID, as in Qdrant.
///
/// Ids order integers first (ascending), then UUIDs (by their 128-bit value); `scroll` pages in
/// that order. UUIDs are accepted hyphenated or as 32 hex digits, in any case, and are always
/// written back hyphenated in lower case.
///
/// ```
/// use grape_vector_db::PointId;
///
/// let a: PointId = serde_json::from_str("42").unwrap();
/// let b: PointId = "936DA01F-9ABD-4D9D-80C7-02AF85C822A8".parse().unwrap();
/// assert_eq!(a, PointId::Num(42));
/// assert_eq!(b.to_string(), "936da01f-9abd-4d9d-80c7-02af85c822a8");
/// assert!(a < b);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PointId {
    /// An unsigned integer id.
    Num(u64),
    /// A UUID, stored as its 128-bit value.
    Uuid(u128),
}

impl From<u64> for PointId {
    fn from(n: u64) -> Self {
        PointId::Num(n)
    }
}

impl From<u32> for PointId {
    fn from(n: u32) -> Self {
        PointId::Num(n.into())
    }
}

impl From<i32> for PointId {
    /// Integer literals are `i32` by default; negative ones wrap to huge ids, so prefer `u64`
    /// literals (`7u64`) outside examples and tests.
    fn from(n: i32) -> Self {
        PointId::Num(n as u64)
    }
}

impl PointId {
    /// Parses a JSON id (an unsigned integer or a UUID string) with a typed error.
    ///
    /// ```
    /// use grape_vector_db::{Error, PointId};
    /// assert_eq!(PointId::from_json(&serde_json::json!(7))?, PointId::Num(7));
    /// assert!(matches!(PointId::from_json(&serde_json::json!(-1)), Err(Error::InvalidPointId(_))));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn from_json(value: &serde_json::Value) -> Result<PointId> {
        PointId::deserialize(value).map_err(|_| Error::InvalidPointId(value.to_string()))
    }
}

/// The namespace of [`PointId::from_name`]: the version-5 UUID of the DNS name
/// `grape-vector-db`.
const NAME_NAMESPACE: u128 = 0xcbbb_3242_4620_5ce8_81cc_ff8b_3dc8_7920;

impl PointId {
    /// The id of a string key (a slug, a nanoid, a path): its name-based UUID (version 5, RFC
    /// 9562) in Grape's namespace, so the same key gives the same id in Rust, in JS
    /// (`idFromString`) and anywhere with a UUID library, for example Python's
    /// `uuid.uuid5(uuid.uuid5(uuid.NAMESPACE_DNS, "grape-vector-db"), key)`. Ids stay Qdrant's
    /// (integers or UUIDs); keep the key in the payload to read it back.
    ///
    /// ```
    /// use grape_vector_db::PointId;
    ///
    /// let id = PointId::from_name("note-1");
    /// assert_eq!(id.to_string(), "4ab00615-3876-5be4-9fff-3f43b7be16f5");
    /// assert_eq!(id, PointId::from_name("note-1"));
    /// ```
    pub fn from_name(name: &str) -> PointId {
        let mut sha1 = sha1_smol::Sha1::new();
        sha1.update(&NAME_NAMESPACE.to_be_bytes());
        sha1.update(name.as_bytes());
        let digest = sha1.digest().bytes();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        bytes[6] = (bytes[6] & 0x0f) | 0x50; // version 5
        bytes[8] = (bytes[8] & 0x3f) | 0x80; // the RFC's variant
        PointId::Uuid(u128::from_be_bytes(bytes))
    }
}

impl FromStr for PointId {
    type Err = Error;

    /// Parses a decimal integer or a UUID.
    fn from_str(s: &str) -> Result<Self> {
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            return s
                .parse::<u64>()
                .map(PointId::Num)
                .map_err(|_| Error::InvalidPointId(format!("{s:?} (integer larger than u64)")));
        }
        parse_uuid(s)
            .map(PointId::Uuid)
            .ok_or_else(|| Error::InvalidPointId(format!("{s:?}")))
    }
}

/// Parses `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` or 32 bare hex digits, optionally braced
/// (`{...}`) or with a `urn:uuid:` prefix: the forms Qdrant accepts.
fn parse_uuid(s: &str) -> Option<u128> {
    let s = s.strip_prefix("urn:uuid:").unwrap_or(s);
    let s = s
        .strip_prefix('{')
        .and_then(|inner| inner.strip_suffix('}'))
        .unwrap_or(s);
    let hex: String = match s.len() {
        36 => {
            let b = s.as_bytes();
            if [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
                return None;
            }
            s.chars().filter(|&c| c != '-').collect()
        }
        32 => s.to_owned(),
        _ => return None,
    };
    if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u128::from_str_radix(&hex, 16).ok()
}

impl fmt::Display for PointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            PointId::Num(n) => write!(f, "{n}"),
            PointId::Uuid(u) => {
                let h = format!("{u:032x}");
                write!(
                    f,
                    "{}-{}-{}-{}-{}",
                    &h[0..8],
                    &h[8..12],
                    &h[12..16],
                    &h[16..20],
                    &h[20..32]
                )
            }
        }
    }
}

impl Serialize for PointId {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match *self {
            PointId::Num(n) => s.serialize_u64(n),
            PointId::Uuid(_) => s.collect_str(self),
        }
    }
}

impl<'de> Deserialize<'de> for PointId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct IdVisitor;
        impl Visitor<'_> for IdVisitor {
            type Value = PointId;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an unsigned integer or a UUID string")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<PointId, E> {
                Ok(PointId::Num(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<PointId, E> {
                u64::try_from(v)
                    .map(PointId::Num)
                    .map_err(|_| E::custom(format!("point id {v} is negative")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<PointId, E> {
                // JavaScript numbers arrive as f64; accept them when they are whole and exact.
                if v >= 0.0 && v.fract() == 0.0 && v <= (1u64 << 53) as f64 {
                    Ok(PointId::Num(v as u64))
                } else {
                    Err(E::custom(format!(
                        "point id {v} is not an unsigned integer"
                    )))
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<PointId, E> {
                parse_uuid(v)
                    .map(PointId::Uuid)
                    .ok_or_else(|| E::custom(format!("point id {v:?} is not a UUID")))
            }
        }
        d.deserialize_any(IdVisitor)
    }
}

/// How two vectors are compared. The JSON names are Qdrant's (`"Cosine"`, `"Dot"`, `"Euclid"`,
/// `"Manhattan"`).
///
/// Scores follow Qdrant: for `Cosine` and `Dot` a higher score is more similar; for `Euclid` and
/// `Manhattan` the score is a distance and lower is more similar. `Cosine` vectors are normalised
/// once when they are stored, so a cosine search costs a dot product.
///
/// ```
/// use grape_vector_db::Distance;
/// assert!(Distance::Cosine.higher_is_better());
/// assert!(!Distance::Euclid.higher_is_better());
/// assert_eq!(serde_json::to_string(&Distance::Manhattan).unwrap(), "\"Manhattan\"");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum Distance {
    /// Cosine similarity (vectors normalised on insert).
    #[default]
    Cosine,
    /// Inner product.
    Dot,
    /// Euclidean (L2) distance.
    Euclid,
    /// Manhattan (L1) distance.
    Manhattan,
}

impl Distance {
    /// Whether a larger score means a closer match.
    ///
    /// ```
    /// assert!(grape_vector_db::Distance::Dot.higher_is_better());
    /// ```
    pub fn higher_is_better(self) -> bool {
        matches!(self, Distance::Cosine | Distance::Dot)
    }
}

/// A point: an id, a vector and a JSON payload.
///
/// ```
/// use grape_vector_db::Point;
/// use serde_json::json;
///
/// let p = Point::new(1, vec![0.5, 0.5]).with_payload(json!({"city": "Lyon"}))?;
/// let same: Point = serde_json::from_value(json!(
///     {"id": 1, "vector": [0.5, 0.5], "payload": {"city": "Lyon"}}
/// ))?;
/// assert_eq!(p, same);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// The point's id; upserting an existing id replaces that point.
    pub id: PointId,
    /// The vector; its length must equal the database's dimension.
    pub vector: Vec<f32>,
    /// The point's named dense vectors (each declared in
    /// [`EmbeddedConfig::named_vectors`](crate::EmbeddedConfig::named_vectors), with its own
    /// dimension and distance); a point may lack any of them. In JSON they sit beside the
    /// vector named `""`, as in Qdrant: `"vector": {"": [0.5, 0.5], "image": [1, 0, 0]}`.
    pub named_vectors: BTreeMap<String, Vec<f32>>,
    /// The point's sparse vectors by name (each declared in
    /// [`EmbeddedConfig::sparse_vectors`](crate::EmbeddedConfig::sparse_vectors)); in JSON they
    /// sit beside the dense vector, named `""`, as in Qdrant:
    /// `"vector": {"": [0.5, 0.5], "text": {"indices": [3], "values": [1.0]}}`.
    pub sparse_vectors: BTreeMap<String, SparseVector>,
    /// Texts standing for sparse vectors declared with BM25 (`SparseVectorConfig::bm25`), by
    /// name: the upsert turns each into its vector. In JSON, Qdrant's document shape under the
    /// vector's name: `{"text": "...", "model": "qdrant/bm25"}` (`model` optional).
    pub documents: BTreeMap<String, String>,
    /// The payload (missing in JSON means empty).
    pub payload: Payload,
}

/// A point's `vector` as JSON is written: the dense vector alone, or vectors by name. (Read
/// by hand from a `serde_json::Value`, [`vectors_of`]: serde's untagged reading would add
/// kilobytes to the wasm module.)
#[derive(Serialize)]
#[serde(untagged)]
pub(crate) enum VectorShape<'a> {
    Dense(std::borrow::Cow<'a, [f32]>),
    Named(BTreeMap<String, NamedVector<'a>>),
}

/// One named vector of a point in JSON.
#[derive(Serialize)]
#[serde(untagged)]
pub(crate) enum NamedVector<'a> {
    Dense(std::borrow::Cow<'a, [f32]>),
    Sparse(std::borrow::Cow<'a, SparseVector>),
    Document { text: &'a str },
}

impl<'a> VectorShape<'a> {
    /// The dense vector (when given) under `""`, the named dense ones and the sparse ones by
    /// name.
    pub(crate) fn named(
        dense: Option<&'a [f32]>,
        named_dense: &'a BTreeMap<String, Vec<f32>>,
        sparse: &'a BTreeMap<String, SparseVector>,
    ) -> Self {
        let mut named = BTreeMap::new();
        if let Some(dense) = dense {
            named.insert(String::new(), NamedVector::Dense(dense.into()));
        }
        for (name, v) in named_dense {
            named.insert(name.clone(), NamedVector::Dense(v[..].into()));
        }
        for (name, v) in sparse {
            named.insert(
                name.clone(),
                NamedVector::Sparse(std::borrow::Cow::Borrowed(v)),
            );
        }
        VectorShape::Named(named)
    }
}

impl Serialize for Point {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let alone = self.named_vectors.is_empty()
            && self.sparse_vectors.is_empty()
            && self.documents.is_empty();
        // Without an unnamed vector (a database of named vectors only), none under "".
        let unnamed = (!self.vector.is_empty()).then_some(&self.vector[..]);
        let vector = match (alone, unnamed) {
            (true, Some(v)) => VectorShape::Dense(v.into()),
            _ => {
                let mut named =
                    VectorShape::named(unnamed, &self.named_vectors, &self.sparse_vectors);
                if let VectorShape::Named(map) = &mut named {
                    for (name, text) in &self.documents {
                        map.insert(name.clone(), NamedVector::Document { text });
                    }
                }
                named
            }
        };
        let mut s = serializer.serialize_struct("Point", 3)?;
        s.serialize_field("id", &self.id)?;
        s.serialize_field("vector", &vector)?;
        s.serialize_field("payload", &self.payload)?;
        s.end()
    }
}

impl<'de> Deserialize<'de> for Point {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Shape {
            id: PointId,
            vector: serde_json::Value,
            #[serde(default)]
            payload: Payload,
        }
        let shape = Shape::deserialize(deserializer)?;
        let v = vectors_of(&shape.vector).map_err(de::Error::custom)?;
        Ok(Point {
            id: shape.id,
            vector: v.dense,
            named_vectors: v.named,
            sparse_vectors: v.sparse,
            documents: v.documents,
            payload: shape.payload,
        })
    }
}

/// The vectors of a point's `vector`: an array of numbers, or an object of vectors by name,
/// the unnamed dense one under `""`.
pub(crate) fn vectors_of(value: &serde_json::Value) -> Result<Vectors> {
    use serde_json::Value;
    let malformed = |what: String| Error::MalformedRequest(format!("point: {what}"));
    let dense = |v: &Value| -> Option<Vec<f32>> {
        v.as_array()?
            .iter()
            .map(|x| x.as_f64().map(|f| f as f32))
            .collect()
    };
    let named = match value {
        Value::Array(_) => {
            let v = dense(value)
                .ok_or_else(|| malformed("\"vector\" must be an array of numbers".to_owned()))?;
            return Ok(Vectors {
                dense: v,
                ..Vectors::default()
            });
        }
        Value::Object(named) => named,
        _ => {
            return Err(malformed(
                "\"vector\" must be an array of numbers, or vectors by name \
                 ({\"\": [numbers], \"name\": {\"indices\": [...], \"values\": [...]}})"
                    .to_owned(),
            ))
        }
    };
    let mut found = None;
    let mut vectors = Vectors::default();
    for (name, v) in named {
        if name.is_empty() {
            found = Some(dense(v).ok_or_else(|| {
                malformed("vector \"\" is the dense vector, an array of numbers".to_owned())
            })?);
        } else if v.is_array() {
            let v = dense(v)
                .ok_or_else(|| malformed(format!("vector {name:?} must be an array of numbers")))?;
            vectors.named.insert(name.clone(), v);
        } else if let Some(text) = document_of(v)? {
            vectors.documents.insert(name.clone(), text);
        } else {
            let v = SparseVector::from_json(v).map_err(|e| match e {
                Error::MalformedRequest(m) => malformed(format!("vector {name:?}: {m}")),
                e => e,
            })?;
            vectors.sparse.insert(name.clone(), v);
        }
    }
    // Without "": a database of named vectors only (others refuse the empty vector).
    vectors.dense = found.unwrap_or_default();
    Ok(vectors)
}

/// A point's vectors as read from JSON.
#[derive(Default)]
pub(crate) struct Vectors {
    /// The unnamed dense vector (`""`).
    pub dense: Vec<f32>,
    /// Named dense vectors.
    pub named: BTreeMap<String, Vec<f32>>,
    pub sparse: BTreeMap<String, SparseVector>,
    /// Texts standing for sparse vectors (BM25), by name.
    pub documents: BTreeMap<String, String>,
}

/// The model that turns documents into vectors here (Qdrant's name for it).
pub(crate) const BM25_MODEL: &str = "qdrant/bm25";

/// Refuses a document model other than BM25, the only one here.
pub(crate) fn check_model(model: &str) -> Result<()> {
    match model.eq_ignore_ascii_case(BM25_MODEL) {
        true => Ok(()),
        false => Err(Error::InvalidArgument(format!(
            "document model {model:?} is not available: text is turned into vectors by \
             {BM25_MODEL:?} only, for sparse vectors declared with bm25"
        ))),
    }
}

/// The text of a document in Qdrant's shape (`{"text": "...", "model": "qdrant/bm25"}`), or
/// `None` when `value` is not one (no `"text"` key).
pub(crate) fn document_of(value: &serde_json::Value) -> Result<Option<String>> {
    let Some(obj) = value.as_object().filter(|o| o.contains_key("text")) else {
        return Ok(None);
    };
    let bad = |what: &str| Error::MalformedRequest(format!("document: {what}"));
    let text = obj["text"]
        .as_str()
        .ok_or_else(|| bad("\"text\" must be a string"))?;
    if let Some(m) = obj.get("model") {
        check_model(
            m.as_str()
                .ok_or_else(|| bad("\"model\" must be a string"))?,
        )?;
    }
    if let Some(k) = obj.keys().find(|k| *k != "text" && *k != "model") {
        return Err(bad(&format!(
            "unknown field {k:?} (a document is {{\"text\", \"model\"}})"
        )));
    }
    Ok(Some(text.to_owned()))
}

impl Point {
    /// A point with an empty payload.
    ///
    /// ```
    /// let p = grape_vector_db::Point::new(7u64, vec![1.0, 0.0]);
    /// assert!(p.payload.is_empty());
    /// ```
    pub fn new(id: impl Into<PointId>, vector: Vec<f32>) -> Self {
        Point {
            id: id.into(),
            vector,
            named_vectors: BTreeMap::new(),
            sparse_vectors: BTreeMap::new(),
            documents: BTreeMap::new(),
            payload: Payload::new(),
        }
    }

    /// Parses a point in Qdrant's JSON shape (`{"id", "vector", "payload"}`) with a typed error
    /// naming what is wrong (`InvalidPointId`, `PayloadNotObject`, `MalformedRequest`).
    ///
    /// ```
    /// use grape_vector_db::{Error, Point};
    /// use serde_json::json;
    /// let p = Point::from_json(&json!({"id": 3, "vector": [1, 2], "payload": {"a": 1}}))?;
    /// assert_eq!(p.vector, vec![1.0, 2.0]);
    /// assert_eq!(Point::from_json(&json!({"id": 3, "vector": [1], "payload": 5})), Err(Error::PayloadNotObject));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn from_json(value: &serde_json::Value) -> Result<Point> {
        let malformed = |what: &str| Error::MalformedRequest(format!("point: {what}"));
        let obj = value
            .as_object()
            .ok_or_else(|| malformed("expected an object {\"id\", \"vector\", \"payload\"}"))?;
        let id = PointId::from_json(obj.get("id").ok_or_else(|| malformed("missing \"id\""))?)?;
        let vector = obj
            .get("vector")
            .ok_or_else(|| malformed("missing \"vector\""))?;
        let v = vectors_of(vector)?;
        let point = Point {
            named_vectors: v.named,
            sparse_vectors: v.sparse,
            documents: v.documents,
            ..Point::new(id, v.dense)
        };
        match obj.get("payload") {
            None | Some(serde_json::Value::Null) => Ok(point),
            Some(payload) => point.with_payload(payload.clone()),
        }
    }

    /// Adds the dense vector named `name` (declared with
    /// [`EmbeddedConfigBuilder::named_vector`](crate::EmbeddedConfigBuilder::named_vector)).
    ///
    /// ```
    /// let p = grape_vector_db::Point::new(1, vec![1.0]).with_named("image", vec![0.5, 0.5]);
    /// assert_eq!(p.named_vectors["image"], vec![0.5, 0.5]);
    /// ```
    pub fn with_named(mut self, name: impl Into<String>, vector: Vec<f32>) -> Self {
        self.named_vectors.insert(name.into(), vector);
        self
    }

    /// Adds the sparse vector named `name`.
    ///
    /// ```
    /// use grape_vector_db::{Point, SparseVector};
    /// let p = Point::new(1, vec![1.0]).with_sparse("text", SparseVector::new(vec![7], vec![0.5])?);
    /// assert_eq!(p.sparse_vectors["text"].indices(), &[7]);
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn with_sparse(mut self, name: impl Into<String>, vector: SparseVector) -> Self {
        self.sparse_vectors.insert(name.into(), vector);
        self
    }

    /// Adds a text standing for the sparse vector named `name`, declared with BM25
    /// ([`SparseVectorConfig::bm25`](crate::SparseVectorConfig::bm25)): the upsert turns it into
    /// the vector.
    ///
    /// ```
    /// let p = grape_vector_db::Point::new(1, vec![1.0]).with_text("text", "red grapes");
    /// assert_eq!(p.documents["text"], "red grapes");
    /// ```
    pub fn with_text(mut self, name: impl Into<String>, text: impl Into<String>) -> Self {
        self.documents.insert(name.into(), text.into());
        self
    }

    /// Sets the payload, which must be a JSON object.
    ///
    /// ```
    /// use grape_vector_db::{Error, Point};
    /// let err = Point::new(1, vec![1.0]).with_payload(serde_json::json!([1, 2])).unwrap_err();
    /// assert_eq!(err, Error::PayloadNotObject);
    /// ```
    pub fn with_payload(mut self, payload: serde_json::Value) -> Result<Self> {
        match payload {
            serde_json::Value::Object(map) => {
                self.payload = map;
                Ok(self)
            }
            _ => Err(Error::PayloadNotObject),
        }
    }
}

/// A sparse vector in Qdrant's shape: the indices of its non-zero components and their values,
/// `{"indices": [6, 42], "values": [0.5, 1.25]}`. Two sparse vectors score by their dot product
/// over the indices they share; BM25 and learned sparse models (SPLADE) produce them.
///
/// [`SparseVector::new`] checks what Qdrant checks (as many values as indices, no index twice)
/// and that every value is finite, and sorts the pairs by index, which is how they are stored.
///
/// ```
/// use grape_vector_db::SparseVector;
///
/// let a = SparseVector::new(vec![42, 6], vec![1.25, 0.5])?;
/// assert_eq!(a.indices(), &[6, 42]); // sorted by index, values along
/// let b = SparseVector::new(vec![6, 7], vec![2.0, 3.0])?;
/// assert_eq!(a.dot(&b), Some(1.0)); // only index 6 is shared
/// assert!(SparseVector::new(vec![1, 1], vec![1.0, 2.0]).is_err());
/// # Ok::<(), grape_vector_db::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct SparseVector {
    indices: Vec<u32>,
    values: Vec<f32>,
}

impl SparseVector {
    /// A sparse vector from its indices and their values, in any order.
    pub fn new(indices: Vec<u32>, values: Vec<f32>) -> Result<Self> {
        if indices.len() != values.len() {
            return Err(Error::InvalidArgument(format!(
                "a sparse vector has {} indices and {} values; they must be as many",
                indices.len(),
                values.len()
            )));
        }
        if let Some((index, &value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(Error::NonFiniteComponent { index, value });
        }
        // Each pair packed in a u64, index high: sorting the words sorts by index, with the
        // sort of integers the crate has anyway (a sort by key is kilobytes more of wasm).
        let mut pairs: Vec<u64> = indices
            .iter()
            .zip(&values)
            .map(|(&i, v)| (u64::from(i) << 32) | u64::from(v.to_bits()))
            .collect();
        if !indices.is_sorted() {
            pairs.sort_unstable();
        }
        let index = |p: u64| (p >> 32) as u32;
        if let Some(w) = pairs.windows(2).find(|w| index(w[0]) == index(w[1])) {
            return Err(Error::InvalidArgument(format!(
                "a sparse vector names index {} twice; indices must be unique",
                index(w[0])
            )));
        }
        Ok(SparseVector {
            indices: pairs.iter().map(|&p| index(p)).collect(),
            values: pairs.iter().map(|&p| f32::from_bits(p as u32)).collect(),
        })
    }

    /// A sparse vector from indices known to be ascending and unique, and finite values.
    pub(crate) fn from_sorted(indices: Vec<u32>, values: Vec<f32>) -> Self {
        debug_assert!(indices.windows(2).all(|w| w[0] < w[1]) && indices.len() == values.len());
        SparseVector { indices, values }
    }

    /// Reads Qdrant's JSON shape `{"indices": [...], "values": [...]}` by hand, with typed
    /// errors (`MalformedRequest` for the shape, then those of [`SparseVector::new`]).
    ///
    /// ```
    /// use grape_vector_db::SparseVector;
    /// let v = SparseVector::from_json(&serde_json::json!({"indices": [2], "values": [0.5]}))?;
    /// assert_eq!(v.values(), &[0.5]);
    /// assert!(SparseVector::from_json(&serde_json::json!([1, 2])).is_err());
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn from_json(value: &serde_json::Value) -> Result<Self> {
        let shape = || {
            Error::MalformedRequest(
                "a sparse vector is {\"indices\": [unsigned integers], \"values\": [numbers]}"
                    .to_owned(),
            )
        };
        let obj = value
            .as_object()
            .filter(|o| o.len() == 2)
            .ok_or_else(shape)?;
        let indices = obj
            .get("indices")
            .and_then(|v| v.as_array())
            .and_then(|a| {
                a.iter()
                    .map(|x| x.as_u64().and_then(|i| u32::try_from(i).ok()))
                    .collect::<Option<Vec<u32>>>()
            })
            .ok_or_else(shape)?;
        let values = obj
            .get("values")
            .and_then(|v| v.as_array())
            .and_then(|a| {
                a.iter()
                    .map(|x| x.as_f64().map(|f| f as f32))
                    .collect::<Option<Vec<f32>>>()
            })
            .ok_or_else(shape)?;
        SparseVector::new(indices, values)
    }

    /// The indices of the non-zero components, ascending.
    pub fn indices(&self) -> &[u32] {
        &self.indices
    }

    /// The values, in the order of [`SparseVector::indices`].
    pub fn values(&self) -> &[f32] {
        &self.values
    }

    /// Number of components stored.
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    /// Whether no component is stored.
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    /// The dot product over the shared indices, or `None` when they share none (Qdrant returns
    /// no such point from a sparse search, rather than a score of 0).
    pub fn dot(&self, other: &SparseVector) -> Option<f32> {
        sparse_dot(&self.indices, &self.values, &other.indices, &other.values)
    }
}

/// [`SparseVector::dot`] over sorted index/value slices, as the index stores them.
pub(crate) fn sparse_dot(ai: &[u32], av: &[f32], bi: &[u32], bv: &[f32]) -> Option<f32> {
    let (mut i, mut j, mut sum, mut shared) = (0, 0, 0f32, false);
    while i < ai.len() && j < bi.len() {
        match ai[i].cmp(&bi[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                sum += av[i] * bv[j];
                shared = true;
                i += 1;
                j += 1;
            }
        }
    }
    shared.then_some(sum)
}

impl<'de> Deserialize<'de> for SparseVector {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Shape {
            indices: Vec<u32>,
            values: Vec<f32>,
        }
        let s = Shape::deserialize(deserializer)?;
        SparseVector::new(s.indices, s.values).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_vectors_read_qdrants_json_and_refuse_what_it_refuses() {
        let v: SparseVector =
            serde_json::from_str(r#"{"indices": [9, 2], "values": [0.5, -1.0]}"#).unwrap();
        assert_eq!((v.indices(), v.values()), (&[2, 9][..], &[-1.0, 0.5][..]));
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            r#"{"indices":[2,9],"values":[-1.0,0.5]}"#
        );
        let empty: SparseVector = serde_json::from_str(r#"{"indices": [], "values": []}"#).unwrap();
        assert!(empty.is_empty() && empty.dot(&v).is_none());
        for (json, needle) in [
            (r#"{"indices": [1, 1], "values": [1, 2]}"#, "twice"),
            (r#"{"indices": [1], "values": [1, 2]}"#, "as many"),
            (r#"{"indices": [-1], "values": [1]}"#, "invalid value"),
            (
                r#"{"indices": [1], "values": [1], "x": 1}"#,
                "unknown field",
            ),
            (r#"{"values": [1]}"#, "missing field"),
        ] {
            let e = serde_json::from_str::<SparseVector>(json)
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle), "{json}: {e}");
        }
        assert!(matches!(
            SparseVector::new(vec![1, 2], vec![1.0, f32::NAN]),
            Err(Error::NonFiniteComponent { index: 1, .. })
        ));
        // Shared indices only, including one whose product is 0.
        let a = SparseVector::new(vec![1, 5, 7], vec![2.0, 0.0, 1.0]).unwrap();
        let b = SparseVector::new(vec![0, 5, 7, 8], vec![1.0, 3.0, 4.0, 1.0]).unwrap();
        assert_eq!((a.dot(&b), a.len()), (Some(4.0), 3));
    }

    #[test]
    fn ids_from_names_are_the_uuids_python_derives() {
        // Expected values from Python's `uuid.uuid5(ns, key)`, an implementation of our own.
        let ns = "cbbb3242-4620-5ce8-81cc-ff8b3dc87920"
            .parse::<PointId>()
            .unwrap();
        assert_eq!(ns, PointId::Uuid(NAME_NAMESPACE));
        for (key, uuid) in [
            ("", "1ce96d67-ee16-51ab-938a-dae3ceb41e81"),
            ("note-1", "4ab00615-3876-5be4-9fff-3f43b7be16f5"),
            (
                "V1StGXR8_Z5jdHi6B-myT",
                "9fe0b077-6832-5070-a86c-7d1c1fb52f68",
            ),
            ("héllo wörld 🍇", "87894592-4cdd-56c7-b140-367068eaad4e"),
            (&"a".repeat(200), "f9639363-1561-54bf-bdf7-ea300a6acf86"),
        ] {
            assert_eq!(PointId::from_name(key).to_string(), uuid, "{key:?}");
        }
    }

    #[test]
    fn uuid_forms_parse_to_the_same_id() {
        let a: PointId = "550e8400-e29b-41d4-a716-446655440000".parse().unwrap();
        let b: PointId = "550E8400E29B41D4A716446655440000".parse().unwrap();
        let c: PointId = "urn:uuid:550e8400-e29b-41d4-a716-446655440000"
            .parse()
            .unwrap();
        let d: PointId = "{550e8400-e29b-41d4-a716-446655440000}".parse().unwrap();
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(a, d, "braced, as Qdrant accepts");
        assert_eq!(a.to_string(), "550e8400-e29b-41d4-a716-446655440000");
    }

    #[test]
    fn bad_ids_are_errors() {
        for bad in [
            "",
            "-1",
            "550e8400-e29b-41d4-a716",
            "zz0e8400-e29b-41d4-a716-446655440000",
        ] {
            assert!(bad.parse::<PointId>().is_err(), "{bad}");
        }
        for bad in ["-3", "1.5", "\"nope\"", "null", "[1]"] {
            assert!(serde_json::from_str::<PointId>(bad).is_err(), "{bad}");
        }
        assert!("99999999999999999999999".parse::<PointId>().is_err());
    }

    #[test]
    fn ids_round_trip_through_json() {
        for id in [
            PointId::Num(0),
            PointId::Num(u64::MAX),
            PointId::Uuid(u128::MAX),
        ] {
            let s = serde_json::to_string(&id).unwrap();
            assert_eq!(serde_json::from_str::<PointId>(&s).unwrap(), id);
        }
    }

    #[test]
    fn a_misshapen_point_is_a_malformed_request_not_a_filter_error() {
        for bad in [
            serde_json::json!(7),
            serde_json::json!({"vector": [1.0]}),
            serde_json::json!({"id": 1, "vector": "no"}),
        ] {
            let err = Point::from_json(&bad).unwrap_err();
            assert_eq!(err.code(), "MalformedRequest", "{bad}: {err}");
            assert!(
                err.to_string().starts_with("malformed request: point: "),
                "{err}"
            );
        }
    }
}
