//! Scalar twins of every dot-product kernel: the reference the SIMD paths are tested against,
//! and the fallback on machines without AVX2+FMA.
//!
//! Each follows ggml's `ggml_vec_dot_*_generic` (`ggml-cpu/quants.c`): exact integer products
//! per (sub-)block, scales applied per block in f32, K-quant mins folded in once per
//! super-block through the Q8_K `bsums`. Inputs are zipped, so mismatched lengths cannot panic
//! (the shorter side wins); [`crate::dot::vec_dot`] checks lengths before calling.

use crate::blocks::{
    BlockQ2K, BlockQ3K, BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5K, BlockQ5_0, BlockQ5_1, BlockQ6K,
    BlockQ8K, BlockQ8_0, BlockQ8_1,
};
use half::{bf16, f16};

/// f16 → f32 without a call or a feature check (`half`'s `to_f32` goes through runtime
/// detection on every call). Exact for every input, including subnormals, inf and NaN: the
/// bit trick of the FP16 library (`fp16_ieee_to_fp32_value`), which ggml also uses.
#[inline(always)]
pub(crate) fn fp16_to_fp32(h: f16) -> f32 {
    let w = u32::from(h.to_bits()) << 16;
    let sign = w & 0x8000_0000;
    let two_w = w.wrapping_add(w);
    let exp_offset = 0xE0u32 << 23;
    let exp_scale = f32::from_bits(0x0780_0000); // 2^-112
    let normalized = f32::from_bits((two_w >> 4) + exp_offset) * exp_scale;
    let magic_mask = 126u32 << 23;
    let denormalized = f32::from_bits((two_w >> 17) | magic_mask) - 0.5;
    let denormalized_cutoff = 1u32 << 27;
    let bits = if two_w < denormalized_cutoff {
        denormalized.to_bits()
    } else {
        normalized.to_bits()
    };
    f32::from_bits(sign | bits)
}

/// Sum of eight partial sums, the way an 8-lane accumulator is reduced.
#[inline]
fn sum8(acc: [f32; 8]) -> f32 {
    let a = [
        acc[0] + acc[4],
        acc[1] + acc[5],
        acc[2] + acc[6],
        acc[3] + acc[7],
    ];
    let b = [a[0] + a[2], a[1] + a[3]];
    b[0] + b[1]
}

/// Shared float loop: 4 × 8 lane accumulators over 32-element steps, 8-element steps into the
/// first, lanes combined as (0+1)+(2+3), reduced by [`sum8`], then a plain scalar tail. This is
/// exactly the AVX2 kernels' order (each lane an FMA), so the two agree bit for bit.
#[inline(always)]
fn float_dot<T: Copy>(x: &[T], y: &[f32], cv: impl Fn(T) -> f32) -> f32 {
    let n = x.len().min(y.len());
    let (x, y) = (&x[..n], &y[..n]);
    let n32 = n - n % 32;
    let n8 = n - n % 8;
    let mut acc = [[0.0f32; 8]; 4];
    for (xs, ys) in x[..n32].chunks_exact(32).zip(y[..n32].chunks_exact(32)) {
        for (a, (xv, yv)) in acc
            .iter_mut()
            .zip(xs.chunks_exact(8).zip(ys.chunks_exact(8)))
        {
            for ((al, &xl), &yl) in a.iter_mut().zip(xv).zip(yv) {
                *al = cv(xl).mul_add(yl, *al);
            }
        }
    }
    for (xv, yv) in x[n32..n8].chunks_exact(8).zip(y[n32..n8].chunks_exact(8)) {
        for ((al, &xl), &yl) in acc[0].iter_mut().zip(xv).zip(yv) {
            *al = cv(xl).mul_add(yl, *al);
        }
    }
    let mut v = [0.0f32; 8];
    for (l, vl) in v.iter_mut().enumerate() {
        *vl = (acc[0][l] + acc[1][l]) + (acc[2][l] + acc[3][l]);
    }
    let mut s = sum8(v);
    for (&a, &b) in x[n8..].iter().zip(&y[n8..]) {
        s += cv(a) * b;
    }
    s
}

/// `Σ x·y` over f32.
pub fn vec_dot_f32(x: &[f32], y: &[f32]) -> f32 {
    float_dot(x, y, |v| v)
}

