//! The native facade: [`EmbeddedVectorDB`], thread-safe and synchronous.

use std::sync::Arc;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use crate::engine::{Engine, EngineConfig};
use crate::error::{Error, Result};
use crate::filter::Filter;
use crate::point::{Distance, Point, PointId};
use crate::search::{Record, ScrollRequest, ScrollResponse, SearchRequest, SearchResponse};
use crate::stats::DatabaseStats;

pub use crate::engine::UpsertSummary;

/// Largest supported dimension; beyond it a single vector would be over 256 KiB.
pub const MAX_DIMENSION: usize = 65_536;

/// How a database is opened. Build it with [`EmbeddedConfig::builder`], which validates.
///
/// ```
/// use grape_vector_db::{Distance, EmbeddedConfig};
/// let config = EmbeddedConfig::builder(384)
///     .distance(Distance::Dot)
///     .max_points(1_000_000)
///     .build()?;
/// assert_eq!(config.dimension, 384);
/// # Ok::<(), grape_vector_db::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddedConfig {
    /// Length of every vector.
    pub dimension: usize,
    /// How vectors are compared.
    pub distance: Distance,
    /// Most live points the database accepts (`None`: up to 2^32 - 1).
    pub max_points: Option<usize>,
    /// Largest `limit + offset` of a search or `limit` of a scroll.
    pub max_search_limit: usize,
}

impl EmbeddedConfig {
    /// Starts a configuration for vectors of `dimension` floats, with Cosine distance.
    ///
    /// ```
    /// let c = grape_vector_db::EmbeddedConfig::builder(3).build().unwrap();
    /// assert_eq!(c.distance, grape_vector_db::Distance::Cosine);
    /// ```
    pub fn builder(dimension: usize) -> EmbeddedConfigBuilder {
        EmbeddedConfigBuilder {
            config: EmbeddedConfig {
                dimension,
                distance: Distance::default(),
                max_points: None,
                max_search_limit: 10_000,
            },
        }
    }

    /// Checks every field; [`EmbeddedVectorDB::open`] calls it too, so a hand-built or
    /// deserialised config is checked as well.
    ///
    /// ```
    /// let mut c = grape_vector_db::EmbeddedConfig::builder(3).build().unwrap();
    /// c.dimension = 0;
    /// assert!(c.validate().is_err());
    /// ```
    pub fn validate(&self) -> Result<()> {
        if self.dimension == 0 || self.dimension > MAX_DIMENSION {
            return Err(Error::InvalidConfig(format!(
                "dimension is {} but must be between 1 and {MAX_DIMENSION}",
                self.dimension
            )));
        }
        if self.max_search_limit == 0 {
            return Err(Error::InvalidConfig(
                "max_search_limit must be at least 1".to_owned(),
            ));
        }
        if self.max_points == Some(0) {
            return Err(Error::InvalidConfig(
                "max_points must be at least 1 (or None for no limit)".to_owned(),
            ));
        }
        Ok(())
    }
}

/// Builder of [`EmbeddedConfig`].
///
/// ```
/// let b = grape_vector_db::EmbeddedConfig::builder(8).max_search_limit(100);
/// assert_eq!(b.build()?.max_search_limit, 100);
/// # Ok::<(), grape_vector_db::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct EmbeddedConfigBuilder {
    config: EmbeddedConfig,
}

impl EmbeddedConfigBuilder {
    /// Sets the distance (default Cosine).
    ///
    /// ```
    /// use grape_vector_db::{Distance, EmbeddedConfig};
    /// assert_eq!(EmbeddedConfig::builder(2).distance(Distance::Euclid).build()?.distance, Distance::Euclid);
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn distance(mut self, distance: Distance) -> Self {
        self.config.distance = distance;
        self
    }

    /// Caps the number of live points; an upsert that would exceed it fails as a whole.
    ///
    /// ```
    /// let c = grape_vector_db::EmbeddedConfig::builder(2).max_points(10).build()?;
    /// assert_eq!(c.max_points, Some(10));
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn max_points(mut self, max: usize) -> Self {
        self.config.max_points = Some(max);
        self
    }

