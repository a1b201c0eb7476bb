//! Request and response types of searches, reads and scrolls, in Qdrant's JSON shapes.

use serde::{Deserialize, Serialize};

use crate::filter::{Filter, KeyPath, Step};
use std::collections::BTreeMap;

use crate::point::{vectors_of, Payload, PointId, SparseVector, VectorShape};

fn default_limit() -> usize {
    10
}

fn yes() -> bool {
    true
}

/// A nearest-neighbour query.
///
/// ```
/// use grape_vector_db::{Condition, Filter, SearchRequest};
///
/// let req = SearchRequest::new(vec![0.1, 0.9], 5)
///     .with_filter(Filter::must([Condition::match_value("lang", "fr")]))
///     .with_payload(true);
/// let same: SearchRequest = serde_json::from_str(r#"{
///     "vector": [0.1, 0.9], "limit": 5, "with_payload": true,
///     "filter": {"must": [{"key": "lang", "match": {"value": "fr"}}]}
/// }"#)?;
/// assert_eq!(req, same);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    /// The query vector (same dimension as the vector searched).
    pub vector: Vec<f32>,
    /// The dense vector searched, by name (one of
    /// [`EmbeddedConfig::named_vectors`](crate::EmbeddedConfig::named_vectors)); `None` (or
    /// `""`) searches the unnamed one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub using: Option<String>,
    /// How many results to return (default 10).
    #[serde(default = "default_limit")]
    pub limit: usize,
    /// How many of the best results to skip first (for paging).
    #[serde(default)]
    pub offset: usize,
    /// Only points matching this filter are considered; the scan applies it to every candidate,
    /// so `limit` results come back whenever at least `limit` points match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<Filter>,
    /// Keep only results strictly better than this, as Qdrant does: scores above it for
    /// Cosine/Dot, distances below it for Euclid/Manhattan (a result equal to it is dropped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score_threshold: Option<f32>,
    /// Return each result's payload.
    #[serde(default)]
    pub with_payload: bool,
    /// Return each result's stored vector (normalised, for Cosine).
    #[serde(default)]
    pub with_vector: bool,
    /// Search tuning.
    #[serde(default)]
    pub params: SearchParams,
}

impl SearchRequest {
    /// A request for the `limit` nearest points to `vector`, without payloads.
    ///
    /// ```
    /// let req = grape_vector_db::SearchRequest::new(vec![1.0, 0.0], 3);
    /// assert_eq!((req.limit, req.offset), (3, 0));
    /// ```
    pub fn new(vector: Vec<f32>, limit: usize) -> Self {
        SearchRequest {
            vector,
            using: None,
            limit,
            offset: 0,
            filter: None,
            score_threshold: None,
            with_payload: false,
            with_vector: false,
            params: SearchParams::default(),
        }
    }

    /// Searches the dense vector named `name` instead of the unnamed one.
    ///
    /// ```
    /// let req = grape_vector_db::SearchRequest::new(vec![1.0], 1).using("image");
    /// assert_eq!(req.using.as_deref(), Some("image"));
    /// ```
    pub fn using(mut self, name: impl Into<String>) -> Self {
        self.using = Some(name.into());
        self
    }

    /// Restricts the search to points matching `filter`.
    ///
    /// ```
    /// use grape_vector_db::{Filter, SearchRequest};
    /// assert!(SearchRequest::new(vec![1.0], 1).with_filter(Filter::default()).filter.is_some());
    /// ```
    pub fn with_filter(mut self, filter: Filter) -> Self {
        self.filter = Some(filter);
        self
    }

    /// Sets whether payloads are returned.
    ///
    /// ```
    /// assert!(grape_vector_db::SearchRequest::new(vec![1.0], 1).with_payload(true).with_payload);
    /// ```
    pub fn with_payload(mut self, yes: bool) -> Self {
        self.with_payload = yes;
        self
    }

    /// Sets whether stored vectors are returned.
    ///
    /// ```
    /// assert!(grape_vector_db::SearchRequest::new(vec![1.0], 1).with_vector(true).with_vector);
    /// ```
    pub fn with_vector(mut self, yes: bool) -> Self {
        self.with_vector = yes;
        self
    }

    /// Skips the first `offset` results.
    ///
    /// ```
    /// assert_eq!(grape_vector_db::SearchRequest::new(vec![1.0], 1).with_offset(20).offset, 20);
    /// ```
    pub fn with_offset(mut self, offset: usize) -> Self {
        self.offset = offset;
        self
    }

    /// Drops results worse than `threshold`.
    ///
    /// ```
    /// let r = grape_vector_db::SearchRequest::new(vec![1.0], 1).with_score_threshold(0.5);
    /// assert_eq!(r.score_threshold, Some(0.5));
    /// ```
    pub fn with_score_threshold(mut self, threshold: f32) -> Self {
        self.score_threshold = Some(threshold);
        self
    }
}

