//! The AVX-512 VNNI kernel over interleaved Q4_K super-blocks (twin:
//! [`super::q4k::group_col_scalar_q4k`]).
//!
//! Per super-block, shared by all columns: the 16 rows' 6-bit scales and mins are decoded
//! from the transposed scale bytes with a few byte operations, and each nibble line is split
//! into its two 64-byte lines of quants once. Per column: one `dpbusd` per line with the
//! column's four quants broadcast gives each row's sub-block dot product in its own lane,
//! a `pmulld` by the sub-block scales folds the two sub-blocks of a chunk into the exact
//! integer super-block sum, and four `dpwssd` give the mins term. The float fold is the
//! per-row kernel's.
//!
//! Every function is an `unsafe fn` with `#[target_feature]`: the one contract is that the
//! CPU has AVX-512 F/BW/VNNI, AVX2, FMA and F16C ([`super::available`]). Loads read
//! fixed-size arrays of exactly the loaded width, so memory safety does not depend on the
//! inputs.

use super::q4k::{BodyQ4K, ColK};
use super::GROUP_ROWS;
use std::arch::x86_64::*;

#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn load(line: &[u8; 64]) -> __m512i {
    // SAFETY: `line` is exactly 64 readable bytes; loadu has no alignment requirement.
    unsafe { _mm512_loadu_si512(line.as_ptr().cast()) }
}

/// Four activation quants as one broadcast i32.
#[inline(always)]
fn quad(qs: &[i8], at: usize) -> i32 {
    match qs.get(at..at + 4) {
        Some(&[a, b, c, d]) => i32::from_le_bytes([a as u8, b as u8, c as u8, d as u8]),
        _ => 0, // unreachable: callers pass at + 4 <= 256
    }
}

/// The decoded 6-bit scales (`sc[g]`, 16 bytes per sub-block `g`) and mins (`mn`) of a
/// super-block's 16 rows, from the transposed scale bytes (`get_scale_min_k4` on vectors).
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn scales_mins(body: &BodyQ4K) -> ([u8; 128], [u8; 128]) {
    let s = &body.scales;
    let v = |k: usize| -> __m512i {
        // SAFETY: rows k..k+4 of `scales` are 64 contiguous readable bytes (the array is
        // 12 × 16 bytes and k <= 8).
        unsafe { _mm512_loadu_si512(s[k..k + 4].as_ptr().cast()) }
    };
    let (v0, v1, v2) = (v(0), v(4), v(8));
    let m63 = _mm512_set1_epi8(63);
    let m15 = _mm512_set1_epi8(15);
    let m48 = _mm512_set1_epi8(0x30);
    // Sub-blocks 0..4: low six bits of bytes 0..4 (scales) and 4..8 (mins).
    let sc_lo = _mm512_and_si512(v0, m63);
    let mn_lo = _mm512_and_si512(v1, m63);
    // Sub-blocks 4..8: low/high nibble of bytes 8..12, plus the top two bits of bytes 0..4
    // (scales) or 4..8 (mins) as bits 4-5.
    let sc_hi = _mm512_or_si512(
        _mm512_and_si512(v2, m15),
        _mm512_and_si512(_mm512_srli_epi16::<2>(v0), m48),
    );
    let mn_hi = _mm512_or_si512(
        _mm512_and_si512(_mm512_srli_epi16::<4>(v2), m15),
        _mm512_and_si512(_mm512_srli_epi16::<2>(v1), m48),
    );
    let mut sc = [0u8; 128];
    let mut mn = [0u8; 128];
    // SAFETY: each store writes 64 bytes inside a 128-byte array.
    unsafe {
        _mm512_storeu_si512(sc.as_mut_ptr().cast(), sc_lo);
        _mm512_storeu_si512(sc[64..].as_mut_ptr().cast(), sc_hi);
        _mm512_storeu_si512(mn.as_mut_ptr().cast(), mn_lo);
        _mm512_storeu_si512(mn[64..].as_mut_ptr().cast(), mn_hi);
    }
    (sc, mn)
}

