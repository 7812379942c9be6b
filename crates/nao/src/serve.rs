//! `nao serve`: load a model, start the engine thread, and serve the OpenAI and Ollama
//! APIs on loopback (or where `--host` says) until SIGINT/SIGTERM.

use anyhow::{bail, Context, Result};
use nao_engine::api::{
    EngineHandle, EngineStats, ModelInfo, PromptError, Request, RequestHandle, SubmitError,
};
use nao_engine::embed::EmbedHandle;
use nao_engine::embed_worker::EmbedOnlyEngine;
use nao_engine::engine::{start, EngineClient, EngineConfig};
use nao_gguf::GgufFile;
use nao_models::load_model;
use serde_json::Value as Json;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Path to a GGUF model file, or a model name in the store.
    #[arg(short, long)]
    model: PathBuf,
    /// Address to listen on. Anything but loopback exposes the model to the network.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Context size of one sequence, and the KV cache's size in positions shared by all
    /// sequences (at most the model's training context).
    #[arg(short, long, default_value_t = 8192)]
    ctx: usize,
    /// Most sequences decoded together.
    #[arg(long, default_value_t = 8)]
    parallel: usize,
    /// Most tokens run through the model in one step (prefill is chunked to fit).
    #[arg(long, default_value_t = 64)]
    batch_tokens: usize,
    /// Requests allowed to wait; more get 503 with Retry-After at once.
    #[arg(long, default_value_t = 64)]
    max_queue: usize,
    /// Require `Authorization: Bearer KEY` on every route but /health.
    #[arg(long, env = "NAO_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// The model id clients send (default: the file name without extension).
    #[arg(long)]
    alias: Option<String>,
    /// Threads to compute with (default: available cores).
    #[arg(short, long)]
    threads: Option<usize>,
    /// `<think>` text in chat replies: `deepseek` moves it to `reasoning_content`, `none`
    /// leaves it in `content` (llama-server's flag).
    #[arg(long, value_enum, default_value = "deepseek")]
    reasoning_format: ReasoningArg,
    /// Also serve this embedding model directory (config.json, model.safetensors,
    /// tokenizer.json) on /v1/embeddings and /api/embed. `-m DIR` with such a directory
    /// serves the embedding model alone.
    #[arg(long, value_name = "DIR")]
    embedding_model: Option<PathBuf>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ReasoningArg {
    None,
    Deepseek,
}

pub fn serve(a: ServeArgs) -> Result<()> {
    if a.ctx < 2 {
        bail!("--ctx must be at least 2");
    }
    if a.parallel == 0 || a.batch_tokens == 0 {
        bail!("--parallel and --batch-tokens must be at least 1");
    }
    let n_threads = a.threads.unwrap_or_else(crate::cli::default_threads);
    let embed_only = crate::embed::is_model_dir(&a.model);
    let embed_dir = if embed_only {
        Some(a.model.as_path())
    } else {
        a.embedding_model.as_deref()
    };
    let alias = a.alias.clone().filter(|_| embed_only);
    let embedder = match embed_dir {
        Some(dir) => Some(Arc::new(crate::embed::start_worker(
            dir,
            alias,
            n_threads,
            a.max_queue,
        )?)),
        None => None,
    };
    let (engine, id): (Arc<dyn EngineHandle>, String) = match &embedder {
        Some(e) if embed_only => {
            let info = e.info();
            (Arc::new(EmbedOnlyEngine::new(info.clone())), info.id)
        }
        _ => load_chat(&a, n_threads)?,
    };
    let embedder = embedder.map(|e| e as Arc<dyn EmbedHandle>);
    let server_cfg = nao_server::ServerConfig {
        api_key: a.api_key.clone(),
        reasoning_format: match a.reasoning_format {
            ReasoningArg::None => nao_server::ReasoningFormat::None,
            ReasoningArg::Deepseek => nao_server::ReasoningFormat::DeepSeek,
        },
        ..nao_server::ServerConfig::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        let addr = format!("{}:{}", a.host, a.port);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let local = listener.local_addr()?;
        let info = engine.model_info();
        eprintln!(
            "nao: serving {id} (context {}, {n_threads} threads, {} parallel) on http://{local}/v1 (OpenAI) and http://{local}/api (Ollama)",
            info.n_ctx, a.parallel
        );
        if a.api_key.is_none() && !local.ip().is_loopback() {
            eprintln!("nao: warning: listening beyond loopback without --api-key");
        }
        nao_server::serve_with_embedder(
            listener,
            engine,
            embedder,
            server_cfg,
            nao_server::shutdown_signal(),
        )
        .await
        .context("server failed")?;
        eprintln!("nao: shut down");
        Ok::<(), anyhow::Error>(())
    })
}

