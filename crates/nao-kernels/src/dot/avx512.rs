//! AVX-512 (F, BW, VL) + VNNI kernels (x86-64), each the SIMD twin of a function in
//! [`super::scalar`].
//!
//! - Q4_K / Q6_K × Q8_K work on 64 quants per 512-bit register: `maddubs` (u8 × s8 → pairwise
//!   i16, which cannot saturate: |q| ≤ 63 and |q8| ≤ 128), then VNNI `dpwssd` folds the
//!   sub-block scale into the i16 → i32 widening and the accumulation in one instruction.
//!   For Q4_K, per super-block the exact integer totals (and the mins term) are reduced to
//!   scalars (four super-blocks at a time) and folded in with one scalar FMA each, in
//!   super-block order: the AMX prefill GEMM ([`crate::amx`]) reproduces exactly that
//!   order, so a token's result does not depend on which path computed it. Q6_K keeps
//!   16-lane float accumulators (it does not go through AMX; see `amx::gemm::supports`).
//! - The single-row kernels are the multi-column kernels with one column, so a column's result
//!   does not depend on how many other columns share the call (batch invariance).
//! - Q8_0 / Q4_0 / Q5_0 × Q8_0 use 256-bit VNNI `dpbusd` on (|x|, sign(y, x)), which replaces
//!   AVX2's `maddubs` + `madd` pair (and is exact for x = −128); their multi-column versions
//!   unpack each weight block once for all columns (prefill).
//!
//! Every function here is an `unsafe fn` with `#[target_feature]`: the one contract is that
//! the CPU has the features named (AVX-512 F/BW/VL/VNNI, and F16C for the 32-block kernels),
//! which [`super::isa`] establishes once with `is_x86_feature_detected!`. Memory safety does
//! not depend on the inputs: every load reads a fixed-size array of exactly the loaded width,
//! and slices are walked with zipped iterators, so mismatched lengths only shorten the sum.

use super::scalar::{fp16_to_fp32, k4_scale_words};
use super::{weights, ActRow};
use crate::blocks::{BlockQ4K, BlockQ4_0, BlockQ5_0, BlockQ6K, BlockQ8K, BlockQ8_0};
use crate::{DType, KernelError};
use half::f16;
use std::arch::x86_64::*;

/// Runs the AVX-512 kernel for `(w, a)` if there is one (`Ok(None)` otherwise).
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL/VNNI, AVX2, FMA and F16C (the caller checks with
/// `is_x86_feature_detected!` once, see [`super::isa`]).
#[inline]
pub(super) unsafe fn dispatch(
    w: DType,
    w_row: &[u8],
    a: ActRow<'_>,
) -> Result<Option<f32>, KernelError> {
    // SAFETY (all calls below): the function contract guarantees the features; the kernels
    // only read within their slice arguments.
    let v = match (w, a) {
        (DType::Q4K, ActRow::Q8K(y)) => unsafe { dot_q4_k_q8_k_multi(weights(w, w_row)?, [y])[0] },
        (DType::Q6K, ActRow::Q8K(y)) => unsafe { dot_q6_k_q8_k_multi(weights(w, w_row)?, [y])[0] },
        (DType::Q8_0, ActRow::Q8_0(y)) => unsafe {
            dot_q8_0_q8_0_multi(weights(w, w_row)?, [y])[0]
        },
        (DType::Q4_0, ActRow::Q8_0(y)) => unsafe {
            dot_q4_0_q8_0_multi(weights(w, w_row)?, [y])[0]
        },
        (DType::Q5_0, ActRow::Q8_0(y)) => unsafe {
            dot_q5_0_q8_0_multi(weights(w, w_row)?, [y])[0]
        },
        _ => return Ok(None),
    };
    Ok(Some(v))
}

// ------------------------------------------------------------------ helpers

#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn load_512<T: Copy, const N: usize>(b: &[T; N]) -> __m512i {
    const { assert!(std::mem::size_of::<[T; N]>() == 64) };
    // SAFETY: `b` is exactly 64 readable bytes (asserted above); loadu has no alignment
    // requirement.
    unsafe { _mm512_loadu_si512(b.as_ptr().cast()) }
}

