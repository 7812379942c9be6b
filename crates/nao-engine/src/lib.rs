//! nao-engine: turning a model into text.
//!
//! - [`api`]: the server/engine boundary ([`api::EngineHandle`], requests, events).
//! - [`sample`]: the sampler chain (penalties, top-k, top-p, min-p, temperature, draw).
//! - [`constraint`]: grammar masks for structured output (JSON schema, regex, Lark);
//!   [`gbnf`]: llama.cpp's GBNF grammars translated to Lark.
//! - [`engine`]: the serving engine thread (continuous batching over a paged KV pool) and
//!   [`engine::EngineClient`].
//! - [`scheduler`]: the pure scheduling state machine; [`blocks`]: KV blocks and the prefix
//!   cache; [`stop`]: stop strings over streamed text.
//! - [`generate`]: the single-sequence generation loop (prefill, decode, stop at EOG).
//! - [`manager`]: serving several models — [`manager::ModelManager`] loads them on demand
//!   and unloads the least recently used idle one ([`manager::lru`], a pure state
//!   machine); [`manager::SingleModel`] serves one engine. Both are [`api::ModelProvider`]s.
//! - [`embed`]: embeddings — [`embed::EmbedHandle`] (the server's side) and
//!   [`embed::Embedder`] (tokenizer + encoder); [`embed_worker`]: the thread that owns it.

pub mod api;
pub mod blocks;
pub mod constraint;
pub mod embed;
pub mod embed_worker;
pub mod engine;
pub mod gbnf;
pub mod generate;
pub mod manager;
pub mod sample;
pub mod scheduler;
pub mod stop;

pub use generate::{generate, FinishReason, GenerateParams, Generation};
pub use sample::{Sampler, SamplerConfig};

/// Errors from generation.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Model(#[from] nao_models::ModelError),
    #[error(transparent)]
    Sample(#[from] sample::SampleError),
    #[error("the prompt is empty: nothing to condition on")]
    EmptyPrompt,
    #[error("prompt has {n_prompt_tokens} tokens, the context size is {n_ctx}")]
    PromptTooLong {
        n_prompt_tokens: usize,
        n_ctx: usize,
    },
}
