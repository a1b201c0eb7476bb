//! The write-ahead log: every acknowledged change, appended as a checksummed record before it is
//! applied, and replayed on open. See FORMAT.md for the bytes.

use crate::storage::OpenMode;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::metrics::IoCounters;
use crate::point::{Payload, Point, PointId, SparseVector};
use crate::storage::{io_error, Storage, StorageFile};
use std::collections::BTreeMap;

use super::codec::{self, Reader, ID_BYTES};
use super::LogRecovery;

const MAGIC: &[u8; 8] = b"GRAPEWAL";
/// Version 2: salted record checksums that cover the length, and the durable mark in every
/// record. Version 1 logs are still read and appended to (in their own format).
pub(crate) const VERSION: u32 = 2;
const HEADER_BYTES_V1: u64 = 32;
const HEADER_BYTES_V2: u64 = 64;
/// `len` and `crc` before each record's body.
const RECORD_PREFIX: usize = 8;

const KIND_UPSERT: u8 = 1;
const KIND_DELETE: u8 = 2;
const KIND_SET_PAYLOAD: u8 = 3;
/// An upsert whose points carry sparse vectors: each point as in [`KIND_UPSERT`], then its
/// sparse vectors by name. Batches without any are still written as [`KIND_UPSERT`], so such
/// logs stay readable by the versions before sparse vectors.
const KIND_UPSERT_SPARSE: u8 = 4;
/// An upsert whose points carry named dense vectors: each point as in [`KIND_UPSERT_SPARSE`],
/// then its named dense vectors. Written only for batches with some, as kind 4 is.
const KIND_UPSERT_NAMED: u8 = 5;

/// One logged change. Delete-by-filter is logged as the ids it resolved to, so replay does not
/// depend on payloads evaluating the same way later.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum WalOp {
    Upsert(Vec<Point>),
    Delete(Vec<PointId>),
    SetPayload(Vec<PointId>, Payload),
}

pub(crate) fn file_name(generation: u64) -> String {
    format!("wal-{generation:016x}.log")
}

fn encode_payload(out: &mut Vec<u8>, payload: &Payload) {
    let start = out.len();
    codec::put_u32(out, 0);
    if !payload.is_empty() {
        serde_json::to_writer(&mut *out, payload).expect("a JSON map always serialises");
    }
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
}

fn decode_payload(r: &mut Reader) -> Result<Payload> {
    let len = r.count(1)?;
    let raw = r.bytes(len)?;
    if raw.is_empty() {
        return Ok(Payload::new());
    }
    serde_json::from_slice(raw).map_err(|e| r.corrupt(format!("payload is not a JSON object: {e}")))
}

/// `count u32`, then per sparse vector: `name_len u32 | name | entries u32 | indices u32s |
/// values f32s`.
fn encode_sparse(out: &mut Vec<u8>, vectors: &BTreeMap<String, SparseVector>) {
    codec::put_u32(out, vectors.len() as u32);
    for (name, v) in vectors {
        codec::put_u32(out, name.len() as u32);
        out.extend_from_slice(name.as_bytes());
        codec::put_u32(out, v.len() as u32);
        v.indices().iter().for_each(|&i| codec::put_u32(out, i));
        codec::put_f32s(out, v.values());
    }
}

fn decode_sparse(r: &mut Reader) -> Result<BTreeMap<String, SparseVector>> {
    let n = r.count(12)?;
    let mut vectors = BTreeMap::new();
    for _ in 0..n {
        let len = r.count(1)?;
        let name = std::str::from_utf8(r.bytes(len)?)
            .map_err(|_| r.corrupt("a sparse vector's name is not UTF-8"))?
            .to_owned();
        let entries = r.count(8)?;
        let indices = (0..entries).map(|_| r.u32()).collect::<Result<Vec<_>>>()?;
        let values = r.f32s(entries)?;
        let v = SparseVector::new(indices, values)
            .map_err(|e| r.corrupt(format!("sparse vector {name:?}: {e}")))?;
        if vectors.insert(name, v).is_some() {
            return Err(r.corrupt("a point names a sparse vector twice"));
        }
    }
    Ok(vectors)
}