/// `Σ f32(x)·y` for f16 weights and f32 activations.
pub fn vec_dot_f16_f32(x: &[f16], y: &[f32]) -> f32 {
    float_dot(x, y, fp16_to_fp32)
}

/// `Σ f32(x)·y` for bf16 weights and f32 activations.
pub fn vec_dot_bf16_f32(x: &[bf16], y: &[f32]) -> f32 {
    float_dot(x, y, bf16::to_f32)
}

/// Q4_0 × Q8_0: x = d·(q − 8); element j pairs with low nibble of byte j, j+16 with the high.
pub fn vec_dot_q4_0_q8_0(x: &[BlockQ4_0], y: &[BlockQ8_0]) -> f32 {
    let mut sumf = 0.0f32;
    for (xb, yb) in x.iter().zip(y) {
        let mut sumi = 0i32;
        for j in 0..16 {
            let v0 = i32::from(xb.qs[j] & 0x0F) - 8;
            let v1 = i32::from(xb.qs[j] >> 4) - 8;
            sumi += v0 * i32::from(yb.qs[j]) + v1 * i32::from(yb.qs[j + 16]);
        }
        sumf += sumi as f32 * (fp16_to_fp32(xb.d) * fp16_to_fp32(yb.d));
    }
    sumf
}

/// Q4_1 × Q8_1: x = d·q + m, using the activation's precomputed `s = d·Σq`.
pub fn vec_dot_q4_1_q8_1(x: &[BlockQ4_1], y: &[BlockQ8_1]) -> f32 {
    let mut sumf = 0.0f32;
    for (xb, yb) in x.iter().zip(y) {
        let mut sumi = 0i32;
        for j in 0..16 {
            let v0 = i32::from(xb.qs[j] & 0x0F);
            let v1 = i32::from(xb.qs[j] >> 4);
            sumi += v0 * i32::from(yb.qs[j]) + v1 * i32::from(yb.qs[j + 16]);
        }
        sumf += (fp16_to_fp32(xb.d) * fp16_to_fp32(yb.d)) * sumi as f32
            + fp16_to_fp32(xb.m) * fp16_to_fp32(yb.s);
    }
    sumf
}

/// Q5_0 × Q8_0: x = d·(q − 16), the fifth bit of element j is bit j of `qh`.
pub fn vec_dot_q5_0_q8_0(x: &[BlockQ5_0], y: &[BlockQ8_0]) -> f32 {
    let mut sumf = 0.0f32;
    for (xb, yb) in x.iter().zip(y) {
        let qh = u32::from_le_bytes(xb.qh);
        let mut sumi = 0i32;
        for j in 0..16 {
            let h0 = ((qh >> j) & 1) << 4;
            let h1 = ((qh >> (j + 16)) & 1) << 4;
            let v0 = (u32::from(xb.qs[j] & 0x0F) | h0) as i32 - 16;
            let v1 = (u32::from(xb.qs[j] >> 4) | h1) as i32 - 16;
            sumi += v0 * i32::from(yb.qs[j]) + v1 * i32::from(yb.qs[j + 16]);
        }
        sumf += (fp16_to_fp32(xb.d) * fp16_to_fp32(yb.d)) * sumi as f32;
    }
    sumf
}

/// Q5_1 × Q8_1: x = d·q + m, 5-bit q.
pub fn vec_dot_q5_1_q8_1(x: &[BlockQ5_1], y: &[BlockQ8_1]) -> f32 {
    let mut sumf = 0.0f32;
    for (xb, yb) in x.iter().zip(y) {
        let qh = u32::from_le_bytes(xb.qh);
        let mut sumi = 0i32;
        for j in 0..16 {
            let h0 = ((qh >> j) & 1) << 4;
            let h1 = ((qh >> (j + 16)) & 1) << 4;
            let v0 = (u32::from(xb.qs[j] & 0x0F) | h0) as i32;
            let v1 = (u32::from(xb.qs[j] >> 4) | h1) as i32;
            sumi += v0 * i32::from(yb.qs[j]) + v1 * i32::from(yb.qs[j + 16]);
        }
        sumf += (fp16_to_fp32(xb.d) * fp16_to_fp32(yb.d)) * sumi as f32
            + fp16_to_fp32(xb.m) * fp16_to_fp32(yb.s);
    }
    sumf
}

