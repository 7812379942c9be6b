//! Pre-tokenizers for byte-level BPE: split text into words before merging.
//!
//! llama.cpp (`llm_tokenizer_bpe`, `unicode_regex_split`) picks a list of regexes per
//! `tokenizer.ggml.pre` and applies them in sequence, each one re-splitting the pieces
//! of the previous one; text between matches becomes a piece of its own. Some lists run
//! through hand-written matchers (GPT-2, Llama 3), the rest through `std::regex` on a
//! "collapsed" text where every non-ASCII code point stands for its class. We hand-write
//! every pattern we support as a matcher with the same leftmost-first regex semantics,
//! so the result is the same without a regex engine.

use crate::unicode::{class_of, Class};
use crate::TokenizerError;

/// The pre-tokenizer selected by `tokenizer.ggml.pre`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PreType {
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)`
    Gpt2,
    /// The Llama 3 pattern: case-insensitive contractions, `\p{N}{1,3}`.
    Llama3,
    /// Qwen2: the Llama 3 pattern with single digits (`\p{N}`).
    Qwen2,
    /// DeepSeek LLM's list of six regexes.
    DeepseekLlm,
    /// DeepSeek Coder: newlines, `\s?\p{L}+`, `\s?\p{P}+`, CJK runs, single digits.
    DeepseekCoder,
    /// StarCoder and friends: single digits, then the GPT-2 pattern.
    Starcoder,
    /// llama.cpp's fallback list for BPE models without a known pre-tokenizer.
    Default,
}

impl PreType {
    /// Maps a `tokenizer.ggml.pre` name to a pre-tokenizer; also returns whether
    /// llama.cpp sets `ignore_merges` (whole-word vocab hits skip merging) and the
    /// default for `add_bos` for that name.
    pub(crate) fn from_name(name: Option<&str>) -> Result<(PreType, bool, bool), TokenizerError> {
        let Some(name) = name else {
            return Ok((PreType::Default, false, false));
        };
        Ok(match name {
            "default" => (PreType::Default, false, false),
            "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "pixtral" => {
                (PreType::Llama3, true, true)
            }
            "dbrx" | "smaug-bpe" | "chatglm-bpe" | "glm4" => (PreType::Llama3, false, false),
            "qwen2" | "deepseek-r1-qwen" | "megrez" | "stablelm2" | "hunyuan" => {
                (PreType::Qwen2, false, false)
            }
            "deepseek-llm" => (PreType::DeepseekLlm, false, false),
            "deepseek-coder" => (PreType::DeepseekCoder, false, false),
            "starcoder" | "refact" | "command-r" | "smollm" | "codeshell" | "exaone"
            | "minerva-7b" => (PreType::Starcoder, false, false),
            "gpt-2" | "gpt2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es"
            | "jina-v2-de" | "jina-v1-en" | "jina-v2-code" | "roberta-bpe" | "mpt" | "olmo"
            | "jais" | "exaone4" => (PreType::Gpt2, false, false),
            other => return Err(TokenizerError::UnsupportedPre(other.to_string())),
        })
    }
}

/// A matcher: `m(chars, pos, end)` is the end of the match starting at `pos`, if any.
type Matcher<'a> = &'a dyn Fn(&[char], usize, usize) -> Option<usize>;

/// Returns the words of `text` (slices of it, in order, covering it exactly).
pub(crate) fn split(pre: PreType, text: &str) -> Vec<&str> {
    let mut cs: Vec<char> = Vec::with_capacity(text.len());
    let mut offs: Vec<usize> = Vec::with_capacity(text.len() + 1);
    for (i, c) in text.char_indices() {
        cs.push(c);
        offs.push(i);
    }
    offs.push(text.len());

    let mut pieces = vec![(0usize, cs.len())];
    let mut run = |m: Matcher| {
        pieces = split_pieces(&cs, &pieces, m);
    };
    match pre {
        PreType::Gpt2 => run(&m_gpt2),
        PreType::Llama3 => run(&|cs: &[char], p: usize, e: usize| m_llama(cs, p, e, 3)),
        PreType::Qwen2 => run(&|cs: &[char], p: usize, e: usize| m_llama(cs, p, e, 1)),
        PreType::DeepseekLlm => {
            let letters = ranges(DEEPSEEK_LETTERS);
            let puncts = ranges(DEEPSEEK_PUNCT);
            let cjk = ranges(DEEPSEEK_CJK);
            run(&|cs: &[char], p: usize, _e: usize| matches!(cs[p], '\r' | '\n').then_some(p + 1));
            run(&|cs: &[char], p: usize, e: usize| opt_ws_then_run(cs, p, e, &letters));
            run(&|cs: &[char], p: usize, e: usize| opt_ws_then_run(cs, p, e, &puncts));
            run(&|cs: &[char], p: usize, e: usize| {
                let j = run_end(cs, p, e, |c| c.is_whitespace());
                (j > p && j == e).then_some(j)
            });
            run(&|cs: &[char], p: usize, e: usize| {
                let j = run_end(cs, p, e, |c| in_ranges(&cjk, wide(c)));
                (j > p).then_some(j)
            });
            run(&m_numbers);
        }
        PreType::DeepseekCoder => {
            let cjk = ranges(DEEPSEEK_CJK);
            run(&|cs: &[char], p: usize, _e: usize| matches!(cs[p], '\r' | '\n').then_some(p + 1));
            run(&|cs: &[char], p: usize, e: usize| opt_ws_then_class(cs, p, e, is_l));
            run(&|cs: &[char], p: usize, e: usize| {
                opt_ws_then_class(cs, p, e, |c| class_of(c) == Class::Punctuation)
            });
            run(&|cs: &[char], p: usize, e: usize| {
                let j = run_end(cs, p, e, |c| in_ranges(&cjk, c));
                (j > p).then_some(j)
            });
            run(&|cs: &[char], p: usize, _e: usize| is_n(cs[p]).then_some(p + 1));
        }
        PreType::Starcoder => {
            run(&|cs: &[char], p: usize, _e: usize| is_n(cs[p]).then_some(p + 1));
            run(&m_gpt2);
        }
        PreType::Default => {
            run(&|cs: &[char], p: usize, e: usize| {
                let j = run_end(cs, p, e, |c| {
                    class_of(c) == Class::Punctuation
                        || matches!(c, '$' | '+' | '<' | '=' | '>' | '^' | '~' | '|')
                });
                (j > p).then_some(j)
            });
            run(&m_gpt2);
            run(&m_numbers);
            run(&|cs: &[char], p: usize, e: usize| {
                (p + 3 <= e && cs[p..p + 3].iter().all(|c| c.is_ascii_digit())).then_some(p + 3)
            });
        }
    }
    pieces
        .into_iter()
        .map(|(s, e)| &text[offs[s]..offs[e]])
        .collect()
}

/// `std::regex_iterator` over each piece: leftmost match at each position, unmatched
/// spans kept as pieces of their own.
fn split_pieces(cs: &[char], pieces: &[(usize, usize)], m: Matcher) -> Vec<(usize, usize)> {
    let mut out = Vec::with_capacity(pieces.len() * 2);
    for &(start, end) in pieces {
        let (mut cur, mut p) = (start, start);
        while p < end {
            match m(cs, p, end) {
                Some(e) if e > p => {
                    if p > cur {
                        out.push((cur, p));
                    }
                    out.push((p, e));
                    cur = e;
                    p = e;
                }
                _ => p += 1,
            }
        }
        if cur < end {
            out.push((cur, end));
        }
    }
    out
}

fn is_l(c: char) -> bool {
    class_of(c) == Class::Letter
}
fn is_n(c: char) -> bool {
    class_of(c) == Class::Number
}
fn is_other(c: char) -> bool {
    !matches!(
        class_of(c),
        Class::Whitespace | Class::Letter | Class::Number
    )
}

fn run_end(cs: &[char], mut p: usize, end: usize, f: impl Fn(char) -> bool) -> usize {
    while p < end && f(cs[p]) {
        p += 1;
    }
    p
}

/// `'s|'t|'re|'ve|'m|'ll|'d`, optionally case-insensitive.
fn contraction(cs: &[char], p: usize, end: usize, ci: bool) -> Option<usize> {
    if cs[p] != '\'' || p + 1 >= end {
        return None;
    }
    let low = |c: char| if ci { c.to_ascii_lowercase() } else { c };
    let a = low(cs[p + 1]);
    if matches!(a, 's' | 't' | 'm' | 'd') {
        return Some(p + 2);
    }
    if p + 2 < end && matches!((a, low(cs[p + 2])), ('r', 'e') | ('v', 'e') | ('l', 'l')) {
        return Some(p + 3);
    }
    None
}

