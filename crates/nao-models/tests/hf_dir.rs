//! Hugging Face decoder directories run through the same model files as GGUF (issue 7).
//!
//! Each test writes a tiny random-weight Qwen2 or Llama twice: as a Hugging Face directory
//! (`config.json` + safetensors in F16 or BF16, one file or two shards with an index) and as
//! the GGUF file llama.cpp's `convert_hf_to_gguf.py` makes from it (same matrices in the
//! same type, 1-D tensors as F32, Llama q/k rows permuted by `LlamaModel.permute`, Llama 3
//! `rope_freqs.weight` computed from `rope_scaling`). The GGUF path is the reference: it is
//! parity-tested against llama.cpp and an f64 reference (`tiny_models.rs`). Both run the
//! same tokens through `forward` and must give the same logits at every position.
//!
//! Tolerances. Qwen2: both paths multiply the same bytes with the same kernels in the same
//! order, so the logits must be bit-identical (and are). Llama: the directory path rotates
//! the halves of unpermuted q/k rows, the GGUF path adjacent pairs of permuted rows; each
//! rotation is the same f32 arithmetic on the same values, so every head's q and k are the
//! same numbers in another order and only the summation order of q·k changes (~1e-7
//! relative in the scores). nao keeps the attention accumulator at f16 precision (as
//! llama.cpp does), so such a difference can flip one f16 rounding (2^-11 relative); that
//! is what reaches the logits: 1e-4 to 4e-4 here, on logits up to ~20. [`LLAMA_TOL`]
//! allows 2e-3; pairing the dimensions wrongly moves the logits by ~1.5 and dropping the
//! Llama 3 frequency factors by ~0.17 (both checked below).

use half::{bf16, f16};
use nao_gguf::writer::GgufWriter;
use nao_gguf::GgufFile;
use nao_kernels::DType;
use nao_models::hf::{read_generation_config, GenerationConfig};
use nao_models::{load_model, load_model_dir, Compute, Model, ModelError};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const LLAMA_TOL: f32 = 2e-3;
/// Logit differences a wrong RoPE pairing must exceed (it gives ~1).
const WRONG_MIN: f32 = 0.1;
const TOKENS: [u32; 10] = [1, 17, 42, 3, 99, 0, 25, 8, 64, 50];

// ---------------------------------------------------------------------------------------
// Deterministic weights (xorshift64* and Box–Muller).

struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn uniform(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        ((x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.uniform(), self.uniform());
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dt {
    F16,
    BF16,
}

impl Dt {
    fn round(self, v: f32) -> f32 {
        match self {
            Dt::F16 => f16::from_f32(v).to_f32(),
            Dt::BF16 => bf16::from_f32(v).to_f32(),
        }
    }
    fn bytes(self, v: &[f32]) -> Vec<u8> {
        match self {
            Dt::F16 => v
                .iter()
                .flat_map(|&x| f16::from_f32(x).to_le_bytes())
                .collect(),
            Dt::BF16 => v
                .iter()
                .flat_map(|&x| bf16::from_f32(x).to_le_bytes())
                .collect(),
        }
    }
    fn st_name(self) -> &'static str {
        match self {
            Dt::F16 => "F16",
            Dt::BF16 => "BF16",
        }
    }
    fn gguf(self) -> DType {
        match self {
            Dt::F16 => DType::F16,
            Dt::BF16 => DType::BF16,
        }
    }
}

// ---------------------------------------------------------------------------------------
// The model, in Hugging Face names.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arch {
    Qwen2,
    Llama,
}

#[derive(Debug, Clone)]
struct Spec {
    arch: Arch,
    n_embd: usize,
    n_head: usize,
    n_head_kv: usize,
    n_ff: usize,
    n_layer: usize,
    n_vocab: usize,
    rope_theta: f64,
    eps: f64,
    tied: bool,
    /// Llama 3 `rope_scaling` (factor 8, low 1, high 4, original context 256): with
    /// head_dim 16 and base 10000 the 8 frequencies fall in all three regimes.
    llama3: bool,
}

