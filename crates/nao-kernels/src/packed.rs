//! Row-interleaved weights for the 32-quant formats (Q4_0, Q5_0, Q8_0) and for Q4_K
//! ([`q4k`]), repacked once at load, and the matmul over them.
//!
//! In the file a 32-quant block is one row's 32 quants with one f16 scale. A dot product per
//! row then needs a horizontal sum per block before the block's scale can be applied, which
//! costs about as much as the multiplications. Here 16 rows are interleaved instead: for
//! each block, quants `4g..4g+4` of the 16 rows are one 64-byte line (row `r` at bytes
//! `4r..4r+4`), so a VNNI `dpbusd` of that line with the activation's 4 quants `4g..4g+4`
//! broadcast adds 4 products into each row's own 32-bit lane. Eight such instructions give
//! the 16 rows' exact block sums side by side, and the scales (16 rows' f16 scales, kept
//! next to the quants) apply lane-wise — no horizontal work at all.
//!
//! The stored quants are unsigned (`dpbusd` multiplies u8 × s8): Q4_0 and Q5_0 as in the
//! file (`q ∈ [0, 16)` or `[0, 32)`, value `q − 8` or `q − 16`), Q8_0 as `q + 128`. The
//! offset comes back as `−offset · Σy` per activation block, which seeds the accumulator.
//!
//! Numerics, per row and block `b` (`isum` the exact integer block sum):
//! `acc = fma(f32(isum_b) · d_y[b], d_x[b], acc)`, blocks in order. Every column computes
//! exactly this whatever the number of columns in the call, so a token's result does not
//! depend on the batch it came in; [`matmul_packed_scalar`] is the twin the AVX-512 kernel
//! is tested against bit for bit. The byte size equals the file's, so repacking a tensor
//! and dropping the file's pages leaves resident memory unchanged.

use crate::blocks::{BlockQ4_0, BlockQ5_0, BlockQ8_0};
use crate::dot::{weights, ActRow, QuantizedActs};
use crate::matmul::{check_len, WeightView};
use crate::pool::{SharedMut, ThreadPool};
use crate::{DType, KernelError};
use half::f16;

#[cfg(target_arch = "x86_64")]
mod amx;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod q4k;
#[cfg(target_arch = "x86_64")]
mod q4k_avx512;

pub use q4k::BodyQ4K;

/// Rows per interleaved group: one 512-bit register of 32-bit lanes.
pub const GROUP_ROWS: usize = 16;
/// Quants per block.
const QK: usize = 32;
/// Rows repacked between two reports to [`PackedWeight::new_with`]'s callback.
const RELEASE_ROWS: usize = 2048;
/// Columns (tokens) per kernel call: accumulators stay in registers.
const MAX_COLS: usize = 8;

/// One block of 16 interleaved Q4_0 rows: line `c` holds bytes `4c..4c+4` of each row's
/// `qs` (low nibbles: quants `4c..4c+4`, high nibbles: quants `16+4c..16+4c+4`).
#[repr(C, align(64))]
#[derive(Clone, Copy)]
pub struct BodyQ4_0 {
    nib: [[u8; 64]; 4],
}

/// One block of 16 interleaved Q5_0 rows: the Q4_0 nibble lines, plus per quant group `g`
/// (quants `4g..4g+4`) a 64-bit mask of the rows' fifth bits (bit `4r + j`).
#[repr(C, align(64))]
#[derive(Clone, Copy)]
pub struct BodyQ5_0 {
    nib: [[u8; 64]; 4],
    high: [u64; 8],
}

/// One block of 16 interleaved Q8_0 rows: line `g` holds quants `4g..4g+4` of each row,
/// plus 128.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
pub struct BodyQ8_0 {
    q: [[u8; 64]; 8],
}

/// The quant layout of one interleaved block, and its unpacking to eight lines of unsigned
/// quants (line `g`, byte `4r + j` = row `r`'s quant `4g + j`).
pub(crate) trait Body: Copy + Send + Sync + 'static {
    /// What a stored quant exceeds its signed value by.
    const OFFSET: i32;
    /// The eight lines of unsigned quants (the scalar definition of the layout).
    fn lines(&self) -> [[u8; 64]; 8];
}

