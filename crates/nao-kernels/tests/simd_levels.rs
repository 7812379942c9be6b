//! Every SIMD level (AVX2, AVX-512 VNNI) against the scalar twins, level by level: the
//! tests for a level this CPU lacks return early (they pass without checking anything).
//!
//! - Random data, block counts that are not multiples of the multi-column tile: equal within
//!   a per-format tolerance (only the f32 summation order differs).
//! - Data whose every partial sum is an exactly representable f32 (unit scales, small
//!   activations): the integer arithmetic must agree exactly, so the results are bit-identical.
//! - Multi-column calls (any number of columns) are bit-identical to single-row calls.
//! - The AVX-512 Q8_K quantizer is bit-identical to the scalar one, edge cases included.
//! - `matmul` over a batch (several column blocks) is bit-identical per token to `matmul`
//!   of that token alone (batch invariance).

use half::f16;
use nao_kernels::blocks::*;
use nao_kernels::cast::as_bytes;
use nao_kernels::dot::{vec_dot_at, vec_dot_multi_at, ActRow, QuantizedActs, SimdLevel};
use nao_kernels::matmul::{matmul, WeightView};
use nao_kernels::pool::ThreadPool;
use nao_kernels::quantize::{
    quantize_row_q8_0, quantize_row_q8_0_scalar, quantize_row_q8_1, quantize_row_q8_1_scalar,
    quantize_row_q8_k, quantize_row_q8_k_scalar,
};
use nao_kernels::DType;
use proptest::prelude::*;

mod common;
use common::Rng;

/// Weight formats with AVX2 or AVX-512 kernels.
const TYPES: [DType; 5] = [
    DType::Q4K,
    DType::Q6K,
    DType::Q8_0,
    DType::Q4_0,
    DType::Q5_0,
];
const LEVELS: [SimdLevel; 2] = [SimdLevel::Avx2, SimdLevel::Avx512];

/// Raw bytes in 4-byte-aligned storage (f32 words holding the bit patterns), so
/// `cast_slice` never sees a misaligned row.
struct Aligned {
    words: Vec<f32>,
    len: usize,
}

impl Aligned {
    fn new(bytes: &[u8]) -> Self {
        let words = bytes
            .chunks(4)
            .map(|c| {
                let mut w = [0u8; 4];
                w[..c.len()].copy_from_slice(c);
                f32::from_bits(u32::from_ne_bytes(w))
            })
            .collect();
        Aligned {
            words,
            len: bytes.len(),
        }
    }
    fn bytes(&self) -> &[u8] {
        &as_bytes(&self.words)[..self.len]
    }
}

