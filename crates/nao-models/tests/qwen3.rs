//! Qwen3 and decoder embedders (Qwen3-Embedding style) against an independent reference.
//!
//! The reference is `support/decoder_reference.py`: a pure-Python f64 forward pass written
//! from transformers' Qwen3 modelling code and sentence-transformers' pooling, sharing no
//! code with nao. Each test writes a tiny random-weight Qwen3 (head_dim 24 ≠ 64 / 4; q/k
//! norm weights far from 1) as a Hugging Face directory and compares:
//! - logits at every position (the chat path);
//! - last-token pooled, L2-normalised vectors of an embedding directory laid out as
//!   Qwen3-Embedding's is (bare `layers.N.*` names, `modules.json`, `1_Pooling/`,
//!   `2_Normalize`), one sequence at a time and packed in one batch;
//! - mean pooling without normalisation;
//! - the GGUF conversion of the same embedder (`qwen3.pooling_type` = 3), which must give
//!   the same vectors as the directory.
//!
//! The reference can also run two plausible wrong models (q/k norms skipped; applied after
//! RoPE instead of before): nao must be far from both, so the comparison really checks the
//! placement of the norms.
//!
//! Tolerances: nao stores keys and values in f16 and rounds queries to f16 (as llama.cpp
//! does); everything else is f32. On these weights that moves logits (up to ~10) by under
//! [`LOGIT_TOL`] and unit vectors by under [`VEC_TOL`] per component.

#[path = "support/hf_writer.rs"]
mod hf_writer;

use hf_writer::*;
use nao_gguf::GgufFile;
use nao_models::pooling::Pooling;
use nao_models::sentence::{Backbone, SentenceEncoder};
use nao_models::{load_model_dir, Compute, ModelError};
use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

const LOGIT_TOL: f64 = 2e-2;
const VEC_TOL: f64 = 2e-3;
/// A wrong model must be at least this many tolerances away.
const WRONG_FACTOR: f64 = 10.0;
const TOKENS: [u32; 10] = [1, 17, 42, 3, 99, 0, 25, 8, 64, 50];
const EOS: u32 = 2;

/// Runs the Python reference on `dir`.
fn reference(dir: &Path, seqs: &[Vec<u32>], variant: &str) -> Value {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/support/decoder_reference.py"
    );
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 runs (the reference needs only the standard library)");
    let req = json!({"dir": dir, "seqs": seqs, "variant": variant});
    child
        .stdin
        .take()
        .unwrap()
        .write_all(req.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "reference failed");
    serde_json::from_slice(&out.stdout).expect("reference JSON")
}

fn floats(v: &Value) -> Vec<f64> {
    match v {
        Value::Array(a) => a.iter().flat_map(floats).collect(),
        x => vec![x.as_f64().expect("number")],
    }
}

fn max_diff(a: &[f32], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - y).abs())
        .fold(0.0, f64::max)
}

fn cosine(a: &[f32], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(&x, &y)| x as f64 * y).sum();
    let na = a.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
    let nb = b.iter().map(|y| y * y).sum::<f64>().sqrt();
    dot / (na * nb)
}

/// `got` is within `tol` of the reference and at least `WRONG_FACTOR * tol` from each
/// wrong variant.
fn check_against(name: &str, got: &[f32], dir: &Path, seqs: &[Vec<u32>], field: &str, tol: f64) {
    let want = floats(&reference(dir, seqs, "exact")[field]);
    let diff = max_diff(got, &want);
    eprintln!("{name}: max |nao - reference| = {diff:e}");
    assert!(diff <= tol, "{name}: differs from the reference by {diff}");
    for variant in ["no_qk_norm", "norm_after_rope"] {
        let wrong = floats(&reference(dir, seqs, variant)[field]);
        let d = max_diff(got, &wrong);
        eprintln!("{name}: max |nao - {variant}| = {d:e}");
        assert!(
            d >= WRONG_FACTOR * tol,
            "{name}: the {variant} model is only {d} away: the test cannot tell them apart"
        );
    }
}

