//! AVX-512 twin of [`super::attend_heads_scalar`] for head sizes 64, 128 and 256.
//!
//! Per key, the key and value rows are converted from f16 once and used by every head of
//! the group; each head's dot product is summed in [`super::dot_f16_f32_lanes16`]'s order
//! and its accumulator (in `out`, so L1) updated with the twin's exact operations.
//!
//! Every function is an `unsafe fn` with `#[target_feature]`: the one contract is that the
//! CPU has AVX-512 F, AVX2, FMA and F16C. Loads and stores go through fixed-size arrays of
//! exactly the accessed width (slices are cut with bounds checks), so memory safety does not
//! depend on the inputs.

use super::{KvHead, EXP_C1, EXP_C2, EXP_MIN, EXP_P};
use half::f16;
use std::arch::x86_64::*;

/// Most heads per group handled in one sweep (larger groups are taken in parts).
const MAX_G: usize = 8;

/// Runs the kernel when the head sizes are ones it is built for; `false` (and `out`
/// untouched) otherwise.
///
/// # Safety
/// The CPU must have AVX-512 F, AVX2, FMA and F16C.
pub(super) unsafe fn attend(
    q: &[f32],
    kv: &KvHead<'_>,
    slots: &[usize],
    scale: f32,
    out: &mut [f32],
) -> bool {
    if kv.head_dim != kv.head_dim_v {
        return false;
    }
    let hd = kv.head_dim;
    let f = match hd {
        64 => heads::<4>,
        128 => heads::<8>,
        256 => heads::<16>,
        _ => return false,
    };
    for (qg, og) in q.chunks(MAX_G * hd).zip(out.chunks_mut(MAX_G * hd)) {
        // SAFETY: the caller guarantees the CPU features.
        unsafe { f(qg, kv, slots, scale, og) };
    }
    true
}

/// `s` as consecutive 16-element arrays.
fn chunks16<T>(s: &[T]) -> impl Iterator<Item = &[T; 16]> {
    s.chunks_exact(16)
        .filter_map(|c| <&[T; 16]>::try_from(c).ok())
}

/// `s` as consecutive mutable 16-element arrays.
fn chunks16_mut<T>(s: &mut [T]) -> impl Iterator<Item = &mut [T; 16]> {
    s.chunks_exact_mut(16)
        .filter_map(|c| <&mut [T; 16]>::try_from(c).ok())
}

#[inline]
#[target_feature(enable = "avx512f,avx2,f16c")]
unsafe fn load_f16(h: &[f16; 16]) -> __m512 {
    // SAFETY: `h` is exactly 16 f16 (32 readable bytes); loadu has no alignment requirement.
    _mm512_cvtph_ps(unsafe { _mm256_loadu_si256(h.as_ptr().cast()) })
}

#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn load(x: &[f32; 16]) -> __m512 {
    // SAFETY: `x` is exactly 16 readable f32; loadu has no alignment requirement.
    unsafe { _mm512_loadu_ps(x.as_ptr()) }
}

#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn store(x: &mut [f32; 16], v: __m512) {
    // SAFETY: `x` is exactly 16 writable f32; storeu has no alignment requirement.
    unsafe { _mm512_storeu_ps(x.as_mut_ptr(), v) }
}

/// Halves folded down to lane 0, as the twin sums them.
#[inline]
#[target_feature(enable = "avx512f,avx2")]
unsafe fn fold(t: __m512) -> f32 {
    let t8 = _mm256_add_ps(
        _mm512_castps512_ps256(t),
        _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(t))),
    );
    let t4 = _mm_add_ps(_mm256_castps256_ps128(t8), _mm256_extractf128_ps::<1>(t8));
    let t2 = _mm_add_ps(t4, _mm_movehl_ps(t4, t4));
    _mm_cvtss_f32(_mm_add_ss(t2, _mm_movehdup_ps(t2)))
}

/// [`super::exp_f32`] on 16 lanes, with the same operations.
#[inline]
#[target_feature(enable = "avx512f,fma")]
unsafe fn exp16(x: __m512) -> __m512 {
    let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
        _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E)),
    );
    let r = _mm512_fmadd_ps(
        n,
        _mm512_set1_ps(-EXP_C2),
        _mm512_fmadd_ps(n, _mm512_set1_ps(-EXP_C1), x),
    );
    let mut p = _mm512_set1_ps(EXP_P[0]);
    for &c in &EXP_P[1..] {
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
    }
    let y = _mm512_add_ps(
        _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r),
        _mm512_set1_ps(1.0),
    );
    let bits = _mm512_slli_epi32::<23>(_mm512_add_epi32(
        _mm512_cvtps_epi32(n),
        _mm512_set1_epi32(127),
    ));
    let e = _mm512_mul_ps(y, _mm512_castsi512_ps(bits));
    let under = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, _mm512_set1_ps(EXP_MIN));
    _mm512_mask_mov_ps(e, under, _mm512_setzero_ps())
}

