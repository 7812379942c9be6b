//! Single-thread throughput of `vec_dot` in GB/s of weight bytes read.
//!
//! `cargo run -p nao-kernels --release --example dot_bench`
//!
//! For each format and row length k, a matrix of rows × k weights is multiplied with one
//! quantized activation row: 1 MiB (cache resident: kernel throughput) and 64 MiB (streams
//! from memory: bandwidth bound), plus the scalar twins on 1 MiB.

use half::f16;
use nao_kernels::cast::as_bytes;
use nao_kernels::dot::{simd_name, vec_dot, vec_dot_scalar, QuantizedActs};
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

fn bench(w: DType, k: usize, mib: usize, scalar: bool) -> f64 {
    let mut r = Rng(0x1234_5678_9abc_def1);
    let row_bytes = w.bytes_for(k as u64).unwrap() as usize;
    let rows = ((mib << 20) / row_bytes).max(1);
    let data = weights(w, rows * k, &mut r);
    let all = &as_bytes(&data)[..rows * row_bytes];
    let x: Vec<f32> = (0..k)
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    let mut acts = QuantizedActs::new();
    acts.quantize(w, &x, 1, k).unwrap();
    let a = acts.row(0);
    let f = if scalar { vec_dot_scalar } else { vec_dot };
    let mut sink = 0.0f32;
    let mut best = f64::MAX;
    // Enough passes for ~0.1 s per repetition even when the matrix is small.
    let passes = (100_000_000 / (rows * row_bytes)).clamp(1, 1000);
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..passes {
            for row in all.chunks_exact(row_bytes) {
                sink += f(w, k, row, a).unwrap();
            }
        }
        best = best.min(t.elapsed().as_secs_f64() / passes as f64);
    }
    std::hint::black_box(sink);
    all.len() as f64 / best / 1e9
}

fn main() {
    println!("kernel set: {}", simd_name());
    println!(
        "{:<6} {:>6} {:>10} {:>10} {:>10}",
        "type", "k", "1MiB GB/s", "64MiB GB/s", "scalar 1MiB"
    );
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
        for k in [1536usize, 8960] {
            let small = bench(w, k, 1, false); // 1 MiB: L2 resident
            let big = bench(w, k, 64, false);
            let sc = bench(w, k, 1, true);
            println!(
                "{:<6} {:>6} {:>10.2} {:>10.2} {:>10.2}",
                w.name(),
                k,
                small,
                big,
                sc
            );
        }
    }
}
