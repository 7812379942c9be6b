//! Where a chat model comes from: a GGUF file, a model name in the store (a GGUF file
//! there), or a Hugging Face decoder directory (`config.json` naming a `*ForCausalLM`,
//! `model.safetensors` or shards, `tokenizer.json`, `tokenizer_config.json`,
//! `generation_config.json`). [`Source`] gives the commands (`run`, `chat`, `bench`,
//! `tokenize`, `serve`) one way to get the model, its tokenizer, its chat template, the
//! memory check and the facts model listings show, whatever the format.
//!
//! A directory whose `config.json` is not a causal LM, or that is a sentence-transformers
//! model (`modules.json`, as decoder embedders like Qwen3-Embedding have), is an embedding
//! model: [`is_decoder_dir`] tells them apart, and such a directory is served by
//! `nao embed` / `nao serve` as before.

use anyhow::{bail, Context, Result};
use nao_gguf::{GgufFile, Safetensors};
use nao_models::hf::HfConfig;
use nao_models::{load_model, load_model_dir, Model, ModelConfig};
use nao_tokenizer::Tokenizer;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

/// A chat model's files, opened (headers read and validated, weights mapped, not loaded).
pub enum Source {
    Gguf {
        path: PathBuf,
        file: Arc<GgufFile>,
    },
    HfDir {
        dir: PathBuf,
        /// Boxed: the hyper-parameters are large next to the GGUF variant.
        config: Box<HfConfig>,
        weights: Safetensors,
    },
}

/// What listings say about a model file beyond what the engine knows.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// Bytes on disk (all safetensors shards of a directory).
    pub file_size: u64,
    /// Unix time of the newest weight file.
    pub file_modified: u64,
    pub parameter_count: u64,
    /// llama.cpp's name of the GGUF's type (`Q4_K_M`), or a directory's weight type (`BF16`).
    pub quantization: String,
}

/// Whether `path` is a Hugging Face decoder directory: its `config.json` names a
/// `*ForCausalLM` architecture (supported or not: [`Source::open`] says which are), and it
/// is not a sentence-transformers model (`modules.json`: a decoder embedder such as
/// Qwen3-Embedding, whose config still names `Qwen3ForCausalLM`).
pub fn is_decoder_dir(path: &Path) -> bool {
    let config = path.join("config.json");
    if !path.is_dir() || !config.is_file() || path.join("modules.json").is_file() {
        return false;
    }
    let Ok(v) = read_json(&config) else {
        return false;
    };
    first_architecture(&v).is_some_and(|a| a.ends_with("ForCausalLM"))
}

fn first_architecture(v: &Value) -> Option<&str> {
    v.get("architectures")?.as_array()?.first()?.as_str()
}

fn read_json(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))
}

impl Source {
    /// Opens `-m ARG`: a Hugging Face decoder directory, a GGUF file, or a model name in the
    /// store (a path that exists wins over a name).
    pub fn open(arg: &Path) -> Result<Source> {
        if arg.is_dir() {
            return Source::open_dir(arg);
        }
        let (path, _) = crate::store_cmd::resolve_model(arg)?;
        Source::open_file(&path)
    }

    /// Opens a path already resolved (a file or a directory), without consulting the store.
    pub fn open_path(path: &Path) -> Result<Source> {
        if path.is_dir() {
            Source::open_dir(path)
        } else {
            Source::open_file(path)
        }
    }

    fn open_file(path: &Path) -> Result<Source> {
        let file =
            GgufFile::open(path).with_context(|| format!("cannot load {}", path.display()))?;
        Ok(Source::Gguf {
            path: path.to_path_buf(),
            file: Arc::new(file),
        })
    }

    fn open_dir(dir: &Path) -> Result<Source> {
        if !dir.join("config.json").is_file() {
            bail!(
                "{} is a directory without config.json (expected a Hugging Face model directory)",
                dir.display()
            );
        }
        if !is_decoder_dir(dir) {
            bail!(
                "{} is not a chat model (its config.json names no *ForCausalLM architecture, \
                 or it is a sentence-transformers model); embedding models run with \
                 `nao embed` or `nao serve --embedding-model`",
                dir.display()
            );
        }
        let config = nao_models::hf::read_config(dir)
            .with_context(|| format!("cannot load model {}", dir.display()))?;
        let weights = Safetensors::open(dir)
            .with_context(|| format!("cannot load model {}", dir.display()))?;
        Ok(Source::HfDir {
            dir: dir.to_path_buf(),
            config: Box::new(config),
            weights,
        })
    }

    /// The file or directory the model is read from.
    pub fn path(&self) -> &Path {
        match self {
            Source::Gguf { path, .. } => path,
            Source::HfDir { dir, .. } => dir,
        }
    }

