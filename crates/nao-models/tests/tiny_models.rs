//! Tiny random-weight models (test pyramid item 4): `llama`, `qwen2` and `gemma3` GGUF files
//! built in memory with F32 weights, run through nao and compared with an independent f64
//! reference forward pass written here from the architectures' definitions (llama.cpp
//! `src/models/{llama,qwen2,gemma3}.cpp`, HF transformers). The reference deliberately uses
//! none of nao's layers or kernels: plain loops over `f64`.
//!
//! Each model is checked in four ways against the same reference logits: one batched prefill
//! returning all logits, a batched prefill returning only the last row, one token at a time
//! through the KV cache, and two chunks (the second starting at pos > 0) on two threads.
//! Sensitivity checks make sure the reference itself would catch the quirk under test (a
//! reference with the wrong RoPE pairing, no biases, or no sliding window disagrees with nao).
//! The error-case tests cover what the loader and forward pass must reject.

use nao_gguf::writer::GgufWriter;
use nao_gguf::GgufFile;
use nao_models::{load_model, Compute, Logits, Model, ModelError, SeqBatch};
use std::collections::HashMap;
use std::sync::Arc;

/// Max abs logit difference allowed between nao and the f64 reference. nao keeps the KV
/// cache, queries and the attention accumulator at f16 precision (as llama.cpp does), which
/// moves these logits by ~3e-3; the deliberately wrong references must differ by > 20x TOL.
const TOL: f64 = 1e-2;
/// The prompt every model runs (8 tokens, so a window of 3 matters from position 3 on).
const TOKENS: [u32; 8] = [1, 17, 42, 3, 49, 0, 25, 8];

// ---------------------------------------------------------------------------------------
// Deterministic PRNG (xorshift64*) and Gaussian samples (Box–Muller).

struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in (0, 1].
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.uniform(), self.uniform());
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
    fn vec(&mut self, n: usize, mean: f64, std: f64) -> Vec<f32> {
        (0..n)
            .map(|_| (mean + std * self.normal()) as f32)
            .collect()
    }
}

// ---------------------------------------------------------------------------------------
// Model specs and GGUF construction.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arch {
    Llama,
    Qwen2,
    Gemma3,
}

impl Arch {
    fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
            Arch::Gemma3 => "gemma3",
        }
    }
}

#[derive(Debug, Clone)]
struct Spec {
    arch: Arch,
    n_embd: usize,
    n_head: usize,
    n_head_kv: usize,
    head_dim: usize,
    n_ff: usize,
    n_layer: usize,
    n_vocab: usize,
    /// `{arch}.rope.freq_base` (Gemma 3: the global layers' base).
    rope_base: f64,
    eps: f64,
    /// Gemma 3 `attention.sliding_window`.
    window: Option<usize>,
    /// No `output.weight`: the output projection reuses `token_embd.weight`.
    tied: bool,
    /// Llama 3 `rope_freqs.weight` frequency factors.
    rope_freqs: bool,
    /// `rope.scaling.type = linear` with this factor.
    rope_linear: Option<f64>,
}

impl Spec {
    fn llama() -> Spec {
        Spec {
            arch: Arch::Llama,
            n_embd: 64,
            n_head: 4,
            n_head_kv: 2,
            head_dim: 16,
            n_ff: 96,
            n_layer: 2,
            n_vocab: 50,
            rope_base: 10_000.0,
            eps: 1e-5,
            window: None,
            tied: false,
            rope_freqs: false,
            rope_linear: None,
        }
    }
    fn qwen2() -> Spec {
        Spec {
            arch: Arch::Qwen2,
            rope_base: 1_000_000.0,
            eps: 1e-6,
            ..Spec::llama()
        }
    }
    /// n_embd / n_head (12) differs from head_dim (16), as in real Gemma 3 files, and 7
    /// layers give local layers 0-4 and 6 and global layer 5.
    fn gemma3() -> Spec {
        Spec {
            arch: Arch::Gemma3,
            n_embd: 48,
            n_head: 4,
            n_head_kv: 2,
            head_dim: 16,
            n_ff: 80,
            n_layer: 7,
            n_vocab: 50,
            rope_base: 1_000_000.0,
            eps: 1e-6,
            window: Some(3),
            tied: true,
            rope_freqs: false,
            rope_linear: None,
        }
    }
}

struct Tensor {
    name: String,
    /// GGUF order: `dims[0]` is the row length.
    dims: Vec<u64>,
    data: Vec<f32>,
}

fn blk(il: usize, name: &str) -> String {
    format!("blk.{il}.{name}")
}

