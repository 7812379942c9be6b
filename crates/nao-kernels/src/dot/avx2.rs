//! AVX2 + FMA kernels (x86-64), each the SIMD twin of a function in [`super::scalar`].
//!
//! Ported from ggml's AVX2 branches (`ggml-cpu/arch/x86/quants.c`, `ggml_vec_dot_*`):
//! int8 products through `maddubs` (unsigned × signed, pairwise into i16), widened with
//! `madd` (folding a per-sub-block scale in for free), one f32 FMA per block, one horizontal
//! sum per call. Differences from ggml, all exact in integer arithmetic:
//! - Q6_K subtracts its `−32` offset once per super-block through the Q8_K `bsums`
//!   (ggml-org/llama.cpp#10118) instead of one extra `maddubs` per 32 values.
//! - Scales are broadcast with `set1_epi16` instead of `pshufb` tables.
//!
//! The float kernels (F32/F16/BF16) use the same lane order and reduction as their scalar
//! twins, so they agree bit for bit.
//!
//! Every function here is an `unsafe fn` with `#[target_feature]` (MSRV 1.85 predates safe
//! target-feature functions): the one contract is that the CPU has the features named, which
//! [`dispatch`]'s caller establishes with `is_x86_feature_detected!`. Memory safety does not
//! depend on the inputs: every load reads a fixed-size array of exactly the loaded width, and
//! slices are walked with zipped iterators, so mismatched lengths only shorten the sum.

use super::scalar::{self, fp16_to_fp32};
use super::{weights, ActRow};
use crate::blocks::{BlockQ4K, BlockQ4_0, BlockQ5K, BlockQ5_0, BlockQ6K, BlockQ8K, BlockQ8_0};
use crate::{DType, KernelError};
use half::{bf16, f16};
use std::arch::x86_64::*;

/// Runs the AVX2 kernel for `(w, a)` if there is one (`Ok(None)` otherwise).
///
/// # Safety
/// The CPU must support AVX2 and FMA, and F16C when `f16c` is true (the caller checks with
/// `is_x86_feature_detected!` once, see [`super::isa`]).
pub(super) unsafe fn dispatch(
    f16c: bool,
    w: DType,
    w_row: &[u8],
    a: ActRow<'_>,
) -> Result<Option<f32>, KernelError> {
    // SAFETY (all calls below): the function contract guarantees AVX2+FMA (and F16C for
    // the arms guarded by `f16c`); the kernels themselves only read within their slice arguments.
    let v = match (w, a) {
        (DType::Q4K, ActRow::Q8K(y)) => unsafe { dot_q4_k_q8_k(weights(w, w_row)?, y) },
        (DType::Q6K, ActRow::Q8K(y)) => unsafe { dot_q6_k_q8_k(weights(w, w_row)?, y) },
        (DType::Q5K, ActRow::Q8K(y)) => unsafe { dot_q5_k_q8_k(weights(w, w_row)?, y) },
        (DType::Q8_0, ActRow::Q8_0(y)) if f16c => unsafe { dot_q8_0_q8_0(weights(w, w_row)?, y) },
        (DType::Q4_0, ActRow::Q8_0(y)) if f16c => unsafe { dot_q4_0_q8_0(weights(w, w_row)?, y) },
        (DType::Q5_0, ActRow::Q8_0(y)) if f16c => unsafe { dot_q5_0_q8_0(weights(w, w_row)?, y) },
        (DType::F32, ActRow::F32(y)) => unsafe { dot_f32(weights(w, w_row)?, y) },
        (DType::F16, ActRow::F32(y)) if f16c => unsafe { dot_f16_f32(weights(w, w_row)?, y) },
        (DType::BF16, ActRow::F32(y)) => unsafe { dot_bf16_f32(weights(w, w_row)?, y) },
        _ => return Ok(None),
    };
    Ok(Some(v))
}

// ------------------------------------------------------------------ helpers

/// `s` as consecutive `N`-element arrays (a trailing partial chunk is dropped); the
/// `slice::as_chunks` of Rust 1.88, without `unsafe`. The conversion cannot fail for
/// `chunks_exact` pieces, so the `filter_map` compiles away.
#[inline(always)]
fn arrays<T, const N: usize>(s: &[T]) -> impl Iterator<Item = &[T; N]> {
    s.chunks_exact(N)
        .filter_map(|c| <&[T; N]>::try_from(c).ok())
}

