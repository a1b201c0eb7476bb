//! The vector arena: every vector of the database in 64-byte-aligned rows, addressed by slot.
//!
//! Rows are padded to a multiple of 16 floats (one cache line) so every vector starts on a cache
//! line and a scan walks memory strictly forward. For the usual embedding sizes (128, 384, 768,
//! 1536) the padding is zero. Padding floats are 0.0 and never read by the kernels, which see
//! only the first `dim` floats of a row.
//!
//! The first `base_rows` rows may live in a *base*: the vectors section of a mapped segment,
//! laid out exactly like these rows, used in place (zero-copy open). Where the segment cannot
//! be mapped (the browser) and its vectors are to stay on disk, the base is read instead a few
//! rows at a time, on first use, through a [`RowReader`] (see [`LazyBase`]). Base rows are
//! read-only; rows appended after open live in `chunks`, owned and writable.
//!
//! Owned rows are kept in chunks of a fixed number of rows (about a MiB each), never in one
//! growing block: growing a block copies it, and both copies exist for a moment. Only the first
//! chunk grows (so a small database stays small), up to the size of the others. Natively the
//! old one goes back to the system, but WebAssembly memory never shrinks, so in the browser
//! each growth left its old block behind: 100K x 384 vectors loaded 1,000 at a time took 473
//! MiB of wasm memory for 203 MiB held.

use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::OnceLock;

use bytemuck::{Pod, Zeroable};

use crate::bytes::Bytes;
use crate::error::{Error, Result};

const FLOATS_PER_LINE: usize = 16;

/// One cache line of floats; owned chunks are slices of these, which is what aligns them.
#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C, align(64))]
struct Line([f32; FLOATS_PER_LINE]);

/// Row length in floats for vectors of `dim` floats.
pub(crate) fn stride_for(dim: usize) -> usize {
    dim.div_ceil(FLOATS_PER_LINE).max(1) * FLOATS_PER_LINE
}

/// Bytes an owned chunk holds at most: small beside a database, large beside a row.
const CHUNK_BYTES: usize = 1 << 20;

/// Reads rows of the base without touching its mapping: the persistence layer implements it
/// over the segment file (positional reads) for databases that keep their vectors on disk
/// (`EngineConfig::vectors_on_disk`). Read so, a row passes through the operating system's
/// cache into a buffer of ours and never becomes a resident page of the process.
pub(crate) trait RowReader: Send + Sync {
    /// Fills `out` with the floats of the base from the start of row `row` on: `dim` of them
    /// for one vector, or whole rows (`stride` floats each) for several.
    fn read_row(&self, row: usize, out: &mut [f32]) -> Result<()>;
}

/// Bytes of base rows read at a time into a lazy base: a page, as a mapping would fault in.
const LAZY_BLOCK_BYTES: usize = 4096;

/// Base rows that are not in memory and cannot be mapped, read through the arena's
/// [`RowReader`] a block at a time on first use and kept until the engine is rebuilt (after
/// the next checkpoint, by the facade). Reads happen deep in graph walks and inserts, which
/// cannot fail; so a failed read gives a row of zeros and is counted, and each operation that
/// may read checks the count before it returns or commits anything (see
/// [`VectorArena::failed_since`]).
struct LazyBase {
    blocks: Vec<OnceLock<Box<[Line]>>>,
    rows_per_block: usize,
    loaded_lines: AtomicUsize,
    failures: AtomicUsize,
    first_failure: OnceLock<Error>,
    zeros: Box<[f32]>,
}

impl LazyBase {
    fn new(rows: usize, stride: usize) -> Self {
        let rows_per_block = (LAZY_BLOCK_BYTES / (stride * 4)).max(1);
        LazyBase {
            blocks: (0..rows.div_ceil(rows_per_block))
                .map(|_| OnceLock::new())
                .collect(),
            rows_per_block,
            loaded_lines: AtomicUsize::new(0),
            failures: AtomicUsize::new(0),
            first_failure: OnceLock::new(),
            zeros: vec![0.0; stride].into_boxed_slice(),
        }
    }