/// Q8_0 × Q8_0.
pub fn vec_dot_q8_0_q8_0(x: &[BlockQ8_0], y: &[BlockQ8_0]) -> f32 {
    let mut sumf = 0.0f32;
    for (xb, yb) in x.iter().zip(y) {
        let sumi: i32 = xb
            .qs
            .iter()
            .zip(&yb.qs)
            .map(|(&a, &b)| i32::from(a) * i32::from(b))
            .sum();
        sumf += sumi as f32 * (fp16_to_fp32(xb.d) * fp16_to_fp32(yb.d));
    }
    sumf
}

/// Σ of 16 products of a weight sub-block with the activations.
#[inline]
fn dot16(a: &[i8], q8: &[i8]) -> i32 {
    a.iter()
        .zip(q8)
        .map(|(&x, &y)| i32::from(x) * i32::from(y))
        .sum()
}

/// Q2_K × Q8_K: x = d·(sc & 15)·q − dmin·(sc >> 4), 16 groups of 16.
pub fn vec_dot_q2_k_q8_k(x: &[BlockQ2K], y: &[BlockQ8K]) -> f32 {
    let mut sumf = 0.0f32;
    for (xb, yb) in x.iter().zip(y) {
        let sc = &xb.scales;
        let summs: i32 = yb
            .bsums
            .iter()
            .zip(sc)
            .map(|(&b, &s)| i32::from(b) * i32::from(s >> 4))
            .sum();
        let dall = yb.d * fp16_to_fp32(xb.d);
        let dmin = yb.d * fp16_to_fp32(xb.dmin);

        // Unpack to 256 values in element order: 128-chunks, 4 shifts, 32 bytes each.
        let mut a = [0i8; 256];
        for (n, chunk) in a.chunks_exact_mut(128).enumerate() {
            let q2 = &xb.qs[n * 32..n * 32 + 32];
            for (s, part) in chunk.chunks_exact_mut(32).enumerate() {
                for (v, &q) in part.iter_mut().zip(q2) {
                    *v = ((q >> (2 * s)) & 3) as i8;
                }
            }
        }
        let mut isum = 0i32;
        for (g, (ag, qg)) in a.chunks_exact(16).zip(yb.qs.chunks_exact(16)).enumerate() {
            isum += i32::from(sc[g] & 0xF) * dot16(ag, qg);
        }
        sumf += dall * isum as f32 - dmin * summs as f32;
    }
    sumf
}

/// Unpacks Q3_K's twelve bytes of 6-bit scales into 16 signed scales (`raw − 32`).
#[inline]
pub(crate) fn q3k_scales(packed: &[u8; 12]) -> [i8; 16] {
    const KMASK1: u32 = 0x0303_0303;
    const KMASK2: u32 = 0x0f0f_0f0f;
    let w = |i: usize| u32::from_le_bytes([packed[i], packed[i + 1], packed[i + 2], packed[i + 3]]);
    let (a0, a1, tmp) = (w(0), w(4), w(8));
    let aux = [
        (a0 & KMASK2) | ((tmp & KMASK1) << 4),
        (a1 & KMASK2) | (((tmp >> 2) & KMASK1) << 4),
        ((a0 >> 4) & KMASK2) | (((tmp >> 4) & KMASK1) << 4),
        ((a1 >> 4) & KMASK2) | (((tmp >> 6) & KMASK1) << 4),
    ];
    let mut out = [0i8; 16];
    for (o, b) in out
        .chunks_exact_mut(4)
        .zip(aux.iter().map(|v| v.to_le_bytes()))
    {
        for (oi, bi) in o.iter_mut().zip(b) {
            *oi = bi as i8 - 32;
        }
    }
    out
}