/// Random weights with the tensor names and shapes llama.cpp's converters write.
fn make_tensors(s: &Spec, seed: u64) -> Vec<Tensor> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::new();
    let mut mat = |rng: &mut Rng, name: String, cols: usize, rows: usize| {
        let data = rng.vec(cols * rows, 0.0, 0.1);
        out.push(Tensor {
            name,
            dims: vec![cols as u64, rows as u64],
            data,
        });
    };
    let d = s.n_embd;
    let qd = s.n_head * s.head_dim;
    let kd = s.n_head_kv * s.head_dim;
    mat(&mut rng, "token_embd.weight".into(), d, s.n_vocab);
    for il in 0..s.n_layer {
        mat(&mut rng, blk(il, "attn_q.weight"), d, qd);
        mat(&mut rng, blk(il, "attn_k.weight"), d, kd);
        mat(&mut rng, blk(il, "attn_v.weight"), d, kd);
        mat(&mut rng, blk(il, "attn_output.weight"), qd, d);
        mat(&mut rng, blk(il, "ffn_gate.weight"), d, s.n_ff);
        mat(&mut rng, blk(il, "ffn_up.weight"), d, s.n_ff);
        mat(&mut rng, blk(il, "ffn_down.weight"), s.n_ff, d);
    }
    if !s.tied {
        mat(&mut rng, "output.weight".into(), d, s.n_vocab);
    }
    let mut vecs = Vec::new();
    let mut vector = |rng: &mut Rng, name: String, n: usize, mean: f64, std: f64| {
        vecs.push(Tensor {
            name,
            dims: vec![n as u64],
            data: rng.vec(n, mean, std),
        });
    };
    for il in 0..s.n_layer {
        vector(&mut rng, blk(il, "attn_norm.weight"), d, 1.0, 0.1);
        vector(&mut rng, blk(il, "ffn_norm.weight"), d, 1.0, 0.1);
        if s.arch == Arch::Qwen2 {
            vector(&mut rng, blk(il, "attn_q.bias"), qd, 0.0, 0.1);
            vector(&mut rng, blk(il, "attn_k.bias"), kd, 0.0, 0.1);
            vector(&mut rng, blk(il, "attn_v.bias"), kd, 0.0, 0.1);
        }
        if s.arch == Arch::Gemma3 {
            vector(
                &mut rng,
                blk(il, "attn_q_norm.weight"),
                s.head_dim,
                1.0,
                0.1,
            );
            vector(
                &mut rng,
                blk(il, "attn_k_norm.weight"),
                s.head_dim,
                1.0,
                0.1,
            );
            vector(&mut rng, blk(il, "post_attention_norm.weight"), d, 1.0, 0.1);
            vector(&mut rng, blk(il, "post_ffw_norm.weight"), d, 1.0, 0.1);
        }
    }
    vector(&mut rng, "output_norm.weight".into(), d, 1.0, 0.1);
    out.extend(vecs);
    if s.rope_freqs {
        // Llama 3 style: high-frequency pairs untouched, low-frequency ones slowed down.
        let half = s.head_dim / 2;
        let data = (0..half).map(|i| 1.0 + 0.5 * i as f32).collect();
        out.push(Tensor {
            name: "rope_freqs.weight".into(),
            dims: vec![half as u64],
            data,
        });
    }
    out
}

/// The GGUF bytes of a model: metadata under `arch_name` plus `tensors`.
fn gguf_bytes_as(s: &Spec, arch_name: &str, tensors: &[Tensor]) -> Vec<u8> {
    let k = |key: &str| format!("{arch_name}.{key}");
    let mut w = GgufWriter::new(3)
        .kv("general.architecture", arch_name)
        .kv(&k("block_count"), s.n_layer as u32)
        .kv(&k("context_length"), 128u32)
        .kv(&k("embedding_length"), s.n_embd as u32)
        .kv(&k("feed_forward_length"), s.n_ff as u32)
        .kv(&k("attention.head_count"), s.n_head as u32)
        .kv(&k("attention.head_count_kv"), s.n_head_kv as u32)
        .kv(&k("attention.layer_norm_rms_epsilon"), s.eps as f32)
        .kv(&k("rope.freq_base"), s.rope_base as f32);
    if s.arch == Arch::Gemma3 {
        w = w
            .kv(&k("attention.key_length"), s.head_dim as u32)
            .kv(&k("attention.value_length"), s.head_dim as u32);
    }
    if let Some(win) = s.window {
        w = w.kv(&k("attention.sliding_window"), win as u32);
    }
    if let Some(f) = s.rope_linear {
        w = w
            .kv(&k("rope.scaling.type"), "linear")
            .kv(&k("rope.scaling.factor"), f as f32);
    }
    for t in tensors {
        w = w.tensor_f32(&t.name, &t.dims, &t.data);
    }
    w.to_bytes()
}

