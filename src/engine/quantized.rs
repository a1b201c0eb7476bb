//! Quantized copies of the graph's vectors, which a beam search walks by instead of the `f32`
//! originals: less memory per neighbour, scored with integer kernels. Keys from codes are
//! approximate; the search re-scores its best candidates with the originals (`search.rs`), so
//! the scores it returns are exact. Two codings ([`Quantization`]):
//!
//! **SQ8**, a byte per dimension. Every component maps through one affine range,
//! `x ≈ low + step * code` (codes 0..=255), chosen to cover the central [`QUANTILE`] of a
//! sample of components (the rest clamp to its ends, as Qdrant's `quantile` does). A query is
//! quantized per search to `i8` with its own scale (`q ≈ scale * q8`), so a key is one integer
//! dot product and a few multiplications:
//!
//! ```text
//! q·x   ≈ low * Σq + step * scale * Σ q8_i * code_i
//! |q-x|² ≈ |q|² + |x|² - 2 q·x          (|x|² exact, kept beside the codes)
//! ```
//!
//! **Binary**, a bit per dimension: the signs of `r = x - c`, the vector's offset from the
//! nearest `c` of a few centres trained on a sample (k-means; IVF-RaBitQ's way: the estimate's
//! error grows with `|r|`, and offsets from one mean are as long as the clusters are apart).
//! As in RaBitQ (Gao and Long, SIGMOD 2024), `r` is taken to be `|r|² / |r|₁` times its sign
//! vector `s` (the multiple for which `r·s` is exact). The query is kept at [`QUERY_BITS`] bits
//! per dimension, not one, which is what keeps the estimate close enough to walk by, and is
//! quantized once, as its offset from the sample's mean `μ`; each row's centre enters through
//! terms kept beside the row:
//!
//! ```text
//! q·x = q·c + c·r + (q-c)·r,   (q-c)·r ≈ |r|²/|r|₁ * (Σ (q-μ)_i s_i - Σ (c-μ)_i s_i)
//! Σ q̃_i s_i = 2 Σ_{bit i set} q̃_i - Σ q̃_i,   q̃_i = lo + Δ u_i  (u_i < 2^QUERY_BITS)
//! Σ_{bit i set} u_i = Σ_j 2^j popcount(bits & plane_j)    (plane_j: bit j of every u_i)
//! ```
//!
//! so a key is [`QUERY_BITS`] ANDs and popcounts per 64 dimensions; `q·c` is one product per
//! centre and query, and `|r|²/|r|₁`, the bits' popcount, `c·r - |r|²/|r|₁ Σ (c-μ)_i s_i`,
//! `|x|²` and the centre's number are kept beside each row.
//!
//! Rows are padded with zero codes to whole cache lines, and the prepared query with zeros to
//! the same length, so kernels see no tail and padding adds nothing.

use bytemuck::{Pod, Zeroable};

use super::hnsw::Scorer;
use super::in_place::InPlace;
use crate::bytes::Bytes;
use crate::config::Quantization;
use crate::distance::{self, BitKernel, CodeKernel};
use crate::point::Distance;

const BYTES_PER_LINE: usize = 64;

/// One cache line of codes; rows are whole lines, which is what aligns them.
#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C, align(64))]
struct Line([u8; BYTES_PER_LINE]);

/// Share of the sampled components that the SQ8 range covers (Qdrant's default `quantile`).
const QUANTILE: f64 = 0.99;
/// Vectors sampled to choose the SQ8 range.
const TRAIN_SAMPLE: usize = 2_000;
/// Vectors sampled to train the binary centres (and their mean).
const CENTRE_SAMPLE: usize = 8_192;
/// Sampled vectors per binary centre: fewer centres for a smaller sample.
const POINTS_PER_CENTRE: usize = 32;
/// The most binary centres: each costs a product per query and per coded row.
const MAX_CENTRES: usize = 256;
/// Rounds of k-means from the evenly spread first centres.
const KMEANS_ROUNDS: usize = 5;
/// Components of the sampled vectors the SQ8 range's quantiles are read from.
const COMPONENT_SAMPLE: usize = 65_536;
/// Up to this many rows the coding is chosen again each time the rows double (see
/// [`Codes::wants_retraining`]): an empty database's first points say little of the data to
/// come.
const RETRAIN_UP_TO: usize = 10_000;
/// Bits per dimension of a query against binary codes. RaBitQ measured 4 to lose almost
/// nothing against an `f32` query; each bit costs an AND and a popcount per 64 dimensions.
const QUERY_BITS: usize = 4;
/// Floats kept beside each binary row: `|r|²/|r|₁`, the popcount of its bits, the centre's
/// term `c·r - |r|²/|r|₁ Σ (c-μ)_i s_i`, `|x|²`, and the centre's number.
const BINARY_SIDE: usize = 5;

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

