//! Attention inner-loop kernels over an f16 KV cache, with ggml's CPU flash-attention
//! numerics: the query·key dot reads f16 keys directly, and the value accumulator is kept at
//! f16 precision (rounded to nearest-even after every rescale and every update), as
//! `ggml_vec_mad_f16` / `ggml_vec_scale_f16` leave it.
//!
//! Each kernel has a scalar twin; the AVX2+FMA+F16C versions are bit-identical to it (same
//! fused multiply-adds, same conversions) except `dot_f16_f32`, whose summation order
//! differs (tested within float tolerance).
//!
//! [`attend_f16`] is one query head's whole pass over its keys. With AVX-512 and head sizes
//! 64, 128 or 256 it keeps the value accumulator in registers for the whole pass (instead of
//! loading and storing it per key) and scores keys eight at a time before folding them in
//! one by one; [`attend_f16_scalar`] is its bit-exact twin (the dot products summed in the
//! kernel's 16-lane order).

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

/// One query head against the keys/values in cache rows `slots` (in order):
/// `acc = softmax(q·K · scale) V`, one pass with a running max, the value accumulator kept
/// at f16 precision as ggml's CPU flash attention keeps it.
///
/// Panics if a slot lies outside the cache or `q`/`acc` are shorter than the head sizes
/// (caller bugs, not input-dependent).
pub fn attend_f16(q: &[f32], kv: &KvHead<'_>, slots: &[usize], scale: f32, acc: &mut [f32]) {
    let q = &q[..kv.head_dim];
    let acc = &mut acc[..kv.head_dim_v];
    #[cfg(target_arch = "x86_64")]
    if crate::dot::avx512_enabled() {
        // SAFETY: `avx512_enabled` reports AVX-512 F/BW/VL, AVX2, FMA and F16C.
        let done = unsafe { avx512::attend(q, kv, slots, scale, acc) };
        if done {
            return;
        }
    }
    attend_with(q, kv, slots, scale, acc, dot_f16_f32, acc_update_f16)
}

/// Scalar twin of [`attend_f16`]: for head sizes that are multiples of 32 the dot products
/// are summed in the AVX-512 kernel's order (bit-identical results), otherwise as
/// [`dot_f16_f32_scalar`].
pub fn attend_f16_scalar(q: &[f32], kv: &KvHead<'_>, slots: &[usize], scale: f32, acc: &mut [f32]) {
    let q = &q[..kv.head_dim];
    let acc = &mut acc[..kv.head_dim_v];
    // (Remainder spelled out: `is_multiple_of` needs Rust 1.87, above the MSRV.)
    let tail = kv.head_dim % 32;
    let dot = if tail == 0 {
        dot_f16_f32_lanes16
    } else {
        dot_f16_f32_scalar
    };
    attend_with(q, kv, slots, scale, acc, dot, acc_update_f16_scalar)
}

