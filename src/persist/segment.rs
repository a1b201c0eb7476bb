//! Segments: immutable files holding a checkpoint of the whole database. The vectors section is
//! laid out exactly like the in-memory arena, so a mapped segment is used in place.
//! See FORMAT.md for the bytes.

use crate::bytes::Bytes;
use crate::engine::hnsw::{Graph, GraphParams, GraphParts, NONE};
use crate::engine::image::{Image, ImageSource, ImageVectors, NamedImage, SpaceImage, SpaceSource};
use crate::engine::payload_index::StoredIndexes;
use crate::engine::quantized::{
    self, StoredCoder, StoredCodes, BINARY_KIND, SECTION_PREAMBLE, SQ8_KIND,
};
use crate::engine::sparse::StoredSparse;
use crate::engine::RowReader;
use crate::error::{Error, Result};
use crate::point::Distance;
use crate::storage::OpenMode;
use crate::storage::{io_error, Storage, StorageFile};

use super::codec::{self, Reader, ID_BYTES};

const MAGIC: &[u8; 8] = b"GRAPESEG";
pub(crate) const VERSION: u32 = 7;
/// Header of version 7: fixed fields, graph parameters, thirteen section descriptors, the
/// header checksum; padded to a multiple of 64 bytes. (Version 6: the same size, twelve
/// sections, no named vectors; version 5: eleven sections, no sparse vectors; versions 4 and 3: 320 bytes, ten and nine
/// sections, no quantized codes, and version 3 no payload indexes; version 2: 256 bytes, eight
/// sections, no sketches; version 1: 192 bytes, four sections, no graph.)
const HEADER_BYTES: u64 = 384;
const HEADER_BYTES_V3: u64 = 320;
const HEADER_BYTES_V2: u64 = 256;
const HEADER_BYTES_V1: u64 = 192;
const SECTIONS: [&str; 13] = [
    "vectors",
    "ids",
    "payload offsets",
    "payload data",
    "graph layer 0",
    "graph levels",
    "graph upper index",
    "graph upper layers",
    "graph sketches",
    "payload indexes",
    "quantized codes",
    "sparse vectors",
    "named vectors",
];
/// A named vector's sections, by the index of the main section of the same job (its
/// presence bits where the main header has the ids); the others are empty.
const NAMED_SECTIONS: [&str; 13] = [
    "named vector rows",
    "named vector presence",
    "",
    "",
    "named vector graph layer 0",
    "named vector graph levels",
    "named vector graph upper index",
    "named vector graph upper layers",
    "named vector graph sketches",
    "",
    "named vector quantized codes",
    "",
    "",
];
/// Where each of a named vector's sections, in the order the directory lists them, goes
/// among the indexes of [`NAMED_SECTIONS`].
const NAMED_SLOTS: [usize; 8] = [
    VECTORS,
    PRESENCE,
    LINKS0,
    LEVELS,
    UPPER_INDEX,
    UPPER,
    SKETCHES,
    CODES,
];

pub(crate) fn file_name(generation: u64) -> String {
    format!("seg-{generation:016x}.seg")
}

pub(crate) fn distance_code(d: Distance) -> u8 {
    match d {
        Distance::Cosine => 0,
        Distance::Dot => 1,
        Distance::Euclid => 2,
        Distance::Manhattan => 3,
    }
}

pub(crate) fn distance_from_code(c: u8) -> Option<Distance> {
    Some(match c {
        0 => Distance::Cosine,
        1 => Distance::Dot,
        2 => Distance::Euclid,
        3 => Distance::Manhattan,
        _ => return None,
    })
}

fn u32_bytes(v: &[u32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn u32s(b: &[u8]) -> Vec<u32> {
    b.chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect()
}

/// Writes a segment to `name` through a temporary file and a rename, durably.
pub(crate) fn write(storage: &dyn Storage, name: &str, src: &ImageSource) -> Result<u64> {
    let tmp = format!("{name}.tmp");
    let file = storage
        .open(&tmp, OpenMode::CreateIfMissing)
        .map_err(io_error("create", &tmp))?;
    file.set_len(0).map_err(io_error("truncate", &tmp))?;
    let mut out = SectionWriter {
        file: &*file,
        tmp: &tmp,
        offset: HEADER_BYTES,
    };
    let rows = src.rows.len();
    let mut sections = vec![out.vectors(rows, &src.dense)?];
    let rest = row_sections(src)
        .into_iter()
        .chain(graph_sections(src.dense.graph.as_ref()))
        .map(std::borrow::Cow::Owned)
        .chain([
            std::borrow::Cow::Borrowed(src.payload_indexes.as_slice()),
            std::borrow::Cow::Borrowed(src.dense.codes.as_slice()),
            std::borrow::Cow::Borrowed(src.sparse.as_slice()),
        ]);
    for section in rest {
        sections.push(out.section(&section)?);
    }
    // Each named vector's sections, then their directory, the last section of the header.
    let mut directory = Vec::new();
    codec::put_u32(&mut directory, src.named.len() as u32);
    for named in &src.named {
        let mut own = vec![out.vectors(rows, &named.space)?];
        let present: Vec<u8> = named.present.iter().flat_map(|w| w.to_le_bytes()).collect();
        let graph = graph_sections(named.space.graph.as_ref());
        for section in std::iter::once(&present)
            .chain(&graph)
            .chain([&named.space.codes])
        {
            own.push(out.section(section)?);
        }
        codec::put_u32(&mut directory, named.name.len() as u32);
        directory.extend_from_slice(named.name.as_bytes());
        put_space_fields(&mut directory, &named.space);
        put_descriptors(&mut directory, &own);
    }
    sections.push(out.section(&directory)?);
    let end = out.offset;
    // An empty last section still starts inside the file.
    file.set_len(end).map_err(io_error("extend", &tmp))?;
    file.write_at(0, &header(src, &sections))
        .map_err(io_error("write", &tmp))?;
    file.sync().map_err(io_error("sync", &tmp))?;
    drop(file);
    storage
        .rename(&tmp, name)
        .map_err(io_error("rename", &tmp))?;
    Ok(end)
}

/// A section as the header describes it: where it starts, its length and its checksum.
type Descriptor = (u64, u64, u32);

/// Writes sections one after the other, each on a 64-byte boundary.
struct SectionWriter<'a> {
    file: &'a dyn StorageFile,
    tmp: &'a str,
    /// Where the last section ended.
    offset: u64,
}

impl SectionWriter<'_> {
    fn section(&mut self, bytes: &[u8]) -> Result<Descriptor> {
        let at = codec::align64(self.offset);
        self.file
            .write_at(at, bytes)
            .map_err(io_error("write", self.tmp))?;
        self.offset = at + bytes.len() as u64;
        Ok((at, bytes.len() as u64, codec::crc(bytes)))
    }

    /// A space's rows, streamed in chunks, so writing a large database never holds a second
    /// copy of its vectors.
    fn vectors(&mut self, rows: usize, space: &SpaceSource) -> Result<Descriptor> {
        let start = codec::align64(self.offset);
        let (file, tmp) = (self.file, self.tmp);
        let mut offset = start;
        let mut crc = 0u32;
        let mut flush = |chunk: &mut Vec<u8>| -> Result<()> {
            crc = crate::checksum::crc32c_append(crc, chunk);
            file.write_at(offset, chunk)
                .map_err(io_error("write", tmp))?;
            offset += chunk.len() as u64;
            chunk.clear();
            Ok(())
        };
        let mut chunk = Vec::with_capacity(1 << 20);
        let mut row = vec![0f32; space.stride];
        for i in 0..rows {
            (space.vectors)(i, &mut row[..space.dim])?;
            codec::put_f32s(&mut chunk, &row);
            if chunk.len() >= 1 << 20 {
                flush(&mut chunk)?;
            }
        }
        flush(&mut chunk)?;
        self.offset = offset;
        Ok((start, offset - start, crc))
    }
}

/// Ids, payload offsets and payload data come from one pass, as the offsets follow the data.
fn row_sections(src: &ImageSource) -> [Vec<u8>; 3] {
    let rows = src.rows.len();
    let mut ids = Vec::with_capacity(rows * ID_BYTES);
    let mut offsets = Vec::with_capacity((rows + 1) * 8);
    let mut data = Vec::new();
    for (id, payload) in &src.rows {
        codec::put_id(&mut ids, *id);
        codec::put_u64(&mut offsets, data.len() as u64);
        data.extend_from_slice(payload);
    }
    codec::put_u64(&mut offsets, data.len() as u64);
    [ids, offsets, data]
}