/// Q3_K × Q8_K: x = d·(scale − 32)·(q − 4·!hbit), 16 groups of 16.
pub fn vec_dot_q3_k_q8_k(x: &[BlockQ3K], y: &[BlockQ8K]) -> f32 {
    let mut sumf = 0.0f32;
    for (xb, yb) in x.iter().zip(y) {
        let mut a = [0i8; 256];
        let mut m = 0u32; // bit index into hmask bytes, 0..8
        for (n, chunk) in a.chunks_exact_mut(128).enumerate() {
            let q3 = &xb.qs[n * 32..n * 32 + 32];
            for (s, part) in chunk.chunks_exact_mut(32).enumerate() {
                for ((v, &q), &h) in part.iter_mut().zip(q3).zip(&xb.hmask) {
                    let lo = ((q >> (2 * s)) & 3) as i8;
                    *v = lo - if (h >> m) & 1 != 0 { 0 } else { 4 };
                }
                m += 1;
            }
        }
        let scales = q3k_scales(&xb.scales);
        let mut isum = 0i32;
        for (g, (ag, qg)) in a.chunks_exact(16).zip(yb.qs.chunks_exact(16)).enumerate() {
            isum += i32::from(scales[g]) * dot16(ag, qg);
        }
        sumf += (fp16_to_fp32(xb.d) * yb.d) * isum as f32;
    }
    sumf
}

/// The 12-byte 6-bit scales/mins of Q4_K/Q5_K unpacked into four little-endian words:
/// `[scales 0..4, scales 4..8, mins 0..4, mins 4..8]`, one 6-bit value per byte.
/// Word arithmetic on the same formula as ggml's `get_scale_min_k4`: scale `j < 4` is the low
/// 6 bits of byte `j`, min `j < 4` those of byte `j + 4`; scale `j ≥ 4` takes its low 4 bits
/// from byte `j + 4` and its high 2 bits from the top of byte `j − 4`; min `j ≥ 4` the high
/// nibble of byte `j + 4` and the top 2 bits of byte `j`.
#[inline(always)]
pub(crate) fn k4_scale_words(q: &[u8; 12]) -> [u32; 4] {
    const LOW6: u32 = 0x3f3f_3f3f;
    const LOW4: u32 = 0x0f0f_0f0f;
    const LOW2: u32 = 0x0303_0303;
    let w0 = u32::from_le_bytes([q[0], q[1], q[2], q[3]]);
    let w1 = u32::from_le_bytes([q[4], q[5], q[6], q[7]]);
    let w2 = u32::from_le_bytes([q[8], q[9], q[10], q[11]]);
    [
        w0 & LOW6,
        (w2 & LOW4) | (((w0 >> 6) & LOW2) << 4),
        w1 & LOW6,
        ((w2 >> 4) & LOW4) | (((w1 >> 6) & LOW2) << 4),
    ]
}

/// Unpacks the 12-byte 6-bit scales/mins of Q4_K/Q5_K into (scales[8], mins[8]).
/// Same values as ggml's `get_scale_min_k4(j, q)` for j in 0..8.
#[inline]
pub(crate) fn k4_scales_mins(q: &[u8; 12]) -> ([u8; 8], [u8; 8]) {
    let [s0, s1, m0, m1] = k4_scale_words(q).map(u32::to_le_bytes);
    let sc = [s0[0], s0[1], s0[2], s0[3], s1[0], s1[1], s1[2], s1[3]];
    let mn = [m0[0], m0[1], m0[2], m0[3], m1[0], m1[1], m1[2], m1[3]];
    (sc, mn)
}

/// Σ over the 16 bsums of Q8_K times the min of the 32-wide sub-block each belongs to.
#[inline]
fn mins_dot(bsums: &[i16; 16], mins: &[u8; 8]) -> i32 {
    bsums
        .iter()
        .enumerate()
        .map(|(j, &b)| i32::from(b) * i32::from(mins[j / 2]))
        .sum()
}

/// Σ of 32 products of a weight sub-block with the activations.
#[inline]
fn dot32(a: &[i8], q8: &[i8]) -> i32 {
    a.iter()
        .zip(q8)
        .map(|(&x, &y)| i32::from(x) * i32::from(y))
        .sum()
}

