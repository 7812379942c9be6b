//! safetensors reader: well-formed files (single and sharded) read back the values written,
//! and every malformed case of shared/API.md is a typed error — no panic, no huge
//! allocation. Files are built byte by byte here, independently of the reader.

use nao_gguf::{Safetensors, SafetensorsError as E, SafetensorsFile, StDtype};
use std::path::PathBuf;

/// A file image: the 8-byte length, `header` verbatim, then `data`.
fn file(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

fn err(bytes: &[u8]) -> E {
    let e = SafetensorsFile::from_bytes(bytes).expect_err("malformed file was accepted");
    assert!(!e.to_string().is_empty());
    e
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Two tensors: `a` F32 [2, 2] = 1..4 and `b` F16 [2] = [0.5, -2].
fn good() -> Vec<u8> {
    let mut data = f32_bytes(&[1.0, 2.0, 3.0, 4.0]);
    data.extend_from_slice(&[0x00, 0x38, 0x00, 0xC0]); // f16 0.5, -2.0
    let header = r#"{"__metadata__":{"format":"pt"},"b":{"dtype":"F16","shape":[2],"data_offsets":[16,20]},"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}"#;
    file(header, &data)
}

#[test]
fn reads_values_shapes_and_metadata() {
    let f = SafetensorsFile::from_bytes(&good()).expect("valid file");
    let names: Vec<&str> = f.tensors().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["a", "b"], "tensors are listed in data order");
    let a = f.tensor("a").expect("a");
    assert_eq!(
        (a.dtype, a.shape.as_slice(), a.n_bytes),
        (StDtype::F32, &[2u64, 2][..], 16)
    );
    assert_eq!(f.to_f32(a).expect("f32"), [1.0, 2.0, 3.0, 4.0]);
    let b = f.tensor("b").expect("b");
    assert_eq!(f.to_f32(b).expect("f16"), [0.5, -2.0]);
    assert_eq!(f.metadata(), [("format".to_string(), "pt".to_string())]);
}

#[test]
fn bf16_decodes() {
    // bf16 1.0 = 0x3F80, -3.5 = 0xC060
    let f = SafetensorsFile::from_bytes(&file(
        r#"{"x":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}}"#,
        &[0x80, 0x3F, 0x60, 0xC0],
    ))
    .expect("valid");
    let x = f.tensor("x").expect("x");
    assert_eq!(f.to_f32(x).expect("bf16"), [1.0, -3.5]);
}

/// `header` padded with spaces (valid JSON whitespace) so the data starts at `8k + rem`.
fn padded(header: &str, rem: usize) -> String {
    let mut h = header.to_string();
    while (8 + h.len()) % 8 != rem {
        h.push(' ');
    }
    h
}

#[test]
fn cast_is_zero_copy_when_aligned_and_refuses_otherwise() {
    let h = r#"{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
    // Data at 8k + 2 in a page-aligned buffer: not aligned for f32, so no cast, but a copy.
    let f =
        SafetensorsFile::from_bytes(&file(&padded(h, 2), &f32_bytes(&[7.0, 8.0]))).expect("valid");
    let x = f.tensor("x").expect("x");
    assert!(
        f.cast::<f32>(x).is_none(),
        "misaligned data must not be cast"
    );
    assert_eq!(f.to_f32(x).expect("copy"), [7.0, 8.0]);
    // Data at 8k: aligned, borrowed from the mapping.
    let f =
        SafetensorsFile::from_bytes(&file(&padded(h, 0), &f32_bytes(&[7.0, 8.0]))).expect("valid");
    let x = f.tensor("x").expect("x");
    assert_eq!(f.cast::<f32>(x), Some(&[7.0f32, 8.0][..]));
}

#[test]
fn empty_and_short_files() {
    for len in 0..8 {
        assert!(matches!(err(&vec![0u8; len]), E::TooSmall { .. }), "{len}");
    }
}

#[test]
fn header_length_too_large_or_past_the_end() {
    for len in [u64::MAX, 1 << 63, 100_000_001] {
        let mut b = len.to_le_bytes().to_vec();
        b.extend_from_slice(b"{}");
        assert!(matches!(err(&b), E::HeaderTooLarge { .. }), "{len}");
    }
    let mut b = 1000u64.to_le_bytes().to_vec();
    b.extend_from_slice(b"{}");
    assert!(matches!(err(&b), E::HeaderPastEnd { len: 1000, .. }));
}

#[test]
fn header_not_utf8_or_not_json() {
    assert!(matches!(err(&file("{\u{0}", &[])), E::HeaderNotJson(_)));
    let mut b = 4u64.to_le_bytes().to_vec();
    b.extend_from_slice(&[b'{', 0xFF, 0xFE, b'}']);
    assert!(matches!(err(&b), E::HeaderNotUtf8));
    for h in ["", "not json", "[1, 2]", "{\"a\": ", "42"] {
        assert!(matches!(err(&file(h, &[])), E::HeaderNotJson(_)), "{h:?}");
    }
}

#[test]
fn bad_entries() {
    let cases = [
        r#"{"a": 3}"#,
        r#"{"a":{"shape":[1],"data_offsets":[0,4]}}"#,
        r#"{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#,
        r#"{"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}"#,
        r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0]}}"#,
        r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}"#,
        r#"{"a":{"dtype":"F32","shape":"1","data_offsets":[0,4]}}"#,
        r#"{"__metadata__":{"n":1}}"#,
    ];
    for h in cases {
        assert!(matches!(err(&file(h, &[0; 4])), E::BadEntry { .. }), "{h}");
    }
}