    /// Base row `slot` (of `rows`), its block read first if need be.
    fn row(&self, reader: &dyn RowReader, slot: usize, rows: usize, stride: usize) -> &[f32] {
        let b = slot / self.rows_per_block;
        let block = match self.blocks[b].get() {
            Some(block) => block,
            None => {
                let first = b * self.rows_per_block;
                let n = self.rows_per_block.min(rows - first);
                let mut lines = vec![Line::zeroed(); n * stride / FLOATS_PER_LINE];
                if !self.read(reader, first, &mut lines) {
                    return &self.zeros;
                }
                // Another thread may have read it meanwhile: the first copy stays.
                if self.blocks[b].set(lines.into_boxed_slice()).is_ok() {
                    self.loaded_lines
                        .fetch_add(n * stride / FLOATS_PER_LINE, Relaxed);
                }
                self.blocks[b].get().expect("set just above")
            }
        };
        let floats: &[f32] = bytemuck::cast_slice(block);
        let start = (slot % self.rows_per_block) * stride;
        &floats[start..start + stride]
    }

    /// Reads whole rows from `first` on into `lines`; whether it could. A failed read is
    /// counted and leaves zeros.
    fn read(&self, reader: &dyn RowReader, first: usize, lines: &mut [Line]) -> bool {
        match reader.read_row(first, bytemuck::cast_slice_mut(lines)) {
            Ok(()) => true,
            Err(e) => {
                lines.fill(Line::zeroed());
                // Set before it is counted (released with the count), so whoever sees the
                // count finds an error to report.
                let _ = self.first_failure.set(e);
                self.failures.fetch_add(1, Release);
                false
            }
        }
    }

    /// Whether `slot`'s block is held.
    fn holds(&self, slot: usize) -> bool {
        self.blocks[slot / self.rows_per_block].get().is_some()
    }

    fn held_bytes(&self) -> usize {
        self.loaded_lines.load(Relaxed) * std::mem::size_of::<Line>()
    }
}

/// The most bytes of a lazy base's rows held before they are let go: a sixteenth of the base,
/// from 256 KiB to 64 MiB. Graph inserts read the rows around each new point (several MiB for
/// the first ones into a large database), so without a bound a few hundred writes would hold
/// most of a base that was to stay on disk.
fn held_reads_budget(base_bytes: usize) -> usize {
    (base_bytes / 16).clamp(256 << 10, 64 << 20)
}

/// Bytes of base rows an exact scan reads at a time into a buffer of its own (not kept).
const SCAN_WINDOW_BYTES: usize = 256 << 10;

/// Copies of some rows, one cache-line-aligned row each, from [`VectorArena::read_rows`].
pub(crate) struct RowCopies {
    lines: Vec<Line>,
    stride: usize,
    dim: usize,
}

impl RowCopies {
    /// The `i`-th row copied.
    #[inline]
    pub fn get(&self, i: usize) -> &[f32] {
        let floats: &[f32] = bytemuck::cast_slice(&self.lines);
        &floats[i * self.stride..i * self.stride + self.dim]
    }
}

/// The arena's rows as plain slices; see [`VectorArena::view`].
#[derive(Clone, Copy)]
pub(crate) struct ArenaView<'a> {
    base: &'a [f32],
    /// The base when it is read on first use, with its reader.
    lazy: Option<(&'a LazyBase, &'a dyn RowReader)>,
    chunks: &'a [Vec<Line>],
    base_rows: usize,
    /// log2 of the rows per chunk.
    chunk_shift: u32,
    stride: usize,
    dim: usize,
}

