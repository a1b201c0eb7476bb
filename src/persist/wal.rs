//! The write-ahead log: every acknowledged change, appended as a checksummed record before it is
//! applied, and replayed on open. See FORMAT.md for the bytes.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::metrics::IoCounters;
use crate::point::{Payload, Point, PointId};
use crate::storage::{io_error, Storage, StorageFile};

use super::codec::{self, Reader, ID_BYTES};

const MAGIC: &[u8; 8] = b"GRAPEWAL";
pub(crate) const VERSION: u32 = 1;
pub(crate) const HEADER_BYTES: u64 = 32;
/// `len` and `crc` before each record's body.
const RECORD_PREFIX: usize = 8;

const KIND_UPSERT: u8 = 1;
const KIND_DELETE: u8 = 2;
const KIND_SET_PAYLOAD: u8 = 3;

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

/// Encodes a record: `len u32 | crc32c u32 | kind u8 | seq u64 | body`.
pub(crate) fn encode(seq: u64, op: &WalOp) -> Vec<u8> {
    let mut out = vec![0u8; RECORD_PREFIX];
    match op {
        WalOp::Upsert(points) => {
            out.push(KIND_UPSERT);
            codec::put_u64(&mut out, seq);
            codec::put_u32(&mut out, points.len() as u32);
            for p in points {
                codec::put_id(&mut out, p.id);
                codec::put_f32s(&mut out, &p.vector);
                encode_payload(&mut out, &p.payload);
            }
        }
        WalOp::Delete(ids) => {
            out.push(KIND_DELETE);
            codec::put_u64(&mut out, seq);
            codec::put_u32(&mut out, ids.len() as u32);
            ids.iter().for_each(|&id| codec::put_id(&mut out, id));
        }
        WalOp::SetPayload(ids, payload) => {
            out.push(KIND_SET_PAYLOAD);
            codec::put_u64(&mut out, seq);
            codec::put_u32(&mut out, ids.len() as u32);
            ids.iter().for_each(|&id| codec::put_id(&mut out, id));
            encode_payload(&mut out, payload);
        }
    }
    let body_len = (out.len() - RECORD_PREFIX) as u32;
    let crc = codec::crc(&out[RECORD_PREFIX..]);
    out[0..4].copy_from_slice(&body_len.to_le_bytes());
    out[4..8].copy_from_slice(&crc.to_le_bytes());
    out
}

