//! Constrained decoding: a token mask per step from a grammar (JSON schema, regex, Lark).
//!
//! The grammar engine is `llguidance` (<https://github.com/guidance-ai/llguidance>): it
//! compiles a grammar against a token trie once per request and then, each step, says which
//! tokens keep the output inside the grammar. This module owns the glue:
//!
//! - [`VocabEnv`]: our own `toktrie::TokenizerEnv` over the model's vocabulary. Token bytes
//!   come from our tokenizer; special and control tokens (chat markup, end of generation)
//!   are stored behind `TokTrie::SPECIAL_TOKEN_MARKER`, so no grammar can ever produce them
//!   as text. The end-of-generation tokens form the trie's EOS set: the mask allows them
//!   exactly when the grammar is complete.
//! - [`ConstraintFactory`]: built once per model (it slices the vocabulary for fast masks,
//!   which is not free) and turns a [`Grammar`] into a [`Constraint`].
//! - [`Constraint`]: one request's matcher: [`Constraint::mask_logits`] before sampling,
//!   [`Constraint::commit`] after.
//!
//! JSON grammars get bounded whitespace (one space, or one or two newlines plus up to 20
//! spaces or tabs of indent, like llama.cpp's JSON-schema grammars) instead of llguidance's
//! unbounded default: with unbounded whitespace a model that keeps emitting newlines after
//! the closing brace never finishes. A schema that sets its own `x-guidance` options keeps
//! them.

use crate::api::Grammar;
use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{SimpleVob, TokRxInfo, TokTrie, TokenId, TokenizerEnv};
use llguidance::{Matcher, ParserFactory};
use nao_tokenizer::Tokenizer;
use serde_json::{json, Value as Json};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

/// Whitespace allowed between JSON tokens (and once after the value).
const JSON_WHITESPACE: &str = r"(?:\x20|\x0A{1,2}[\x20\x09]{0,20})";

/// Errors of grammar compilation and matching.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ConstraintError {
    /// The grammar cannot be compiled (syntax error or an unsupported feature, which the
    /// message names).
    #[error("{0}")]
    BadGrammar(String),
    /// The vocabulary cannot be turned into a token trie.
    #[error("cannot build the token trie for constrained decoding: {0}")]
    Vocab(String),
    /// The matcher failed mid-generation (a token it did not allow, or an internal error).
    #[error("constrained decoding failed: {0}")]
    Matcher(String),
}

/// Our `TokenizerEnv`: the model's vocabulary as a token trie plus a tokenizer for the
/// grammar engine's own use (forced text, special-token lookups).
pub struct VocabEnv {
    trie: TokTrie,
    /// `None`: tokenize greedily through the trie (test vocabularies).
    encode: Option<Arc<Tokenizer>>,
}

/// A vocabulary described directly, for tests and tokenizers other than ours.
#[derive(Debug, Clone, Default)]
pub struct VocabSpec {
    /// The bytes each token contributes to the output, indexed by id.
    pub tokens: Vec<Vec<u8>>,
    /// Ids of tokens that are markup, never text (control tokens, end of generation).
    pub special: Vec<u32>,
    /// End-of-generation ids; the first is the primary EOS.
    pub eog: Vec<u32>,
}

impl VocabEnv {
    /// The trie for `spec`; special tokens are stored as `0xFF` + their text.
    pub fn from_spec(spec: &VocabSpec) -> Result<VocabEnv, ConstraintError> {
        let n = spec.tokens.len();
        if n == 0 || n > u32::MAX as usize {
            return Err(ConstraintError::Vocab(format!(
                "vocabulary size {n} is not usable"
            )));
        }
        let mut words = spec.tokens.clone();
        for &id in spec.special.iter().chain(&spec.eog) {
            let Some(w) = words.get_mut(id as usize) else {
                return Err(ConstraintError::Vocab(format!(
                    "special token id {id} is outside the vocabulary (size {n})"
                )));
            };
            if w.first() != Some(&TokTrie::SPECIAL_TOKEN_MARKER) {
                // Why: bytes behind the marker can never match grammar text, so a grammar
                // cannot spell `<|im_end|>` or `<start_of_turn>` character by character
                // into the chosen token.
                let text = if w.is_empty() {
                    format!("[{id}]").into_bytes()
                } else {
                    std::mem::take(w)
                };
                w.push(TokTrie::SPECIAL_TOKEN_MARKER);
                w.extend_from_slice(&text);
            }
        }
        let eos = spec.eog.first().copied().unwrap_or(u32::MAX);
        let info = TokRxInfo::new(n as u32, eos);
        // Why catch_unwind: toktrie asserts on malformed input (an all-`0xFF` duplicate
        // special text, say); a broken vocabulary must fail the request, not the engine.
        let trie = catch_unwind(AssertUnwindSafe(|| {
            let t = TokTrie::from(&info, &words);
            if spec.eog.is_empty() {
                t
            } else {
                t.with_eos_tokens(&spec.eog)
            }
        }))
        .map_err(|_| ConstraintError::Vocab("the token trie could not be built".into()))?;
        Ok(VocabEnv { trie, encode: None })
    }