#[inline]
#[target_feature(enable = "avx2")]
unsafe fn load_256<T: Copy, const N: usize>(b: &[T; N]) -> __m256i {
    const { assert!(std::mem::size_of::<[T; N]>() == 32) };
    // SAFETY: `b` is exactly 32 readable bytes (asserted above); loadu has no alignment
    // requirement.
    unsafe { _mm256_loadu_si256(b.as_ptr().cast()) }
}

#[inline]
#[target_feature(enable = "sse2")]
unsafe fn load_128<T: Copy, const N: usize>(b: &[T; N]) -> __m128i {
    const { assert!(std::mem::size_of::<[T; N]>() == 16) };
    // SAFETY: `b` is exactly 16 readable bytes (asserted above); loadu has no alignment
    // requirement.
    unsafe { _mm_loadu_si128(b.as_ptr().cast()) }
}

/// `s` as consecutive `N`-element arrays (a trailing partial chunk is dropped). The
/// conversion cannot fail for `chunks_exact` pieces, so the `filter_map` compiles away.
#[inline(always)]
fn arrays<T, const N: usize>(s: &[T]) -> impl Iterator<Item = &[T; N]> {
    s.chunks_exact(N)
        .filter_map(|c| <&[T; N]>::try_from(c).ok())
}

/// Two f16 values (`a` low, `b` high) as f32, in one F16C conversion (exact, like the scalar
/// twins' software conversion).
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn f16_pair(a: f16, b: f16) -> (f32, f32) {
    let bits = u32::from(a.to_bits()) | (u32::from(b.to_bits()) << 16);
    let v = _mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32));
    (_mm_cvtss_f32(v), _mm_cvtss_f32(_mm_movehdup_ps(v)))
}

/// The `i`-th block of each column, or `None` when any column is shorter than that.
#[inline(always)]
fn blocks_at<'a, const N: usize>(ys: &[&'a [BlockQ8K]; N], i: usize) -> Option<[&'a BlockQ8K; N]> {
    let mut out = [&super::ZERO_Q8K; N];
    for (o, y) in out.iter_mut().zip(ys) {
        *o = y.get(i)?;
    }
    Some(out)
}

/// `pshufb` control bytes that spread byte `b` of each 128-bit lane into the low byte of
/// every 16-bit word of that lane (high bytes zeroed), lane `l` taking byte `idx[l]`.
const fn spread_words(idx: [u8; 4]) -> [u8; 64] {
    let mut out = [0x80u8; 64];
    let mut i = 0;
    while i < 64 {
        out[i] = idx[i / 16];
        i += 2;
    }
    out
}

/// Q4_K scales of 64-chunk `j` as words: low 256 bits sub-block `2j`, high 256 bits `2j + 1`
/// (from a register holding `[scales 0..8, mins 0..8]` in every 128-bit lane).
const Q4K_SCALE_CTRL: [[u8; 64]; 4] = [
    spread_words([0, 0, 1, 1]),
    spread_words([2, 2, 3, 3]),
    spread_words([4, 4, 5, 5]),
    spread_words([6, 6, 7, 7]),
];

/// Q4_K mins as words, each twice (one per 16-group of its 32-wide sub-block), to pair with
/// the Q8_K `bsums`: low lane mins 0..4, high lane mins 4..8.
const Q4K_MIN_CTRL: [u8; 32] = {
    let mut out = [0x80u8; 32];
    let mut w = 0;
    while w < 16 {
        out[2 * w] = 8 + (w / 2) as u8;
        w += 1;
    }
    out
};

/// Lane totals of four 8-lane vectors, `[Σv0, Σv1, Σv2, Σv3]` (exact integer sums).
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn reduce4_256(v: &[__m256i; 4]) -> [i32; 4] {
    // [v0_01 v0_23 v1_01 v1_23 | v0_45 ..] twice, then [v0_0123 v1_0123 v2_0123 v3_0123 | ..].
    let h = _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
    let t = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256::<1>(h));
    let mut out = [0i32; 4];
    // SAFETY: writes exactly the 16 bytes of `out` (unaligned store).
    unsafe { _mm_storeu_si128(out.as_mut_ptr().cast(), t) };
    out
}

