//! NEON kernels for aarch64, where NEON is part of the base architecture.

use std::arch::aarch64::*;

use super::Kernels;

pub(super) const KERNELS: Kernels = Kernels {
    name: "neon",
    dot,
    l2_squared,
    l1,
    four: kernels4_one_by_one!(dot, l2_squared, l1),
    // LLVM vectorises the portable loop with NEON's widening multiplies.
    code_dot: super::scalar::code_dot,
    bit_dot: super::scalar::bit_dot,
};

/// Sums `step` over 4-lane blocks with four accumulators, then a scalar tail.
#[inline(always)]
fn reduce(
    a: &[f32],
    b: &[f32],
    step: impl Fn(float32x4_t, float32x4_t, float32x4_t) -> float32x4_t,
    scalar: impl Fn(f32, f32) -> f32,
) -> f32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut i = 0;
    // SAFETY: NEON is mandatory on aarch64; every load reads 4 floats at i with i + 4 <= n
    // (i + 16 <= n in the main loop), inside both slices, and vld1q has no alignment requirement.
    unsafe {
        let mut acc = [vdupq_n_f32(0.0); 4];
        while i + 16 <= n {
            for (k, slot) in acc.iter_mut().enumerate() {
                *slot = step(
                    *slot,
                    vld1q_f32(pa.add(i + 4 * k)),
                    vld1q_f32(pb.add(i + 4 * k)),
                );
            }
            i += 16;
        }
        let mut sum = vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3]));
        while i + 4 <= n {
            sum = step(sum, vld1q_f32(pa.add(i)), vld1q_f32(pb.add(i)));
            i += 4;
        }
        let mut total = vaddvq_f32(sum);
        while i < n {
            total += scalar(*pa.add(i), *pb.add(i));
            i += 1;
        }
        total
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    reduce(
        a,
        b,
        // SAFETY: NEON is always present on aarch64 (these intrinsics need nothing else).
        |acc, x, y| unsafe { vfmaq_f32(acc, x, y) },
        |x, y| x * y,
    )
}

fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
    reduce(
        a,
        b,
        // SAFETY: NEON is always present on aarch64 (these intrinsics need nothing else).
        |acc, x, y| unsafe {
            let d = vsubq_f32(x, y);
            vfmaq_f32(acc, d, d)
        },
        |x, y| (x - y) * (x - y),
    )
}

fn l1(a: &[f32], b: &[f32]) -> f32 {
    reduce(
        a,
        b,
        // SAFETY: NEON is always present on aarch64 (these intrinsics need nothing else).
        |acc, x, y| unsafe { vaddq_f32(acc, vabdq_f32(x, y)) },
        |x, y| (x - y).abs(),
    )
}
