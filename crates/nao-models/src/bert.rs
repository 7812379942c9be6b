//! BERT encoder (all-MiniLM-L6-v2, bge, e5, …): absolute position and token-type
//! embeddings, post-LayerNorm blocks, exact GELU, bidirectional attention.
//! Reference: Devlin et al. 2018 (<https://arxiv.org/abs/1810.04805>); Hugging Face
//! `transformers/models/bert/modeling_bert.py` (`BertModel`), whose tensor names the
//! loader resolves.
//!
//! Sequences run packed (see [`crate::layers::encoder`]): one batch, no pad rows, and each
//! sequence's output identical to running it alone.

use crate::layers::encoder::{attention, gelu_erf, LayerNorm};
use crate::layers::{Compute, Linear, Loader};
use crate::ModelError;
use nao_kernels::pool::{SharedMut, ThreadPool};
use serde_json::Value;
use std::ops::Range;

/// Hyper-parameters from a Hugging Face `config.json` (`model_type: "bert"`).
#[derive(Debug, Clone, PartialEq)]
pub struct BertConfig {
    pub n_vocab: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_ff: usize,
    /// `max_position_embeddings`: the longest sequence the model can take.
    pub n_ctx_train: usize,
    pub n_token_types: usize,
    pub eps: f32,
}

impl BertConfig {
    pub fn from_hf(v: &Value) -> Result<BertConfig, ModelError> {
        let get = |k: &str| -> Result<usize, ModelError> {
            v.get(k)
                .and_then(Value::as_u64)
                .and_then(|x| usize::try_from(x).ok())
                .filter(|&x| x > 0 && x <= 1 << 24)
                .ok_or_else(|| {
                    ModelError::BadConfig(format!("config.json: `{k}` is missing or invalid"))
                })
        };
        let act = v
            .get("hidden_act")
            .and_then(Value::as_str)
            .unwrap_or("gelu");
        if act != "gelu" {
            return Err(ModelError::BadConfig(format!(
                "config.json: hidden_act {act:?} is not supported (gelu is)"
            )));
        }
        let pos = v
            .get("position_embedding_type")
            .and_then(Value::as_str)
            .unwrap_or("absolute");
        if pos != "absolute" {
            return Err(ModelError::BadConfig(format!(
                "config.json: position_embedding_type {pos:?} is not supported"
            )));
        }
        let cfg = BertConfig {
            n_vocab: get("vocab_size")?,
            n_embd: get("hidden_size")?,
            n_layer: get("num_hidden_layers")?,
            n_head: get("num_attention_heads")?,
            n_ff: get("intermediate_size")?,
            n_ctx_train: get("max_position_embeddings")?,
            n_token_types: get("type_vocab_size").unwrap_or(2),
            eps: v
                .get("layer_norm_eps")
                .and_then(Value::as_f64)
                .unwrap_or(1e-12) as f32,
        };
        if !cfg.n_embd.is_multiple_of(cfg.n_head) {
            return Err(ModelError::BadConfig(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                cfg.n_embd, cfg.n_head
            )));
        }
        Ok(cfg)
    }
}

struct Layer {
    q: Linear, // [n_embd, n_embd]
    k: Linear, // [n_embd, n_embd]
    v: Linear, // [n_embd, n_embd]
    o: Linear, // [n_embd, n_embd]
    attn_norm: LayerNorm,
    ff_up: Linear,   // [n_ff, n_embd]
    ff_down: Linear, // [n_embd, n_ff]
    ff_norm: LayerNorm,
}

/// A loaded BERT encoder.
pub struct Bert {
    pub cfg: BertConfig,
    tok_embd: Linear,  // [n_vocab, n_embd]
    pos_embd: Linear,  // [n_ctx_train, n_embd]
    type_embd: Linear, // [n_token_types, n_embd]
    embd_norm: LayerNorm,
    layers: Vec<Layer>,
}

