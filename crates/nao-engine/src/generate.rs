//! Single-sequence generation: prefill the prompt in one batch, then decode one token at a
//! time until the token budget, the context, or an end-of-generation token stops it.

use crate::sample::{top_logprobs, Sampler, SamplerConfig};
use crate::EngineError;
use nao_models::{Compute, Model};
use nao_tokenizer::{StreamDecoder, Tokenizer};
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenerateParams {
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// Context size (prompt + generated); the KV cache is sized for it.
    pub n_ctx: usize,
    pub sampler: SamplerConfig,
    /// How many top logprobs to record per step (0 = none).
    pub top_logprobs: usize,
    /// Stop at the model's end-of-generation tokens (EOS, end of turn).
    pub stop_at_eog: bool,
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-generation token was produced (it is included in `tokens`).
    Stop,
    /// `max_tokens` or the context size was reached.
    Length,
    /// The callback asked to stop.
    Cancelled,
}

/// The result of one generation.
#[derive(Debug, Clone)]
pub struct Generation {
    pub prompt_tokens: Vec<u32>,
    pub tokens: Vec<u32>,
    /// Per generated step: top (id, logprob) pairs of the raw logits.
    pub top_logprobs: Vec<Vec<(u32, f32)>>,
    pub text: String,
    pub finish: FinishReason,
    pub prefill_time: Duration,
    pub decode_time: Duration,
}

/// Generates from `prompt`. `on_text` receives each piece of text as soon as it forms
/// complete UTF-8 characters; returning `ControlFlow::Break` stops generation.
pub fn generate(
    model: &Model,
    tok: &Tokenizer,
    compute: &mut Compute,
    prompt: &[u32],
    params: &GenerateParams,
    mut on_text: impl FnMut(&str) -> ControlFlow<()>,
) -> Result<Generation, EngineError> {
    if prompt.is_empty() {
        return Err(EngineError::EmptyPrompt);
    }
    if prompt.len() >= params.n_ctx {
        return Err(EngineError::PromptTooLong {
            n_prompt_tokens: prompt.len(),
            n_ctx: params.n_ctx,
        });
    }
    let n_vocab = model.config().n_vocab;
    if let Some(&bad) = prompt.iter().find(|&&t| t as usize >= n_vocab) {
        return Err(nao_models::ModelError::TokenOutOfRange { id: bad, n_vocab }.into());
    }
    let mut sampler = Sampler::new(params.sampler.clone())?;
    let n_ctx = params.n_ctx.min(prompt.len() + params.max_tokens + 1);
    let mut cache = model.new_cache(n_ctx)?;
    let mut history = prompt.to_vec();
    let mut out = Generation {
        prompt_tokens: prompt.to_vec(),
        tokens: Vec::new(),
        top_logprobs: Vec::new(),
        text: String::new(),
        finish: FinishReason::Length,
        prefill_time: Duration::ZERO,
        decode_time: Duration::ZERO,
    };
    let mut decoder = StreamDecoder::new();

    let t0 = Instant::now();
    let mut logits = model.forward(prompt, 0, &mut cache, compute, false)?;
    out.prefill_time = t0.elapsed();
    let t1 = Instant::now();
    let mut pos = prompt.len();
    while out.tokens.len() < params.max_tokens {
        if params.top_logprobs > 0 {
            out.top_logprobs
                .push(top_logprobs(&logits, params.top_logprobs));
        }
        let id = sampler.sample(&mut logits, &history)?;
        out.tokens.push(id);
        history.push(id);
        let is_eog = params.stop_at_eog && tok.is_eog(id);
        if is_eog {
            out.finish = FinishReason::Stop;
            break;
        }
        let piece = decoder.push(tok, id);
        out.text.push_str(&piece);
        if !piece.is_empty() && on_text(&piece).is_break() {
            out.finish = FinishReason::Cancelled;
            break;
        }
        // The cache holds positions 0..n_ctx; the last sampled token needs no slot.
        if out.tokens.len() >= params.max_tokens || pos >= n_ctx {
            break;
        }
        logits = model.forward(&[id], pos, &mut cache, compute, false)?;
        pos += 1;
    }
    let rest = decoder.finish();
    if !rest.is_empty() {
        out.text.push_str(&rest);
        let _ = on_text(&rest);
    }
    out.decode_time = t1.elapsed();
    Ok(out)
}