    /// Caps `limit + offset` of searches and `limit` of scrolls (default 10,000).
    ///
    /// ```
    /// let c = grape_vector_db::EmbeddedConfig::builder(2).max_search_limit(5).build()?;
    /// assert_eq!(c.max_search_limit, 5);
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn max_search_limit(mut self, max: usize) -> Self {
        self.config.max_search_limit = max;
        self
    }

    /// Validates and returns the configuration.
    ///
    /// ```
    /// assert!(grape_vector_db::EmbeddedConfig::builder(0).build().is_err());
    /// ```
    pub fn build(self) -> Result<EmbeddedConfig> {
        self.config.validate()?;
        Ok(self.config)
    }
}

/// An embedded vector database, safe to share between threads.
///
/// Cloning is cheap and gives another handle to the same database (an `Arc` inside). Every method
/// is synchronous and short: searches share a read lock and run in parallel with each other; a
/// write holds the write lock only for its own duration. It is fine to call from async code, as
/// with any fast synchronous function (use `spawn_blocking` for huge batches).
///
/// ```
/// use grape_vector_db::{Condition, EmbeddedConfig, EmbeddedVectorDB, Filter, Point, SearchRequest};
/// use serde_json::json;
///
/// let db = EmbeddedVectorDB::open(EmbeddedConfig::builder(3).build()?)?;
/// db.upsert(vec![
///     Point::new(1, vec![1.0, 0.0, 0.0]).with_payload(json!({"kind": "fruit"}))?,
///     Point::new(2, vec![0.0, 1.0, 0.0]).with_payload(json!({"kind": "tool"}))?,
/// ])?;
/// let hits = db.search(
///     &SearchRequest::new(vec![0.9, 0.1, 0.0], 1)
///         .with_filter(Filter::must([Condition::match_value("kind", "tool")])),
/// )?;
/// assert_eq!(hits.result[0].id, 2u64.into());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct EmbeddedVectorDB {
    inner: Arc<Inner>,
}

struct Inner {
    config: EmbeddedConfig,
    engine: RwLock<Engine>,
}

impl std::fmt::Debug for EmbeddedVectorDB {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedVectorDB")
            .field("config", &self.inner.config)
            .field("points", &self.inner.engine.read().len())
            .finish()
    }
}

fn collect_ids<I: Into<PointId>>(ids: impl IntoIterator<Item = I>) -> Vec<PointId> {
    ids.into_iter().map(Into::into).collect()
}

impl EmbeddedVectorDB {
    /// Opens a new in-memory database.
    ///
    /// ```
    /// use grape_vector_db::{EmbeddedConfig, EmbeddedVectorDB};
    /// let db = EmbeddedVectorDB::open(EmbeddedConfig::builder(4).build()?)?;
    /// assert_eq!(db.count(None), 0);
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn open(config: EmbeddedConfig) -> Result<Self> {
        config.validate()?;
        let engine = Engine::new(EngineConfig {
            dimension: config.dimension,
            distance: config.distance,
            max_points: config.max_points,
            max_search_limit: config.max_search_limit,
        });
        Ok(EmbeddedVectorDB {
            inner: Arc::new(Inner {
                config,
                engine: RwLock::new(engine),
            }),
        })
    }

    /// The configuration the database was opened with.
    ///
    /// ```
    /// use grape_vector_db::{EmbeddedConfig, EmbeddedVectorDB};
    /// let db = EmbeddedVectorDB::open(EmbeddedConfig::builder(4).build()?)?;
    /// assert_eq!(db.config().dimension, 4);
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn config(&self) -> &EmbeddedConfig {
        &self.inner.config
    }

    /// Inserts points, replacing any with the same id. The batch is all-or-nothing: if one point
    /// is invalid, none is stored and the error says why.
    ///
    /// ```
    /// use grape_vector_db::{EmbeddedConfig, EmbeddedVectorDB, Point};
    /// let db = EmbeddedVectorDB::open(EmbeddedConfig::builder(2).build()?)?;
    /// let s = db.upsert(vec![Point::new(1, vec![1.0, 0.0]), Point::new(2, vec![0.0, 1.0])])?;
    /// assert_eq!((s.inserted, s.updated), (2, 0));
    /// assert!(db.upsert(vec![Point::new(3, vec![f32::NAN, 0.0])]).is_err());
    /// assert_eq!(db.count(None), 2);
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn upsert(&self, points: Vec<Point>) -> Result<UpsertSummary> {
        self.inner.engine.write().upsert(points)
    }

