//! The AMX GEMM for Q4_K weights against Q8_K activations (prefill).
//!
//! Work unit: 16 weight rows × 32 tokens (16 for small batches). For each super-block the two
//! scale planes (see
//! [`super::pack`]) accumulate their 256-quant products in tiles; the tiles are stored and
//! an AVX-512 epilogue recombines the planes into each pair's exact integer super-block sum,
//! then folds it in with the same float operations, in the same order, as the AVX-512 dot
//! Q4_K kernel (`dot/avx512.rs`): `acc = fma(d_act · d_w, sumi, acc)` per super-block (and
//! the mins term likewise into a second accumulator, added at the end). So every output is
//! bit-identical to the single-token kernel, and a token's logits do not depend on how many
//! other tokens shared its batch.
//!
//! Rows are split across the pool in 16-row blocks; each thread packs a row block's weights
//! and runs it against every token tile. When all tokens' activation tiles would not fit in
//! L2, the super-blocks are taken in passes (the accumulators carried across passes, so
//! the order of operations per output does not change).

use super::pack::{PackedActs, PackedWeights, TILE};
use super::{CTile, Tiles};
use crate::blocks::{BlockQ4K, BlockQ8K};
use crate::dot::weights;
use crate::matmul::WeightView;
use crate::pool::{SharedMut, ThreadPool};
use crate::{DType, KernelError};
use std::arch::x86_64::*;
use std::cell::RefCell;

thread_local! {
    /// Each thread's packed weight rows, reused across calls.
    static PACKED_W: RefCell<PackedWeights> = RefCell::new(PackedWeights::default());
    /// Each thread's accumulators, reused across calls.
    static STATE: RefCell<Vec<[[f32; TILE]; TILE]>> = const { RefCell::new(Vec::new()) };
}

/// Bytes of activation tiles one pass over the super-blocks keeps in L2 (of 2 MiB per core
/// on AMX parts), leaving room for the weight panel and accumulators.
const ACT_PASS_BYTES: usize = 768 << 10;

/// Whether [`matmul`] is used for weights of type `w`.
///
/// Only Q4_K. A Q6_K tile kernel (three scale-digit planes) was built and removed: its
/// bit-for-bit decode twin needs one scalar fold per super-block in the AVX-512 Q6_K dot
/// kernel, which cost about 13% of Qwen2.5-1.5B decode (Q6_K is a third of its weight
/// bytes). Q6_K stays on the VNNI kernels until a cheaper twin exists.
pub(crate) fn supports(w: DType) -> bool {
    matches!(w, DType::Q4K)
}

/// Where a row block's Q4_K weights come from.
#[derive(Clone, Copy)]
pub(crate) enum Q4kSource<'a> {
    /// The file's layout: rows of `row_bytes`.
    Rows(&'a WeightView<'a>, usize),
    /// 16-row interleaved super-blocks ([`crate::packed`]) of a `[rows, cols]` matrix.
    Interleaved {
        bodies: &'a [crate::packed::BodyQ4K],
        rows: usize,
        cols: usize,
    },
}

impl Q4kSource<'_> {
    fn rows(&self) -> usize {
        match self {
            Q4kSource::Rows(w, _) => w.rows,
            Q4kSource::Interleaved { rows, .. } => *rows,
        }
    }

    fn cols(&self) -> usize {
        match self {
            Q4kSource::Rows(w, _) => w.cols,
            Q4kSource::Interleaved { cols, .. } => *cols,
        }
    }

    /// Packs super-blocks `sbs` of row block `rb` (rows `16·rb ..`).
    fn pack(
        &self,
        rb: usize,
        sbs: std::ops::Range<usize>,
        pw: &mut PackedWeights,
    ) -> Result<(), KernelError> {
        match *self {
            Q4kSource::Rows(w, row_bytes) => {
                let r0 = rb * TILE;
                let nr = TILE.min(w.rows - r0);
                let bytes = &w.data[r0 * row_bytes..(r0 + nr) * row_bytes];
                let rs = weight_rows::<BlockQ4K>(w.dtype, bytes, row_bytes)?;
                pw.pack_q4k(&rs, sbs);
            }
            Q4kSource::Interleaved { bodies, cols, .. } => {
                let n_sb = cols / crate::blocks::QK_K;
                let g = bodies
                    .get(rb * n_sb..(rb + 1) * n_sb)
                    .and_then(|g| g.get(sbs));
                let Some(g) = g else {
                    return Err(KernelError::SizeMismatch {
                        expected: (rb + 1) * n_sb,
                        got: bodies.len(),
                    });
                };
                pw.pack_q4k_interleaved(g);
            }
        }
        Ok(())
    }
}