/// Lane totals of four 16-lane vectors.
#[inline]
#[target_feature(enable = "avx512f,avx2")]
unsafe fn reduce4_512(v: &[__m512i; 4]) -> [i32; 4] {
    let fold = |x: &__m512i| {
        _mm256_add_epi32(
            _mm512_castsi512_si256(*x),
            _mm512_extracti64x4_epi64::<1>(*x),
        )
    };
    reduce4_256(&[fold(&v[0]), fold(&v[1]), fold(&v[2]), fold(&v[3])])
}

/// Up to four Q4_K super-blocks' integer sums per column, waiting to be folded into the
/// float accumulators: one transposing reduction serves four super-blocks, then the folds run
/// one by one in super-block order (`acc = fma(d, sumi, acc)`), the order the AMX GEMM
/// reproduces.
struct Pending<const N: usize> {
    n: usize,
    sumi: [[__m512i; 4]; N],
    mins: [[__m256i; 4]; N],
    d: [[f32; 4]; N],
    dmin: [[f32; 4]; N],
}

impl<const N: usize> Pending<N> {
    #[inline]
    #[target_feature(enable = "avx512f,avx2")]
    fn new() -> Self {
        Pending {
            n: 0,
            sumi: [[_mm512_setzero_si512(); 4]; N],
            mins: [[_mm256_setzero_si256(); 4]; N],
            d: [[0.0; 4]; N],
            dmin: [[0.0; 4]; N],
        }
    }

    /// Folds the pending super-blocks into `acc` and their mins terms into `acc_m`.
    #[inline]
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn flush(&mut self, acc: &mut [f32; N], acc_m: &mut [f32; N]) {
        for c in 0..N {
            // SAFETY: the caller's features (AVX-512 F, AVX2) are this function's.
            let s = unsafe { reduce4_512(&self.sumi[c]) };
            let n = self.n.min(4);
            for (&d, &si) in self.d[c][..n].iter().zip(&s) {
                acc[c] = d.mul_add(si as f32, acc[c]);
            }
            // SAFETY: as above.
            let m = unsafe { reduce4_256(&self.mins[c]) };
            for (&d, &sm) in self.dmin[c][..n].iter().zip(&m) {
                acc_m[c] = d.mul_add(sm as f32, acc_m[c]);
            }
        }
        self.n = 0;
    }
}

#[inline]
#[target_feature(enable = "avx2")]
unsafe fn hsum_256(x: __m256) -> f32 {
    let mut r = _mm_add_ps(_mm256_extractf128_ps::<1>(x), _mm256_castps256_ps128(x));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_movehdup_ps(r));
    _mm_cvtss_f32(r)
}

// ---------------------------------------------------------- K-quant kernels

