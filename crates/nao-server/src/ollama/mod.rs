//! The Ollama API: `/api/generate`, `/api/chat`, `/api/tags`, `/api/show`, `/api/ps`,
//! `/api/version`, and `/` (the "is it running" probe).
//!
//! Same plumbing as the OpenAI side, different dialect: bodies are parsed in
//! [`request`], prompts go through the engine's chat template and tokenizer, one engine
//! request is submitted through [`Events`] (so time-to-first-token and per-token metrics,
//! the request counters and the log line are shared), and the answer is either one JSON
//! object (`stream: false`) or newline-delimited JSON ([`stream`]). Errors are Ollama's
//! `{"error": "message"}` with the status the OpenAI side would use.
//!
//! Choices where Ollama's behaviour cannot be copied exactly:
//! - `/api/generate` with `raw: false` renders `system` + `prompt` as a two-message chat
//!   through the model's Jinja template (Ollama uses its Go template the same way); with
//!   `raw: true` the prompt is tokenized as it is and `system` is ignored, as in Ollama.
//!   A model without a chat template is treated as raw (Ollama's default template is
//!   the bare prompt).
//! - `context` is accepted (token ids prepended to the prompt) and returned on the last
//!   line of non-raw generations as prompt ids + the answer re-tokenized.
//! - A request without a prompt (or with no messages) answers `done_reason: "load"` at
//!   once, as Ollama does when asked to load a model; `keep_alive: 0` does not unload it.
//! - `load_duration` is the prompt preparation time (the model is loaded at start-up);
//!   `prompt_eval_duration` is submission to first token, including any queueing.

pub mod request;
pub mod response;
pub mod stream;

use crate::error::ApiError;
use crate::metrics::{LogTokens, LoggedByStream};
use crate::openai::request::parse_object;
use crate::openai::{abort_signal, blocking, body_bytes, json_response, Events};
use crate::AppState;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use nao_engine::api::{Event, PromptError, Request};
use nao_tokenizer::tools::ToolFormat;
use request::Params;
use response::Kind;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Instant;
use stream::{Clock, ContextOut, FinishInfo, NdjsonStream};

/// Ollama's streaming content type.
const NDJSON: &str = "application/x-ndjson";

/// `POST /api/generate`.
pub async fn generate(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    handle_generate(state, body)
        .await
        .unwrap_or_else(ApiError::into_ollama_response)
}

/// `POST /api/chat`.
pub async fn chat(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    handle_chat(state, body)
        .await
        .unwrap_or_else(ApiError::into_ollama_response)
}

async fn handle_generate(
    state: Arc<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let start = Instant::now();
    let body = body_bytes(body, state.cfg.max_body_bytes)?;
    let obj = parse_object(&body)?;
    drop(body);
    let info = state.engine.model_info();
    let req = request::parse_generate(&obj, &state.cfg, &info)?;
    drop(obj);
    if req.prompt.is_empty() && req.context.is_empty() {
        let line = response::load_line(Kind::Generate, &req.model);
        return Ok(single(&line, req.params.stream));
    }
    let engine = state.engine.clone();
    let (prompt, system, raw, context) = (req.prompt, req.system, req.raw, req.context);
    let (ids, templated) = blocking(move || {
        let has_context = !context.is_empty();
        let mut ids = context;
        let rendered = if raw {
            None
        } else {
            let mut messages = Vec::with_capacity(2);
            if let Some(s) = system {
                messages.push(json!({"role": "system", "content": s}));
            }
            messages.push(json!({"role": "user", "content": prompt}));
            match engine.render_chat(&Value::Array(messages), None) {
                Ok(text) => Some(text),
                Err(PromptError::NoTemplate) => None,
                Err(e) => return Err(e.into()),
            }
        };
        let templated = rendered.is_some();
        match rendered {
            Some(text) => {
                let mut new = engine.tokenize(&text, false);
                // The template starts a conversation with BOS; after a context (which
                // already starts with one) a second BOS mid-sequence only confuses the
                // model.
                let bos = engine.tokenize("", true);
                if has_context && !bos.is_empty() && new.starts_with(&bos) {
                    new.drain(..bos.len());
                }
                ids.extend(new);
            }
            // Raw text: BOS as the model expects, unless a context already began the
            // sequence.
            None => ids.extend(engine.tokenize(&prompt, !has_context)),
        }
        Ok((ids, templated))
    })
    .await?;
    // Ollama returns no context for raw prompts.
    let context = templated.then(|| ContextOut {
        engine: state.engine.clone(),
        prompt: ids.clone(),
    });
    run(
        state,
        Kind::Generate,
        req.model,
        ids,
        req.params,
        start,
        context,
    )
    .await
}

async fn handle_chat(
    state: Arc<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let start = Instant::now();
    let body = body_bytes(body, state.cfg.max_body_bytes)?;
    let obj = parse_object(&body)?;
    drop(body);
    let info = state.engine.model_info();
    let req = request::parse_chat(&obj, &state.cfg, &info)?;
    drop(obj);
    if req.messages.is_empty() {
        let line = response::load_line(Kind::Chat, &req.model);
        return Ok(single(&line, req.params.stream));
    }
    let mut params = req.params;
    if let Some(Value::Array(list)) = &req.tools {
        let names = list
            .iter()
            .filter_map(|t| t["function"]["name"].as_str().map(String::from))
            .collect();
        let format = ToolFormat::detect(
            info.details.chat_template.as_deref(),
            &info.details.architecture,
        );
        params.tool_calls = Some((format, names));
    }
    let engine = state.engine.clone();
    let (messages, tools) = (req.messages, req.tools);
    let ids = blocking(move || {
        let text = engine.render_chat(&Value::Array(messages), tools.as_ref())?;
        Ok(engine.tokenize(&text, false))
    })
    .await?;
    run(state, Kind::Chat, req.model, ids, params, start, None).await
}

