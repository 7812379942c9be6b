//! The pre-norm transformer decoder all supported architectures share:
//! `x += [post_norm](attn(norm(x)))`, `x += [post_norm](mlp(norm(x)))`, then a final norm and
//! the vocabulary projection. Architecture files differ only in how they fill these fields.

use crate::layers::{Attention, Compute, Embedding, KvCache, Linear, Mlp};
use crate::{ModelConfig, ModelError};
use nao_kernels::ops::{add_assign, rms_norm};

/// One transformer block.
pub struct Block {
    pub attn_norm: Vec<f32>, // [n_embd]
    pub attn: Attention,
    pub post_attn_norm: Option<Vec<f32>>, // [n_embd] (Gemma)
    pub ffn_norm: Vec<f32>,               // [n_embd]
    pub mlp: Mlp,
    pub post_ffn_norm: Option<Vec<f32>>, // [n_embd] (Gemma)
}

/// A whole decoder-only model.
pub struct Decoder {
    pub cfg: ModelConfig,
    pub embed: Embedding,
    pub blocks: Vec<Block>,
    pub output_norm: Vec<f32>, // [n_embd]
    pub output: Linear,        // [n_vocab, n_embd]
}

fn norm_rows(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    let d = w.len();
    let mut y = vec![0.0f32; x.len()];
    for (xr, yr) in x.chunks_exact(d).zip(y.chunks_exact_mut(d)) {
        rms_norm(xr, w, eps, yr);
    }
    y
}

impl Decoder {
    /// Runs `tokens` at positions `pos..`; returns logits `[n_out, n_vocab]` for every token
    /// (`all_logits`) or only the last.
    pub fn forward(
        &self,
        tokens: &[u32],
        pos: usize,
        cache: &mut KvCache,
        c: &mut Compute,
        all_logits: bool,
    ) -> Result<Vec<f32>, ModelError> {
        let n = tokens.len();
        if n == 0 {
            return Ok(Vec::new());
        }
        if cache.layers.len() != self.blocks.len() {
            return Err(ModelError::BadConfig(
                "KV cache made for another model".into(),
            ));
        }
        let eps = self.cfg.rms_eps;
        let d = self.cfg.n_embd;
        let mut x = self.embed.forward(tokens)?; // [n, n_embd]
        for (b, lc) in self.blocks.iter().zip(cache.layers.iter_mut()) {
            let h = norm_rows(&x, &b.attn_norm, eps);
            let mut a = b.attn.forward(&h, n, pos, lc, cache.n_ctx, c)?;
            if let Some(w) = &b.post_attn_norm {
                a = norm_rows(&a, w, eps);
            }
            add_assign(&mut x, &a);
            let h = norm_rows(&x, &b.ffn_norm, eps);
            let mut m = b.mlp.forward(&h, n, c)?;
            if let Some(w) = &b.post_ffn_norm {
                m = norm_rows(&m, w, eps);
            }
            add_assign(&mut x, &m);
        }
        let (rows, n_out) = if all_logits {
            (&x[..], n)
        } else {
            (&x[(n - 1) * d..], 1)
        };
        let h = norm_rows(rows, &self.output_norm, eps);
        self.output.apply(&h, n_out, c)
    }

    /// Bytes of weights read per decoded token (all matrices).
    pub fn weight_bytes(&self) -> usize {
        let per_block: usize = self
            .blocks
            .iter()
            .map(|b| {
                b.attn.q.n_bytes()
                    + b.attn.k.n_bytes()
                    + b.attn.v.n_bytes()
                    + b.attn.o.n_bytes()
                    + b.mlp.gate.n_bytes()
                    + b.mlp.up.n_bytes()
                    + b.mlp.down.n_bytes()
            })
            .sum();
        per_block + self.output.n_bytes()
    }
}
