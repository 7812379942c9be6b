//! AVX-512 GEMM micro-kernel: 12 tokens × 32 weight rows (24 zmm accumulators), the SIMD
//! twin of [`super::scalar::tile`].

use std::arch::x86_64::*;

/// Tokens per tile.
pub(super) const MR: usize = 12;
/// Weight rows per tile: two 16-lane vectors.
pub(super) const NR: usize = 32;

/// [`super::scalar::tile`] with `MR = 12`, `NR = 32`; the same contract and the same bits.
///
/// # Safety
/// The CPU must support AVX-512F and FMA. Memory safety does not depend on the arguments:
/// lengths are checked here (a panic on a logic error), and the partial rows of `c` are
/// loaded and stored through masks covering exactly their length.
#[target_feature(enable = "avx512f,avx2,fma")]
pub(super) unsafe fn tile(panel: &[f32], xp: &[f32], kc: usize, c: &mut [&mut [f32]], first: bool) {
    assert!(panel.len() >= kc * NR && xp.len() >= kc * MR && c.len() <= MR);
    assert!(c.iter().all(|ci| ci.len() <= NR));
    // SAFETY (all arms): the lengths were checked above and the CPU features are this
    // function's own contract.
    unsafe {
        match c.len() {
            1 => tile_m::<1>(panel, xp, kc, c, first),
            2 => tile_m::<2>(panel, xp, kc, c, first),
            3 => tile_m::<3>(panel, xp, kc, c, first),
            4 => tile_m::<4>(panel, xp, kc, c, first),
            5 => tile_m::<5>(panel, xp, kc, c, first),
            6 => tile_m::<6>(panel, xp, kc, c, first),
            7 => tile_m::<7>(panel, xp, kc, c, first),
            8 => tile_m::<8>(panel, xp, kc, c, first),
            9 => tile_m::<9>(panel, xp, kc, c, first),
            10 => tile_m::<10>(panel, xp, kc, c, first),
            11 => tile_m::<11>(panel, xp, kc, c, first),
            12 => tile_m::<12>(panel, xp, kc, c, first),
            _ => {}
        }
    }
}

/// Lane masks of the two halves of a row of `n <= 32` outputs.
#[inline]
fn masks(n: usize) -> (__mmask16, __mmask16) {
    let lo = if n >= 16 { 0xFFFF } else { (1u16 << n) - 1 };
    let hi = if n >= 32 {
        0xFFFF
    } else if n > 16 {
        (1u16 << (n - 16)) - 1
    } else {
        0
    };
    (lo, hi)
}

/// # Safety
/// As [`tile`], with `c.len() == M` and the lengths already checked.
#[inline]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn tile_m<const M: usize>(
    panel: &[f32],
    xp: &[f32],
    kc: usize,
    c: &mut [&mut [f32]],
    first: bool,
) {
    let mut acc = [[_mm512_setzero_ps(); 2]; M];
    if !first {
        for (a, ci) in acc.iter_mut().zip(c.iter()) {
            let (m0, m1) = masks(ci.len());
            let p = ci.as_ptr();
            // SAFETY: the masks cover exactly `ci.len()` floats from `p`; masked-off lanes
            // are neither read nor faulted on, so the (possibly out-of-slice) address of the
            // upper half is never dereferenced beyond the slice.
            unsafe {
                a[0] = _mm512_maskz_loadu_ps(m0, p);
                a[1] = _mm512_maskz_loadu_ps(m1, p.wrapping_add(16));
            }
        }
    }
    let p = panel.as_ptr();
    let x = xp.as_ptr();
    for k in 0..kc {
        // SAFETY: `k < kc`, `panel.len() >= kc * NR` and `xp.len() >= kc * MR` (checked by
        // `tile`), and `M <= MR`, so every read is inside its slice.
        unsafe {
            let w0 = _mm512_loadu_ps(p.add(k * NR));
            let w1 = _mm512_loadu_ps(p.add(k * NR + 16));
            for (i, a) in acc.iter_mut().enumerate() {
                let xv = _mm512_set1_ps(*x.add(k * MR + i));
                a[0] = _mm512_fmadd_ps(w0, xv, a[0]);
                a[1] = _mm512_fmadd_ps(w1, xv, a[1]);
            }
        }
    }
    for (a, ci) in acc.iter().zip(c.iter_mut()) {
        let (m0, m1) = masks(ci.len());
        let p = ci.as_mut_ptr();
        // SAFETY: as for the loads: the masks cover exactly `ci.len()` floats from `p`.
        unsafe {
            _mm512_mask_storeu_ps(p, m0, a[0]);
            _mm512_mask_storeu_ps(p.wrapping_add(16), m1, a[1]);
        }
    }
}