/// `\s+(?!\S)|\s+`, preceded by `\s*[\r\n]+` when `newlines`.
fn whitespace(cs: &[char], p: usize, end: usize, newlines: bool) -> Option<usize> {
    let mut j = p;
    let mut last_nl = None;
    while j < end && cs[j].is_whitespace() {
        if matches!(cs[j], '\r' | '\n') {
            last_nl = Some(j + 1);
        }
        j += 1;
    }
    if j == p {
        return None;
    }
    if newlines {
        if let Some(e) = last_nl {
            return Some(e);
        }
    }
    if j - p > 1 && j < end {
        return Some(j - 1);
    }
    Some(j)
}

/// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,k}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
fn m_llama(cs: &[char], p: usize, end: usize, max_digits: usize) -> Option<usize> {
    if let Some(e) = contraction(cs, p, end, true) {
        return Some(e);
    }
    let c = cs[p];
    if is_l(c) {
        return Some(run_end(cs, p + 1, end, is_l));
    }
    if !matches!(c, '\r' | '\n') && !is_n(c) && p + 1 < end && is_l(cs[p + 1]) {
        return Some(run_end(cs, p + 2, end, is_l));
    }
    if is_n(c) {
        let mut e = p + 1;
        while e < end && e - p < max_digits && is_n(cs[e]) {
            e += 1;
        }
        return Some(e);
    }
    let q = if c == ' ' && p + 1 < end && is_other(cs[p + 1]) {
        p + 1
    } else {
        p
    };
    if is_other(cs[q]) {
        let e = run_end(cs, q + 1, end, is_other);
        return Some(run_end(cs, e, end, |c| matches!(c, '\r' | '\n')));
    }
    whitespace(cs, p, end, true)
}

/// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
fn m_gpt2(cs: &[char], p: usize, end: usize) -> Option<usize> {
    if let Some(e) = contraction(cs, p, end, false) {
        return Some(e);
    }
    let q = if cs[p] == ' ' && p + 1 < end {
        p + 1
    } else {
        p
    };
    let c = cs[q];
    let class_run = |f: fn(char) -> bool| run_end(cs, q + 1, end, f);
    if is_l(c) {
        return Some(class_run(is_l));
    }
    if is_n(c) {
        return Some(class_run(is_n));
    }
    if is_other(c) {
        return Some(class_run(is_other));
    }
    whitespace(cs, p, end, false)
}

/// `\p{N}+` (through llama.cpp's collapsed text: ASCII digits or non-ASCII numbers).
fn m_numbers(cs: &[char], p: usize, end: usize) -> Option<usize> {
    let j = run_end(cs, p, end, is_n);
    (j > p).then_some(j)
}

/// llama.cpp hands `std::wregex` the code points with non-ASCII whitespace replaced
/// by a vertical tab, so such characters never fall into an explicit class.
fn wide(c: char) -> char {
    if !c.is_ascii() && c.is_whitespace() {
        '\u{0B}'
    } else {
        c
    }
}

/// `\s?[class]+`
fn opt_ws_then_run(cs: &[char], p: usize, end: usize, class: &[(char, char)]) -> Option<usize> {
    let inc = |c: char| in_ranges(class, wide(c));
    let q = if cs[p].is_whitespace() && p + 1 < end && inc(cs[p + 1]) {
        p + 1
    } else {
        p
    };
    let j = run_end(cs, q, end, inc);
    (j > q).then_some(j)
}

