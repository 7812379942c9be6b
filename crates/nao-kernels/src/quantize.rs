//! On-the-fly 8-bit quantization of activation rows (Q8_0, Q8_1, Q8_K).
//!
//! The numerics follow what llama.cpp actually runs on x86-64, because the model must reproduce
//! its logprobs:
//! - Q8_0 / Q8_1: ggml-cpu's AVX2 `quantize_row_q8_0` / `quantize_row_q8_1`
//!   (`arch/x86/quants.c`): `d = amax / 127`, `id = 127 / amax`, `q = round_ties_even(x * id)`.
//!   (The portable `quantize_row_q8_0_ref` uses `id = 1 / d` and `roundf`; the two differ by at
//!   most one unit in the last place of `id`, and only on exact ties in the rounding.)
//! - Q8_K: `quantize_row_q8_K_ref` (x86 has no SIMD version): `iscale = -127 / max` where `max`
//!   is the signed value with the largest magnitude, `q = nearest_int(iscale * x)` (ties to
//!   even), `d = 1 / iscale`, `bsums` = sums of each group of 16.

use crate::blocks::{BlockQ8K, BlockQ8_0, BlockQ8_1, QK_K};
use half::f16;

/// Elements per Q8_0 / Q8_1 block.
pub const QK8: usize = 32;

/// Largest |x| of a block, as `_mm256_max_ps` over `andnot(-0.0, x)` computes it.
#[inline]
fn abs_max(x: &[f32]) -> f32 {
    x.iter()
        .fold(0.0f32, |m, v| if v.abs() > m { v.abs() } else { m })
}

/// Quantizes one block of 32 values into `q`; returns `(d, sum(q))` (AVX-512 where
/// [`crate::dot::simd_name`] says so, bit-identical to [`q8_block_scalar`]).
#[inline]
fn q8_block(x: &[f32], q: &mut [i8; QK8]) -> (f32, i32) {
    #[cfg(target_arch = "x86_64")]
    if crate::dot::avx512_enabled() {
        if let Ok(xb) = <&[f32; QK8]>::try_from(x) {
            // SAFETY: `avx512_enabled` is true only after `is_x86_feature_detected!`
            // reported AVX-512 F/BW/VL, the kernel's whole contract.
            let (amax, sum) = unsafe { crate::dot::avx512_quantize_block_q8_0(xb, q) };
            return (amax / 127.0, sum);
        }
    }
    q8_block_scalar(x, q)
}

/// The scalar twin of [`q8_block`].
#[inline]
fn q8_block_scalar(x: &[f32], q: &mut [i8; QK8]) -> (f32, i32) {
    let amax = abs_max(x);
    let d = amax / 127.0;
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    let mut sum = 0i32;
    for (qi, &xi) in q.iter_mut().zip(x) {
        // `as i8` saturates (and maps NaN to 0), like `_mm256_packs_epi16`.
        let v = (xi * id).round_ties_even() as i32;
        let v = v.clamp(-128, 127) as i8;
        *qi = v;
        sum += i32::from(v);
    }
    (d, sum)
}

/// Quantizes `x` (length `y.len() * 32`) into Q8_0 blocks. Extra elements on either side are
/// ignored (the caller checks lengths).
pub fn quantize_row_q8_0(x: &[f32], y: &mut [BlockQ8_0]) {
    debug_assert_eq!(x.len(), y.len() * QK8);
    for (xb, yb) in x.chunks_exact(QK8).zip(y.iter_mut()) {
        let (d, _) = q8_block(xb, &mut yb.qs);
        yb.d = f16::from_f32(d);
    }
}

/// [`quantize_row_q8_0`] on the scalar path only (reference for the SIMD one).
pub fn quantize_row_q8_0_scalar(x: &[f32], y: &mut [BlockQ8_0]) {
    debug_assert_eq!(x.len(), y.len() * QK8);
    for (xb, yb) in x.chunks_exact(QK8).zip(y.iter_mut()) {
        let (d, _) = q8_block_scalar(xb, &mut yb.qs);
        yb.d = f16::from_f32(d);
    }
}

