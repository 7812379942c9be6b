//! Multi-head attention with grouped KV heads (GQA), optional per-head q/k RMS norms,
//! RoPE, an optional sliding window, and a contiguous per-layer KV cache.
//!
//! Scores are computed one query row at a time (no n_ctx × n_ctx matrix); heads are split
//! across the thread pool.

use crate::layers::{Compute, Linear};
use crate::ModelError;
use nao_kernels::ops::{axpy, dot_f32, rms_norm_chunks, softmax, Rope};
use nao_kernels::pool::SharedMut;

/// Head counts and sizes of one attention layer.
#[derive(Debug, Clone, Copy)]
pub struct AttnShape {
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub head_dim_v: usize,
}

/// Cached keys and values of one layer: `k` is `[n_ctx, n_head_kv * head_dim]`, `v` is
/// `[n_ctx, n_head_kv * head_dim_v]`.
pub struct LayerCache {
    k: Vec<f32>,
    v: Vec<f32>,
}

/// The KV cache of a whole model for one sequence.
pub struct KvCache {
    pub layers: Vec<LayerCache>,
    pub n_ctx: usize,
}

impl KvCache {
    /// Allocates room for `n_ctx` positions of `n_layer` layers.
    pub fn new(n_layer: usize, n_ctx: usize, kv_dim: usize, kv_dim_v: usize) -> KvCache {
        let layers = (0..n_layer)
            .map(|_| LayerCache {
                k: vec![0.0; n_ctx * kv_dim],
                v: vec![0.0; n_ctx * kv_dim_v],
            })
            .collect();
        KvCache { layers, n_ctx }
    }

    /// Bytes held by the cache.
    pub fn n_bytes(&self) -> usize {
        self.layers
            .iter()
            .map(|l| (l.k.len() + l.v.len()) * 4)
            .sum()
    }
}

/// One attention layer: projections, norms, RoPE, and the attention core.
pub struct Attention {
    pub q: Linear,                // [n_head * head_dim, n_embd]
    pub k: Linear,                // [n_head_kv * head_dim, n_embd]
    pub v: Linear,                // [n_head_kv * head_dim_v, n_embd]
    pub o: Linear,                // [n_embd, n_head * head_dim_v]
    pub q_norm: Option<Vec<f32>>, // [head_dim]
    pub k_norm: Option<Vec<f32>>, // [head_dim]
    pub norm_eps: f32,
    pub rope: Rope,
    pub shape: AttnShape,
    /// Multiplies q·k (usually 1/√head_dim).
    pub scale: f32,
    /// Keys more than `window - 1` positions back are invisible (sliding-window layers).
    pub window: Option<usize>,
}