/// `nb` random blocks of `w` as bytes. `exact`: unit f16 scales and small sub-block scales, so
/// that every partial sum of a dot with small-integer activations is an exact f32.
fn weight_row(w: DType, nb: usize, exact: bool, r: &mut Rng) -> Vec<u8> {
    let one = f16::from_f32(1.0);
    match w {
        DType::Q4K => {
            let v: Vec<BlockQ4K> = (0..nb)
                .map(|_| {
                    let mut b = BlockQ4K {
                        d: if exact { one } else { r.scale_signed() },
                        dmin: if exact { one } else { r.scale_signed() },
                        scales: [0; 12],
                        qs: [0; 128],
                    };
                    r.fill(&mut b.scales);
                    r.fill(&mut b.qs);
                    b
                })
                .collect();
            as_bytes(&v).to_vec()
        }
        DType::Q6K => {
            let v: Vec<BlockQ6K> = (0..nb)
                .map(|_| {
                    let mut b = BlockQ6K {
                        ql: [0; 128],
                        qh: [0; 64],
                        scales: [0; 16],
                        d: if exact { one } else { r.scale_signed() },
                    };
                    r.fill(&mut b.ql);
                    r.fill(&mut b.qh);
                    let m = if exact { 16 } else { 127 };
                    for s in &mut b.scales {
                        *s = r.int(m) as i8;
                    }
                    b
                })
                .collect();
            as_bytes(&v).to_vec()
        }
        DType::Q8_0 => {
            let v: Vec<BlockQ8_0> = (0..nb * 8)
                .map(|_| {
                    let mut b = BlockQ8_0 {
                        d: if exact { one } else { r.scale_signed() },
                        qs: [0; 32],
                    };
                    for q in &mut b.qs {
                        // -128 included: the weights may hold it (VNNI handles it exactly).
                        *q = r.next() as i8;
                    }
                    b
                })
                .collect();
            as_bytes(&v).to_vec()
        }
        DType::Q4_0 => {
            let v: Vec<BlockQ4_0> = (0..nb * 8)
                .map(|_| {
                    let mut b = BlockQ4_0 {
                        d: if exact { one } else { r.scale_signed() },
                        qs: [0; 16],
                    };
                    r.fill(&mut b.qs);
                    b
                })
                .collect();
            as_bytes(&v).to_vec()
        }
        DType::Q5_0 => {
            let v: Vec<BlockQ5_0> = (0..nb * 8)
                .map(|_| {
                    let mut b = BlockQ5_0 {
                        d: if exact { one } else { r.scale_signed() },
                        qh: [0; 4],
                        qs: [0; 16],
                    };
                    r.fill(&mut b.qh);
                    r.fill(&mut b.qs);
                    b
                })
                .collect();
            as_bytes(&v).to_vec()
        }
        _ => unreachable!("{w}"),
    }
}

/// `n` activation rows of `nb` super-blocks' worth of elements for `w`: quantized from
/// random floats, or (`exact`) built directly with unit scales and values in [-8, 8].
fn act_rows(w: DType, nb: usize, n: usize, exact: bool, r: &mut Rng) -> QuantizedActs {
    let k = nb * 256;
    let mut acts = QuantizedActs::new();
    if !exact {
        let x: Vec<f32> = (0..n * k)
            .map(|_| {
                let v = r.unit();
                if r.next() & 31 == 0 {
                    v * 20.0
                } else {
                    v
                }
            })
            .collect();
        acts.quantize(w, &x, n, k).unwrap();
        return acts;
    }
    // Integers whose quantization has a unit scale: every 32-block holds a 127 (so Q8_0's
    // d = 127/127 = 1 and Q8_K's d = −1) and otherwise values in [-8, 8].
    let x: Vec<f32> = (0..n * k)
        .map(|i| if i % 32 == 0 { 127.0 } else { r.int(8) as f32 })
        .collect();
    acts.quantize(w, &x, n, k).unwrap();
    acts
}

fn tol_for(w: DType) -> f64 {
    match w {
        DType::Q8_0 | DType::Q4_0 | DType::Q5_0 => 4e-6,
        _ => 2e-6,
    }
}

