//! Argument parsing and the subcommands.

use crate::source::Source;
use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use nao_engine::{generate, GenerateParams, SamplerConfig};
use nao_gguf::GgufFile;
use nao_models::Compute;
use nao_tokenizer::chat::ChatTemplate;
use nao_tokenizer::Tokenizer;
use std::collections::BTreeMap;
use std::io::Write;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "nao",
    version,
    about = "Run open-weight LLMs on the hardware you own"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Generate text from a prompt, streaming it to stdout.
    Run(RunArgs),
    /// Print the token ids of a text as a JSON array.
    Tokenize(TokenizeArgs),
    /// Measure prompt-processing and generation speed (llama-bench's shape).
    Bench(crate::bench::BenchArgs),
    /// Serve models over the OpenAI and Ollama HTTP APIs (loopback by default).
    Serve(crate::serve::ServeArgs),
    /// Print sentence embeddings as JSON (or measure embeddings/s with --bench).
    Embed(crate::embed::EmbedArgs),
    /// Print a model file's architecture, size, tensor types and context length.
    Info {
        /// Path to a GGUF file, or a model name in the store.
        file: PathBuf,
    },
    /// Fetch a model into the store (NAO_HOME, default ~/.nao): a known name, a URL or a file.
    Pull(crate::pull::PullArgs),
    /// List the models in the store.
    List(crate::store_cmd::ListArgs),
    /// Remove models from the store.
    Rm(crate::store_cmd::RmArgs),
    /// Show a model's architecture, size, quantization, template, license and memory need.
    Show(crate::store_cmd::ShowArgs),
    /// List the models a running server has loaded (its /api/ps).
    Ps(crate::store_cmd::PsArgs),
    /// Chat with a model in the terminal (history, multi-line input, /commands).
    Chat(crate::chat::ChatArgs),
}

#[derive(clap::Args)]
struct RunArgs {
    /// A GGUF model file, a model name in the store, or a Hugging Face model directory.
    #[arg(short, long)]
    model: PathBuf,
    /// The prompt.
    #[arg(short, long)]
    prompt: String,
    /// Most tokens to generate.
    #[arg(short = 'n', long = "n-predict", default_value_t = 128)]
    n_predict: usize,
    /// Sampling temperature; 0 means greedy.
    #[arg(long, default_value_t = 0.8)]
    temp: f32,
    /// Random seed (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
    #[arg(long, default_value_t = 40)]
    top_k: usize,
    #[arg(long, default_value_t = 0.95)]
    top_p: f32,
    #[arg(long, default_value_t = 0.05)]
    min_p: f32,
    #[arg(long, default_value_t = 1.0)]
    repeat_penalty: f32,
    /// Wrap the prompt in the model's own chat template as a user message.
    #[arg(long)]
    chat: bool,
    /// Print one JSON object (prompt tokens, tokens, text, top-5 logprobs) instead of text.
    #[arg(long)]
    json: bool,
    /// Threads to compute with (default: available cores).
    #[arg(short, long)]
    threads: Option<usize>,
    /// Context size in tokens (default: the model's training context, at most 4096).
    #[arg(short, long)]
    ctx: Option<usize>,
}

#[derive(clap::Args)]
struct TokenizeArgs {
    /// A GGUF model file, a model name in the store, or a Hugging Face model directory.
    #[arg(short, long)]
    model: PathBuf,
    /// Parse special-token text (e.g. `<|im_start|>`) into special ids.
    #[arg(long)]
    special: bool,
    /// Add BOS/EOS as the model's metadata says.
    #[arg(long)]
    add_special: bool,
    /// The text to tokenize.
    text: String,
}

pub fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Run(a) => run(a),
        Cmd::Tokenize(a) => tokenize(a),
        Cmd::Info { file } => info(&file),
        Cmd::Serve(a) => crate::serve::serve(a),
        Cmd::Embed(a) => crate::embed::embed(a),
        Cmd::Bench(a) => crate::bench::bench(a),
        Cmd::Pull(a) => crate::pull::pull(a),
        Cmd::List(a) => crate::store_cmd::list(a),
        Cmd::Rm(a) => crate::store_cmd::rm(a),
        Cmd::Show(a) => crate::store_cmd::show(a),
        Cmd::Ps(a) => crate::store_cmd::ps(a),
        Cmd::Chat(a) => crate::chat::chat(a),
    }
}

/// Opens a model file, or the store's file for a model name (a path that exists wins).
pub(crate) fn open(path: &Path) -> Result<Arc<GgufFile>> {
    let (path, _) = crate::store_cmd::resolve_model(path)?;
    let path = path.as_path();
    let f = GgufFile::open(path).with_context(|| format!("cannot load {}", path.display()))?;
    Ok(Arc::new(f))
}

pub(crate) fn load_tokenizer(file: &GgufFile) -> Result<Tokenizer> {
    Tokenizer::from_gguf(file).context("cannot build the tokenizer from the model's metadata")
}

fn tokenize(a: TokenizeArgs) -> Result<()> {
    let tok = Source::open(&a.model)?.tokenizer()?;
    let ids = tok.encode(&a.text, a.add_special, a.special);
    outln!("{}", serde_json::to_string(&ids)?);
    Ok(())
}

