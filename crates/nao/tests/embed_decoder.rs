//! A decoder embedder (Qwen3-Embedding style) through the binary: `nao embed` and
//! `/v1/embeddings` of `nao serve` on a tiny random-weight Qwen3 embedding directory
//! written here, laid out as Qwen3-Embedding's is (bare `layers.N.*` tensor names, no LM
//! head, `config.json` naming `Qwen3ForCausalLM`, `modules.json` with last-token
//! `1_Pooling` and `2_Normalize`, `tokenizer.json` whose post-processor appends
//! `<|endoftext|>`), and as the GGUF llama.cpp would convert it to (`qwen3.pooling_type`
//! 3, the vocabulary as metadata).
//!
//! Truth is the pure-Python reference of `nao-models/tests/support/decoder_reference.py`
//! (transformers' Qwen3 and sentence-transformers' pooling, f64), run on the token ids
//! the tiny vocabulary's merges give by hand. Checked: the EOS is appended exactly once
//! (by the tokenizer, or by nao when the tokenizer does not), vectors are unit length and
//! within 2e-3 of the reference (cosine ≥ 0.9999), one text at a time equals a batch, the
//! server returns what `nao embed` prints, and the GGUF gives the directory's vectors.

#[path = "support/bpe_vocab.rs"]
mod bpe_vocab;
#[path = "../../nao-models/tests/support/hf_writer.rs"]
mod hf_writer;

use bpe_vocab::*;
use hf_writer::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const TEXTS: [&str; 3] = ["hello world", "hello", "world hello world"];
/// Their ids by the merges (`hello` 259, ` world` 264, ` hello` 265, `or` 261, bytes for
/// the rest), without the EOS.
fn text_ids() -> Vec<Vec<u32>> {
    vec![
        vec![259, 264],
        vec![259],
        vec![119, 261, 108, 100, 265, 264],
    ]
}
const TOL: f64 = 2e-3;

fn spec() -> Spec {
    Spec {
        n_vocab: N_VOCAB,
        ..Spec::qwen3()
    }
}