    /// The hyper-parameters (as the model will be built with).
    pub fn config(&self) -> Result<ModelConfig> {
        match self {
            Source::Gguf { file, .. } => {
                ModelConfig::from_gguf(file).context("cannot read the model's hyper-parameters")
            }
            Source::HfDir { config, .. } => Ok(config.cfg.clone()),
        }
    }

    pub fn architecture(&self) -> String {
        match self {
            Source::Gguf { file, .. } => file.architecture().unwrap_or_default().to_string(),
            Source::HfDir { config, .. } => config.cfg.arch.clone(),
        }
    }

    /// Bytes of weights the model keeps resident (the memory estimate's first term).
    pub fn weight_bytes(&self) -> u64 {
        match self {
            Source::Gguf { file, .. } => file
                .tensors()
                .iter()
                .fold(0u64, |n, t| n.saturating_add(t.n_bytes)),
            Source::HfDir { weights, .. } => weights
                .shards()
                .iter()
                .flat_map(|s| s.tensors())
                .fold(0u64, |n, t| n.saturating_add(t.n_bytes)),
        }
    }

    /// Loads the weights.
    pub fn load_model(&self) -> Result<Model> {
        let m = match self {
            Source::Gguf { file, .. } => load_model(Arc::clone(file)),
            Source::HfDir { dir, .. } => load_model_dir(dir),
        };
        m.with_context(|| format!("cannot load model {}", self.path().display()))
    }

    /// The tokenizer: from the GGUF metadata, or the directory's `tokenizer.json`.
    pub fn tokenizer(&self) -> Result<Tokenizer> {
        match self {
            Source::Gguf { file, .. } => crate::cli::load_tokenizer(file),
            Source::HfDir { dir, .. } => Tokenizer::from_hf_dir(dir)
                .with_context(|| format!("cannot build the tokenizer of {}", dir.display())),
        }
    }

    /// The model's chat template, or the built-in one for its architecture when it has none.
    pub fn chat_template(&self) -> Result<String> {
        match self {
            Source::Gguf { file, .. } => crate::cli::chat_template_source(file),
            Source::HfDir { dir, config, .. } => {
                let own = nao_tokenizer::hf::chat_template(dir)
                    .context("cannot read the chat template")?;
                Ok(own.unwrap_or_else(|| {
                    nao_tokenizer::chat::builtin_template(&config.cfg.arch).to_string()
                }))
            }
        }
    }

    /// The model, tokenizer and chat template, checked to fit together: every token id the
    /// tokenizer can produce must have a row in the model.
    pub fn load(&self) -> Result<(Model, Tokenizer, String)> {
        let model = self.load_model()?;
        let tok = self.tokenizer()?;
        let template = self.chat_template()?;
        let n_vocab = model.config().n_vocab;
        if tok.n_vocab() > n_vocab {
            bail!(
                "{}: the tokenizer has {} tokens but the model only {n_vocab} rows",
                self.path().display(),
                tok.n_vocab()
            );
        }
        Ok((model, tok, template))
    }

    /// Refuses (a [`crate::memplan::NotEnoughMemory`]) when the model at `ctx` positions
    /// (default: its training context, at most 4096) would not fit in memory.
    pub fn check_memory(&self, ctx: Option<usize>, flag: &str) -> Result<()> {
        let Ok(c) = self.config() else {
            return Ok(()); // the loader reports a bad config better
        };
        crate::memplan::check(self.weight_bytes(), &c, ctx, flag)
    }

    /// Size, date, parameter count and weight type.
    pub fn facts(&self) -> Facts {
        let stamp = |p: &Path| {
            std::fs::metadata(p).map_or((0, 0), |m| {
                let modified = m
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map_or(0, |t| t.as_secs());
                (m.len(), modified)
            })
        };
        match self {
            Source::Gguf { path, file } => {
                let (file_size, file_modified) = stamp(path);
                Facts {
                    file_size,
                    file_modified,
                    parameter_count: file
                        .tensors()
                        .iter()
                        .fold(0u64, |n, t| n.saturating_add(t.n_elements())),
                    quantization: crate::serve::quantization_name(file),
                }
            }
            Source::HfDir { dir, weights, .. } => {
                let mut f = Facts::default();
                for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                    let p = entry.path();
                    if p.extension().is_some_and(|e| e == "safetensors") {
                        let (size, modified) = stamp(&p);
                        f.file_size = f.file_size.saturating_add(size);
                        f.file_modified = f.file_modified.max(modified);
                    }
                }
                let tensors = || weights.shards().iter().flat_map(|s| s.tensors());
                f.parameter_count = tensors().fold(0u64, |n, t| {
                    n.saturating_add(t.shape.iter().product::<u64>())
                });
                f.quantization = tensors()
                    .max_by_key(|t| t.n_bytes)
                    .map(|t| t.dtype.name().to_string())
                    .unwrap_or_default();
                f
            }
        }
    }
}