/// `count u32`, then per named dense vector: `name_len u32 | name | dim u32 | f32s`.
fn encode_named(out: &mut Vec<u8>, vectors: &BTreeMap<String, Vec<f32>>) {
    codec::put_u32(out, vectors.len() as u32);
    for (name, v) in vectors {
        codec::put_u32(out, name.len() as u32);
        out.extend_from_slice(name.as_bytes());
        codec::put_u32(out, v.len() as u32);
        codec::put_f32s(out, v);
    }
}

fn decode_named(r: &mut Reader) -> Result<BTreeMap<String, Vec<f32>>> {
    let n = r.count(8)?;
    let mut vectors = BTreeMap::new();
    for _ in 0..n {
        let len = r.count(1)?;
        let name = std::str::from_utf8(r.bytes(len)?)
            .map_err(|_| r.corrupt("a named vector's name is not UTF-8"))?
            .to_owned();
        let dim = r.count(4)?;
        if vectors.insert(name, r.f32s(dim)?).is_some() {
            return Err(r.corrupt("a point names a dense vector twice"));
        }
    }
    Ok(vectors)
}

/// The format of one log file, read from its header: how its records are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LogFormat {
    version: u32,
    /// Random per file (version 2): a record checks out only in the file it was written for,
    /// so stale bytes of another log (or zeros) never pass as a record.
    salt: u64,
}

impl LogFormat {
    /// A new file's format: the current version with a fresh salt.
    fn new(generation: u64) -> LogFormat {
        LogFormat {
            version: VERSION,
            salt: crate::clock::entropy() ^ generation.rotate_left(32),
        }
    }

    pub fn header_bytes(self) -> u64 {
        match self.version {
            1 => HEADER_BYTES_V1,
            _ => HEADER_BYTES_V2,
        }
    }

    /// The smallest body: kind and sequence number, and (version 2) the durable mark.
    fn min_body(self) -> usize {
        match self.version {
            1 => 9,
            _ => 17,
        }
    }

    /// Version 1: the CRC of the body. Version 2: the CRC of salt, length and body, so a
    /// record of zeros (length 0, CRC 0) or of another file never checks out.
    fn checksum(self, body: &[u8]) -> u32 {
        match self.version {
            1 => codec::crc(body),
            _ => {
                let salted = codec::crc(&self.salt.to_le_bytes());
                let sized =
                    crate::checksum::crc32c_append(salted, &(body.len() as u32).to_le_bytes());
                crate::checksum::crc32c_append(sized, body)
            }
        }
    }

