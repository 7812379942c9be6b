//! Qwen2 / Qwen2.5: pre-norm decoder with q/k/v biases, GQA, NeoX RoPE, SwiGLU.
//! Reference: llama.cpp `src/models/qwen2.cpp`; Qwen2 technical report (arXiv:2407.10671).

use crate::layers::{blk, standard, Activation, Block, Decoder, Loader};
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
            Ok(Block {
                attn_norm: l.vector(&blk(il, "attn_norm.weight"), cfg.n_embd)?,
                attn: standard::attention(l, &cfg, il, rope.clone(), scale, None)?,
                post_attn_norm: None,
                ffn_norm: l.vector(&blk(il, "ffn_norm.weight"), cfg.n_embd)?,
                mlp: standard::mlp(l, &cfg, il, Activation::Silu)?,
                post_ffn_norm: None,
            })
        })
        .collect::<Result<Vec<_>, ModelError>>()?;
    let (embed, output_norm, output) = standard::embed_and_head(l, &cfg, 1.0)?;
    Ok(Decoder {
        cfg,
        embed,
        blocks,
        output_norm,
        output,
    })
}
