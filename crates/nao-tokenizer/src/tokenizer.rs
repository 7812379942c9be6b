//! [`Tokenizer`]: built from a [`Vocab`], encodes with llama.cpp's exact semantics
//! (`llama_vocab::impl::tokenize`) and maps ids back to the bytes they stand for.
//!
//! A Hugging Face `tokenizer.json` ([`crate::hf`]) becomes the same tables (tokens, types,
//! output bytes, special and end-of-generation ids) with the `tokenizers` crate as the
//! encoder of the text between special tokens, so callers see one type either way.

use std::borrow::Cow;

use crate::bpe::Bpe;
use crate::hash::{FxMap, FxSet};
use crate::pretokenize::PreType;
use crate::spm::Spm;
use crate::token_index::{IndexError, TokenIndex};
use crate::unicode::char_to_byte;
use crate::vocab::{token_type, Vocab};
use crate::TokenizerError;

// Token attributes, as llama.cpp's `llama_token_attr` bits.
const ATTR_UNKNOWN: u8 = 1 << 0;
const ATTR_UNUSED: u8 = 1 << 1;
const ATTR_NORMAL: u8 = 1 << 2;
const ATTR_CONTROL: u8 = 1 << 3;
const ATTR_USER_DEFINED: u8 = 1 << 4;
const ATTR_BYTE: u8 = 1 << 5;

/// Texts llama.cpp treats as end-of-generation wherever they occur in a vocabulary.
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
];
/// Candidates for `eot` when the metadata does not name it, in order of preference.
const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "<end_of_utterance>",
];
const FIM_PAD_TEXTS: &[&str] = &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>"];
const FIM_REP_TEXTS: &[&str] = &[
    "<|fim_repo|>",
    "<|repo_name|>",
    "<fim-repo>",
    "<REPO>",
    "<reponame>",
];
const FIM_SEP_TEXTS: &[&str] = &["<|file_sep|>"];

enum Model {
    Bpe(Bpe),
    Spm,
    /// `tokenizer.json` through the `tokenizers` crate; its added vocabulary is set to
    /// leave special tokens as text (they are cut out by [`Tokenizer::partition`] first,
    /// with the same rules as for GGUF vocabularies).
    Hf(Box<tokenizers::Tokenizer>),
}

/// What a `tokenizer.json` adds to the [`Vocab`] built from it.
pub(crate) struct HfParts {
    pub(crate) tokenizer: tokenizers::Tokenizer,
    /// More end-of-generation ids (`generation_config.json`'s `eos_token_id` list).
    pub(crate) extra_eog: Vec<u32>,
}

/// A tokenizer reproducing llama.cpp's token ids.
pub struct Tokenizer {
    model: Model,
    /// Token strings and the string → id table.
    index: TokenIndex,
    scores: Vec<f32>,
    attrs: Vec<u8>,
    /// Control, user-defined and unknown tokens, longest text first.
    specials: Vec<u32>,
    /// Byte trie over the special texts, to find which ones occur in a text.
    special_trie: Trie,
    /// Output bytes of every token, concatenated; token `i` is `bytes[offs[i]..offs[i+1]]`.
    bytes: Vec<u8>,
    offs: Vec<usize>,
    byte_tokens: [Option<u32>; 256],
    bos: Option<u32>,
    eos: Option<u32>,
    unk: Option<u32>,
    eog: FxSet<u32>,
    add_bos: bool,
    add_eos: bool,
    add_space_prefix: bool,
}

enum Fragment {
    Text(usize, usize),
    Token(u32),
}

impl Tokenizer {
    /// Builds a tokenizer from plain metadata, validating it.
    pub fn from_vocab(v: Vocab) -> Result<Tokenizer, TokenizerError> {
        Tokenizer::build(v, None)
    }

