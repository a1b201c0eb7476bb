//! Distance kernels: dot product, squared L2 and L1 over `f32` slices.
//!
//! The best implementation for the CPU is chosen once: AVX-512F, else AVX2+FMA, on x86_64 when
//! the CPU has it (detected at run time, so one binary serves old and new machines), NEON on aarch64, `simd128` on
//! wasm32 when the crate is compiled with `+simd128`, and a portable scalar version otherwise. All
//! of them are checked against an `f64` oracle for every length up to 1024 and for unaligned
//! slices. Architecture-specific code lives only in this module's submodules.
//!
//! Graph search scores a node's neighbours four at a time through the four-vector kernels
//! ([`Kernel4`]); they are bit-identical to the one-pair kernels, so a score never depends on
//! which path computed it.

use std::sync::OnceLock;

use crate::point::Distance;

/// Four-vector kernels that call the one-pair kernels in turn: for the implementations not
/// (yet) measured to gain from interleaving (scalar, AVX2, NEON).
macro_rules! kernels4_one_by_one {
    ($dot:path, $l2_squared:path, $l1:path) => {
        $crate::distance::Kernels4 {
            dot: |q, vs| vs.map(|v| $dot(q, v)),
            l2_squared: |q, vs| vs.map(|v| $l2_squared(q, v)),
            l1: |q, vs| vs.map(|v| $l1(q, v)),
        }
    };
}

mod scalar;

#[cfg(target_arch = "x86_64")]
mod x86;

#[cfg(target_arch = "aarch64")]
mod neon;

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod wasm;

/// A kernel over two slices of equal length.
pub(crate) type Kernel = fn(&[f32], &[f32]) -> f32;

/// A kernel from one query to four stored vectors at once, each result bit-identical to the
/// one-pair kernel's. Where it is really four-way (WebAssembly, AVX-512) the loads of the four
/// vectors interleave, so their cache misses overlap instead of following one another (graph
/// search in WebAssembly has no prefetch instruction to do that), and each query block is
/// loaded once for four vectors.
pub(crate) type Kernel4 = fn(&[f32], [&[f32]; 4]) -> [f32; 4];

/// The dot product of a row of quantization codes (`u8`) and a quantized query (`i8`), exact in
/// `i32` (a row of 65,000 codes cannot overflow it), so every implementation returns the same.
pub(crate) type CodeKernel = fn(&[u8], &[i8]) -> i32;

/// A row of binary codes against a query in bit planes: `Σ_j 2^j popcount(bits & plane_j)`,
/// where `planes` holds the planes one after another, each as long as `bits` (so the plane
/// count is `planes.len() / bits.len()`). Exact, so every implementation returns the same.
pub(crate) type BitKernel = fn(&[u64], &[u64]) -> u32;

/// One implementation of the kernels.
#[derive(Clone, Copy)]
pub(crate) struct Kernels {
    /// Name shown in stats and benchmarks (`"avx2+fma"`, `"neon"`, `"simd128"`, `"scalar"`).
    pub name: &'static str,
    pub dot: Kernel,
    pub l2_squared: Kernel,
    pub l1: Kernel,
    /// The same three, one query against four vectors.
    pub four: Kernels4,
    /// Quantized vectors' codes against a quantized query (see [`CodeKernel`]).
    pub code_dot: CodeKernel,
    /// Binary codes against a query in bit planes (see [`BitKernel`]).
    pub bit_dot: BitKernel,
}

/// The four-vector versions of [`Kernels`]' three kernels.
#[derive(Clone, Copy)]
pub(crate) struct Kernels4 {
    pub dot: Kernel4,
    pub l2_squared: Kernel4,
    pub l1: Kernel4,
}

impl Kernels {
    /// The raw kernel for a distance: dot for cosine (vectors are normalised) and dot, squared L2
    /// for Euclid (the square root is taken only for reported scores), L1 for Manhattan.
    pub fn for_distance(&self, distance: Distance) -> Kernel {
        match distance {
            Distance::Cosine | Distance::Dot => self.dot,
            Distance::Euclid => self.l2_squared,
            Distance::Manhattan => self.l1,
        }
    }

    /// [`Kernels::for_distance`], four vectors at a time.
    pub fn for_distance4(&self, distance: Distance) -> Kernel4 {
        match distance {
            Distance::Cosine | Distance::Dot => self.four.dot,
            Distance::Euclid => self.four.l2_squared,
            Distance::Manhattan => self.four.l1,
        }
    }
}

pub(crate) const SCALAR: Kernels = Kernels {
    name: "scalar",
    dot: scalar::dot,
    l2_squared: scalar::l2_squared,
    l1: scalar::l1,
    four: kernels4_one_by_one!(scalar::dot, scalar::l2_squared, scalar::l1),
    code_dot: scalar::code_dot,
    bit_dot: scalar::bit_dot,
};

/// The fastest kernels this CPU supports, detected once.
pub(crate) fn best() -> &'static Kernels {
    static BEST: OnceLock<Kernels> = OnceLock::new();
    BEST.get_or_init(detect)
}

