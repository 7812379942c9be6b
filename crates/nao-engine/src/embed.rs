//! Embeddings: the server/engine boundary for `/v1/embeddings` ([`EmbedHandle`]) and the
//! synchronous [`Embedder`] (tokenizer + encoder) that the worker, `nao embed` and the
//! benchmark share.
//!
//! The split mirrors [`crate::api::EngineHandle`]: the server validates JSON and talks only
//! to the trait, so its tests run against a fake; the real implementation
//! ([`crate::embed_worker::EmbedWorker`]) owns the model on one thread. Token-level checks
//! (length against the model's positions, ids against the vocabulary) live here, next to
//! the tokenizer, so every front end reports them the same way.

use nao_models::sentence::SentenceEncoder;
use nao_models::Compute;
use std::path::Path;
use std::time::Duration;
use tokenizers::Tokenizer;
use tokio::sync::oneshot;

/// One input of an embedding request.
#[derive(Debug, Clone, PartialEq)]
pub enum EmbedInput {
    /// Text, tokenized with the model's special tokens (`[CLS] … [SEP]` for BERT; the
    /// EOS a last-token decoder embedder pools at, see [`Embedder::tokenize`]).
    Text(String),
    /// Token ids used exactly as given (no special tokens added). `i64` so that negative
    /// or huge ids from JSON get a clean error instead of wrapping.
    Tokens(Vec<i64>),
}

/// A batch of inputs, computed together.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbedRequest {
    pub inputs: Vec<EmbedInput>,
    /// Cut inputs longer than the model's maximum instead of refusing them.
    pub truncate: bool,
}

/// The vectors of one request, in input order.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbedOutput {
    /// `[n_inputs][n_embd]`, unit length when the model normalises.
    pub embeddings: Vec<Vec<f32>>,
    /// Tokens computed (after truncation), special tokens included.
    pub prompt_tokens: usize,
    /// Time spent tokenizing and computing, for Ollama's `total_duration`.
    pub compute_time: Duration,
}

/// Facts about the served embedding model.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbedModelInfo {
    /// The id clients send as `model` (directory name unless an alias is given).
    pub id: String,
    /// Vector length.
    pub n_embd: usize,
    /// Longest input in tokens, special tokens included.
    pub max_tokens: usize,
    pub n_vocab: usize,
    pub n_layer: usize,
    pub n_head: usize,
    /// Unix time the model was loaded.
    pub created: u64,
    /// `mean`, `cls` or `last`.
    pub pooling: &'static str,
    pub normalize: bool,
    /// Trained so that prefixes of a vector are embeddings too (Matryoshka representation
    /// learning): only then may a client ask for fewer `dimensions`.
    pub matryoshka: bool,
}

/// Why an embedding request failed. All but `QueueFull`, `ShutDown` and `Failed` are the
/// client's fault (HTTP 400).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EmbedError {
    #[error("input is empty: give at least one string or token array")]
    NoInputs,
    #[error("input[{index}] is an empty token array")]
    EmptyTokens { index: usize },
    #[error("input[{index}] has {n_tokens} tokens, more than the model's maximum of {max}; shorten it or set truncate")]
    TooLong {
        index: usize,
        n_tokens: usize,
        max: usize,
    },
    #[error("input[{index}]: token id {id} is outside the vocabulary (size {n_vocab})")]
    TokenOutOfRange {
        index: usize,
        id: i64,
        n_vocab: usize,
    },
    #[error("input[{index}] could not be tokenized: {message}")]
    Tokenize { index: usize, message: String },
    /// The queue is full: try again later (HTTP 503).
    #[error("the embedding queue is full ({limit} requests waiting)")]
    QueueFull { limit: usize },
    #[error("the embedding worker has shut down")]
    ShutDown,
    /// The model failed on accepted input: an internal fault (HTTP 500).
    #[error("{0}")]
    Failed(String),
}

