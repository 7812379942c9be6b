//! nao-tokenizer: tokenizers built from GGUF metadata, and chat templates.

pub mod chat;