    /// [`Tokenizer::from_vocab`], or with `hf` the `tokenizer.json` backend: then `v` holds
    /// its tables, ids absent from it mean absent (no llama.cpp defaults), and `v.add_bos`
    /// / `v.add_eos` are set.
    pub(crate) fn build(v: Vocab, hf: Option<HfParts>) -> Result<Tokenizer, TokenizerError> {
        let n = v.tokens.len();
        if n == 0 {
            return Err(TokenizerError::EmptyVocab);
        }
        if u32::try_from(n).is_err() {
            return Err(TokenizerError::VocabTooLarge(n));
        }
        let is_spm = match v.model.as_str() {
            "llama" => true,
            "gpt2" => false,
            other => return Err(TokenizerError::UnsupportedModel(other.to_string())),
        };
        let check_len = |key: &'static str, got: usize| {
            if got < n {
                Err(TokenizerError::LengthMismatch {
                    key,
                    expected: n,
                    got,
                })
            } else {
                Ok(())
            }
        };
        if let Some(s) = &v.scores {
            check_len("tokenizer.ggml.scores", s.len())?;
        }
        if let Some(t) = &v.token_types {
            check_len("tokenizer.ggml.token_type", t.len())?;
        }

        let named = v.tokens.iter().enumerate().map(|(i, t)| match t {
            "" => Cow::Owned(format!("[EMPTY_{i}]")),
            t => Cow::Borrowed(t),
        });
        let index = TokenIndex::new(named).map_err(|e| match e {
            IndexError::Duplicate { first, second } => TokenizerError::DuplicateToken {
                text: v.tokens.get(second as usize).unwrap_or_default().to_owned(),
                first,
                second,
            },
            IndexError::TooLarge => TokenizerError::VocabTooLarge(n),
        })?;
        let scores = match v.scores {
            Some(mut s) => {
                s.truncate(n);
                s
            }
            None => vec![0.0; n],
        };
        let mut attrs: Vec<u8> = match &v.token_types {
            Some(t) => t[..n]
                .iter()
                .map(|&ty| match ty {
                    token_type::NORMAL => ATTR_NORMAL,
                    token_type::UNKNOWN => ATTR_UNKNOWN,
                    token_type::CONTROL => ATTR_CONTROL,
                    token_type::USER_DEFINED => ATTR_USER_DEFINED,
                    token_type::UNUSED => ATTR_UNUSED,
                    token_type::BYTE => ATTR_BYTE,
                    _ => 0,
                })
                .collect(),
            None => vec![ATTR_NORMAL; n],
        };

        // Byte tokens must spell `<0xXX>`.
        let mut byte_tokens = [None; 256];
        for (id, t) in index.iter().enumerate() {
            if attrs[id] & ATTR_BYTE != 0 {
                let b = parse_byte_token(t).ok_or_else(|| TokenizerError::BadByteToken {
                    id: id as u32,
                    text: t.to_owned(),
                })?;
                byte_tokens[b as usize].get_or_insert(id as u32);
            }
        }
        for (b, slot) in byte_tokens.iter_mut().enumerate() {
            if slot.is_none() {
                let hex = format!("<0x{b:02X}>");
                *slot = index.get(&hex);
                if slot.is_none() && b < 0x80 {
                    *slot = index.get(&char::from(b as u8).to_string());
                }
            }
        }