/// `y[t][r] = dot(W[r], acts[t])` for all `n_tok` tokens (`y` is `[n_tok, rows]`).
///
/// `acts` holds the tokens' Q8_K rows back to back (`n_sb` blocks each); `packed` is a
/// reusable buffer for their tile layout. The caller checked the lengths of the weights and
/// `y` and that [`super::enabled`] is true.
pub(crate) fn matmul(
    w: Q4kSource<'_>,
    acts: &[BlockQ8K],
    n_tok: usize,
    packed: &mut PackedActs,
    y: &mut [f32],
    pool: &ThreadPool,
) -> Result<(), KernelError> {
    let (rows, cols) = (w.rows(), w.cols());
    let n_sb = cols / crate::blocks::QK_K;
    if acts.len() != n_tok * n_sb || y.len() != n_tok * rows {
        return Err(KernelError::SizeMismatch {
            expected: n_tok * n_sb,
            got: acts.len(),
        });
    }
    pack_acts(acts, n_tok, n_sb, packed, pool);
    let packed = &*packed;
    let out = SharedMut::new(y);
    let err = std::sync::Mutex::new(None);
    let fail = |e| {
        if let Ok(mut g) = err.lock() {
            *g = Some(e);
        }
    };
    let n_tiles = packed.n_tiles();
    // Super-blocks per pass: the activation tiles of one pass (all tokens) stay in L2 while
    // every row block of the thread streams past them.
    let kc = (ACT_PASS_BYTES / (n_tiles * 4 * 1024).max(1)).clamp(1, n_sb.max(1));
    let multi_pass = kc < n_sb;
    let step = if n_tiles >= 2 { 2 } else { 1 };
    pool.for_ranges(rows.div_ceil(TILE), &|range| {
        let Some(tiles) = Tiles::configure() else {
            return fail(KernelError::Unsupported(DType::Q4K));
        };
        let run = |pw: &mut PackedWeights, st: &mut Vec<[[f32; TILE]; TILE]>| {
            // Accumulators per (row block, token tile): [acc, accm]. One pass needs them
            // for one row block at a time; several passes carry them across passes.
            let blocks = if multi_pass { range.len() } else { 1 };
            st.clear();
            st.resize(blocks * n_tiles * 2, [[0.0; TILE]; TILE]);
            for c0 in (0..n_sb).step_by(kc) {
                let sbs = c0..(c0 + kc).min(n_sb);
                for (li, rb) in range.clone().enumerate() {
                    let r0 = rb * TILE;
                    let nr = TILE.min(rows - r0);
                    if let Err(e) = w.pack(rb, sbs.clone(), pw) {
                        return fail(e);
                    }
                    let base = if multi_pass { li * n_tiles * 2 } else { 0 };
                    for tile in (0..n_tiles).step_by(step) {
                        let state = &mut st[base + tile * 2..base + (tile + step) * 2];
                        q4k_tiles(&tiles, pw, packed, tile, sbs.clone(), state);
                        if sbs.end < n_sb {
                            continue;
                        }
                        for (i, pair) in state.chunks_exact(2).enumerate() {
                            let t0 = (tile + i) * TILE;
                            let nt = TILE.min(n_tok.saturating_sub(t0));
                            for t in 0..nt {
                                let at = (t0 + t) * rows + r0;
                                // SAFETY: outputs `at..at + nr` of token `t0 + t` belong to
                                // this row block, which only this thread handles; `y`
                                // outlives the pool job. AMX implies AVX-512 F.
                                unsafe { write_column(pair, t, out.slice_mut(at..at + nr)) };
                            }
                        }
                    }
                }
            }
        };
        PACKED_W.with(|pw| {
            STATE.with(|st| match (pw.try_borrow_mut(), st.try_borrow_mut()) {
                (Ok(mut pw), Ok(mut st)) => run(&mut pw, &mut st),
                _ => fail(KernelError::Unsupported(DType::Q4K)),
            })
        });
    });
    match err.into_inner() {
        Ok(Some(e)) => Err(e),
        _ => Ok(()),
    }
}

