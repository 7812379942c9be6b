//! Test data shared by the kernel tests: a small deterministic generator.
#![allow(dead_code)] // each test file uses its own subset

use half::f16;

/// SplitMix64.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn byte(&mut self) -> u8 {
        self.next() as u8
    }
    pub fn fill(&mut self, b: &mut [u8]) {
        for x in b {
            *x = self.byte();
        }
    }
    /// Uniform in [-1, 1).
    pub fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    /// Uniform integer in [-m, m].
    pub fn int(&mut self, m: i32) -> i32 {
        (self.next() % (2 * m as u64 + 1)) as i32 - m
    }
    /// A block scale in (-0.05, 0.05).
    pub fn scale(&mut self) -> f16 {
        f16::from_f32(self.unit() * 0.05)
    }
    /// A block scale of magnitude 0.001 to 0.101, either sign (never near zero).
    pub fn scale_signed(&mut self) -> f16 {
        let m = 1e-3 + (self.unit() + 1.0) * 0.05;
        f16::from_f32(if self.byte() & 1 == 0 { m } else { -m })
    }
    /// An int8 quant in [-127, 127]: -128 is excluded, as ggml's quantizers never produce
    /// it and AVX2's maddubs sign trick saturates on (-128)·(-128) pairs (as in ggml).
    pub fn q8(&mut self) -> i8 {
        ((self.byte() as i32 % 255) - 127) as i8
    }
    /// An activation value: mostly in [-1, 1), one in 32 scaled by 20 (outliers, as real
    /// activations have).
    pub fn act(&mut self) -> f32 {
        let v = self.unit();
        if self.byte() < 8 {
            v * 20.0
        } else {
            v
        }
    }
}