impl Body for BodyQ4_0 {
    const OFFSET: i32 = 8;
    fn lines(&self) -> [[u8; 64]; 8] {
        let mut out = [[0u8; 64]; 8];
        for (c, line) in self.nib.iter().enumerate() {
            for (i, &b) in line.iter().enumerate() {
                out[c][i] = b & 0x0F;
                out[c + 4][i] = b >> 4;
            }
        }
        out
    }
}

impl Body for BodyQ5_0 {
    const OFFSET: i32 = 16;
    fn lines(&self) -> [[u8; 64]; 8] {
        let mut out = BodyQ4_0 { nib: self.nib }.lines();
        for (line, &mask) in out.iter_mut().zip(&self.high) {
            for (i, q) in line.iter_mut().enumerate() {
                if mask >> i & 1 == 1 {
                    *q |= 0x10;
                }
            }
        }
        out
    }
}

impl Body for BodyQ8_0 {
    const OFFSET: i32 = 128;
    fn lines(&self) -> [[u8; 64]; 8] {
        self.q
    }
}

/// The interleaved blocks of one weight matrix, by format.
enum Bodies {
    Q4_0(Vec<BodyQ4_0>),
    Q5_0(Vec<BodyQ5_0>),
    Q8_0(Vec<BodyQ8_0>),
    /// Per super-block; the scales live in the bodies (and `PackedWeight::scales` is empty).
    Q4K(Vec<BodyQ4K>),
}

/// A `[rows, cols]` Q4_0/Q5_0/Q8_0 matrix in 16-row interleaved blocks: block `b` of group
/// `g` (rows `16g..16g+16`) at index `g · nb + b`, its 16 scales at the same index.
pub struct PackedWeight {
    dtype: DType,
    rows: usize,
    cols: usize,
    bodies: Bodies,
    scales: Vec<[f16; GROUP_ROWS]>,
}

/// Whether this CPU runs the interleaved kernel (AVX-512 F/BW + VNNI + F16C); elsewhere the
/// file's layout and the per-row kernels are faster than the scalar twin here.
pub fn available() -> bool {
    crate::dot::avx512_enabled()
}

/// Whether [`PackedWeight::new`] takes matrices of type `dtype`.
pub fn supports(dtype: DType) -> bool {
    matches!(dtype, DType::Q4_0 | DType::Q5_0 | DType::Q8_0 | DType::Q4K)
}

impl PackedWeight {
    /// Repacks `w`, or `Ok(None)` when its type is not Q4_0/Q5_0/Q8_0 or its row count is
    /// not a multiple of [`GROUP_ROWS`]. Errors when the byte length does not match the
    /// shape.
    pub fn new(w: &WeightView<'_>) -> Result<Option<PackedWeight>, KernelError> {
        Self::new_with(w, |_| {})
    }

    /// [`PackedWeight::new`], calling `done(bytes)` with each range of `w.data` once it has
    /// been read (rows in order, a few thousand at a time), so that a caller can drop the
    /// source's pages as it goes and resident memory never holds both copies in full.
    pub fn new_with(
        w: &WeightView<'_>,
        mut done: impl FnMut(std::ops::Range<usize>),
    ) -> Result<Option<PackedWeight>, KernelError> {
        // (Remainder spelled out: `is_multiple_of` needs Rust 1.87, above the MSRV.)
        let tail = w.rows % GROUP_ROWS;
        if !supports(w.dtype) || tail != 0 {
            return Ok(None);
        }
        let rb = w.row_bytes()?;
        let expected = rb * w.rows;
        if w.data.len() != expected {
            return Err(KernelError::SizeMismatch {
                expected,
                got: w.data.len(),
            });
        }
        if w.dtype == DType::Q4K {
            let bodies = pack_q4k(w, rb, &mut done)?;
            return Ok(Some(PackedWeight {
                dtype: w.dtype,
                rows: w.rows,
                cols: w.cols,
                bodies: Bodies::Q4K(bodies),
                scales: Vec::new(),
            }));
        }
        let nb = w.cols / QK;
        let n = w.rows / GROUP_ROWS * nb;
        let mut scales = vec![[f16::ZERO; GROUP_ROWS]; n];
        let mut p = Packer {
            w,
            rb,
            nb,
            scales: &mut scales,
            done: &mut done,
        };
        let bodies = match w.dtype {
            DType::Q4_0 => Bodies::Q4_0(p.pack()?),
            DType::Q5_0 => Bodies::Q5_0(p.pack()?),
            _ => Bodies::Q8_0(p.pack()?),
        };
        Ok(Some(PackedWeight {
            dtype: w.dtype,
            rows: w.rows,
            cols: w.cols,
            bodies,
            scales,
        }))
    }

