//! End-to-end tests of the sampler chain through its public API: reproducibility
//! under a seed, agreement of draw frequencies with the intended distribution
//! (chi-square with a fixed seed, so deterministic), and a full-size vocabulary.

use nao_engine::sample::{argmax, top_logprobs, Rng, SampleError, Sampler, SamplerConfig};

fn ln_probs(p: &[f64]) -> Vec<f32> {
    p.iter().map(|&x| x.ln() as f32).collect()
}

/// Plain sampling at temperature 1 with every filter off.
fn pure(seed: u64) -> SamplerConfig {
    SamplerConfig {
        temperature: 1.0,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        seed,
        ..SamplerConfig::default()
    }
}

fn draws(cfg: SamplerConfig, logits: &[f32], n: usize) -> Vec<u32> {
    let mut s = Sampler::new(cfg).unwrap();
    let mut buf = logits.to_vec();
    (0..n)
        .map(|_| {
            buf.copy_from_slice(logits);
            s.sample(&mut buf, &[]).unwrap()
        })
        .collect()
}

/// Pearson chi-square statistic of observed counts against expected probabilities.
fn chi_square(counts: &[usize], probs: &[f64]) -> f64 {
    let n: usize = counts.iter().sum();
    counts
        .iter()
        .zip(probs)
        .map(|(&o, &p)| {
            let e = p * n as f64;
            (o as f64 - e).powi(2) / e
        })
        .sum()
}

fn histogram(ids: &[u32], n_vocab: usize) -> Vec<usize> {
    let mut h = vec![0usize; n_vocab];
    for &i in ids {
        h[i as usize] += 1;
    }
    h
}

#[test]
fn same_seed_same_sequence() {
    let logits: Vec<f32> = (0..50).map(|i| ((i * 37) % 11) as f32 * 0.3).collect();
    let a = draws(
        SamplerConfig {
            seed: 1234,
            ..SamplerConfig::default()
        },
        &logits,
        500,
    );
    let b = draws(
        SamplerConfig {
            seed: 1234,
            ..SamplerConfig::default()
        },
        &logits,
        500,
    );
    assert_eq!(a, b);
}

#[test]
fn different_seeds_different_sequences() {
    let logits: Vec<f32> = (0..50).map(|i| ((i * 37) % 11) as f32 * 0.3).collect();
    let a = draws(pure(1), &logits, 200);
    let b = draws(pure(2), &logits, 200);
    assert_ne!(a, b);
    let differing = a.iter().zip(&b).filter(|(x, y)| x != y).count();
    assert!(differing > 100, "only {differing} of 200 draws differ");
}

#[test]
fn cloned_sampler_continues_the_same_stream() {
    let logits = ln_probs(&[0.25, 0.25, 0.25, 0.25]);
    let mut a = Sampler::new(pure(9)).unwrap();
    for _ in 0..10 {
        a.sample(&mut logits.clone(), &[]).unwrap();
    }
    let mut b = a.clone();
    for _ in 0..100 {
        assert_eq!(
            a.sample(&mut logits.clone(), &[]).unwrap(),
            b.sample(&mut logits.clone(), &[]).unwrap()
        );
    }
}

#[test]
fn frequencies_match_the_distribution() {
    // 4 categories → 3 degrees of freedom; the 0.1% critical value is 16.27.
    let probs = [0.1, 0.2, 0.3, 0.4];
    let ids = draws(pure(42), &ln_probs(&probs), 100_000);
    let chi = chi_square(&histogram(&ids, 4), &probs);
    assert!(chi < 16.27, "chi-square {chi}");
}

#[test]
fn frequencies_match_under_temperature() {
    // T = 0.5 squares the probabilities: [1, 4, 9, 16] / 30.
    let cfg = SamplerConfig {
        temperature: 0.5,
        ..pure(7)
    };
    let ids = draws(cfg, &ln_probs(&[0.1, 0.2, 0.3, 0.4]), 100_000);
    let want: Vec<f64> = [1.0, 4.0, 9.0, 16.0].iter().map(|x| x / 30.0).collect();
    let chi = chi_square(&histogram(&ids, 4), &want);
    assert!(chi < 16.27, "chi-square {chi}");
}