/// The squared norm of each `dim`-float row of `rows`.
fn norms(rows: &[f32], dim: usize) -> Vec<f32> {
    let dot = distance::best().dot;
    rows.chunks_exact(dim).map(|c| dot(c, c)).collect()
}

/// The number of the centre nearest to `v` (least `|c|² - 2 v·c`).
fn nearest_centre(centres: &[f32], norms: &[f32], v: &[f32]) -> usize {
    let dot = distance::best().dot;
    let mut best = (0, f32::INFINITY);
    for (c, (centre, norm)) in centres.chunks_exact(v.len()).zip(norms).enumerate() {
        let d = norm - 2.0 * dot(v, centre);
        if d < best.1 {
            best = (c, d);
        }
    }
    best.0
}

/// The distances codes can estimate: through a dot product (Cosine over unit vectors, Dot,
/// and Euclid with norms). Manhattan has no such form; the configuration refuses it.
#[derive(Clone, Copy, PartialEq)]
enum Form {
    Dot,
    Euclid,
}

/// How vectors become codes, with what was learnt from the data.
enum Coder {
    /// A byte per dimension through one affine range.
    Sq8 { low: f32, step: f32 },
    /// A bit per dimension: the signs of the offsets from the nearest of `centres` (each
    /// `dim` floats, with their squared norms); queries are quantized around `mean`.
    Binary {
        mean: Vec<f32>,
        centres: Vec<f32>,
        centre_norms: Vec<f32>,
    },
}

/// The codes of rows `0..rows()` (the graph's nodes), with their coding.
pub(crate) struct Codes {
    dim: usize,
    /// Bytes per row: the codes rounded up to whole lines.
    stride: usize,
    form: Form,
    coder: Coder,
    /// Rows `0..base_rows`: a segment's, used in place and never copied (a row's code does
    /// not change; a coding chosen again codes every row afresh into `lines`).
    base: InPlace<Line>,
    base_rows: usize,
    /// Rows `base_rows..rows`, coded since. Kept apart so that the first write after opening a
    /// large database does not copy every code (a million rows: 366 MiB, held twice over while
    /// it is copied, in WebAssembly memory that never shrinks).
    lines: Vec<Line>,
    rows: usize,
    /// Floats kept per row beside the codes ([`Codes::side_len`] each): for SQ8 the exact
    /// squared norm with Euclid (none otherwise), for binary [`BINARY_SIDE`]; the base's
    /// and the rest's, as for the codes.
    side_base: InPlace<f32>,
    side: Vec<f32>,
    /// How many rows there were when the coding was chosen.
    trained_on: usize,
}

/// The kind of a segment's codes section: SQ8.
pub(crate) const SQ8_KIND: u32 = 1;
/// The kind of a segment's codes section: binary.
pub(crate) const BINARY_KIND: u32 = 2;
/// Bytes before a codes section's rows: kind, stride, coding, training size (FORMAT.md).
pub(crate) const SECTION_PREAMBLE: usize = 64;

/// What a stored codes section learnt from the data.
pub(crate) enum StoredCoder {
    Sq8 { low: f32, step: f32 },
    Binary { mean: Vec<f32>, centres: Vec<f32> },
}

/// A codes section as a segment holds it, checked for its own consistency (`persist`).
pub(crate) struct StoredCodes {
    pub rows: usize,
    pub stride: usize,
    pub coder: StoredCoder,
    pub trained_on: usize,
    /// `rows * stride` bytes.
    pub codes: Bytes,
    /// `rows * side_len` little-endian f32 (see [`side_len`]).
    pub side: Bytes,
}

/// Bytes per row of codes of `dim` dimensions for a section of `kind`.
pub(crate) fn stride(kind: u32, dim: usize) -> usize {
    let bytes = match kind {
        BINARY_KIND => dim.div_ceil(8),
        _ => dim,
    };
    bytes.div_ceil(BYTES_PER_LINE) * BYTES_PER_LINE
}

