//! AVX2+FMA kernels for x86_64, used only when the CPU reports both features at run time.

use std::arch::x86_64::*;

use super::Kernels;

/// The AVX-512 kernels, or `None` when this CPU lacks AVX-512F.
pub(super) fn avx512_if_supported() -> Option<Kernels> {
    if is_x86_feature_detected!("avx512f") {
        Some(Kernels {
            name: "avx512f",
            dot: dot512,
            l2_squared: l2_squared512,
            l1: l1_512,
            four: super::Kernels4 {
                dot: dot512x4,
                l2_squared: l2_squared512x4,
                l1: l1_512x4,
            },
            code_dot: code_dot_kernel(),
            bit_dot: bit_dot_kernel(),
        })
    } else {
        None
    }
}

/// The AVX2 kernels, or `None` when this CPU lacks AVX2 or FMA.
pub(super) fn kernels_if_supported() -> Option<Kernels> {
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        Some(Kernels {
            name: "avx2+fma",
            dot,
            l2_squared,
            l1,
            four: kernels4_one_by_one!(dot, l2_squared, l1),
            code_dot: code_dot_kernel(),
            bit_dot: bit_dot_kernel(),
        })
    } else {
        None
    }
}

/// The best code kernel this CPU has: AVX-512 VNNI (a 64-byte multiply-add of unsigned by
/// signed bytes into 32-bit sums, one instruction), else AVX2 (every AVX-512 CPU has it), else
/// the portable one.
fn code_dot_kernel() -> super::CodeKernel {
    if is_x86_feature_detected!("avx512vnni") && is_x86_feature_detected!("avx512bw") {
        code_dot_vnni
    } else if is_x86_feature_detected!("avx2") {
        code_dot_avx2
    } else {
        super::scalar::code_dot
    }
}

/// The best binary-code kernel this CPU has: AVX-512 VPOPCNTDQ (eight words' popcounts in
/// one instruction), else the portable loop compiled with the `popcnt` instruction (without
/// it `count_ones` is a dozen instructions), else the portable loop as it is.
fn bit_dot_kernel() -> super::BitKernel {
    if is_x86_feature_detected!("avx512vpopcntdq") {
        bit_dot_vpopcnt
    } else if is_x86_feature_detected!("popcnt") {
        bit_dot_popcnt
    } else {
        super::scalar::bit_dot
    }
}

/// Every binary-code kernel this CPU supports, for the tests to check each one.
#[cfg(test)]
pub(super) fn bit_kernels() -> Vec<super::BitKernel> {
    let mut kernels: Vec<super::BitKernel> = Vec::new();
    if is_x86_feature_detected!("popcnt") {
        kernels.push(bit_dot_popcnt);
    }
    if is_x86_feature_detected!("avx512vpopcntdq") {
        kernels.push(bit_dot_vpopcnt);
    }
    kernels
}

fn bit_dot_popcnt(bits: &[u64], planes: &[u64]) -> u32 {
    // SAFETY: handed out only by `bit_dot_kernel`, after checking popcnt.
    unsafe { bit_dot_popcnt_impl(bits, planes) }
}

/// # Safety
/// The CPU must support `popcnt`.
#[target_feature(enable = "popcnt")]
unsafe fn bit_dot_popcnt_impl(bits: &[u64], planes: &[u64]) -> u32 {
    super::scalar::bit_dot(bits, planes)
}

fn bit_dot_vpopcnt(bits: &[u64], planes: &[u64]) -> u32 {
    // SAFETY: handed out only by `bit_dot_kernel`, after checking avx512vpopcntdq (which
    // implies avx512f).
    unsafe { bit_dot_vpopcnt_impl(bits, planes) }
}

/// Eight words per step: each plane's AND with the bits, popcounted lane-wise into one
/// accumulator per plane; the words past the last whole eight go to the portable loop.
///
/// # Safety
/// The CPU must support AVX-512F and AVX-512 VPOPCNTDQ.
#[target_feature(enable = "avx512f,avx512vpopcntdq,popcnt")]
unsafe fn bit_dot_vpopcnt_impl(bits: &[u64], planes: &[u64]) -> u32 {
    let n = bits.len();
    if n == 0 {
        return 0;
    }
    let whole = n / 8 * 8;
    let mut total = 0u32;
    for (j, plane) in planes.chunks_exact(n).enumerate() {
        // SAFETY: each load reads words i..i + 8 with i + 8 <= whole <= n, inside both `bits`
        // and `plane`; `loadu` has no alignment requirement.
        let ones = unsafe {
            let mut acc = _mm512_setzero_si512();
            let mut i = 0;
            while i < whole {
                let b = _mm512_loadu_si512(bits.as_ptr().add(i).cast());
                let p = _mm512_loadu_si512(plane.as_ptr().add(i).cast());
                acc = _mm512_add_epi64(acc, _mm512_popcnt_epi64(_mm512_and_si512(b, p)));
                i += 8;
            }
            _mm512_reduce_add_epi64(acc) as u32
        };
        let tail: u32 = bits[whole..]
            .iter()
            .zip(&plane[whole..])
            .map(|(b, p)| (b & p).count_ones())
            .sum();
        total += (ones + tail) << j;
    }
    total
}

