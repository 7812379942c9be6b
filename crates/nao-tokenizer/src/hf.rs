//! Hugging Face tokenizer directories: `tokenizer.json` (through the `tokenizers` crate),
//! `tokenizer_config.json` (BOS/EOS texts, `add_bos_token`, the chat template),
//! `special_tokens_map.json`, and the end-of-generation ids of `generation_config.json`.
//!
//! The vocabulary becomes the same tables a GGUF vocabulary does, typed the way llama.cpp's
//! `convert_hf_to_gguf.py` types it: added tokens that are `special` or look special
//! (`<|...|>`) are control tokens, other added tokens user-defined, `<0xXX>` tokens of
//! SentencePiece-style vocabularies byte tokens, ids the vocabulary skips unused
//! `[PAD{id}]`. So special-token parsing, end of generation, each token's raw bytes
//! (streaming, grammar masks) and chat-template variables behave as for a GGUF file; the
//! `tokenizers` crate encodes the text between special tokens.
//!
//! Differences from transformers, all shared with llama.cpp: special tokens are found by
//! exact match (an added token's `lstrip` / `rstrip` / `single_word` are not honoured), and
//! the text between two special tokens is encoded on its own (a Metaspace pre-tokenizer
//! with `prepend_scheme: first` prepends to each such piece).

use std::path::Path;

use serde_json::Value;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::ModelWrapper;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;

use nao_gguf::Strings;

use crate::tokenizer::HfParts;
use crate::vocab::token_type;
use crate::{Tokenizer, TokenizerError, Vocab};

const TOKENIZER_JSON: &str = "tokenizer.json";
const TOKENIZER_CONFIG: &str = "tokenizer_config.json";
const SPECIAL_TOKENS_MAP: &str = "special_tokens_map.json";
const CHAT_TEMPLATE_JINJA: &str = "chat_template.jinja";
/// Most token ids accepted (bounds the tables built from the largest id).
const MAX_IDS: usize = 1 << 24;