    /// The nearest points to the request's vector.
    ///
    /// ```
    /// use grape_vector_db::{Distance, EmbeddedConfig, EmbeddedVectorDB, Point, SearchRequest};
    /// let db = EmbeddedVectorDB::open(EmbeddedConfig::builder(1).distance(Distance::Euclid).build()?)?;
    /// db.upsert((0..10u64).map(|i| Point::new(i, vec![i as f32])).collect())?;
    /// let res = db.search(&SearchRequest::new(vec![3.2], 2))?;
    /// let ids: Vec<u64> = res.result.iter().map(|p| match p.id { grape_vector_db::PointId::Num(n) => n, _ => 0 }).collect();
    /// assert_eq!(ids, vec![3, 4]);
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn search(&self, request: &SearchRequest) -> Result<SearchResponse> {
        let mut responses = self.search_batch(std::slice::from_ref(request))?;
        Ok(responses.pop().expect("one response per request"))
    }

    /// Several searches in one pass over the data (much cheaper than one call each).
    ///
    /// ```
    /// use grape_vector_db::{EmbeddedConfig, EmbeddedVectorDB, Point, SearchRequest};
    /// let db = EmbeddedVectorDB::open(EmbeddedConfig::builder(2).build()?)?;
    /// db.upsert(vec![Point::new(1, vec![1.0, 0.0]), Point::new(2, vec![0.0, 1.0])])?;
    /// let res = db.search_batch(&[
    ///     SearchRequest::new(vec![1.0, 0.0], 1),
    ///     SearchRequest::new(vec![0.0, 1.0], 1),
    /// ])?;
    /// assert_eq!(res[1].result[0].id, 2u64.into());
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn search_batch(&self, requests: &[SearchRequest]) -> Result<Vec<SearchResponse>> {
        self.inner.engine.read().search_batch(requests)
    }

    /// The stored points with these ids (payload and vector), in the order asked; ids that do
    /// not exist are left out.
    ///
    /// ```
    /// use grape_vector_db::{EmbeddedConfig, EmbeddedVectorDB, Point};
    /// let db = EmbeddedVectorDB::open(EmbeddedConfig::builder(2).build()?)?;
    /// db.upsert(vec![Point::new(1, vec![1.0, 0.0])])?;
    /// let got = db.get([1u64, 99]);
    /// assert_eq!(got.len(), 1);
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn get<I: Into<PointId>>(&self, ids: impl IntoIterator<Item = I>) -> Vec<Record> {
        self.inner.engine.read().get(&collect_ids(ids), true, true)
    }

