//! Single-thread throughput of `vec_dot` in GB/s of weight bytes read.
//!
//! `cargo run -p nao-kernels --release --example dot_bench [TYPE]`
//!
//! For each format and row length k, a matrix of rows × k weights is multiplied with one
//! quantized activation row (time on CPU, so a busy machine skews less): 1 MiB (cache resident: kernel throughput) and 64 MiB (streams
//! from memory: bandwidth bound), plus the scalar twins on 1 MiB.

use half::f16;
use nao_kernels::cast::as_bytes;
use nao_kernels::dot::{simd_name, vec_dot_at, vec_dot_multi_at, ActRow, QuantizedActs, SimdLevel};
use nao_kernels::DType;
use std::time::Instant;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Random weight bytes for `n` elements of `w`, with small sane f16 scales, in f32-aligned
/// storage.
fn weights(w: DType, n: usize, r: &mut Rng) -> Vec<f32> {
    let unit = |r: &mut Rng| (r.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0;
    match w {
        // Normal floats only: subnormals would hit microcode assists and measure those.
        DType::F32 => return (0..n).map(|_| unit(r)).collect(),
        DType::F16 => {
            let h: Vec<f16> = (0..n).map(|_| f16::from_f32(unit(r))).collect();
            return to_words(as_bytes(&h));
        }
        _ => {}
    }
    let bytes = w.bytes_for(n as u64).unwrap() as usize;
    let v: Vec<f32> = (0..bytes.div_ceil(4))
        .map(|_| f32::from_bits(r.next() as u32))
        .collect();
    // Patch f16 scales to 0.01 so values are finite.
    let mut b = as_bytes(&v).to_vec();
    let bb = w.block_bytes();
    let s = f16::from_f32(0.01).to_le_bytes();
    let offs: &[usize] = match w {
        DType::Q4_0 | DType::Q5_0 | DType::Q8_0 => &[0],
        DType::Q4K | DType::Q5K => &[0, 2],
        DType::Q6K => &[208],
        _ => &[],
    };
    for blk in b[..bytes].chunks_exact_mut(bb) {
        for &o in offs {
            blk[o..o + 2].copy_from_slice(&s);
        }
    }
    to_words(&b)
}

/// Bytes into f32-aligned storage, bit for bit.
fn to_words(b: &[u8]) -> Vec<f32> {
    b.chunks(4)
        .map(|c| {
            let mut a = [0u8; 4];
            a[..c.len()].copy_from_slice(c);
            f32::from_bits(u32::from_ne_bytes(a))
        })
        .collect()
}

/// GB/s of weight bytes for `level` (0.0 when this machine lacks it), with `n_cols`
/// activation columns per weight row (1: `vec_dot`; more: `vec_dot_multi`).
fn bench(w: DType, k: usize, mib: usize, level: SimdLevel, n_cols: usize) -> f64 {
    if !level.available() {
        return 0.0;
    }
    let mut r = Rng(0x1234_5678_9abc_def1);
    let row_bytes = w.bytes_for(k as u64).unwrap() as usize;
    let rows = ((mib << 20) / row_bytes).max(1);
    let data = weights(w, rows * k, &mut r);
    let all = &as_bytes(&data)[..rows * row_bytes];
    let x: Vec<f32> = (0..k * n_cols)
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    let mut acts = QuantizedActs::new();
    acts.quantize(w, &x, n_cols, k).unwrap();
    let a: Vec<ActRow<'_>> = (0..n_cols).map(|t| acts.row(t)).collect();
    let mut out = vec![0.0f32; n_cols];
    let mut sink = 0.0f32;
    let mut best = f64::MAX;
    // ~1.5 GB of weight-bytes × columns per repetition (a few hundred ms: the on-CPU clock
    // may only tick every few milliseconds).
    let passes = (1_500_000_000 / (rows * row_bytes * n_cols)).clamp(1, 10_000);
    for _ in 0..3 {
        let t = OnCpu::now();
        for _ in 0..passes {
            for row in all.chunks_exact(row_bytes) {
                if n_cols == 1 {
                    sink += vec_dot_at(level, w, k, row, a[0]).unwrap().unwrap();
                } else {
                    vec_dot_multi_at(level, w, k, row, &a, &mut out).unwrap();
                    sink += out[0];
                }
            }
        }
        best = best.min(t.elapsed().as_secs_f64() / passes as f64);
    }
    std::hint::black_box(sink);
    (all.len() * n_cols) as f64 / best / 1e9
}

/// Time this thread spent on a CPU (`/proc/thread-self/schedstat`, Linux), so that other
/// processes sharing the cores do not count; wall time elsewhere.
enum OnCpu {
    Sched(u64),
    Wall(Instant),
}

impl OnCpu {
    fn sched_ns() -> Option<u64> {
        let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
        s.split_whitespace().next()?.parse().ok()
    }
    fn now() -> OnCpu {
        match Self::sched_ns() {
            Some(ns) => OnCpu::Sched(ns),
            None => OnCpu::Wall(Instant::now()),
        }
    }
    fn elapsed(&self) -> std::time::Duration {
        match self {
            OnCpu::Sched(t0) => {
                std::time::Duration::from_nanos(Self::sched_ns().unwrap_or(*t0).saturating_sub(*t0))
            }
            OnCpu::Wall(t) => t.elapsed(),
        }
    }
}

fn main() {
    println!("kernel set: {}", simd_name());
    println!("GB/s of weight bytes (x columns for x4): 1 MiB is cache resident, 64 MiB streams");
    println!(
        "{:<6} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "type",
        "k",
        "512 1M",
        "512 64M",
        "512 1Mx4",
        "avx2 1M",
        "avx2 64M",
        "avx2 1Mx4",
        "scalar 1M"
    );
    let only: Option<String> = std::env::args().nth(1);
    for w in [
        DType::Q4K,
        DType::Q6K,
        DType::Q5K,
        DType::Q8_0,
        DType::Q5_0,
        DType::Q4_0,
        DType::F32,
        DType::F16,
    ] {
        if only
            .as_deref()
            .is_some_and(|o| !o.eq_ignore_ascii_case(w.name()))
        {
            continue;
        }
        for k in [1536usize, 8960] {
            let Some(_) = w.bytes_for(k as u64) else {
                continue;
            };
            use SimdLevel::*;
            println!(
                "{:<6} {:>6} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
                w.name(),
                k,
                bench(w, k, 1, Avx512, 1),
                bench(w, k, 64, Avx512, 1),
                bench(w, k, 1, Avx512, 4),
                bench(w, k, 1, Avx2, 1),
                bench(w, k, 64, Avx2, 1),
                bench(w, k, 1, Avx2, 4),
                bench(w, k, 1, Scalar, 1),
            );
        }
    }
}
