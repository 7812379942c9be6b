//! Byte-level BPE (`tokenizer.ggml.model = "gpt2"`), after llama.cpp's
//! `llm_tokenizer_bpe_session`: each pre-tokenized word is mapped byte by byte to
//! GPT-2's printable code points, split into characters, and the adjacent pair with
//! the lowest merge rank (ties: leftmost) is merged until no ranked pair remains.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::hash::FxMap;
use crate::token_index::TokenIndex;
use nao_gguf::Strings;

use crate::pretokenize::{self, PreType};
use crate::unicode::byte_to_char;
use crate::TokenizerError;

pub(crate) struct Bpe {
    pub(crate) pre: PreType,
    /// Whole words found in the vocabulary skip merging (llama.cpp `ignore_merges`).
    pub(crate) ignore_merges: bool,
    /// `(left id, right id) -> (rank, merged id)`
    merges: FxMap<(u32, u32), (u32, u32)>,
}

impl Bpe {
    pub(crate) fn new(
        pre: PreType,
        ignore_merges: bool,
        merges: &Strings,
        vocab: &TokenIndex,
    ) -> Result<Bpe, TokenizerError> {
        let mut map = FxMap::with_capacity_and_hasher(merges.len(), Default::default());
        let mut merged = String::new();
        for (index, merge) in merges.iter().enumerate() {
            // llama.cpp splits at the first space after the first byte.
            let pos = merge
                .bytes()
                .skip(1)
                .position(|b| b == b' ')
                .map(|p| p + 1)
                .ok_or_else(|| TokenizerError::MalformedMerge {
                    index,
                    merge: merge.to_owned(),
                })?;
            let (left, right) = (&merge[..pos], &merge[pos + 1..]);
            let id = |token: &str| {
                vocab
                    .get(token)
                    .ok_or_else(|| TokenizerError::MergeUnknownToken {
                        index,
                        merge: merge.to_owned(),
                        token: token.to_string(),
                    })
            };
            merged.clear();
            merged.push_str(left);
            merged.push_str(right);
            let key = (id(left)?, id(right)?);
            let value = (index as u32, id(&merged)?);
            // The first (lowest) rank wins if a pair is listed twice.
            map.entry(key).or_insert(value);
        }
        Ok(Bpe {
            pre,
            ignore_merges,
            merges: map,
        })
    }

    /// Tokenizes one text fragment (no special tokens in it) onto `out`.
    pub(crate) fn encode(&self, text: &str, index: &TokenIndex, out: &mut Vec<u32>) {
        let map = byte_to_char();
        let mut word = String::new();
        let mut session = Session::default();
        for raw in pretokenize::split(self.pre, text) {
            word.clear();
            word.extend(raw.bytes().map(|b| map[b as usize]));
            if self.ignore_merges {
                if let Some(id) = index.get(&word) {
                    out.push(id);
                    continue;
                }
            }
            session.word(self, &word, index, out);
        }
    }
}

#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    id: Option<u32>,
    prev: Option<usize>,
    next: Option<usize>,
}

/// A mergeable pair: `(rank, left, right, left id, right id)`.
type Candidate = (u32, usize, usize, u32, u32);

/// Scratch space reused across the words of one call.
#[derive(Default)]
struct Session {
    symbols: Vec<Symbol>,
    /// Smallest rank first, then leftmost.
    queue: BinaryHeap<Reverse<Candidate>>,
}

impl Session {
    fn word(&mut self, bpe: &Bpe, word: &str, index: &TokenIndex, out: &mut Vec<u32>) {
        self.symbols.clear();
        self.queue.clear();
        let mut buf = [0u8; 4];
        for (i, (start, c)) in word.char_indices().enumerate() {
            let id = index.get(c.encode_utf8(&mut buf));
            self.symbols.push(Symbol {
                start,
                len: c.len_utf8(),
                id,
                prev: i.checked_sub(1),
                next: Some(i + 1),
            });
        }
        let n = self.symbols.len();
        if let Some(last) = self.symbols.last_mut() {
            last.next = None;
        }
        for i in 1..n {
            self.add_bigram(bpe, i - 1, i);
        }
        while let Some(Reverse((_, l, r, lid, rid))) = self.queue.pop() {
            let (ls, rs) = (self.symbols[l], self.symbols[r]);
            if ls.len == 0 || rs.len == 0 || ls.id != Some(lid) || rs.id != Some(rid) {
                continue; // outdated
            }
            let Some(&(_, merged)) = bpe.merges.get(&(lid, rid)) else {
                continue;
            };
            self.symbols[l].len += rs.len;
            self.symbols[l].id = Some(merged);
            self.symbols[l].next = rs.next;
            self.symbols[r].len = 0;
            if let Some(nx) = rs.next {
                self.symbols[nx].prev = Some(l);
            }
            if let Some(pv) = ls.prev {
                self.add_bigram(bpe, pv, l);
            }
            if let Some(nx) = rs.next {
                self.add_bigram(bpe, l, nx);
            }
        }
        let mut cur = if n > 0 { Some(0) } else { None };
        while let Some(i) = cur {
            let s = self.symbols[i];
            match s.id {
                Some(id) => out.push(id),
                None => {
                    // Not in the vocabulary: llama.cpp looks up each byte on its own.
                    for b in word[s.start..s.start + s.len].bytes() {
                        if let Some(id) = (b < 0x80)
                            .then(|| index.get(char::from(b).encode_utf8(&mut buf)))
                            .flatten()
                        {
                            out.push(id);
                        }
                    }
                }
            }
            cur = s.next;
        }
    }

    fn add_bigram(&mut self, bpe: &Bpe, l: usize, r: usize) {
        let (Some(lid), Some(rid)) = (self.symbols[l].id, self.symbols[r].id) else {
            return;
        };
        if let Some(&(rank, _)) = bpe.merges.get(&(lid, rid)) {
            self.queue.push(Reverse((rank, l, r, lid, rid)));
        }
    }
}
