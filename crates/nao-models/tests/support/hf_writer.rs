//! Tiny random-weight decoders written twice: as a Hugging Face directory (`config.json`
//! and safetensors in F16 or BF16, one file or two shards with an index) and as the GGUF
//! file llama.cpp's `convert_hf_to_gguf.py` makes from it (same matrices in the same type, 1-D
//! tensors as F32, Llama q/k rows permuted by `LlamaModel.permute`, Llama 3
//! `rope_freqs.weight` computed from `rope_scaling`).
//!
//! Shared by `nao-models/tests/hf_dir.rs` (logit parity) and `nao/tests/hf_dir.rs` (the
//! binary end to end), each including it with `#[path]`.
#![allow(dead_code)]

use half::{bf16, f16};
use nao_gguf::writer::GgufWriter;
use nao_kernels::DType;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

// ---------------------------------------------------------------------------------------
// Deterministic weights (xorshift64* and Box–Muller).

pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn uniform(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        ((x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }
    pub fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.uniform(), self.uniform());
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dt {
    F16,
    BF16,
}

impl Dt {
    pub fn round(self, v: f32) -> f32 {
        match self {
            Dt::F16 => f16::from_f32(v).to_f32(),
            Dt::BF16 => bf16::from_f32(v).to_f32(),
        }
    }
    pub fn bytes(self, v: &[f32]) -> Vec<u8> {
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
    pub fn st_name(self) -> &'static str {
        match self {
            Dt::F16 => "F16",
            Dt::BF16 => "BF16",
        }
    }
    pub fn gguf(self) -> DType {
        match self {
            Dt::F16 => DType::F16,
            Dt::BF16 => DType::BF16,
        }
    }
}

// ---------------------------------------------------------------------------------------
// The model, in Hugging Face names.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    Qwen2,
    /// Qwen2 without q/k/v biases, with per-head q/k RMS norms and its own `head_dim`.
    Qwen3,
    Llama,
}

#[derive(Debug, Clone)]
pub struct Spec {
    pub arch: Arch,
    pub n_embd: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub n_ff: usize,
    pub n_layer: usize,
    pub n_vocab: usize,
    pub rope_theta: f64,
    pub eps: f64,
    pub tied: bool,
    /// Llama 3 `rope_scaling` (factor 8, low 1, high 4, original context 256): with
    /// head_dim 16 and base 10000 the 8 frequencies fall in all three regimes.
    pub llama3: bool,
    /// `head_dim` of `config.json` when it is not n_embd / n_head (Qwen3).
    pub head_dim_cfg: Option<usize>,
}

impl Spec {
    pub fn qwen2() -> Spec {
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
            head_dim_cfg: None,
        }
    }
    /// Head size 24 with n_embd 64 and 4 heads: q has 96 rows, not 64.
    pub fn qwen3() -> Spec {
        Spec {
            arch: Arch::Qwen3,
            head_dim_cfg: Some(24),
            ..Spec::qwen2()
        }
    }
    pub fn llama() -> Spec {
        Spec {
            arch: Arch::Llama,
            rope_theta: 10_000.0,
            eps: 1e-5,
            tied: false,
            llama3: true,
            ..Spec::qwen2()
        }
    }
    pub fn head_dim(&self) -> usize {
        self.head_dim_cfg.unwrap_or(self.n_embd / self.n_head)
    }
}

pub struct Tensor {
    pub name: String,
    /// Row-major (PyTorch order).
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Random weights under transformers' names, already rounded to `dt` (so the GGUF's F32
/// 1-D tensors hold exactly the directory's values).
pub fn weights(s: &Spec, dt: Dt, seed: u64) -> Vec<Tensor> {
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
        if s.arch == Arch::Qwen3 {
            // Far from 1, so that a misplaced or missing norm changes the result.
            let hd = s.head_dim();
            add(format!("{p}.self_attn.q_norm.weight"), vec![hd], 1.0, 0.5);
            add(format!("{p}.self_attn.k_norm.weight"), vec![hd], 1.0, 0.5);
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

/// nao's (and llama.cpp's) architecture name, also transformers' `model_type`.
pub fn arch_name(a: Arch) -> &'static str {
    match a {
        Arch::Qwen2 => "qwen2",
        Arch::Qwen3 => "qwen3",
        Arch::Llama => "llama",
    }
}

pub fn config_json(s: &Spec) -> Value {
    let mut c = json!({
        "architectures": [match s.arch {
            Arch::Qwen2 => "Qwen2ForCausalLM",
            Arch::Qwen3 => "Qwen3ForCausalLM",
            Arch::Llama => "LlamaForCausalLM",
        }],
        "model_type": arch_name(s.arch),
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
    if s.arch != Arch::Llama {
        c["use_sliding_window"] = json!(false);
        c["sliding_window"] = json!(128);
    }
    if s.arch == Arch::Qwen3 {
        c["attention_bias"] = json!(false);
    }
    if let Some(hd) = s.head_dim_cfg {
        c["head_dim"] = json!(hd);
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
pub enum Layout {
    /// `model.safetensors`; `odd_header` misaligns every tensor (the loader must copy).
    Single { odd_header: bool },
    /// Two shards and `model.safetensors.index.json`; the second shard is misaligned.
    Sharded,
}

pub fn write_safetensors(path: &Path, tensors: &[&Tensor], dt: Dt, odd_header: bool) {
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

pub fn fresh_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("hf_dir")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn write_dir(dir: &Path, s: &Spec, w: &[Tensor], dt: Dt, layout: Layout) {
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
pub fn permute(data: &[f32], cols: usize, n_head: usize) -> Vec<f32> {
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
pub fn llama3_rope_freqs(s: &Spec) -> Vec<f32> {
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
pub fn gguf_name(hf: &str) -> String {
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
        ("self_attn.q_norm", "attn_q_norm"),
        ("self_attn.k_norm", "attn_k_norm"),
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
pub fn gguf_bytes(s: &Spec, w: &[Tensor], dt: Dt, permute_qk: bool) -> Vec<u8> {
    gguf_writer(s, w, dt, permute_qk).to_bytes()
}

/// [`gguf_bytes`] before it is written, for tests that add metadata (a tokenizer).
pub fn gguf_writer(s: &Spec, w: &[Tensor], dt: Dt, permute_qk: bool) -> GgufWriter {
    let arch = arch_name(s.arch);
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
    if s.head_dim_cfg.is_some() {
        g = g
            .kv(&k("attention.key_length"), s.head_dim() as u32)
            .kv(&k("attention.value_length"), s.head_dim() as u32);
    }
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
    g
}