/// Submits one engine request and answers with NDJSON or one object.
async fn run(
    state: Arc<AppState>,
    kind: Kind,
    model: String,
    ids: Vec<u32>,
    params: Params,
    start: Instant,
    context: Option<ContextOut>,
) -> Result<Response, ApiError> {
    let (prompt_param, path) = match kind {
        Kind::Generate => ("prompt", "/api/generate"),
        Kind::Chat => ("messages", "/api/chat"),
    };
    let req = Request {
        prompt: ids,
        max_tokens: params.max_tokens,
        sampler: params.sampler,
        logit_bias: Vec::new(),
        logprobs: params.logprobs,
        stop: params.stop,
        stop_at_eog: true,
        // `format` is refused while parsing (see `request.rs`).
        constraint: None,
    };
    let submitted = Instant::now();
    let mut events = Events::submit(&state, vec![(0, req)], prompt_param)?;
    let clock = Clock { start, submitted };
    let want_logprobs = params.logprobs.is_some();
    let tool_calls = params.tool_calls.clone();
    if params.stream {
        let stream = NdjsonStream::new(
            kind,
            model,
            events,
            abort_signal(&state),
            want_logprobs,
            context,
            clock,
            path,
        )
        .with_tool_parser(tool_calls.map(|(f, names)| f.parser(&names)));
        let mut resp = Response::new(Body::from_stream(stream));
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(NDJSON));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        // Reverse proxies (nginx) otherwise buffer the stream and defeat it.
        h.insert("x-accel-buffering", HeaderValue::from_static("no"));
        resp.extensions_mut().insert(LoggedByStream);
        return Ok(resp);
    }

    let mut text = String::new();
    let mut logprobs = Vec::new();
    let mut summary = None;
    let mut abort = abort_signal(&state);
    loop {
        let next = tokio::select! {
            next = events.next() => next,
            _ = &mut abort => {
                return Err(ApiError::Unavailable("the server is shutting down".into()))
            }
        };
        let Some((_, ev)) = next else { break };
        match ev {
            Event::Text {
                text: t,
                logprobs: l,
            } => {
                text.push_str(&t);
                logprobs.extend(l);
            }
            Event::Done {
                finish,
                usage,
                time_to_first_token,
            } => {
                summary = Some(clock.summary(FinishInfo {
                    finish,
                    usage,
                    time_to_first_token,
                }))
            }
            // The engine accepted the request and then failed it: a real internal fault.
            Event::Error(msg) => return Err(ApiError::Internal(msg)),
        }
    }
    let summary = summary.ok_or_else(|| {
        ApiError::Internal("the engine ended the request without finishing it".into())
    })?;
    let context = context.map(|c| c.ids(&text));
    let lps = want_logprobs.then_some(logprobs.as_slice());
    let (content, calls) = match &tool_calls {
        Some((format, names)) => nao_tokenizer::tools::parse(*format, names, &text),
        None => (text, Vec::new()),
    };
    let mut body = response::final_line(kind, &model, &content, lps, &summary, context);
    if !calls.is_empty() {
        body["message"]["tool_calls"] = response::tool_calls_json(&calls);
    }
    let mut resp = json_response(&body);
    resp.extensions_mut().insert(LogTokens {
        prompt: summary.usage.prompt_tokens,
        completion: summary.usage.completion_tokens,
    });
    Ok(resp)
}

/// One object, as an NDJSON body of one line when the client asked for a stream (its
/// reader expects lines) or as plain JSON otherwise.
fn single(v: &Value, stream: bool) -> Response {
    if !stream {
        return json_response(v);
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, NDJSON)],
        format!("{v}\n"),
    )
        .into_response()
}

/// `GET /api/tags`: the served model, the only one there is.
pub async fn tags(State(state): State<Arc<AppState>>) -> Response {
    json_response(&response::tags(&state.engine.model_info()))
}

/// `GET /api/ps`.
pub async fn ps(State(state): State<Arc<AppState>>) -> Response {
    json_response(&response::ps(&state.engine.model_info()))
}

/// `POST /api/show`.
pub async fn show(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let info = state.engine.model_info();
    let shown = body_bytes(body, state.cfg.max_body_bytes)
        .and_then(|b| parse_object(&b))
        .and_then(|obj| request::parse_show(&obj, &info));
    match shown {
        Ok(name) => json_response(&response::show(&info, &name)),
        Err(e) => e.into_ollama_response(),
    }
}

/// `GET /api/version`: nao's version (clients only display it or compare it for
/// features nao either has or refuses with a clear error).
pub async fn version() -> Response {
    json_response(&json!({ "version": env!("CARGO_PKG_VERSION") }))
}

/// `GET /` and `HEAD /`: Ollama answers with this exact text, and some clients (and the
/// `ollama` CLI's own probe) check for it before using the API.
pub async fn root() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "Ollama is running",
    )
        .into_response()
}