    /// Encodes a record: `len u32 | crc u32 | kind u8 | seq u64 | [durable u64] | fields`.
    /// `durable` is where the file was known durable when the record was written: replay uses
    /// it to tell damage (a bad record that had been synced) from a torn tail.
    pub fn encode(self, seq: u64, durable: u64, op: &WalOp) -> Vec<u8> {
        let mut out = vec![0u8; RECORD_PREFIX];
        let (kind, ids) = match op {
            WalOp::Upsert(points) if points.iter().any(|p| !p.named_vectors.is_empty()) => {
                (KIND_UPSERT_NAMED, &[][..])
            }
            WalOp::Upsert(points) if points.iter().any(|p| !p.sparse_vectors.is_empty()) => {
                (KIND_UPSERT_SPARSE, &[][..])
            }
            WalOp::Upsert(_) => (KIND_UPSERT, &[][..]),
            WalOp::Delete(ids) => (KIND_DELETE, &ids[..]),
            WalOp::SetPayload(ids, _) => (KIND_SET_PAYLOAD, &ids[..]),
        };
        out.push(kind);
        codec::put_u64(&mut out, seq);
        if self.version >= 2 {
            codec::put_u64(&mut out, durable);
        }
        match op {
            WalOp::Upsert(points) => {
                codec::put_u32(&mut out, points.len() as u32);
                for p in points {
                    codec::put_id(&mut out, p.id);
                    codec::put_f32s(&mut out, &p.vector);
                    encode_payload(&mut out, &p.payload);
                    if kind >= KIND_UPSERT_SPARSE {
                        encode_sparse(&mut out, &p.sparse_vectors);
                    }
                    if kind == KIND_UPSERT_NAMED {
                        encode_named(&mut out, &p.named_vectors);
                    }
                }
            }
            WalOp::Delete(_) | WalOp::SetPayload(..) => {
                codec::put_u32(&mut out, ids.len() as u32);
                ids.iter().for_each(|&id| codec::put_id(&mut out, id));
            }
        }
        if let WalOp::SetPayload(_, payload) = op {
            encode_payload(&mut out, payload);
        }
        let body_len = (out.len() - RECORD_PREFIX) as u32;
        let crc = self.checksum(&out[RECORD_PREFIX..]);
        out[0..4].copy_from_slice(&body_len.to_le_bytes());
        out[4..8].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// The body of the record at `pos` if one checks out there (its length fits the file and
    /// its checksum matches); `None` for a torn or damaged record, or none at all.
    fn record_at(self, buf: &[u8], pos: usize) -> Option<&[u8]> {
        let prefix = buf.get(pos..pos.checked_add(RECORD_PREFIX)?)?;
        let len = u32::from_le_bytes(prefix[..4].try_into().expect("4")) as usize;
        let crc = u32::from_le_bytes(prefix[4..].try_into().expect("4"));
        let start = pos + RECORD_PREFIX;
        let body = buf.get(start..start.checked_add(len)?)?;
        (len >= self.min_body() && self.checksum(body) == crc).then_some(body)
    }

    /// Sequence number and durable mark of a checked body (version 1 has no mark: 0).
    fn seq_and_durable(self, body: &[u8]) -> (u64, u64) {
        let seq = u64::from_le_bytes(body[1..9].try_into().expect("8"));
        let durable = match self.version {
            1 => 0,
            _ => u64::from_le_bytes(body[9..17].try_into().expect("8")),
        };
        (seq, durable)
    }

    fn decode(self, body: &[u8], dim: usize, file: &str, base: u64) -> Result<(u64, WalOp)> {
        let mut r = Reader::new(body, file, base);
        let kind = r.u8()?;
        let seq = r.u64()?;
        if self.version >= 2 {
            r.u64()?; // the durable mark, used only when the log is damaged
        }
        let op = match kind {
            KIND_UPSERT | KIND_UPSERT_SPARSE | KIND_UPSERT_NAMED => {
                let (sparse, named) = (kind >= KIND_UPSERT_SPARSE, kind == KIND_UPSERT_NAMED);
                let n = r.count(ID_BYTES + dim * 4 + 4 + 4 * (sparse as usize + named as usize))?;
                let mut points = Vec::with_capacity(n);
                for _ in 0..n {
                    let id = r.id()?;
                    let vector = r.f32s(dim)?;
                    let payload = decode_payload(&mut r)?;
                    let sparse_vectors = match sparse {
                        true => decode_sparse(&mut r)?,
                        false => Default::default(),
                    };
                    let named_vectors = match named {
                        true => decode_named(&mut r)?,
                        false => Default::default(),
                    };
                    points.push(Point {
                        id,
                        vector,
                        named_vectors,
                        sparse_vectors,
                        // Documents are turned into sparse vectors before they are logged.
                        documents: Default::default(),
                        payload,
                    });
                }
                WalOp::Upsert(points)
            }
            KIND_DELETE => {
                let n = r.count(ID_BYTES)?;
                WalOp::Delete((0..n).map(|_| r.id()).collect::<Result<_>>()?)
            }
            KIND_SET_PAYLOAD => {
                let n = r.count(ID_BYTES)?;
                let ids = (0..n).map(|_| r.id()).collect::<Result<_>>()?;
                WalOp::SetPayload(ids, decode_payload(&mut r)?)
            }
            k => return Err(r.corrupt(format!("unknown record kind {k}"))),
        };
        if !r.is_empty() {
            return Err(r.corrupt("record has trailing bytes"));
        }
        Ok((seq, op))
    }

    fn header(self, dim: usize, generation: u64) -> Vec<u8> {
        let mut h = Vec::with_capacity(self.header_bytes() as usize);
        h.extend_from_slice(MAGIC);
        codec::put_u32(&mut h, self.version);
        codec::put_u32(&mut h, dim as u32);
        codec::put_u64(&mut h, generation);
        if self.version >= 2 {
            codec::put_u64(&mut h, self.salt);
        }
        let crc = codec::crc(&h);
        codec::put_u32(&mut h, crc);
        h.resize(self.header_bytes() as usize, 0);
        h
    }
}

/// What replay found.
pub(crate) struct Replay {
    pub ops: Vec<(u64, WalOp)>,
    pub format: LogFormat,
    /// Where the last complete record ends (the writer appends there).
    pub end: u64,
    /// Bytes of a torn tail (or, salvaging, of damage and what followed it) that were cut off.
    pub truncated_bytes: u64,
    /// Where damage was found and cut off when salvaging.
    pub damaged_at: Option<u64>,
}

/// Reads every record and cuts off a torn tail. Only the write in flight at a crash can be
/// torn: a record that does not check out, followed by one that was written after it had been
/// made durable, is damage, refused (or cut, with [`LogRecovery::Salvage`]).
pub(crate) fn replay(
    file: &dyn StorageFile,
    name: &str,
    dim: usize,
    on_damage: LogRecovery,
) -> Result<Replay> {
    let len = file.len().map_err(io_error("read the size of", name))?;
    let mut buf = vec![0u8; len as usize];
    file.read_at(0, &mut buf).map_err(io_error("read", name))?;
    let format = check_header(&buf, name, dim)?;
    let mut pos = format.header_bytes() as usize;
    let mut ops: Vec<(u64, WalOp)> = Vec::new();
    while let Some(body) = format.record_at(&buf, pos) {
        let (seq, op) = format.decode(body, dim, name, (pos + RECORD_PREFIX) as u64)?;
        if let Some(&(last, _)) = ops.last() {
            if seq != last + 1 {
                return Err(Error::Corrupt {
                    file: name.to_owned(),
                    offset: pos as u64,
                    detail: format!("record {seq} follows record {last}"),
                });
            }
        }
        ops.push((seq, op));
        pos += RECORD_PREFIX + body.len();
    }
    let mut damaged_at = None;
    if let Some(later) = durable_after(format, &buf, pos, ops.last().map(|&(s, _)| s)) {
        if on_damage == LogRecovery::Strict {
            return Err(Error::Corrupt {
                file: name.to_owned(),
                offset: pos as u64,
                detail: format!(
                    "the record at byte {pos} is damaged, and the record at byte {later} was \
                     written after it had been made durable: acknowledged writes follow the \
                     damage. Restore from a snapshot, or open with LogRecovery::Salvage to keep \
                     only the records before byte {pos}"
                ),
            });
        }
        damaged_at = Some(pos as u64);
    }
    let truncated_bytes = (buf.len() - pos) as u64;
    if truncated_bytes > 0 {
        file.set_len(pos as u64)
            .map_err(io_error("truncate", name))?;
        file.sync().map_err(io_error("sync", name))?;
    }
    Ok(Replay {
        ops,
        format,
        end: pos as u64,
        truncated_bytes,
        damaged_at,
    })
}

/// The offset of a record after `pos` (where the intact records end) that proves the bytes at
/// `pos` had been durable: its durable mark lies beyond `pos` (version 1, which has no mark:
/// any later record that continues the sequence).
fn durable_after(
    format: LogFormat,
    buf: &[u8],
    pos: usize,
    last_seq: Option<u64>,
) -> Option<usize> {
    (pos + 1..buf.len().saturating_sub(RECORD_PREFIX)).find(|&at| {
        format.record_at(buf, at).is_some_and(|body| {
            let (seq, durable) = format.seq_and_durable(body);
            match format.version {
                1 => last_seq.is_none_or(|last| seq > last),
                _ => durable > pos as u64,
            }
        })
    })
}

fn check_header(buf: &[u8], name: &str, dim: usize) -> Result<LogFormat> {
    let corrupt = |offset: u64, detail: &str| Error::Corrupt {
        file: name.to_owned(),
        offset,
        detail: detail.to_owned(),
    };
    if buf.len() < 12 || &buf[..8] != MAGIC {
        return Err(corrupt(0, "not a grape-vector-db log (bad magic)"));
    }
    let version = u32::from_le_bytes(buf[8..12].try_into().expect("4"));
    if version > VERSION || version == 0 {
        return Err(codec::newer_or_damaged(
            buf,
            name,
            version,
            VERSION,
            &[(1, 24), (2, 32)],
        ));
    }
    let format = LogFormat { version, salt: 0 };
    let header_bytes = format.header_bytes() as usize;
    if buf.len() < header_bytes {
        return Err(corrupt(0, "the log header is incomplete"));
    }
    let mut r = Reader::new(&buf[12..header_bytes], name, 12);
    let file_dim = r.u32()? as usize;
    let _generation = r.u64()?;
    let salt = if version >= 2 { r.u64()? } else { 0 };
    let crc_at = 12 + r.position();
    let crc = r.u32()?;
    if codec::crc(&buf[..crc_at]) != crc {
        return Err(corrupt(crc_at as u64, "log header checksum mismatch"));
    }
    if file_dim != dim {
        return Err(corrupt(12, "log dimension differs from the manifest's"));
    }
    Ok(LogFormat { version, salt })
}

/// Creates an empty log (header only) in the current format, durably; returns it open.
pub(crate) fn create(
    storage: &dyn Storage,
    name: &str,
    dim: usize,
    generation: u64,
) -> Result<(Box<dyn StorageFile>, LogFormat)> {
    let format = LogFormat::new(generation);
    let file = storage
        .open(name, OpenMode::CreateIfMissing)
        .map_err(io_error("create", name))?;
    file.set_len(0).map_err(io_error("truncate", name))?;
    file.write_at(0, &format.header(dim, generation))
        .map_err(io_error("write", name))?;
    file.sync().map_err(io_error("sync", name))?;
    Ok((file, format))
}

/// Appends records to an open log.
pub(crate) struct WalWriter {
    file: Box<dyn StorageFile>,
    name: String,
    format: LogFormat,
    /// Where the next record goes: the end of the last complete record.
    end: u64,
    /// Records encoded but not yet written (`Durability::OnFlush`).
    pending: Vec<u8>,
    /// Records written since the last fsync.
    dirty: bool,
    /// Set when a failed write could not be undone; every later write is refused.
    poisoned: Option<String>,
    /// End of the part of the file known to be durable.
    synced_end: u64,
    io: Arc<IoCounters>,
}

/// Pending bytes beyond which `OnFlush` writes (without syncing) to bound memory.
const MAX_PENDING: usize = 8 << 20;

impl WalWriter {
    /// A writer appending at `end` (everything before it is taken as durable).
    pub fn new(
        file: Box<dyn StorageFile>,
        name: String,
        format: LogFormat,
        end: u64,
        io: Arc<IoCounters>,
    ) -> Self {
        io.wal_size.store(end, Relaxed);
        WalWriter {
            file,
            name,
            format,
            end,
            pending: Vec::new(),
            dirty: false,
            poisoned: None,
            synced_end: end,
            io,
        }
    }

