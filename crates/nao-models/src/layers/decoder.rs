//! The pre-norm transformer decoder all supported architectures share:
//! `x += [post_norm](attn(norm(x)))`, `x += [post_norm](mlp(norm(x)))`, then a final norm and
//! the vocabulary projection. Architecture files differ only in how they fill these fields.

use crate::layers::kv::{KvCache, KvPool, Logits, Rows, SeqBatch};
use crate::layers::{Attention, Compute, Embedding, Linear, Mlp};
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
    /// Runs a batch of sequences through the model, storing their keys and values in
    /// `kv`; returns the logits each sequence asked for, `[n_out, n_vocab]` in batch order.
    ///
    /// Every row is computed independently of the others (matmuls row by row, attention
    /// over its own sequence), so a sequence's logits do not depend on what else is in the
    /// batch: batched serving gives the same tokens as one request at a time.
    pub fn forward_batch(
        &self,
        seqs: &[SeqBatch],
        kv: &mut KvPool,
        c: &mut Compute,
    ) -> Result<Vec<f32>, ModelError> {
        let h = self.hidden_batch(seqs, kv, c)?; // [n_out, n_embd]
        if h.is_empty() {
            return Ok(Vec::new());
        }
        self.output.apply(&h, h.len() / self.cfg.n_embd, c)
    }

    /// [`Self::forward_batch`] without the vocabulary projection: the final-norm hidden
    /// states `[n_out, n_embd]` of the rows each sequence's [`Logits`] asks for (what
    /// decoder-based embedders pool, and what the head would multiply).
    pub fn hidden_batch(
        &self,
        seqs: &[SeqBatch],
        kv: &mut KvPool,
        c: &mut Compute,
    ) -> Result<Vec<f32>, ModelError> {
        let (kd, vd) = self.cfg.kv_dims();
        kv.check_shape(self.blocks.len(), kd, vd)?;
        let rows = Rows::new(seqs, kv)?;
        let n = rows.len();
        if n == 0 {
            return Ok(Vec::new());
        }
        let eps = self.cfg.rms_eps;
        let d = self.cfg.n_embd;
        let tokens: Vec<u32> = seqs.iter().flat_map(|s| s.tokens.iter().copied()).collect();
        let mut x = self.embed.forward(&tokens)?; // [n, n_embd]
        for (b, lc) in self.blocks.iter().zip(kv.layers.iter_mut()) {
            let h = norm_rows(&x, &b.attn_norm, eps);
            let mut a = b.attn.forward(&h, &rows, lc, c)?;
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
        // Keep only the rows whose logits are wanted.
        let mut out_rows: Vec<f32> = Vec::new();
        let mut row = 0;
        for s in seqs {
            let len = s.tokens.len();
            let keep = match s.logits {
                Logits::None => 0..0,
                Logits::Last if len > 0 => len - 1..len,
                Logits::Last => 0..0,
                Logits::All => 0..len,
            };
            out_rows.extend_from_slice(&x[(row + keep.start) * d..(row + keep.end) * d]);
            row += len;
        }
        Ok(norm_rows(&out_rows, &self.output_norm, eps))
    }

    /// Runs `tokens` of one sequence at positions `pos..` through a single-sequence cache;
    /// returns logits `[n_out, n_vocab]` for every token (`all_logits`) or only the last.
    pub fn forward(
        &self,
        tokens: &[u32],
        pos: usize,
        cache: &mut KvCache,
        c: &mut Compute,
        all_logits: bool,
    ) -> Result<Vec<f32>, ModelError> {
        if pos + tokens.len() > cache.n_ctx {
            return Err(ModelError::ContextFull {
                needed: pos + tokens.len(),
                n_ctx: cache.n_ctx,
            });
        }
        let seq = SeqBatch {
            tokens,
            pos,
            table: &cache.table,
            logits: if all_logits {
                Logits::All
            } else {
                Logits::Last
            },
        };
        self.forward_batch(&[seq], &mut cache.pool, c)
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
