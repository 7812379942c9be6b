//! Quantized dot products: scalar twins and SIMD paths chosen by runtime detection.
//!
//! A weight row of type `w` is multiplied with an activation row quantized to the format
//! ggml pairs with it (`type_traits_cpu[w].vec_dot_type`): Q4_0/Q5_0/Q8_0 → Q8_0,
//! Q4_1/Q5_1 → Q8_1, K-quants → Q8_K, float weights → f32. [`QuantizedActs`] does that
//! quantization once per matmul; [`vec_dot`] is the per-row kernel.
//!
//! The instruction set is detected once (AVX2+FMA, plus F16C for f16 rows) and cached.
//! Every SIMD kernel in [`avx2`] has a twin in [`scalar`] with the same algorithm.
//! Kernels with AVX2 paths: Q4_0, Q5_0, Q8_0, Q4_K, Q5_K, Q6_K, F32, F16, BF16.
//! Scalar only: Q4_1, Q5_1, Q2_K, Q3_K.

use crate::blocks::{Block, BlockQ8K, BlockQ8_0, BlockQ8_1, QK_K};
use crate::cast::cast_slice;
use crate::quantize::{quantize_row_q8_0, quantize_row_q8_1, quantize_row_q8_k};
use crate::{DType, KernelError};
use half::f16;
use std::sync::OnceLock;

#[cfg(target_arch = "x86_64")]
mod avx2;
pub mod scalar;

/// Activation format a weight type's dot product consumes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActType {
    F32,
    Q8_0,
    Q8_1,
    Q8K,
}

impl ActType {
    /// Elements per activation block.
    pub fn block_size(self) -> usize {
        match self {
            ActType::F32 => 1,
            ActType::Q8_0 | ActType::Q8_1 => 32,
            ActType::Q8K => QK_K,
        }
    }
}

/// The activation format for weights of type `w`, or `None` when nao has no dot kernel for it.
pub fn act_type(w: DType) -> Option<ActType> {
    match w {
        DType::Q4_0 | DType::Q5_0 | DType::Q8_0 => Some(ActType::Q8_0),
        DType::Q4_1 | DType::Q5_1 => Some(ActType::Q8_1),
        DType::Q2K | DType::Q3K | DType::Q4K | DType::Q5K | DType::Q6K => Some(ActType::Q8K),
        DType::F32 | DType::F16 | DType::BF16 => Some(ActType::F32),
        _ => None,
    }
}