impl Tokenizer {
    /// The tokenizer of a Hugging Face model directory: `tokenizer.json`, with
    /// `tokenizer_config.json` / `special_tokens_map.json` naming BOS and EOS and saying
    /// whether BOS/EOS are added (`add_bos_token`, `add_eos_token`; without them, whatever
    /// `tokenizer.json`'s post-processor adds), and every `eos_token_id` of
    /// `generation_config.json` (else `config.json`) ending generation.
    pub fn from_hf_dir(dir: &Path) -> Result<Tokenizer, TokenizerError> {
        let path = dir.join(TOKENIZER_JSON);
        let bytes = std::fs::read(&path).map_err(|source| TokenizerError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let hf_err = |e: tokenizers::Error| TokenizerError::HfTokenizer {
            path: path.display().to_string(),
            reason: e.to_string(),
        };
        let mut hf = tokenizers::Tokenizer::from_bytes(&bytes).map_err(hf_err)?;
        drop(bytes);
        // Lengths are the engine's business; special tokens are cut out before the
        // `tokenizers` model sees the text (see `Tokenizer::partition`).
        hf.with_padding(None);
        hf.with_truncation(None).map_err(hf_err)?;
        hf.set_encode_special_tokens(true);
        match hf.get_model() {
            ModelWrapper::BPE(_) | ModelWrapper::Unigram(_) => {}
            ModelWrapper::WordPiece(_) => {
                return Err(TokenizerError::UnsupportedModel("WordPiece".into()))
            }
            ModelWrapper::WordLevel(_) => {
                return Err(TokenizerError::UnsupportedModel("WordLevel".into()))
            }
        }
        // Every byte must encode: then `encode` cannot fail later.
        let probe: String = (0u8..0x80)
            .map(char::from)
            .chain(" é中😀".chars())
            .collect();
        hf.encode_fast(probe.as_str(), false).map_err(hf_err)?;
        let byte_level = hf.get_decoder().is_some_and(decoder_is_byte_level)
            || hf.get_pre_tokenizer().is_some_and(pre_is_byte_level);

        // Tokens and their types, by id.
        let n = hf
            .get_vocab(true)
            .values()
            .max()
            .map_or(0, |&id| id as usize + 1);
        if n == 0 {
            return Err(TokenizerError::EmptyVocab);
        }
        if n > MAX_IDS {
            return Err(TokenizerError::VocabTooLarge(n));
        }
        let added = hf.get_added_tokens_decoder();
        let mut tokens = Strings::with_capacity(n);
        let mut types = Vec::with_capacity(n);
        for id in 0..n as u32 {
            let (text, ty) = match (added.get(&id), hf.id_to_token(id)) {
                (Some(a), _) if a.special || looks_special(&a.content) => {
                    (a.content.clone(), token_type::CONTROL)
                }
                (Some(a), _) => (a.content.clone(), token_type::USER_DEFINED),
                (None, Some(t)) if !byte_level && is_byte_token(&t) => (t, token_type::BYTE),
                (None, Some(t)) => (t, token_type::NORMAL),
                (None, None) => (format!("[PAD{id}]"), token_type::UNUSED),
            };
            tokens.push(&text);
            types.push(ty);
        }

        // Special tokens: texts from the tokenizer config, ids from the vocabulary.
        let config_path = dir.join(TOKENIZER_CONFIG);
        let config = read_json_opt(&config_path)?.unwrap_or(Value::Null);
        let special_map = read_json_opt(&dir.join(SPECIAL_TOKENS_MAP))?.unwrap_or(Value::Null);
        let id_of = |key: &str| -> Result<Option<u32>, TokenizerError> {
            let Some(text) =
                token_text(config.get(key)).or_else(|| token_text(special_map.get(key)))
            else {
                return Ok(None);
            };
            hf.token_to_id(&text)
                .map(Some)
                .ok_or_else(|| TokenizerError::Config {
                    path: config_path.display().to_string(),
                    reason: format!("{key} {text:?} is not in the vocabulary"),
                })
        };
        let flag = |key: &str| config.get(key).and_then(Value::as_bool);
        let generation = generation_ids(dir)?;
        let mut bos = id_of("bos_token")?;
        let bos_from_generation = bos.is_none() && flag("add_bos_token") == Some(true);
        generation.check(n, bos_from_generation)?;
        if bos_from_generation {
            bos = generation.bos;
        }
        let eos = id_of("eos_token")?.or_else(|| generation.eos.first().copied());
        // Without the flags, what the post-processor adds around an empty text.
        let around = hf
            .encode_fast("", true)
            .map(|e| e.get_ids().to_vec())
            .unwrap_or_default();
        let add_bos = flag("add_bos_token")
            .unwrap_or_else(|| bos.is_some_and(|b| around.first() == Some(&b)));
        let add_eos = flag("add_eos_token").unwrap_or_else(|| {
            eos.is_some_and(|e| around.last() == Some(&e) && !(add_bos && around.len() == 1))
        });

        let v = Vocab {
            model: if byte_level { "gpt2" } else { "llama" }.into(),
            tokens,
            token_types: Some(types),
            bos,
            eos,
            add_bos: Some(add_bos),
            add_eos: Some(add_eos),
            ..Vocab::default()
        };
        Tokenizer::build(
            v,
            Some(HfParts {
                tokenizer: hf,
                extra_eog: generation.eos,
            }),
        )
    }
}

/// The chat template of a Hugging Face directory: `chat_template.jinja` (where recent
/// transformers save it), else `tokenizer_config.json`'s `chat_template`, a string or a list
/// of `{name, template}` of which the one named `default` is used (as transformers does
/// when no name is asked for). `None` when the directory has none.
pub fn chat_template(dir: &Path) -> Result<Option<String>, TokenizerError> {
    let jinja = dir.join(CHAT_TEMPLATE_JINJA);
    if jinja.is_file() {
        return std::fs::read_to_string(&jinja)
            .map(Some)
            .map_err(|source| TokenizerError::Io {
                path: jinja.display().to_string(),
                source,
            });
    }
    let path = dir.join(TOKENIZER_CONFIG);
    let Some(config) = read_json_opt(&path)? else {
        return Ok(None);
    };
    let bad = |reason: &str| TokenizerError::Config {
        path: path.display().to_string(),
        reason: reason.to_string(),
    };
    match config.get("chat_template") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Array(list)) => list
            .iter()
            .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
            .and_then(|t| t.get("template"))
            .and_then(Value::as_str)
            .map(|s| Some(s.to_string()))
            .ok_or_else(|| bad("chat_template lists named templates but none named \"default\"")),
        Some(_) => Err(bad(
            "chat_template must be a string or a list of {name, template}",
        )),
    }
}