    /// The trie for one of our tokenizers: bytes from `token_bytes`, control and
    /// end-of-generation tokens special, and `encode` as the tokenizer.
    pub fn from_tokenizer(tok: Arc<Tokenizer>) -> Result<VocabEnv, ConstraintError> {
        let n = tok.n_vocab() as u32;
        let mut spec = VocabSpec {
            tokens: (0..n)
                .map(|id| tok.token_bytes(id).unwrap_or_default().to_vec())
                .collect(),
            ..VocabSpec::default()
        };
        for id in 0..n {
            if tok.is_eog(id) {
                spec.eog.push(id);
            } else if tok.is_control(id) {
                spec.special.push(id);
            }
        }
        // The configured EOS first: llguidance reports it as "the" EOS token.
        if let Some(eos) = tok.eos().filter(|e| spec.eog.contains(e)) {
            spec.eog.retain(|&e| e != eos);
            spec.eog.insert(0, eos);
        }
        let mut env = VocabEnv::from_spec(&spec)?;
        env.encode = Some(tok);
        Ok(env)
    }
}

impl TokenizerEnv for VocabEnv {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    /// Valid UTF-8 goes through our tokenizer (canonical ids, special texts not parsed);
    /// anything else, or a test vocabulary, is split greedily along the trie.
    fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
        match (&self.encode, std::str::from_utf8(s)) {
            (Some(tok), Ok(text)) => tok.encode(text, false, false),
            _ => self.trie.greedy_tokenize(s),
        }
    }

    fn tokenize_is_canonical(&self) -> bool {
        // Why: the greedy fallback is not what the model saw in training.
        self.encode.is_some()
    }
}

/// Compiles grammars for one vocabulary. Build it once per model and share it.
pub struct ConstraintFactory {
    factory: ParserFactory,
}

impl ConstraintFactory {
    /// Slices the vocabulary for fast masks; costs tens to hundreds of milliseconds on a
    /// 150k vocabulary.
    pub fn new(env: VocabEnv) -> Result<ConstraintFactory, ConstraintError> {
        let env: llguidance::toktrie::TokEnv = Arc::new(env);
        let mut factory = catch_unwind(AssertUnwindSafe(|| ParserFactory::new_simple(&env)))
            .map_err(|_| ConstraintError::Vocab("the grammar engine panicked".into()))?
            .map_err(|e| ConstraintError::Vocab(e.to_string()))?;
        // Why: llguidance logs warnings to stderr by default; errors reach us as values.
        factory.quiet();
        Ok(ConstraintFactory { factory })
    }

    pub fn from_tokenizer(tok: Arc<Tokenizer>) -> Result<ConstraintFactory, ConstraintError> {
        ConstraintFactory::new(VocabEnv::from_tokenizer(tok)?)
    }

    /// Compiles `g`; unsupported schema keywords and grammar syntax errors come back as
    /// [`ConstraintError::BadGrammar`] naming them.
    pub fn compile(&self, g: &Grammar) -> Result<Constraint, ConstraintError> {
        let top = top_level(g)?;
        let parser = catch_unwind(AssertUnwindSafe(|| self.factory.create_parser(top)))
            .map_err(|_| ConstraintError::BadGrammar("the grammar engine panicked".into()))?
            .map_err(|e| ConstraintError::BadGrammar(first_line(&e.to_string())))?;
        let matcher = Matcher::new(Ok(parser));
        if let Some(e) = matcher.get_error() {
            return Err(ConstraintError::BadGrammar(first_line(&e)));
        }
        Ok(Constraint { matcher })
    }

    /// The vocabulary size the masks cover.
    pub fn n_vocab(&self) -> usize {
        self.factory.tok_env().tok_trie().vocab_size()
    }
}

/// Grammar compile errors can carry a multi-line trace; the first line names the problem.
fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or(s).trim().to_string()
}

