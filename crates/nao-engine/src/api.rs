//! The boundary between the HTTP server and the engine thread.
//!
//! The server never touches the model: it renders prompts and tokenizes through
//! [`EngineHandle`], submits a [`Request`], and reads [`Event`]s from the returned
//! [`RequestHandle`]. Dropping the handle cancels the request (the engine notices a closed
//! channel within one step and frees the sequence's KV blocks). A fake engine implementing
//! the same trait drives the server's tests.

use crate::sample::SamplerConfig;
use serde_json::Value as Json;
use std::time::Duration;
use tokio::sync::mpsc;

/// One generation request: a tokenized prompt and how to continue it.
#[derive(Debug, Clone)]
pub struct Request {
    /// Prompt token ids (already validated against the vocabulary by the engine on submit).
    pub prompt: Vec<u32>,
    /// Most tokens to generate; the engine also stops at the context size.
    pub max_tokens: usize,
    pub sampler: SamplerConfig,
    /// Added to the raw logits before the sampler chain (OpenAI `logit_bias`).
    pub logit_bias: Vec<(u32, f32)>,
    /// `Some(k)`: report the chosen token's logprob and the `k` most likely alternatives.
    pub logprobs: Option<usize>,
    /// Stop strings: generation ends when the text contains one; it is not returned.
    pub stop: Vec<String>,
    /// Stop at the model's end-of-generation tokens (EOS, end of turn).
    pub stop_at_eog: bool,
    /// Constrain the output to a grammar (`response_format`, llama.cpp's `json_schema`).
    /// Compiled at submit time: an unsupported grammar is refused with
    /// [`SubmitError::BadGrammar`]. The output ends with [`Finish::Stop`] once the grammar
    /// is complete.
    pub constraint: Option<Grammar>,
}

/// What constrained output must match.
#[derive(Debug, Clone, PartialEq)]
pub enum Grammar {
    /// Any JSON object (OpenAI's `{"type": "json_object"}`).
    JsonObject,
    /// A value valid under this JSON schema (an object, or `true`).
    JsonSchema(Json),
    /// llguidance's Lark-like grammar syntax.
    Lark(String),
    /// A regular expression the whole output must match.
    Regex(String),
}

/// Why a sequence finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// End-of-generation token or a stop string.
    Stop,
    /// `max_tokens` or the context size was reached.
    Length,
}

impl Finish {
    /// The OpenAI `finish_reason` string.
    pub fn as_str(self) -> &'static str {
        match self {
            Finish::Stop => "stop",
            Finish::Length => "length",
        }
    }
}

/// Token counts of one finished request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// Prompt tokens whose KV came from the prefix cache instead of being computed.
    pub cached_tokens: usize,
}

/// The logprob of one generated token and, when asked, its most likely alternatives.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprob {
    /// The token's text (lossy UTF-8 of `bytes`).
    pub token: String,
    pub bytes: Vec<u8>,
    pub logprob: f32,
    /// `(token text, bytes, logprob)` of the top alternatives, most likely first.
    pub top: Vec<(String, Vec<u8>, f32)>,
}

/// What the engine sends back for a request, in order: zero or more `Text`, then exactly
/// one `Done` or `Error`.
#[derive(Debug, Clone)]
pub enum Event {
    /// New text. `text` never splits a UTF-8 character and never contains (part of) a stop
    /// string; it may be empty when only `logprobs` are new. `logprobs` holds one entry per
    /// token generated since the last event (empty unless the request asked for logprobs).
    Text {
        text: String,
        logprobs: Vec<TokenLogprob>,
    },
    /// The request finished normally.
    Done {
        finish: Finish,
        usage: Usage,
        /// Time from submission to the first generated token.
        time_to_first_token: Duration,
    },
    /// The request failed after it was accepted.
    Error(String),
}

/// The receiving end of one request. Dropping it cancels the request.
pub struct RequestHandle {
    pub events: mpsc::UnboundedReceiver<Event>,
}

