//! The vector arena: every vector of the database in one contiguous, 64-byte-aligned buffer.
//!
//! Rows are padded to a multiple of 16 floats (one cache line) so that every vector starts on a
//! cache line and a scan walks memory strictly forward. For the usual embedding sizes (128, 384,
//! 768, 1536) the padding is zero. Padding floats are always 0.0 and never read by the kernels,
//! which see only the first `dim` floats of a row.

use bytemuck::{Pod, Zeroable};

const FLOATS_PER_LINE: usize = 16;

/// One cache line of floats; the arena is a `Vec` of these, which is what aligns it.
#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C, align(64))]
struct Line([f32; FLOATS_PER_LINE]);

/// Contiguous storage of fixed-dimension vectors, addressed by slot.
pub(crate) struct VectorArena {
    dim: usize,
    /// Row length in floats (a multiple of 16, at least `dim`).
    stride: usize,
    lines: Vec<Line>,
    rows: usize,
}

impl VectorArena {
    pub fn new(dim: usize) -> Self {
        VectorArena {
            dim,
            stride: dim.div_ceil(FLOATS_PER_LINE).max(1) * FLOATS_PER_LINE,
            lines: Vec::new(),
            rows: 0,
        }
    }

    fn lines_per_row(&self) -> usize {
        self.stride / FLOATS_PER_LINE
    }

    /// Makes room for `additional` more rows. Grows by half again what is needed rather than
    /// doubling: the arena is most of the database's memory, so doubling could waste half of it,
    /// while growing by less made bulk loads slow (each growth copies and faults in the whole
    /// arena: measured 10x slower upserts at 1/8 headroom than at 1/2).
    pub fn reserve(&mut self, additional: usize) {
        let needed = self.lines.len() + additional * self.lines_per_row();
        if needed > self.lines.capacity() {
            let target = needed + needed / 2;
            self.lines.reserve_exact(target - self.lines.len());
        }
    }

    /// The vector in `slot`.
    #[inline]
    pub fn get(&self, slot: usize) -> &[f32] {
        let floats: &[f32] = bytemuck::cast_slice(&self.lines);
        let start = slot * self.stride;
        &floats[start..start + self.dim]
    }

    /// The vector in `slot`, writable.
    pub fn get_mut(&mut self, slot: usize) -> &mut [f32] {
        let (stride, dim) = (self.stride, self.dim);
        let floats: &mut [f32] = bytemuck::cast_slice_mut(&mut self.lines);
        &mut floats[slot * stride..slot * stride + dim]
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

    /// Moves row `from` to slot `to` (`to < from`), for compaction.
    pub fn move_row(&mut self, from: usize, to: usize) {
        let lpr = self.lines_per_row();
        self.lines
            .copy_within(from * lpr..(from + 1) * lpr, to * lpr);
    }

    /// Drops every row at or after `rows`.
    pub fn truncate(&mut self, rows: usize) {
        self.lines.truncate(rows * self.lines_per_row());
        self.rows = self.rows.min(rows);
    }

    /// Gives back spare capacity (after a compaction).
    pub fn shrink_to_fit(&mut self) {
        self.lines.shrink_to_fit();
    }

    /// Bytes allocated, including spare capacity.
    pub fn allocated_bytes(&self) -> usize {
        self.lines.capacity() * std::mem::size_of::<Line>()
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
        a.move_row(4, 1);
        a.truncate(2);
        assert_eq!(a.rows, 2);
        assert_eq!(a.get(1), &[4.0, 1.0, 2.0]);
    }
}
