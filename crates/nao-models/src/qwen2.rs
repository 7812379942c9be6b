//! Qwen2 / Qwen2.5: pre-norm decoder with q/k/v biases, GQA, NeoX RoPE, SwiGLU.
//! Reference: llama.cpp `src/models/qwen2.cpp`; Qwen2 technical report (arXiv:2407.10671).

use crate::layers::{standard, Activation, Decoder, Loader};
use crate::{ModelConfig, ModelError};
use nao_kernels::ops::{Rope, RopeStyle};

pub fn load(l: &Loader, cfg: ModelConfig) -> Result<Decoder, ModelError> {
    let rope = Rope::new(
        RopeStyle::Neox,
        cfg.n_rot,
        cfg.rope_base,
        cfg.rope_freq_scale,
        None,
    );
    let scale = 1.0 / (cfg.head_dim as f32).sqrt();
    let blocks = (0..cfg.n_layer)
        .map(|il| {
            let attn = standard::attention(l, &cfg, il, rope.clone(), scale, None)?;
            standard::block(l, &cfg, il, attn, Activation::Silu, false)
        })
        .collect::<Result<Vec<_>, ModelError>>()?;
    standard::decoder(l, cfg, blocks, 1.0)
}