#[test]
fn frequencies_match_after_top_k_renormalisation() {
    // top_k 3 over [.1 .2 .3 .4] leaves [.2 .3 .4] / .9; id 0 never appears.
    // 2 degrees of freedom; the 0.1% critical value is 13.82.
    let cfg = SamplerConfig {
        top_k: 3,
        ..pure(3)
    };
    let ids = draws(cfg, &ln_probs(&[0.1, 0.2, 0.3, 0.4]), 90_000);
    let h = histogram(&ids, 4);
    assert_eq!(h[0], 0);
    let chi = chi_square(&h[1..], &[2.0 / 9.0, 3.0 / 9.0, 4.0 / 9.0]);
    assert!(chi < 13.82, "chi-square {chi}");
}

#[test]
fn penalties_apply_before_drawing() {
    // Token 0 is hugely likely until it is in the history with a strong
    // presence penalty, after which it can never be drawn.
    let logits = [10.0f32, 0.0, 0.0];
    let mut s = Sampler::new(SamplerConfig {
        presence_penalty: 100.0,
        ..pure(5)
    })
    .unwrap();
    assert_eq!(s.sample(&mut logits.clone(), &[]).unwrap(), 0);
    for _ in 0..100 {
        assert_ne!(s.sample(&mut logits.clone(), &[0]).unwrap(), 0);
    }
    // The penalised values are written back into the caller's buffer.
    let mut buf = logits;
    s.sample(&mut buf, &[0, 0]).unwrap();
    assert_eq!(buf, [-90.0, 0.0, 0.0]);
}

#[test]
fn greedy_ignores_the_seed() {
    let logits: Vec<f32> = (0..1000).map(|i| ((i * 7919) % 1000) as f32).collect();
    let want = argmax(&logits).unwrap();
    for seed in 0..5 {
        let cfg = SamplerConfig {
            seed,
            ..SamplerConfig::greedy()
        };
        assert!(draws(cfg, &logits, 10).iter().all(|&t| t == want));
    }
}

#[test]
fn full_vocab_with_nonfinite_values() {
    const N: usize = 262_144;
    let mut rng = Rng::seed_from_u64(99);
    let mut logits: Vec<f32> = (0..N)
        .map(|_| (rng.next_f64() * 20.0 - 10.0) as f32)
        .collect();
    for i in (0..N).step_by(1000) {
        logits[i] = f32::NAN;
    }
    logits[5] = f32::NEG_INFINITY;
    logits[77_777] = 40.0; // dominates everything after softmax

    let mut s = Sampler::new(SamplerConfig::default()).unwrap();
    let history: Vec<u32> = (0..200).collect();
    for _ in 0..20 {
        let mut buf = logits.clone();
        assert_eq!(s.sample(&mut buf, &history).unwrap(), 77_777);
    }
    // With a flat-ish distribution and only top_p (no top_k) the draw still lands
    // on a finite token.
    logits[77_777] = 0.0;
    let mut s = Sampler::new(SamplerConfig {
        top_k: 0,
        min_p: 0.0,
        top_p: 0.9,
        ..SamplerConfig::default()
    })
    .unwrap();
    for _ in 0..5 {
        let mut buf = logits.clone();
        let t = s.sample(&mut buf, &[]).unwrap() as usize;
        assert!(logits[t].is_finite());
    }
    let top = top_logprobs(&logits, 5);
    assert_eq!(top.len(), 5);
    assert!(top.windows(2).all(|w| w[0].1 >= w[1].1));
}

#[test]
fn error_values() {
    let mut s = Sampler::new(SamplerConfig::default()).unwrap();
    assert!(matches!(
        s.sample(&mut [], &[]),
        Err(SampleError::EmptyLogits)
    ));
    assert!(matches!(
        s.sample(&mut [f32::NAN; 8], &[]),
        Err(SampleError::NoFiniteLogits)
    ));
    assert!(matches!(
        Sampler::new(SamplerConfig {
            top_p: -1.0,
            ..SamplerConfig::default()
        }),
        Err(SampleError::InvalidConfig(_))
    ));
}
