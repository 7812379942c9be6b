//! Sampler chain: turns one position's logits into a token id.
//!
//! The chain mirrors llama.cpp's default sampler order (`common/sampling.cpp`):
//! penalties → top-k → top-p → min-p → temperature → softmax → seeded draw. With
//! `temperature <= 0` the chain short-circuits to a greedy argmax after penalties.
//!
//! Each stage is a small function over [`Candidates`] (or over the raw logits, for the
//! penalties) so it can be tested alone with hand-computed expectations; [`Sampler`]
//! only wires them together and owns the reusable buffers, so a call over a
//! 262144-entry vocabulary allocates nothing after the first one.
//!
//! Non-finite logits never panic: NaN is treated as `-inf` (the token is impossible)
//! and `+inf` is clamped to `f32::MAX` (the token wins, ties share the mass).
//!
//! Randomness comes from [`Rng`], xoshiro256** seeded through splitmix64
//! (<https://prng.di.unimi.it/>), so a seed fixes the whole sequence of draws.

use std::cmp::Ordering;

/// Sampling parameters for one request. Field semantics follow llama.cpp's CLI.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplerConfig {
    /// Softmax temperature; `<= 0` means greedy argmax (after penalties).
    pub temperature: f32,
    /// Keep the `top_k` most likely tokens; 0 = off.
    pub top_k: usize,
    /// Nucleus sampling: keep the smallest prefix whose mass reaches `top_p`; 1.0 = off.
    pub top_p: f32,
    /// Keep tokens with `p >= min_p * p_max`; 0 = off.
    pub min_p: f32,
    /// llama.cpp repetition penalty (`logit > 0 ? logit / r : logit * r`); 1.0 = off.
    pub repeat_penalty: f32,
    /// How many of the most recent history tokens the penalties look at; 0 = off
    /// (as in llama.cpp, this window applies to all three penalties).
    pub repeat_last_n: usize,
    /// OpenAI presence penalty: subtracted once from every token seen in the window.
    pub presence_penalty: f32,
    /// OpenAI frequency penalty: subtracted `count` times for a token seen `count` times.
    pub frequency_penalty: f32,
    /// Seed of the draw; choosing a random one is the caller's job.
    pub seed: u64,
}

impl Default for SamplerConfig {
    /// llama.cpp CLI defaults. The seed is fixed at 0 here; callers that want a random
    /// seed pick one themselves.
    fn default() -> Self {
        SamplerConfig {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            seed: 0,
        }
    }
}

impl SamplerConfig {
    /// Greedy decoding: every other stage is irrelevant once temperature is 0.
    pub fn greedy() -> Self {
        SamplerConfig {
            temperature: 0.0,
            ..SamplerConfig::default()
        }
    }

    /// Rejects values no stage can give a meaning to.
    pub fn validate(&self) -> Result<(), SampleError> {
        let bad = |msg: String| Err(SampleError::InvalidConfig(msg));
        if self.temperature.is_nan() || self.temperature == f32::INFINITY {
            return bad(format!(
                "temperature must be finite, got {}",
                self.temperature
            ));
        }
        if !(0.0..=1.0).contains(&self.top_p) {
            return bad(format!("top_p must be in [0, 1], got {}", self.top_p));
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad(format!("min_p must be in [0, 1], got {}", self.min_p));
        }
        if !(self.repeat_penalty.is_finite() && self.repeat_penalty > 0.0) {
            return bad(format!(
                "repeat_penalty must be finite and > 0, got {}",
                self.repeat_penalty
            ));
        }
        if !self.presence_penalty.is_finite() {
            return bad(format!(
                "presence_penalty must be finite, got {}",
                self.presence_penalty
            ));
        }
        if !self.frequency_penalty.is_finite() {
            return bad(format!(
                "frequency_penalty must be finite, got {}",
                self.frequency_penalty
            ));
        }
        Ok(())
    }

    /// The penalty stage this config describes.
    pub fn penalties(&self) -> Penalties {
        Penalties {
            repeat: self.repeat_penalty,
            presence: self.presence_penalty,
            frequency: self.frequency_penalty,
            last_n: self.repeat_last_n,
        }
    }
}

/// Errors of the sampler chain.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum SampleError {
    /// A config value outside its domain (negative `top_p`, NaN temperature, ...).
    #[error("invalid sampler config: {0}")]
    InvalidConfig(String),
    /// The logits slice was empty.
    #[error("empty logits")]
    EmptyLogits,
    /// Every logit was NaN or `-inf` (after penalties), so no token is possible.
    #[error("no finite logits to sample from")]
    NoFiniteLogits,
}

// ---------------------------------------------------------------------------------
// PRNG