/// Every code kernel this CPU supports, for the tests to check each one.
#[cfg(test)]
pub(super) fn code_kernels() -> Vec<super::CodeKernel> {
    let mut kernels: Vec<super::CodeKernel> = Vec::new();
    if is_x86_feature_detected!("avx2") {
        kernels.push(code_dot_avx2);
    }
    if is_x86_feature_detected!("avx512vnni") && is_x86_feature_detected!("avx512bw") {
        kernels.push(code_dot_vnni);
    }
    kernels
}

fn code_dot_vnni(codes: &[u8], query: &[i8]) -> i32 {
    // SAFETY: handed out only by `code_dot_kernel`, after checking avx512vnni and avx512bw.
    unsafe { code_dot_vnni_impl(codes, query) }
}

/// 64 codes per `vpdpbusd`, which multiplies unsigned codes by signed query bytes and adds
/// each four products into a 32-bit lane without saturating; the tail through masked loads.
///
/// # Safety
/// The CPU must support AVX-512F, AVX-512BW and AVX-512 VNNI.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn code_dot_vnni_impl(codes: &[u8], query: &[i8]) -> i32 {
    let n = codes.len().min(query.len());
    let (pc, pq) = (codes.as_ptr(), query.as_ptr());
    let mut acc = [_mm512_setzero_si512(); 2];
    let mut i = 0;
    while i + 128 <= n {
        // SAFETY: i + 128 <= n: the four 64-byte loads are inside their slices (unaligned
        // loads).
        unsafe {
            let (c0, q0) = (
                _mm512_loadu_si512(pc.add(i).cast()),
                _mm512_loadu_si512(pq.add(i).cast()),
            );
            let (c1, q1) = (
                _mm512_loadu_si512(pc.add(i + 64).cast()),
                _mm512_loadu_si512(pq.add(i + 64).cast()),
            );
            acc[0] = _mm512_dpbusd_epi32(acc[0], c0, q0);
            acc[1] = _mm512_dpbusd_epi32(acc[1], c1, q1);
        }
        i += 128;
    }
    while i < n {
        let mask: __mmask64 = match n - i {
            left if left >= 64 => !0,
            left => (1u64 << left) - 1,
        };
        // SAFETY: masked loads touch only the bytes the mask selects, all below n.
        let (c, q) = unsafe {
            (
                _mm512_maskz_loadu_epi8(mask, pc.add(i).cast()),
                _mm512_maskz_loadu_epi8(mask, pq.add(i).cast()),
            )
        };
        acc[0] = _mm512_dpbusd_epi32(acc[0], c, q);
        i += 64;
    }
    _mm512_reduce_add_epi32(_mm512_add_epi32(acc[0], acc[1]))
}

fn code_dot_avx2(codes: &[u8], query: &[i8]) -> i32 {
    // SAFETY: handed out only by `code_dot_kernel`, after checking avx2.
    unsafe { code_dot_avx2_impl(codes, query) }
}

/// 32 codes per iteration: both halves widened to 16 bits (codes unsigned, the query signed)
/// and multiplied with pairwise sums into 32-bit lanes (`vpmaddwd`), which cannot saturate
/// (2 x 255 x 128 fits in 16 bits' products summed in 32). `vpmaddubsw` would take 8-bit
/// inputs directly but saturates at 16 bits for codes above 127.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
unsafe fn code_dot_avx2_impl(codes: &[u8], query: &[i8]) -> i32 {
    let n = codes.len().min(query.len());
    let (pc, pq) = (codes.as_ptr(), query.as_ptr());
    let mut acc = [_mm256_setzero_si256(); 2];
    let mut i = 0;
    while i + 32 <= n {
        // SAFETY: i + 32 <= n, so both 32-byte loads are inside their slices; loadu has no
        // alignment requirement.
        let (c, q) = unsafe {
            (
                _mm256_loadu_si256(pc.add(i).cast()),
                _mm256_loadu_si256(pq.add(i).cast()),
            )
        };
        let (c_lo, c_hi) = (_mm256_castsi256_si128(c), _mm256_extracti128_si256::<1>(c));
        let (q_lo, q_hi) = (_mm256_castsi256_si128(q), _mm256_extracti128_si256::<1>(q));
        let lo = _mm256_madd_epi16(_mm256_cvtepu8_epi16(c_lo), _mm256_cvtepi8_epi16(q_lo));
        let hi = _mm256_madd_epi16(_mm256_cvtepu8_epi16(c_hi), _mm256_cvtepi8_epi16(q_hi));
        acc[0] = _mm256_add_epi32(acc[0], lo);
        acc[1] = _mm256_add_epi32(acc[1], hi);
        i += 32;
    }
    if i + 16 <= n {
        // SAFETY: i + 16 <= n: both 16-byte loads are inside their slices.
        let (c, q) = unsafe {
            (
                _mm_loadu_si128(pc.add(i).cast()),
                _mm_loadu_si128(pq.add(i).cast()),
            )
        };
        let part = _mm256_madd_epi16(_mm256_cvtepu8_epi16(c), _mm256_cvtepi8_epi16(q));
        acc[0] = _mm256_add_epi32(acc[0], part);
        i += 16;
    }
    let sum = _mm256_add_epi32(acc[0], acc[1]);
    let four = _mm_add_epi32(
        _mm256_castsi256_si128(sum),
        _mm256_extracti128_si256::<1>(sum),
    );
    let two = _mm_add_epi32(four, _mm_unpackhi_epi64(four, four));
    let one = _mm_add_epi32(two, _mm_shuffle_epi32::<0b01>(two));
    let tail: i32 = codes[i..n]
        .iter()
        .zip(&query[i..n])
        .map(|(&c, &q)| i32::from(c) * i32::from(q))
        .sum();
    _mm_cvtsi128_si32(one) + tail
}

