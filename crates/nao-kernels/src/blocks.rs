//! Quantization blocks with exactly ggml's byte layout (`ggml-common.h`).
//!
//! Every struct is `#[repr(C)]` with only `u8`/`i8`/`i16`/`f16`/`f32` fields and no padding,
//! so a GGUF tensor's bytes can be viewed as a slice of blocks (see [`crate::cast`]).
//! Sizes are asserted at compile time below.

use half::f16;

/// Elements per K-quant super-block.
pub const QK_K: usize = 256;
/// Bytes of packed 6-bit scales/mins in Q4_K/Q5_K (and Q3_K's scales).
pub const K_SCALE_SIZE: usize = 12;

/// 32 weights: x = d * (q - 8), q in 0..16.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ4_0 {
    pub d: f16,
    pub qs: [u8; 16],
}

/// 32 weights: x = d * q + m.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ4_1 {
    pub d: f16,
    pub m: f16,
    pub qs: [u8; 16],
}

/// 32 weights: x = d * (q - 16), 5-bit q (high bits in `qh`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ5_0 {
    pub d: f16,
    pub qh: [u8; 4],
    pub qs: [u8; 16],
}

/// 32 weights: x = d * q + m, 5-bit q.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ5_1 {
    pub d: f16,
    pub m: f16,
    pub qh: [u8; 4],
    pub qs: [u8; 16],
}

/// 32 values: x = d * q.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ8_0 {
    pub d: f16,
    pub qs: [i8; 32],
}

/// 32 values: x = d * q, with `s = d * sum(q)` precomputed.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ8_1 {
    pub d: f16,
    pub s: f16,
    pub qs: [i8; 32],
}

/// 256 weights in 16 groups of 16: 4-bit scale + 4-bit min per group, 2-bit quants.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ2K {
    pub scales: [u8; QK_K / 16],
    pub qs: [u8; QK_K / 4],
    pub d: f16,
    pub dmin: f16,
}

/// 256 weights in 16 groups of 16: 6-bit scales, 3-bit quants (high bit in `hmask`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ3K {
    pub hmask: [u8; QK_K / 8],
    pub qs: [u8; QK_K / 4],
    pub scales: [u8; 12],
    pub d: f16,
}

/// 256 weights in 8 groups of 32: 6-bit scale + 6-bit min per group, 4-bit quants.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ4K {
    pub d: f16,
    pub dmin: f16,
    pub scales: [u8; K_SCALE_SIZE],
    pub qs: [u8; QK_K / 2],
}

/// 256 weights in 8 groups of 32: 6-bit scale + min, 5-bit quants (high bit in `qh`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ5K {
    pub d: f16,
    pub dmin: f16,
    pub scales: [u8; K_SCALE_SIZE],
    pub qh: [u8; QK_K / 8],
    pub qs: [u8; QK_K / 2],
}

/// 256 weights in 16 groups of 16: int8 scales, 6-bit quants (low 4 in `ql`, high 2 in `qh`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ6K {
    pub ql: [u8; QK_K / 2],
    pub qh: [u8; QK_K / 4],
    pub scales: [i8; QK_K / 16],
    pub d: f16,
}

/// Activation block: 256 int8 values with an f32 scale and sums of each group of 16.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ8K {
    pub d: f32,
    pub qs: [i8; QK_K],
    pub bsums: [i16; QK_K / 16],
}

const _: () = {
    use std::mem::size_of;
    assert!(size_of::<BlockQ4_0>() == 18);
    assert!(size_of::<BlockQ4_1>() == 20);
    assert!(size_of::<BlockQ5_0>() == 22);
    assert!(size_of::<BlockQ5_1>() == 24);
    assert!(size_of::<BlockQ8_0>() == 34);
    assert!(size_of::<BlockQ8_1>() == 36);
    assert!(size_of::<BlockQ2K>() == 84);
    assert!(size_of::<BlockQ3K>() == 110);
    assert!(size_of::<BlockQ4K>() == 144);
    assert!(size_of::<BlockQ5K>() == 176);
    assert!(size_of::<BlockQ6K>() == 210);
    assert!(size_of::<BlockQ8K>() == 292);
};

/// Marker for plain-old-data block types that may be viewed from raw bytes.
///
/// # Safety
/// Implementors must be `#[repr(C)]`, contain no padding, and be valid for every bit pattern.
pub unsafe trait Block: Copy + 'static {}

// SAFETY: each type below is #[repr(C)], made only of integer/f16/f32 fields (valid for any
// bit pattern), and its size equals the sum of its fields (asserted above), so it has no padding.
unsafe impl Block for BlockQ4_0 {}
// SAFETY: see above.
unsafe impl Block for BlockQ4_1 {}
// SAFETY: see above.
unsafe impl Block for BlockQ5_0 {}
// SAFETY: see above.
unsafe impl Block for BlockQ5_1 {}
// SAFETY: see above.
unsafe impl Block for BlockQ8_0 {}
// SAFETY: see above.
unsafe impl Block for BlockQ8_1 {}
// SAFETY: see above.
unsafe impl Block for BlockQ2K {}
// SAFETY: see above.
unsafe impl Block for BlockQ3K {}
// SAFETY: see above.
unsafe impl Block for BlockQ4K {}
// SAFETY: see above.
unsafe impl Block for BlockQ5K {}
// SAFETY: see above.
unsafe impl Block for BlockQ6K {}
// SAFETY: see above.
unsafe impl Block for BlockQ8K {}
// SAFETY: plain scalars are valid for every bit pattern and have no padding.
unsafe impl Block for f32 {}
// SAFETY: see above.
unsafe impl Block for f16 {}
// SAFETY: see above.
unsafe impl Block for half::bf16 {}
// SAFETY: see above.
unsafe impl Block for u8 {}