impl<'a> ArenaView<'a> {
    /// The vector in `slot`.
    #[inline(always)]
    pub fn get(&self, slot: usize) -> &'a [f32] {
        let (floats, row): (&[f32], usize) = if slot < self.base_rows {
            if let Some((lazy, reader)) = self.lazy {
                return &lazy.row(reader, slot, self.base_rows, self.stride)[..self.dim];
            }
            (self.base, slot)
        } else {
            let row = slot - self.base_rows;
            (
                bytemuck::cast_slice(&self.chunks[row >> self.chunk_shift]),
                row & ((1 << self.chunk_shift) - 1),
            )
        };
        let start = row * self.stride;
        &floats[start..start + self.dim]
    }
}

/// Storage of fixed-dimension vectors in aligned rows, addressed by slot.
pub(crate) struct VectorArena {
    dim: usize,
    /// Row length in floats (a multiple of 16, at least `dim`).
    stride: usize,
    /// Read-only rows `0..base_rows`, as little-endian f32 (a mapped segment section).
    base: Option<Bytes>,
    base_rows: usize,
    /// Owned rows `base_rows..rows`, `1 << chunk_shift` to a chunk (the last one partly used).
    chunks: Vec<Vec<Line>>,
    chunk_shift: u32,
    rows: usize,
    /// Where base rows are read when they are to stay out of memory (see [`RowReader`]).
    reader: Option<Box<dyn RowReader>>,
    /// The base rows read on first use, when the base is not in memory.
    lazy: Option<LazyBase>,
}

impl VectorArena {
    pub fn new(dim: usize) -> Self {
        let stride = stride_for(dim);
        let rows_per_chunk = (CHUNK_BYTES / (stride * 4)).max(1);
        VectorArena {
            dim,
            stride,
            base: None,
            base_rows: 0,
            chunks: Vec::new(),
            chunk_shift: rows_per_chunk.ilog2(),
            rows: 0,
            reader: None,
            lazy: None,
        }
    }

    /// An arena whose first `rows` rows are not in memory: they are read through `reader` on
    /// first use (see [`LazyBase`]), and re-scoring reads them as [`Self::set_reader`] says.
    pub fn lazy(dim: usize, rows: usize, reader: Box<dyn RowReader>) -> Self {
        let mut arena = VectorArena::new(dim);
        arena.lazy = Some(LazyBase::new(rows, arena.stride));
        arena.reader = Some(reader);
        arena.base_rows = rows;
        arena.rows = rows;
        arena
    }

    /// How many reads of a lazy base have failed so far: an operation notes it before it
    /// starts and passes it to [`Self::failed_since`] before it returns or commits anything.
    pub fn read_failures(&self) -> usize {
        self.lazy
            .as_ref()
            .map_or(0, |lazy| lazy.failures.load(Acquire))
    }

    /// Fails with the first read error if a read of a lazy base failed since `before` (its
    /// rows read as zeros meanwhile).
    pub fn failed_since(&self, before: usize) -> Result<()> {
        match &self.lazy {
            Some(lazy) if lazy.failures.load(Acquire) > before => Err(lazy
                .first_failure
                .get()
                .cloned()
                .expect("a failure is set before it is counted")),
            _ => Ok(()),
        }
    }

