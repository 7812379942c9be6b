//! Scalar dequantization of every supported format to f32.
//!
//! Each `dequantize_row_*` follows ggml's reference `dequantize_row_*` in `ggml-quants.c`
//! exactly, including the order of float operations, so results are bit-identical to the
//! reference (and to gguf-py's numpy decoder, which `tests/dequant_reference.rs` checks).
//! Multi-byte packed fields (`qh` of Q5_0/Q5_1, Q3_K's scales) are read little-endian, as
//! GGUF stores them. [`dequantize`] is the entry point for raw tensor bytes.

use crate::blocks::{
    Block, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5K, BlockQ5_0, BlockQ5_1,
    BlockQ6K, BlockQ8K, BlockQ8_0, BlockQ8_1, K_SCALE_SIZE, QK_K,
};
use crate::cast::{as_bytes, cast_slice};
use crate::{DType, KernelError};
use half::{bf16, f16};
use std::mem::size_of;

/// Elements per block of the legacy formats (Q4_0 .. Q8_1).
const QK: usize = 32;

fn check_len(blocks: usize, per_block: usize, y: &[f32]) {
    assert_eq!(
        y.len(),
        blocks * per_block,
        "output length must be {per_block} x number of blocks"
    );
}

/// Q4_0: `x = d * (q - 8)`; low nibbles are elements 0..16, high nibbles 16..32.
pub fn dequantize_row_q4_0(x: &[BlockQ4_0], y: &mut [f32]) {
    check_len(x.len(), QK, y);
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK)) {
        let d = b.d.to_f32();
        let (lo, hi) = y.split_at_mut(QK / 2);
        for (j, &q) in b.qs.iter().enumerate() {
            lo[j] = ((q & 0x0F) as i32 - 8) as f32 * d;
            hi[j] = ((q >> 4) as i32 - 8) as f32 * d;
        }
    }
}

/// Q4_1: `x = d * q + m`.
pub fn dequantize_row_q4_1(x: &[BlockQ4_1], y: &mut [f32]) {
    check_len(x.len(), QK, y);
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK)) {
        let d = b.d.to_f32();
        let m = b.m.to_f32();
        let (lo, hi) = y.split_at_mut(QK / 2);
        for (j, &q) in b.qs.iter().enumerate() {
            lo[j] = (q & 0x0F) as f32 * d + m;
            hi[j] = (q >> 4) as f32 * d + m;
        }
    }
}

/// The 5th bits of a Q5 block: bit `j` of `qh` (little-endian) belongs to element `j`.
#[inline]
fn q5_high_bits(qh: &[u8; 4], j: usize) -> (u8, u8) {
    let qh = u32::from_le_bytes(*qh);
    let h0 = ((qh >> j) << 4) & 0x10;
    let h1 = (qh >> (j + 12)) & 0x10;
    (h0 as u8, h1 as u8)
}

/// Q5_0: `x = d * (q - 16)` with a 5-bit `q` whose high bit comes from `qh`.
pub fn dequantize_row_q5_0(x: &[BlockQ5_0], y: &mut [f32]) {
    check_len(x.len(), QK, y);
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK)) {
        let d = b.d.to_f32();
        let (lo, hi) = y.split_at_mut(QK / 2);
        for (j, &q) in b.qs.iter().enumerate() {
            let (h0, h1) = q5_high_bits(&b.qh, j);
            lo[j] = (((q & 0x0F) | h0) as i32 - 16) as f32 * d;
            hi[j] = (((q >> 4) | h1) as i32 - 16) as f32 * d;
        }
    }
}

/// Q5_1: `x = d * q + m` with a 5-bit `q`.
pub fn dequantize_row_q5_1(x: &[BlockQ5_1], y: &mut [f32]) {
    check_len(x.len(), QK, y);
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK)) {
        let d = b.d.to_f32();
        let m = b.m.to_f32();
        let (lo, hi) = y.split_at_mut(QK / 2);
        for (j, &q) in b.qs.iter().enumerate() {
            let (h0, h1) = q5_high_bits(&b.qh, j);
            lo[j] = ((q & 0x0F) | h0) as f32 * d + m;
            hi[j] = ((q >> 4) | h1) as f32 * d + m;
        }
    }
}

