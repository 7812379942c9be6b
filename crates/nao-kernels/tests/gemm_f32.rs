//! The tiled f32 GEMM for float weights (`gemm_f32`): every kernel set against the scalar
//! twin and the plain sequential definition bit for bit, against an f64 reference within the
//! sequential-sum bound, and batch invariance (a token's outputs do not depend on the call).
//!
//! Tolerance against f64: each output is one sequential f32 FMA chain over `k`, so
//! `|ŷ − y| ≤ γ_K · Σ_k |w_k · x_k|` with `γ_K = K·u / (1 − K·u)`, `u = 2⁻²⁴`.

use half::{bf16, f16};
use nao_kernels::cast::as_bytes;
use nao_kernels::dot::{QuantizedActs, SimdLevel};
use nao_kernels::gemm_f32::{gemm, gemm_at, reference, KC};
use nao_kernels::matmul::{matmul, WeightView};
use nao_kernels::pool::ThreadPool;
use nao_kernels::DType;
use proptest::prelude::*;

mod common;
use common::Rng;

const LEVELS: [SimdLevel; 3] = [SimdLevel::Scalar, SimdLevel::Avx2, SimdLevel::Avx512];
const TYPES: [DType; 3] = [DType::F32, DType::F16, DType::BF16];

/// A `[rows, cols]` weight of type `dtype` as bytes, and its values as f32 (exact).
fn weight(dtype: DType, rows: usize, cols: usize, r: &mut Rng) -> (Vec<u8>, Vec<f32>) {
    let v: Vec<f32> = (0..rows * cols).map(|_| r.act()).collect();
    match dtype {
        DType::F32 => (as_bytes(&v).to_vec(), v),
        DType::F16 => {
            let h: Vec<f16> = v.iter().map(|&x| f16::from_f32(x)).collect();
            let back = h.iter().map(|x| x.to_f32()).collect();
            (as_bytes(&h).to_vec(), back)
        }
        DType::BF16 => {
            let h: Vec<bf16> = v.iter().map(|&x| bf16::from_f32(x)).collect();
            let back = h.iter().map(|x| x.to_f32()).collect();
            (as_bytes(&h).to_vec(), back)
        }
        _ => unreachable!(),
    }
}

/// Copies `bytes` into storage aligned for f32 (a `Vec<u8>` carries no such promise).
fn aligned(bytes: &[u8]) -> Vec<f32> {
    let mut w = vec![0.0f32; bytes.len().div_ceil(4)];
    for (d, c) in w.iter_mut().zip(bytes.chunks(4)) {
        let mut b = [0u8; 4];
        b[..c.len()].copy_from_slice(c);
        *d = f32::from_ne_bytes(b);
    }
    w
}

fn acts(n: usize, r: &mut Rng) -> Vec<f32> {
    (0..n).map(|_| r.act()).collect()
}

