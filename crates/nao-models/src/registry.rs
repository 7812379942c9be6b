//! Architecture name → constructor. The one place that knows which architectures exist.

use crate::layers::{Compute, Decoder, KvCache, Loader};
use crate::{gemma3, llama, qwen2, ModelConfig, ModelError};
use nao_gguf::GgufFile;
use std::sync::Arc;

/// A loaded model ready to run.
pub struct Model {
    decoder: Decoder,
}

type Constructor = fn(&Loader, ModelConfig) -> Result<Decoder, ModelError>;

/// Supported architectures, by `general.architecture`.
pub const ARCHITECTURES: &[(&str, Constructor)] = &[
    ("qwen2", qwen2::load),
    ("llama", llama::load),
    ("gemma3", gemma3::load),
];

/// Loads the model in `file`, choosing the architecture from its metadata.
pub fn load_model(file: Arc<GgufFile>) -> Result<Model, ModelError> {
    let arch = file.architecture()?;
    let ctor = ARCHITECTURES
        .iter()
        .find(|(name, _)| *name == arch)
        .map(|(_, c)| *c)
        .ok_or_else(|| ModelError::UnsupportedArch(arch.to_string()))?;
    let cfg = ModelConfig::from_gguf(&file)?;
    let loader = Loader::new(file);
    Ok(Model {
        decoder: ctor(&loader, cfg)?,
    })
}

impl Model {
    pub fn config(&self) -> &ModelConfig {
        &self.decoder.cfg
    }

    /// A KV cache for `n_ctx` positions.
    pub fn new_cache(&self, n_ctx: usize) -> KvCache {
        let cfg = self.config();
        let (kd, vd) = cfg.kv_dims();
        KvCache::new(cfg.n_layer, n_ctx, kd, vd)
    }

    /// Runs `tokens` at positions `pos..pos+len`, appending to `cache`; returns logits
    /// `[n_out, n_vocab]` (all positions when `all_logits`, else the last one).
    pub fn forward(
        &self,
        tokens: &[u32],
        pos: usize,
        cache: &mut KvCache,
        c: &mut Compute,
        all_logits: bool,
    ) -> Result<Vec<f32>, ModelError> {
        self.decoder.forward(tokens, pos, cache, c, all_logits)
    }

    /// Weight bytes read per decoded token (for roofline figures).
    pub fn weight_bytes(&self) -> usize {
        self.decoder.weight_bytes()
    }
}