/// Empty without a graph, so the header has the same layout either way.
fn graph_sections(graph: Option<&Graph>) -> [Vec<u8>; 5] {
    let Some(g) = graph else {
        return Default::default();
    };
    [
        u32_bytes(g.links0()),
        g.levels().to_vec(),
        u32_bytes(g.upper_at()),
        u32_bytes(g.upper()),
        g.sketches()
            .iter()
            .flat_map(|s| s.0)
            .flat_map(u64::to_le_bytes)
            .collect(),
    ]
}

/// Built after the sections, because it holds each one's place and checksum.
fn header(src: &ImageSource, sections: &[Descriptor]) -> Vec<u8> {
    let (space, graph) = (&src.dense, src.dense.graph.as_ref());
    let mut h = Vec::with_capacity(HEADER_BYTES as usize);
    h.extend_from_slice(MAGIC);
    codec::put_u32(&mut h, VERSION);
    codec::put_u32(&mut h, space.dim as u32);
    h.push(distance_code(space.distance));
    h.push(u8::from(graph.is_some()));
    h.push(graph.map_or(0, Graph::max_level));
    h.extend_from_slice(&[0; 5]);
    codec::put_u64(&mut h, src.rows.len() as u64);
    codec::put_u64(&mut h, src.last_seq);
    put_graph_fields(&mut h, graph);
    put_descriptors(&mut h, sections);
    let crc = codec::crc(&h);
    codec::put_u32(&mut h, crc);
    h.resize(HEADER_BYTES as usize, 0);
    h
}

/// A named vector's figures in the directory: `dim u32 | distance u8 | has_graph u8 |
/// max_level u8 | 0 u8 | m u32 | ef_construction u32 | entry u32 | 0 u32`.
fn put_space_fields(out: &mut Vec<u8>, space: &SpaceSource) {
    let graph = space.graph.as_ref();
    codec::put_u32(out, space.dim as u32);
    out.push(distance_code(space.distance));
    out.push(u8::from(graph.is_some()));
    out.push(graph.map_or(0, Graph::max_level));
    out.push(0);
    put_graph_fields(out, graph);
}

/// `m u32 | ef_construction u32 | entry u32 | 0 u32` (zeros and no entry without a graph).
fn put_graph_fields(out: &mut Vec<u8>, graph: Option<&Graph>) {
    let params = graph.map(Graph::params);
    codec::put_u32(out, params.map_or(0, |p| p.m as u32));
    codec::put_u32(out, params.map_or(0, |p| p.ef_construction as u32));
    codec::put_u32(out, graph.map_or(NONE, Graph::entry));
    codec::put_u32(out, 0);
}

/// `at u64 | len u64 | crc u32 | 0 u32` per section.
fn put_descriptors(out: &mut Vec<u8>, sections: &[Descriptor]) {
    for (at, len, crc) in sections {
        codec::put_u64(out, *at);
        codec::put_u64(out, *len);
        codec::put_u32(out, *crc);
        codec::put_u32(out, 0);
    }
}

// Sections by index, in file order (version 1 has the first four, version 2 the first eight,
// version 3 the first nine, version 4 the first ten, version 5 the first eleven).
const VECTORS: usize = 0;
const IDS: usize = 1;
const PAYLOAD_OFFSETS: usize = 2;
const PAYLOAD_DATA: usize = 3;
const LINKS0: usize = 4;
const LEVELS: usize = 5;
const UPPER_INDEX: usize = 6;
const UPPER: usize = 7;
const SKETCHES: usize = 8;
const PAYLOAD_INDEXES: usize = 9;
const CODES: usize = 10;
const SPARSE: usize = 11;
const NAMED: usize = 12;
/// A named vector's presence bits, where the main header has its ids.
const PRESENCE: usize = IDS;

/// Damage in the named file, as [`Error::Corrupt`].
#[derive(Clone, Copy)]
struct Damage<'a>(&'a str);

impl Damage<'_> {
    fn at(self, offset: u64, detail: impl Into<String>) -> Error {
        Error::Corrupt {
            file: self.0.to_owned(),
            offset,
            detail: detail.into(),
        }
    }
}

/// One section's descriptor.
#[derive(Clone, Copy)]
struct Section {
    at: u64,
    len: u64,
    crc: u32,
}

/// A segment's header, checked (magic, version, checksum) but not yet against the database.
struct Header {
    dim: usize,
    distance: u8,
    /// The graph sections hold a graph (version 2 on).
    graph: bool,
    max_level: u8,
    rows: u64,
    last_seq: u64,
    m: usize,
    ef_construction: usize,
    entry: u32,
    sections: Vec<Section>,
    /// The sections' names, for errors: [`SECTIONS`], or [`NAMED_SECTIONS`] for a named
    /// vector's.
    names: &'static [&'static str],
}