/// One step of splitmix64; used to expand a single `u64` seed into xoshiro state.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// xoshiro256** (Blackman & Vigna): small, fast, and good enough for sampling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// Seeds the four state words with consecutive splitmix64 outputs, as the
    /// xoshiro authors recommend; the state can never be all zero this way.
    pub fn seed_from_u64(seed: u64) -> Rng {
        let mut sm = seed;
        Rng {
            s: [
                splitmix64(&mut sm),
                splitmix64(&mut sm),
                splitmix64(&mut sm),
                splitmix64(&mut sm),
            ],
        }
    }

    /// Raw state constructor, for reference test vectors. An all-zero state is a
    /// fixed point of the generator, so it is replaced by the seed-0 state.
    pub fn from_state(s: [u64; 4]) -> Rng {
        if s == [0; 4] {
            Rng::seed_from_u64(0)
        } else {
            Rng { s }
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in `[0, 1)` with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

// ---------------------------------------------------------------------------------
// Free helpers

/// Maps a raw logit to the value the chain works with: NaN → `-inf` (impossible),
/// `+inf` → `f32::MAX` (so max-subtraction never computes `inf - inf`).
#[inline]
fn sanitize(x: f32) -> f32 {
    if x.is_nan() {
        f32::NEG_INFINITY
    } else {
        x.min(f32::MAX)
    }
}

/// Index of the max logit (ties: lowest index); used for greedy. NaN counts as
/// `-inf`, so an all-NaN slice yields `Some(0)`. `None` only for an empty slice.
pub fn argmax(logits: &[f32]) -> Option<u32> {
    if logits.is_empty() {
        return None;
    }
    let mut best = 0usize;
    let mut best_v = f32::NEG_INFINITY;
    for (i, &x) in logits.iter().enumerate() {
        // A NaN never compares greater, and equal values keep the earlier index.
        if x > best_v {
            best_v = x;
            best = i;
        }
    }
    Some(best as u32)
}

/// Top-k `(id, logprob)` by natural log of softmax of the raw logits, sorted
/// descending, ties by lower id. Numerically stable: max-subtracted, f64 sum.
/// Tokens of probability zero (NaN / `-inf` logits) are never returned, so the
/// result may be shorter than `k`.
pub fn top_logprobs(logits: &[f32], k: usize) -> Vec<(u32, f32)> {
    if k == 0 || logits.is_empty() {
        return Vec::new();
    }
    let max = logits
        .iter()
        .map(|&x| sanitize(x))
        .fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        return Vec::new();
    }
    let sum: f64 = logits.iter().map(|&x| weight(sanitize(x), max)).sum();
    let log_sum = sum.ln();
    let mut top = Vec::with_capacity(k.min(logits.len()));
    select_top_k(logits, k, &mut top);
    top.iter()
        .map(|c| (c.id, ((c.logit - max) as f64 - log_sum) as f32))
        .collect()
}

/// Unnormalised softmax weight `exp(logit - max)`: exp in f32 (cheap over a whole
/// vocabulary, ~1e-7 relative error), widened so callers accumulate in f64.
#[inline]
fn weight(logit: f32, max: f32) -> f64 {
    (logit - max).exp() as f64
}

/// Writes the `k` best sanitized candidates of `logits` into `out`, in [`cmp_desc`]
/// order, without materialising the whole vocabulary: a bounded buffer is cut back
/// to `k` by selection whenever it fills, and afterwards only logits strictly above
/// the current k-th can enter (a later id with an equal logit ranks after it).
/// Impossible tokens (NaN / `-inf`) never enter, so `out` may hold fewer than `k`.
fn select_top_k(logits: &[f32], k: usize, out: &mut Vec<Candidate>) {
    out.clear();
    if k == 0 {
        return;
    }
    let cap = k.saturating_mul(2).max(k.saturating_add(1024));
    let mut threshold = f32::NEG_INFINITY;
    for (i, &x) in logits.iter().enumerate() {
        let x = sanitize(x);
        if x > threshold {
            out.push(Candidate {
                id: i as u32,
                logit: x,
            });
            if out.len() >= cap {
                out.select_nth_unstable_by(k - 1, cmp_desc);
                out.truncate(k);
                threshold = out[k - 1].logit;
            }
        }
    }
    if out.len() > k {
        out.select_nth_unstable_by(k - 1, cmp_desc);
        out.truncate(k);
    }
    out.sort_unstable_by(cmp_desc);
}

// ---------------------------------------------------------------------------------
// Penalties (operate on the full logits, indexed by token id)

/// Repetition, presence and frequency penalties over the last `last_n` history
/// tokens, applied in place exactly like llama.cpp's `penalties` sampler:
/// `logit = logit > 0 ? logit / repeat : logit * repeat`, then
/// `logit -= count * frequency + (count > 0) * presence`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Penalties {
    pub repeat: f32,
    pub presence: f32,
    pub frequency: f32,
    pub last_n: usize,
}

impl Penalties {
    /// True when applying would change nothing (lets the sampler skip the work).
    pub fn is_noop(&self) -> bool {
        self.last_n == 0 || (self.repeat == 1.0 && self.presence == 0.0 && self.frequency == 0.0)
    }

    /// Applies the penalties to `logits`. `scratch` is a reusable buffer (its
    /// contents are overwritten). History ids outside the vocabulary are ignored.
    pub fn apply(&self, logits: &mut [f32], history: &[u32], scratch: &mut Vec<u32>) {
        if self.is_noop() || history.is_empty() {
            return;
        }
        let window = &history[history.len().saturating_sub(self.last_n)..];
        scratch.clear();
        scratch.extend_from_slice(window);
        scratch.sort_unstable();
        for run in scratch.chunk_by(|a, b| a == b) {
            let id = run[0] as usize;
            let Some(l) = logits.get_mut(id) else {
                continue;
            };
            let count = run.len() as f32;
            let mut x = *l;
            if x <= 0.0 {
                x *= self.repeat;
            } else {
                x /= self.repeat;
            }
            x -= count * self.frequency + self.presence;
            *l = x;
        }
    }
}

// ---------------------------------------------------------------------------------
// Candidate stages

/// A token still in the running, with its (possibly transformed) logit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    pub id: u32,
    pub logit: f32,
}