/// Up to [`MAX_G`] heads of `D` 16-lane chunks each (`q`: `[g, 16·D]`, `out` likewise).
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
unsafe fn heads<const D: usize>(
    q: &[f32],
    kv: &KvHead<'_>,
    slots: &[usize],
    scale: f32,
    out: &mut [f32],
) {
    let hd = 16 * D;
    let g = (q.len() / hd).min(out.len() / hd).min(MAX_G);
    let (q, out) = (&q[..g * hd], &mut out[..g * hd]);
    out.iter_mut().for_each(|a| *a = 0.0);
    let mut max = [f32::NEG_INFINITY; MAX_G];
    let mut sum = [0.0f32; MAX_G];
    // Keys in chunks of 16: all heads' scores first, then each head's online-softmax
    // factors (the running max scanned in order, the exponentials 16 at a time with the
    // twin's `exp_f32` operations), then the values folded in key by key.
    for chunk in slots.chunks(16) {
        let mut scores = [[0.0f32; 16]; MAX_G];
        for (j, &slot) in chunk.iter().enumerate() {
            let mut kf = [_mm512_setzero_ps(); D];
            for (x, c) in kf.iter_mut().zip(chunks16(kv.key(slot))) {
                *x = load_f16(c);
            }
            for (sh, qh) in scores.iter_mut().zip(q.chunks_exact(hd)) {
                // Even chunks into `s0`, odd into `s1` (D is even), as the twin sums them.
                let (mut s0, mut s1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
                for (k2, q2) in kf.chunks_exact(2).zip(qh.chunks_exact(32)) {
                    let (qa, qb) = q2.split_at(16);
                    if let (Ok(qa), Ok(qb)) =
                        (<&[f32; 16]>::try_from(qa), <&[f32; 16]>::try_from(qb))
                    {
                        s0 = _mm512_fmadd_ps(k2[0], load(qa), s0);
                        s1 = _mm512_fmadd_ps(k2[1], load(qb), s1);
                    }
                }
                sh[j] = fold(_mm512_add_ps(s0, s1)) * scale;
            }
        }
        let mut ms = [[1.0f32; 16]; MAX_G];
        let mut vs = [[0.0f32; 16]; MAX_G];
        for h in 0..g {
            let mut arg = [0.0f32; 16];
            let mut new_max = 0u32;
            for (j, (&s, a)) in scores[h]
                .iter()
                .zip(arg.iter_mut())
                .take(chunk.len())
                .enumerate()
            {
                if s > max[h] {
                    *a = max[h] - s;
                    max[h] = s;
                    new_max |= 1 << j;
                } else {
                    *a = s - max[h];
                }
            }
            let mut e = [0.0f32; 16];
            store(&mut e, exp16(load(&arg)));
            for (j, &ej) in e.iter().enumerate().take(chunk.len()) {
                if new_max >> j & 1 == 1 {
                    (ms[h][j], vs[h][j]) = (ej, 1.0);
                } else {
                    vs[h][j] = ej;
                }
            }
        }
        for (j, &slot) in chunk.iter().enumerate() {
            let mut vf = [_mm512_setzero_ps(); D];
            for (x, c) in vf.iter_mut().zip(chunks16(kv.value(slot))) {
                *x = load_f16(c);
            }
            for (h, oh) in out.chunks_exact_mut(hd).enumerate() {
                let (m, w) = (ms[h][j], vs[h][j]);
                if m != 1.0 {
                    let mv = _mm512_set1_ps(m);
                    for a in chunks16_mut(oh) {
                        store(a, _mm512_mul_ps(load(a), mv));
                    }
                }
                let wv = _mm512_set1_ps(w);
                for (a, v) in chunks16_mut(oh).zip(&vf) {
                    store(a, _mm512_fmadd_ps(*v, wv, load(a)));
                }
                sum[h] = sum[h] * m + w;
            }
        }
    }
    for (oh, &s) in out.chunks_exact_mut(hd).zip(&sum) {
        let inv = _mm512_set1_ps(if s == 0.0 { 0.0 } else { 1.0 / s });
        for a in chunks16_mut(oh) {
            store(a, _mm512_mul_ps(load(a), inv));
        }
    }
}