// The safe wrappers below are private to this module and handed out only by
// `kernels_if_supported` / `avx512_if_supported`, after the feature check; that is what makes
// their `unsafe` calls sound.

fn dot512(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: reachable only through `avx512_if_supported`, which checked avx512f.
    unsafe { reduce512::<0, 1>(a, [b])[0] }
}

fn l2_squared512(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: as for `dot512`.
    unsafe { reduce512::<1, 1>(a, [b])[0] }
}

fn l1_512(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: as for `dot512`.
    unsafe { reduce512::<2, 1>(a, [b])[0] }
}

fn dot512x4(q: &[f32], vs: [&[f32]; 4]) -> [f32; 4] {
    // SAFETY: as for `dot512`.
    unsafe { reduce512::<0, 4>(q, vs) }
}

fn l2_squared512x4(q: &[f32], vs: [&[f32]; 4]) -> [f32; 4] {
    // SAFETY: as for `dot512`.
    unsafe { reduce512::<1, 4>(q, vs) }
}

fn l1_512x4(q: &[f32], vs: [&[f32]; 4]) -> [f32; 4] {
    // SAFETY: as for `dot512`.
    unsafe { reduce512::<2, 4>(q, vs) }
}

/// AVX-512 version of [`reduce`] from `q` to each of the `N` vectors: `OP` 0 is dot, 1 squared
/// L2, 2 L1. Two 16-lane accumulators per vector (32 floats per iteration), then a masked load
/// for the tail, so no scalar loop remains. Each vector's sum is computed in the same order
/// whatever `N`, so the four-vector kernels equal the one-pair ones bit for bit.
///
/// # Safety
/// The CPU must support AVX-512F.
#[target_feature(enable = "avx512f")]
unsafe fn reduce512<const OP: u8, const N: usize>(q: &[f32], vs: [&[f32]; N]) -> [f32; N] {
    #[inline(always)]
    fn step<const OP: u8>(acc: __m512, x: __m512, y: __m512) -> __m512 {
        // SAFETY: only inlined into `reduce512`, which runs with avx512f enabled.
        unsafe {
            match OP {
                0 => _mm512_fmadd_ps(x, y, acc),
                1 => {
                    let d = _mm512_sub_ps(x, y);
                    _mm512_fmadd_ps(d, d, acc)
                }
                _ => _mm512_add_ps(acc, _mm512_abs_ps(_mm512_sub_ps(x, y))),
            }
        }
    }
    let n = vs.iter().fold(q.len(), |n, v| n.min(v.len()));
    let pq = q.as_ptr();
    let pv = vs.map(<[f32]>::as_ptr);
    let mut i = 0;
    // SAFETY: full loads read 16 floats at i with i + 16 <= n (i + 32 <= n in the first loop),
    // n being the shortest length; the tail loads are masked to the `n - i < 16` remaining
    // floats, and masked-off lanes are not accessed. Unaligned loads are allowed.
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); 2]; N];
        while i + 32 <= n {
            let (x0, x1) = (_mm512_loadu_ps(pq.add(i)), _mm512_loadu_ps(pq.add(i + 16)));
            for (a, p) in acc.iter_mut().zip(pv) {
                a[0] = step::<OP>(a[0], x0, _mm512_loadu_ps(p.add(i)));
                a[1] = step::<OP>(a[1], x1, _mm512_loadu_ps(p.add(i + 16)));
            }
            i += 32;
        }
        if i + 16 <= n {
            let x = _mm512_loadu_ps(pq.add(i));
            for (a, p) in acc.iter_mut().zip(pv) {
                a[0] = step::<OP>(a[0], x, _mm512_loadu_ps(p.add(i)));
            }
            i += 16;
        }
        if i < n {
            let mask: __mmask16 = (1u16 << (n - i)) - 1;
            let x = _mm512_maskz_loadu_ps(mask, pq.add(i));
            for (a, p) in acc.iter_mut().zip(pv) {
                a[1] = step::<OP>(a[1], x, _mm512_maskz_loadu_ps(mask, p.add(i)));
            }
        }
        let mut sums = [0.0; N];
        for (sum, [a0, a1]) in sums.iter_mut().zip(acc) {
            *sum = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
        }
        sums
    }
}

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
