//! Cache-blocked, register-tiled f32 GEMM for float weights (F32, F16, BF16) × batched f32
//! activations: `y[t][r] = Σ_k W[r][k] · x[t][k]`, [`crate::matmul`]'s path for those types.
//!
//! Layout (the BLIS scheme, Goto & van de Geijn 2008, <https://doi.org/10.1145/1356052.1356053>):
//! - The activations are packed once per call into tiles of `MR` tokens, `[K][MR]` each, so
//!   the micro-kernel broadcasts `MR` consecutive floats per step.
//! - Each thread claims a panel of `NR` weight rows at a time (the pool's shared counter
//!   balances the threads) and, per block of at most [`KC`] columns, converts it to f32 once
//!   into a `[kc][NR]` buffer (f16/bf16 → f32 is exact) that stays in L1 while every token
//!   tile runs over it.
//! - The micro-kernel keeps an `MR × NR` tile of outputs in registers, with the vector lanes
//!   along weight rows: AVX-512 12 tokens × 32 rows, AVX2+FMA 6 × 16, the scalar twin 4 × 16.
//!
//! Numerics: every output is one sequential FMA chain over `k = 0..K` starting from +0
//! (`acc = fma(W[r][k], x[t][k], acc)`); between column blocks the partial sum is stored to
//! `y` and reloaded, which is exact. So the result does not depend on the instruction set,
//! the tile a token or row lands in, or how many tokens share the call: all kernels here agree
//! bit for bit with [`reference`], and a token's output is the same whatever batch it is in
//! ([`crate::matmul`] sends single tokens here too, so decode and prefill agree). Error bound
//! of the sequential sum: `|ŷ − y| ≤ γ_K · Σ_k |W[r][k] · x[t][k]|`,
//! `γ_K = K·u / (1 − K·u)`, `u = 2⁻²⁴` (Higham, *Accuracy and Stability of Numerical
//! Algorithms*, §3.1).
//!
//! The packed activations live in a thread-local buffer that grows to the largest call and
//! is reused, as the f32 copy in [`crate::dot::QuantizedActs`] that this path skips was.

use crate::dot::{weights, SimdLevel};
use crate::matmul::{check_len, WeightView};
use crate::pool::{SharedMut, ThreadPool};
use crate::{DType, KernelError};
use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};
use std::cell::RefCell;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod scalar;

/// Most weight columns per block: a 32-row panel of 256 columns is 32 KiB, and the 12-token
/// activation tile beside it 12 KiB, together inside a 48 KiB L1.
pub const KC: usize = 256;

/// Whether [`gemm`] takes weights of type `dtype`.
pub fn supports(dtype: DType) -> bool {
    matches!(dtype, DType::F32 | DType::F16 | DType::BF16)
}

/// Whether [`crate::matmul`] sends float weights here: yes unless `NAO_GEMM_F32=0` is set
/// (for before/after comparisons; the dot kernels then take them as before).
pub fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("NAO_GEMM_F32").map_or(true, |v| v != "0"))
}