/// `N` columns of the Q4_K × Q8_K dot product (twin of
/// [`super::scalar::vec_dot_q4_k_q8_k`]). Each weight super-block's scales and nibbles are
/// unpacked once for all columns; per column the operations and their order do not depend on
/// `N`, so `out[c]` is bit-identical to the one-column call on `ys[c]`. All columns must have
/// the same length (the caller checks); otherwise the product stops at the shortest.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn dot_q4_k_q8_k_multi<const N: usize>(
    x: &[BlockQ4K],
    ys: [&[BlockQ8K]; N],
) -> [f32; N] {
    let m4 = _mm512_set1_epi8(0xF);
    let sc_ctrl = Q4K_SCALE_CTRL.map(|c| load_512(&c));
    let min_ctrl = load_256(&Q4K_MIN_CTRL);
    let mut acc = [0.0f32; N];
    let mut acc_m = [0.0f32; N];
    let mut pend = Pending::<N>::new();
    for (i, xb) in x.iter().enumerate() {
        let Some(ybs) = blocks_at(&ys, i) else { break };
        let (xd, xdmin) = f16_pair(xb.d, xb.dmin);
        let [s0, s1, m0, m1] = k4_scale_words(&xb.scales);
        let sm = _mm_set_epi32(m1 as i32, m0 as i32, s1 as i32, s0 as i32);
        let sm512 = _mm512_broadcast_i32x4(sm);
        let mins = _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(sm), min_ctrl);

        // 64 quants per register: the low nibbles of 32 bytes, then their high nibbles.
        let mut q4 = [_mm512_setzero_si512(); 4];
        let mut sc = [_mm512_setzero_si512(); 4];
        for (((q, s), bytes), ctrl) in q4
            .iter_mut()
            .zip(&mut sc)
            .zip(arrays::<_, 32>(&xb.qs))
            .zip(&sc_ctrl)
        {
            let b = _mm512_broadcast_i64x4(load_256(bytes));
            *q = _mm512_and_si512(_mm512_mask_srli_epi16::<4>(b, 0xFFFF_0000, b), m4);
            *s = _mm512_shuffle_epi8(sm512, *ctrl);
        }

        let k = pend.n % 4;
        for (c, yb) in ybs.iter().enumerate() {
            let mut sumi = _mm512_setzero_si512();
            for ((q, s), q8) in q4.iter().zip(&sc).zip(arrays::<_, 64>(&yb.qs)) {
                let p = _mm512_maddubs_epi16(*q, load_512(q8));
                sumi = _mm512_dpwssd_epi32(sumi, p, *s);
            }
            pend.sumi[c][k] = sumi;
            pend.mins[c][k] = _mm256_madd_epi16(mins, load_256(&yb.bsums));
            pend.d[c][k] = yb.d * xd;
            pend.dmin[c][k] = -yb.d * xdmin;
        }
        pend.n = k + 1;
        if pend.n == 4 {
            pend.flush(&mut acc, &mut acc_m);
        }
    }
    pend.flush(&mut acc, &mut acc_m);
    let mut out = [0.0f32; N];
    for ((o, a), am) in out.iter_mut().zip(&acc).zip(&acc_m) {
        *o = *a + *am;
    }
    out
}

/// A Q6_K super-block's unsigned 6-bit quants in natural order, 64 per register (quarter
/// 2n: quants 128n..128n+64; quarter 2n+1: quants 128n+64..128n+128).
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn q6k_quants(xb: &BlockQ6K) -> [__m512i; 4] {
    let m4 = _mm512_set1_epi8(0xF);
    let m30 = _mm512_set1_epi8(0x30);
    let mut q6 = [_mm512_setzero_si512(); 4];
    for ((q, ql), qh) in q6
        .chunks_exact_mut(2)
        .zip(arrays::<_, 64>(&xb.ql))
        .zip(arrays::<_, 32>(&xb.qh))
    {
        let l = load_512(ql);
        let h = _mm512_broadcast_i64x4(load_256(qh));
        // Low 256 bits: qh; high 256 bits: qh >> 2 (bits 0-1 and 4-5 of each byte are used).
        let hs = _mm512_mask_srli_epi16::<2>(h, 0xFFFF_0000, h);
        let lo = _mm512_or_si512(
            _mm512_and_si512(l, m4),
            _mm512_and_si512(_mm512_slli_epi16::<4>(hs), m30),
        );
        let hi = _mm512_or_si512(
            _mm512_and_si512(_mm512_srli_epi16::<4>(l), m4),
            _mm512_and_si512(hs, m30),
        );
        if let [a, b] = q {
            *a = lo;
            *b = hi;
        }
    }
    q6
}

