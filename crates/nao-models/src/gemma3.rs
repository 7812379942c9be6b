//! Gemma 3: interleaved sliding-window (local) and global attention layers with their own
//! RoPE bases, per-head q/k RMS norms, pre- and post-norms around attention and MLP, GeGLU,
//! and embeddings scaled by √n_embd. Norm weights in GGUF already include Gemma's `1 + w`.
//! Reference: llama.cpp `src/models/gemma3.cpp`; Gemma 3 report (arXiv:2503.19786).

use crate::layers::{standard, Activation, Decoder, Loader};
use crate::{ModelConfig, ModelError};
use nao_kernels::ops::{Rope, RopeStyle};

/// Every `SWA_PATTERN`-th layer is global; the others use the sliding window (the
/// architecture's value; files may override it with `gemma3.attention.sliding_window_pattern`).
const SWA_PATTERN: usize = 6;
/// RoPE base of the local layers (the architecture's value; files may override it with
/// `gemma3.rope.freq_base_swa`).
const ROPE_BASE_LOCAL: f32 = 10_000.0;

pub fn load(l: &Loader, cfg: ModelConfig) -> Result<Decoder, ModelError> {
    let window = cfg.sliding_window;
    let swa_pattern = cfg.sliding_window_pattern.unwrap_or(SWA_PATTERN);
    let rope_base_local = cfg.rope_base_swa.unwrap_or(ROPE_BASE_LOCAL);
    let rope_global = Rope::new(
        RopeStyle::Neox,
        cfg.n_rot,
        cfg.rope_base,
        cfg.rope_freq_scale,
        None,
    );
    let rope_local = Rope::new(RopeStyle::Neox, cfg.n_rot, rope_base_local, 1.0, None);
    let scale = 1.0 / (cfg.head_dim as f32).sqrt();
    let blocks = (0..cfg.n_layer)
        .map(|il| {
            let is_local = il % swa_pattern < swa_pattern - 1;
            let (rope, win) = if is_local {
                (rope_local.clone(), window)
            } else {
                (rope_global.clone(), None)
            };
            let attn = standard::attention(l, &cfg, il, rope, scale, win)?;
            standard::block(l, &cfg, il, attn, Activation::GeluTanh, true)
        })
        .collect::<Result<Vec<_>, ModelError>>()?;
    let embed_scale = (cfg.n_embd as f32).sqrt();
    standard::decoder(l, cfg, blocks, embed_scale)
}
