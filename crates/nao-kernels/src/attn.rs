//! Attention inner loop over an f16 KV cache: the query heads of one position that share a
//! KV head, in one online-softmax pass over their keys (Milakov & Gimelshein 2018; flash
//! attention), keys and values read from the cache as f16 and converted once for all those
//! heads, the weighted sum of values accumulated in f32 (as ggml's tiled CPU flash attention
//! accumulates it).
//!
//! Numerics, per query head (the same whatever else is computed alongside, so decode and
//! prefill give a token the same bits):
//! - `score = dot(k, q) · scale`, the dot summed as [`dot_f16_f32_lanes16`] for head sizes
//!   that are multiples of 32 (16 lanes, two alternating accumulators, halves folded), as
//!   [`dot_f16_f32`] otherwise;
//! - per key in order: a new maximum rescales what was accumulated by `ms = exp(old − new)`,
//!   otherwise the key weighs `vs = exp(score − max)`; `acc = fma(v, vs, acc)`,
//!   `sum = sum · ms + vs`; at the end `acc · (1 / sum)`.
//!
//! [`attend_heads`] runs this with AVX-512 for head sizes 64, 128 and 256 (keys and values
//! converted once per key for all heads of the group); [`attend_heads_scalar`] is its
//! bit-exact twin; other head sizes take a portable path with the same algorithm.

use half::f16;

#[cfg(target_arch = "x86_64")]
mod avx512;

/// One KV head inside the f16 cache: row `slot` of the keys starts at `slot * k_stride`,
/// and this head's `head_dim` values at `k_off` within it (likewise for values).
#[derive(Clone, Copy, Debug)]
pub struct KvHead<'a> {
    pub k: &'a [f16],
    pub v: &'a [f16],
    pub k_stride: usize,
    pub v_stride: usize,
    pub k_off: usize,
    pub v_off: usize,
    pub head_dim: usize,
    pub head_dim_v: usize,
}

impl<'a> KvHead<'a> {
    fn key(&self, slot: usize) -> &'a [f16] {
        let at = slot * self.k_stride + self.k_off;
        &self.k[at..at + self.head_dim]
    }

    fn value(&self, slot: usize) -> &'a [f16] {
        let at = slot * self.v_stride + self.v_off;
        &self.v[at..at + self.head_dim_v]
    }
}

/// `g` query heads (`q`: `[g, head_dim]`, `g = q.len() / head_dim`) that share the KV head
/// `kv`, against its cache rows `slots` (in order): `out[h] = softmax(q[h]·K · scale) V`
/// (`out`: `[g, head_dim_v]`). Numerics in the module doc.
///
/// Panics if a slot lies outside the cache or `out` is shorter than `g · head_dim_v`
/// (caller bugs, not input-dependent).
pub fn attend_heads(q: &[f32], kv: &KvHead<'_>, slots: &[usize], scale: f32, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if crate::dot::avx512_enabled() {
        // SAFETY: `avx512_enabled` reports AVX-512 F/BW/VL, AVX2, FMA and F16C.
        if unsafe { avx512::attend(q, kv, slots, scale, out) } {
            return;
        }
    }
    for_heads(q, kv, out, |qh, oh| {
        pass(qh, kv, slots, scale, oh, dot_f16_f32, acc_mad_f16)
    });
}

/// Scalar twin of [`attend_heads`], bit for bit for head sizes that are multiples of 32.
pub fn attend_heads_scalar(
    q: &[f32],
    kv: &KvHead<'_>,
    slots: &[usize],
    scale: f32,
    out: &mut [f32],
) {
    // (Remainder spelled out: `is_multiple_of` needs Rust 1.87, above the MSRV.)
    let tail = kv.head_dim % 32;
    let dot = if tail == 0 {
        dot_f16_f32_lanes16
    } else {
        dot_f16_f32_scalar
    };
    for_heads(q, kv, out, |qh, oh| {
        pass(qh, kv, slots, scale, oh, dot, acc_mad_f16_scalar)
    });
}

/// Calls `f(q_h, out_h)` for each head of the group.
fn for_heads(q: &[f32], kv: &KvHead<'_>, out: &mut [f32], f: impl Fn(&[f32], &mut [f32])) {
    if kv.head_dim == 0 {
        return;
    }
    for (qh, oh) in q
        .chunks_exact(kv.head_dim)
        .zip(out.chunks_exact_mut(kv.head_dim_v.max(1)))
    {
        f(qh, &mut oh[..kv.head_dim_v]);
    }
}