/// The online-softmax pass with the given dot and accumulator-update kernels.
fn attend_with(
    q: &[f32],
    kv: &KvHead<'_>,
    slots: &[usize],
    scale: f32,
    acc: &mut [f32],
    dot: fn(&[f16], &[f32]) -> f32,
    update: fn(&mut [f32], &[f16], f32, f32),
) {
    let mut max = f32::NEG_INFINITY;
    let mut sum = 0.0f32;
    acc.iter_mut().for_each(|a| *a = 0.0);
    for &slot in slots {
        let score = dot(kv.key(slot), q) * scale;
        let (ms, vs) = online_step(score, &mut max);
        update(acc, kv.value(slot), vs, ms);
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
        let ms = (*max - score).exp();
        *max = score;
        (ms, 1.0)
    } else {
        (1.0, (score - *max).exp())
    }
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

/// `sum(k[i] * q[i])` with `k` in f16.
pub fn dot_f16_f32(k: &[f16], q: &[f32]) -> f32 {
    debug_assert_eq!(k.len(), q.len());
    #[cfg(target_arch = "x86_64")]
    if has_avx2_f16c() {
        // SAFETY: AVX2, FMA and F16C were detected at runtime just above.
        return unsafe { x86::dot_f16_f32(k, q) };
    }
    dot_f16_f32_scalar(k, q)
}

/// `acc = round16(round16(acc * ms) + v * vs)` element-wise, skipping the rescale when
/// `ms == 1` (as ggml does): one online-softmax update of an f16-precision accumulator.
pub fn acc_update_f16(acc: &mut [f32], v: &[f16], vs: f32, ms: f32) {
    debug_assert_eq!(acc.len(), v.len());
    #[cfg(target_arch = "x86_64")]
    if has_avx2_f16c() {
        // SAFETY: AVX2, FMA and F16C were detected at runtime just above.
        unsafe { x86::acc_update_f16(acc, v, vs, ms) };
        return;
    }
    acc_update_f16_scalar(acc, v, vs, ms)
}

/// Scalar twin of [`dot_f16_f32`].
pub fn dot_f16_f32_scalar(k: &[f16], q: &[f32]) -> f32 {
    k.iter().zip(q).map(|(&k, &q)| k.to_f32() * q).sum()
}

fn round16(x: f32) -> f32 {
    f16::from_f32(x).to_f32()
}

/// Scalar twin of [`acc_update_f16`].
pub fn acc_update_f16_scalar(acc: &mut [f32], v: &[f16], vs: f32, ms: f32) {
    for (a, &v) in acc.iter_mut().zip(v) {
        let mut x = *a;
        if ms != 1.0 {
            x = round16(x * ms);
        }
        *a = round16(v.to_f32().mul_add(vs, x));
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
    use super::{acc_update_f16_scalar, dot_f16_f32_scalar};
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

    /// Rounds 8 f32 lanes to f16 precision (nearest-even) and back.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn round8(x: __m256) -> __m256 {
        _mm256_cvtph_ps(_mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(x))
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
    pub(super) fn acc_update_f16(acc: &mut [f32], v: &[f16], vs: f32, ms: f32) {
        let n = acc.len().min(v.len());
        let main = n - n % 8;
        let vsv = _mm256_set1_ps(vs);
        let msv = _mm256_set1_ps(ms);
        let rescale = ms != 1.0;
        let mut i = 0;
        while i < main {
            // SAFETY: i + 8 <= n <= acc.len(); unaligned load and store.
            unsafe {
                let p = acc.as_mut_ptr().add(i);
                let mut a = _mm256_loadu_ps(p);
                if rescale {
                    a = round8(_mm256_mul_ps(a, msv));
                }
                a = round8(_mm256_fmadd_ps(load8(&v[i..]), vsv, a));
                _mm256_storeu_ps(p, a);
            }
            i += 8;
        }
        acc_update_f16_scalar(&mut acc[main..n], &v[main..n], vs, ms);
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
    fn acc_update_is_bit_identical_to_scalar_twin() {
        for n in [1, 5, 8, 9, 64, 256, 259] {
            for (vs, ms) in [(0.3f32, 1.0f32), (1.0, 0.25), (0.0123, 0.9876)] {
                let v: Vec<f16> = rand_vec(n, n as u64, 8.0)
                    .iter()
                    .map(|&x| f16::from_f32(x))
                    .collect();
                let start: Vec<f32> = rand_vec(n, n as u64 + 7, 8.0)
                    .iter()
                    .map(|&x| round16(x))
                    .collect();
                let mut fast = start.clone();
                let mut slow = start.clone();
                acc_update_f16(&mut fast, &v, vs, ms);
                acc_update_f16_scalar(&mut slow, &v, vs, ms);
                assert_eq!(fast, slow, "n={n} vs={vs} ms={ms}");
                // And the twin is what the formula says, checked in f64 then rounded.
                for i in 0..n {
                    let mut x = start[i] as f64;
                    if ms != 1.0 {
                        x = round16((x * ms as f64) as f32) as f64;
                    }
                    let want = round16((v[i].to_f64() * vs as f64 + x) as f32);
                    // f64 then f32 rounding can differ from one fused rounding by one f16
                    // ulp at most.
                    let ulp = f16::from_f32(want).to_f32().abs().max(6.1e-5) / 1024.0;
                    assert!((slow[i] - want).abs() <= ulp, "i={i}");
                }
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
            for (n_slots, seed) in [(0usize, 1u64), (1, 2), (9, 3), (17, 4), (100, 5)] {
                // Slots out of order, as a paged cache hands them out.
                let slots: Vec<usize> = (0..n_slots)
                    .map(|i| (i * 37 + seed as usize) % n_rows)
                    .collect();
                let q: Vec<f32> = rand_vec(hd, seed + 11, 1.0)
                    .iter()
                    .map(|&x| round16(x))
                    .collect();
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
                let mut fast = vec![f32::NAN; hd];
                let mut twin = vec![f32::NAN; hd];
                attend_f16(&q, &kv, &slots, scale, &mut fast);
                attend_f16_scalar(&q, &kv, &slots, scale, &mut twin);
                // Plain softmax in f64 as the independent reference.
                let scores: Vec<f64> = slots
                    .iter()
                    .map(|&sl| {
                        kv.key(sl)
                            .iter()
                            .zip(&q)
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
                    // The accumulator is rounded to f16 after every key.
                    let tol = 4e-3 * (1.0 + want.abs()) * (1.0 + (n_slots as f64).sqrt());
                    assert!(
                        (twin[d] as f64 - want).abs() <= tol,
                        "hd={hd} n={n_slots} d={d}: {} vs {want}",
                        twin[d]
                    );
                    assert!(
                        (fast[d] as f64 - want).abs() <= tol,
                        "hd={hd} n={n_slots} d={d}: {} vs {want}",
                        fast[d]
                    );
                }
                if exact {
                    assert_eq!(fast, twin, "hd={hd} n={n_slots}");
                }
            }
        }
    }
}