/// Reads and checks the header of any version.
fn read_header(bytes: &[u8], damage: Damage) -> Result<Header> {
    if bytes.len() < 12 || &bytes[..8] != MAGIC {
        return Err(damage.at(0, "not a grape-vector-db segment (bad magic or too short)"));
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version > VERSION || version == 0 {
        return Err(codec::newer_or_damaged(
            bytes,
            damage.0,
            version,
            VERSION,
            &[
                (1, 136),
                (2, 248),
                (3, 272),
                (4, 296),
                (5, 320),
                (6, 344),
                (7, 368),
            ],
        ));
    }
    let (header_bytes, section_count) = match version {
        1 => (HEADER_BYTES_V1, 4),
        2 => (HEADER_BYTES_V2, 8),
        3 => (HEADER_BYTES_V3, 9),
        4 => (HEADER_BYTES_V3, 10),
        5 => (HEADER_BYTES, 11),
        6 => (HEADER_BYTES, 12),
        _ => (HEADER_BYTES, SECTIONS.len()),
    };
    if bytes.len() < header_bytes as usize {
        return Err(damage.at(0, "the header is incomplete"));
    }
    let mut r = Reader::new(&bytes[12..header_bytes as usize], damage.0, 12);
    let dim = r.u32()? as usize;
    let distance = r.u8()?;
    let has_graph = r.u8()?;
    let max_level = r.u8()?;
    r.bytes(5)?;
    let rows = r.u64()?;
    let last_seq = r.u64()?;
    let (m, ef_construction, entry) = if version >= 2 {
        let fields = (r.u32()?, r.u32()?, r.u32()?);
        r.u32()?;
        fields
    } else {
        (0, 0, NONE)
    };
    let mut sections = Vec::with_capacity(section_count);
    for _ in 0..section_count {
        let (at, len, crc) = (r.u64()?, r.u64()?, r.u32()?);
        r.u32()?;
        sections.push(Section { at, len, crc });
    }
    let header_end = 12 + r.position();
    if codec::crc(&bytes[..header_end]) != r.u32()? {
        return Err(damage.at(header_end as u64, "header checksum mismatch"));
    }
    Ok(Header {
        dim,
        distance,
        graph: version >= 2 && has_graph == 1,
        max_level,
        rows,
        last_seq,
        m: m as usize,
        ef_construction: ef_construction as usize,
        entry,
        sections,
        names: &SECTIONS,
    })
}

/// Each section's bytes, after checking that it lies in the file on a 64-byte boundary, has
/// the length `expected` says (where it says one) and its checksum.
fn section_views(
    bytes: &Bytes,
    h: &Header,
    expected: &[Option<usize>],
    damage: Damage,
    file: Option<&dyn StorageFile>,
) -> Result<Vec<Bytes>> {
    let mut views = Vec::with_capacity(h.sections.len());
    for i in 0..h.sections.len() {
        let range = section_range(h, i, bytes.len() as u64, expected, damage)?;
        // A database that keeps its vectors on disk is checked through reads, so that the
        // check leaves resident only the pages its searches then use, not the vectors.
        let crc = match file {
            Some(file) => crc_by_reads(file, damage.0, range.clone())?,
            None => codec::crc(&bytes[range.clone()]),
        };
        check_crc(h, i, crc, damage)?;
        views.push(bytes.slice(range));
    }
    Ok(views)
}

/// The sections of a segment that cannot be mapped, read one by one, all but the vectors,
/// which stay on disk (checked by reads; an empty view stands for them).
fn section_copies(
    file: &dyn StorageFile,
    file_len: u64,
    h: &Header,
    expected: &[Option<usize>],
    damage: Damage,
) -> Result<Vec<Bytes>> {
    let mut views = Vec::with_capacity(h.sections.len());
    for i in 0..h.sections.len() {
        let range = section_range(h, i, file_len, expected, damage)?;
        if i == VECTORS {
            check_crc(h, i, crc_by_reads(file, damage.0, range)?, damage)?;
            views.push(Bytes::from(Vec::new()));
            continue;
        }
        let copy = Bytes::read_aligned(range.len(), |buf| file.read_at(range.start as u64, buf))
            .map_err(io_error("read", damage.0))?;
        check_crc(h, i, codec::crc(&copy), damage)?;
        views.push(copy);
    }
    Ok(views)
}

/// Section `i`'s bytes in the file, checked to lie inside it, aligned, of the expected length.
fn section_range(
    h: &Header,
    i: usize,
    file_len: u64,
    expected: &[Option<usize>],
    damage: Damage,
) -> Result<std::ops::Range<usize>> {
    let (s, what) = (&h.sections[i], h.names[i]);
    let range = usize::try_from(s.at)
        .ok()
        .zip(usize::try_from(s.len).ok())
        .and_then(|(a, l)| Some(a..a.checked_add(l)?))
        .filter(|r| r.end as u64 <= file_len && r.start % 64 == 0)
        .ok_or_else(|| damage.at(s.at, format!("{what} section lies outside the file")))?;
    if expected[i].is_some_and(|e| e != range.len()) {
        return Err(damage.at(s.at, format!("{what} section has the wrong length")));
    }
    Ok(range)
}

fn check_crc(h: &Header, i: usize, crc: u32, damage: Damage) -> Result<()> {
    match crc == h.sections[i].crc {
        true => Ok(()),
        false => Err(damage.at(
            h.sections[i].at,
            format!("{} section checksum mismatch", h.names[i]),
        )),
    }
}

/// The CRC-32C of `range` of `file`, read a MiB at a time.
fn crc_by_reads(file: &dyn StorageFile, name: &str, range: std::ops::Range<usize>) -> Result<u32> {
    let mut buf = vec![0u8; range.len().min(1 << 20)];
    let mut crc = 0;
    let mut at = range.start;
    while at < range.end {
        let part = &mut buf[..(range.end - at).min(1 << 20)];
        file.read_at(at as u64, part)
            .map_err(io_error("read", name))?;
        crc = crate::checksum::crc32c_append(crc, part);
        at += part.len();
    }
    Ok(crc)
}

/// A segment's vectors read from its file, row by row: what a database that keeps its vectors
/// on disk re-scores with.
struct FileRows {
    file: Box<dyn StorageFile>,
    name: String,
    /// Where the vectors section starts.
    at: u64,
    row_bytes: u64,
}

impl RowReader for FileRows {
    fn read_row(&self, row: usize, out: &mut [f32]) -> Result<()> {
        // The section holds little-endian floats, as every target of this crate is.
        self.file
            .read_at(
                self.at + row as u64 * self.row_bytes,
                bytemuck::cast_slice_mut(out),
            )
            .map_err(io_error("read", &self.name))
    }
}

/// The graph of the graph sections, after checking that it is sound: the upper blocks tile
/// their section node by node, the entry point is on the top level, and every link names a row
/// that has that layer. Checksums only say the bytes are as written, not that the writer was
/// sound, and a bad link would make a search index out of bounds.
fn read_graph(views: &[Bytes], h: &Header, rows: usize, damage: Damage) -> Result<GraphParts> {
    let levels = views[LEVELS].to_vec();
    let upper_at = u32s(&views[UPPER_INDEX]);
    let upper = u32s(&views[UPPER]);
    check_upper_index(h, &levels, &upper_at, upper.len(), damage)?;
    if rows > 0 && levels[h.entry as usize] != h.max_level {
        return Err(damage.at(48, "the graph's entry point is not on its top level"));
    }
    check_links0(&views[LINKS0], h, rows, damage)?;
    check_upper_links(h, &levels, &upper_at, &upper, damage)?;
    Ok(GraphParts {
        params: GraphParams {
            m: h.m,
            ef_construction: h.ef_construction,
            // The engine decides, from its distance.
            sketch_dim: None,
        },
        entry: h.entry,
        max_level: h.max_level,
        links0: views[LINKS0].clone(),
        levels,
        upper_at,
        upper,
        sketches: views.get(SKETCHES).filter(|v| !v.is_empty()).cloned(),
    })
}

/// Runs before any upper block is read through the index, so the checks after it stay in bounds.
fn check_upper_index(
    h: &Header,
    levels: &[u8],
    upper_at: &[u32],
    upper_len: usize,
    damage: Damage,
) -> Result<()> {
    let mut next = 0usize;
    for (i, (&level, &start)) in levels.iter().zip(upper_at).enumerate() {
        let ok = match level {
            0 => start == NONE,
            l if l <= h.max_level => start as usize == next,
            _ => false,
        };
        if !ok {
            return Err(damage.at(
                h.sections[UPPER_INDEX].at + 4 * i as u64,
                "graph index is inconsistent",
            ));
        }
        next += level as usize * (1 + h.m);
    }
    if next != upper_len {
        return Err(damage.at(
            h.sections[UPPER].at,
            "graph upper layers have the wrong length",
        ));
    }
    Ok(())
}

/// Checks layer 0 where it lies: searches use it in place, and a copy would cost its size again.
fn check_links0(view: &Bytes, h: &Header, rows: usize, damage: Damage) -> Result<()> {
    let m = h.m;
    // Read as `u32`s where it is aligned (always, from a map or an aligned read), so checking a
    // large graph costs a pass over memory.
    let stride0 = 1 + 2 * m;
    let links0: std::borrow::Cow<[u32]> = match bytemuck::try_cast_slice(view) {
        Ok(words) => std::borrow::Cow::Borrowed(words),
        Err(_) => std::borrow::Cow::Owned(u32s(view)),
    };
    for (i, block) in links0.chunks_exact(stride0).enumerate() {
        let count = block[0] as usize;
        if count > 2 * m || block[1..=count].iter().any(|&n| n as usize >= rows) {
            return Err(damage.at(
                h.sections[LINKS0].at + (i * stride0 * 4) as u64,
                format!("graph layer 0 of row {i} links to no row"),
            ));
        }
    }
    Ok(())
}

/// A link to a node without that layer would send a search to a block the node lacks.
fn check_upper_links(
    h: &Header,
    levels: &[u8],
    upper_at: &[u32],
    upper: &[u32],
    damage: Damage,
) -> Result<()> {
    let m = h.m;
    let links_ok = |block: &[u32], layer: u8| {
        let count = block[0] as usize;
        count <= m
            && block[1..=count]
                .iter()
                .all(|&n| levels.get(n as usize).is_some_and(|&l| l >= layer))
    };
    for (i, (&level, &start)) in levels.iter().zip(upper_at).enumerate() {
        for layer in 1..=level {
            let block = start as usize + (layer as usize - 1) * (1 + m);
            if !links_ok(&upper[block..block + 1 + m], layer) {
                return Err(damage.at(
                    h.sections[UPPER].at + 4 * block as u64,
                    format!("graph layer {layer} of row {i} links to no row of that layer"),
                ));
            }
        }
    }
    Ok(())
}

/// Maps a segment and checks its header, every section's bounds, length and checksum, the
/// graph's soundness and the payload offsets, before anything is used. With `vectors_on_disk`
/// the vectors are checked and later read through the file rather than the mapping.
pub(crate) fn read(
    storage: &dyn Storage,
    name: &str,
    dim: usize,
    stride: usize,
    distance: Distance,
    vectors_on_disk: bool,
) -> Result<Image> {
    let damage = Damage(name);
    let mut src = Source {
        storage,
        name,
        vectors_on_disk,
        // Vectors to stay on disk where the file cannot be mapped: read the other sections
        // only.
        unmapped: vectors_on_disk && !storage.maps_files(),
        bytes: Bytes::from(Vec::new()),
        file_len: 0,
    };
    let file = src.open()?;
    (src.bytes, src.file_len) = match file.as_deref().filter(|_| src.unmapped) {
        Some(file) => {
            let len = file.len().map_err(io_error("read", name))?;
            let head =
                Bytes::read_aligned(len.min(HEADER_BYTES) as usize, |buf| file.read_at(0, buf))
                    .map_err(io_error("read", name))?;
            (head, len)
        }
        None => {
            let bytes = storage.read_all(name).map_err(io_error("read", name))?;
            let len = bytes.len() as u64;
            (bytes, len)
        }
    };
    let h = read_header(&src.bytes, damage)?;
    let rows = check_against_manifest(&h, dim, distance, damage)?;
    let expected = expected_lengths(&h, rows, stride);
    let views = src.sections(&h, &expected, damage, file.as_deref())?;
    check_sketches(&views, &h, rows, damage)?;
    let graph = if h.graph {
        Some(read_graph(&views, &h, rows, damage)?)
    } else {
        None
    };
    // The ids (decoded into the engine's id map) and the payload offsets (checked here, then
    // read only for the payloads asked for) are read from the file too when the vectors stay
    // on disk: read through the mapping, their pages would stay resident (2.4 MiB for 100K).
    let section = |i: usize| -> Result<std::borrow::Cow<'_, [u8]>> {
        let Some(file) = file.as_deref().filter(|_| !src.unmapped) else {
            return Ok(std::borrow::Cow::Borrowed(&views[i]));
        };
        let mut copy = vec![0u8; views[i].len()];
        file.read_at(h.sections[i].at, &mut copy)
            .map_err(io_error("read", name))?;
        Ok(std::borrow::Cow::Owned(copy))
    };
    let id_bytes = section(IDS)?;
    let mut ids_reader = Reader::new(&id_bytes, name, h.sections[IDS].at);
    let ids = (0..rows)
        .map(|_| ids_reader.id())
        .collect::<Result<Vec<_>>>()?;
    let offsets = section(PAYLOAD_OFFSETS)?;
    check_payload_offsets(&offsets, views[PAYLOAD_DATA].len(), &h, rows, damage)?;
    let payload_indexes = match views.get(PAYLOAD_INDEXES) {
        Some(view) => StoredIndexes::parse(view, rows).map_err(|(offset, detail)| {
            damage.at(h.sections[PAYLOAD_INDEXES].at + offset as u64, detail)
        })?,
        None => StoredIndexes::default(),
    };
    let codes = read_codes(&views, &h, rows, distance, damage)?;
    let sparse = match views.get(SPARSE) {
        Some(view) => StoredSparse::parse(view, rows)
            .map_err(|(offset, detail)| damage.at(h.sections[SPARSE].at + offset as u64, detail))?,
        None => Vec::new(),
    };
    let named = match views.get(NAMED) {
        Some(view) => src.named(view, h.sections[NAMED].at, rows)?,
        None => Vec::new(),
    };
    Ok(Image {
        rows,
        last_seq: h.last_seq,
        dense: SpaceImage {
            vectors: src.space_vectors(file, h.sections[VECTORS].at, stride, &views[VECTORS]),
            graph,
            codes,
        },
        named,
        ids,
        payload_offsets: views[PAYLOAD_OFFSETS].clone(),
        payload_data: views[PAYLOAD_DATA].clone(),
        payload_indexes,
        sparse,
        file_bytes: src.file_len,
    })
}