/// Q8_0: `x = d * q`.
pub fn dequantize_row_q8_0(x: &[BlockQ8_0], y: &mut [f32]) {
    check_len(x.len(), QK, y);
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK)) {
        let d = b.d.to_f32();
        for (o, &q) in y.iter_mut().zip(&b.qs) {
            *o = q as f32 * d;
        }
    }
}

/// Q8_1: `x = d * q` (the precomputed sum `s` is not needed). ggml has no reference
/// dequantizer for this activation-only format; this is the obvious one.
pub fn dequantize_row_q8_1(x: &[BlockQ8_1], y: &mut [f32]) {
    check_len(x.len(), QK, y);
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK)) {
        let d = b.d.to_f32();
        for (o, &q) in y.iter_mut().zip(&b.qs) {
            *o = q as f32 * d;
        }
    }
}

/// Q2_K: 16 groups of 16; each `scales` byte holds a 4-bit scale (low) and 4-bit min (high):
/// `x = (d * sc) * q - (dmin * m)`, with 2-bit `q`.
pub fn dequantize_row_q2_k(x: &[BlockQ2K], y: &mut [f32]) {
    check_len(x.len(), QK_K, y);
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d = b.d.to_f32();
        let min = b.dmin.to_f32();
        // Output group g (16 values) = half `g % 2` of the 32-byte chunk `g / 8`,
        // at bit shift `2 * ((g / 2) % 4)`.
        for (g, (out, &sc)) in y.chunks_exact_mut(16).zip(&b.scales).enumerate() {
            let q = &b.qs[(g / 8) * 32 + (g % 2) * 16..][..16];
            let shift = 2 * ((g / 2) % 4);
            let dl = d * (sc & 0x0F) as f32;
            let ml = min * (sc >> 4) as f32;
            for (o, &q) in out.iter_mut().zip(q) {
                *o = dl * ((q >> shift) & 3) as f32 - ml;
            }
        }
    }
}

/// Unpacks Q3_K's twelve bytes into sixteen 6-bit scales (still biased by 32): the low 4 bits
/// come from bytes 0..8 (low nibbles for 0..8, high nibbles for 8..16), the high 2 bits from
/// bytes 8..12 (ggml's `kmask1`/`kmask2` shuffle).
fn q3_k_scales(s: &[u8; 12]) -> [u8; 16] {
    const KMASK1: u32 = 0x0303_0303;
    const KMASK2: u32 = 0x0f0f_0f0f;
    let word = |i: usize| u32::from_le_bytes([s[4 * i], s[4 * i + 1], s[4 * i + 2], s[4 * i + 3]]);
    let (a0, a1, tmp) = (word(0), word(1), word(2));
    let aux = [
        (a0 & KMASK2) | ((tmp & KMASK1) << 4),
        (a1 & KMASK2) | (((tmp >> 2) & KMASK1) << 4),
        ((a0 >> 4) & KMASK2) | (((tmp >> 4) & KMASK1) << 4),
        ((a1 >> 4) & KMASK2) | (((tmp >> 6) & KMASK1) << 4),
    ];
    let mut out = [0u8; 16];
    for (o, a) in out.chunks_exact_mut(4).zip(aux) {
        o.copy_from_slice(&a.to_le_bytes());
    }
    out
}

/// Q3_K: 16 groups of 16; `x = (d * (sc - 32)) * (q - 4 * !h)` where `q` is 2 bits from `qs`
/// and `h` is the element's bit in `hmask`.
pub fn dequantize_row_q3_k(x: &[BlockQ3K], y: &mut [f32]) {
    check_len(x.len(), QK_K, y);
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d_all = b.d.to_f32();
        let scales = q3_k_scales(&b.scales);
        for (g, out) in y.chunks_exact_mut(16).enumerate() {
            let half = (g % 2) * 16;
            let q = &b.qs[(g / 8) * 32 + half..][..16];
            let hm = &b.hmask[half..][..16];
            let shift = 2 * ((g / 2) % 4);
            let m = 1u8 << (g / 2);
            let dl = d_all * (scales[g] as i32 - 32) as f32;
            for ((o, &q), &h) in out.iter_mut().zip(q).zip(hm) {
                let v = ((q >> shift) & 3) as i32 - if h & m != 0 { 0 } else { 4 };
                *o = dl * v as f32;
            }
        }
    }
}