/// Search tuning, as Qdrant's `params`.
///
/// ```
/// let p: grape_vector_db::SearchParams = serde_json::from_str(r#"{"exact": true}"#).unwrap();
/// assert!(p.exact);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchParams {
    /// Size of the HNSW candidate list (larger: better recall, slower); at least `limit + offset`
    /// is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hnsw_ef: Option<usize>,
    /// Force an exact scan even when the index would be used.
    #[serde(default)]
    pub exact: bool,
    /// How a database with [`Quantization`](crate::Quantization) uses its codes for this query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantization: Option<QuantizationSearchParams>,
}

/// How a search uses quantized codes, as Qdrant's `params.quantization`.
///
/// ```
/// let p: grape_vector_db::SearchParams =
///     serde_json::from_str(r#"{"quantization": {"rescore": true, "oversampling": 2.0}}"#).unwrap();
/// assert_eq!(p.quantization.unwrap().oversampling, Some(2.0));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuantizationSearchParams {
    /// Walk the graph with the original vectors, not the codes.
    #[serde(default)]
    pub ignore: bool,
    /// Score the best candidates again with the original vectors (default `true`), so the
    /// scores returned are exact; `false` returns the codes' estimates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rescore: Option<bool>,
    /// Re-score `oversampling * (limit + offset)` candidates, widening the candidate list to
    /// as many if need be (at least 1). Default: the whole candidate list (`hnsw_ef`), which
    /// keeps the recall of the vectors on data where codes are coarse (Qdrant's default, 1,
    /// lost 4 points of recall@10 on WordNet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oversampling: Option<f64>,
}

/// One search result.
///
/// ```
/// use grape_vector_db::{PointId, ScoredPoint};
/// let p = ScoredPoint { id: PointId::Num(3), score: 0.9, payload: None, vector: None, named_vectors: None, sparse_vectors: None };
/// assert_eq!(serde_json::to_string(&p).unwrap(), r#"{"id":3,"score":0.9}"#);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredPoint {
    /// The point's id.
    pub id: PointId,
    /// Similarity (Cosine, Dot: higher is closer) or distance (Euclid, Manhattan: lower is closer).
    pub score: f32,
    /// The payload, when requested.
    pub payload: Option<Payload>,
    /// The stored vector, when requested.
    pub vector: Option<Vec<f32>>,
    /// The point's named dense vectors, when vectors are requested from a database that
    /// declares some; in JSON they sit beside the vector named `""`, as in Qdrant.
    pub named_vectors: Option<BTreeMap<String, Vec<f32>>>,
    /// The point's sparse vectors by name, when vectors are requested from a database that
    /// declares some; in JSON they sit beside the dense vector, named `""`, as in Qdrant.
    pub sparse_vectors: Option<BTreeMap<String, SparseVector>>,
}

impl ScoredPoint {
    /// A record with its score.
    pub(crate) fn of(record: Record, score: f32) -> Self {
        let Record {
            id,
            payload,
            vector,
            named_vectors,
            sparse_vectors,
        } = record;
        ScoredPoint {
            id,
            score,
            payload,
            vector,
            named_vectors,
            sparse_vectors,
        }
    }
}

impl Serialize for ScoredPoint {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = serializer.serialize_map(None)?;
        m.serialize_entry("id", &self.id)?;
        m.serialize_entry("score", &self.score)?;
        if let Some(payload) = &self.payload {
            m.serialize_entry("payload", payload)?;
        }
        if let Some(vector) = vector_json(
            self.vector.as_deref(),
            self.named_vectors.as_ref(),
            self.sparse_vectors.as_ref(),
        ) {
            m.serialize_entry("vector", &vector)?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for ScoredPoint {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Shape {
            id: PointId,
            score: f32,
            #[serde(default)]
            payload: Option<Payload>,
            #[serde(default)]
            vector: Option<serde_json::Value>,
        }
        let s = Shape::deserialize(deserializer)?;
        let v = vector_of_json(s.vector).map_err(serde::de::Error::custom)?;
        Ok(ScoredPoint {
            id: s.id,
            score: s.score,
            payload: s.payload,
            vector: v.dense,
            named_vectors: v.named,
            sparse_vectors: v.sparse,
        })
    }
}

/// The answer to one [`SearchRequest`].
///
/// ```
/// use grape_vector_db::{EmbeddedConfig, EmbeddedVectorDB, Point, SearchRequest};
/// let db = EmbeddedVectorDB::open(EmbeddedConfig::builder(2).build()?)?;
/// db.upsert(vec![Point::new(1, vec![1.0, 0.0])])?;
/// let res = db.search(&SearchRequest::new(vec![1.0, 0.1], 5))?;
/// assert_eq!(res.result.len(), 1);
/// assert!(res.exact);
/// # Ok::<(), grape_vector_db::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchResponse {
    /// The results, best first.
    pub result: Vec<ScoredPoint>,
    /// Whether the results are exact (a scan) rather than approximate (the HNSW index).
    pub exact: bool,
    /// How many distances to stored vectors were computed.
    pub scored: usize,
}