/// Loads the chat model named by `-m` and starts its engine thread; returns the engine and
/// the id clients use.
fn load_chat(a: &ServeArgs, n_threads: usize) -> Result<(Arc<dyn EngineHandle>, String)> {
    let (path, store_name) = crate::store_cmd::resolve_model(&a.model)?;
    let file = crate::cli::open(&path)?;
    crate::memplan::check(&file, Some(a.ctx), "--ctx")?;
    let tok = crate::cli::load_tokenizer(&file)?;
    let template = crate::cli::chat_template_source(&file)?;
    let model = load_model(Arc::clone(&file))
        .with_context(|| format!("cannot load model {}", a.model.display()))?;
    let id = a
        .alias
        .clone()
        .or(store_name.map(|n| n.to_string()))
        .unwrap_or_else(|| {
            a.model
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "model".into())
        });
    let cfg = EngineConfig {
        model_id: id.clone(),
        n_ctx: a.ctx,
        kv_positions: a.ctx,
        block_size: 16,
        max_running: a.parallel,
        token_budget: a.batch_tokens,
        max_queue: a.max_queue,
        n_threads,
    };
    let (engine, _thread) = start(model, tok, Some(&template), cfg)?;
    Ok((Arc::new(WithFileFacts::new(engine, &path, &file)), id))
}

/// The engine with the facts about the model file that only this side knows (the engine
/// sees the loaded model, not the file) added to its model info, for model listings.
struct WithFileFacts {
    engine: Arc<EngineClient>,
    info: ModelInfo,
}

impl WithFileFacts {
    fn new(engine: Arc<EngineClient>, path: &Path, file: &GgufFile) -> Self {
        let mut info = engine.model_info();
        let d = &mut info.details;
        // A file we could map has metadata; zeros ("unknown") only on exotic filesystems.
        if let Ok(meta) = std::fs::metadata(path) {
            d.file_size = meta.len();
            d.file_modified = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |t| t.as_secs());
        }
        d.parameter_count = file
            .tensors()
            .iter()
            .fold(0u64, |n, t| n.saturating_add(t.n_elements()));
        d.quantization = quantization_name(file);
        WithFileFacts { engine, info }
    }
}

impl EngineHandle for WithFileFacts {
    fn model_info(&self) -> ModelInfo {
        self.info.clone()
    }

    fn render_chat(&self, messages: &Json, tools: Option<&Json>) -> Result<String, PromptError> {
        self.engine.render_chat(messages, tools)
    }

    fn tokenize(&self, text: &str, add_special: bool) -> Vec<u32> {
        self.engine.tokenize(text, add_special)
    }

    fn submit(&self, req: Request) -> Result<RequestHandle, SubmitError> {
        self.engine.submit(req)
    }

    fn stats(&self) -> EngineStats {
        self.engine.stats()
    }
}

/// The file's quantization as llama.cpp names it: from `general.file_type` (llama.cpp's
/// `llama_ftype` numbering), else the type of the largest tensor.
pub(crate) fn quantization_name(file: &GgufFile) -> String {
    let by_ftype = match file.get_u32("general.file_type").ok().flatten() {
        Some(0) => "F32",
        Some(1) => "F16",
        Some(2) => "Q4_0",
        Some(3) => "Q4_1",
        Some(7) => "Q8_0",
        Some(8) => "Q5_0",
        Some(9) => "Q5_1",
        Some(10) => "Q2_K",
        Some(11) => "Q3_K_S",
        Some(12) => "Q3_K_M",
        Some(13) => "Q3_K_L",
        Some(14) => "Q4_K_S",
        Some(15) => "Q4_K_M",
        Some(16) => "Q5_K_S",
        Some(17) => "Q5_K_M",
        Some(18) => "Q6_K",
        Some(19) => "IQ2_XXS",
        Some(20) => "IQ2_XS",
        Some(21) => "Q2_K_S",
        Some(22) => "IQ3_XS",
        Some(23) => "IQ3_XXS",
        Some(24) => "IQ1_S",
        Some(25) => "IQ4_NL",
        Some(26) => "IQ3_S",
        Some(27) => "IQ3_M",
        Some(28) => "IQ2_S",
        Some(29) => "IQ2_M",
        Some(30) => "IQ4_XS",
        Some(31) => "IQ1_M",
        Some(32) => "BF16",
        Some(36) => "TQ1_0",
        Some(37) => "TQ2_0",
        _ => "",
    };
    if !by_ftype.is_empty() {
        return by_ftype.to_string();
    }
    file.tensors()
        .iter()
        .max_by_key(|t| t.n_bytes)
        .map(|t| t.dtype.to_string().to_uppercase())
        .unwrap_or_default()
}