/// Descending by logit, ties by lower id: a total order (candidates hold no NaN),
/// so every selection and sort is deterministic.
#[inline]
fn cmp_desc(a: &Candidate, b: &Candidate) -> Ordering {
    b.logit.total_cmp(&a.logit).then(a.id.cmp(&b.id))
}

/// The working set of the chain. Invariant: `items[..sorted]` is in [`cmp_desc`]
/// order and every later item ranks after all of it, so stages that need the
/// largest few (top-p) sort only as much as they consume.
#[derive(Debug, Clone, Default)]
pub struct Candidates {
    items: Vec<Candidate>,
    sorted: usize,
}

impl Candidates {
    pub fn new() -> Self {
        Self::default()
    }

    /// Refills from raw logits, dropping impossible tokens (NaN / `-inf`) and
    /// clamping `+inf`. Reuses the allocation.
    pub fn fill(&mut self, logits: &[f32]) {
        self.items.clear();
        self.sorted = 0;
        self.items
            .extend(logits.iter().enumerate().filter_map(|(i, &x)| {
                let x = sanitize(x);
                (x > f32::NEG_INFINITY).then_some(Candidate {
                    id: i as u32,
                    logit: x,
                })
            }));
    }

    /// Refills with only the `k` best tokens of `logits` (sorted), the fused and much
    /// cheaper equivalent of [`Self::fill`] followed by [`Self::top_k`] on a large vocab.
    pub fn fill_top_k(&mut self, logits: &[f32], k: usize) {
        if k == 0 || k >= logits.len() {
            self.fill(logits);
        } else {
            select_top_k(logits, k, &mut self.items);
            self.sorted = self.items.len();
        }
    }