#[test]
fn unknown_dtype() {
    let h = r#"{"a":{"dtype":"Q4_K","shape":[1],"data_offsets":[0,4]}}"#;
    assert!(matches!(err(&file(h, &[0; 4])), E::UnknownDtype { dtype, .. } if dtype == "Q4_K"));
}

#[test]
fn dtype_shape_offset_mismatch() {
    // [3] F32 is 12 bytes, the range holds 8.
    let h = r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#;
    assert!(matches!(
        err(&file(h, &[0; 8])),
        E::ShapeMismatch {
            expected: 12,
            got: 8,
            ..
        }
    ));
    let h = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}"#;
    assert!(matches!(err(&file(h, &[0; 8])), E::ReversedOffsets { .. }));
}

#[test]
fn sizes_that_overflow_and_too_many_dims() {
    let h = r#"{"a":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,8]}}"#;
    assert!(matches!(err(&file(h, &[0; 8])), E::SizeOverflow { .. }));
    let h = r#"{"a":{"dtype":"U8","shape":[1,1,1,1,1,1,1,1,1],"data_offsets":[0,1]}}"#;
    assert!(matches!(
        err(&file(h, &[0; 1])),
        E::TooManyDims { n: 9, .. }
    ));
}

#[test]
fn data_past_the_end() {
    let h = r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#;
    assert!(matches!(
        err(&file(h, &[0; 8])),
        E::OutOfBounds {
            end: 16,
            data_len: 8,
            ..
        }
    ));
    let h = r#"{"a":{"dtype":"U8","shape":[0],"data_offsets":[18446744073709551615,18446744073709551615]}}"#;
    assert!(matches!(err(&file(h, &[])), E::OutOfBounds { .. }));
}

#[test]
fn overlapping_gaps_and_trailing_bytes() {
    let h = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#;
    assert!(matches!(err(&file(h, &[0; 12])), E::Overlap { a, b } if a == "a" && b == "b"));
    let h = r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#;
    assert!(matches!(
        err(&file(h, &[0; 12])),
        E::Gap { start: 4, end: 8 }
    ));
    let h = r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#;
    assert!(matches!(
        err(&file(h, &[0; 8])),
        E::Gap { start: 0, end: 4 }
    ));
    let h = r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#;
    assert!(matches!(err(&file(h, &[0; 7])), E::TrailingBytes { n: 3 }));
    assert!(matches!(
        err(&file("{}", &[0; 1])),
        E::TrailingBytes { n: 1 }
    ));
}

#[test]
fn duplicate_names() {
    let h = r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#;
    assert!(matches!(err(&file(h, &[0; 8])), E::DuplicateTensor(n) if n == "a"));
}