/// A stored point as returned by `get` and `scroll`.
///
/// ```
/// use grape_vector_db::{PointId, Record};
/// let r = Record { id: PointId::Num(1), payload: None, vector: Some(vec![1.0]), named_vectors: None,
///                   sparse_vectors: None };
/// assert_eq!(serde_json::to_string(&r).unwrap(), r#"{"id":1,"vector":[1.0]}"#);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The point's id.
    pub id: PointId,
    /// The payload, when requested.
    pub payload: Option<Payload>,
    /// The vector, when requested.
    pub vector: Option<Vec<f32>>,
    /// The point's named dense vectors, when vectors are requested from a database that
    /// declares some (see [`ScoredPoint::named_vectors`]).
    pub named_vectors: Option<BTreeMap<String, Vec<f32>>>,
    /// The point's sparse vectors by name, when vectors are requested from a database that
    /// declares some (see [`ScoredPoint::sparse_vectors`]).
    pub sparse_vectors: Option<BTreeMap<String, SparseVector>>,
}

impl Serialize for Record {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = serializer.serialize_map(None)?;
        m.serialize_entry("id", &self.id)?;
        if let Some(payload) = &self.payload {
            m.serialize_entry("payload", payload)?;
        }
        if let Some(vector) = vector_json(
            self.vector.as_deref(),
            self.named_vectors.as_ref(),
            self.sparse_vectors.as_ref(),
        ) {
            m.serialize_entry("vector", &vector)?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for Record {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Shape {
            id: PointId,
            #[serde(default)]
            payload: Option<Payload>,
            #[serde(default)]
            vector: Option<serde_json::Value>,
        }
        let s = Shape::deserialize(deserializer)?;
        let v = vector_of_json(s.vector).map_err(serde::de::Error::custom)?;
        Ok(Record {
            id: s.id,
            payload: s.payload,
            vector: v.dense,
            named_vectors: v.named,
            sparse_vectors: v.sparse,
        })
    }
}

/// A result's `vector` in JSON, as Qdrant writes it: the dense vector alone when it is the
/// only one returned, else the vectors by name (`{}` when `with_vector` names vectors the
/// point lacks).
fn vector_json<'a>(
    dense: Option<&'a [f32]>,
    named: Option<&'a BTreeMap<String, Vec<f32>>>,
    sparse: Option<&'a BTreeMap<String, SparseVector>>,
) -> Option<VectorShape<'a>> {
    static NONE_DENSE: BTreeMap<String, Vec<f32>> = BTreeMap::new();
    static NONE_SPARSE: BTreeMap<String, SparseVector> = BTreeMap::new();
    let alone = named.is_none_or(BTreeMap::is_empty) && sparse.is_none_or(BTreeMap::is_empty);
    match (dense, named.is_none() && sparse.is_none()) {
        (None, true) => None,
        (Some(v), _) if alone => Some(VectorShape::Dense(v.into())),
        (dense, _) => Some(VectorShape::named(
            dense,
            named.unwrap_or(&NONE_DENSE),
            sparse.unwrap_or(&NONE_SPARSE),
        )),
    }
}

/// A result's vectors, as read back from JSON.
#[derive(Default)]
struct ResultVectors {
    dense: Option<Vec<f32>>,
    named: Option<BTreeMap<String, Vec<f32>>>,
    sparse: Option<BTreeMap<String, SparseVector>>,
}

/// The `vector` of a result read back from JSON.
fn vector_of_json(vector: Option<serde_json::Value>) -> crate::error::Result<ResultVectors> {
    let object = match vector {
        None | Some(serde_json::Value::Null) => return Ok(ResultVectors::default()),
        Some(serde_json::Value::Object(object)) => object,
        Some(v) => {
            return Ok(ResultVectors {
                dense: Some(vectors_of(&v)?.dense),
                ..ResultVectors::default()
            })
        }
    };
    // Vectors by name, the unnamed one among them or not (`with_vector` naming others only).
    let mut with_dense = object.clone();
    with_dense
        .entry(String::new())
        .or_insert_with(|| serde_json::Value::Array(Vec::new()));
    let v = vectors_of(&serde_json::Value::Object(with_dense))?;
    // `{}`: vectors asked for by name, none of which the point has.
    let none_named = object.is_empty();
    Ok(ResultVectors {
        dense: object.contains_key("").then_some(v.dense),
        named: (!v.named.is_empty()).then_some(v.named),
        sparse: (none_named || !v.sparse.is_empty()).then_some(v.sparse),
    })
}

/// A page of points in id order, as Qdrant's scroll.
///
/// ```
/// let r: grape_vector_db::ScrollRequest = serde_json::from_str(r#"{"limit": 2}"#).unwrap();
/// assert!(r.with_payload && !r.with_vector && r.offset.is_none());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScrollRequest {
    /// Start at this id (inclusive); `None` starts at the smallest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<PointId>,
    /// Page size (default 10).
    #[serde(default = "default_limit")]
    pub limit: usize,
    /// Only points matching this filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<Filter>,
    /// Return payloads (default true, as Qdrant).
    #[serde(default = "yes")]
    pub with_payload: bool,
    /// Return vectors (default false).
    #[serde(default)]
    pub with_vector: bool,
}

