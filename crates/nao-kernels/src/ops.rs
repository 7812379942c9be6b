//! Element-wise and row-wise float ops used between matmuls: norms, RoPE, softmax,
//! activations. Scalar code written so the compiler can vectorise it; these are a small
//! share of decode time next to the weight matmuls.

#[cfg(target_arch = "x86_64")]
mod x86;

/// `log2(e)`, and `ln 2` split in a high part exact in a few bits and the rest (Cody–Waite).
const LOG2E: f32 = std::f32::consts::LOG2_E;
const EXP_LN2_HI: f32 = 0.693_145_75;
const EXP_LN2_LO: f32 = 1.428_606_8e-6;
/// Range of [`exp_poly`]'s argument: beyond it `1 + exp(t)` is 1 or the quotient
/// `x / (1 + exp(t))` is below 1e-36, so the clamp does not matter to SiLU.
const EXP_LO: f32 = -87.0;
const EXP_HI: f32 = 87.0;
/// Taylor coefficients of `exp(r)` for |r| ≤ ln2/2, highest degree first (1/7! .. 1/0!):
/// truncation error below 2^-26 relative.
const EXP_C: [f32; 8] = [
    1.0 / 5040.0,
    1.0 / 720.0,
    1.0 / 120.0,
    1.0 / 24.0,
    1.0 / 6.0,
    0.5,
    1.0,
    1.0,
];

/// `exp(t)` within a few ulp for t in [−87, 87] (clamped there): `2^n · p(t − n ln 2)`.
/// The operations (and their rounding) are exactly those of the SIMD twin in `x86`.
#[inline]
fn exp_poly(t: f32) -> f32 {
    // `max`/`min` in the order `_mm256_max_ps(t, lo)`: NaN becomes `EXP_LO`, as there.
    let t = if t > EXP_LO { t } else { EXP_LO };
    let t = if t < EXP_HI { t } else { EXP_HI };
    let n = (t * LOG2E).round_ties_even();
    let r = n.mul_add(-EXP_LN2_HI, t);
    let r = n.mul_add(-EXP_LN2_LO, r);
    let mut p = EXP_C[0];
    for &c in &EXP_C[1..] {
        p = p.mul_add(r, c);
    }
    p * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// `g[i] = silu(g[i]) · u[i]` (the SwiGLU gate), with SiLU as `x / (1 + exp(−x))` on
/// [`exp_poly`]; AVX2+FMA where [`crate::dot::simd_name`] allows, bit-identical to
/// [`silu_mul_scalar`]. Stops at the shorter slice.
pub fn silu_mul(g: &mut [f32], u: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if crate::dot::fma_enabled() {
        // SAFETY: `fma_enabled` is true only after `is_x86_feature_detected!` reported AVX2
        // and FMA, the kernel's whole contract.
        let done = unsafe { x86::silu_mul(g, u) };
        let (g, u) = (&mut g[done..], u.get(done..).unwrap_or(&[]));
        return silu_mul_scalar(g, u);
    }
    silu_mul_scalar(g, u)
}

/// The scalar twin of [`silu_mul`].
pub fn silu_mul_scalar(g: &mut [f32], u: &[f32]) {
    for (gi, &ui) in g.iter_mut().zip(u) {
        let x = *gi;
        *gi = x / (1.0 + exp_poly(-x)) * ui;
    }
}

/// The gated activation of an MLP: `g = act(g) · u`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gate {
    /// SwiGLU: [`silu_mul`].
    Silu,
    /// GeGLU with GELU as ggml's CPU backend evaluates it: [`gelu_f16_mul`].
    GeluF16,
}

/// Elements per work item of [`gate_mul_par`].
const GATE_CHUNK: usize = 8192;

/// [`Gate`] applied across the pool's threads: the same values as the one-thread
/// [`silu_mul`] / [`gelu_f16_mul`] (every element is computed on its own). Stops at the
/// shorter slice.
pub fn gate_mul_par(gate: Gate, g: &mut [f32], u: &[f32], pool: &crate::pool::ThreadPool) {
    let n = g.len().min(u.len());
    let g = &mut g[..n];
    let one = |g: &mut [f32], u: &[f32]| match gate {
        Gate::Silu => silu_mul(g, u),
        Gate::GeluF16 => gelu_f16_mul(g, u),
    };
    if n < 2 * GATE_CHUNK || pool.n_threads() < 2 {
        return one(g, u);
    }
    let shared = crate::pool::SharedMut::new(g);
    pool.for_ranges(n.div_ceil(GATE_CHUNK), &|chunks| {
        let r = chunks.start * GATE_CHUNK..(chunks.end * GATE_CHUNK).min(n);
        // SAFETY: `for_ranges` hands each chunk index to one thread, so the element ranges
        // are disjoint across threads, and `g` outlives the pool job.
        let gs = unsafe { shared.slice_mut(r.clone()) };
        one(gs, &u[r]);
    });
}