/// One activation row in the format [`act_type`] names.
#[derive(Clone, Copy, Debug)]
pub enum ActRow<'a> {
    F32(&'a [f32]),
    Q8_0(&'a [BlockQ8_0]),
    Q8_1(&'a [BlockQ8_1]),
    Q8K(&'a [BlockQ8K]),
}

impl ActRow<'_> {
    /// The format of this row.
    pub fn act_type(&self) -> ActType {
        match self {
            ActRow::F32(_) => ActType::F32,
            ActRow::Q8_0(_) => ActType::Q8_0,
            ActRow::Q8_1(_) => ActType::Q8_1,
            ActRow::Q8K(_) => ActType::Q8K,
        }
    }
}

const ZERO_Q8_0: BlockQ8_0 = BlockQ8_0 {
    d: f16::ZERO,
    qs: [0; 32],
};
const ZERO_Q8_1: BlockQ8_1 = BlockQ8_1 {
    d: f16::ZERO,
    s: f16::ZERO,
    qs: [0; 32],
};
const ZERO_Q8K: BlockQ8K = BlockQ8K {
    d: 0.0,
    qs: [0; QK_K],
    bsums: [0; QK_K / 16],
};

/// Quantized activation row(s) in the format `act_type` names. Owns its buffers, which are
/// reused (grown, never shrunk) across calls to [`QuantizedActs::quantize`].
#[derive(Debug, Clone)]
pub struct QuantizedActs {
    kind: ActType,
    n_rows: usize,
    /// Elements (F32) or blocks (Q8_*) per row.
    row_len: usize,
    f32s: Vec<f32>,
    q8_0: Vec<BlockQ8_0>,
    q8_1: Vec<BlockQ8_1>,
    q8k: Vec<BlockQ8K>,
}

impl Default for QuantizedActs {
    fn default() -> Self {
        Self::new()
    }
}

impl QuantizedActs {
    /// An empty buffer (zero rows).
    pub fn new() -> Self {
        QuantizedActs {
            kind: ActType::F32,
            n_rows: 0,
            row_len: 0,
            f32s: Vec::new(),
            q8_0: Vec::new(),
            q8_1: Vec::new(),
            q8k: Vec::new(),
        }
    }

    /// Quantizes `x` = [n_rows, k] row-major for weights of type `w`.
    ///
    /// Errors when `w` has no dot kernel, `k` is not a multiple of `w`'s block size, or
    /// `x.len() != n_rows * k`.
    pub fn quantize(
        &mut self,
        w: DType,
        x: &[f32],
        n_rows: usize,
        k: usize,
    ) -> Result<(), KernelError> {
        let kind = act_type(w).ok_or(KernelError::Unsupported(w))?;
        let block = w.block_size().max(kind.block_size());
        // (Remainder spelled out: `is_multiple_of` needs Rust 1.87, above the MSRV.)
        let extra = k % block;
        if extra != 0 {
            return Err(KernelError::BadElementCount {
                dtype: w,
                n: k,
                block,
            });
        }
        let expected = n_rows.checked_mul(k).ok_or(KernelError::SizeMismatch {
            expected: usize::MAX,
            got: x.len(),
        })?;
        if x.len() != expected {
            return Err(KernelError::SizeMismatch {
                expected,
                got: x.len(),
            });
        }
        let row_len = k / kind.block_size();
        let total = n_rows * row_len;
        match kind {
            ActType::F32 => {
                self.f32s.clear();
                self.f32s.extend_from_slice(x);
            }
            ActType::Q8_0 => {
                self.q8_0.resize(total, ZERO_Q8_0);
                quantize_row_q8_0(x, &mut self.q8_0[..total]);
            }
            ActType::Q8_1 => {
                self.q8_1.resize(total, ZERO_Q8_1);
                quantize_row_q8_1(x, &mut self.q8_1[..total]);
            }
            ActType::Q8K => {
                self.q8k.resize(total, ZERO_Q8K);
                quantize_row_q8_k(x, &mut self.q8k[..total]);
            }
        }
        self.kind = kind;
        self.n_rows = n_rows;
        self.row_len = row_len;
        Ok(())
    }

    /// Format of the rows quantized last.
    pub fn act_type(&self) -> ActType {
        self.kind
    }

    /// Number of rows quantized last.
    pub fn n_rows(&self) -> usize {
        self.n_rows
    }

    /// Row `i` of the last quantization.
    ///
    /// # Panics
    /// When `i >= self.n_rows()`.
    pub fn row(&self, i: usize) -> ActRow<'_> {
        assert!(i < self.n_rows, "row {i} of {}", self.n_rows);
        let r = i * self.row_len..(i + 1) * self.row_len;
        match self.kind {
            ActType::F32 => ActRow::F32(&self.f32s[r]),
            ActType::Q8_0 => ActRow::Q8_0(&self.q8_0[r]),
            ActType::Q8_1 => ActRow::Q8_1(&self.q8_1[r]),
            ActType::Q8K => ActRow::Q8K(&self.q8k[r]),
        }
    }
}

/// Instruction-set level picked once per process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Isa {
    Scalar,
    /// AVX2 + FMA.
    Avx2,
    /// AVX2 + FMA + F16C.
    Avx2F16c,
}

fn detect() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            if std::is_x86_feature_detected!("f16c") {
                return Isa::Avx2F16c;
            }
            return Isa::Avx2;
        }
    }
    Isa::Scalar
}

#[inline]
fn isa() -> Isa {
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(detect)
}

/// Name of the kernel set [`vec_dot`] uses on this machine (`"avx2"`, `"avx2+f16c"`, `"scalar"`).
pub fn simd_name() -> &'static str {
    match isa() {
        Isa::Scalar => "scalar",
        Isa::Avx2 => "avx2",
        Isa::Avx2F16c => "avx2+f16c",
    }
}

/// Views a weight row as blocks, mapping a misaligned start to an error.
#[inline]
pub(crate) fn weights<T: Block>(w: DType, bytes: &[u8]) -> Result<&[T], KernelError> {
    if bytes.is_empty() {
        // An empty `&[]` may carry a dangling pointer with alignment 1.
        return Ok(&[]);
    }
    cast_slice::<T>(bytes).ok_or(KernelError::Misaligned {
        dtype: w,
        align: std::mem::align_of::<T>(),
    })
}

