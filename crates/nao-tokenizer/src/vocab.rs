//! The plain description a tokenizer is built from: the `tokenizer.ggml.*` metadata of
//! a GGUF file, already read into owned values. Keeping it a plain struct lets tests
//! build small vocabularies by hand and keeps the GGUF adapter thin.

pub use nao_gguf::Strings;

/// `tokenizer.ggml.token_type` values (llama.cpp `llama_token_type`).
pub mod token_type {
    pub const UNDEFINED: i32 = 0;
    pub const NORMAL: i32 = 1;
    pub const UNKNOWN: i32 = 2;
    pub const CONTROL: i32 = 3;
    pub const USER_DEFINED: i32 = 4;
    pub const UNUSED: i32 = 5;
    pub const BYTE: i32 = 6;
}

/// Tokenizer metadata. `None` means "key absent": llama.cpp's defaults apply.
#[derive(Clone, Debug, Default)]
pub struct Vocab {
    /// `tokenizer.ggml.model`: `gpt2` (byte-level BPE) or `llama` (SentencePiece-style).
    pub model: String,
    /// `tokenizer.ggml.pre`: the BPE pre-tokenizer (`qwen2`, `llama-bpe`, ...).
    pub pre: Option<String>,
    /// `tokenizer.ggml.tokens`
    pub tokens: Strings,
    /// `tokenizer.ggml.scores` (SentencePiece merge priorities).
    pub scores: Option<Vec<f32>>,
    /// `tokenizer.ggml.token_type`, see [`token_type`].
    pub token_types: Option<Vec<i32>>,
    /// `tokenizer.ggml.merges` ("left right", rank = position); required for `gpt2`.
    pub merges: Option<Strings>,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub eot: Option<u32>,
    pub eom: Option<u32>,
    pub unk: Option<u32>,
    pub pad: Option<u32>,
    pub fim_pad: Option<u32>,
    pub fim_rep: Option<u32>,
    pub fim_sep: Option<u32>,
    /// `tokenizer.ggml.add_bos_token`
    pub add_bos: Option<bool>,
    /// `tokenizer.ggml.add_eos_token`
    pub add_eos: Option<bool>,
    /// `tokenizer.ggml.add_space_prefix`
    pub add_space_prefix: Option<bool>,
}
