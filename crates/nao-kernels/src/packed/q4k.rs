//! Q4_K in 16-row interleaved super-blocks, and the matmul over them.
//!
//! The per-row Q4_K kernel unpacks a row's nibbles and scales once for all the tokens of a
//! call, but each token then needs a horizontal sum per super-block; with a few tokens
//! (decode batches) the AMX path instead spends most of its time expanding weights into
//! tiles on every call. Here, as for the 32-quant formats ([`super`]), 16 rows are
//! interleaved so that one VNNI `dpbusd` of a 64-byte line with four broadcast activation
//! quants adds four products into each row's own lane.
//!
//! Layout of one [`BodyQ4K`] (rows `16g..16g+16`, one super-block, 2304 bytes — exactly
//! the file's 16 × 144 — in the order the kernel reads it):
//! - `d`, `dmin`: the 16 rows' f16 scales.
//! - `scales[k][r]`: row `r`'s packed 6-bit scale byte `k` (the file's 12 bytes, transposed
//!   so that one vector operation decodes a sub-block's scale for all 16 rows).
//! - `nib[8j + i]`, bytes `4r..4r+4`: row `r`'s `qs[32j + 4i..32j + 4i + 4]`. Low nibbles
//!   are quants `64j + 4i..+4` (sub-block `2j`), high nibbles quants `64j + 32 + 4i..+4`
//!   (sub-block `2j + 1`).
//!
//! Numerics, per row and super-block (`sumi = Σ_g sc_g · Σ q·y`, `summ = Σ_g m_g · bsum_g`,
//! both exact integers): `acc = fma(d_y · d, sumi, acc)`, `accm = fma(−d_y · dmin, summ,
//! accm)`, and the output is `acc + accm` — the same operations, in the same order, as the
//! per-row AVX-512 kernel and the AMX GEMM, so a token's result is bit-identical whichever
//! path and batch computed it. [`group_col_scalar_q4k`] is the twin.

use crate::blocks::{BlockQ4K, BlockQ8K, QK_K};
use crate::dequant::get_scale_min_k4;
use half::f16;

use super::GROUP_ROWS;

/// 16 interleaved Q4_K rows of one super-block (see the module doc).
#[repr(C, align(64))]
#[derive(Clone, Copy)]
pub struct BodyQ4K {
    pub(crate) d: [f16; GROUP_ROWS],
    pub(crate) dmin: [f16; GROUP_ROWS],
    pub(crate) scales: [[u8; GROUP_ROWS]; 12],
    pub(crate) nib: [[u8; 64]; 32],
}

const _: () = assert!(std::mem::size_of::<BodyQ4K>() == GROUP_ROWS * 144);

impl BodyQ4K {
    pub(crate) const EMPTY: BodyQ4K = BodyQ4K {
        d: [f16::ZERO; GROUP_ROWS],
        dmin: [f16::ZERO; GROUP_ROWS],
        scales: [[0; GROUP_ROWS]; 12],
        nib: [[0; 64]; 32],
    };

    /// Puts row `lane`'s super-block `src` in.
    pub(crate) fn put(&mut self, lane: usize, src: &BlockQ4K) {
        for (c, line) in self.nib.iter_mut().enumerate() {
            line[4 * lane..4 * lane + 4].copy_from_slice(&src.qs[4 * c..4 * c + 4]);
        }
        self.d[lane] = src.d;
        self.dmin[lane] = src.dmin;
        for (k, &s) in src.scales.iter().enumerate() {
            self.scales[k][lane] = s;
        }
    }

    /// Row `lane` as the file's block.
    pub(crate) fn row(&self, lane: usize) -> BlockQ4K {
        let mut b = BlockQ4K {
            d: self.d[lane],
            dmin: self.dmin[lane],
            scales: [0; 12],
            qs: [0; QK_K / 2],
        };
        for (c, line) in self.nib.iter().enumerate() {
            b.qs[4 * c..4 * c + 4].copy_from_slice(&line[4 * lane..4 * lane + 4]);
        }
        for (k, s) in b.scales.iter_mut().enumerate() {
            *s = self.scales[k][lane];
        }
        b
    }
}

/// One activation column: Q8_K blocks, and per block the sums of 32-quant groups `2p` and
/// `2p + 1` as the low and high i16 of one i32 (for the mins term).
#[derive(Clone, Copy)]
pub(crate) struct ColK<'a> {
    pub q: &'a [BlockQ8K],
    pub bsum_pairs: &'a [[i32; 4]],
}

/// The four group-sum pairs of one Q8_K block (see [`ColK`]).
pub(crate) fn bsum_pairs(b: &BlockQ8K) -> [i32; 4] {
    std::array::from_fn(|p| {
        let g0 = b.bsums[4 * p].wrapping_add(b.bsums[4 * p + 1]);
        let g1 = b.bsums[4 * p + 2].wrapping_add(b.bsums[4 * p + 3]);
        i32::from(g0 as u16) | (i32::from(g1) << 16)
    })
}

/// Scalar twin of the AVX-512 kernel: 16 rows (one group's super-blocks) against one column.
pub(crate) fn group_col_scalar_q4k(bodies: &[BodyQ4K], col: ColK<'_>) -> [f32; GROUP_ROWS] {
    let mut acc = [0.0f32; GROUP_ROWS];
    let mut accm = [0.0f32; GROUP_ROWS];
    for (body, yb) in bodies.iter().zip(col.q) {
        for r in 0..GROUP_ROWS {
            let row = body.row(r);
            let mut sumi = 0i32;
            let mut summ = 0i32;
            for g in 0..8 {
                let (sc, m) = get_scale_min_k4(g, &row.scales);
                let shift = 4 * (g % 2);
                let qs = &row.qs[(g / 2) * 32..(g / 2) * 32 + 32];
                let ys = &yb.qs[32 * g..32 * g + 32];
                let dot: i32 = qs
                    .iter()
                    .zip(ys)
                    .map(|(&q, &y)| i32::from((q >> shift) & 0xF) * i32::from(y))
                    .sum();
                sumi += i32::from(sc) * dot;
                let bsum = i32::from(yb.bsums[2 * g]) + i32::from(yb.bsums[2 * g + 1]);
                summ += i32::from(m) * bsum;
            }
            let d = yb.d * row.d.to_f32();
            acc[r] = d.mul_add(sumi as f32, acc[r]);
            let dm = -yb.d * row.dmin.to_f32();
            accm[r] = dm.mul_add(summ as f32, accm[r]);
        }
    }
    std::array::from_fn(|r| acc[r] + accm[r])
}