/// `bos_token_id` and every `eos_token_id` (one id or a list) of `generation_config.json`,
/// each falling back to `config.json`.
struct GenerationIds {
    bos: Option<u32>,
    eos: Vec<u32>,
    /// The file each came from, for errors.
    bos_path: String,
    eos_path: String,
}

impl GenerationIds {
    /// Every id must name a token: `n` is the vocabulary size.
    fn check(&self, n: usize, use_bos: bool) -> Result<(), TokenizerError> {
        let bos = self.bos.filter(|_| use_bos).map(|id| (id, &self.bos_path));
        let eos = self.eos.iter().map(|&id| (id, &self.eos_path));
        match bos.into_iter().chain(eos).find(|&(id, _)| id as usize >= n) {
            Some((id, path)) => Err(TokenizerError::Config {
                path: path.clone(),
                reason: format!("token id {id} is outside the vocabulary of {n} tokens"),
            }),
            None => Ok(()),
        }
    }
}

fn generation_ids(dir: &Path) -> Result<GenerationIds, TokenizerError> {
    let mut out = GenerationIds {
        bos: None,
        eos: Vec::new(),
        bos_path: String::new(),
        eos_path: String::new(),
    };
    for name in ["generation_config.json", "config.json"] {
        let path = dir.join(name);
        let Some(v) = read_json_opt(&path)? else {
            continue;
        };
        let id = |x: &Value| {
            x.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| TokenizerError::Config {
                    path: path.display().to_string(),
                    reason: format!("token id {x} is not a non-negative integer"),
                })
        };
        if out.bos.is_none() {
            if let Some(x) = v.get("bos_token_id").filter(|x| !x.is_null()) {
                out.bos = Some(id(x)?);
                out.bos_path = path.display().to_string();
            }
        }
        if out.eos.is_empty() {
            match v.get("eos_token_id") {
                None | Some(Value::Null) => {}
                Some(Value::Array(a)) => out.eos = a.iter().map(id).collect::<Result<_, _>>()?,
                Some(x) => out.eos = vec![id(x)?],
            }
            out.eos_path = path.display().to_string();
        }
    }
    Ok(out)
}

/// The parsed JSON file at `path`; `None` when there is no such file.
fn read_json_opt(path: &Path) -> Result<Option<Value>, TokenizerError> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|source| TokenizerError::Io {
        path: path.display().to_string(),
        source,
    })?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| TokenizerError::Config {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
}

/// A special-token entry of `tokenizer_config.json`: a string, or an `AddedToken` object
/// (`{"content": ..., ...}`); `null` is no token.
fn token_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
        _ => None,
    }
}

/// `convert_hf_to_gguf.py`'s `does_token_look_special`: added tokens some models forget
/// to mark special.
fn looks_special(t: &str) -> bool {
    matches!(t, "<pad>" | "<mask>" | "<2mass>" | "[@BOS@]")
        || (t.starts_with("<|") && t.ends_with("|>"))
        || (t.starts_with("<｜") && t.ends_with("｜>"))
        || (t.starts_with("<unused") && t.ends_with('>'))
}