    /// Row `r` as f32 (`out.len() == cols`): the same values the file's dequantization
    /// gives (`d · (q − offset)`), for embedding lookups in a repacked table.
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) -> Result<(), KernelError> {
        check_len(out.len(), self.cols)?;
        if r >= self.rows {
            return Err(KernelError::SizeMismatch {
                expected: self.rows,
                got: r,
            });
        }
        match &self.bodies {
            Bodies::Q4_0(b) => self.row_of(b, r, out),
            Bodies::Q5_0(b) => self.row_of(b, r, out),
            Bodies::Q8_0(b) => self.row_of(b, r, out),
            Bodies::Q4K(b) => {
                let nb = self.cols / crate::blocks::QK_K;
                let (g, lane) = (r / GROUP_ROWS, r % GROUP_ROWS);
                let row: Vec<crate::blocks::BlockQ4K> = b[g * nb..(g + 1) * nb]
                    .iter()
                    .map(|x| x.row(lane))
                    .collect();
                crate::dequant::dequantize_row_q4_k(&row, out);
            }
        }
        Ok(())
    }

    fn row_of<B: Body>(&self, bodies: &[B], r: usize, out: &mut [f32]) {
        let nb = self.cols / QK;
        let (g, lane) = (r / GROUP_ROWS, r % GROUP_ROWS);
        for (b, o) in out.chunks_exact_mut(QK).enumerate() {
            let i = g * nb + b;
            let d = self.scales[i][lane].to_f32();
            let lines = bodies[i].lines();
            for (o4, line) in o.chunks_exact_mut(4).zip(&lines) {
                for (v, &q) in o4.iter_mut().zip(&line[4 * lane..4 * lane + 4]) {
                    *v = d * (i32::from(q) - B::OFFSET) as f32;
                }
            }
        }
    }

    /// The file's type of these weights.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Resident bytes (the same as the file's tensor).
    pub fn n_bytes(&self) -> usize {
        let body = match &self.bodies {
            Bodies::Q4_0(v) => std::mem::size_of_val(v.as_slice()),
            Bodies::Q5_0(v) => std::mem::size_of_val(v.as_slice()),
            Bodies::Q8_0(v) => std::mem::size_of_val(v.as_slice()),
            Bodies::Q4K(v) => std::mem::size_of_val(v.as_slice()),
        };
        body + std::mem::size_of_val(self.scales.as_slice())
    }
}

/// Row `lane`'s 16 nibble bytes into the four interleaved lines.
fn put_nibbles(nib: &mut [[u8; 64]; 4], lane: usize, qs: &[u8; 16]) {
    for (line, q4) in nib.iter_mut().zip(qs.chunks_exact(4)) {
        line[4 * lane..4 * lane + 4].copy_from_slice(q4);
    }
}

/// How one file block of a row goes into an interleaved block.
trait Pack: Body {
    /// The file's block type.
    type Src: crate::blocks::Block;
    /// An interleaved block with no rows put in yet.
    const EMPTY: Self;
    /// The block's scale.
    fn scale(src: &Self::Src) -> f16;
    /// Puts row `lane`'s block `src` in.
    fn put(&mut self, lane: usize, src: &Self::Src);
}

