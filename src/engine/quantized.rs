//! Scalar quantization (SQ8) of the graph's vectors: a byte per dimension instead of four, so a
//! beam search loads a quarter of the memory per neighbour and scores it with integer kernels.
//! Keys from codes are approximate; the search re-scores its best candidates with the `f32`
//! originals (`search.rs`), so the scores it returns are exact.
//!
//! Every component maps through one affine range, `x ≈ low + step * code` (codes 0..=255),
//! chosen to cover the central [`QUANTILE`] of a sample of components (the rest clamp to its
//! ends, as Qdrant's `quantile` does). A query is quantized per search to `i8` with its own
//! scale (`q ≈ scale * q8`), so a key is one integer dot product and a few multiplications:
//!
//! ```text
//! q·x   ≈ low * Σq + step * scale * Σ q8_i * code_i
//! |q-x|² ≈ |q|² + |x|² - 2 q·x          (|x|² exact, kept beside the codes)
//! ```
//!
//! Rows are padded with zero codes to whole cache lines, and the prepared query with zeros to
//! the same length, so kernels see no tail and padding adds nothing.

use bytemuck::{Pod, Zeroable};

use super::hnsw::Scorer;
use super::in_place::InPlace;
use crate::bytes::Bytes;
use crate::distance::{self, CodeKernel};
use crate::point::Distance;

const BYTES_PER_LINE: usize = 64;

/// One cache line of codes; rows are whole lines, which is what aligns them.
#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C, align(64))]
struct Line([u8; BYTES_PER_LINE]);

/// Share of the sampled components that the range covers (Qdrant's default `quantile`).
const QUANTILE: f64 = 0.99;
/// Vectors sampled to choose the range.
const TRAIN_SAMPLE: usize = 2_000;
/// Components of the sampled vectors the range's quantiles are read from.
const COMPONENT_SAMPLE: usize = 65_536;
/// Up to this many rows the range is chosen again each time the rows double (see
/// [`Sq8::wants_retraining`]): an empty database's first points say little of the data to come.
const RETRAIN_UP_TO: usize = 10_000;

/// A `u32` that orders as `x` does among finite floats (the sign bit flipped for positives,
/// every bit for negatives).
fn sort_key(x: f32) -> u32 {
    let bits = x.to_bits();
    match bits >> 31 {
        0 => bits | 1 << 31,
        _ => !bits,
    }
}

fn from_sort_key(key: u32) -> f32 {
    f32::from_bits(match key >> 31 {
        1 => key & !(1 << 31),
        _ => !key,
    })
}

/// The distances codes can estimate: through a dot product (Cosine over unit vectors, Dot,
/// and Euclid with norms). Manhattan has no such form; the configuration refuses it.
#[derive(Clone, Copy, PartialEq)]
enum Form {
    Dot,
    Euclid,
}

/// The codes of rows `0..rows()` (the graph's nodes), with their range.
pub(crate) struct Sq8 {
    dim: usize,
    /// Bytes per row: `dim` rounded up to whole lines.
    stride: usize,
    low: f32,
    step: f32,
    form: Form,
    kernel: CodeKernel,
    /// The rows, used in place from a segment until the first push copies them.
    lines: InPlace<Line>,
    rows: usize,
    /// Each row's exact squared norm, for Euclid (empty otherwise).
    norms: InPlace<f32>,
    /// How many rows there were when the range was chosen.
    trained_on: usize,
}

/// The kind of codes a segment's codes section holds (the only one so far).
pub(crate) const SQ8_KIND: u32 = 1;
/// Bytes before a codes section's rows: kind, stride, range, training size (FORMAT.md).
pub(crate) const SECTION_PREAMBLE: usize = 64;

/// A codes section as a segment holds it, checked for its own consistency (`persist`).
pub(crate) struct StoredCodes {
    pub rows: usize,
    pub stride: usize,
    pub low: f32,
    pub step: f32,
    pub trained_on: usize,
    /// `rows * stride` bytes.
    pub codes: Bytes,
    /// `rows` little-endian f32 for Euclid, else empty.
    pub norms: Bytes,
}

/// A query prepared for [`Sq8`]: quantized, with what the key formula needs.
pub(crate) struct CodeQuery {
    codes: Vec<i8>,
    scale: f32,
    sum: f32,
    norm2: f32,
}