/// One head's pass with the given dot and accumulate kernels.
fn pass(
    q: &[f32],
    kv: &KvHead<'_>,
    slots: &[usize],
    scale: f32,
    acc: &mut [f32],
    dot: fn(&[f16], &[f32]) -> f32,
    mad: fn(&mut [f32], &[f16], f32),
) {
    let mut max = f32::NEG_INFINITY;
    let mut sum = 0.0f32;
    acc.iter_mut().for_each(|a| *a = 0.0);
    for &slot in slots {
        let score = dot(kv.key(slot), q) * scale;
        let (ms, vs) = online_step(score, &mut max);
        if ms != 1.0 {
            acc.iter_mut().for_each(|a| *a *= ms);
        }
        mad(acc, kv.value(slot), vs);
        sum = sum * ms + vs;
    }
    let inv = if sum == 0.0 { 0.0 } else { 1.0 / sum };
    acc.iter_mut().for_each(|a| *a *= inv);
}

/// One key's online-softmax factors: `(ms, vs)` = (rescale of what was accumulated, weight
/// of this key), updating the running max.
#[inline]
fn online_step(score: f32, max: &mut f32) -> (f32, f32) {
    if score > *max {
        let ms = exp_f32(*max - score);
        *max = score;
        (ms, 1.0)
    } else {
        (1.0, exp_f32(score - *max))
    }
}

/// Range reduction by ln 2 in two parts (Cody & Waite): `ln 2 = C1 + C2`, `C1` exact in a
/// few bits so that `n·C1` is exact.
pub(crate) const EXP_C1: f32 = 0.693_359_4;
pub(crate) const EXP_C2: f32 = -2.121_944_4e-4;
/// Minimax polynomial for `(eʳ − 1 − r) / r²` on `|r| ≤ ln 2 / 2` (Cephes' `expf`).
pub(crate) const EXP_P: [f32; 6] = [
    1.987_569_1e-4,
    1.398_2e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    0.166_666_65,
    0.5,
];
/// Below this, `eˣ` is under the smallest normal f32; the result is 0.
pub(crate) const EXP_MIN: f32 = -87.336_55;

/// `eˣ` for the online softmax's arguments (`x ≤ 0`), within 2 ulp of the true value,
/// flushing results below the smallest normal to 0 (and defined for `x ≤ 0` only: the
/// AVX-512 kernel, which evaluates the same operations 16 lanes at a time and so gives the
/// same bits, does not handle overflow): `n = round(x · log₂e)`,
/// `r = x − n·C1 − n·C2`, `y = 1 + r + r²·P(r)`, `eˣ = y · 2ⁿ`.
pub fn exp_f32(x: f32) -> f32 {
    let n = (x * std::f32::consts::LOG2_E).round_ties_even();
    let r = n.mul_add(-EXP_C2, n.mul_add(-EXP_C1, x));
    let mut p = EXP_P[0];
    for &c in &EXP_P[1..] {
        p = p.mul_add(r, c);
    }
    let y = p.mul_add(r * r, r) + 1.0;
    if x < EXP_MIN {
        return 0.0;
    }
    if x.is_nan() || n > 127.0 {
        return y * f32::INFINITY;
    }
    y * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// `sum(k[i] * q[i])` in the AVX-512 kernel's order: 16 lanes, 16-element chunks
/// alternating between two accumulators (fused multiply-adds), the accumulators added,
/// then halves folded (8, 4, 2, 1 lanes). `k.len()` must be a multiple of 32.
pub fn dot_f16_f32_lanes16(k: &[f16], q: &[f32]) -> f32 {
    let mut s = [[0.0f32; 16]; 2];
    for (c, (kc, qc)) in k.chunks_exact(16).zip(q.chunks_exact(16)).enumerate() {
        for ((a, &k), &q) in s[c % 2].iter_mut().zip(kc).zip(qc) {
            *a = k.to_f32().mul_add(q, *a);
        }
    }
    let t: [f32; 16] = std::array::from_fn(|i| s[0][i] + s[1][i]);
    let t8: [f32; 8] = std::array::from_fn(|i| t[i] + t[i + 8]);
    let t4: [f32; 4] = std::array::from_fn(|i| t8[i] + t8[i + 4]);
    let t2: [f32; 2] = std::array::from_fn(|i| t4[i] + t4[i + 2]);
    t2[0] + t2[1]
}

/// `sum(k[i] * q[i])` with `k` in f16 (AVX2 where available; summation order unspecified).
pub fn dot_f16_f32(k: &[f16], q: &[f32]) -> f32 {
    debug_assert_eq!(k.len(), q.len());
    #[cfg(target_arch = "x86_64")]
    if has_avx2_f16c() {
        // SAFETY: AVX2, FMA and F16C were detected at runtime just above.
        return unsafe { x86::dot_f16_f32(k, q) };
    }
    dot_f16_f32_scalar(k, q)
}

/// Scalar twin of [`dot_f16_f32`].
pub fn dot_f16_f32_scalar(k: &[f16], q: &[f32]) -> f32 {
    k.iter().zip(q).map(|(&k, &q)| k.to_f32() * q).sum()
}

/// `acc[i] = fma(v[i], vs, acc[i])` (AVX2 where available, bit-identical to the twin).
pub fn acc_mad_f16(acc: &mut [f32], v: &[f16], vs: f32) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_f16c() {
        // SAFETY: AVX2, FMA and F16C were detected at runtime just above.
        unsafe { x86::acc_mad_f16(acc, v, vs) };
        return;
    }
    acc_mad_f16_scalar(acc, v, vs)
}