/// The segment file being read, and how.
struct Source<'a> {
    storage: &'a dyn Storage,
    name: &'a str,
    vectors_on_disk: bool,
    /// The vectors stay on disk and the file cannot be mapped: sections are read one by one.
    unmapped: bool,
    /// The whole file (mapped or read), or its header alone when `unmapped`.
    bytes: Bytes,
    file_len: u64,
}

impl Source<'_> {
    /// The file, opened again, to read vectors kept on disk through (a reader each space).
    fn open(&self) -> Result<Option<Box<dyn StorageFile>>> {
        match self.vectors_on_disk {
            true => Ok(Some(
                self.storage
                    .open(self.name, OpenMode::Existing)
                    .map_err(io_error("open", self.name))?,
            )),
            false => Ok(None),
        }
    }

    /// The sections `h` describes, checked: views of the mapping, or copies read one by one.
    fn sections(
        &self,
        h: &Header,
        expected: &[Option<usize>],
        damage: Damage,
        file: Option<&dyn StorageFile>,
    ) -> Result<Vec<Bytes>> {
        match file.filter(|_| self.unmapped) {
            Some(file) => section_copies(file, self.file_len, h, expected, damage),
            None => section_views(&self.bytes, h, expected, damage, file),
        }
    }

    /// How a space's rows (the section at `at`, seen as `view`) are reached: in place, with
    /// a reader of the file when they stay on disk, or through the reader alone.
    fn space_vectors(
        &self,
        file: Option<Box<dyn StorageFile>>,
        at: u64,
        stride: usize,
        view: &Bytes,
    ) -> ImageVectors {
        let reader = file.map(|file| -> Box<dyn RowReader> {
            // Read ahead, the open's check above was quicker; a row at a time, read-ahead
            // only evicts pages (measured within a memory limit: +49% queries/s without it).
            file.advise_random_reads();
            Box::new(FileRows {
                file,
                name: self.name.to_owned(),
                at,
                row_bytes: (stride * 4) as u64,
            })
        });
        match (reader, self.unmapped) {
            (Some(reader), true) => ImageVectors::OnDisk(reader),
            (reader, _) => ImageVectors::InPlace(view.clone(), reader),
        }
    }

    /// The named vectors the directory section (at `at`) lists: each one's figures, then its
    /// sections, checked as the main ones are.
    fn named(&self, view: &[u8], at: u64, rows: usize) -> Result<Vec<NamedImage>> {
        let mut r = Reader::new(view, self.name, at);
        // The smallest entry: a name of one byte, the figures, the descriptors.
        let count = r.count(4 + 1 + 24 + NAMED_SLOTS.len() * 24)?;
        let mut named: Vec<NamedImage> = Vec::with_capacity(count);
        for _ in 0..count {
            let len = r.count(1)?;
            let name = std::str::from_utf8(r.bytes(len)?)
                .map_err(|_| r.corrupt("a named vector's name is not UTF-8"))?
                .to_owned();
            if name.is_empty() || named.iter().any(|n| n.name == name) {
                return Err(r.corrupt(format!("named vector {name:?} is empty or repeated")));
            }
            let (dim, distance) = (r.u32()? as usize, r.u8()?);
            let (has_graph, max_level) = (r.u8()?, r.u8()?);
            r.u8()?;
            let (m, ef_construction, entry) = (r.u32()?, r.u32()?, r.u32()?);
            r.u32()?;
            let mut sections = vec![
                Section {
                    at: 0,
                    len: 0,
                    crc: 0
                };
                NAMED_SECTIONS.len()
            ];
            for slot in NAMED_SLOTS {
                sections[slot] = Section {
                    at: r.u64()?,
                    len: r.u64()?,
                    crc: r.u32()?,
                };
                r.u32()?;
            }
            let label = format!("{}, vector {name:?}", self.name);
            let damage = Damage(&label);
            let h = Header {
                dim,
                distance,
                graph: has_graph == 1,
                max_level,
                rows: rows as u64,
                last_seq: 0,
                m: m as usize,
                ef_construction: ef_construction as usize,
                entry,
                sections,
                names: &NAMED_SECTIONS,
            };
            let distance = distance_from_code(h.distance)
                .filter(|_| (1..=crate::MAX_DIMENSION).contains(&dim))
                .ok_or_else(|| damage.at(at, "invalid dimension or distance"))?;
            check_graph_fields(&h, rows, damage)?;
            let stride = crate::engine::stride_for(dim);
            let mut expected = expected_lengths(&h, rows, stride);
            expected[PRESENCE] = Some(rows.div_ceil(64) * 8);
            for unused in [
                PAYLOAD_OFFSETS,
                PAYLOAD_DATA,
                PAYLOAD_INDEXES,
                SPARSE,
                NAMED,
            ] {
                expected[unused] = Some(0);
            }
            let file = self.open()?;
            let views = self.sections(&h, &expected, damage, file.as_deref())?;
            check_sketches(&views, &h, rows, damage)?;
            let graph = match h.graph {
                true => Some(read_graph(&views, &h, rows, damage)?),
                false => None,
            };
            let present = views[PRESENCE]
                .chunks_exact(8)
                .map(|w| u64::from_le_bytes(w.try_into().expect("8 bytes")))
                .collect();
            let codes = read_codes(&views, &h, rows, distance, damage)?;
            named.push(NamedImage {
                name,
                dim,
                distance,
                present,
                space: SpaceImage {
                    vectors: self.space_vectors(file, h.sections[VECTORS].at, stride, &views[0]),
                    graph,
                    codes,
                },
            });
        }
        if !r.is_empty() {
            return Err(r.corrupt("the named vectors section has trailing bytes"));
        }
        Ok(named)
    }
}