impl Spec {
    fn qwen2() -> Spec {
        Spec {
            arch: Arch::Qwen2,
            n_embd: 64,
            n_head: 4,
            n_head_kv: 2,
            n_ff: 96,
            n_layer: 2,
            n_vocab: 100,
            rope_theta: 1_000_000.0,
            eps: 1e-6,
            tied: true,
            llama3: false,
        }
    }
    fn llama() -> Spec {
        Spec {
            arch: Arch::Llama,
            rope_theta: 10_000.0,
            eps: 1e-5,
            tied: false,
            llama3: true,
            ..Spec::qwen2()
        }
    }
    fn head_dim(&self) -> usize {
        self.n_embd / self.n_head
    }
}

struct Tensor {
    name: String,
    /// Row-major (PyTorch order).
    shape: Vec<usize>,
    data: Vec<f32>,
}

/// Random weights under transformers' names, already rounded to `dt` (so the GGUF's F32
/// 1-D tensors hold exactly the directory's values).
fn weights(s: &Spec, dt: Dt, seed: u64) -> Vec<Tensor> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::new();
    let mut add = |name: String, shape: Vec<usize>, mean: f64, std: f64| {
        let n = shape.iter().product();
        let data = (0..n)
            .map(|_| dt.round((mean + std * rng.normal()) as f32))
            .collect();
        out.push(Tensor { name, shape, data });
    };
    let (d, f) = (s.n_embd, s.n_ff);
    let qd = s.n_head * s.head_dim();
    let kd = s.n_head_kv * s.head_dim();
    add(
        "model.embed_tokens.weight".into(),
        vec![s.n_vocab, d],
        0.0,
        0.5,
    );
    for il in 0..s.n_layer {
        let p = format!("model.layers.{il}");
        add(format!("{p}.input_layernorm.weight"), vec![d], 1.0, 0.1);
        for (m, rows) in [("q", qd), ("k", kd), ("v", kd)] {
            add(
                format!("{p}.self_attn.{m}_proj.weight"),
                vec![rows, d],
                0.0,
                0.15,
            );
            if s.arch == Arch::Qwen2 {
                add(format!("{p}.self_attn.{m}_proj.bias"), vec![rows], 0.0, 0.3);
            }
        }
        add(
            format!("{p}.self_attn.o_proj.weight"),
            vec![d, qd],
            0.0,
            0.1,
        );
        add(
            format!("{p}.post_attention_layernorm.weight"),
            vec![d],
            1.0,
            0.1,
        );
        add(format!("{p}.mlp.gate_proj.weight"), vec![f, d], 0.0, 0.1);
        add(format!("{p}.mlp.up_proj.weight"), vec![f, d], 0.0, 0.1);
        add(format!("{p}.mlp.down_proj.weight"), vec![d, f], 0.0, 0.1);
    }
    add("model.norm.weight".into(), vec![d], 1.0, 0.1);
    if !s.tied {
        add("lm_head.weight".into(), vec![s.n_vocab, d], 0.0, 0.1);
    }
    out
}

fn config_json(s: &Spec) -> Value {
    let mut c = json!({
        "architectures": [match s.arch {
            Arch::Qwen2 => "Qwen2ForCausalLM",
            Arch::Llama => "LlamaForCausalLM",
        }],
        "model_type": match s.arch { Arch::Qwen2 => "qwen2", Arch::Llama => "llama" },
        "hidden_act": "silu",
        "hidden_size": s.n_embd,
        "intermediate_size": s.n_ff,
        "num_hidden_layers": s.n_layer,
        "num_attention_heads": s.n_head,
        "num_key_value_heads": s.n_head_kv,
        "max_position_embeddings": 128,
        "rms_norm_eps": s.eps,
        "rope_theta": s.rope_theta,
        "vocab_size": s.n_vocab,
        "tie_word_embeddings": s.tied,
        "torch_dtype": "bfloat16",
        "bos_token_id": 1,
        "eos_token_id": 2,
    });
    if s.arch == Arch::Qwen2 {
        c["use_sliding_window"] = json!(false);
        c["sliding_window"] = json!(128);
    }
    if s.llama3 {
        c["rope_scaling"] = json!({
            "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 256,
        });
    }
    c
}

