//! The checkpoint image: the engine's state as the persistence layer reads it from a segment
//! ([`Image`], sections used in place, turned into an engine by [`Engine::from_image`]) and
//! writes it to one ([`ImageSource`], from [`Engine::export`]). The types live with the engine,
//! which owns their meaning; `persist/segment.rs` owns the bytes, so the dependency runs one way:
//! persistence depends on the engine, never the reverse.

use super::arena::{RowReader, VectorArena};
use super::hnsw::{Graph, GraphParts, NONE};
use super::payload_index::{PayloadIndexes, StoredIndexes};
use super::payloads::{PayloadStore, RawPayloads};
use super::quantized::{Codes, StoredCodes};
use super::sparse::{self, SparseIndex, StoredSparse};
use super::{Engine, IdMap, MAX_SLOTS};
use crate::bytes::Bytes;
use crate::config::EngineConfig;
use crate::error::{Error, Result};
use crate::point::{Distance, PointId};

/// What a checkpoint holds, as the persistence layer read it: sections still in the (mapped)
/// file, used in place by [`Engine::from_image`].
pub(crate) struct Image {
    pub rows: usize,
    pub last_seq: u64,
    pub vectors: ImageVectors,
    pub ids: Vec<PointId>,
    /// `rows + 1` u64 offsets into `payload_data`.
    pub payload_offsets: Bytes,
    pub payload_data: Bytes,
    /// The HNSW graph over the rows, when the segment has one.
    pub graph: Option<GraphParts>,
    /// The payload indexes the segment stored (none before version 4).
    pub payload_indexes: StoredIndexes,
    /// The graph nodes' quantized codes, when the segment holds them (version 5 on).
    pub codes: Option<StoredCodes>,
    /// The rows' sparse vectors by name (version 6 on).
    pub sparse: Vec<StoredSparse>,
    /// Size of the whole file.
    pub file_bytes: u64,
}

/// A segment's vectors as the engine gets them.
pub(crate) enum ImageVectors {
    /// `rows * stride` little-endian f32 (rows padded to `stride` floats) used in place, with a
    /// reader of the same rows from the file when they are to stay on disk (the
    /// configuration's `vectors_on_disk`): re-scoring reads there instead of through the
    /// mapping.
    InPlace(Bytes, Option<Box<dyn RowReader>>),
    /// Not in memory (kept on disk where the file cannot be mapped): every row is read through
    /// the reader, on first use.
    OnDisk(Box<dyn RowReader>),
}

/// One row to write: id and payload JSON (its vector comes from [`ImageSource::vectors`]).
pub(crate) type ImageRow<'a> = (PointId, std::borrow::Cow<'a, [u8]>);

/// Copies row `row`'s vector (`dim` floats) into the buffer: a row kept on disk is read then,
/// so a checkpoint streams the vectors rather than holding them all.
pub(crate) type VectorSource<'a> = Box<dyn Fn(usize, &mut [f32]) -> Result<()> + 'a>;

/// What a checkpoint is to hold, from [`Engine::export`]: the rows to write, in slot order of
/// the new segment.
pub(crate) struct ImageSource<'a> {
    pub dim: usize,
    pub stride: usize,
    pub distance: Distance,
    pub last_seq: u64,
    pub rows: Vec<ImageRow<'a>>,
    pub vectors: VectorSource<'a>,
    /// The graph, numbered by row.
    pub graph: Option<Graph>,
    /// The payload indexes section, numbered by row.
    pub payload_indexes: Vec<u8>,
    /// The quantized codes section, by row (empty without codes).
    pub codes: Vec<u8>,
    /// The sparse vectors section, by row (empty without sparse vectors).
    pub sparse: Vec<u8>,
}

