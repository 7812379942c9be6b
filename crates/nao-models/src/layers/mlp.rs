//! Gated feed-forward: `down(act(gate(x)) * up(x))` (SwiGLU for Llama/Qwen, GeGLU for Gemma).

use crate::layers::{Compute, Linear};
use crate::ModelError;
use nao_kernels::ops::{gelu_tanh, silu_mul};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Silu,
    GeluTanh,
}

pub struct Mlp {
    pub gate: Linear, // [n_ff, n_embd]
    pub up: Linear,   // [n_ff, n_embd]
    pub down: Linear, // [n_embd, n_ff]
    pub act: Activation,
}

impl Mlp {
    /// `x`: `[n, n_embd]` → `[n, n_embd]`.
    pub fn forward(&self, x: &[f32], n: usize, c: &mut Compute) -> Result<Vec<f32>, ModelError> {
        let mut g = self.gate.apply(x, n, c)?; // [n, n_ff]
        let u = self.up.apply(x, n, c)?; // [n, n_ff]
        match self.act {
            Activation::Silu => silu_mul(&mut g, &u),
            Activation::GeluTanh => {
                for (gi, ui) in g.iter_mut().zip(&u) {
                    *gi = gelu_f16(*gi) * ui;
                }
            }
        }
        self.down.apply(&g, n, c)
    }
}

/// GELU (tanh form) evaluated the way ggml's CPU backend does by default: on the input
/// rounded to f16, with the result rounded to f16 (ggml reads it from a 64K-entry f16 table),
/// and exactly 0 / x outside (-10, 10). Keeps Gemma within llama.cpp's noise.
fn gelu_f16(x: f32) -> f32 {
    use half::f16;
    if x <= -10.0 {
        0.0
    } else if x >= 10.0 {
        x
    } else {
        let h = f16::from_f32(x).to_bits();
        match gelu_table().get(usize::from(h)) {
            Some(&g) => f16::from_bits(g).to_f32(),
            None => gelu_f16_direct(h),
        }
    }
}

/// GELU of the f16 with bits `h`, rounded to f16: what [`gelu_table`] holds.
fn gelu_f16_direct(h: u16) -> f32 {
    use half::f16;
    f16::from_f32(gelu_tanh(f16::from_bits(h).to_f32())).to_f32()
}

/// [`gelu_f16_direct`] for every f16 bit pattern (128 KiB, built on first use), so the
/// per-element cost is a table read instead of a `tanh`; the values are the same bits.
fn gelu_table() -> &'static [u16] {
    static TABLE: std::sync::OnceLock<Vec<u16>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        (0..=u16::MAX)
            .map(|h| half::f16::from_f32(gelu_f16_direct(h)).to_bits())
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table holds exactly what the direct evaluation gives, for every f16 input.
    #[test]
    fn gelu_table_matches_direct() {
        for h in 0..=u16::MAX {
            let x = half::f16::from_bits(h).to_f32();
            let direct = if x <= -10.0 {
                0.0
            } else if x >= 10.0 {
                x
            } else {
                gelu_f16_direct(h)
            };
            let got = gelu_f16(x);
            assert!(
                got.to_bits() == direct.to_bits() || (got.is_nan() && direct.is_nan()),
                "{h:#06x}: {got} vs {direct}"
            );
        }
    }
}