/// What the server needs from an embedding engine. Implemented by
/// [`crate::embed_worker::EmbedWorker`] and by test fakes.
pub trait EmbedHandle: Send + Sync + 'static {
    fn info(&self) -> EmbedModelInfo;

    /// Queues `req`; the receiver yields its vectors or the reason it failed (validation
    /// errors included). Never blocks: a full queue answers `QueueFull` at once. Dropping
    /// the receiver does not cancel work already started.
    fn embed(&self, req: EmbedRequest) -> oneshot::Receiver<Result<EmbedOutput, EmbedError>>;
}

/// Most tokens computed in one packed batch: bounds activation memory (about 21 KB per
/// token for MiniLM) however many inputs a request carries. Sequences are never split, and
/// each vector is the same whatever batch it lands in.
pub const MAX_BATCH_TOKENS: usize = 8192;

/// How text becomes token ids: `tokenizer.json` (directories) or the GGUF vocabulary.
/// (Boxed: each is a few KB.)
enum TextTokenizer {
    Hf {
        tokenizer: Box<Tokenizer>,
        /// The same tokenizer truncating to the model's maximum (special tokens kept).
        truncating: Box<Tokenizer>,
    },
    Gguf(Box<nao_tokenizer::Tokenizer>),
}

/// Tokenizer plus encoder: text or token ids in, vectors out (synchronous).
pub struct Embedder {
    tokenizer: TextTokenizer,
    pub encoder: SentenceEncoder,
}

impl Embedder {
    /// Loads an embedding model: a sentence-transformers / Hugging Face directory
    /// (`config.json`, `model.safetensors`, `tokenizer.json`, `modules.json`,
    /// `1_Pooling/`; a BERT encoder or a decoder such as Qwen3-Embedding), or a GGUF file
    /// of a decoder embedder (`<arch>.pooling_type`, tokenizer from its metadata).
    pub fn load(path: &Path) -> Result<Embedder, String> {
        if path.is_file() {
            return Embedder::load_gguf(path);
        }
        let encoder = SentenceEncoder::load(path).map_err(|e| e.to_string())?;
        let tok_path = path.join("tokenizer.json");
        let mut tokenizer =
            Tokenizer::from_file(&tok_path).map_err(|e| format!("{}: {e}", tok_path.display()))?;
        // tokenizer.json files often carry the padding/truncation used in training
        // (MiniLM's: fixed 128). Lengths are checked against the model here instead.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(None)
            .map_err(|e| format!("{}: {e}", tok_path.display()))?;
        let mut truncating = tokenizer.clone();
        let params = tokenizers::TruncationParams {
            max_length: encoder.max_tokens(),
            ..Default::default()
        };
        truncating
            .with_truncation(Some(params))
            .map_err(|e| format!("{}: {e}", tok_path.display()))?;
        Ok(Embedder {
            tokenizer: TextTokenizer::Hf {
                tokenizer: Box::new(tokenizer),
                truncating: Box::new(truncating),
            },
            encoder,
        })
    }

    fn load_gguf(path: &Path) -> Result<Embedder, String> {
        let err = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
        let (encoder, file) = SentenceEncoder::open_gguf(path).map_err(|e| err(&e))?;
        let tokenizer = nao_tokenizer::Tokenizer::from_gguf(&file).map_err(|e| err(&e))?;
        Ok(Embedder {
            tokenizer: TextTokenizer::Gguf(Box::new(tokenizer)),
            encoder,
        })
    }

    /// Describes the model; `id` and `created` are the caller's.
    pub fn info(&self, id: String, created: u64) -> EmbedModelInfo {
        let e = &self.encoder;
        EmbedModelInfo {
            id,
            n_embd: e.n_embd(),
            max_tokens: e.max_tokens(),
            n_vocab: e.n_vocab(),
            n_layer: e.n_layer(),
            n_head: e.n_head(),
            created,
            pooling: e.pooling.name(),
            normalize: e.normalize,
            matryoshka: false,
        }
    }

