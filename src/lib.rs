//! Grape Vector DB: an embedded vector database for semantic search in your own process, natively
//! and (compiled to WebAssembly) in the browser.
//!
//! ```
//! use grape_vector_db::{EmbeddedConfig, EmbeddedVectorDB, Point, SearchRequest};
//! use serde_json::json;
//!
//! let db = EmbeddedVectorDB::open(EmbeddedConfig::builder(3).build()?)?;
//! db.upsert(vec![
//!     Point::new(1, vec![0.9, 0.1, 0.0]).with_payload(json!({"title": "apples"}))?,
//!     Point::new(2, vec![0.0, 0.2, 0.9]).with_payload(json!({"title": "hammers"}))?,
//! ])?;
//! let found = db.search(&SearchRequest::new(vec![1.0, 0.0, 0.0], 1).with_payload(true))?;
//! assert_eq!(found.result[0].payload.as_ref().unwrap()["title"], "apples");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Map of the crate
//! - [`EmbeddedVectorDB`] and [`EmbeddedConfig`]: the thread-safe facade most users need.
//! - [`Point`], [`PointId`], [`Payload`], [`Distance`]: the data model, in Qdrant's JSON shapes.
//! - [`Filter`] and [`Condition`]: payload filters (`must`, `should`, `must_not`, `min_should`).
//! - [`SearchRequest`], [`SearchResponse`], [`ScrollRequest`], [`Record`]: requests and answers.
//! - [`DatabaseState`], [`ShutdownReport`], [`HealthStatus`], [`Metrics`]: the lifecycle, health
//!   checks and metrics of an open database (`close`, `health`, `metrics`).
//! - [`Error`]: every failure, with a message meant for the person who made the call.
//! - [`StoredDatabase`]: what a storage holds, read without opening it; [`npy`]: vectors from
//!   NumPy files; [`storage`]: the storage trait and its backends.
//!
//! See `ARCHITECTURE.md` in the repository for how the pieces fit together.

#![warn(missing_docs)]

mod bm25;
mod bytes;
mod checksum;
mod clock;
mod config;
mod db;
mod distance;
mod engine;
mod error;
mod filter;
mod health;
mod lifecycle;
mod metrics;
pub mod npy;
mod persist;
mod point;
mod search;
mod stats;
pub mod storage;
#[cfg(target_arch = "wasm32")]
mod wasm;

pub use bm25::{Bm25, Bm25Config};
pub use config::{
    DenseVectorConfig, Durability, EmbeddedConfig, EmbeddedConfigBuilder, HnswConfig, LogRecovery,
    Modifier, Quantization, SparseVectorConfig, MAX_DIMENSION,
};
pub use db::{EmbeddedVectorDB, UpsertSummary};
pub use error::{Error, Result};
pub use filter::{
    Condition, DatetimeRange, FieldCondition, Filter, GeoCondition, GeoPoint, KeyPath, Match,
    MatchValue, MinShould, Range, ValuesCount,
};
pub use health::{CheckStatus, HealthCheck, HealthChecker, HealthStatus, HealthThresholds};
pub use lifecycle::{DatabaseState, LifecycleManager, ShutdownHook, ShutdownReport, StartupReport};
pub use metrics::{LatencySummary, Metrics, OperationMetrics};
pub use persist::{OpenReport, StoredDatabase, StoredFile};
pub use point::{Distance, Payload, Point, PointId, SparseVector};
pub use search::{
    Document, Fusion, PayloadSelector, Prefetch, QuantizationSearchParams, Query, QueryRequest,
    QueryResponse, QueryVector, Record, Rrf, ScoredPoint, ScrollRequest, ScrollResponse,
    SearchParams, SearchRequest, SearchResponse,
};
pub use stats::{DatabaseStats, MemoryStats};
#[cfg(target_arch = "wasm32")]
pub use wasm::{id_from_string, GrapeDB};

/// The README's Rust example, run as a doctest so it cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