impl Pack for BodyQ4_0 {
    type Src = BlockQ4_0;
    const EMPTY: Self = BodyQ4_0 { nib: [[0; 64]; 4] };
    fn scale(src: &BlockQ4_0) -> f16 {
        src.d
    }
    fn put(&mut self, lane: usize, src: &BlockQ4_0) {
        put_nibbles(&mut self.nib, lane, &src.qs);
    }
}

impl Pack for BodyQ5_0 {
    type Src = BlockQ5_0;
    const EMPTY: Self = BodyQ5_0 {
        nib: [[0; 64]; 4],
        high: [0; 8],
    };
    fn scale(src: &BlockQ5_0) -> f16 {
        src.d
    }
    fn put(&mut self, lane: usize, src: &BlockQ5_0) {
        put_nibbles(&mut self.nib, lane, &src.qs);
        let qh = u32::from_le_bytes(src.qh);
        for (gq, mask) in self.high.iter_mut().enumerate() {
            let bits = u64::from(qh >> (4 * gq) & 0xF);
            *mask |= bits << (4 * lane);
        }
    }
}

impl Pack for BodyQ8_0 {
    type Src = BlockQ8_0;
    const EMPTY: Self = BodyQ8_0 { q: [[0; 64]; 8] };
    fn scale(src: &BlockQ8_0) -> f16 {
        src.d
    }
    fn put(&mut self, lane: usize, src: &BlockQ8_0) {
        for (line, q4) in self.q.iter_mut().zip(src.qs.chunks_exact(4)) {
            for (dst, &q) in line[4 * lane..4 * lane + 4].iter_mut().zip(q4) {
                *dst = (q as u8) ^ 0x80;
            }
        }
    }
}

/// Q4_K rows in order into interleaved super-blocks, reporting every [`RELEASE_ROWS`] rows
/// read (as [`Packer::pack`]).
fn pack_q4k(
    w: &WeightView<'_>,
    rb: usize,
    done: &mut impl FnMut(std::ops::Range<usize>),
) -> Result<Vec<BodyQ4K>, KernelError> {
    let nb = w.cols / crate::blocks::QK_K;
    let mut out = vec![BodyQ4K::EMPTY; w.rows / GROUP_ROWS * nb];
    let mut reported = 0;
    for r in 0..w.rows {
        let blocks: &[crate::blocks::BlockQ4K] = weights(w.dtype, &w.data[r * rb..(r + 1) * rb])?;
        let (g, lane) = (r / GROUP_ROWS, r % GROUP_ROWS);
        for (b, xb) in blocks.iter().enumerate() {
            out[g * nb + b].put(lane, xb);
        }
        let into_chunk = (r + 1) % RELEASE_ROWS;
        if into_chunk == 0 || r + 1 == w.rows {
            done(reported * rb..(r + 1) * rb);
            reported = r + 1;
        }
    }
    Ok(out)
}

/// One repacking: the source matrix, and where scales and progress go.
struct Packer<'a, 'w, F: FnMut(std::ops::Range<usize>)> {
    w: &'a WeightView<'w>,
    rb: usize,
    nb: usize,
    scales: &'a mut [[f16; GROUP_ROWS]],
    done: &'a mut F,
}

impl<F: FnMut(std::ops::Range<usize>)> Packer<'_, '_, F> {
    /// Rows in order into interleaved blocks, reporting every [`RELEASE_ROWS`] rows read.
    fn pack<B: Pack>(&mut self) -> Result<Vec<B>, KernelError> {
        let (w, rb, nb) = (self.w, self.rb, self.nb);
        let mut out = vec![B::EMPTY; self.scales.len()];
        let mut reported = 0;
        for r in 0..w.rows {
            let blocks: &[B::Src] = weights(w.dtype, &w.data[r * rb..(r + 1) * rb])?;
            let (g, lane) = (r / GROUP_ROWS, r % GROUP_ROWS);
            for (b, xb) in blocks.iter().enumerate() {
                let i = g * nb + b;
                self.scales[i][lane] = B::scale(xb);
                out[i].put(lane, xb);
            }
            // (Remainder spelled out: `is_multiple_of` needs Rust 1.87, above the MSRV.)
            let into_chunk = (r + 1) % RELEASE_ROWS;
            if into_chunk == 0 || r + 1 == w.rows {
                (self.done)(reported * rb..(r + 1) * rb);
                reported = r + 1;
            }
        }
        Ok(out)
    }
}

