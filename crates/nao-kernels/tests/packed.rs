//! Interleaved (16-row) Q4_0/Q5_0/Q8_0 weights: the AVX-512 kernel against its scalar twin
//! bit for bit, the twin against an f64 evaluation of the file's blocks, and batch
//! invariance (a token's outputs do not depend on the tokens beside it). Interleaved Q4_K
//! against the per-row kernels of the file's layout, bit for bit.

use half::f16;
use nao_kernels::blocks::{Block, BlockQ4K, BlockQ4_0, BlockQ5_0, BlockQ8_0};
use nao_kernels::cast::as_bytes;
use nao_kernels::dot::{ActRow, QuantizedActs};
use nao_kernels::matmul::WeightView;
use nao_kernels::packed::{available, matmul_packed, matmul_packed_scalar, PackedWeight};
use nao_kernels::pool::ThreadPool;
use nao_kernels::DType;

mod common;
use common::Rng;

/// Random `[rows, cols]` weights of type `w` as file bytes, plus each row's values (f64).
fn weights(w: DType, rows: usize, cols: usize, r: &mut Rng) -> (Vec<u8>, Vec<Vec<f64>>) {
    let nb = rows * cols / 32;
    fn bytes<T: Block>(v: &[T]) -> Vec<u8> {
        as_bytes(v).to_vec()
    }
    let (raw, vals): (Vec<u8>, Vec<f64>) = match w {
        DType::Q4_0 => {
            let b: Vec<BlockQ4_0> = (0..nb)
                .map(|_| BlockQ4_0 {
                    d: r.scale(),
                    qs: std::array::from_fn(|_| r.byte()),
                })
                .collect();
            let vals = b
                .iter()
                .flat_map(|b| {
                    let d = b.d.to_f64();
                    (0..32).map(move |j| {
                        let q = if j < 16 {
                            b.qs[j] & 15
                        } else {
                            b.qs[j - 16] >> 4
                        };
                        d * (f64::from(q) - 8.0)
                    })
                })
                .collect();
            (bytes(&b), vals)
        }
        DType::Q5_0 => {
            let b: Vec<BlockQ5_0> = (0..nb)
                .map(|_| BlockQ5_0 {
                    d: r.scale(),
                    qh: std::array::from_fn(|_| r.byte()),
                    qs: std::array::from_fn(|_| r.byte()),
                })
                .collect();
            let vals = b
                .iter()
                .flat_map(|b| {
                    let d = b.d.to_f64();
                    let qh = u32::from_le_bytes(b.qh);
                    (0..32).map(move |j| {
                        let lo = if j < 16 {
                            b.qs[j] & 15
                        } else {
                            b.qs[j - 16] >> 4
                        };
                        let q = u32::from(lo) | (qh >> j & 1) << 4;
                        d * (f64::from(q) - 16.0)
                    })
                })
                .collect();
            (bytes(&b), vals)
        }
        _ => {
            let b: Vec<BlockQ8_0> = (0..nb)
                .map(|_| BlockQ8_0 {
                    d: r.scale(),
                    qs: std::array::from_fn(|_| r.byte() as i8),
                })
                .collect();
            let vals = b
                .iter()
                .flat_map(|b| {
                    let d = b.d.to_f64();
                    b.qs.iter().map(move |&q| d * f64::from(q))
                })
                .collect();
            (bytes(&b), vals)
        }
    };
    let rows_vals = vals.chunks(cols).map(|c| c.to_vec()).collect();
    (raw, rows_vals)
}

