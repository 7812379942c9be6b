//! The AMX path for interleaved blocks (prefill): per 32-quant block, one tile product of
//! 16 tokens' quants (A, signed) with the block's 16 interleaved weight rows (B, unsigned:
//! the eight 64-byte lines are exactly the tile's eight rows) gives every token's exact
//! block sums for the 16 rows; an AVX-512 epilogue then applies `−offset · Σy`, `d_y` and
//! `d_x` with the same operations, in the same order, as the VNNI kernel
//! ([`super::avx512`]) and its scalar twin. So a token's outputs are the same bits whichever
//! path computed them.
//!
//! Every function is an `unsafe fn` with `#[target_feature]`: the contract is that the CPU
//! has AVX-512 F/BW, AVX2, FMA and F16C (implied where [`crate::amx::enabled`] holds). Tile
//! loads check their bounds in [`TilesK32`]; vector loads read fixed-size arrays.

use super::{Col, GROUP_ROWS};
use crate::amx::{CTile, TilesK32};
use crate::blocks::BlockQ8_0;
use half::f16;
use std::arch::x86_64::*;

/// Tokens per pass: two 16-token tiles against each weight block.
pub(super) const PASS: usize = 32;

/// 16 tokens' quants of one block, as an A tile loads them.
pub(super) type ATile = [[i8; 32]; 16];

/// The quants of `acts` (`nb` blocks per token) as A tiles: tile `i · nb + b` holds block
/// `b` of tokens `16i..16i + 16`; only whole 16-token tiles.
pub(super) fn pack_acts(acts: &[BlockQ8_0], nb: usize, n_tokens: usize) -> Vec<ATile> {
    let n_tiles = n_tokens / 16;
    let mut out = vec![[[0i8; 32]; 16]; n_tiles * nb];
    for (i, tiles) in out.chunks_exact_mut(nb.max(1)).enumerate() {
        for (b, tile) in tiles.iter_mut().enumerate() {
            for (r, row) in tile.iter_mut().enumerate() {
                if let Some(blk) = acts.get((16 * i + r) * nb + b) {
                    *row = blk.qs;
                }
            }
        }
    }
    out
}

/// Result-tile buffers of one pass, reused across passes (two pairs, see [`group_pass`]).
pub(super) type Stage = [[CTile; 2]; 2];

/// A zeroed [`Stage`].
pub(super) fn stage() -> Box<Stage> {
    Box::new([[CTile::ZERO, CTile::ZERO], [CTile::ZERO, CTile::ZERO]])
}

/// Group `g`'s outputs (16 weight rows, blocks unpacked in `lines`, scales `scales`) for
/// tokens `t0..t0 + 32` (`cols`; their A tiles in `a`, see [`pack_acts`]) into `out`;
/// `buf` is scratch. `false` when the tiles do not cover those tokens.
#[allow(clippy::too_many_arguments)] // one call site; a struct would only rename them
#[target_feature(enable = "avx512f,avx512bw,avx2,fma,f16c")]
pub(super) unsafe fn group_pass(
    tiles: &TilesK32,
    lines: &[[[u8; 64]; 8]],
    scales: &[[f16; GROUP_ROWS]],
    a: &[ATile],
    nb: usize,
    t0: usize,
    cols: &[Col<'_>; PASS],
    buf: &mut Stage,
    out: &mut [[f32; GROUP_ROWS]; PASS],
) -> bool {
    let mut acc = [_mm512_setzero_ps(); PASS];
    // Software pipeline: at step `b` the products of block `b` go into one pair of result
    // tiles while the other pair (block `b − 1`) is stored, and the epilogue folds in block
    // `b − 2`, whose stores have long completed. Blocks are folded in order.
    let n = lines.len().min(scales.len()).min(nb);
    for step in 0..n + 2 {
        if step < n {
            let i = t0 / 16 * nb + step;
            let (Some(a0), Some(a1)) = (a.get(i), a.get(i + nb)) else {
                return false;
            };
            tiles.load_b4(&lines[step]);
            tiles.load_a(false, a0);
            tiles.load_a(true, a1);
            if step % 2 == 0 {
                tiles.zero0();
                tiles.zero1();
                tiles.dpbsud_0_2_4();
                tiles.dpbsud_1_3_4();
            } else {
                tiles.zero5();
                tiles.zero6();
                tiles.dpbsud_5_2_4();
                tiles.dpbsud_6_3_4();
            }
        }
        if (1..=n).contains(&step) {
            let [c0, c1] = &mut buf[(step - 1) % 2];
            if (step - 1) % 2 == 0 {
                tiles.store0(c0);
                tiles.store1(c1);
            } else {
                tiles.store5(c0);
                tiles.store6(c1);
            }
        }
        if step >= 2 {
            let b = step - 2;
            // SAFETY: `scales[b]` is exactly 16 f16 (32 readable bytes); loadu has no
            // alignment requirement.
            let dx = _mm512_cvtph_ps(unsafe { _mm256_loadu_si256(scales[b].as_ptr().cast()) });
            let rows = buf[b % 2].iter().flat_map(|t| t.0.chunks_exact(16));
            for ((a, col), row) in acc.iter_mut().zip(cols).zip(rows) {
                // SAFETY: `row` is exactly 16 readable i32 (a `chunks_exact(16)` piece of a
                // result tile); loadu has no alignment requirement.
                let sum = unsafe { _mm512_loadu_si512(row.as_ptr().cast()) };
                let s = _mm512_add_epi32(sum, _mm512_set1_epi32(col.corr[b]));
                let t = _mm512_mul_ps(_mm512_cvtepi32_ps(s), _mm512_set1_ps(col.dy[b]));
                *a = _mm512_fmadd_ps(t, dx, *a);
            }
        }
    }
    for (o, a) in out.iter_mut().zip(&acc) {
        // SAFETY: `o` is exactly 16 writable f32; storeu has no alignment requirement.
        unsafe { _mm512_storeu_ps(o.as_mut_ptr(), *a) };
    }
    true
}