/// The embedding directory; `post_eos`: the tokenizer appends `<|endoftext|>` itself.
fn write_embedder(name: &str, post_eos: bool) -> PathBuf {
    let s = spec();
    let w = weights(&s, Dt::BF16, 41);
    let dir = fresh_dir(name);
    let bare: Vec<Tensor> = w
        .iter()
        .map(|t| Tensor {
            name: t.name.strip_prefix("model.").unwrap_or(&t.name).to_string(),
            shape: t.shape.clone(),
            data: t.data.clone(),
        })
        .collect();
    let refs: Vec<&Tensor> = bare.iter().collect();
    write_safetensors(&dir.join("model.safetensors"), &refs, Dt::BF16, false);
    let write = |file: &str, v: Value| std::fs::write(dir.join(file), v.to_string()).unwrap();
    let mut config = config_json(&s);
    config["eos_token_id"] = json!(ENDOFTEXT);
    write("config.json", config);
    write(
        "modules.json",
        json!([
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ]),
    );
    std::fs::create_dir_all(dir.join("1_Pooling")).unwrap();
    write(
        "1_Pooling/config.json",
        json!({"word_embedding_dimension": s.n_embd, "pooling_mode_lasttoken": true,
               "pooling_mode_mean_tokens": false, "include_prompt": true}),
    );
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false,
                            "trim_offsets": false, "use_regex": false});
    let post = if post_eos {
        let eos =
            |type_id: u32| json!({"SpecialToken": {"id": "<|endoftext|>", "type_id": type_id}});
        let seq = |id: &str, type_id: u32| json!({"Sequence": {"id": id, "type_id": type_id}});
        json!({"type": "Sequence", "processors": [byte_level, {
            "type": "TemplateProcessing",
            "single": [seq("A", 0), eos(0)],
            "pair": [seq("A", 0), eos(0), seq("B", 1), eos(1)],
            "special_tokens": {"<|endoftext|>": {"id": "<|endoftext|>", "ids": [ENDOFTEXT],
                                                 "tokens": ["<|endoftext|>"]}},
        }]})
    } else {
        byte_level
    };
    write("tokenizer.json", tokenizer_json_with(post));
    write(
        "tokenizer_config.json",
        json!({"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}),
    );
    dir
}

/// The GGUF of the same embedder, with the vocabulary as llama.cpp writes it.
fn write_gguf(name: &str) -> PathBuf {
    let s = spec();
    let w = weights(&s, Dt::BF16, 41);
    let mut toks = tokens();
    let mut types = vec![1i32; 256 + MERGES.len()];
    types.extend([3; SPECIALS.len()]);
    for id in toks.len()..N_VOCAB {
        toks.push(format!("[PAD{id}]"));
        types.push(5);
    }
    let merges: Vec<String> = MERGES.iter().map(|m| m.to_string()).collect();
    let bytes = gguf_writer(&s, &w, Dt::BF16, true)
        .kv("qwen3.pooling_type", 3u32)
        .kv("tokenizer.ggml.model", "gpt2")
        .kv("tokenizer.ggml.pre", "qwen2")
        .kv("tokenizer.ggml.tokens", toks)
        .kv("tokenizer.ggml.token_type", types)
        .kv("tokenizer.ggml.merges", merges)
        .kv("tokenizer.ggml.eos_token_id", ENDOFTEXT)
        .kv("tokenizer.ggml.add_bos_token", false)
        .to_bytes();
    let path = fresh_dir(name).join("qwen3-embed-tiny.gguf");
    std::fs::write(&path, bytes).unwrap();
    path
}

fn nao(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nao"))
        .args(args)
        .env("NAO_MEMORY_LIMIT", "off")
        .output()
        .unwrap()
}

/// `nao embed -m model TEXTS…` → (vectors, prompt_tokens).
fn embed(model: &Path, texts: &[&str]) -> (Vec<Vec<f64>>, u64) {
    let mut args = vec!["embed", "-m", model.to_str().unwrap(), "-t", "2", "--"];
    args.extend(texts);
    let out = nao(&args);
    assert!(
        out.status.success(),
        "nao {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["dimensions"], 64, "{v}");
    (
        vectors(&v["embeddings"]),
        v["prompt_tokens"].as_u64().unwrap(),
    )
}

fn vectors(v: &Value) -> Vec<Vec<f64>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            e.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        })
        .collect()
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// The Python reference's vectors for `seqs`.
fn reference(dir: &Path, seqs: &[Vec<u32>]) -> Vec<Vec<f64>> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../nao-models/tests/support/decoder_reference.py"
    );
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs (the reference needs only the standard library)");
    let req = json!({"dir": dir, "seqs": seqs});
    child
        .stdin
        .take()
        .unwrap()
        .write_all(req.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "reference failed");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (&v["pooling"], &v["normalize"]),
        (&json!("last"), &json!(true))
    );
    vectors(&v["embeddings"])
}

