//! Architecture name → constructor. The one place that knows which architectures exist.

use crate::layers::{Compute, Decoder, KvCache, KvPool, Loader, Naming, SeqBatch};
use crate::{gemma3, hf, llama, qwen2, qwen3, ModelConfig, ModelError};
use nao_gguf::{GgufFile, Safetensors};
use std::path::Path;
use std::sync::Arc;

/// A loaded model ready to run.
pub struct Model {
    decoder: Decoder,
}

type Constructor = fn(&Loader, ModelConfig) -> Result<Decoder, ModelError>;

/// Supported architectures, by `general.architecture`.
pub const ARCHITECTURES: &[(&str, Constructor)] = &[
    ("qwen2", qwen2::load),
    ("qwen3", qwen3::load),
    ("llama", llama::load),
    ("gemma3", gemma3::load),
];

/// The constructor of architecture `arch`.
fn constructor(arch: &str) -> Result<Constructor, ModelError> {
    ARCHITECTURES
        .iter()
        .find(|(name, _)| *name == arch)
        .map(|(_, c)| *c)
        .ok_or_else(|| ModelError::UnsupportedArch(arch.to_string()))
}

/// Loads the model in `file`, choosing the architecture from its metadata.
pub fn load_model(file: Arc<GgufFile>) -> Result<Model, ModelError> {
    let ctor = constructor(file.architecture()?)?;
    let cfg = ModelConfig::from_gguf(&file)?;
    let loader = Loader::new(file);
    Ok(Model {
        decoder: ctor(&loader, cfg)?,
    })
}

/// Loads a Hugging Face decoder directory (`config.json` naming one of
/// [`hf::HF_ARCHITECTURES`], `model.safetensors` or a sharded index) through the same
/// architecture files as [`load_model`]. F32, F16 and BF16 weights are read in place from
/// the mapping (a misaligned tensor is copied once).
pub fn load_model_dir(dir: &Path) -> Result<Model, ModelError> {
    let hf::HfConfig { cfg, tied } = hf::read_config(dir)?;
    let ctor = constructor(&cfg.arch)?;
    let st = Arc::new(Safetensors::open(dir)?);
    let loader = Loader::safetensors(st, Naming::HfDecoder { tied });
    // Untied models must have their own head (GGUF files without one are tied by llama.cpp
    // convention, which the shared loading code follows).
    if !tied && !loader.has("output.weight") {
        return Err(ModelError::MissingTensor("lm_head.weight".into()));
    }
    Ok(Model {
        decoder: ctor(&loader, cfg)?,
    })
}

impl Model {
    pub fn config(&self) -> &ModelConfig {
        &self.decoder.cfg
    }

    /// A single-sequence KV cache for `n_ctx` positions.
    pub fn new_cache(&self, n_ctx: usize) -> Result<KvCache, ModelError> {
        let cfg = self.config();
        let (kd, vd) = cfg.kv_dims();
        KvCache::new(cfg.n_layer, n_ctx, kd, vd)
    }

    /// A paged KV pool of `n_blocks` blocks of `block_size` positions, for many sequences.
    pub fn new_pool(&self, n_blocks: usize, block_size: usize) -> Result<KvPool, ModelError> {
        let cfg = self.config();
        let (kd, vd) = cfg.kv_dims();
        KvPool::new(cfg.n_layer, n_blocks, block_size, kd, vd)
    }

    /// Bytes of KV cache one position costs.
    pub fn kv_bytes_per_position(&self) -> usize {
        let cfg = self.config();
        let (kd, vd) = cfg.kv_dims();
        KvPool::bytes_per_position(cfg.n_layer, kd, vd)
    }

    /// Runs a batch of sequences over a shared paged pool; see [`Decoder::forward_batch`].
    pub fn forward_batch(
        &self,
        seqs: &[SeqBatch],
        kv: &mut KvPool,
        c: &mut Compute,
    ) -> Result<Vec<f32>, ModelError> {
        self.decoder.forward_batch(seqs, kv, c)
    }

    /// [`Self::forward_batch`] without the LM head: final-norm hidden states
    /// `[n_out, n_embd]` (decoder embedders); see [`Decoder::hidden_batch`].
    pub fn hidden_batch(
        &self,
        seqs: &[SeqBatch],
        kv: &mut KvPool,
        c: &mut Compute,
    ) -> Result<Vec<f32>, ModelError> {
        self.decoder.hidden_batch(seqs, kv, c)
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