fn detect() -> Kernels {
    #[cfg(target_arch = "x86_64")]
    if let Some(k) = x86::avx512_if_supported().or_else(x86::kernels_if_supported) {
        return k;
    }
    #[cfg(target_arch = "aarch64")]
    return neon::KERNELS;
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    return wasm::KERNELS;
    #[allow(unreachable_code)]
    SCALAR
}

/// Converts a raw kernel value to the score users see (Qdrant's convention).
pub(crate) fn score_from_raw(distance: Distance, raw: f32) -> f32 {
    match distance {
        Distance::Euclid => raw.max(0.0).sqrt(),
        _ => raw,
    }
}

/// Orders raw kernel values so that smaller is always closer, for the top-k heap.
pub(crate) fn closeness_key(distance: Distance, raw: f32) -> f32 {
    if distance.higher_is_better() {
        -raw
    } else {
        raw
    }
}

/// Cache lines of a vector loaded ahead at most: the first 24 (a 384-float vector); beyond
/// that the hardware prefetcher follows the kernel's stream, and explicit requests only crowd
/// the load queue.
#[cfg(any(target_arch = "x86_64", target_arch = "wasm32"))]
const MAX_PREFETCH_LINES: usize = 24;

/// Starts loading the cache lines of `v`; a graph search calls it for the next group of
/// neighbours while it scores the current one, so the loads overlap.
///
/// On x86-64 this is the prefetch instruction. WebAssembly has none, so there it reads one
/// byte of each line: the reads are independent of the scoring that follows, so the CPU issues
/// them together (measured in Node at 100K x 384: search 165 -> 148 us).
#[inline(always)]
pub(crate) fn prefetch<T: bytemuck::Pod>(v: &[T]) {
    #[cfg(any(target_arch = "x86_64", target_arch = "wasm32"))]
    {
        let p = v.as_ptr().cast::<i8>();
        for line in 0..std::mem::size_of_val(v)
            .div_ceil(64)
            .min(MAX_PREFETCH_LINES)
        {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: prefetching is a hint that never faults, and the address is inside `v`.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                    p.add(line * 64),
                )
            };
            #[cfg(target_arch = "wasm32")]
            // SAFETY: `line * 64 < size_of_val(v)`, so the byte read is inside `v`, which is
            // borrowed, and initialised because `T: Pod` has no padding. Volatile keeps the
            // compiler from dropping the read.
            unsafe {
                std::ptr::read_volatile(p.add(line * 64))
            };
        }
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "wasm32")))]
    let _ = v;
}

/// Scales `v` to unit length in place; returns `false` (leaving `v` unchanged) when it has none.
pub(crate) fn normalize(v: &mut [f32]) -> bool {
    let norm = (best().dot)(v, v).sqrt();
    if !(norm > 0.0 && norm.is_finite()) {
        return false;
    }
    let inv = 1.0 / norm;
    v.iter_mut().for_each(|x| *x *= inv);
    true
}

#[cfg(test)]
mod tests {
    //! These run natively and, under `cargo test --target wasm32-unknown-unknown`, in Node, so
    //! the `simd128` kernels are checked too.
    use super::*;

    /// Deterministic values in [-1, 1) (xorshift), so failures reproduce.
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    fn oracle(a: &[f32], b: &[f32]) -> (f64, f64, f64, f64) {
        let (mut dot, mut l2, mut l1, mut mag) = (0f64, 0f64, 0f64, 0f64);
        for (&x, &y) in a.iter().zip(b) {
            let (x, y) = (f64::from(x), f64::from(y));
            dot += x * y;
            l2 += (x - y) * (x - y);
            l1 += (x - y).abs();
            mag += (x * y).abs() + (x - y) * (x - y) + (x - y).abs();
        }
        (dot, l2, l1, mag)
    }

