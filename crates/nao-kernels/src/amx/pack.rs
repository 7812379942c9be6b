//! Packing weights and activations into AMX tile layouts.
//!
//! A tile multiply `C[m][n] += Σ_k A[m][k] · B[k/4][4n + k%4]` takes `A` row-major (16 rows of
//! 64 bytes) and `B` in the "VNNI" layout (four consecutive `k` of one column side by side).
//! Weights are the `A` side, 16 rows at a time, so their bytes stay in row order; activations
//! are the `B` side, 16 tokens at a time, transposed once per matmul.
//!
//! K-quant weights carry a small scale per 32 (Q4_K) or 16 (Q6_K) quants, which an integer
//! tile product cannot apply per group. Each scale is split into digits small enough that
//! `quant × digit` still fits a byte, one tile "plane" per digit, so that
//! `Σ_g scale_g · dot_g = Σ_p base^p · (plane_p · acts)` exactly, and the whole super-block
//! of 256 quants accumulates in the tile without leaving it:
//! - Q4_K: `scale = lo + 16·hi` (lo < 16, hi < 4), planes `q·lo` and `q·hi` (≤ 225, u8).
//! - Q6_K: `scale = d0 + 8·d1 + 64·d2` with digits in `[-3, 4]`, planes `(q − 32)·d`
//!   (in `[-128, 124]`, i8); the `−32` offset is folded in, so no `bsums` term remains.

use super::Tile1K;
use crate::blocks::{BlockQ4K, BlockQ6K, BlockQ8K};
use crate::dot::scalar::{fp16_to_fp32, k4_scales_mins, q6k_unpack};
use std::ops::Range;

/// Rows (weights) and columns (tokens) per tile.
pub(crate) const TILE: usize = 16;

/// Activations of up to `n_tok` tokens in tile layout, 16 tokens per tile column.
#[derive(Clone, Debug, Default)]
pub(crate) struct PackedActs {
    pub(crate) n_tok: usize,
    pub(crate) n_sb: usize,
    /// `[tile][sb][j]`: the B tile of k-chunk `j` (64 quants) of super-block `sb`.
    pub(crate) tiles: Vec<Tile1K>,
    /// `[tile][sb]`: each token's Q8_K scale (0 for padding).
    pub(crate) d: Vec<[f32; TILE]>,
    /// `[tile][sb][p]`: each token's sums over 32-quant groups `2p` and `2p + 1`, as the low
    /// and high i16 of one i32 (for the Q4_K mins term).
    pub(crate) bsum_pairs: Vec<[i32; TILE]>,
}

impl PackedActs {
    /// Number of 16-token tiles: one for up to 16 tokens, otherwise rounded up to even, as
    /// the Q4_K kernel takes them in pairs (a padding tile is all zeros).
    pub(crate) fn n_tiles(&self) -> usize {
        if self.n_tok <= TILE {
            1
        } else {
            self.n_tok.div_ceil(2 * TILE) * 2
        }
    }

    /// Sizes the buffers for `n_tok` tokens of `n_sb` super-blocks.
    pub(crate) fn resize(&mut self, n_tok: usize, n_sb: usize) {
        self.n_tok = n_tok;
        self.n_sb = n_sb;
        let units = self.n_tiles() * n_sb;
        self.tiles.resize(units * 4, Tile1K::ZERO);
        self.d.resize(units, [0.0; TILE]);
        self.bsum_pairs.resize(units * 4, [0; TILE]);
    }

