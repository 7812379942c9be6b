//! `nao serve`: serve the OpenAI and Ollama APIs on loopback (or where `--host` says)
//! until SIGINT/SIGTERM, over the `-m` model and the models of the store, each loaded on
//! its first request (at most `--max-loaded` at once, the least recently used unloaded
//! first; see `nao_engine::manager` and `loader.rs`).

use anyhow::{bail, Context, Result};
use nao_engine::api::{
    AcquireError, EngineHandle, EngineStats, ModelInfo, ModelProvider, PromptError, Request,
    RequestHandle, SubmitError,
};
use nao_engine::embed::EmbedHandle;
use nao_engine::embed_worker::EmbedOnlyEngine;
use nao_engine::engine::{start, EngineClient, EngineConfig};
use nao_engine::manager::{ManagerConfig, ModelManager, SingleModel};
use nao_gguf::GgufFile;
use serde_json::Value as Json;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

#[derive(clap::Args)]
pub struct ServeArgs {
    /// The default model: a GGUF file, a model name in the store or a Hugging Face decoder
    /// directory (config.json, safetensors, tokenizer.json), loaded at start-up and
    /// used by requests that name no model. Without it, the store's models are served by
    /// name only.
    #[arg(short, long)]
    model: Option<PathBuf>,
    /// Most models loaded at once; a request for another one unloads the least recently
    /// used idle model first (one with requests in flight is never unloaded: the load
    /// waits for them).
    #[arg(long, env = "NAO_MAX_LOADED", default_value_t = 1)]
    max_loaded: usize,
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
    /// The id clients send for the `-m` model (default: its store name, or the file name
    /// without extension).
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

/// How every chat model is served (the same for all of them).
#[derive(Debug, Clone)]
pub struct LoadOpts {
    pub ctx: usize,
    pub parallel: usize,
    pub batch_tokens: usize,
    pub max_queue: usize,
    pub n_threads: usize,
}

/// How long a request waits for its model to load, or for busy models to finish so that
/// one can be unloaded, before it gets 503 with Retry-After.
const LOAD_WAIT: Duration = Duration::from_secs(300);

pub fn serve(a: ServeArgs) -> Result<()> {
    if a.ctx < 2 {
        bail!("--ctx must be at least 2");
    }
    if a.parallel == 0 || a.batch_tokens == 0 {
        bail!("--parallel and --batch-tokens must be at least 1");
    }
    if a.max_loaded == 0 {
        bail!("--max-loaded must be at least 1");
    }
    let n_threads = a.threads.unwrap_or_else(crate::cli::default_threads);
    let embed_only = a
        .model
        .as_deref()
        .is_some_and(crate::embed::is_embedding_dir);
    let embed_dir = if embed_only {
        a.model.as_deref()
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
    let opts = LoadOpts {
        ctx: a.ctx,
        parallel: a.parallel,
        batch_tokens: a.batch_tokens,
        max_queue: a.max_queue,
        n_threads,
    };
    let (models, what): (Arc<dyn ModelProvider>, String) = match &embedder {
        Some(e) if embed_only => {
            let info = e.info();
            let engine = Arc::new(EmbedOnlyEngine::new(
                info.clone(),
                e.architecture(),
                e.n_head_kv(),
            ));
            (Arc::new(SingleModel::new(engine)), info.id)
        }
        _ => chat_models(&a, opts)?,
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
        eprintln!(
            "nao: serving {what} ({n_threads} threads, {} parallel) on http://{local}/v1 (OpenAI) and http://{local}/api (Ollama)",
            a.parallel
        );
        if a.api_key.is_none() && !local.ip().is_loopback() {
            eprintln!("nao: warning: listening beyond loopback without --api-key");
        }
        nao_server::serve_with_models(
            listener,
            models,
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

/// The chat models: the `-m` model (loaded now, so a bad file fails at start-up) and the
/// store's, behind a [`ModelManager`]. Returns them and a description for the start line.
fn chat_models(a: &ServeArgs, opts: LoadOpts) -> Result<(Arc<dyn ModelProvider>, String)> {
    let max_queue = opts.max_queue;
    let loader = crate::loader::StoreLoader::new(opts, a.model.as_deref(), a.alias.clone())?;
    let store = loader.store_root().map(Path::to_path_buf);
    let manager = ModelManager::new(
        loader,
        ManagerConfig {
            max_loaded: a.max_loaded,
            max_waiting: max_queue,
            wait_timeout: LOAD_WAIT,
            ..ManagerConfig::default()
        },
    );
    let mut what = match &a.model {
        Some(m) => {
            let info = match manager.acquire(None) {
                Ok(engine) => engine.model_info(),
                Err(AcquireError::LoadFailed { reason, .. }) => {
                    bail!("cannot serve {}: {reason}", m.display())
                }
                Err(e) => bail!("cannot serve {}: {e}", m.display()),
            };
            format!("{} (context {})", info.id, info.n_ctx)
        }
        // A name is required, and nothing is loaded until asked for.
        None => "no default model".to_string(),
    };
    if let Some(root) = store {
        what.push_str(&format!(
            "; models in {} load on demand (at most {} at once)",
            root.display(),
            a.max_loaded
        ));
    }
    Ok((Arc::new(manager), what))
}

/// Loads the chat model at `path` and starts its engine thread; `id` is the name clients
/// use. A model that would not fit in memory fails with a [`crate::memplan::NotEnoughMemory`].
pub(crate) fn load_chat(
    o: &LoadOpts,
    path: &Path,
    id: &str,
) -> Result<(Arc<dyn EngineHandle>, JoinHandle<()>)> {
    // A GGUF file or a Hugging Face decoder directory.
    let source = crate::source::Source::open_path(path)?;
    // One --ctx serves models with different training contexts: never more than theirs.
    let ctx = source
        .config()
        .map_or(o.ctx, |c| o.ctx.min(c.n_ctx_train.max(2)));
    source.check_memory(Some(ctx), "--ctx")?;
    let (model, tok, template) = source.load()?;
    let cfg = EngineConfig {
        model_id: id.to_string(),
        n_ctx: ctx,
        kv_positions: ctx,
        block_size: 16,
        max_running: o.parallel,
        token_budget: o.batch_tokens,
        max_queue: o.max_queue,
        n_threads: o.n_threads,
    };
    let (engine, thread) = start(model, tok, Some(&template), cfg)?;
    Ok((Arc::new(WithFileFacts::new(engine, source.facts())), thread))
}

/// The engine with the facts about the model file that only this side knows (the engine
/// sees the loaded model, not the file) added to its model info, for model listings.
struct WithFileFacts {
    engine: Arc<EngineClient>,
    info: ModelInfo,
}

impl WithFileFacts {
    fn new(engine: Arc<EngineClient>, facts: crate::source::Facts) -> Self {
        let mut info = engine.model_info();
        let d = &mut info.details;
        d.file_size = facts.file_size;
        d.file_modified = facts.file_modified;
        d.parameter_count = facts.parameter_count;
        d.quantization = facts.quantization;
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