/// Scale of the tolerance: the result's magnitude (at least 1) times √k, a generous model of
/// how the rounding error of a reordered f32 sum of k terms grows.
fn scale_of(scalar: f32, k: usize) -> f64 {
    f64::from(scalar.abs()).max(1.0) * (k as f64).sqrt()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Each SIMD level equals the scalar twin within the format's float-reordering tolerance.
    #[test]
    fn level_matches_scalar(wi in 0..TYPES.len(), li in 0..LEVELS.len(), nb in 1..=7usize, seed in any::<u64>()) {
        let (w, level) = (TYPES[wi], LEVELS[li]);
        if !level.available() {
            return Ok(());
        }
        let mut r = Rng(seed);
        let row = Aligned::new(&weight_row(w, nb, false, &mut r));
        let acts = act_rows(w, nb, 1, false, &mut r);
        let k = nb * 256;
        let a = acts.row(0);
        let scalar = vec_dot_at(SimdLevel::Scalar, w, k, row.bytes(), a).unwrap().unwrap();
        let simd = vec_dot_at(level, w, k, row.bytes(), a).unwrap().unwrap();
        let tol = tol_for(w) * scale_of(scalar, k);
        prop_assert!(f64::from(simd - scalar).abs() <= tol, "{w} {level:?} nb={nb}: {simd} vs {scalar} (tol {tol})");
    }

    /// With every partial sum exact in f32 (below 2^24 for up to 5 super-blocks with these
    /// ranges), the integer arithmetic of each level must agree
    /// with the scalar twin exactly: bit-identical results.
    #[test]
    fn level_integer_sums_exact(wi in 0..TYPES.len(), li in 0..LEVELS.len(), nb in 1..=5usize, seed in any::<u64>()) {
        let (w, level) = (TYPES[wi], LEVELS[li]);
        if !level.available() {
            return Ok(());
        }
        let mut r = Rng(seed);
        let row = Aligned::new(&weight_row(w, nb, true, &mut r));
        let acts = act_rows(w, nb, 1, true, &mut r);
        let k = nb * 256;
        let a = acts.row(0);
        let scalar = vec_dot_at(SimdLevel::Scalar, w, k, row.bytes(), a).unwrap().unwrap();
        let simd = vec_dot_at(level, w, k, row.bytes(), a).unwrap().unwrap();
        prop_assert_eq!(simd.to_bits(), scalar.to_bits(), "{} {:?} nb={}: {} vs {}", w, level, nb, simd, scalar);
    }

    /// Multi-column calls equal single-row calls bit for bit, for any number of columns
    /// (full tiles of 4 and remainders).
    #[test]
    fn level_multi_equals_single(wi in 0..TYPES.len(), li in 0..LEVELS.len(), nb in 1..=5usize, n in 1..=9usize, seed in any::<u64>()) {
        let (w, level) = (TYPES[wi], LEVELS[li]);
        if !level.available() {
            return Ok(());
        }
        let mut r = Rng(seed);
        let row = Aligned::new(&weight_row(w, nb, false, &mut r));
        let acts = act_rows(w, nb, n, false, &mut r);
        let k = nb * 256;
        let rows: Vec<ActRow<'_>> = (0..n).map(|t| acts.row(t)).collect();
        let mut out = vec![0.0f32; n];
        prop_assert!(vec_dot_multi_at(level, w, k, row.bytes(), &rows, &mut out).unwrap());
        for (t, a) in rows.iter().enumerate() {
            let single = vec_dot_at(level, w, k, row.bytes(), *a).unwrap().unwrap();
            prop_assert_eq!(out[t].to_bits(), single.to_bits(), "{} {:?} col {}: {} vs {}", w, level, t, out[t], single);
        }
    }

    /// The dispatched Q8_K quantizer (AVX-512 where available) equals the scalar one bit for
    /// bit, on random rows with injected edge values.
    #[test]
    fn q8_k_quantizer_matches_scalar(nb in 1..=4usize, seed in any::<u64>(), edges in any::<u32>()) {
        let mut r = Rng(seed);
        let mut x: Vec<f32> = (0..nb * 256).map(|_| r.unit() * 3.0).collect();
        let specials = [
            0.0, -0.0, f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1e-42, -1e-42, 2.5, -2.5,
            1e30, -1e30, f32::MIN_POSITIVE,
        ];
        for bit in 0..32 {
            if edges & (1 << bit) != 0 {
                let i = (r.next() as usize) % x.len();
                x[i] = specials[(r.next() as usize) % specials.len()];
            }
        }
        // Sometimes a whole block of zeros, or of tiny values (iscale overflows to inf).
        if edges & 1 != 0 {
            x[..256].iter_mut().for_each(|v| *v = 0.0);
        }
        if edges & 2 != 0 && nb > 1 {
            x[256..512].iter_mut().for_each(|v| *v = 1e-40);
        }
        let zero = BlockQ8K { d: 0.0, qs: [0; 256], bsums: [0; 16] };
        let mut a = vec![zero; nb];
        let mut b = vec![zero; nb];
        quantize_row_q8_k(&x, &mut a);
        quantize_row_q8_k_scalar(&x, &mut b);
        for (i, (p, q)) in a.iter().zip(&b).enumerate() {
            prop_assert_eq!(p.d.to_bits(), q.d.to_bits(), "block {} d", i);
            prop_assert_eq!(p.qs, q.qs, "block {} qs", i);
            prop_assert_eq!(p.bsums, q.bsums, "block {} bsums", i);
        }
    }
}