/// Unpacks the 6-bit scale and min of group `j` (0..8) from Q4_K/Q5_K's packed 12 bytes.
#[inline]
pub fn get_scale_min_k4(j: usize, q: &[u8; K_SCALE_SIZE]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// Q4_K: 8 groups of 32; `x = (d * sc) * q - (dmin * m)` with 4-bit `q`. Each 32-byte chunk of
/// `qs` holds two groups: low nibbles first, then high nibbles.
pub fn dequantize_row_q4_k(x: &[BlockQ4K], y: &mut [f32]) {
    check_len(x.len(), QK_K, y);
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d = b.d.to_f32();
        let min = b.dmin.to_f32();
        for (g, out) in y.chunks_exact_mut(32).enumerate() {
            let (sc, m) = get_scale_min_k4(g, &b.scales);
            let d1 = d * sc as f32;
            let m1 = min * m as f32;
            let shift = 4 * (g % 2);
            let q = &b.qs[(g / 2) * 32..][..32];
            for (o, &q) in out.iter_mut().zip(q) {
                *o = d1 * ((q >> shift) & 0x0F) as f32 - m1;
            }
        }
    }
}

/// Q5_K: like Q4_K with a 5th bit per element from `qh` (bit `g` of `qh[l]` for group `g`).
pub fn dequantize_row_q5_k(x: &[BlockQ5K], y: &mut [f32]) {
    check_len(x.len(), QK_K, y);
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d = b.d.to_f32();
        let min = b.dmin.to_f32();
        for (g, out) in y.chunks_exact_mut(32).enumerate() {
            let (sc, m) = get_scale_min_k4(g, &b.scales);
            let d1 = d * sc as f32;
            let m1 = min * m as f32;
            let shift = 4 * (g % 2);
            let u = 1u8 << g;
            let ql = &b.qs[(g / 2) * 32..][..32];
            for ((o, &q), &h) in out.iter_mut().zip(ql).zip(&b.qh) {
                let v = ((q >> shift) & 0x0F) + if h & u != 0 { 16 } else { 0 };
                *o = d1 * v as f32 - m1;
            }
        }
    }
}

/// Q6_K: 16 groups of 16 with int8 scales; `x = (d * sc) * (q - 32)` with 6-bit `q` (low 4
/// bits in `ql`, high 2 in `qh`).
pub fn dequantize_row_q6_k(x: &[BlockQ6K], y: &mut [f32]) {
    check_len(x.len(), QK_K, y);
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d = b.d.to_f32();
        // Each half of 128 outputs uses 64 bytes of ql, 32 of qh and 8 scales.
        for (n, y) in y.chunks_exact_mut(128).enumerate() {
            let ql = &b.ql[n * 64..][..64];
            let qh = &b.qh[n * 32..][..32];
            let sc = &b.scales[n * 8..][..8];
            for l in 0..32 {
                let is = l / 16;
                let q1 = ((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) as i32 - 32;
                let q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
                let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
                let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
                y[l] = d * sc[is] as f32 * q1 as f32;
                y[l + 32] = d * sc[is + 2] as f32 * q2 as f32;
                y[l + 64] = d * sc[is + 4] as f32 * q3 as f32;
                y[l + 96] = d * sc[is + 6] as f32 * q4 as f32;
            }
        }
    }
}

/// Q8_K: `x = d * q` (f32 `d`; `bsums` are not needed).
pub fn dequantize_row_q8_k(x: &[BlockQ8K], y: &mut [f32]) {
    check_len(x.len(), QK_K, y);
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        for (o, &q) in y.iter_mut().zip(&b.qs) {
            *o = b.d * q as f32;
        }
    }
}

/// IEEE half to f32 (exact).
pub fn dequantize_row_f16(x: &[f16], y: &mut [f32]) {
    check_len(x.len(), 1, y);
    for (o, v) in y.iter_mut().zip(x) {
        *o = v.to_f32();
    }
}