    fn all_kernels() -> Vec<Kernels> {
        let ks = vec![SCALAR, *best()];
        #[cfg(target_arch = "x86_64")]
        let ks = {
            let mut ks = ks;
            ks.extend(
                x86::kernels_if_supported()
                    .into_iter()
                    .chain(x86::avx512_if_supported()),
            );
            ks
        };
        ks
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn kernels_agree_with_f64_oracle_for_every_length_and_alignment() {
        for k in all_kernels() {
            for dim in 1..=1024usize {
                // Offsets 0..3 make the slices start off any SIMD alignment.
                let offset = dim % 4;
                let a = values(dim + offset, dim as u64);
                let b = values(dim + offset, dim as u64 + 7777);
                let (a, b) = (&a[offset..], &b[offset..]);
                let (dot, l2, l1, mag) = oracle(a, b);
                let tol = 1e-5 * mag + 1e-6;
                for (name, got, want) in [
                    ("dot", (k.dot)(a, b), dot),
                    ("l2", (k.l2_squared)(a, b), l2),
                    ("l1", (k.l1)(a, b), l1),
                ] {
                    assert!(
                        (f64::from(got) - want).abs() <= tol,
                        "{} {name} dim {dim}: {got} vs {want}",
                        k.name
                    );
                }
            }
        }
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn four_vector_kernels_equal_the_pair_kernels_bit_for_bit() {
        for k in all_kernels() {
            for dim in 0..=1100usize {
                let offset = dim % 4;
                let q = values(dim + offset, dim as u64);
                let rows: Vec<Vec<f32>> = (0..4)
                    .map(|r| values(dim + r + 1, 31 * dim as u64 + r as u64))
                    .collect();
                // Each vector starts at a different misalignment.
                let vs: [&[f32]; 4] = std::array::from_fn(|r| &rows[r][r + 1..]);
                let q = &q[offset..];
                for (name, pair, four) in [
                    ("dot", k.dot, k.four.dot),
                    ("l2", k.l2_squared, k.four.l2_squared),
                    ("l1", k.l1, k.four.l1),
                ] {
                    let want = vs.map(|v| pair(q, v).to_bits());
                    assert_eq!(
                        four(q, vs).map(f32::to_bits),
                        want,
                        "{} {name} dim {dim}",
                        k.name
                    );
                }
            }
        }
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn code_kernels_are_exact_for_every_length_alignment_and_extreme() {
        #[cfg(target_arch = "x86_64")]
        let every_x86 = x86::code_kernels();
        #[cfg(not(target_arch = "x86_64"))]
        let every_x86: Vec<CodeKernel> = Vec::new();
        let kernels: Vec<(&str, CodeKernel)> = all_kernels()
            .iter()
            .map(|k| (k.name, k.code_dot))
            .chain(every_x86.into_iter().map(|k| ("x86", k)))
            .collect();
        for (name, code_dot) in kernels {
            for dim in 0..=1100usize {
                let offset = dim % 3;
                let v = values(dim + offset + 1, dim as u64);
                let w = values(dim + offset + 1, dim as u64 + 99);
                // Codes over the whole u8 range, queries over the whole i8 range; the first
                // lengths also take the extremes (255 x -128 everywhere).
                let codes: Vec<u8> = v.iter().map(|x| ((x + 1.0) * 127.9) as u8).collect();
                let query: Vec<i8> = w.iter().map(|x| (x * 127.9) as i8).collect();
                let (mut codes, mut query) = (codes[offset..].to_vec(), query[offset..].to_vec());
                codes.truncate(dim);
                query.truncate(dim);
                if dim < 64 {
                    codes.fill(255);
                    query.fill(-128);
                }
                let want: i32 = codes
                    .iter()
                    .zip(&query)
                    .map(|(&c, &q)| c as i32 * q as i32)
                    .sum();
                assert_eq!(code_dot(&codes, &query), want, "{name} dim {dim}");
            }
        }
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn bit_kernels_are_exact_for_every_length_and_plane_count() {
        #[cfg(target_arch = "x86_64")]
        let every_x86 = x86::bit_kernels();
        #[cfg(not(target_arch = "x86_64"))]
        let every_x86: Vec<BitKernel> = Vec::new();
        let kernels: Vec<(&str, BitKernel)> = all_kernels()
            .iter()
            .map(|k| (k.name, k.bit_dot))
            .chain(every_x86.into_iter().map(|k| ("x86", k)))
            .collect();
        let mut s = 0x2545_F491_4F6C_DD1Du64;
        let mut word = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        for (name, bit_dot) in kernels {
            for words in 0..=40usize {
                for planes in [1, 4, 8] {
                    let bits: Vec<u64> = (0..words).map(|_| word()).collect();
                    let mut query: Vec<u64> = (0..words * planes).map(|_| word()).collect();
                    // All ones somewhere, so the largest counts are reached too.
                    if words % 5 == 0 {
                        query.fill(u64::MAX);
                    }
                    let want: u32 = query
                        .chunks(words.max(1))
                        .enumerate()
                        .map(|(j, plane)| {
                            let ones: u32 = (0..words * 64)
                                .filter(|&i| bits[i / 64] & plane[i / 64] & 1 << (i % 64) != 0)
                                .count() as u32;
                            ones << j
                        })
                        .sum();
                    let got = bit_dot(&bits, &query);
                    assert_eq!(got, want, "{name}: {words} words, {planes} planes");
                }
            }
        }
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn prefetch_accepts_any_slice() {
        prefetch::<f32>(&[]);
        prefetch(&[1.0f32]);
        prefetch(&vec![0.5f32; 1000]);
        prefetch(&[7u32; 33]);
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn empty_slices_give_zero() {
        for k in all_kernels() {
            assert_eq!((k.dot)(&[], &[]), 0.0);
            assert_eq!((k.l2_squared)(&[], &[]), 0.0);
            assert_eq!((k.l1)(&[], &[]), 0.0);
        }
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn normalize_refuses_zero_and_scales_others() {
        let mut z = vec![0.0; 5];
        assert!(!normalize(&mut z));
        let mut v = vec![3.0, 4.0];
        assert!(normalize(&mut v));
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
    }
}
