//! Little-endian encoding helpers shared by the file formats, with bounds-checked reading that
//! reports damage as [`Error::Corrupt`] naming the file and offset.

use crate::error::{Error, Result};
use crate::point::PointId;

/// Bytes of an encoded [`PointId`]: a tag byte and 16 bytes of value.
pub(crate) const ID_BYTES: usize = 17;

pub(crate) fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

pub(crate) fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

pub(crate) fn put_id(out: &mut Vec<u8>, id: PointId) {
    let (tag, value) = match id {
        PointId::Num(n) => (0u8, u128::from(n)),
        PointId::Uuid(u) => (1u8, u),
    };
    out.push(tag);
    out.extend_from_slice(&value.to_le_bytes());
}

pub(crate) fn put_f32s(out: &mut Vec<u8>, v: &[f32]) {
    out.extend_from_slice(bytemuck::cast_slice(v));
}

/// A cursor over bytes read from `file`, starting at `base` in that file.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    file: &'a str,
    base: u64,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8], file: &'a str, base: u64) -> Self {
        Reader {
            buf,
            pos: 0,
            file,
            base,
        }
    }

    pub fn corrupt(&self, detail: impl Into<String>) -> Error {
        Error::Corrupt {
            file: self.file.to_owned(),
            offset: self.base + self.pos as u64,
            detail: detail.into(),
        }
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.pos == self.buf.len()
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| self.corrupt(format!("{n} bytes expected, the data ends first")))?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.bytes(1)?[0])
    }

    pub fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(
            self.bytes(4)?.try_into().expect("4 bytes"),
        ))
    }

    pub fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(
            self.bytes(8)?.try_into().expect("8 bytes"),
        ))
    }

    /// A count that must fit the remaining bytes at `min_item_bytes` each, so a damaged count
    /// cannot make the reader allocate gigabytes.
    pub fn count(&mut self, min_item_bytes: usize) -> Result<usize> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_item_bytes) > self.buf.len() - self.pos {
            return Err(self.corrupt(format!("count {n} exceeds the remaining data")));
        }
        Ok(n)
    }

    pub fn id(&mut self) -> Result<PointId> {
        let tag = self.u8()?;
        let value = u128::from_le_bytes(self.bytes(16)?.try_into().expect("16 bytes"));
        match tag {
            0 => u64::try_from(value)
                .map(PointId::Num)
                .map_err(|_| self.corrupt("integer id out of range")),
            1 => Ok(PointId::Uuid(value)),
            t => Err(self.corrupt(format!("unknown id tag {t}"))),
        }
    }

    pub fn f32s(&mut self, n: usize) -> Result<Vec<f32>> {
        let raw = self.bytes(n * 4)?;
        Ok(raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect())
    }
}

/// The error for a file whose version field reads `found`, newer than `supported` (or 0):
/// [`Error::UnsupportedFormat`], unless the header is one of ours with only the version field
/// damaged, that is, with a known version in its place the header checksum of that version's
/// layout checks out; then [`Error::Corrupt`] at offset 8. `layouts` lists each known version
/// with where its header checksum (of all the bytes before it) lies. Every format keeps its
/// version at bytes 8..12.
pub(crate) fn newer_or_damaged(
    bytes: &[u8],
    file: &str,
    found: u32,
    supported: u32,
    layouts: &[(u32, usize)],
) -> Error {
    let damaged = layouts.iter().any(|&(version, crc_at)| {
        bytes.len() >= crc_at + 4 && {
            let mut crc = crc(&bytes[..8]);
            crc = crate::checksum::crc32c_append(crc, &version.to_le_bytes());
            crc = crate::checksum::crc32c_append(crc, &bytes[12..crc_at]);
            crc.to_le_bytes() == bytes[crc_at..crc_at + 4]
        }
    });
    if damaged || found == 0 {
        Error::Corrupt {
            file: file.to_owned(),
            offset: 8,
            detail: format!("the version field is damaged (it reads {found})"),
        }
    } else {
        Error::UnsupportedFormat {
            file: file.to_owned(),
            found,
            supported,
        }
    }
}

/// CRC32C (Castagnoli), hardware-accelerated where the CPU has it (see `checksum`).
pub(crate) fn crc(data: &[u8]) -> u32 {
    crate::checksum::crc32c(data)
}

/// Rounds `n` up to a multiple of 64 (section alignment).
pub(crate) fn align64(n: u64) -> u64 {
    n.div_ceil(64) * 64
}