/// The kernel set to run, with its tile shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kernel {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Kernel {
    /// The best kernel set this machine (and `NAO_SIMD`) allows, capped at `level`.
    fn at(level: SimdLevel) -> Option<Kernel> {
        if !level.available() {
            return None;
        }
        Some(match level {
            SimdLevel::Scalar => Kernel::Scalar,
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx2 => Kernel::Avx2,
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx512 => Kernel::Avx512,
            #[cfg(not(target_arch = "x86_64"))]
            _ => Kernel::Scalar,
        })
    }

    fn best() -> Kernel {
        [SimdLevel::Avx512, SimdLevel::Avx2]
            .into_iter()
            .find_map(Kernel::at)
            .unwrap_or(Kernel::Scalar)
    }

    /// Tokens per register tile.
    fn mr(self) -> usize {
        match self {
            Kernel::Scalar => scalar::MR,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => avx2::MR,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => avx512::MR,
        }
    }

    /// Weight rows per register tile (and per panel).
    fn nr(self) -> usize {
        match self {
            Kernel::Scalar => scalar::NR,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => avx2::NR,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => avx512::NR,
        }
    }

    /// Packs the `[kc][nr]` f32 panel of rows `r0..` and columns `k0..k0 + kc` of `w`
    /// (see [`Rows::pack_panel`], the scalar twin).
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn pack(
        self,
        w: Rows<'_>,
        cols: usize,
        rows: usize,
        r0: usize,
        k0: usize,
        kc: usize,
        dst: &mut [f32],
    ) {
        #[cfg(target_arch = "x86_64")]
        if self == Kernel::Avx512 {
            // SAFETY: `Kernel::Avx512` is only built after `SimdLevel::Avx512.available()`,
            // which means AVX-512 F/BW/VL were detected at run time; the packer checks the
            // lengths it reads and writes.
            unsafe {
                match w {
                    Rows::F32(v) => avx512::pack_panel(v, cols, rows, r0, k0, kc, dst),
                    Rows::F16(v) => avx512::pack_panel(v, cols, rows, r0, k0, kc, dst),
                    Rows::BF16(v) => avx512::pack_panel(v, cols, rows, r0, k0, kc, dst),
                }
            }
            return;
        }
        w.pack_panel(cols, rows, r0, k0, kc, self.nr(), dst);
    }

    /// One register tile: see [`scalar::tile`] for the contract.
    #[inline]
    fn tile(self, panel: &[f32], xp: &[f32], kc: usize, c: &mut [&mut [f32]], first: bool) {
        match self {
            Kernel::Scalar => scalar::tile(panel, xp, kc, c, first),
            // SAFETY: `Kernel::Avx2` is only built by `Kernel::at` after
            // `SimdLevel::Avx2.available()`, which means AVX2 and FMA were detected at run time;
            // the kernel checks every slice length it reads or writes.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => unsafe { avx2::tile(panel, xp, kc, c, first) },
            // SAFETY: `Kernel::Avx512` is only built after `SimdLevel::Avx512.available()`,
            // which means AVX-512 F/BW/VL (and AVX2, FMA) were detected at run time; the
            // kernel checks every slice length it reads or writes.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => unsafe { avx512::tile(panel, xp, kc, c, first) },
        }
    }
}

