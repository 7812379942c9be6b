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
//! - The `model` field picks the model through the server's model provider, which loads
//!   it when needed (see `nao_engine::manager`); unknown names are 404 in Ollama's shape.
//! - A request without a prompt (or with no messages) loads the model and answers
//!   `done_reason: "load"`, as Ollama does; with `keep_alive: 0` it unloads the model
//!   instead (`done_reason: "unload"`, what `ollama stop` sends). `keep_alive: 0` on a
//!   real request unloads the model once no request holds it; other `keep_alive` values
//!   keep it loaded until it is evicted for another model (there is no idle timer).
//! - `load_duration` is the time before submission: loading the model when it was not
//!   loaded, and prompt preparation; `prompt_eval_duration` is submission to first token,
//!   including any queueing.

pub mod request;
pub mod response;
pub mod stream;

use crate::error::ApiError;
use crate::metrics::{LogTokens, LoggedByStream};
use crate::openai::request::parse_object;
use crate::openai::{
    abort_signal, blocking, body_bytes, chat_models, engine_for, json_response, requested_model,
    Events,
};
use crate::AppState;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use nao_engine::api::{EngineHandle, Event, PromptError, Request};
use nao_tokenizer::tools::reasoning::{Part, ReasoningSplitter};
use nao_tokenizer::tools::ToolFormat;
use request::Params;
use response::Kind;
use serde_json::{json, Map, Value};
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
    let name = requested_model(&obj)?;
    if is_unload(&obj, Kind::Generate) {
        return unload(&state, name, &obj, Kind::Generate).await;
    }
    let engine = engine_for(&state, name).await?;
    let info = engine.model_info();
    let req = request::parse_generate(&obj, &state.cfg, &info)?;
    drop(obj);
    if req.prompt.is_empty() && req.context.is_empty() {
        let line = response::load_line(Kind::Generate, &req.model, "load");
        return Ok(single(&line, req.params.stream));
    }
    let for_prompt = engine.clone();
    let (prompt, system, raw, context) = (req.prompt, req.system, req.raw, req.context);
    let (ids, templated, opens) = blocking(move || {
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
            match for_prompt.render_chat(&Value::Array(messages), None) {
                Ok(text) => Some(text),
                Err(PromptError::NoTemplate) => None,
                Err(e) => return Err(e.into()),
            }
        };
        let templated = rendered.is_some();
        let opens = rendered
            .as_deref()
            .is_some_and(ReasoningSplitter::prompt_opens_thinking);
        match rendered {
            Some(text) => {
                let mut new = for_prompt.tokenize(&text, false);
                // The template starts a conversation with BOS; after a context (which
                // already starts with one) a second BOS mid-sequence only confuses the
                // model.
                let bos = for_prompt.tokenize("", true);
                if has_context && !bos.is_empty() && new.starts_with(&bos) {
                    new.drain(..bos.len());
                }
                ids.extend(new);
            }
            // Raw text: BOS as the model expects, unless a context already began the
            // sequence.
            None => ids.extend(for_prompt.tokenize(&prompt, !has_context)),
        }
        Ok((ids, templated, opens))
    })
    .await?;
    let mut params = req.params;
    if params.think {
        params.reasoning = Some(opens);
    }
    // Ollama returns no context for raw prompts.
    let context = templated.then(|| ContextOut {
        engine: engine.clone(),
        prompt: ids.clone(),
    });
    run(
        state,
        engine,
        Kind::Generate,
        req.model,
        ids,
        params,
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
    let name = requested_model(&obj)?;
    if is_unload(&obj, Kind::Chat) {
        return unload(&state, name, &obj, Kind::Chat).await;
    }
    let engine = engine_for(&state, name).await?;
    let info = engine.model_info();
    let req = request::parse_chat(&obj, &state.cfg, &info)?;
    drop(obj);
    if req.messages.is_empty() {
        let line = response::load_line(Kind::Chat, &req.model, "load");
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
    let for_prompt = engine.clone();
    let (messages, tools) = (req.messages, req.tools);
    let (ids, opens) = blocking(move || {
        let text = for_prompt.render_chat(&Value::Array(messages), tools.as_ref())?;
        let opens = ReasoningSplitter::prompt_opens_thinking(&text);
        Ok((for_prompt.tokenize(&text, false), opens))
    })
    .await?;
    if params.think {
        params.reasoning = Some(opens);
    }
    run(
        state,
        engine,
        Kind::Chat,
        req.model,
        ids,
        params,
        start,
        None,
    )
    .await
}

/// Ollama's "unload this model" request: `keep_alive: 0` and no prompt (generate) or no
/// messages (chat).
fn is_unload(obj: &Map<String, Value>, kind: Kind) -> bool {
    if !request::keep_alive_zero(obj.get("keep_alive")) {
        return false;
    }
    let empty = |key: &str| match obj.get(key) {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        Some(_) => false,
    };
    match kind {
        Kind::Generate => empty("prompt") && empty("context"),
        Kind::Chat => empty("messages"),
    }
}

/// Unloads the model `name` names (without loading it first) and answers as Ollama does.
async fn unload(
    state: &AppState,
    name: Option<String>,
    obj: &Map<String, Value>,
    kind: Kind,
) -> Result<Response, ApiError> {
    let models = state.models.clone();
    let sent = name.clone();
    let retry = state.cfg.retry_after_secs;
    let id = blocking(move || {
        models
            .describe(sent.as_deref())
            .map(|m| m.info.id)
            .map_err(|e| ApiError::from_acquire(e, retry))
    })
    .await?;
    state.models.unload(&id);
    let echo = name.unwrap_or_else(|| request::with_tag(&id));
    let stream = crate::openai::request::Fields(obj)
        .bool("stream")?
        .unwrap_or(true);
    Ok(single(&response::load_line(kind, &echo, "unload"), stream))
}

/// Submits one engine request and answers with NDJSON or one object.
#[allow(clippy::too_many_arguments)]
async fn run(
    state: Arc<AppState>,
    engine: Arc<dyn EngineHandle>,
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
        // `format`, compiled at submit (a schema it cannot enforce is a 400).
        constraint: params.constraint.clone(),
    };
    let submitted = Instant::now();
    let mut events = Events::submit(&state, &engine, vec![(0, req)], prompt_param)?;
    if params.unload_after {
        // Takes effect once this request (and any other on the model) is done.
        state.models.unload(&engine.model_info().id);
    }
    drop(engine);
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
        .with_tool_parser(tool_calls.map(|(f, names)| f.parser(&names)))
        .with_reasoning(params.reasoning);
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
    let (thinking, text) = match params.reasoning {
        Some(opens) => split_reasoning(opens, &text),
        None => (String::new(), text),
    };
    let (content, calls) = match &tool_calls {
        Some((format, names)) => nao_tokenizer::tools::parse(*format, names, &text),
        None => (text, Vec::new()),
    };
    let mut body = response::final_line(kind, &model, &content, lps, &summary, context);
    if !thinking.is_empty() {
        response::put_thinking(&mut body, kind, &thinking);
    }
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

/// `(thinking, content)` of a whole answer.
fn split_reasoning(opens: bool, text: &str) -> (String, String) {
    let mut r = ReasoningSplitter::new(opens);
    let mut parts = Vec::new();
    r.push(text, &mut parts);
    r.finish(&mut parts);
    let (mut thinking, mut content) = (String::new(), String::new());
    for p in parts {
        match p {
            Part::Reasoning(t) => thinking.push_str(&t),
            Part::Content(c) => content.push_str(&c),
        }
    }
    (thinking, content)
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

/// `GET /api/tags`: every model the server can serve, loaded or not.
pub async fn tags(State(state): State<Arc<AppState>>) -> Response {
    match chat_models(&state).await {
        Ok(list) => {
            let infos: Vec<_> = list.into_iter().map(|m| m.info).collect();
            json_response(&response::tags(&infos))
        }
        Err(e) => e.into_ollama_response(),
    }
}

/// `GET /api/ps`: the models loaded now, most recently used first.
pub async fn ps(State(state): State<Arc<AppState>>) -> Response {
    json_response(&response::ps(&state.models.loaded()))
}

/// `POST /api/show`: any model the server can serve; an unloaded one is described from
/// its file, not loaded.
pub async fn show(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    show_model(state, body)
        .await
        .unwrap_or_else(ApiError::into_ollama_response)
}

async fn show_model(
    state: Arc<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body_bytes(body, state.cfg.max_body_bytes)?;
    let name = request::parse_show(&parse_object(&body)?)?;
    let models = state.models.clone();
    let sent = name.clone();
    let retry = state.cfg.retry_after_secs;
    let entry = blocking(move || {
        models
            .describe(Some(&sent))
            .map_err(|e| ApiError::from_acquire(e, retry))
    })
    .await?;
    Ok(json_response(&response::show(&entry.info, &name)))
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
