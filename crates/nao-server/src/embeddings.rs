//! Embeddings: OpenAI's `POST /v1/embeddings`, Ollama's `POST /api/embed` (and the older
//! `/api/embeddings`), and the model listing once an embedding model is served.
//!
//! The handlers parse and validate the body here, then hand one [`EmbedRequest`] (all
//! inputs of the request, computed as one batch) to the [`EmbedHandle`]; tokenization and
//! length checks happen behind it, off the async threads. Choices made here:
//! - `input`: a string, a list of strings, a token array, or a list of token arrays. Token
//!   arrays are used exactly as given (no `[CLS]`/`[SEP]` added). An empty list is a 400
//!   (OpenAI); Ollama's `/api/embed` answers an empty list with no vectors, as Ollama does.
//! - Inputs longer than the model's maximum are a 400 unless `truncate: true` (OpenAI
//!   default false; Ollama default true, as in Ollama).
//! - `dimensions`: equal to the model's size is accepted everywhere. Fewer is accepted only
//!   for Matryoshka-trained models (the vector is cut and renormalised); for others a prefix
//!   is not a meaningful embedding, so it is a 400 rather than silently worse vectors.
//! - `encoding_format: "base64"`: the little-endian f32 bytes, base64-encoded (what the
//!   `openai` Python client asks for by default and decodes with numpy).

use crate::error::ApiError;
use crate::openai::request::{parse_object, type_name, Fields};
use crate::openai::{body_bytes, json_response};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use nao_engine::embed::{EmbedError, EmbedHandle, EmbedInput, EmbedOutput, EmbedRequest};
use serde_json::{json, Value};
use std::sync::Arc;

/// Most inputs in one request (OpenAI's limit).
pub const MAX_INPUTS: usize = 2048;