proptest! {
    /// The dispatched Q8_0 / Q8_1 quantizers (AVX-512 where available) equal the scalar ones
    /// bit for bit, on random rows (any number of blocks) with injected edge values.
    #[test]
    fn q8_0_quantizer_matches_scalar(nb in 1..=9usize, seed in any::<u64>(), edges in any::<u32>(), scale in prop::sample::select(vec![1e-3f32, 1.0, 3.0, 1e4])) {
        let mut r = Rng(seed);
        let mut x: Vec<f32> = (0..nb * 32).map(|_| r.unit() * scale).collect();
        let specials = [
            0.0, -0.0, f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1e-42, -1e-42, 2.5, -2.5,
            1e30, -1e30, f32::MIN_POSITIVE, 0.5, -0.5, 1.5,
        ];
        for bit in 0..32 {
            if edges & (1 << bit) != 0 {
                let i = (r.next() as usize) % x.len();
                x[i] = specials[(r.next() as usize) % specials.len()];
            }
        }
        if edges & 1 != 0 {
            x[..32].iter_mut().for_each(|v| *v = 0.0);
        }
        if edges & 2 != 0 && nb > 1 {
            x[32..64].iter_mut().for_each(|v| *v = 1e-40);
        }
        // Exact ties: values k/2 with amax 127 make `x · id` land on halves.
        if edges & 4 != 0 {
            for (i, v) in x[..32].iter_mut().enumerate() {
                *v = (i as f32 - 16.0) * 0.5;
            }
            x[31] = 127.0;
        }
        let z0 = BlockQ8_0 { d: f16::ZERO, qs: [0; 32] };
        let (mut a, mut b) = (vec![z0; nb], vec![z0; nb]);
        quantize_row_q8_0(&x, &mut a);
        quantize_row_q8_0_scalar(&x, &mut b);
        for (i, (p, q)) in a.iter().zip(&b).enumerate() {
            prop_assert_eq!(p.d.to_bits(), q.d.to_bits(), "block {} d", i);
            prop_assert_eq!(p.qs, q.qs, "block {} qs", i);
        }
        let z1 = BlockQ8_1 { d: f16::ZERO, s: f16::ZERO, qs: [0; 32] };
        let (mut a, mut b) = (vec![z1; nb], vec![z1; nb]);
        quantize_row_q8_1(&x, &mut a);
        quantize_row_q8_1_scalar(&x, &mut b);
        for (i, (p, q)) in a.iter().zip(&b).enumerate() {
            prop_assert_eq!(p.d.to_bits(), q.d.to_bits(), "block {} d", i);
            prop_assert_eq!(p.s.to_bits(), q.s.to_bits(), "block {} s", i);
            prop_assert_eq!(p.qs, q.qs, "block {} qs", i);
        }
    }
}

/// A row quantized with one maximum at +m and another at −m: the first one sets the sign.
#[test]
fn q8_k_quantizer_first_max_wins() {
    let zero = BlockQ8K {
        d: 0.0,
        qs: [0; 256],
        bsums: [0; 16],
    };
    for (i, j) in [(3usize, 200usize), (200, 3), (0, 255), (17, 16)] {
        let mut x = vec![0.25f32; 256];
        x[i] = 2.0;
        x[j] = -2.0;
        let mut a = [zero];
        let mut b = [zero];
        quantize_row_q8_k(&x, &mut a);
        quantize_row_q8_k_scalar(&x, &mut b);
        assert_eq!(a[0].d.to_bits(), b[0].d.to_bits(), "{i} {j}");
        assert_eq!(a[0].qs, b[0].qs, "{i} {j}");
    }
}