/// Two i16 scales, `a` in the low 128-bit lane and `b` in the high one.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn sv(a: i16, b: i16) -> __m256i {
    _mm256_set_m128i(_mm_set1_epi16(b), _mm_set1_epi16(a))
}

#[inline]
#[target_feature(enable = "avx2")]
unsafe fn load_u8x32(b: &[u8; 32]) -> __m256i {
    // SAFETY: `b` is exactly 32 readable bytes; loadu has no alignment requirement.
    unsafe { _mm256_loadu_si256(b.as_ptr().cast()) }
}

#[inline]
#[target_feature(enable = "avx2")]
unsafe fn load_i8x32(b: &[i8; 32]) -> __m256i {
    // SAFETY: `b` is exactly 32 readable bytes; loadu has no alignment requirement.
    unsafe { _mm256_loadu_si256(b.as_ptr().cast()) }
}

#[inline]
#[target_feature(enable = "avx2")]
unsafe fn load_u8x16(b: &[u8; 16]) -> __m128i {
    // SAFETY: `b` is exactly 16 readable bytes; loadu has no alignment requirement.
    unsafe { _mm_loadu_si128(b.as_ptr().cast()) }
}

#[inline]
#[target_feature(enable = "avx2")]
unsafe fn load_i16x16(b: &[i16; 16]) -> __m256i {
    // SAFETY: `b` is exactly 32 readable bytes; loadu has no alignment requirement.
    unsafe { _mm256_loadu_si256(b.as_ptr().cast()) }
}

#[inline]
#[target_feature(enable = "avx2")]
unsafe fn load_i16x8(b: &[i16; 8]) -> __m128i {
    // SAFETY: `b` is exactly 16 readable bytes; loadu has no alignment requirement.
    unsafe { _mm_loadu_si128(b.as_ptr().cast()) }
}

#[inline]
#[target_feature(enable = "avx2")]
unsafe fn load_f32x8(b: &[f32; 8]) -> __m256 {
    // SAFETY: `b` is exactly 8 readable f32s; loadu has no alignment requirement.
    unsafe { _mm256_loadu_ps(b.as_ptr()) }
}

/// ggml's `hsum_float_8`.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn hsum_f32x8(x: __m256) -> f32 {
    let mut r = _mm_add_ps(_mm256_extractf128_ps::<1>(x), _mm256_castps256_ps128(x));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_movehdup_ps(r));
    _mm_cvtss_f32(r)
}

/// The reduction of the scalar twins: lanes (i, i+4), then (i, i+2), then (0, 1).
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn sum8_like_scalar(x: __m256) -> f32 {
    let a = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps::<1>(x));
    let b = _mm_add_ps(a, _mm_movehl_ps(a, a));
    let c = _mm_add_ss(b, _mm_movehdup_ps(b));
    _mm_cvtss_f32(c)
}

/// ggml's `mul_sum_i8_pairs_float`: signed × signed int8 products summed in groups of four,
/// as 8 f32 lanes.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn mul_sum_i8_pairs_float(x: __m256i, y: __m256i) -> __m256 {
    let ax = _mm256_sign_epi8(x, x);
    let sy = _mm256_sign_epi8(y, x);
    let dot = _mm256_maddubs_epi16(ax, sy);
    _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_set1_epi16(1), dot))
}

/// ggml's `bytes_from_nibbles_32`: low nibbles of 16 bytes, then their high nibbles.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn bytes_from_nibbles_32(qs: &[u8; 16]) -> __m256i {
    let tmp = load_u8x16(qs);
    let bytes = _mm256_set_m128i(_mm_srli_epi16::<4>(tmp), tmp);
    _mm256_and_si256(bytes, _mm256_set1_epi8(0xF))
}