/// `<0xXX>`: a byte-fallback token.
fn is_byte_token(t: &str) -> bool {
    t.len() == 6
        && t.starts_with("<0x")
        && t.ends_with('>')
        && t[3..5].bytes().all(|b| b.is_ascii_hexdigit())
}

fn decoder_is_byte_level(d: &DecoderWrapper) -> bool {
    match d {
        DecoderWrapper::ByteLevel(_) => true,
        DecoderWrapper::Sequence(s) => s.get_decoders().iter().any(decoder_is_byte_level),
        _ => false,
    }
}

fn pre_is_byte_level(p: &PreTokenizerWrapper) -> bool {
    match p {
        PreTokenizerWrapper::ByteLevel(_) => true,
        PreTokenizerWrapper::Sequence(s) => s.as_ref().iter().any(pre_is_byte_level),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::ChatTemplate;
    use crate::StreamDecoder;
    use serde_json::json;
    use std::path::PathBuf;

    /// GPT-2's `bytes_to_unicode`, written out again here (the table the vocabulary is
    /// spelled in): printable Latin-1 bytes stand for themselves, the rest for 256 + n.
    fn gpt2_char(b: u8) -> char {
        let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        if printable(b) {
            return char::from(b);
        }
        let n = (0..b).filter(|&x| !printable(x)).count() as u32;
        char::from_u32(256 + n).unwrap()
    }

    const MERGES: [&str; 6] = ["h e", "l l", "he ll", "hell o", "Ġ hello", "Ġ w"];
    const IM_START: u32 = 262;
    const IM_END: u32 = 263;
    const ENDOFTEXT: u32 = 264;
    const TOOL_CALL: u32 = 265;

    /// Ids 0..256: the 256 byte characters in byte order; 256..262: the merges' results
    /// in rank order; then three special added tokens and one plain added token.
    fn tokenizer_json(post_processor: Value) -> Value {
        let mut vocab = serde_json::Map::new();
        for b in 0..=255u8 {
            vocab.insert(gpt2_char(b).to_string(), json!(b));
        }
        for (i, m) in MERGES.iter().enumerate() {
            vocab.insert(m.replace(' ', ""), json!(256 + i));
        }
        let added = |id: u32, content: &str, special: bool| {
            json!({"id": id, "content": content, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": special})
        };
        let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": true});
        json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": [
                added(IM_START, "<|im_start|>", true),
                added(IM_END, "<|im_end|>", true),
                added(ENDOFTEXT, "<|endoftext|>", true),
                added(TOOL_CALL, "<tool_call>", false),
            ],
            "normalizer": null,
            "pre_tokenizer": byte_level,
            "post_processor": post_processor,
            "decoder": byte_level,
            "model": {
                "type": "BPE", "dropout": null, "unk_token": null,
                "continuing_subword_prefix": null, "end_of_word_suffix": null,
                "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                "vocab": vocab, "merges": MERGES,
            },
        })
    }

    fn write_dir(name: &str, files: &[(&str, Value)]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("nao-tok-hf-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (file, v) in files {
            std::fs::write(dir.join(file), serde_json::to_string_pretty(v).unwrap()).unwrap();
        }
        dir
    }

    const TEMPLATE: &str = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

    /// A Qwen-like directory: ByteLevel post-processor (adds nothing), no BOS, EOS
    /// `<|im_end|>`, and generation also ending at `<|endoftext|>`.
    fn qwen_like(name: &str) -> PathBuf {
        let bl = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": true});
        write_dir(
            name,
            &[
                ("tokenizer.json", tokenizer_json(bl)),
                (
                    "tokenizer_config.json",
                    json!({"bos_token": null, "eos_token": "<|im_end|>", "chat_template": TEMPLATE}),
                ),
                (
                    "generation_config.json",
                    json!({"eos_token_id": [IM_END, ENDOFTEXT]}),
                ),
            ],
        )
    }

    /// The ids of `s` spelled one byte per token (no merge applies).
    fn bytes_of(s: &str) -> Vec<u32> {
        s.bytes().map(u32::from).collect()
    }

    #[test]
    fn encodes_with_the_merges_and_round_trips() {
        let tok = Tokenizer::from_hf_dir(&qwen_like("encode")).unwrap();
        assert_eq!(tok.n_vocab(), 266);
        // "hello" merges fully; " hello" becomes "Ġhello"; " w" becomes "Ġw" and "orld" stays bytes.
        let ids = tok.encode("hello hello world", true, true);
        let mut want = vec![259, 260, 261];
        want.extend(bytes_of("orld"));
        assert_eq!(ids, want);
        assert_eq!(tok.encode("hellx", false, false), [258, u32::from(b'x')]);
        for text in ["hello hello world", "héllo 😀\n\tend", "", "a  b   c"] {
            let ids = tok.encode(text, true, true);
            assert_eq!(tok.decode(&ids), text);
        }
    }

    #[test]
    fn raw_bytes_undo_the_byte_alphabet() {
        let tok = Tokenizer::from_hf_dir(&qwen_like("bytes")).unwrap();
        assert_eq!(tok.token_text(260), Some("Ġhello"));
        assert_eq!(tok.token_bytes(260), Some(&b" hello"[..]));
        assert_eq!(tok.token_bytes(u32::from(b'\n')), Some(&b"\n"[..]));
        assert_eq!(tok.token_bytes(0xE9), Some(&[0xE9u8][..])); // one byte of "é", not "é"
        assert_eq!(tok.token_bytes(IM_END), Some(&b"<|im_end|>"[..]));
        assert_eq!(tok.token_bytes(266), None);
        // A character split over byte tokens streams out whole.
        let mut s = StreamDecoder::new();
        let parts: Vec<String> = tok
            .encode("😀", false, false)
            .into_iter()
            .map(|id| s.push(&tok, id))
            .collect();
        assert_eq!(parts, ["", "", "", "😀"]);
    }

    #[test]
    fn special_tokens_are_not_split() {
        let tok = Tokenizer::from_hf_dir(&qwen_like("special")).unwrap();
        let text = "<|im_start|>hello<|im_end|>";
        assert_eq!(tok.encode(text, false, true), [IM_START, 259, IM_END]);
        // Without parse_special the markup is text: its bytes, never the control ids.
        let plain = tok.encode(text, false, false);
        assert!(!plain.contains(&IM_START) && !plain.contains(&IM_END));
        assert_eq!(tok.decode(&plain), text);
        // A non-special added token is always one token, as in transformers.
        assert_eq!(
            tok.encode("a<tool_call>b", false, false),
            [97, TOOL_CALL, 98]
        );
        assert!(tok.is_control(IM_START) && !tok.is_control(TOOL_CALL) && !tok.is_control(259));
        assert!(tok.is_eog(IM_END) && tok.is_eog(ENDOFTEXT) && !tok.is_eog(IM_START));
        assert_eq!(
            (tok.bos(), tok.eos(), tok.add_bos()),
            (None, Some(IM_END), false)
        );
    }

    #[test]
    fn bos_from_the_config_or_the_post_processor() {
        // add_bos_token says so explicitly.
        let bl = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": true});
        let dir = write_dir(
            "bos_flag",
            &[
                ("tokenizer.json", tokenizer_json(bl.clone())),
                (
                    "tokenizer_config.json",
                    json!({"bos_token": {"content": "<|endoftext|>", "special": true}, "add_bos_token": true, "eos_token": "<|im_end|>"}),
                ),
            ],
        );
        let tok = Tokenizer::from_hf_dir(&dir).unwrap();
        assert_eq!(tok.encode("hello", true, true), [ENDOFTEXT, 259]);
        assert_eq!(tok.encode("hello", false, true), [259]);
        // Without the flag, a post-processor that adds BOS (Llama 3's) decides.
        let template = json!({
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<|endoftext|>": {"id": "<|endoftext|>", "ids": [ENDOFTEXT], "tokens": ["<|endoftext|>"]}},
        });
        let dir = write_dir(
            "bos_post",
            &[
                ("tokenizer.json", tokenizer_json(template)),
                (
                    "tokenizer_config.json",
                    json!({"bos_token": "<|endoftext|>", "eos_token": "<|im_end|>"}),
                ),
            ],
        );
        let tok = Tokenizer::from_hf_dir(&dir).unwrap();
        assert!(tok.add_bos() && !tok.add_eos());
        assert_eq!(tok.encode("hello", true, true), [ENDOFTEXT, 259]);
        // Without generation_config.json, only the configured EOS (and llama.cpp's
        // end-of-generation texts) end generation.
        assert!(tok.is_eog(IM_END));
    }

    #[test]
    fn bad_directories_are_typed_errors() {
        let dir = write_dir("no_tokenizer", &[]);
        assert!(matches!(
            Tokenizer::from_hf_dir(&dir),
            Err(TokenizerError::Io { .. })
        ));
        let dir = write_dir("bad_json", &[("tokenizer.json", json!({"model": 3}))]);
        assert!(matches!(
            Tokenizer::from_hf_dir(&dir),
            Err(TokenizerError::HfTokenizer { .. })
        ));
        let bl = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": true});
        let dir = write_dir(
            "bad_eos",
            &[
                ("tokenizer.json", tokenizer_json(bl.clone())),
                ("tokenizer_config.json", json!({"eos_token": "</s>"})),
            ],
        );
        match Tokenizer::from_hf_dir(&dir) {
            Err(TokenizerError::Config { reason, .. }) => {
                assert!(reason.contains("</s>"), "{reason}")
            }
            other => panic!("expected Config, got {:?}", other.err()),
        }
        let dir = write_dir(
            "bad_gen",
            &[
                ("tokenizer.json", tokenizer_json(bl)),
                ("generation_config.json", json!({"eos_token_id": 999})),
            ],
        );
        match Tokenizer::from_hf_dir(&dir) {
            Err(TokenizerError::Config { path, reason }) => {
                assert!(
                    path.ends_with("generation_config.json") && reason.contains("999"),
                    "{reason}"
                )
            }
            other => panic!("expected Config, got {:?}", other.err()),
        }
    }

    #[test]
    fn chat_template_forms() {
        let dir = qwen_like("template");
        let src = chat_template(&dir).unwrap().unwrap();
        let tok = Tokenizer::from_hf_dir(&dir).unwrap();
        let eos = tok.token_text(IM_END).unwrap();
        let t = ChatTemplate::new(&src, "", eos).unwrap();
        let out = t
            .render(&json!([{"role": "user", "content": "hello"}]), None, true)
            .unwrap();
        assert_eq!(
            out,
            "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(tok.encode(&out, false, true)[..3], [IM_START, 117, 115]); // <|im_start|> u s

        let named = json!({"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]});
        let dir = write_dir("template_list", &[("tokenizer_config.json", named)]);
        assert_eq!(chat_template(&dir).unwrap().as_deref(), Some("D"));
        std::fs::write(dir.join("chat_template.jinja"), "J").unwrap();
        assert_eq!(chat_template(&dir).unwrap().as_deref(), Some("J"));

        let no_default = json!({"chat_template": [{"name": "tool_use", "template": "T"}]});
        let dir = write_dir(
            "template_nodefault",
            &[("tokenizer_config.json", no_default)],
        );
        assert!(matches!(
            chat_template(&dir),
            Err(TokenizerError::Config { .. })
        ));
        let dir = write_dir("template_none", &[("tokenizer_config.json", json!({}))]);
        assert_eq!(chat_template(&dir).unwrap(), None);
    }
}