impl Attention {
    /// `x`: `[n, n_embd]` for positions `pos..pos+n` → `[n, n_embd]`.
    pub fn forward(
        &self,
        x: &[f32],
        n: usize,
        pos: usize,
        cache: &mut LayerCache,
        n_ctx: usize,
        c: &mut Compute,
    ) -> Result<Vec<f32>, ModelError> {
        let s = self.shape;
        if pos + n > n_ctx {
            return Err(ModelError::ContextFull {
                needed: pos + n,
                n_ctx,
            });
        }
        let mut q = self.q.apply(x, n, c)?; // [n, n_head * head_dim]
        let mut k = self.k.apply(x, n, c)?; // [n, n_head_kv * head_dim]
        let v = self.v.apply(x, n, c)?; // [n, n_head_kv * head_dim_v]
        if let Some(w) = &self.q_norm {
            rms_norm_chunks(&mut q, w, self.norm_eps);
        }
        if let Some(w) = &self.k_norm {
            rms_norm_chunks(&mut k, w, self.norm_eps);
        }
        let qd = s.n_head * s.head_dim;
        let kd = s.n_head_kv * s.head_dim;
        let vd = s.n_head_kv * s.head_dim_v;
        for i in 0..n {
            self.rope
                .apply(&mut q[i * qd..(i + 1) * qd], s.head_dim, pos + i);
            self.rope
                .apply(&mut k[i * kd..(i + 1) * kd], s.head_dim, pos + i);
        }
        if std::env::var_os("NAO_F16KV").is_some() {
            let r = |x: &mut [f32]| {
                x.iter_mut()
                    .for_each(|v| *v = half::f16::from_f32(*v).to_f32())
            };
            r(&mut k);
            let mut v = v.clone();
            r(&mut v);
            q.iter_mut().for_each(|v| *v *= self.scale);
            r(&mut q);
            cache.k[pos * kd..(pos + n) * kd].copy_from_slice(&k);
            cache.v[pos * vd..(pos + n) * vd].copy_from_slice(&v);
        } else {
            cache.k[pos * kd..(pos + n) * kd].copy_from_slice(&k);
            cache.v[pos * vd..(pos + n) * vd].copy_from_slice(&v);
        }

        let od = s.n_head * s.head_dim_v;
        let mut out = vec![0.0f32; n * od]; // [n, n_head * head_dim_v]
        let w = SharedMut::new(&mut out);
        let group = s.n_head / s.n_head_kv;
        let (ck, cv) = (&cache.k, &cache.v);
        let q = &q;
        c.pool.for_ranges(s.n_head * n, &|range| {
            let mut scores = Vec::new();
            let mut acc = vec![0.0f32; s.head_dim_v];
            for job in range {
                let (i, h) = (job / s.n_head, job % s.n_head);
                let p = pos + i;
                let lo = match self.window {
                    Some(win) if win > 0 => (p + 1).saturating_sub(win),
                    _ => 0,
                };
                let kh = h / group;
                let qh = &q[i * qd + h * s.head_dim..i * qd + (h + 1) * s.head_dim];
                if std::env::var_os("NAO_F16ACC").is_some() {
                    use half::f16;
                    let mut m = f32::NEG_INFINITY;
                    let mut sum = 0.0f32;
                    let mut vkq = vec![f16::ZERO; s.head_dim_v];
                    for kp in lo..=p {
                        let kr = &ck[kp * kd + kh * s.head_dim..kp * kd + (kh + 1) * s.head_dim];
                        let sc = dot_f32(qh, kr);
                        let mold = m;
                        let (ms, vs);
                        if sc > m {
                            m = sc;
                            ms = (mold - m).exp();
                            vs = 1.0f32;
                            for a in vkq.iter_mut() {
                                *a = f16::from_f32(a.to_f32() * ms);
                            }
                        } else {
                            ms = 1.0;
                            vs = (sc - m).exp();
                        }
                        let vr =
                            &cv[kp * vd + kh * s.head_dim_v..kp * vd + (kh + 1) * s.head_dim_v];
                        for (a, &x) in vkq.iter_mut().zip(vr) {
                            *a = f16::from_f32(a.to_f32() + x * vs);
                        }
                        sum = sum * ms + vs;
                    }
                    for (a, x) in acc.iter_mut().zip(&vkq) {
                        *a = x.to_f32() / sum;
                    }
                } else {
                    scores.clear();
                    for kp in lo..=p {
                        let kr = &ck[kp * kd + kh * s.head_dim..kp * kd + (kh + 1) * s.head_dim];
                        scores.push(
                            dot_f32(qh, kr)
                                * if std::env::var_os("NAO_F16KV").is_some() {
                                    1.0
                                } else {
                                    self.scale
                                },
                        );
                    }
                    softmax(&mut scores);
                    acc.iter_mut().for_each(|a| *a = 0.0);
                    for (j, kp) in (lo..=p).enumerate() {
                        let vr =
                            &cv[kp * vd + kh * s.head_dim_v..kp * vd + (kh + 1) * s.head_dim_v];
                        axpy(scores[j], vr, &mut acc);
                    }
                }
                let base = i * od + h * s.head_dim_v;
                for (d, &a) in acc.iter().enumerate() {
                    w.write(base + d, a);
                }
            }
        });
        self.o.apply(&out, n, c)
    }
}