/// One activation column as the kernel reads it: Q8_0 blocks, their scales as f32, and
/// `−offset · Σq` per block.
#[derive(Clone, Copy)]
pub(crate) struct Col<'a> {
    pub q: &'a [BlockQ8_0],
    pub dy: &'a [f32],
    pub corr: &'a [i32],
}

/// Scalar twin of the AVX-512 kernel: 16 rows (one group's `bodies`/`scales`, `nb` blocks)
/// against one column.
pub(crate) fn group_col_scalar<B: Body>(
    bodies: &[B],
    scales: &[[f16; GROUP_ROWS]],
    col: Col<'_>,
) -> [f32; GROUP_ROWS] {
    let mut acc = [0.0f32; GROUP_ROWS];
    for ((((body, sc), yb), &dy), &corr) in bodies
        .iter()
        .zip(scales)
        .zip(col.q)
        .zip(col.dy)
        .zip(col.corr)
    {
        let lines = body.lines();
        for (r, (a, d)) in acc.iter_mut().zip(sc).enumerate() {
            let mut s = corr;
            for (line, y4) in lines.iter().zip(yb.qs.chunks_exact(4)) {
                for (&w, &y) in line[4 * r..4 * r + 4].iter().zip(y4) {
                    s += i32::from(w) * i32::from(y);
                }
            }
            let t = s as f32 * dy;
            *a = t.mul_add(d.to_f32(), *a);
        }
    }
    acc
}

/// `y = x · Wᵀ` for interleaved weights, as [`crate::matmul::matmul`] (`x`: `[n_tokens,
/// cols]`, `y`: `[n_tokens, rows]`). Every output is bit-identical to the same token's
/// output computed alone, and to [`matmul_packed_scalar`].
pub fn matmul_packed(
    w: &PackedWeight,
    x: &[f32],
    n_tokens: usize,
    y: &mut [f32],
    acts: &mut QuantizedActs,
    pool: &ThreadPool,
) -> Result<(), KernelError> {
    run(w, x, n_tokens, y, acts, pool, available())
}

/// [`matmul_packed`] on the scalar twin (any CPU); for tests.
pub fn matmul_packed_scalar(
    w: &PackedWeight,
    x: &[f32],
    n_tokens: usize,
    y: &mut [f32],
    acts: &mut QuantizedActs,
    pool: &ThreadPool,
) -> Result<(), KernelError> {
    run(w, x, n_tokens, y, acts, pool, false)
}

fn run(
    w: &PackedWeight,
    x: &[f32],
    n_tokens: usize,
    y: &mut [f32],
    acts: &mut QuantizedActs,
    pool: &ThreadPool,
    simd: bool,
) -> Result<(), KernelError> {
    check_len(x.len(), n_tokens * w.cols)?;
    check_len(y.len(), n_tokens * w.rows)?;
    acts.quantize_par(w.dtype, x, n_tokens, w.cols, pool)?;
    let offset = match &w.bodies {
        Bodies::Q4_0(_) => BodyQ4_0::OFFSET,
        Bodies::Q5_0(_) => BodyQ5_0::OFFSET,
        Bodies::Q8_0(_) => BodyQ8_0::OFFSET,
        Bodies::Q4K(b) => return run_q4k(w, b, n_tokens, y, acts, pool, simd),
    };
    let nb = w.cols / QK;
    let mut qrows = Vec::with_capacity(n_tokens);
    for t in 0..n_tokens {
        match acts.row(t) {
            ActRow::Q8_0(q) if q.len() == nb => qrows.push(q),
            _ => return Err(KernelError::Unsupported(w.dtype)),
        }
    }
    let mut dy = Vec::with_capacity(n_tokens * nb);
    let mut corr = Vec::with_capacity(n_tokens * nb);
    for q in &qrows {
        for b in q.iter() {
            dy.push(b.d.to_f32());
            corr.push(-offset * b.qs.iter().map(|&v| i32::from(v)).sum::<i32>());
        }
    }
    let cols: Vec<Col<'_>> = qrows
        .iter()
        .enumerate()
        .map(|(t, q)| Col {
            q,
            dy: &dy[t * nb..(t + 1) * nb],
            corr: &corr[t * nb..(t + 1) * nb],
        })
        .collect();
    #[cfg(target_arch = "x86_64")]
    let a_tiles = if simd && n_tokens >= amx::PASS && crate::amx::enabled() {
        amx::pack_acts(acts.q8_0_rows(), nb, n_tokens)
    } else {
        Vec::new()
    };
    let g = Gemm {
        scales: &w.scales,
        nb,
        rows: w.rows,
        cols: &cols,
        #[cfg(target_arch = "x86_64")]
        a_tiles: &a_tiles,
        simd,
    };
    match &w.bodies {
        Bodies::Q4_0(b) => g.run(b, y, pool),
        Bodies::Q5_0(b) => g.run(b, y, pool),
        Bodies::Q8_0(b) => g.run(b, y, pool),
        Bodies::Q4K(_) => {} // returned above
    }
    Ok(())
}

