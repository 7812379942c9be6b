//! Tokenizers built from small hand-made vocabularies: BPE and SentencePiece merging,
//! special tokens, byte fallback, streaming, the GGUF adapter, and typed errors for
//! every kind of bad metadata.

use nao_gguf::writer::GgufWriter;
use nao_gguf::GgufFile;
use nao_tokenizer::vocab::{token_type, Strings};
use nao_tokenizer::{StreamDecoder, Tokenizer, TokenizerError, Vocab};

fn strings(v: &[&str]) -> Strings {
    v.iter().collect()
}

/// `tokens` with token `i` replaced by `text`.
fn replaced(tokens: &Strings, i: usize, text: &str) -> Strings {
    let pick = |(j, t)| if j == i { text } else { t };
    tokens.iter().enumerate().map(pick).collect()
}

/// Byte-level BPE: ids 0..=6 are plain, 7 is a control token, 8 user-defined.
fn bpe_vocab() -> Vocab {
    Vocab {
        model: "gpt2".into(),
        pre: Some("gpt-2".into()),
        tokens: strings(&["a", "b", "c", "Ġ", "ab", "abc", "Ġab", "<|end|>", "<tool>"]),
        token_types: Some(vec![1, 1, 1, 1, 1, 1, 1, 3, 4]),
        merges: Some(strings(&["a b", "ab c", "Ġ ab"])),
        eos: Some(7),
        ..Vocab::default()
    }
}

/// SentencePiece-style: `▁ab` reachable only through `ab`, byte tokens for "€".
fn spm_vocab() -> Vocab {
    let tokens = strings(&[
        "<unk>", "<s>", "</s>", "▁", "a", "b", "▁a", "ab", "▁ab", "<0xE2>", "<0x82>", "<0xAC>",
        "<ctl>",
    ]);
    let scores = vec![
        0.0, 0.0, 0.0, -5.0, -3.0, -3.0, -1.0, -0.5, -2.0, 0.0, 0.0, 0.0, 0.0,
    ];
    let types = vec![2, 3, 3, 1, 1, 1, 1, 1, 1, 6, 6, 6, 3];
    Vocab {
        model: "llama".into(),
        tokens,
        scores: Some(scores),
        token_types: Some(types),
        ..Vocab::default()
    }
}

#[test]
fn bpe_merges_by_rank() {
    let tok = Tokenizer::from_vocab(bpe_vocab()).expect("valid");
    // "abc" merges a+b, then ab+c; " ab" merges a+b (rank 0) then Ġ+ab (rank 2).
    assert_eq!(tok.encode("abc ab", false, false), [5, 6]);
    assert_eq!(tok.encode("ba", false, false), [1, 0]);
    assert_eq!(tok.decode(&[5, 6]), "abc ab");
    assert_eq!(tok.token_bytes(6), Some(&b" ab"[..]));
    assert!(!tok.add_bos());
    assert!(tok.is_eog(7));
    assert!(tok.is_control(7));
}

#[test]
fn bpe_special_tokens() {
    let tok = Tokenizer::from_vocab(bpe_vocab()).expect("valid");
    // Control text is a token only with parse_special; user-defined text always is.
    assert_eq!(tok.encode("ab<|end|>", false, true), [4, 7]);
    let plain = tok.encode("ab<|end|>", false, false);
    assert!(!plain.contains(&7));
    assert_eq!(tok.encode("a<tool>b", false, false), [0, 8, 1]);
    assert_eq!(tok.token_bytes(7), Some(&b"<|end|>"[..]));
}

#[test]
fn spm_merges_by_score_with_byte_fallback() {
    let tok = Tokenizer::from_vocab(spm_vocab()).expect("valid");
    assert!(tok.add_bos());
    assert_eq!(tok.bos(), Some(1));
    assert_eq!(tok.eos(), Some(2));
    // A space prefix is added (default add_space_prefix = true for SPM): "▁ab".
    assert_eq!(tok.encode("ab", true, false), [1, 8]);
    assert_eq!(tok.encode("ab a", false, false), [8, 6]);
    // "€" is not in the vocabulary: three byte tokens.
    assert_eq!(tok.encode("€", false, false), [3, 9, 10, 11]);
    assert_eq!(tok.decode(&[8, 9, 10, 11]), " ab€");
    // After a special token the prefix space is added again.
    assert_eq!(tok.encode("a<ctl>a", false, true), [6, 12, 6]);
}

#[test]
fn spm_without_space_prefix() {
    let v = Vocab {
        add_space_prefix: Some(false),
        ..spm_vocab()
    };
    let tok = Tokenizer::from_vocab(v).expect("valid");
    assert_eq!(tok.encode("ab", false, false), [7]);
}

#[test]
fn stream_decoder_never_splits_a_char() {
    let tok = Tokenizer::from_vocab(spm_vocab()).expect("valid");
    let mut sd = StreamDecoder::new();
    assert_eq!(sd.push(&tok, 8), " ab");
    assert_eq!(sd.push(&tok, 9), "");
    assert_eq!(sd.push(&tok, 10), "");
    assert_eq!(sd.push(&tok, 11), "€");
    // An unfinished character is flushed lossily at the end.
    assert_eq!(sd.push(&tok, 9), "");
    assert_eq!(sd.finish(), "\u{FFFD}");
    // A byte that can never start a character comes out as U+FFFD right away.
    assert_eq!(sd.push(&tok, 10), "\u{FFFD}");
    assert_eq!(sd.push(&tok, 6), " a");
    assert_eq!(sd.finish(), "");
}

