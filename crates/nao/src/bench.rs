//! `nao bench`: prompt-processing (pp) and generation (tg) throughput in the shape of
//! llama.cpp's `llama-bench`, so scripts can read either tool's output.
//!
//! pp: one batched forward pass over `n_prompt` random tokens into an empty cache.
//! tg: `n_gen` single-token forward passes, each appending to the cache.
//! Each test runs once untimed (warm-up: page in the weights, start the pool), then `reps`
//! timed repetitions; tokens/s is reported as mean ± sample standard deviation.

use anyhow::Result;
use nao_models::{Compute, Model};
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args)]
pub struct BenchArgs {
    /// A GGUF model file, a model name in the store, or a Hugging Face model directory.
    #[arg(short, long)]
    model: PathBuf,
    /// Prompt lengths to test (comma-separated; 0 skips).
    #[arg(
        short = 'p',
        long = "n-prompt",
        value_delimiter = ',',
        default_value = "512"
    )]
    n_prompt: Vec<usize>,
    /// Generation lengths to test (comma-separated; 0 skips).
    #[arg(
        short = 'n',
        long = "n-gen",
        value_delimiter = ',',
        default_value = "128"
    )]
    n_gen: Vec<usize>,
    /// Thread counts to test (comma-separated; default: available cores).
    #[arg(short = 't', long, value_delimiter = ',')]
    threads: Vec<usize>,
    /// Timed repetitions per test.
    #[arg(short = 'r', long = "repetitions", default_value_t = 5)]
    reps: usize,
    /// Print a JSON array (llama-bench `-o json` fields) instead of a table.
    #[arg(long)]
    json: bool,
    /// Also measure the read bandwidth and report decode as a fraction of its roofline
    /// (bandwidth ÷ weight bytes read per token).
    #[arg(long)]
    roofline: bool,
}

/// One test's result.
struct Row {
    test: String,
    n_prompt: usize,
    n_gen: usize,
    n_threads: usize,
    samples: Vec<f64>,
    /// Read bandwidth with this thread count (bytes/s), when `--roofline` asked for it.
    bandwidth: Option<f64>,
}

impl Row {
    fn mean(&self) -> f64 {
        self.samples.iter().sum::<f64>() / self.samples.len().max(1) as f64
    }

    /// Sample standard deviation (n - 1), 0 for a single sample, as llama-bench reports.
    fn stddev(&self) -> f64 {
        let n = self.samples.len();
        if n < 2 {
            return 0.0;
        }
        let m = self.mean();
        (self.samples.iter().map(|s| (s - m) * (s - m)).sum::<f64>() / (n - 1) as f64).sqrt()
    }
}

/// Deterministic pseudo-random token ids in `0..n_vocab` (splitmix64).
fn random_tokens(n: usize, n_vocab: usize, seed: u64) -> Vec<u32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) % n_vocab as u64) as u32
        })
        .collect()
}

fn time_pp(model: &Model, c: &mut Compute, tokens: &[u32]) -> Result<f64> {
    let mut cache = model.new_cache(tokens.len())?;
    let t0 = Instant::now();
    model.forward(tokens, 0, &mut cache, c, false)?;
    Ok(tokens.len() as f64 / t0.elapsed().as_secs_f64().max(1e-9))
}

fn time_tg(model: &Model, c: &mut Compute, tokens: &[u32]) -> Result<f64> {
    let mut cache = model.new_cache(tokens.len())?;
    let t0 = Instant::now();
    for (pos, &t) in tokens.iter().enumerate() {
        model.forward(&[t], pos, &mut cache, c, false)?;
    }
    Ok(tokens.len() as f64 / t0.elapsed().as_secs_f64().max(1e-9))
}

/// Peak resident set size of this process (`VmHWM`), in bytes, where the OS reports it.
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

