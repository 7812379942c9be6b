//! Gated feed-forward: `down(act(gate(x)) * up(x))` (SwiGLU for Llama/Qwen, GeGLU for Gemma).

use crate::layers::{Compute, Linear};
use crate::ModelError;
use nao_kernels::ops::{gelu_tanh, silu};

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
        let act = match self.act {
            Activation::Silu => silu,
            Activation::GeluTanh => gelu_f16,
        };
        for (gi, ui) in g.iter_mut().zip(&u) {
            *gi = act(*gi) * ui;
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
        f16::from_f32(gelu_tanh(f16::from_f32(x).to_f32())).to_f32()
    }
}
