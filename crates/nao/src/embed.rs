//! `nao embed`: sentence vectors from an embedding model, printed as JSON, and
//! `nao embed --bench`: embeddings per second over short sentences. Also the helpers
//! `nao serve` uses to serve an embedding model (`--embedding-model DIR`, or `-m DIR`).
//!
//! An embedding model is a sentence-transformers / Hugging Face directory (a BERT encoder,
//! or a decoder embedder such as Qwen3-Embedding: last-token pooling, normalised) or a GGUF
//! file of a decoder embedder (one with `<arch>.pooling_type`).

use anyhow::{bail, Context, Result};
use nao_engine::embed::{EmbedInput, EmbedRequest, Embedder};
use nao_engine::embed_worker::EmbedWorker;
use nao_models::Compute;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(clap::Args)]
pub struct EmbedArgs {
    /// Model directory (Hugging Face / sentence-transformers layout: config.json,
    /// model.safetensors, tokenizer.json, modules.json), or a GGUF embedding model.
    #[arg(short, long)]
    model: PathBuf,
    /// Texts to embed, one vector each.
    texts: Vec<String>,
    /// Cut texts longer than the model's maximum instead of failing.
    #[arg(long)]
    truncate: bool,
    /// Threads to compute with (default: available cores).
    #[arg(short, long)]
    threads: Option<usize>,
    /// Measure embeddings/s over N generated short sentences instead of printing vectors.
    #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "1000")]
    bench: Option<usize>,
    /// Sentences per batch in --bench.
    #[arg(long, default_value_t = 32)]
    batch: usize,
}

pub fn embed(a: EmbedArgs) -> Result<()> {
    let embedder = load(&a.model)?;
    let threads = a.threads.unwrap_or_else(crate::cli::default_threads);
    let mut c = Compute::new(threads);
    if let Some(n) = a.bench {
        return bench(&embedder, &mut c, n, a.batch.max(1));
    }
    if a.texts.is_empty() {
        bail!("give at least one text to embed");
    }
    let req = EmbedRequest {
        inputs: a.texts.iter().cloned().map(EmbedInput::Text).collect(),
        truncate: a.truncate,
    };
    let out = embedder.embed(&req, &mut c)?;
    let obj = serde_json::json!({
        "model": model_id(&a.model),
        "dimensions": embedder.encoder.n_embd(),
        "prompt_tokens": out.prompt_tokens,
        "embeddings": out.embeddings,
    });
    outln!("{obj}");
    Ok(())
}

/// Whether `path` is an embedding model: a model directory that is not a chat decoder
/// (see [`crate::source::is_decoder_dir`]), or a GGUF file whose metadata names a pooling
/// type (`<arch>.pooling_type`, as llama.cpp's converter writes for embedding models).
pub(crate) fn is_embedding_dir(path: &Path) -> bool {
    if path.is_file() {
        return is_embedding_gguf(path);
    }
    path.is_dir() && path.join("config.json").is_file() && !crate::source::is_decoder_dir(path)
}

fn is_embedding_gguf(path: &Path) -> bool {
    let Ok(f) = nao_gguf::GgufFile::open(path) else {
        return false;
    };
    let Ok(arch) = f.architecture() else {
        return false;
    };
    matches!(f.get_u32(&format!("{arch}.pooling_type")), Ok(Some(_)))
}

/// The id clients use: the directory's name (a file's without `.gguf`).
pub(crate) fn model_id(dir: &Path) -> String {
    let canonical = dir.canonicalize().ok();
    let path = canonical.as_deref().unwrap_or(dir);
    let name = if path.is_file() {
        path.file_stem()
    } else {
        path.file_name()
    };
    name.map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "embedding-model".into())
}

fn load(dir: &Path) -> Result<Embedder> {
    Embedder::load(dir)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("cannot load embedding model {}", dir.display()))
}

/// Loads `dir` and starts its worker thread for `nao serve`.
pub(crate) fn start_worker(
    dir: &Path,
    alias: Option<String>,
    n_threads: usize,
    max_queue: usize,
) -> Result<EmbedWorker> {
    let embedder = load(dir)?;
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let info = embedder.info(alias.unwrap_or_else(|| model_id(dir)), created);
    eprintln!(
        "nao: embedding model {} ({} dims, {} pooling{}, max {} tokens)",
        info.id,
        info.n_embd,
        info.pooling,
        if info.normalize { ", normalised" } else { "" },
        info.max_tokens
    );
    let (worker, _thread) = EmbedWorker::start(embedder, info, n_threads, max_queue)
        .context("cannot start the embedding thread")?;
    Ok(worker)
}

/// `n` short sentences (5 to 12 words), varied so no two batches are alike.
fn sentences(n: usize) -> Vec<String> {
    const WHO: [&str; 8] = [
        "The engineer",
        "A small robot",
        "My neighbour",
        "The old library",
        "Our team",
        "This compiler",
        "A quiet student",
        "The city council",
    ];
    const DID: [&str; 6] = [
        "quickly fixed",
        "carefully read",
        "loudly praised",
        "rebuilt",
        "ignored",
        "measured",
    ];
    const WHAT: [&str; 7] = [
        "the broken pipeline",
        "a long report about rivers",
        "every test",
        "the new bridge",
        "three red apples",
        "the kernel's hot loop",
        "an email",
    ];
    const WHEN: [&str; 5] = [
        "",
        " yesterday",
        " before lunch",
        " in the rain",
        " on Friday night",
    ];
    (0..n)
        .map(|i| {
            format!(
                "{} {} {}{}.",
                WHO[i % 8],
                DID[(i / 8) % 6],
                WHAT[(i / 3) % 7],
                WHEN[(i / 5) % 5]
            )
        })
        .collect()
}

fn bench(e: &Embedder, c: &mut Compute, n: usize, batch: usize) -> Result<()> {
    let texts = sentences(n);
    // Warm-up: page in the weights and size the buffers.
    let warm = EmbedRequest {
        inputs: texts
            .iter()
            .take(batch)
            .cloned()
            .map(EmbedInput::Text)
            .collect(),
        truncate: false,
    };
    if !warm.inputs.is_empty() {
        e.embed(&warm, c)?;
    }
    let t0 = Instant::now();
    let mut tokens = 0;
    for chunk in texts.chunks(batch) {
        let req = EmbedRequest {
            inputs: chunk.iter().cloned().map(EmbedInput::Text).collect(),
            truncate: false,
        };
        tokens += e.embed(&req, c)?.prompt_tokens;
    }
    let secs = t0.elapsed().as_secs_f64().max(1e-9);
    let obj = serde_json::json!({
        "sentences": n,
        "batch": batch,
        "threads": c.n_threads(),
        "tokens": tokens,
        "seconds": secs,
        "embeddings_per_s": n as f64 / secs,
        "tokens_per_s": tokens as f64 / secs,
    });
    outln!("{obj}");
    Ok(())
}
