//! Hugging Face decoder directories (`config.json` + `model.safetensors` or shards): the
//! hyper-parameters of `config.json` as a [`ModelConfig`], the transformers tensor names
//! mapped to the llama.cpp names model files ask for, and `generation_config.json`.
//! Everything is resolved once at load, so the architecture files run unchanged on a GGUF
//! file or a checkpoint directory.
//!
//! References: transformers `models/{llama,qwen2,qwen3}/configuration_*.py` (keys and
//! defaults), `modeling_rope_utils.py` (RoPE scaling); llama.cpp `convert_hf_to_gguf.py`
//! (the name map and the Llama 3 frequency factors it writes as `rope_freqs.weight`).

use crate::pooling::read_json;
use crate::{ModelConfig, ModelError};
use serde_json::Value;
use std::path::Path;

/// `architectures[0]` of `config.json` → nao's architecture name.
/// `Qwen3Model` is the bare transformer (no LM head) that embedding checkpoints name.
pub const HF_ARCHITECTURES: &[(&str, &str)] = &[
    ("Qwen2ForCausalLM", "qwen2"),
    ("Qwen3ForCausalLM", "qwen3"),
    ("Qwen3Model", "qwen3"),
    ("LlamaForCausalLM", "llama"),
];

/// Per-block tensors: llama.cpp name (`blk.N.{0}`) → transformers name (`model.layers.N.{1}`).
const BLOCK_TENSORS: &[(&str, &str)] = &[
    ("attn_norm", "input_layernorm"),
    ("attn_q", "self_attn.q_proj"),
    ("attn_k", "self_attn.k_proj"),
    ("attn_v", "self_attn.v_proj"),
    ("attn_output", "self_attn.o_proj"),
    ("attn_q_norm", "self_attn.q_norm"),
    ("attn_k_norm", "self_attn.k_norm"),
    ("ffn_norm", "post_attention_layernorm"),
    ("ffn_gate", "mlp.gate_proj"),
    ("ffn_up", "mlp.up_proj"),
    ("ffn_down", "mlp.down_proj"),
];

/// The transformers name of the tensor llama.cpp calls `name` (`blk.3.attn_q.bias` →
/// `model.layers.3.self_attn.q_proj.bias`); `None` for tensors checkpoints do not have
/// (`rope_freqs.weight`: Llama 3 factors come from `config.json` instead), and for
/// `output.weight` when `tied` (the head is the embedding table, as transformers ties it,
/// even if the checkpoint also stores a copy).
pub fn tensor_name(name: &str, tied: bool) -> Option<String> {
    let (stem, suffix) = name.rsplit_once('.')?;
    let hf = match stem {
        "token_embd" => "model.embed_tokens".to_string(),
        "output_norm" => "model.norm".to_string(),
        "output" if !tied => "lm_head".to_string(),
        _ => {
            let (il, part) = stem.strip_prefix("blk.")?.split_once('.')?;
            let il: usize = il.parse().ok()?;
            let hf_part = BLOCK_TENSORS.iter().find(|(g, _)| *g == part)?.1;
            format!("model.layers.{il}.{hf_part}")
        }
    };
    Some(format!("{hf}.{suffix}"))
}

/// What `config.json` says beyond [`ModelConfig`].
#[derive(Debug, Clone)]
pub struct HfConfig {
    pub cfg: ModelConfig,
    /// `tie_word_embeddings`: the output projection is the embedding table.
    pub tied: bool,
}

/// Reads `dir/config.json` of a decoder model.
pub fn read_config(dir: &Path) -> Result<HfConfig, ModelError> {
    let path = dir.join("config.json");
    let v = read_json(&path)?;
    config_from_json(&v).map_err(|reason| ModelError::Config {
        path: path.display().to_string(),
        reason,
    })
}

/// nao's architecture name for the `architectures[0]` of a parsed `config.json`, if it is a
/// decoder nao runs (a `*ForCausalLM`, or a bare `Qwen3Model`: whether the directory is a
/// chat model or an embedder is the caller's question, see `modules.json`).
pub fn causal_lm_arch(v: &Value) -> Option<&'static str> {
    let name = v.get("architectures")?.as_array()?.first()?.as_str()?;
    HF_ARCHITECTURES
        .iter()
        .find(|(hf, _)| *hf == name)
        .map(|(_, arch)| *arch)
}

