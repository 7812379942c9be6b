//! Gated feed-forward: `down(act(gate(x)) * up(x))` (SwiGLU for Llama/Qwen, GeGLU for Gemma).

use crate::layers::{Compute, Linear};
use crate::ModelError;
use nao_kernels::ops::{gate_mul_par, Gate};

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
        let gate = match self.act {
            Activation::Silu => Gate::Silu,
            // GELU as ggml evaluates it (on f16-rounded inputs, f16-rounded results), which
            // keeps Gemma within llama.cpp's noise.
            Activation::GeluTanh => Gate::GeluF16,
        };
        gate_mul_par(gate, &mut g, &u, &c.pool);
        self.down.apply(&g, n, c)
    }
}