fn gguf_bytes(s: &Spec, tensors: &[Tensor]) -> Vec<u8> {
    gguf_bytes_as(s, s.arch.name(), tensors)
}

fn load(bytes: Vec<u8>) -> Result<Model, ModelError> {
    load_model(Arc::new(GgufFile::from_bytes(bytes).expect("valid GGUF")))
}

// ---------------------------------------------------------------------------------------
// Independent f64 reference.

/// Deliberate deviations from the true architecture, to prove the comparison is sensitive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    Exact,
    /// Pair RoPE dimensions the other way (NeoX halves ↔ adjacent pairs).
    FlipRopeStyle,
    /// Ignore the q/k/v biases.
    NoBias,
    /// Let local layers see the whole past.
    NoWindow,
    /// Use the metadata RoPE base on every layer (Gemma 3 local layers must use 10000).
    GlobalBaseEverywhere,
}

struct Reference<'a> {
    s: &'a Spec,
    w: HashMap<&'a str, Vec<f64>>,
    variant: Variant,
}

fn rms_norm(x: &[f64], w: &[f64], eps: f64) -> Vec<f64> {
    let ms = x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64;
    let r = 1.0 / (ms + eps).sqrt();
    x.iter().zip(w).map(|(v, g)| v * r * g).collect()
}

/// `W x` for a GGUF matrix with `dims = [cols, rows]` (row-major rows of length `cols`).
fn matvec(w: &[f64], x: &[f64]) -> Vec<f64> {
    let cols = x.len();
    assert_eq!(w.len() % cols, 0);
    w.chunks_exact(cols)
        .map(|row| row.iter().zip(x).map(|(a, b)| a * b).sum())
        .collect()
}

fn silu(x: f64) -> f64 {
    x / (1.0 + (-x).exp())
}

fn gelu_tanh(x: f64) -> f64 {
    let c = (2.0 / std::f64::consts::PI).sqrt();
    0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh())
}

/// Rotates one head in place. `neox`: pairs (i, i + d/2); else adjacent pairs (2i, 2i+1).
/// theta_i = pos * freq_scale * base^(-2i/d) / factor_i.
fn rope(
    x: &mut [f64],
    pos: usize,
    base: f64,
    neox: bool,
    freq_scale: f64,
    factors: Option<&[f64]>,
) {
    let d = x.len();
    let half = d / 2;
    for i in 0..half {
        let mut theta = pos as f64 * freq_scale * base.powf(-2.0 * i as f64 / d as f64);
        if let Some(f) = factors {
            theta /= f[i];
        }
        let (a, b) = if neox {
            (i, i + half)
        } else {
            (2 * i, 2 * i + 1)
        };
        let (x0, x1) = (x[a], x[b]);
        x[a] = x0 * theta.cos() - x1 * theta.sin();
        x[b] = x0 * theta.sin() + x1 * theta.cos();
    }
}