/// Scalar twin of [`acc_mad_f16`].
pub fn acc_mad_f16_scalar(acc: &mut [f32], v: &[f16], vs: f32) {
    for (a, &v) in acc.iter_mut().zip(v) {
        *a = v.to_f32().mul_add(vs, *a);
    }
}

#[cfg(target_arch = "x86_64")]
fn has_avx2_f16c() -> bool {
    use std::sync::OnceLock;
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("fma")
            && std::is_x86_feature_detected!("f16c")
    })
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{acc_mad_f16_scalar, dot_f16_f32_scalar};
    use half::f16;
    use std::arch::x86_64::*;

    /// Loads 8 f16 values as f32.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn load8(p: &[f16]) -> __m256 {
        debug_assert!(p.len() >= 8);
        // SAFETY: `p` holds at least 8 f16 (16 bytes); unaligned load.
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p.as_ptr() as *const __m128i)) }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn dot_f16_f32(k: &[f16], q: &[f32]) -> f32 {
        let n = k.len().min(q.len());
        let main = n - n % 16;
        let mut s0 = _mm256_setzero_ps();
        let mut s1 = _mm256_setzero_ps();
        let mut i = 0;
        while i < main {
            // SAFETY: i + 16 <= n <= q.len(); unaligned loads.
            let (q0, q1) = unsafe {
                (
                    _mm256_loadu_ps(q.as_ptr().add(i)),
                    _mm256_loadu_ps(q.as_ptr().add(i + 8)),
                )
            };
            s0 = _mm256_fmadd_ps(load8(&k[i..]), q0, s0);
            s1 = _mm256_fmadd_ps(load8(&k[i + 8..]), q1, s1);
            i += 16;
        }
        let s = _mm256_add_ps(s0, s1);
        let hi = _mm256_extractf128_ps::<1>(s);
        let lo = _mm256_castps256_ps128(s);
        let s4 = _mm_add_ps(lo, hi);
        let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
        let s1 = _mm_add_ss(s2, _mm_shuffle_ps::<0b01>(s2, s2));
        _mm_cvtss_f32(s1) + dot_f16_f32_scalar(&k[main..n], &q[main..n])
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn acc_mad_f16(acc: &mut [f32], v: &[f16], vs: f32) {
        let n = acc.len().min(v.len());
        let main = n - n % 8;
        let vsv = _mm256_set1_ps(vs);
        let mut i = 0;
        while i < main {
            // SAFETY: i + 8 <= n <= acc.len(); unaligned load and store.
            unsafe {
                let p = acc.as_mut_ptr().add(i);
                let a = _mm256_fmadd_ps(load8(&v[i..]), vsv, _mm256_loadu_ps(p));
                _mm256_storeu_ps(p, a);
            }
            i += 8;
        }
        acc_mad_f16_scalar(&mut acc[main..n], &v[main..n], vs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rand_vec(n: usize, seed: u64, scale: f32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * scale
            })
            .collect()
    }

    #[test]
    fn dot_matches_scalar_twin_and_f64_reference() {
        for n in [0, 1, 7, 8, 15, 16, 17, 64, 100, 128, 256, 257] {
            let k: Vec<f16> = rand_vec(n, n as u64 + 1, 4.0)
                .iter()
                .map(|&x| f16::from_f32(x))
                .collect();
            let q = rand_vec(n, n as u64 + 99, 2.0);
            let reference: f64 = k.iter().zip(&q).map(|(&k, &q)| k.to_f64() * q as f64).sum();
            let tol = 1e-5 * (1.0 + n as f64);
            let fast = dot_f16_f32(&k, &q) as f64;
            let slow = dot_f16_f32_scalar(&k, &q) as f64;
            assert!(
                (fast - reference).abs() < tol,
                "n={n}: {fast} vs {reference}"
            );
            assert!(
                (slow - reference).abs() < tol,
                "n={n}: {slow} vs {reference}"
            );
        }
    }

    #[test]
    fn exp_is_close_to_f64_and_handles_the_edges() {
        let mut worst = 0.0f64;
        let mut x = -90.0f32;
        while x <= 0.0 {
            let got = exp_f32(x) as f64;
            let want = (x as f64).exp();
            if want >= f32::MIN_POSITIVE as f64 {
                let ulp = (want as f32).abs() as f64 * f32::EPSILON as f64;
                worst = worst.max((got - want).abs() / ulp);
            } else {
                assert_eq!(got, 0.0, "x={x}");
            }
            x += 0.0137;
        }
        assert!(worst <= 2.0, "worst error {worst} ulp");
        assert_eq!(exp_f32(0.0), 1.0);
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
        assert!(exp_f32(f32::NAN).is_nan());
        assert_eq!(exp_f32(-1e-30), 1.0);
    }

    #[test]
    fn acc_mad_is_bit_identical_to_scalar_twin() {
        for n in [1, 5, 8, 9, 64, 256, 259] {
            let v: Vec<f16> = rand_vec(n, n as u64, 8.0)
                .iter()
                .map(|&x| f16::from_f32(x))
                .collect();
            let start = rand_vec(n, n as u64 + 7, 8.0);
            let mut fast = start.clone();
            let mut slow = start.clone();
            acc_mad_f16(&mut fast, &v, 0.37);
            acc_mad_f16_scalar(&mut slow, &v, 0.37);
            assert_eq!(fast, slow, "n={n}");
            for i in 0..n {
                let want = v[i].to_f64() * 0.37f32 as f64 + start[i] as f64;
                assert!(
                    (slow[i] as f64 - want).abs() <= 1e-6 * (1.0 + want.abs()),
                    "i={i}"
                );
            }
        }
    }

    #[test]
    fn attend_matches_twin_bit_for_bit_and_softmax_reference() {
        let n_kv = 2;
        let n_rows = 120;
        for (hd, exact) in [(64, true), (128, true), (256, true), (80, false)] {
            let stride = n_kv * hd;
            let k: Vec<f16> = rand_vec(n_rows * stride, hd as u64, 4.0)
                .iter()
                .map(|&x| f16::from_f32(x))
                .collect();
            let v: Vec<f16> = rand_vec(n_rows * stride, hd as u64 + 5, 4.0)
                .iter()
                .map(|&x| f16::from_f32(x))
                .collect();
            for (n_slots, g, seed) in [
                (0usize, 1usize, 1u64),
                (1, 3, 2),
                (9, 1, 3),
                (17, 6, 4),
                (100, 4, 5),
            ] {
                // Slots out of order, as a paged cache hands them out.
                let slots: Vec<usize> = (0..n_slots)
                    .map(|i| (i * 37 + seed as usize) % n_rows)
                    .collect();
                let q = rand_vec(g * hd, seed + 11, 1.0);
                let kv = KvHead {
                    k: &k,
                    v: &v,
                    k_stride: stride,
                    v_stride: stride,
                    k_off: hd,
                    v_off: hd,
                    head_dim: hd,
                    head_dim_v: hd,
                };
                let scale = 1.0 / (hd as f32).sqrt();
                let mut fast = vec![f32::NAN; g * hd];
                let mut twin = vec![f32::NAN; g * hd];
                attend_heads(&q, &kv, &slots, scale, &mut fast);
                attend_heads_scalar(&q, &kv, &slots, scale, &mut twin);
                for h in 0..g {
                    // A head alone gives the same bits as within its group.
                    let mut one = vec![f32::NAN; hd];
                    attend_heads(&q[h * hd..(h + 1) * hd], &kv, &slots, scale, &mut one);
                    assert_eq!(
                        one[..],
                        fast[h * hd..(h + 1) * hd],
                        "hd={hd} n={n_slots} h={h}"
                    );
                    // Plain softmax in f64 as the independent reference.
                    let qh = &q[h * hd..(h + 1) * hd];
                    let scores: Vec<f64> = slots
                        .iter()
                        .map(|&sl| {
                            kv.key(sl)
                                .iter()
                                .zip(qh)
                                .map(|(&a, &b)| a.to_f64() * b as f64)
                                .sum::<f64>()
                                * scale as f64
                        })
                        .collect();
                    let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let z: f64 = scores.iter().map(|s| (s - m).exp()).sum();
                    for d in 0..hd {
                        let want = if slots.is_empty() {
                            0.0
                        } else {
                            slots
                                .iter()
                                .zip(&scores)
                                .map(|(&sl, s)| (s - m).exp() / z * kv.value(sl)[d].to_f64())
                                .sum::<f64>()
                        };
                        let tol = 1e-5 * (1.0 + want.abs()) * (1.0 + n_slots as f64);
                        for (name, got) in [("twin", twin[h * hd + d]), ("fast", fast[h * hd + d])]
                        {
                            assert!(
                                (got as f64 - want).abs() <= tol,
                                "{name} hd={hd} n={n_slots} h={h} d={d}: {got} vs {want}"
                            );
                        }
                    }
                }
                if exact {
                    assert_eq!(fast, twin, "hd={hd} n={n_slots}");
                }
            }
        }
    }
}
