//! `nao serve`: load a model, start the engine thread, and serve the OpenAI API on
//! loopback (or where `--host` says) until SIGINT/SIGTERM.

use anyhow::{bail, Context, Result};
use nao_engine::engine::{start, EngineConfig};
use nao_models::load_model;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Path to a GGUF model file.
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
}

pub fn serve(a: ServeArgs) -> Result<()> {
    if a.ctx < 2 {
        bail!("--ctx must be at least 2");
    }
    if a.parallel == 0 || a.batch_tokens == 0 {
        bail!("--parallel and --batch-tokens must be at least 1");
    }
    let file = crate::cli::open(&a.model)?;
    let tok = crate::cli::load_tokenizer(&file)?;
    let template = crate::cli::chat_template_source(&file)?;
    let model = load_model(Arc::clone(&file))
        .with_context(|| format!("cannot load model {}", a.model.display()))?;
    let id = a.alias.clone().unwrap_or_else(|| {
        a.model
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into())
    });
    let n_threads = a.threads.unwrap_or_else(crate::cli::default_threads);
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
    let server_cfg = nao_server::ServerConfig {
        api_key: a.api_key.clone(),
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
        let info = nao_engine::api::EngineHandle::model_info(&*engine);
        eprintln!(
            "nao: serving {id} (context {}, {n_threads} threads, {} parallel) on http://{local}/v1",
            info.n_ctx, a.parallel
        );
        if a.api_key.is_none() && !local.ip().is_loopback() {
            eprintln!("nao: warning: listening beyond loopback without --api-key");
        }
        nao_server::serve(listener, engine, server_cfg, nao_server::shutdown_signal())
            .await
            .context("server failed")?;
        eprintln!("nao: shut down");
        Ok::<(), anyhow::Error>(())
    })
}
