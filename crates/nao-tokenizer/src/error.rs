//! The crate's error type: every way metadata or a tokenizer directory can be unusable,
//! named.

/// Why a tokenizer could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("missing GGUF metadata key `{0}`")]
    MissingKey(&'static str),
    #[error("reading GGUF metadata: {0}")]
    Gguf(#[from] nao_gguf::GgufError),
    #[error("unsupported tokenizer model `{0}` (byte-level or SentencePiece-style BPE are)")]
    UnsupportedModel(String),
    #[error("unsupported pre-tokenizer `{0}`")]
    UnsupportedPre(String),
    #[error("the vocabulary is empty")]
    EmptyVocab,
    #[error("the vocabulary has {0} tokens, more than a u32 token id can name (or over 4 GiB of token text)")]
    VocabTooLarge(usize),
    #[error("`{key}` has {got} entries but the vocabulary has {expected} tokens")]
    LengthMismatch {
        key: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("token {text:?} appears twice in the vocabulary: ids {first} and {second}")]
    DuplicateToken {
        text: String,
        first: u32,
        second: u32,
    },
    #[error("byte token {id} has text {text:?}; expected `<0xXX>`")]
    BadByteToken { id: u32, text: String },
    #[error("`{key}` = {id} is outside the vocabulary of {n_vocab} tokens")]
    TokenIdOutOfRange {
        key: &'static str,
        id: u64,
        n_vocab: usize,
    },
    #[error("merge #{index} {merge:?} is not of the form `left right`")]
    MalformedMerge { index: usize, merge: String },
    #[error("merge #{index} {merge:?} names {token:?}, which is not in the vocabulary")]
    MergeUnknownToken {
        index: usize,
        merge: String,
        token: String,
    },
    #[error("`{add_key}` is true but `{id_key}` is not set")]
    AddSpecialWithoutId {
        add_key: &'static str,
        id_key: &'static str,
    },
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// `tokenizer.json` that the `tokenizers` crate rejects (or cannot encode every byte).
    #[error("{path}: {reason}")]
    HfTokenizer { path: String, reason: String },
    /// A tokenizer or generation config file that is not JSON or says something unusable.
    #[error("{path}: {reason}")]
    Config { path: String, reason: String },
}
