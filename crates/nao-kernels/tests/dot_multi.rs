//! Multi-column dot kernels (`vec_dot_multi`) against per-row `vec_dot`, bit for bit, and
//! batched `matmul` against one matmul per token.

use half::f16;
use nao_kernels::blocks::*;
use nao_kernels::cast::as_bytes;
use nao_kernels::dot::{
    vec_dot, vec_dot_multi, vec_dot_multi_scalar, vec_dot_scalar, ActRow, QuantizedActs,
};
use nao_kernels::matmul::{matmul, WeightView};
use nao_kernels::pool::ThreadPool;
use nao_kernels::DType;
use proptest::prelude::*;

mod common;
use common::Rng;

fn rand_q4k(r: &mut Rng) -> BlockQ4K {
    let mut b = BlockQ4K {
        d: r.scale(),
        dmin: r.scale(),
        scales: [0; 12],
        qs: [0; 128],
    };
    r.fill(&mut b.scales);
    r.fill(&mut b.qs);
    b
}

fn rand_q6k(r: &mut Rng) -> BlockQ6K {
    let mut b = BlockQ6K {
        ql: [0; 128],
        qh: [0; 64],
        scales: [0; 16],
        d: r.scale(),
    };
    r.fill(&mut b.ql);
    r.fill(&mut b.qh);
    for s in &mut b.scales {
        *s = ((r.next() % 255) as i32 - 127) as i8;
    }
    b
}

/// `n_rows` weight rows of `nb` super-blocks each, as bytes in 4-byte-aligned storage
/// (zero-padded to whole words), plus the byte length.
fn weight_rows(w: DType, n_rows: usize, nb: usize, r: &mut Rng) -> (Vec<f32>, usize) {
    let bytes = match w {
        DType::Q4K => as_bytes(&(0..n_rows * nb).map(|_| rand_q4k(r)).collect::<Vec<_>>()).to_vec(),
        DType::Q6K => as_bytes(&(0..n_rows * nb).map(|_| rand_q6k(r)).collect::<Vec<_>>()).to_vec(),
        DType::Q8_0 => {
            let x: Vec<f32> = (0..n_rows * nb * 256).map(|_| r.unit()).collect();
            let mut q = vec![
                BlockQ8_0 {
                    d: f16::ZERO,
                    qs: [0; 32]
                };
                x.len() / 32
            ];
            nao_kernels::quantize::quantize_row_q8_0(&x, &mut q);
            as_bytes(&q).to_vec()
        }
        DType::F32 => as_bytes(
            &(0..n_rows * nb * 256)
                .map(|_| r.unit())
                .collect::<Vec<f32>>(),
        )
        .to_vec(),
        _ => unreachable!(),
    };
    let len = bytes.len();
    let words = bytes
        .chunks(4)
        .map(|c| {
            let mut b = [0u8; 4];
            b[..c.len()].copy_from_slice(c);
            f32::from_bits(u32::from_ne_bytes(b))
        })
        .collect();
    (words, len)
}

fn activations(n: usize, r: &mut Rng) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let v = r.unit();
            if r.next() & 31 == 0 {
                v * 20.0
            } else {
                v
            }
        })
        .collect()
}

