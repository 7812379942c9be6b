//! `Tokenizer::from_gguf`: reads the `tokenizer.ggml.*` metadata into a [`Vocab`].

use nao_gguf::GgufFile;

use crate::{Tokenizer, TokenizerError, Vocab};

impl Tokenizer {
    /// Builds the tokenizer described by a GGUF file's metadata.
    pub fn from_gguf(f: &GgufFile) -> Result<Tokenizer, TokenizerError> {
        Tokenizer::from_vocab(vocab_from_gguf(f)?)
    }
}

/// The `tokenizer.ggml.*` keys of `f` as a [`Vocab`].
pub fn vocab_from_gguf(f: &GgufFile) -> Result<Vocab, TokenizerError> {
    const MODEL: &str = "tokenizer.ggml.model";
    const TOKENS: &str = "tokenizer.ggml.tokens";
    const SCORES: &str = "tokenizer.ggml.scores";
    let id = |key: &str| f.get_u32(key);
    // llama.cpp accepts scores stored as f32 or i32.
    let scores = match f.get_f32_array(SCORES) {
        Ok(s) => s,
        Err(e) => match f.get_i32_array(SCORES) {
            Ok(s) => s.map(|s| s.into_iter().map(|x| x as f32).collect()),
            Err(_) => return Err(e.into()),
        },
    };
    Ok(Vocab {
        model: f
            .get_str(MODEL)?
            .ok_or(TokenizerError::MissingKey(MODEL))?
            .to_owned(),
        pre: f.get_str("tokenizer.ggml.pre")?.map(str::to_owned),
        tokens: f
            .get_strings(TOKENS)?
            .ok_or(TokenizerError::MissingKey(TOKENS))?
            .clone(),
        scores,
        token_types: f.get_i32_array("tokenizer.ggml.token_type")?,
        merges: f.get_strings("tokenizer.ggml.merges")?.cloned(),
        bos: id("tokenizer.ggml.bos_token_id")?,
        eos: id("tokenizer.ggml.eos_token_id")?,
        eot: id("tokenizer.ggml.eot_token_id")?,
        eom: id("tokenizer.ggml.eom_token_id")?,
        unk: id("tokenizer.ggml.unknown_token_id")?,
        pad: id("tokenizer.ggml.padding_token_id")?,
        fim_pad: id("tokenizer.ggml.fim_pad_token_id")?,
        fim_rep: id("tokenizer.ggml.fim_rep_token_id")?,
        fim_sep: id("tokenizer.ggml.fim_sep_token_id")?,
        add_bos: f.get_bool("tokenizer.ggml.add_bos_token")?,
        add_eos: f.get_bool("tokenizer.ggml.add_eos_token")?,
        add_space_prefix: f.get_bool("tokenizer.ggml.add_space_prefix")?,
    })
}