    /// Merges `payload`'s keys into the payload of each point. Fails with
    /// [`Error::UnknownId`], changing nothing, if any id does not exist.
    ///
    /// ```
    /// use grape_vector_db::{EmbeddedConfig, EmbeddedVectorDB, Point};
    /// use serde_json::json;
    /// let db = EmbeddedVectorDB::open(EmbeddedConfig::builder(1).build()?)?;
    /// db.upsert(vec![Point::new(1, vec![1.0]).with_payload(json!({"a": 1}))?])?;
    /// db.set_payload([1u64], json!({"b": 2}))?;
    /// assert_eq!(db.get([1u64])[0].payload.as_ref().unwrap().len(), 2);
    /// assert!(db.set_payload([2u64], json!({"b": 2})).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_payload<I: Into<PointId>>(
        &self,
        ids: impl IntoIterator<Item = I>,
        payload: serde_json::Value,
    ) -> Result<()> {
        let serde_json::Value::Object(payload) = payload else {
            return Err(Error::PayloadNotObject);
        };
        self.inner
            .engine
            .write()
            .set_payload(&collect_ids(ids), &payload)
    }

    /// Deletes the points with these ids; returns how many existed.
    ///
    /// ```
    /// use grape_vector_db::{EmbeddedConfig, EmbeddedVectorDB, Point};
    /// let db = EmbeddedVectorDB::open(EmbeddedConfig::builder(1).build()?)?;
    /// db.upsert(vec![Point::new(1, vec![1.0])])?;
    /// assert_eq!(db.delete([1u64, 2]), 1);
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn delete<I: Into<PointId>>(&self, ids: impl IntoIterator<Item = I>) -> usize {
        self.inner.engine.write().delete(&collect_ids(ids))
    }

    /// Deletes every point matching `filter`; returns how many.
    ///
    /// ```
    /// use grape_vector_db::{Condition, EmbeddedConfig, EmbeddedVectorDB, Filter, Point};
    /// use serde_json::json;
    /// let db = EmbeddedVectorDB::open(EmbeddedConfig::builder(1).build()?)?;
    /// db.upsert(vec![
    ///     Point::new(1, vec![1.0]).with_payload(json!({"old": true}))?,
    ///     Point::new(2, vec![1.0]).with_payload(json!({"old": false}))?,
    /// ])?;
    /// assert_eq!(db.delete_by_filter(&Filter::must([Condition::match_value("old", true)])), 1);
    /// assert_eq!(db.count(None), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn delete_by_filter(&self, filter: &Filter) -> usize {
        self.inner.engine.write().delete_by_filter(filter)
    }

    /// Number of points, or of points matching `filter`.
    ///
    /// ```
    /// use grape_vector_db::{Condition, EmbeddedConfig, EmbeddedVectorDB, Filter, Point};
    /// let db = EmbeddedVectorDB::open(EmbeddedConfig::builder(1).build()?)?;
    /// db.upsert((1..=4u64).map(|i| Point::new(i, vec![1.0])).collect())?;
    /// assert_eq!(db.count(Some(&Filter::must([Condition::has_id([1u64, 3])]))), 2);
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn count(&self, filter: Option<&Filter>) -> usize {
        self.inner.engine.read().count(filter)
    }

    /// One page of points in id order (see [`ScrollResponse`] for paging).
    ///
    /// ```
    /// use grape_vector_db::{EmbeddedConfig, EmbeddedVectorDB, Point, ScrollRequest};
    /// let db = EmbeddedVectorDB::open(EmbeddedConfig::builder(1).build()?)?;
    /// db.upsert((1..=5u64).rev().map(|i| Point::new(i, vec![1.0])).collect())?;
    /// let mut req = ScrollRequest { limit: 2, ..ScrollRequest::default() };
    /// let mut seen = Vec::new();
    /// loop {
    ///     let page = db.scroll(&req)?;
    ///     seen.extend(page.points.iter().map(|r| r.id));
    ///     match page.next_page_offset {
    ///         Some(next) => req.offset = Some(next),
    ///         None => break,
    ///     }
    /// }
    /// assert_eq!(seen, (1..=5u64).map(Into::into).collect::<Vec<_>>());
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn scroll(&self, request: &ScrollRequest) -> Result<ScrollResponse> {
        self.inner.engine.read().scroll(request)
    }

    /// Reclaims the space of deleted points now, instead of waiting for the automatic
    /// compaction (which runs when deleted slots outnumber live points).
    ///
    /// ```
    /// use grape_vector_db::{EmbeddedConfig, EmbeddedVectorDB, Point};
    /// let db = EmbeddedVectorDB::open(EmbeddedConfig::builder(1).build()?)?;
    /// db.upsert(vec![Point::new(1, vec![1.0]), Point::new(2, vec![1.0])])?;
    /// db.delete([1u64]);
    /// assert_eq!(db.stats().tombstones, 1);
    /// db.compact();
    /// assert_eq!(db.stats().tombstones, 0);
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn compact(&self) {
        self.inner.engine.write().compact();
    }

    /// Counts and memory use.
    ///
    /// ```
    /// use grape_vector_db::{EmbeddedConfig, EmbeddedVectorDB};
    /// let db = EmbeddedVectorDB::open(EmbeddedConfig::builder(2).build()?)?;
    /// assert_eq!(db.stats().dimension, 2);
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn stats(&self) -> DatabaseStats {
        let engine = self.inner.engine.read();
        DatabaseStats {
            total_vectors: engine.len(),
            tombstones: engine.tombstones(),
            dimension: engine.config().dimension,
            distance: engine.config().distance,
            memory: engine.memory(),
            kernel: crate::distance::best().name.to_owned(),
        }
    }
}
