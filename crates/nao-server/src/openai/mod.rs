//! The OpenAI endpoints: `/v1/chat/completions`, `/v1/completions`, `/v1/models`.
//!
//! A handler parses the body, gets the engine of the model its `model` field names from
//! the [`ModelProvider`](nao_engine::api::ModelProvider) (loading it first if needed, on a
//! blocking thread), validates the rest ([`request`]), builds the prompt through that
//! engine, submits one engine request per choice (`n` × prompts, seeds `seed`, `seed+1`,
//! …) and either collects the events into one object or hands them to an SSE body
//! ([`crate::stream`]). Every engine receiver lives inside [`Events`]; dropping it (the
//! handler future or the stream body going away with the client) cancels every request.
//!
//! Chat requests with tools (`tools.rs`: validation, and a grammar when a call is forced)
//! or with reasoning extraction on get their choices' text parsed by [`output`] into
//! reasoning, content and tool calls, the same way streamed or not.

pub mod output;
pub mod prompt;
pub mod request;
pub mod response;
pub mod tools;

use crate::error::ApiError;
use crate::metrics::{LogTokens, LoggedByStream, Metrics};
use crate::stream::SseStream;
use crate::AppState;
use axum::body::{Body, Bytes};
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use nao_engine::api::{EngineHandle, Event, ModelEntry, Request, RequestHandle, Usage};
use nao_tokenizer::tools::reasoning::ReasoningSplitter;
use nao_tokenizer::tools::ToolFormat;
use output::{OutputSpec, ReasoningFormat};
use prompt::Prompt;
use request::GenParams;
use response::{Choice, Kind, Meta};
use serde_json::{json, Value};
use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc::UnboundedReceiver;

/// A random 64-bit value without a `rand` dependency: std's per-process random hash keys,
/// a counter and the clock, mixed by SipHash. Good enough for ids and default seeds,
/// which need to differ, not to be secret.
pub fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    h.write_u64(nanos);
    h.finish()
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}-{:016x}{:08x}", random_u64(), random_u64() as u32)
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Maps axum's body rejection to our error shape (its own is plain text).
pub(crate) fn body_bytes(
    body: Result<Bytes, BytesRejection>,
    limit: usize,
) -> Result<Bytes, ApiError> {
    body.map_err(|rej| {
        if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::BodyTooLarge { limit }
        } else {
            ApiError::bad_body(format!(
                "could not read the request body: {}",
                rej.body_text()
            ))
        }
    })
}

/// The running requests of one HTTP request, read as one merged event stream.
pub struct Events {
    seqs: Vec<Seq>,
    /// Round-robin start, so a fast choice cannot starve the others.
    next: usize,
    metrics: Arc<Metrics>,
    /// Prompt tokens submitted, each prompt counted once (for the log line of a stream
    /// that ends before the engine reports usage).
    pub prompt_tokens: usize,
    /// The model's engine: holding it keeps the model loaded until the response is done.
    _engine: Arc<dyn EngineHandle>,
}

struct Seq {
    prompt_idx: usize,
    rx: Option<UnboundedReceiver<Event>>,
    submitted: Instant,
    first_token: Option<Instant>,
}

impl Events {
    /// Submits every request; if one is refused, the ones already queued are cancelled
    /// (their handles dropped) and the refusal is returned.
    pub(crate) fn submit(
        state: &AppState,
        engine: &Arc<dyn EngineHandle>,
        reqs: Vec<(usize, Request)>,
        prompt_param: &str,
    ) -> Result<Events, ApiError> {
        let mut seqs = Vec::with_capacity(reqs.len());
        let mut prompt_tokens = 0;
        for (prompt_idx, req) in reqs {
            if seqs.last().is_none_or(|s: &Seq| s.prompt_idx != prompt_idx) {
                prompt_tokens += req.prompt.len();
            }
            let RequestHandle { events } = engine
                .submit(req)
                .map_err(|e| ApiError::from_submit(e, prompt_param, state.cfg.retry_after_secs))?;
            seqs.push(Seq {
                prompt_idx,
                rx: Some(events),
                submitted: Instant::now(),
                first_token: None,
            });
        }
        Ok(Events {
            seqs,
            next: 0,
            metrics: state.metrics.clone(),
            prompt_tokens,
            _engine: Arc::clone(engine),
        })
    }

