//! Hugging Face decoder directories run through the same model files as GGUF (issue 7).
//!
//! Each test writes a tiny random-weight Qwen2, Qwen3 or Llama twice: as a Hugging Face directory
//! (`config.json` + safetensors in F16 or BF16, one file or two shards with an index) and as
//! the GGUF file llama.cpp's `convert_hf_to_gguf.py` makes from it (same matrices in the
//! same type, 1-D tensors as F32, Llama q/k rows permuted by `LlamaModel.permute`, Llama 3
//! `rope_freqs.weight` computed from `rope_scaling`). The GGUF path is the reference: it is
//! parity-tested against llama.cpp and an f64 reference (`tiny_models.rs`). Both run the
//! same tokens through `forward` and must give the same logits at every position.
//! The writer is `support/hf_writer.rs`, shared with the binary's test (`nao/tests/hf_dir.rs`).
//!
//! Tolerances. Qwen2 and Qwen3: both paths multiply the same bytes with the same kernels in the same
//! order, so the logits must be bit-identical (and are). Llama: the directory path rotates
//! the halves of unpermuted q/k rows, the GGUF path adjacent pairs of permuted rows; each
//! rotation is the same f32 arithmetic on the same values, so every head's q and k are the
//! same numbers in another order and only the summation order of q·k changes (~1e-7
//! relative in the scores). nao keeps the attention accumulator at f16 precision (as
//! llama.cpp does), so such a difference can flip one f16 rounding (2^-11 relative); that
//! is what reaches the logits: 1e-4 to 4e-4 here, on logits up to ~20. [`LLAMA_TOL`]
//! allows 2e-3; pairing the dimensions wrongly moves the logits by ~1.5 and dropping the
//! Llama 3 frequency factors by ~0.17 (both checked below).

#[path = "support/hf_writer.rs"]
mod hf_writer;

use hf_writer::*;
use nao_gguf::GgufFile;
use nao_models::hf::{read_generation_config, GenerationConfig};
use nao_models::{load_model, load_model_dir, Compute, Model, ModelError};
use serde_json::json;
use std::path::Path;
use std::sync::Arc;

const LLAMA_TOL: f32 = 2e-3;
/// Logit differences a wrong RoPE pairing must exceed (it gives ~1).
const WRONG_MIN: f32 = 0.1;
const TOKENS: [u32; 10] = [1, 17, 42, 3, 99, 0, 25, 8, 64, 50];

// ---------------------------------------------------------------------------------------
// Running and comparing.