    /// Fills tile column `tile` from `rows` (the tokens `16·tile ..`, at most 16, each
    /// `n_sb` Q8_K blocks); missing tokens become zeros. The slices are this tile's parts
    /// of `tiles`, `d` and `bsum_pairs`.
    pub(crate) fn fill_tile(
        rows: &[&[BlockQ8K]],
        n_sb: usize,
        tiles: &mut [Tile1K],
        d: &mut [[f32; TILE]],
        bsum_pairs: &mut [[i32; TILE]],
    ) {
        for sb in 0..n_sb {
            let dv = &mut d[sb];
            *dv = [0.0; TILE];
            for (t, row) in rows.iter().enumerate().take(TILE) {
                if let Some(b) = row.get(sb) {
                    dv[t] = b.d;
                }
            }
            for p in 0..4 {
                let bp = &mut bsum_pairs[sb * 4 + p];
                *bp = [0; TILE];
                for (t, row) in rows.iter().enumerate().take(TILE) {
                    if let Some(b) = row.get(sb) {
                        let g0 = b.bsums[4 * p].wrapping_add(b.bsums[4 * p + 1]);
                        let g1 = b.bsums[4 * p + 2].wrapping_add(b.bsums[4 * p + 3]);
                        bp[t] = i32::from(g0 as u16) | (i32::from(g1) << 16);
                    }
                }
            }
            for j in 0..4 {
                let tile = &mut tiles[sb * 4 + j].0;
                *tile = [0; 1024];
                for (t, row) in rows.iter().enumerate().take(TILE) {
                    let Some(b) = row.get(sb) else { continue };
                    let src = &b.qs[64 * j..64 * j + 64];
                    for (kq, quad) in src.chunks_exact(4).enumerate() {
                        let at = kq * 64 + t * 4;
                        for (o, &q) in tile[at..at + 4].iter_mut().zip(quad) {
                            *o = q as u8;
                        }
                    }
                }
            }
        }
    }
}

/// 16 weight rows of one matrix in tile layout, for a range of super-blocks.
#[derive(Default)]
pub(crate) struct PackedWeights {
    /// `[sb][plane][j]`: the A tile of plane `plane`, k-chunk `j` of super-block `sb`.
    pub(crate) tiles: Vec<Tile1K>,
    /// `[sb]`: each row's super-block scale `d` (0 for padding rows).
    pub(crate) d: Vec<[f32; TILE]>,
    /// `[sb]`: each row's Q4_K `dmin`.
    pub(crate) dmin: Vec<[f32; TILE]>,
    /// `[sb][row]`: each row's Q4_K mins of groups `2p`, `2p + 1` as i16 pairs in an i32.
    pub(crate) min_pairs: Vec<[[i32; 4]; TILE]>,
}

impl PackedWeights {
    /// Sizes the buffers for `n_sb` super-blocks of `planes` planes. With fewer than 16 rows
    /// everything is zeroed first (padding rows must multiply to zero); a full block
    /// overwrites every byte, so the old contents stay until then.
    fn reset(&mut self, n_sb: usize, planes: usize, n_rows: usize) {
        if n_rows < TILE {
            self.tiles.clear();
            self.d.clear();
            self.dmin.clear();
            self.min_pairs.clear();
        }
        self.tiles.resize(n_sb * planes * 4, Tile1K::ZERO);
        self.d.resize(n_sb, [0.0; TILE]);
        self.dmin.resize(n_sb, [0.0; TILE]);
        self.min_pairs.resize(n_sb, [[0; 4]; TILE]);
    }

    /// Packs super-blocks `sbs` of up to 16 Q4_K rows into two planes.
    pub(crate) fn pack_q4k(&mut self, rows: &[&[BlockQ4K]], sbs: Range<usize>) {
        self.pack_q4k_with(rows, sbs, super::enabled());
    }

    /// [`PackedWeights::pack_q4k`] through the scalar twin only.
    #[cfg(test)]
    pub(crate) fn pack_q4k_scalar(&mut self, rows: &[&[BlockQ4K]], sbs: Range<usize>) {
        self.pack_q4k_with(rows, sbs, false);
    }

    fn pack_q4k_with(&mut self, rows: &[&[BlockQ4K]], sbs: Range<usize>, simd: bool) {
        let rows = &rows[..rows.len().min(TILE)];
        self.reset(sbs.len(), 2, rows.len());
        for (r, row) in rows.iter().enumerate() {
            let Some(blocks) = row.get(sbs.clone()) else {
                continue;
            };
            for (sb, xb) in blocks.iter().enumerate() {
                let (sc, mn) = k4_scales_mins(&xb.scales);
                self.d[sb][r] = fp16_to_fp32(xb.d);
                self.dmin[sb][r] = fp16_to_fp32(xb.dmin);
                for p in 0..4 {
                    self.min_pairs[sb][r][p] =
                        i32::from(mn[2 * p]) | (i32::from(mn[2 * p + 1]) << 16);
                }
                let planes = &mut self.tiles[sb * 8..sb * 8 + 8];
                if simd {
                    // SAFETY: `simd` is only true when `amx::enabled()`, which requires
                    // AVX-512 F/BW (and VBMI), the packer's whole contract.
                    unsafe { super::pack_simd::pack_q4k_row(xb, &sc, r, planes) };
                } else {
                    pack_q4k_row(xb, &sc, r, planes);
                }
            }
        }
    }