/// Checks every level against `reference` bit for bit and `reference` against f64.
fn check_all(dtype: DType, rows: usize, cols: usize, n: usize, threads: usize, seed: u64) {
    let mut r = Rng(seed);
    let (bytes, wf) = weight(dtype, rows, cols, &mut r);
    let store = aligned(&bytes);
    let view = WeightView {
        dtype,
        data: &as_bytes(&store)[..bytes.len()],
        rows,
        cols,
    };
    let x = acts(n * cols, &mut r);
    let mut want = vec![f32::NAN; n * rows];
    reference(&view, &x, n, &mut want).unwrap();
    let u = f64::from(f32::EPSILON) / 2.0;
    let gamma = cols as f64 * u / (1.0 - cols as f64 * u);
    for t in 0..n {
        for j in 0..rows {
            let (mut s, mut a) = (0.0f64, 0.0f64);
            for k in 0..cols {
                let p = f64::from(wf[j * cols + k]) * f64::from(x[t * cols + k]);
                s += p;
                a += p.abs();
            }
            let got = f64::from(want[t * rows + j]);
            assert!(
                (got - s).abs() <= gamma * a + 1e-30,
                "{dtype} {rows}x{cols} n={n} t={t} r={j}: {got} vs f64 {s} (bound {})",
                gamma * a
            );
        }
    }
    let pool = ThreadPool::new(threads);
    for level in LEVELS {
        let mut y = vec![f32::NAN; n * rows];
        if !gemm_at(level, &view, &x, n, &mut y, &pool).unwrap() {
            continue;
        }
        for (i, (a, b)) in y.iter().zip(&want).enumerate() {
            assert_eq!(
                a.to_bits(),
                b.to_bits(),
                "{level:?} {dtype} {rows}x{cols} n={n} out {i}: {a} vs {b}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn every_level_equals_the_sequential_definition(
        ti in 0..TYPES.len(),
        rows in 1..=70usize,
        cols in 1..=600usize,
        n in 1..=27usize,
        threads in 1..=3usize,
        seed in any::<u64>(),
    ) {
        check_all(TYPES[ti], rows, cols, n, threads, seed);
    }
}

#[test]
fn tile_edges_and_column_blocks() {
    // Rows around the 16/32-row panels, tokens around the 4/6/12-token tiles, columns
    // around one and several column blocks.
    let mut seed = 1;
    for dtype in TYPES {
        for rows in [1, 15, 16, 17, 31, 32, 33, 64, 65] {
            for (cols, n) in [(1, 13), (7, 12), (KC, 25), (KC + 1, 6), (3 * KC - 5, 7)] {
                check_all(dtype, rows, cols, n, 2, seed);
                seed += 1;
            }
        }
    }
}

#[test]
fn outputs_do_not_depend_on_the_batch() {
    let pool = ThreadPool::new(2);
    let mut r = Rng(9);
    for dtype in TYPES {
        let (rows, cols, n) = (45, 389, 29);
        let (bytes, _) = weight(dtype, rows, cols, &mut r);
        let store = aligned(&bytes);
        let view = WeightView {
            dtype,
            data: &as_bytes(&store)[..bytes.len()],
            rows,
            cols,
        };
        let x = acts(n * cols, &mut r);
        let mut all = vec![0.0f32; n * rows];
        gemm(&view, &x, n, &mut all, &pool).unwrap();
        // Every contiguous sub-batch; for F32 through the public matmul (which serves F32
        // weights from this path, one token at a time too).
        let mut q = QuantizedActs::new();
        for (start, len) in [(0, 1), (5, 1), (28, 1), (0, 2), (3, 7), (11, 13), (16, 13)] {
            let xs = &x[start * cols..(start + len) * cols];
            let mut y = vec![0.0f32; len * rows];
            if dtype == DType::F32 {
                matmul(&view, xs, len, &mut y, &mut q, &pool).unwrap();
            } else {
                gemm(&view, xs, len, &mut y, &pool).unwrap();
            }
            for (i, (a, b)) in y.iter().zip(&all[start * rows..]).enumerate() {
                assert_eq!(
                    a.to_bits(),
                    b.to_bits(),
                    "{dtype} batch {start}+{len} out {i}"
                );
            }
        }
    }
}

#[test]
fn rejects_bad_lengths_and_types() {
    let pool = ThreadPool::new(2);
    let w = vec![0.0f32; 6];
    let view = WeightView {
        dtype: DType::F32,
        data: as_bytes(&w),
        rows: 2,
        cols: 3,
    };
    let mut y = vec![0.0f32; 4];
    assert!(gemm(&view, &[0.0; 5], 2, &mut y, &pool).is_err());
    assert!(gemm(&view, &[0.0; 6], 2, &mut y[..3], &pool).is_err());
    let short = WeightView {
        data: &as_bytes(&w)[..20],
        ..view
    };
    assert!(gemm(&short, &[0.0; 6], 2, &mut y, &pool).is_err());
    let q = WeightView {
        dtype: DType::Q8_0,
        ..view
    };
    assert!(gemm(&q, &[0.0; 6], 2, &mut y, &pool).is_err());
    // Empty shapes are fine.
    assert!(gemm(&view, &[], 0, &mut [], &pool).is_ok());
}

/// Decode-shaped timing (one token, a 4096 × 4096 matrix, larger than the caches): the GEMM
/// against the per-row dot kernels it replaced for single tokens. Run with
/// `cargo test --release -p nao-kernels --test gemm_f32 -- --ignored --nocapture`.
#[test]
#[ignore]
fn one_token_timing() {
    use nao_kernels::dot::{vec_dot, ActRow};
    use nao_kernels::pool::SharedMut;
    let pool = ThreadPool::new(2);
    let mut r = Rng(3);
    let (rows, cols) = (4096, 4096);
    for dtype in TYPES {
        let (bytes, _) = weight(dtype, rows, cols, &mut r);
        let store = aligned(&bytes);
        let view = WeightView {
            dtype,
            data: &as_bytes(&store)[..bytes.len()],
            rows,
            cols,
        };
        let rb = bytes.len() / rows;
        let x = acts(cols, &mut r);
        let mut y = vec![0.0f32; rows];
        let reps = 20;
        let t0 = std::time::Instant::now();
        for _ in 0..reps {
            gemm(&view, &x, 1, &mut y, &pool).unwrap();
        }
        let t_gemm = t0.elapsed().as_secs_f64() / reps as f64;
        let t0 = std::time::Instant::now();
        for _ in 0..reps {
            let out = SharedMut::new(&mut y);
            pool.for_ranges(rows, &|range| {
                for i in range {
                    let row = &view.data[i * rb..(i + 1) * rb];
                    out.write(i, vec_dot(dtype, cols, row, ActRow::F32(&x)).unwrap());
                }
            });
        }
        let t_dot = t0.elapsed().as_secs_f64() / reps as f64;
        let gbs = |t: f64| bytes.len() as f64 / t / 1e9;
        println!(
            "{dtype}: gemm {:.3} ms ({:.1} GB/s), dot {:.3} ms ({:.1} GB/s)",
            t_gemm * 1e3,
            gbs(t_gemm),
            t_dot * 1e3,
            gbs(t_dot)
        );
    }
}