    /// Why the writer refuses writes, if it does.
    pub fn poisoned(&self) -> Option<&str> {
        self.poisoned.as_deref()
    }

    /// Refuses every later write: what the storage holds is no longer known.
    pub fn poison(&mut self, why: String) {
        self.poisoned.get_or_insert(why);
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Bytes in the log, including pending ones.
    pub fn size(&self) -> u64 {
        self.end + self.pending.len() as u64
    }

    fn check_poison(&self) -> Result<()> {
        match &self.poisoned {
            Some(why) => Err(Error::WriterPoisoned(why.clone())),
            None => Ok(()),
        }
    }

    /// Appends the record of `op` and writes it to the file (not synced: see [`Self::sync`]).
    /// If writing fails, this record is dropped (the caller reports the error and does not apply
    /// the change) but records buffered before it stay pending, to be written by the next
    /// append or sync: they were acknowledged.
    pub fn append(&mut self, seq: u64, op: &WalOp) -> Result<()> {
        self.push(seq, op, false)
    }

    /// Appends the record of `op`, which may stay in memory until [`Self::sync`] (`OnFlush`);
    /// failures as for [`Self::append`].
    pub fn append_buffered(&mut self, seq: u64, op: &WalOp) -> Result<()> {
        self.push(seq, op, true)
    }

    fn push(&mut self, seq: u64, op: &WalOp, buffer: bool) -> Result<()> {
        self.check_poison()?;
        let before = self.pending.len();
        // Pending records are always written before a sync, so `synced_end` is still where the
        // file is durable when this record reaches it.
        let record = self.format.encode(seq, self.synced_end, op);
        self.pending.extend_from_slice(&record);
        self.io.wal_size.store(self.size(), Relaxed);
        if !buffer || self.pending.len() >= MAX_PENDING {
            if let Err(e) = self.write_pending() {
                self.pending.truncate(before);
                self.io.wal_size.store(self.size(), Relaxed);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Writes pending records at the end of the file. On failure they stay pending and the file
    /// is cut back to the last complete record, so a later successful write never follows
    /// garbage; if even that fails, the writer is poisoned.
    fn write_pending(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        match self.file.write_at(self.end, &self.pending) {
            Ok(()) => {
                self.end += self.pending.len() as u64;
                self.io
                    .wal_bytes_written
                    .fetch_add(self.pending.len() as u64, Relaxed);
                self.pending.clear();
                self.dirty = true;
                Ok(())
            }
            Err(e) => {
                let err = io_error("append to", &self.name)(e);
                if let Err(e2) = self.file.set_len(self.end) {
                    self.poisoned = Some(format!("{err}; then: {e2}"));
                }
                Err(err)
            }
        }
    }

    /// Writes pending records and fsyncs; costs nothing when nothing is pending.
    pub fn sync(&mut self) -> Result<()> {
        self.check_poison()?;
        self.write_pending()?;
        if self.dirty {
            // After a failed fsync the kernel may have dropped the dirty pages: what the file
            // holds is unknowable, so refuse further writes (PostgreSQL's "fsyncgate" lesson).
            if let Err(e) = self.file.sync() {
                let err = io_error("sync", &self.name)(e);
                self.poisoned = Some(err.to_string());
                return Err(err);
            }
            self.dirty = false;
            self.io
                .wal_bytes_synced
                .fetch_add(self.end - self.synced_end, Relaxed);
            self.synced_end = self.end;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryStorage;
    use serde_json::json;

    fn ops() -> Vec<WalOp> {
        vec![
            WalOp::Upsert(vec![
                Point::new(1, vec![1.0, 2.0]),
                Point::new(PointId::Uuid(u128::MAX), vec![-0.5, 3.0])
                    .with_payload(json!({"a": [1, "x"]}))
                    .unwrap(),
            ]),
            WalOp::Delete(vec![PointId::Num(1), PointId::Num(7)]),
            WalOp::SetPayload(
                vec![PointId::Num(3)],
                json!({"b": null}).as_object().unwrap().clone(),
            ),
        ]
    }

    /// Writes `ops()` through a writer, one synced record each; returns the log's size and
    /// where each record starts.
    fn write_log(storage: &MemoryStorage) -> (u64, Vec<u64>) {
        let (file, format) = create(storage, "w", 2, 1).unwrap();
        let mut w = WalWriter::new(
            file,
            "w".into(),
            format,
            format.header_bytes(),
            Default::default(),
        );
        let mut starts = Vec::new();
        for (i, op) in ops().iter().enumerate() {
            starts.push(w.size());
            w.append(i as u64 + 1, op).unwrap();
            w.sync().unwrap();
        }
        (w.size(), starts)
    }

    fn replayed(file: &dyn StorageFile) -> Result<Vec<WalOp>> {
        let r = replay(file, "w", 2, LogRecovery::Strict)?;
        Ok(r.ops.into_iter().map(|(_, op)| op).collect())
    }

    fn rewrite(s: &MemoryStorage, bytes: &[u8]) -> Box<dyn StorageFile> {
        let file = s.open("w", OpenMode::Existing).unwrap();
        file.set_len(0).unwrap();
        file.write_at(0, bytes).unwrap();
        file
    }

    #[test]
    fn records_round_trip() {
        let s = MemoryStorage::new();
        let (size, _) = write_log(&s);
        let r = replay(
            &*s.open("w", OpenMode::Existing).unwrap(),
            "w",
            2,
            LogRecovery::Strict,
        )
        .unwrap();
        assert_eq!(r.end, size);
        assert_eq!(r.truncated_bytes, 0);
        assert_eq!(r.format.version, VERSION);
        let got: Vec<WalOp> = r.ops.into_iter().map(|(_, op)| op).collect();
        assert_eq!(got, ops());
    }

    #[test]
    fn every_truncation_recovers_a_prefix_of_whole_records() {
        let s = MemoryStorage::new();
        let (size, _) = write_log(&s);
        let full = s.read_all("w").unwrap().to_vec();
        for cut in HEADER_BYTES_V2..size {
            let file = rewrite(&s, &full[..cut as usize]);
            let r = replay(&*file, "w", 2, LogRecovery::Strict).unwrap();
            assert_eq!(r.end + r.truncated_bytes, cut);
            assert_eq!(file.len().unwrap(), r.end, "the torn tail is cut off");
            let got: Vec<WalOp> = r.ops.into_iter().map(|(_, op)| op).collect();
            assert_eq!(got[..], ops()[..got.len()], "cut at {cut}");
        }
    }

    #[test]
    fn a_tail_of_zeros_is_a_torn_append_not_a_record() {
        // An append cut by power loss after the file size reached the disk: zeros. Length 0
        // with CRC 0 was taken for an empty record (the CRC of nothing is 0) and refused.
        let s = MemoryStorage::new();
        let (size, _) = write_log(&s);
        let full = s.read_all("w").unwrap().to_vec();
        for zeros in [1usize, 7, 8, 9, 17, 100, 4096] {
            let mut bytes = full.clone();
            bytes.resize(bytes.len() + zeros, 0);
            let file = rewrite(&s, &bytes);
            assert_eq!(replayed(&*file).unwrap(), ops(), "{zeros} zeros");
            assert_eq!(file.len().unwrap(), size, "{zeros} zeros cut off");
        }
    }

    #[test]
    fn damage_followed_by_durable_records_is_refused_or_salvaged() {
        let s = MemoryStorage::new();
        let (size, starts) = write_log(&s);
        let full = s.read_all("w").unwrap().to_vec();
        for pos in HEADER_BYTES_V2..size {
            let mut bytes = full.clone();
            bytes[pos as usize] ^= 0x10;
            let file = rewrite(&s, &bytes);
            // The record the flip is in.
            let hit = starts.iter().rposition(|&at| at <= pos).unwrap();
            match replayed(&*file) {
                Ok(got) => {
                    // Only the last record may be cut as torn: nothing durable follows it.
                    assert_eq!(
                        hit,
                        starts.len() - 1,
                        "flip at {pos} cut acknowledged records"
                    );
                    assert_eq!(got[..], ops()[..hit]);
                }
                Err(Error::Corrupt { offset, detail, .. }) => {
                    assert_eq!(offset, starts[hit], "flip at {pos}: {detail}");
                    assert!(hit < starts.len() - 1, "flip at {pos}: {detail}");
                    let file = rewrite(&s, &bytes);
                    let r = replay(&*file, "w", 2, LogRecovery::Salvage).unwrap();
                    assert_eq!(r.damaged_at, Some(starts[hit]));
                    assert_eq!(r.ops.len(), hit);
                    assert_eq!(
                        file.len().unwrap(),
                        starts[hit],
                        "salvage cuts at the damage"
                    );
                }
                Err(e) => panic!("flip at {pos}: {e}"),
            }
        }
    }

    #[test]
    fn unsynced_records_after_a_torn_one_are_a_torn_tail() {
        // Buffered records reach the file together and are synced together: if power loss
        // tears the first, the later ones were never durable either (their mark says so).
        let s = MemoryStorage::new();
        let (file, format) = create(&s, "w", 2, 1).unwrap();
        let start = format.header_bytes();
        let mut w = WalWriter::new(file, "w".into(), format, start, Default::default());
        for (i, op) in ops().iter().enumerate() {
            w.append_buffered(i as u64 + 1, op).unwrap();
        }
        w.sync().unwrap();
        let mut bytes = s.read_all("w").unwrap().to_vec();
        bytes[start as usize + 12] ^= 1;
        let file = rewrite(&s, &bytes);
        let r = replay(&*file, "w", 2, LogRecovery::Strict).unwrap();
        assert!(r.ops.is_empty());
        assert_eq!(r.damaged_at, None);
        assert_eq!(file.len().unwrap(), start);
    }

    #[test]
    fn version_1_logs_are_read_and_appended_in_their_format() {
        let s = MemoryStorage::new();
        let v1 = LogFormat {
            version: 1,
            salt: 0,
        };
        let file = s.open("w", OpenMode::CreateIfMissing).unwrap();
        file.write_at(0, &v1.header(2, 1)).unwrap();
        let mut w = WalWriter::new(file, "w".into(), v1, HEADER_BYTES_V1, Default::default());
        for (i, op) in ops().iter().enumerate() {
            w.append(i as u64 + 1, op).unwrap();
        }
        w.sync().unwrap();
        let mut bytes = s.read_all("w").unwrap().to_vec();
        // The records are version 1's: the CRC of the body alone.
        let len = u32::from_le_bytes(bytes[32..36].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(bytes[36..40].try_into().unwrap());
        assert_eq!(codec::crc(&bytes[40..40 + len]), crc);
        assert_eq!(
            replayed(&*s.open("w", OpenMode::Existing).unwrap()).unwrap(),
            ops()
        );
        // A zero tail is torn there too: no record is shorter than kind and sequence number.
        bytes.resize(bytes.len() + 64, 0);
        assert_eq!(replayed(&*rewrite(&s, &bytes)).unwrap(), ops());
    }

    #[test]
    fn headers_are_checked() {
        let s = MemoryStorage::new();
        write_log(&s);
        assert!(matches!(
            replay(
                &*s.open("w", OpenMode::Existing).unwrap(),
                "w",
                3,
                LogRecovery::Strict
            ),
            Err(Error::Corrupt { .. })
        ));
        let f = s.open("w", OpenMode::Existing).unwrap();
        let good = s.read_all("w").unwrap().to_vec();
        // A newer version (its header checks out as written): unsupported.
        let mut h = good[..32].to_vec();
        h[8] = 9;
        let crc = codec::crc(&h);
        f.write_at(0, &h).unwrap();
        f.write_at(32, &crc.to_le_bytes()).unwrap();
        assert!(matches!(
            replay(&*f, "w", 2, LogRecovery::Strict),
            Err(Error::UnsupportedFormat { found: 9, .. })
        ));
        // A damaged version field (the checksum holds for version 2): corruption.
        let mut damaged = good.clone();
        damaged[8] = 9;
        f.write_at(0, &damaged).unwrap();
        assert!(matches!(
            replay(&*f, "w", 2, LogRecovery::Strict),
            Err(Error::Corrupt { offset: 8, .. })
        ));
    }
}
