//! The vector arena: every vector of the database in contiguous, 64-byte-aligned memory.
//!
//! Rows are padded to a multiple of 16 floats (one cache line) so every vector starts on a cache
//! line and a scan walks memory strictly forward. For the usual embedding sizes (128, 384, 768,
//! 1536) the padding is zero. Padding floats are 0.0 and never read by the kernels, which see
//! only the first `dim` floats of a row.
//!
//! The first `base_rows` rows may live in a *base*: the vectors section of a mapped segment,
//! laid out exactly like these rows, used in place (zero-copy open). Base rows are read-only;
//! rows appended after open live in `lines`, owned and writable.

use bytemuck::{Pod, Zeroable};

use crate::bytes::Bytes;

const FLOATS_PER_LINE: usize = 16;

/// One cache line of floats; the owned part is a `Vec` of these, which is what aligns it.
#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C, align(64))]
struct Line([f32; FLOATS_PER_LINE]);

/// Row length in floats for vectors of `dim` floats.
pub(crate) fn stride_for(dim: usize) -> usize {
    dim.div_ceil(FLOATS_PER_LINE).max(1) * FLOATS_PER_LINE
}

/// The arena's rows as two plain slices; see [`VectorArena::view`].
#[derive(Clone, Copy)]
pub(crate) struct ArenaView<'a> {
    base: &'a [f32],
    owned: &'a [f32],
    base_rows: usize,
    stride: usize,
    dim: usize,
}

impl<'a> ArenaView<'a> {
    /// The vector in `slot`.
    #[inline(always)]
    pub fn get(&self, slot: usize) -> &'a [f32] {
        let (floats, row) = if slot < self.base_rows {
            (self.base, slot)
        } else {
            (self.owned, slot - self.base_rows)
        };
        let start = row * self.stride;
        &floats[start..start + self.dim]
    }
}

/// Contiguous storage of fixed-dimension vectors, addressed by slot.
pub(crate) struct VectorArena {
    dim: usize,
    /// Row length in floats (a multiple of 16, at least `dim`).
    stride: usize,
    /// Read-only rows `0..base_rows`, as little-endian f32 (a mapped segment section).
    base: Option<Bytes>,
    base_rows: usize,
    /// Owned rows `base_rows..rows`.
    lines: Vec<Line>,
    rows: usize,
}

impl VectorArena {
    pub fn new(dim: usize) -> Self {
        VectorArena {
            dim,
            stride: stride_for(dim),
            base: None,
            base_rows: 0,
            lines: Vec::new(),
            rows: 0,
        }
    }

    /// An arena whose first rows are `base` (`rows * stride` floats), used in place when it is
    /// aligned for `f32` (a memory map always is) and copied otherwise.
    pub fn with_base(dim: usize, base: Bytes, rows: usize) -> Self {
        let mut arena = VectorArena::new(dim);
        debug_assert_eq!(base.len(), rows * arena.stride * 4);
        if bytemuck::try_cast_slice::<u8, f32>(&base).is_ok() {
            arena.base = Some(base);
            arena.base_rows = rows;
            arena.rows = rows;
        } else {
            arena.reserve(rows);
            for row in base.chunks_exact(arena.stride * 4) {
                let v: Vec<f32> = row[..dim * 4]
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
                    .collect();
                arena.push(&v);
            }
        }
        arena
    }

    pub fn stride(&self) -> usize {
        self.stride
    }

    fn lines_per_row(&self) -> usize {
        self.stride / FLOATS_PER_LINE
    }

    /// Makes room for `additional` more rows: exactly that many when it is more than half the
    /// current capacity (a bulk load then wastes nothing), else half the capacity again. Growing
    /// by 1.5x rather than doubling bounds the spare memory of the arena (most of the database's
    /// memory) to a third, while keeping small upserts amortised O(1); growing by less made bulk
    /// loads slow (each growth copies and faults in the whole arena: measured 10x slower upserts
    /// at 1/8 headroom than at 1/2).
    pub fn reserve(&mut self, additional: usize) {
        let needed = self.lines.len() + additional * self.lines_per_row();
        let capacity = self.lines.capacity();
        if needed > capacity {
            let target = needed.max(capacity + capacity / 2);
            self.lines.reserve_exact(target - self.lines.len());
        }
    }

    /// The vector in `slot`.
    #[inline]
    pub fn get(&self, slot: usize) -> &[f32] {
        self.view().get(slot)
    }

