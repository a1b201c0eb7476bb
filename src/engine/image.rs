//! The checkpoint image: the engine's state as the persistence layer reads it from a segment
//! ([`Image`], sections used in place) and writes it to one ([`ImageSource`]). The types live
//! with the engine, which owns their meaning; `persist/segment.rs` owns the bytes, so the
//! dependency runs one way: persistence depends on the engine, never the reverse.

use crate::bytes::Bytes;
use crate::point::{Distance, PointId};

use super::hnsw::{Graph, GraphParts};

/// What a checkpoint holds, as the persistence layer read it: sections still in the (mapped)
/// file, used in place by [`Engine::from_image`](super::Engine::from_image).
pub(crate) struct Image {
    pub rows: usize,
    pub last_seq: u64,
    /// `rows * stride` little-endian f32, rows padded to `stride` floats.
    pub vectors: Bytes,
    pub ids: Vec<PointId>,
    /// `rows + 1` u64 offsets into `payload_data`.
    pub payload_offsets: Bytes,
    pub payload_data: Bytes,
    /// The HNSW graph over the rows, when the segment has one.
    pub graph: Option<GraphParts>,
    /// Size of the whole file.
    pub file_bytes: u64,
}

/// One row to write: id, vector (`dim` floats) and payload JSON.
pub(crate) type ImageRow<'a> = (PointId, &'a [f32], std::borrow::Cow<'a, [u8]>);

/// What a checkpoint is to hold, from [`Engine::export`](super::Engine::export): the rows to
/// write, in slot order of the new segment.
pub(crate) struct ImageSource<'a> {
    pub dim: usize,
    pub stride: usize,
    pub distance: Distance,
    pub last_seq: u64,
    pub rows: Vec<ImageRow<'a>>,
    /// The graph, numbered by row.
    pub graph: Option<Graph>,
}