/// `N` columns of the Q6_K × Q8_K dot product (twin of
/// [`super::scalar::vec_dot_q6_k_q8_k`]) on unsigned q ∈ [0, 64), subtracting
/// `32 · Σ_g scale_g · bsum_g` once per super-block. As for Q4_K, per column the operations
/// do not depend on `N`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn dot_q6_k_q8_k_multi<const N: usize>(
    x: &[BlockQ6K],
    ys: [&[BlockQ8K]; N],
) -> [f32; N] {
    // Word index → scale index for the four 64-quant quarters: group 4k + (word / 8).
    let idx: [__m512i; 4] = std::array::from_fn(|k| {
        let base = 4 * k as i16;
        _mm512_add_epi16(
            _mm512_set1_epi16(base),
            _mm512_srli_epi16::<3>(_mm512_set_epi16(
                31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15, 14, 13, 12, 11,
                10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0,
            )),
        )
    });
    let mut acc = [_mm512_setzero_ps(); N];
    for (i, xb) in x.iter().enumerate() {
        let Some(ybs) = blocks_at(&ys, i) else { break };
        let xd = fp16_to_fp32(xb.d);
        let sc16 = _mm256_cvtepi8_epi16(load_128(&xb.scales));
        let sc512 = _mm512_castsi256_si512(sc16);
        let sc: [__m512i; 4] = std::array::from_fn(|k| _mm512_permutexvar_epi16(idx[k], sc512));

        let q6 = q6k_quants(xb);

        for (a, yb) in acc.iter_mut().zip(&ybs) {
            let mut sumi = _mm512_setzero_si512();
            for ((q, s), q8) in q6.iter().zip(&sc).zip(arrays::<_, 64>(&yb.qs)) {
                let p = _mm512_maddubs_epi16(*q, load_512(q8));
                sumi = _mm512_dpwssd_epi32(sumi, p, *s);
            }
            // 32 · Σ_g scale_g · bsum_g, as 8 i32 lanes.
            let offs = _mm256_slli_epi32::<5>(_mm256_madd_epi16(sc16, load_256(&yb.bsums)));
            sumi = _mm512_sub_epi32(sumi, _mm512_zextsi256_si512(offs));
            *a = _mm512_fmadd_ps(_mm512_set1_ps(yb.d * xd), _mm512_cvtepi32_ps(sumi), *a);
        }
    }
    let mut out = [0.0f32; N];
    for (o, a) in out.iter_mut().zip(&acc) {
        *o = _mm512_reduce_add_ps(*a);
    }
    out
}

// --------------------------------------------------------- 32-block kernels

/// `f32(a) · f32(b)` broadcast to 8 lanes, both conversions in one F16C instruction.
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn d_prod(a: f16, b: f16) -> __m256 {
    let bits = u32::from(a.to_bits()) | (u32::from(b.to_bits()) << 16);
    let v = _mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32));
    _mm256_broadcastss_ps(_mm_mul_ss(v, _mm_movehdup_ps(v)))
}

/// `N` columns of a 32-block dot product: per column two accumulators (block `i` goes to
/// accumulator `i % 2`, so consecutive FMAs do not wait on each other), one FMA of `d_x·d_y`
/// per block, `|x|` unpacked once per block for all columns. Per column the operations do
/// not depend on `N`, so the one-column call is the single-row kernel.
macro_rules! blocks32_multi {
    ($x:expr, $ys:expr, $quants:expr) => {{
        let (x, ys) = ($x, $ys);
        let mut acc = [[_mm256_setzero_ps(); 2]; N];
        for (i, xb) in x.iter().enumerate() {
            let mut ybs = [&ZERO_Q8_0; N];
            if ybs.iter_mut().zip(&ys).any(|(o, y)| match y.get(i) {
                Some(b) => {
                    *o = b;
                    false
                }
                None => true,
            }) {
                break;
            }
            let q = $quants(xb);
            let ax = _mm256_sign_epi8(q, q);
            for (a, yb) in acc.iter_mut().zip(&ybs) {
                let sy = _mm256_sign_epi8(load_256(&yb.qs), q);
                let p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), ax, sy);
                let a = &mut a[i % 2];
                *a = _mm256_fmadd_ps(d_prod(xb.d, yb.d), _mm256_cvtepi32_ps(p), *a);
            }
        }
        let mut out = [0.0f32; N];
        for (o, a) in out.iter_mut().zip(&acc) {
            *o = hsum_256(_mm256_add_ps(a[0], a[1]));
        }
        out
    }};
}

const ZERO_Q8_0: BlockQ8_0 = BlockQ8_0 {
    d: f16::ZERO,
    qs: [0; 32],
};

/// Q8_0 weights as int8.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn quants_q8_0(xb: &BlockQ8_0) -> __m256i {
    load_256(&xb.qs)
}