#[test]
fn stream_decoder_emoji_over_byte_level_tokens() {
    // Byte-level BPE vocabulary holding the four bytes of 😀 (F0 9F 98 80) one by one.
    let map = |b: u8| -> String {
        // GPT-2 maps bytes >= 0xA1 (except 0xAD) to themselves, 0x80..=0xA0 above 0x100.
        match b {
            0xF0 => "ð".into(),
            0x9F => "Ł".into(),
            0x98 => "ĺ".into(),
            0x80 => "Ģ".into(),
            _ => unreachable!(),
        }
    };
    let bytes = "😀".as_bytes();
    let v = Vocab {
        model: "gpt2".into(),
        pre: Some("qwen2".into()),
        tokens: bytes.iter().map(|&b| map(b)).collect(),
        merges: Some(Strings::new()),
        ..Vocab::default()
    };
    let tok = Tokenizer::from_vocab(v).expect("valid");
    let ids = tok.encode("😀", false, false);
    assert_eq!(ids, [0, 1, 2, 3]);
    let mut sd = StreamDecoder::new();
    let parts: Vec<String> = ids.iter().map(|&id| sd.push(&tok, id)).collect();
    assert_eq!(parts, ["", "", "", "😀"]);
}

#[test]
fn from_gguf_reads_metadata() {
    let v = bpe_vocab();
    let bytes = GgufWriter::new(3)
        .kv("general.architecture", "qwen2")
        .kv("tokenizer.ggml.model", "gpt2")
        .kv("tokenizer.ggml.pre", "qwen2")
        .kv("tokenizer.ggml.tokens", v.tokens.clone())
        .kv(
            "tokenizer.ggml.token_type",
            v.token_types.clone().unwrap_or_default(),
        )
        .kv(
            "tokenizer.ggml.merges",
            v.merges.clone().unwrap_or_default(),
        )
        .kv("tokenizer.ggml.eos_token_id", 7u32)
        .kv("tokenizer.ggml.bos_token_id", 7u32)
        .kv("tokenizer.ggml.add_bos_token", true)
        .to_bytes();
    let f = GgufFile::from_bytes(bytes).expect("gguf");
    let tok = Tokenizer::from_gguf(&f).expect("tokenizer");
    assert!(tok.add_bos());
    assert_eq!(tok.encode("abc", true, false), [7, 5]);

    let missing = GgufWriter::new(3)
        .kv("tokenizer.ggml.model", "gpt2")
        .to_bytes();
    let f = GgufFile::from_bytes(missing).expect("gguf");
    assert!(matches!(
        Tokenizer::from_gguf(&f),
        Err(TokenizerError::MissingKey("tokenizer.ggml.tokens"))
    ));
    let wrong = GgufWriter::new(3)
        .kv("tokenizer.ggml.model", 3u32)
        .to_bytes();
    let f = GgufFile::from_bytes(wrong).expect("gguf");
    assert!(matches!(
        Tokenizer::from_gguf(&f),
        Err(TokenizerError::Gguf(_))
    ));
}

fn err(v: Vocab) -> TokenizerError {
    match Tokenizer::from_vocab(v) {
        Ok(_) => panic!("expected an error"),
        Err(e) => {
            assert!(!e.to_string().is_empty());
            e
        }
    }
}

#[test]
fn bad_metadata_is_a_typed_error() {
    let e = err(Vocab {
        model: "bert".into(),
        ..bpe_vocab()
    });
    assert!(matches!(e, TokenizerError::UnsupportedModel(m) if m == "bert"));

    let e = err(Vocab {
        pre: Some("nope".into()),
        ..bpe_vocab()
    });
    assert!(matches!(e, TokenizerError::UnsupportedPre(p) if p == "nope"));

    let e = err(Vocab {
        tokens: Strings::new(),
        ..bpe_vocab()
    });
    assert!(matches!(e, TokenizerError::EmptyVocab));

    let mut v = spm_vocab();
    v.tokens = replaced(&v.tokens, 9, "<0x-1>");
    assert!(matches!(err(v), TokenizerError::BadByteToken { id: 9, .. }));

    let e = err(Vocab {
        bos: Some(1000),
        ..bpe_vocab()
    });
    assert!(matches!(
        e,
        TokenizerError::TokenIdOutOfRange {
            id: 1000,
            n_vocab: 9,
            ..
        }
    ));

    let e = err(Vocab {
        merges: Some(strings(&["a zz"])),
        ..bpe_vocab()
    });
    assert!(
        matches!(e, TokenizerError::MergeUnknownToken { index: 0, token, .. } if token == "zz")
    );

    let e = err(Vocab {
        merges: Some(strings(&["a b", "abc"])),
        ..bpe_vocab()
    });
    assert!(matches!(e, TokenizerError::MalformedMerge { index: 1, .. }));

    let e = err(Vocab {
        merges: None,
        ..bpe_vocab()
    });
    assert!(matches!(
        e,
        TokenizerError::MissingKey("tokenizer.ggml.merges")
    ));

    let e = err(Vocab {
        scores: Some(vec![0.0; 3]),
        ..spm_vocab()
    });
    assert!(matches!(
        e,
        TokenizerError::LengthMismatch {
            expected: 13,
            got: 3,
            ..
        }
    ));

    let e = err(Vocab {
        token_types: Some(vec![token_type::NORMAL; 2]),
        ..bpe_vocab()
    });
    assert!(matches!(e, TokenizerError::LengthMismatch { got: 2, .. }));

    let mut v = bpe_vocab();
    v.tokens = replaced(&v.tokens, 1, "a");
    assert!(matches!(
        err(v),
        TokenizerError::DuplicateToken {
            first: 0,
            second: 1,
            ..
        }
    ));

    // BPE's default BOS id (11) is outside this vocabulary, so asking for BOS fails.
    let e = err(Vocab {
        add_bos: Some(true),
        ..bpe_vocab()
    });
    assert!(matches!(e, TokenizerError::AddSpecialWithoutId { .. }));
}