/// Batch invariance through `matmul`: a token's outputs are bit-identical whether it is
/// multiplied alone or in a batch (16 tokens, and 50 tokens spanning several column blocks).
#[test]
fn matmul_batch_invariance_across_column_blocks() {
    let pool = ThreadPool::new(2);
    let mut r = Rng(0xBA7C);
    for w in TYPES {
        let nb = 35; // k = 8960, as Qwen2.5-1.5B's FFN: several column blocks at 50 tokens
        let cols = nb * 256;
        let n_rows = 6;
        let bytes: Vec<u8> = (0..n_rows)
            .flat_map(|_| weight_row(w, nb, false, &mut r))
            .collect();
        let data = Aligned::new(&bytes);
        let view = WeightView {
            dtype: w,
            data: data.bytes(),
            rows: n_rows,
            cols,
        };
        for n_tokens in [16usize, 50] {
            let x: Vec<f32> = (0..n_tokens * cols).map(|_| r.unit()).collect();
            let mut acts = QuantizedActs::new();
            let mut y = vec![0.0f32; n_tokens * n_rows];
            matmul(&view, &x, n_tokens, &mut y, &mut acts, &pool).unwrap();
            for t in 0..n_tokens {
                let mut yt = vec![0.0f32; n_rows];
                matmul(
                    &view,
                    &x[t * cols..(t + 1) * cols],
                    1,
                    &mut yt,
                    &mut acts,
                    &pool,
                )
                .unwrap();
                for (i, (a, b)) in y[t * n_rows..(t + 1) * n_rows].iter().zip(&yt).enumerate() {
                    assert_eq!(a.to_bits(), b.to_bits(), "{w} n={n_tokens} t={t} row={i}");
                }
            }
        }
    }
}

/// Inputs of a gate test: `n` gate values in `[-scale, scale)` with one of `specials` put at
/// a random place for each set bit of `edges`, and `n` multipliers in `[-1, 1)`.
fn gate_inputs(
    n: usize,
    seed: u64,
    edges: u32,
    scale: f32,
    specials: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let mut r = Rng(seed);
    let mut g: Vec<f32> = (0..n).map(|_| r.unit() * scale).collect();
    let u: Vec<f32> = (0..n).map(|_| r.unit()).collect();
    for bit in 0..32 {
        if n > 0 && edges & (1 << bit) != 0 {
            let i = (r.next() as usize) % n;
            g[i] = specials[(r.next() as usize) % specials.len()];
        }
    }
    (g, u)
}

proptest! {
    /// The dispatched SwiGLU gate (AVX2+FMA where available) equals its scalar twin bit for
    /// bit, for any length (tails included) and edge values, and stays within a few ulp of
    /// the exact SiLU.
    #[test]
    fn silu_mul_matches_scalar(n in 0..=67usize, seed in any::<u64>(), edges in any::<u32>(), scale in prop::sample::select(vec![0.1f32, 3.0, 30.0, 200.0])) {
        let specials = [
            0.0, -0.0, f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1e-42, -1e-42, 87.0, -87.0,
            88.5, -88.5, 1e30, -1e30, 0.346_573_6, -0.346_573_6,
        ];
        let (g, u) = gate_inputs(n, seed, edges, scale, &specials);
        let mut a = g.clone();
        let mut b = g.clone();
        nao_kernels::ops::silu_mul(&mut a, &u);
        nao_kernels::ops::silu_mul_scalar(&mut b, &u);
        for i in 0..n {
            prop_assert!(a[i].to_bits() == b[i].to_bits() || (a[i].is_nan() && b[i].is_nan()),
                "{}: {} -> {} vs {}", i, g[i], a[i], b[i]);
            let x = f64::from(g[i]);
            if x.is_finite() && x.abs() < 80.0 {
                let exact = x / (1.0 + (-x).exp()) * f64::from(u[i]);
                let err = (f64::from(b[i]) - exact).abs();
                prop_assert!(err <= 4.0 * f64::from(f32::EPSILON) * exact.abs() + 1e-37,
                    "{}: silu({}) * {} = {} vs {}", i, x, u[i], b[i], exact);
            }
        }
    }
}