/// bfloat16 to f32 (exact).
pub fn dequantize_row_bf16(x: &[bf16], y: &mut [f32]) {
    check_len(x.len(), 1, y);
    for (o, v) in y.iter_mut().zip(x) {
        *o = v.to_f32();
    }
}

/// Blocks per chunk when the source must be copied to satisfy alignment.
const COPY_CHUNK_BLOCKS: usize = 64;

/// Views `src` as blocks of `T` and runs `f`; if `src` is not aligned for `T`, copies it in
/// bounded chunks into an aligned scratch buffer first. `src` and `dst` are already checked
/// to hold the same number of whole blocks.
fn with_blocks<T: Block>(src: &[u8], dst: &mut [f32], per_block: usize, f: fn(&[T], &mut [f32])) {
    if let Some(blocks) = cast_slice::<T>(src) {
        return f(blocks, dst);
    }
    // Scratch storage aligned to 4 bytes (the largest block alignment, Q8_K's f32), filled
    // with the source bytes via f32::from_bits, which is a plain bit copy on every target we
    // build for. Safe code only: the bytes are reinterpreted through `cast_slice`.
    debug_assert!(std::mem::align_of::<T>() <= std::mem::align_of::<f32>());
    let chunk_bytes = COPY_CHUNK_BLOCKS * size_of::<T>();
    let mut scratch: Vec<f32> = Vec::with_capacity(chunk_bytes.div_ceil(4));
    for (s, d) in src
        .chunks(chunk_bytes)
        .zip(dst.chunks_mut(COPY_CHUNK_BLOCKS * per_block))
    {
        scratch.clear();
        scratch.extend(s.chunks(4).map(|c| {
            let mut w = [0u8; 4];
            w[..c.len()].copy_from_slice(c);
            f32::from_bits(u32::from_ne_bytes(w))
        }));
        let bytes = &as_bytes(&scratch)[..s.len()];
        let blocks = cast_slice::<T>(bytes).expect("scratch is aligned and whole blocks");
        f(blocks, d);
    }
}