pub fn bench(a: BenchArgs) -> Result<()> {
    if a.reps == 0 {
        anyhow::bail!("--repetitions must be at least 1");
    }
    let source = crate::source::Source::open(&a.model)?;
    let model = source.load_model()?;
    let cfg = model.config().clone();
    let threads = if a.threads.is_empty() {
        vec![crate::cli::default_threads()]
    } else {
        a.threads.clone()
    };
    if let Some(bad) = threads.iter().find(|&&t| t == 0 || t > 1024) {
        anyhow::bail!("invalid thread count {bad}");
    }
    if let Some(&too_long) = a.n_prompt.iter().chain(&a.n_gen).find(|&&n| n > 1 << 20) {
        anyhow::bail!("test length {too_long} is too large");
    }
    let facts = source.facts();
    let (model_size, n_params) = (facts.file_size, facts.parameter_count);
    let mut rows = Vec::new();
    for &nt in &threads {
        let mut c = Compute::new(nt);
        for &p in a.n_prompt.iter().filter(|&&p| p > 0) {
            let toks = random_tokens(p, cfg.n_vocab, 42);
            time_pp(&model, &mut c, &toks[..p.min(16)])?; // warm-up
            let samples = (0..a.reps)
                .map(|_| time_pp(&model, &mut c, &toks))
                .collect::<Result<Vec<_>>>()?;
            rows.push(Row {
                test: format!("pp{p}"),
                n_prompt: p,
                n_gen: 0,
                n_threads: nt,
                samples,
                bandwidth: None,
            });
        }
        for &n in a.n_gen.iter().filter(|&&n| n > 0) {
            let toks = random_tokens(n, cfg.n_vocab, 7);
            time_tg(&model, &mut c, &toks[..n.min(4)])?; // warm-up
            let samples = (0..a.reps)
                .map(|_| time_tg(&model, &mut c, &toks))
                .collect::<Result<Vec<_>>>()?;
            rows.push(Row {
                test: format!("tg{n}"),
                n_prompt: 0,
                n_gen: n,
                n_threads: nt,
                samples,
                bandwidth: None,
            });
        }
    }
    // Peak RSS of the benchmark itself, before the bandwidth probe allocates its buffer.
    let rss = peak_rss_bytes();
    if a.roofline {
        for &nt in &threads {
            let pool = nao_kernels::pool::ThreadPool::new(nt);
            let bw = nao_kernels::probe::read_bandwidth(&pool, 512 << 20, 3).bytes_per_s;
            for r in rows.iter_mut().filter(|r| r.n_threads == nt && r.n_gen > 0) {
                r.bandwidth = Some(bw);
            }
        }
    }
    let weight_bytes = model.weight_bytes() as f64;
    // Decode's roofline: tokens/s if every weight byte streamed at the measured bandwidth.
    let roofline = |r: &Row| r.bandwidth.map(|bw| bw / weight_bytes.max(1.0));
    let filename = a.model.display().to_string();
    if a.json {
        let arr: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "model_filename": filename,
                    "model_type": cfg.arch,
                    "model_size": model_size,
                    "model_n_params": n_params,
                    "n_threads": r.n_threads,
                    "n_prompt": r.n_prompt,
                    "n_gen": r.n_gen,
                    "test": r.test,
                    "avg_ts": r.mean(),
                    "stddev_ts": r.stddev(),
                    "samples_ts": r.samples,
                    "peak_rss_bytes": rss,
                    "bandwidth_bytes_per_s": r.bandwidth,
                    "roofline_ts": roofline(r),
                    "roofline_fraction": roofline(r).map(|t| r.mean() / t),
                })
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&arr)?);
        return Ok(());
    }
    outln!("| model | size | params | threads | test | t/s |");
    outln!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for r in &rows {
        outln!(
            "| {} | {} | {:.2} B | {} | {} | {:.2} ± {:.2} |",
            cfg.arch,
            crate::cli::human_bytes(model_size),
            n_params as f64 / 1e9,
            r.n_threads,
            r.test,
            r.mean(),
            r.stddev()
        );
    }
    if let Some(rss) = rss {
        outln!(
            "\npeak RSS: {} (model file {}, weights read per token {})",
            crate::cli::human_bytes(rss),
            crate::cli::human_bytes(model_size),
            crate::cli::human_bytes(model.weight_bytes() as u64)
        );
    }
    for r in rows.iter().filter(|r| r.bandwidth.is_some()) {
        if let (Some(bw), Some(bound)) = (r.bandwidth, roofline(r)) {
            outln!(
                "roofline, {} threads: read bandwidth {:.1} GB/s -> decode bound {:.1} tok/s; {} at {:.0}% of it",
                r.n_threads,
                bw / 1e9,
                bound,
                r.test,
                100.0 * r.mean() / bound
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stddev_hand_computed() {
        let r = Row {
            test: "tg1".into(),
            n_prompt: 0,
            n_gen: 1,
            n_threads: 1,
            samples: vec![2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0],
            bandwidth: None,
        };
        assert_eq!(r.mean(), 5.0);
        // sum of squared deviations 32, n - 1 = 7
        assert!((r.stddev() - (32.0f64 / 7.0).sqrt()).abs() < 1e-12);
    }

    #[test]
    fn random_tokens_in_range_and_deterministic() {
        let a = random_tokens(1000, 37, 1);
        assert!(a.iter().all(|&t| t < 37));
        assert_eq!(a, random_tokens(1000, 37, 1));
        assert_ne!(a, random_tokens(1000, 37, 2));
    }
}