impl Default for ScrollRequest {
    fn default() -> Self {
        ScrollRequest {
            offset: None,
            limit: default_limit(),
            filter: None,
            with_payload: true,
            with_vector: false,
        }
    }
}

/// One page of a scroll; pass `next_page_offset` as the next request's `offset`.
///
/// ```
/// use grape_vector_db::{EmbeddedConfig, EmbeddedVectorDB, Point, ScrollRequest};
/// let db = EmbeddedVectorDB::open(EmbeddedConfig::builder(1).build()?)?;
/// db.upsert((1..=3u64).map(|i| Point::new(i, vec![i as f32])).collect())?;
/// let page = db.scroll(&ScrollRequest { limit: 2, ..ScrollRequest::default() })?;
/// assert_eq!(page.points.len(), 2);
/// assert_eq!(page.next_page_offset, Some(3u64.into()));
/// # Ok::<(), grape_vector_db::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScrollResponse {
    /// The points of this page, in id order.
    pub points: Vec<Record>,
    /// The id to start the next page at, or `None` after the last page.
    pub next_page_offset: Option<PointId>,
}

/// A request of Qdrant's Query API (`POST /collections/{name}/points/query`), in its JSON shape:
/// the nearest points to `query`, a dense vector or a sparse one named by `using`; or, with
/// `prefetch`, the candidates of sub-queries fused (`{"fusion": "rrf"}` or `"dbsf"`) or
/// re-scored by `query`.
///
/// ```
/// use grape_vector_db::{Query, QueryRequest, QueryVector, Fusion};
/// let q: QueryRequest = serde_json::from_value(serde_json::json!({
///     "query": {"indices": [3, 8], "values": [1.0, 0.5]}, "using": "text", "limit": 5
/// }))?;
/// assert!(matches!(q.query, Some(Query::Vector(QueryVector::Sparse(_)))));
/// assert_eq!((q.using.as_deref(), q.limit), (Some("text"), 5));
/// let hybrid: QueryRequest = serde_json::from_value(serde_json::json!({
///     "prefetch": [
///         {"query": [0.1, 0.9], "limit": 20},
///         {"query": {"indices": [3], "values": [1.0]}, "using": "text", "limit": 20}
///     ],
///     "query": {"fusion": "rrf"}
/// }))?;
/// assert_eq!((hybrid.prefetch.len(), hybrid.query), (2, Some(Query::Fusion { fusion: Fusion::Rrf })));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueryRequest {
    /// Sub-queries whose results `query` fuses or re-scores (one object or a list in JSON).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub prefetch: Vec<Prefetch>,
    /// What to search for, or how to combine the prefetched results.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<Query>,
    /// The vector searched: a sparse vector's name, or `""` (the default) for the dense one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub using: Option<String>,
    /// How many results to return (default 10).
    pub limit: usize,
    /// How many of the best results to skip first.
    pub offset: usize,
    /// Only points matching this filter are considered, here and in every prefetch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter: Option<Filter>,
    /// Keep only results scoring strictly better than this (see
    /// [`SearchRequest::score_threshold`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score_threshold: Option<f32>,
    /// Return each result's payload (in JSON also a list of fields, or `{"include": [..]}` /
    /// `{"exclude": [..]}`, which set [`QueryRequest::payload_selector`] too).
    pub with_payload: bool,
    /// Which of the payload's fields to return, when not all.
    #[serde(skip)]
    pub payload_selector: Option<PayloadSelector>,
    /// Return each result's vectors (in JSON also a list of names, `[""]` for the dense one,
    /// which sets [`QueryRequest::vector_selector`] too).
    pub with_vector: bool,
    /// Which vectors to return by name, when not all.
    #[serde(skip)]
    pub vector_selector: Option<Vec<String>>,
    /// Search tuning of a dense query.
    pub params: SearchParams,
}

/// Which fields of a payload a result carries, as Qdrant's `with_payload` selects them (its
/// `JsonPath::value_filter`): by paths (`a.b`, `a[].b`) that keep a field, or an array's
/// element, when they agree with its path as far as both go (`include`: `obj` keeps all of
/// `obj`, `obj.x` keeps `obj` with only `x`), or drop it when they lead to it (`exclude`).
///
/// ```
/// use grape_vector_db::PayloadSelector;
/// let p = serde_json::json!({"a": {"x": 1, "y": 2}, "b": [{"x": 3, "y": 4}], "c": 5});
/// let p = p.as_object().unwrap();
/// let keep = PayloadSelector::include(["a.x", "b[].y"])?;
/// assert_eq!(serde_json::Value::Object(keep.apply(p)), serde_json::json!({"a": {"x": 1}, "b": [{"y": 4}]}));
/// let drop = PayloadSelector::exclude(["a", "b[].x"])?;
/// assert_eq!(serde_json::Value::Object(drop.apply(p)), serde_json::json!({"b": [{"y": 4}], "c": 5}));
/// # Ok::<(), grape_vector_db::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum PayloadSelector {
    /// Only the fields these paths reach (or lead to).
    Include(Vec<KeyPath>),
    /// Every field but those these paths reach.
    Exclude(Vec<KeyPath>),
}

