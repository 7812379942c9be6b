//! Hyper-parameters, resolved once from GGUF metadata (`{arch}.*` keys) into typed fields
//! (from a Hugging Face `config.json`: [`crate::hf`]).

use crate::ModelError;
use nao_gguf::GgufFile;

/// Everything the architecture files need to know about a model's shape.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub arch: String,
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    /// Per-head size of q/k (`attention.key_length`, default n_embd / n_head).
    pub head_dim: usize,
    /// Per-head size of v (`attention.value_length`, default head_dim).
    pub head_dim_v: usize,
    pub n_ff: usize,
    pub n_vocab: usize,
    pub n_ctx_train: usize,
    pub rms_eps: f32,
    pub rope_base: f32,
    /// Linear RoPE position scale (1 / `rope.scaling.factor` when the type is linear).
    pub rope_freq_scale: f32,
    /// Per-frequency RoPE divisors computed from the config (Llama 3 scaling in
    /// `config.json`); GGUF files store them as the `rope_freqs.weight` tensor instead.
    pub rope_freqs: Option<Vec<f32>>,
    /// Number of rotated dimensions per head (`rope.dimension_count`, default head_dim).
    pub n_rot: usize,
    /// Sliding attention window, for architectures that have local layers.
    pub sliding_window: Option<usize>,
    /// Period of global layers among sliding-window ones (`attention.sliding_window_pattern`).
    pub sliding_window_pattern: Option<usize>,
    /// RoPE base of sliding-window layers (`rope.freq_base_swa`).
    pub rope_base_swa: Option<f32>,
}

/// Typed access to `{arch}.*` metadata.
pub(crate) struct Meta<'a> {
    pub file: &'a GgufFile,
    pub arch: &'a str,
}

impl Meta<'_> {
    fn key(&self, k: &str) -> String {
        format!("{}.{}", self.arch, k)
    }
    pub fn u32_opt(&self, k: &str) -> Result<Option<usize>, ModelError> {
        Ok(self.file.get_u32(&self.key(k))?.map(|v| v as usize))
    }
    pub fn u32_req(&self, k: &str) -> Result<usize, ModelError> {
        self.u32_opt(k)?
            .ok_or_else(|| ModelError::MissingKey(self.key(k)))
    }
    pub fn f32_opt(&self, k: &str) -> Result<Option<f32>, ModelError> {
        Ok(self.file.get_f32(&self.key(k))?)
    }
}

impl ModelConfig {
    /// Reads the common hyper-parameters; architecture files read their extras themselves.
    pub fn from_gguf(file: &GgufFile) -> Result<ModelConfig, ModelError> {
        let arch = file.architecture()?.to_string();
        let m = Meta { file, arch: &arch };
        let n_embd = m.u32_req("embedding_length")?;
        let n_head = m.u32_req("attention.head_count")?;
        let n_head_kv = m.u32_opt("attention.head_count_kv")?.unwrap_or(n_head);
        if n_embd == 0 || n_head == 0 || n_head_kv == 0 || n_head % n_head_kv != 0 {
            return Err(ModelError::BadConfig(format!(
                "n_embd {n_embd}, n_head {n_head}, n_head_kv {n_head_kv}"
            )));
        }
        let head_dim = m
            .u32_opt("attention.key_length")?
            .unwrap_or(n_embd / n_head);
        let head_dim_v = m.u32_opt("attention.value_length")?.unwrap_or(head_dim);
        let n_rot = m.u32_opt("rope.dimension_count")?.unwrap_or(head_dim);
        if head_dim == 0 || n_rot > head_dim || n_rot % 2 != 0 {
            return Err(ModelError::BadConfig(format!(
                "head_dim {head_dim}, rope dimension {n_rot}"
            )));
        }
        let n_vocab = match m.u32_opt("vocab_size")? {
            Some(v) => v,
            None => file
                .tensor("token_embd.weight")
                .and_then(|t| t.dims.get(1).copied())
                .ok_or_else(|| ModelError::MissingTensor("token_embd.weight".into()))?
                as usize,
        };
        let scaling_type = file
            .get_str(&format!("{arch}.rope.scaling.type"))?
            .unwrap_or("none");
        let rope_freq_scale = match (scaling_type, m.f32_opt("rope.scaling.factor")?) {
            ("linear", Some(f)) if f > 0.0 => 1.0 / f,
            _ => 1.0,
        };
        let cfg = ModelConfig {
            n_layer: m.u32_req("block_count")?,
            n_embd,
            n_head,
            n_head_kv,
            head_dim,
            head_dim_v,
            n_ff: m.u32_opt("feed_forward_length")?.unwrap_or(0),
            n_vocab,
            n_ctx_train: m.u32_opt("context_length")?.unwrap_or(2048),
            rms_eps: m
                .f32_opt("attention.layer_norm_rms_epsilon")?
                .unwrap_or(1e-6),
            rope_base: m.f32_opt("rope.freq_base")?.unwrap_or(10_000.0),
            rope_freq_scale,
            rope_freqs: None,
            n_rot,
            sliding_window: m.u32_opt("attention.sliding_window")?,
            sliding_window_pattern: m.u32_opt("attention.sliding_window_pattern")?,
            rope_base_swa: m.f32_opt("rope.freq_base_swa")?,
            arch,
        };
        if cfg.n_layer == 0 || cfg.n_vocab == 0 || cfg.sliding_window_pattern == Some(0) {
            return Err(ModelError::BadConfig(format!(
                "n_layer {}, n_vocab {}, sliding_window_pattern {:?}",
                cfg.n_layer, cfg.n_vocab, cfg.sliding_window_pattern
            )));
        }
        Ok(cfg)
    }

    /// K/V row sizes (all kv heads) per position.
    pub fn kv_dims(&self) -> (usize, usize) {
        (
            self.n_head_kv * self.head_dim,
            self.n_head_kv * self.head_dim_v,
        )
    }
}