/// Fewest tokens for which the AMX GEMM beats the interleaved Q4_K kernel (the GEMM expands
/// every weight into tiles on each call).
const AMX_MIN_Q4K: usize = 32;

/// [`run`] for Q4_K (activations already quantized to Q8_K).
fn run_q4k(
    w: &PackedWeight,
    bodies: &[BodyQ4K],
    n_tokens: usize,
    y: &mut [f32],
    acts: &mut QuantizedActs,
    pool: &ThreadPool,
    simd: bool,
) -> Result<(), KernelError> {
    let nb = w.cols / crate::blocks::QK_K;
    #[cfg(target_arch = "x86_64")]
    if simd && n_tokens >= AMX_MIN_Q4K && crate::amx::enabled() {
        let (q8k, packed) = acts.amx_parts();
        let src = crate::amx::gemm::Q4kSource::Interleaved {
            bodies,
            rows: w.rows,
            cols: w.cols,
        };
        return crate::amx::gemm::matmul(src, q8k, n_tokens, packed, y, pool);
    }
    let mut qrows = Vec::with_capacity(n_tokens);
    for t in 0..n_tokens {
        match acts.row(t) {
            ActRow::Q8K(q) if q.len() == nb => qrows.push(q),
            _ => return Err(KernelError::Unsupported(w.dtype)),
        }
    }
    let pairs: Vec<[i32; 4]> = qrows
        .iter()
        .flat_map(|q| q.iter().map(q4k::bsum_pairs))
        .collect();
    let cols: Vec<q4k::ColK<'_>> = qrows
        .iter()
        .enumerate()
        .map(|(t, q)| q4k::ColK {
            q,
            bsum_pairs: &pairs[t * nb..(t + 1) * nb],
        })
        .collect();
    let rows = w.rows;
    let out = SharedMut::new(y);
    pool.for_ranges(rows / GROUP_ROWS, &|groups| {
        for g in groups {
            let gb = &bodies[g * nb..(g + 1) * nb];
            for (k, chunk) in cols.chunks(MAX_COLS).enumerate() {
                let res = group_cols(&SuperBlocksQ4K(gb), chunk, simd);
                for (i, r) in res.iter().take(chunk.len()).enumerate() {
                    let at = (k * MAX_COLS + i) * rows + g * GROUP_ROWS;
                    // SAFETY: each thread owns whole groups, so the 16 outputs of group `g`
                    // for this token are written by this thread alone; `y` outlives the
                    // pool job.
                    unsafe { out.slice_mut(at..at + GROUP_ROWS) }.copy_from_slice(r);
                }
            }
        }
    });
    Ok(())
}

/// Activation bytes a column block should stay under (kept in L2 while weights stream).
const COL_BLOCK_BYTES: usize = 256 << 10;