#[test]
fn qwen3_logits_match_the_reference() {
    let s = Spec::qwen3();
    let w = weights(&s, Dt::F16, 21);
    let dir = fresh_dir("qwen3_reference");
    write_dir(&dir, &s, &w, Dt::F16, Layout::Single { odd_header: false });
    let m = load_model_dir(&dir).unwrap();
    assert_eq!(m.config().arch, "qwen3");
    assert_eq!(m.config().head_dim, 24);
    let mut cache = m.new_cache(32).unwrap();
    let mut c = Compute::new(2);
    let logits = m.forward(&TOKENS, 0, &mut cache, &mut c, true).unwrap();
    let spread = logits.iter().fold(0.0f32, |a, &x| a.max(x.abs()));
    assert!(spread > 0.5, "logits up to {spread}");
    check_against(
        "qwen3 logits",
        &logits,
        &dir,
        &[TOKENS.to_vec()],
        "logits",
        LOGIT_TOL,
    );
}

// ---------------------------------------------------------------------------------------
// Embedding directories.

/// Qwen3-Embedding's layout: a bare transformer (`embed_tokens.weight`, `layers.N.*`,
/// `norm.weight`; no head), `config.json` still naming `Qwen3ForCausalLM` with tied
/// embeddings, and the sentence-transformers modules. `pooling`: `1_Pooling` keys set.
fn write_embedder(
    name: &str,
    s: &Spec,
    w: &[Tensor],
    pooling: &str,
    normalize: bool,
) -> std::path::PathBuf {
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
    let mut config = config_json(s);
    config["eos_token_id"] = json!(EOS);
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let mut modules = vec![
        json!({"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}),
        json!({"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}),
    ];
    if normalize {
        modules.push(json!({"idx": 2, "name": "2", "path": "2_Normalize",
                            "type": "sentence_transformers.models.Normalize"}));
    }
    std::fs::write(dir.join("modules.json"), json!(modules).to_string()).unwrap();
    std::fs::create_dir_all(dir.join("1_Pooling")).unwrap();
    let pool = json!({
        "word_embedding_dimension": s.n_embd,
        "pooling_mode_cls_token": false,
        "pooling_mode_mean_tokens": pooling == "mean",
        "pooling_mode_lasttoken": pooling == "last",
        "include_prompt": true,
    });
    std::fs::write(dir.join("1_Pooling/config.json"), pool.to_string()).unwrap();
    dir
}

/// Sequences of several lengths, each ending with the EOS the model pools at; the longest
/// spans three KV blocks.
fn seqs() -> Vec<Vec<u32>> {
    let long: Vec<u32> = (0..40u32)
        .map(|i| (i * 37 + 5) % 100)
        .chain([EOS])
        .collect();
    vec![
        vec![5, 17, 42, EOS],
        vec![EOS],
        TOKENS.iter().copied().chain([EOS]).collect(),
        long,
        vec![64, 3, 3, 3, 9, EOS],
    ]
}

/// Vectors one sequence at a time and all in one batch; they must agree within 1e-5.
fn single_and_batched(e: &SentenceEncoder, seqs: &[Vec<u32>]) -> Vec<Vec<f32>> {
    let mut c = Compute::new(2);
    let refs: Vec<&[u32]> = seqs.iter().map(Vec::as_slice).collect();
    let batched = e.encode(&refs, &mut c).unwrap();
    assert_eq!(batched.len(), seqs.len());
    for (i, s) in seqs.iter().enumerate() {
        let single = e.encode(&[s.as_slice()], &mut c).unwrap();
        let d = single[0]
            .iter()
            .zip(&batched[i])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            d <= 1e-5,
            "sequence {i}: batched differs from single by {d}"
        );
    }
    batched
}

#[test]
fn last_token_embedder_matches_the_reference() {
    let s = Spec::qwen3();
    let w = weights(&s, Dt::BF16, 31);
    let dir = write_embedder("qwen3_embed_last", &s, &w, "last", true);
    let e = SentenceEncoder::load(&dir).unwrap();
    assert!(matches!(e.backbone, Backbone::Decoder(_)));
    assert_eq!(
        (e.pooling, e.normalize, e.eos),
        (Pooling::LastToken, true, Some(EOS))
    );
    assert_eq!((e.n_embd(), e.architecture()), (64, "qwen3"));
    let seqs = seqs();
    let v = single_and_batched(&e, &seqs);
    for (i, x) in v.iter().enumerate() {
        let norm = x.iter().map(|&a| (a as f64).powi(2)).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "vector {i} has norm {norm}");
    }
    let want = floats(&reference(&dir, &seqs, "exact")["embeddings"]);
    for (i, x) in v.iter().enumerate() {
        let cos = cosine(x, &want[i * 64..(i + 1) * 64]);
        assert!(cos >= 0.9999, "vector {i}: cosine {cos} with the reference");
    }
    let flat: Vec<f32> = v.concat();
    check_against(
        "last-token vectors",
        &flat,
        &dir,
        &seqs,
        "embeddings",
        VEC_TOL,
    );
}

#[test]
fn mean_pooled_decoder_matches_the_reference() {
    let s = Spec::qwen3();
    let w = weights(&s, Dt::BF16, 32);
    let dir = write_embedder("qwen3_embed_mean", &s, &w, "mean", false);
    let e = SentenceEncoder::load(&dir).unwrap();
    assert_eq!(
        (e.pooling, e.normalize, e.eos),
        (Pooling::Mean, false, None)
    );
    let seqs = seqs();
    let flat: Vec<f32> = single_and_batched(&e, &seqs).concat();
    // Unnormalised hidden states are larger than unit vectors: scale the tolerance.
    let scale = flat.iter().fold(0.0f32, |a, &x| a.max(x.abs())) as f64;
    assert!(scale > 0.1, "mean vectors up to {scale}");
    check_against(
        "mean vectors",
        &flat,
        &dir,
        &seqs,
        "embeddings",
        VEC_TOL * scale.max(1.0),
    );
}

#[test]
fn gguf_embedder_matches_the_directory() {
    let s = Spec::qwen3();
    let w = weights(&s, Dt::BF16, 31);
    let dir = write_embedder("qwen3_embed_gguf", &s, &w, "last", true);
    let from_dir = single_and_batched(&SentenceEncoder::load(&dir).unwrap(), &seqs());

    let writer = gguf_writer(&s, &w, Dt::BF16, true).kv("tokenizer.ggml.eos_token_id", EOS);
    let plain = GgufFile::from_bytes(writer.to_bytes()).unwrap();
    match SentenceEncoder::from_gguf(Arc::new(plain)) {
        Err(ModelError::MissingKey(k)) => assert_eq!(k, "qwen3.pooling_type"),
        Err(e) => panic!("expected MissingKey, got {e:?}"),
        Ok(_) => panic!("a GGUF without pooling_type loaded as an embedder"),
    }
    let bytes = gguf_writer(&s, &w, Dt::BF16, true)
        .kv("tokenizer.ggml.eos_token_id", EOS)
        .kv("qwen3.pooling_type", 3u32)
        .to_bytes();
    let e = SentenceEncoder::from_gguf(Arc::new(GgufFile::from_bytes(bytes).unwrap())).unwrap();
    assert_eq!(
        (e.pooling, e.normalize, e.eos),
        (Pooling::LastToken, true, Some(EOS))
    );
    let from_gguf = single_and_batched(&e, &seqs());
    assert_eq!(from_gguf, from_dir, "GGUF and directory vectors differ");
}

/// The per-head norms define the architecture: a Qwen3 without one is an error, not a
/// silently different model.
#[test]
fn a_missing_qk_norm_is_an_error() {
    let s = Spec::qwen3();
    let w: Vec<Tensor> = weights(&s, Dt::F16, 21)
        .into_iter()
        .filter(|t| t.name != "model.layers.1.self_attn.k_norm.weight")
        .collect();
    let dir = fresh_dir("qwen3_no_k_norm");
    write_dir(&dir, &s, &w, Dt::F16, Layout::Single { odd_header: false });
    match load_model_dir(&dir) {
        Err(ModelError::MissingTensor(n)) => {
            assert_eq!(n, "model.layers.1.self_attn.k_norm.weight")
        }
        Err(e) => panic!("expected MissingTensor, got {e:?}"),
        Ok(_) => panic!("a Qwen3 without k_norm loaded"),
    }
}