    /// A borrowed view for hot loops: the base and owned rows resolved to plain slices once,
    /// instead of on every access.
    #[inline]
    pub fn view(&self) -> ArenaView<'_> {
        ArenaView {
            base: self.base.as_ref().map_or(&[], |b| bytemuck::cast_slice(b)),
            owned: bytemuck::cast_slice(&self.lines),
            base_rows: self.base_rows,
            stride: self.stride,
            dim: self.dim,
        }
    }

    /// Whether `slot` may be written in place (it is not in the read-only base).
    pub fn is_writable(&self, slot: usize) -> bool {
        slot >= self.base_rows
    }

    /// The vector in `slot`, writable. `slot` must be writable.
    pub fn get_mut(&mut self, slot: usize) -> &mut [f32] {
        let (stride, dim) = (self.stride, self.dim);
        let row = slot - self.base_rows;
        let floats: &mut [f32] = bytemuck::cast_slice_mut(&mut self.lines);
        &mut floats[row * stride..row * stride + dim]
    }

    /// Appends a row and returns its slot. `v.len()` must be `dim`.
    pub fn push(&mut self, v: &[f32]) -> usize {
        debug_assert_eq!(v.len(), self.dim);
        let new_len = self.lines.len() + self.lines_per_row();
        self.lines.resize(new_len, Line::zeroed());
        let slot = self.rows;
        self.rows += 1;
        self.get_mut(slot).copy_from_slice(v);
        slot
    }

    /// Keeps only the rows for which `keep(slot)` holds, in order, all in owned memory (the base
    /// is released). Used by compaction.
    pub fn retain(&mut self, keep: impl Fn(usize) -> bool) {
        let mut kept = VectorArena::new(self.dim);
        let live = (0..self.rows).filter(|&s| keep(s)).count();
        kept.lines.reserve_exact(live * self.lines_per_row());
        for slot in (0..self.rows).filter(|&s| keep(s)) {
            kept.push(self.get(slot));
        }
        *self = kept;
    }

    /// Bytes of owned memory, including spare capacity (mapped base rows are not counted: they
    /// are the operating system's page cache, shared and evictable).
    pub fn allocated_bytes(&self) -> usize {
        self.lines.capacity() * std::mem::size_of::<Line>()
    }

    /// Bytes of the mapped base.
    pub fn mapped_bytes(&self) -> usize {
        self.base.as_ref().map_or(0, |b| b.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_cache_line_aligned_and_padded_with_zeros() {
        let mut a = VectorArena::new(3);
        for i in 0..5 {
            a.push(&[i as f32, 1.0, 2.0]);
        }
        for i in 0..5 {
            assert_eq!(a.get(i), &[i as f32, 1.0, 2.0]);
            assert_eq!(a.get(i).as_ptr() as usize % 64, 0);
        }
        let floats: &[f32] = bytemuck::cast_slice(&a.lines);
        assert!(floats[3..16].iter().all(|&x| x == 0.0));
        a.retain(|s| s == 0 || s == 4);
        assert_eq!(a.rows, 2);
        assert_eq!(a.get(1), &[4.0, 1.0, 2.0]);
    }

    fn base_bytes(rows: usize, dim: usize) -> Vec<u8> {
        let stride = stride_for(dim);
        let mut out = Vec::new();
        for r in 0..rows {
            for c in 0..stride {
                let x = if c < dim { (r * 10 + c) as f32 } else { 0.0 };
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
        out
    }

    #[test]
    fn base_rows_are_read_in_place_and_new_rows_follow() {
        let mut a = VectorArena::with_base(3, Bytes::from(base_bytes(2, 3)), 2);
        assert!(a.base.is_some(), "an aligned Vec is used in place");
        assert!(!a.is_writable(1) && a.is_writable(2));
        a.push(&[7.0, 8.0, 9.0]);
        assert_eq!(a.get(1), &[10.0, 11.0, 12.0]);
        assert_eq!(a.get(2), &[7.0, 8.0, 9.0]);
        a.retain(|s| s != 0);
        assert!(a.base.is_none());
        assert_eq!(a.get(0), &[10.0, 11.0, 12.0]);
        assert_eq!(a.get(1), &[7.0, 8.0, 9.0]);
    }

    #[test]
    fn a_misaligned_base_is_copied() {
        let mut raw = vec![0u8];
        raw.extend(base_bytes(2, 3));
        let bytes = Bytes::from(raw).slice(1..2 * 16 * 4 + 1);
        let a = VectorArena::with_base(3, bytes, 2);
        assert!(a.base.is_none());
        assert_eq!(a.get(1), &[10.0, 11.0, 12.0]);
    }
}
