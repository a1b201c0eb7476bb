//! Portable kernels. Eight independent accumulators let the compiler vectorise the loop for
//! whatever the target offers, and keep rounding close to the SIMD versions.

const LANES: usize = 8;

#[inline]
fn fold(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0f32; LANES];
    let (ca, ta) = a.as_chunks::<LANES>();
    let (cb, tb) = b.as_chunks::<LANES>();
    for (x, y) in ca.iter().zip(cb) {
        for i in 0..LANES {
            acc[i] += f(x[i], y[i]);
        }
    }
    let tail: f32 = ta.iter().zip(tb).map(|(&x, &y)| f(x, y)).sum();
    acc.iter().sum::<f32>() + tail
}

pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
    fold(a, b, |x, y| x * y)
}

pub(super) fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
    fold(a, b, |x, y| (x - y) * (x - y))
}

pub(super) fn l1(a: &[f32], b: &[f32]) -> f32 {
    fold(a, b, |x, y| (x - y).abs())
}

/// Sixteen independent lanes, which the compiler vectorises for the target (it widens to
/// 16-bit products and sums pairs, as the SIMD versions do by hand).
pub(super) fn code_dot(codes: &[u8], query: &[i8]) -> i32 {
    debug_assert_eq!(codes.len(), query.len());
    let mut acc = [0i32; 16];
    let (cc, tc) = codes.as_chunks::<16>();
    let (cq, tq) = query.as_chunks::<16>();
    for (c, q) in cc.iter().zip(cq) {
        for i in 0..16 {
            acc[i] += i32::from(c[i]) * i32::from(q[i]);
        }
    }
    let tail: i32 = tc
        .iter()
        .zip(tq)
        .map(|(&c, &q)| i32::from(c) * i32::from(q))
        .sum();
    acc.iter().sum::<i32>() + tail
}

/// One word at a time; `count_ones` is one instruction where the target has it (WebAssembly's
/// `i64.popcnt`, NEON's `cnt`; x86 compiles this with `popcnt` enabled, see `x86.rs`).
#[inline(always)]
pub(super) fn bit_dot(bits: &[u64], planes: &[u64]) -> u32 {
    let n = bits.len();
    if n == 0 {
        return 0;
    }
    planes
        .chunks_exact(n)
        .enumerate()
        .map(|(j, plane)| {
            let ones: u32 = bits
                .iter()
                .zip(plane)
                .map(|(b, p)| (b & p).count_ones())
                .sum();
            ones << j
        })
        .sum()
}