/// Why a request was not accepted.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum SubmitError {
    /// The waiting queue is full: try again later (HTTP 503 with `Retry-After`).
    #[error("the server is busy: {waiting} requests are already waiting (limit {limit})")]
    QueueFull { waiting: usize, limit: usize },
    /// The prompt does not fit the context (HTTP 400).
    #[error(
        "the prompt has {n_prompt_tokens} tokens, more than the context size of {n_ctx} allows"
    )]
    PromptTooLong {
        n_prompt_tokens: usize,
        n_ctx: usize,
    },
    /// The prompt is empty (HTTP 400).
    #[error("the prompt is empty")]
    EmptyPrompt,
    /// A token id is outside the vocabulary (HTTP 400).
    #[error("token id {id} is outside the vocabulary (size {n_vocab})")]
    TokenOutOfRange { id: i64, n_vocab: usize },
    /// Invalid sampling parameters (HTTP 400).
    #[error("{0}")]
    BadParams(String),
    /// The grammar or JSON schema cannot be compiled; the message names the unsupported
    /// feature or the syntax error (HTTP 400).
    #[error("invalid grammar: {0}")]
    BadGrammar(String),
    /// The engine thread has stopped (HTTP 503).
    #[error("the engine has shut down")]
    ShutDown,
}

/// Facts about the served model.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    /// The id clients send as `model` (file stem unless `--alias` says otherwise).
    pub id: String,
    /// Context size of one sequence.
    pub n_ctx: usize,
    pub n_vocab: usize,
    /// Unix time the model was loaded (for `created`).
    pub created: u64,
    /// What model listings show (Ollama's `/api/tags` and `/api/show`); every field has an
    /// "unknown" default, so engines that know less still build one.
    pub details: ModelDetails,
}

/// Descriptive facts about the served model. None of them changes how requests run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelDetails {
    /// `general.architecture` (`gemma3`, `qwen2`, …); empty when unknown.
    pub architecture: String,
    /// Weights in the file (sum of tensor element counts); 0 when unknown.
    pub parameter_count: u64,
    /// Quantization as llama.cpp names it (`Q4_K_M`, `F16`); empty when unknown.
    pub quantization: String,
    /// Size of the model file in bytes; 0 when unknown.
    pub file_size: u64,
    /// Unix time the model file was last modified; 0 when unknown.
    pub file_modified: u64,
    /// Context length the model was trained with (the served `n_ctx` may be smaller).
    pub n_ctx_train: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    /// Source of the chat template in use (Jinja), if the model has one.
    pub chat_template: Option<String>,
}

/// Engine counters for `/metrics` and `/health`.
#[derive(Debug, Clone, Copy, Default)]
pub struct EngineStats {
    /// Requests accepted and waiting for their first step.
    pub waiting: usize,
    /// Sequences being computed.
    pub running: usize,
    pub kv_blocks_total: usize,
    pub kv_blocks_used: usize,
    /// Prompt tokens served from the prefix cache, since start.
    pub prefix_cache_hit_tokens: u64,
    /// Prompt tokens processed (computed or cached), since start.
    pub prompt_tokens: u64,
    /// Tokens generated, since start.
    pub generated_tokens: u64,
    /// Sequences preempted (and recomputed later) for lack of KV blocks, since start.
    pub preemptions: u64,
}

/// Errors of the prompt-building calls.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum PromptError {
    /// Messages the chat template cannot render (HTTP 400).
    #[error("{0}")]
    BadMessages(String),
    /// The model has no chat template (HTTP 400 for chat requests).
    #[error("the model has no chat template; use /v1/completions")]
    NoTemplate,
}

