//! AVX-512 twin of [`super::attend_f16_scalar`] for head sizes 64, 128 and 256.
//!
//! The query stays in registers (or L1), the value accumulator in registers for the whole
//! pass; keys are scored eight at a time (independent dot products the core can overlap)
//! and then folded in one by one with exactly the scalar twin's operations: the same fused
//! multiply-adds, the same f16 roundings, the same `expf`.
//!
//! Every function is an `unsafe fn` with `#[target_feature]`: the one contract is that the
//! CPU has AVX-512 F, AVX2, FMA and F16C. Loads read fixed-size arrays of exactly the loaded
//! width (slices are cut with bounds checks), so memory safety does not depend on inputs.

use super::{online_step, KvHead};
use half::f16;
use std::arch::x86_64::*;

/// Keys scored per batch before they are folded in.
const CHUNK: usize = 8;

/// Runs the kernel when the head sizes are ones it is built for; `false` (and `acc`
/// untouched) otherwise.
///
/// # Safety
/// The CPU must have AVX-512 F, AVX2, FMA and F16C.
pub(super) unsafe fn attend(
    q: &[f32],
    kv: &KvHead<'_>,
    slots: &[usize],
    scale: f32,
    acc: &mut [f32],
) -> bool {
    // SAFETY (all three): the caller guarantees the CPU features.
    match (kv.head_dim, kv.head_dim_v) {
        (64, 64) => unsafe { pass::<4>(q, kv, slots, scale, acc) },
        (128, 128) => unsafe { pass::<8>(q, kv, slots, scale, acc) },
        (256, 256) => unsafe { pass::<16>(q, kv, slots, scale, acc) },
        _ => return false,
    }
    true
}

#[inline]
#[target_feature(enable = "avx512f,avx2,f16c")]
unsafe fn load_f16(h: &[f16; 16]) -> __m512 {
    // SAFETY: `h` is exactly 16 f16 (32 readable bytes); loadu has no alignment requirement.
    _mm512_cvtph_ps(unsafe { _mm256_loadu_si256(h.as_ptr().cast()) })
}

#[inline]
#[target_feature(enable = "avx512f,avx2,f16c")]
unsafe fn round16(x: __m512) -> __m512 {
    _mm512_cvtph_ps(_mm512_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(x))
}

/// `h` as consecutive 16-element arrays.
fn chunks16<T>(h: &[T]) -> impl Iterator<Item = &[T; 16]> {
    h.chunks_exact(16)
        .filter_map(|c| <&[T; 16]>::try_from(c).ok())
}

/// The dot product in [`super::dot_f16_f32_lanes16`]'s order.
#[inline]
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
unsafe fn dot<const D: usize>(k: &[f16], q: &[__m512; D]) -> f32 {
    let mut s = [_mm512_setzero_ps(); 2];
    for (c, (kc, qc)) in chunks16(k).zip(q).enumerate() {
        s[c % 2] = _mm512_fmadd_ps(load_f16(kc), *qc, s[c % 2]);
    }
    let t = _mm512_add_ps(s[0], s[1]);
    let t8 = _mm256_add_ps(
        _mm512_castps512_ps256(t),
        _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(t))),
    );
    let t4 = _mm_add_ps(_mm256_castps256_ps128(t8), _mm256_extractf128_ps::<1>(t8));
    let t2 = _mm_add_ps(t4, _mm_movehl_ps(t4, t4));
    _mm_cvtss_f32(_mm_add_ss(t2, _mm_movehdup_ps(t2)))
}

/// The whole pass for `D` 16-lane chunks per head.
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
unsafe fn pass<const D: usize>(
    q: &[f32],
    kv: &KvHead<'_>,
    slots: &[usize],
    scale: f32,
    acc: &mut [f32],
) {
    let mut qv = [_mm512_setzero_ps(); D];
    for (v, c) in qv.iter_mut().zip(chunks16(q)) {
        // SAFETY: `c` is exactly 16 readable f32; loadu has no alignment requirement.
        *v = unsafe { _mm512_loadu_ps(c.as_ptr()) };
    }
    let mut a = [_mm512_setzero_ps(); D];
    let mut max = f32::NEG_INFINITY;
    let mut sum = 0.0f32;
    for chunk in slots.chunks(CHUNK) {
        let mut scores = [0.0f32; CHUNK];
        for (s, &slot) in scores.iter_mut().zip(chunk) {
            *s = dot::<D>(kv.key(slot), &qv) * scale;
        }
        for (&score, &slot) in scores.iter().zip(chunk) {
            let (ms, vs) = online_step(score, &mut max);
            if ms != 1.0 {
                let m = _mm512_set1_ps(ms);
                for x in a.iter_mut() {
                    *x = round16(_mm512_mul_ps(*x, m));
                }
            }
            let w = _mm512_set1_ps(vs);
            for (x, vc) in a.iter_mut().zip(chunks16(kv.value(slot))) {
                *x = round16(_mm512_fmadd_ps(load_f16(vc), w, *x));
            }
            sum = sum * ms + vs;
        }
    }
    let inv = _mm512_set1_ps(if sum == 0.0 { 0.0 } else { 1.0 / sum });
    for (x, out) in a.iter().zip(acc.chunks_exact_mut(16)) {
        // SAFETY: `out` is exactly 16 writable f32 (a `chunks_exact_mut(16)` piece); storeu
        // has no alignment requirement.
        unsafe { _mm512_storeu_ps(out.as_mut_ptr(), _mm512_mul_ps(*x, inv)) };
    }
}
