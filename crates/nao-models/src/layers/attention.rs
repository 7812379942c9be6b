//! Multi-head attention with grouped KV heads (GQA), optional per-head q/k RMS norms,
//! RoPE, an optional sliding window, over the paged KV cache of [`crate::layers::kv`].
//!
//! Scores are computed one query row at a time (no n_ctx × n_ctx matrix); heads are split
//! across the thread pool, and each query runs one online-softmax pass over its keys
//! (Milakov & Gimelshein 2018, https://arxiv.org/abs/1805.02867; flash attention).
//!
//! Numerics follow ggml's CPU flash attention as it runs on prompt batches (its tiled path):
//! keys and values are cached in f16 (half the memory of f32), queries are rounded to f16
//! (as ggml's one-token path rounds them), and the
//! weighted sum of values is accumulated in f32. Unlike ggml, nao uses the same per-key
//! computation for one token as for a batch (see [`nao_kernels::attn`]), so a token's
//! attention output does not depend on how its prompt was chunked or batched.

use crate::layers::kv::{LayerCache, Rows};
use crate::layers::{Compute, Linear};
use crate::ModelError;
use half::f16;
use half::slice::HalfFloatSliceExt;
use nao_kernels::attn::{attend_heads, KvHead};
use nao_kernels::ops::{rms_norm_chunks, Rope};
use nao_kernels::pool::SharedMut;

/// Head counts and sizes of one attention layer.
#[derive(Debug, Clone, Copy)]
pub struct AttnShape {
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub head_dim_v: usize,
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
    /// `x`: `[n, n_embd]`, one row per entry of `rows` (which says each row's sequence and
    /// position) → `[n, n_embd]`. Every row's keys and values are stored first; then each
    /// row attends to its own sequence's positions up to and including its own.
    pub(crate) fn forward(
        &self,
        x: &[f32],
        rows: &Rows,
        cache: &mut LayerCache,
        c: &mut Compute,
    ) -> Result<Vec<f32>, ModelError> {
        let s = self.shape;
        let n = rows.len();
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
        for (i, &(seq, p)) in rows.rows.iter().enumerate() {
            let (qi, ki) = (&mut q[i * qd..(i + 1) * qd], &mut k[i * kd..(i + 1) * kd]);
            self.rope.apply_qk(qi, ki, s.head_dim, p);
            let slot = rows.slot(seq, p);
            cache.k[slot * kd..(slot + 1) * kd].convert_from_f32_slice(&k[i * kd..(i + 1) * kd]);
            cache.v[slot * vd..(slot + 1) * vd].convert_from_f32_slice(&v[i * vd..(i + 1) * vd]);
        }
        // Round queries to f16 precision, as the cached keys are (ggml converts the query
        // to the KV type for the score dot product).
        let mut q16 = vec![f16::ZERO; q.len()];
        q16.convert_from_f32_slice(&q);
        q16.convert_to_f32_slice(&mut q);

        let od = s.n_head * s.head_dim_v;
        let mut out = vec![0.0f32; n * od]; // [n, n_head * head_dim_v]
        let w = SharedMut::new(&mut out);
        let group = s.n_head / s.n_head_kv;
        // A job is one position's query heads that share a KV head (keys and values are
        // converted once for them); with few positions (decode) the heads are split so that
        // every thread gets work. Each head's result does not depend on the split.
        let split = if n * s.n_head_kv < 2 * c.pool.n_threads() {
            group
        } else {
            1
        };
        let per_job = group / split;
        let (ck, cv) = (&cache.k, &cache.v);
        let q = &q;
        c.pool.for_ranges(n * s.n_head_kv * split, &|range| {
            let mut slots = Vec::new();
            let mut slots_of = usize::MAX;
            for job in range {
                let i = job / (s.n_head_kv * split);
                let kh = job / split % s.n_head_kv;
                let h0 = kh * group + job % split * per_job;
                if slots_of != i {
                    // Cache rows this query attends to, shared by its heads.
                    let (seq, p) = rows.rows[i];
                    let lo = match self.window {
                        Some(win) if win > 0 => (p + 1).saturating_sub(win),
                        _ => 0,
                    };
                    slots.clear();
                    slots.extend((lo..=p).map(|kp| rows.slot(seq, kp)));
                    slots_of = i;
                }
                let kv = KvHead {
                    k: ck,
                    v: cv,
                    k_stride: kd,
                    v_stride: vd,
                    k_off: kh * s.head_dim,
                    v_off: kh * s.head_dim_v,
                    head_dim: s.head_dim,
                    head_dim_v: s.head_dim_v,
                };
                let qh = &q[i * qd + h0 * s.head_dim..i * qd + (h0 + per_job) * s.head_dim];
                let base = i * od + h0 * s.head_dim_v;
                // SAFETY: jobs cover disjoint (position, head range) pairs, so this output
                // range is written by this job alone; `out` outlives the pool call.
                let dst = unsafe { w.slice_mut(base..base + per_job * s.head_dim_v) };
                attend_heads(qh, &kv, &slots, self.scale, dst);
            }
        });
        self.o.apply(&out, n, c)
    }
}