/// The weight matrix as typed rows.
#[derive(Clone, Copy)]
enum Rows<'a> {
    F32(&'a [f32]),
    F16(&'a [f16]),
    BF16(&'a [bf16]),
}

impl<'a> Rows<'a> {
    fn new(w: &WeightView<'a>) -> Result<Rows<'a>, KernelError> {
        let r = match w.dtype {
            DType::F32 => Rows::F32(weights(w.dtype, w.data)?),
            DType::F16 => Rows::F16(weights(w.dtype, w.data)?),
            DType::BF16 => Rows::BF16(weights(w.dtype, w.data)?),
            other => return Err(KernelError::Unsupported(other)),
        };
        check_len(r.len(), w.rows * w.cols)?;
        Ok(r)
    }

    fn len(&self) -> usize {
        match self {
            Rows::F32(v) => v.len(),
            Rows::F16(v) => v.len(),
            Rows::BF16(v) => v.len(),
        }
    }

    /// Element `i` as f32 (exact for every type).
    #[inline]
    fn get(&self, i: usize) -> f32 {
        match self {
            Rows::F32(v) => v[i],
            Rows::F16(v) => crate::dot::scalar::fp16_to_fp32(v[i]),
            Rows::BF16(v) => v[i].to_f32(),
        }
    }

    /// Writes `dst[k * nr + j] = W[r0 + j][k0 + k]` for `k < kc <= KC`, `j < nr`, zero for
    /// rows past `rows` (the panel of a partial last row block).
    #[allow(clippy::too_many_arguments)]
    fn pack_panel(
        &self,
        cols: usize,
        rows: usize,
        r0: usize,
        k0: usize,
        kc: usize,
        nr: usize,
        dst: &mut [f32],
    ) {
        let dst = &mut dst[..kc * nr];
        let mut tmp = [0.0f32; KC];
        for j in 0..nr {
            let r = r0 + j;
            if r >= rows {
                dst.iter_mut().skip(j).step_by(nr).for_each(|d| *d = 0.0);
                continue;
            }
            let span = r * cols + k0..r * cols + k0 + kc;
            let src: &[f32] = match self {
                Rows::F32(v) => &v[span],
                Rows::F16(v) => {
                    v[span].convert_to_f32_slice(&mut tmp[..kc]);
                    &tmp[..kc]
                }
                Rows::BF16(v) => {
                    v[span].convert_to_f32_slice(&mut tmp[..kc]);
                    &tmp[..kc]
                }
            };
            for (d, &s) in dst.iter_mut().skip(j).step_by(nr).zip(src) {
                *d = s;
            }
        }
    }
}

/// Column blocks of `k` columns: as few as [`KC`] allows, of near-equal width.
fn col_blocks(k: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    let nb = k.div_ceil(KC).max(1);
    (0..nb).map(move |b| crate::pool::split_range(k, nb, b))
}

/// Packs `x` (`[n, k]`) into tiles of `mr` tokens, `[k][mr]` each, the rows past `n` zero;
/// the tiles split across the pool.
fn pack_acts(x: &[f32], n: usize, k: usize, mr: usize, out: &mut Vec<f32>, pool: &ThreadPool) {
    let n_tiles = n.div_ceil(mr);
    // Every element is written below, so stale values from the last call need no clearing.
    out.resize(n_tiles * k * mr, 0.0);
    let dst = SharedMut::new(&mut out[..n_tiles * k * mr]);
    pool.for_ranges(n_tiles, &|tiles| {
        // SAFETY: `for_ranges` hands each thread a disjoint range of tiles, so these ranges
        // of the buffer are disjoint; the buffer outlives the job.
        let d = unsafe { dst.slice_mut(tiles.start * k * mr..tiles.end * k * mr) };
        for (tile, d) in tiles.zip(d.chunks_exact_mut(k * mr)) {
            for i in 0..mr {
                let t = tile * mr + i;
                if t >= n {
                    d.iter_mut().skip(i).step_by(mr).for_each(|v| *v = 0.0);
                    continue;
                }
                let src = &x[t * k..(t + 1) * k];
                for (v, &s) in d.iter_mut().skip(i).step_by(mr).zip(src) {
                    *v = s;
                }
            }
        }
    });
}

thread_local! {
    /// The packed activations of the call this thread is running (reused across calls).
    static ACTS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// This thread's weight panel buffer.
    static PANEL: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// `y = x · Wᵀ` for `w` of type F32, F16 or BF16: `x` is `[n_tokens, cols]`, `y` is
/// `[n_tokens, rows]`, both row-major; on the best kernel set of this machine.
pub fn gemm(
    w: &WeightView<'_>,
    x: &[f32],
    n_tokens: usize,
    y: &mut [f32],
    pool: &ThreadPool,
) -> Result<(), KernelError> {
    run(Kernel::best(), w, x, n_tokens, y, pool)
}

/// [`gemm`] on the kernel set `level`; `Ok(false)` (and `y` untouched) when this machine
/// lacks it. For tests and benchmarks: every level gives the same bits.
pub fn gemm_at(
    level: SimdLevel,
    w: &WeightView<'_>,
    x: &[f32],
    n_tokens: usize,
    y: &mut [f32],
    pool: &ThreadPool,
) -> Result<bool, KernelError> {
    match Kernel::at(level) {
        Some(kern) => run(kern, w, x, n_tokens, y, pool).map(|()| true),
        None => Ok(false),
    }
}

/// The plain definition [`gemm`] agrees with bit for bit: one sequential FMA chain per output.
pub fn reference(
    w: &WeightView<'_>,
    x: &[f32],
    n_tokens: usize,
    y: &mut [f32],
) -> Result<(), KernelError> {
    let rows = Rows::new(w)?;
    let (m, k) = (w.rows, w.cols);
    check_len(x.len(), n_tokens * k)?;
    check_len(y.len(), n_tokens * m)?;
    for t in 0..n_tokens {
        let xt = &x[t * k..(t + 1) * k];
        for r in 0..m {
            y[t * m + r] = xt
                .iter()
                .enumerate()
                .fold(0.0f32, |acc, (i, &xv)| rows.get(r * k + i).mul_add(xv, acc));
        }
    }
    Ok(())
}

fn run(
    kern: Kernel,
    w: &WeightView<'_>,
    x: &[f32],
    n_tokens: usize,
    y: &mut [f32],
    pool: &ThreadPool,
) -> Result<(), KernelError> {
    let src = Rows::new(w)?;
    let (rows, cols) = (w.rows, w.cols);
    check_len(x.len(), n_tokens * cols)?;
    check_len(y.len(), n_tokens * rows)?;
    if n_tokens == 0 || rows == 0 {
        return Ok(());
    }
    if cols == 0 {
        y.fill(0.0);
        return Ok(());
    }
    let (mr, nr) = (kern.mr(), kern.nr());
    ACTS.with_borrow_mut(|xp| {
        pack_acts(x, n_tokens, cols, mr, xp, pool);
        let xp = &xp[..];
        let out = SharedMut::new(y);
        let n_panels = rows.div_ceil(nr);
        let n_tiles = n_tokens.div_ceil(mr);
        pool.for_chunks(n_panels, &|p| {
            let r0 = p * nr;
            let nv = nr.min(rows - r0);
            PANEL.with_borrow_mut(|panel| {
                panel.resize(KC * nr, 0.0);
                for (b, ks) in col_blocks(cols).enumerate() {
                    let kc = ks.len();
                    kern.pack(src, cols, rows, r0, ks.start, kc, panel);
                    for tile in 0..n_tiles {
                        let t0 = tile * mr;
                        let m = mr.min(n_tokens - t0);
                        let xt = &xp[tile * cols * mr + ks.start * mr..][..kc * mr];
                        let mut c: [&mut [f32]; MAX_MR] = Default::default();
                        for (i, ci) in c.iter_mut().take(m).enumerate() {
                            let o = (t0 + i) * rows + r0;
                            // SAFETY: this chunk alone owns rows `r0..r0 + nv` of every token
                            // (panels are disjoint and each runs once), so these ranges of `y`
                            // are touched by no other thread during the job; `y` outlives it.
                            *ci = unsafe { out.slice_mut(o..o + nv) };
                        }
                        kern.tile(&panel[..kc * nr], xt, kc, &mut c[..m], b == 0);
                    }
                }
            });
        });
    });
    Ok(())
}

/// The largest `MR` of any kernel set.
const MAX_MR: usize = 12;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tile_shapes_fit_the_output_array() {
        for k in [Kernel::Scalar, Kernel::best()] {
            assert!(k.mr() <= MAX_MR);
        }
    }

    #[test]
    fn column_blocks_cover_k() {
        for k in [1, 255, 256, 257, 384, 1536, 1537] {
            let b: Vec<_> = col_blocks(k).collect();
            assert_eq!(b.first().map(|r| r.start), Some(0));
            assert_eq!(b.last().map(|r| r.end), Some(k));
            assert!(b.windows(2).all(|p| p[0].end == p[1].start));
            assert!(b.iter().all(|r| r.len() <= KC && !r.is_empty()));
        }
    }
}
