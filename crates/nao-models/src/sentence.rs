//! A sentence-embedding model: an encoder (BERT) or a decoder (Qwen3-Embedding style), plus
//! its pooling and normalisation. Loaded from a Hugging Face / sentence-transformers
//! directory (`config.json`, `model.safetensors` or a sharded index, `modules.json` +
//! `1_Pooling/config.json`) or from a GGUF file (`<arch>.pooling_type`). Tokenization is the
//! caller's (nao-engine reads `tokenizer.json` or the GGUF vocabulary); this type maps
//! token ids to vectors.
//!
//! A decoder embedder runs the prompt through the decoder's layers (no LM head) and pools
//! the final-norm hidden states: sentence-transformers' `Transformer` module loads the bare
//! `Qwen3Model`, whose `last_hidden_state` is exactly that. Sequences run packed, each with
//! its own KV blocks, and every row is computed independently of the others
//! ([`crate::layers::Decoder::forward_batch`]), so a vector does not depend on the batch it
//! is in — no padding, no mask to get wrong.

use crate::bert::{Bert, BertConfig};
use crate::layers::{Compute, Loader, Logits, Naming, SeqBatch};
use crate::pooling::{l2_normalize, read_json, read_st_modules, Pooling};
use crate::{hf, load_model, load_model_dir, Model, ModelError};
use nao_gguf::{GgufFile, Safetensors};
use serde_json::Value;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

/// The network under the pooling.
pub enum Backbone {
    /// Bidirectional encoder; token vectors are its last layer's output.
    Bert(Bert),
    /// Causal decoder; token vectors are the hidden states after its final norm.
    Decoder(Model),
}

/// A backbone plus its pooling: token ids in, one vector per sequence out.
pub struct SentenceEncoder {
    pub backbone: Backbone,
    pub pooling: Pooling,
    /// Whether vectors are scaled to unit length (a `Normalize` module; always for GGUF
    /// files, as llama.cpp normalises pooled embeddings).
    pub normalize: bool,
    /// The token a decoder embedder with last-token pooling was trained to pool at: every
    /// text input must end with it (Qwen3-Embedding's tokenizer appends `<|endoftext|>`,
    /// the `eos_token_id` of its `config.json`). `None` for encoders and other poolings.
    pub eos: Option<u32>,
}

/// KV cache bytes one packed batch of a decoder embedder may allocate; longer batches are
/// split (a single sequence always runs whole). Splitting never changes a vector.
const MAX_BATCH_KV_BYTES: usize = 256 << 20;
/// KV block size of the per-batch pool.
const KV_BLOCK: usize = 16;

impl SentenceEncoder {
    /// Loads the model in `dir`: BERT (`model_type: "bert"`) or a decoder nao runs
    /// ([`hf::HF_ARCHITECTURES`]). Pooling and normalisation come from `modules.json`;
    /// without it, mean pooling and no normalisation (sentence-transformers' default).
    pub fn load(dir: &Path) -> Result<SentenceEncoder, ModelError> {
        let config_path = dir.join("config.json");
        let config = read_json(&config_path)?;
        let model_type = config
            .get("model_type")
            .and_then(Value::as_str)
            .unwrap_or("");
        let (pooling, normalize) = read_st_modules(dir)?;
        if model_type == "bert" {
            let cfg = BertConfig::from_hf(&config)?;
            let st = Arc::new(Safetensors::open(dir)?);
            let bert = Bert::load(&Loader::safetensors(st, Naming::AsStored), cfg)?;
            return Ok(SentenceEncoder {
                backbone: Backbone::Bert(bert),
                pooling,
                normalize,
                eos: None,
            });
        }
        if hf::causal_lm_arch(&config).is_none() {
            return Err(ModelError::UnsupportedArch(format!(
                "{model_type} (embedding models: bert, and the decoders qwen2, qwen3, llama)"
            )));
        }
        let model = load_model_dir(dir)?;
        let eos = match pooling {
            Pooling::LastToken => config_eos(&config).map_err(|reason| ModelError::Config {
                path: config_path.display().to_string(),
                reason,
            })?,
            _ => None,
        };
        Ok(SentenceEncoder {
            backbone: Backbone::Decoder(model),
            pooling,
            normalize,
            eos,
        })
    }