/// One matmul's shapes and activations.
struct Gemm<'a> {
    scales: &'a [[f16; GROUP_ROWS]],
    nb: usize,
    rows: usize,
    cols: &'a [Col<'a>],
    /// The activations as AMX A tiles (empty when the AMX path is not taken).
    #[cfg(target_arch = "x86_64")]
    a_tiles: &'a [amx::ATile],
    simd: bool,
}

impl Gemm<'_> {
    fn run<B: Body + KernelBody>(&self, bodies: &[B], y: &mut [f32], pool: &ThreadPool) {
        let (nb, rows, cols) = (self.nb, self.rows, self.cols);
        let n = cols.len();
        #[cfg(target_arch = "x86_64")]
        let amx = !self.a_tiles.is_empty();
        #[cfg(not(target_arch = "x86_64"))]
        let amx = false;
        let step = if amx { amx::PASS } else { MAX_COLS };
        let col_bytes = nb * (std::mem::size_of::<BlockQ8_0>() + 8);
        let cb = (COL_BLOCK_BYTES / col_bytes.max(1) / step * step)
            .clamp(step, 256)
            .min(n.max(1));
        let out = SharedMut::new(y);
        let write = |t: usize, g: usize, r: &[f32; GROUP_ROWS]| {
            let at = t * rows + g * GROUP_ROWS;
            // SAFETY: each thread owns whole groups, so the 16 outputs of group `g` for
            // token `t` are written by this thread alone; `y` outlives the pool job.
            unsafe { out.slice_mut(at..at + GROUP_ROWS) }.copy_from_slice(r);
        };
        pool.for_ranges(rows / GROUP_ROWS, &|groups| {
            #[cfg(target_arch = "x86_64")]
            let tiles = if amx {
                crate::amx::TilesK32::configure()
            } else {
                None
            };
            #[cfg(target_arch = "x86_64")]
            let mut lines = vec![[[0u8; 64]; 8]; if tiles.is_some() { nb } else { 0 }];
            #[cfg(target_arch = "x86_64")]
            let (mut stage, mut res) = (amx::stage(), [[0.0f32; GROUP_ROWS]; amx::PASS]);
            for c0 in (0..n).step_by(cb) {
                let c1 = (c0 + cb).min(n);
                for g in groups.clone() {
                    let gb = &bodies[g * nb..(g + 1) * nb];
                    let gs = &self.scales[g * nb..(g + 1) * nb];
                    #[allow(unused_mut)]
                    let mut t = c0;
                    #[cfg(target_arch = "x86_64")]
                    if let Some(tiles) = &tiles {
                        if c1 - t >= amx::PASS {
                            for (l, body) in lines.iter_mut().zip(gb) {
                                // SAFETY: tiles exist only where `amx::enabled()`, which
                                // implies AVX-512 F/BW (and `simd` was checked).
                                unsafe { body.unpack_lines(l) };
                            }
                        }
                        while c1 - t >= amx::PASS {
                            let Ok(pass) =
                                <&[Col<'_>; amx::PASS]>::try_from(&cols[t..t + amx::PASS])
                            else {
                                break;
                            };
                            // SAFETY: as above; the A tiles are looked up with bounds checks.
                            let done = unsafe {
                                amx::group_pass(
                                    tiles,
                                    &lines,
                                    gs,
                                    self.a_tiles,
                                    nb,
                                    t,
                                    pass,
                                    &mut stage,
                                    &mut res,
                                )
                            };
                            if !done {
                                break;
                            }
                            for (i, r) in res.iter().enumerate() {
                                write(t + i, g, r);
                            }
                            t += amx::PASS;
                        }
                    }
                    for (k, chunk) in cols[t..c1].chunks(MAX_COLS).enumerate() {
                        let kernel = Blocks32 {
                            bodies: gb,
                            scales: gs,
                        };
                        let res = group_cols(&kernel, chunk, self.simd);
                        for (i, r) in res.iter().take(chunk.len()).enumerate() {
                            write(t + k * MAX_COLS + i, g, r);
                        }
                    }
                }
            }
        });
    }
}

