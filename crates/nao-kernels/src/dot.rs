//! Quantized dot products: scalar twins and SIMD paths chosen by runtime detection.
//!
//! A weight row of type `w` is multiplied with an activation row quantized to the format
//! ggml pairs with it (`type_traits_cpu[w].vec_dot_type`): Q4_0/Q5_0/Q8_0 → Q8_0,
//! Q4_1/Q5_1 → Q8_1, K-quants → Q8_K, float weights → f32. [`QuantizedActs`] does that
//! quantization once per matmul; [`vec_dot`] is the per-row kernel.
//!
//! The instruction set is detected once (AVX2+FMA, plus F16C for f16 rows; AVX-512
//! F/BW/VL + VNNI on top) and cached; `NAO_SIMD=avx2` or `NAO_SIMD=scalar` in the environment
//! caps it (for comparisons). Every SIMD kernel in [`avx2`] and [`avx512`] has a twin in
//! [`scalar`] with the same algorithm.
//! Kernels with AVX2 paths: Q4_0, Q5_0, Q8_0, Q4_K, Q5_K, Q6_K, F32, F16, BF16.
//! Kernels with AVX-512 VNNI paths: Q4_0, Q5_0, Q8_0, Q4_K, Q6_K.
//! Batches of Q4_K rows go through the AMX tile GEMM where the CPU has it
//! ([`crate::amx`]), bit-identical to the AVX-512 kernels here.
//! Scalar only: Q4_1, Q5_1, Q2_K, Q3_K.

use crate::blocks::{Block, BlockQ8K, BlockQ8_0, BlockQ8_1, QK_K};
use crate::cast::cast_slice;
use crate::pool::{SharedMut, ThreadPool};
use crate::quantize::{quantize_row_q8_0, quantize_row_q8_1, quantize_row_q8_k};
use crate::{DType, KernelError};
use half::f16;
use std::sync::OnceLock;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
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
    /// The Q8_K rows in AMX tile layout (filled by the AMX GEMM, reused across calls).
    #[cfg(target_arch = "x86_64")]
    amx: crate::amx::pack::PackedActs,
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
            #[cfg(target_arch = "x86_64")]
            amx: Default::default(),
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
        let total = self.prepare(w, x, n_rows, k)?;
        match self.kind {
            ActType::F32 => {}
            ActType::Q8_0 => quantize_row_q8_0(x, &mut self.q8_0[..total]),
            ActType::Q8_1 => quantize_row_q8_1(x, &mut self.q8_1[..total]),
            ActType::Q8K => quantize_row_q8_k(x, &mut self.q8k[..total]),
        }
        Ok(())
    }

    /// [`QuantizedActs::quantize`] with the rows split across `pool` (the result is the
    /// same: each row is quantized on its own).
    pub fn quantize_par(
        &mut self,
        w: DType,
        x: &[f32],
        n_rows: usize,
        k: usize,
        pool: &ThreadPool,
    ) -> Result<(), KernelError> {
        if n_rows < 2 || pool.n_threads() < 2 {
            return self.quantize(w, x, n_rows, k);
        }
        let total = self.prepare(w, x, n_rows, k)?;
        let row_len = self.row_len;
        /// Runs `f(x rows, block rows)` over row ranges on the pool.
        fn split<T: Send>(
            pool: &ThreadPool,
            x: &[f32],
            k: usize,
            n_rows: usize,
            row_len: usize,
            dst: &mut [T],
            f: fn(&[f32], &mut [T]),
        ) {
            let out = SharedMut::new(dst);
            pool.for_ranges(n_rows, &|r| {
                // SAFETY: `for_ranges` hands each thread a disjoint row range, so the block
                // ranges are disjoint; `dst` outlives the pool job (for_ranges returns after
                // every range is done).
                let d = unsafe { out.slice_mut(r.start * row_len..r.end * row_len) };
                f(&x[r.start * k..r.end * k], d);
            });
        }
        match self.kind {
            ActType::F32 => {}
            ActType::Q8_0 => split(
                pool,
                x,
                k,
                n_rows,
                row_len,
                &mut self.q8_0[..total],
                quantize_row_q8_0,
            ),
            ActType::Q8_1 => split(
                pool,
                x,
                k,
                n_rows,
                row_len,
                &mut self.q8_1[..total],
                quantize_row_q8_1,
            ),
            ActType::Q8K => split(
                pool,
                x,
                k,
                n_rows,
                row_len,
                &mut self.q8k[..total],
                quantize_row_q8_k,
            ),
        }
        Ok(())
    }

    /// Validates the shapes, records them, and sizes the buffer for the new rows (F32 rows
    /// are copied here). Returns the number of blocks (or floats) to fill.
    fn prepare(
        &mut self,
        w: DType,
        x: &[f32],
        n_rows: usize,
        k: usize,
    ) -> Result<usize, KernelError> {
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
            ActType::Q8_0 => self.q8_0.resize(total.max(self.q8_0.len()), ZERO_Q8_0),
            ActType::Q8_1 => self.q8_1.resize(total.max(self.q8_1.len()), ZERO_Q8_1),
            ActType::Q8K => self.q8k.resize(total.max(self.q8k.len()), ZERO_Q8K),
        }
        self.kind = kind;
        self.n_rows = n_rows;
        self.row_len = row_len;
        Ok(total)
    }

    /// The Q8_K rows quantized last, back to back, and the AMX tile buffer.
    #[cfg(target_arch = "x86_64")]
    pub(crate) fn amx_parts(&mut self) -> (&[BlockQ8K], &mut crate::amx::pack::PackedActs) {
        let n = self.n_rows * self.row_len;
        let rows = if self.kind == ActType::Q8K {
            &self.q8k[..n]
        } else {
            &[]
        };
        (rows, &mut self.amx)
    }

    /// The Q8_0 rows quantized last, back to back (empty for other formats).
    pub(crate) fn q8_0_rows(&self) -> &[BlockQ8_0] {
        if self.kind == ActType::Q8_0 {
            &self.q8_0[..self.n_rows * self.row_len]
        } else {
            &[]
        }
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
    /// AVX2 + FMA + F16C + AVX-512 F/BW/VL + AVX-512 VNNI.
    Avx512,
}