/// ggml's `bytes_from_bits_32`: 0xFF in byte i where bit i of `qh` is set, else 0.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn bytes_from_bits_32(qh: [u8; 4]) -> __m256i {
    let x32 = i32::from_le_bytes(qh);
    let shuf = _mm256_set_epi64x(
        0x0303_0303_0303_0303,
        0x0202_0202_0202_0202,
        0x0101_0101_0101_0101,
        0,
    );
    let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(x32), shuf);
    let bit_mask = _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe);
    _mm256_cmpeq_epi8(_mm256_or_si256(bytes, bit_mask), _mm256_set1_epi64x(-1))
}

// ------------------------------------------------------------ float kernels

/// Shared loop of the float kernels: 4 × 8-lane accumulators over 32-element steps, then
/// 8-element steps into the first, then a scalar tail — the same order as the scalar twins.
macro_rules! float_dot {
    ($x:expr, $y:expr, $load_x:expr, $tail_x:expr) => {{
        let (x, y) = ($x, $y);
        let n = x.len().min(y.len());
        let (x, y) = (&x[..n], &y[..n]);
        let mut acc = [_mm256_setzero_ps(); 4];
        let n32 = n - n % 32;
        let n8 = n - n % 8;
        for (xs, ys) in arrays::<_, 32>(&x[..n32]).zip(arrays::<_, 32>(&y[..n32])) {
            let xc = arrays::<_, 8>(xs);
            let yc = arrays::<_, 8>(ys);
            for ((a, xv), yv) in acc.iter_mut().zip(xc).zip(yc) {
                *a = _mm256_fmadd_ps($load_x(xv), load_f32x8(yv), *a);
            }
        }
        let (x_tail, y_tail) = (&x[n8..], &y[n8..]);
        for (xv, yv) in arrays::<_, 8>(&x[n32..n8]).zip(arrays::<_, 8>(&y[n32..n8])) {
            acc[0] = _mm256_fmadd_ps($load_x(xv), load_f32x8(yv), acc[0]);
        }
        let v = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let mut s = sum8_like_scalar(v);
        for (a, b) in x_tail.iter().zip(y_tail) {
            s += $tail_x(a) * b;
        }
        s
    }};
}

/// Twin of [`scalar::vec_dot_f32`].
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn dot_f32(x: &[f32], y: &[f32]) -> f32 {
    float_dot!(x, y, load_f32x8, |a: &f32| *a)
}

#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn load_f16x8(b: &[f16; 8]) -> __m256 {
    // SAFETY: `b` is exactly 16 readable bytes; loadu has no alignment requirement.
    let h = unsafe { _mm_loadu_si128(b.as_ptr().cast()) };
    _mm256_cvtph_ps(h)
}

/// Twin of [`scalar::vec_dot_f16_f32`] (F16C conversion, exact like `f16::to_f32`).
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dot_f16_f32(x: &[f16], y: &[f32]) -> f32 {
    float_dot!(x, y, load_f16x8, |a: &f16| fp16_to_fp32(*a))
}

#[inline]
#[target_feature(enable = "avx2")]
unsafe fn load_bf16x8(b: &[bf16; 8]) -> __m256 {
    // SAFETY: `b` is exactly 16 readable bytes; loadu has no alignment requirement.
    let h = unsafe { _mm_loadu_si128(b.as_ptr().cast()) };
    _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h)))
}

/// Twin of [`scalar::vec_dot_bf16_f32`] (bf16 → f32 is a 16-bit shift, exact).
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn dot_bf16_f32(x: &[bf16], y: &[f32]) -> f32 {
    float_dot!(x, y, load_bf16x8, |a: &bf16| a.to_f32())
}

// --------------------------------------------------------- 32-block kernels

/// `f32(a) · f32(b)` broadcast to 8 lanes, both conversions in one F16C instruction
/// (bit-identical to the scalar twins' software conversion).
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn d_prod(a: f16, b: f16) -> __m256 {
    let bits = u32::from(a.to_bits()) | (u32::from(b.to_bits()) << 16);
    let v = _mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32));
    _mm256_broadcastss_ps(_mm_mul_ss(v, _mm_movehdup_ps(v)))
}