    /// Loads a decoder embedder from a GGUF file; its pooling is `<arch>.pooling_type`
    /// (llama.cpp's enum: 1 mean, 2 cls, 3 last), and a file without it is not an
    /// embedding model. The EOS of last-token pooling is `tokenizer.ggml.eos_token_id`.
    pub fn from_gguf(file: Arc<GgufFile>) -> Result<SentenceEncoder, ModelError> {
        let arch = file.architecture()?.to_string();
        let key = format!("{arch}.pooling_type");
        let t = file.get_u32(&key)?.ok_or(ModelError::MissingKey(key))?;
        let pooling = Pooling::from_gguf(t)?;
        let eos = match pooling {
            Pooling::LastToken => file.get_u32("tokenizer.ggml.eos_token_id")?,
            _ => None,
        };
        Ok(SentenceEncoder {
            backbone: Backbone::Decoder(load_model(file)?),
            pooling,
            normalize: true,
            eos,
        })
    }

    /// Opens the GGUF file at `path` and loads it with [`Self::from_gguf`]; the file is
    /// returned too, for the caller's tokenizer.
    pub fn open_gguf(path: &Path) -> Result<(SentenceEncoder, Arc<GgufFile>), ModelError> {
        let file = Arc::new(GgufFile::open(path)?);
        Ok((SentenceEncoder::from_gguf(Arc::clone(&file))?, file))
    }

    /// Vector length.
    pub fn n_embd(&self) -> usize {
        match &self.backbone {
            Backbone::Bert(b) => b.cfg.n_embd,
            Backbone::Decoder(m) => m.config().n_embd,
        }
    }

    /// Longest sequence (in tokens, special tokens included) the model accepts.
    pub fn max_tokens(&self) -> usize {
        match &self.backbone {
            Backbone::Bert(b) => b.cfg.n_ctx_train,
            Backbone::Decoder(m) => m.config().n_ctx_train,
        }
    }

    pub fn n_vocab(&self) -> usize {
        match &self.backbone {
            Backbone::Bert(b) => b.cfg.n_vocab,
            Backbone::Decoder(m) => m.config().n_vocab,
        }
    }

    pub fn n_layer(&self) -> usize {
        match &self.backbone {
            Backbone::Bert(b) => b.cfg.n_layer,
            Backbone::Decoder(m) => m.config().n_layer,
        }
    }

    pub fn n_head(&self) -> usize {
        match &self.backbone {
            Backbone::Bert(b) => b.cfg.n_head,
            Backbone::Decoder(m) => m.config().n_head,
        }
    }

    pub fn n_head_kv(&self) -> usize {
        match &self.backbone {
            Backbone::Bert(b) => b.cfg.n_head,
            Backbone::Decoder(m) => m.config().n_head_kv,
        }
    }

    /// Architecture name (`bert`, `qwen3`, …).
    pub fn architecture(&self) -> &str {
        match &self.backbone {
            Backbone::Bert(_) => "bert",
            Backbone::Decoder(m) => &m.config().arch,
        }
    }

    /// One vector per sequence, `[seqs.len()][n_embd]`, computed as one packed batch (a
    /// decoder's is split when its KV cache would pass [`MAX_BATCH_KV_BYTES`]).
    pub fn encode(&self, seqs: &[&[u32]], c: &mut Compute) -> Result<Vec<Vec<f32>>, ModelError> {
        let d = self.n_embd();
        let pooled = match &self.backbone {
            Backbone::Bert(bert) => {
                let (h, ranges) = bert.forward(seqs, c)?; // [n_tokens, n_embd]
                self.pooling.pool(&h, d, &ranges) // [n_seqs, n_embd]
            }
            Backbone::Decoder(m) => {
                let mut out = Vec::with_capacity(seqs.len() * d); // [n_seqs, n_embd]
                let per_block = m.kv_bytes_per_position().max(1) * KV_BLOCK;
                let max_blocks = (MAX_BATCH_KV_BYTES / per_block).max(1);
                for group in kv_groups(seqs, max_blocks) {
                    out.extend(decoder_pooled(m, self.pooling, &seqs[group], c)?);
                }
                out
            }
        };
        Ok(pooled
            .chunks_exact(d)
            .map(|v| {
                let mut v = v.to_vec();
                if self.normalize {
                    l2_normalize(&mut v);
                }
                v
            })
            .collect())
    }
}

