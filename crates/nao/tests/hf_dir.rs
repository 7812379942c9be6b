//! `nao run` / `nao tokenize` on a Hugging Face decoder directory, end to end through the
//! binary: a tiny random-weight Qwen2 written as a directory (safetensors, `tokenizer.json`,
//! `tokenizer_config.json` with a chat template, `generation_config.json`) and as the GGUF
//! llama.cpp's converter would make of it (same weights, the same vocabulary as
//! `tokenizer.ggml.*` metadata). The GGUF path is the reference (parity-tested against
//! llama.cpp elsewhere); the directory must give the same prompt ids and, since the Qwen2
//! logits of both paths are bit-identical (`nao-models/tests/hf_dir.rs`), the same greedy
//! tokens.

#[path = "support/bpe_vocab.rs"]
mod bpe_vocab;
#[path = "../../nao-models/tests/support/hf_writer.rs"]
mod hf_writer;

use bpe_vocab::*;
use hf_writer::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Writes the directory and the GGUF of the same model; returns their paths.
fn write_model(name: &str) -> (PathBuf, PathBuf) {
    // Untied: a random head of small weights keeps the greedy choice varied (tied to the
    // embedding, one token wins every step).
    let s = Spec {
        n_vocab: N_VOCAB,
        tied: false,
        ..Spec::qwen2()
    };
    let w = weights(&s, Dt::F16, 11);
    let dir = fresh_dir(name);
    write_dir(&dir, &s, &w, Dt::F16, Layout::Single { odd_header: false });
    let write = |file: &str, v: Value| {
        std::fs::write(dir.join(file), serde_json::to_string_pretty(&v).unwrap()).unwrap()
    };
    write("tokenizer.json", tokenizer_json());
    write(
        "tokenizer_config.json",
        json!({"bos_token": null, "eos_token": "<|im_end|>", "chat_template": TEMPLATE}),
    );
    write(
        "generation_config.json",
        json!({"bos_token_id": ENDOFTEXT, "eos_token_id": [IM_END, ENDOFTEXT]}),
    );

    // The converter's metadata: padding rows are `[PAD{id}]`, unused.
    let mut toks = tokens();
    let mut types = vec![1i32; 256 + MERGES.len()];
    types.extend([3; SPECIALS.len()]);
    for id in toks.len()..N_VOCAB {
        toks.push(format!("[PAD{id}]"));
        types.push(5);
    }
    let merges: Vec<String> = MERGES.iter().map(|m| m.to_string()).collect();
    let gguf = gguf_writer(&s, &w, Dt::F16, true)
        .kv("tokenizer.ggml.model", "gpt2")
        .kv("tokenizer.ggml.pre", "qwen2")
        .kv("tokenizer.ggml.tokens", toks)
        .kv("tokenizer.ggml.token_type", types)
        .kv("tokenizer.ggml.merges", merges)
        .kv("tokenizer.ggml.eos_token_id", IM_END)
        .kv("tokenizer.ggml.bos_token_id", ENDOFTEXT)
        .kv("tokenizer.ggml.add_bos_token", false)
        .kv("tokenizer.chat_template", TEMPLATE)
        .to_bytes();
    let file = dir.with_extension("gguf");
    std::fs::write(&file, gguf).unwrap();
    (dir, file)
}

fn nao(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nao"))
        .args(args)
        .env("NAO_MEMORY_LIMIT", "off")
        .output()
        .unwrap()
}

fn nao_json(args: &[&str]) -> Value {
    let out = nao(args);
    assert!(
        out.status.success(),
        "nao {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Greedy `run --json` on `model`.
fn greedy(model: &Path, prompt: &str, chat: bool) -> Value {
    let mut args = vec![
        "run",
        "-m",
        p(model),
        "-p",
        prompt,
        "--temp",
        "0",
        "-n",
        "12",
        "--json",
        "-t",
        "1",
        "--ctx",
        "64",
    ];
    if chat {
        args.push("--chat");
    }
    nao_json(&args)
}

#[test]
fn run_on_a_directory_matches_the_gguf() {
    let (dir, gguf) = write_model("bin_qwen2");
    for (prompt, chat) in [("hello world hello", false), ("hello world", true)] {
        let d = greedy(&dir, prompt, chat);
        let g = greedy(&gguf, prompt, chat);
        assert_eq!(
            d["prompt_tokens"], g["prompt_tokens"],
            "{prompt:?} chat={chat}"
        );
        let n = d["tokens"].as_array().map_or(0, Vec::len);
        assert!(n > 0, "no tokens generated: {d}");
        assert_eq!(d["tokens"], g["tokens"], "{prompt:?} chat={chat}");
        // And the same distributions: top-5 ids and log-probabilities at every step.
        assert_eq!(
            d["top_logprobs"], g["top_logprobs"],
            "{prompt:?} chat={chat}"
        );
        eprintln!("{prompt:?} chat={chat}: {}", d["tokens"]);
    }
    // The prompt ids follow the merges: "hello" (259), " world" (264), " hello" (265).
    let d = greedy(&dir, "hello world hello", false);
    assert_eq!(d["prompt_tokens"], json!([259, 264, 265]));
    // The chat template wraps the prompt: <|im_start|>user\n ... <|im_end|>\n<|im_start|>...
    let d = greedy(&dir, "hello world", true);
    let ids: Vec<u64> = d["prompt_tokens"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    assert_eq!(ids[0], 267);
    assert!(ids.windows(2).any(|w| w == [259, 264]), "{ids:?}");
    assert_eq!(ids.iter().filter(|&&id| id == 267).count(), 2);
}

#[test]
fn tokenize_on_a_directory_matches_the_gguf() {
    let (dir, gguf) = write_model("bin_tokenize");
    for text in [
        "hello world",
        "<|im_start|>hello<|im_end|>",
        "héllo  wörld\n\n123",
    ] {
        for special in [false, true] {
            let mut args = vec!["tokenize", "-m"];
            args.push(p(&dir));
            if special {
                args.push("--special");
            }
            args.extend(["--", text]);
            let d = nao_json(&args);
            args[2] = p(&gguf);
            let g = nao_json(&args);
            assert_eq!(d, g, "{text:?} special={special}");
        }
    }
}

#[test]
fn an_embedding_directory_is_not_a_chat_model() {
    let dir = fresh_dir("bin_bert");
    std::fs::write(
        dir.join("config.json"),
        r#"{"architectures": ["BertModel"], "hidden_size": 8}"#,
    )
    .unwrap();
    let out = nao(&["run", "-m", p(&dir), "-p", "hi"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a chat model"), "{err}");
}