/// Largest value accepted for a count or length (bounds allocations derived from it).
const MAX_DIM: u64 = 1 << 30;

/// Parses a decoder `config.json`; the error is the reason, for [`ModelError::Config`].
pub fn config_from_json(v: &Value) -> Result<HfConfig, String> {
    let arch = causal_lm_arch(v).ok_or_else(|| {
        let names: Vec<&str> = HF_ARCHITECTURES.iter().map(|(hf, _)| *hf).collect();
        format!(
            "architectures {} is not supported (supported: {})",
            v.get("architectures").unwrap_or(&Value::Null),
            names.join(", ")
        )
    })?;
    let opt = |k: &str| -> Result<Option<usize>, String> {
        match v.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(x) => x
                .as_u64()
                .filter(|&n| n > 0 && n <= MAX_DIM)
                .map(|n| Some(n as usize))
                .ok_or_else(|| format!("`{k}` must be a positive integer, got {x}")),
        }
    };
    let req = |k: &str| opt(k)?.ok_or_else(|| format!("`{k}` is missing"));
    let float = |k: &str, default: f64| -> Result<f64, String> {
        match v.get(k) {
            None | Some(Value::Null) => Ok(default),
            Some(x) => x
                .as_f64()
                .filter(|f| f.is_finite() && *f > 0.0)
                .ok_or_else(|| format!("`{k}` must be a positive number, got {x}")),
        }
    };
    let flag = |k: &str| v.get(k).and_then(Value::as_bool).unwrap_or(false);

    let act = v
        .get("hidden_act")
        .and_then(Value::as_str)
        .unwrap_or("silu");
    if act != "silu" {
        return Err(format!("hidden_act {act:?} is not supported (silu is)"));
    }
    if flag("use_sliding_window") {
        return Err("use_sliding_window is not supported".to_string());
    }
    let n_embd = req("hidden_size")?;
    let n_head = req("num_attention_heads")?;
    let n_head_kv = opt("num_key_value_heads")?.unwrap_or(n_head);
    if n_head % n_head_kv != 0 {
        return Err(format!(
            "num_attention_heads {n_head} is not a multiple of num_key_value_heads {n_head_kv}"
        ));
    }
    let head_dim = match opt("head_dim")? {
        Some(h) => h,
        None if n_embd % n_head == 0 => n_embd / n_head,
        None => {
            return Err(format!(
                "hidden_size {n_embd} is not a multiple of num_attention_heads {n_head}"
            ))
        }
    };
    if head_dim % 2 != 0 {
        return Err(format!("head_dim {head_dim} is odd"));
    }
    let rope_base = float("rope_theta", 10_000.0)?;
    let rope = rope_scaling(v.get("rope_scaling"), rope_base, head_dim)?;
    let cfg = ModelConfig {
        arch: arch.to_string(),
        n_layer: req("num_hidden_layers")?,
        n_embd,
        n_head,
        n_head_kv,
        head_dim,
        head_dim_v: head_dim,
        n_ff: req("intermediate_size")?,
        n_vocab: req("vocab_size")?,
        n_ctx_train: opt("max_position_embeddings")?.unwrap_or(2048),
        rms_eps: float("rms_norm_eps", 1e-6)? as f32,
        rope_base: rope_base as f32,
        rope_freq_scale: rope.freq_scale,
        rope_freqs: rope.freq_factors,
        n_rot: head_dim,
        sliding_window: None,
        sliding_window_pattern: None,
        rope_base_swa: None,
    };
    Ok(HfConfig {
        cfg,
        tied: flag("tie_word_embeddings"),
    })
}

/// RoPE scaling from `config.json`'s `rope_scaling`.
struct RopeScaling {
    freq_scale: f32,
    freq_factors: Option<Vec<f32>>,
}