/// The rows of `bytes` (consecutive rows of `row_bytes` each) as block slices.
fn weight_rows<T: crate::blocks::Block>(
    w: DType,
    bytes: &[u8],
    row_bytes: usize,
) -> Result<Vec<&[T]>, KernelError> {
    bytes
        .chunks_exact(row_bytes)
        .map(|r| weights::<T>(w, r))
        .collect()
}

/// Transposes all tokens into tile layout, one 16-token column per pool range item.
fn pack_acts(
    acts: &[BlockQ8K],
    n_tok: usize,
    n_sb: usize,
    packed: &mut PackedActs,
    pool: &ThreadPool,
) {
    packed.resize(n_tok, n_sb);
    let n_tiles = packed.n_tiles();
    let tiles = SharedMut::new(&mut packed.tiles);
    let d = SharedMut::new(&mut packed.d);
    let bp = SharedMut::new(&mut packed.bsum_pairs);
    pool.for_ranges(n_tiles, &|range| {
        for tile in range {
            let t0 = tile * TILE;
            let rows: Vec<&[BlockQ8K]> = (t0..(t0 + TILE).min(n_tok))
                .map(|t| &acts[t * n_sb..(t + 1) * n_sb])
                .collect();
            let u = tile * n_sb;
            // SAFETY: each tile index is handed to exactly one thread by `for_ranges`, so
            // these per-tile ranges of the three buffers are disjoint across threads, and the
            // buffers outlive the pool job.
            let (tt, dd, bb) = unsafe {
                (
                    tiles.slice_mut(u * 4..(u + n_sb) * 4),
                    d.slice_mut(u..u + n_sb),
                    bp.slice_mut(u * 4..(u + n_sb) * 4),
                )
            };
            PackedActs::fill_tile(&rows, n_sb, tt, dd, bb);
        }
    });
}

/// Q4_K for 16 rows × the 32 tokens of tiles `tile` and `tile + 1` (only `tile` when
/// `state` holds one tile's pair), over super-blocks `sbs` (the packed weights hold exactly
/// those): `state` is `[acc, accm]` of each tile (`[row][token]`), zeroed first when `sbs`
/// starts the row. Two token tiles share each weight tile load and give the tile unit four
/// independent accumulators.
#[inline(never)]
fn q4k_tiles(
    tiles: &Tiles,
    pw: &PackedWeights,
    pa: &PackedActs,
    tile: usize,
    sbs: std::ops::Range<usize>,
    state: &mut [[[f32; TILE]; TILE]],
) {
    if sbs.start == 0 {
        state.iter_mut().for_each(|s| *s = [[0.0; TILE]; TILE]);
    }
    let two = state.len() >= 4;
    let mut c = [[CTile::ZERO; 2]; 2];
    for (k, sb) in sbs.enumerate() {
        let u0 = tile * pa.n_sb + sb;
        let u1 = (tile + 1) * pa.n_sb + sb;
        tiles.zero0();
        tiles.zero1();
        if two {
            tiles.zero2();
            tiles.zero5();
        }
        for j in 0..4 {
            tiles.load3(&pw.tiles[k * 8 + j]);
            tiles.load4(&pw.tiles[k * 8 + 4 + j]);
            tiles.load6(&pa.tiles[u0 * 4 + j]);
            tiles.dpbusd_0_3_6();
            tiles.dpbusd_1_4_6();
            if two {
                tiles.load7(&pa.tiles[u1 * 4 + j]);
                tiles.dpbusd_2_3_7();
                tiles.dpbusd_5_4_7();
            }
        }
        let [[c0, c1], [c2, c5]] = &mut c;
        tiles.store0(c0);
        tiles.store1(c1);
        if two {
            tiles.store2(c2);
            tiles.store5(c5);
        }
        for ((ct, u), st) in c.iter().zip([u0, u1]).zip(state.chunks_exact_mut(2)) {
            let (Ok(bp), [acc, accm]) = (
                <&[[i32; TILE]; 4]>::try_from(&pa.bsum_pairs[u * 4..u * 4 + 4]),
                st,
            ) else {
                continue; // unreachable: four entries, pairs of states
            };
            // SAFETY: `Tiles` exists only when AMX is enabled, which requires the AVX-512
            // (F/BW/VNNI) kernels, so the CPU has every feature the epilogue is compiled for.
            unsafe {
                epilogue_q4k(
                    ct,
                    &pw.d[k],
                    &pw.dmin[k],
                    &pw.min_pairs[k],
                    &pa.d[u],
                    bp,
                    acc,
                    accm,
                )
            };
        }
    }
}