/// [`quantize_row_q8_1`] on the scalar path only (reference for the SIMD one).
pub fn quantize_row_q8_1_scalar(x: &[f32], y: &mut [BlockQ8_1]) {
    debug_assert_eq!(x.len(), y.len() * QK8);
    for (xb, yb) in x.chunks_exact(QK8).zip(y.iter_mut()) {
        let (d, sum) = q8_block_scalar(xb, &mut yb.qs);
        yb.d = f16::from_f32(d);
        yb.s = f16::from_f32(d * sum as f32);
    }
}

/// Quantizes `x` (length `y.len() * 32`) into Q8_1 blocks (`s = d * sum(q)`).
pub fn quantize_row_q8_1(x: &[f32], y: &mut [BlockQ8_1]) {
    debug_assert_eq!(x.len(), y.len() * QK8);
    for (xb, yb) in x.chunks_exact(QK8).zip(y.iter_mut()) {
        let (d, sum) = q8_block(xb, &mut yb.qs);
        yb.d = f16::from_f32(d);
        yb.s = f16::from_f32(d * sum as f32);
    }
}

/// ggml's `nearest_int`: `fval + 1.5·2^23` then read the mantissa, i.e. round half to even
/// for |fval| < 2^22.
#[inline]
fn nearest_int(fval: f32) -> i32 {
    fval.round_ties_even() as i32
}

/// Quantizes `x` (length `y.len() * 256`) into Q8_K blocks (AVX-512 where
/// [`crate::dot::simd_name`] says so, bit-identical to [`quantize_row_q8_k_scalar`]).
pub fn quantize_row_q8_k(x: &[f32], y: &mut [BlockQ8K]) {
    #[cfg(target_arch = "x86_64")]
    if crate::dot::avx512_enabled() {
        debug_assert_eq!(x.len(), y.len() * QK_K);
        for (xb, yb) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
            if let Ok(xb) = <&[f32; QK_K]>::try_from(xb) {
                // SAFETY: `avx512_enabled` is true only after `is_x86_feature_detected!`
                // reported AVX-512 F/BW/VL, the kernel's whole contract.
                unsafe { crate::dot::avx512_quantize_block_q8_k(xb, yb) };
            }
        }
        return;
    }
    quantize_row_q8_k_scalar(x, y);
}