/// The model's chat template, or the built-in one for its architecture when the file has
/// none.
pub(crate) fn chat_template_source(file: &GgufFile) -> Result<String> {
    if let Some(src) = file
        .get_str("tokenizer.chat_template")
        .context("cannot read the chat template")?
    {
        return Ok(src.to_string());
    }
    let arch = file.architecture().unwrap_or_default();
    Ok(nao_tokenizer::chat::builtin_template(arch).to_string())
}

/// Renders `prompt` as one user message through the chat template `source`.
fn apply_chat_template(source: &str, tok: &Tokenizer, prompt: &str) -> Result<String> {
    let text_of = |id: Option<u32>| {
        id.and_then(|i| tok.token_text(i))
            .unwrap_or_default()
            .to_string()
    };
    let tmpl = ChatTemplate::new(source, &text_of(tok.bos()), &text_of(tok.eos()))?;
    let messages = serde_json::json!([{"role": "user", "content": prompt}]);
    Ok(tmpl.render(&messages, None, true)?)
}

fn run(a: RunArgs) -> Result<()> {
    let source = Source::open(&a.model)?;
    source.check_memory(a.ctx, "--ctx")?;
    let (model, tok, template) = source.load()?;
    let (text, add_special) = if a.chat {
        let rendered = apply_chat_template(&template, &tok, &a.prompt)?;
        // A template that writes the BOS text itself must not get a second BOS.
        let has_bos = tok
            .bos()
            .and_then(|b| tok.token_text(b))
            .is_some_and(|b| rendered.starts_with(b));
        (rendered, !has_bos)
    } else {
        (a.prompt.clone(), true)
    };
    let prompt = tok.encode(&text, add_special, true);
    let n_ctx_train = model.config().n_ctx_train;
    let n_ctx = a.ctx.unwrap_or_else(|| n_ctx_train.min(4096));
    if n_ctx == 0 || n_ctx > n_ctx_train {
        bail!("context size {n_ctx} is outside 1..={n_ctx_train} (the model's training context)");
    }
    let seed = a.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    });
    let params = GenerateParams {
        max_tokens: a.n_predict,
        n_ctx,
        sampler: SamplerConfig {
            temperature: a.temp,
            top_k: a.top_k,
            top_p: a.top_p,
            min_p: a.min_p,
            repeat_penalty: a.repeat_penalty,
            seed,
            ..SamplerConfig::default()
        },
        top_logprobs: if a.json { 5 } else { 0 },
        stop_at_eog: true,
    };
    let threads = a.threads.unwrap_or_else(default_threads);
    let mut compute = Compute::new(threads);
    let stdout = std::io::stdout();
    let json = a.json;
    let g = generate(&model, &tok, &mut compute, &prompt, &params, |piece| {
        if !json {
            let mut out = stdout.lock();
            if out
                .write_all(piece.as_bytes())
                .and_then(|_| out.flush())
                .is_err()
            {
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    })?;
    if json {
        let obj = serde_json::json!({
            "prompt_tokens": g.prompt_tokens,
            "tokens": g.tokens,
            "text": g.text,
            "top_logprobs": g.top_logprobs
                .iter()
                .map(|step| step.iter().map(|&(id, lp)| serde_json::json!([id, lp])).collect::<Vec<_>>())
                .collect::<Vec<_>>(),
        });
        outln!("{obj}");
    } else {
        outln!("");
        let n = g.tokens.len();
        eprintln!(
            "[prompt: {} tokens, {:.1} tok/s | generated: {} tokens, {:.2} tok/s | threads: {}]",
            g.prompt_tokens.len(),
            g.prompt_tokens.len() as f64 / g.prefill_time.as_secs_f64().max(1e-9),
            n,
            n as f64 / g.decode_time.as_secs_f64().max(1e-9),
            compute.n_threads()
        );
    }
    Ok(())
}

pub(crate) fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.2} {}", UNITS[u])
}

fn info(path: &Path) -> Result<()> {
    let file = open(path)?;
    let arch = file.architecture()?;
    let n_params: u64 = file.tensors().iter().map(|t| t.n_elements()).sum();
    let mut by_type: BTreeMap<&str, (usize, u64)> = BTreeMap::new();
    for t in file.tensors() {
        let e = by_type.entry(t.dtype.name()).or_default();
        e.0 += 1;
        e.1 += t.n_bytes;
    }
    outln!("file:           {}", path.display());
    outln!("gguf version:   {}", file.version());
    outln!("architecture:   {arch}");
    if let Some(name) = file.get_str("general.name")? {
        outln!("name:           {name}");
    }
    outln!(
        "parameters:     {n_params} ({:.2} B)",
        n_params as f64 / 1e9
    );
    match nao_models::ModelConfig::from_gguf(&file) {
        Ok(c) => {
            outln!("context length: {}", c.n_ctx_train);
            outln!(
                "layers: {}, n_embd: {}, heads: {} (kv {}), head dim: {}, ffn: {}, vocab: {}",
                c.n_layer,
                c.n_embd,
                c.n_head,
                c.n_head_kv,
                c.head_dim,
                c.n_ff,
                c.n_vocab
            );
        }
        Err(e) => outln!("hyper-parameters: unreadable ({e})"),
    }
    let supported = nao_models::registry::ARCHITECTURES
        .iter()
        .any(|(n, _)| *n == arch);
    outln!("supported:      {}", if supported { "yes" } else { "no" });
    outln!("tensors:        {}", file.tensors().len());
    for (ty, (count, bytes)) in &by_type {
        outln!("  {ty:<6} {count:>5} tensors  {}", human_bytes(*bytes));
    }
    Ok(())
}
