//! Machine probes for roofline figures: the read bandwidth that decode is bound by.
//!
//! Decode reads every weight once per token, so tokens/s ≤ bandwidth ÷ weight bytes per
//! token. The probe streams a buffer much larger than the caches through all threads of the
//! pool (a STREAM-style "sum" kernel: reads only) and keeps the best of a few passes.

use crate::ops::dot_f32;
use crate::pool::{SharedMut, ThreadPool};
use std::time::Instant;

/// Result of one bandwidth probe.
#[derive(Debug, Clone, Copy)]
pub struct Bandwidth {
    /// Best observed read rate, bytes per second.
    pub bytes_per_s: f64,
    /// Sum of every element read (proves the reads happened; equals the buffer's length
    /// for the all-ones buffer the probe uses).
    pub checksum: f64,
}

/// Reads a buffer of `n_bytes` (rounded down to whole f32s) `passes` times on every thread
/// of `pool` and reports the best rate.
pub fn read_bandwidth(pool: &ThreadPool, n_bytes: usize, passes: usize) -> Bandwidth {
    let n = (n_bytes / 4).max(8);
    let buf = vec![1.0f32; n];
    let ones = [1.0f32; 4096];
    let n_chunks = pool.n_threads() * 4;
    let mut partial = vec![0.0f64; n_chunks];
    let mut best = 0.0f64;
    let mut checksum = 0.0;
    for _ in 0..passes.max(1) {
        let out = SharedMut::new(&mut partial);
        let t0 = Instant::now();
        pool.for_chunks(n_chunks, &|c| {
            let r = crate::pool::split_range(n, n_chunks, c);
            let mut s = 0.0f64;
            for block in buf[r].chunks(ones.len()) {
                s += f64::from(dot_f32(block, &ones[..block.len()]));
            }
            out.write(c, s);
        });
        let dt = t0.elapsed().as_secs_f64().max(1e-9);
        best = best.max((n * 4) as f64 / dt);
        checksum = partial.iter().sum();
    }
    Bandwidth {
        bytes_per_s: best,
        checksum,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_element() {
        let pool = ThreadPool::new(2);
        let bw = read_bandwidth(&pool, 4 << 20, 2);
        assert_eq!(bw.checksum, (1 << 20) as f64);
        assert!(bw.bytes_per_s.is_finite() && bw.bytes_per_s > 0.0);
    }
}
