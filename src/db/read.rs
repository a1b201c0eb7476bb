//! Reads: search (one or a batch), get, count and scroll. Reads share the engine's read lock,
//! so they run in parallel with each other and with the checking and logging part of a write.

use std::sync::atomic::Ordering::Relaxed;

use super::threads::parallel_map;
use super::{collect_ids, EmbeddedVectorDB};
use crate::error::Result;
use crate::filter::Filter;
use crate::lifecycle::OpKind;
use crate::point::PointId;
use crate::search::{Record, ScrollRequest, ScrollResponse, SearchRequest, SearchResponse};

/// Searches in a batch from which `search_batch` spreads the work over the thread pool.
const PARALLEL_BATCH: usize = 8;

impl EmbeddedVectorDB {
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
        self.call(OpKind::Search, || {
            let mut responses = self.answer_batch(std::slice::from_ref(request))?;
            Ok(responses.pop().expect("one response per request"))
        })
    }

    /// Lets go of the rows that reads took from vectors kept on disk, once they pass their
    /// budget (`VectorArena::release_reads`). Reads take them under the read lock; letting go
    /// needs the write lock, taken only if it is free, so that no read waits for it.
    pub(super) fn release_reads(&self) {
        if self.inner.engine.read().holds_too_many_reads() {
            if let Some(mut engine) = self.inner.engine.try_write() {
                engine.release_reads();
            }
        }
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
        self.call(OpKind::Search, || self.answer_batch(requests))
    }

    /// Answers a batch; a large one is split over the thread pool (each share in one pass).
    fn answer_batch(&self, requests: &[SearchRequest]) -> Result<Vec<SearchResponse>> {
        let engine = self.inner.engine.read();
        let threads = self.inner.threads;
        let responses = if threads < 2 || requests.len() < PARALLEL_BATCH {
            engine.search_batch(requests)?
        } else {
            let share = requests.len().div_ceil(threads);
            let shares = requests.len().div_ceil(share);
            let engine = &*engine;
            let parts = parallel_map(threads, shares, &|i| {
                let end = ((i + 1) * share).min(requests.len());
                engine.search_batch(&requests[i * share..end])
            });
            let mut all = Vec::with_capacity(requests.len());
            for part in parts {
                all.extend(part?);
            }
            all
        };
        drop(engine);
        self.release_reads();
        self.inner
            .metrics
            .queries
            .fetch_add(requests.len() as u64, Relaxed);
        Ok(responses)
    }

    /// The stored points with these ids (payload and vector), in the order asked; ids that do
    /// not exist are left out.
    ///
    /// ```
    /// use grape_vector_db::{EmbeddedConfig, EmbeddedVectorDB, Point};
    /// let db = EmbeddedVectorDB::open(EmbeddedConfig::builder(2).build()?)?;
    /// db.upsert(vec![Point::new(1, vec![1.0, 0.0])])?;
    /// let got = db.get([1u64, 99])?;
    /// assert_eq!(got.len(), 1);
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn get<I: Into<PointId>>(&self, ids: impl IntoIterator<Item = I>) -> Result<Vec<Record>> {
        self.call(OpKind::Get, || {
            let records = self.inner.engine.read().get(&collect_ids(ids));
            self.release_reads();
            records
        })
    }

    /// Number of points, or of points matching `filter`.
    ///
    /// ```
    /// use grape_vector_db::{Condition, EmbeddedConfig, EmbeddedVectorDB, Filter, Point};
    /// let db = EmbeddedVectorDB::open(EmbeddedConfig::builder(1).build()?)?;
    /// db.upsert((1..=4u64).map(|i| Point::new(i, vec![1.0])).collect())?;
    /// assert_eq!(db.count(Some(&Filter::must([Condition::has_id([1u64, 3])])))?, 2);
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn count(&self, filter: Option<&Filter>) -> Result<usize> {
        self.call(OpKind::Count, || Ok(self.inner.engine.read().count(filter)))
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
        self.call(OpKind::Scroll, || {
            let page = self.inner.engine.read().scroll(request);
            self.release_reads();
            page
        })
    }
}