// ---------------------------------------------------------------------------------------
// Writing the directory.

#[derive(Debug, Clone, Copy)]
enum Layout {
    /// `model.safetensors`; `odd_header` misaligns every tensor (the loader must copy).
    Single { odd_header: bool },
    /// Two shards and `model.safetensors.index.json`; the second shard is misaligned.
    Sharded,
}

fn write_safetensors(path: &Path, tensors: &[&Tensor], dt: Dt, odd_header: bool) {
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), json!({"format": "pt"}));
    let mut data = Vec::new();
    for t in tensors {
        let b = dt.bytes(&t.data);
        let entry = json!({
            "dtype": dt.st_name(),
            "shape": t.shape,
            "data_offsets": [data.len(), data.len() + b.len()],
        });
        header.insert(t.name.clone(), entry);
        data.extend_from_slice(&b);
    }
    let mut h = serde_json::to_string(&header).unwrap();
    // Writers pad the header with spaces to a multiple of 8, which keeps tensors aligned.
    let len = h.len().next_multiple_of(8) + usize::from(odd_header);
    h.push_str(&" ".repeat(len - h.len()));
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(&data);
    std::fs::write(path, out).unwrap();
}

fn fresh_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("hf_dir")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write_dir(dir: &Path, s: &Spec, w: &[Tensor], dt: Dt, layout: Layout) {
    let config = serde_json::to_string_pretty(&config_json(s)).unwrap();
    std::fs::write(dir.join("config.json"), config).unwrap();
    let all: Vec<&Tensor> = w.iter().collect();
    match layout {
        Layout::Single { odd_header } => {
            write_safetensors(&dir.join("model.safetensors"), &all, dt, odd_header)
        }
        Layout::Sharded => {
            let (a, b) = all.split_at(all.len() / 2);
            let names = [
                "model-00001-of-00002.safetensors",
                "model-00002-of-00002.safetensors",
            ];
            write_safetensors(&dir.join(names[0]), a, dt, false);
            write_safetensors(&dir.join(names[1]), b, dt, true);
            let mut map = serde_json::Map::new();
            for (part, name) in [(a, names[0]), (b, names[1])] {
                for t in part {
                    map.insert(t.name.clone(), json!(name));
                }
            }
            let index = json!({"metadata": {"total_size": 0}, "weight_map": map});
            std::fs::write(
                dir.join("model.safetensors.index.json"),
                serde_json::to_string(&index).unwrap(),
            )
            .unwrap();
        }
    }
}

// ---------------------------------------------------------------------------------------
// The GGUF that llama.cpp's converter writes for the same checkpoint.

/// `LlamaModel.permute` of `convert_hf_to_gguf.py`: within each head, rows
/// `[h, j, i]` (j: which half, i < head_dim/2) become `[h, i, j]`, so the halves RoPE
/// rotates together in transformers become adjacent rows.
fn permute(data: &[f32], cols: usize, n_head: usize) -> Vec<f32> {
    let rows = data.len() / cols;
    let half = rows / n_head / 2;
    let mut out = vec![0.0; data.len()];
    for h in 0..n_head {
        for j in 0..2 {
            for i in 0..half {
                let src = (h * 2 + j) * half + i;
                let dst = (h * half + i) * 2 + j;
                out[dst * cols..(dst + 1) * cols].copy_from_slice(&data[src * cols..][..cols]);
            }
        }
    }
    out
}

