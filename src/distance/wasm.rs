//! `simd128` kernels for wasm32, compiled in when the crate is built with `+simd128` (see
//! `.cargo/config.toml`); every current browser and Node supports it.

use std::arch::wasm32::*;

use super::Kernels;

pub(super) const KERNELS: Kernels = Kernels {
    name: "simd128",
    dot,
    l2_squared,
    l1,
};

#[inline(always)]
fn reduce(
    a: &[f32],
    b: &[f32],
    step: impl Fn(v128, v128, v128) -> v128,
    scalar: impl Fn(f32, f32) -> f32,
) -> f32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut i = 0;
    let mut acc = [f32x4_splat(0.0); 4];
    // SAFETY: every load reads 16 bytes at float index i with i + 4 <= n (i + 16 <= n in the main
    // loop), inside both slices; v128_load has no alignment requirement.
    unsafe {
        while i + 16 <= n {
            for (k, slot) in acc.iter_mut().enumerate() {
                let x = v128_load(pa.add(i + 4 * k) as *const v128);
                let y = v128_load(pb.add(i + 4 * k) as *const v128);
                *slot = step(*slot, x, y);
            }
            i += 16;
        }
    }
    let mut sum = f32x4_add(f32x4_add(acc[0], acc[1]), f32x4_add(acc[2], acc[3]));
    // SAFETY: as above.
    unsafe {
        while i + 4 <= n {
            let x = v128_load(pa.add(i) as *const v128);
            let y = v128_load(pb.add(i) as *const v128);
            sum = step(sum, x, y);
            i += 4;
        }
    }
    let mut total = f32x4_extract_lane::<0>(sum)
        + f32x4_extract_lane::<1>(sum)
        + f32x4_extract_lane::<2>(sum)
        + f32x4_extract_lane::<3>(sum);
    total += a[i..n]
        .iter()
        .zip(&b[i..n])
        .map(|(&x, &y)| scalar(x, y))
        .sum::<f32>();
    total
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    reduce(
        a,
        b,
        |acc, x, y| f32x4_add(acc, f32x4_mul(x, y)),
        |x, y| x * y,
    )
}

fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
    reduce(
        a,
        b,
        |acc, x, y| {
            let d = f32x4_sub(x, y);
            f32x4_add(acc, f32x4_mul(d, d))
        },
        |x, y| (x - y) * (x - y),
    )
}

fn l1(a: &[f32], b: &[f32]) -> f32 {
    reduce(
        a,
        b,
        |acc, x, y| f32x4_add(acc, f32x4_abs(f32x4_sub(x, y))),
        |x, y| (x - y).abs(),
    )
}