    /// Builds a set from explicit `(id, logit)` pairs (tests, callers with sparse logits).
    pub fn from_pairs(pairs: &[(u32, f32)]) -> Self {
        let mut c = Candidates::new();
        c.items.extend(pairs.iter().filter_map(|&(id, x)| {
            let x = sanitize(x);
            (x > f32::NEG_INFINITY).then_some(Candidate { id, logit: x })
        }));
        c
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn as_slice(&self) -> &[Candidate] {
        &self.items
    }

    /// Ids currently kept, sorted ascending (order-independent view for tests).
    pub fn ids(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self.items.iter().map(|c| c.id).collect();
        v.sort_unstable();
        v
    }

    /// Largest logit (`-inf` when empty).
    pub fn max_logit(&self) -> f32 {
        if self.sorted > 0 {
            return self.items[0].logit;
        }
        self.items
            .iter()
            .fold(f32::NEG_INFINITY, |m, c| m.max(c.logit))
    }

    /// Extends the sorted prefix to at least `m` items: O(n) selection on the
    /// unsorted tail plus a sort of only the newly exposed items.
    fn sort_prefix(&mut self, m: usize) {
        let m = m.min(self.items.len());
        if m <= self.sorted {
            return;
        }
        let tail = &mut self.items[self.sorted..];
        let want = m - self.sorted;
        if want < tail.len() {
            tail.select_nth_unstable_by(want - 1, cmp_desc);
        }
        tail[..want].sort_unstable_by(cmp_desc);
        self.sorted = m;
    }

    /// Keeps the `k` highest logits; `k == 0` is off. Never sorts the whole vocab:
    /// a selection isolates the top `k`, then only those are sorted.
    pub fn top_k(&mut self, k: usize) {
        if k == 0 || k >= self.items.len() {
            return;
        }
        self.sort_prefix(k);
        self.items.truncate(k);
    }

    /// Nucleus: keeps the shortest highest-first prefix whose probability (softmax of
    /// the current logits) reaches `p`, including the token that crosses it, as in
    /// llama.cpp. `p >= 1` is off; at least one token is always kept.
    ///
    /// Walks the sorted prefix first (all of it after [`Self::top_k`]); beyond it, a
    /// mass-weighted quickselect finds the crossing token in expected O(n) instead of
    /// sorting a possibly huge nucleus. The kept set is exactly the sorted-order one.
    pub fn top_p(&mut self, p: f32) {
        if p >= 1.0 || self.items.len() <= 1 {
            return;
        }
        let max = self.max_logit();
        let sum: f64 = self.items.iter().map(|c| weight(c.logit, max)).sum();
        let target = p as f64 * sum;
        let mut cum = 0.0f64;
        for i in 0..self.sorted {
            cum += weight(self.items[i].logit, max);
            if cum >= target {
                self.items.truncate(i + 1);
                self.sorted = i + 1;
                return;
            }
        }
        // The crossing lies in items[lo..hi]; everything before lo is kept.
        let (mut lo, mut hi) = (self.sorted, self.items.len());
        while hi - lo > 32 {
            let mid = (hi - lo) / 2;
            self.items[lo..hi].select_nth_unstable_by(mid, cmp_desc);
            let left: f64 = self.items[lo..lo + mid]
                .iter()
                .map(|c| weight(c.logit, max))
                .sum();
            if cum + left >= target {
                hi = lo + mid;
            } else {
                cum += left + weight(self.items[lo + mid].logit, max);
                if cum >= target {
                    self.items.truncate(lo + mid + 1);
                    return;
                }
                lo += mid + 1;
            }
        }
        self.items[lo..hi].sort_unstable_by(cmp_desc);
        for i in lo..hi {
            cum += weight(self.items[i].logit, max);
            if cum >= target {
                self.items.truncate(i + 1);
                return;
            }
        }
        // Rounding left cum just short of target: keep the whole window.
        self.items.truncate(hi);
    }

    /// Keeps tokens with `p >= min_p * p_max`, i.e. `logit - max >= ln(min_p)`, which
    /// needs no normalisation and no sort. `min_p <= 0` is off; the max always stays.
    pub fn min_p(&mut self, min_p: f32) {
        if min_p <= 0.0 || self.items.is_empty() {
            return;
        }
        let max = self.max_logit();
        let threshold = (min_p as f64).ln();
        let sorted = self.sorted;
        let mut kept_sorted = 0usize;
        let mut idx = 0usize;
        self.items.retain(|c| {
            let keep = (c.logit - max) as f64 >= threshold;
            if keep && idx < sorted {
                kept_sorted += 1;
            }
            idx += 1;
            keep
        });
        // Dropped items are the smallest, so the kept part of the sorted prefix is
        // still a prefix and still dominates the rest.
        self.sorted = kept_sorted;
    }

    /// Divides logit gaps by `t` (shifts the max to 0 first, which softmax ignores
    /// and which keeps huge logits from overflowing): `t = 0.5` doubles every gap.
    /// `t <= 0` or `t == 1` leaves the logits unchanged (greedy is handled earlier).
    pub fn temperature(&mut self, t: f32) {
        if t <= 0.0 || t == 1.0 || self.items.is_empty() {
            return;
        }
        let max = self.max_logit();
        let inv = 1.0 / t;
        for c in &mut self.items {
            c.logit = (c.logit - max) * inv;
        }
    }

    /// Unnormalised softmax weights `exp(logit - max)` into `w` (same order as
    /// [`Self::as_slice`]); enough for [`draw`], which scales by the total. Reuses `w`.
    pub fn weights(&self, w: &mut Vec<f64>) {
        w.clear();
        let max = self.max_logit();
        w.extend(self.items.iter().map(|c| weight(c.logit, max)));
    }

    /// Softmax of the current logits into `probs` (same order as [`Self::as_slice`]),
    /// max-subtracted with an f64 sum. `probs` is reused.
    pub fn softmax(&self, probs: &mut Vec<f64>) {
        self.weights(probs);
        let sum: f64 = probs.iter().sum();
        let inv = 1.0 / sum;
        for p in probs.iter_mut() {
            *p *= inv;
        }
    }
}

/// Inverse-CDF draw over probabilities or unnormalised weights: the index `i` whose
/// cumulative interval contains `u * total`, `u` in `[0, 1)`. Falls back to the last
/// index with nonzero mass when rounding leaves `u` past the end. `None` only if
/// `probs` has no positive entry.
pub fn draw(probs: &[f64], u: f64) -> Option<usize> {
    let total: f64 = probs.iter().sum();
    if total.is_nan() || total <= 0.0 {
        return None;
    }
    let target = u * total;
    let mut cum = 0.0f64;
    let mut last_nonzero = None;
    for (i, &p) in probs.iter().enumerate() {
        if p > 0.0 {
            cum += p;
            last_nonzero = Some(i);
            if target < cum {
                return Some(i);
            }
        }
    }
    last_nonzero
}

// ---------------------------------------------------------------------------------
// The chain

/// A configured, seeded sampler chain. Keep one per sequence: it owns the PRNG
/// state, so successive calls continue one reproducible stream of draws.
#[derive(Debug, Clone)]
pub struct Sampler {
    cfg: SamplerConfig,
    rng: Rng,
    cands: Candidates,
    probs: Vec<f64>,
    scratch: Vec<u32>,
}

impl Sampler {
    pub fn new(cfg: SamplerConfig) -> Result<Sampler, SampleError> {
        cfg.validate()?;
        Ok(Sampler {
            rng: Rng::seed_from_u64(cfg.seed),
            cfg,
            cands: Candidates::new(),
            probs: Vec::new(),
            scratch: Vec::new(),
        })
    }

    pub fn config(&self) -> &SamplerConfig {
        &self.cfg
    }