/// Q4_K × Q8_K: x = d·sc·q − dmin·m, 8 groups of 32.
pub fn vec_dot_q4_k_q8_k(x: &[BlockQ4K], y: &[BlockQ8K]) -> f32 {
    let mut sumf = 0.0f32;
    for (xb, yb) in x.iter().zip(y) {
        let mut a = [0i8; 256];
        for (n, chunk) in a.chunks_exact_mut(64).enumerate() {
            let q4 = &xb.qs[n * 32..n * 32 + 32];
            let (lo, hi) = chunk.split_at_mut(32);
            for ((l, h), &q) in lo.iter_mut().zip(hi.iter_mut()).zip(q4) {
                *l = (q & 0xF) as i8;
                *h = (q >> 4) as i8;
            }
        }
        sumf += k4_block_dot(&a, &xb.scales, xb.d, xb.dmin, yb);
    }
    sumf
}

/// `N` columns of [`vec_dot_q4_k_q8_k`] sharing one unpacking of each weight super-block;
/// `out[c]` equals `vec_dot_q4_k_q8_k(x, ys[c])` exactly (same per-column operations).
pub fn vec_dot_q4_k_q8_k_multi<const N: usize>(x: &[BlockQ4K], ys: [&[BlockQ8K]; N]) -> [f32; N] {
    let mut sumf = [0.0f32; N];
    for (i, xb) in x.iter().enumerate() {
        let mut a = [0i8; 256];
        for (n, chunk) in a.chunks_exact_mut(64).enumerate() {
            let q4 = &xb.qs[n * 32..n * 32 + 32];
            let (lo, hi) = chunk.split_at_mut(32);
            for ((l, h), &q) in lo.iter_mut().zip(hi.iter_mut()).zip(q4) {
                *l = (q & 0xF) as i8;
                *h = (q >> 4) as i8;
            }
        }
        for (s, y) in sumf.iter_mut().zip(ys) {
            if let Some(yb) = y.get(i) {
                *s += k4_block_dot(&a, &xb.scales, xb.d, xb.dmin, yb);
            }
        }
    }
    sumf
}

/// One Q4_K/Q5_K super-block, its quants unpacked into `a`, against a Q8_K block: per-group
/// 6-bit scales on the integer sums, mins through the Q8_K group sums, as ggml does.
fn k4_block_dot(
    a: &[i8; 256],
    scales: &[u8; 12],
    d: half::f16,
    dmin: half::f16,
    yb: &BlockQ8K,
) -> f32 {
    let (sc, mn) = k4_scales_mins(scales);
    let mut isum = 0i32;
    for (g, (ag, qg)) in a.chunks_exact(32).zip(yb.qs.chunks_exact(32)).enumerate() {
        isum += i32::from(sc[g]) * dot32(ag, qg);
    }
    let summs = mins_dot(&yb.bsums, &mn);
    let d = fp16_to_fp32(d) * yb.d;
    let dmin = fp16_to_fp32(dmin) * yb.d;
    d * isum as f32 - dmin * summs as f32
}

/// Q5_K × Q8_K: Q4_K plus a fifth bit from `qh` (bit 2n for the low nibbles of 64-chunk n,
/// bit 2n+1 for the high).
pub fn vec_dot_q5_k_q8_k(x: &[BlockQ5K], y: &[BlockQ8K]) -> f32 {
    let mut sumf = 0.0f32;
    for (xb, yb) in x.iter().zip(y) {
        let mut a = [0i8; 256];
        for (n, chunk) in a.chunks_exact_mut(64).enumerate() {
            let q4 = &xb.qs[n * 32..n * 32 + 32];
            let (lo, hi) = chunk.split_at_mut(32);
            for (((l, h), &q), &qh) in lo.iter_mut().zip(hi.iter_mut()).zip(q4).zip(&xb.qh) {
                *l = ((q & 0xF) | (((qh >> (2 * n)) & 1) << 4)) as i8;
                *h = ((q >> 4) | (((qh >> (2 * n + 1)) & 1) << 4)) as i8;
            }
        }
        sumf += k4_block_dot(&a, &xb.scales, xb.d, xb.dmin, yb);
    }
    sumf
}

/// Q6_K × Q8_K: x = d·scale·(q − 32), 6-bit q from `ql` (low 4) and `qh` (high 2).
pub fn vec_dot_q6_k_q8_k(x: &[BlockQ6K], y: &[BlockQ8K]) -> f32 {
    let mut sumf = 0.0f32;
    for (xb, yb) in x.iter().zip(y) {
        sumf += q6k_block_dot(&q6k_unpack(xb), xb, yb);
    }
    sumf
}