/// GELU (tanh form) the way ggml's CPU backend evaluates it by default: on the input
/// rounded to f16, with the result rounded to f16 (ggml reads it from a 64K-entry f16
/// table), and exactly 0 / x outside (-10, 10). Keeps Gemma within llama.cpp's noise.
pub fn gelu_f16(x: f32) -> f32 {
    if x <= -10.0 {
        0.0
    } else if x >= 10.0 {
        x
    } else {
        let h = half::f16::from_f32(x).to_bits();
        gelu_table()[usize::from(h)]
    }
}

/// GELU of the f16 with bits `h`, rounded to f16: what [`gelu_table`] holds.
pub fn gelu_f16_direct(h: u16) -> f32 {
    use half::f16;
    f16::from_f32(gelu_tanh(f16::from_bits(h).to_f32())).to_f32()
}

/// [`gelu_f16_direct`] for every f16 bit pattern, as f32 (256 KiB, built on first use), so
/// the per-element cost is a table read (a gather in the SIMD twin) instead of a `tanh`.
fn gelu_table() -> &'static [f32; 65536] {
    static TABLE: std::sync::OnceLock<Box<[f32; 65536]>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = Box::new([0.0f32; 65536]);
        for (h, v) in t.iter_mut().enumerate() {
            *v = gelu_f16_direct(h as u16);
        }
        t
    })
}

/// `g[i] = gelu_f16(g[i]) · u[i]` ([`gelu_f16`]); AVX2 + F16C where the CPU has them,
/// bit-identical to [`gelu_f16_mul_scalar`]. Stops at the shorter slice.
pub fn gelu_f16_mul(g: &mut [f32], u: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("f16c") {
        // SAFETY: AVX2 and F16C were just detected, the kernel's whole contract.
        let done = unsafe { x86::gelu_f16_mul(g, u, gelu_table()) };
        let (g, u) = (&mut g[done..], u.get(done..).unwrap_or(&[]));
        return gelu_f16_mul_scalar(g, u);
    }
    gelu_f16_mul_scalar(g, u)
}

/// The scalar twin of [`gelu_f16_mul`].
pub fn gelu_f16_mul_scalar(g: &mut [f32], u: &[f32]) {
    for (gi, &ui) in g.iter_mut().zip(u) {
        *gi = gelu_f16(*gi) * ui;
    }
}

/// RMS normalisation (Zhang & Sennrich 2019): `y = x / sqrt(mean(x^2) + eps) * w`.
/// The sum of squares is accumulated in f64, as ggml does.
pub fn rms_norm(x: &[f32], w: &[f32], eps: f32, y: &mut [f32]) {
    let sum: f64 = x.iter().map(|&v| (v as f64) * (v as f64)).sum();
    let mean = (sum / x.len().max(1) as f64) as f32;
    let scale = 1.0 / (mean + eps).sqrt();
    for ((yi, &xi), &wi) in y.iter_mut().zip(x).zip(w) {
        *yi = xi * scale * wi;
    }
}

/// In-place RMS normalisation of each `w.len()`-sized chunk of `x` (per-head q/k norms).
pub fn rms_norm_chunks(x: &mut [f32], w: &[f32], eps: f32) {
    let n = w.len();
    if n == 0 {
        return;
    }
    let mut tmp = vec![0.0f32; n];
    for chunk in x.chunks_exact_mut(n) {
        rms_norm(chunk, w, eps, &mut tmp);
        chunk.copy_from_slice(&tmp);
    }
}

/// How RoPE pairs the dimensions of a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeStyle {
    /// Adjacent pairs (2i, 2i+1): Llama as converted to GGUF.
    Normal,
    /// Halves (i, i + n_rot/2): GPT-NeoX, Qwen2, Gemma.
    Neox,
}

/// Precomputed inverse frequencies for rotary embeddings (Su et al. 2021,
/// https://arxiv.org/abs/2104.09864): `inv_freq[i] = base^(-2i/n_rot) / freq_factor[i] * scale`.
#[derive(Debug, Clone)]
pub struct Rope {
    pub style: RopeStyle,
    pub n_rot: usize,
    inv_freq: Vec<f32>,
}

impl Rope {
    /// `freq_scale` is linear position scaling (1.0 = none); `freq_factors` (Llama 3 style)
    /// divide each frequency when present.
    pub fn new(
        style: RopeStyle,
        n_rot: usize,
        base: f32,
        freq_scale: f32,
        freq_factors: Option<&[f32]>,
    ) -> Rope {
        let half = n_rot / 2;
        let theta_scale = base.powf(-2.0 / n_rot as f32);
        let mut inv_freq = Vec::with_capacity(half);
        // ggml accumulates theta by repeated multiplication; do the same for parity.
        let mut t = 1.0f32;
        for i in 0..half {
            let ff = freq_factors.and_then(|f| f.get(i)).copied().unwrap_or(1.0);
            inv_freq.push(t * freq_scale / ff);
            t *= theta_scale;
        }
        Rope {
            style,
            n_rot,
            inv_freq,
        }
    }

    /// Rotates every head (`head_dim`-sized chunk) of `x` for position `pos`.
    pub fn apply(&self, x: &mut [f32], head_dim: usize, pos: usize) {
        self.apply_qk(x, &mut [], head_dim, pos);
    }