/// The shared loop of the 32-block kernels: two accumulators (blocks alternate between them
/// so consecutive FMAs do not wait on each other), one FMA of `d_x·d_y` per block.
macro_rules! blocks32_dot {
    ($x:expr, $y:expr, $block:ident) => {{
        let n = $x.len().min($y.len());
        let (x, y) = (&$x[..n], &$y[..n]);
        let mut acc0 = _mm256_setzero_ps();
        let mut acc1 = _mm256_setzero_ps();
        let mut xi = x.chunks_exact(2);
        let mut yi = y.chunks_exact(2);
        for (xs, ys) in (&mut xi).zip(&mut yi) {
            if let ([x0, x1], [y0, y1]) = (xs, ys) {
                acc0 = _mm256_fmadd_ps(d_prod(x0.d, y0.d), $block(x0, y0), acc0);
                acc1 = _mm256_fmadd_ps(d_prod(x1.d, y1.d), $block(x1, y1), acc1);
            }
        }
        for (xb, yb) in xi.remainder().iter().zip(yi.remainder()) {
            acc0 = _mm256_fmadd_ps(d_prod(xb.d, yb.d), $block(xb, yb), acc0);
        }
        hsum_f32x8(_mm256_add_ps(acc0, acc1))
    }};
}

/// One Q8_0 × Q8_0 block: 8 lanes of int32 partial sums, as f32.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn block_q8_0(xb: &BlockQ8_0, yb: &BlockQ8_0) -> __m256 {
    mul_sum_i8_pairs_float(load_i8x32(&xb.qs), load_i8x32(&yb.qs))
}

/// One Q4_0 × Q8_0 block.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn block_q4_0(xb: &BlockQ4_0, yb: &BlockQ8_0) -> __m256 {
    let qx = _mm256_sub_epi8(bytes_from_nibbles_32(&xb.qs), _mm256_set1_epi8(8));
    mul_sum_i8_pairs_float(qx, load_i8x32(&yb.qs))
}

/// One Q5_0 × Q8_0 block: q − 16 as int8 by OR-ing 0xF0 into the nibble where the fifth
/// bit is clear.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn block_q5_0(xb: &BlockQ5_0, yb: &BlockQ8_0) -> __m256 {
    let hi = _mm256_andnot_si256(bytes_from_bits_32(xb.qh), _mm256_set1_epi8(0xF0u8 as i8));
    let qx = _mm256_or_si256(bytes_from_nibbles_32(&xb.qs), hi);
    mul_sum_i8_pairs_float(qx, load_i8x32(&yb.qs))
}

/// Twin of [`scalar::vec_dot_q8_0_q8_0`].
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dot_q8_0_q8_0(x: &[BlockQ8_0], y: &[BlockQ8_0]) -> f32 {
    blocks32_dot!(x, y, block_q8_0)
}

/// Twin of [`scalar::vec_dot_q4_0_q8_0`].
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dot_q4_0_q8_0(x: &[BlockQ4_0], y: &[BlockQ8_0]) -> f32 {
    blocks32_dot!(x, y, block_q4_0)
}

/// Twin of [`scalar::vec_dot_q5_0_q8_0`].
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dot_q5_0_q8_0(x: &[BlockQ5_0], y: &[BlockQ8_0]) -> f32 {
    blocks32_dot!(x, y, block_q5_0)
}

// ---------------------------------------------------------- K-quant kernels

/// `Σ_j mins[j] · (bsums[2j] + bsums[2j+1])` as 4 i32 lanes (ggml's `hadd` + `madd`).
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn mins_prod(mins: &[u8; 8], bsums: &[i16; 16]) -> __m128i {
    let q8sums = load_i16x16(bsums);
    let q8s = _mm_hadd_epi16(
        _mm256_castsi256_si128(q8sums),
        _mm256_extracti128_si256::<1>(q8sums),
    );
    let m16: [i16; 8] = mins.map(i16::from);
    _mm_madd_epi16(load_i16x8(&m16), q8s)
}