/// Our grammar as llguidance's input.
fn top_level(g: &Grammar) -> Result<TopLevelGrammar, ConstraintError> {
    Ok(match g {
        Grammar::JsonObject => {
            TopLevelGrammar::from_json_schema(with_whitespace(json!({"type": "object"})))
        }
        Grammar::JsonSchema(schema) => {
            let schema = match schema {
                Json::Bool(true) => json!({}),
                Json::Bool(false) => {
                    return Err(ConstraintError::BadGrammar(
                        "the JSON schema `false` allows no value".into(),
                    ))
                }
                Json::Object(_) => schema.clone(),
                _ => {
                    return Err(ConstraintError::BadGrammar(
                        "a JSON schema must be an object or a boolean".into(),
                    ))
                }
            };
            TopLevelGrammar::from_json_schema(with_whitespace(schema))
        }
        Grammar::Lark(src) => TopLevelGrammar::from_lark(src.clone()),
        Grammar::Regex(rx) => TopLevelGrammar::from_regex(rx),
    })
}

/// Adds our bounded-whitespace options unless the schema brings its own. Public so that
/// grammars embedding a schema (`%json` in Lark, as tool-call grammars do) get the same.
pub fn with_whitespace(mut schema: Json) -> Json {
    if let Json::Object(m) = &mut schema {
        m.entry("x-guidance").or_insert_with(|| {
            json!({
                "item_separator": ",",
                "key_separator": ":",
                "whitespace_flexible": true,
                "whitespace_pattern": JSON_WHITESPACE,
            })
        });
    }
    schema
}

/// One request's grammar state.
pub struct Constraint {
    matcher: Matcher,
}

impl Constraint {
    /// The tokens allowed next. Errors once the matcher failed or stopped.
    pub fn mask(&mut self) -> Result<SimpleVob, ConstraintError> {
        self.matcher
            .compute_mask()
            .map_err(|e| ConstraintError::Matcher(first_line(&e.to_string())))
    }

    /// Sets every disallowed logit to `-inf` (also the ones past the grammar's vocabulary:
    /// models often pad their output rows). Errors when nothing at all is allowed.
    pub fn mask_logits(&mut self, logits: &mut [f32]) -> Result<(), ConstraintError> {
        let mask = self.mask()?;
        if mask.is_zero() {
            return Err(ConstraintError::Matcher(
                "the grammar allows no token here".into(),
            ));
        }
        let n = mask.len().min(logits.len());
        for (i, l) in logits[..n].iter_mut().enumerate() {
            if !mask.get(i) {
                *l = f32::NEG_INFINITY;
            }
        }
        for l in &mut logits[n..] {
            *l = f32::NEG_INFINITY;
        }
        Ok(())
    }

    /// Advances past the sampled `token`.
    pub fn commit(&mut self, token: u32) -> Result<(), ConstraintError> {
        self.matcher
            .consume_token(token)
            .map_err(|e| ConstraintError::Matcher(first_line(&e.to_string())))
    }

    /// The grammar is complete and nothing but end-of-generation may follow.
    pub fn is_stopped(&self) -> bool {
        self.matcher.is_stopped() && !self.matcher.is_error()
    }

    /// The output so far is a complete match (the mask would allow end-of-generation).
    pub fn is_accepting(&mut self) -> bool {
        self.matcher.is_accepting().unwrap_or(false)
    }
}

