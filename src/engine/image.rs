//! The checkpoint image: the engine's state as the persistence layer reads it from a segment
//! ([`Image`], sections used in place, turned into an engine by [`Engine::from_image`]) and
//! writes it to one ([`ImageSource`], from [`Engine::export`]). The types live with the engine,
//! which owns their meaning; `persist/segment.rs` owns the bytes, so the dependency runs one way:
//! persistence depends on the engine, never the reverse.

use super::arena::RowReader;
use super::dense::Presence;
use super::hnsw::{Graph, GraphParts, NONE};
use super::payload_index::{PayloadIndexes, StoredIndexes};
use super::payloads::{PayloadStore, RawPayloads};
use super::quantized::StoredCodes;
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
    /// The unnamed dense vector.
    pub dense: SpaceImage,
    /// The named dense vectors (version 7 on).
    pub named: Vec<NamedImage>,
    pub ids: Vec<PointId>,
    /// `rows + 1` u64 offsets into `payload_data`.
    pub payload_offsets: Bytes,
    pub payload_data: Bytes,
    /// The payload indexes the segment stored (none before version 4).
    pub payload_indexes: StoredIndexes,
    /// The rows' sparse vectors by name (version 6 on).
    pub sparse: Vec<StoredSparse>,
    /// Size of the whole file.
    pub file_bytes: u64,
}

/// One dense vector's part of a checkpoint, as read.
pub(crate) struct SpaceImage {
    pub vectors: ImageVectors,
    /// The HNSW graph over the rows, when the segment has one.
    pub graph: Option<GraphParts>,
    /// The graph nodes' quantized codes, when the segment holds them (version 5 on).
    pub codes: Option<StoredCodes>,
}

/// A named dense vector's part of a checkpoint, as read.
pub(crate) struct NamedImage {
    pub name: String,
    pub dim: usize,
    pub distance: Distance,
    /// A bit per row: whether it holds a vector.
    pub present: Vec<u64>,
    pub space: SpaceImage,
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

/// One row to write: id and payload JSON (its vectors come from [`SpaceSource::vectors`]).
pub(crate) type ImageRow<'a> = (PointId, std::borrow::Cow<'a, [u8]>);

/// Copies row `row`'s vector (`dim` floats) into the buffer: a row kept on disk is read then,
/// so a checkpoint streams the vectors rather than holding them all.
pub(crate) type VectorSource<'a> = Box<dyn Fn(usize, &mut [f32]) -> Result<()> + 'a>;

/// What a checkpoint is to hold, from [`Engine::export`]: the rows to write, in slot order of
/// the new segment.
pub(crate) struct ImageSource<'a> {
    pub last_seq: u64,
    pub rows: Vec<ImageRow<'a>>,
    /// The unnamed dense vector.
    pub dense: SpaceSource<'a>,
    /// The named dense vectors, by name.
    pub named: Vec<NamedSource<'a>>,
    /// The payload indexes section, numbered by row.
    pub payload_indexes: Vec<u8>,
    /// The sparse vectors section, by row (empty without sparse vectors).
    pub sparse: Vec<u8>,
}

/// One dense vector's part of a checkpoint, to write.
pub(crate) struct SpaceSource<'a> {
    pub dim: usize,
    pub stride: usize,
    pub distance: Distance,
    pub vectors: VectorSource<'a>,
    /// The graph, numbered by row.
    pub graph: Option<Graph>,
    /// The quantized codes section, by row (empty without codes).
    pub codes: Vec<u8>,
}

/// A named dense vector's part of a checkpoint, to write.
pub(crate) struct NamedSource<'a> {
    pub name: &'a str,
    /// A bit per row: whether it holds a vector.
    pub present: Vec<u64>,
    pub space: SpaceSource<'a>,
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
        engine.dense.load(rows, seg.dense);
        for stored in seg.named {
            let Some((_, space)) = engine.named.iter_mut().find(|(n, _)| *n == stored.name) else {
                return Err(super::write::undeclared_named(&stored.name));
            };
            if (space.dimension, space.distance) != (stored.dim, stored.distance) {
                return Err(Error::InvalidConfig(format!(
                    "the database's vector {:?} has {} dimensions compared by {:?}, but the \
                     configuration declares {} by {:?}",
                    stored.name, stored.dim, stored.distance, space.dimension, space.distance
                )));
            }
            let present =
                Presence::from_bits(stored.present, rows).ok_or_else(|| Error::Corrupt {
                    file: "segment".to_owned(),
                    offset: 0,
                    detail: format!("vector {:?}: the presence bits are short", stored.name),
                })?;
            space.present = Some(present);
            space.load(rows, stored.space);
        }
        // Named vectors declared since the checkpoint: its rows have none.
        for (_, space) in engine
            .named
            .iter_mut()
            .filter(|(_, s)| s.vectors.rows() < rows)
        {
            space.extend_absent(rows);
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
        let failures = self.read_failures();
        debug_assert!(self.unindexed() == 0, "export before index_pending");
        let complete = self.unindexed() == 0;
        let mut row_of = vec![NONE; self.ids.slots()];
        for (row, (_, slot)) in self.ids.by_id(None).enumerate() {
            row_of[slot as usize] = row as u32;
        }
        let slots: std::sync::Arc<[u32]> = self.ids.by_id(None).map(|(_, slot)| slot).collect();
        let dense = self.dense.export(&row_of, &slots, complete);
        let named = self
            .named
            .iter()
            .map(|(name, space)| NamedSource {
                name,
                present: space.present_by_row(&slots),
                space: space.export(&row_of, &slots, complete),
            })
            .collect();
        self.failed_since(failures)?;
        let sparse = match self.sparse.is_empty() {
            true => Vec::new(),
            false => sparse::section(&self.sparse, &slots),
        };
        Ok(ImageSource {
            sparse,
            dense,
            named,
            payload_indexes: self
                .indexes
                .export(&row_of, || Box::new(self.live_payloads())),
            last_seq,
            rows: self
                .ids
                .by_id(None)
                .map(|(id, slot)| (id, self.payloads.json(slot as usize)))
                .collect(),
        })
    }
}