#[test]
fn nao_embed_matches_the_reference_with_one_eos() {
    let with_post = write_embedder("bin_qwen3_embed_post", true);
    let without = write_embedder("bin_qwen3_embed_nopost", false);
    let (v, n_tokens) = embed(&with_post, &TEXTS);
    // One EOS each: 3 + 2 + 7 tokens.
    assert_eq!(n_tokens, 12);
    let seqs: Vec<Vec<u32>> = text_ids()
        .into_iter()
        .map(|mut s| {
            s.push(ENDOFTEXT);
            s
        })
        .collect();
    let want = reference(&with_post, &seqs);
    for (i, (got, want)) in v.iter().zip(&want).enumerate() {
        let norm = got.iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{:?}: norm {norm}", TEXTS[i]);
        let d = max_diff(got, want);
        eprintln!("{:?}: max |nao - reference| = {d:e}", TEXTS[i]);
        assert!(d <= TOL, "{:?}: {d} from the reference", TEXTS[i]);
    }
    // Without the post-processor nao appends the EOS: the same tokens, the same vectors.
    let (v2, n2) = embed(&without, &TEXTS);
    assert_eq!((n2, &v2), (n_tokens, &v));
    // One text at a time equals the batch.
    for (i, t) in TEXTS.iter().enumerate() {
        let (single, _) = embed(&with_post, &[t]);
        let d = max_diff(&single[0], &v[i]);
        assert!(d <= 1e-5, "{t:?}: single differs from batched by {d}");
    }
    // It is an embedding model, not a chat model, although config.json names a causal LM.
    let out = nao(&["run", "-m", with_post.to_str().unwrap(), "-p", "hi"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a chat model"), "{err}");
    // The GGUF conversion gives the same vectors (its tokenizer adds no EOS: nao does).
    let gguf = write_gguf("bin_qwen3_embed_gguf");
    let (g, gn) = embed(&gguf, &TEXTS);
    assert_eq!(gn, n_tokens);
    for (a, b) in g.iter().zip(&v) {
        assert!(max_diff(a, b) <= 1e-6, "GGUF and directory vectors differ");
    }
}

// ---------------------------------------------------------------------------------------
// The server.

struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(model: &Path) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_nao"))
            .args(["serve", "-m", model.to_str().unwrap(), "-t", "2"])
            .args(["--port", &port.to_string()])
            .env("NAO_MEMORY_LIMIT", "off")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server = Server { child, port };
        let t0 = Instant::now();
        while server.request("GET", "/health", None).0 != 200 {
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "server did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    /// One HTTP/1.1 request → (status, JSON body); status 0 when nothing answers.
    fn request(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return (0, Value::Null);
        };
        let body = body.map(Value::to_string).unwrap_or_default();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        if s.write_all(req.as_bytes()).is_err() {
            return (0, Value::Null);
        }
        let mut raw = Vec::new();
        if s.read_to_end(&mut raw).is_err() {
            return (0, Value::Null);
        }
        let text = String::from_utf8_lossy(&raw);
        let Some((head, payload)) = text.split_once("\r\n\r\n") else {
            return (0, Value::Null);
        };
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        (status, serde_json::from_str(payload).unwrap_or(Value::Null))
    }
}

#[test]
fn v1_embeddings_serves_the_decoder_embedder() {
    let dir = write_embedder("bin_qwen3_embed_serve", true);
    let (cli, _) = embed(&dir, &TEXTS);
    let server = Server::start(&dir);
    let id = dir.file_name().unwrap().to_str().unwrap();

    let (status, models) = server.request("GET", "/v1/models", None);
    assert_eq!(status, 200, "{models}");
    assert!(models.to_string().contains(id), "{models}");

    let body = json!({"model": id, "input": TEXTS, "encoding_format": "float"});
    let (status, r) = server.request("POST", "/v1/embeddings", Some(&body));
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["usage"]["prompt_tokens"], 12, "{r}");
    let data = r["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    for (i, d) in data.iter().enumerate() {
        assert_eq!(d["index"], i);
        let got: Vec<f64> = vectors(&json!([d["embedding"]])).remove(0);
        let diff = max_diff(&got, &cli[i]);
        assert!(
            diff <= 1e-6,
            "{:?}: server differs from nao embed by {diff}",
            TEXTS[i]
        );
    }
    // Token arrays are used as given: with the EOS they are the text's vector.
    let mut ids = text_ids().remove(0);
    ids.push(ENDOFTEXT);
    let body = json!({"model": id, "input": [ids], "encoding_format": "float"});
    let (status, r) = server.request("POST", "/v1/embeddings", Some(&body));
    assert_eq!(status, 200, "{r}");
    let got: Vec<f64> = vectors(&json!([r["data"][0]["embedding"]])).remove(0);
    assert!(max_diff(&got, &cli[0]) <= 1e-6);

    // Past the model's 128 positions: a 400 naming the limit, or with `truncate` the text
    // cut so that the EOS still ends it (the vector of the first 127 ids plus the EOS).
    let long = "hello ".repeat(200);
    let body = json!({"model": id, "input": long.trim_end()});
    let (status, r) = server.request("POST", "/v1/embeddings", Some(&body));
    assert_eq!(status, 400, "{r}");
    assert!(r.to_string().contains("128"), "{r}");
    let body = json!({"model": id, "input": long.trim_end(), "truncate": true,
                      "encoding_format": "float"});
    let (status, r) = server.request("POST", "/v1/embeddings", Some(&body));
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["usage"]["prompt_tokens"], 128, "{r}");
    let cut: Vec<u32> = [259]
        .into_iter()
        .chain([265; 126])
        .chain([ENDOFTEXT])
        .collect();
    let body = json!({"model": id, "input": [cut], "encoding_format": "float"});
    let (status, by_ids) = server.request("POST", "/v1/embeddings", Some(&body));
    assert_eq!(status, 200, "{by_ids}");
    assert_eq!(r["data"][0]["embedding"], by_ids["data"][0]["embedding"]);
}