/// Unpacks one Q6_K super-block to signed quants `q − 32`, in natural order.
#[inline]
fn q6k_unpack(xb: &BlockQ6K) -> [i8; 256] {
    let mut a = [0i8; 256];
    for (n, chunk) in a.chunks_exact_mut(128).enumerate() {
        let ql = &xb.ql[n * 64..n * 64 + 64];
        let qh = &xb.qh[n * 32..n * 32 + 32];
        for l in 0..32 {
            let h = qh[l];
            chunk[l] = ((ql[l] & 0xF) | ((h & 3) << 4)) as i8 - 32;
            chunk[l + 32] = ((ql[l + 32] & 0xF) | (((h >> 2) & 3) << 4)) as i8 - 32;
            chunk[l + 64] = ((ql[l] >> 4) | (((h >> 4) & 3) << 4)) as i8 - 32;
            chunk[l + 96] = ((ql[l + 32] >> 4) | (((h >> 6) & 3) << 4)) as i8 - 32;
        }
    }
    a
}

/// One unpacked Q6_K super-block against a Q8_K block.
#[inline]
fn q6k_block_dot(a: &[i8; 256], xb: &BlockQ6K, yb: &BlockQ8K) -> f32 {
    let mut isum = 0i32;
    for (g, (ag, qg)) in a.chunks_exact(16).zip(yb.qs.chunks_exact(16)).enumerate() {
        isum += i32::from(xb.scales[g]) * dot16(ag, qg);
    }
    (fp16_to_fp32(xb.d) * yb.d) * isum as f32
}

/// `N` columns of [`vec_dot_q6_k_q8_k`] sharing one unpacking of each weight super-block;
/// `out[c]` equals `vec_dot_q6_k_q8_k(x, ys[c])` exactly.
pub fn vec_dot_q6_k_q8_k_multi<const N: usize>(x: &[BlockQ6K], ys: [&[BlockQ8K]; N]) -> [f32; N] {
    let mut sumf = [0.0f32; N];
    for (i, xb) in x.iter().enumerate() {
        let a = q6k_unpack(xb);
        for (s, y) in sumf.iter_mut().zip(ys) {
            if let Some(yb) = y.get(i) {
                *s += q6k_block_dot(&a, xb, yb);
            }
        }
    }
    sumf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fp16_to_fp32_is_exact_for_all_bit_patterns() {
        for bits in 0..=u16::MAX {
            let h = f16::from_bits(bits);
            let (got, want) = (fp16_to_fp32(h), h.to_f32());
            if want.is_nan() {
                assert!(got.is_nan(), "{bits:#06x}");
            } else {
                assert_eq!(got.to_bits(), want.to_bits(), "{bits:#06x}");
            }
        }
    }

    #[test]
    fn k4_scales_match_get_scale_min_k4_formula() {
        let q: [u8; 12] = [
            0xC1, 0x42, 0x83, 0x3F, 0xFF, 0x05, 0x46, 0x87, 0x9A, 0x0B, 0xFC, 0x21,
        ];
        let (sc, mn) = k4_scales_mins(&q);
        for j in 0..8 {
            let (d, m) = if j < 4 {
                (q[j] & 63, q[j + 4] & 63)
            } else {
                (
                    (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
                    (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
                )
            };
            assert_eq!((sc[j], mn[j]), (d, m), "j={j}");
        }
    }

    #[test]
    fn q3k_scales_match_dequant_formula() {
        // ggml's dequantize_row_q3_K unpacks the same way; check against a bitwise rewrite:
        // scale j (0..16) = low 4 bits from byte j%8 (nibble j/8), high 2 bits from byte 8 + j%4
        // (bit pair j/4).
        let q: [u8; 12] = [
            0x12, 0x34, 0x56, 0x78, 0x9A, 0xBC, 0xDE, 0xF0, 0x1B, 0x2C, 0x3D, 0x4E,
        ];
        let s = q3k_scales(&q);
        for (j, &sj) in s.iter().enumerate() {
            let lo = (q[j % 8] >> (4 * (j / 8))) & 0xF;
            let hi = (q[8 + j % 4] >> (2 * (j / 4))) & 3;
            assert_eq!(i32::from(sj), i32::from(lo | (hi << 4)) - 32, "j={j}");
        }
    }
}