/// Floats kept per row beside the codes of a section of `kind` for `distance`.
pub(crate) fn side_len(kind: u32, distance: Distance) -> usize {
    match (kind, distance) {
        (BINARY_KIND, _) => BINARY_SIDE,
        (_, Distance::Euclid) => 1,
        _ => 0,
    }
}

/// Bytes of `floats` floats of a binary section (its mean, its centres), padded to whole lines.
pub(crate) fn float_bytes(floats: usize) -> usize {
    (floats * 4).div_ceil(BYTES_PER_LINE) * BYTES_PER_LINE
}

/// A query prepared for [`Codes`]: quantized, with what the key formula needs.
pub(crate) enum CodeQuery {
    Sq8 {
        kernel: CodeKernel,
        codes: Vec<i8>,
        /// `low * Σq`.
        offset: f32,
        /// `step * scale`: one unit of the integer dot product.
        unit: f32,
        norm2: f32,
    },
    Binary {
        kernel: BitKernel,
        /// [`QUERY_BITS`] planes of the query's offsets from the mean, each a row long.
        planes: Vec<u64>,
        low: f32,
        step: f32,
        /// `Σ q̃_i` over the dimensions.
        sum: f32,
        /// `q·c` for every centre `c`.
        centre_dots: Vec<f32>,
        norm2: f32,
    },
}