/// `POST /v1/embeddings`.
pub async fn create(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    handle_openai(state, body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn handle_openai(
    state: Arc<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body_bytes(body, state.cfg.max_body_bytes)?;
    let obj = parse_object(&body)?;
    drop(body);
    let embedder = embedder(&state)?;
    let info = embedder.info();
    let f = Fields(&obj);
    match f.str("model")? {
        None | Some("") => {}
        Some(m) if m == info.id => {}
        Some(m) => return Err(ApiError::ModelNotFound(m.to_string())),
    }
    let inputs = parse_input(f.get("input"), "input")?;
    if inputs.is_empty() {
        return Err(ApiError::bad("input", "`input` is an empty list"));
    }
    let base64 = match f.str("encoding_format")? {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::bad(
                "encoding_format",
                format!("`encoding_format` must be \"float\" or \"base64\", got {other:?}"),
            ))
        }
    };
    let dims = dimensions(&f, info.n_embd, info.matryoshka)?;
    let truncate = f.bool("truncate")?.unwrap_or(false);
    drop(obj);
    let out = run(embedder, EmbedRequest { inputs, truncate }, &state).await?;
    let data: Vec<Value> = out
        .embeddings
        .into_iter()
        .enumerate()
        .map(|(index, v)| {
            let v = shorten(v, dims, info.normalize);
            let embedding = if base64 {
                Value::String(base64_f32(&v))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    let n = out.prompt_tokens;
    Ok(json_response(&json!({
        "object": "list",
        "data": data,
        "model": info.id,
        "usage": {"prompt_tokens": n, "total_tokens": n},
    })))
}

/// `POST /api/embed` (Ollama): `{model, input, truncate, dimensions}` →
/// `{model, embeddings, total_duration, load_duration, prompt_eval_count}`.
pub async fn ollama_embed(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    handle_ollama(state, body, false)
        .await
        .unwrap_or_else(ApiError::into_ollama_response)
}

/// `POST /api/embeddings` (Ollama's older endpoint): `{model, prompt}` → `{embedding}`.
pub async fn ollama_embeddings(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    handle_ollama(state, body, true)
        .await
        .unwrap_or_else(ApiError::into_ollama_response)
}

async fn handle_ollama(
    state: Arc<AppState>,
    body: Result<Bytes, BytesRejection>,
    legacy: bool,
) -> Result<Response, ApiError> {
    let start = std::time::Instant::now();
    let body = body_bytes(body, state.cfg.max_body_bytes)?;
    let obj = parse_object(&body)?;
    drop(body);
    let embedder = embedder(&state)?;
    let info = embedder.info();
    let f = Fields(&obj);
    match f.str("model")? {
        None | Some("") => {}
        Some(m) if m == info.id || m.strip_suffix(":latest") == Some(info.id.as_str()) => {}
        Some(m) => return Err(ApiError::ModelNotFound(m.to_string())),
    }
    let field = if legacy { "prompt" } else { "input" };
    let inputs = parse_input(f.get(field), field)?;
    let dims = dimensions(&f, info.n_embd, info.matryoshka)?;
    let truncate = f.bool("truncate")?.unwrap_or(true);
    drop(obj);
    let out = if inputs.is_empty() {
        // Ollama answers an empty input with no vectors (clients use it to load a model).
        EmbedOutput {
            embeddings: Vec::new(),
            prompt_tokens: 0,
            compute_time: Default::default(),
        }
    } else {
        run(embedder, EmbedRequest { inputs, truncate }, &state).await?
    };
    let mut vectors = out
        .embeddings
        .into_iter()
        .map(|v| shorten(v, dims, info.normalize));
    if legacy {
        let v = vectors.next().unwrap_or_default();
        return Ok(json_response(&json!({ "embedding": v })));
    }
    let vectors: Vec<Vec<f32>> = vectors.collect();
    Ok(json_response(&json!({
        "model": info.id,
        "embeddings": vectors,
        "total_duration": start.elapsed().as_nanos() as u64,
        "load_duration": 0,
        "prompt_eval_count": out.prompt_tokens,
    })))
}

fn embedder(state: &AppState) -> Result<Arc<dyn EmbedHandle>, ApiError> {
    state.embedder.clone().ok_or_else(|| {
        ApiError::bad(
            "model",
            "this server has no embedding model; start it with `nao serve --embedding-model DIR`",
        )
    })
}

/// Submits and waits, mapping engine errors to API errors.
async fn run(
    embedder: Arc<dyn EmbedHandle>,
    req: EmbedRequest,
    state: &AppState,
) -> Result<EmbedOutput, ApiError> {
    let rx = embedder.embed(req);
    let res = rx
        .await
        .map_err(|_| ApiError::Unavailable("the embedding worker stopped".into()))?;
    res.map_err(|e| {
        let message = e.to_string();
        match e {
            EmbedError::TooLong { .. } => ApiError::BadRequest {
                message,
                param: Some("input".into()),
                code: Some("context_length_exceeded"),
            },
            EmbedError::NoInputs
            | EmbedError::EmptyTokens { .. }
            | EmbedError::TokenOutOfRange { .. }
            | EmbedError::Tokenize { .. } => ApiError::bad("input", message),
            EmbedError::QueueFull { .. } => ApiError::Overloaded {
                message,
                retry_after_secs: state.cfg.retry_after_secs,
            },
            EmbedError::ShutDown => ApiError::Unavailable(message),
            EmbedError::Failed(_) => ApiError::Internal(message),
        }
    })
}

/// `input`: a string, a list of strings, a token array, or a list of token arrays.
fn parse_input(v: Option<&Value>, param: &str) -> Result<Vec<EmbedInput>, ApiError> {
    let bad = |m: String| ApiError::bad(param, m);
    let tokens = |items: &[Value], at: &str| -> Result<Vec<i64>, ApiError> {
        items
            .iter()
            .map(|t| {
                t.as_i64().ok_or_else(|| {
                    bad(format!(
                        "{at} holds {}, not an integer token id",
                        type_name(t)
                    ))
                })
            })
            .collect()
    };
    match v {
        None => Err(bad(format!("`{param}` is required"))),
        Some(Value::String(s)) => Ok(vec![EmbedInput::Text(s.clone())]),
        Some(Value::Array(items)) => {
            if items.len() > MAX_INPUTS {
                return Err(bad(format!(
                    "`{param}` has {} items, more than the limit of {MAX_INPUTS}",
                    items.len()
                )));
            }
            match items.first() {
                None => Ok(Vec::new()),
                Some(Value::Number(_)) => Ok(vec![EmbedInput::Tokens(tokens(items, param)?)]),
                Some(_) => items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| match item {
                        Value::String(s) => Ok(EmbedInput::Text(s.clone())),
                        Value::Array(t) => {
                            Ok(EmbedInput::Tokens(tokens(t, &format!("{param}[{i}]"))?))
                        }
                        other => Err(bad(format!(
                            "{param}[{i}] is {}; expected a string or a token array",
                            type_name(other)
                        ))),
                    })
                    .collect(),
            }
        }
        Some(other) => Err(bad(format!(
            "`{param}` is {}; expected a string, a list of strings or token arrays",
            type_name(other)
        ))),
    }
}

/// The `dimensions` to return: `None` for the full vector.
fn dimensions(f: &Fields<'_>, n_embd: usize, matryoshka: bool) -> Result<Option<usize>, ApiError> {
    let Some(d) = f.uint("dimensions")? else {
        return Ok(None);
    };
    let d = usize::try_from(d).unwrap_or(usize::MAX);
    if d == n_embd {
        Ok(None)
    } else if matryoshka && (1..n_embd).contains(&d) {
        Ok(Some(d))
    } else if matryoshka {
        Err(ApiError::bad(
            "dimensions",
            format!("`dimensions` must be between 1 and {n_embd}"),
        ))
    } else {
        Err(ApiError::bad(
            "dimensions",
            format!(
                "this model's vectors have {n_embd} dimensions and it was not trained for \
                 shorter ones (Matryoshka); omit `dimensions` or pass {n_embd}"
            ),
        ))
    }
}

/// Cuts `v` to `dims` and, for a normalising model, rescales the prefix to unit length.
fn shorten(mut v: Vec<f32>, dims: Option<usize>, normalize: bool) -> Vec<f32> {
    if let Some(d) = dims {
        v.truncate(d);
        if normalize {
            let norm = v.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
            let inv = 1.0 / norm.max(1e-12);
            v.iter_mut().for_each(|x| *x = (*x as f64 * inv) as f32);
        }
    }
    v
}

/// Standard base64 (RFC 4648, with padding) of the little-endian bytes of `v`.
pub fn base64_f32(v: &[f32]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(c.get(1).copied().unwrap_or(0)) << 8)
            | u32::from(c.get(2).copied().unwrap_or(0));
        for (k, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if k <= c.len() {
                out.push(ABC[(n >> shift & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `GET /v1/models`: the chat models (loaded or loadable) and the embedding model.
pub async fn list_models(State(state): State<Arc<AppState>>) -> Response {
    if state.embedder.is_none() {
        return crate::openai::list_models(State(state)).await;
    }
    match models(&state).await {
        Ok(data) => json_response(&json!({"object": "list", "data": data})),
        Err(e) => e.into_response(),
    }
}

/// `GET /v1/models/{id}`, over the chat models and the embedding model.
pub async fn get_model(
    State(state): State<Arc<AppState>>,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    let Some(e) = state.embedder.as_ref().map(|e| e.info()) else {
        return crate::openai::get_model(State(state), id).await;
    };
    match &id {
        Ok(Path(id)) if *id == e.id => json_response(&embed_json(&e)),
        _ => crate::openai::get_model(State(state), id).await,
    }
}

fn embed_json(e: &nao_engine::embed::EmbedModelInfo) -> Value {
    json!({
        "id": e.id,
        "object": "model",
        "created": e.created,
        "owned_by": "nao",
        "context_length": e.max_tokens,
        "embedding_dimensions": e.n_embd,
        "loaded": true,
    })
}

async fn models(state: &AppState) -> Result<Vec<Value>, ApiError> {
    let chat = crate::openai::chat_models(state).await?;
    let embed = state.embedder.as_ref().map(|e| e.info());
    let mut out: Vec<Value> = chat
        .iter()
        // Embedding-only servers describe the embedding model through the engine too.
        .filter(|m| embed.as_ref().is_none_or(|e| e.id != m.info.id))
        .map(crate::openai::model_json)
        .collect();
    if let Some(e) = embed {
        out.push(embed_json(&e));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4648 test vectors via bytes of known floats: 1.0f32 = 00 00 80 3F.
    #[test]
    fn base64_by_hand() {
        assert_eq!(base64_f32(&[]), "");
        assert_eq!(base64_f32(&[1.0]), "AACAPw==");
        // 1.0, -2.0 = 00 00 80 3F 00 00 00 C0
        assert_eq!(base64_f32(&[1.0, -2.0]), "AACAPwAAAMA=");
        // three floats = 12 bytes = 16 chars, no padding
        assert_eq!(base64_f32(&[0.0, 0.0, 0.0]), "AAAAAAAAAAAAAAAA");
    }

    #[test]
    fn shorten_renormalises() {
        assert_eq!(shorten(vec![3.0, 4.0, 12.0], Some(2), true), [0.6, 0.8]);
        assert_eq!(shorten(vec![3.0, 4.0, 12.0], Some(2), false), [3.0, 4.0]);
        assert_eq!(shorten(vec![3.0, 4.0], None, true), [3.0, 4.0]);
    }
}