/// Twin of [`scalar::vec_dot_q4_k_q8_k`].
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn dot_q4_k_q8_k(x: &[BlockQ4K], y: &[BlockQ8K]) -> f32 {
    let m4 = _mm256_set1_epi8(0xF);
    let mut acc = _mm256_setzero_ps();
    let mut acc_m = _mm_setzero_ps();
    for (xb, yb) in x.iter().zip(y) {
        let d = yb.d * fp16_to_fp32(xb.d);
        let dmin = -yb.d * fp16_to_fp32(xb.dmin);
        let (sc, mn) = scalar::k4_scales_mins(&xb.scales);

        let prod = mins_prod(&mn, &yb.bsums);
        acc_m = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(prod), acc_m);

        let q4 = arrays::<_, 32>(&xb.qs);
        let q8 = arrays::<_, 64>(&yb.qs);
        let mut sumi = _mm256_setzero_si256();
        for ((q4c, q8c), s) in q4.zip(q8).zip(arrays::<_, 2>(&sc)) {
            let (q8lo, q8hi) = q8c.split_at(32);
            let (Ok(q8lo), Ok(q8hi)) = (<&[i8; 32]>::try_from(q8lo), <&[i8; 32]>::try_from(q8hi))
            else {
                continue; // unreachable: 64 splits into 32 + 32
            };
            let bits = load_u8x32(q4c);
            let q4l = _mm256_and_si256(bits, m4);
            let q4h = _mm256_and_si256(_mm256_srli_epi16::<4>(bits), m4);
            let p16l = _mm256_maddubs_epi16(q4l, load_i8x32(q8lo));
            let p16h = _mm256_maddubs_epi16(q4h, load_i8x32(q8hi));
            let p32l = _mm256_madd_epi16(_mm256_set1_epi16(i16::from(s[0])), p16l);
            let p32h = _mm256_madd_epi16(_mm256_set1_epi16(i16::from(s[1])), p16h);
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p32l, p32h));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    acc_m = _mm_add_ps(acc_m, _mm_movehl_ps(acc_m, acc_m));
    acc_m = _mm_add_ss(acc_m, _mm_movehdup_ps(acc_m));
    hsum_f32x8(acc) + _mm_cvtss_f32(acc_m)
}

/// Twin of [`scalar::vec_dot_q5_k_q8_k`].
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn dot_q5_k_q8_k(x: &[BlockQ5K], y: &[BlockQ8K]) -> f32 {
    let m4 = _mm256_set1_epi8(0xF);
    let sixteen = _mm256_set1_epi8(16);
    let mut acc = _mm256_setzero_ps();
    let mut acc_m = _mm_setzero_ps();
    for (xb, yb) in x.iter().zip(y) {
        let d = yb.d * fp16_to_fp32(xb.d);
        let dmin = -yb.d * fp16_to_fp32(xb.dmin);
        let (sc, mn) = scalar::k4_scales_mins(&xb.scales);

        let prod = mins_prod(&mn, &yb.bsums);
        acc_m = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(prod), acc_m);

        let hbits = load_u8x32(&xb.qh);
        let mut hmask = _mm256_set1_epi8(1);
        let q5 = arrays::<_, 32>(&xb.qs);
        let q8 = arrays::<_, 64>(&yb.qs);
        let mut sumi = _mm256_setzero_si256();
        for ((q5c, q8c), s) in q5.zip(q8).zip(arrays::<_, 2>(&sc)) {
            let (q8lo, q8hi) = q8c.split_at(32);
            let (Ok(q8lo), Ok(q8hi)) = (<&[i8; 32]>::try_from(q8lo), <&[i8; 32]>::try_from(q8hi))
            else {
                continue; // unreachable: 64 splits into 32 + 32
            };
            let bits = load_u8x32(q5c);
            let h0 = _mm256_cmpeq_epi8(_mm256_and_si256(hbits, hmask), hmask);
            hmask = _mm256_add_epi8(hmask, hmask);
            let h1 = _mm256_cmpeq_epi8(_mm256_and_si256(hbits, hmask), hmask);
            hmask = _mm256_add_epi8(hmask, hmask);
            let q5l = _mm256_or_si256(_mm256_and_si256(bits, m4), _mm256_and_si256(h0, sixteen));
            let q5h = _mm256_or_si256(
                _mm256_and_si256(_mm256_srli_epi16::<4>(bits), m4),
                _mm256_and_si256(h1, sixteen),
            );
            let p16l = _mm256_maddubs_epi16(q5l, load_i8x32(q8lo));
            let p16h = _mm256_maddubs_epi16(q5h, load_i8x32(q8hi));
            let p32l = _mm256_madd_epi16(_mm256_set1_epi16(i16::from(s[0])), p16l);
            let p32h = _mm256_madd_epi16(_mm256_set1_epi16(i16::from(s[1])), p16h);
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p32l, p32h));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    acc_m = _mm_add_ps(acc_m, _mm_movehl_ps(acc_m, acc_m));
    acc_m = _mm_add_ss(acc_m, _mm_movehdup_ps(acc_m));
    hsum_f32x8(acc) + _mm_cvtss_f32(acc_m)
}