/// `\s?\p{X}+` through llama.cpp's collapsed text.
fn opt_ws_then_class(cs: &[char], p: usize, end: usize, f: fn(char) -> bool) -> Option<usize> {
    let q = if cs[p].is_whitespace() && p + 1 < end && f(cs[p + 1]) {
        p + 1
    } else {
        p
    };
    let j = run_end(cs, q, end, f);
    (j > q).then_some(j)
}

fn in_ranges(r: &[(char, char)], c: char) -> bool {
    r.iter().any(|&(a, b)| a <= c && c <= b)
}

/// Parses a regex character-class body (`a-zÀ-Ö…`, no escapes) into ranges.
fn ranges(class: &str) -> Vec<(char, char)> {
    let cs: Vec<char> = class.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < cs.len() {
        if i + 2 < cs.len() && cs[i + 1] == '-' {
            out.push((cs[i], cs[i + 2]));
            i += 3;
        } else {
            out.push((cs[i], cs[i]));
            i += 1;
        }
    }
    out
}

const DEEPSEEK_LETTERS: &str = "A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-ώᾀ-ᾴᾶ-ᾼιῂ-ῄῆ-ῌῐ-ΐῖ-Ίῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤΩℨK-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃";
const DEEPSEEK_PUNCT: &str = "!-/:-~！-／：-～‘-‟　-。";
const DEEPSEEK_CJK: &str = "一-龥ࠀ-一가-퟿";

#[cfg(test)]
mod tests {
    use super::*;

    fn s(pre: PreType, t: &str) -> Vec<&str> {
        split(pre, t)
    }

    #[test]
    fn qwen2_words() {
        assert_eq!(
            s(PreType::Qwen2, "Hello, world! 123"),
            ["Hello", ",", " world", "!", " ", "1", "2", "3"]
        );
        assert_eq!(s(PreType::Qwen2, "don't I'M"), ["don", "'t", " I", "'M"]);
        assert_eq!(s(PreType::Qwen2, "a   b"), ["a", "  ", " b"]);
        assert_eq!(
            s(PreType::Qwen2, "x  \n\n  y "),
            ["x", "  \n\n", " ", " y", " "]
        );
        assert_eq!(s(PreType::Qwen2, "(( foo)\n"), ["((", " foo", ")\n"]);
        assert_eq!(s(PreType::Qwen2, ""), Vec::<&str>::new());
    }

    #[test]
    fn llama3_digits() {
        assert_eq!(s(PreType::Llama3, "1234567"), ["123", "456", "7"]);
    }

    #[test]
    fn gpt2_words() {
        assert_eq!(
            s(PreType::Gpt2, "I'M here  now"),
            ["I", "'", "M", " here", " ", " now"]
        );
        assert_eq!(s(PreType::Gpt2, "x1234 ?!"), ["x", "1234", " ?!"]);
    }

    #[test]
    fn default_and_deepseek() {
        assert_eq!(
            s(PreType::Default, "a+b 12345"),
            ["a", "+", "b", " ", "123", "45"]
        );
        assert_eq!(
            s(PreType::DeepseekLlm, "Hi 你好\n12"),
            ["Hi", " ", "你好", "\n", "12"]
        );
    }

    #[test]
    fn coder_splits() {
        assert_eq!(s(PreType::Starcoder, "x12 ab"), ["x", "1", "2", " ab"]);
        assert_eq!(
            s(PreType::DeepseekCoder, "if x:\n  y12"),
            ["if", " x", ":", "\n", " ", " y", "1", "2"]
        );
    }

    #[test]
    fn pre_names() {
        assert_eq!(
            PreType::from_name(Some("qwen2")).ok(),
            Some((PreType::Qwen2, false, false))
        );
        assert_eq!(
            PreType::from_name(Some("llama-bpe")).ok(),
            Some((PreType::Llama3, true, true))
        );
        assert!(matches!(
            PreType::from_name(Some("nope")),
            Err(TokenizerError::UnsupportedPre(_))
        ));
    }
}
