// Research for issue 21 (not built by the project): the bare GEMM of all-MiniLM-L6-v2's
// matmuls, measured as plan.md section 5 says. Build as the lib of a scratch crate (cdylib +
// rlib, release with lto): natively `RUSTFLAGS="-C target-cpu=native"` with a main calling
// `Model::run`; in wasm `RUSTFLAGS="-C target-feature=+simd128" cargo build --release --target
// wasm32-unknown-unknown --lib`, then `node gemm-run.mjs` beside the .wasm files.
//! Bare GEMM kernels for all-MiniLM-L6-v2's matmuls (x[M,K] · W[N,K]^T), to measure how fast a
//! 17-token query's six layers can be in wasm simd128 and natively.

/// Weights packed in panels of 8 output columns, k-major: panel p holds W[8p..8p+8][k] for each k.
pub struct Packed {
    n: usize,
    k: usize,
    data: Vec<f32>,
}

pub fn pack(w: &[f32], n: usize, k: usize) -> Packed {
    assert_eq!(n % 8, 0);
    let mut data = vec![0.0; n * k];
    for p in 0..n / 8 {
        for kk in 0..k {
            for j in 0..8 {
                data[p * 8 * k + kk * 8 + j] = w[(p * 8 + j) * k + kk];
            }
        }
    }
    Packed { n, k, data }
}

/// out[M,N] = x[M,K] · W^T, plain loops.
pub fn naive(x: &[f32], m: usize, w: &[f32], n: usize, k: usize, out: &mut [f32]) {
    for i in 0..m {
        for j in 0..n {
            let mut s = 0.0;
            for kk in 0..k {
                s += x[i * k + kk] * w[j * k + kk];
            }
            out[i * n + j] = s;
        }
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub fn gemm(x: &[f32], m: usize, w: &Packed, out: &mut [f32]) {
    use core::arch::wasm32::*;
    let (n, k) = (w.n, w.k);
    let mut i = 0;
    while i < m {
        let rows = (m - i).min(4);
        for p in 0..n / 8 {
            let panel = &w.data[p * 8 * k..(p + 1) * 8 * k];
            let mut acc = [f32x4_splat(0.0); 8];
            for kk in 0..k {
                // SAFETY: kk * 8 + 8 <= panel.len() (panel is 8k floats); v128_load takes unaligned.
                let (b0, b1) = unsafe {
                    let at = panel.as_ptr().add(kk * 8) as *const v128;
                    (v128_load(at), v128_load(at.add(1)))
                };
                for r in 0..4 {
                    let a = f32x4_splat(if r < rows { x[(i + r) * k + kk] } else { 0.0 });
                    acc[2 * r] = f32x4_add(acc[2 * r], f32x4_mul(a, b0));
                    acc[2 * r + 1] = f32x4_add(acc[2 * r + 1], f32x4_mul(a, b1));
                }
            }
            for r in 0..rows {
                let o = (i + r) * n + p * 8;
                for (j, v) in [acc[2 * r], acc[2 * r + 1]].iter().enumerate() {
                    out[o + 4 * j] = f32x4_extract_lane::<0>(*v);
                    out[o + 4 * j + 1] = f32x4_extract_lane::<1>(*v);
                    out[o + 4 * j + 2] = f32x4_extract_lane::<2>(*v);
                    out[o + 4 * j + 3] = f32x4_extract_lane::<3>(*v);
                }
            }
        }
        i += 4;
    }
}

/// The same tiling in plain Rust (auto-vectorised natively, scalar in wasm without simd128).
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
pub fn gemm(x: &[f32], m: usize, w: &Packed, out: &mut [f32]) {
    let (n, k) = (w.n, w.k);
    let mut i = 0;
    while i < m {
        let rows = (m - i).min(4);
        for p in 0..n / 8 {
            let panel = &w.data[p * 8 * k..(p + 1) * 8 * k];
            let mut acc = [[0.0f32; 8]; 4];
            for kk in 0..k {
                let b = &panel[kk * 8..kk * 8 + 8];
                for r in 0..4 {
                    let a = if r < rows { x[(i + r) * k + kk] } else { 0.0 };
                    for j in 0..8 {
                        acc[r][j] += a * b[j];
                    }
                }
            }
            for r in 0..rows {
                out[(i + r) * n + p * 8..(i + r) * n + p * 8 + 8].copy_from_slice(&acc[r]);
            }
        }
        i += 4;
    }
}

/// One query's matmuls through six layers: per layer Q, K, V, O (384x384), FFN up (1536x384)
/// and down (384x1536), over `t` tokens. Returns a checksum.
pub struct Model {
    sq: Vec<Packed>,
    up: Packed,
    down: Packed,
}

fn weights(n: usize, k: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.max(1);
    (0..n * k)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s as f32 / u32::MAX as f32 - 0.5) * 0.1
        })
        .collect()
}

impl Model {
    pub fn new() -> Self {
        Model {
            sq: (0..4).map(|i| pack(&weights(384, 384, 7 + i), 384, 384)).collect(),
            up: pack(&weights(1536, 384, 3), 1536, 384),
            down: pack(&weights(384, 1536, 5), 384, 1536),
        }
    }

    pub fn run(&self, t: usize) -> f32 {
        let mut x = weights(t, 384, 11);
        let mut tmp = vec![0.0; t * 384];
        let mut h = vec![0.0; t * 1536];
        for _layer in 0..6 {
            for w in &self.sq {
                gemm(&x, t, w, &mut tmp);
            }
            gemm(&tmp, t, &self.up, &mut h);
            gemm(&h, t, &self.down, &mut x);
            for v in x.iter_mut() {
                *v *= 0.01;
            }
        }
        x.iter().sum()
    }
}

impl Default for Model {
    fn default() -> Self {
        Self::new()
    }
}

static mut MODEL: Option<Model> = None;

/// wasm entry: builds the model once, then runs `reps` queries of `t` tokens.
#[no_mangle]
pub extern "C" fn bench(reps: u32, t: u32) -> f32 {
    // SAFETY: single-threaded wasm; the static is only touched here.
    let model = unsafe { (*core::ptr::addr_of_mut!(MODEL)).get_or_insert_with(Model::new) };
    let mut s = 0.0;
    for _ in 0..reps {
        s += model.run(t as usize);
    }
    s
}

/// Checks the kernel against the naive product.
#[no_mangle]
pub extern "C" fn check() -> f32 {
    let (m, n, k) = (17, 48, 40);
    let x = weights(m, k, 1);
    let w = weights(n, k, 2);
    let mut a = vec![0.0; m * n];
    let mut b = vec![0.0; m * n];
    naive(&x, m, &w, n, k, &mut a);
    gemm(&x, m, &pack(&w, n, k), &mut b);
    a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}