impl PayloadSelector {
    /// Only the fields these paths reach; an unparsable path is `MalformedFilter`.
    pub fn include<S: AsRef<str>>(paths: impl IntoIterator<Item = S>) -> crate::Result<Self> {
        Self::paths(paths).map(PayloadSelector::Include)
    }

    /// Every field but those these paths reach.
    pub fn exclude<S: AsRef<str>>(paths: impl IntoIterator<Item = S>) -> crate::Result<Self> {
        Self::paths(paths).map(PayloadSelector::Exclude)
    }

    fn paths<S: AsRef<str>>(paths: impl IntoIterator<Item = S>) -> crate::Result<Vec<KeyPath>> {
        paths.into_iter().map(|p| p.as_ref().parse()).collect()
    }

    /// The fields of `payload` this selector keeps.
    pub fn apply(&self, payload: &Payload) -> Payload {
        let keep = |path: &[Step]| match self {
            PayloadSelector::Include(patterns) => patterns.iter().any(|p| p.agrees_with(path)),
            PayloadSelector::Exclude(patterns) => !patterns.iter().any(|p| p.leads_to(path)),
        };
        select_fields(&mut Vec::new(), payload, &keep)
    }

    /// Qdrant's `with_payload` other than a boolean: a list of fields to include, or
    /// `{"include": [..]}` / `{"exclude": [..]}`.
    fn from_json(value: &serde_json::Value) -> crate::Result<PayloadSelector> {
        let malformed = || {
            crate::Error::MalformedRequest(
                "with_payload is true, false, a list of fields, {\"include\": [fields]} or \
                 {\"exclude\": [fields]}"
                    .to_owned(),
            )
        };
        let fields = |v: &serde_json::Value| -> crate::Result<Vec<KeyPath>> {
            let names = v
                .as_array()
                .and_then(|a| a.iter().map(|f| f.as_str()).collect::<Option<Vec<_>>>())
                .ok_or_else(malformed)?;
            Self::paths(names)
        };
        match value {
            serde_json::Value::Array(_) => fields(value).map(PayloadSelector::Include),
            serde_json::Value::Object(o) if o.len() == 1 => match o.iter().next() {
                Some((k, v)) if k == "include" => fields(v).map(PayloadSelector::Include),
                Some((k, v)) if k == "exclude" => fields(v).map(PayloadSelector::Exclude),
                _ => Err(malformed()),
            },
            _ => Err(malformed()),
        }
    }
}

/// `object`'s fields that `keep` accepts by their path (after `path`), their values filtered
/// the same way.
fn select_fields<'a>(
    path: &mut Vec<Step<'a>>,
    object: &'a Payload,
    keep: &dyn Fn(&[Step]) -> bool,
) -> Payload {
    let mut out = Payload::new();
    for (key, value) in object {
        path.push(Step::Key(key));
        if keep(path) {
            out.insert(key.clone(), select_value(path, value, keep));
        }
        path.pop();
    }
    out
}

/// `value` filtered: an object's fields and an array's elements (`[]` in the path) that
/// `keep` accepts.
fn select_value<'a>(
    path: &mut Vec<Step<'a>>,
    value: &'a serde_json::Value,
    keep: &dyn Fn(&[Step]) -> bool,
) -> serde_json::Value {
    match value {
        serde_json::Value::Object(o) => serde_json::Value::Object(select_fields(path, o, keep)),
        serde_json::Value::Array(items) => {
            path.push(Step::Each);
            let kept = match keep(path) {
                true => items.iter().map(|v| select_value(path, v, keep)).collect(),
                false => Vec::new(),
            };
            path.pop();
            serde_json::Value::Array(kept)
        }
        other => other.clone(),
    }
}

/// A sub-query of a [`QueryRequest`] (Qdrant's `prefetch`): its best `limit` points are the
/// candidates of the query above it. Prefetches nest.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prefetch {
    /// Sub-queries of this one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub prefetch: Vec<Prefetch>,
    /// What to search for, or how to combine its own prefetches.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<Query>,
    /// The vector searched (see [`QueryRequest::using`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub using: Option<String>,
    /// Only points matching this filter, merged with every filter above as Qdrant merges them
    /// (each clause's conditions joined: two `should` lists become one), are candidates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter: Option<Filter>,
    /// How many candidates it passes up (default 10).
    pub limit: usize,
    /// Keep only candidates scoring strictly better than this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score_threshold: Option<f32>,
    /// Search tuning of a dense query.
    pub params: SearchParams,
}