impl<'a> Reference<'a> {
    fn new(s: &'a Spec, tensors: &'a [Tensor], variant: Variant) -> Reference<'a> {
        let w = tensors
            .iter()
            .map(|t| (t.name.as_str(), t.data.iter().map(|&v| v as f64).collect()))
            .collect();
        Reference { s, w, variant }
    }

    fn t(&self, name: &str) -> &[f64] {
        self.w
            .get(name)
            .unwrap_or_else(|| panic!("reference: no tensor {name}"))
    }

    fn b(&self, il: usize, name: &str) -> &[f64] {
        self.t(&blk(il, name))
    }

    /// Adds `blk.il.{name}.bias` when the architecture has it.
    fn linear(&self, il: usize, name: &str, x: &[f64]) -> Vec<f64> {
        let mut y = matvec(self.b(il, &format!("{name}.weight")), x);
        if self.s.arch == Arch::Qwen2 && self.variant != Variant::NoBias {
            let bias = self.b(il, &format!("{name}.bias"));
            y.iter_mut().zip(bias).for_each(|(v, b)| *v += b);
        }
        y
    }

    /// Logits `[n][n_vocab]` for `tokens` at positions `0..n`.
    fn forward(&self, tokens: &[u32]) -> Vec<Vec<f64>> {
        let s = self.s;
        let (d, hd) = (s.n_embd, s.head_dim);
        let gemma = s.arch == Arch::Gemma3;
        let embd = self.t("token_embd.weight");
        let embd_scale = if gemma { (d as f64).sqrt() } else { 1.0 };
        let mut x: Vec<Vec<f64>> = tokens
            .iter()
            .map(|&t| {
                let t = t as usize;
                embd[t * d..(t + 1) * d]
                    .iter()
                    .map(|v| v * embd_scale)
                    .collect()
            })
            .collect();
        let neox = match s.arch {
            Arch::Llama => false,
            Arch::Qwen2 | Arch::Gemma3 => true,
        } ^ (self.variant == Variant::FlipRopeStyle);
        let factors = s.rope_freqs.then(|| self.t("rope_freqs.weight"));
        let group = s.n_head / s.n_head_kv;
        let scale = 1.0 / (hd as f64).sqrt();
        for il in 0..s.n_layer {
            // Gemma 3: every 6th layer (il % 6 == 5) is global, the others local (sliding
            // window, RoPE base 10000, no position scaling).
            let local = gemma && il % 6 != 5;
            let (base, freq_scale) = if local && self.variant != Variant::GlobalBaseEverywhere {
                (10_000.0, 1.0)
            } else {
                (s.rope_base, s.rope_linear.map_or(1.0, |f| 1.0 / f))
            };
            let window = match (local, self.variant) {
                (true, Variant::NoWindow) | (false, _) => None,
                (true, _) => s.window,
            };
            let mut qs = Vec::new();
            let mut ks = Vec::new();
            let mut vs = Vec::new();
            for (p, xp) in x.iter().enumerate() {
                let h = rms_norm(xp, self.b(il, "attn_norm.weight"), s.eps);
                let mut q = self.linear(il, "attn_q", &h);
                let mut k = self.linear(il, "attn_k", &h);
                let v = self.linear(il, "attn_v", &h);
                for (heads, norm) in [
                    (&mut q, "attn_q_norm.weight"),
                    (&mut k, "attn_k_norm.weight"),
                ] {
                    for head in heads.chunks_exact_mut(hd) {
                        if gemma {
                            let normed = rms_norm(head, self.b(il, norm), s.eps);
                            head.copy_from_slice(&normed);
                        }
                        rope(head, p, base, neox, freq_scale, factors);
                    }
                }
                qs.push(q);
                ks.push(k);
                vs.push(v);
            }
            for (p, xp) in x.iter_mut().enumerate() {
                let mut attn = vec![0.0f64; s.n_head * hd];
                for h in 0..s.n_head {
                    let kvh = h / group;
                    let q = &qs[p][h * hd..(h + 1) * hd];
                    let visible: Vec<usize> = (0..=p)
                        .filter(|&kp| window.is_none_or(|w| p - kp < w))
                        .collect();
                    let scores: Vec<f64> = visible
                        .iter()
                        .map(|&kp| {
                            let k = &ks[kp][kvh * hd..(kvh + 1) * hd];
                            q.iter().zip(k).map(|(a, b)| a * b).sum::<f64>() * scale
                        })
                        .collect();
                    let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = scores.iter().map(|v| (v - m).exp()).collect();
                    let z: f64 = e.iter().sum();
                    for (&kp, ei) in visible.iter().zip(&e) {
                        let v = &vs[kp][kvh * hd..(kvh + 1) * hd];
                        for (o, vv) in attn[h * hd..(h + 1) * hd].iter_mut().zip(v) {
                            *o += ei / z * vv;
                        }
                    }
                }
                let mut a = matvec(self.b(il, "attn_output.weight"), &attn);
                if gemma {
                    a = rms_norm(&a, self.b(il, "post_attention_norm.weight"), s.eps);
                }
                xp.iter_mut().zip(&a).for_each(|(v, a)| *v += a);

                let h = rms_norm(xp, self.b(il, "ffn_norm.weight"), s.eps);
                let g = matvec(self.b(il, "ffn_gate.weight"), &h);
                let u = matvec(self.b(il, "ffn_up.weight"), &h);
                let act: Vec<f64> = g
                    .iter()
                    .zip(&u)
                    .map(|(&g, &u)| if gemma { gelu_tanh(g) * u } else { silu(g) * u })
                    .collect();
                let mut m = matvec(self.b(il, "ffn_down.weight"), &act);
                if gemma {
                    m = rms_norm(&m, self.b(il, "post_ffw_norm.weight"), s.eps);
                }
                xp.iter_mut().zip(&m).for_each(|(v, m)| *v += m);
            }
        }
        let out_w = if s.tied {
            embd
        } else {
            self.t("output.weight")
        };
        x.iter()
            .map(|xp| matvec(out_w, &rms_norm(xp, self.t("output_norm.weight"), s.eps)))
            .collect()
    }
}

