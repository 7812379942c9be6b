//! Weight × activation products: `y[t][r] = dot(W[r], x[t])` for a weight matrix of any
//! supported type. Activations are quantized once per call to the 8-bit format the weight's
//! kernel expects (as ggml does), then rows are split across the thread pool; each weight
//! row is read once for all tokens of the batch. Batches of Q4_K tokens take the AMX
//! tile GEMM ([`crate::amx`]) where the CPU has it, with the same results bit for bit;
//! F32 weights take the tiled f32 GEMM ([`crate::gemm_f32`]).

use crate::blocks::{BlockQ8K, BlockQ8_0, BlockQ8_1, QK_K};
use crate::dot::{act_type, ActRow, ActType, QuantizedActs, RowDots, MULTI_COLS};
use crate::pool::{SharedMut, ThreadPool};
use crate::{DType, KernelError};

/// A row-major weight matrix `[rows, cols]` (GGUF dims `[cols, rows]`) in its stored format.
#[derive(Clone, Copy, Debug)]
pub struct WeightView<'a> {
    pub dtype: DType,
    pub data: &'a [u8],
    pub rows: usize,
    pub cols: usize,
}

impl WeightView<'_> {
    /// Bytes of one row, or an error when `cols` is not a whole number of blocks.
    pub fn row_bytes(&self) -> Result<usize, KernelError> {
        self.dtype
            .bytes_for(self.cols as u64)
            .map(|b| b as usize)
            .ok_or(KernelError::BadElementCount {
                dtype: self.dtype,
                n: self.cols,
                block: self.dtype.block_size(),
            })
    }
}

/// Bytes of activations a prefill column block should stay under, so that the block stays
/// in L2 while a thread's weight rows stream past it.
const COL_BLOCK_BYTES: usize = 256 << 10;

/// Activation columns per block for rows of `k` elements of `w`: a multiple of
/// [`MULTI_COLS`] (full multi-column kernel calls), at least one call's worth.
fn col_block(w: DType, k: usize, n_tokens: usize) -> usize {
    let row_bytes = match act_type(w) {
        Some(ActType::F32) | None => k * 4,
        Some(ActType::Q8_0) => k / 32 * std::mem::size_of::<BlockQ8_0>(),
        Some(ActType::Q8_1) => k / 32 * std::mem::size_of::<BlockQ8_1>(),
        Some(ActType::Q8K) => k / QK_K * std::mem::size_of::<BlockQ8K>(),
    };
    let cb = COL_BLOCK_BYTES / row_bytes.max(1) / MULTI_COLS * MULTI_COLS;
    cb.clamp(MULTI_COLS, 256).min(n_tokens.max(1))
}

/// Fewest tokens for which the AMX GEMM beats the multi-column dot kernels (it packs each
/// weight row block once per call, which only pays off over several tokens).
#[cfg(target_arch = "x86_64")]
const AMX_MIN_TOKENS: usize = 4;

/// How far ahead of the current weight row decode prefetches.
const PREFETCH_BYTES: usize = 8192;

/// Asks the CPU to start loading every cache line of `bytes` into the cache.
#[inline]
fn prefetch(bytes: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    for line in bytes.chunks(64) {
        // SAFETY: a prefetch is only a hint: it never faults and has no visible effect, and
        // the pointer comes from a live slice anyway. SSE (which `_mm_prefetch` needs) is part
        // of the x86-64 baseline.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                line.as_ptr().cast(),
            )
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = bytes;
}

