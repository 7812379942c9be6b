//! A sentence-embedding model loaded from a Hugging Face / sentence-transformers
//! directory: `config.json` (architecture), `model.safetensors` (or a sharded index),
//! `modules.json` + `1_Pooling/config.json` (pooling, normalisation). Tokenization is the
//! caller's (nao-engine reads `tokenizer.json`); this type maps token ids to vectors.

use crate::bert::{Bert, BertConfig};
use crate::layers::{Compute, Loader, Naming};
use crate::pooling::{l2_normalize, read_json, read_st_modules, Pooling};
use crate::ModelError;
use nao_gguf::Safetensors;
use std::path::Path;
use std::sync::Arc;

/// An encoder plus its pooling: token ids in, one vector per sequence out.
pub struct SentenceEncoder {
    pub bert: Bert,
    pub pooling: Pooling,
    /// Whether vectors are scaled to unit length (a `Normalize` module).
    pub normalize: bool,
}

impl SentenceEncoder {
    /// Loads the model in `dir`.
    pub fn load(dir: &Path) -> Result<SentenceEncoder, ModelError> {
        let config = read_json(&dir.join("config.json"))?;
        let model_type = config
            .get("model_type")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        if model_type != "bert" {
            return Err(ModelError::UnsupportedArch(format!(
                "{model_type} (embedding models: bert)"
            )));
        }
        let cfg = BertConfig::from_hf(&config)?;
        let st = Arc::new(Safetensors::open(dir)?);
        let bert = Bert::load(&Loader::safetensors(st, Naming::AsStored), cfg)?;
        let (pooling, normalize) = read_st_modules(dir)?;
        Ok(SentenceEncoder {
            bert,
            pooling,
            normalize,
        })
    }

    /// Vector length.
    pub fn n_embd(&self) -> usize {
        self.bert.cfg.n_embd
    }

    /// Longest sequence (in tokens, special tokens included) the model accepts.
    pub fn max_tokens(&self) -> usize {
        self.bert.cfg.n_ctx_train
    }

    pub fn n_vocab(&self) -> usize {
        self.bert.cfg.n_vocab
    }

    /// One vector per sequence, `[seqs.len()][n_embd]`, computed as one packed batch.
    pub fn encode(&self, seqs: &[&[u32]], c: &mut Compute) -> Result<Vec<Vec<f32>>, ModelError> {
        let d = self.n_embd();
        let (h, ranges) = self.bert.forward(seqs, c)?; // [n_tokens, n_embd]
        let pooled = self.pooling.pool(&h, d, &ranges); // [n_seqs, n_embd]
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