impl Sq8 {
    /// Empty codes whose range covers the components of `rows` vectors (`row(i)` for up to
    /// [`TRAIN_SAMPLE`] of them, spread evenly); `None` for Manhattan, which codes cannot
    /// estimate.
    pub fn train<'a>(
        distance: Distance,
        dim: usize,
        rows: usize,
        row: impl Fn(usize) -> &'a [f32],
    ) -> Option<Sq8> {
        let form = match distance {
            Distance::Cosine | Distance::Dot => Form::Dot,
            Distance::Euclid => Form::Euclid,
            Distance::Manhattan => return None,
        };
        // Components of evenly spread vectors, evenly thinned, as keys that sort like the
        // floats: sorted with the `u32` sort the engine has anyway (a selection over `f32`
        // would add its own code to the .wasm).
        let every = rows.div_ceil(TRAIN_SAMPLE).max(1);
        let sampled = rows.div_ceil(every) * dim;
        let mut keys: Vec<u32> = (0..rows)
            .step_by(every)
            .flat_map(|i| row(i).iter().copied())
            .step_by(sampled.div_ceil(COMPONENT_SAMPLE).max(1))
            .map(sort_key)
            .collect();
        keys.sort_unstable();
        let (low, high) = match keys.len() {
            0 => (0.0, 0.0),
            n => {
                let cut = ((1.0 - QUANTILE) / 2.0 * n as f64) as usize;
                (from_sort_key(keys[cut]), from_sort_key(keys[n - 1 - cut]))
            }
        };
        // A range of one value (all components equal) still needs a step to divide by.
        let step = match high > low {
            true => (high - low) / 255.0,
            false => 1.0,
        };
        Some(Sq8 {
            dim,
            stride: dim.div_ceil(BYTES_PER_LINE) * BYTES_PER_LINE,
            low,
            step,
            form,
            kernel: distance::best().code_dot,
            lines: InPlace::Owned(Vec::new()),
            rows: 0,
            norms: InPlace::Owned(Vec::new()),
            trained_on: rows,
        })
    }

    /// The codes a segment stored (see `FORMAT.md`), used in place; `None` when they do not
    /// fit this database (another distance form, dimension or row count: they are then coded
    /// afresh).
    pub fn from_stored(distance: Distance, dim: usize, stored: StoredCodes) -> Option<Sq8> {
        let mut codes = Sq8::train(distance, dim, 0, |_| &[])?;
        let rows = stored.rows;
        let fits = stored.stride == codes.stride
            && stored.codes.len() == rows * codes.stride
            && stored.norms.len()
                == if codes.form == Form::Euclid {
                    rows * 4
                } else {
                    0
                };
        if !fits {
            return None;
        }
        codes.low = stored.low;
        codes.step = stored.step;
        codes.trained_on = stored.trained_on;
        codes.rows = rows;
        codes.lines = InPlace::new(stored.codes);
        codes.norms = InPlace::new(stored.norms);
        Some(codes)
    }

    /// The codes section of a segment whose row `r` is slot `slots[r]` (see `FORMAT.md`).
    pub fn section(&self, slots: &[u32]) -> Vec<u8> {
        let norms = match self.form {
            Form::Euclid => slots.len() * 4,
            Form::Dot => 0,
        };
        let mut out = Vec::with_capacity(SECTION_PREAMBLE + slots.len() * self.stride + norms);
        out.extend_from_slice(&SQ8_KIND.to_le_bytes());
        out.extend_from_slice(&(self.stride as u32).to_le_bytes());
        out.extend_from_slice(&self.low.to_le_bytes());
        out.extend_from_slice(&self.step.to_le_bytes());
        out.extend_from_slice(&(self.trained_on as u64).to_le_bytes());
        out.resize(SECTION_PREAMBLE, 0);
        for &slot in slots {
            out.extend_from_slice(self.row(slot));
        }
        if self.form == Form::Euclid {
            for &slot in slots {
                out.extend_from_slice(&self.norms.slice()[slot as usize].to_le_bytes());
            }
        }
        out
    }

    /// Number of rows coded.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Whether the range should be chosen again now that there are `rows` vectors: it was
    /// chosen from fewer than [`RETRAIN_UP_TO`] and they have doubled since.
    pub fn wants_retraining(&self, rows: usize) -> bool {
        self.trained_on < RETRAIN_UP_TO && rows >= 2 * self.trained_on.max(1)
    }

    /// Bytes held on the heap or mapped.
    pub fn bytes(&self) -> usize {
        let held = |lines: usize, norms: usize| lines * BYTES_PER_LINE + norms * 4;
        match (&self.lines, &self.norms) {
            (InPlace::Owned(l), InPlace::Owned(n)) => held(l.capacity(), n.capacity()),
            _ => held(self.lines.slice().len(), self.norms.slice().len()),
        }
    }

    /// Makes room for `rows` rows in all: exactly that many when they are more than half as
    /// many again as there is room for (a bulk load's points arrive in the arena before they
    /// are coded a chunk at a time, so one allocation fits them), else half as many again (so
    /// one row at a time still grows in amortised constant time). Doubling alone held up to 1.75x
    /// the codes' bytes after a bulk load.
    pub fn reserve(&mut self, rows: usize) {
        let per_row = self.stride / BYTES_PER_LINE;
        let lines = self.lines.owned();
        let wanted = rows * per_row;
        if wanted > lines.capacity() {
            let target = wanted.max(lines.capacity() + lines.capacity() / 2);
            lines.reserve_exact(target - lines.len());
        }
        if self.form == Form::Euclid {
            let norms = self.norms.owned();
            if rows > norms.capacity() {
                let target = rows.max(norms.capacity() + norms.capacity() / 2);
                norms.reserve_exact(target - norms.len());
            }
        }
    }

    /// Appends the codes of `v`, the next row.
    pub fn push(&mut self, v: &[f32]) {
        debug_assert_eq!(v.len(), self.dim);
        let start = self.rows * self.stride;
        let lines = self.stride / BYTES_PER_LINE;
        let owned = self.lines.owned();
        owned.extend(std::iter::repeat_n(Line::zeroed(), lines));
        let row = &mut bytemuck::cast_slice_mut::<Line, u8>(owned)[start..][..self.dim];
        let inv = 1.0 / self.step;
        for (code, &x) in row.iter_mut().zip(v) {
            // `as u8` saturates, which clamps components outside the range to its ends.
            *code = ((x - self.low) * inv).round() as u8;
        }
        if self.form == Form::Euclid {
            self.norms.owned().push(v.iter().map(|x| x * x).sum());
        }
        self.rows += 1;
    }

    fn row(&self, slot: u32) -> &[u8] {
        let all = bytemuck::cast_slice::<Line, u8>(self.lines.slice());
        &all[slot as usize * self.stride..][..self.stride]
    }

    /// `query` quantized for these codes.
    pub fn prepare(&self, query: &[f32]) -> CodeQuery {
        let max = query.iter().fold(0f32, |m, x| m.max(x.abs()));
        let scale = match max > 0.0 {
            true => max / 127.0,
            false => 1.0,
        };
        let mut codes = vec![0i8; self.stride];
        for (code, &x) in codes.iter_mut().zip(query) {
            *code = (x / scale).round() as i8;
        }
        CodeQuery {
            codes,
            scale,
            sum: query.iter().sum(),
            norm2: query.iter().map(|x| x * x).sum(),
        }
    }

    /// Scores nodes against a prepared query, for a graph search.
    pub fn scorer<'a>(&'a self, query: &'a CodeQuery) -> CodeScorer<'a> {
        CodeScorer { codes: self, query }
    }
}

