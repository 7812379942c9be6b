//! nao-tokenizer: tokenizers built from GGUF metadata or Hugging Face `tokenizer.json`,
//! and chat templates.
//!
//! - [`Vocab`]: the `tokenizer.ggml.*` metadata as a plain struct ([`vocab`]).
//! - [`Tokenizer`]: byte-level BPE (Qwen, Llama 3, DeepSeek; [`bpe`] + [`pretokenize`])
//!   and SentencePiece-style BPE (Gemma, Llama 2; [`spm`]), matching llama.cpp's ids; or a
//!   Hugging Face directory's `tokenizer.json` through the `tokenizers` crate ([`hf`]).
//! - [`StreamDecoder`]: incremental detokenization ([`stream`]).
//! - [`chat`]: chat templates.
//! - [`tools`]: tool calls and reasoning in model output, parsed back per model family.

pub mod chat;
pub mod hf;
pub mod tools;

mod bpe;
mod error;
mod gguf;
mod hash;
mod pretokenize;
mod spm;
mod stream;
mod token_index;
mod tokenizer;
mod unicode;
pub mod vocab;

pub use error::TokenizerError;
pub use gguf::vocab_from_gguf;
pub use stream::StreamDecoder;
pub use tokenizer::Tokenizer;
pub use vocab::Vocab;