    /// logits: raw model output for one position (len n_vocab), may be modified in
    /// place (penalties are applied to it); history: tokens so far (prompt +
    /// generated) for penalties.
    pub fn sample(&mut self, logits: &mut [f32], history: &[u32]) -> Result<u32, SampleError> {
        if logits.is_empty() {
            return Err(SampleError::EmptyLogits);
        }
        self.cfg
            .penalties()
            .apply(logits, history, &mut self.scratch);

        if self.cfg.temperature <= 0.0 {
            let i = argmax(logits).ok_or(SampleError::EmptyLogits)?;
            if sanitize(logits[i as usize]) == f32::NEG_INFINITY {
                return Err(SampleError::NoFiniteLogits);
            }
            return Ok(i);
        }

        let c = &mut self.cands;
        c.fill_top_k(logits, self.cfg.top_k);
        if c.is_empty() {
            return Err(SampleError::NoFiniteLogits);
        }
        c.top_p(self.cfg.top_p);
        c.min_p(self.cfg.min_p);
        c.temperature(self.cfg.temperature);
        if c.len() == 1 {
            // Nothing to draw between; still advance the stream so the sequence of
            // random numbers does not depend on how aggressive the filters were.
            self.rng.next_u64();
            return Ok(c.as_slice()[0].id);
        }
        c.weights(&mut self.probs);
        let u = self.rng.next_f64();
        let i = draw(&self.probs, u).ok_or(SampleError::NoFiniteLogits)?;
        Ok(c.as_slice()[i].id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ln_probs(p: &[f64]) -> Vec<f32> {
        p.iter().map(|&x| x.ln() as f32).collect()
    }

    // --- PRNG -----------------------------------------------------------------

    #[test]
    fn splitmix64_matches_reference_vectors() {
        let mut s = 1234567u64;
        let want = [
            6457827717110365317u64,
            3203168211198807973,
            9817491932198370423,
            4593380528125082431,
            16408922859458223821,
        ];
        for w in want {
            assert_eq!(splitmix64(&mut s), w);
        }
        let mut s = 0u64;
        assert_eq!(splitmix64(&mut s), 0xE220_A839_7B1D_CDAF);
        assert_eq!(splitmix64(&mut s), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(splitmix64(&mut s), 0x06C4_5D18_8009_454F);
    }

    #[test]
    fn xoshiro256starstar_matches_reference_vector() {
        let mut r = Rng::from_state([1, 2, 3, 4]);
        let want = [
            11520u64,
            0,
            1509978240,
            1215971899390074240,
            1216172134540287360,
            607988272756665600,
            16172922978634559625,
            8476171486693032832,
            10595114339597558777,
            2904607092377533576,
        ];
        for w in want {
            assert_eq!(r.next_u64(), w);
        }
    }

    #[test]
    fn rng_seeding_uses_splitmix_and_f64_is_in_unit_interval() {
        let mut sm = 42u64;
        let s = [
            splitmix64(&mut sm),
            splitmix64(&mut sm),
            splitmix64(&mut sm),
            splitmix64(&mut sm),
        ];
        assert_eq!(Rng::seed_from_u64(42), Rng::from_state(s));
        let mut r = Rng::seed_from_u64(7);
        for _ in 0..10_000 {
            let u = r.next_f64();
            assert!((0.0..1.0).contains(&u));
        }
        assert_eq!(Rng::from_state([0; 4]), Rng::seed_from_u64(0));
    }

    // --- helpers ----------------------------------------------------------------

    #[test]
    fn argmax_ties_nan_and_empty() {
        assert_eq!(argmax(&[]), None);
        assert_eq!(argmax(&[1.0, 3.0, 2.0]), Some(1));
        assert_eq!(argmax(&[5.0, 1.0, 5.0]), Some(0));
        assert_eq!(argmax(&[f32::NAN, 1.0, f32::NAN]), Some(1));
        assert_eq!(argmax(&[f32::NAN, f32::NAN]), Some(0));
        assert_eq!(argmax(&[1.0, f32::INFINITY, f32::INFINITY]), Some(1));
        assert_eq!(argmax(&[f32::NEG_INFINITY, -1e30]), Some(1));
    }

    #[test]
    fn top_logprobs_hand_computed() {
        // probs 0.1 0.2 0.3 0.4 → logprobs are ln of them, in any shift.
        let logits: Vec<f32> = ln_probs(&[0.1, 0.2, 0.3, 0.4])
            .into_iter()
            .map(|x| x + 7.0)
            .collect();
        let got = top_logprobs(&logits, 3);
        let ids: Vec<u32> = got.iter().map(|x| x.0).collect();
        assert_eq!(ids, [3, 2, 1]);
        for (&(_, lp), p) in got.iter().zip([0.4f64, 0.3, 0.2]) {
            assert!((lp as f64 - p.ln()).abs() < 1e-6, "{lp} vs {}", p.ln());
        }
        // k larger than the vocab returns everything.
        assert_eq!(top_logprobs(&logits, 10).len(), 4);
        assert!(top_logprobs(&logits, 0).is_empty());
        assert!(top_logprobs(&[], 3).is_empty());
    }

    #[test]
    fn top_logprobs_ties_stability_and_nonfinite() {
        let got = top_logprobs(&[1.0, 2.0, 2.0, 1.0], 4);
        let ids: Vec<u32> = got.iter().map(|x| x.0).collect();
        assert_eq!(ids, [1, 2, 0, 3]);
        // Huge logits: a naive exp would overflow.
        let got = top_logprobs(&[1000.0, 1000.0], 2);
        assert!((got[0].1 - (0.5f32).ln()).abs() < 1e-6);
        // NaN / -inf have zero probability and are omitted.
        let got = top_logprobs(&[f32::NAN, 0.0, f32::NEG_INFINITY], 3);
        assert_eq!(got, vec![(1, 0.0)]);
        assert!(top_logprobs(&[f32::NAN, f32::NEG_INFINITY], 2).is_empty());
        // +inf takes all the mass.
        let got = top_logprobs(&[0.0, f32::INFINITY], 2);
        assert_eq!(got[0], (1, 0.0));
        // Sum of probs over everything is 1.
        let logits = [0.3f32, -1.2, 2.5, 0.0, 1.1];
        let s: f64 = top_logprobs(&logits, 5)
            .iter()
            .map(|x| (x.1 as f64).exp())
            .sum();
        assert!((s - 1.0).abs() < 1e-6);
    }

    #[test]
    fn draw_inverse_cdf() {
        let p = [0.25, 0.0, 0.5, 0.25];
        assert_eq!(draw(&p, 0.0), Some(0));
        assert_eq!(draw(&p, 0.2499), Some(0));
        assert_eq!(draw(&p, 0.25), Some(2));
        assert_eq!(draw(&p, 0.7499), Some(2));
        assert_eq!(draw(&p, 0.75), Some(3));
        assert_eq!(draw(&p, 0.999_999), Some(3));
        // u at/after the end never picks a zero-mass tail.
        assert_eq!(draw(&[0.5, 0.5, 0.0], 1.0), Some(1));
        assert_eq!(draw(&[0.0, 0.0], 0.5), None);
        assert_eq!(draw(&[], 0.5), None);
    }

    // --- penalties --------------------------------------------------------------

    #[test]
    fn repeat_penalty_divides_positive_multiplies_negative() {
        let pen = Penalties {
            repeat: 2.0,
            presence: 0.0,
            frequency: 0.0,
            last_n: 64,
        };
        let mut logits = [4.0f32, -4.0, 0.0, 3.0];
        let mut scratch = Vec::new();
        pen.apply(&mut logits, &[0, 1, 2, 0, 99], &mut scratch);
        // Applied once per distinct token regardless of count; id 99 is out of vocab.
        assert_eq!(logits, [2.0, -8.0, 0.0, 3.0]);
    }

    #[test]
    fn repeat_penalty_window_is_last_n() {
        let pen = Penalties {
            repeat: 2.0,
            presence: 0.0,
            frequency: 0.0,
            last_n: 2,
        };
        let mut logits = [4.0f32, 4.0, 4.0];
        pen.apply(&mut logits, &[0, 1, 2], &mut Vec::new());
        assert_eq!(logits, [4.0, 2.0, 2.0]);
        // last_n == 0 disables every penalty.
        let off = Penalties { last_n: 0, ..pen };
        let mut logits = [4.0f32, 4.0, 4.0];
        off.apply(&mut logits, &[0, 1, 2], &mut Vec::new());
        assert_eq!(logits, [4.0, 4.0, 4.0]);
    }

    #[test]
    fn presence_and_frequency_penalties_openai_style() {
        let pen = Penalties {
            repeat: 1.0,
            presence: 0.5,
            frequency: 0.25,
            last_n: 64,
        };
        let mut logits = [1.0f32, 1.0, 1.0];
        pen.apply(&mut logits, &[0, 0, 0, 1], &mut Vec::new());
        // id0: 1 - 3*0.25 - 0.5 = -0.25; id1: 1 - 0.25 - 0.5 = 0.25; id2 untouched.
        assert_eq!(logits, [-0.25, 0.25, 1.0]);
    }

    #[test]
    fn combined_penalties_repeat_first_then_subtract() {
        let pen = Penalties {
            repeat: 2.0,
            presence: 1.0,
            frequency: 1.0,
            last_n: 64,
        };
        let mut logits = [6.0f32, -2.0];
        pen.apply(&mut logits, &[0, 1, 1], &mut Vec::new());
        // id0: 6/2 - 1 - 1 = 1; id1: -2*2 - 2 - 1 = -7.
        assert_eq!(logits, [1.0, -7.0]);
    }

    // --- candidate stages -------------------------------------------------------

    #[test]
    fn fill_drops_impossible_tokens_and_clamps_inf() {
        let mut c = Candidates::new();
        c.fill(&[f32::NAN, 1.0, f32::NEG_INFINITY, f32::INFINITY]);
        assert_eq!(c.ids(), [1, 3]);
        assert_eq!(c.max_logit(), f32::MAX);
    }

    #[test]
    fn top_k_keeps_k_largest() {
        let mut c = Candidates::new();
        c.fill(&[0.1, 5.0, -3.0, 2.0, 4.0, 2.0]);
        c.top_k(3);
        assert_eq!(c.ids(), [1, 3, 4]); // tie at 2.0 broken towards the lower id
        let ordered: Vec<u32> = c.as_slice().iter().map(|x| x.id).collect();
        assert_eq!(ordered, [1, 4, 3]);
        c.top_k(0);
        assert_eq!(c.len(), 3);
        c.top_k(10);
        assert_eq!(c.len(), 3);
        c.top_k(1);
        assert_eq!(c.ids(), [1]);
    }

    #[test]
    fn top_p_keeps_exactly_the_nucleus() {
        // probs 0.5 0.3 0.15 0.05 (ids shuffled): top_p 0.9 keeps 0.5+0.3+0.15.
        let probs = [0.15, 0.05, 0.5, 0.3];
        let mut c = Candidates::new();
        c.fill(&ln_probs(&probs));
        c.top_p(0.9);
        assert_eq!(c.ids(), [0, 2, 3]);

        // The first two already hold 0.8 >= 0.79: no third token.
        let mut c = Candidates::new();
        c.fill(&ln_probs(&probs));
        c.top_p(0.79);
        assert_eq!(c.ids(), [2, 3]);

        // Small p keeps the single best; p = 1 keeps all.
        let mut c = Candidates::new();
        c.fill(&ln_probs(&probs));
        c.top_p(0.1);
        assert_eq!(c.ids(), [2]);
        let mut c = Candidates::new();
        c.fill(&ln_probs(&probs));
        c.top_p(1.0);
        assert_eq!(c.len(), 4);
        c.top_p(0.0);
        assert_eq!(c.ids(), [2]);
    }

    #[test]
    fn top_p_renormalises_after_top_k() {
        // After top_k 2, the kept probs are 0.5/0.8 = 0.625 and 0.375: top_p 0.6
        // keeps only the first, though 0.5 < 0.6 of the original mass.
        let mut c = Candidates::new();
        c.fill(&ln_probs(&[0.15, 0.05, 0.5, 0.3]));
        c.top_k(2);
        c.top_p(0.6);
        assert_eq!(c.ids(), [2]);
    }

    #[test]
    fn top_p_over_a_large_flat_tail_crosses_chunk_boundaries() {
        // 1000 equal tokens: top_p 0.5 must keep exactly 500 (crossing several chunks).
        let mut c = Candidates::new();
        c.fill(&vec![0.0f32; 1000]);
        c.top_p(0.5);
        assert_eq!(c.len(), 500);
        // Ties resolve to the lowest ids.
        assert_eq!(c.ids(), (0..500).collect::<Vec<u32>>());
    }

    /// Random logits with many exact ties and some NaN / ±inf, for reference checks.
    fn messy_logits(seed: u64, n: usize) -> Vec<f32> {
        let mut r = Rng::seed_from_u64(seed);
        (0..n)
            .map(|_| match r.next_u64() % 100 {
                0 => f32::NAN,
                1 => f32::NEG_INFINITY,
                _ => ((r.next_f64() * 40.0).floor() * 0.25) as f32 - 5.0,
            })
            .collect()
    }

    /// Reference nucleus: full sort, then walk (what llama.cpp does).
    fn reference_top_p(logits: &[f32], p: f32) -> Vec<u32> {
        let mut c = Candidates::new();
        c.fill(logits);
        c.sort_prefix(c.len());
        let max = c.max_logit();
        let sum: f64 = c.as_slice().iter().map(|x| weight(x.logit, max)).sum();
        let mut cum = 0.0;
        let mut ids = Vec::new();
        for x in c.as_slice() {
            ids.push(x.id);
            cum += weight(x.logit, max);
            if cum >= p as f64 * sum {
                break;
            }
        }
        ids.sort_unstable();
        ids
    }

    #[test]
    fn fill_top_k_matches_fill_then_top_k() {
        for (seed, n, k) in [(1, 5000, 10), (2, 5000, 3000), (3, 40, 7), (4, 3000, 1)] {
            let logits = messy_logits(seed, n);
            let mut a = Candidates::new();
            a.fill(&logits);
            a.top_k(k);
            let mut b = Candidates::new();
            b.fill_top_k(&logits, k);
            assert_eq!(a.as_slice(), b.as_slice(), "seed {seed} n {n} k {k}");
            assert_eq!(b.len(), k);
        }
        // A single +inf at the end still wins even after buffer cut-backs.
        let mut logits = messy_logits(5, 4000);
        logits[3999] = f32::INFINITY;
        let mut b = Candidates::new();
        b.fill_top_k(&logits, 2);
        assert_eq!(b.as_slice()[0].id, 3999);
    }

    #[test]
    fn top_p_quickselect_matches_full_sort_reference() {
        for seed in 0..6 {
            let logits = messy_logits(seed, 3000);
            for p in [0.0f32, 0.05, 0.3, 0.5, 0.9, 0.95, 0.999] {
                let mut c = Candidates::new();
                c.fill(&logits);
                c.top_p(p);
                assert_eq!(c.ids(), reference_top_p(&logits, p), "seed {seed} p {p}");
                // The kept set still behaves for later stages.
                let max = c.max_logit();
                assert!(c.as_slice().iter().all(|x| x.logit <= max));
            }
        }
    }

    #[test]
    fn min_p_keeps_relative_to_the_max() {
        // p_max = 0.5; min_p 0.2 → keep p >= 0.1.
        let mut c = Candidates::new();
        c.fill(&ln_probs(&[0.5, 0.2, 0.12, 0.09, 0.09]));
        c.min_p(0.2);
        assert_eq!(c.ids(), [0, 1, 2]);
        // min_p 1 keeps only the max (and exact ties with it).
        let mut c = Candidates::new();
        c.fill(&[1.0, 3.0, 3.0, 2.0]);
        c.min_p(1.0);
        assert_eq!(c.ids(), [1, 2]);
        // 0 is off.
        let mut c = Candidates::new();
        c.fill(&[1.0, 3.0, -50.0]);
        c.min_p(0.0);
        assert_eq!(c.len(), 3);
    }

    #[test]
    fn min_p_after_partial_sort_keeps_the_invariant() {
        let mut c = Candidates::new();
        c.fill(&ln_probs(&[0.05, 0.4, 0.3, 0.01, 0.2, 0.04]));
        c.top_k(4); // sorted prefix of 4: 0.4 0.3 0.2 0.05
        c.min_p(0.3); // keep >= 0.12
        let ordered: Vec<u32> = c.as_slice().iter().map(|x| x.id).collect();
        assert_eq!(ordered, [1, 2, 4]);
        assert_eq!(c.max_logit(), (0.4f64).ln() as f32);
    }

    #[test]
    fn temperature_scales_logit_gaps() {
        let mut c = Candidates::new();
        c.fill(&[1.0, 2.0, 4.0]);
        c.temperature(0.5);
        let l: Vec<f32> = c.as_slice().iter().map(|x| x.logit).collect();
        // Gaps from the max (3 and 2) are doubled.
        assert_eq!(l, [-6.0, -4.0, 0.0]);
        let mut c = Candidates::new();
        c.fill(&[1.0, 2.0, 4.0]);
        c.temperature(2.0);
        let l: Vec<f32> = c.as_slice().iter().map(|x| x.logit).collect();
        assert_eq!(l, [-1.5, -1.0, 0.0]);
        // Huge logits do not overflow under a small temperature.
        let mut c = Candidates::new();
        c.fill(&[f32::INFINITY, 0.0]);
        c.temperature(0.1);
        let mut p = Vec::new();
        c.softmax(&mut p);
        assert_eq!(p, [1.0, 0.0]);
    }

    #[test]
    fn softmax_hand_computed_and_temperature_squares_probs() {
        let mut c = Candidates::new();
        c.fill(&ln_probs(&[0.1, 0.2, 0.3, 0.4]));
        let mut p = Vec::new();
        c.softmax(&mut p);
        for (a, b) in p.iter().zip([0.1, 0.2, 0.3, 0.4]) {
            assert!((a - b).abs() < 1e-6);
        }
        // T = 0.5 turns p into p^2 / sum(p^2) = [1, 4, 9, 16] / 30.
        c.temperature(0.5);
        c.softmax(&mut p);
        for (a, b) in p.iter().zip([1.0, 4.0, 9.0, 16.0]) {
            assert!((a - b / 30.0).abs() < 1e-6);
        }
    }

    // --- config & chain ---------------------------------------------------------

    #[test]
    fn default_config_matches_llama_cpp_cli() {
        let c = SamplerConfig::default();
        assert_eq!(c.temperature, 0.8);
        assert_eq!(c.top_k, 40);
        assert_eq!(c.top_p, 0.95);
        assert_eq!(c.min_p, 0.05);
        assert_eq!(c.repeat_penalty, 1.0);
        assert_eq!(c.repeat_last_n, 64);
        assert_eq!(c.presence_penalty, 0.0);
        assert_eq!(c.frequency_penalty, 0.0);
        assert!(c.validate().is_ok());
    }

    #[test]
    fn invalid_configs_are_rejected() {
        let bad = [
            SamplerConfig {
                temperature: f32::NAN,
                ..Default::default()
            },
            SamplerConfig {
                temperature: f32::INFINITY,
                ..Default::default()
            },
            SamplerConfig {
                top_p: -0.1,
                ..Default::default()
            },
            SamplerConfig {
                top_p: 1.5,
                ..Default::default()
            },
            SamplerConfig {
                top_p: f32::NAN,
                ..Default::default()
            },
            SamplerConfig {
                min_p: -0.5,
                ..Default::default()
            },
            SamplerConfig {
                repeat_penalty: 0.0,
                ..Default::default()
            },
            SamplerConfig {
                repeat_penalty: f32::NAN,
                ..Default::default()
            },
            SamplerConfig {
                presence_penalty: f32::INFINITY,
                ..Default::default()
            },
            SamplerConfig {
                frequency_penalty: f32::NAN,
                ..Default::default()
            },
        ];
        for cfg in bad {
            assert!(
                matches!(
                    Sampler::new(cfg.clone()),
                    Err(SampleError::InvalidConfig(_))
                ),
                "{cfg:?}"
            );
        }
        // Negative temperature is valid: it means greedy.
        assert!(Sampler::new(SamplerConfig {
            temperature: -1.0,
            ..Default::default()
        })
        .is_ok());
    }

    #[test]
    fn greedy_is_argmax_after_penalties() {
        let mut s = Sampler::new(SamplerConfig::greedy()).unwrap();
        assert_eq!(s.sample(&mut [0.0, 3.0, 1.0], &[]).unwrap(), 1);
        let mut s = Sampler::new(SamplerConfig {
            repeat_penalty: 4.0,
            ..SamplerConfig::greedy()
        })
        .unwrap();
        // 3/4 < 1: the penalty moves the argmax.
        assert_eq!(s.sample(&mut [0.0, 3.0, 1.0], &[1]).unwrap(), 2);
    }

    #[test]
    fn errors_for_empty_and_all_impossible_logits() {
        for cfg in [SamplerConfig::greedy(), SamplerConfig::default()] {
            let mut s = Sampler::new(cfg).unwrap();
            assert_eq!(s.sample(&mut [], &[]), Err(SampleError::EmptyLogits));
            assert_eq!(
                s.sample(&mut [f32::NAN, f32::NEG_INFINITY], &[]),
                Err(SampleError::NoFiniteLogits)
            );
            // A single finite logit among NaNs is always chosen.
            assert_eq!(s.sample(&mut [f32::NAN, -3.0, f32::NAN], &[]), Ok(1));
        }
    }

    #[test]
    fn chain_order_top_k_then_top_p_then_min_p() {
        // top_k 3 keeps ids 0..3 (probs .4 .3 .2 of .9); top_p .7 over the renormalised
        // [.444 .333 .222] keeps two; min_p .8 then drops id 1 (.3/.4 < .8).
        let mut logits = ln_probs(&[0.4, 0.3, 0.2, 0.1]);
        let mut s = Sampler::new(SamplerConfig {
            temperature: 1.0,
            top_k: 3,
            top_p: 0.7,
            min_p: 0.8,
            ..Default::default()
        })
        .unwrap();
        for _ in 0..50 {
            assert_eq!(s.sample(&mut logits.clone(), &[]).unwrap(), 0);
        }
        // Without min_p both survivors of top_p are drawn, never ids 2 or 3.
        let mut s = Sampler::new(SamplerConfig {
            temperature: 1.0,
            top_k: 3,
            top_p: 0.7,
            min_p: 0.0,
            ..Default::default()
        })
        .unwrap();
        let mut seen = [0usize; 4];
        for _ in 0..200 {
            seen[s.sample(&mut logits, &[]).unwrap() as usize] += 1;
        }
        assert!(seen[0] > 0 && seen[1] > 0 && seen[2] == 0 && seen[3] == 0);
    }
}
