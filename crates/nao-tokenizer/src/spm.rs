//! SentencePiece-style BPE (`tokenizer.ggml.model = "llama"`: Llama 2, Gemma), after
//! llama.cpp's `llm_tokenizer_spm_session`: start from UTF-8 characters, repeatedly
//! merge the adjacent pair whose concatenation is the vocabulary token with the
//! highest score (ties: leftmost), and spell whatever is left outside the vocabulary
//! as `<0xXX>` byte tokens.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::token_index::TokenIndex;

pub(crate) struct Spm<'a> {
    pub(crate) index: &'a TokenIndex,
    pub(crate) scores: &'a [f32],
    /// Token for each byte value (`<0xXX>`, else the one-byte string), if any.
    pub(crate) byte_tokens: &'a [Option<u32>; 256],
    pub(crate) unk: Option<u32>,
}

#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

struct Bigram {
    left: usize,
    right: usize,
    score: f32,
    size: usize,
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Bigram {
    /// Max-heap order: higher score first, then the smaller left index.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.left.cmp(&self.left))
    }
}

impl Spm<'_> {
    /// Tokenizes `text` (spaces already escaped as U+2581) onto `out`.
    pub(crate) fn encode(&self, text: &str, out: &mut Vec<u32>) {
        let mut symbols: Vec<Symbol> = Vec::with_capacity(text.len());
        for (i, (start, c)) in text.char_indices().enumerate() {
            symbols.push(Symbol {
                start,
                len: c.len_utf8(),
                prev: i.checked_sub(1),
                next: Some(i + 1),
            });
        }
        if symbols.is_empty() {
            return;
        }
        if let Some(last) = symbols.last_mut() {
            last.next = None;
        }
        let mut queue = BinaryHeap::new();
        for i in 1..symbols.len() {
            self.try_add_bigram(text, &symbols, i - 1, i, &mut queue);
        }
        while let Some(b) = queue.pop() {
            let (ls, rs) = (symbols[b.left], symbols[b.right]);
            if ls.len == 0 || rs.len == 0 || ls.len + rs.len != b.size {
                continue;
            }
            symbols[b.left].len += rs.len;
            symbols[b.right].len = 0;
            symbols[b.left].next = rs.next;
            if let Some(nx) = rs.next {
                symbols[nx].prev = Some(b.left);
            }
            if let Some(pv) = ls.prev {
                self.try_add_bigram(text, &symbols, pv, b.left, &mut queue);
            }
            if let Some(nx) = rs.next {
                self.try_add_bigram(text, &symbols, b.left, nx, &mut queue);
            }
        }
        let mut cur = Some(0);
        while let Some(i) = cur {
            let s = symbols[i];
            let piece = &text[s.start..s.start + s.len];
            match self.index.get(piece) {
                Some(id) => out.push(id),
                None => {
                    for b in piece.bytes() {
                        if let Some(id) = self.byte_tokens[b as usize].or(self.unk) {
                            out.push(id);
                        }
                    }
                }
            }
            cur = s.next;
        }
    }

    fn try_add_bigram(
        &self,
        text: &str,
        symbols: &[Symbol],
        left: usize,
        right: usize,
        queue: &mut BinaryHeap<Bigram>,
    ) {
        let start = symbols[left].start;
        let size = symbols[left].len + symbols[right].len;
        let Some(id) = self.index.get(&text[start..start + size]) else {
            return;
        };
        let score = self.scores.get(id as usize).copied().unwrap_or(0.0);
        queue.push(Bigram {
            left,
            right,
            score,
            size,
        });
    }
}