    /// Packs super-blocks `sbs` of up to 16 Q6_K rows into three planes.
    pub(crate) fn pack_q6k(&mut self, rows: &[&[BlockQ6K]], sbs: Range<usize>) {
        self.pack_q6k_with(rows, sbs, super::enabled());
    }

    /// [`PackedWeights::pack_q6k`] through the scalar twin only.
    #[cfg(test)]
    pub(crate) fn pack_q6k_scalar(&mut self, rows: &[&[BlockQ6K]], sbs: Range<usize>) {
        self.pack_q6k_with(rows, sbs, false);
    }

    fn pack_q6k_with(&mut self, rows: &[&[BlockQ6K]], sbs: Range<usize>, simd: bool) {
        let rows = &rows[..rows.len().min(TILE)];
        self.reset(sbs.len(), 3, rows.len());
        for (r, row) in rows.iter().enumerate() {
            let Some(blocks) = row.get(sbs.clone()) else {
                continue;
            };
            for (sb, xb) in blocks.iter().enumerate() {
                self.d[sb][r] = fp16_to_fp32(xb.d);
                let digits = xb.scales.map(|s| Q6K_DIGITS[usize::from(s as u8)]);
                let planes = &mut self.tiles[sb * 12..sb * 12 + 12];
                if simd {
                    // SAFETY: as in `pack_q4k_with`.
                    unsafe { super::pack_simd::pack_q6k_row(xb, &digits, r, planes) };
                } else {
                    pack_q6k_row(xb, &digits, r, planes);
                }
            }
        }
    }
}

/// Scalar twin of `pack_simd::pack_q4k_row`: row `r` of both planes of one super-block.
fn pack_q4k_row(xb: &BlockQ4K, sc: &[u8; 8], r: usize, planes: &mut [Tile1K]) {
    for j in 0..4 {
        let qs = &xb.qs[32 * j..32 * j + 32];
        let (s_a, s_b) = (sc[2 * j], sc[2 * j + 1]);
        let mut lo = [0u8; 64];
        let mut hi = [0u8; 64];
        for (i, &q) in qs.iter().enumerate() {
            let (qa, qb) = (q & 0xF, q >> 4);
            lo[i] = qa * (s_a & 0xF);
            hi[i] = qa * (s_a >> 4);
            lo[32 + i] = qb * (s_b & 0xF);
            hi[32 + i] = qb * (s_b >> 4);
        }
        planes[j].0[r * 64..r * 64 + 64].copy_from_slice(&lo);
        planes[4 + j].0[r * 64..r * 64 + 64].copy_from_slice(&hi);
    }
}

/// Scalar twin of `pack_simd::pack_q6k_row`: row `r` of the three planes.
fn pack_q6k_row(xb: &BlockQ6K, digits: &[[i8; 3]; 16], r: usize, planes: &mut [Tile1K]) {
    let w = q6k_unpack(xb);
    for j in 0..4 {
        for p in 0..3 {
            let dst = &mut planes[p * 4 + j].0[r * 64..r * 64 + 64];
            for (i, o) in dst.iter_mut().enumerate() {
                let k = 64 * j + i;
                *o = w[k].wrapping_mul(digits[k / 16][p]) as u8;
            }
        }
    }
}

/// [`q6k_digits`] of every scale, indexed by the scale's byte.
const Q6K_DIGITS: [[i8; 3]; 256] = {
    let mut t = [[0i8; 3]; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = q6k_digits(i as u8 as i8);
        i += 1;
    }
    t
};

