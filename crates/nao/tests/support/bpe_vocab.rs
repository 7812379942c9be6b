//! The tiny byte-level BPE vocabulary of the binary's directory tests (Qwen2's
//! pre-tokenizer, ten merges, Qwen's three special tokens) as `tokenizer.json`; shared by
//! `hf_dir.rs` and `embed_decoder.rs`, each including it with `#[path]`.
#![allow(dead_code)]

use serde_json::{json, Value};

/// Merges in rank order; with the 256 byte tokens first, merge `i` makes token `256 + i`.
pub const MERGES: [&str; 10] = [
    "h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or", "Ġwor l", "Ġworl d", "Ġ hello",
];
pub const SPECIALS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
pub const ENDOFTEXT: u32 = 266;
pub const IM_END: u32 = 268;
/// Model rows: the tokenizer's 269 tokens plus three padding rows (as Qwen pads its head).
pub const N_VOCAB: usize = 272;
/// Qwen2's pre-tokenizer regex (`tokenizer.json` of Qwen2.5; llama.cpp's `qwen2` pre-type).
pub const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
pub const TEMPLATE: &str = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

/// GPT-2's `bytes_to_unicode`: printable Latin-1 bytes stand for themselves, the others
/// for 256 + n in byte order.
pub fn gpt2_char(b: u8) -> char {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    if printable(b) {
        return char::from(b);
    }
    let n = (0..b).filter(|&x| !printable(x)).count() as u32;
    char::from_u32(256 + n).unwrap()
}

/// The vocabulary by id: byte characters, merge results, special tokens.
pub fn tokens() -> Vec<String> {
    let mut t: Vec<String> = (0..=255u8).map(|b| gpt2_char(b).to_string()).collect();
    t.extend(MERGES.iter().map(|m| m.replace(' ', "")));
    t.extend(SPECIALS.iter().map(|s| s.to_string()));
    t
}

pub fn tokenizer_json() -> Value {
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false,
                            "trim_offsets": false, "use_regex": false});
    tokenizer_json_with(byte_level)
}

/// [`tokenizer_json`] with another `post_processor` (Qwen3-Embedding's appends
/// `<|endoftext|>` through a `TemplateProcessing`).
pub fn tokenizer_json_with(post_processor: Value) -> Value {
    let vocab: serde_json::Map<String, Value> = tokens()[..256 + MERGES.len()]
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), json!(i)))
        .collect();
    let added: Vec<Value> = SPECIALS
        .iter()
        .enumerate()
        .map(|(i, s)| {
            json!({"id": 256 + MERGES.len() + i, "content": s, "single_word": false,
                   "lstrip": false, "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false,
                            "trim_offsets": false, "use_regex": false});
    json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": added,
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": QWEN2_SPLIT}, "behavior": "Isolated", "invert": false},
            byte_level,
        ]},
        "post_processor": post_processor,
        "decoder": byte_level,
        "model": {"type": "BPE", "dropout": null, "unk_token": null,
                  "continuing_subword_prefix": "", "end_of_word_suffix": "",
                  "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": vocab, "merges": MERGES},
    })
}