impl std::fmt::Debug for Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Constraint")
            .field("stopped", &self.matcher.is_stopped())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Ids 0..=255: single bytes. Then a few multi-byte tokens, a control token and EOS.
    const T_TRUE: u32 = 256; // "true"
    const T_NAME: u32 = 257; // "\"name\""
    const T_OPEN: u32 = 258; // "{\""
    const T_CTRL: u32 = 259; // "<|im_start|>" (control)
    const T_EOS: u32 = 260; // "<|im_end|>" (end of generation)
    const T_TRUE_CLOSE: u32 = 261; // "true}"

    fn factory() -> ConstraintFactory {
        let mut tokens: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
        for w in [
            "true",
            "\"name\"",
            "{\"",
            "<|im_start|>",
            "<|im_end|>",
            "true}",
        ] {
            tokens.push(w.as_bytes().to_vec());
        }
        let env = VocabEnv::from_spec(&VocabSpec {
            tokens,
            special: vec![T_CTRL],
            eog: vec![T_EOS],
        })
        .unwrap();
        ConstraintFactory::new(env).unwrap()
    }

    fn allowed(c: &mut Constraint) -> Vec<u32> {
        c.mask().unwrap().to_list()
    }

    fn feed(c: &mut Constraint, text: &str) {
        for b in text.bytes() {
            c.commit(b as u32).unwrap();
        }
    }

    #[test]
    fn mask_allows_exactly_the_grammar_tokens() {
        let f = factory();
        let schema = json!({
            "type": "object",
            "properties": {"ok": {"type": "boolean"}},
            "required": ["ok"],
            "additionalProperties": false
        });
        let mut c = f.compile(&Grammar::JsonSchema(schema)).unwrap();
        // Only `{` or `{"` may start (no whitespace before the value, no special token).
        assert_eq!(allowed(&mut c), vec![b'{' as u32, T_OPEN]);
        feed(&mut c, "{");
        // After `{`: whitespace, or the quote opening the only key. `{"` and `"name"` do
        // not fit, nor do the special tokens.
        let a = allowed(&mut c);
        assert!(a.contains(&(b'"' as u32)));
        assert!(a.contains(&(b' ' as u32)));
        assert!(a.contains(&(b'\n' as u32)));
        for t in [T_NAME, T_OPEN, T_CTRL, T_EOS, b'}' as u32, b'a' as u32] {
            assert!(!a.contains(&t), "{t} allowed after `{{`");
        }
        feed(&mut c, "\"ok\":");
        let a = allowed(&mut c);
        assert!(a.contains(&T_TRUE));
        assert!(a.contains(&T_TRUE_CLOSE));
        assert!(a.contains(&(b't' as u32)) && a.contains(&(b'f' as u32)));
        assert!(!a.contains(&(b'n' as u32)) && !a.contains(&(b'1' as u32)));
        let a = allowed(&mut c);
        assert!(!a.contains(&T_EOS), "the object is not complete yet");
        c.commit(T_TRUE_CLOSE).unwrap();
        // The object is complete and nothing may follow it: the matcher stops by itself.
        assert!(c.is_stopped());
        assert!(c.mask().is_err(), "no mask after the end");
    }

    #[test]
    fn special_tokens_never_match_text() {
        let f = factory();
        // A regex that would accept the control token's text as plain bytes.
        let mut c = f
            .compile(&Grammar::Regex(r"<\|im_start\|>x".into()))
            .unwrap();
        let a = allowed(&mut c);
        assert_eq!(a, vec![b'<' as u32], "the control token is not text");
    }

    #[test]
    fn completion_stops_the_matcher() {
        let f = factory();
        let mut c = f.compile(&Grammar::Regex("ab".into())).unwrap();
        assert!(!c.is_stopped());
        feed(&mut c, "ab");
        // Nothing but EOS can follow: llguidance stops by itself.
        assert!(c.is_stopped());

        let mut c = f
            .compile(&Grammar::JsonSchema(json!({"enum": ["x", "y"]})))
            .unwrap();
        feed(&mut c, "\"");
        assert!(!c.is_stopped());
        assert!(!allowed(&mut c).contains(&T_EOS));
        feed(&mut c, "y\"");
        assert!(c.is_stopped());

        // A grammar that may stop or go on allows end of generation and more text.
        let mut c = f.compile(&Grammar::Regex("a+".into())).unwrap();
        feed(&mut c, "a");
        let a = allowed(&mut c);
        assert!(a.contains(&T_EOS) && a.contains(&(b'a' as u32)));
        assert!(!a.contains(&T_CTRL));
        assert!(c.is_accepting() && !c.is_stopped());
    }

    #[test]
    fn json_object_masks_logits() {
        let f = factory();
        let mut c = f.compile(&Grammar::JsonObject).unwrap();
        // Two padding entries past the vocabulary must be masked too.
        let mut logits = vec![0.0f32; f.n_vocab() + 2];
        c.mask_logits(&mut logits).unwrap();
        let finite: Vec<usize> = (0..logits.len())
            .filter(|&i| logits[i].is_finite())
            .collect();
        assert_eq!(finite, vec![b'{' as usize, T_OPEN as usize]);
        c.commit(b'{' as u32).unwrap();
        // A token the mask forbids is an error, not a panic.
        assert!(c.commit(b'x' as u32).is_err());
    }

    #[test]
    fn unsupported_schema_is_bad_grammar_naming_the_feature() {
        let f = factory();
        let bad = json!({"type": "array", "uniqueItems": true});
        match f.compile(&Grammar::JsonSchema(bad)) {
            Err(ConstraintError::BadGrammar(m)) => assert!(m.contains("uniqueItems"), "{m}"),
            other => panic!("{other:?}"),
        }
        for g in [
            Grammar::JsonSchema(json!(false)),
            Grammar::JsonSchema(json!(3)),
            Grammar::JsonSchema(json!({"type": "frobnicate"})),
            Grammar::Lark("start: (".into()),
            Grammar::Regex("(".into()),
        ] {
            assert!(
                matches!(f.compile(&g), Err(ConstraintError::BadGrammar(_))),
                "{g:?}"
            );
        }
        assert!(f.compile(&Grammar::JsonSchema(json!(true))).is_ok());
    }

    #[test]
    fn bad_vocab_is_an_error() {
        let spec = VocabSpec {
            tokens: vec![b"a".to_vec()],
            special: vec![5],
            eog: vec![],
        };
        assert!(matches!(
            VocabEnv::from_spec(&spec),
            Err(ConstraintError::Vocab(_))
        ));
    }
}