/// What the server needs from an engine. Implemented by the real engine and by test fakes.
pub trait EngineHandle: Send + Sync + 'static {
    fn model_info(&self) -> ModelInfo;

    /// Renders OpenAI chat `messages` (a JSON array, already checked to be one) and optional
    /// `tools` through the model's chat template, ending with the assistant's turn opening.
    fn render_chat(&self, messages: &Json, tools: Option<&Json>) -> Result<String, PromptError>;

    /// Tokenizes `text`. `add_special`: add BOS/EOS as the model expects (raw completions);
    /// rendered chat prompts already hold their special tokens as text, which are parsed
    /// either way.
    fn tokenize(&self, text: &str, add_special: bool) -> Vec<u32>;

    /// Queues a request. Checks that happen here (queue bound, prompt length against the
    /// context, token ids, sampler parameters) fail at once, before any compute.
    fn submit(&self, req: Request) -> Result<RequestHandle, SubmitError>;

    fn stats(&self) -> EngineStats;
}

/// One model a [`ModelProvider`] can serve, loaded or not.
#[derive(Debug, Clone)]
pub struct ModelEntry {
    /// From the running engine when loaded; else what the file's metadata says, with
    /// `n_ctx` the context it would be served with and `created` the file's time.
    pub info: ModelInfo,
    pub loaded: bool,
}

/// Why no engine could be had for a model name.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum AcquireError {
    /// No loaded or loadable model has this name (HTTP 404).
    #[error("the model `{0}` does not exist")]
    NotFound(String),
    /// The request names no model and the server has no default one (HTTP 400).
    #[error("`model` is required: this server serves several models (see /v1/models)")]
    NoDefault,
    /// The model would not fit in the memory available (HTTP 503); the message says what
    /// it needs, what is free and which context would fit.
    #[error("{0}")]
    OutOfMemory(String),
    /// Loading failed: a damaged file, an unsupported architecture (HTTP 500).
    #[error("cannot load the model `{name}`: {reason}")]
    LoadFailed { name: String, reason: String },
    /// Every loaded model stayed busy (or too many requests wait for a load) for longer
    /// than the wait limit (HTTP 503 with `Retry-After`).
    #[error("the server is busy: {0}")]
    Busy(String),
}

/// What the server needs to route requests by their `model` field: the engines of the
/// models it serves, loaded on demand. Implemented by [`crate::manager::ModelManager`]
/// (several models, least recently used unloaded first) and
/// [`crate::manager::SingleModel`] (one engine, the tests' fakes).
pub trait ModelProvider: Send + Sync + 'static {
    /// The engine serving `name` (`None` or empty: the default model) for one request.
    /// The model is not unloaded while the returned handle or a clone of it lives, so the
    /// caller holds it until the response is complete. Accepts the id as listed, and a
    /// name without its `:latest` tag. May block for seconds (loading, or waiting for a busy
    /// model to finish before it is unloaded): call it from a blocking thread.
    fn acquire(&self, name: Option<&str>)
        -> Result<std::sync::Arc<dyn EngineHandle>, AcquireError>;

    /// The model `name` refers to (as [`ModelProvider::acquire`] resolves it), without
    /// loading it. May read model files: call it from a blocking thread.
    fn describe(&self, name: Option<&str>) -> Result<ModelEntry, AcquireError>;

    /// Every model: the default one first, then the others by id, loaded or not. May read
    /// model files: call it from a blocking thread.
    fn list(&self) -> Vec<ModelEntry>;

    /// The models loaded now, most recently used first. Cheap (no I/O).
    fn loaded(&self) -> Vec<ModelInfo>;

    /// Unloads the loaded model `name` once no request holds it (at once when idle), as
    /// Ollama's `keep_alive: 0` asks; a request for it before then keeps it loaded.
    /// Returns whether such a model was loaded. Never blocks.
    fn unload(&self, name: &str) -> bool;

    /// Engine counters over every model: counters (`*_tokens`, `preemptions`) include the
    /// models unloaded since start, so they never go down; gauges are of the loaded ones.
    fn stats(&self) -> EngineStats;
}