/// [`Sq8`] keys of one query: the closeness keys the `f32` vectors give (`-dot`, or the squared
/// distance), approximately.
pub(crate) struct CodeScorer<'a> {
    codes: &'a Sq8,
    query: &'a CodeQuery,
}

impl Scorer for CodeScorer<'_> {
    #[inline]
    fn key(&self, slot: u32) -> f32 {
        let (c, q) = (self.codes, self.query);
        let dot = c.low * q.sum + c.step * q.scale * (c.kernel)(c.row(slot), &q.codes) as f32;
        match c.form {
            Form::Dot => -dot,
            Form::Euclid => q.norm2 + c.norms.slice()[slot as usize] - 2.0 * dot,
        }
    }

    #[inline]
    fn keys4(&self, slots: [u32; 4]) -> [f32; 4] {
        slots.map(|s| self.key(s))
    }

    #[inline]
    fn prefetch(&self, slot: u32) {
        distance::prefetch(self.codes.row(slot));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic unit vectors (xorshift), so failures reproduce.
    fn unit_vectors(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut s = seed | 1;
        (0..n)
            .map(|_| {
                let mut v: Vec<f32> = (0..dim)
                    .map(|_| {
                        s ^= s << 13;
                        s ^= s >> 7;
                        s ^= s << 17;
                        (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
                    })
                    .collect();
                distance::normalize(&mut v);
                v
            })
            .collect()
    }

    fn exact_key(distance: Distance, q: &[f32], v: &[f32]) -> f32 {
        match distance {
            Distance::Euclid => q.iter().zip(v).map(|(a, b)| (a - b) * (a - b)).sum(),
            _ => -q.iter().zip(v).map(|(a, b)| a * b).sum::<f32>(),
        }
    }

    #[test]
    fn keys_from_codes_approximate_the_exact_keys_and_rank_alike() {
        for distance in [Distance::Cosine, Distance::Dot, Distance::Euclid] {
            for dim in [3, 64, 100, 384] {
                let vectors = unit_vectors(500, dim, dim as u64);
                let rows: Vec<&[f32]> = vectors.iter().map(Vec::as_slice).collect();
                let mut codes = Sq8::train(distance, dim, rows.len(), |i| rows[i]).unwrap();
                rows.iter().for_each(|v| codes.push(v));
                assert_eq!(codes.rows(), 500);
                let query = &unit_vectors(1, dim, 7 + dim as u64)[0];
                let prepared = codes.prepare(query);
                let scorer = codes.scorer(&prepared);
                let mut worst = 0f32;
                for (slot, v) in rows.iter().enumerate() {
                    let err = (scorer.key(slot as u32) - exact_key(distance, query, v)).abs();
                    worst = worst.max(err);
                }
                // Components of unit vectors span about ±4/sqrt(dim); a code step is 1/255 of
                // that, and errors of both sides average out over the dimensions.
                assert!(worst < 0.05, "{distance:?} dim {dim}: worst error {worst}");
                let four = scorer.keys4([0, 1, 2, 3]);
                assert_eq!(four, [0, 1, 2, 3].map(|s| scorer.key(s)));
            }
        }
        assert!(Sq8::train(Distance::Manhattan, 4, 0, |_| &[]).is_none());
    }

    #[test]
    fn outliers_clamp_to_the_range_and_constant_data_still_codes() {
        let mut spread: Vec<Vec<f32>> = (0..1000).map(|i| vec![(i % 100) as f32 / 100.0]).collect();
        spread[0][0] = 1e6;
        let mut codes = Sq8::train(Distance::Dot, 1, spread.len(), |i| &spread[i]).unwrap();
        // The outlier is outside the central 99%: the range ends near 1.0, not at 1e6.
        assert!(codes.low >= 0.0 && codes.low + 255.0 * codes.step < 1.5);
        codes.push(&[1e6]);
        codes.push(&[-1e6]);
        assert_eq!(codes.row(0)[0], 255);
        assert_eq!(codes.row(1)[0], 0);
        let same = [[0.5f32; 4]; 10];
        let mut codes = Sq8::train(Distance::Euclid, 4, same.len(), |i| &same[i]).unwrap();
        codes.push(&same[0]);
        let q = codes.prepare(&[0.5; 4]);
        assert!(codes.scorer(&q).key(0).abs() < 1e-5);
        let zero = codes.prepare(&[0.0; 4]);
        assert!((codes.scorer(&zero).key(0) - 1.0).abs() < 1e-5);
    }

    #[test]
    fn sort_keys_order_as_the_floats_and_convert_back() {
        let xs = [f32::MIN, -2.5, -1e-30, -0.0, 0.0, 1e-30, 0.5, 3.0, f32::MAX];
        for w in xs.windows(2) {
            assert!(sort_key(w[0]) <= sort_key(w[1]), "{} {}", w[0], w[1]);
        }
        for x in xs {
            assert_eq!(from_sort_key(sort_key(x)).to_bits(), x.to_bits());
        }
    }

    #[test]
    fn the_range_is_chosen_again_while_the_rows_double_up_to_a_bound() {
        let v = [0.5f32; 2];
        let codes = Sq8::train(Distance::Dot, 2, 10, |_| &v).unwrap();
        assert!(!codes.wants_retraining(19));
        assert!(codes.wants_retraining(20));
        let big = Sq8::train(Distance::Dot, 2, RETRAIN_UP_TO, |_| &v).unwrap();
        assert!(!big.wants_retraining(100 * RETRAIN_UP_TO));
    }
}
