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

/// CRC32C (Castagnoli), hardware-accelerated where the CPU has it (see `checksum`).
pub(crate) fn crc(data: &[u8]) -> u32 {
    crate::checksum::crc32c(data)
}

/// Rounds `n` up to a multiple of 64 (section alignment).
pub(crate) fn align64(n: u64) -> u64 {
    n.div_ceil(64) * 64
}
