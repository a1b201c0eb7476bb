//! Neighbour sketches: 512 sign bits per vector after a fixed pseudo-random rotation (SimHash).
//!
//! Two vectors at angle `θ` differ in each bit with probability `θ / π`, so the Hamming distance
//! of their sketches estimates the angle from one 64-byte line instead of the whole vector (24
//! lines at 384 dimensions). Graph search for cosine similarity uses it to skip neighbours that
//! are almost certainly farther than its current worst result: at layer 0 most scored neighbours
//! are rejected (86% on WordNet at `ef` 24), and loading their vectors is what bounds the search.
//! Skipped neighbours are never scored, so results keep exact scores; only recall can change,
//! and the margin ([`MARGIN_SD`]) keeps that small.
//!
//! The rotation is three rounds of random sign flips followed by a Walsh-Hadamard transform
//! over the vector zero-padded to a power of two (at least 512): `O(n log n)` with no matrix to
//! store or load. Signs come from a fixed seed, so the same vector gets the same sketch in every
//! process and on every platform, and sketches are stored in segments (FORMAT.md).

use std::sync::OnceLock;

use bytemuck::{Pod, Zeroable};

/// Bits per sketch: one cache line.
pub(crate) const BITS: usize = 512;
/// Rounds of sign flips and transform; one leaves the bits too correlated with single
/// coordinates, three behave like random hyperplanes (checked by the tests below).
const ROUNDS: usize = 3;
/// How many standard deviations of the angle estimate a neighbour must lie beyond the current
/// worst result to be skipped: a neighbour truly at the threshold is skipped with probability
/// 0.6%. Measured at `ef` 24 and 64 (one thread): on WordNet/MiniLM 100K x 384, 1.5 is 21%
/// faster than no sketches, 2.0 14%, 2.5 8%, with recall@10 unchanged; on generated clusters
/// of 100K x 1536 (many points nearly as close as the 10th), recall@10 at `ef` 64 drops from
/// 0.9628 to 0.9537 at 2.0 and to 0.9605 at 2.5, for no speed gain. 2.5 keeps that loss small.
const MARGIN_SD: f32 = 2.5;
/// [`MARGIN_SD`] for a scan in sketch order, which stops at the first candidate beyond it
/// (`Engine::scan_by_sketch`) and reads every candidate the margin lets in, where the graph's
/// walk is bounded by its beam. On WordNet/MiniLM (10 of 100K x 384 under filters admitting 1-14.5%):
/// 1.5 gave recall@10 0.990-0.994, 2.0 0.997-1.000 at 0.8x its speed, 2.5 1.000 at half.
const SCAN_MARGIN_SD: f32 = 2.0;

/// Below this dimension a vector is too few cache lines for a sketch check to pay: at 1M x 128
/// search got slower with sketches.
const MIN_DIM: usize = 256;

/// Whether a graph over vectors of `dim` floats under `distance` keeps sketches: for cosine
/// similarity only (the angle bounds the score of unit vectors; not dot product, whose vectors
/// have any length) and from [`MIN_DIM`] dimensions.
pub(crate) fn worth_it(distance: crate::point::Distance, dim: usize) -> bool {
    distance == crate::point::Distance::Cosine && dim >= MIN_DIM
}

/// The sign bits of one rotated vector; bit `i` of word `i / 64` is set when coordinate `i` of
/// the rotation is `>= 0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
#[repr(C, align(64))]
pub(crate) struct Sketch(pub [u64; BITS / 64]);

impl Sketch {
    /// Bits that differ.
    #[inline(always)]
    pub fn hamming(&self, other: &Sketch) -> u32 {
        self.0
            .iter()
            .zip(&other.0)
            .map(|(a, b)| (a ^ b).count_ones())
            .sum()
    }
}

/// Computes sketches of vectors of one dimension.
#[derive(Clone, Debug)]
pub(crate) struct Sketcher {
    /// Length of the transform: the dimension rounded up to a power of two, at least [`BITS`].
    padded: usize,
    /// `ROUNDS * padded` factors of +1 or -1.
    signs: Vec<f32>,
}

impl Sketcher {
    pub fn new(dim: usize) -> Self {
        let padded = dim.next_power_of_two().max(BITS);
        // SplitMix64 from a fixed seed: the rotation is part of the file format.
        let mut state: u64 = 0x6772_6170_6573_6b74; // "grapeskt"
        let signs = (0..ROUNDS * padded)
            .map(|_| {
                state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = state;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                if (z ^ (z >> 31)) & 1 == 0 {
                    1.0
                } else {
                    -1.0
                }
            })
            .collect();
        Sketcher { padded, signs }
    }