fn detect() -> Isa {
    let cap = std::env::var("NAO_SIMD").unwrap_or_default();
    if cap == "scalar" {
        return Isa::Scalar;
    }
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            if std::is_x86_feature_detected!("f16c") {
                if cap != "avx2"
                    && std::is_x86_feature_detected!("avx512f")
                    && std::is_x86_feature_detected!("avx512bw")
                    && std::is_x86_feature_detected!("avx512vl")
                    && std::is_x86_feature_detected!("avx512vnni")
                {
                    return Isa::Avx512;
                }
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

/// Name of the kernel set [`vec_dot`] uses on this machine (`"avx512vnni"`, `"avx2"`,
/// `"avx2+f16c"`, `"scalar"`), with `"+amx"` when the K-quant prefill GEMM runs on AMX tiles.
pub fn simd_name() -> &'static str {
    match isa() {
        Isa::Scalar => "scalar",
        Isa::Avx2 => "avx2",
        Isa::Avx2F16c => "avx2+f16c",
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 if crate::amx::enabled() => "avx512vnni+amx",
        Isa::Avx512 => "avx512vnni",
    }
}

/// Whether AVX2 and FMA are available and not capped off by `NAO_SIMD=scalar`.
#[inline]
pub(crate) fn fma_enabled() -> bool {
    isa() != Isa::Scalar
}

/// Whether the AVX-512 kernels are in use (so [`avx512_quantize_block_q8_k`] may be called).
#[inline]
pub(crate) fn avx512_enabled() -> bool {
    isa() == Isa::Avx512
}

/// The AVX-512 Q8_0 / Q8_1 block quantizer: writes the quants, returns `(amax, sum)`.
///
/// # Safety
/// [`avx512_enabled`] must have returned true.
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) unsafe fn avx512_quantize_block_q8_0(x: &[f32; 32], q: &mut [i8; 32]) -> (f32, i32) {
    // SAFETY: the caller established AVX-512 F/BW/VL through `avx512_enabled`.
    unsafe { avx512::quantize_block_q8_0(x, q) }
}