/// Logits `[TOKENS.len(), n_vocab]` for every position, on one thread.
fn logits(m: &Model) -> Vec<f32> {
    let mut cache = m.new_cache(32).unwrap();
    let mut c = Compute::new(1);
    m.forward(&TOKENS, 0, &mut cache, &mut c, true).unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn gguf_model(bytes: Vec<u8>) -> Model {
    load_model(Arc::new(GgufFile::from_bytes(bytes).unwrap())).unwrap()
}

/// Writes `s` both ways in `dt` and `layout` and compares the logits.
fn check(name: &str, s: &Spec, dt: Dt, layout: Layout, seed: u64) {
    let w = weights(s, dt, seed);
    let dir = fresh_dir(name);
    write_dir(&dir, s, &w, dt, layout);
    let hf = logits(&load_model_dir(&dir).unwrap());
    let gguf = logits(&gguf_model(gguf_bytes(s, &w, dt, true)));
    assert_eq!(hf.len(), TOKENS.len() * s.n_vocab);
    // Non-trivial logits: a broken model giving zeros everywhere must not pass.
    let spread = gguf.iter().fold(0.0f32, |m, &x| m.max(x.abs()));
    assert!(
        spread > 0.5 && spread < 50.0,
        "{name}: logits up to {spread}"
    );
    let diff = max_diff(&hf, &gguf);
    match s.arch {
        Arch::Qwen2 | Arch::Qwen3 => assert_eq!(diff, 0.0, "{name}: logits differ by {diff}"),
        Arch::Llama => assert!(diff <= LLAMA_TOL, "{name}: logits differ by {diff}"),
    }
    eprintln!("{name}: max |directory - GGUF| = {diff:e} (logits up to {spread:.2})");
}

#[test]
fn qwen2_directory_matches_gguf() {
    let s = Spec::qwen2();
    check(
        "qwen2_f16",
        &s,
        Dt::F16,
        Layout::Single { odd_header: false },
        1,
    );
    check(
        "qwen2_bf16_odd",
        &s,
        Dt::BF16,
        Layout::Single { odd_header: true },
        2,
    );
    let untied = Spec { tied: false, ..s };
    check("qwen2_bf16_sharded", &untied, Dt::BF16, Layout::Sharded, 3);
}

/// Qwen3's per-head q/k norms and `head_dim` 24 (≠ 64 / 4) load from both formats alike
/// (`qwen3.rs` checks the model itself against an independent reference).
#[test]
fn qwen3_directory_matches_gguf() {
    let s = Spec::qwen3();
    check(
        "qwen3_f16",
        &s,
        Dt::F16,
        Layout::Single { odd_header: false },
        11,
    );
    let untied = Spec { tied: false, ..s };
    check("qwen3_bf16_sharded", &untied, Dt::BF16, Layout::Sharded, 12);
}

#[test]
fn llama_directory_matches_gguf() {
    let s = Spec::llama();
    check(
        "llama_f16",
        &s,
        Dt::F16,
        Layout::Single { odd_header: false },
        4,
    );
    check(
        "llama_f16_odd",
        &s,
        Dt::F16,
        Layout::Single { odd_header: true },
        5,
    );
    let tied = Spec {
        tied: true,
        llama3: false,
        ..s
    };
    check("llama_bf16_sharded", &tied, Dt::BF16, Layout::Sharded, 6);
}

/// The comparison is sensitive to the q/k row order: a GGUF written without llama.cpp's
/// permutation (what a loader that confused the two layouts would compute) disagrees.
#[test]
fn llama_rope_pairing_matters() {
    let s = Spec::llama();
    let dt = Dt::F16;
    let w = weights(&s, dt, 4);
    let dir = fresh_dir("llama_pairing");
    write_dir(&dir, &s, &w, dt, Layout::Single { odd_header: false });
    let hf = logits(&load_model_dir(&dir).unwrap());
    let unpermuted = logits(&gguf_model(gguf_bytes(&s, &w, dt, false)));
    let diff = max_diff(&hf, &unpermuted);
    assert!(diff > WRONG_MIN, "unpermuted GGUF differs by only {diff}");
    // And the Llama 3 frequency factors matter too: without them the logits move.
    let plain = Spec {
        llama3: false,
        ..s.clone()
    };
    let no_factors = logits(&gguf_model(gguf_bytes(&plain, &w, dt, true)));
    let diff = max_diff(&hf, &no_factors);
    assert!(
        diff > 10.0 * LLAMA_TOL,
        "rope factors change logits by only {diff}"
    );
}

// ---------------------------------------------------------------------------------------
// Errors and generation_config.json.

fn load_err(dir: &Path) -> ModelError {
    match load_model_dir(dir) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => e,
    }
}