    pub fn n_choices(&self) -> usize {
        self.seqs.len()
    }

    pub fn prompt_idx(&self, choice: usize) -> usize {
        self.seqs[choice].prompt_idx
    }

    /// Cancels everything still running.
    pub fn cancel(&mut self) {
        for s in &mut self.seqs {
            s.rx = None;
        }
    }

    /// The next event of any choice, as `(choice index, event)`; `None` once every choice
    /// has finished. A channel that closes without `Done`/`Error` becomes an `Error`.
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<(usize, Event)>> {
        let n = self.seqs.len();
        let mut open = false;
        for k in 0..n {
            let i = (self.next + k) % n;
            let seq = &mut self.seqs[i];
            let Some(rx) = seq.rx.as_mut() else { continue };
            open = true;
            let ev = match rx.poll_recv(cx) {
                Poll::Pending => continue,
                Poll::Ready(Some(ev)) => ev,
                Poll::Ready(None) => {
                    Event::Error("the engine ended the request without finishing it".into())
                }
            };
            self.next = (i + 1) % n;
            let now = Instant::now();
            match &ev {
                Event::Text { text, logprobs } => {
                    if seq.first_token.is_none() && !(text.is_empty() && logprobs.is_empty()) {
                        seq.first_token = Some(now);
                        self.metrics.ttft.observe(now - seq.submitted);
                    }
                }
                Event::Done { usage, .. } => {
                    let first = *seq.first_token.get_or_insert(now);
                    if usage.completion_tokens > 1 {
                        self.metrics
                            .tpot
                            .observe((now - first) / (usage.completion_tokens as u32 - 1));
                    }
                    seq.rx = None;
                }
                Event::Error(_) => seq.rx = None,
            }
            return Poll::Ready(Some((i, ev)));
        }
        if open {
            Poll::Pending
        } else {
            Poll::Ready(None)
        }
    }

    pub async fn next(&mut self) -> Option<(usize, Event)> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }
}

/// Sums usage over choices, counting each prompt's tokens once.
#[derive(Debug, Default)]
pub struct UsageSum {
    pub total: Usage,
    seen_prompts: Vec<usize>,
}

impl UsageSum {
    pub fn add(&mut self, prompt_idx: usize, u: Usage) {
        if !self.seen_prompts.contains(&prompt_idx) {
            self.seen_prompts.push(prompt_idx);
            self.total.prompt_tokens += u.prompt_tokens;
            self.total.cached_tokens += u.cached_tokens;
        }
        self.total.completion_tokens += u.completion_tokens;
    }
}

/// A future that resolves when the server starts ending in-flight requests (shutdown
/// drain over). Never resolves if nobody can ever send the signal.
pub fn abort_signal(state: &AppState) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    let mut rx = state.abort.clone();
    Box::pin(async move {
        if rx.wait_for(|v| *v).await.is_ok() {
            return;
        }
        std::future::pending::<()>().await
    })
}

fn engine_requests(prompts: Vec<Vec<u32>>, p: &GenParams) -> Vec<(usize, Request)> {
    let mut out = Vec::with_capacity(prompts.len() * p.n);
    let mut choice_seed = p.sampler.seed;
    for (prompt_idx, prompt) in prompts.into_iter().enumerate() {
        for _ in 0..p.n {
            let mut sampler = p.sampler.clone();
            sampler.seed = choice_seed;
            choice_seed = choice_seed.wrapping_add(1);
            out.push((
                prompt_idx,
                Request {
                    prompt: prompt.clone(),
                    max_tokens: p.max_tokens,
                    sampler,
                    logit_bias: p.logit_bias.clone(),
                    logprobs: p.logprobs,
                    stop: p.stop.clone(),
                    stop_at_eog: p.stop_at_eog,
                    constraint: p.constraint.clone(),
                },
            ));
        }
    }
    out
}