/// The AVX-512 Q8_K block quantizer.
///
/// # Safety
/// [`avx512_enabled`] must have returned true.
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) unsafe fn avx512_quantize_block_q8_k(x: &[f32; QK_K], y: &mut BlockQ8K) {
    // SAFETY: the caller established AVX-512 F/BW/VL through `avx512_enabled`.
    unsafe { avx512::quantize_block_q8_k(x, y) }
}

/// A kernel set that tests and benchmarks can ask for by name ([`vec_dot_at`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimdLevel {
    Scalar,
    /// AVX2 + FMA (+ F16C where the CPU has it).
    Avx2,
    /// AVX-512 F/BW/VL + VNNI (on top of AVX2, FMA, F16C).
    Avx512,
}

impl SimdLevel {
    /// The detected kernel set for this level, or `None` when this machine (or `NAO_SIMD`)
    /// does not allow it.
    fn isa(self) -> Option<Isa> {
        let best = isa();
        match self {
            SimdLevel::Scalar => Some(Isa::Scalar),
            SimdLevel::Avx2 => match best {
                Isa::Scalar => None,
                Isa::Avx2 => Some(Isa::Avx2),
                Isa::Avx2F16c | Isa::Avx512 => Some(Isa::Avx2F16c),
            },
            SimdLevel::Avx512 => (best == Isa::Avx512).then_some(Isa::Avx512),
        }
    }

    /// Whether this machine runs this level (tests skip the levels it lacks).
    pub fn available(self) -> bool {
        self.isa().is_some()
    }
}

/// [`vec_dot`] on the kernel set `level`, or `Ok(None)` when this machine lacks it.
pub fn vec_dot_at(
    level: SimdLevel,
    w: DType,
    k: usize,
    w_row: &[u8],
    a: ActRow<'_>,
) -> Result<Option<f32>, KernelError> {
    let Some(isa) = level.isa() else {
        return Ok(None);
    };
    check(w, k, w_row, &a)?;
    dot_checked(w, w_row, a, isa).map(Some)
}