impl QueryRequest {
    /// Reads a request from Qdrant's JSON (as `serde_json::from_value` does), with an error
    /// (`MalformedRequest`) naming the field that is wrong, at any depth of its prefetches.
    /// (By hand: serde's derived readers for these shapes would add kilobytes to the wasm
    /// module, where every request is read from JSON.)
    ///
    /// ```
    /// use grape_vector_db::QueryRequest;
    /// let q = QueryRequest::from_json(&serde_json::json!({"query": [1.0, 0.0], "limit": 3}))?;
    /// assert_eq!(q.limit, 3);
    /// assert!(QueryRequest::from_json(&serde_json::json!({"limt": 3})).is_err());
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn from_json(value: &serde_json::Value) -> crate::Result<QueryRequest> {
        read_query(value, true)
    }
}

impl Prefetch {
    /// Reads a prefetch from Qdrant's JSON, as [`QueryRequest::from_json`].
    ///
    /// ```
    /// use grape_vector_db::Prefetch;
    /// let p = Prefetch::from_json(&serde_json::json!({"query": [1.0], "limit": 20}))?;
    /// assert_eq!(p.limit, 20);
    /// assert!(Prefetch::from_json(&serde_json::json!({"with_payload": true})).is_err());
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn from_json(value: &serde_json::Value) -> crate::Result<Prefetch> {
        let r = read_query(value, false)?;
        Ok(Prefetch {
            prefetch: r.prefetch,
            query: r.query,
            using: r.using,
            filter: r.filter,
            limit: r.limit,
            score_threshold: r.score_threshold,
            params: r.params,
        })
    }
}

/// The fields of a request (`top`) or of a prefetch, which has no `offset`, `with_payload`
/// or `with_vector`.
fn read_query(value: &serde_json::Value, top: bool) -> crate::Result<QueryRequest> {
    let at = if top { "query request" } else { "prefetch" };
    let malformed = |what: String| crate::Error::MalformedRequest(format!("{at}: {what}"));
    let obj = value
        .as_object()
        .ok_or_else(|| malformed(format!("expected an object, found {value}")))?;
    let count = |k: &str, v: &serde_json::Value| {
        v.as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| malformed(format!("`{k}` must be a non-negative integer")))
    };
    let mut r = QueryRequest::sparse("", SparseVector::default(), default_limit());
    r.query = None;
    r.using = None;
    for (key, v) in obj {
        if v.is_null() {
            continue; // as serde reads an optional field
        }
        match key.as_str() {
            "prefetch" => {
                r.prefetch = match v {
                    serde_json::Value::Array(many) => many
                        .iter()
                        .map(Prefetch::from_json)
                        .collect::<crate::Result<_>>()?,
                    one => vec![Prefetch::from_json(one)?],
                }
            }
            "query" => r.query = Some(Query::from_json(v)?),
            "using" => {
                r.using = Some(
                    v.as_str()
                        .ok_or_else(|| malformed("`using` must be a vector's name".to_owned()))?
                        .to_owned(),
                )
            }
            "limit" => r.limit = count(key, v)?,
            "offset" if top => r.offset = count(key, v)?,
            "filter" => r.filter = Some(Filter::from_json(v)?),
            "score_threshold" => {
                let t = v
                    .as_f64()
                    .ok_or_else(|| malformed("`score_threshold` must be a number".to_owned()))?;
                r.score_threshold = Some(t as f32);
            }
            "with_payload" if top => match v.as_bool() {
                Some(all) => r.with_payload = all,
                None => {
                    r.payload_selector = Some(PayloadSelector::from_json(v)?);
                    r.with_payload = true;
                }
            },
            "with_vector" if top => match v.as_bool() {
                Some(all) => r.with_vector = all,
                None => {
                    let names = v
                        .as_array()
                        .and_then(|a| {
                            a.iter()
                                .map(|n| n.as_str().map(str::to_owned))
                                .collect::<Option<Vec<_>>>()
                        })
                        .ok_or_else(|| {
                            malformed(
                                "`with_vector` must be true, false or a list of names".to_owned(),
                            )
                        })?;
                    r.vector_selector = Some(names);
                    r.with_vector = true;
                }
            },
            "params" => {
                r.params = serde_json::from_value(v.clone())
                    .map_err(|e| malformed(format!("params: {e}")))?
            }
            _ => {
                let expected = match top {
                    true => {
                        "`prefetch`, `query`, `using`, `limit`, `offset`, `filter`, \
                             `score_threshold`, `with_payload`, `with_vector`, `params`"
                    }
                    false => {
                        "`prefetch`, `query`, `using`, `limit`, `filter`, \
                              `score_threshold`, `params`"
                    }
                };
                return Err(malformed(format!(
                    "unknown field `{key}`, expected one of {expected}"
                )));
            }
        }
    }
    Ok(r)
}

