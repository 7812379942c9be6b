//! Checks `nao_kernels::dequant::dequantize` against fixtures decoded by an independent
//! implementation (gguf-py's numpy dequantizers; see scripts/gen-dequant-fixtures.py).
//!
//! Every fixture must match bit for bit: the kernels follow ggml's order of float operations,
//! and so does the reference. The one allowance is NaN (only in the random F16/BF16/F32
//! inputs), where any NaN is accepted since conversions may quiet signalling NaNs.

use nao_kernels::dequant::dequantize;
use nao_kernels::DType;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

struct Fixture {
    file: String,
    dtype: DType,
    n: usize,
    src: Vec<u8>,
    expected: Vec<f32>,
}

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dequant")
}

fn unhex(s: &str) -> Vec<u8> {
    assert_eq!(s.len() % 2, 0, "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
        .collect()
}

fn load_all() -> Vec<Fixture> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(fixture_dir())
        .expect("fixture directory exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("read fixture");
            let v: serde_json::Value = serde_json::from_str(&text).expect("fixture is JSON");
            let id = v["ggml_type"].as_u64().expect("ggml_type") as u32;
            let dtype = DType::from_ggml_id(id).expect("known ggml type");
            assert_eq!(v["type"].as_str(), Some(dtype.name()), "{}", path.display());
            let expected: Vec<f32> = unhex(v["expected"].as_str().expect("expected"))
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            let n = v["n"].as_u64().expect("n") as usize;
            assert_eq!(expected.len(), n);
            Fixture {
                file: path.file_name().unwrap().to_string_lossy().into_owned(),
                dtype,
                n,
                src: unhex(v["src"].as_str().expect("src")),
                expected,
            }
        })
        .collect()
}

fn assert_matches(f: &Fixture, got: &[f32], what: &str) {
    for (i, (&g, &e)) in got.iter().zip(&f.expected).enumerate() {
        let ok = if e.is_nan() {
            g.is_nan()
        } else {
            g.to_bits() == e.to_bits()
        };
        assert!(
            ok,
            "{} ({what}): element {i}: got {g:e} ({:#010x}), want {e:e} ({:#010x})",
            f.file,
            g.to_bits(),
            e.to_bits()
        );
    }
}

#[test]
fn every_format_has_a_fixture() {
    let have: BTreeSet<&str> = load_all().iter().map(|f| f.dtype.name()).collect();
    for t in [
        DType::F32,
        DType::F16,
        DType::BF16,
        DType::Q4_0,
        DType::Q4_1,
        DType::Q5_0,
        DType::Q5_1,
        DType::Q8_0,
        DType::Q2K,
        DType::Q3K,
        DType::Q4K,
        DType::Q5K,
        DType::Q6K,
        DType::Q8K,
    ] {
        assert!(have.contains(t.name()), "no fixture for {t}");
    }
}

#[test]
fn matches_reference_decoder() {
    for f in load_all() {
        let mut got = vec![f32::NAN; f.n];
        dequantize(f.dtype, &f.src, &mut got).unwrap_or_else(|e| panic!("{}: {e}", f.file));
        assert_matches(&f, &got, "aligned");
    }
}

#[test]
fn matches_reference_decoder_unaligned() {
    for f in load_all() {
        // Place the bytes at odd offsets so block views cannot be borrowed in place.
        for offset in [1usize, 3] {
            let mut buf = vec![0u8; f.src.len() + offset];
            buf[offset..].copy_from_slice(&f.src);
            let mut got = vec![f32::NAN; f.n];
            dequantize(f.dtype, &buf[offset..], &mut got)
                .unwrap_or_else(|e| panic!("{}: {e}", f.file));
            assert_matches(&f, &got, &format!("offset {offset}"));
        }
    }
}

#[test]
fn fixture_prefixes_decode_the_same() {
    // Dequantizing whole blocks independently must give the same values as the full row.
    for f in load_all() {
        let bb = f.dtype.block_bytes();
        let bs = f.dtype.block_size();
        for (k, chunk) in f.src.chunks(bb).enumerate().take(3) {
            let mut got = vec![0f32; bs];
            dequantize(f.dtype, chunk, &mut got).unwrap();
            let want = &f.expected[k * bs..(k + 1) * bs];
            for (g, e) in got.iter().zip(want) {
                assert!(
                    g.to_bits() == e.to_bits() || (g.is_nan() && e.is_nan()),
                    "{}",
                    f.file
                );
            }
        }
    }
}