#[test]
fn empty_tensors_and_empty_files_are_fine() {
    let f = SafetensorsFile::from_bytes(&file("{}", &[])).expect("no tensors");
    assert!(f.tensors().is_empty());
    let h = r#"{"e":{"dtype":"F32","shape":[0,3],"data_offsets":[0,0]}}"#;
    let f = SafetensorsFile::from_bytes(&file(h, &[])).expect("an empty tensor");
    assert_eq!(f.tensor("e").map(|t| t.n_bytes), Some(0));
}

/// A fresh directory under the system temp dir.
fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("nao-st-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn shard(name: &str, v: f32) -> Vec<u8> {
    let h = format!(r#"{{"{name}":{{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}}}"#);
    file(&h, &v.to_le_bytes())
}

fn write(dir: &std::path::Path, name: &str, bytes: &[u8]) {
    std::fs::write(dir.join(name), bytes).expect("write");
}

#[test]
fn sharded_model_via_index() {
    let d = temp_dir("shards");
    write(&d, "m-1.safetensors", &shard("x", 1.5));
    write(&d, "m-2.safetensors", &shard("y", -2.5));
    let index = r#"{"metadata":{"total_size":8},"weight_map":{"x":"m-1.safetensors","y":"m-2.safetensors"}}"#;
    write(&d, "model.safetensors.index.json", index.as_bytes());
    let st = Safetensors::open(&d).expect("sharded model");
    let (f, t) = st.get("y").expect("y");
    assert_eq!(f.to_f32(t).expect("y"), [-2.5]);
    let (f, t) = st.get("x").expect("x");
    assert_eq!(f.to_f32(t).expect("x"), [1.5]);
    assert_eq!(st.shards().len(), 2);

    // The index says y is in the first shard: it is not.
    let wrong = r#"{"weight_map":{"x":"m-1.safetensors","y":"m-1.safetensors"}}"#;
    write(&d, "model.safetensors.index.json", wrong.as_bytes());
    assert!(matches!(
        Safetensors::open(&d),
        Err(E::MissingInShard { tensor, .. }) if tensor == "y"
    ));
    // A shard outside the directory.
    let escape = r#"{"weight_map":{"x":"../m-1.safetensors"}}"#;
    write(&d, "model.safetensors.index.json", escape.as_bytes());
    assert!(matches!(Safetensors::open(&d), Err(E::BadShardName(_))));
    // One name in two shards.
    write(&d, "m-2.safetensors", &shard("x", 3.0));
    let dup = r#"{"weight_map":{"x":"m-2.safetensors","z":"m-1.safetensors"}}"#;
    write(&d, "model.safetensors.index.json", dup.as_bytes());
    assert!(Safetensors::open(&d).is_err());
    let both = [
        SafetensorsFile::from_bytes(&shard("x", 1.0)).expect("a"),
        SafetensorsFile::from_bytes(&shard("x", 2.0)).expect("b"),
    ];
    assert!(matches!(
        Safetensors::from_files(both.into()),
        Err(E::DuplicateTensor(n)) if n == "x"
    ));
    write(&d, "model.safetensors.index.json", b"{\"weight_map\": 3}");
    assert!(matches!(Safetensors::open(&d), Err(E::BadIndex { .. })));
    let _ = std::fs::remove_dir_all(&d);
    let empty = temp_dir("empty");
    assert!(matches!(Safetensors::open(&empty), Err(E::NoModel(_))));
    let _ = std::fs::remove_dir_all(&empty);
}

/// The real all-MiniLM-L6-v2 checkpoint, when fetched: 101 tensors tiling the data exactly.
#[test]
fn real_minilm_checkpoint() {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../models/all-MiniLM-L6-v2/model.safetensors");
    if !p.exists() {
        assert!(
            std::env::var_os("NAO_REQUIRE_MODELS").is_none(),
            "{} missing: run scripts/fetch_models.py",
            p.display()
        );
        eprintln!("skipping: {} not found", p.display());
        return;
    }
    let st = Safetensors::open(&p).expect("real checkpoint");
    let (f, t) = st
        .get("embeddings.word_embeddings.weight")
        .expect("word embeddings");
    assert_eq!(
        (t.dtype, t.shape.as_slice()),
        (StDtype::F32, &[30522u64, 384][..])
    );
    assert!(
        f.cast::<f32>(t).is_some(),
        "this file's data is 8-byte aligned"
    );
    assert_eq!(st.names().count(), f.tensors().len());
}