// ---------------------------------------------------------------------------------------
// Comparison harness.

/// Max abs difference between nao's rows and reference rows `first..`.
fn max_diff(got: &[f32], want: &[Vec<f64>], first: usize, n_vocab: usize) -> (f64, usize, usize) {
    assert_eq!(
        got.len() % n_vocab,
        0,
        "logits length {} not a multiple of {n_vocab}",
        got.len()
    );
    let mut worst = (0.0f64, 0, 0);
    for (r, row) in got.chunks_exact(n_vocab).enumerate() {
        for (j, (&g, &w)) in row.iter().zip(&want[first + r]).enumerate() {
            let diff = (g as f64 - w).abs();
            assert!(
                diff.is_finite(),
                "non-finite logit at row {} col {j}",
                first + r
            );
            if diff > worst.0 {
                worst = (diff, first + r, j);
            }
        }
    }
    worst
}

fn assert_close(what: &str, got: &[f32], want: &[Vec<f64>], first: usize, n_vocab: usize) {
    let (diff, row, col) = max_diff(got, want, first, n_vocab);
    eprintln!("{what}: max |nao - reference| = {diff:.2e}");
    assert!(
        diff < TOL,
        "{what}: max |nao - reference| = {diff:.3e} at position {row}, token {col} \
         (nao {}, reference {})",
        got[(row - first) * n_vocab + col],
        want[row][col]
    );
}

/// Runs `spec` through nao four ways and checks each against the reference; returns nao's
/// batched logits for the sensitivity checks.
fn check_model(spec: &Spec, seed: u64) -> Vec<f32> {
    let tensors = make_tensors(spec, seed);
    let model = load(gguf_bytes(spec, &tensors)).expect("tiny model loads");
    let cfg = model.config();
    assert_eq!(cfg.arch, spec.arch.name());
    assert_eq!(cfg.n_vocab, spec.n_vocab);
    assert_eq!(cfg.head_dim, spec.head_dim);
    assert_eq!(cfg.n_layer, spec.n_layer);
    let nv = spec.n_vocab;
    let n = TOKENS.len();
    let want = Reference::new(spec, &tensors, Variant::Exact).forward(&TOKENS);
    let logits_scale = want.iter().flatten().map(|v| v.abs()).fold(0.0, f64::max);
    assert!(
        logits_scale > 0.1,
        "degenerate reference logits (max |logit| {logits_scale})"
    );

    // 1. Batched prefill, all logits.
    let mut c = Compute::new(1);
    let mut cache = model.new_cache(16).unwrap();
    let all = model.forward(&TOKENS, 0, &mut cache, &mut c, true).unwrap();
    assert_eq!(all.len(), n * nv);
    assert_close("batched prefill (all logits)", &all, &want, 0, nv);

    // 2. Batched prefill, last logits only.
    let mut cache = model.new_cache(16).unwrap();
    let last = model
        .forward(&TOKENS, 0, &mut cache, &mut c, false)
        .unwrap();
    assert_eq!(last.len(), nv);
    assert_close("batched prefill (last logits)", &last, &want, n - 1, nv);

    // 3. One token at a time through the KV cache.
    let mut cache = model.new_cache(n).unwrap();
    for (p, &t) in TOKENS.iter().enumerate() {
        let step = model.forward(&[t], p, &mut cache, &mut c, false).unwrap();
        assert_close(&format!("incremental step {p}"), &step, &want, p, nv);
    }

    // 4. Two chunks (3 + 5 tokens), the second at pos 3, on two threads.
    let mut c2 = Compute::new(2);
    let mut cache = model.new_cache(16).unwrap();
    let a = model
        .forward(&TOKENS[..3], 0, &mut cache, &mut c2, true)
        .unwrap();
    assert_close("chunked prefill, chunk 1", &a, &want, 0, nv);
    let b = model
        .forward(&TOKENS[3..], 3, &mut cache, &mut c2, true)
        .unwrap();
    assert_close("chunked prefill, chunk 2", &b, &want, 3, nv);

    all
}

/// The reference with `variant` must disagree with nao by far more than the tolerance, so a
/// model that got that quirk wrong could not pass.
fn assert_sensitive(spec: &Spec, seed: u64, nao: &[f32], variant: Variant) {
    let tensors = make_tensors(spec, seed);
    let wrong = Reference::new(spec, &tensors, variant).forward(&TOKENS);
    let (diff, _, _) = max_diff(nao, &wrong, 0, spec.n_vocab);
    assert!(
        diff > 20.0 * TOL,
        "{:?} reference is too close to nao ({diff:.3e}): the test would not notice",
        variant
    );
}