    /// The sketch of `v` (any length up to the dimension; the rest counts as zeros).
    pub fn sketch(&self, v: &[f32]) -> Sketch {
        self.sketch_into(v, &mut Vec::new())
    }

    /// [`Sketcher::sketch`] with `buf` as room for the rotation, so searches, which keep one
    /// per thread, allocate nothing.
    pub fn sketch_into(&self, v: &[f32], buf: &mut Vec<f32>) -> Sketch {
        buf.clear();
        buf.resize(self.padded, 0f32);
        buf[..v.len()].copy_from_slice(v);
        for signs in self.signs.chunks_exact(self.padded) {
            for (a, s) in buf.iter_mut().zip(signs) {
                *a *= s;
            }
            walsh_hadamard(buf);
        }
        let mut out = Sketch::zeroed();
        for (i, &a) in buf[..BITS].iter().enumerate() {
            out.0[i / 64] |= u64::from(a >= 0.0) << (i % 64);
        }
        out
    }
}

/// The unnormalised fast Walsh-Hadamard transform, in place (`x.len()` a power of two, at
/// least 8). Each step is element-wise adds and subtracts, so the result is the same on every
/// platform, whatever order the butterflies of one stage run in.
fn walsh_hadamard(x: &mut [f32]) {
    // The first three stages within each block of eight, which stays in registers.
    for c in x.chunks_exact_mut(8) {
        let c: &mut [f32; 8] = c.try_into().expect("chunks of 8");
        let [a0, a1, a2, a3, a4, a5, a6, a7] = *c;
        let [b0, b1, b2, b3, b4, b5, b6, b7] = [
            a0 + a1,
            a0 - a1,
            a2 + a3,
            a2 - a3,
            a4 + a5,
            a4 - a5,
            a6 + a7,
            a6 - a7,
        ];
        let [d0, d1, d2, d3, d4, d5, d6, d7] = [
            b0 + b2,
            b1 + b3,
            b0 - b2,
            b1 - b3,
            b4 + b6,
            b5 + b7,
            b4 - b6,
            b5 - b7,
        ];
        *c = [
            d0 + d4,
            d1 + d5,
            d2 + d6,
            d3 + d7,
            d0 - d4,
            d1 - d5,
            d2 - d6,
            d3 - d7,
        ];
    }
    let mut half = 8;
    while half < x.len() {
        for block in x.chunks_exact_mut(2 * half) {
            let (a, b) = block.split_at_mut(half);
            for (u, v) in a.iter_mut().zip(b) {
                (*u, *v) = (*u + *v, *u - *v);
            }
        }
        half *= 2;
    }
}

/// For each Hamming distance `h`, the smallest cosine distance (`1 - cos`) the pair plausibly
/// has: the angle estimate `π h / BITS` lowered by `margin_sd` standard deviations. Made
/// non-decreasing by taking the minimum over larger `h`, which only makes skipping rarer.
fn cosine_distance_table(margin_sd: f32) -> [f32; BITS + 1] {
    let mut table = [0f32; BITS + 1];
    for (h, d) in table.iter_mut().enumerate() {
        let p = h as f64 / BITS as f64;
        let sd = std::f64::consts::PI * (p * (1.0 - p) / BITS as f64).sqrt();
        let angle = (std::f64::consts::PI * p - f64::from(margin_sd) * sd).max(0.0);
        *d = (1.0 - angle.cos()) as f32;
    }
    for h in (0..BITS).rev() {
        table[h] = table[h].min(table[h + 1]);
    }
    table
}

/// The first Hamming distance of `table` whose cosine distance is beyond the worst result's,
/// given its closeness key (`-cos`, as the graph orders cosine results).
fn first_beyond(table: &[f32; BITS + 1], worst_key: f32) -> u32 {
    let worst_distance = 1.0 + worst_key;
    table.partition_point(|&d| d <= worst_distance) as u32
}

/// A threshold table built on first use, for one margin.
type Table = OnceLock<[f32; BITS + 1]>;

/// [`first_beyond`] in `table`, built with `margin_sd` on first use.
#[inline]
fn beyond(table: &'static Table, margin_sd: f32, worst_key: f32) -> u32 {
    first_beyond(
        table.get_or_init(|| cosine_distance_table(margin_sd)),
        worst_key,
    )
}

/// The Hamming distance from which a neighbour is skipped (not scored), given the current worst
/// result's key: beyond it by [`MARGIN_SD`] standard deviations. `BITS + 1` skips nothing.
#[inline]
pub(crate) fn skip_from(worst_key: f32) -> u32 {
    static TABLE: Table = OnceLock::new();
    beyond(&TABLE, MARGIN_SD, worst_key)
}