    /// Token ids of `text` with the model's special tokens. A last-token embedder gets the
    /// EOS it pools at appended when its tokenizer did not add it (Qwen3-Embedding's
    /// current `tokenizer.json` does; its first release and most GGUF conversions do not);
    /// with `truncate`, the text is cut so that the EOS still fits.
    pub fn tokenize(&self, text: &str, truncate: bool) -> Result<Vec<u32>, String> {
        let mut ids = match &self.tokenizer {
            TextTokenizer::Hf {
                tokenizer,
                truncating,
            } => {
                let t = if truncate { truncating } else { tokenizer };
                t.encode(text, true)
                    .map(|e| e.get_ids().to_vec())
                    .map_err(|e| e.to_string())?
            }
            // Special tokens written in the text are parsed, as tokenizers does.
            TextTokenizer::Gguf(t) => t.encode(text, true, true),
        };
        if let Some(eos) = self.encoder.eos {
            if ids.last() != Some(&eos) {
                let max = self.encoder.max_tokens();
                if truncate && ids.len() >= max {
                    ids.truncate(max.saturating_sub(1));
                }
                ids.push(eos);
            }
        }
        Ok(ids)
    }

    /// Tokenizes and validates every input: the sequences to compute.
    pub fn prepare(&self, req: &EmbedRequest) -> Result<Vec<Vec<u32>>, EmbedError> {
        if req.inputs.is_empty() {
            return Err(EmbedError::NoInputs);
        }
        let max = self.encoder.max_tokens();
        let n_vocab = self.encoder.n_vocab();
        let mut out = Vec::with_capacity(req.inputs.len());
        for (index, input) in req.inputs.iter().enumerate() {
            let mut ids = match input {
                EmbedInput::Text(s) => self
                    .tokenize(s, req.truncate)
                    .map_err(|message| EmbedError::Tokenize { index, message })?,
                EmbedInput::Tokens(t) => {
                    if t.is_empty() {
                        return Err(EmbedError::EmptyTokens { index });
                    }
                    t.iter()
                        .map(|&id| {
                            u32::try_from(id)
                                .ok()
                                .filter(|&x| (x as usize) < n_vocab)
                                .ok_or(EmbedError::TokenOutOfRange { index, id, n_vocab })
                        })
                        .collect::<Result<Vec<u32>, _>>()?
                }
            };
            if ids.len() > max {
                if !req.truncate {
                    return Err(EmbedError::TooLong {
                        index,
                        n_tokens: ids.len(),
                        max,
                    });
                }
                ids.truncate(max);
            }
            out.push(ids);
        }
        Ok(out)
    }

    /// Vectors of `seqs`, in order, computed in packed batches of at most
    /// [`MAX_BATCH_TOKENS`] tokens.
    pub fn embed_tokens(
        &self,
        seqs: &[Vec<u32>],
        c: &mut Compute,
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut out = Vec::with_capacity(seqs.len());
        let mut start = 0;
        while start < seqs.len() {
            let mut end = start;
            let mut n_tokens = 0;
            while end < seqs.len()
                && (end == start || n_tokens + seqs[end].len() <= MAX_BATCH_TOKENS)
            {
                n_tokens += seqs[end].len();
                end += 1;
            }
            let batch: Vec<&[u32]> = seqs[start..end].iter().map(Vec::as_slice).collect();
            let v = self
                .encoder
                .encode(&batch, c)
                .map_err(|e| EmbedError::Failed(e.to_string()))?;
            out.extend(v);
            start = end;
        }
        Ok(out)
    }

    /// [`Self::prepare`] then [`Self::embed_tokens`], timed.
    pub fn embed(&self, req: &EmbedRequest, c: &mut Compute) -> Result<EmbedOutput, EmbedError> {
        let t0 = std::time::Instant::now();
        let seqs = self.prepare(req)?;
        let embeddings = self.embed_tokens(&seqs, c)?;
        Ok(EmbedOutput {
            embeddings,
            prompt_tokens: seqs.iter().map(Vec::len).sum(),
            compute_time: t0.elapsed(),
        })
    }
}