/// Twin of [`scalar::vec_dot_q6_k_q8_k`]. Works on unsigned q ∈ [0, 64) and subtracts
/// `32 · Σ_g scale_g · bsum_g` once per super-block.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn dot_q6_k_q8_k(x: &[BlockQ6K], y: &[BlockQ8K]) -> f32 {
    let m4 = _mm256_set1_epi8(0xF);
    let m2 = _mm256_set1_epi8(3);
    let mut acc = _mm256_setzero_ps();
    for (xb, yb) in x.iter().zip(y) {
        let d = yb.d * fp16_to_fp32(xb.d);
        let scales = xb.scales.map(i16::from);
        // 32 · Σ_g scale_g · bsum_g, as 8 i32 lanes.
        let offs = _mm256_slli_epi32::<5>(_mm256_madd_epi16(
            load_i16x16(&scales),
            load_i16x16(&yb.bsums),
        ));

        let ql = arrays::<_, 64>(&xb.ql);
        let qh = arrays::<_, 32>(&xb.qh);
        let q8 = arrays::<_, 128>(&yb.qs);
        let sc = arrays::<_, 8>(&scales);
        let mut sumi = _mm256_setzero_si256();
        for (((qlc, qhc), q8c), s) in ql.zip(qh).zip(q8).zip(sc) {
            let (ql0, ql1) = qlc.split_at(32);
            let (Ok(ql0), Ok(ql1)) = (<&[u8; 32]>::try_from(ql0), <&[u8; 32]>::try_from(ql1))
            else {
                continue; // unreachable: 64 splits into 32 + 32
            };
            let mut q8c = arrays::<_, 32>(q8c);
            let (Some(q80), Some(q81), Some(q82), Some(q83)) =
                (q8c.next(), q8c.next(), q8c.next(), q8c.next())
            else {
                continue; // unreachable: 128 is 4 × 32
            };
            let b1 = load_u8x32(ql0);
            let b2 = load_u8x32(ql1);
            let bh = load_u8x32(qhc);
            let h0 = _mm256_slli_epi16::<4>(_mm256_and_si256(bh, m2));
            let h1 = _mm256_slli_epi16::<4>(_mm256_and_si256(_mm256_srli_epi16::<2>(bh), m2));
            let h2 = _mm256_slli_epi16::<4>(_mm256_and_si256(_mm256_srli_epi16::<4>(bh), m2));
            let h3 = _mm256_slli_epi16::<4>(_mm256_and_si256(_mm256_srli_epi16::<6>(bh), m2));
            let q0 = _mm256_or_si256(_mm256_and_si256(b1, m4), h0);
            let q1 = _mm256_or_si256(_mm256_and_si256(b2, m4), h1);
            let q2 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(b1), m4), h2);
            let q3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(b2), m4), h3);
            // Scales of the two 16-groups each 32-vector spans: low half, high half.
            let p0 = _mm256_madd_epi16(sv(s[0], s[1]), _mm256_maddubs_epi16(q0, load_i8x32(q80)));
            let p1 = _mm256_madd_epi16(sv(s[2], s[3]), _mm256_maddubs_epi16(q1, load_i8x32(q81)));
            let p2 = _mm256_madd_epi16(sv(s[4], s[5]), _mm256_maddubs_epi16(q2, load_i8x32(q82)));
            let p3 = _mm256_madd_epi16(sv(s[6], s[7]), _mm256_maddubs_epi16(q3, load_i8x32(q83)));
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p0, p1));
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p2, p3));
        }
        sumi = _mm256_sub_epi32(sumi, offs);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    hsum_f32x8(acc)
}

// ------------------------------------------------- multi-column K-quant kernels