impl Engine {
    /// An engine over a checkpoint: its vectors used in place, its payloads parsed on first use.
    /// The segment's rows are in id order, which makes building the id map linear.
    pub fn from_image(config: EngineConfig, seg: Image) -> Result<Self> {
        let mut engine = Engine::new(config);
        let rows = seg.rows;
        if rows > MAX_SLOTS {
            return Err(Error::InvalidConfig(format!(
                "the segment holds {rows} points, more than the {MAX_SLOTS} supported"
            )));
        }
        // A `max_points` below `rows` (lowered since) keeps the points; it refuses new ones.
        engine.ids = IdMap::from_rows(seg.ids).ok_or_else(|| Error::Corrupt {
            file: "segment".to_owned(),
            offset: 0,
            detail: "the ids section repeats an id".to_owned(),
        })?;
        let dim = engine.dense.dimension;
        engine.dense.vectors = match seg.vectors {
            ImageVectors::InPlace(base, reader) => {
                let mut arena = VectorArena::with_base(dim, base, rows);
                if let Some(reader) = reader {
                    arena.set_reader(reader);
                }
                arena
            }
            ImageVectors::OnDisk(reader) => VectorArena::lazy(dim, rows, reader),
        };
        engine.indexes =
            PayloadIndexes::with_stored(&engine.config.payload_indexes, seg.payload_indexes);
        for stored in &seg.sparse {
            let index = engine
                .sparse
                .get_mut(&stored.name)
                .ok_or_else(|| super::write::undeclared_sparse(&stored.name))?;
            *index = SparseIndex::from_stored(stored);
        }
        // Sparse vectors declared since the checkpoint: its rows have none.
        for (_, index) in engine.sparse.iter_mut() {
            index.extend_to(rows);
        }
        engine.payloads = PayloadStore::with_raw(
            rows,
            RawPayloads {
                offsets: seg.payload_offsets,
                data: seg.payload_data,
            },
        );
        let dense = &mut engine.dense;
        dense.graph = match (dense.hnsw, seg.graph) {
            (None, _) => None,
            (Some(h), Some(mut parts)) => {
                parts.params.sketch_dim = dense.graph_params(&h).sketch_dim;
                Some(Graph::from_parts(parts))
            }
            (Some(h), None) => Some(Graph::new(dense.graph_params(&h))),
        };
        // Segments of version 2 have no sketches: compute them once (the next checkpoint
        // stores them).
        if let Some(mut graph) = dense.graph.take() {
            graph.complete_sketches(&dense.space());
            dense.graph = Some(graph);
        }
        // Stored codes are used in place when the configuration still asks for them and they
        // cover the stored graph; otherwise they are coded afresh (by `index_pending`) or not
        // at all.
        let graph_rows = dense.graph.as_ref().map(Graph::len);
        if let Some(stored) = seg.codes.filter(|c| Some(c.rows) == graph_rows) {
            dense.codes =
                Codes::from_stored(dense.quantization, dense.distance, dense.dimension, stored);
        }
        // A segment written without an index has all its rows unindexed: build the graph now.
        engine.index_pending()?;
        Ok(engine)
    }

    /// Where the graph's sketches lie (a test looks whether they are still the segment's).
    #[cfg(test)]
    pub fn sketches_at(&self) -> *const u8 {
        self.dense
            .graph
            .as_ref()
            .map_or(std::ptr::null(), |g| g.sketches().as_ptr().cast())
    }

    /// The live points in id order, as a new segment stores them, with the graph renumbered to
    /// match. Callers index pending slots first; if some remain, the segment is written without
    /// a graph (and the next open rebuilds it) rather than with an incomplete one.
    ///
    /// Fails if vectors kept on disk cannot be read (the graph's renumbering may read some).
    pub fn export(&self, last_seq: u64) -> Result<ImageSource<'_>> {
        let failures = self.dense.vectors.read_failures();
        debug_assert!(
            self.unindexed_slots().is_empty(),
            "export before index_pending"
        );
        let complete = self.unindexed_slots().is_empty();
        let mut row_of = vec![NONE; self.ids.slots()];
        for (row, (_, slot)) in self.ids.by_id(None).enumerate() {
            row_of[slot as usize] = row as u32;
        }
        let graph = self
            .dense
            .graph
            .as_ref()
            .filter(|_| complete)
            .map(|g| g.remapped(&row_of, &self.dense.space()));
        self.dense.vectors.failed_since(failures)?;
        let codes = match (&self.dense.codes, &self.dense.graph) {
            (Some(codes), Some(g)) if complete && codes.rows() == g.len() => codes.section(
                &self
                    .ids
                    .by_id(None)
                    .map(|(_, slot)| slot)
                    .collect::<Vec<_>>(),
            ),
            _ => Vec::new(),
        };
        let slots: Vec<u32> = self.ids.by_id(None).map(|(_, slot)| slot).collect();
        let sparse = match self.sparse.is_empty() {
            true => Vec::new(),
            false => sparse::section(&self.sparse, &slots),
        };
        Ok(ImageSource {
            sparse,
            graph,
            payload_indexes: self
                .indexes
                .export(&row_of, || Box::new(self.live_payloads())),
            codes,
            dim: self.dense.dimension,
            stride: self.dense.vectors.stride(),
            distance: self.dense.distance,
            last_seq,
            rows: self
                .ids
                .by_id(None)
                .map(|(id, slot)| (id, self.payloads.json(slot as usize)))
                .collect(),
            vectors: Box::new(move |row, out| {
                self.dense.vectors.copy_row(slots[row] as usize, out)
            }),
        })
    }
}