/// The scalar Q8_K quantizer (reference for the SIMD one).
pub fn quantize_row_q8_k_scalar(x: &[f32], y: &mut [BlockQ8K]) {
    debug_assert_eq!(x.len(), y.len() * QK_K);
    for (xb, yb) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let mut amax = 0.0f32;
        let mut max = 0.0f32;
        for &v in xb {
            let ax = v.abs();
            if ax > amax {
                amax = ax;
                max = v;
            }
        }
        if amax == 0.0 {
            yb.d = 0.0;
            yb.qs = [0; QK_K];
            yb.bsums = [0; QK_K / 16];
            continue;
        }
        let iscale = -127.0 / max;
        for (q, &v) in yb.qs.iter_mut().zip(xb) {
            *q = nearest_int(iscale * v).clamp(-128, 127) as i8;
        }
        for (s, g) in yb.bsums.iter_mut().zip(yb.qs.chunks_exact(16)) {
            *s = g.iter().map(|&q| i16::from(q)).sum();
        }
        yb.d = 1.0 / iscale;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zero_q8k() -> BlockQ8K {
        BlockQ8K {
            d: 0.0,
            qs: [0; QK_K],
            bsums: [0; 16],
        }
    }

    #[test]
    fn q8_0_hand_computed() {
        // amax = 2.54 -> d = 0.02, id = 50: x * 50 rounded.
        let mut x = [0.0f32; 32];
        x[0] = 2.54;
        x[1] = -1.0; // -50
        x[2] = 0.01; // 0.5 -> ties to even -> 0
        x[3] = 0.03; // 1.5 -> 2
        x[4] = -2.54; // -127
        x[31] = 0.5; // 25
        let mut y = [BlockQ8_0 {
            d: f16::ZERO,
            qs: [0; 32],
        }];
        quantize_row_q8_0(&x, &mut y);
        assert_eq!(y[0].d, f16::from_f32(2.54 / 127.0));
        assert_eq!(&y[0].qs[..5], &[127, -50, 0, 2, -127]);
        assert_eq!(y[0].qs[31], 25);
        assert!(y[0].qs[5..31].iter().all(|&q| q == 0));
    }

    #[test]
    fn q8_0_zero_block() {
        let x = [0.0f32; 64];
        let mut y = [BlockQ8_0 {
            d: f16::ONE,
            qs: [1; 32],
        }; 2];
        quantize_row_q8_0(&x, &mut y);
        for b in &y {
            assert_eq!(b.d, f16::ZERO);
            assert_eq!(b.qs, [0; 32]);
        }
    }

    #[test]
    fn q8_1_sum() {
        let x: Vec<f32> = (0..32).map(|i| i as f32 - 10.0).collect();
        let mut y = [BlockQ8_1 {
            d: f16::ZERO,
            s: f16::ZERO,
            qs: [0; 32],
        }];
        quantize_row_q8_1(&x, &mut y);
        // amax = 21 -> id = 127/21.
        let id = 127.0f32 / 21.0;
        let q: Vec<i8> = x.iter().map(|v| (v * id).round_ties_even() as i8).collect();
        assert_eq!(&y[0].qs[..], &q[..]);
        let sum: i32 = q.iter().map(|&v| i32::from(v)).sum();
        assert_eq!(y[0].s, f16::from_f32(21.0 / 127.0 * sum as f32));
    }

    #[test]
    fn q8_k_hand_computed() {
        // max is the signed value with the largest magnitude: -4.0 -> iscale = 31.75.
        let mut x = [0.0f32; 256];
        x[0] = 1.0; // 31.75 -> 32
        x[1] = -4.0; // -127
        x[2] = 2.0; // 63.5 -> ties to even -> 64
        x[17] = -1.0; // -31.75 -> -32
        x[255] = 0.01; // 0.3175 -> 0
        let mut y = [zero_q8k()];
        quantize_row_q8_k(&x, &mut y);
        let b = &y[0];
        assert_eq!(b.d, 1.0 / 31.75);
        // Sign convention: iscale = -127/max is positive here because max < 0.
        assert_eq!(&b.qs[..3], &[32, -127, 64]);
        assert_eq!(b.qs[17], -32);
        assert_eq!(b.qs[255], 0);
        assert_eq!(b.bsums[0], 32 - 127 + 64);
        assert_eq!(b.bsums[1], -32);
        assert!(b.bsums[2..].iter().all(|&s| s == 0));
    }

    #[test]
    fn q8_k_positive_max_flips_sign() {
        // max = +2: iscale = -63.5, d = -1/63.5; d * q still reconstructs x.
        let mut x = [0.0f32; 256];
        x[0] = 2.0;
        x[1] = -1.0;
        let mut y = [zero_q8k()];
        quantize_row_q8_k(&x, &mut y);
        assert_eq!(y[0].qs[0], -127);
        assert_eq!(y[0].qs[1], 64); // 63.5 -> 64 (ties to even)
        assert!((y[0].d * f32::from(y[0].qs[0]) - 2.0).abs() < 1e-6);
    }

    #[test]
    fn q8_k_zero_block() {
        let x = [0.0f32; 512];
        let mut y = [zero_q8k(), zero_q8k()];
        y[1].qs[3] = 9;
        quantize_row_q8_k(&x, &mut y);
        assert_eq!(y[1].d, 0.0);
        assert_eq!(y[1].qs, [0; 256]);
    }
}