/// `raw` in 2-byte-aligned storage (as in a file), for the block casts.
fn aligned(raw: &[u8]) -> Vec<f16> {
    raw.chunks(2)
        .map(|c| f16::from_bits(u16::from_le_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .collect()
}

#[test]
fn packed_kernels_match_twin_reference_and_are_batch_invariant() {
    let pool = ThreadPool::new(2);
    let mut r = Rng(7);
    for w in [DType::Q4_0, DType::Q5_0, DType::Q8_0] {
        for (rows, cols) in [(16, 32), (48, 64), (32, 640), (64, 96)] {
            let (raw, vals) = weights(w, rows, cols, &mut r);
            let store = aligned(&raw);
            let data = &as_bytes(&store)[..raw.len()];
            assert_eq!(data, &raw[..]);
            let view = WeightView {
                dtype: w,
                data,
                rows,
                cols,
            };
            let Some(p) = PackedWeight::new(&view).unwrap() else {
                panic!("{w} {rows}x{cols} not packed");
            };
            assert_eq!(p.n_bytes(), raw.len(), "{w}: repacked size");
            // Rows read back from the packed copy equal the file's dequantization.
            let rb = raw.len() / rows;
            for r in [0, 5, rows - 1] {
                let mut want = vec![0.0f32; cols];
                let mut got = vec![0.0f32; cols];
                nao_kernels::dequant::dequantize(w, &data[r * rb..(r + 1) * rb], &mut want)
                    .unwrap();
                p.dequantize_row(r, &mut got).unwrap();
                assert_eq!(got, want, "{w} {rows}x{cols} row {r}");
            }
            for n in [1usize, 3, 8, 9, 17, 40, 70] {
                let x: Vec<f32> = (0..n * cols).map(|_| r.unit() * 2.0).collect();
                let mut acts = QuantizedActs::new();
                let mut twin = vec![0.0f32; n * rows];
                matmul_packed_scalar(&p, &x, n, &mut twin, &mut acts, &pool).unwrap();

                // The twin against the file's blocks in f64 on the same quantized acts.
                acts.quantize(w, &x, n, cols).unwrap();
                for t in 0..n {
                    let ActRow::Q8_0(q) = acts.row(t) else {
                        panic!("acts")
                    };
                    for (row, wv) in vals.iter().enumerate() {
                        let (mut exact, mut mag) = (0.0f64, 0.0f64);
                        for (b, yb) in q.iter().enumerate() {
                            let dy = yb.d.to_f64();
                            for j in 0..32 {
                                let v = wv[32 * b + j] * dy * f64::from(yb.qs[j]);
                                exact += v;
                                mag += v.abs();
                            }
                        }
                        let got = f64::from(twin[t * rows + row]);
                        assert!(
                            (got - exact).abs() <= 1e-6 * mag + 1e-9,
                            "{w} {rows}x{cols} n={n} t={t} row={row}: {got} vs {exact}"
                        );
                    }
                }

                if available() {
                    let mut fast = vec![0.0f32; n * rows];
                    matmul_packed(&p, &x, n, &mut fast, &mut acts, &pool).unwrap();
                    assert_eq!(fast, twin, "{w} {rows}x{cols} n={n}: SIMD vs twin");
                    // Batch invariance: each token alone.
                    for t in 0..n {
                        let mut one = vec![0.0f32; rows];
                        matmul_packed(
                            &p,
                            &x[t * cols..(t + 1) * cols],
                            1,
                            &mut one,
                            &mut acts,
                            &pool,
                        )
                        .unwrap();
                        assert_eq!(one[..], fast[t * rows..(t + 1) * rows], "{w} n={n} t={t}");
                    }
                }
            }
        }
    }
}

#[test]
fn shapes_the_layout_does_not_take_are_left_alone() {
    let mut r = Rng(3);
    let (raw, _) = weights(DType::Q8_0, 8, 32, &mut r);
    let store = aligned(&raw);
    let view = WeightView {
        dtype: DType::Q8_0,
        data: &as_bytes(&store)[..raw.len()],
        rows: 8,
        cols: 32,
    };
    assert!(
        PackedWeight::new(&view).unwrap().is_none(),
        "8 rows: not a group"
    );
    let view = WeightView {
        dtype: DType::Q6K,
        data: &[],
        rows: 16,
        cols: 256,
    };
    assert!(
        PackedWeight::new(&view).unwrap().is_none(),
        "Q6_K is not interleaved"
    );
    let bad = WeightView {
        dtype: DType::Q8_0,
        data: &as_bytes(&store)[..raw.len() - 34],
        rows: 16,
        cols: 32,
    };
    assert!(PackedWeight::new(&bad).is_err(), "short data is an error");
}

/// Random Q4_K rows (`rows × cols/256` blocks) as file bytes, plus each row's values (f64).
fn q4k_weights(rows: usize, cols: usize, r: &mut Rng) -> (Vec<u8>, Vec<Vec<f64>>) {
    let b: Vec<BlockQ4K> = (0..rows * cols / 256)
        .map(|_| BlockQ4K {
            d: r.scale(),
            dmin: r.scale(),
            scales: std::array::from_fn(|_| r.byte()),
            qs: std::array::from_fn(|_| r.byte()),
        })
        .collect();
    let vals: Vec<f64> = b
        .iter()
        .flat_map(|b| {
            let (d, dmin) = (b.d.to_f64(), b.dmin.to_f64());
            (0..256).map(move |i| {
                // The 6-bit scale/min packing of llama.cpp's `get_scale_min_k4`, spelled out.
                let g = i / 32;
                let (sc, m) = if g < 4 {
                    (b.scales[g] & 63, b.scales[g + 4] & 63)
                } else {
                    (
                        (b.scales[g + 4] & 15) | (b.scales[g - 4] >> 6) << 4,
                        (b.scales[g + 4] >> 4) | (b.scales[g] >> 6) << 4,
                    )
                };
                let byte = b.qs[(g / 2) * 32 + i % 32];
                let q = if g % 2 == 0 { byte & 15 } else { byte >> 4 };
                d * f64::from(sc) * f64::from(q) - dmin * f64::from(m)
            })
        })
        .collect();
    let rows_vals = vals.chunks(cols).map(|c| c.to_vec()).collect();
    (as_bytes(&b).to_vec(), rows_vals)
}

#[test]
fn packed_q4k_equals_the_per_row_kernels_bit_for_bit() {
    let pool = ThreadPool::new(2);
    let mut r = Rng(11);
    for (rows, cols) in [(16, 256), (48, 768), (32, 1536)] {
        let (raw, vals) = q4k_weights(rows, cols, &mut r);
        let store = aligned(&raw);
        let data = &as_bytes(&store)[..raw.len()];
        let view = WeightView {
            dtype: DType::Q4K,
            data,
            rows,
            cols,
        };
        let Some(p) = PackedWeight::new(&view).unwrap() else {
            panic!("Q4_K {rows}x{cols} not packed");
        };
        assert_eq!(p.n_bytes(), raw.len(), "repacked size");
        let rb = raw.len() / rows;
        for row in [0, 7, rows - 1] {
            let mut want = vec![0.0f32; cols];
            let mut got = vec![0.0f32; cols];
            nao_kernels::dequant::dequantize(
                DType::Q4K,
                &data[row * rb..(row + 1) * rb],
                &mut want,
            )
            .unwrap();
            p.dequantize_row(row, &mut got).unwrap();
            assert_eq!(got, want, "{rows}x{cols} row {row}");
        }
        // 1..8 tokens take the interleaved kernel alone, 9 and 17 several column chunks,
        // 40 and 70 the AMX GEMM (where the CPU has it).
        for n in [1usize, 3, 8, 9, 17, 40, 70] {
            let x: Vec<f32> = (0..n * cols).map(|_| r.act()).collect();
            let mut acts = QuantizedActs::new();
            let mut twin = vec![0.0f32; n * rows];
            matmul_packed_scalar(&p, &x, n, &mut twin, &mut acts, &pool).unwrap();

            // The twin against the file's values in f64 on the same quantized activations.
            acts.quantize(DType::Q4K, &x, n, cols).unwrap();
            for t in 0..n {
                let ActRow::Q8K(q) = acts.row(t) else {
                    panic!("acts")
                };
                for (row, wv) in vals.iter().enumerate() {
                    let (mut exact, mut mag) = (0.0f64, 0.0f64);
                    for (b, yb) in q.iter().enumerate() {
                        for j in 0..256 {
                            let v = wv[256 * b + j] * f64::from(yb.d) * f64::from(yb.qs[j]);
                            exact += v;
                            mag += v.abs();
                        }
                    }
                    let got = f64::from(twin[t * rows + row]);
                    assert!(
                        (got - exact).abs() <= 1e-5 * mag + 1e-9,
                        "{rows}x{cols} n={n} t={t} row={row}: {got} vs {exact}"
                    );
                }
            }

            if available() {
                // The file's layout through the per-row AVX-512 kernels (or their AMX
                // GEMM): the same operations, so the same bits.
                let mut per_row = vec![0.0f32; n * rows];
                nao_kernels::matmul::matmul(&view, &x, n, &mut per_row, &mut acts, &pool).unwrap();
                assert_eq!(
                    twin, per_row,
                    "{rows}x{cols} n={n}: twin vs per-row kernels"
                );
                let mut fast = vec![0.0f32; n * rows];
                matmul_packed(&p, &x, n, &mut fast, &mut acts, &pool).unwrap();
                assert_eq!(fast, twin, "{rows}x{cols} n={n}: SIMD vs twin");
                for t in [0, n / 2, n - 1] {
                    let mut one = vec![0.0f32; rows];
                    let xt = &x[t * cols..(t + 1) * cols];
                    matmul_packed(&p, xt, 1, &mut one, &mut acts, &pool).unwrap();
                    assert_eq!(one[..], fast[t * rows..(t + 1) * rows], "n={n} t={t} alone");
                }
            }
        }
    }
}