proptest! {
    /// The dispatched GELU gate (AVX2 + F16C gather where available) equals its scalar twin
    /// bit for bit, for any length and edge values (the ±10 cut-offs, f16 rounding ties,
    /// subnormals, NaN), and the scalar GELU is within f16 rounding of the exact tanh form.
    #[test]
    fn gelu_f16_mul_matches_scalar(n in 0..=67usize, seed in any::<u64>(), edges in any::<u32>(), scale in prop::sample::select(vec![0.1f32, 3.0, 12.0, 1e5])) {
        let specials = [
            0.0, -0.0, f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1e-42, -1e-6, 10.0, -10.0,
            9.999, -9.999, 10.001, -10.001, 1.000_976_6, 65_520.0, -65_536.0, 1e30,
        ];
        let (g, u) = gate_inputs(n, seed, edges, scale, &specials);
        let mut a = g.clone();
        let mut b = g.clone();
        nao_kernels::ops::gelu_f16_mul(&mut a, &u);
        nao_kernels::ops::gelu_f16_mul_scalar(&mut b, &u);
        for i in 0..n {
            prop_assert!(a[i].to_bits() == b[i].to_bits() || (a[i].is_nan() && b[i].is_nan()),
                "{}: {} -> {} vs {}", i, g[i], a[i], b[i]);
            let x = f64::from(g[i]);
            if x.is_finite() && x.abs() < 9.99 {
                let exact = 0.5 * x * (1.0 + (0.797_884_560_8 * x * (1.0 + 0.044_715 * x * x)).tanh());
                // Input and output rounded to f16: within 2^-10 relative plus the slope
                // times the input's rounding.
                let tol = (exact.abs() + 1.2 * x.abs()) * 2f64.powi(-10) + 1e-7;
                let got = f64::from(b[i]) / f64::from(u[i]);
                prop_assert!(u[i] == 0.0 || (got - exact).abs() <= tol,
                    "{}: gelu({}) = {} vs {}", i, x, got, exact);
            }
        }
    }
}

/// The GELU table holds exactly the direct evaluation for every f16 input, and the gate
/// split across threads gives the same bits as one thread.
#[test]
fn gelu_table_and_parallel_gate() {
    use nao_kernels::ops::{gate_mul_par, gelu_f16, gelu_f16_direct, Gate};
    for h in 0..=u16::MAX {
        let x = half::f16::from_bits(h).to_f32();
        let direct = if x <= -10.0 {
            0.0
        } else if x >= 10.0 {
            x
        } else {
            gelu_f16_direct(h)
        };
        let got = gelu_f16(x);
        assert!(
            got.to_bits() == direct.to_bits() || (got.is_nan() && direct.is_nan()),
            "{h:#06x}: {got} vs {direct}"
        );
    }
    let pool = nao_kernels::pool::ThreadPool::new(2);
    let mut r = Rng(9);
    let n = 50_003;
    let g: Vec<f32> = (0..n).map(|_| r.unit() * 6.0).collect();
    let u: Vec<f32> = (0..n).map(|_| r.unit()).collect();
    for gate in [Gate::Silu, Gate::GeluF16] {
        let (mut a, mut b) = (g.clone(), g.clone());
        gate_mul_par(gate, &mut a, &u, &pool);
        match gate {
            Gate::Silu => nao_kernels::ops::silu_mul_scalar(&mut b, &u),
            Gate::GeluF16 => nao_kernels::ops::gelu_f16_mul_scalar(&mut b, &u),
        }
        assert!(
            a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
            "{gate:?}"
        );
    }
}