// ---------------------------------------------------------------------------------------
// Parity tests.

#[test]
fn llama_matches_reference() {
    let spec = Spec::llama();
    let nao = check_model(&spec, 1);
    assert_sensitive(&spec, 1, &nao, Variant::FlipRopeStyle);
}

#[test]
fn llama3_rope_freqs_match_reference() {
    let spec = Spec {
        rope_freqs: true,
        ..Spec::llama()
    };
    check_model(&spec, 2);
}

#[test]
fn llama_linear_rope_scaling_matches_reference() {
    let spec = Spec {
        rope_linear: Some(4.0),
        ..Spec::llama()
    };
    check_model(&spec, 3);
}

#[test]
fn llama_tied_output_matches_reference() {
    let spec = Spec {
        tied: true,
        n_head_kv: 4,
        ..Spec::llama()
    };
    check_model(&spec, 4);
}

#[test]
fn qwen2_matches_reference() {
    let spec = Spec::qwen2();
    let nao = check_model(&spec, 5);
    assert_sensitive(&spec, 5, &nao, Variant::FlipRopeStyle);
    assert_sensitive(&spec, 5, &nao, Variant::NoBias);
}

#[test]
fn qwen2_tied_mqa_matches_reference() {
    let spec = Spec {
        tied: true,
        n_head_kv: 1,
        ..Spec::qwen2()
    };
    check_model(&spec, 6);
}

#[test]
fn gemma3_matches_reference() {
    let spec = Spec::gemma3();
    let nao = check_model(&spec, 7);
    assert_sensitive(&spec, 7, &nao, Variant::FlipRopeStyle);
    assert_sensitive(&spec, 7, &nao, Variant::NoWindow);
    assert_sensitive(&spec, 7, &nao, Variant::GlobalBaseEverywhere);
}

#[test]
fn gemma3_linear_rope_scaling_on_global_layers_matches_reference() {
    // Gemma 3 4B and larger: linear factor 8 on the global layers only.
    let spec = Spec {
        rope_linear: Some(8.0),
        ..Spec::gemma3()
    };
    check_model(&spec, 8);
}

// ---------------------------------------------------------------------------------------
// Error cases.

fn expect_err(r: Result<Model, ModelError>) -> ModelError {
    match r {
        Ok(_) => panic!("expected the model to be rejected"),
        Err(e) => e,
    }
}

#[test]
fn missing_tensor_is_named() {
    for (spec, name) in [
        (Spec::llama(), "blk.1.ffn_up.weight"),
        (Spec::llama(), "output_norm.weight"),
        (Spec::llama(), "token_embd.weight"),
        (Spec::qwen2(), "blk.0.attn_v.weight"),
        (Spec::gemma3(), "blk.5.post_ffw_norm.weight"),
        (Spec::gemma3(), "blk.3.post_attention_norm.weight"),
    ] {
        let mut tensors = make_tensors(&spec, 9);
        tensors.retain(|t| t.name != name);
        match expect_err(load(gguf_bytes(&spec, &tensors))) {
            ModelError::MissingTensor(n) => assert_eq!(n, name),
            e => panic!("{name}: expected MissingTensor, got {e:?}"),
        }
    }
}

#[test]
fn wrong_shape_is_rejected() {
    let spec = Spec::llama();
    let (d, kd) = (spec.n_embd as u64, (spec.n_head_kv * spec.head_dim) as u64);
    // attn_k with n_head rows instead of n_head_kv, a transposed ffn_down, a short norm.
    let cases: [(&str, Vec<u64>, Vec<u64>); 3] = [
        ("blk.0.attn_k.weight", vec![d, 2 * kd], vec![d, kd]),
        (
            "blk.1.ffn_down.weight",
            vec![d, spec.n_ff as u64],
            vec![spec.n_ff as u64, d],
        ),
        ("blk.1.attn_norm.weight", vec![d - 1], vec![d]),
    ];
    for (name, bad, expected) in cases {
        let mut tensors = make_tensors(&spec, 10);
        let t = tensors.iter_mut().find(|t| t.name == name).unwrap();
        let n: u64 = bad.iter().product();
        t.data = vec![0.01; n as usize];
        t.dims = bad.clone();
        match expect_err(load(gguf_bytes(&spec, &tensors))) {
            ModelError::BadShape {
                tensor,
                expected: e,
                got,
            } => {
                assert_eq!(tensor, name);
                assert_eq!(e, expected, "{name}");
                assert_eq!(got, bad, "{name}");
            }
            e => panic!("{name}: expected BadShape, got {e:?}"),
        }
    }
}