#[inline]
fn check_len(expected: usize, got: usize) -> Result<(), KernelError> {
    if expected == got {
        Ok(())
    } else {
        Err(KernelError::SizeMismatch { expected, got })
    }
}

/// Checks that `w_row` holds `k` elements of `w` and `a` holds `k` activations of the matching
/// format.
fn check(w: DType, k: usize, w_row: &[u8], a: &ActRow<'_>) -> Result<(), KernelError> {
    let kind = act_type(w).ok_or(KernelError::Unsupported(w))?;
    if kind != a.act_type() {
        return Err(KernelError::Unsupported(w));
    }
    let bs = w.block_size();
    let block = bs.max(kind.block_size()); // equal for every supported pair
    let extra = k % block;
    if extra != 0 {
        return Err(KernelError::BadElementCount {
            dtype: w,
            n: k,
            block,
        });
    }
    let bytes = (k / bs).saturating_mul(w.block_bytes());
    check_len(bytes, w_row.len())?;
    match a {
        ActRow::F32(y) => check_len(k, y.len()),
        ActRow::Q8_0(y) => check_len(k / 32, y.len()),
        ActRow::Q8_1(y) => check_len(k / 32, y.len()),
        ActRow::Q8K(y) => check_len(k / QK_K, y.len()),
    }
}

/// Dot product of one weight row (raw bytes of `k` elements of type `w`) with one activation
/// row in the format `act_type(w)`.
///
/// Uses the SIMD path chosen once at first use, scalar otherwise. Returns an error (never
/// panics) when the type has no kernel, the activation format does not match, `k` is not a
/// whole number of blocks, a length disagrees with `k`, or the row is misaligned for its
/// block type.
pub fn vec_dot(w: DType, k: usize, w_row: &[u8], a: ActRow<'_>) -> Result<f32, KernelError> {
    check(w, k, w_row, &a)?;
    #[cfg(target_arch = "x86_64")]
    {
        let isa = isa();
        if isa != Isa::Scalar {
            // SAFETY: `isa()` reported AVX2 and FMA (and F16C for Avx2F16c) via
            // `is_x86_feature_detected!`, which is dispatch's whole contract.
            if let Some(v) = unsafe { avx2::dispatch(isa == Isa::Avx2F16c, w, w_row, a)? } {
                return Ok(v);
            }
        }
    }
    dispatch_scalar(w, w_row, a)
}

/// Columns per multi-column kernel call in [`vec_dot_multi`].
pub const MULTI_COLS: usize = 4;

