//! nao-server: an OpenAI- and Ollama-compatible HTTP server over a [`ModelProvider`] (the
//! engines of the models it serves, by name) or a single [`EngineHandle`].
//!
//! - [`router`] / [`serve`]: routes, limits, graceful shutdown (this file).
//! - [`error`]: [`ApiError`], the one place errors become status codes and OpenAI (or
//!   Ollama) JSON.
//! - `openai`: request parsing and validation, response and chunk builders, handlers.
//! - `stream`: the SSE body of streamed responses.
//! - `ollama`: the Ollama API (`/api/*`, NDJSON streaming) over the same engine plumbing.
//! - `auth`: `Authorization: Bearer` checking.
//! - `embeddings`: `/v1/embeddings`, Ollama's `/api/embed`, and `/v1/models` listing the
//!   embedding model, over an optional [`EmbedHandle`].
//! - `metrics`: `/metrics` (Prometheus text) and the one-line request log.
//!
//! The server never sees the model: it asks the provider for the engine of the model a
//! request names (the provider loads models; the server never does), renders and
//! tokenizes prompts through that engine handle and reads events back, so its tests run
//! against fake engines.

mod auth;
mod embeddings;
pub mod error;
mod metrics;
mod ollama;
mod openai;
mod stream;

pub use error::ApiError;
pub use openai::output::ReasoningFormat;

use axum::extract::{DefaultBodyLimit, Request};
use axum::middleware;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use nao_engine::api::{EngineHandle, ModelProvider};
use nao_engine::embed::EmbedHandle;
use nao_engine::manager::SingleModel;
use serde_json::json;
use std::future::{Future, IntoFuture};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Limits and options of the server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// When set, every route but `/health`, `/healthz` and `/` needs
    /// `Authorization: Bearer KEY`.
    pub api_key: Option<String>,
    /// Larger bodies get 413 before they are read to the end.
    pub max_body_bytes: usize,
    /// Most choices (`n`) per request.
    pub max_n: usize,
    /// Most prompts in one batched `/v1/completions` request.
    pub max_prompts: usize,
    /// Most tokens one request may ask for; also never more than the context size.
    pub max_tokens_cap: usize,
    /// Most `top_logprobs` (chat); legacy completions `logprobs` is capped at 5 as well.
    pub max_top_logprobs: usize,
    /// Most stop sequences.
    pub max_stop: usize,
    /// Longest stop sequence, in bytes.
    pub max_stop_len: usize,
    /// Most `logit_bias` entries.
    pub max_logit_bias: usize,
    /// After the shutdown signal, in-flight requests get this long to finish; then streams
    /// are ended with an error line and `[DONE]`.
    pub shutdown_drain: Duration,
    /// `Retry-After` (seconds) sent with 503 when the engine queue is full.
    pub retry_after_secs: u64,
    /// Whether `<think>` blocks go to `reasoning_content` (chat) or stay in `content`.
    pub reasoning_format: ReasoningFormat,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            api_key: None,
            max_body_bytes: 8 << 20,
            max_n: 8,
            max_prompts: 16,
            max_tokens_cap: 32768,
            max_top_logprobs: 20,
            max_stop: 4,
            max_stop_len: 256,
            max_logit_bias: 1024,
            shutdown_drain: Duration::from_secs(5),
            retry_after_secs: 1,
            reasoning_format: ReasoningFormat::DeepSeek,
        }
    }
}

/// What every handler shares.
pub(crate) struct AppState {
    /// The chat models, by name.
    pub models: Arc<dyn ModelProvider>,
    /// The embedding model, when one is served.
    pub embedder: Option<Arc<dyn EmbedHandle>>,
    pub cfg: ServerConfig,
    pub metrics: Arc<metrics::Metrics>,
    /// Becomes `true` when in-flight requests must end (shutdown drain over).
    pub abort: watch::Receiver<bool>,
}

/// The application over one engine, without a listener (for tests and for embedding).
/// Requests in flight are never aborted by this router alone; [`serve`] adds that.
pub fn router(engine: Arc<dyn EngineHandle>, cfg: ServerConfig) -> Router {
    router_with_embedder(engine, None, cfg)
}

/// [`router`] with an embedding model served next to (or, with an engine that refuses
/// generation, instead of) the chat model.
pub fn router_with_embedder(
    engine: Arc<dyn EngineHandle>,
    embedder: Option<Arc<dyn EmbedHandle>>,
    cfg: ServerConfig,
) -> Router {
    router_with_models(Arc::new(SingleModel::new(engine)), embedder, cfg)
}

