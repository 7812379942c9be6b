//! AVX2 + FMA GEMM micro-kernel: 6 tokens × 16 weight rows (12 ymm accumulators), the SIMD
//! twin of [`super::scalar::tile`].

use std::arch::x86_64::*;

/// Tokens per tile.
pub(super) const MR: usize = 6;
/// Weight rows per tile: two 8-lane vectors.
pub(super) const NR: usize = 16;

/// [`super::scalar::tile`] with `MR = 6`, `NR = 16`; the same contract and the same bits.
///
/// # Safety
/// The CPU must support AVX2 and FMA. Memory safety does not depend on the arguments:
/// lengths are checked here (a panic on a logic error), and partial rows of `c` go through
/// a stack copy.
#[target_feature(enable = "avx2,fma")]
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
            _ => {}
        }
    }
}

/// # Safety
/// As [`tile`], with `c.len() == M` and the lengths already checked.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_m<const M: usize>(
    panel: &[f32],
    xp: &[f32],
    kc: usize,
    c: &mut [&mut [f32]],
    first: bool,
) {
    let mut acc = [[_mm256_setzero_ps(); 2]; M];
    if !first {
        for (a, ci) in acc.iter_mut().zip(c.iter()) {
            let mut buf = [0.0f32; NR];
            let src = match <&[f32; NR]>::try_from(&ci[..]) {
                Ok(full) => full,
                Err(_) => {
                    buf[..ci.len()].copy_from_slice(ci);
                    &buf
                }
            };
            // SAFETY: `src` is exactly 16 readable floats; loadu has no alignment requirement.
            unsafe {
                a[0] = _mm256_loadu_ps(src.as_ptr());
                a[1] = _mm256_loadu_ps(src.as_ptr().add(8));
            }
        }
    }
    let p = panel.as_ptr();
    let x = xp.as_ptr();
    for k in 0..kc {
        // SAFETY: `k < kc`, `panel.len() >= kc * NR` and `xp.len() >= kc * MR` (checked by
        // `tile`), and `M <= MR`, so every read is inside its slice.
        unsafe {
            let w0 = _mm256_loadu_ps(p.add(k * NR));
            let w1 = _mm256_loadu_ps(p.add(k * NR + 8));
            for (i, a) in acc.iter_mut().enumerate() {
                let xv = _mm256_set1_ps(*x.add(k * MR + i));
                a[0] = _mm256_fmadd_ps(w0, xv, a[0]);
                a[1] = _mm256_fmadd_ps(w1, xv, a[1]);
            }
        }
    }
    for (a, ci) in acc.iter().zip(c.iter_mut()) {
        if let Ok(full) = <&mut [f32; NR]>::try_from(&mut ci[..]) {
            // SAFETY: `full` is exactly 16 writable floats; storeu has no alignment
            // requirement.
            unsafe {
                _mm256_storeu_ps(full.as_mut_ptr(), a[0]);
                _mm256_storeu_ps(full.as_mut_ptr().add(8), a[1]);
            }
            continue;
        }
        let mut buf = [0.0f32; NR];
        // SAFETY: `buf` holds 16 floats; storeu has no alignment requirement.
        unsafe {
            _mm256_storeu_ps(buf.as_mut_ptr(), a[0]);
            _mm256_storeu_ps(buf.as_mut_ptr().add(8), a[1]);
        }
        let n = ci.len();
        ci.copy_from_slice(&buf[..n]);
    }
}