/// `LlamaModel.generate_extra_tensors` of `convert_hf_to_gguf.py` for `rope_type: llama3`.
fn llama3_rope_freqs(s: &Spec) -> Vec<f32> {
    let (factor, low, high, old_ctx) = (8.0f64, 1.0f64, 4.0f64, 256.0f64);
    let dim = s.head_dim();
    let (low_wavelen, high_wavelen) = (old_ctx / low, old_ctx / high);
    (0..dim / 2)
        .map(|i| {
            let freq = 1.0 / s.rope_theta.powf((2 * i) as f64 / dim as f64);
            let wavelen = 2.0 * std::f64::consts::PI / freq;
            if wavelen < high_wavelen {
                1.0
            } else if wavelen > low_wavelen {
                factor as f32
            } else {
                let smooth = (old_ctx / wavelen - low) / (high - low);
                (1.0 / ((1.0 - smooth) / factor + smooth)) as f32
            }
        })
        .collect()
}

/// llama.cpp's name for a transformers tensor name.
fn gguf_name(hf: &str) -> String {
    let simple = [
        ("model.embed_tokens.weight", "token_embd.weight"),
        ("model.norm.weight", "output_norm.weight"),
        ("lm_head.weight", "output.weight"),
    ];
    if let Some((_, g)) = simple.iter().find(|(h, _)| *h == hf) {
        return g.to_string();
    }
    let rest = hf.strip_prefix("model.layers.").unwrap();
    let (il, part) = rest.split_once('.').unwrap();
    let part = [
        ("input_layernorm", "attn_norm"),
        ("post_attention_layernorm", "ffn_norm"),
        ("self_attn.q_proj", "attn_q"),
        ("self_attn.k_proj", "attn_k"),
        ("self_attn.v_proj", "attn_v"),
        ("self_attn.o_proj", "attn_output"),
        ("mlp.gate_proj", "ffn_gate"),
        ("mlp.up_proj", "ffn_up"),
        ("mlp.down_proj", "ffn_down"),
    ]
    .iter()
    .fold(part.to_string(), |p, (h, g)| p.replacen(h, g, 1));
    format!("blk.{il}.{part}")
}

/// The converted file; `permute_qk: false` leaves Llama's q/k rows in transformers' order
/// (what a converter without the permutation would write).
fn gguf_bytes(s: &Spec, w: &[Tensor], dt: Dt, permute_qk: bool) -> Vec<u8> {
    let arch = match s.arch {
        Arch::Qwen2 => "qwen2",
        Arch::Llama => "llama",
    };
    let k = |key: &str| format!("{arch}.{key}");
    let mut g = GgufWriter::new(3)
        .kv("general.architecture", arch)
        .kv(&k("block_count"), s.n_layer as u32)
        .kv(&k("context_length"), 128u32)
        .kv(&k("embedding_length"), s.n_embd as u32)
        .kv(&k("feed_forward_length"), s.n_ff as u32)
        .kv(&k("attention.head_count"), s.n_head as u32)
        .kv(&k("attention.head_count_kv"), s.n_head_kv as u32)
        .kv(&k("attention.layer_norm_rms_epsilon"), s.eps as f32)
        .kv(&k("rope.freq_base"), s.rope_theta as f32)
        .kv(&k("rope.dimension_count"), s.head_dim() as u32)
        .kv(&k("vocab_size"), s.n_vocab as u32);
    for t in w {
        let name = gguf_name(&t.name);
        let mut data = t.data.clone();
        if s.arch == Arch::Llama && permute_qk {
            let cols = t.shape.get(1).copied().unwrap_or(1);
            if t.name.contains("q_proj") {
                data = permute(&data, cols, s.n_head);
            } else if t.name.contains("k_proj") {
                data = permute(&data, cols, s.n_head_kv);
            }
        }
        let dims: Vec<u64> = t.shape.iter().rev().map(|&d| d as u64).collect();
        g = if t.shape.len() == 1 {
            g.tensor_f32(&name, &dims, &data)
        } else {
            g.tensor(&name, dt.gguf(), &dims, dt.bytes(&data))
        };
    }
    if s.llama3 {
        let f = llama3_rope_freqs(s);
        g = g.tensor_f32("rope_freqs.weight", &[f.len() as u64], &f);
    }
    g.to_bytes()
}

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
        Arch::Qwen2 => assert_eq!(diff, 0.0, "{name}: logits differ by {diff}"),
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