#[test]
fn bad_directories_are_typed_errors() {
    let s = Spec::qwen2();
    let w = weights(&s, Dt::F16, 7);

    let dir = fresh_dir("err_no_config");
    assert!(
        matches!(load_err(&dir), ModelError::Config { path, .. } if path.ends_with("config.json"))
    );

    let dir = fresh_dir("err_bad_json");
    std::fs::write(dir.join("config.json"), "{not json").unwrap();
    assert!(matches!(load_err(&dir), ModelError::Config { .. }));

    for (key, value) in [
        ("architectures", json!(["Gemma3ForCausalLM"])),
        ("rope_scaling", json!({"rope_type": "yarn", "factor": 4.0})),
        ("num_key_value_heads", json!(3)),
    ] {
        let dir = fresh_dir("err_config_value");
        let mut c = config_json(&s);
        c[key] = value;
        std::fs::write(dir.join("config.json"), c.to_string()).unwrap();
        match load_err(&dir) {
            ModelError::Config { reason, .. } => assert!(reason.contains(key), "{reason}"),
            e => panic!("{key}: expected Config, got {e:?}"),
        }
    }

    let dir = fresh_dir("err_no_weights");
    std::fs::write(dir.join("config.json"), config_json(&s).to_string()).unwrap();
    assert!(matches!(
        load_err(&dir),
        ModelError::Safetensors(nao_gguf::SafetensorsError::NoModel(_))
    ));

    // Untied without lm_head.
    let dir = fresh_dir("err_no_head");
    let untied = Spec {
        tied: false,
        ..s.clone()
    };
    write_dir(
        &dir,
        &untied,
        &w,
        Dt::F16,
        Layout::Single { odd_header: false },
    );
    assert!(matches!(load_err(&dir), ModelError::MissingTensor(n) if n == "lm_head.weight"));

    // A missing block tensor and a wrong shape are named in transformers' terms.
    let dir = fresh_dir("err_missing");
    let fewer: Vec<Tensor> = weights(&s, Dt::F16, 7)
        .into_iter()
        .filter(|t| t.name != "model.layers.1.mlp.up_proj.weight")
        .collect();
    write_dir(
        &dir,
        &s,
        &fewer,
        Dt::F16,
        Layout::Single { odd_header: false },
    );
    assert!(matches!(load_err(&dir),
        ModelError::MissingTensor(n) if n == "model.layers.1.mlp.up_proj.weight"));

    let dir = fresh_dir("err_shape");
    let mut bad = weights(&s, Dt::F16, 7);
    let k = bad
        .iter_mut()
        .find(|t| t.name == "model.layers.0.self_attn.k_proj.weight")
        .unwrap();
    k.shape = vec![s.n_embd, k.shape[0]]; // transposed: [64, 32] instead of [32, 64]
    write_dir(
        &dir,
        &s,
        &bad,
        Dt::F16,
        Layout::Single { odd_header: false },
    );
    match load_err(&dir) {
        ModelError::BadShape {
            tensor,
            expected,
            got,
        } => {
            assert_eq!(tensor, "model.layers.0.self_attn.k_proj.weight");
            assert_eq!((expected, got), (vec![32, 64], vec![64, 32]));
        }
        e => panic!("expected BadShape, got {e:?}"),
    }
}

#[test]
fn generation_config_gives_bos_and_eos() {
    let dir = fresh_dir("gen_config");
    std::fs::write(
        dir.join("config.json"),
        config_json(&Spec::qwen2()).to_string(),
    )
    .unwrap();
    // Without generation_config.json, config.json's ids.
    let want = GenerationConfig {
        bos_token_id: Some(1),
        eos_token_ids: vec![2],
    };
    assert_eq!(read_generation_config(&dir).unwrap(), want);
    // generation_config.json wins, and eos may be a list.
    std::fs::write(
        dir.join("generation_config.json"),
        r#"{"bos_token_id": 7, "eos_token_id": [8, 9], "do_sample": true}"#,
    )
    .unwrap();
    let want = GenerationConfig {
        bos_token_id: Some(7),
        eos_token_ids: vec![8, 9],
    };
    assert_eq!(read_generation_config(&dir).unwrap(), want);
    std::fs::write(
        dir.join("generation_config.json"),
        r#"{"eos_token_id": -1}"#,
    )
    .unwrap();
    assert!(matches!(
        read_generation_config(&dir),
        Err(ModelError::Config { .. })
    ));
}
