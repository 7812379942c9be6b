//! Loading helpers for the tensor layout llama.cpp's converters write for every decoder
//! (`blk.N.attn_q`, `blk.N.ffn_gate`, ...). Architecture files call these with their quirks.

use crate::layers::linear::blk;
use crate::layers::{Activation, Attention, AttnShape, Block, Decoder, Embedding, Loader, Mlp};
use crate::{ModelConfig, ModelError};
use nao_kernels::ops::Rope;

/// Attention projections of block `il` (biases picked up when present), with optional
/// per-head q/k norms (`attn_q_norm`, `attn_k_norm`).
pub fn attention(
    l: &Loader,
    cfg: &ModelConfig,
    il: usize,
    rope: Rope,
    scale: f32,
    window: Option<usize>,
) -> Result<Attention, ModelError> {
    let shape = AttnShape {
        n_head: cfg.n_head,
        n_head_kv: cfg.n_head_kv,
        head_dim: cfg.head_dim,
        head_dim_v: cfg.head_dim_v,
    };
    let d = cfg.n_embd;
    Ok(Attention {
        q: l.linear(&blk(il, "attn_q"), d, cfg.n_head * cfg.head_dim)?,
        k: l.linear(&blk(il, "attn_k"), d, cfg.n_head_kv * cfg.head_dim)?,
        v: l.linear(&blk(il, "attn_v"), d, cfg.n_head_kv * cfg.head_dim_v)?,
        o: l.linear(&blk(il, "attn_output"), cfg.n_head * cfg.head_dim_v, d)?,
        q_norm: l.vector_opt(&blk(il, "attn_q_norm.weight"), cfg.head_dim)?,
        k_norm: l.vector_opt(&blk(il, "attn_k_norm.weight"), cfg.head_dim)?,
        norm_eps: cfg.rms_eps,
        rope,
        shape,
        scale,
        window,
    })
}

/// Gated MLP of block `il`.
pub fn mlp(l: &Loader, cfg: &ModelConfig, il: usize, act: Activation) -> Result<Mlp, ModelError> {
    let d = cfg.n_embd;
    let f = cfg.n_ff;
    Ok(Mlp {
        gate: l.linear(&blk(il, "ffn_gate"), d, f)?,
        up: l.linear(&blk(il, "ffn_up"), d, f)?,
        down: l.linear(&blk(il, "ffn_down"), f, d)?,
        act,
    })
}

/// Block `il`: norms, the given attention, and the gated MLP; `post_norms` adds Gemma's
/// `post_attention_norm` / `post_ffw_norm`.
pub fn block(
    l: &Loader,
    cfg: &ModelConfig,
    il: usize,
    attn: Attention,
    act: Activation,
    post_norms: bool,
) -> Result<Block, ModelError> {
    let d = cfg.n_embd;
    let post = |name: &str| -> Result<Option<Vec<f32>>, ModelError> {
        if post_norms {
            l.vector(&blk(il, name), d).map(Some)
        } else {
            Ok(None)
        }
    };
    Ok(Block {
        attn_norm: l.vector(&blk(il, "attn_norm.weight"), d)?,
        attn,
        post_attn_norm: post("post_attention_norm.weight")?,
        ffn_norm: l.vector(&blk(il, "ffn_norm.weight"), d)?,
        mlp: mlp(l, cfg, il, act)?,
        post_ffn_norm: post("post_ffw_norm.weight")?,
    })
}

/// The whole decoder from its blocks, with the embedding (scaled by `embed_scale`), final norm
/// and output projection.
pub fn decoder(
    l: &Loader,
    cfg: ModelConfig,
    blocks: Vec<Block>,
    embed_scale: f32,
) -> Result<Decoder, ModelError> {
    let (embed, output_norm, output) = embed_and_head(l, &cfg, embed_scale)?;
    Ok(Decoder {
        cfg,
        embed,
        blocks,
        output_norm,
        output,
    })
}

/// Token embedding, final norm and output projection (tied to the embedding when the file
/// has no `output.weight`).
fn embed_and_head(
    l: &Loader,
    cfg: &ModelConfig,
    embed_scale: f32,
) -> Result<(Embedding, Vec<f32>, crate::layers::Linear), ModelError> {
    let tied = !l.has("output.weight");
    let output = if tied {
        l.output_head("token_embd", cfg.n_embd, cfg.n_vocab)?
    } else {
        l.output_head("output", cfg.n_embd, cfg.n_vocab)?
    };
    // A tied table looks rows up in the output head's repacked copy when there is one
    // (the file's pages for it were released); otherwise rows come from the mapping.
    let table = match output.shared().filter(|_| tied) {
        Some(t) => t,
        None => l.linear("token_embd", cfg.n_embd, cfg.n_vocab)?,
    };
    let output_norm = l.vector("output_norm.weight", cfg.n_embd)?;
    Ok((
        Embedding {
            table,
            scale: embed_scale,
        },
        output_norm,
        output,
    ))
}