/// Runs tokenization-like work off the async threads: a multi-megabyte prompt takes long
/// enough to stall other connections, loading a model far longer.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Internal(format!("request preparation failed: {e}")))?
}

/// The `model` field of a request body: `None` when absent, null or empty.
pub(crate) fn requested_model(
    obj: &serde_json::Map<String, Value>,
) -> Result<Option<String>, ApiError> {
    Ok(request::Fields(obj)
        .str("model")?
        .filter(|m| !m.is_empty())
        .map(str::to_string))
}

/// The engine of the model `model` names (`None`: the default model), loaded first when
/// needed — on a blocking thread, so other requests go on meanwhile. The handle keeps the
/// model loaded: hold it until the response is complete.
pub(crate) async fn engine_for(
    state: &AppState,
    model: Option<String>,
) -> Result<Arc<dyn EngineHandle>, ApiError> {
    let models = state.models.clone();
    let retry = state.cfg.retry_after_secs;
    blocking(move || {
        models
            .acquire(model.as_deref())
            .map_err(|e| ApiError::from_acquire(e, retry))
    })
    .await
}

/// `POST /v1/chat/completions`.
pub async fn chat_completions(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    handle(state, body, Kind::Chat)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// `POST /v1/completions`.
pub async fn completions(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    handle(state, body, Kind::Completion)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn handle(
    state: Arc<AppState>,
    body: Result<Bytes, BytesRejection>,
    kind: Kind,
) -> Result<Response, ApiError> {
    let start = Instant::now();
    let body = body_bytes(body, state.cfg.max_body_bytes)?;
    let obj = request::parse_object(&body)?;
    drop(body);
    let engine = engine_for(&state, requested_model(&obj)?).await?;
    let info = engine.model_info();
    let mut output = OutputSpec::plain();
    let (prompts, params, prompt_param) = match kind {
        Kind::Chat => {
            let mut req = prompt::parse_chat(&obj, &state.cfg, &info)?;
            drop(obj);
            let format = ToolFormat::detect(
                info.details.chat_template.as_deref(),
                &info.details.architecture,
            );
            if let Some(g) = tools::call_grammar(&req.tools, format.syntax()) {
                if req.params.constraint.is_some() {
                    return Err(ApiError::bad(
                        "tool_choice",
                        "tool_choice forces a call, which cannot be combined with \
                         response_format, json_schema or grammar",
                    ));
                }
                req.params.constraint = Some(g);
            }
            if req.tools.parse_calls() {
                output.tools = Some((format, req.tools.names()));
            }
            let engine = engine.clone();
            let (messages, tools) = (req.messages, req.tools.for_template());
            let (ids, opens_thinking) = blocking(move || {
                let text = engine.render_chat(&messages, tools.as_ref())?;
                let opens = ReasoningSplitter::prompt_opens_thinking(&text);
                Ok((engine.tokenize(&text, false), opens))
            })
            .await?;
            if state.cfg.reasoning_format == ReasoningFormat::DeepSeek {
                output.reasoning = Some(opens_thinking);
            }
            (vec![ids], req.params, "messages")
        }
        Kind::Completion => {
            let req = prompt::parse_completion(&obj, &state.cfg, &info)?;
            drop(obj);
            let engine = engine.clone();
            let prompts = req.prompts;
            let ids = blocking(move || {
                Ok(prompts
                    .into_iter()
                    .map(|p| match p {
                        Prompt::Text(t) => engine.tokenize(&t, true),
                        Prompt::Tokens(ids) => ids,
                    })
                    .collect::<Vec<_>>())
            })
            .await?;
            (ids, req.params, "prompt")
        }
    };
    let meta = Meta {
        kind,
        id: new_id(match kind {
            Kind::Chat => "chatcmpl",
            Kind::Completion => "cmpl",
        }),
        created: unix_now(),
        model: info.id,
        logprobs: params.logprobs.is_some(),
        include_usage: params.stream && params.include_usage,
    };
    let events = Events::submit(
        &state,
        &engine,
        engine_requests(prompts, &params),
        prompt_param,
    )?;
    if params.stream {
        let path = match kind {
            Kind::Chat => "/v1/chat/completions",
            Kind::Completion => "/v1/completions",
        };
        let stream = SseStream::new(meta, events, &output, abort_signal(&state), path, start);
        let mut resp = Response::new(Body::from_stream(stream));
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        // Reverse proxies (nginx) otherwise buffer the stream and defeat it.
        h.insert("x-accel-buffering", HeaderValue::from_static("no"));
        resp.extensions_mut().insert(LoggedByStream);
        return Ok(resp);
    }
    let (choices, usage) = collect(events, &output, &state).await?;
    let body = response::full_response(&meta, &choices, usage).to_string();
    let mut resp = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response();
    resp.extensions_mut().insert(LogTokens {
        prompt: usage.prompt_tokens,
        completion: usage.completion_tokens,
    });
    Ok(resp)
}

/// Reads every choice to its end for a non-streamed response.
async fn collect(
    mut events: Events,
    output: &OutputSpec,
    state: &AppState,
) -> Result<(Vec<Choice>, Usage), ApiError> {
    let mut choices = vec![Choice::default(); events.n_choices()];
    let mut parsers: Vec<_> = (0..choices.len()).map(|_| output.parser()).collect();
    let mut usage = UsageSum::default();
    let mut abort = abort_signal(state);
    loop {
        let next = tokio::select! {
            next = events.next() => next,
            _ = &mut abort => {
                return Err(ApiError::Unavailable("the server is shutting down".into()))
            }
        };
        let Some((i, ev)) = next else { break };
        match ev {
            Event::Text { text, logprobs } => {
                match &mut parsers[i] {
                    Some(p) => choices[i].take(p.push(&text)),
                    None => choices[i].text.push_str(&text),
                }
                choices[i].logprobs.extend(logprobs);
            }
            Event::Done {
                finish, usage: u, ..
            } => {
                if let Some(p) = &mut parsers[i] {
                    choices[i].take(p.finish());
                }
                choices[i].finish = Some(finish);
                usage.add(events.prompt_idx(i), u);
            }
            // The engine accepted the request and then failed it: a real internal fault.
            Event::Error(msg) => return Err(ApiError::Internal(msg)),
        }
    }
    Ok((choices, usage.total))
}

/// One `/v1/models` entry. `loaded` (an extension OpenAI clients ignore) says whether the
/// model is in memory now or is loaded on its first request.
pub(crate) fn model_json(m: &ModelEntry) -> Value {
    json!({
        "id": m.info.id,
        "object": "model",
        "created": m.info.created,
        "owned_by": "nao",
        "context_length": m.info.n_ctx,
        "loaded": m.loaded,
    })
}

/// Every chat model the provider serves, loaded or loadable (reads model files: on a
/// blocking thread).
pub(crate) async fn chat_models(state: &AppState) -> Result<Vec<ModelEntry>, ApiError> {
    let models = state.models.clone();
    blocking(move || Ok(models.list())).await
}

/// `GET /v1/models`.
pub async fn list_models(State(state): State<Arc<AppState>>) -> Response {
    match chat_models(&state).await {
        Ok(list) => {
            let data: Vec<Value> = list.iter().map(model_json).collect();
            json_response(&json!({"object": "list", "data": data}))
        }
        Err(e) => e.into_response(),
    }
}

/// `GET /v1/models/{id}`. Model ids may contain `/` (`org/name`), hence the wildcard.
pub async fn get_model(
    State(state): State<Arc<AppState>>,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    let id = match id {
        Ok(Path(id)) => id,
        Err(e) => return ApiError::bad_body(e.body_text()).into_response(),
    };
    let models = state.models.clone();
    let retry = state.cfg.retry_after_secs;
    let entry = blocking(move || {
        models
            .describe(Some(&id))
            .map_err(|e| ApiError::from_acquire(e, retry))
    });
    match entry.await {
        Ok(m) => json_response(&model_json(&m)),
        Err(e) => e.into_response(),
    }
}

pub fn json_response(v: &Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}
