//! Qwen3 (dense): Qwen2's decoder without q/k/v biases, with an RMS norm over each head of
//! q and k (`attn_q_norm` / `attn_k_norm`, weights `[head_dim]`) applied after the
//! projections and before RoPE; `head_dim` is its own hyper-parameter (128 in every Qwen3
//! size, not n_embd / n_head). Also the backbone of Qwen3-Embedding (last-token pooling,
//! see [`crate::sentence`]).
//! Reference: llama.cpp `src/models/qwen3.cpp`; transformers `models/qwen3/modeling_qwen3.py`
//! (`Qwen3Attention`); Qwen3 technical report (arXiv:2505.09388).

use crate::layers::{blk, standard, Activation, Decoder, Loader};
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
            let mut attn = standard::attention(l, &cfg, il, rope.clone(), scale, None)?;
            // The norms define the architecture: a file without them is not Qwen3.
            attn.q_norm = Some(l.vector(&blk(il, "attn_q_norm.weight"), cfg.head_dim)?);
            attn.k_norm = Some(l.vector(&blk(il, "attn_k_norm.weight"), cfg.head_dim)?);
            standard::block(l, &cfg, il, attn, Activation::Silu, false)
        })
        .collect::<Result<Vec<_>, ModelError>>()?;
    standard::decoder(l, cfg, blocks, 1.0)
}