        // Special ids: explicit ones must be in range, defaults silently drop out.
        let id_in_range =
            |key: &'static str, id: Option<u32>| -> Result<Option<u32>, TokenizerError> {
                match id {
                    Some(id) if id as usize >= n => Err(TokenizerError::TokenIdOutOfRange {
                        key,
                        id: id as u64,
                        n_vocab: n,
                    }),
                    other => Ok(other),
                }
            };
        let default = |id: u32| (id < n as u32).then_some(id);
        let (def_bos, def_eos, def_unk) = if hf.is_some() {
            (None, None, None)
        } else if is_spm {
            (default(1), default(2), default(0))
        } else {
            (default(11), default(11), None)
        };
        let bos = id_in_range("tokenizer.ggml.bos_token_id", v.bos)?.or(def_bos);
        let eos = id_in_range("tokenizer.ggml.eos_token_id", v.eos)?.or(def_eos);
        let unk = id_in_range("tokenizer.ggml.unknown_token_id", v.unk)?.or(def_unk);
        id_in_range("tokenizer.ggml.padding_token_id", v.pad)?;
        let by_text = |texts: &[&str]| texts.iter().find_map(|t| index.get(t));
        let eot = id_in_range("tokenizer.ggml.eot_token_id", v.eot)?.or_else(|| by_text(EOT_TEXTS));
        let eom =
            id_in_range("tokenizer.ggml.eom_token_id", v.eom)?.or_else(|| by_text(&["<|eom_id|>"]));
        let fim_pad = id_in_range("tokenizer.ggml.fim_pad_token_id", v.fim_pad)?
            .or_else(|| by_text(FIM_PAD_TEXTS));
        let fim_rep = id_in_range("tokenizer.ggml.fim_rep_token_id", v.fim_rep)?
            .or_else(|| by_text(FIM_REP_TEXTS));
        let fim_sep = id_in_range("tokenizer.ggml.fim_sep_token_id", v.fim_sep)?
            .or_else(|| by_text(FIM_SEP_TEXTS));
        // llama.cpp marks text-detected tokens as control.
        for id in [eot, eom, fim_pad, fim_rep, fim_sep].into_iter().flatten() {
            attrs[id as usize] |= ATTR_CONTROL;
        }

        let mut eog: FxSet<u32> = [fim_pad, fim_rep, fim_sep, eos, eot, eom]
            .into_iter()
            .flatten()
            .collect();
        for &id in hf.iter().flat_map(|p| &p.extra_eog) {
            id_in_range("eos_token_id", Some(id))?;
            eog.insert(id);
            attrs[id as usize] |= ATTR_CONTROL;
        }
        for t in EOG_TEXTS {
            if let Some(id) = index.get(t) {
                eog.insert(id);
                attrs[id as usize] |= ATTR_CONTROL;
            }
        }
        // gpt-oss style vocabularies: "<|end|>" is not the end when "<|return|>" and
        // "<|call|>" exist.
        if let (Some(_), Some(_), Some(end)) = (
            index.get("<|return|>"),
            index.get("<|call|>"),
            index.get("<|end|>"),
        ) {
            eog.remove(&end);
            attrs[end as usize] = ATTR_USER_DEFINED;
        }

        let (pre, ignore_merges, bpe_add_bos) = if is_spm || hf.is_some() {
            (PreType::Default, false, false)
        } else {
            PreType::from_name(v.pre.as_deref())?
        };
        let add_bos = v.add_bos.unwrap_or(is_spm || bpe_add_bos);
        let add_eos = v.add_eos.unwrap_or(false);
        let add_space_prefix = v.add_space_prefix.unwrap_or(is_spm);
        if add_bos && bos.is_none() {
            return Err(TokenizerError::AddSpecialWithoutId {
                add_key: "tokenizer.ggml.add_bos_token",
                id_key: "tokenizer.ggml.bos_token_id",
            });
        }
        if add_eos && eos.is_none() {
            return Err(TokenizerError::AddSpecialWithoutId {
                add_key: "tokenizer.ggml.add_eos_token",
                id_key: "tokenizer.ggml.eos_token_id",
            });
        }

        let is_hf = hf.is_some();
        let model = if let Some(p) = hf {
            Model::Hf(Box::new(p.tokenizer))
        } else if is_spm {
            Model::Spm
        } else {
            let merges = v
                .merges
                .as_ref()
                .ok_or(TokenizerError::MissingKey("tokenizer.ggml.merges"))?;
            Model::Bpe(Bpe::new(pre, ignore_merges, merges, &index)?)
        };

        let mut specials: Vec<u32> = (0..n as u32)
            .filter(|&id| {
                attrs[id as usize] & (ATTR_CONTROL | ATTR_USER_DEFINED | ATTR_UNKNOWN) != 0
            })
            .collect();
        specials.sort_by_key(|&id| std::cmp::Reverse(index.text(id).map_or(0, str::len)));
        let mut special_trie = Trie::default();
        for &id in &specials {
            special_trie.insert(index.text(id).unwrap_or_default().as_bytes(), id);
        }

        let mut bytes = Vec::new();
        let mut offs = Vec::with_capacity(n + 1);
        for (id, t) in index.iter().enumerate() {
            offs.push(bytes.len());
            let a = attrs[id];
            if a & (ATTR_UNKNOWN | ATTR_CONTROL | ATTR_USER_DEFINED) != 0 {
                bytes.extend_from_slice(t.as_bytes());
            } else if a & ATTR_NORMAL != 0 {
                if is_spm {
                    bytes.extend_from_slice(t.replace('\u{2581}', " ").as_bytes());
                } else {
                    let mut buf = [0u8; 4];
                    for c in t.chars() {
                        match char_to_byte(c) {
                            Some(b) => bytes.push(b),
                            None => bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes()),
                        }
                    }
                }
            } else if a & ATTR_BYTE != 0 {
                bytes.extend(parse_byte_token(t));
            }
        }
        offs.push(bytes.len());
        if is_hf {
            // The fallback for text the `tokenizers` model cannot encode: each byte as the
            // first plain or byte token that stands for exactly it.
            byte_tokens = [None; 256];
            for id in 0..n {
                if let &[b] = &bytes[offs[id]..offs[id + 1]] {
                    if attrs[id] & (ATTR_NORMAL | ATTR_BYTE) != 0 {
                        byte_tokens[b as usize].get_or_insert(id as u32);
                    }
                }
            }
        }

        Ok(Tokenizer {
            model,
            index,
            scores,
            attrs,
            specials,
            special_trie,
            bytes,
            offs,
            byte_tokens,
            bos,
            eos,
            unk,
            eog,
            add_bos,
            add_eos,
            add_space_prefix,
        })
    }

    /// Tokenizes `text` like llama.cpp's `llama_tokenize`: `add_special` adds BOS/EOS
    /// as the metadata says; `parse_special` turns control-token text into its id
    /// (user-defined tokens are always matched whole, as in llama.cpp).
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        if add_special && self.add_bos {
            out.extend(self.bos);
        }
        let fragments = self.partition(text, parse_special);
        match &self.model {
            Model::Spm => {
                let spm = Spm {
                    index: &self.index,
                    scores: &self.scores,
                    byte_tokens: &self.byte_tokens,
                    unk: self.unk,
                };
                let mut is_prev_special = true;
                let mut buf = String::new();
                for f in fragments {
                    match f {
                        Fragment::Text(s, e) => {
                            buf.clear();
                            if self.add_space_prefix && is_prev_special {
                                buf.push('\u{2581}');
                            }
                            for c in text[s..e].chars() {
                                buf.push(if c == ' ' { '\u{2581}' } else { c });
                            }
                            spm.encode(&buf, &mut out);
                            is_prev_special = false;
                        }
                        Fragment::Token(id) => {
                            out.push(id);
                            is_prev_special = true;
                        }
                    }
                }
            }
            Model::Bpe(bpe) => {
                for f in fragments {
                    match f {
                        Fragment::Text(s, e) => bpe.encode(&text[s..e], &self.index, &mut out),
                        Fragment::Token(id) => out.push(id),
                    }
                }
            }
            Model::Hf(hf) => {
                for f in fragments {
                    match f {
                        Fragment::Text(s, e) => self.hf_encode(hf, &text[s..e], &mut out),
                        Fragment::Token(id) => out.push(id),
                    }
                }
            }
        }
        if add_special && self.add_eos {
            out.extend(self.eos);
        }
        out
    }

    /// One special-free piece of text through the `tokenizers` model. Loading checked that
    /// it encodes every byte (`Tokenizer::from_hf_dir`); should a model still fail on some
    /// text, its bytes go in one token each rather than vanish.
    fn hf_encode(&self, hf: &tokenizers::Tokenizer, piece: &str, out: &mut Vec<u32>) {
        match hf.encode_fast(piece, false) {
            Ok(enc) => out.extend_from_slice(enc.get_ids()),
            Err(_) => out.extend(piece.bytes().filter_map(|b| self.byte_tokens[b as usize])),
        }
    }

    /// llama.cpp's `tokenizer_st_partition`: for each special token, longest first,
    /// cut every remaining text fragment at its occurrences.
    fn partition(&self, text: &str, parse_special: bool) -> Vec<Fragment> {
        if text.is_empty() {
            return Vec::new();
        }
        let mut frags = vec![Fragment::Text(0, text.len())];
        let present = self.special_trie.occurring(text.as_bytes());
        if present.is_empty() {
            return frags;
        }
        for &id in &self.specials {
            if !present.contains(&id) {
                continue;
            }
            if !parse_special && self.attrs[id as usize] & (ATTR_CONTROL | ATTR_UNKNOWN) != 0 {
                continue;
            }
            let pat = self.index.text(id).unwrap_or_default();
            let mut next = Vec::with_capacity(frags.len() + 2);
            for f in frags {
                match f {
                    Fragment::Text(mut s, e) => {
                        while let Some(p) = text[s..e].find(pat) {
                            if p > 0 {
                                next.push(Fragment::Text(s, s + p));
                            }
                            next.push(Fragment::Token(id));
                            s += p + pat.len();
                        }
                        if s < e {
                            next.push(Fragment::Text(s, e));
                        }
                    }
                    tok => next.push(tok),
                }
            }
            frags = next;
        }
        frags
    }

    /// The exact bytes token `id` contributes to output; `None` past the vocabulary.
    pub fn token_bytes(&self, id: u32) -> Option<&[u8]> {
        let i = id as usize;
        let (&s, &e) = (self.offs.get(i)?, self.offs.get(i + 1)?);
        self.bytes.get(s..e)
    }

    /// The concatenated bytes of `ids`, as lossy UTF-8 (ids past the vocabulary skipped).
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut out = Vec::new();
        for &id in ids {
            out.extend_from_slice(self.token_bytes(id).unwrap_or_default());
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// The raw vocabulary string of token `id`.
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.index.text(id)
    }

    /// The id of a vocabulary string, if it is one.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.index.get(text)
    }

    pub fn n_vocab(&self) -> usize {
        self.index.len()
    }

    pub fn bos(&self) -> Option<u32> {
        self.bos
    }

    pub fn eos(&self) -> Option<u32> {
        self.eos
    }

    /// Whether generation ends at `id` (eos, eot, eom, `<|im_end|>`, `<end_of_turn>`, ...).
    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.contains(&id)
    }

    /// Whether `id` is a control token (its text is markup, not content).
    pub fn is_control(&self, id: u32) -> bool {
        self.attrs
            .get(id as usize)
            .is_some_and(|a| a & ATTR_CONTROL != 0)
    }

    /// Whether `encode(.., add_special = true, ..)` prepends BOS.
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    /// Whether `encode(.., add_special = true, ..)` appends EOS.
    pub fn add_eos(&self) -> bool {
        self.add_eos
    }
}

/// `<0xXX>` -> the byte.
fn parse_byte_token(t: &str) -> Option<u8> {
    let hex = t.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

/// A byte trie over special-token texts.
#[derive(Default)]
struct Trie {
    edges: FxMap<(u32, u8), u32>,
    terminal: FxMap<u32, u32>,
    n_nodes: u32,
}

impl Trie {
    fn insert(&mut self, key: &[u8], id: u32) {
        let mut node = 0;
        for &b in key {
            let next = self.n_nodes + 1;
            node = *self.edges.entry((node, b)).or_insert_with(|| next);
            if node == next {
                self.n_nodes = next;
            }
        }
        self.terminal.entry(node).or_insert(id);
    }

    /// The ids of every key occurring anywhere in `text`.
    fn occurring(&self, text: &[u8]) -> FxSet<u32> {
        let mut found = FxSet::default();
        if self.edges.is_empty() {
            return found;
        }
        for i in 0..text.len() {
            let mut node = 0;
            for &b in &text[i..] {
                match self.edges.get(&(node, b)) {
                    Some(&nx) => node = nx,
                    None => break,
                }
                if let Some(&id) = self.terminal.get(&node) {
                    found.insert(id);
                }
            }
        }
        found
    }
}
