//! AVX-512 twins of the weight packers in [`super::pack`] (same bytes out, tested against
//! them): a row block is packed once per matmul call, and with short prompts that packing is
//! a real share of the GEMM's time.
//!
//! The `quant × digit` products come from table lookups instead of multiplies: Q4_K's 4-bit
//! quants index a 16-entry product table with `vpshufb` (one digit per 32 quants, one
//! 256-bit half of the register).
//!
//! Every function is an `unsafe fn` whose one contract is that the CPU has AVX-512 F/BW
//! (checked by `amx::enabled`); memory is only touched through fixed-size arrays.

use super::Tile1K;
use crate::blocks::BlockQ4K;
use std::arch::x86_64::*;

/// `MUL4[s][q] = s · q` for 4-bit `s` and `q` (at most 225).
const MUL4: [[u8; 16]; 16] = {
    let mut t = [[0u8; 16]; 16];
    let mut s = 0;
    while s < 16 {
        let mut q = 0;
        while q < 16 {
            t[s][q] = (s * q) as u8;
            q += 1;
        }
        s += 1;
    }
    t
};

#[inline(always)]
unsafe fn store_row(tile: &mut Tile1K, r: usize, v: __m512i) {
    let row: &mut [u8] = &mut tile.0[(r % 16) * 64..(r % 16) * 64 + 64];
    // SAFETY: `row` is exactly 64 writable bytes (unaligned store).
    unsafe { _mm512_storeu_si512(row.as_mut_ptr().cast(), v) }
}

/// Row `r` of the two Q4_K planes of one super-block: `planes` is `[lo j0..j3, hi j0..j3]`,
/// `sc` the block's eight 6-bit scales.
#[target_feature(enable = "avx512f,avx512bw")]
pub(super) unsafe fn pack_q4k_row(xb: &BlockQ4K, sc: &[u8; 8], r: usize, planes: &mut [Tile1K]) {
    let m4 = _mm512_set1_epi8(0xF);
    let (lo_tiles, hi_tiles) = planes.split_at_mut(4);
    for (j, (lo_t, hi_t)) in lo_tiles.iter_mut().zip(hi_tiles).enumerate() {
        let Ok(bytes) = <&[u8; 32]>::try_from(&xb.qs[32 * j..32 * j + 32]) else {
            continue; // unreachable: 32 bytes
        };
        // SAFETY: 32 readable bytes, unaligned load.
        let b = _mm512_broadcast_i64x4(unsafe { _mm256_loadu_si256(bytes.as_ptr().cast()) });
        // Low 256 bits: low nibbles (sub-block 2j); high 256 bits: high nibbles (2j + 1).
        let q = _mm512_and_si512(_mm512_mask_srli_epi16::<4>(b, 0xFFFF_0000, b), m4);
        let (sa, sb) = (usize::from(sc[2 * j]), usize::from(sc[2 * j + 1]));
        for (tile, (da, db)) in [(lo_t, (sa & 15, sb & 15)), (hi_t, (sa >> 4, sb >> 4))] {
            // SAFETY: 16-byte table rows, unaligned loads.
            let (ta, tb) = unsafe {
                (
                    _mm512_broadcast_i32x4(_mm_loadu_si128(MUL4[da % 16].as_ptr().cast())),
                    _mm512_broadcast_i32x4(_mm_loadu_si128(MUL4[db % 16].as_ptr().cast())),
                )
            };
            let v = _mm512_shuffle_epi8(ta, q);
            let v = _mm512_mask_shuffle_epi8(v, 0xFFFF_FFFF_0000_0000, tb, q);
            // SAFETY: features as this function's contract.
            unsafe { store_row(tile, r, v) };
        }
    }
}
