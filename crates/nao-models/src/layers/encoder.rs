//! Layers of encoder-only (BERT-family) models: LayerNorm with bias, exact (erf) GELU, and
//! bidirectional attention over a packed batch.
//!
//! A batch of sequences is *packed*: their tokens are concatenated, `[n_tokens, n_embd]`,
//! and each sequence's range is given separately. Attention runs per sequence over its own
//! keys only, which is exactly what a padded batch with an attention mask computes for the
//! real tokens (masked keys get probability 0), without computing the pad rows. Every row
//! is therefore bit-identical whether its sequence runs alone or in a batch.

use crate::layers::Compute;
use nao_kernels::ops::{dot_f32, softmax};
use nao_kernels::pool::SharedMut;
use std::ops::Range;

/// `y = (x - mean) / sqrt(var + eps) * w + b` per row (Ba et al. 2016,
/// <https://arxiv.org/abs/1607.06450>; PyTorch's `nn.LayerNorm`, biased variance).
pub struct LayerNorm {
    pub w: Vec<f32>, // [n_embd]
    pub b: Vec<f32>, // [n_embd]
    pub eps: f32,
}

impl LayerNorm {
    /// Normalises each row of `x` (`[n, w.len()]`) in place. Sums in f64 so the result
    /// does not depend on summation order (and matches PyTorch's to f32 rounding).
    pub fn forward(&self, x: &mut [f32]) {
        let d = self.w.len();
        if d == 0 {
            return;
        }
        for row in x.chunks_exact_mut(d) {
            let mean = row.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
            let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / d as f64;
            let inv = 1.0 / (var + self.eps as f64).sqrt();
            for ((v, &w), &b) in row.iter_mut().zip(&self.w).zip(&self.b) {
                *v = ((*v as f64 - mean) * inv) as f32 * w + b;
            }
        }
    }
}

/// GELU in its exact form, `x/2 · (1 + erf(x/√2))` (Hendrycks & Gimpel 2016,
/// <https://arxiv.org/abs/1606.08415>), as Hugging Face's BERT `"gelu"` computes it.
/// Uses [`erf_fast`]: its 1.5e-7 absolute error is about one f32 ulp of the result, and
/// the series in [`erf`] costs dozens of divisions per element (it dominated the encoder).
pub fn gelu_erf(x: f32) -> f32 {
    let x = x as f64;
    (0.5 * x * (1.0 + erf_fast(x * std::f64::consts::FRAC_1_SQRT_2))) as f32
}

/// erf to 1.5e-7 absolute error with one `exp`: Abramowitz & Stegun 7.1.26.
pub fn erf_fast(x: f64) -> f64 {
    const P: f64 = 0.327_591_1;
    const A: [f64; 5] = [
        0.254_829_592,
        -0.284_496_736,
        1.421_413_741,
        -1.453_152_027,
        1.061_405_429,
    ];
    let a = x.abs();
    let t = 1.0 / (1.0 + P * a);
    let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
    (1.0 - poly * (-a * a).exp()).copysign(x)
}

/// The error function, to about 1e-15: the Maclaurin series below |x| = 2.5, beyond that
/// the continued fraction for erfc (Abramowitz & Stegun 7.1.5 and 7.1.14). Rust's std has
/// no stable `erf`.
pub fn erf(x: f64) -> f64 {
    let a = x.abs();
    let r = if a < 2.5 {
        // erf(x) = 2/√π Σ (-1)^n x^(2n+1) / (n! (2n+1))
        let (mut term, mut sum, x2) = (a, a, a * a);
        for n in 1..60 {
            term *= -x2 / n as f64;
            let t = term / (2 * n + 1) as f64;
            sum += t;
            if t.abs() < 1e-17 * sum.abs() {
                break;
            }
        }
        sum * std::f64::consts::FRAC_2_SQRT_PI
    } else if a < 6.0 {
        // erfc(x) = e^{-x²}/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + 2/(x + …))))),
        // evaluated bottom-up with 60 terms (converges fast for x ≥ 2.5).
        let mut f = a;
        for k in (1..60).rev() {
            f = a + (k as f64 / 2.0) / f;
        }
        1.0 - (-a * a).exp() / (f * std::f64::consts::PI.sqrt())
    } else {
        1.0
    };
    r.copysign(x)
}

