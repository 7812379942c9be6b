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

/// The Qwen2.5 `tokenizer.json` + `tokenizer_config.json` (`scripts/fetch_models.py
/// qwen-tokenizer`), through the Hugging Face backend.
fn load_hf_qwen() -> Option<Tokenizer> {
    let dir = format!(
        "{}/../../models/qwen2.5-tokenizer",
        env!("CARGO_MANIFEST_DIR")
    );
    let dir = std::path::Path::new(&dir);
    if !dir.join("tokenizer.json").is_file() {
        assert!(
            std::env::var_os("NAO_REQUIRE_MODELS").is_none(),
            "{} is missing and NAO_REQUIRE_MODELS is set: run scripts/fetch_models.py",
            dir.display()
        );
        eprintln!("SKIP: {} is absent", dir.display());
        return None;
    }
    let t0 = std::time::Instant::now();
    let tok = Tokenizer::from_hf_dir(dir).expect("build tokenizer from tokenizer.json");
    eprintln!("qwen2.5 tokenizer.json: built in {:?}", t0.elapsed());
    Some(tok)
}

/// The Qwen2.5 `tokenizer.json` gives llama.cpp's ids on every fixture case, and agrees
/// with the GGUF vocabulary token by token: text, raw bytes, control and end-of-generation.
#[test]
fn qwen_tokenizer_json_matches_llama_cpp_and_gguf() {
    let Some(hf) = load_hf_qwen() else { return };
    for c in cases(QWEN) {
        let got = hf.encode(&c.text, c.add_special, c.parse_special);
        assert_eq!(
            got, c.ids,
            "{:?} (add_special={}, parse_special={})",
            c.text, c.add_special, c.parse_special
        );
        assert_eq!(hf.decode(&got), c.text);
    }
    let Some(gguf) = load(QWEN) else { return };
    // The GGUF pads the vocabulary to the model's 151,936 rows; tokenizer.json has 151,665.
    assert_eq!(hf.n_vocab(), 151_665);
    for id in 0..hf.n_vocab() as u32 {
        assert_eq!(hf.token_text(id), gguf.token_text(id), "text of {id}");
        assert_eq!(hf.token_bytes(id), gguf.token_bytes(id), "bytes of {id}");
        assert_eq!(hf.is_control(id), gguf.is_control(id), "control {id}");
        assert_eq!(hf.is_eog(id), gguf.is_eog(id), "eog {id}");
    }
    assert_eq!(
        (hf.eos(), hf.add_bos(), hf.add_eos()),
        (gguf.eos(), gguf.add_bos(), gguf.add_eos())
    );
}
