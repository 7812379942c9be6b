//! [`TokenIndex`]: the vocabulary's token strings in one buffer, plus an open-addressing
//! table from string to id.
//!
//! A `Vec<String>` and a `HashMap<String, u32>` over a 262k-token vocabulary (Gemma 3)
//! cost about 30 MiB: two heap blocks and two 24-byte headers per token, plus the map's
//! buckets. Here the strings share one buffer with 4-byte ends, and the table holds only
//! 4-byte ids (compared against the buffer on lookup): about 7 MiB for the same vocabulary.

use std::hash::Hasher;

use crate::hash::FxHasher;

const EMPTY: u32 = u32::MAX;

pub(crate) struct TokenIndex {
    text: String,
    /// Token `i` is `text[ends[i-1]..ends[i]]` (`ends[-1]` = 0).
    ends: Vec<u32>,
    /// Ids by hash, linear probing; `EMPTY` marks a free slot. Length a power of two, at
    /// least twice the token count.
    slots: Vec<u32>,
    shift: u32,
}

/// Why a vocabulary cannot be indexed.
#[derive(Debug, PartialEq)]
pub(crate) enum IndexError {
    /// Two ids with the same string.
    Duplicate { first: u32, second: u32 },
    /// More than `u32::MAX - 1` tokens or bytes of token text.
    TooLarge,
}

fn hash(s: &str) -> u64 {
    let mut h = FxHasher::default();
    h.write(s.as_bytes());
    // Tell "a" from "a\0" (the chunked write pads with zeros).
    h.write_usize(s.len());
    h.finish()
}

impl TokenIndex {
    pub(crate) fn new<S: AsRef<str>>(
        tokens: impl ExactSizeIterator<Item = S>,
    ) -> Result<TokenIndex, IndexError> {
        let n = tokens.len();
        if n >= EMPTY as usize {
            return Err(IndexError::TooLarge);
        }
        let size = (2 * n).next_power_of_two().max(2);
        let mut index = TokenIndex {
            text: String::new(),
            ends: Vec::with_capacity(n),
            slots: vec![EMPTY; size],
            shift: 64 - size.trailing_zeros(),
        };
        for (i, t) in tokens.enumerate() {
            let t = t.as_ref();
            index.text.push_str(t);
            let end = u32::try_from(index.text.len()).map_err(|_| IndexError::TooLarge)?;
            index.ends.push(end);
            let id = i as u32;
            match index.probe(t) {
                Ok(first) => return Err(IndexError::Duplicate { first, second: id }),
                Err(slot) => index.slots[slot] = id,
            }
        }
        Ok(index)
    }

    /// `Ok(id)` when `s` is present, else `Err(free slot)` where it would go.
    fn probe(&self, s: &str) -> Result<u32, usize> {
        let mask = self.slots.len() - 1;
        let mut slot = (hash(s) >> self.shift) as usize & mask;
        loop {
            match self.slots[slot] {
                EMPTY => return Err(slot),
                id if self.text(id) == Some(s) => return Ok(id),
                _ => slot = (slot + 1) & mask,
            }
        }
    }

    /// The id of the token whose string is `s`.
    pub(crate) fn get(&self, s: &str) -> Option<u32> {
        self.probe(s).ok()
    }

    /// The string of token `id`.
    pub(crate) fn text(&self, id: u32) -> Option<&str> {
        let i = id as usize;
        let end = *self.ends.get(i)? as usize;
        let start = match i {
            0 => 0,
            _ => self.ends[i - 1] as usize,
        };
        self.text.get(start..end)
    }

    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    /// Every token string, in id order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        (0..self.len() as u32).map(|id| self.text(id).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_token_and_nothing_else() {
        let toks: Vec<String> = (0..5000).map(|i| format!("t{i}")).collect();
        let mut all: Vec<&str> = toks.iter().map(String::as_str).collect();
        all.extend(["", "a", "a\0", "▁the", "日本"]);
        let idx = TokenIndex::new(all.iter().copied()).unwrap();
        assert_eq!(idx.len(), all.len());
        for (i, t) in all.iter().enumerate() {
            assert_eq!(idx.get(t), Some(i as u32), "{t:?}");
            assert_eq!(idx.text(i as u32), Some(*t));
        }
        for miss in ["t5000", "t", "a\0\0", "日", "▁th"] {
            assert_eq!(idx.get(miss), None, "{miss:?}");
        }
        assert_eq!(idx.text(all.len() as u32), None);
    }

    #[test]
    fn duplicates_name_both_ids() {
        let r = TokenIndex::new(["x", "y", "x"].into_iter());
        assert_eq!(
            r.err(),
            Some(IndexError::Duplicate {
                first: 0,
                second: 2
            })
        );
        let empty = TokenIndex::new(std::iter::empty::<&str>()).unwrap();
        assert_eq!(empty.get(""), None);
    }
}