impl QueryRequest {
    /// A request for the `limit` points whose sparse vector `using` has the largest dot
    /// products with `vector`.
    ///
    /// ```
    /// use grape_vector_db::{QueryRequest, SparseVector};
    /// let q = QueryRequest::sparse("text", SparseVector::new(vec![1], vec![1.0])?, 3);
    /// assert_eq!(q.limit, 3);
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn sparse(using: impl Into<String>, vector: SparseVector, limit: usize) -> Self {
        QueryRequest {
            prefetch: Vec::new(),
            query: Some(Query::Vector(QueryVector::Sparse(vector))),
            using: Some(using.into()),
            limit,
            offset: 0,
            filter: None,
            score_threshold: None,
            with_payload: false,
            payload_selector: None,
            with_vector: false,
            vector_selector: None,
            params: SearchParams::default(),
        }
    }
}

/// The `query` of a [`QueryRequest`] or a [`Prefetch`].
///
/// ```
/// use grape_vector_db::{Fusion, Query};
/// let q: Query = serde_json::from_str(r#"{"fusion": "rrf"}"#)?;
/// assert_eq!(q, Query::Fusion { fusion: Fusion::Rrf });
/// let e = serde_json::from_str::<Query>(r#"{"recommend": {"positive": [1]}}"#).unwrap_err();
/// assert!(e.to_string().contains("`recommend` is not supported"));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Query {
    /// The nearest points to a vector (`[...]` or `{"indices", "values"}`).
    Vector(QueryVector),
    /// The same, written `{"nearest": vector}`.
    Nearest {
        /// The vector.
        nearest: QueryVector,
    },
    /// The prefetches' results combined (`{"fusion": "rrf"}`).
    Fusion {
        /// How.
        fusion: Fusion,
    },
    /// Reciprocal rank fusion with its parameters (`{"rrf": {"k": 60, "weights": [..]}}`).
    Rrf {
        /// Its parameters.
        rrf: Rrf,
    },
}

/// The parameters of reciprocal rank fusion, as Qdrant's `{"rrf": {...}}` query takes them: a
/// point at rank `r` (from 0) of a list of weight `w` scores `1 / ((r + 1) / w + k - 1)`,
/// which is `1 / (r + k)` at weight 1.
///
/// ```
/// use grape_vector_db::{Query, Rrf};
/// let q: Query = serde_json::from_str(r#"{"rrf": {"k": 60, "weights": [3.0, 1.0]}}"#)?;
/// assert_eq!(q, Query::Rrf { rrf: Rrf { k: Some(60), weights: Some(vec![3.0, 1.0]) } });
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Rrf {
    /// The rank constant, at least 1 (default 2, as `{"fusion": "rrf"}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub k: Option<u32>,
    /// One weight per prefetch, in their order, each above 0 (default: all 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weights: Option<Vec<f32>>,
}

impl Rrf {
    /// Reads `{"k": .., "weights": [..]}` (both optional).
    fn from_json(value: &serde_json::Value) -> crate::Result<Rrf> {
        let malformed = |what: &str| crate::Error::MalformedRequest(format!("query: rrf: {what}"));
        let obj = value
            .as_object()
            .ok_or_else(|| malformed("expected {\"k\": .., \"weights\": [..]}"))?;
        let mut rrf = Rrf::default();
        for (key, v) in obj {
            match key.as_str() {
                "k" => {
                    let k = v
                        .as_u64()
                        .and_then(|k| u32::try_from(k).ok())
                        .filter(|&k| k >= 1)
                        .ok_or_else(|| malformed("`k` must be an integer of at least 1"))?;
                    rrf.k = Some(k);
                }
                "weights" => {
                    let weights = v
                        .as_array()
                        .and_then(|a| {
                            a.iter()
                                .map(|w| w.as_f64().map(|w| w as f32))
                                .collect::<Option<Vec<f32>>>()
                        })
                        .filter(|ws| ws.iter().all(|w| w.is_finite() && *w > 0.0))
                        .ok_or_else(|| malformed("`weights` must be numbers above 0"))?;
                    rrf.weights = Some(weights);
                }
                _ => {
                    return Err(malformed(&format!(
                        "unknown field `{key}`, expected `k` or `weights`"
                    )))
                }
            }
        }
        Ok(rrf)
    }
}

