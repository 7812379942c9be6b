//! Dot-product parity: scalar kernels against an f64 reference (independent dequantization,
//! written from ggml's `dequantize_row_*`), SIMD (`vec_dot`) against the scalar twins, and
//! the error paths of `vec_dot` / `QuantizedActs`.

use half::{bf16, f16};
use nao_kernels::blocks::*;
use nao_kernels::cast::as_bytes;
use nao_kernels::dot::{act_type, vec_dot, vec_dot_scalar, ActRow, ActType, QuantizedActs};
use nao_kernels::quantize::{quantize_row_q8_0, quantize_row_q8_1, quantize_row_q8_k};
use nao_kernels::{DType, KernelError};
use proptest::prelude::*;

// ---------------------------------------------------------------- random data

mod common;
use common::Rng;

fn rand_q4_0(r: &mut Rng) -> BlockQ4_0 {
    let mut b = BlockQ4_0 {
        d: r.scale_signed(),
        qs: [0; 16],
    };
    r.fill(&mut b.qs);
    b
}
fn rand_q4_1(r: &mut Rng) -> BlockQ4_1 {
    let mut b = BlockQ4_1 {
        d: r.scale_signed(),
        m: r.scale_signed(),
        qs: [0; 16],
    };
    r.fill(&mut b.qs);
    b
}
fn rand_q5_0(r: &mut Rng) -> BlockQ5_0 {
    let mut b = BlockQ5_0 {
        d: r.scale_signed(),
        qh: [0; 4],
        qs: [0; 16],
    };
    r.fill(&mut b.qh);
    r.fill(&mut b.qs);
    b
}
fn rand_q5_1(r: &mut Rng) -> BlockQ5_1 {
    let mut b = BlockQ5_1 {
        d: r.scale_signed(),
        m: r.scale_signed(),
        qh: [0; 4],
        qs: [0; 16],
    };
    r.fill(&mut b.qh);
    r.fill(&mut b.qs);
    b
}
fn rand_q8_0(r: &mut Rng) -> BlockQ8_0 {
    let mut b = BlockQ8_0 {
        d: r.scale_signed(),
        qs: [0; 32],
    };
    for q in &mut b.qs {
        *q = r.q8();
    }
    b
}
fn rand_q2k(r: &mut Rng) -> BlockQ2K {
    let mut b = BlockQ2K {
        scales: [0; 16],
        qs: [0; 64],
        d: r.scale_signed(),
        dmin: r.scale_signed(),
    };
    r.fill(&mut b.scales);
    r.fill(&mut b.qs);
    b
}
fn rand_q3k(r: &mut Rng) -> BlockQ3K {
    let mut b = BlockQ3K {
        hmask: [0; 32],
        qs: [0; 64],
        scales: [0; 12],
        d: r.scale_signed(),
    };
    r.fill(&mut b.hmask);
    r.fill(&mut b.qs);
    r.fill(&mut b.scales);
    b
}
fn rand_q4k(r: &mut Rng) -> BlockQ4K {
    let mut b = BlockQ4K {
        d: r.scale_signed(),
        dmin: r.scale_signed(),
        scales: [0; 12],
        qs: [0; 128],
    };
    r.fill(&mut b.scales);
    r.fill(&mut b.qs);
    b
}
fn rand_q5k(r: &mut Rng) -> BlockQ5K {
    let mut b = BlockQ5K {
        d: r.scale_signed(),
        dmin: r.scale_signed(),
        scales: [0; 12],
        qh: [0; 32],
        qs: [0; 128],
    };
    r.fill(&mut b.scales);
    r.fill(&mut b.qh);
    r.fill(&mut b.qs);
    b
}
fn rand_q6k(r: &mut Rng) -> BlockQ6K {
    let mut b = BlockQ6K {
        ql: [0; 128],
        qh: [0; 64],
        scales: [0; 16],
        d: r.scale_signed(),
    };
    r.fill(&mut b.ql);
    r.fill(&mut b.qh);
    for s in &mut b.scales {
        *s = r.q8();
    }
    b
}

// ------------------------------------------------- reference dequantization (f64)

