//! Figures a database reports about itself.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::lifecycle::DatabaseState;
use crate::point::Distance;

/// Counts and sizes of a database.
///
/// ```
/// use grape_vector_db::{EmbeddedConfig, EmbeddedVectorDB, Point};
/// let db = EmbeddedVectorDB::open(EmbeddedConfig::builder(16).build()?)?;
/// db.upsert(vec![Point::new(1, vec![1.0; 16])])?;
/// let stats = db.stats();
/// assert_eq!(stats.total_vectors, 1);
/// assert!(stats.memory.vectors >= 64);
/// # Ok::<(), grape_vector_db::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatabaseStats {
    /// Live points.
    pub total_vectors: usize,
    /// Deleted slots not yet compacted away.
    pub tombstones: usize,
    /// Points not yet in the graph, scanned exactly by every search meanwhile: a log replayed
    /// at open, which is indexed in the background (natively a thread, in the browser idle
    /// time) while the database is `Busy`.
    pub unindexed: usize,
    /// Vector dimension.
    pub dimension: usize,
    /// Distance function.
    pub distance: Distance,
    /// Bytes held in memory, by part.
    pub memory: MemoryStats,
    /// Bytes of the database's files (0 in memory).
    pub disk_bytes: u64,
    /// Where the database is in its life.
    pub state: DatabaseState,
    /// Time since open.
    pub uptime: Duration,
    /// Where the data lives: a directory, `"memory storage"`, or `"memory"` (no storage).
    pub storage: String,
    /// The distance kernel in use (`"avx2+fma"`, `"neon"`, `"simd128"` or `"scalar"`).
    pub kernel: String,
}

/// Bytes held in memory by each part of the database.
///
/// ```
/// let m = grape_vector_db::MemoryStats { vectors: 1, mapped: 4, payloads: 2, ids: 3, index: 5 };
/// assert_eq!(m.total(), 15);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MemoryStats {
    /// The vector arena's owned memory, including spare capacity.
    pub vectors: usize,
    /// Vectors used in place from a memory-mapped segment (page cache, shared and evictable).
    pub mapped: usize,
    /// Payloads (an estimate of their heap size).
    pub payloads: usize,
    /// The id maps.
    pub ids: usize,
    /// The HNSW graph (with its quantized codes) and the payload indexes.
    pub index: usize,
}

impl MemoryStats {
    /// Sum of all parts.
    ///
    /// ```
    /// assert_eq!(grape_vector_db::MemoryStats::default().total(), 0);
    /// ```
    pub fn total(&self) -> usize {
        self.vectors + self.mapped + self.payloads + self.ids + self.index
    }
}