    /// Copies the vector in `slot` into `out` (`dim` floats): a base row kept on disk is read
    /// through the reader without being kept (a checkpoint streams every row so).
    pub fn copy_row(&self, slot: usize, out: &mut [f32]) -> Result<()> {
        match &self.reader {
            Some(reader) if slot < self.base_rows => reader.read_row(slot, out),
            _ => {
                out.copy_from_slice(self.get(slot));
                Ok(())
            }
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

    /// Reads base rows through `reader` in [`VectorArena::read_rows`] from now on.
    pub fn set_reader(&mut self, reader: Box<dyn RowReader>) {
        self.reader = Some(reader);
    }

    /// Whether base rows are read through a [`RowReader`] rather than their mapping.
    pub fn reads_base(&self) -> bool {
        self.reader.is_some() && self.base_rows > 0
    }

    /// Copies of the rows of `slots`, in order: base rows through the reader when there is
    /// one (a read each), the others from memory.
    pub fn read_rows(&self, slots: impl ExactSizeIterator<Item = u32>) -> Result<RowCopies> {
        let per_row = self.lines_per_row();
        let mut copies = RowCopies {
            lines: vec![Line::zeroed(); slots.len() * per_row],
            stride: self.stride,
            dim: self.dim,
        };
        let floats: &mut [f32] = bytemuck::cast_slice_mut(&mut copies.lines);
        for (row, slot) in floats.chunks_exact_mut(self.stride).zip(slots) {
            let out = &mut row[..self.dim];
            match &self.reader {
                Some(reader) if (slot as usize) < self.base_rows => {
                    reader.read_row(slot as usize, out)?
                }
                _ => out.copy_from_slice(self.get(slot as usize)),
            }
        }
        Ok(copies)
    }

    fn lines_per_row(&self) -> usize {
        self.stride / FLOATS_PER_LINE
    }

    fn rows_per_chunk(&self) -> usize {
        1 << self.chunk_shift
    }

    fn lines_per_chunk(&self) -> usize {
        self.rows_per_chunk() * self.lines_per_row()
    }

    /// Makes room for `additional` more rows: in the chunk list, and in the first chunk while
    /// it is still growing (exactly, up to a whole chunk). Later chunks come whole as rows
    /// arrive; none is ever copied.
    pub fn reserve(&mut self, additional: usize) {
        let owned = self.rows - self.base_rows + additional;
        let chunks = owned.div_ceil(self.rows_per_chunk());
        self.chunks
            .reserve_exact(chunks.saturating_sub(self.chunks.len()));
        if self.chunks.len() <= 1 {
            let lines = (owned * self.lines_per_row()).min(self.lines_per_chunk());
            if self.chunks.is_empty() {
                self.chunks.push(Vec::new());
            }
            let first = &mut self.chunks[0];
            first.reserve_exact(lines.saturating_sub(first.len()));
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
            lazy: self.lazy.as_ref().zip(self.reader.as_deref()),
            chunks: &self.chunks,
            base_rows: self.base_rows,
            chunk_shift: self.chunk_shift,
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
        let chunk = &mut self.chunks[row >> self.chunk_shift];
        let floats: &mut [f32] = bytemuck::cast_slice_mut(chunk);
        let start = (row & ((1 << self.chunk_shift) - 1)) * stride;
        &mut floats[start..start + dim]
    }

    /// Appends a row and returns its slot. `v.len()` must be `dim`.
    pub fn push(&mut self, v: &[f32]) -> usize {
        debug_assert_eq!(v.len(), self.dim);
        let owned = self.rows - self.base_rows;
        let (per_chunk, per_row) = (self.lines_per_chunk(), self.lines_per_row());
        if self.chunks.is_empty() {
            self.chunks.push(Vec::new());
        } else if owned > 0 && owned.is_multiple_of(self.rows_per_chunk()) {
            self.chunks.push(Vec::with_capacity(per_chunk));
        }
        let chunk = self.chunks.last_mut().expect("a chunk was pushed above");
        if chunk.len() == chunk.capacity() {
            // Only the first chunk is ever short of room: it doubles, up to a whole chunk.
            let lines = (2 * chunk.len()).clamp(per_row, per_chunk);
            chunk.reserve_exact(lines - chunk.len());
        }
        chunk.resize(chunk.len() + per_row, Line::zeroed());
        let slot = self.rows;
        self.rows += 1;
        self.get_mut(slot).copy_from_slice(v);
        slot
    }

    /// The rows for which `keep(slot)` holds, in order, all in owned memory (compaction puts
    /// them in the arena's place, releasing the base). Fails if a row kept on disk cannot be
    /// read.
    pub fn retained(&self, keep: impl Fn(usize) -> bool) -> Result<VectorArena> {
        let mut kept = VectorArena::new(self.dim);
        kept.reserve((0..self.rows).filter(|&s| keep(s)).count());
        let mut row = vec![0.0; self.dim];
        for slot in (0..self.rows).filter(|&s| keep(s)) {
            self.copy_row(slot, &mut row)?;
            kept.push(&row);
        }
        Ok(kept)
    }

    /// How many rows there are.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Whether the base is read on first use (kept on disk, not mapped).
    pub fn reads_base_lazily(&self) -> bool {
        self.lazy.is_some()
    }

    /// Whether the base rows read on first use hold more than their budget (see
    /// [`Self::release_reads`]); always false without a lazy base.
    pub fn holds_too_many_reads(&self) -> bool {
        self.lazy.as_ref().is_some_and(|lazy| {
            lazy.held_bytes() > held_reads_budget(self.base_rows * self.stride * 4)
        })
    }

    /// Lets go of the base rows read on first use when they hold more than their budget (a
    /// sixteenth of the base, at most 64 MiB); they are read again when next needed. So a
    /// database that keeps its vectors on disk stays about its codes and graph in memory
    /// however many writes link to old rows. Needs `&mut`: no row read is borrowed.
    pub fn release_reads(&mut self) {
        if !self.holds_too_many_reads() {
            return;
        }
        if let Some(lazy) = &mut self.lazy {
            lazy.blocks.iter_mut().for_each(|block| drop(block.take()));
            lazy.loaded_lines.store(0, Relaxed);
        }
    }

    /// Calls `f` with each `(slot, item)` of `items` (in ascending slots, for speed) and the
    /// slot's vector. Base rows kept on disk and not held are read a window at a time into a
    /// buffer of this call, not kept: an exact scan reads a database on disk through once
    /// without holding it. A failed read gives zeros, counted as for any read of the base.
    pub fn scan_rows<T>(
        &self,
        items: impl Iterator<Item = (usize, T)>,
        mut f: impl FnMut(usize, T, &[f32]),
    ) {
        let view = self.view();
        let (Some(lazy), Some(reader)) = (&self.lazy, self.reader.as_deref()) else {
            items.for_each(|(slot, item)| f(slot, item, view.get(slot)));
            return;
        };
        let per_window = (SCAN_WINDOW_BYTES / (self.stride * 4)).max(1);
        let mut window = Vec::new();
        let mut in_window = 0..0;
        for (slot, item) in items {
            if slot >= self.base_rows || lazy.holds(slot) {
                f(slot, item, view.get(slot));
                continue;
            }
            if !in_window.contains(&slot) {
                in_window = slot..(slot + per_window).min(self.base_rows);
                window.resize(in_window.len() * self.lines_per_row(), Line::zeroed());
                lazy.read(reader, slot, &mut window);
            }
            let floats: &[f32] = bytemuck::cast_slice(&window);
            let start = (slot - in_window.start) * self.stride;
            f(slot, item, &floats[start..start + self.dim]);
        }
    }

    /// Bytes of owned memory, including spare capacity (mapped base rows are not counted: they
    /// are the operating system's page cache, shared and evictable).
    pub fn allocated_bytes(&self) -> usize {
        let lazy = self.lazy.as_ref().map_or(0, |lazy| {
            lazy.loaded_lines.load(Relaxed) * std::mem::size_of::<Line>()
                + lazy.blocks.capacity() * std::mem::size_of::<OnceLock<Box<[Line]>>>()
        });
        self.chunks.iter().map(Vec::capacity).sum::<usize>() * std::mem::size_of::<Line>()
            + self.chunks.capacity() * std::mem::size_of::<Vec<Line>>()
            + lazy
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
        let floats: &[f32] = bytemuck::cast_slice(&a.chunks[0]);
        assert!(floats[3..16].iter().all(|&x| x == 0.0));
        a = a.retained(|s| s == 0 || s == 4).unwrap();
        assert_eq!(a.rows, 2);
        assert_eq!(a.get(1), &[4.0, 1.0, 2.0]);
    }

    #[test]
    fn owned_rows_fill_chunks_that_never_move() {
        let mut a = VectorArena::new(3);
        let per_chunk = a.rows_per_chunk();
        assert_eq!(per_chunk * a.stride * 4, CHUNK_BYTES);
        let rows = 2 * per_chunk + 5;
        let mut first_of_second = None;
        for i in 0..rows {
            a.push(&[i as f32, -(i as f32), 1.0]);
            if i == per_chunk {
                first_of_second = Some(a.get(i).as_ptr());
            }
        }
        assert_eq!(
            a.get(per_chunk).as_ptr(),
            first_of_second.unwrap(),
            "rows past the first chunk stay where they were written"
        );
        assert_eq!(a.chunks.len(), 3);
        assert!(a.chunks[..2]
            .iter()
            .all(|c| c.capacity() * 64 == CHUNK_BYTES));
        for i in [0, per_chunk - 1, per_chunk, 2 * per_chunk, rows - 1] {
            assert_eq!(a.get(i), &[i as f32, -(i as f32), 1.0]);
            assert_eq!(a.view().get(i), a.get(i));
        }
        a.get_mut(per_chunk)[2] = 5.0;
        assert_eq!(
            a.get(per_chunk),
            &[per_chunk as f32, -(per_chunk as f32), 5.0]
        );
    }

    #[test]
    fn a_small_arena_takes_what_its_rows_need() {
        let mut a = VectorArena::new(384);
        a.reserve(10);
        for i in 0..10 {
            a.push(&[i as f32; 384]);
        }
        let row = a.stride * 4;
        let list = a.chunks.capacity() * std::mem::size_of::<Vec<Line>>();
        assert_eq!(a.allocated_bytes() - list, 10 * row);
        a.push(&[1.0; 384]);
        assert_eq!(a.chunks[0].capacity() * 64, 20 * row, "then it doubles");
        assert_eq!(a.get(10), &[1.0; 384]);
        assert_eq!(a.get(3), &[3.0; 384]);
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
        a = a.retained(|s| s != 0).unwrap();
        assert!(a.base.is_none());
        assert_eq!(a.get(0), &[10.0, 11.0, 12.0]);
        assert_eq!(a.get(1), &[7.0, 8.0, 9.0]);
    }

    /// Base rows in memory, read as a file would be; reads fail while `failing` is set.
    struct Rows {
        floats: Vec<f32>,
        failing: std::sync::Arc<std::sync::atomic::AtomicBool>,
        reads: std::sync::Arc<AtomicUsize>,
    }

    impl RowReader for Rows {
        fn read_row(&self, row: usize, out: &mut [f32]) -> Result<()> {
            self.reads.fetch_add(1, Relaxed);
            if self.failing.load(Relaxed) {
                return Err(Error::io(
                    "read",
                    "seg-1",
                    std::io::Error::other("bad sector"),
                ));
            }
            let at = row * stride_for(3);
            out.copy_from_slice(&self.floats[at..at + out.len()]);
            Ok(())
        }
    }

    #[test]
    fn a_lazy_base_reads_a_block_on_first_use_and_reports_failed_reads() {
        let rows = 1000;
        let floats: Vec<f32> = bytemuck::cast_slice(&base_bytes(rows, 3)).to_vec();
        let failing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reads = std::sync::Arc::new(AtomicUsize::new(0));
        let reader = Rows {
            floats,
            failing: failing.clone(),
            reads: reads.clone(),
        };
        let mut a = VectorArena::lazy(3, rows, Box::new(reader));
        let bookkeeping = a.allocated_bytes();
        assert_eq!(a.mapped_bytes(), 0);
        assert_eq!(a.get(5), &[50.0, 51.0, 52.0]);
        // 4 KiB blocks of 16-float rows: 64 rows a block, read once.
        assert_eq!(a.get(63), &[630.0, 631.0, 632.0]);
        assert_eq!(reads.load(Relaxed), 1);
        assert_eq!(a.allocated_bytes(), bookkeeping + 4096);
        a.push(&[1.0, 2.0, 3.0]);
        assert_eq!(a.get(rows), &[1.0, 2.0, 3.0]);

        let before = a.read_failures();
        failing.store(true, Relaxed);
        assert_eq!(a.get(999), &[0.0; 3], "a failed read gives zeros");
        assert_eq!(a.get(5), &[50.0, 51.0, 52.0], "a block read stays");
        let err = a.failed_since(before).unwrap_err();
        assert!(err.to_string().contains("bad sector"), "{err}");
        assert!(a.retained(|_| true).is_err());
        assert!(a.lazy.is_some(), "a failed compaction changes nothing");
        assert_eq!(a.get(rows), &[1.0, 2.0, 3.0]);
        failing.store(false, Relaxed);
        // Not kept: the block is read again once the disk answers.
        let before = a.read_failures();
        assert_eq!(a.get(999), &[9990.0, 9991.0, 9992.0]);
        assert!(a.failed_since(before).is_ok());
        let mut row = [0.0; 3];
        a.copy_row(998, &mut row).unwrap();
        assert_eq!(row, [9980.0, 9981.0, 9982.0]);
        a = a.retained(|s| s % 2 == 0).unwrap();
        assert_eq!(a.get(499), &[9980.0, 9981.0, 9982.0]);
    }

    /// Rows read on first use are let go past their budget (here 256 KiB, the least) and read
    /// again when next needed; a scan reads the base through a window of its own, holding
    /// nothing, and gives the rows a lookup gives.
    #[test]
    fn reads_of_a_lazy_base_are_let_go_past_their_budget_and_scans_hold_none() {
        let rows = 20_000; // 1.28 MB of 64-byte rows: a budget of 256 KiB
        let floats: Vec<f32> = bytemuck::cast_slice(&base_bytes(rows, 3)).to_vec();
        let reads = std::sync::Arc::new(AtomicUsize::new(0));
        let reader = Rows {
            floats,
            failing: Default::default(),
            reads: reads.clone(),
        };
        let mut a = VectorArena::lazy(3, rows, Box::new(reader));
        a.push(&[1.0, 2.0, 3.0]);
        let bookkeeping = a.allocated_bytes();
        let mut seen = 0;
        a.scan_rows((0..=rows).map(|s| (s, ())), |slot, (), v| {
            let want = if slot == rows {
                [1.0, 2.0, 3.0]
            } else {
                [
                    slot as f32 * 10.0,
                    slot as f32 * 10.0 + 1.0,
                    slot as f32 * 10.0 + 2.0,
                ]
            };
            assert_eq!(v, want, "slot {slot}");
            seen += 1;
        });
        assert_eq!(seen, rows + 1);
        assert_eq!(a.allocated_bytes(), bookkeeping, "a scan holds nothing");
        // 256 KiB windows of 64-byte rows: 4,096 rows a read.
        assert_eq!(reads.load(Relaxed), rows.div_ceil(4096));

        // 64 blocks of 4 KiB: within the budget, kept.
        for slot in (0..64 * 64).step_by(64) {
            a.get(slot);
        }
        assert!(!a.holds_too_many_reads());
        a.release_reads();
        assert_eq!(a.allocated_bytes(), bookkeeping + 64 * 4096);
        // Past it (65 more blocks), let go; read again when needed.
        for slot in (64 * 64..129 * 64).step_by(64) {
            a.get(slot);
        }
        assert!(a.holds_too_many_reads());
        a.release_reads();
        assert_eq!(a.allocated_bytes(), bookkeeping);
        let before = reads.load(Relaxed);
        assert_eq!(a.get(70), &[700.0, 701.0, 702.0]);
        assert_eq!(reads.load(Relaxed), before + 1);
        // A block held is used by a scan as it is, without a read.
        let before = reads.load(Relaxed);
        a.scan_rows([(70, ())].into_iter(), |_, (), v| {
            assert_eq!(v, [700.0, 701.0, 702.0])
        });
        assert_eq!(reads.load(Relaxed), before);
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