/// One dequantized weight and the magnitude of the terms it was built from
/// (|d·q| + |m|), which bounds the rounding error of kernels that sum those terms separately.
type Deq = (f64, f64);

fn h(x: f16) -> f64 {
    f64::from(x.to_f32())
}

fn deq_q4_0(b: &BlockQ4_0) -> Vec<Deq> {
    let d = h(b.d);
    let mut y = vec![(0.0, 0.0); 32];
    for j in 0..16 {
        let v0 = d * (f64::from(b.qs[j] & 0xF) - 8.0);
        let v1 = d * (f64::from(b.qs[j] >> 4) - 8.0);
        y[j] = (v0, v0.abs());
        y[j + 16] = (v1, v1.abs());
    }
    y
}
fn deq_q4_1(b: &BlockQ4_1) -> Vec<Deq> {
    let (d, m) = (h(b.d), h(b.m));
    let mut y = vec![(0.0, 0.0); 32];
    for j in 0..16 {
        let v0 = d * f64::from(b.qs[j] & 0xF);
        let v1 = d * f64::from(b.qs[j] >> 4);
        y[j] = (v0 + m, v0.abs() + m.abs());
        y[j + 16] = (v1 + m, v1.abs() + m.abs());
    }
    y
}
fn q5_vals(qh: [u8; 4], qs: &[u8; 16]) -> [f64; 32] {
    let qh = u32::from_le_bytes(qh);
    let mut y = [0.0; 32];
    for j in 0..16 {
        let xh0 = ((qh >> j) << 4) & 0x10;
        let xh1 = (qh >> (j + 12)) & 0x10;
        y[j] = f64::from((u32::from(qs[j]) & 0xF) | xh0);
        y[j + 16] = f64::from((u32::from(qs[j]) >> 4) | xh1);
    }
    y
}
fn deq_q5_0(b: &BlockQ5_0) -> Vec<Deq> {
    let d = h(b.d);
    q5_vals(b.qh, &b.qs)
        .iter()
        .map(|&q| {
            let v = d * (q - 16.0);
            (v, v.abs())
        })
        .collect()
}
fn deq_q5_1(b: &BlockQ5_1) -> Vec<Deq> {
    let (d, m) = (h(b.d), h(b.m));
    q5_vals(b.qh, &b.qs)
        .iter()
        .map(|&q| (d * q + m, (d * q).abs() + m.abs()))
        .collect()
}
fn deq_q8_0(b: &BlockQ8_0) -> Vec<Deq> {
    let d = h(b.d);
    b.qs.iter()
        .map(|&q| {
            let v = d * f64::from(q);
            (v, v.abs())
        })
        .collect()
}
fn deq_q2k(b: &BlockQ2K) -> Vec<Deq> {
    let (d, min) = (h(b.d), h(b.dmin));
    let mut y = Vec::with_capacity(256);
    let mut is = 0;
    for n in 0..2 {
        let q = &b.qs[n * 32..n * 32 + 32];
        for shift in [0, 2, 4, 6] {
            for half in 0..2 {
                let sc = b.scales[is];
                is += 1;
                let dl = d * f64::from(sc & 0xF);
                let ml = min * f64::from(sc >> 4);
                for l in 0..16 {
                    let v = dl * f64::from((q[l + 16 * half] >> shift) & 3);
                    y.push((v - ml, v.abs() + ml.abs()));
                }
            }
        }
    }
    y
}
fn deq_q3k(b: &BlockQ3K) -> Vec<Deq> {
    let d = h(b.d);
    // Scale j: low 4 bits from byte j%8 (nibble j/8), high 2 bits from byte 8 + j%4.
    let sc: Vec<f64> = (0..16)
        .map(|j| {
            let lo = (b.scales[j % 8] >> (4 * (j / 8))) & 0xF;
            let hi = (b.scales[8 + j % 4] >> (2 * (j / 4))) & 3;
            f64::from(lo | (hi << 4)) - 32.0
        })
        .collect();
    let mut y = Vec::with_capacity(256);
    let (mut is, mut m) = (0, 1u8);
    for n in 0..2 {
        let q = &b.qs[n * 32..n * 32 + 32];
        for shift in [0, 2, 4, 6] {
            for half in 0..2 {
                let dl = d * sc[is];
                is += 1;
                let r = 16 * half..16 * half + 16;
                for (&ql, &hm) in q[r.clone()].iter().zip(&b.hmask[r]) {
                    let hbit = if hm & m != 0 { 0.0 } else { 4.0 };
                    let v = dl * (f64::from((ql >> shift) & 3) - hbit);
                    y.push((v, v.abs()));
                }
            }
            m = m.wrapping_shl(1);
        }
    }
    y
}
fn scale_min_k4(j: usize, q: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}
fn deq_q4k_like(d: f16, dmin: f16, scales: &[u8; 12], q: impl Fn(usize) -> u8) -> Vec<Deq> {
    let (d, min) = (h(d), h(dmin));
    let mut y = Vec::with_capacity(256);
    for i in 0..256 {
        let (sc, m) = scale_min_k4(i / 32, scales);
        let v = d * f64::from(sc) * f64::from(q(i));
        let mm = min * f64::from(m);
        y.push((v - mm, v.abs() + mm.abs()));
    }
    y
}
fn deq_q4k(b: &BlockQ4K) -> Vec<Deq> {
    deq_q4k_like(b.d, b.dmin, &b.scales, |i| {
        let byte = b.qs[(i / 64) * 32 + i % 32];
        if (i / 32) % 2 == 0 {
            byte & 0xF
        } else {
            byte >> 4
        }
    })
}
fn deq_q5k(b: &BlockQ5K) -> Vec<Deq> {
    deq_q4k_like(b.d, b.dmin, &b.scales, |i| {
        let byte = b.qs[(i / 64) * 32 + i % 32];
        let lo = if (i / 32) % 2 == 0 {
            byte & 0xF
        } else {
            byte >> 4
        };
        let hb = (b.qh[i % 32] >> (i / 32)) & 1;
        lo | (hb << 4)
    })
}
fn deq_q6k(b: &BlockQ6K) -> Vec<Deq> {
    let d = h(b.d);
    let mut y = vec![(0.0, 0.0); 256];
    for n in 0..2 {
        let ql = &b.ql[n * 64..];
        let qh = &b.qh[n * 32..];
        let sc = &b.scales[n * 8..];
        for l in 0..32 {
            let is = l / 16;
            let q1 = i32::from((ql[l] & 0xF) | (qh[l] & 3) << 4) - 32;
            let q2 = i32::from((ql[l + 32] & 0xF) | ((qh[l] >> 2) & 3) << 4) - 32;
            let q3 = i32::from((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) - 32;
            let q4 = i32::from((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) - 32;
            for (off, q, s) in [(0, q1, 0), (32, q2, 2), (64, q3, 4), (96, q4, 6)] {
                let v = d * f64::from(sc[is + s]) * f64::from(q);
                y[n * 128 + l + off] = (v, v.abs());
            }
        }
    }
    y
}

fn deq_act(a: ActRow<'_>) -> Vec<f64> {
    match a {
        ActRow::F32(y) => y.iter().map(|&v| f64::from(v)).collect(),
        ActRow::Q8_0(y) => y
            .iter()
            .flat_map(|b| b.qs.iter().map(move |&q| h(b.d) * f64::from(q)))
            .collect(),
        ActRow::Q8_1(y) => y
            .iter()
            .flat_map(|b| b.qs.iter().map(move |&q| h(b.d) * f64::from(q)))
            .collect(),
        ActRow::Q8K(y) => y
            .iter()
            .flat_map(|b| b.qs.iter().map(move |&q| f64::from(b.d) * f64::from(q)))
            .collect(),
    }
}

// --------------------------------------------------------------- test cases

/// A weight row of `nb` random blocks of `w`: raw bytes plus its reference dequantization.
fn weight_row(w: DType, nb: usize, r: &mut Rng) -> (Vec<u8>, Vec<Deq>) {
    fn go<T: Block>(
        nb: usize,
        r: &mut Rng,
        gen: fn(&mut Rng) -> T,
        deq: fn(&T) -> Vec<Deq>,
    ) -> (Vec<u8>, Vec<Deq>) {
        let blocks: Vec<T> = (0..nb).map(|_| gen(r)).collect();
        let d = blocks.iter().flat_map(deq).collect();
        (as_bytes(&blocks).to_vec(), d)
    }
    match w {
        DType::Q4_0 => go(nb, r, rand_q4_0, deq_q4_0),
        DType::Q4_1 => go(nb, r, rand_q4_1, deq_q4_1),
        DType::Q5_0 => go(nb, r, rand_q5_0, deq_q5_0),
        DType::Q5_1 => go(nb, r, rand_q5_1, deq_q5_1),
        DType::Q8_0 => go(nb, r, rand_q8_0, deq_q8_0),
        DType::Q2K => go(nb, r, rand_q2k, deq_q2k),
        DType::Q3K => go(nb, r, rand_q3k, deq_q3k),
        DType::Q4K => go(nb, r, rand_q4k, deq_q4k),
        DType::Q5K => go(nb, r, rand_q5k, deq_q5k),
        DType::Q6K => go(nb, r, rand_q6k, deq_q6k),
        DType::F32 => {
            let v: Vec<f32> = (0..nb).map(|_| r.act()).collect();
            let d = v
                .iter()
                .map(|&x| (f64::from(x), f64::from(x.abs())))
                .collect();
            (as_bytes(&v).to_vec(), d)
        }
        DType::F16 => {
            let v: Vec<f16> = (0..nb).map(|_| f16::from_f32(r.act())).collect();
            let d = v.iter().map(|x| (h(*x), h(*x).abs())).collect();
            (as_bytes(&v).to_vec(), d)
        }
        DType::BF16 => {
            let v: Vec<bf16> = (0..nb).map(|_| bf16::from_f32(r.act())).collect();
            let d = v
                .iter()
                .map(|x| (f64::from(x.to_f32()), f64::from(x.to_f32().abs())))
                .collect();
            (as_bytes(&v).to_vec(), d)
        }
        _ => unreachable!("{w}"),
    }
}

/// Raw bytes kept in f32-aligned storage (every weight block type needs at most 4-byte
/// alignment), so `cast_slice` inside `vec_dot` never sees a misaligned row.
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

const WEIGHT_TYPES: [DType; 13] = [
    DType::Q4_0,
    DType::Q4_1,
    DType::Q5_0,
    DType::Q5_1,
    DType::Q8_0,
    DType::Q2K,
    DType::Q3K,
    DType::Q4K,
    DType::Q5K,
    DType::Q6K,
    DType::F32,
    DType::F16,
    DType::BF16,
];

/// Element counts to test for `w`: 1, 2, 3 and 7 blocks (and odd tails for float types).
fn sizes(w: DType) -> [usize; 5] {
    match w.block_size() {
        1 => [1, 7, 33, 256, 1000],
        bs => [bs, 2 * bs, 3 * bs, 7 * bs, bs],
    }
}

fn activations(k: usize, r: &mut Rng) -> Vec<f32> {
    (0..k).map(|_| r.act()).collect()
}

/// Reference dot in f64 and the magnitude Σ|terms| that scales the tolerance.
fn reference(w_deq: &[Deq], a: &[f64]) -> (f64, f64) {
    let mut dot = 0.0;
    let mut mag = 0.0;
    for (&(v, m), &x) in w_deq.iter().zip(a) {
        dot += v * x;
        mag += m * x.abs();
    }
    (dot, mag)
}

/// For Q4_1/Q5_1 the kernel uses the activation's stored `s = f16(d·Σq)` for the min term
/// (as ggml does), not `d·Σq`: returns `Σ_blocks m·(s − d·Σq)` and `Σ_blocks |m·s|`.
fn q8_1_min_correction(w: DType, bytes: &[u8], a: ActRow<'_>) -> (f64, f64) {
    let ActRow::Q8_1(y) = a else {
        return (0.0, 0.0);
    };
    let bb = w.block_bytes();
    let mut corr = 0.0;
    let mut mag = 0.0;
    for (wb, ab) in bytes.chunks(bb).zip(y) {
        let m = h(f16::from_le_bytes([wb[2], wb[3]]));
        let sum_q: i32 = ab.qs.iter().map(|&q| i32::from(q)).sum();
        corr += m * (h(ab.s) - h(ab.d) * f64::from(sum_q));
        mag += (m * h(ab.s)).abs();
    }
    (corr, mag)
}

fn case(
    w: DType,
    size_idx: usize,
    seed: u64,
) -> (Vec<u8>, Vec<Deq>, QuantizedActs, Vec<f32>, usize) {
    let mut r = Rng(seed);
    let k = sizes(w)[size_idx];
    let (bytes, deq) = weight_row(w, k / w.block_size(), &mut r);
    let x = activations(k, &mut r);
    let mut acts = QuantizedActs::new();
    acts.quantize(w, &x, 1, k).unwrap();
    (bytes, deq, acts, x, k)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Every scalar kernel equals the f64 dot of the dequantized weights and activations.
    #[test]
    fn scalar_matches_f64_reference(wi in 0..WEIGHT_TYPES.len(), si in 0..5usize, seed in any::<u64>()) {
        let w = WEIGHT_TYPES[wi];
        let (bytes, deq, acts, _, k) = case(w, si, seed);
        let row = Aligned::new(&bytes);
        let a = acts.row(0);
        let got = f64::from(vec_dot_scalar(w, k, row.bytes(), a).unwrap());
        let (want, mag) = reference(&deq, &deq_act(a));
        let (corr, cmag) = q8_1_min_correction(w, &bytes, a);
        let want = want + corr;
        let tol = 1e-5 * (mag + cmag) + 1e-30;
        prop_assert!((got - want).abs() <= tol, "{w} k={k}: got {got}, want {want}, tol {tol}");
    }

    /// The dispatched (SIMD where available) kernel equals its scalar twin.
    #[test]
    fn simd_matches_scalar(wi in 0..WEIGHT_TYPES.len(), si in 0..5usize, seed in any::<u64>()) {
        let w = WEIGHT_TYPES[wi];
        let (bytes, deq, acts, _, k) = case(w, si, seed);
        let row = Aligned::new(&bytes);
        let a = acts.row(0);
        let simd = f64::from(vec_dot(w, k, row.bytes(), a).unwrap());
        let scalar = f64::from(vec_dot_scalar(w, k, row.bytes(), a).unwrap());
        let (_, mag) = reference(&deq, &deq_act(a));
        let tol = 2e-6 * mag + 1e-30;
        prop_assert!((simd - scalar).abs() <= tol, "{w} k={k}: simd {simd}, scalar {scalar}, tol {tol}");
    }

    /// Quantizing the activations costs at most half a step (plus f16 rounding of the scale)
    /// per element against the exact f32 activations.
    #[test]
    fn quantized_dot_close_to_exact(wi in 0..WEIGHT_TYPES.len(), si in 0..5usize, seed in any::<u64>()) {
        let w = WEIGHT_TYPES[wi];
        let (bytes, deq, acts, x, k) = case(w, si, seed);
        let row = Aligned::new(&bytes);
        let got = f64::from(vec_dot(w, k, row.bytes(), acts.row(0)).unwrap());
        let xs: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
        let (want, mag) = reference(&deq, &xs);
        let ab = act_type(w).unwrap().block_size();
        // Q4_1/Q5_1: the min term uses s = f16(d·Σq), off by up to 2^-11 relative.
        let (_, cmag) = q8_1_min_correction(w, &bytes, acts.row(0));
        let mut bound = 1e-5 * mag + cmag * 1e-3;
        for (blk_w, blk_x) in deq.chunks(ab).zip(x.chunks(ab)) {
            let amax = blk_x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let step = f64::from(amax) / 127.0;
            let wsum: f64 = blk_w.iter().map(|&(v, _)| v.abs()).sum();
            bound += wsum * step * 0.6;
        }
        prop_assert!((got - want).abs() <= bound, "{w} k={k}: got {got}, want {want}, bound {bound}");
    }
}

#[test]
fn act_type_table() {
    use ActType::*;
    let table = [
        (DType::Q4_0, Some(Q8_0)),
        (DType::Q5_0, Some(Q8_0)),
        (DType::Q8_0, Some(Q8_0)),
        (DType::Q4_1, Some(Q8_1)),
        (DType::Q5_1, Some(Q8_1)),
        (DType::Q2K, Some(Q8K)),
        (DType::Q3K, Some(Q8K)),
        (DType::Q4K, Some(Q8K)),
        (DType::Q5K, Some(Q8K)),
        (DType::Q6K, Some(Q8K)),
        (DType::F32, Some(F32)),
        (DType::F16, Some(F32)),
        (DType::BF16, Some(F32)),
        (DType::Q8_1, None),
        (DType::Q8K, None),
        (DType::I8, None),
        (DType::I32, None),
        (DType::F64, None),
    ];
    for (w, want) in table {
        assert_eq!(act_type(w), want, "{w}");
    }
}

#[test]
fn quantized_acts_rows_match_row_quantizers() {
    let mut r = Rng(7);
    let (n_rows, k) = (3, 512);
    let x = activations(n_rows * k, &mut r);
    let mut acts = QuantizedActs::new();
    for w in [DType::Q4K, DType::Q8_0, DType::Q4_1, DType::F16, DType::Q6K] {
        acts.quantize(w, &x, n_rows, k).unwrap();
        assert_eq!(acts.n_rows(), n_rows);
        for i in 0..n_rows {
            let xi = &x[i * k..(i + 1) * k];
            match acts.row(i) {
                ActRow::F32(y) => assert_eq!(y, xi),
                ActRow::Q8_0(y) => {
                    let mut want = vec![
                        BlockQ8_0 {
                            d: f16::ZERO,
                            qs: [0; 32]
                        };
                        k / 32
                    ];
                    quantize_row_q8_0(xi, &mut want);
                    assert_eq!(as_bytes(y), as_bytes(&want));
                }
                ActRow::Q8_1(y) => {
                    let mut want = vec![
                        BlockQ8_1 {
                            d: f16::ZERO,
                            s: f16::ZERO,
                            qs: [0; 32]
                        };
                        k / 32
                    ];
                    quantize_row_q8_1(xi, &mut want);
                    assert_eq!(as_bytes(y), as_bytes(&want));
                }
                ActRow::Q8K(y) => {
                    let mut want = vec![
                        BlockQ8K {
                            d: 0.0,
                            qs: [0; 256],
                            bsums: [0; 16]
                        };
                        k / 256
                    ];
                    quantize_row_q8_k(xi, &mut want);
                    assert_eq!(as_bytes(y), as_bytes(&want));
                }
            }
        }
    }
    // Fewer rows after more: the buffer is reused, the row count shrinks.
    acts.quantize(DType::Q4K, &x[..k], 1, k).unwrap();
    assert_eq!(acts.n_rows(), 1);
}

#[test]
fn quantize_rejects_bad_shapes() {
    let x = vec![0.5f32; 512];
    let mut acts = QuantizedActs::new();
    assert!(matches!(
        acts.quantize(DType::Q4K, &x[..384], 1, 384),
        Err(KernelError::BadElementCount { .. })
    ));
    assert!(matches!(
        acts.quantize(DType::Q4_0, &x, 2, 128),
        Err(KernelError::SizeMismatch { .. })
    ));
    assert_eq!(
        acts.quantize(DType::I8, &x, 1, 512),
        Err(KernelError::Unsupported(DType::I8))
    );
    assert!(acts.quantize(DType::Q4_0, &x, 16, 32).is_ok());
}

#[test]
fn vec_dot_errors_instead_of_panicking() {
    let mut r = Rng(3);
    let (bytes, _) = weight_row(DType::Q4K, 2, &mut r);
    let row = Aligned::new(&bytes);
    let x = activations(512, &mut r);
    let mut acts = QuantizedActs::new();
    acts.quantize(DType::Q4K, &x, 1, 512).unwrap();
    let a = acts.row(0);
    assert!(vec_dot(DType::Q4K, 512, row.bytes(), a).is_ok());
    // Wrong k for the bytes, k not a block multiple, short weights, short activations.
    assert!(matches!(
        vec_dot(DType::Q4K, 256, row.bytes(), a),
        Err(KernelError::SizeMismatch { .. })
    ));
    assert!(matches!(
        vec_dot(DType::Q4K, 500, row.bytes(), a),
        Err(KernelError::BadElementCount { .. })
    ));
    assert!(matches!(
        vec_dot(DType::Q4K, 512, &row.bytes()[..200], a),
        Err(KernelError::SizeMismatch { .. })
    ));
    if let ActRow::Q8K(y) = a {
        assert!(matches!(
            vec_dot(DType::Q4K, 512, row.bytes(), ActRow::Q8K(&y[..1])),
            Err(KernelError::SizeMismatch { .. })
        ));
    }
    // Activation format that does not belong to the weight type; unsupported weight type.
    assert_eq!(
        vec_dot(DType::Q4_0, 512, &row.bytes()[..288], a),
        Err(KernelError::Unsupported(DType::Q4_0))
    );
    assert_eq!(
        vec_dot(DType::I8, 512, row.bytes(), a),
        Err(KernelError::Unsupported(DType::I8))
    );
    // Misaligned f32 row.
    let f = Aligned::new(&[0u8; 4 * 9]);
    let y = vec![1.0f32; 8];
    assert!(matches!(
        vec_dot(DType::F32, 8, &f.bytes()[1..33], ActRow::F32(&y)),
        Err(KernelError::Misaligned { .. })
    ));
    // Huge k must not overflow.
    assert!(vec_dot(DType::Q4K, usize::MAX - 255, row.bytes(), a).is_err());
    // Empty rows are fine.
    assert_eq!(vec_dot(DType::Q4K, 0, &[], ActRow::Q8K(&[])), Ok(0.0));
}

#[test]
fn q8_0_weights_simple_values() {
    // Hand-computed: weights 1..=32 with d = 0.5, activations all 2 with d = 0.25:
    // Σ (0.5 q) (0.25·2) = 0.25 Σ q = 0.25 · 528 = 132.
    let mut wq = [0i8; 32];
    for (i, q) in wq.iter_mut().enumerate() {
        *q = i as i8 + 1;
    }
    let wb = [BlockQ8_0 {
        d: f16::from_f32(0.5),
        qs: wq,
    }];
    let ab = [BlockQ8_0 {
        d: f16::from_f32(0.25),
        qs: [2; 32],
    }];
    let row = Aligned::new(as_bytes(&wb));
    assert_eq!(
        vec_dot(DType::Q8_0, 32, row.bytes(), ActRow::Q8_0(&ab)),
        Ok(132.0)
    );
    assert_eq!(
        vec_dot_scalar(DType::Q8_0, 32, row.bytes(), ActRow::Q8_0(&ab)),
        Ok(132.0)
    );
}

/// The test's own reference dequantization agrees with the crate's `dequantize`, so the
/// f64 reference above measures the kernels against the same weights the model sees.
#[test]
fn reference_dequant_matches_crate_dequantize() {
    let mut r = Rng(11);
    for w in WEIGHT_TYPES {
        let nb = 3;
        let (bytes, deq) = weight_row(w, nb, &mut r);
        let row = Aligned::new(&bytes);
        let mut got = vec![0.0f32; deq.len()];
        nao_kernels::dequant::dequantize(w, row.bytes(), &mut got).unwrap();
        for (i, (&g, &(want, mag))) in got.iter().zip(&deq).enumerate() {
            let tol = 1e-6 * mag + 1e-12;
            assert!(
                (f64::from(g) - want).abs() <= tol,
                "{w} [{i}]: {g} vs {want}"
            );
        }
    }
}

/// The float kernels use the same lane order as their scalar twins: bit-identical results.
#[test]
fn float_kernels_bit_identical_to_scalar() {
    let mut r = Rng(5);
    for w in [DType::F32, DType::F16, DType::BF16] {
        for k in [0, 1, 7, 8, 31, 32, 33, 100, 257, 1000, 4096] {
            let (bytes, _) = weight_row(w, k, &mut r);
            let row = Aligned::new(&bytes);
            let x = activations(k, &mut r);
            let a = ActRow::F32(&x);
            let simd = vec_dot(w, k, row.bytes(), a).unwrap();
            let scalar = vec_dot_scalar(w, k, row.bytes(), a).unwrap();
            assert_eq!(
                simd.to_bits(),
                scalar.to_bits(),
                "{w} k={k}: {simd} vs {scalar}"
            );
        }
    }
}