/// The `i`-th block of each column, or `None` when any column is shorter than that.
#[inline(always)]
fn blocks_at<'a, const N: usize>(ys: &[&'a [BlockQ8K]; N], i: usize) -> Option<[&'a BlockQ8K; N]> {
    let mut out = [&super::ZERO_Q8K; N];
    for (o, y) in out.iter_mut().zip(ys) {
        *o = y.get(i)?;
    }
    Some(out)
}

/// `N` columns of [`dot_q4_k_q8_k`]: each weight super-block's scales and nibbles are
/// unpacked once and multiplied into all columns. Per column, the integer and float
/// operations are those of [`dot_q4_k_q8_k`] in the same order, so `out[c]` is bit-identical
/// to `dot_q4_k_q8_k(x, ys[c])`. All columns must have the same length (the caller checks);
/// otherwise the product stops at the shortest.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn dot_q4_k_q8_k_multi<const N: usize>(
    x: &[BlockQ4K],
    ys: [&[BlockQ8K]; N],
) -> [f32; N] {
    let m4 = _mm256_set1_epi8(0xF);
    let mut acc = [_mm256_setzero_ps(); N];
    let mut acc_m = [_mm_setzero_ps(); N];
    for (i, xb) in x.iter().enumerate() {
        let Some(ybs) = blocks_at(&ys, i) else { break };
        let xd = fp16_to_fp32(xb.d);
        let xdmin = fp16_to_fp32(xb.dmin);
        let (sc, mn) = scalar::k4_scales_mins(&xb.scales);
        let m16: [i16; 8] = mn.map(i16::from);
        let mins = load_i16x8(&m16);
        for (am, yb) in acc_m.iter_mut().zip(&ybs) {
            let dmin = -yb.d * xdmin;
            let q8sums = load_i16x16(&yb.bsums);
            let q8s = _mm_hadd_epi16(
                _mm256_castsi256_si128(q8sums),
                _mm256_extracti128_si256::<1>(q8sums),
            );
            let prod = _mm_madd_epi16(mins, q8s);
            *am = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(prod), *am);
        }

        let mut sumi = [_mm256_setzero_si256(); N];
        for (j, (q4c, s)) in arrays::<_, 32>(&xb.qs).zip(arrays::<_, 2>(&sc)).enumerate() {
            let bits = load_u8x32(q4c);
            let q4l = _mm256_and_si256(bits, m4);
            let q4h = _mm256_and_si256(_mm256_srli_epi16::<4>(bits), m4);
            let s0 = _mm256_set1_epi16(i16::from(s[0]));
            let s1 = _mm256_set1_epi16(i16::from(s[1]));
            for (si, yb) in sumi.iter_mut().zip(&ybs) {
                let q8 = &yb.qs[j * 64..j * 64 + 64];
                let (q8lo, q8hi) = q8.split_at(32);
                let (Ok(q8lo), Ok(q8hi)) =
                    (<&[i8; 32]>::try_from(q8lo), <&[i8; 32]>::try_from(q8hi))
                else {
                    continue; // unreachable: 64 splits into 32 + 32
                };
                let p16l = _mm256_maddubs_epi16(q4l, load_i8x32(q8lo));
                let p16h = _mm256_maddubs_epi16(q4h, load_i8x32(q8hi));
                let p32l = _mm256_madd_epi16(s0, p16l);
                let p32h = _mm256_madd_epi16(s1, p16h);
                *si = _mm256_add_epi32(*si, _mm256_add_epi32(p32l, p32h));
            }
        }
        for ((a, si), yb) in acc.iter_mut().zip(&sumi).zip(&ybs) {
            let d = yb.d * xd;
            *a = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(*si), *a);
        }
    }
    let mut out = [0.0f32; N];
    for ((o, a), am) in out.iter_mut().zip(&acc).zip(&acc_m) {
        let mut m = _mm_add_ps(*am, _mm_movehl_ps(*am, *am));
        m = _mm_add_ss(m, _mm_movehdup_ps(m));
        *o = hsum_f32x8(*a) + _mm_cvtss_f32(m);
    }
    out
}