impl Query {
    /// Reads a query from Qdrant's JSON shapes: a vector, `{"nearest": vector}` or
    /// `{"fusion": "rrf" | "dbsf"}`, with an error (`MalformedRequest`) that names what is wrong.
    ///
    /// ```
    /// use grape_vector_db::{Query, QueryVector};
    /// let q = Query::from_json(&serde_json::json!({"nearest": [0.5, 0.5]}))?;
    /// assert_eq!(q.vector(), Some(&QueryVector::Dense(vec![0.5, 0.5])));
    /// assert!(Query::from_json(&serde_json::json!({"fusion": "max"})).is_err());
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn from_json(value: &serde_json::Value) -> crate::Result<Query> {
        let malformed = |what: String| crate::Error::MalformedRequest(format!("query: {what}"));
        let Some(obj) = value.as_object().filter(|o| o.len() == 1) else {
            return QueryVector::from_json(value).map(Query::Vector);
        };
        let (key, inner) = obj.iter().next().expect("one entry");
        match key.as_str() {
            "nearest" => QueryVector::from_json(inner).map(|nearest| Query::Nearest { nearest }),
            "fusion" => match inner.as_str() {
                Some("rrf") => Ok(Query::Fusion {
                    fusion: Fusion::Rrf,
                }),
                Some("dbsf") => Ok(Query::Fusion {
                    fusion: Fusion::Dbsf,
                }),
                _ => Err(malformed(format!(
                    "unknown fusion {inner}, expected \"rrf\" or \"dbsf\""
                ))),
            },
            "text" => QueryVector::from_json(value).map(Query::Vector),
            "rrf" => Rrf::from_json(inner).map(|rrf| Query::Rrf { rrf }),
            "recommend" | "discover" | "context" | "order_by" | "formula" | "sample" | "mmr" => {
                Err(malformed(format!(
                    "`{key}` is not supported here; a query is a vector, {{\"nearest\": \
                     vector}}, {{\"fusion\": \"rrf\" | \"dbsf\"}} or {{\"rrf\": {{\"k\": ..}}}}"
                )))
            }
            _ => Err(malformed(format!(
                "unknown field `{key}`; a query is a vector ([numbers], {{\"indices\", \
                 \"values\"}} or {{\"text\"}}), {{\"nearest\": vector}} or {{\"fusion\": \
                 \"rrf\" | \"dbsf\"}}"
            ))),
        }
    }

    /// The vector of a nearest-points query.
    pub fn vector(&self) -> Option<&QueryVector> {
        match self {
            Query::Vector(v) | Query::Nearest { nearest: v } => Some(v),
            Query::Fusion { .. } | Query::Rrf { .. } => None,
        }
    }
}

/// How prefetched results are combined, as Qdrant does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fusion {
    /// Reciprocal rank fusion: a point scores `Σ 1 / (rank + 2)` over the lists it is in
    /// (ranks from 0), so agreement between lists counts, not their scales.
    Rrf,
    /// Distribution-based score fusion: each list's scores are mapped to `0..1` by its mean
    /// `μ` and sample standard deviation `σ`, `(s - (μ - 3σ)) / 6σ` (a list of equal scores
    /// gives 0.5), then summed.
    Dbsf,
}

/// A nearest-points query's vector: a dense vector (an array of numbers) or a sparse one
/// (`{"indices": [...], "values": [...]}`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum QueryVector {
    /// Nearest by the database's distance.
    Dense(Vec<f32>),
    /// Largest dot products with a sparse vector.
    Sparse(SparseVector),
    /// Text, for a sparse vector declared with BM25: searched as its BM25 query vector.
    Document(Document),
}

impl QueryVector {
    /// Reads a query's vector: `[numbers]`, `{"indices": [...], "values": [...]}` or
    /// `{"text": "...", "model": "qdrant/bm25"}`, with typed errors.
    ///
    /// ```
    /// use grape_vector_db::QueryVector;
    /// let v = QueryVector::from_json(&serde_json::json!({"text": "red grapes"}))?;
    /// assert!(matches!(v, QueryVector::Document(_)));
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn from_json(value: &serde_json::Value) -> crate::Result<QueryVector> {
        use serde_json::Value;
        match value {
            Value::Array(numbers) => numbers
                .iter()
                .map(|x| x.as_f64().map(|f| f as f32))
                .collect::<Option<Vec<f32>>>()
                .map(QueryVector::Dense)
                .ok_or_else(|| {
                    crate::Error::MalformedRequest(
                        "query: a dense vector is an array of numbers".to_owned(),
                    )
                }),
            Value::Object(obj) => match crate::point::document_of(value)? {
                Some(text) => Ok(QueryVector::Document(Document {
                    text,
                    model: obj.get("model").and_then(|m| m.as_str()).map(str::to_owned),
                })),
                None => SparseVector::from_json(value).map(QueryVector::Sparse),
            },
            _ => Err(crate::Error::MalformedRequest(format!(
                "query: expected a vector ([numbers], {{\"indices\", \"values\"}} or \
                 {{\"text\"}}), found {value}"
            ))),
        }
    }
}

/// [`Query`] and [`QueryVector`] from any serde format, through their `from_json`.
macro_rules! deserialize_through_json {
    ($($t:ty),*) => {$(
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                use serde::de::Error as _;
                <$t>::from_json(&serde_json::Value::deserialize(d)?).map_err(|e| match e {
                    // Its message alone: the error of a parser says it is malformed.
                    crate::Error::MalformedRequest(m) => D::Error::custom(m),
                    e => D::Error::custom(e),
                })
            }
        }
    )*};
}
deserialize_through_json!(QueryRequest, Prefetch, Query, QueryVector);

/// Text standing for a vector, in Qdrant's shape: `{"text": "...", "model": "qdrant/bm25"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Document {
    /// The text.
    pub text: String,
    /// The model that turns it into a vector: only `"qdrant/bm25"` (the default) here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// The answer to a [`QueryRequest`], in Qdrant's shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryResponse {
    /// The results, best first.
    pub points: Vec<ScoredPoint>,
}