/// The application over several models: each request goes to the model its `model`
/// field names, as `models` resolves (and loads) it.
pub fn router_with_models(
    models: Arc<dyn ModelProvider>,
    embedder: Option<Arc<dyn EmbedHandle>>,
    cfg: ServerConfig,
) -> Router {
    let (_tx, rx) = watch::channel(false);
    build(models, embedder, cfg, rx)
}

fn build(
    models: Arc<dyn ModelProvider>,
    embedder: Option<Arc<dyn EmbedHandle>>,
    cfg: ServerConfig,
    abort: watch::Receiver<bool>,
) -> Router {
    let limit = cfg.max_body_bytes;
    let state = Arc::new(AppState {
        models,
        embedder,
        cfg,
        metrics: Arc::new(metrics::Metrics::default()),
        abort,
    });
    Router::new()
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/completions", post(openai::completions))
        .route("/v1/embeddings", post(embeddings::create))
        // The listing covers the chat models and the embedding model.
        .route("/v1/models", get(embeddings::list_models))
        .route("/v1/models/{*id}", get(embeddings::get_model))
        .route("/health", get(health))
        .route("/healthz", get(health))
        .route("/metrics", get(metrics::metrics))
        .route("/api/generate", post(ollama::generate))
        .route("/api/chat", post(ollama::chat))
        .route("/api/tags", get(ollama::tags))
        .route("/api/show", post(ollama::show))
        .route("/api/ps", get(ollama::ps))
        .route("/api/version", get(ollama::version))
        .route("/api/embed", post(embeddings::ollama_embed))
        .route("/api/embeddings", post(embeddings::ollama_embeddings))
        // `get` answers HEAD as well (body dropped): clients probe with either.
        .route("/", get(ollama::root))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        // Layers run bottom-up on the way in: the log/metrics layer sees every response,
        // including 401s from the auth layer.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_key,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .with_state(state)
}

async fn health() -> Response {
    openai::json_response(&json!({"status": "ok"}))
}

async fn not_found(req: Request) -> Response {
    let path = req.uri().path();
    ApiError::NotFound {
        method: req.method().to_string(),
        path: path.to_string(),
    }
    .into_response_for(path)
}

async fn method_not_allowed(req: Request) -> Response {
    let path = req.uri().path();
    ApiError::MethodNotAllowed {
        method: req.method().to_string(),
        path: path.to_string(),
    }
    .into_response_for(path)
}

/// How long connections get to close after streams were ended by the drain deadline.
const FLUSH_GRACE: Duration = Duration::from_secs(1);

/// Serves until `shutdown` resolves, then shuts down gracefully: stop accepting, let
/// in-flight requests finish for up to `cfg.shutdown_drain`, then end the remaining
/// streams (an error line and `[DONE]`; non-streamed requests get 503), and return at the
/// latest one second later.
pub async fn serve(
    listener: tokio::net::TcpListener,
    engine: Arc<dyn EngineHandle>,
    cfg: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with_embedder(listener, engine, None, cfg, shutdown).await
}

/// [`serve`] with an embedding model (see [`router_with_embedder`]).
pub async fn serve_with_embedder(
    listener: tokio::net::TcpListener,
    engine: Arc<dyn EngineHandle>,
    embedder: Option<Arc<dyn EmbedHandle>>,
    cfg: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let models = Arc::new(SingleModel::new(engine));
    serve_with_models(listener, models, embedder, cfg, shutdown).await
}

/// [`serve`] over several models (see [`router_with_models`]).
pub async fn serve_with_models(
    listener: tokio::net::TcpListener,
    models: Arc<dyn ModelProvider>,
    embedder: Option<Arc<dyn EmbedHandle>>,
    cfg: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let drain = cfg.shutdown_drain;
    let (abort_tx, abort_rx) = watch::channel(false);
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let app = build(models, embedder, cfg, abort_rx);
    let signal = async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    };
    let server = axum::serve(listener, app)
        .with_graceful_shutdown(signal)
        .into_future();
    tokio::pin!(server);
    tokio::select! {
        res = &mut server => return res,
        _ = stop_rx.wait_for(|stopping| *stopping) => {}
    }
    if let Ok(res) = tokio::time::timeout(drain, &mut server).await {
        return res;
    }
    let _ = abort_tx.send(true);
    match tokio::time::timeout(FLUSH_GRACE, &mut server).await {
        Ok(res) => res,
        // Dropping the server future closes whatever connections are left.
        Err(_) => Ok(()),
    }
}

/// Resolves on SIGINT (Ctrl-C) or, on Unix, SIGTERM (what container runtimes send).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