    /// [`Rope::apply`] on the heads of `q` and of `k` (one position's query and key), with
    /// the angles' sines and cosines computed once for all of them.
    pub fn apply_qk(&self, q: &mut [f32], k: &mut [f32], head_dim: usize, pos: usize) {
        const STACK: usize = 256;
        let half = self.n_rot / 2;
        let p = pos as f32;
        let mut stack = [(0.0f32, 0.0f32); STACK];
        let mut heap = Vec::new();
        let sc: &mut [(f32, f32)] = if half <= STACK {
            &mut stack[..half]
        } else {
            heap.resize(half, (0.0, 0.0));
            &mut heap
        };
        for (v, &f) in sc.iter_mut().zip(&self.inv_freq) {
            *v = (p * f).sin_cos();
        }
        for head in q
            .chunks_exact_mut(head_dim)
            .chain(k.chunks_exact_mut(head_dim))
        {
            for (i, &(s, c)) in sc.iter().enumerate() {
                let (a, b) = match self.style {
                    RopeStyle::Normal => (2 * i, 2 * i + 1),
                    RopeStyle::Neox => (i, i + half),
                };
                let x0 = head[a];
                let x1 = head[b];
                head[a] = x0 * c - x1 * s;
                head[b] = x0 * s + x1 * c;
            }
        }
    }
}

/// In-place softmax; returns nothing, leaves an all-`-inf` row as all zeros.
pub fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        x.iter_mut().for_each(|v| *v = 0.0);
        return;
    }
    let mut sum = 0.0f64;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v as f64;
    }
    let inv = (1.0 / sum) as f32;
    x.iter_mut().for_each(|v| *v *= inv);
}

/// SiLU (x * sigmoid(x)).
#[inline]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// GELU, tanh approximation (as Gemma and ggml use).
#[inline]
pub fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * (1.0 + 0.044_715 * x * x)).tanh())
}

/// `x += y` element-wise.
pub fn add_assign(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

/// f32 dot product with 8 independent accumulators (vectorises well).
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let n8 = a.len().min(b.len()) / 8 * 8;
    for (ca, cb) in a[..n8].chunks_exact(8).zip(b[..n8].chunks_exact(8)) {
        for i in 0..8 {
            acc[i] += ca[i] * cb[i];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in a[n8..].iter().zip(&b[n8..]) {
        s += x * y;
    }
    s
}

/// `y += a * x` element-wise.
pub fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += a * xi;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rms_norm_hand_computed() {
        let x = [3.0f32, 4.0];
        let w = [1.0f32, 2.0];
        let mut y = [0.0f32; 2];
        rms_norm(&x, &w, 0.0, &mut y);
        // mean(x^2) = 12.5, rms = 3.5355
        assert!((y[0] - 3.0 / 12.5f32.sqrt()).abs() < 1e-6);
        assert!((y[1] - 8.0 / 12.5f32.sqrt()).abs() < 1e-6);
    }

    #[test]
    fn rope_rotates_pairs() {
        let r = Rope::new(RopeStyle::Neox, 4, 10000.0, 1.0, None);
        let mut x = [1.0f32, 0.0, 0.0, 0.0];
        r.apply(&mut x, 4, 1);
        // pair (0, 2) rotated by theta = 1 rad
        assert!((x[0] - 1f32.cos()).abs() < 1e-6);
        assert!((x[2] - 1f32.sin()).abs() < 1e-6);
        let r = Rope::new(RopeStyle::Normal, 4, 10000.0, 1.0, None);
        let mut x = [1.0f32, 0.0, 0.0, 0.0];
        r.apply(&mut x, 4, 2);
        assert!((x[0] - 2f32.cos()).abs() < 1e-6);
        assert!((x[1] - 2f32.sin()).abs() < 1e-6);
        // position 0 is the identity
        let mut y = [0.3f32, -0.2, 0.5, 0.9];
        let y0 = y;
        r.apply(&mut y, 4, 0);
        assert_eq!(y, y0);
    }

    #[test]
    fn softmax_sums_to_one() {
        let mut x = [1.0f32, 2.0, 3.0, f32::NEG_INFINITY];
        softmax(&mut x);
        let s: f32 = x.iter().sum();
        assert!((s - 1.0).abs() < 1e-6);
        assert_eq!(x[3], 0.0);
        assert!((x[2] / x[1] - 1f32.exp()).abs() < 1e-5);
    }

    #[test]
    fn activations() {
        assert!((silu(1.0) - 0.731_058_6).abs() < 1e-6);
        assert!((gelu_tanh(1.0) - 0.841_192).abs() < 1e-5);
        assert_eq!(gelu_tanh(0.0), 0.0);
    }

    #[test]
    fn dot_matches_naive() {
        let a: Vec<f32> = (0..37).map(|i| i as f32 * 0.5).collect();
        let b: Vec<f32> = (0..37).map(|i| 1.0 - i as f32 * 0.1).collect();
        let naive: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot_f32(&a, &b) - naive).abs() < 1e-3);
    }
}