#[test]
fn gemma3_q_norm_of_wrong_size_is_rejected() {
    let spec = Spec::gemma3();
    let mut tensors = make_tensors(&spec, 11);
    let t = tensors
        .iter_mut()
        .find(|t| t.name == "blk.2.attn_q_norm.weight")
        .unwrap();
    t.dims = vec![spec.n_embd as u64];
    t.data = vec![1.0; spec.n_embd];
    match expect_err(load(gguf_bytes(&spec, &tensors))) {
        ModelError::BadShape { tensor, .. } => assert_eq!(tensor, "blk.2.attn_q_norm.weight"),
        e => panic!("expected BadShape, got {e:?}"),
    }
}

#[test]
fn unsupported_architecture_is_rejected() {
    // A well-formed decoder file under an architecture nao does not know.
    let spec = Spec::llama();
    let tensors = make_tensors(&spec, 12);
    match expect_err(load(gguf_bytes_as(&spec, "phi3", &tensors))) {
        ModelError::UnsupportedArch(a) => assert_eq!(a, "phi3"),
        e => panic!("expected UnsupportedArch, got {e:?}"),
    }
}

#[test]
fn unsupported_architecture_without_decoder_keys_is_rejected() {
    // e.g. a Mamba or BERT file: no `{arch}.attention.head_count`. The architecture check
    // must come before reading hyper-parameters that only decoders have.
    let bytes = GgufWriter::new(3)
        .kv("general.architecture", "mamba")
        .kv("mamba.block_count", 2u32)
        .kv("mamba.embedding_length", 64u32)
        .tensor_f32("token_embd.weight", &[64, 50], &[0.0; 64 * 50])
        .to_bytes();
    match expect_err(load(bytes)) {
        ModelError::UnsupportedArch(a) => assert_eq!(a, "mamba"),
        e => panic!("expected UnsupportedArch, got {e:?}"),
    }
}

#[test]
fn token_out_of_range_is_rejected() {
    for spec in [Spec::llama(), Spec::gemma3()] {
        let tensors = make_tensors(&spec, 13);
        let model = load(gguf_bytes(&spec, &tensors)).unwrap();
        let mut c = Compute::new(1);
        let mut cache = model.new_cache(8).unwrap();
        let bad = spec.n_vocab as u32;
        match model.forward(&[1, bad, 2], 0, &mut cache, &mut c, false) {
            Err(ModelError::TokenOutOfRange { id, n_vocab }) => {
                assert_eq!(id, bad);
                assert_eq!(n_vocab, spec.n_vocab);
            }
            r => panic!(
                "{:?}: expected TokenOutOfRange, got {:?}",
                spec.arch,
                r.map(|v| v.len())
            ),
        }
        // The last valid id works.
        model
            .forward(&[bad - 1], 0, &mut cache, &mut c, false)
            .expect("id n_vocab - 1 is valid");
    }
}

#[test]
fn forward_past_context_is_rejected() {
    let spec = Spec::llama();
    let tensors = make_tensors(&spec, 14);
    let model = load(gguf_bytes(&spec, &tensors)).unwrap();
    let mut c = Compute::new(1);

    // A prompt longer than the cache.
    let mut cache = model.new_cache(4).unwrap();
    match model.forward(&TOKENS[..5], 0, &mut cache, &mut c, false) {
        Err(ModelError::ContextFull { needed, n_ctx }) => assert_eq!((needed, n_ctx), (5, 4)),
        r => panic!("expected ContextFull, got {:?}", r.map(|v| v.len())),
    }

    // Filling the cache exactly works; one more position does not.
    let mut cache = model.new_cache(4).unwrap();
    model
        .forward(&TOKENS[..3], 0, &mut cache, &mut c, false)
        .unwrap();
    match model.forward(&TOKENS[3..5], 3, &mut cache, &mut c, false) {
        Err(ModelError::ContextFull { needed, n_ctx }) => assert_eq!((needed, n_ctx), (5, 4)),
        r => panic!("expected ContextFull, got {:?}", r.map(|v| v.len())),
    }
    model
        .forward(&TOKENS[3..4], 3, &mut cache, &mut c, false)
        .unwrap();
    match model.forward(&TOKENS[4..5], 4, &mut cache, &mut c, false) {
        Err(ModelError::ContextFull { needed, n_ctx }) => assert_eq!((needed, n_ctx), (5, 4)),
        r => panic!("expected ContextFull, got {:?}", r.map(|v| v.len())),
    }
}