/// Weight elements the panel packer loads 16 at a time as f32 (exact conversions).
pub(super) trait Load16: Copy {
    /// The `mask`ed elements of `p[..16]` as f32, zero elsewhere.
    ///
    /// # Safety
    /// AVX-512 F/BW/VL; every element `p[i]` whose mask bit `i` is set must be readable.
    unsafe fn load16(p: *const Self, mask: __mmask16) -> __m512;
}

impl Load16 for f32 {
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn load16(p: *const f32, mask: __mmask16) -> __m512 {
        // SAFETY: masked-off lanes are not read; the caller vouches for the others.
        unsafe { _mm512_maskz_loadu_ps(mask, p) }
    }
}

impl Load16 for half::f16 {
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    unsafe fn load16(p: *const half::f16, mask: __mmask16) -> __m512 {
        // SAFETY: masked-off lanes are not read; the caller vouches for the others.
        let h = unsafe { _mm256_maskz_loadu_epi16(mask, p.cast()) };
        _mm512_cvtph_ps(h)
    }
}

impl Load16 for half::bf16 {
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    unsafe fn load16(p: *const half::bf16, mask: __mmask16) -> __m512 {
        // SAFETY: masked-off lanes are not read; the caller vouches for the others.
        let h = unsafe { _mm256_maskz_loadu_epi16(mask, p.cast()) };
        _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)))
    }
}

/// Transposes the 16 × 16 matrix whose rows are `r` in place (`r[j]` becomes column `j`).
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn transpose16(r: &mut [__m512; 16]) {
    let mut t = [_mm512_setzero_ps(); 16];
    for i in 0..8 {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for i in 0..4 {
        r[4 * i] = _mm512_shuffle_ps::<0x44>(t[4 * i], t[4 * i + 2]);
        r[4 * i + 1] = _mm512_shuffle_ps::<0xEE>(t[4 * i], t[4 * i + 2]);
        r[4 * i + 2] = _mm512_shuffle_ps::<0x44>(t[4 * i + 1], t[4 * i + 3]);
        r[4 * i + 3] = _mm512_shuffle_ps::<0xEE>(t[4 * i + 1], t[4 * i + 3]);
    }
    for c in 0..4 {
        t[c] = _mm512_shuffle_f32x4::<0x88>(r[c], r[4 + c]);
        t[4 + c] = _mm512_shuffle_f32x4::<0xDD>(r[c], r[4 + c]);
        t[8 + c] = _mm512_shuffle_f32x4::<0x88>(r[8 + c], r[12 + c]);
        t[12 + c] = _mm512_shuffle_f32x4::<0xDD>(r[8 + c], r[12 + c]);
    }
    for j in 0..8 {
        r[j] = _mm512_shuffle_f32x4::<0x88>(t[j], t[8 + j]);
        r[8 + j] = _mm512_shuffle_f32x4::<0xDD>(t[j], t[8 + j]);
    }
}

/// Twin of the scalar panel packer: `dst[k * NR + j] = f32(w[(r0 + j) * cols + k0 + k])`
/// for `k < kc`, `j < NR`, zero for rows `r0 + j >= rows`; 16 × 16 blocks transposed in
/// registers.
///
/// # Safety
/// AVX-512 F/BW/VL. Lengths are checked here (a panic on a logic error).
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn pack_panel<T: Load16>(
    w: &[T],
    cols: usize,
    rows: usize,
    r0: usize,
    k0: usize,
    kc: usize,
    dst: &mut [f32],
) {
    assert!(w.len() >= rows * cols && k0 + kc <= cols && dst.len() >= kc * NR);
    let d = dst.as_mut_ptr();
    for half in 0..NR / 16 {
        for kk in (0..kc).step_by(16) {
            let n = (kc - kk).min(16);
            let mask: __mmask16 = if n == 16 { 0xFFFF } else { (1u16 << n) - 1 };
            let mut r = [_mm512_setzero_ps(); 16];
            for (j, rj) in r.iter_mut().enumerate() {
                let row = r0 + half * 16 + j;
                if row < rows {
                    // SAFETY: the `n` lanes read are `w[row * cols + k0 + kk ..][..n]`, inside
                    // row `row` (k0 + kk + n <= k0 + kc <= cols) and so inside `w`.
                    *rj = unsafe { T::load16(w.as_ptr().add(row * cols + k0 + kk), mask) };
                }
            }
            // SAFETY: AVX-512F is this function's contract.
            unsafe { transpose16(&mut r) };
            for (i, ri) in r.iter().take(n).enumerate() {
                // SAFETY: (kk + i) * NR + half * 16 + 16 <= kc * NR <= dst.len().
                unsafe { _mm512_storeu_ps(d.add((kk + i) * NR + half * 16), *ri) };
            }
        }
    }
}
