//! Weight × activation products: `y[t][r] = dot(W[r], x[t])` for a weight matrix of any
//! supported type. Activations are quantized once per call to the 8-bit format the weight's
//! kernel expects (as ggml does), then rows are split across the thread pool; each weight
//! row is read once for all tokens of the batch.

use crate::dot::{act_type, vec_dot, vec_dot_multi, ActRow, QuantizedActs};
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

/// `y = x · Wᵀ`: `x` is `[n_tokens, cols]`, `y` is `[n_tokens, rows]`, both row-major.
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
    acts.quantize(w.dtype, x, n_tokens, w.cols)?;
    let acts = &*acts;
    let out = SharedMut::new(y);
    let rows = w.rows;
    let err = std::sync::Mutex::new(None);
    if n_tokens > 1 {
        let act_rows: Vec<ActRow<'_>> = (0..n_tokens).map(|t| acts.row(t)).collect();
        pool.for_ranges(rows, &|range| {
            let mut buf = vec![0.0f32; n_tokens];
            for r in range {
                let row = &w.data[r * rb..(r + 1) * rb];
                if let Err(e) = vec_dot_multi(w.dtype, w.cols, row, &act_rows, &mut buf) {
                    if let Ok(mut g) = err.lock() {
                        *g = Some(e);
                    }
                    return;
                }
                for (t, &v) in buf.iter().enumerate() {
                    out.write(t * rows + r, v);
                }
            }
        });
    } else {
        pool.for_ranges(rows, &|range| {
            for r in range {
                let row = &w.data[r * rb..(r + 1) * rb];
                for t in 0..n_tokens {
                    match vec_dot(w.dtype, w.cols, row, acts.row(t)) {
                        Ok(v) => out.write(t * rows + r, v),
                        Err(e) => {
                            if let Ok(mut g) = err.lock() {
                                *g = Some(e);
                            }
                            return;
                        }
                    }
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

fn check_len(got: usize, expected: usize) -> Result<(), KernelError> {
    if got == expected {
        Ok(())
    } else {
        Err(KernelError::SizeMismatch { expected, got })
    }
}