/// Dequantizes `src` (the raw little-endian bytes of `dst.len()` elements of `dtype`) into
/// `dst`.
///
/// Supports F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1 and Q2_K..Q8_K. `src` need not
/// be aligned. Errors: [`KernelError::Unsupported`] for integer and f64 types,
/// [`KernelError::BadLength`] when `src` is not whole blocks,
/// [`KernelError::BadElementCount`] when `dst.len()` is not whole blocks, and
/// [`KernelError::SizeMismatch`] (in bytes) when the two disagree on the number of blocks.
pub fn dequantize(dtype: DType, src: &[u8], dst: &mut [f32]) -> Result<(), KernelError> {
    if matches!(
        dtype,
        DType::I8 | DType::I16 | DType::I32 | DType::I64 | DType::F64
    ) {
        return Err(KernelError::Unsupported(dtype));
    }
    let block_bytes = dtype.block_bytes();
    let block = dtype.block_size();
    // (Remainders spelled out rather than `is_multiple_of`, which needs Rust 1.87 > MSRV.)
    let extra_bytes = src.len() % block_bytes;
    if extra_bytes != 0 {
        return Err(KernelError::BadLength {
            dtype,
            len: src.len(),
            block_bytes,
        });
    }
    let extra_elems = dst.len() % block;
    if extra_elems != 0 {
        return Err(KernelError::BadElementCount {
            dtype,
            n: dst.len(),
            block,
        });
    }
    let expected = dst.len() / block * block_bytes;
    if expected != src.len() {
        return Err(KernelError::SizeMismatch {
            expected,
            got: src.len(),
        });
    }
    match dtype {
        DType::F32 => {
            for (o, c) in dst.iter_mut().zip(src.chunks_exact(4)) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        DType::F16 => {
            for (o, c) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *o = f16::from_le_bytes([c[0], c[1]]).to_f32();
            }
        }
        DType::BF16 => {
            for (o, c) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *o = bf16::from_le_bytes([c[0], c[1]]).to_f32();
            }
        }
        DType::Q4_0 => with_blocks(src, dst, block, dequantize_row_q4_0),
        DType::Q4_1 => with_blocks(src, dst, block, dequantize_row_q4_1),
        DType::Q5_0 => with_blocks(src, dst, block, dequantize_row_q5_0),
        DType::Q5_1 => with_blocks(src, dst, block, dequantize_row_q5_1),
        DType::Q8_0 => with_blocks(src, dst, block, dequantize_row_q8_0),
        DType::Q8_1 => with_blocks(src, dst, block, dequantize_row_q8_1),
        DType::Q2K => with_blocks(src, dst, block, dequantize_row_q2_k),
        DType::Q3K => with_blocks(src, dst, block, dequantize_row_q3_k),
        DType::Q4K => with_blocks(src, dst, block, dequantize_row_q4_k),
        DType::Q5K => with_blocks(src, dst, block, dequantize_row_q5_k),
        DType::Q6K => with_blocks(src, dst, block, dequantize_row_q6_k),
        DType::Q8K => with_blocks(src, dst, block, dequantize_row_q8_k),
        DType::I8 | DType::I16 | DType::I32 | DType::I64 | DType::F64 => {
            return Err(KernelError::Unsupported(dtype))
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(v: f32) -> f16 {
        f16::from_f32(v)
    }

    /// Packs eight 6-bit scales and mins the way Q4_K/Q5_K store them.
    fn pack_k4(sc: [u8; 8], m: [u8; 8]) -> [u8; 12] {
        let mut q = [0u8; 12];
        for j in 0..4 {
            q[j] = sc[j] | ((sc[j + 4] >> 4) << 6);
            q[j + 4] = m[j] | ((m[j + 4] >> 4) << 6);
            q[j + 8] = (sc[j + 4] & 0x0F) | ((m[j + 4] & 0x0F) << 4);
        }
        q
    }

    /// Packs sixteen 6-bit scales the way Q3_K stores them.
    fn pack_q3k(s: [u8; 16]) -> [u8; 12] {
        let mut q = [0u8; 12];
        for (i, &v) in s.iter().enumerate() {
            q[i % 8] |= (v & 0x0F) << (4 * (i / 8));
            q[8 + i % 4] |= (v >> 4) << (2 * (i / 4));
        }
        q
    }

    #[test]
    fn q4_0_hand_values() {
        let mut qs = [0u8; 16];
        for (j, q) in qs.iter_mut().enumerate() {
            *q = j as u8 | ((15 - j as u8) << 4);
        }
        let b = BlockQ4_0 { d: h(1.0), qs };
        let mut y = [0f32; 32];
        dequantize_row_q4_0(&[b], &mut y);
        for j in 0..16 {
            assert_eq!(y[j], j as f32 - 8.0);
            assert_eq!(y[j + 16], 7.0 - j as f32);
        }
    }

    #[test]
    fn q4_1_hand_values() {
        let b = BlockQ4_1 {
            d: h(0.5),
            m: h(-1.0),
            qs: [0x3C; 16], // low nibble 12, high nibble 3
        };
        let mut y = [0f32; 32];
        dequantize_row_q4_1(&[b], &mut y);
        assert!(y[..16].iter().all(|&v| v == 5.0));
        assert!(y[16..].iter().all(|&v| v == 0.5));
    }

    #[test]
    fn q5_0_high_bit_order() {
        // qh bit 0 -> element 0, bit 31 -> element 31 (high nibble of qs[15]).
        let b = BlockQ5_0 {
            d: h(1.0),
            qh: [0x01, 0x00, 0x00, 0x80],
            qs: [0; 16],
        };
        let mut y = [0f32; 32];
        dequantize_row_q5_0(&[b], &mut y);
        for (i, &v) in y.iter().enumerate() {
            let want = if i == 0 || i == 31 { 0.0 } else { -16.0 };
            assert_eq!(v, want, "element {i}");
        }
        // Bit 16 belongs to element 16 (high nibble of qs[0]); low nibbles still count.
        let b = BlockQ5_0 {
            d: h(2.0),
            qh: [0x00, 0x00, 0x01, 0x00],
            qs: [0xF1; 16],
        };
        dequantize_row_q5_0(&[b], &mut y);
        assert_eq!(y[0], 2.0 * (1.0 - 16.0));
        assert_eq!(y[16], 2.0 * (31.0 - 16.0));
        assert_eq!(y[17], 2.0 * (15.0 - 16.0));
    }

    #[test]
    fn q5_1_hand_values() {
        let b = BlockQ5_1 {
            d: h(1.0),
            m: h(0.25),
            qh: [0xFF, 0xFF, 0x00, 0x00],
            qs: [0x21; 16],
        };
        let mut y = [0f32; 32];
        dequantize_row_q5_1(&[b], &mut y);
        assert!(y[..16].iter().all(|&v| v == 17.25));
        assert!(y[16..].iter().all(|&v| v == 2.25));
    }

    #[test]
    fn q8_0_and_q8_1_hand_values() {
        let mut qs = [0i8; 32];
        for (j, q) in qs.iter_mut().enumerate() {
            *q = j as i8 - 16;
        }
        let mut y = [0f32; 32];
        dequantize_row_q8_0(&[BlockQ8_0 { d: h(2.0), qs }], &mut y);
        for (j, &v) in y.iter().enumerate() {
            assert_eq!(v, 2.0 * (j as f32 - 16.0));
        }
        let mut z = [0f32; 32];
        let b = BlockQ8_1 {
            d: h(2.0),
            s: h(-32.0),
            qs,
        };
        dequantize_row_q8_1(&[b], &mut z);
        assert_eq!(y, z);
    }

    #[test]
    fn q2_k_hand_values() {
        let mut scales = [0u8; 16];
        for (g, s) in scales.iter_mut().enumerate() {
            *s = g as u8 | (2 << 4); // scale g, min 2
        }
        // Every qs byte holds 0,1,2,3 at shifts 0,2,4,6.
        let b = BlockQ2K {
            scales,
            qs: [0xE4; 64],
            d: h(1.0),
            dmin: h(1.0),
        };
        let mut y = [0f32; 256];
        dequantize_row_q2_k(&[b], &mut y);
        assert_eq!(y[0], -2.0); // group 0: shift 0 -> q = 0
        assert_eq!(y[16 + 5], -2.0); // group 1 (2nd half, shift 0): 1 * 0 - 2
        assert_eq!(y[16 * 7 + 3], 7.0 * 3.0 - 2.0); // group 7: shift 6 -> q = 3
        assert_eq!(y[16 * 10], 10.0 * 1.0 - 2.0); // group 10: 2nd 128, shift 2 -> q = 1
        assert_eq!(y[255], 15.0 * 3.0 - 2.0);
    }

    #[test]
    fn q3_k_scale_unpack() {
        let want: [u8; 16] = [0, 1, 63, 32, 17, 5, 48, 33, 2, 60, 31, 16, 9, 40, 62, 7];
        assert_eq!(q3_k_scales(&pack_q3k(want)), want);
    }

    #[test]
    fn q3_k_hand_values() {
        let mut s = [32u8; 16]; // scale 0 after the -32 bias ...
        s[0] = 33; // ... except group 0: +1
        s[5] = 30; // group 5: -2
        s[15] = 40; // group 15: +8
        let mut hmask = [0u8; 32];
        hmask[0] = 0x01; // element 0: high bit set -> no -4
        hmask[16 + 2] = 0x04; // group 5 = 2nd half, bit 2: element 5*16 + 2
        let b = BlockQ3K {
            hmask,
            qs: [0xE4; 64],
            scales: pack_q3k(s),
            d: h(0.5),
        };
        let mut y = [0f32; 256];
        dequantize_row_q3_k(&[b], &mut y);
        assert_eq!(y[0], 0.0); // 0.5*1 * (0 - 0)
        assert_eq!(y[1], -2.0); // 0.5*1 * (0 - 4)
        assert_eq!(y[5 * 16 + 2], -2.0); // 0.5*-2 * (2 - 0): shift 4 -> q = 2
        assert_eq!(y[5 * 16 + 3], 2.0); // 0.5*-2 * (2 - 4)
        assert_eq!(y[255], 4.0 * (3.0 - 4.0)); // group 15: shift 6 -> q = 3, no high bit
        assert_eq!(y[100], 0.0);
    }

    #[test]
    fn get_scale_min_k4_round_trips() {
        let sc = [1, 63, 17, 32, 45, 50, 7, 60];
        let m = [0, 62, 33, 16, 63, 1, 48, 31];
        let q = pack_k4(sc, m);
        for j in 0..8 {
            assert_eq!(get_scale_min_k4(j, &q), (sc[j], m[j]), "group {j}");
        }
    }

    #[test]
    fn q4_k_and_q5_k_hand_values() {
        let sc = [1, 2, 3, 4, 5, 6, 7, 63];
        let m = [0, 1, 2, 3, 4, 5, 6, 63];
        let scales = pack_k4(sc, m);
        let b4 = BlockQ4K {
            d: h(1.0),
            dmin: h(0.5),
            scales,
            qs: [0x5A; 128], // low nibble 10, high nibble 5
        };
        let mut y = [0f32; 256];
        dequantize_row_q4_k(&[b4], &mut y);
        for (g, out) in y.chunks(32).enumerate() {
            let q = if g % 2 == 0 { 10.0 } else { 5.0 };
            let want = sc[g] as f32 * q - 0.5 * m[g] as f32;
            assert!(out.iter().all(|&v| v == want), "group {g}");
        }
        let mut qh = [0u8; 32];
        qh[0] = 0b1000_0010; // element 0 of groups 1 and 7
        let b5 = BlockQ5K {
            d: h(1.0),
            dmin: h(0.5),
            scales,
            qh,
            qs: [0x5A; 128],
        };
        dequantize_row_q5_k(&[b5], &mut y);
        assert_eq!(y[0], 10.0);
        assert_eq!(y[32], 2.0 * 21.0 - 0.5);
        assert_eq!(y[33], 2.0 * 5.0 - 0.5);
        assert_eq!(y[224], 63.0 * 21.0 - 31.5);
        assert_eq!(y[225], 63.0 * 5.0 - 31.5);
    }

    #[test]
    fn q6_k_hand_values() {
        let mut ql = [0u8; 128];
        let mut qh = [0u8; 64];
        let mut scales = [1i8; 16];
        ql[0] = 0x21;
        qh[0] = 0b11_10_01_00;
        scales[2] = -2;
        scales[4] = 3;
        let b = BlockQ6K {
            ql,
            qh,
            scales,
            d: h(1.0),
        };
        let mut y = [0f32; 256];
        dequantize_row_q6_k(&[b], &mut y);
        assert_eq!(y[0], 1.0 - 32.0); // q = 1 | 0 << 4
        assert_eq!(y[32], -2.0 * (16.0 - 32.0)); // q = 0 | 1 << 4
        assert_eq!(y[64], 3.0 * (34.0 - 32.0)); // q = 2 | 2 << 4
        assert_eq!(y[96], 48.0 - 32.0); // q = 0 | 3 << 4
        assert_eq!(y[1], -32.0);
        assert_eq!(y[128], -32.0);
    }

    #[test]
    fn q8_k_and_float_rows() {
        let mut qs = [0i8; 256];
        for (i, q) in qs.iter_mut().enumerate() {
            *q = (i as i32 - 128) as i8;
        }
        let b = BlockQ8K {
            d: 0.5,
            qs,
            bsums: [0; 16],
        };
        let mut y = [0f32; 256];
        dequantize_row_q8_k(&[b], &mut y);
        for (i, &v) in y.iter().enumerate() {
            assert_eq!(v, 0.5 * (i as f32 - 128.0));
        }
        let mut z = [0f32; 3];
        dequantize_row_f16(&[h(1.5), h(-0.0), h(65504.0)], &mut z);
        assert_eq!(z, [1.5, -0.0, 65504.0]);
        dequantize_row_bf16(&[bf16::from_f32(3.0), bf16::from_bits(0x3F80)], &mut z[..2]);
        assert_eq!(z[..2], [3.0, 1.0]);
    }

    #[test]
    fn dequantize_plain_types() {
        let mut y = [0f32; 2];
        let src: Vec<u8> = [1.25f32, -7.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        dequantize(DType::F32, &src[..], &mut y).unwrap();
        assert_eq!(y, [1.25, -7.0]);
        dequantize(DType::F16, &[0x00, 0x3C, 0x00, 0xC0], &mut y).unwrap();
        assert_eq!(y, [1.0, -2.0]);
        dequantize(DType::BF16, &[0x80, 0x3F, 0x40, 0xC0], &mut y).unwrap();
        assert_eq!(y, [1.0, -3.0]);
    }

    #[test]
    fn dequantize_errors() {
        let mut y = [0f32; 64];
        for t in [DType::I8, DType::I16, DType::I32, DType::I64, DType::F64] {
            assert_eq!(
                dequantize(t, &[0; 8], &mut y[..1]),
                Err(KernelError::Unsupported(t))
            );
        }
        assert_eq!(
            dequantize(DType::Q4_0, &[0; 17], &mut y[..32]),
            Err(KernelError::BadLength {
                dtype: DType::Q4_0,
                len: 17,
                block_bytes: 18
            })
        );
        assert_eq!(
            dequantize(DType::Q4K, &[0; 144], &mut y[..40]),
            Err(KernelError::BadElementCount {
                dtype: DType::Q4K,
                n: 40,
                block: 256
            })
        );
        assert_eq!(
            dequantize(DType::Q4_0, &[0; 18], &mut y[..64]),
            Err(KernelError::SizeMismatch {
                expected: 36,
                got: 18
            })
        );
        assert_eq!(
            dequantize(DType::F32, &[0; 6], &mut y[..1]),
            Err(KernelError::BadLength {
                dtype: DType::F32,
                len: 6,
                block_bytes: 4
            })
        );
        // Empty input is fine.
        assert_eq!(dequantize(DType::Q6K, &[], &mut []), Ok(()));
    }

    #[test]
    #[should_panic(expected = "output length")]
    fn row_length_mismatch_panics() {
        let b = BlockQ8_0 {
            d: h(1.0),
            qs: [0; 32],
        };
        dequantize_row_q8_0(&[b], &mut [0f32; 31]);
    }

    /// Deterministic bytes (xorshift) for the aligned/unaligned comparison.
    fn bytes(n: usize, mut s: u64) -> Vec<u8> {
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn unaligned_source_matches_aligned() {
        // More than COPY_CHUNK_BLOCKS blocks, so the chunked copy path runs several times.
        let n_blocks = COPY_CHUNK_BLOCKS * 2 + 5;
        let blocks: Vec<BlockQ8K> = (0..n_blocks)
            .map(|i| {
                let mut qs = [0i8; 256];
                for (q, b) in qs.iter_mut().zip(bytes(256, i as u64 + 1)) {
                    *q = b as i8;
                }
                BlockQ8K {
                    d: 0.01 * (i as f32 + 1.0),
                    qs,
                    bsums: [0; 16],
                }
            })
            .collect();
        let src = as_bytes(&blocks);
        let mut want = vec![0f32; n_blocks * 256];
        dequantize(DType::Q8K, src, &mut want).unwrap();
        for offset in 1..4 {
            let mut buf = vec![0u8; src.len() + offset];
            buf[offset..].copy_from_slice(src);
            let mut got = vec![0f32; want.len()];
            dequantize(DType::Q8K, &buf[offset..], &mut got).unwrap();
            assert_eq!(got, want, "offset {offset}");
        }

        // Q4_K via raw bytes with sane f16 scales.
        let mut src = bytes(144 * n_blocks + 1, 7);
        for b in src[1..].chunks_exact_mut(144) {
            b[..2].copy_from_slice(&h(0.25).to_le_bytes());
            b[2..4].copy_from_slice(&h(-0.125).to_le_bytes());
        }
        let mut aligned_copy: Vec<BlockQ4K> = Vec::new();
        for b in src[1..].chunks_exact(144) {
            let mut blk = BlockQ4K {
                d: f16::from_le_bytes([b[0], b[1]]),
                dmin: f16::from_le_bytes([b[2], b[3]]),
                scales: [0; 12],
                qs: [0; 128],
            };
            blk.scales.copy_from_slice(&b[4..16]);
            blk.qs.copy_from_slice(&b[16..]);
            aligned_copy.push(blk);
        }
        let mut want = vec![0f32; n_blocks * 256];
        dequantize_row_q4_k(&aligned_copy, &mut want);
        let mut got = vec![0f32; want.len()];
        dequantize(DType::Q4K, &src[1..], &mut got).unwrap();
        assert_eq!(got, want);
    }
}