impl Codes {
    /// Empty codes of `quantization` chosen from the components of `rows` vectors (`row(i)`
    /// for up to [`TRAIN_SAMPLE`] of them, spread evenly); `None` without quantization, or
    /// for Manhattan, which codes cannot estimate.
    pub fn train<'a>(
        quantization: Quantization,
        distance: Distance,
        dim: usize,
        rows: usize,
        row: impl Fn(usize) -> &'a [f32],
    ) -> Option<Codes> {
        let form = match distance {
            Distance::Cosine | Distance::Dot => Form::Dot,
            Distance::Euclid => Form::Euclid,
            Distance::Manhattan => return None,
        };
        let (coder, kind) = match quantization {
            Quantization::None => return None,
            Quantization::Sq8 => {
                let every = rows.div_ceil(TRAIN_SAMPLE).max(1);
                (Self::sq8_range(dim, rows, every, row), SQ8_KIND)
            }
            Quantization::Binary => (Self::binary_centres(dim, rows, row), BINARY_KIND),
        };
        Some(Codes {
            dim,
            stride: stride(kind, dim),
            form,
            coder,
            base: InPlace::Owned(Vec::new()),
            base_rows: 0,
            lines: Vec::new(),
            rows: 0,
            side_base: InPlace::Owned(Vec::new()),
            side: Vec::new(),
            trained_on: rows,
        })
    }

    /// The SQ8 range over the components of every `every`th of `rows` vectors.
    fn sq8_range<'a>(
        dim: usize,
        rows: usize,
        every: usize,
        row: impl Fn(usize) -> &'a [f32],
    ) -> Coder {
        // Components, evenly thinned, as keys that sort like the floats: sorted with the `u32`
        // sort the engine has anyway (a selection over `f32` would add its own code to the
        // .wasm).
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
        Coder::Sq8 { low, step }
    }

    /// The binary centres: k-means over a sample of the `rows` vectors, from centres spread
    /// evenly over it (deterministic, so a database codes alike every time).
    fn binary_centres<'a>(dim: usize, rows: usize, row: impl Fn(usize) -> &'a [f32]) -> Coder {
        let every = rows.div_ceil(CENTRE_SAMPLE).max(1);
        let sample: Vec<&[f32]> = (0..rows).step_by(every).map(row).collect();
        let mut sum = vec![0f64; dim];
        for v in &sample {
            sum.iter_mut().zip(*v).for_each(|(s, &x)| *s += x as f64);
        }
        let n = sample.len().max(1) as f64;
        let mean: Vec<f32> = sum.iter().map(|s| (s / n) as f32).collect();
        let k = (sample.len() / POINTS_PER_CENTRE).clamp(1, MAX_CENTRES);
        let (mut centres, rounds) = match k {
            1 => (mean.clone(), 0),
            _ => {
                let mut spread = Vec::with_capacity(k * dim);
                (0..k).for_each(|c| spread.extend_from_slice(sample[c * sample.len() / k]));
                (spread, KMEANS_ROUNDS)
            }
        };
        for _ in 0..rounds {
            let norms = norms(&centres, dim);
            let mut sums = vec![0f64; k * dim];
            let mut counts = vec![0usize; k];
            for v in &sample {
                let c = nearest_centre(&centres, &norms, v);
                counts[c] += 1;
                let sum = &mut sums[c * dim..][..dim];
                sum.iter_mut().zip(*v).for_each(|(s, &x)| *s += x as f64);
            }
            let sums = sums.chunks_exact(dim).zip(&counts);
            for (centre, (sum, &n)) in centres.chunks_exact_mut(dim).zip(sums) {
                // A centre nothing is nearest to stays where it is.
                if n > 0 {
                    let n = n as f64;
                    centre
                        .iter_mut()
                        .zip(sum)
                        .for_each(|(c, s)| *c = (s / n) as f32);
                }
            }
        }
        let centre_norms = norms(&centres, dim);
        Coder::Binary {
            mean,
            centres,
            centre_norms,
        }
    }

    /// The codes a segment stored (see `FORMAT.md`), used in place; `None` when they do not
    /// fit this database (another coding, distance form, dimension or row count: they are then
    /// coded afresh).
    pub fn from_stored(
        quantization: Quantization,
        distance: Distance,
        dim: usize,
        stored: StoredCodes,
    ) -> Option<Codes> {
        let mut codes = Codes::train(quantization, distance, dim, 0, |_| &[])?;
        let rows = stored.rows;
        codes.coder = match (stored.coder, &codes.coder) {
            (StoredCoder::Sq8 { low, step }, Coder::Sq8 { .. }) => Coder::Sq8 { low, step },
            (StoredCoder::Binary { mean, centres }, Coder::Binary { .. })
                if mean.len() == dim && !centres.is_empty() && centres.len() % dim == 0 =>
            {
                let centre_norms = norms(&centres, dim);
                Coder::Binary {
                    mean,
                    centres,
                    centre_norms,
                }
            }
            _ => return None,
        };
        let fits = stored.stride == codes.stride
            && stored.codes.len() == rows * codes.stride
            && stored.side.len() == rows * codes.side_len() * 4;
        if !fits {
            return None;
        }
        codes.trained_on = stored.trained_on;
        codes.rows = rows;
        codes.base_rows = rows;
        codes.base = InPlace::new(stored.codes);
        codes.side_base = InPlace::new(stored.side);
        Some(codes)
    }

    fn kind(&self) -> u32 {
        match self.coder {
            Coder::Sq8 { .. } => SQ8_KIND,
            Coder::Binary { .. } => BINARY_KIND,
        }
    }

    fn side_len(&self) -> usize {
        match (&self.coder, self.form) {
            (Coder::Binary { .. }, _) => BINARY_SIDE,
            (Coder::Sq8 { .. }, Form::Euclid) => 1,
            (Coder::Sq8 { .. }, Form::Dot) => 0,
        }
    }

    /// The codes section of a segment whose row `r` is slot `slots[r]` (see `FORMAT.md`).
    pub fn section(&self, slots: &[u32]) -> Vec<u8> {
        let side = self.side_len();
        let (mean, centres) = match &self.coder {
            Coder::Binary { mean, centres, .. } => (mean.as_slice(), centres.as_slice()),
            Coder::Sq8 { .. } => (&[][..], &[][..]),
        };
        let floats = float_bytes(mean.len()) + float_bytes(centres.len());
        let mut out =
            Vec::with_capacity(SECTION_PREAMBLE + floats + slots.len() * (self.stride + side * 4));
        out.extend_from_slice(&self.kind().to_le_bytes());
        out.extend_from_slice(&(self.stride as u32).to_le_bytes());
        let (a, b) = match self.coder {
            Coder::Sq8 { low, step } => (low.to_bits(), step.to_bits()),
            Coder::Binary { .. } => ((centres.len() / self.dim) as u32, 0),
        };
        out.extend_from_slice(&a.to_le_bytes());
        out.extend_from_slice(&b.to_le_bytes());
        out.extend_from_slice(&(self.trained_on as u64).to_le_bytes());
        out.resize(SECTION_PREAMBLE, 0);
        for floats in [mean, centres].into_iter().filter(|f| !f.is_empty()) {
            let end = out.len() + float_bytes(floats.len());
            floats
                .iter()
                .for_each(|m| out.extend_from_slice(&m.to_le_bytes()));
            out.resize(end, 0);
        }
        for &slot in slots {
            out.extend_from_slice(self.row(slot));
        }
        for &slot in slots {
            for x in self.side(slot) {
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
        out
    }

    /// Number of rows coded.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Whether the coding should be chosen again now that there are `rows` vectors: it was
    /// chosen from fewer than [`RETRAIN_UP_TO`] and they have doubled since.
    pub fn wants_retraining(&self, rows: usize) -> bool {
        self.trained_on < RETRAIN_UP_TO && rows >= 2 * self.trained_on.max(1)
    }

    /// Bytes held on the heap or mapped.
    pub fn bytes(&self) -> usize {
        let held = |lines: usize, side: usize| lines * BYTES_PER_LINE + side * 4;
        let mean = match &self.coder {
            Coder::Binary {
                mean,
                centres,
                centre_norms,
            } => (mean.capacity() + centres.capacity() + centre_norms.capacity()) * 4,
            Coder::Sq8 { .. } => 0,
        };
        mean + held(self.base.slice().len(), self.side_base.slice().len())
            + held(self.lines.capacity(), self.side.capacity())
    }

    /// Makes room for `rows` rows in all: exactly that many when they are more than half as
    /// many again as there is room for (a bulk load's points arrive in the arena before they
    /// are coded a chunk at a time, so one allocation fits them), else half as many again (so
    /// one row at a time still grows in amortised constant time). Doubling alone held up to 1.75x
    /// the codes' bytes after a bulk load.
    pub fn reserve(&mut self, rows: usize) {
        fn grow<T>(v: &mut Vec<T>, wanted: usize) {
            if wanted > v.capacity() {
                let target = wanted.max(v.capacity() + v.capacity() / 2);
                v.reserve_exact(target - v.len());
            }
        }
        let rows = rows.saturating_sub(self.base_rows);
        grow(&mut self.lines, rows * (self.stride / BYTES_PER_LINE));
        let side = self.side_len();
        if side > 0 {
            grow(&mut self.side, rows * side);
        }
    }

    /// Appends the codes of `v`, the next row.
    pub fn push(&mut self, v: &[f32]) {
        debug_assert_eq!(v.len(), self.dim);
        let start = (self.rows - self.base_rows) * self.stride;
        let lines = self.stride / BYTES_PER_LINE;
        self.lines
            .extend(std::iter::repeat_n(Line::zeroed(), lines));
        let row =
            &mut bytemuck::cast_slice_mut::<Line, u8>(&mut self.lines)[start..][..self.stride];
        let norm2 = || v.iter().map(|x| x * x).sum::<f32>();
        match &self.coder {
            Coder::Sq8 { low, step } => {
                let inv = 1.0 / step;
                for (code, &x) in row.iter_mut().zip(v) {
                    // `as u8` saturates, which clamps components outside the range to its ends.
                    *code = ((x - low) * inv).round() as u8;
                }
                if self.form == Form::Euclid {
                    self.side.push(norm2());
                }
            }
            Coder::Binary {
                mean,
                centres,
                centre_norms,
            } => {
                let nearest = nearest_centre(centres, centre_norms, v);
                let centre = &centres[nearest * self.dim..][..self.dim];
                let (mut l1, mut l2, mut centre_r, mut centre_s, mut ones) =
                    (0f32, 0f32, 0f32, 0f32, 0u32);
                for (i, ((&x, &c), &m)) in v.iter().zip(centre).zip(mean).enumerate() {
                    let r = x - c;
                    let sign = match r > 0.0 {
                        true => {
                            row[i / 8] |= 1 << (i % 8);
                            ones += 1;
                            1.0
                        }
                        false => -1.0,
                    };
                    l1 += r.abs();
                    l2 += r * r;
                    centre_r += c * r;
                    centre_s += (c - m) * sign;
                }
                let scale = match l1 > 0.0 {
                    true => l2 / l1,
                    false => 0.0,
                };
                let term = centre_r - scale * centre_s;
                let side = [scale, ones as f32, term, norm2(), nearest as f32];
                self.side.extend_from_slice(&side);
            }
        }
        self.rows += 1;
    }

    #[inline]
    fn row(&self, slot: u32) -> &[u8] {
        let (lines, row) = match (slot as usize).checked_sub(self.base_rows) {
            None => (self.base.slice(), slot as usize),
            Some(row) => (self.lines.as_slice(), row),
        };
        &bytemuck::cast_slice::<Line, u8>(lines)[row * self.stride..][..self.stride]
    }

    #[inline]
    fn side(&self, slot: u32) -> &[f32] {
        let n = self.side_len();
        let (side, row) = match (slot as usize).checked_sub(self.base_rows) {
            None => (self.side_base.slice(), slot as usize),
            Some(row) => (self.side.as_slice(), row),
        };
        &side[row * n..][..n]
    }

    /// `query` quantized for these codes.
    pub fn prepare(&self, query: &[f32]) -> CodeQuery {
        let norm2 = query.iter().map(|x| x * x).sum();
        match &self.coder {
            Coder::Sq8 { low, step } => {
                let max = query.iter().fold(0f32, |m, x| m.max(x.abs()));
                let scale = match max > 0.0 {
                    true => max / 127.0,
                    false => 1.0,
                };
                let mut codes = vec![0i8; self.stride];
                for (code, &x) in codes.iter_mut().zip(query) {
                    *code = (x / scale).round() as i8;
                }
                CodeQuery::Sq8 {
                    kernel: distance::best().code_dot,
                    codes,
                    offset: low * query.iter().sum::<f32>(),
                    unit: step * scale,
                    norm2,
                }
            }
            Coder::Binary { mean, centres, .. } => {
                let centred: Vec<f32> = query.iter().zip(mean).map(|(q, m)| q - m).collect();
                let (low, high) = centred
                    .iter()
                    .fold((f32::MAX, f32::MIN), |(l, h), &x| (l.min(x), h.max(x)));
                let levels = ((1 << QUERY_BITS) - 1) as f32;
                let step = match high > low {
                    true => (high - low) / levels,
                    false => 1.0,
                };
                let words = self.stride / 8;
                let mut planes = vec![0u64; QUERY_BITS * words];
                let mut units = 0u32;
                for (i, &x) in centred.iter().enumerate() {
                    let u = ((x - low) / step).round() as u32;
                    units += u;
                    for (j, plane) in planes.chunks_exact_mut(words).enumerate() {
                        plane[i / 64] |= u64::from(u >> j & 1) << (i % 64);
                    }
                }
                CodeQuery::Binary {
                    kernel: distance::best().bit_dot,
                    planes,
                    low,
                    step,
                    sum: low * self.dim as f32 + step * units as f32,
                    centre_dots: centres
                        .chunks_exact(self.dim)
                        .map(|c| (distance::best().dot)(query, c))
                        .collect(),
                    norm2,
                }
            }
        }
    }

    /// Scores nodes against a prepared query, for a graph search.
    pub fn scorer<'a>(&'a self, query: &'a CodeQuery) -> CodeScorer<'a> {
        CodeScorer { codes: self, query }
    }
}

/// [`Codes`] keys of one query: the closeness keys the `f32` vectors give (`-dot`, or the
/// squared distance), approximately.
pub(crate) struct CodeScorer<'a> {
    codes: &'a Codes,
    query: &'a CodeQuery,
}

