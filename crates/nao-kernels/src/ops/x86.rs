//! AVX2 + FMA twins of the vector activations in [`super`]: the same operations in the same
//! order as the scalar code, lane by lane, so results are bit-identical.
//!
//! Every function is an `unsafe fn` with `#[target_feature]`: the one contract is that the
//! CPU has AVX2 and FMA (AVX2 and F16C for the GELU), which [`crate::dot::fma_enabled`]
//! (or the caller) establishes with `is_x86_feature_detected!`. Loads and stores go through fixed-size arrays of exactly the
//! register width, so memory safety does not depend on the inputs.

use super::{EXP_C, EXP_HI, EXP_LN2_HI, EXP_LN2_LO, EXP_LO, LOG2E};
use std::arch::x86_64::*;

/// Twin of [`super::exp_poly`] on 8 lanes.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn exp8(t: __m256) -> __m256 {
    let t = _mm256_min_ps(
        _mm256_max_ps(t, _mm256_set1_ps(EXP_LO)),
        _mm256_set1_ps(EXP_HI),
    );
    let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(
        t,
        _mm256_set1_ps(LOG2E),
    ));
    let r = _mm256_fmadd_ps(n, _mm256_set1_ps(-EXP_LN2_HI), t);
    let r = _mm256_fmadd_ps(n, _mm256_set1_ps(-EXP_LN2_LO), r);
    let mut p = _mm256_set1_ps(EXP_C[0]);
    for &c in &EXP_C[1..] {
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
    }
    let bits = _mm256_slli_epi32::<23>(_mm256_add_epi32(
        _mm256_cvtps_epi32(n),
        _mm256_set1_epi32(127),
    ));
    _mm256_mul_ps(p, _mm256_castsi256_ps(bits))
}

/// Twin of [`super::silu_mul_scalar`]: `g = g / (1 + exp(-g)) * u` on whole 8-lane groups;
/// returns how many elements it did (the caller finishes the tail with the scalar code).
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn silu_mul(g: &mut [f32], u: &[f32]) -> usize {
    let mut done = 0;
    for (gc, uc) in g.chunks_exact_mut(8).zip(u.chunks_exact(8)) {
        let (Ok(gc), Ok(uc)) = (<&mut [f32; 8]>::try_from(gc), <&[f32; 8]>::try_from(uc)) else {
            break;
        };
        // SAFETY: `gc` and `uc` are exactly 8 f32s; loadu/storeu need no alignment.
        let x = unsafe { _mm256_loadu_ps(gc.as_ptr()) };
        // SAFETY: as above.
        let uv = unsafe { _mm256_loadu_ps(uc.as_ptr()) };
        let e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), x));
        let s = _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0), e));
        // SAFETY: as above.
        unsafe { _mm256_storeu_ps(gc.as_mut_ptr(), _mm256_mul_ps(s, uv)) };
        done += 8;
    }
    done
}

/// Twin of [`super::gelu_f16_mul_scalar`] on whole 8-lane groups (`table`: the GELU of every
/// f16 bit pattern); returns how many elements it did.
#[target_feature(enable = "avx2,f16c")]
pub(super) unsafe fn gelu_f16_mul(g: &mut [f32], u: &[f32], table: &[f32; 65536]) -> usize {
    let mut done = 0;
    let (lo, hi) = (_mm256_set1_ps(-10.0), _mm256_set1_ps(10.0));
    for (gc, uc) in g.chunks_exact_mut(8).zip(u.chunks_exact(8)) {
        let (Ok(gc), Ok(uc)) = (<&mut [f32; 8]>::try_from(gc), <&[f32; 8]>::try_from(uc)) else {
            break;
        };
        // SAFETY: `gc` and `uc` are exactly 8 f32s; loadu/storeu need no alignment.
        let (x, uv) = unsafe { (_mm256_loadu_ps(gc.as_ptr()), _mm256_loadu_ps(uc.as_ptr())) };
        // Round to nearest even, as `f16::from_f32`.
        let h = _mm256_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT }>(x);
        let idx = _mm256_cvtepu16_epi32(h);
        // SAFETY: every index is a zero-extended u16, so below the table's 65536 entries.
        let v = unsafe { _mm256_i32gather_ps::<4>(table.as_ptr(), idx) };
        // x <= -10 gives 0, x >= 10 gives x (ordered compares: NaN keeps the table value).
        let v = _mm256_blendv_ps(v, _mm256_setzero_ps(), _mm256_cmp_ps::<_CMP_LE_OQ>(x, lo));
        let v = _mm256_blendv_ps(v, x, _mm256_cmp_ps::<_CMP_GE_OQ>(x, hi));
        // SAFETY: as above.
        unsafe { _mm256_storeu_ps(gc.as_mut_ptr(), _mm256_mul_ps(v, uv)) };
        done += 8;
    }
    done
}