/// The quantized codes section (version 5 on; empty when the database keeps none), checked
/// against the header: its kind, a stride that fits the dimension, a usable coding (a finite
/// range for SQ8, a finite mean for binary), its length and finite side values.
fn read_codes(
    views: &[Bytes],
    h: &Header,
    rows: usize,
    distance: Distance,
    damage: Damage,
) -> Result<Option<StoredCodes>> {
    let Some(view) = views.get(CODES).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let bad = |detail: &str| damage.at(h.sections[CODES].at, format!("quantized codes: {detail}"));
    if view.len() < SECTION_PREAMBLE {
        return Err(bad("the section is too short"));
    }
    let mut r = Reader::new(&view[..SECTION_PREAMBLE], damage.0, h.sections[CODES].at);
    let (kind, stride) = (r.u32()?, r.u32()? as usize);
    let (low, step) = (f32::from_bits(r.u32()?), f32::from_bits(r.u32()?));
    let trained_on = usize::try_from(r.u64()?).map_err(|_| bad("training size too large"))?;
    if kind != SQ8_KIND && kind != BINARY_KIND {
        return Err(bad("unknown kind"));
    }
    if distance == Distance::Manhattan {
        return Err(bad("Manhattan databases keep no codes"));
    }
    if stride != quantized::stride(kind, h.dim) {
        return Err(bad("invalid parameters"));
    }
    let finite = |b: &[u8]| {
        b.chunks_exact(4)
            .all(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")).is_finite())
    };
    let floats = |at: usize, n: usize, what: &str| -> Result<Vec<f32>> {
        let bytes = view
            .get(at..at + quantized::float_bytes(n))
            .filter(|m| finite(m))
            .ok_or_else(|| bad(what))?;
        Ok(bytes[..n * 4]
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect())
    };
    let (coder, floats_len) = match kind {
        BINARY_KIND => {
            // The centres' count is where SQ8 keeps its range's low end.
            let k = low.to_bits() as usize;
            if k == 0 {
                // Codes around one mean, written before the centres (never released): the
                // graph is coded afresh at open.
                return Ok(None);
            }
            let centres = k.checked_mul(h.dim).ok_or_else(|| bad("invalid centres"))?;
            let mean = floats(SECTION_PREAMBLE, h.dim, "invalid mean")?;
            let centres_at = SECTION_PREAMBLE + quantized::float_bytes(h.dim);
            let centres = floats(centres_at, centres, "invalid centres")?;
            let len = quantized::float_bytes(h.dim) + quantized::float_bytes(centres.len());
            (StoredCoder::Binary { mean, centres }, len)
        }
        _ if low.is_finite() && step.is_finite() && step > 0.0 => {
            (StoredCoder::Sq8 { low, step }, 0)
        }
        _ => return Err(bad("invalid parameters")),
    };
    let codes = rows.checked_mul(stride);
    let side = rows.checked_mul(quantized::side_len(kind, distance) * 4);
    let at = SECTION_PREAMBLE + floats_len;
    let expected = codes
        .zip(side)
        .and_then(|(c, n)| at.checked_add(c)?.checked_add(n));
    let codes = codes
        .filter(|_| expected == Some(view.len()))
        .ok_or_else(|| bad("wrong length"))?;
    let side = view.slice(at + codes..view.len());
    if !finite(&side) {
        return Err(bad("a value beside the codes is not finite"));
    }
    if let StoredCoder::Binary { centres, .. } = &coder {
        // Each binary row's last float numbers its centre: a search indexes by it.
        let k = (centres.len() / h.dim) as f32;
        let row = quantized::side_len(kind, distance) * 4;
        let numbered = side.chunks_exact(row).all(|r| {
            let c = f32::from_le_bytes(r[row - 4..].try_into().expect("4 bytes"));
            c >= 0.0 && c < k && c.fract() == 0.0
        });
        if !numbered {
            return Err(bad("a row's centre does not exist"));
        }
    }
    Ok(Some(StoredCodes {
        rows,
        stride,
        coder,
        trained_on,
        codes: view.slice(at..at + codes),
        side,
    }))
}

/// Checks the header's figures before section lengths are computed from them; returns the rows.
fn check_against_manifest(
    h: &Header,
    dim: usize,
    distance: Distance,
    damage: Damage,
) -> Result<usize> {
    if h.dim != dim || distance_from_code(h.distance) != Some(distance) {
        return Err(damage.at(12, "dimension or distance differs from the manifest's"));
    }
    let rows = usize::try_from(h.rows).map_err(|_| damage.at(24, "row count too large"))?;
    check_graph_fields(h, rows, damage)?;
    Ok(rows)
}

/// The graph's figures make sense for `rows` rows.
fn check_graph_fields(h: &Header, rows: usize, damage: Damage) -> Result<()> {
    let entry_ok = if rows == 0 {
        h.entry == NONE
    } else {
        (h.entry as usize) < rows
    };
    if h.graph && (h.m < 2 || !entry_ok || h.max_level > 16) {
        return Err(damage.at(40, "invalid graph parameters"));
    }
    Ok(())
}

/// The lengths the header's figures imply, so a section of the wrong size is caught before use.
fn expected_lengths(h: &Header, rows: usize, stride: usize) -> [Option<usize>; 13] {
    let if_graph = |n: Option<usize>| if h.graph { n } else { Some(0) };
    [
        rows.checked_mul(stride * 4),
        rows.checked_mul(ID_BYTES),
        rows.checked_add(1).and_then(|n| n.checked_mul(8)),
        None,
        if_graph(rows.checked_mul((1 + 2 * h.m) * 4)),
        if_graph(Some(rows)),
        if_graph(rows.checked_mul(4)),
        None,
        // Checked by `check_sketches`: none, or one per row.
        None,
        // Checked as they are parsed.
        None,
        None,
        None,
        None,
    ]
}

/// Sketches are optional (none in version 2), so their length is checked on its own.
fn check_sketches(views: &[Bytes], h: &Header, rows: usize, damage: Damage) -> Result<()> {
    let sketch_bytes = views.get(SKETCHES).map_or(0, |v| v.len());
    if sketch_bytes != 0 && (!h.graph || Some(sketch_bytes) != rows.checked_mul(64)) {
        return Err(damage.at(
            h.sections[SKETCHES].at,
            "graph sketches section has the wrong length",
        ));
    }
    Ok(())
}

/// Payloads are sliced by these offsets, so they must rise and end at the data's length.
fn check_payload_offsets(
    offsets: &[u8],
    data_len: usize,
    h: &Header,
    rows: usize,
    damage: Damage,
) -> Result<()> {
    let offset_at = |i: usize| u64::from_le_bytes(offsets[i * 8..i * 8 + 8].try_into().expect("8"));
    let data_len = data_len as u64;
    if (0..rows).any(|i| offset_at(i) > offset_at(i + 1)) || offset_at(rows) != data_len {
        return Err(damage.at(
            h.sections[PAYLOAD_OFFSETS].at,
            "payload offsets are not increasing",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EngineConfig;
    use crate::engine::payload_index::PayloadIndexes;
    use crate::engine::{stride_for, Engine};
    use crate::storage::MemoryStorage;
    use crate::{HnswConfig, Point, PointId, Quantization, SearchRequest};

    fn config() -> EngineConfig {
        EngineConfig {
            // Graphs keep sketches from 256 dimensions on.
            dimension: 256,
            distance: Distance::Cosine,
            max_points: None,
            max_search_limit: 100,
            hnsw: Some(HnswConfig {
                full_scan_threshold: 0,
                ..HnswConfig::default()
            }),
            quantization: Quantization::None,
            vectors_on_disk: false,
            payload_indexes: Vec::new(),
            sparse_vectors: Default::default(),
            named_vectors: Default::default(),
        }
    }

    fn answers(engine: &Engine) -> Vec<(Vec<(PointId, u32)>, usize)> {
        let requests: Vec<SearchRequest> = (0..20)
            .map(|q| SearchRequest::new((0..256).map(|d| ((q * 7 + d) % 11) as f32).collect(), 10))
            .collect();
        engine
            .search_batch(&requests)
            .unwrap()
            .into_iter()
            .map(|r| {
                let hits = r.result.iter().map(|p| (p.id, p.score.to_bits())).collect();
                (hits, r.scored)
            })
            .collect()
    }

    /// A version 2 header for the same sections, minus the sketches (what older releases wrote).
    fn as_version_2(v3: &[u8]) -> Vec<u8> {
        let mut h = v3[..56].to_vec();
        h[8..12].copy_from_slice(&2u32.to_le_bytes());
        h.extend_from_slice(&v3[56..56 + 8 * 24]);
        let crc = codec::crc(&h);
        codec::put_u32(&mut h, crc);
        h.resize(HEADER_BYTES_V2 as usize, 0);
        let mut file = v3.to_vec();
        file[..HEADER_BYTES as usize].fill(0);
        file[..h.len()].copy_from_slice(&h);
        file
    }

    /// A five-row segment with every section filled: a hand-made graph of three levels (so no
    /// float kernel decides its links), sketches, padded rows, both kinds of id and payloads.
    fn small_source<'a>(vectors: &'a [[f32; 3]]) -> ImageSource<'a> {
        let m = 2;
        let mut links0 = vec![0u32; 5 * (1 + 2 * m)];
        for (slot, block) in links0.chunks_exact_mut(1 + 2 * m).enumerate() {
            let others: Vec<u32> = (0..5u32).filter(|&n| n as usize != slot).take(3).collect();
            block[0] = others.len() as u32;
            block[1..=others.len()].copy_from_slice(&others);
        }
        // Slot 1 on layer 1, slot 3 (the entry) on layers 1 and 2.
        let upper = vec![1, 3, 0, 1, 1, 0, 0, 0, 0];
        let sketches: Vec<u8> = (0..5 * 64).map(|i| (i * 37 % 251) as u8).collect();
        let graph = Graph::from_parts(GraphParts {
            params: GraphParams {
                m,
                ef_construction: 40,
                sketch_dim: Some(3),
            },
            entry: 3,
            max_level: 2,
            links0: Bytes::from(u32_bytes(&links0)),
            levels: vec![0, 1, 0, 2, 0],
            upper_at: vec![NONE, 0, NONE, 3, NONE],
            upper,
            sketches: Some(Bytes::from(sketches)),
        });
        let rows = (0..vectors.len())
            .map(|i| {
                let id = if i == 4 {
                    PointId::Uuid(0x0123_4567_89ab_cdef_fedc_ba98_7654_3210)
                } else {
                    PointId::Num(10 + i as u64)
                };
                let payload = format!("{{\"n\":{i}}}").into_bytes();
                (id, std::borrow::Cow::Owned(payload))
            })
            .collect();
        let payloads: Vec<crate::Payload> = (0..5)
            .map(|i| serde_json::from_str(&format!("{{\"n\":{i}}}")).unwrap())
            .collect();
        let payload_indexes = PayloadIndexes::new(&["n".parse().unwrap()])
            .export(&[0, 1, 2, 3, 4], || {
                Box::new(payloads.iter().enumerate().map(|(s, p)| (s as u32, p)))
            });
        ImageSource {
            last_seq: 99,
            rows,
            dense: SpaceSource {
                dim: 3,
                stride: 4,
                distance: Distance::Cosine,
                vectors: Box::new(|row, out: &mut [f32]| {
                    out.copy_from_slice(&vectors[row]);
                    Ok(())
                }),
                graph: Some(graph),
                codes: Vec::new(),
            },
            named: Vec::new(),
            payload_indexes,
            sparse: Vec::new(),
        }
    }

    /// Writes `engine` to a segment and opens an engine over it with `config`.
    fn round_trip(engine: &Engine, config: EngineConfig) -> Engine {
        let storage = MemoryStorage::new();
        write(&storage, "s.seg", &engine.export(1).unwrap()).unwrap();
        let image = read(
            &storage,
            "s.seg",
            config.dimension,
            stride_for(config.dimension),
            config.distance,
            config.vectors_on_disk,
        )
        .unwrap();
        Engine::from_image(config, image).unwrap()
    }

    #[test]
    fn payload_indexes_are_stored_and_used_in_place() {
        let indexed = EngineConfig {
            dimension: 8,
            distance: Distance::Euclid,
            payload_indexes: ["g", "t", "n"].map(|k| k.parse().unwrap()).to_vec(),
            ..config()
        };
        let plain = EngineConfig {
            payload_indexes: Vec::new(),
            ..indexed.clone()
        };
        let point = |i: u64| {
            let v = (0..8).map(|d| ((i * 31 + d * 7) % 23) as f32).collect();
            let text = if i.is_multiple_of(3) {
                "Quick brown"
            } else {
                "lazy dog"
            };
            // Some floats: integer ranges on `n` cannot be answered from its index.
            let n = match i.is_multiple_of(11) {
                true => serde_json::json!(i as f64 + 0.5),
                false => serde_json::json!(i % 50),
            };
            let payload = serde_json::json!({"g": format!("g{}", i % 7), "t": text, "n": n});
            Point::new(i, v).with_payload(payload).unwrap()
        };
        let mut engines = [Engine::new(indexed.clone()), Engine::new(plain.clone())];
        let filters: Vec<crate::Filter> = [
            serde_json::json!({"must": [{"key": "g", "match": {"value": "g3"}}]}),
            serde_json::json!({"must": [{"key": "g", "match": {"any": ["g1", "g5"]}}, {"key": "t", "match": {"text": "quick"}}]}),
            serde_json::json!({"must": [{"key": "n", "range": {"gte": 10, "lt": 20}}]}),
            serde_json::json!({"should": [{"key": "g", "match": {"value": "g0"}}, {"key": "t", "match": {"text": "dog"}}]}),
        ]
        .into_iter()
        .map(|f| serde_json::from_value(f).unwrap())
        .collect();
        // Answers (ids and score bits) of every filter, and the filtered counts.
        let answers = |e: &Engine| {
            filters
                .iter()
                .map(|f| {
                    let mut r = SearchRequest::new(vec![3.0; 8], 20).with_filter(f.clone());
                    r.params.exact = true;
                    let hits: Vec<(PointId, u32)> = e.search_batch(&[r]).unwrap()[0]
                        .result
                        .iter()
                        .map(|p| (p.id, p.score.to_bits()))
                        .collect();
                    (hits, e.count(Some(f)))
                })
                .collect::<Vec<_>>()
        };
        for e in &mut engines {
            e.upsert((0..3000).map(point).collect()).unwrap();
            e.delete(&(0..3000).step_by(13).map(PointId::Num).collect::<Vec<_>>());
        }
        let expected = answers(&engines[1]);
        assert_eq!(answers(&engines[0]), expected);

        let mut reopened = round_trip(&engines[0], indexed.clone());
        assert!(
            !reopened.background_work(),
            "every index came from the segment"
        );
        // An indexed condition is answered without parsing a payload.
        let unparsed = round_trip(&engines[1], plain.clone()).memory().payloads;
        assert_eq!(reopened.count(Some(&filters[0])), expected[0].1);
        assert_eq!(
            reopened.memory().payloads,
            unparsed,
            "no payload was parsed"
        );
        assert_eq!(answers(&reopened), expected);

        // Writes after open go beside the stored part; a payload changed in place makes the
        // next checkpoint build the indexes afresh.
        let more: Vec<Point> = (2500..4000).map(point).collect();
        let changed: crate::Payload =
            serde_json::from_value(serde_json::json!({"g": "g3", "n": 15})).unwrap();
        let touched = [PointId::Num(1), PointId::Num(2999)];
        for e in [&mut reopened, &mut engines[1]] {
            e.upsert(more.clone()).unwrap();
            e.apply_set_payload(&touched, &changed);
        }
        let expected = answers(&engines[1]);
        assert_eq!(answers(&reopened), expected);
        let again = round_trip(&reopened, indexed.clone());
        assert!(!again.background_work());
        assert_eq!(answers(&again), expected);

        // A key configured since the checkpoint is built after open; a dropped one is ignored.
        let other_keys = EngineConfig {
            payload_indexes: ["t", "extra"].map(|k| k.parse().unwrap()).to_vec(),
            ..indexed
        };
        let rekeyed = round_trip(&again, other_keys);
        assert!(rekeyed.background_work());
        rekeyed.build_payload_indexes();
        assert!(!rekeyed.background_work());
        assert_eq!(answers(&rekeyed), expected);
    }

    #[test]
    fn vectors_kept_on_disk_are_checked_by_reads_and_read_row_by_row() {
        let vectors: Vec<[f32; 3]> = (0..5).map(|i| [i as f32, 2.0, -1.0]).collect();
        let storage = MemoryStorage::new();
        write(&storage, "v.seg", &small_source(&vectors)).unwrap();
        let image = read(&storage, "v.seg", 3, 4, Distance::Cosine, true).unwrap();
        // A storage that cannot map files: the other sections are read, the vectors are not.
        assert!(!storage.maps_files());
        let ImageVectors::OnDisk(reader) = image.dense.vectors else {
            panic!("the vectors were read into memory");
        };
        assert_eq!(image.ids.len(), 5);
        let mut row = [0f32; 3];
        reader.read_row(4, &mut row).unwrap();
        assert_eq!(row, vectors[4]);
        // Two rows at once, padding included.
        let mut rows = [0f32; 8];
        reader.read_row(1, &mut rows).unwrap();
        assert_eq!(rows, [1.0, 2.0, -1.0, 0.0, 2.0, 2.0, -1.0, 0.0]);
        let good = storage.read_all("v.seg").unwrap().to_vec();
        let ids_at = read_header(&good, Damage("v.seg")).unwrap().sections[IDS].at as usize;
        // A flipped bit in the vectors is found by the reads, as by the mapping, and one in
        // another section by the copy read of it.
        for (at, section) in [
            (HEADER_BYTES as usize + 4 * 4 + 5, "vectors"),
            (ids_at, "ids"),
        ] {
            let mut bad = good.clone();
            bad[at] ^= 1;
            storage.remove("v.seg").unwrap();
            storage
                .open("v.seg", OpenMode::CreateIfMissing)
                .unwrap()
                .write_at(0, &bad)
                .unwrap();
            for on_disk in [false, true] {
                let refused = read(&storage, "v.seg", 3, 4, Distance::Cosine, on_disk);
                assert!(
                    matches!(&refused, Err(Error::Corrupt { detail, .. }) if detail.contains(&format!("{section} section checksum"))),
                    "{:?}",
                    refused.err()
                );
            }
        }
    }

    #[test]
    fn named_vectors_are_stored_and_used_in_place() {
        let img = crate::DenseVectorConfig {
            size: 8,
            distance: Distance::Dot,
        };
        for on_disk in [false, true] {
            let config = EngineConfig {
                named_vectors: [("img".to_owned(), img)].into(),
                quantization: Quantization::Sq8,
                vectors_on_disk: on_disk,
                ..config()
            };
            let mut engine = Engine::new(config.clone());
            let v = |i: u64| (0..256).map(|d| ((i * 7 + d) % 11) as f32 + 0.5).collect();
            let w = |i: u64| (0..8).map(|d| ((i * 5 + d) % 13) as f32 - 6.0).collect();
            let points = (0..400).map(|i| match i % 4 {
                0 => Point::new(i, v(i)),
                _ => Point::new(i, v(i)).with_named("img", w(i)),
            });
            engine.upsert(points.collect()).unwrap();
            let reopened = round_trip(&engine, config.clone());
            let queries: Vec<SearchRequest> = (0..10)
                .map(|i| {
                    SearchRequest::new(w(i * 31), 7)
                        .using("img")
                        .with_vector(true)
                })
                .collect();
            let before = engine.search_batch(&queries).unwrap();
            let after = reopened.search_batch(&queries).unwrap();
            for (b, a) in before.iter().zip(&after) {
                assert_eq!(b.result, a.result, "on disk: {on_disk}");
                assert!(!a.exact, "the stored graph answers");
                assert!(a.result.iter().all(|p| p.named_vectors.is_some()));
            }
            let records = reopened.get(&[PointId::Num(4), PointId::Num(5)]).unwrap();
            assert_eq!(records[0].named_vectors, None, "point 4 has no img vector");
            assert_eq!(records[1].named_vectors.as_ref().unwrap()["img"], w(5));
            // A configuration without the named vector refuses the segment rather than lose it.
            let without = EngineConfig {
                named_vectors: Default::default(),
                ..config.clone()
            };
            let err = match Engine::from_image(without, read_back(&engine, &config)) {
                Err(e) => e,
                Ok(_) => panic!("opened without its named vector"),
            };
            assert!(err.to_string().contains("\"img\""), "{err}");
            // One that declares it differently too.
            let other = EngineConfig {
                named_vectors: [(
                    "img".to_owned(),
                    crate::DenseVectorConfig { size: 9, ..img },
                )]
                .into(),
                ..config.clone()
            };
            assert!(Engine::from_image(other, read_back(&engine, &config)).is_err());
        }
    }

    /// The image of `engine` written to a segment and read back as `config` reads it.
    fn read_back(engine: &Engine, config: &EngineConfig) -> Image {
        let storage = MemoryStorage::new();
        write(&storage, "s.seg", &engine.export(1).unwrap()).unwrap();
        let stride = stride_for(config.dimension);
        read(
            &storage,
            "s.seg",
            config.dimension,
            stride,
            config.distance,
            false,
        )
        .unwrap()
    }

    #[test]
    fn written_bytes_are_unchanged() {
        let vectors: Vec<[f32; 3]> = (0..5)
            .map(|i| [i as f32, 1.0 - i as f32 * 0.25, -0.5])
            .collect();
        let storage = MemoryStorage::new();
        let len = write(&storage, "small.seg", &small_source(&vectors)).unwrap();
        let bytes = storage.read_all("small.seg").unwrap();
        assert_eq!(len, bytes.len() as u64);
        // Captured from the writer's output: the format (FORMAT.md) is these bytes. (Version 6
        // changed only the version, the twelfth descriptor and the header checksum; version 7
        // the version, the thirteenth descriptor, the header checksum and the empty directory
        // of named vectors at the end, four bytes.)
        assert_eq!((bytes.len(), codec::crc(&bytes)), (1540, 0x568e_97d0));
        // The payload indexes section, by hand from FORMAT.md: one field "n", five integer
        // entries (kind 1, the value, the end of its list), one row each.
        let descriptor = 56 + PAYLOAD_INDEXES * 24;
        let at = u64::from_le_bytes(bytes[descriptor..descriptor + 8].try_into().unwrap());
        let mut expected: Vec<u32> = vec![1, 1, u32::from(b'n'), 0, 5, 0, 5];
        for i in 0..5 {
            expected.extend([1, i, 0, i + 1]);
        }
        expected.extend(0..5);
        let expected = u32_bytes(&expected);
        let at = at as usize;
        assert_eq!(&bytes[at..at + expected.len()], &expected[..]);
        // The empty directory of named vectors ends the file: a count of zero.
        assert_eq!(&bytes[bytes.len() - 4..], &[0; 4]);
        let image = read(&storage, "small.seg", 3, 4, Distance::Cosine, false).unwrap();
        assert_eq!(image.rows, 5);
        assert_eq!(image.dense.graph.unwrap().sketches.unwrap().len(), 5 * 64);
    }

    #[test]
    fn quantized_codes_are_stored_used_in_place_and_recoded_without_them() {
        let cases = [Quantization::Sq8, Quantization::Binary]
            .into_iter()
            .flat_map(|q| [(q, Distance::Cosine), (q, Distance::Euclid)]);
        for (quantization, distance) in cases {
            let coded = EngineConfig {
                distance,
                quantization,
                ..config()
            };
            let mut engine = Engine::new(coded.clone());
            let point = |i: u64| {
                let v = (0..256u64)
                    .map(|d| {
                        let h = (i.wrapping_mul(0x9E37_79B9_7F4A_7C15)
                            ^ d.wrapping_mul(0xC2B2_AE3D_27D4_EB4F))
                        .wrapping_mul(0x1656_67B1_9E37_79F9);
                        (h >> 40) as f32 / (1u64 << 24) as f32 - 0.5
                    })
                    .collect();
                Point::new(i, v)
            };
            engine.upsert((0..1500).map(point).collect()).unwrap();
            let expected = answers(&engine);
            let storage = MemoryStorage::new();
            write(&storage, "coded.seg", &engine.export(7).unwrap()).unwrap();
            let read_back = || read(&storage, "coded.seg", 256, 256, distance, false).unwrap();
            let image = read_back();
            let stored = image.dense.codes.as_ref().expect("a codes section");
            // SQ8: a byte per dimension and the norms for Euclid; binary: 256 bits in one
            // line, five floats beside each row, the mean, and the centres with their norms.
            let (stride, side, mean) = match (quantization, &stored.coder) {
                (_, StoredCoder::Binary { centres, .. }) => {
                    let k = centres.len() / 256;
                    assert!(k > 1, "centres trained");
                    (64, 20, (256 + k * 256 + k) * 4)
                }
                (_, StoredCoder::Sq8 { .. }) if distance == Distance::Euclid => (256, 4, 0),
                _ => (256, 0, 0),
            };
            assert_eq!((stored.rows, stored.stride), (1500, stride));
            assert_eq!(stored.side.len(), 1500 * side);
            let reopened = Engine::from_image(coded.clone(), image).unwrap();
            assert_eq!(
                answers(&reopened),
                expected,
                "{quantization:?} {distance:?}: codes read back"
            );
            // Without codes in the segment (one written without quantization, or of version
            // 4), they are made again from the vectors: the same range, the same answers.
            let mut image = read_back();
            image.dense.codes = None;
            let recoded = Engine::from_image(coded.clone(), image).unwrap();
            assert_eq!(
                answers(&recoded),
                expected,
                "{quantization:?} {distance:?}: codes made again"
            );
            // A database opened without quantization ignores them.
            let plain = Engine::from_image(config_for(distance), read_back()).unwrap();
            assert_eq!(
                plain.memory().index + 1500 * (stride + side) + mean,
                reopened.memory().index
            );
            // Deleted points leave the segment's codes with their rows.
            engine.delete(&[PointId::Num(3), PointId::Num(700)]);
            write(&storage, "coded.seg", &engine.export(8).unwrap()).unwrap();
            let image = read_back();
            assert_eq!(image.dense.codes.as_ref().unwrap().rows, 1498);
            let reopened = Engine::from_image(coded, image).unwrap();
            let found = answers(&reopened);
            let gone = [PointId::Num(3), PointId::Num(700)];
            assert!(found
                .iter()
                .flat_map(|(h, _)| h)
                .all(|(id, _)| !gone.contains(id)));
        }
    }

    fn config_for(distance: Distance) -> EngineConfig {
        EngineConfig {
            distance,
            ..config()
        }
    }

    #[test]
    fn damaged_codes_sections_are_refused() {
        for quantization in [Quantization::Sq8, Quantization::Binary] {
            refuses_damaged_codes(quantization);
        }
    }

    fn refuses_damaged_codes(quantization: Quantization) {
        let mut engine = Engine::new(EngineConfig {
            quantization,
            ..config()
        });
        let v = |i: u64| (0..256).map(|d| ((i * 7 + d) % 11) as f32 + 0.5).collect();
        engine
            .upsert((0..1100).map(|i| Point::new(i, v(i))).collect())
            .unwrap();
        let storage = MemoryStorage::new();
        write(&storage, "good.seg", &engine.export(1).unwrap()).unwrap();
        let good = storage.read_all("good.seg").unwrap().to_vec();
        let descriptor = 56 + CODES * 24;
        let at = u64::from_le_bytes(good[descriptor..descriptor + 8].try_into().unwrap()) as usize;
        let section_len =
            u64::from_le_bytes(good[descriptor + 8..descriptor + 16].try_into().unwrap()) as usize;
        let damages = match quantization {
            Quantization::Binary => vec![
                ("kind", 0, 3u32.to_le_bytes()),
                ("stride", 4, 128u32.to_le_bytes()),
                ("centres", 8, u32::MAX.to_le_bytes()),
                ("mean", 64 + 4 * 17, f32::NAN.to_le_bytes()),
                ("centre", 64 + 256 * 4 + 4 * 300, f32::NAN.to_le_bytes()),
                ("side", section_len - 8, f32::INFINITY.to_le_bytes()),
                ("centre number", section_len - 4, 1e6f32.to_le_bytes()),
                ("centre number", section_len - 4, 0.5f32.to_le_bytes()),
            ],
            _ => vec![
                ("kind", 0, 3u32.to_le_bytes()),
                ("stride", 4, 128u32.to_le_bytes()),
                ("step", 12, 0f32.to_le_bytes()),
                ("low", 8, f32::NAN.to_le_bytes()),
            ],
        };
        // Each damage is given a valid checksum, as a buggy writer would have: only the
        // section's own checks can catch it.
        let changed = |what: &str, offset: usize, bytes: [u8; 4]| {
            let mut bad = good.clone();
            bad[at + offset..at + offset + 4].copy_from_slice(&bytes);
            let len = u64::from_le_bytes(bad[descriptor + 8..descriptor + 16].try_into().unwrap());
            let crc = codec::crc(&bad[at..at + len as usize]);
            bad[descriptor + 16..descriptor + 20].copy_from_slice(&crc.to_le_bytes());
            let header_end = 56 + SECTIONS.len() * 24;
            let header_crc = codec::crc(&bad[..header_end]);
            bad[header_end..header_end + 4].copy_from_slice(&header_crc.to_le_bytes());
            let name = format!("{what}.seg");
            storage
                .open(&name, OpenMode::CreateIfMissing)
                .unwrap()
                .write_at(0, &bad)
                .unwrap();
            read(&storage, &name, 256, 256, Distance::Cosine, false)
        };
        for (what, offset, bytes) in damages {
            let err = changed(what, offset, bytes).err().expect(what);
            assert!(
                matches!(&err, Error::Corrupt { detail, .. } if detail.starts_with("quantized codes")),
                "{what}: {err}"
            );
        }
        if quantization == Quantization::Binary {
            // Binary codes around one mean (no centres: written by b7ed3ec, never released)
            // are set aside, and the graph coded afresh at open.
            let image = changed("one mean", 8, 0u32.to_le_bytes()).unwrap();
            assert!(image.dense.codes.is_none());
        }
    }

    #[test]
    fn sketches_are_stored_and_recomputed_for_version_2_segments() {
        let mut engine = Engine::new(config());
        engine
            .upsert(
                (0..2000u64)
                    .map(|i| {
                        let v = (0..256)
                            .map(|d| ((i * 13 + d * 5) % 17) as f32 + 0.5)
                            .collect();
                        Point::new(i, v)
                    })
                    .collect(),
            )
            .unwrap();
        let storage = MemoryStorage::new();
        write(&storage, "v3.seg", &engine.export(7).unwrap()).unwrap();
        let read_back =
            |name: &str| read(&storage, name, 256, 256, Distance::Cosine, false).unwrap();
        let v3 = read_back("v3.seg");
        let sketches = v3.dense.graph.as_ref().unwrap().sketches.as_ref().unwrap();
        assert_eq!(sketches.len(), 2000 * 64);
        let stored_at = sketches.as_ptr();
        let from_v3 = Engine::from_image(config(), v3).unwrap();
        assert_eq!(
            from_v3.sketches_at(),
            stored_at,
            "stored sketches are used in place, not copied"
        );
        let expected = answers(&from_v3);
        assert_eq!(
            answers(&engine),
            expected,
            "the segment answers like the engine"
        );

        let old = as_version_2(&storage.read_all("v3.seg").unwrap());
        storage
            .open("v2.seg", OpenMode::CreateIfMissing)
            .unwrap()
            .write_at(0, &old)
            .unwrap();
        let v2 = read_back("v2.seg");
        assert!(v2.dense.graph.as_ref().unwrap().sketches.is_none());
        let from_v2 = Engine::from_image(config(), v2).unwrap();
        assert_eq!(
            answers(&from_v2),
            expected,
            "recomputed sketches are the stored ones"
        );
    }
}