/// The Hamming distance from which a scan in sketch order stops, given the current worst
/// result's key: the rest are beyond it by [`SCAN_MARGIN_SD`] standard deviations.
#[inline]
pub(crate) fn scan_stop_from(worst_key: f32) -> u32 {
    static TABLE: Table = OnceLock::new();
    beyond(&TABLE, SCAN_MARGIN_SD, worst_key)
}

/// The Hamming distance from which a node a filter refuses is not walked around (its
/// neighbours not taken in its place), given the current worst result's key: the node's
/// estimated distance itself is beyond the worst result's. Tighter than [`skip_from`] because
/// the cost of a wrong guess is smaller: the neighbours of such a node are most often reached
/// through another, and the wider beam of a walk around makes up the rest.
#[inline]
pub(crate) fn walk_around_below(worst_key: f32) -> u32 {
    static TABLE: Table = OnceLock::new();
    beyond(&TABLE, 0.0, worst_key)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic unit vectors (xorshift), so failures reproduce.
    fn unit(dim: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut v: Vec<f32> = (0..dim)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter_mut().for_each(|x| *x /= norm);
        v
    }

    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[test]
    fn hamming_distance_estimates_the_angle() {
        for dim in [8, 100, 384, 768, 1536] {
            let sketcher = Sketcher::new(dim);
            let mut total_error = 0.0;
            let pairs = 200;
            for i in 0..pairs {
                let a = unit(dim, 2 * i + 1);
                let r = unit(dim, 2 * i + 2);
                // b at a chosen angle from a, in the plane of a and r.
                let angle = 0.2 + 2.5 * (i as f32 / pairs as f32);
                let dot: f32 = a.iter().zip(&r).map(|(x, y)| x * y).sum();
                let mut ortho: Vec<f32> = r.iter().zip(&a).map(|(y, x)| y - dot * x).collect();
                let norm = ortho.iter().map(|x| x * x).sum::<f32>().sqrt();
                ortho.iter_mut().for_each(|x| *x /= norm);
                let b: Vec<f32> = a
                    .iter()
                    .zip(&ortho)
                    .map(|(x, o)| angle.cos() * x + angle.sin() * o)
                    .collect();
                let h = sketcher.sketch(&a).hamming(&sketcher.sketch(&b));
                let estimate = std::f32::consts::PI * h as f32 / BITS as f32;
                total_error += (estimate - angle).abs();
            }
            // One standard deviation at 90 degrees is 0.069 rad; the mean error is below that.
            let mean = total_error / pairs as f32;
            assert!(mean < 0.07, "dim {dim}: mean angle error {mean}");
        }
    }

    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[test]
    fn sketches_are_fixed_by_the_format() {
        // Stored in segments: a change here needs a new segment version. The same bits on
        // every platform (also checked in wasm).
        let v: Vec<f32> = (0..384)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
            .collect();
        let s = Sketcher::new(384).sketch(&v);
        assert_eq!(
            [s.0[0], s.0[7]],
            [0xbc3c_4f1b_7472_a64e, 0xeb38_865d_b1ec_b979],
            "{:#018x} {:#018x}",
            s.0[0],
            s.0[7]
        );
        assert_eq!(s, Sketcher::new(384).sketch(&v));
        let scaled: Vec<f32> = v.iter().map(|x| 3.0 * x).collect();
        assert_eq!(
            s,
            Sketcher::new(384).sketch(&scaled),
            "scale does not matter"
        );
        assert_eq!(
            Sketch::zeroed().hamming(&s),
            s.0.iter().map(|w| w.count_ones()).sum::<u32>()
        );
    }

    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[test]
    fn the_skip_threshold_is_conservative_and_monotone() {
        let table = cosine_distance_table(MARGIN_SD);
        let estimate = cosine_distance_table(0.0);
        assert!(table.windows(2).all(|w| w[0] <= w[1]));
        for (h, (&d, &e)) in table.iter().zip(&estimate).enumerate() {
            let angle = std::f32::consts::PI * h as f32 / BITS as f32;
            assert!(d <= 1.0 - angle.cos() + 1e-6, "h {h}");
            assert!(
                (e - (1.0 - angle.cos())).abs() < 1e-6,
                "h {h}: the estimate itself"
            );
        }
        // Worst result at cosine 1 (distance 0): skip anything not identical in sketch but
        // for the margin; at cosine -1 (distance 2): skip nothing.
        assert!(skip_from(-1.0) < 32);
        assert_eq!(skip_from(1.0), BITS as u32 + 1);
        assert!(skip_from(-0.6) < skip_from(-0.4));
        // Walking around stops at the estimate, short of where scoring stops.
        for worst in [-0.9, -0.6, -0.3, 0.0] {
            assert!(walk_around_below(worst) < skip_from(worst), "{worst}");
        }
        assert_eq!(walk_around_below(-1.0), 1, "only an identical sketch");
    }
}