const TYPES: [DType; 4] = [DType::Q4K, DType::Q6K, DType::Q8_0, DType::F32];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn multi_equals_single(wi in 0..TYPES.len(), nb in 1..=4usize, n_act in 1..=9usize, seed in any::<u64>()) {
        let w = TYPES[wi];
        let mut r = Rng(seed);
        let k = nb * 256;
        let (words, len) = weight_rows(w, 1, nb, &mut r);
        let row = &as_bytes(&words)[..len];
        let x = activations(n_act * k, &mut r);
        let mut acts = QuantizedActs::new();
        acts.quantize(w, &x, n_act, k).unwrap();
        let rows: Vec<ActRow<'_>> = (0..n_act).map(|t| acts.row(t)).collect();

        let mut out = vec![0.0f32; n_act];
        vec_dot_multi(w, k, row, &rows, &mut out).unwrap();
        let mut out_s = vec![0.0f32; n_act];
        vec_dot_multi_scalar(w, k, row, &rows, &mut out_s).unwrap();
        for (t, a) in rows.iter().enumerate() {
            let single = vec_dot(w, k, row, *a).unwrap();
            prop_assert_eq!(out[t].to_bits(), single.to_bits(), "{} simd col {}: {} vs {}", w, t, out[t], single);
            let single_s = vec_dot_scalar(w, k, row, *a).unwrap();
            prop_assert_eq!(out_s[t].to_bits(), single_s.to_bits(), "{} scalar col {}: {} vs {}", w, t, out_s[t], single_s);
        }
    }
}

#[test]
fn multi_rejects_bad_lengths() {
    let mut r = Rng(7);
    let (words, len) = weight_rows(DType::Q4K, 1, 2, &mut r);
    let row = &as_bytes(&words)[..len];
    let x = activations(4 * 512, &mut r);
    let mut acts = QuantizedActs::new();
    acts.quantize(DType::Q4K, &x, 4, 512).unwrap();
    let rows: Vec<ActRow<'_>> = (0..4).map(|t| acts.row(t)).collect();
    let mut out = vec![0.0f32; 3];
    assert!(vec_dot_multi(DType::Q4K, 512, row, &rows, &mut out).is_err());
    let mut out = vec![0.0f32; 4];
    assert!(vec_dot_multi(DType::Q4K, 256, row, &rows, &mut out).is_err());
    assert!(vec_dot_multi(DType::Q4K, 512, &row[..row.len() - 4], &rows, &mut out).is_err());
    let f32_rows = [ActRow::F32(&x[..512])];
    let mut out = vec![0.0f32; 1];
    assert!(vec_dot_multi(DType::Q4K, 512, row, &f32_rows, &mut out).is_err());
}

#[test]
fn batched_matmul_equals_per_token_matmul() {
    let pool = ThreadPool::new(2);
    let mut r = Rng(42);
    // With AMX (see `nao_kernels::amx::enabled`), K-quant batches of 4+ tokens take the tile
    // GEMM: row counts and token counts off the 16 × 16 tile are covered here.
    for w in TYPES {
        for (nb, n_rows, tokens) in [
            (1usize, 7usize, &[1usize, 2, 3, 4, 5, 9, 17, 33][..]),
            (3, 7, &[1, 4, 9, 33]),
            (2, 33, &[1, 5, 17, 33]),
            // Enough tokens × super-blocks that the AMX GEMM takes the super-blocks in
            // several passes.
            (25, 17, &[113]),
        ] {
            let cols = nb * 256;
            let (words, len) = weight_rows(w, n_rows, nb, &mut r);
            let view = WeightView {
                dtype: w,
                data: &as_bytes(&words)[..len],
                rows: n_rows,
                cols,
            };
            for &n_tokens in tokens {
                let x = activations(n_tokens * cols, &mut r);
                let mut acts = QuantizedActs::new();
                let mut y = vec![0.0f32; n_tokens * n_rows];
                matmul(&view, &x, n_tokens, &mut y, &mut acts, &pool).unwrap();
                for t in 0..n_tokens {
                    let mut yt = vec![0.0f32; n_rows];
                    matmul(
                        &view,
                        &x[t * cols..(t + 1) * cols],
                        1,
                        &mut yt,
                        &mut acts,
                        &pool,
                    )
                    .unwrap();
                    for (i, (a, b)) in y[t * n_rows..(t + 1) * n_rows].iter().zip(&yt).enumerate() {
                        assert_eq!(
                            a.to_bits(),
                            b.to_bits(),
                            "{w} nb={nb} n={n_tokens} t={t} r={i}"
                        );
                    }
                }
            }
        }
    }
}