/// [`vec_dot_multi`] on the kernel set `level`; `Ok(false)` (and `out` untouched) when this
/// machine lacks it.
pub fn vec_dot_multi_at(
    level: SimdLevel,
    w: DType,
    k: usize,
    w_row: &[u8],
    acts: &[ActRow<'_>],
    out: &mut [f32],
) -> Result<bool, KernelError> {
    let Some(isa) = level.isa() else {
        return Ok(false);
    };
    multi_impl(w, k, w_row, acts, out, isa).map(|()| true)
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
#[inline]
fn check(w: DType, k: usize, w_row: &[u8], a: &ActRow<'_>) -> Result<(), KernelError> {
    check_lens(w, k, w_row.len(), a)
}

/// [`check`] for a weight row of `row_len` bytes.
fn check_lens(w: DType, k: usize, row_len: usize, a: &ActRow<'_>) -> Result<(), KernelError> {
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
    check_len(bytes, row_len)?;
    match a {
        ActRow::F32(y) => check_len(k, y.len()),
        ActRow::Q8_0(y) => check_len(k / 32, y.len()),
        ActRow::Q8_1(y) => check_len(k / 32, y.len()),
        ActRow::Q8K(y) => check_len(k / QK_K, y.len()),
    }
}

/// Dot products of many weight rows of one matrix with a fixed set of activation rows, the
/// lengths validated once ([`crate::matmul`]'s inner loops) instead of on every call.
pub(crate) struct RowDots<'s, 'a> {
    w: DType,
    row_bytes: usize,
    acts: &'s [ActRow<'a>],
    isa: Isa,
}

impl<'s, 'a> RowDots<'s, 'a> {
    /// Validates `acts` (all of `k` activations in `w`'s format) for rows of `k` elements of
    /// `w`.
    pub(crate) fn new(w: DType, k: usize, acts: &'s [ActRow<'a>]) -> Result<Self, KernelError> {
        let row_bytes =
            w.bytes_for(k as u64)
                .map(|b| b as usize)
                .ok_or(KernelError::BadElementCount {
                    dtype: w,
                    n: k,
                    block: w.block_size(),
                })?;
        for a in acts {
            check_lens(w, k, row_bytes, a)?;
        }
        Ok(RowDots {
            w,
            row_bytes,
            acts,
            isa: isa(),
        })
    }

    /// `vec_dot(w, k, row, acts[t])`, bit for bit.
    #[inline]
    pub(crate) fn dot(&self, row: &[u8], t: usize) -> Result<f32, KernelError> {
        check_len(self.row_bytes, row.len())?;
        let a = *self.acts.get(t).ok_or(KernelError::SizeMismatch {
            expected: self.acts.len(),
            got: t,
        })?;
        dot_checked(self.w, row, a, self.isa)
    }

    /// `out[i] = vec_dot(w, k, row, acts[cols.start + i])`, bit for bit (as [`vec_dot_multi`]).
    #[inline]
    pub(crate) fn multi(
        &self,
        row: &[u8],
        cols: std::ops::Range<usize>,
        out: &mut [f32],
    ) -> Result<(), KernelError> {
        check_len(self.row_bytes, row.len())?;
        let acts = self.acts.get(cols).ok_or(KernelError::SizeMismatch {
            expected: self.acts.len(),
            got: out.len(),
        })?;
        check_len(acts.len(), out.len())?;
        multi_checked(self.w, row, acts, out, self.isa)
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
    dot_checked(w, w_row, a, isa())
}

/// [`vec_dot`] on the kernel set `isa` (`isa()` or a lower level), with the lengths already
/// checked by [`check`].
#[inline]
fn dot_checked(w: DType, w_row: &[u8], a: ActRow<'_>, isa: Isa) -> Result<f32, KernelError> {
    #[cfg(target_arch = "x86_64")]
    {
        if isa == Isa::Avx512 {
            // SAFETY: `Isa::Avx512` is only ever detected (never constructed otherwise) after
            // `is_x86_feature_detected!` reported AVX-512 F/BW/VL/VNNI, AVX2, FMA and F16C,
            // which is dispatch's whole contract.
            if let Some(v) = unsafe { avx512::dispatch(w, w_row, a)? } {
                return Ok(v);
            }
        }
        if isa != Isa::Scalar {
            // SAFETY: every non-scalar level was detected with AVX2 and FMA (and F16C for
            // Avx2F16c and Avx512) via `is_x86_feature_detected!`, dispatch's whole contract.
            let f16c = matches!(isa, Isa::Avx2F16c | Isa::Avx512);
            if let Some(v) = unsafe { avx2::dispatch(f16c, w, w_row, a)? } {
                return Ok(v);
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = isa;
    dispatch_scalar(w, w_row, a)
}

/// Columns per multi-column kernel call in [`vec_dot_multi`].
pub const MULTI_COLS: usize = 4;

/// `out[t] = vec_dot(w, k, w_row, acts[t])` for every activation row, bit for bit.
///
/// For Q4_K and Q6_K weights (and Q8_0/Q4_0/Q5_0 with AVX-512) the rows are taken
/// [`MULTI_COLS`] (with AVX-512, `2 * MULTI_COLS`) at a time through kernels that unpack each
/// weight block once for all of them (the remainder goes through [`vec_dot`]); other types
/// call [`vec_dot`] per row. Errors as [`vec_dot`] does, and when
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
    for a in acts {
        check(w, k, w_row, a)?;
    }
    multi_checked(w, w_row, acts, out, isa)
}

/// [`vec_dot_multi`] with every length already checked (`acts.len() == out.len()`, and
/// [`check`] passed for each activation row).
fn multi_checked(
    w: DType,
    w_row: &[u8],
    acts: &[ActRow<'_>],
    out: &mut [f32],
    isa: Isa,
) -> Result<(), KernelError> {
    let single = |a: ActRow<'_>| dot_checked(w, w_row, a, isa);
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512 && matches!(w, DType::Q8_0 | DType::Q4_0 | DType::Q5_0) {
        let (out, acts) = multi_groups_32::<{ 2 * MULTI_COLS }>(w, w_row, acts, out)?;
        let (out, acts) = multi_groups_32::<MULTI_COLS>(w, w_row, acts, out)?;
        for (o, a) in out.iter_mut().zip(acts) {
            *o = single(*a)?;
        }
        return Ok(());
    }
    if !matches!(w, DType::Q4K | DType::Q6K) {
        for (o, a) in out.iter_mut().zip(acts) {
            *o = single(*a)?;
        }
        return Ok(());
    }
    // Wide groups first where registers allow (AVX-512 has 32 vector registers), then
    // groups of MULTI_COLS, then single rows: every path gives a column the same bits.
    let (out, acts) = if isa == Isa::Avx512 {
        multi_groups::<{ 2 * MULTI_COLS }>(w, w_row, acts, out, isa)?
    } else {
        (out, acts)
    };
    let (out, acts) = multi_groups::<MULTI_COLS>(w, w_row, acts, out, isa)?;
    for (o, a) in out.iter_mut().zip(acts) {
        *o = single(*a)?;
    }
    Ok(())
}

/// Runs the `N`-column kernel over the leading whole groups of `N` columns; returns the
/// columns left over.
fn multi_groups<'o, 'x, 'a, const N: usize>(
    w: DType,
    w_row: &[u8],
    acts: &'x [ActRow<'a>],
    out: &'o mut [f32],
    isa: Isa,
) -> Result<(&'o mut [f32], &'x [ActRow<'a>]), KernelError> {
    let mut oc = out.chunks_exact_mut(N);
    let mut ac = acts.chunks_exact(N);
    for (on, an) in (&mut oc).zip(&mut ac) {
        let mut ys: [&[BlockQ8K]; N] = [&[]; N];
        for (y, a) in ys.iter_mut().zip(an) {
            match a {
                ActRow::Q8K(q) => *y = q,
                _ => return Err(KernelError::Unsupported(w)), // unreachable: checked above
            }
        }
        let r = multi_n(w, w_row, ys, isa)?;
        on.copy_from_slice(&r);
    }
    Ok((oc.into_remainder(), ac.remainder()))
}

/// [`multi_groups`] for Q8_0/Q4_0/Q5_0 weights on the AVX-512 kernels (only called when
/// `isa()` is `Isa::Avx512`).
#[cfg(target_arch = "x86_64")]
fn multi_groups_32<'o, 'x, 'a, const N: usize>(
    w: DType,
    w_row: &[u8],
    acts: &'x [ActRow<'a>],
    out: &'o mut [f32],
) -> Result<(&'o mut [f32], &'x [ActRow<'a>]), KernelError> {
    let mut oc = out.chunks_exact_mut(N);
    let mut ac = acts.chunks_exact(N);
    for (on, an) in (&mut oc).zip(&mut ac) {
        let mut ys: [&[BlockQ8_0]; N] = [&[]; N];
        for (y, a) in ys.iter_mut().zip(an) {
            match a {
                ActRow::Q8_0(q) => *y = q,
                _ => return Err(KernelError::Unsupported(w)), // unreachable: checked above
            }
        }
        // SAFETY: the caller only comes here with `isa() == Isa::Avx512`, which is detected
        // after `is_x86_feature_detected!` reported AVX-512 F/BW/VL/VNNI, AVX2, FMA and F16C;
        // the kernels only read within their slices.
        let r = unsafe {
            match w {
                DType::Q8_0 => avx512::dot_q8_0_q8_0_multi(weights(w, w_row)?, ys),
                DType::Q4_0 => avx512::dot_q4_0_q8_0_multi(weights(w, w_row)?, ys),
                DType::Q5_0 => avx512::dot_q5_0_q8_0_multi(weights(w, w_row)?, ys),
                _ => return Err(KernelError::Unsupported(w)),
            }
        };
        on.copy_from_slice(&r);
    }
    Ok((oc.into_remainder(), ac.remainder()))
}

/// `N` columns of a Q4_K/Q6_K row; lengths are already checked.
fn multi_n<const N: usize>(
    w: DType,
    w_row: &[u8],
    ys: [&[BlockQ8K]; N],
    isa: Isa,
) -> Result<[f32; N], KernelError> {
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512 {
        // SAFETY: `Isa::Avx512` is only detected after `is_x86_feature_detected!` reported
        // AVX-512 F/BW/VL/VNNI, AVX2 and FMA; the kernels only read within their slices.
        match w {
            DType::Q4K => {
                return Ok(unsafe { avx512::dot_q4_k_q8_k_multi(weights(w, w_row)?, ys) })
            }
            DType::Q6K => {
                return Ok(unsafe { avx512::dot_q6_k_q8_k_multi(weights(w, w_row)?, ys) })
            }
            _ => {}
        }
    }
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