/// Writes token column `t` of a tile's accumulators (`[row][token]`, the sum of `acc` and
/// `accm`) into `dst` (that token's outputs for the tile's rows, at most 16).
#[target_feature(enable = "avx512f")]
unsafe fn write_column(pair: &[[[f32; TILE]; TILE]], t: usize, dst: &mut [f32]) {
    let idx = _mm512_add_epi32(
        _mm512_mullo_epi32(
            _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
            _mm512_set1_epi32(TILE as i32),
        ),
        _mm512_set1_epi32((t % TILE) as i32),
    );
    let gather = |m: &[[f32; TILE]; TILE]| {
        // SAFETY: every index is r·16 + t < 256, inside the 256 floats of `m`.
        unsafe { _mm512_i32gather_ps::<4>(idx, m.as_ptr().cast()) }
    };
    let mut v = match pair.first() {
        Some(a) => gather(a),
        None => return,
    };
    if let Some(m) = pair.get(1) {
        v = _mm512_add_ps(v, gather(m));
    }
    let n = dst.len().min(TILE);
    let mask: __mmask16 = if n == TILE { 0xFFFF } else { (1u16 << n) - 1 };
    // SAFETY: the mask writes only the first `n ≤ dst.len()` floats.
    unsafe { _mm512_mask_storeu_ps(dst.as_mut_ptr(), mask, v) };
}

/// Row `r` of a 16 × 16 i32 tile.
#[inline(always)]
fn row_i32(c: &CTile, r: usize) -> &[i32; TILE] {
    // The fallback is unreachable: r < 16.
    c.0[r * TILE..r * TILE + TILE]
        .try_into()
        .unwrap_or(&[0; TILE])
}

#[inline(always)]
unsafe fn load_i(a: &[i32; TILE]) -> __m512i {
    // SAFETY: reads exactly the 64 bytes of `a` (unaligned load).
    unsafe { _mm512_loadu_si512(a.as_ptr().cast()) }
}

#[inline(always)]
unsafe fn load_f(a: &[f32; TILE]) -> __m512 {
    // SAFETY: reads exactly the 64 bytes of `a` (unaligned load).
    unsafe { _mm512_loadu_ps(a.as_ptr()) }
}

#[inline(always)]
unsafe fn store_f(a: &mut [f32; TILE], v: __m512) {
    // SAFETY: writes exactly the 64 bytes of `a` (unaligned store).
    unsafe { _mm512_storeu_ps(a.as_mut_ptr(), v) }
}

/// Folds one super-block's Q4_K planes (`c` = [lo, hi]) into the accumulators: per row `r`
/// and token `t`, `sumi = lo + 16·hi`, `summ = Σ_g min_g · bsum_g`, then
/// `acc = fma(d_t · d_r, sumi, acc)` and `accm = fma(−d_t · dmin_r, summ, accm)`.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn epilogue_q4k(
    c: &[CTile; 2],
    dw: &[f32; TILE],
    dmin: &[f32; TILE],
    min_pairs: &[[i32; 4]; TILE],
    da: &[f32; TILE],
    bsum_pairs: &[[i32; TILE]; 4],
    acc: &mut [[f32; TILE]; TILE],
    accm: &mut [[f32; TILE]; TILE],
) {
    let da = load_f(da);
    let nda = _mm512_castsi512_ps(_mm512_xor_si512(
        _mm512_castps_si512(da),
        _mm512_set1_epi32(i32::MIN),
    ));
    let b: [__m512i; 4] = std::array::from_fn(|p| load_i(&bsum_pairs[p]));
    for r in 0..TILE {
        let lo = load_i(row_i32(&c[0], r));
        let hi = load_i(row_i32(&c[1], r));
        let sumi = _mm512_add_epi32(lo, _mm512_slli_epi32::<4>(hi));
        let mp = &min_pairs[r];
        let mut summ = _mm512_setzero_si512();
        for (bv, &m) in b.iter().zip(mp) {
            summ = _mm512_dpwssd_epi32(summ, *bv, _mm512_set1_epi32(m));
        }
        let d = _mm512_mul_ps(da, _mm512_set1_ps(dw[r]));
        let a = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(sumi), load_f(&acc[r]));
        store_f(&mut acc[r], a);
        let dm = _mm512_mul_ps(nda, _mm512_set1_ps(dmin[r]));
        let m = _mm512_fmadd_ps(dm, _mm512_cvtepi32_ps(summ), load_f(&accm[r]));
        store_f(&mut accm[r], m);
    }
}
