//! Prefill matmul throughput on one thread, in GMAC/s of on-CPU time (so a busy machine
//! skews less): random weights of Qwen2.5-1.5B's FFN shapes (Q4_K, Q6_K) and Gemma-3-270M's
//! (Q5_0, Q8_0) times a batch of activation rows.
//!
//! `cargo run -p nao-kernels --release --example matmul_bench [N_TOKENS]`

use half::f16;
use nao_kernels::cast::as_bytes;
use nao_kernels::dot::{simd_name, QuantizedActs};
use nao_kernels::matmul::{matmul, WeightView};
use nao_kernels::pool::ThreadPool;
use nao_kernels::DType;

fn sched_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// Random blocks of `w` (f16 scales patched to 0.01) in f32-aligned storage.
fn weights(w: DType, rows: usize, cols: usize) -> Vec<f32> {
    let bytes = w.bytes_for((rows * cols) as u64).unwrap() as usize;
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    let mut v: Vec<f32> = (0..bytes.div_ceil(4))
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            f32::from_bits(s as u32)
        })
        .collect();
    let mut b = as_bytes(&v).to_vec();
    let offs: &[usize] = match w {
        DType::Q4K => &[0, 2],
        DType::Q6K => &[208],
        DType::Q5_0 | DType::Q8_0 => &[0],
        _ => &[],
    };
    let scale = f16::from_f32(0.01).to_le_bytes();
    for blk in b[..bytes].chunks_exact_mut(w.block_bytes()) {
        for &o in offs {
            blk[o..o + 2].copy_from_slice(&scale);
        }
    }
    for (d, c) in v.iter_mut().zip(b.chunks(4)) {
        let mut a = [0u8; 4];
        a[..c.len()].copy_from_slice(c);
        *d = f32::from_bits(u32::from_ne_bytes(a));
    }
    v
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(64);
    println!("kernel set: {}, {n} tokens, 1 thread", simd_name());
    let pool = ThreadPool::new(1);
    for (w, rows, cols) in [
        (DType::Q4K, 8960, 1536),
        (DType::Q4K, 1536, 8960),
        (DType::Q6K, 1536, 8960),
        (DType::Q5_0, 2048, 640),
        (DType::Q8_0, 2048, 640),
    ] {
        let data = weights(w, rows, cols);
        let view = WeightView {
            dtype: w,
            data: &as_bytes(&data)[..w.bytes_for((rows * cols) as u64).unwrap() as usize],
            rows,
            cols,
        };
        let x: Vec<f32> = (0..n * cols)
            .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        let mut y = vec![0.0f32; n * rows];
        let mut acts = QuantizedActs::new();
        let mut best = f64::MAX;
        // ~0.5 s per repetition: the on-CPU clock may tick only every few milliseconds.
        let reps = (20_000_000_000 / (rows * cols * n)).max(1);
        for _ in 0..3 {
            let t0 = sched_ns();
            for _ in 0..reps {
                matmul(&view, &x, n, &mut y, &mut acts, &pool).unwrap();
            }
            best = best.min((sched_ns() - t0) as f64 * 1e-9 / reps as f64);
        }
        let gmac = (rows * cols * n) as f64 / best / 1e9;
        println!(
            "{:<5} {rows:>5} x {cols:>5}: {gmac:7.2} GMAC/s ({best:.3} s)",
            w.name()
        );
    }
}
