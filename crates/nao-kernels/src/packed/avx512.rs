//! The AVX-512 VNNI kernel over interleaved blocks (twin: [`super::group_col_scalar`]).
//!
//! Per block: the 16 rows' scales are converted once (F16C), the quants unpacked once into
//! eight registers of unsigned bytes, and then per column eight `dpbusd` with the column's
//! 4-quant groups broadcast, seeded with the column's `−offset · Σy`, give each row's exact
//! block sum in its own lane; `fma(f32(sum) · d_y, d_x, acc)` folds it in, as the twin does.
//!
//! Every function is an `unsafe fn` with `#[target_feature]`: the one contract is that the
//! CPU has AVX-512 F/BW/VNNI, AVX2, FMA and F16C ([`super::available`]). Loads read
//! fixed-size arrays of exactly the loaded width, so memory safety does not depend on the
//! inputs.

use super::{BodyQ4_0, BodyQ5_0, BodyQ8_0, Col, KernelBody, GROUP_ROWS};
use half::f16;
use std::arch::x86_64::*;

#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn load(line: &[u8; 64]) -> __m512i {
    // SAFETY: `line` is exactly 64 readable bytes; loadu has no alignment requirement.
    unsafe { _mm512_loadu_si512(line.as_ptr().cast()) }
}

/// The four nibble lines as eight lines of quants (low nibbles: groups 0–3, high: 4–7).
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn nibbles(nib: &[[u8; 64]; 4]) -> [__m512i; 8] {
    let m = _mm512_set1_epi8(0x0F);
    let mut w = [_mm512_setzero_si512(); 8];
    for (c, line) in nib.iter().enumerate() {
        let raw = load(line);
        w[c] = _mm512_and_si512(raw, m);
        w[c + 4] = _mm512_and_si512(_mm512_srli_epi16::<4>(raw), m);
    }
    w
}

/// Unpacking of one block into eight lines of unsigned quants.
trait Unpack {
    /// # Safety
    /// The CPU must have AVX-512 F and BW.
    unsafe fn unpack(&self) -> [__m512i; 8];
}

impl Unpack for BodyQ4_0 {
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn unpack(&self) -> [__m512i; 8] {
        nibbles(&self.nib)
    }
}

impl Unpack for BodyQ5_0 {
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn unpack(&self) -> [__m512i; 8] {
        let mut w = nibbles(&self.nib);
        let five = _mm512_set1_epi8(0x10);
        for (wg, &mask) in w.iter_mut().zip(&self.high) {
            *wg = _mm512_mask_add_epi8(*wg, _cvtu64_mask64(mask), *wg, five);
        }
        w
    }
}

impl Unpack for BodyQ8_0 {
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn unpack(&self) -> [__m512i; 8] {
        let mut w = [_mm512_setzero_si512(); 8];
        for (wg, line) in w.iter_mut().zip(&self.q) {
            *wg = load(line);
        }
        w
    }
}

/// `N` columns of one group (see the module doc).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
unsafe fn kernel<B: Unpack, const N: usize>(
    bodies: &[B],
    scales: &[[f16; GROUP_ROWS]],
    cols: &[Col<'_>; N],
) -> [[f32; GROUP_ROWS]; N] {
    let mut acc = [_mm512_setzero_ps(); N];
    for (b, (body, sc)) in bodies.iter().zip(scales).enumerate() {
        // SAFETY: `sc` is exactly 16 f16 (32 readable bytes); loadu has no alignment
        // requirement.
        let dx = _mm512_cvtph_ps(unsafe { _mm256_loadu_si256(sc.as_ptr().cast()) });
        let w = body.unpack();
        for (a, c) in acc.iter_mut().zip(cols) {
            let qs = &c.q[b].qs;
            let mut s = _mm512_set1_epi32(c.corr[b]);
            for (wg, y4) in w.iter().zip(qs.chunks_exact(4)) {
                let y = i32::from_le_bytes([y4[0] as u8, y4[1] as u8, y4[2] as u8, y4[3] as u8]);
                s = _mm512_dpbusd_epi32(s, *wg, _mm512_set1_epi32(y));
            }
            let t = _mm512_mul_ps(_mm512_cvtepi32_ps(s), _mm512_set1_ps(c.dy[b]));
            *a = _mm512_fmadd_ps(t, dx, *a);
        }
    }
    let mut out = [[0.0f32; GROUP_ROWS]; N];
    for (o, a) in out.iter_mut().zip(&acc) {
        // SAFETY: `o` is exactly 16 writable f32; storeu has no alignment requirement.
        unsafe { _mm512_storeu_ps(o.as_mut_ptr(), *a) };
    }
    out
}

macro_rules! kernel_body {
    ($t:ty) => {
        impl KernelBody for $t {
            unsafe fn unpack_lines(&self, out: &mut [[u8; 64]; 8]) {
                // SAFETY: the trait method's contract is the CPU features unpack needs.
                let w = unsafe { self.unpack() };
                for (o, v) in out.iter_mut().zip(w) {
                    // SAFETY: `o` is exactly 64 writable bytes; storeu has no alignment
                    // requirement.
                    unsafe { _mm512_storeu_si512(o.as_mut_ptr().cast(), v) };
                }
            }

            unsafe fn kernel<const N: usize>(
                bodies: &[Self],
                scales: &[[f16; GROUP_ROWS]],
                cols: &[Col<'_>; N],
            ) -> [[f32; GROUP_ROWS]; N] {
                // SAFETY: the trait method's contract is the kernel's (the CPU features).
                unsafe { kernel::<$t, N>(bodies, scales, cols) }
            }
        }
    };
}

kernel_body!(BodyQ4_0);
kernel_body!(BodyQ5_0);
kernel_body!(BodyQ8_0);