/// `out[t] = vec_dot(w, k, w_row, acts[t])` for every activation row, bit for bit.
///
/// For Q4_K and Q6_K weights the rows are taken [`MULTI_COLS`] at a time through kernels that
/// unpack each weight super-block once for all of them (the remainder goes through
/// [`vec_dot`]); other types call [`vec_dot`] per row. Errors as [`vec_dot`] does, and when
/// `out.len() != acts.len()`.
pub fn vec_dot_multi(
    w: DType,
    k: usize,
    w_row: &[u8],
    acts: &[ActRow<'_>],
    out: &mut [f32],
) -> Result<(), KernelError> {
    multi_impl(w, k, w_row, acts, out, isa())
}

/// [`vec_dot_multi`] forced onto the scalar kernels; for tests and benchmarks.
pub fn vec_dot_multi_scalar(
    w: DType,
    k: usize,
    w_row: &[u8],
    acts: &[ActRow<'_>],
    out: &mut [f32],
) -> Result<(), KernelError> {
    multi_impl(w, k, w_row, acts, out, Isa::Scalar)
}

fn multi_impl(
    w: DType,
    k: usize,
    w_row: &[u8],
    acts: &[ActRow<'_>],
    out: &mut [f32],
    isa: Isa,
) -> Result<(), KernelError> {
    check_len(acts.len(), out.len())?;
    let single = |a: ActRow<'_>| {
        if isa == Isa::Scalar {
            vec_dot_scalar(w, k, w_row, a)
        } else {
            vec_dot(w, k, w_row, a)
        }
    };
    if !matches!(w, DType::Q4K | DType::Q6K) {
        for (o, a) in out.iter_mut().zip(acts) {
            *o = single(*a)?;
        }
        return Ok(());
    }
    for a in acts {
        check(w, k, w_row, a)?;
    }
    let mut oc = out.chunks_exact_mut(MULTI_COLS);
    let mut ac = acts.chunks_exact(MULTI_COLS);
    for (o4, a4) in (&mut oc).zip(&mut ac) {
        let mut ys: [&[BlockQ8K]; MULTI_COLS] = [&[]; MULTI_COLS];
        for (y, a) in ys.iter_mut().zip(a4) {
            match a {
                ActRow::Q8K(q) => *y = q,
                _ => return Err(KernelError::Unsupported(w)), // unreachable: checked above
            }
        }
        let r = multi4(w, w_row, ys, isa)?;
        o4.copy_from_slice(&r);
    }
    for (o, a) in oc.into_remainder().iter_mut().zip(ac.remainder()) {
        *o = single(*a)?;
    }
    Ok(())
}

/// Four columns of a Q4_K/Q6_K row; lengths are already checked.
fn multi4(
    w: DType,
    w_row: &[u8],
    ys: [&[BlockQ8K]; MULTI_COLS],
    isa: Isa,
) -> Result<[f32; MULTI_COLS], KernelError> {
    #[cfg(target_arch = "x86_64")]
    if isa != Isa::Scalar {
        // SAFETY: `isa` is not Scalar only when `isa()` reported AVX2 and FMA through
        // `is_x86_feature_detected!` (callers pass `isa()` or `Isa::Scalar`); the kernels
        // only read within their slice arguments.
        match w {
            DType::Q4K => return Ok(unsafe { avx2::dot_q4_k_q8_k_multi(weights(w, w_row)?, ys) }),
            DType::Q6K => return Ok(unsafe { avx2::dot_q6_k_q8_k_multi(weights(w, w_row)?, ys) }),
            _ => {}
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = isa;
    match w {
        DType::Q4K => Ok(scalar::vec_dot_q4_k_q8_k_multi(weights(w, w_row)?, ys)),
        DType::Q6K => Ok(scalar::vec_dot_q6_k_q8_k_multi(weights(w, w_row)?, ys)),
        _ => Err(KernelError::Unsupported(w)),
    }
}

/// [`vec_dot`] forced onto the scalar kernels (same checks); for tests and benchmarks.
pub fn vec_dot_scalar(w: DType, k: usize, w_row: &[u8], a: ActRow<'_>) -> Result<f32, KernelError> {
    check(w, k, w_row, &a)?;
    dispatch_scalar(w, w_row, a)
}

/// The scalar kernel for `(w, a)`; lengths are already checked.
fn dispatch_scalar(w: DType, w_row: &[u8], a: ActRow<'_>) -> Result<f32, KernelError> {
    use scalar as s;
    Ok(match (w, a) {
        (DType::F32, ActRow::F32(y)) => s::vec_dot_f32(weights(w, w_row)?, y),
        (DType::F16, ActRow::F32(y)) => s::vec_dot_f16_f32(weights(w, w_row)?, y),
        (DType::BF16, ActRow::F32(y)) => s::vec_dot_bf16_f32(weights(w, w_row)?, y),
        (DType::Q4_0, ActRow::Q8_0(y)) => s::vec_dot_q4_0_q8_0(weights(w, w_row)?, y),
        (DType::Q5_0, ActRow::Q8_0(y)) => s::vec_dot_q5_0_q8_0(weights(w, w_row)?, y),
        (DType::Q8_0, ActRow::Q8_0(y)) => s::vec_dot_q8_0_q8_0(weights(w, w_row)?, y),
        (DType::Q4_1, ActRow::Q8_1(y)) => s::vec_dot_q4_1_q8_1(weights(w, w_row)?, y),
        (DType::Q5_1, ActRow::Q8_1(y)) => s::vec_dot_q5_1_q8_1(weights(w, w_row)?, y),
        (DType::Q2K, ActRow::Q8K(y)) => s::vec_dot_q2_k_q8_k(weights(w, w_row)?, y),
        (DType::Q3K, ActRow::Q8K(y)) => s::vec_dot_q3_k_q8_k(weights(w, w_row)?, y),
        (DType::Q4K, ActRow::Q8K(y)) => s::vec_dot_q4_k_q8_k(weights(w, w_row)?, y),
        (DType::Q5K, ActRow::Q8K(y)) => s::vec_dot_q5_k_q8_k(weights(w, w_row)?, y),
        (DType::Q6K, ActRow::Q8K(y)) => s::vec_dot_q6_k_q8_k(weights(w, w_row)?, y),
        _ => return Err(KernelError::Unsupported(w)),
    })
}
