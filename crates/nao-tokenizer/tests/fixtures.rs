//! Tokenizer parity with llama.cpp: every case of the `*.tokenize.json` fixtures must
//! give the exact same ids. Needs the real model files; skips (with a message) without.

use nao_gguf::GgufFile;
use nao_tokenizer::{StreamDecoder, Tokenizer};

const QWEN: &str = "qwen2.5-coder-1.5b-instruct-q4_k_m";
const GEMMA: &str = "gemma-3-270m-q4_k_m";

fn load(model: &str) -> Option<Tokenizer> {
    let path = format!("{}/../../models/{model}.gguf", env!("CARGO_MANIFEST_DIR"));
    if !std::path::Path::new(&path).exists() {
        eprintln!("SKIP: model file {path} is absent");
        return None;
    }
    let f = GgufFile::open(&path).expect("open gguf");
    let t0 = std::time::Instant::now();
    let tok = Tokenizer::from_gguf(&f).expect("build tokenizer");
    eprintln!("{model}: tokenizer built in {:?}", t0.elapsed());
    Some(tok)
}

struct Case {
    text: String,
    add_special: bool,
    parse_special: bool,
    ids: Vec<u32>,
}

fn cases(model: &str) -> Vec<Case> {
    let path = format!(
        "{}/../../tests/fixtures/{model}.tokenize.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let json: serde_json::Value = serde_json::from_str(&text).expect("fixture json");
    json["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| Case {
            text: c["text"].as_str().expect("text").to_owned(),
            add_special: c["add_special"].as_bool().expect("add_special"),
            parse_special: c["parse_special"].as_bool().expect("parse_special"),
            ids: c["ids"]
                .as_array()
                .expect("ids")
                .iter()
                .map(|v| v.as_u64().expect("id") as u32)
                .collect(),
        })
        .collect()
}

fn check(model: &str) {
    let Some(tok) = load(model) else { return };
    let cases = cases(model);
    let mut failed = 0;
    for c in &cases {
        let got = tok.encode(&c.text, c.add_special, c.parse_special);
        if got != c.ids {
            failed += 1;
            eprintln!(
                "MISMATCH {model} {:?} (add_special={}, parse_special={})\n  want {:?}\n  got  {:?}",
                c.text, c.add_special, c.parse_special, c.ids, got
            );
            continue;
        }
        // Decoding the ids gives the text back (plus BOS text when added).
        let body: Vec<u32> = got
            .iter()
            .copied()
            .filter(|&id| !(c.add_special && Some(id) == tok.bos()))
            .collect();
        assert_eq!(tok.decode(&body), c.text, "decode {model} {:?}", c.text);
        let mut sd = StreamDecoder::new();
        let mut streamed: String = body.iter().map(|&id| sd.push(&tok, id)).collect();
        streamed.push_str(&sd.finish());
        assert_eq!(streamed, c.text, "stream decode {model} {:?}", c.text);
    }
    eprintln!(
        "{model}: {}/{} cases exact",
        cases.len() - failed,
        cases.len()
    );
    assert_eq!(
        failed,
        0,
        "{failed} of {} {model} cases differ",
        cases.len()
    );
}

#[test]
fn qwen_fixture_exact() {
    check(QWEN);
}

#[test]
fn gemma_fixture_exact() {
    check(GEMMA);
}

#[test]
fn qwen_metadata() {
    let Some(tok) = load(QWEN) else { return };
    assert_eq!(tok.n_vocab(), 151936);
    assert!(!tok.add_bos());
    assert_eq!(tok.eos(), Some(151645));
    for text in ["<|im_end|>", "<|endoftext|>"] {
        let id = tok.token_id(text).expect(text);
        assert!(tok.is_eog(id), "{text} is eog");
        assert!(tok.is_control(id));
        assert_eq!(tok.token_bytes(id), Some(text.as_bytes()));
    }
    assert!(!tok.is_eog(tok.token_id("<|im_start|>").expect("im_start")));
    assert!(!tok.is_eog(9707));
    assert_eq!(tok.token_text(9707), Some("Hello"));
    assert_eq!(tok.token_bytes(21927), Some(&b" Hello"[..]));
    assert_eq!(tok.token_bytes(u32::MAX), None);
}

#[test]
fn gemma_metadata() {
    let Some(tok) = load(GEMMA) else { return };
    assert_eq!(tok.n_vocab(), 262144);
    assert!(tok.add_bos());
    assert_eq!(tok.bos(), Some(2));
    assert_eq!(tok.eos(), Some(1));
    assert!(tok.is_eog(1));
    assert!(tok.is_eog(106)); // <end_of_turn>
    assert!(!tok.is_eog(105));
    assert!(tok.is_control(105));
    // Byte fallback tokens spell one byte each; the stream decoder waits for whole chars.
    let euro = "€".as_bytes();
    let ids: Vec<u32> = euro
        .iter()
        .map(|b| tok.token_id(&format!("<0x{b:02X}>")).expect("byte token"))
        .collect();
    let mut sd = StreamDecoder::new();
    assert_eq!(sd.push(&tok, ids[0]), "");
    assert_eq!(sd.push(&tok, ids[1]), "");
    assert_eq!(sd.push(&tok, ids[2]), "€");
    assert_eq!(sd.finish(), "");
}
