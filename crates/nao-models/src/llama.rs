//! Llama (2 and 3 style): pre-norm decoder, GQA, RoPE (on adjacent pairs for GGUF files,
//! whose converter permutes q/k rows for it; on halves for Hugging Face checkpoints, see
//! [`Loader::llama_rope_style`]), SwiGLU, optional Llama 3 frequency factors.
//! Reference: llama.cpp `src/models/llama.cpp`; Llama 3 paper (arXiv:2407.21783).

use crate::layers::{standard, Activation, Decoder, Loader};
use crate::{ModelConfig, ModelError};
use nao_kernels::ops::Rope;

pub fn load(l: &Loader, cfg: ModelConfig) -> Result<Decoder, ModelError> {
    let factors = match l.vector_opt("rope_freqs.weight", cfg.n_rot / 2)? {
        Some(f) => Some(f),
        None => cfg.rope_freqs.clone(),
    };
    let rope = Rope::new(
        l.llama_rope_style(),
        cfg.n_rot,
        cfg.rope_base,
        cfg.rope_freq_scale,
        factors.as_deref(),
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