/// `N` columns of [`dot_q6_k_q8_k`], each weight super-block's 6-bit quants unpacked once.
/// Per column the operations and their order are those of [`dot_q6_k_q8_k`], so `out[c]` is
/// bit-identical to `dot_q6_k_q8_k(x, ys[c])`.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn dot_q6_k_q8_k_multi<const N: usize>(
    x: &[BlockQ6K],
    ys: [&[BlockQ8K]; N],
) -> [f32; N] {
    let m4 = _mm256_set1_epi8(0xF);
    let m2 = _mm256_set1_epi8(3);
    let mut acc = [_mm256_setzero_ps(); N];
    for (i, xb) in x.iter().enumerate() {
        let Some(ybs) = blocks_at(&ys, i) else { break };
        let xd = fp16_to_fp32(xb.d);
        let scales = xb.scales.map(i16::from);
        let scv = load_i16x16(&scales);

        let mut sumi = [_mm256_setzero_si256(); N];
        let ql = arrays::<_, 64>(&xb.ql);
        let qh = arrays::<_, 32>(&xb.qh);
        let sc = arrays::<_, 8>(&scales);
        for (j, ((qlc, qhc), s)) in ql.zip(qh).zip(sc).enumerate() {
            let (ql0, ql1) = qlc.split_at(32);
            let (Ok(ql0), Ok(ql1)) = (<&[u8; 32]>::try_from(ql0), <&[u8; 32]>::try_from(ql1))
            else {
                continue; // unreachable: 64 splits into 32 + 32
            };
            let b1 = load_u8x32(ql0);
            let b2 = load_u8x32(ql1);
            let bh = load_u8x32(qhc);
            let h0 = _mm256_slli_epi16::<4>(_mm256_and_si256(bh, m2));
            let h1 = _mm256_slli_epi16::<4>(_mm256_and_si256(_mm256_srli_epi16::<2>(bh), m2));
            let h2 = _mm256_slli_epi16::<4>(_mm256_and_si256(_mm256_srli_epi16::<4>(bh), m2));
            let h3 = _mm256_slli_epi16::<4>(_mm256_and_si256(_mm256_srli_epi16::<6>(bh), m2));
            let q0 = _mm256_or_si256(_mm256_and_si256(b1, m4), h0);
            let q1 = _mm256_or_si256(_mm256_and_si256(b2, m4), h1);
            let q2 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(b1), m4), h2);
            let q3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(b2), m4), h3);
            let (s0, s1, s2, s3) = (
                sv(s[0], s[1]),
                sv(s[2], s[3]),
                sv(s[4], s[5]),
                sv(s[6], s[7]),
            );
            for (si, yb) in sumi.iter_mut().zip(&ybs) {
                let mut q8c = arrays::<_, 32>(&yb.qs[j * 128..j * 128 + 128]);
                let (Some(q80), Some(q81), Some(q82), Some(q83)) =
                    (q8c.next(), q8c.next(), q8c.next(), q8c.next())
                else {
                    continue; // unreachable: 128 is 4 × 32
                };
                let p0 = _mm256_madd_epi16(s0, _mm256_maddubs_epi16(q0, load_i8x32(q80)));
                let p1 = _mm256_madd_epi16(s1, _mm256_maddubs_epi16(q1, load_i8x32(q81)));
                let p2 = _mm256_madd_epi16(s2, _mm256_maddubs_epi16(q2, load_i8x32(q82)));
                let p3 = _mm256_madd_epi16(s3, _mm256_maddubs_epi16(q3, load_i8x32(q83)));
                *si = _mm256_add_epi32(*si, _mm256_add_epi32(p0, p1));
                *si = _mm256_add_epi32(*si, _mm256_add_epi32(p2, p3));
            }
        }
        for ((a, si), yb) in acc.iter_mut().zip(&sumi).zip(&ybs) {
            let d = yb.d * xd;
            // 32 · Σ_g scale_g · bsum_g, as 8 i32 lanes.
            let offs = _mm256_slli_epi32::<5>(_mm256_madd_epi16(scv, load_i16x16(&yb.bsums)));
            let s = _mm256_sub_epi32(*si, offs);
            *a = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(s), *a);
        }
    }
    let mut out = [0.0f32; N];
    for (o, a) in out.iter_mut().zip(&acc) {
        *o = hsum_f32x8(*a);
    }
    out
}