fn rope_scaling(v: Option<&Value>, base: f64, head_dim: usize) -> Result<RopeScaling, String> {
    let none = RopeScaling {
        freq_scale: 1.0,
        freq_factors: None,
    };
    let Some(s) = v.filter(|s| !s.is_null()) else {
        return Ok(none);
    };
    let kind = s
        .get("rope_type")
        .or_else(|| s.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("default");
    let num = |k: &str, default: Option<f64>| -> Result<f64, String> {
        match s.get(k).and_then(Value::as_f64).or(default) {
            Some(f) if f.is_finite() && f > 0.0 => Ok(f),
            _ => Err(format!(
                "rope_scaling.{k} is missing or not a positive number"
            )),
        }
    };
    match kind {
        "default" => Ok(none),
        "linear" => Ok(RopeScaling {
            freq_scale: (1.0 / num("factor", None)?) as f32,
            freq_factors: None,
        }),
        "llama3" => {
            let factor = num("factor", None)?;
            let low = num("low_freq_factor", Some(1.0))?;
            let high = num("high_freq_factor", Some(4.0))?;
            let old_ctx = num("original_max_position_embeddings", Some(8192.0))?;
            if high <= low {
                return Err(format!(
                    "rope_scaling: high_freq_factor {high} must exceed low_freq_factor {low}"
                ));
            }
            Ok(RopeScaling {
                freq_scale: 1.0,
                freq_factors: Some(llama3_factors(base, head_dim, factor, low, high, old_ctx)),
            })
        }
        other => Err(format!(
            "rope_scaling type {other:?} is not supported (linear and llama3 are)"
        )),
    }
}

/// Llama 3.1 frequency factors (each RoPE frequency is divided by its factor): 1 for short
/// wavelengths, `factor` for long ones, a smooth blend between. The same values llama.cpp's
/// converter stores as `rope_freqs.weight` (transformers `_compute_llama3_parameters`).
fn llama3_factors(
    base: f64,
    head_dim: usize,
    factor: f64,
    low_freq_factor: f64,
    high_freq_factor: f64,
    old_ctx: f64,
) -> Vec<f32> {
    let low_freq_wavelen = old_ctx / low_freq_factor;
    let high_freq_wavelen = old_ctx / high_freq_factor;
    (0..head_dim / 2)
        .map(|i| {
            let freq = 1.0 / base.powf((2 * i) as f64 / head_dim as f64);
            let wavelen = 2.0 * std::f64::consts::PI / freq;
            let f = if wavelen < high_freq_wavelen {
                1.0
            } else if wavelen > low_freq_wavelen {
                factor
            } else {
                let smooth =
                    (old_ctx / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
                1.0 / ((1.0 - smooth) / factor + smooth)
            };
            f as f32
        })
        .collect()
}

/// Special tokens generation needs, from `generation_config.json` (falling back to
/// `config.json` for each id it lacks).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GenerationConfig {
    pub bos_token_id: Option<u32>,
    /// Every id that ends generation (`eos_token_id` may be one id or a list).
    pub eos_token_ids: Vec<u32>,
}

/// Reads the special token ids of the model in `dir`.
pub fn read_generation_config(dir: &Path) -> Result<GenerationConfig, ModelError> {
    let mut out = GenerationConfig::default();
    for name in ["generation_config.json", "config.json"] {
        let path = dir.join(name);
        if !path.is_file() {
            continue;
        }
        let v = read_json(&path)?;
        let err = |reason: String| ModelError::Config {
            path: path.display().to_string(),
            reason,
        };
        let id = |x: &Value| {
            x.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| err(format!("token id {x} is not a non-negative integer")))
        };
        if out.bos_token_id.is_none() {
            if let Some(x) = v.get("bos_token_id").filter(|x| !x.is_null()) {
                out.bos_token_id = Some(id(x)?);
            }
        }
        if out.eos_token_ids.is_empty() {
            match v.get("eos_token_id") {
                None | Some(Value::Null) => {}
                Some(Value::Array(a)) => {
                    out.eos_token_ids = a.iter().map(id).collect::<Result<_, _>>()?;
                }
                Some(x) => out.eos_token_ids = vec![id(x)?],
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> Value {
        json!({
            "architectures": ["LlamaForCausalLM"],
            "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
            "num_key_value_heads": 2, "intermediate_size": 96, "vocab_size": 100,
        })
    }

    #[test]
    fn names_map_to_transformers() {
        let cases = [
            ("token_embd.weight", "model.embed_tokens.weight"),
            ("output_norm.weight", "model.norm.weight"),
            ("output.weight", "lm_head.weight"),
            (
                "blk.0.attn_norm.weight",
                "model.layers.0.input_layernorm.weight",
            ),
            (
                "blk.11.attn_q.bias",
                "model.layers.11.self_attn.q_proj.bias",
            ),
            (
                "blk.1.attn_output.weight",
                "model.layers.1.self_attn.o_proj.weight",
            ),
            (
                "blk.1.ffn_norm.weight",
                "model.layers.1.post_attention_layernorm.weight",
            ),
            (
                "blk.2.ffn_down.weight",
                "model.layers.2.mlp.down_proj.weight",
            ),
            (
                "blk.0.attn_q_norm.weight",
                "model.layers.0.self_attn.q_norm.weight",
            ),
            (
                "blk.3.attn_k_norm.weight",
                "model.layers.3.self_attn.k_norm.weight",
            ),
        ];
        for (gguf, hf) in cases {
            assert_eq!(tensor_name(gguf, false).as_deref(), Some(hf));
        }
        assert_eq!(tensor_name("output.weight", true), None);
        assert_eq!(tensor_name("rope_freqs.weight", false), None);
        assert_eq!(tensor_name("blk.x.attn_q.weight", false), None);
        assert_eq!(tensor_name("blk.0.attn_qkv.weight", false), None);
    }

    #[test]
    fn defaults_and_derived_values() {
        let c = config_from_json(&base()).unwrap();
        assert_eq!(c.cfg.arch, "llama");
        assert_eq!((c.cfg.head_dim, c.cfg.n_rot, c.cfg.n_head_kv), (16, 16, 2));
        assert_eq!((c.cfg.rms_eps, c.cfg.rope_base), (1e-6, 10_000.0));
        assert_eq!((c.cfg.n_ctx_train, c.tied), (2048, false));
        let mut v = base();
        v["head_dim"] = json!(32);
        v["tie_word_embeddings"] = json!(true);
        v["rope_scaling"] = json!({"type": "linear", "factor": 4.0});
        let c = config_from_json(&v).unwrap();
        assert_eq!(
            (c.cfg.head_dim, c.tied, c.cfg.rope_freq_scale),
            (32, true, 0.25)
        );
    }

    #[test]
    fn qwen3_configs_keep_their_head_dim() {
        for name in ["Qwen3ForCausalLM", "Qwen3Model"] {
            let mut v = base();
            v["architectures"] = json!([name]);
            v["head_dim"] = json!(128); // Qwen3-0.6B: 1024 / 16 would be 64
            v["hidden_size"] = json!(1024);
            v["num_attention_heads"] = json!(16);
            v["num_key_value_heads"] = json!(8);
            let c = config_from_json(&v).unwrap();
            assert_eq!(c.cfg.arch, "qwen3");
            assert_eq!(
                (c.cfg.head_dim, c.cfg.head_dim_v, c.cfg.n_rot),
                (128, 128, 128)
            );
        }
    }

    #[test]
    fn bad_configs_are_errors() {
        let cases: [(&str, Value); 8] = [
            ("architectures", json!(["BertModel"])),
            ("hidden_size", Value::Null),
            ("num_key_value_heads", json!(3)),
            ("vocab_size", json!(-1)),
            ("hidden_act", json!("gelu")),
            ("rope_scaling", json!({"rope_type": "yarn", "factor": 4.0})),
            ("rope_scaling", json!({"rope_type": "linear"})),
            ("rms_norm_eps", json!("small")),
        ];
        for (k, val) in cases {
            let mut v = base();
            v[k] = val.clone();
            assert!(config_from_json(&v).is_err(), "{k} = {val}");
        }
    }

    #[test]
    fn llama3_factors_match_the_three_regimes() {
        // Llama 3.1's values: base 500000, head_dim 128, factor 8, 1/4, 8192.
        let f = llama3_factors(500_000.0, 128, 8.0, 1.0, 4.0, 8192.0);
        assert_eq!(f.len(), 64);
        assert_eq!(f[0], 1.0); // wavelength 2π < 2048
        assert_eq!(f[63], 8.0); // wavelength ≫ 8192
        let mid: Vec<f32> = f.iter().copied().filter(|&x| x > 1.0 && x < 8.0).collect();
        assert!(
            !mid.is_empty() && mid.windows(2).all(|w| w[0] < w[1]),
            "{f:?}"
        );
    }
}