impl Bert {
    /// Resolves every tensor once. Checkpoints saved from `BertForX` heads prefix the
    /// encoder's names with `bert.`; both spellings load.
    pub fn load(l: &Loader, cfg: BertConfig) -> Result<Bert, ModelError> {
        let p = if l.has("bert.embeddings.word_embeddings.weight") {
            "bert."
        } else {
            ""
        };
        let (d, ff) = (cfg.n_embd, cfg.n_ff);
        let norm = |name: &str| -> Result<LayerNorm, ModelError> {
            Ok(LayerNorm {
                w: l.vector(&format!("{p}{name}.weight"), d)?,
                b: l.vector(&format!("{p}{name}.bias"), d)?,
                eps: cfg.eps,
            })
        };
        let layers = (0..cfg.n_layer)
            .map(|i| {
                let b = format!("{p}encoder.layer.{i}");
                Ok(Layer {
                    q: l.linear(&format!("{b}.attention.self.query"), d, d)?,
                    k: l.linear(&format!("{b}.attention.self.key"), d, d)?,
                    v: l.linear(&format!("{b}.attention.self.value"), d, d)?,
                    o: l.linear(&format!("{b}.attention.output.dense"), d, d)?,
                    attn_norm: norm(&format!("encoder.layer.{i}.attention.output.LayerNorm"))?,
                    ff_up: l.linear(&format!("{b}.intermediate.dense"), d, ff)?,
                    ff_down: l.linear(&format!("{b}.output.dense"), ff, d)?,
                    ff_norm: norm(&format!("encoder.layer.{i}.output.LayerNorm"))?,
                })
            })
            .collect::<Result<Vec<_>, ModelError>>()?;
        Ok(Bert {
            tok_embd: l.linear(&format!("{p}embeddings.word_embeddings"), d, cfg.n_vocab)?,
            pos_embd: l.linear(
                &format!("{p}embeddings.position_embeddings"),
                d,
                cfg.n_ctx_train,
            )?,
            type_embd: l.linear(
                &format!("{p}embeddings.token_type_embeddings"),
                d,
                cfg.n_token_types,
            )?,
            embd_norm: norm("embeddings.LayerNorm")?,
            layers,
            cfg,
        })
    }

    /// Runs a packed batch: `seqs[i]` are the token ids of sequence `i` (special tokens
    /// included, token type 0). Returns the last hidden states `[n_tokens, n_embd]` and
    /// each sequence's row range in them.
    pub fn forward(
        &self,
        seqs: &[&[u32]],
        c: &mut Compute,
    ) -> Result<(Vec<f32>, Vec<Range<usize>>), ModelError> {
        let d = self.cfg.n_embd;
        let mut ranges = Vec::with_capacity(seqs.len());
        let mut n = 0;
        for s in seqs {
            if s.len() > self.cfg.n_ctx_train {
                return Err(ModelError::ContextFull {
                    needed: s.len(),
                    n_ctx: self.cfg.n_ctx_train,
                });
            }
            ranges.push(n..n + s.len());
            n += s.len();
        }
        let mut x = vec![0.0f32; n * d]; // [n_tokens, n_embd]
        let mut tmp = vec![0.0f32; d]; // [n_embd]
        for (s, r) in seqs.iter().zip(&ranges) {
            for (pos, (&t, i)) in s.iter().zip(r.clone()).enumerate() {
                let row = &mut x[i * d..(i + 1) * d];
                if t as usize >= self.cfg.n_vocab {
                    return Err(ModelError::TokenOutOfRange {
                        id: t,
                        n_vocab: self.cfg.n_vocab,
                    });
                }
                self.tok_embd.row(t as usize, row)?;
                self.pos_embd.row(pos, &mut tmp)?;
                nao_kernels::ops::add_assign(row, &tmp);
                self.type_embd.row(0, &mut tmp)?;
                nao_kernels::ops::add_assign(row, &tmp);
            }
        }
        self.embd_norm.forward(&mut x);
        let head_dim = d / self.cfg.n_head;
        for layer in &self.layers {
            let q = layer.q.apply(&x, n, c)?; // [n_tokens, n_embd]
            let k = layer.k.apply(&x, n, c)?; // [n_tokens, n_embd]
            let v = layer.v.apply(&x, n, c)?; // [n_tokens, n_embd]
            let ctx = attention(&q, &k, &v, &ranges, self.cfg.n_head, head_dim, c);
            let mut a = layer.o.apply(&ctx, n, c)?; // [n_tokens, n_embd]
            nao_kernels::ops::add_assign(&mut a, &x);
            layer.attn_norm.forward(&mut a);
            x = a;
            let mut h = layer.ff_up.apply(&x, n, c)?; // [n_tokens, n_ff]
            gelu_in_place(&mut h, &c.pool);
            let mut y = layer.ff_down.apply(&h, n, c)?; // [n_tokens, n_embd]
            nao_kernels::ops::add_assign(&mut y, &x);
            layer.ff_norm.forward(&mut y);
            x = y;
        }
        Ok((x, ranges))
    }
}

/// `h = gelu(h)` element by element, split across the pool (the GEMMs around it are; run
/// on one thread it was a fifth of the encoder's time). The split cannot change a value.
fn gelu_in_place(h: &mut [f32], pool: &ThreadPool) {
    let len = h.len();
    let out = SharedMut::new(h);
    pool.for_ranges(len, &|r| {
        // SAFETY: `for_ranges` hands each thread a disjoint range of `h`, which outlives
        // the job (for_ranges returns after every range is done).
        let s = unsafe { out.slice_mut(r) };
        s.iter_mut().for_each(|v| *v = gelu_erf(*v));
    });
}