/// Q4_0 weights as int8 `q − 8`: low nibbles of 16 bytes, then their high nibbles.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn quants_q4_0(xb: &BlockQ4_0) -> __m256i {
    let tmp = load_128(&xb.qs);
    let bytes = _mm256_set_m128i(_mm_srli_epi16::<4>(tmp), tmp);
    let q = _mm256_and_si256(bytes, _mm256_set1_epi8(0xF));
    _mm256_sub_epi8(q, _mm256_set1_epi8(8))
}

/// Q5_0 weights as int8 `q − 16`: the nibbles with 0xF0 OR-ed in where the fifth bit (bit j
/// of `qh` for element j) is clear.
#[inline]
#[target_feature(enable = "avx2,avx512bw,avx512vl")]
unsafe fn quants_q5_0(xb: &BlockQ5_0) -> __m256i {
    let tmp = load_128(&xb.qs);
    let bytes = _mm256_set_m128i(_mm_srli_epi16::<4>(tmp), tmp);
    let q = _mm256_and_si256(bytes, _mm256_set1_epi8(0xF));
    let high_set: __mmask32 = u32::from_le_bytes(xb.qh);
    _mm256_mask_mov_epi8(
        _mm256_or_si256(q, _mm256_set1_epi8(0xF0u8 as i8)),
        high_set,
        q,
    )
}

/// `N` columns of the Q8_0 × Q8_0 dot product (twin of
/// [`super::scalar::vec_dot_q8_0_q8_0`]); signed × signed through `dpbusd` on
/// (|x|, sign(y, x)), exact for every x and for y ≠ −128 (never produced by the quantizer).
#[target_feature(enable = "avx2,fma,f16c,avx512vl,avx512vnni")]
pub(super) unsafe fn dot_q8_0_q8_0_multi<const N: usize>(
    x: &[BlockQ8_0],
    ys: [&[BlockQ8_0]; N],
) -> [f32; N] {
    blocks32_multi!(x, ys, quants_q8_0)
}

/// `N` columns of the Q4_0 × Q8_0 dot product (twin of
/// [`super::scalar::vec_dot_q4_0_q8_0`]).
#[target_feature(enable = "avx2,fma,f16c,avx512vl,avx512vnni")]
pub(super) unsafe fn dot_q4_0_q8_0_multi<const N: usize>(
    x: &[BlockQ4_0],
    ys: [&[BlockQ8_0]; N],
) -> [f32; N] {
    blocks32_multi!(x, ys, quants_q4_0)
}

/// `N` columns of the Q5_0 × Q8_0 dot product (twin of
/// [`super::scalar::vec_dot_q5_0_q8_0`]).
#[target_feature(enable = "avx2,fma,f16c,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn dot_q5_0_q8_0_multi<const N: usize>(
    x: &[BlockQ5_0],
    ys: [&[BlockQ8_0]; N],
) -> [f32; N] {
    blocks32_multi!(x, ys, quants_q5_0)
}

// ----------------------------------------------------------- quantization