/// `y = x · Wᵀ`: `x` is `[n_tokens, cols]`, `y` is `[n_tokens, rows]`, both row-major.
///
/// Every output is bit-identical to the same token's output computed alone (batch
/// invariance): the multi-column kernels match the single-row kernel exactly, and the column
/// blocking only changes which call computes an output, not how. F32 weights go through the
/// tiled GEMM of [`crate::gemm_f32`] for any number of tokens, whose outputs are one
/// sequential FMA chain each, independent of the tile and of the batch. F16/BF16 weights
/// (Hugging Face decoder directories) stay on the dot kernels: the GEMM converts their panels
/// on every call, which made one-token decode 1.8× (F16) and 2.6× (BF16) slower
/// (`tests/gemm_f32.rs`, `one_token_timing`).
pub fn matmul(
    w: &WeightView<'_>,
    x: &[f32],
    n_tokens: usize,
    y: &mut [f32],
    acts: &mut QuantizedActs,
    pool: &ThreadPool,
) -> Result<(), KernelError> {
    let rb = w.row_bytes()?;
    check_len(w.data.len(), rb * w.rows)?;
    check_len(x.len(), n_tokens * w.cols)?;
    check_len(y.len(), n_tokens * w.rows)?;
    if act_type(w.dtype).is_none() {
        return matmul_dequant(w, rb, x, n_tokens, y, pool);
    }
    if w.dtype == DType::F32 && crate::gemm_f32::enabled() {
        return crate::gemm_f32::gemm(w, x, n_tokens, y, pool);
    }
    acts.quantize_par(w.dtype, x, n_tokens, w.cols, pool)?;
    #[cfg(target_arch = "x86_64")]
    if n_tokens >= AMX_MIN_TOKENS && crate::amx::gemm::supports(w.dtype) && crate::amx::enabled() {
        let (q8k, packed) = acts.amx_parts();
        let src = crate::amx::gemm::Q4kSource::Rows(w, rb);
        return crate::amx::gemm::matmul(src, q8k, n_tokens, packed, y, pool);
    }
    let acts = &*acts;
    let act_rows: Vec<ActRow<'_>> = (0..n_tokens).map(|t| acts.row(t)).collect();
    let dots = RowDots::new(w.dtype, w.cols, &act_rows)?;
    let out = SharedMut::new(y);
    let rows = w.rows;
    let err = std::sync::Mutex::new(None);
    let fail = |e| {
        if let Ok(mut g) = err.lock() {
            *g = Some(e);
        }
    };
    if n_tokens > 1 {
        let cb = col_block(w.dtype, w.cols, n_tokens);
        pool.for_ranges(rows, &|range| {
            let mut buf = vec![0.0f32; cb];
            for c0 in (0..n_tokens).step_by(cb) {
                let c1 = (c0 + cb).min(n_tokens);
                let buf = &mut buf[..c1 - c0];
                for r in range.clone() {
                    let row = &w.data[r * rb..(r + 1) * rb];
                    if let Err(e) = dots.multi(row, c0..c1, buf) {
                        return fail(e);
                    }
                    for (t, &v) in (c0..c1).zip(buf.iter()) {
                        out.write(t * rows + r, v);
                    }
                }
            }
        });
    } else if n_tokens == 1 {
        // Rows ahead to prefetch: about 8 KiB past the row being read, so the next pages'
        // lines are requested before the hardware prefetcher (which stops at page
        // boundaries) would get there.
        let ahead = (PREFETCH_BYTES / rb.max(1)).max(1);
        pool.for_ranges(rows, &|range| {
            let end = range.end;
            for r in range {
                if r + ahead < end {
                    prefetch(&w.data[(r + ahead) * rb..(r + ahead + 1) * rb]);
                }
                let row = &w.data[r * rb..(r + 1) * rb];
                match dots.dot(row, 0) {
                    Ok(v) => out.write(r, v),
                    Err(e) => return fail(e),
                }
            }
        });
    }
    match err.into_inner() {
        Ok(Some(e)) => Err(e),
        _ => Ok(()),
    }
}

/// Fallback for types without a dot kernel: dequantize each row, then f32 dots.
fn matmul_dequant(
    w: &WeightView<'_>,
    rb: usize,
    x: &[f32],
    n_tokens: usize,
    y: &mut [f32],
    pool: &ThreadPool,
) -> Result<(), KernelError> {
    let out = SharedMut::new(y);
    let rows = w.rows;
    let cols = w.cols;
    let err = std::sync::Mutex::new(None);
    pool.for_ranges(rows, &|range| {
        let mut buf = vec![0.0f32; cols];
        for r in range {
            let row = &w.data[r * rb..(r + 1) * rb];
            if let Err(e) = crate::dequant::dequantize(w.dtype, row, &mut buf) {
                if let Ok(mut g) = err.lock() {
                    *g = Some(e);
                }
                return;
            }
            for t in 0..n_tokens {
                out.write(
                    t * rows + r,
                    crate::ops::dot_f32(&buf, &x[t * cols..(t + 1) * cols]),
                );
            }
        }
    });
    match err.into_inner() {
        Ok(Some(e)) => Err(e),
        _ => Ok(()),
    }
}

pub(crate) fn check_len(got: usize, expected: usize) -> Result<(), KernelError> {
    if got == expected {
        Ok(())
    } else {
        Err(KernelError::SizeMismatch { expected, got })
    }
}