#[test]
fn cache_of_another_model_is_rejected() {
    let small = Spec::llama();
    let big = Spec::gemma3();
    let m_small = load(gguf_bytes(&small, &make_tensors(&small, 15))).unwrap();
    let m_big = load(gguf_bytes(&big, &make_tensors(&big, 15))).unwrap();
    let mut cache = m_big.new_cache(8).unwrap();
    let mut c = Compute::new(1);
    match m_small.forward(&[1, 2], 0, &mut cache, &mut c, false) {
        Err(ModelError::BadConfig(_)) => {}
        r => panic!("expected BadConfig, got {:?}", r.map(|v| v.len())),
    }
}

/// Two sequences sharing one paged pool, their blocks interleaved and out of order, give
/// bit-identical logits to each run alone through a contiguous cache: batching and paging
/// change nothing a request sees.
#[test]
fn batched_paged_sequences_match_single_runs() {
    for spec in [Spec::llama(), Spec::gemma3()] {
        let tensors = make_tensors(&spec, 21);
        let model = load(gguf_bytes(&spec, &tensors)).unwrap();
        let nv = spec.n_vocab;
        let a_tokens: &[u32] = &TOKENS;
        let b_tokens: &[u32] = &[5, 9, 33, 2, 7];
        let mut c = Compute::new(2);
        let alone = |toks: &[u32], c: &mut Compute| {
            let mut cache = model.new_cache(16).unwrap();
            let mut out = model.forward(&toks[..3], 0, &mut cache, c, true).unwrap();
            for (i, &t) in toks[3..].iter().enumerate() {
                out.extend(model.forward(&[t], 3 + i, &mut cache, c, true).unwrap());
            }
            out
        };
        let want_a = alone(a_tokens, &mut c);
        let want_b = alone(b_tokens, &mut c);

        // Blocks of 2 positions; a owns 7, 0, 5, 2 and b owns 1, 6, 3.
        let mut pool = model.new_pool(8, 2).unwrap();
        let table_a = [7u32, 0, 5, 2];
        let table_b = [1u32, 6, 3];
        // Step 1: both prompts' first three tokens in one batch.
        let first = model
            .forward_batch(
                &[
                    SeqBatch {
                        tokens: &a_tokens[..3],
                        pos: 0,
                        table: &table_a,
                        logits: Logits::All,
                    },
                    SeqBatch {
                        tokens: &b_tokens[..3],
                        pos: 0,
                        table: &table_b,
                        logits: Logits::All,
                    },
                ],
                &mut pool,
                &mut c,
            )
            .unwrap();
        assert_eq!(first.len(), 6 * nv);
        let (mut got_a, mut got_b) = (first[..3 * nv].to_vec(), first[3 * nv..].to_vec());
        // Then one token each per step while both last; a runs on alone at the end.
        for p in 3..a_tokens.len() {
            let mut seqs = vec![SeqBatch {
                tokens: &a_tokens[p..p + 1],
                pos: p,
                table: &table_a,
                logits: Logits::Last,
            }];
            if p < b_tokens.len() {
                seqs.insert(
                    0,
                    SeqBatch {
                        tokens: &b_tokens[p..p + 1],
                        pos: p,
                        table: &table_b,
                        logits: Logits::Last,
                    },
                );
            }
            let out = model.forward_batch(&seqs, &mut pool, &mut c).unwrap();
            if p < b_tokens.len() {
                got_b.extend_from_slice(&out[..nv]);
                got_a.extend_from_slice(&out[nv..]);
            } else {
                got_a.extend_from_slice(&out);
            }
        }
        assert!(
            got_a == want_a,
            "{:?}: sequence a changed by batching",
            spec.arch
        );
        assert!(
            got_b == want_b,
            "{:?}: sequence b changed by batching",
            spec.arch
        );

        // A table too short for the positions is an error, not a panic.
        match model.forward_batch(
            &[SeqBatch {
                tokens: &a_tokens[..5],
                pos: 0,
                table: &table_b[..2],
                logits: Logits::Last,
            }],
            &mut pool,
            &mut c,
        ) {
            Err(ModelError::ContextFull { needed, n_ctx }) => assert_eq!((needed, n_ctx), (5, 4)),
            r => panic!("expected ContextFull, got {:?}", r.map(|v| v.len())),
        }
        // A block id outside the pool is an error.
        assert!(matches!(
            model.forward_batch(
                &[SeqBatch {
                    tokens: &a_tokens[..1],
                    pos: 0,
                    table: &[8],
                    logits: Logits::Last,
                }],
                &mut pool,
                &mut c,
            ),
            Err(ModelError::BadConfig(_))
        ));
    }
}