/// `s = d0 + 8·d1 + 64·d2` with every digit in `[-3, 4]` (digits are a full residue system
/// mod 8, so the split exists and is unique for all of `[-128, 127]`).
pub(crate) const fn q6k_digits(s: i8) -> [i8; 3] {
    const fn digit(v: i32) -> i32 {
        (v + 3).rem_euclid(8) - 3
    }
    let s = s as i32;
    let d0 = digit(s);
    let s1 = (s - d0) / 8;
    let d1 = digit(s1);
    let d2 = (s1 - d1) / 8;
    [d0 as i8, d1 as i8, d2 as i8]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q6k_digits_recompose_every_scale_with_byte_sized_products() {
        for s in i8::MIN..=i8::MAX {
            let [d0, d1, d2] = q6k_digits(s);
            assert_eq!(
                i32::from(d0) + 8 * i32::from(d1) + 64 * i32::from(d2),
                i32::from(s)
            );
            for d in [d0, d1, d2] {
                assert!((-3..=4).contains(&d), "{s}: digit {d}");
                // (q − 32)·d for every 6-bit q must fit an i8.
                for w in -32i32..32 {
                    let p = w * i32::from(d);
                    assert!((-128..=127).contains(&p), "{s}: {w}·{d}");
                }
            }
        }
    }

    /// SplitMix64 bytes.
    fn bytes(seed: &mut u64, out: &mut [u8]) {
        for b in out {
            *seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = *seed;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            *b = (z ^ (z >> 31)) as u8;
        }
    }

    fn assert_same(a: &PackedWeights, b: &PackedWeights) {
        assert_eq!(a.tiles.len(), b.tiles.len());
        for (i, (x, y)) in a.tiles.iter().zip(&b.tiles).enumerate() {
            assert!(x.0 == y.0, "tile {i} differs");
        }
        assert_eq!(a.d, b.d);
        assert_eq!(a.dmin, b.dmin);
        assert_eq!(a.min_pairs, b.min_pairs);
    }

    #[test]
    fn simd_packers_equal_scalar_twins() {
        if !super::super::enabled() {
            eprintln!("AMX not enabled here: the SIMD packers are not used, nothing to compare");
            return;
        }
        let mut seed = 5u64;
        for (n_rows, n_sb) in [(16usize, 3usize), (5, 2), (1, 1)] {
            let mut q4 = vec![
                BlockQ4K {
                    d: half::f16::from_f32(0.01),
                    dmin: half::f16::from_f32(0.02),
                    scales: [0; 12],
                    qs: [0; 128]
                };
                n_rows * n_sb
            ];
            for b in &mut q4 {
                bytes(&mut seed, &mut b.scales);
                bytes(&mut seed, &mut b.qs);
            }
            let rows: Vec<&[BlockQ4K]> = q4.chunks_exact(n_sb).collect();
            let (mut a, mut b) = (PackedWeights::default(), PackedWeights::default());
            a.pack_q4k(&rows, 0..n_sb);
            b.pack_q4k_scalar(&rows, 0..n_sb);
            assert_same(&a, &b);

            let mut q6 = vec![
                BlockQ6K {
                    ql: [0; 128],
                    qh: [0; 64],
                    scales: [0; 16],
                    d: half::f16::from_f32(0.01)
                };
                n_rows * n_sb
            ];
            for b in &mut q6 {
                bytes(&mut seed, &mut b.ql);
                bytes(&mut seed, &mut b.qh);
                let mut sc = [0u8; 16];
                bytes(&mut seed, &mut sc);
                b.scales = sc.map(|x| x as i8);
            }
            let rows: Vec<&[BlockQ6K]> = q6.chunks_exact(n_sb).collect();
            let (mut a, mut b) = (PackedWeights::default(), PackedWeights::default());
            a.pack_q6k(&rows, 1..n_sb);
            b.pack_q6k_scalar(&rows, 1..n_sb);
            assert_same(&a, &b);
        }
    }

    #[test]
    fn q4k_planes_fit_a_byte() {
        for s in 0u8..64 {
            assert_eq!(u32::from(s & 0xF) + 16 * u32::from(s >> 4), u32::from(s));
            assert!(15 * u32::from(s & 0xF) <= 255 && 15 * u32::from(s >> 4) <= 255);
        }
    }
}
