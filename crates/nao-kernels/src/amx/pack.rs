//! Packing weights and activations into AMX tile layouts.
//!
//! A tile multiply `C[m][n] += Σ_k A[m][k] · B[k/4][4n + k%4]` takes `A` row-major (16 rows of
//! 64 bytes) and `B` in the "VNNI" layout (four consecutive `k` of one column side by side).
//! Weights are the `A` side, 16 rows at a time, so their bytes stay in row order; activations
//! are the `B` side, 16 tokens at a time, transposed once per matmul.
//!
//! Q4_K weights carry a 6-bit scale per 32 quants, which an integer tile product cannot
//! apply per group. Each scale is split into digits small enough that `quant × digit` still
//! fits a byte, `scale = lo + 16·hi` (lo < 16, hi < 4), one tile "plane" per digit (`q·lo`
//! and `q·hi`, ≤ 225, u8), so that `Σ_g scale_g · dot_g = plane_lo · acts + 16 · plane_hi ·
//! acts` exactly, and the whole super-block of 256 quants accumulates in the tile without
//! leaving it.

use super::Tile1K;
use crate::blocks::{BlockQ4K, BlockQ8K};
use crate::dot::scalar::{fp16_to_fp32, k4_scales_mins};
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
                self.put_q4k(sb, r, xb, simd);
            }
        }
    }

    /// Packs 16 interleaved Q4_K rows (`bodies`: one group's super-blocks of one pass).
    pub(crate) fn pack_q4k_interleaved(&mut self, bodies: &[crate::packed::BodyQ4K]) {
        self.reset(bodies.len(), 2, TILE);
        for (sb, body) in bodies.iter().enumerate() {
            for r in 0..TILE {
                self.put_q4k(sb, r, &body.row(r), super::enabled());
            }
        }
    }

    /// Row `r` of super-block `sb` (of the packed range) from the file's block `xb`.
    fn put_q4k(&mut self, sb: usize, r: usize, xb: &BlockQ4K, simd: bool) {
        let (sc, mn) = k4_scales_mins(&xb.scales);
        self.d[sb][r] = fp16_to_fp32(xb.d);
        self.dmin[sb][r] = fp16_to_fp32(xb.dmin);
        for p in 0..4 {
            self.min_pairs[sb][r][p] = i32::from(mn[2 * p]) | (i32::from(mn[2 * p + 1]) << 16);
        }
        let planes = &mut self.tiles[sb * 8..sb * 8 + 8];
        if simd {
            // SAFETY: `simd` is only true when `amx::enabled()`, which requires AVX-512
            // F/BW, the packer's whole contract.
            unsafe { super::pack_simd::pack_q4k_row(xb, &sc, r, planes) };
        } else {
            pack_q4k_row(xb, &sc, r, planes);
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

#[cfg(test)]
mod tests {
    use super::*;

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
            for sbs in [0..n_sb, 1..n_sb] {
                let (mut a, mut b) = (PackedWeights::default(), PackedWeights::default());
                a.pack_q4k(&rows, sbs.clone());
                b.pack_q4k_scalar(&rows, sbs);
                assert_same(&a, &b);
            }
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