impl Scorer for CodeScorer<'_> {
    #[inline]
    fn key(&self, slot: u32) -> f32 {
        let c = self.codes;
        let (dot, norm2, x_norm2) = match self.query {
            CodeQuery::Sq8 {
                kernel,
                codes,
                offset,
                unit,
                norm2,
            } => {
                let dot = offset + unit * kernel(c.row(slot), codes) as f32;
                let x_norm2 = match c.form {
                    Form::Euclid => c.side(slot)[0],
                    Form::Dot => 0.0,
                };
                (dot, *norm2, x_norm2)
            }
            CodeQuery::Binary {
                kernel,
                planes,
                low,
                step,
                sum,
                centre_dots,
                norm2,
            } => {
                let &[scale, ones, term, x_norm2, centre] = c.side(slot) else {
                    unreachable!("binary rows keep {BINARY_SIDE} floats")
                };
                let weighted = kernel(bytemuck::cast_slice(c.row(slot)), planes) as f32;
                let signed = 2.0 * (low * ones + step * weighted) - sum;
                // Centre numbers are checked when a segment is read (`persist`).
                let centre_dot = centre_dots[centre as usize];
                (centre_dot + term + scale * signed, *norm2, x_norm2)
            }
        };
        match c.form {
            Form::Dot => -dot,
            Form::Euclid => norm2 + x_norm2 - 2.0 * dot,
        }
    }

    #[inline]
    fn keys4(&self, slots: [u32; 4]) -> [f32; 4] {
        slots.map(|s| self.key(s))
    }

    #[inline]
    fn prefetch(&self, slot: u32) {
        let c = self.codes;
        distance::prefetch(c.row(slot));
        if c.side_len() > 0 {
            distance::prefetch(c.side(slot));
        }
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

    fn coded(quantization: Quantization, distance: Distance, rows: &[Vec<f32>]) -> Codes {
        let dim = rows[0].len();
        let mut codes =
            Codes::train(quantization, distance, dim, rows.len(), |i| &rows[i]).expect("a coding");
        rows.iter().for_each(|v| codes.push(v));
        assert_eq!(codes.rows(), rows.len());
        codes
    }

    #[test]
    fn sq8_keys_approximate_the_exact_keys() {
        for distance in [Distance::Cosine, Distance::Dot, Distance::Euclid] {
            for dim in [3, 64, 100, 384] {
                let vectors = unit_vectors(500, dim, dim as u64);
                let codes = coded(Quantization::Sq8, distance, &vectors);
                let query = &unit_vectors(1, dim, 7 + dim as u64)[0];
                let prepared = codes.prepare(query);
                let scorer = codes.scorer(&prepared);
                let mut worst = 0f32;
                for (slot, v) in vectors.iter().enumerate() {
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
    }

    #[test]
    fn binary_keys_approximate_the_exact_keys_within_the_bound_of_one_bit() {
        for distance in [Distance::Cosine, Distance::Dot, Distance::Euclid] {
            for dim in [3, 64, 100, 384, 1536] {
                // An offset common to all vectors, which the mean takes out before the signs.
                let vectors: Vec<Vec<f32>> = unit_vectors(300, dim, dim as u64)
                    .into_iter()
                    .map(|mut v| {
                        v[0] += 2.0;
                        v
                    })
                    .collect();
                let codes = coded(Quantization::Binary, distance, &vectors);
                // The query shares the data's offset, as a query embedded by the same model
                // does; its 4 bits span the range of its own offsets from the mean.
                let mut query = unit_vectors(1, dim, 7 + dim as u64).remove(0);
                query[0] += 2.0;
                let query = &query;
                let prepared = codes.prepare(query);
                let scorer = codes.scorer(&prepared);
                let mut total = 0f64;
                for (slot, v) in vectors.iter().enumerate() {
                    let err = scorer.key(slot as u32) - exact_key(distance, query, v);
                    total += (err as f64).abs();
                }
                // One bit per dimension estimates a dot product of unit vectors to within
                // about 1/sqrt(dim) (RaBitQ's bound); the query's 4 bits add little.
                let mean = total / vectors.len() as f64;
                let bound = 1.5 / (dim as f64).sqrt();
                assert!(
                    mean < bound,
                    "{distance:?} dim {dim}: mean error {mean} > {bound}"
                );
                let four = scorer.keys4([0, 1, 2, 3]);
                assert_eq!(four, [0, 1, 2, 3].map(|s| scorer.key(s)));
            }
        }
    }

    #[test]
    fn a_stored_vector_is_its_own_nearest_by_binary_codes() {
        // The estimate is exact for the vector a row was coded from (up to the query's bits),
        // and others are further: the property a walk by codes relies on to find a point.
        let dim = 256;
        let vectors = unit_vectors(400, dim, 11);
        for distance in [Distance::Cosine, Distance::Euclid] {
            let codes = coded(Quantization::Binary, distance, &vectors);
            for (slot, v) in vectors.iter().enumerate().step_by(7) {
                let prepared = codes.prepare(v);
                let scorer = codes.scorer(&prepared);
                let own = scorer.key(slot as u32);
                let closer = (0..vectors.len() as u32)
                    .filter(|&s| s != slot as u32 && scorer.key(s) <= own)
                    .count();
                assert_eq!(closer, 0, "{distance:?}: row {slot}");
            }
        }
    }

    #[test]
    fn sq8_outliers_clamp_to_the_range_and_constant_data_still_codes() {
        let mut spread: Vec<Vec<f32>> = (0..1000).map(|i| vec![(i % 100) as f32 / 100.0]).collect();
        spread[0][0] = 1e6;
        let mut codes = Codes::train(Quantization::Sq8, Distance::Dot, 1, spread.len(), |i| {
            &spread[i]
        })
        .unwrap();
        let Coder::Sq8 { low, step } = codes.coder else {
            unreachable!()
        };
        // The outlier is outside the central 99%: the range ends near 1.0, not at 1e6.
        assert!(low >= 0.0 && low + 255.0 * step < 1.5);
        codes.push(&[1e6]);
        codes.push(&[-1e6]);
        assert_eq!(codes.row(0)[0], 255);
        assert_eq!(codes.row(1)[0], 0);
        let same = vec![vec![0.5f32; 4]; 10];
        for quantization in [Quantization::Sq8, Quantization::Binary] {
            let codes = coded(quantization, Distance::Euclid, &same);
            let q = codes.prepare(&[0.5; 4]);
            assert!(codes.scorer(&q).key(0).abs() < 1e-5, "{quantization:?}");
            let zero = codes.prepare(&[0.0; 4]);
            assert!(
                (codes.scorer(&zero).key(0) - 1.0).abs() < 1e-5,
                "{quantization:?}"
            );
        }
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
    fn the_coding_is_chosen_again_while_the_rows_double_up_to_a_bound() {
        let v = [0.5f32; 2];
        for quantization in [Quantization::Sq8, Quantization::Binary] {
            let codes = Codes::train(quantization, Distance::Dot, 2, 10, |_| &v).unwrap();
            assert!(!codes.wants_retraining(19));
            assert!(codes.wants_retraining(20));
            let big = Codes::train(quantization, Distance::Dot, 2, RETRAIN_UP_TO, |_| &v).unwrap();
            assert!(!big.wants_retraining(100 * RETRAIN_UP_TO));
            assert!(Codes::train(quantization, Distance::Manhattan, 4, 0, |_| &[]).is_none());
        }
        assert!(Codes::train(Quantization::None, Distance::Dot, 2, 10, |_| &v).is_none());
    }

    #[test]
    fn a_section_read_back_gives_the_same_keys_and_refuses_another_coding() {
        let vectors = unit_vectors(50, 70, 3);
        for quantization in [Quantization::Sq8, Quantization::Binary] {
            for distance in [Distance::Cosine, Distance::Euclid] {
                let codes = coded(quantization, distance, &vectors);
                let slots: Vec<u32> = (0..50).rev().collect();
                let section = codes.section(&slots);
                let stored = || parse_section_for_test(&section, 70, distance, 50);
                let back = Codes::from_stored(quantization, distance, 70, stored()).unwrap();
                let q = &unit_vectors(1, 70, 5)[0];
                let (a, b) = (codes.prepare(q), back.prepare(q));
                for (row, &slot) in slots.iter().enumerate() {
                    let want = codes.scorer(&a).key(slot);
                    assert_eq!(back.scorer(&b).key(row as u32).to_bits(), want.to_bits());
                }
                let other = match quantization {
                    Quantization::Sq8 => Quantization::Binary,
                    _ => Quantization::Sq8,
                };
                assert!(Codes::from_stored(other, distance, 70, stored()).is_none());
            }
        }
    }

    /// A section split as `persist` does, without its checks (those are tested there).
    fn parse_section_for_test(
        section: &[u8],
        dim: usize,
        distance: Distance,
        rows: usize,
    ) -> StoredCodes {
        let word = |at: usize| u32::from_le_bytes(section[at..at + 4].try_into().unwrap());
        let kind = word(0);
        let floats = |at: usize, n: usize| -> Vec<f32> {
            section[at..][..n * 4]
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect()
        };
        let (coder, floats_len) = match kind {
            BINARY_KIND => {
                let k = word(8) as usize;
                let centres_at = SECTION_PREAMBLE + float_bytes(dim);
                let coder = StoredCoder::Binary {
                    mean: floats(SECTION_PREAMBLE, dim),
                    centres: floats(centres_at, k * dim),
                };
                (coder, float_bytes(dim) + float_bytes(k * dim))
            }
            _ => {
                let (low, step) = (f32::from_bits(word(8)), f32::from_bits(word(12)));
                (StoredCoder::Sq8 { low, step }, 0)
            }
        };
        let at = SECTION_PREAMBLE + floats_len;
        let codes_len = rows * stride(kind, dim);
        let all = Bytes::from(section.to_vec());
        StoredCodes {
            rows,
            stride: word(4) as usize,
            coder,
            trained_on: u64::from_le_bytes(section[16..24].try_into().unwrap()) as usize,
            codes: all.slice(at..at + codes_len),
            side: all.slice(at + codes_len..at + codes_len + rows * side_len(kind, distance) * 4),
        }
    }
}