/// Bidirectional multi-head attention over a packed batch.
///
/// `q`, `k`, `v`: `[n_tokens, n_head * head_dim]`; `seqs`: each sequence's token range.
/// Returns `[n_tokens, n_head * head_dim]`, the softmax(q·kᵀ·scale)·v of each head over its
/// own sequence's keys. Work is split over (sequence, head) pairs on the pool.
pub fn attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    seqs: &[Range<usize>],
    n_head: usize,
    head_dim: usize,
    c: &Compute,
) -> Vec<f32> {
    let d = n_head * head_dim;
    let n_tokens = q.len() / d.max(1);
    let mut out = vec![0.0f32; n_tokens * d]; // [n_tokens, n_head * head_dim]
    let scale = 1.0 / (head_dim as f32).sqrt();
    let shared = SharedMut::new(&mut out);
    c.pool.for_chunks(seqs.len() * n_head, &|job| {
        let (s, h) = (job / n_head, job % n_head);
        let Some(r) = seqs.get(s) else { return };
        let col = h * head_dim..(h + 1) * head_dim;
        let mut scores = vec![0.0f32; r.len()]; // [len]
        let mut acc = vec![0.0f32; head_dim]; // [head_dim]
        for i in r.clone() {
            let qi = &q[i * d..][col.clone()];
            for (sj, j) in scores.iter_mut().zip(r.clone()) {
                *sj = dot_f32(qi, &k[j * d..][col.clone()]) * scale;
            }
            softmax(&mut scores);
            acc.iter_mut().for_each(|a| *a = 0.0);
            for (&p, j) in scores.iter().zip(r.clone()) {
                nao_kernels::ops::axpy(p, &v[j * d..][col.clone()], &mut acc);
            }
            for (e, &a) in acc.iter().enumerate() {
                // Each (sequence, head) job owns its rows' column block: disjoint writes.
                shared.write(i * d + col.start + e, a);
            }
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference values: erf from Abramowitz & Stegun table 7.1 / mpmath.
    #[test]
    fn erf_matches_tables() {
        let cases = [
            (0.0, 0.0),
            (0.1, 0.112_462_916_018_284_9),
            (0.5, 0.520_499_877_813_046_5),
            (1.0, 0.842_700_792_949_714_9),
            (2.0, 0.995_322_265_018_952_7),
            (2.5, 0.999_593_047_982_555),
            (3.0, 0.999_977_909_503_001_4),
            (4.0, 0.999_999_984_582_742_1),
            (-1.5, -0.966_105_146_475_310_7),
        ];
        for (x, want) in cases {
            assert!((erf(x) - want).abs() < 1e-13, "erf({x}) = {}", erf(x));
        }
    }

    /// The fast form stays within its documented bound of the accurate one.
    #[test]
    fn erf_fast_within_bound() {
        for i in -800..=800 {
            let x = i as f64 / 100.0;
            assert!((erf_fast(x) - erf(x)).abs() < 1.5e-7, "x = {x}");
        }
    }

    #[test]
    fn gelu_erf_values() {
        // x·Φ(x): Φ(1) = 0.841344746068543, Φ(-2) = 0.022750131948179
        assert!((gelu_erf(1.0) as f64 - 0.841_344_746).abs() < 2e-7);
        assert!((gelu_erf(-2.0) as f64 + 0.045_500_264).abs() < 2e-7);
        assert_eq!(gelu_erf(0.0), 0.0);
    }

    #[test]
    fn layer_norm_by_hand() {
        // [1, 2, 3, 4]: mean 2.5, biased var 1.25.
        let ln = LayerNorm {
            w: vec![2.0; 4],
            b: vec![1.0; 4],
            eps: 0.0,
        };
        let mut x = vec![1.0, 2.0, 3.0, 4.0];
        ln.forward(&mut x);
        let s = 1.25f64.sqrt();
        for (got, v) in x.iter().zip([1.0, 2.0, 3.0, 4.0]) {
            let want = ((v - 2.5) / s * 2.0 + 1.0) as f32;
            assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        }
    }

    /// Two sequences packed: each token attends only to its own sequence. With one head of
    /// size 1 and equal scores, the output is the mean of that sequence's values.
    #[test]
    fn attention_stays_within_sequences() {
        let c = Compute::new(2);
        let q = vec![0.0; 5];
        let k = vec![0.0; 5];
        let v = vec![1.0, 3.0, 10.0, 20.0, 30.0];
        let out = attention(&q, &k, &v, &[0..2, 2..5], 1, 1, &c);
        assert_eq!(out, [2.0, 2.0, 20.0, 20.0, 20.0]);
    }
}