fn decode_body(body: &[u8], dim: usize, file: &str, base: u64) -> Result<(u64, WalOp)> {
    let mut r = Reader::new(body, file, base);
    let kind = r.u8()?;
    let seq = r.u64()?;
    let op = match kind {
        KIND_UPSERT => {
            let n = r.count(ID_BYTES + dim * 4 + 4)?;
            let mut points = Vec::with_capacity(n);
            for _ in 0..n {
                let id = r.id()?;
                let vector = r.f32s(dim)?;
                let payload = decode_payload(&mut r)?;
                points.push(Point {
                    id,
                    vector,
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

fn header(dim: usize, generation: u64) -> Vec<u8> {
    let mut h = Vec::with_capacity(HEADER_BYTES as usize);
    h.extend_from_slice(MAGIC);
    codec::put_u32(&mut h, VERSION);
    codec::put_u32(&mut h, dim as u32);
    codec::put_u64(&mut h, generation);
    let crc = codec::crc(&h);
    codec::put_u32(&mut h, crc);
    h.resize(HEADER_BYTES as usize, 0);
    h
}

/// What replay found.
pub(crate) struct Replay {
    pub ops: Vec<(u64, WalOp)>,
    /// Where the last complete record ends (the writer appends there).
    pub end: u64,
    /// Bytes of a torn or damaged tail that were cut off.
    pub truncated_bytes: u64,
}

/// Reads every complete record, stops at the first torn or damaged one, and cuts the file there.
pub(crate) fn replay(file: &dyn StorageFile, name: &str, dim: usize) -> Result<Replay> {
    let len = file.len().map_err(io_error("read the size of", name))?;
    let mut buf = vec![0u8; len as usize];
    file.read_at(0, &mut buf).map_err(io_error("read", name))?;
    check_header(&buf, name, dim)?;
    let mut pos = HEADER_BYTES as usize;
    let mut ops = Vec::new();
    while buf.len() - pos >= RECORD_PREFIX {
        let body_len = u32::from_le_bytes(buf[pos..pos + 4].try_into().expect("4")) as usize;
        let crc = u32::from_le_bytes(buf[pos + 4..pos + 8].try_into().expect("4"));
        let start = pos + RECORD_PREFIX;
        let Some(body) = start
            .checked_add(body_len)
            .and_then(|end| buf.get(start..end))
        else {
            break; // torn: the record's end was never written
        };
        if codec::crc(body) != crc {
            break; // torn or damaged: nothing after it can be trusted
        }
        ops.push(decode_body(body, dim, name, start as u64)?);
        pos = start + body_len;
    }
    let truncated_bytes = (buf.len() - pos) as u64;
    if truncated_bytes > 0 {
        file.set_len(pos as u64)
            .map_err(io_error("truncate", name))?;
        file.sync().map_err(io_error("sync", name))?;
    }
    Ok(Replay {
        ops,
        end: pos as u64,
        truncated_bytes,
    })
}

fn check_header(buf: &[u8], name: &str, dim: usize) -> Result<()> {
    let corrupt = |offset: u64, detail: &str| Error::Corrupt {
        file: name.to_owned(),
        offset,
        detail: detail.to_owned(),
    };
    if buf.len() < HEADER_BYTES as usize {
        return Err(corrupt(0, "the log header is incomplete"));
    }
    if &buf[..8] != MAGIC {
        return Err(corrupt(0, "not a grape-vector-db log (bad magic)"));
    }
    let mut r = Reader::new(&buf[8..HEADER_BYTES as usize], name, 8);
    let version = r.u32()?;
    let file_dim = r.u32()? as usize;
    let _generation = r.u64()?;
    let crc = r.u32()?;
    if codec::crc(&buf[..24]) != crc {
        return Err(corrupt(24, "log header checksum mismatch"));
    }
    if version > VERSION {
        return Err(Error::UnsupportedFormat {
            file: name.to_owned(),
            found: version,
            supported: VERSION,
        });
    }
    if file_dim != dim {
        return Err(corrupt(12, "log dimension differs from the manifest's"));
    }
    Ok(())
}

/// Creates an empty log (header only), durably.
pub(crate) fn create(storage: &dyn Storage, name: &str, dim: usize, generation: u64) -> Result<()> {
    let file = storage.open(name, true).map_err(io_error("create", name))?;
    file.set_len(0).map_err(io_error("truncate", name))?;
    file.write_at(0, &header(dim, generation))
        .map_err(io_error("write", name))?;
    file.sync().map_err(io_error("sync", name))
}

/// Appends records to an open log.
pub(crate) struct WalWriter {
    file: Box<dyn StorageFile>,
    name: String,
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
    pub fn new(file: Box<dyn StorageFile>, name: String, end: u64, io: Arc<IoCounters>) -> Self {
        io.wal_size.store(end, Relaxed);
        WalWriter {
            file,
            name,
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

    /// Appends an encoded record. With `buffer`, it may stay in memory until [`Self::sync`].
    /// If writing fails, this record is dropped (the caller reports the error and does not apply
    /// the change) but records buffered before it stay pending, to be written by the next
    /// append or sync: they were acknowledged.
    pub fn append(&mut self, record: &[u8], buffer: bool) -> Result<()> {
        self.check_poison()?;
        let before = self.pending.len();
        self.pending.extend_from_slice(record);
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

    fn write_log(storage: &MemoryStorage) -> u64 {
        create(storage, "w", 2, 1).unwrap();
        let file = storage.open("w", false).unwrap();
        let mut w = WalWriter::new(file, "w".into(), HEADER_BYTES, Default::default());
        for (i, op) in ops().iter().enumerate() {
            w.append(&encode(i as u64 + 1, op), false).unwrap();
        }
        w.sync().unwrap();
        w.size()
    }

    #[test]
    fn records_round_trip() {
        let s = MemoryStorage::new();
        let size = write_log(&s);
        let r = replay(&*s.open("w", false).unwrap(), "w", 2).unwrap();
        assert_eq!(r.end, size);
        assert_eq!(r.truncated_bytes, 0);
        let got: Vec<WalOp> = r.ops.into_iter().map(|(_, op)| op).collect();
        assert_eq!(got, ops());
    }

    #[test]
    fn every_truncation_recovers_a_prefix_of_whole_records() {
        let s = MemoryStorage::new();
        let size = write_log(&s);
        let full = s.read_all("w").unwrap().to_vec();
        for cut in HEADER_BYTES..size {
            let file = s.open("w", false).unwrap();
            file.set_len(0).unwrap();
            file.write_at(0, &full[..cut as usize]).unwrap();
            let r = replay(&*file, "w", 2).unwrap();
            assert_eq!(r.end + r.truncated_bytes, cut);
            assert_eq!(file.len().unwrap(), r.end, "the torn tail is cut off");
            let got: Vec<WalOp> = r.ops.into_iter().map(|(_, op)| op).collect();
            assert_eq!(got[..], ops()[..got.len()], "cut at {cut}");
        }
    }

    #[test]
    fn a_flipped_bit_in_a_record_stops_replay_there() {
        let s = MemoryStorage::new();
        let size = write_log(&s);
        let full = s.read_all("w").unwrap().to_vec();
        for pos in HEADER_BYTES..size {
            let mut bytes = full.clone();
            bytes[pos as usize] ^= 0x10;
            let file = s.open("w", false).unwrap();
            file.set_len(0).unwrap();
            file.write_at(0, &bytes).unwrap();
            // Either a clean recovery of a prefix, or (for a damaged length that still lands
            // on a valid-looking record) a clear error: never a panic or a changed record.
            if let Ok(r) = replay(&*file, "w", 2) {
                let got: Vec<WalOp> = r.ops.into_iter().map(|(_, op)| op).collect();
                assert!(got.len() < 3, "flip at {pos} went unnoticed");
                assert_eq!(got[..], ops()[..got.len()]);
            }
        }
    }

    #[test]
    fn headers_are_checked() {
        let s = MemoryStorage::new();
        write_log(&s);
        assert!(matches!(
            replay(&*s.open("w", false).unwrap(), "w", 3),
            Err(Error::Corrupt { .. })
        ));
        let f = s.open("w", false).unwrap();
        let mut h = header(2, 1);
        h[8] = 9; // version 9
        let crc = codec::crc(&h[..24]);
        h[24..28].copy_from_slice(&crc.to_le_bytes());
        f.write_at(0, &h).unwrap();
        assert!(matches!(
            replay(&*f, "w", 2),
            Err(Error::UnsupportedFormat { found: 9, .. })
        ));
    }
}