/// Twin of one block of [`crate::quantize::quantize_row_q8_k`], bit for bit: the same
/// signed max of largest magnitude (first one wins, NaN ignored), the same f32 products
/// `iscale · x` rounded half to even, saturated to [−128, 127], NaN to 0.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
pub(crate) unsafe fn quantize_block_q8_k(x: &[f32; 256], y: &mut BlockQ8K) {
    let sign = _mm512_set1_ps(-0.0);
    let mut vmax = _mm512_setzero_ps();
    for c in arrays::<f32, 16>(x) {
        // SAFETY: `c` is exactly 16 readable f32s; loadu has no alignment requirement.
        let v = unsafe { _mm512_loadu_ps(c.as_ptr()) };
        // MAXPS returns its second operand when the first is NaN: NaN lanes are skipped.
        vmax = _mm512_max_ps(_mm512_andnot_ps(sign, v), vmax);
    }
    let amax = _mm512_reduce_max_ps(vmax);
    if amax == 0.0 {
        y.d = 0.0;
        y.qs = [0; 256];
        y.bsums = [0; 16];
        return;
    }
    // The first element whose magnitude is `amax` (the scalar loop keeps the first strict
    // maximum).
    let target = _mm512_set1_ps(amax);
    let mut max = amax;
    for (i, c) in arrays::<f32, 16>(x).enumerate() {
        // SAFETY: as above.
        let v = unsafe { _mm512_loadu_ps(c.as_ptr()) };
        let m = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(_mm512_andnot_ps(sign, v), target);
        if m != 0 {
            max = x[16 * i + m.trailing_zeros() as usize];
            break;
        }
    }
    let iscale = -127.0 / max;
    let vs = _mm512_set1_ps(iscale);
    let lo = _mm512_set1_ps(-128.0);
    let hi = _mm512_set1_ps(127.0);
    for ((c, q), s) in arrays::<f32, 16>(x)
        .zip(y.qs.chunks_exact_mut(16))
        .zip(y.bsums.iter_mut())
    {
        // SAFETY: as above.
        let v = unsafe { _mm512_loadu_ps(c.as_ptr()) };
        let p = _mm512_mul_ps(vs, v);
        let r = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(p);
        let r = _mm512_min_ps(_mm512_max_ps(r, lo), hi);
        let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(p, p);
        let r = _mm512_mask_mov_ps(r, nan, _mm512_setzero_ps());
        let qi = _mm512_cvtps_epi32(r);
        *s = _mm512_reduce_add_epi32(qi) as i16;
        let packed = _mm512_cvtepi32_epi8(qi);
        // SAFETY: `q` is exactly 16 writable bytes (a `chunks_exact_mut(16)` piece); storeu
        // has no alignment requirement.
        unsafe { _mm_storeu_si128(q.as_mut_ptr().cast(), packed) };
    }
    y.d = 1.0 / iscale;
}

/// Twin of one block of [`crate::quantize::quantize_row_q8_0`] (and `_q8_1`), bit for bit:
/// the same largest magnitude (NaN ignored), the same f32 products `id · x` with
/// `id = 127 / amax` rounded half to even, saturated to [−128, 127], NaN to 0. Writes the
/// quants and returns `(amax, sum of the quants)`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
pub(crate) unsafe fn quantize_block_q8_0(x: &[f32; 32], q: &mut [i8; 32]) -> (f32, i32) {
    let sign = _mm512_set1_ps(-0.0);
    let mut v = [_mm512_setzero_ps(); 2];
    for (vi, c) in v.iter_mut().zip(arrays::<f32, 16>(x)) {
        // SAFETY: `c` is exactly 16 readable f32s; loadu has no alignment requirement.
        *vi = unsafe { _mm512_loadu_ps(c.as_ptr()) };
    }
    // MAXPS returns its second operand when the first is NaN: NaN lanes are skipped.
    let vmax = _mm512_max_ps(
        _mm512_andnot_ps(sign, v[1]),
        _mm512_max_ps(_mm512_andnot_ps(sign, v[0]), _mm512_setzero_ps()),
    );
    let amax = _mm512_reduce_max_ps(vmax);
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    let vs = _mm512_set1_ps(id);
    let lo = _mm512_set1_ps(-128.0);
    let hi = _mm512_set1_ps(127.0);
    let mut sum = 0i32;
    for (vi, qc) in v.iter().zip(q.chunks_exact_mut(16)) {
        let p = _mm512_mul_ps(*vi, vs);
        let r = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(p);
        let r = _mm512_min_ps(_mm512_max_ps(r, lo), hi);
        let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(p, p);
        let r = _mm512_mask_mov_ps(r, nan, _mm512_setzero_ps());
        let qi = _mm512_cvtps_epi32(r);
        sum += _mm512_reduce_add_epi32(qi);
        // SAFETY: `qc` is exactly 16 writable bytes (a `chunks_exact_mut(16)` piece); storeu
        // has no alignment requirement.
        unsafe { _mm_storeu_si128(qc.as_mut_ptr().cast(), _mm512_cvtepi32_epi8(qi)) };
    }
    (amax, sum)
}
