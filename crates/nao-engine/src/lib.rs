//! nao-engine: turning a model into text.
//!
//! - [`api`]: the server/engine boundary ([`api::EngineHandle`], requests, events).
//! - [`sample`]: the sampler chain (penalties, top-k, top-p, min-p, temperature, draw).
//! - [`generate`]: the single-sequence generation loop (prefill, decode, stop at EOG).

pub mod api;
pub mod generate;
pub mod sample;

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
