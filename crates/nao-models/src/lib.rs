//! nao-models: model architectures built from shared layers.
//!
//! - [`config`]: hyper-parameters read once from GGUF metadata into typed fields.
//! - [`hf`]: Hugging Face decoder directories (`config.json`, tensor names,
//!   `generation_config.json`) resolved into the same config and names.
//! - [`layers`]: Linear, norms, attention, MLP, embedding, KV cache — the only compute code.
//! - one file per architecture: [`qwen2`], [`qwen3`], [`llama`], [`gemma3`].
//! - [`registry`]: architecture name → constructor; [`load_model`] (GGUF) and
//!   [`load_model_dir`] (Hugging Face directory).
//! - embeddings: [`bert`] (encoder), [`pooling`] (mean/CLS/last, L2), [`sentence`] (a
//!   sentence-transformers directory or GGUF embedder, BERT or decoder, as one
//!   [`sentence::SentenceEncoder`]).

pub mod bert;
pub mod config;
pub mod gemma3;
pub mod hf;
pub mod layers;
pub mod llama;
pub mod pooling;
pub mod qwen2;
pub mod qwen3;
pub mod registry;
pub mod sentence;

pub use config::ModelConfig;
pub use layers::{Compute, KvCache, KvPool, Logits, SeqBatch};
pub use registry::{load_model, load_model_dir, Model};

/// Errors from loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Gguf(#[from] nao_gguf::GgufError),
    #[error(transparent)]
    Safetensors(#[from] nao_gguf::SafetensorsError),
    #[error("{path}: {reason}")]
    Config { path: String, reason: String },
    #[error(transparent)]
    Kernel(#[from] nao_kernels::KernelError),
    #[error("unsupported architecture '{0}' (supported: qwen2, qwen3, llama, gemma3)")]
    UnsupportedArch(String),
    #[error("missing tensor '{0}'")]
    MissingTensor(String),
    #[error("missing metadata key '{0}'")]
    MissingKey(String),
    #[error("tensor '{tensor}' has shape {got:?}, expected {expected:?}")]
    BadShape {
        tensor: String,
        expected: Vec<u64>,
        got: Vec<u64>,
    },
    #[error("tensor '{tensor}' has type {dtype}, which nao cannot compute with yet")]
    UnsupportedType { tensor: String, dtype: String },
    #[error("invalid hyper-parameter: {0}")]
    BadConfig(String),
    #[error("token id {id} is outside the vocabulary (size {n_vocab})")]
    TokenOutOfRange { id: u32, n_vocab: usize },
    #[error("context full: {needed} positions needed, context size is {n_ctx}")]
    ContextFull { needed: usize, n_ctx: usize },
}