/// The first `eos_token_id` of a `config.json` (one id or a list); `None` when absent.
fn config_eos(config: &Value) -> Result<Option<u32>, String> {
    let v = match config.get("eos_token_id") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(a)) => match a.first() {
            Some(x) => x,
            None => return Ok(None),
        },
        Some(x) => x,
    };
    v.as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .map(Some)
        .ok_or_else(|| format!("eos_token_id {v} is not a token id"))
}

/// Consecutive runs of `seqs` whose KV cache stays under [`MAX_BATCH_KV_BYTES`] (at most
/// `max_blocks` blocks of [`KV_BLOCK`] positions); a sequence too long for that runs alone.
fn kv_groups(seqs: &[&[u32]], max_blocks: usize) -> Vec<Range<usize>> {
    let mut groups = Vec::new();
    let (mut start, mut blocks) = (0, 0);
    for (i, s) in seqs.iter().enumerate() {
        let b = s.len().div_ceil(KV_BLOCK);
        if i > start && blocks + b > max_blocks {
            groups.push(start..i);
            (start, blocks) = (i, 0);
        }
        blocks += b;
    }
    if start < seqs.len() {
        groups.push(start..seqs.len());
    }
    groups
}

/// Runs `seqs` through the decoder as one packed batch (each sequence with its own KV
/// blocks) and pools the final-norm hidden states: `[seqs.len(), n_embd]`.
fn decoder_pooled(
    m: &Model,
    pooling: Pooling,
    seqs: &[&[u32]],
    c: &mut Compute,
) -> Result<Vec<f32>, ModelError> {
    let d = m.config().n_embd;
    let want = match pooling {
        Pooling::LastToken => Logits::Last,
        Pooling::Mean | Pooling::Cls => Logits::All,
    };
    let mut tables = Vec::with_capacity(seqs.len());
    let mut next = 0u32;
    for s in seqs {
        let n = s.len().div_ceil(KV_BLOCK) as u32;
        tables.push((next..next + n).collect::<Vec<u32>>());
        next += n;
    }
    let mut kv = m.new_pool(next as usize, KV_BLOCK)?;
    let batch: Vec<SeqBatch> = seqs
        .iter()
        .zip(&tables)
        .map(|(tokens, table)| SeqBatch {
            tokens,
            pos: 0,
            table,
            logits: want,
        })
        .collect();
    let h = m.hidden_batch(&batch, &mut kv, c)?; // [n_out, n_embd]
                                                 // Where each sequence's returned rows are in `h`.
    let mut ranges = Vec::with_capacity(seqs.len());
    let mut row = 0;
    for s in seqs {
        let n = match want {
            Logits::Last => usize::from(!s.is_empty()),
            _ => s.len(),
        };
        ranges.push(row..row + n);
        row += n;
    }
    debug_assert_eq!(row * d, h.len());
    Ok(pooling.pool(&h, d, &ranges))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kv_groups_cover_every_sequence_in_order() {
        let (a, b, c) = ([1u32; 16], [1u32; 17], [1u32; 40]);
        // Blocks: 1, 2, 3 (and 0 for the empty one).
        let seqs: [&[u32]; 4] = [&a, &b, &[], &c];
        assert_eq!(kv_groups(&seqs, 100), vec![0..4]);
        assert_eq!(kv_groups(&seqs, 3), vec![0..3, 3..4]);
        // A sequence over the limit still runs, alone.
        assert_eq!(kv_groups(&seqs, 1), vec![0..1, 1..2, 2..3, 3..4]);
        assert!(kv_groups(&[], 4).is_empty());
    }

    #[test]
    fn eos_from_config() {
        assert_eq!(config_eos(&json!({"eos_token_id": 7})), Ok(Some(7)));
        assert_eq!(config_eos(&json!({"eos_token_id": [9, 7]})), Ok(Some(9)));
        assert_eq!(config_eos(&json!({"eos_token_id": null})), Ok(None));
        assert_eq!(config_eos(&json!({})), Ok(None));
        assert!(config_eos(&json!({"eos_token_id": -1})).is_err());
        assert!(config_eos(&json!({"eos_token_id": "x"})).is_err());
    }
}