/// Sub-block `g`'s 16 bytes of `v` as 16 i32 lanes.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn lanes(v: &[u8; 128], g: usize) -> __m512i {
    let Some(b) = v.get(16 * g..16 * g + 16) else {
        return _mm512_setzero_si512(); // unreachable: g < 8
    };
    // SAFETY: `b` is 16 readable bytes; loadu has no alignment requirement.
    _mm512_cvtepu8_epi32(unsafe { _mm_loadu_si128(b.as_ptr().cast()) })
}

/// `N` columns of one group (see the module doc).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn kernel_q4k<const N: usize>(
    bodies: &[BodyQ4K],
    cols: &[ColK<'_>; N],
) -> [[f32; GROUP_ROWS]; N] {
    let m4 = _mm512_set1_epi8(0x0F);
    let mut acc = [_mm512_setzero_ps(); N];
    let mut accm = [_mm512_setzero_ps(); N];
    for (b, body) in bodies.iter().enumerate() {
        let (sc, mn) = scales_mins(body);
        // Min pairs: lane r = mn[2p][r] | mn[2p + 1][r] << 16.
        let mut min_pairs = [_mm512_setzero_si512(); 4];
        for (p, mp) in min_pairs.iter_mut().enumerate() {
            *mp = _mm512_or_si512(
                lanes(&mn, 2 * p),
                _mm512_slli_epi32::<16>(lanes(&mn, 2 * p + 1)),
            );
        }
        let mut sumi = [_mm512_setzero_si512(); N];
        for j in 0..4 {
            let mut s_lo = [_mm512_setzero_si512(); N];
            let mut s_hi = [_mm512_setzero_si512(); N];
            for i in 0..8 {
                let raw = load(&body.nib[8 * j + i]);
                let lo = _mm512_and_si512(raw, m4);
                let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(raw), m4);
                for (c, col) in cols.iter().enumerate() {
                    let qs = &col.q[b].qs;
                    let y_lo = _mm512_set1_epi32(quad(qs, 64 * j + 4 * i));
                    let y_hi = _mm512_set1_epi32(quad(qs, 64 * j + 32 + 4 * i));
                    s_lo[c] = _mm512_dpbusd_epi32(s_lo[c], lo, y_lo);
                    s_hi[c] = _mm512_dpbusd_epi32(s_hi[c], hi, y_hi);
                }
            }
            let (sa, sb) = (lanes(&sc, 2 * j), lanes(&sc, 2 * j + 1));
            for c in 0..N {
                let t = _mm512_add_epi32(
                    _mm512_mullo_epi32(s_lo[c], sa),
                    _mm512_mullo_epi32(s_hi[c], sb),
                );
                sumi[c] = _mm512_add_epi32(sumi[c], t);
            }
        }
        // SAFETY: `d` and `dmin` are exactly 16 f16 (32 readable bytes); loadu has no
        // alignment requirement.
        let (dw, dmin) = unsafe {
            (
                _mm512_cvtph_ps(_mm256_loadu_si256(body.d.as_ptr().cast())),
                _mm512_cvtph_ps(_mm256_loadu_si256(body.dmin.as_ptr().cast())),
            )
        };
        for (c, col) in cols.iter().enumerate() {
            let mut summ = _mm512_setzero_si512();
            for (mp, &bp) in min_pairs.iter().zip(&col.bsum_pairs[b]) {
                summ = _mm512_dpwssd_epi32(summ, *mp, _mm512_set1_epi32(bp));
            }
            let yd = col.q[b].d;
            let d = _mm512_mul_ps(_mm512_set1_ps(yd), dw);
            acc[c] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(sumi[c]), acc[c]);
            let dm = _mm512_mul_ps(_mm512_set1_ps(-yd), dmin);
            accm[c] = _mm512_fmadd_ps(dm, _mm512_cvtepi32_ps(summ), accm[c]);
        }
    }
    let mut out = [[0.0f32; GROUP_ROWS]; N];
    for (o, (a, am)) in out.iter_mut().zip(acc.iter().zip(&accm)) {
        // SAFETY: `o` is exactly 16 writable f32; storeu has no alignment requirement.
        unsafe { _mm512_storeu_ps(o.as_mut_ptr(), _mm512_add_ps(*a, *am)) };
    }
    out
}