/// The per-format hook into the AVX-512 kernel (the scalar twin needs only [`Body`]).
pub(crate) trait KernelBody: Body {
    /// `N` columns through the AVX-512 kernel.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F/BW/VNNI, AVX2, FMA and F16C.
    #[cfg(target_arch = "x86_64")]
    unsafe fn kernel<const N: usize>(
        bodies: &[Self],
        scales: &[[f16; GROUP_ROWS]],
        cols: &[Col<'_>; N],
    ) -> [[f32; GROUP_ROWS]; N];

    /// The block's eight lines of unsigned quants ([`Body::lines`]), with AVX-512.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F and BW.
    #[cfg(target_arch = "x86_64")]
    unsafe fn unpack_lines(&self, out: &mut [[u8; 64]; 8]);
}

/// One 16-row group's kernels over its columns: the AVX-512 kernel for `N` columns and the
/// scalar twin for one.
trait GroupKernel {
    type Col: Copy;
    /// # Safety
    /// The CPU must have AVX-512 F/BW/VNNI, AVX2, FMA and F16C.
    #[cfg(target_arch = "x86_64")]
    unsafe fn simd<const N: usize>(&self, cols: &[Self::Col; N]) -> [[f32; GROUP_ROWS]; N];
    fn scalar(&self, col: Self::Col) -> [f32; GROUP_ROWS];
}

/// A group of 32-quant interleaved blocks and their scales.
struct Blocks32<'a, B> {
    bodies: &'a [B],
    scales: &'a [[f16; GROUP_ROWS]],
}

impl<'a, B: Body + KernelBody> GroupKernel for Blocks32<'a, B> {
    type Col = Col<'a>;
    #[cfg(target_arch = "x86_64")]
    unsafe fn simd<const N: usize>(&self, cols: &[Col<'a>; N]) -> [[f32; GROUP_ROWS]; N] {
        // SAFETY: the trait method's contract is the kernel's (the CPU features).
        unsafe { B::kernel::<N>(self.bodies, self.scales, cols) }
    }
    fn scalar(&self, col: Col<'a>) -> [f32; GROUP_ROWS] {
        group_col_scalar(self.bodies, self.scales, col)
    }
}

/// A group of interleaved Q4_K super-blocks.
struct SuperBlocksQ4K<'a>(&'a [BodyQ4K]);

impl<'a> GroupKernel for SuperBlocksQ4K<'a> {
    type Col = q4k::ColK<'a>;
    #[cfg(target_arch = "x86_64")]
    unsafe fn simd<const N: usize>(&self, cols: &[q4k::ColK<'a>; N]) -> [[f32; GROUP_ROWS]; N] {
        // SAFETY: the trait method's contract is the kernel's (the CPU features).
        unsafe { q4k_avx512::kernel_q4k::<N>(self.0, cols) }
    }
    fn scalar(&self, col: q4k::ColK<'a>) -> [f32; GROUP_ROWS] {
        q4k::group_col_scalar_q4k(self.0, col)
    }
}

/// Up to [`MAX_COLS`] columns of one group; entries past `cols.len()` are unused.
fn group_cols<K: GroupKernel>(k: &K, cols: &[K::Col], simd: bool) -> [[f32; GROUP_ROWS]; MAX_COLS] {
    let mut out = [[0.0f32; GROUP_ROWS]; MAX_COLS];
    #[cfg(target_arch = "x86_64")]
    if simd {
        macro_rules! call {
            ($n:literal) => {{
                if let Ok(c) = <&[K::Col; $n]>::try_from(cols) {
                    // SAFETY: `simd` is only true when `available()` reported the features
                    // the kernel needs.
                    let r = unsafe { k.simd::<$n>(c) };
                    out[..$n].copy_from_slice(&r);
                }
            }};
        }
        match cols.len() {
            1 => call!(1),
            2 => call!(2),
            3 => call!(3),
            4 => call!(4),
            5 => call!(5),
            6 => call!(6),
            7 => call!(7),
            8 => call!(8),
            _ => {}
        }
        return out;
    }
    let _ = simd;
    for (o, c) in out.iter_mut().zip(cols) {
        *o = k.scalar(*c);
    }
    out
}
