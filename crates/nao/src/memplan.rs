//! Memory planning: before a model is loaded, estimate what it will take (weights + KV
//! cache for the requested context + scratch) and compare it with what the machine (or
//! the cgroup we run in) can give, so an oversized `--ctx` is a clear refusal that names a
//! context that fits, instead of the kernel's OOM killer ending the process mid-load.
//!
//! The estimate is deliberately simple: weights are the file's tensor bytes (a GGUF's, or a
//! Hugging Face directory's safetensors; mapped or copied, they must be resident to run at
//! speed); the KV cache is
//! `KvPool::bytes_per_position × ctx` (f16 K and V for every layer); scratch is a fixed
//! 64 MiB plus activations for a 512-token prefill chunk and two rows of logits.
//! `NAO_MEMORY_LIMIT` (bytes, or with K/M/G suffix) caps the memory considered available;
//! `NAO_MEMORY_LIMIT=off` turns the check off.

use anyhow::Result;
use nao_gguf::GgufFile;
use nao_models::{KvPool, ModelConfig};

/// What a model needs at one context size.
pub struct Plan {
    pub ctx: usize,
    pub weights: u64,
    pub kv_per_pos: u64,
    pub scratch: u64,
}

impl Plan {
    pub fn kv(&self) -> u64 {
        self.kv_per_pos.saturating_mul(self.ctx as u64)
    }

    pub fn total(&self) -> u64 {
        self.weights
            .saturating_add(self.kv())
            .saturating_add(self.scratch)
    }

    pub fn describe(&self) -> String {
        let h = crate::cli::human_bytes;
        format!(
            "{} (weights {} + KV cache {} + scratch {})",
            h(self.total()),
            h(self.weights),
            h(self.kv()),
            h(self.scratch)
        )
    }

    /// The largest context that fits in `avail` bytes (a multiple of 256 when ≥ 256).
    pub fn max_ctx(&self, avail: u64) -> usize {
        let left = avail.saturating_sub(self.weights.saturating_add(self.scratch));
        let n = (left / self.kv_per_pos.max(1)) as usize;
        if n >= 256 {
            n / 256 * 256
        } else {
            n
        }
    }
}

pub fn estimate(file: &GgufFile, c: &ModelConfig, ctx: usize) -> Plan {
    let weights = file
        .tensors()
        .iter()
        .fold(0u64, |n, t| n.saturating_add(t.n_bytes));
    estimate_weights(weights, c, ctx)
}

/// [`estimate`] for a model whose tensors take `weights` bytes.
pub fn estimate_weights(weights: u64, c: &ModelConfig, ctx: usize) -> Plan {
    let (kd, vd) = c.kv_dims();
    let kv_per_pos = KvPool::bytes_per_position(c.n_layer, kd, vd) as u64;
    let act = 512 * (4 * c.n_embd + 2 * c.n_ff) + 2 * c.n_vocab;
    let scratch = (64u64 << 20) + 4 * act as u64;
    Plan {
        ctx,
        weights,
        kv_per_pos,
        scratch,
    }
}

/// Memory we may use, and where the figure comes from.
pub struct Available {
    pub bytes: u64,
    pub source: String,
}

/// The smallest of `MemAvailable`, the cgroup's headroom (`memory.max − memory.current`)
/// and `NAO_MEMORY_LIMIT`; `None` when none can be read or the check is off.
pub fn available() -> Option<Available> {
    let mut best: Option<Available> = None;
    let mut consider = |bytes: u64, source: &str| {
        if best.as_ref().is_none_or(|b| bytes < b.bytes) {
            best = Some(Available {
                bytes,
                source: source.to_string(),
            });
        }
    };
    match std::env::var("NAO_MEMORY_LIMIT").ok().as_deref() {
        Some("off") => return None,
        Some(v) => {
            if let Some(b) = parse_size(v) {
                consider(b, "NAO_MEMORY_LIMIT");
            }
        }
        None => {}
    }
    if let Some(b) = meminfo_available() {
        consider(b, "MemAvailable in /proc/meminfo");
    }
    if let Some(b) = cgroup_headroom() {
        consider(b, "cgroup memory.max minus memory.current");
    }
    best
}

