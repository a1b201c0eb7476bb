//! AVX2+FMA kernels for x86_64, used only when the CPU reports both features at run time.

use std::arch::x86_64::*;

use super::Kernels;

/// The AVX2 kernels, or `None` when this CPU lacks AVX2 or FMA.
pub(super) fn kernels_if_supported() -> Option<Kernels> {
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        Some(Kernels {
            name: "avx2+fma",
            dot,
            l2_squared,
            l1,
        })
    } else {
        None
    }
}

// The safe wrappers below are private to this module and handed out only by
// `kernels_if_supported`, after the feature check; that is what makes their `unsafe` calls sound.

fn dot(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: reachable only through `kernels_if_supported`, which checked avx2 and fma.
    unsafe { reduce::<Dot>(a, b) }
}

fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: as for `dot`.
    unsafe { reduce::<L2>(a, b) }
}

fn l1(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: as for `dot`.
    unsafe { reduce::<L1>(a, b) }
}

/// One lane-wise accumulation step: `acc + f(x, y)` for eight lanes, and its scalar twin.
trait Step {
    fn simd(acc: __m256, x: __m256, y: __m256) -> __m256;
    fn scalar(x: f32, y: f32) -> f32;
}

struct Dot;
struct L2;
struct L1;

impl Step for Dot {
    #[inline(always)]
    fn simd(acc: __m256, x: __m256, y: __m256) -> __m256 {
        // SAFETY: only inlined into `reduce`, which runs with avx2+fma enabled.
        unsafe { _mm256_fmadd_ps(x, y, acc) }
    }
    #[inline(always)]
    fn scalar(x: f32, y: f32) -> f32 {
        x * y
    }
}

impl Step for L2 {
    #[inline(always)]
    fn simd(acc: __m256, x: __m256, y: __m256) -> __m256 {
        // SAFETY: as for `Dot::simd`.
        unsafe {
            let d = _mm256_sub_ps(x, y);
            _mm256_fmadd_ps(d, d, acc)
        }
    }
    #[inline(always)]
    fn scalar(x: f32, y: f32) -> f32 {
        (x - y) * (x - y)
    }
}

impl Step for L1 {
    #[inline(always)]
    fn simd(acc: __m256, x: __m256, y: __m256) -> __m256 {
        // SAFETY: as for `Dot::simd`.
        unsafe {
            let d = _mm256_sub_ps(x, y);
            // Clearing the sign bit is |d|.
            let abs = _mm256_andnot_ps(_mm256_set1_ps(-0.0), d);
            _mm256_add_ps(acc, abs)
        }
    }
    #[inline(always)]
    fn scalar(x: f32, y: f32) -> f32 {
        (x - y).abs()
    }
}

/// Sums `S::scalar(a[i], b[i])` with four 8-lane accumulators (32 floats per iteration) to hide
/// the FMA latency, then one accumulator for the remaining blocks of 8, then scalar for the tail.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
unsafe fn reduce<S: Step>(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut i = 0;
    // SAFETY: every load reads 8 floats at index i with i + 8 <= n (or i + 32 <= n), inside both
    // slices; `loadu` has no alignment requirement.
    unsafe {
        let mut acc = [_mm256_setzero_ps(); 4];
        while i + 32 <= n {
            for (k, slot) in acc.iter_mut().enumerate() {
                let x = _mm256_loadu_ps(pa.add(i + 8 * k));
                let y = _mm256_loadu_ps(pb.add(i + 8 * k));
                *slot = S::simd(*slot, x, y);
            }
            i += 32;
        }
        let mut sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        while i + 8 <= n {
            sum = S::simd(sum, _mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)));
            i += 8;
        }
        let half = _mm_add_ps(_mm256_castps256_ps128(sum), _mm256_extractf128_ps(sum, 1));
        let quad = _mm_add_ps(half, _mm_movehl_ps(half, half));
        let one = _mm_add_ss(quad, _mm_shuffle_ps(quad, quad, 1));
        let mut total = _mm_cvtss_f32(one);
        while i < n {
            total += S::scalar(*pa.add(i), *pb.add(i));
            i += 1;
        }
        total
    }
}