/// The refusal of [`check`], as a type so that `nao serve` can tell it from other load
/// failures (it answers it with 503 `insufficient_memory`, not 500).
#[derive(Debug)]
pub struct NotEnoughMemory(pub String);

impl std::fmt::Display for NotEnoughMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotEnoughMemory {}

/// Refuses (with what it needs, what is free, and a `--ctx` that fits) when the model
/// (hyper-parameters `c`, tensors of `weights` bytes) at `ctx` positions would not fit;
/// silent when it fits or nothing is known. The error is a [`NotEnoughMemory`].
pub fn check(weights: u64, c: &ModelConfig, ctx: Option<usize>, flag: &str) -> Result<()> {
    let ctx = ctx.unwrap_or(c.n_ctx_train.min(4096));
    if ctx == 0 || ctx > c.n_ctx_train {
        return Ok(()); // out of range: the caller's range check says so more precisely
    }
    let plan = estimate_weights(weights, c, ctx);
    let Some(avail) = available() else {
        return Ok(());
    };
    if plan.total() <= avail.bytes {
        return Ok(());
    }
    let h = crate::cli::human_bytes;
    let fit = plan.max_ctx(avail.bytes);
    let advice = if fit >= 16 {
        format!("{flag} {fit} would fit")
    } else {
        "no context size fits; the weights alone do not".to_string()
    };
    Err(NotEnoughMemory(format!(
        "not enough memory for this model at {flag} {ctx}: needs {}, available {} ({}); {advice} (NAO_MEMORY_LIMIT=off skips this check)",
        plan.describe(),
        h(avail.bytes),
        avail.source
    ))
    .into())
}

fn parse_size(v: &str) -> Option<u64> {
    let v = v.trim();
    let (num, mult) = match v.char_indices().last()? {
        (i, 'K' | 'k') => (&v[..i], 1u64 << 10),
        (i, 'M' | 'm') => (&v[..i], 1 << 20),
        (i, 'G' | 'g') => (&v[..i], 1 << 30),
        _ => (v, 1),
    };
    num.trim().parse::<u64>().ok()?.checked_mul(mult)
}

fn meminfo_available() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = s.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

/// cgroup v2: our cgroup's `memory.max − memory.current` (None when unlimited).
fn cgroup_headroom() -> Option<u64> {
    let cg = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let rel = cg.lines().find_map(|l| l.strip_prefix("0::"))?.trim();
    let dir = std::path::Path::new("/sys/fs/cgroup").join(rel.trim_start_matches('/'));
    let max = std::fs::read_to_string(dir.join("memory.max")).ok()?;
    let max: u64 = max.trim().parse().ok()?; // "max" = unlimited → None
    let cur: u64 = std::fs::read_to_string(dir.join("memory.current"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(max.saturating_sub(cur))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1024"), Some(1024));
        assert_eq!(parse_size("2G"), Some(2 << 30));
        assert_eq!(parse_size("512m"), Some(512 << 20));
        assert_eq!(parse_size("x"), None);
    }

    #[test]
    fn max_ctx_rounds_down() {
        // Qwen2.5-1.5B: 28 layers × (256 + 256) × 2 bytes = 28,672 bytes per position.
        let p = Plan {
            ctx: 0,
            weights: 1_000_000_000,
            kv_per_pos: 28 * 512 * 2,
            scratch: 100_000_000,
        };
        // 1.1e9 + 8192 × 28,672 = 1,334,881,024 bytes fit exactly 8192.
        assert_eq!(p.max_ctx(1_334_881_024), 8192);
        assert_eq!(p.max_ctx(1_334_881_023), 7936);
        assert_eq!(p.max_ctx(1_000_000), 0);
    }
}
