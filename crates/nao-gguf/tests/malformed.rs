//! One test per malformed-input case: each must be a typed error — no panic, no huge
//! allocation, no hang. Files are built with the writer's raw escape hatches.

use nao_gguf::value::type_id as ty;
use nao_gguf::writer::{put_string, put_u32, put_u64, GgufWriter, RawTensor};
use nao_gguf::{Array, GgufError, GgufFile, Value};
use nao_kernels::DType;

const HUGE: [u64; 3] = [u64::MAX, 1 << 63, 1 << 62];

fn parse(w: &GgufWriter) -> Result<GgufFile, GgufError> {
    GgufFile::from_bytes(w.to_bytes())
}

fn err(w: &GgufWriter) -> GgufError {
    let e = parse(w).expect_err("malformed file was accepted");
    assert!(!e.to_string().is_empty());
    e
}

fn good() -> GgufWriter {
    GgufWriter::new(3)
        .kv("general.architecture", "test")
        .kv("test.vocab", vec!["a", "bb"])
        .tensor_f32("a", &[4, 2], &[1.0; 8])
        .tensor("b", DType::Q8_0, &[32], vec![0u8; 34])
}

/// A payload for `raw_kv`: an array header with the given element type and count.
fn array_header(elem: u32, count: u64) -> Vec<u8> {
    let mut p = Vec::new();
    put_u32(&mut p, elem);
    put_u64(&mut p, count);
    p
}

#[test]
fn bad_magic() {
    assert!(matches!(err(&good().magic(*b"GGML")), GgufError::NotGguf));
    for len in 0..4 {
        let e = GgufFile::from_bytes(b"GGUF"[..len].to_vec()).unwrap_err();
        assert!(matches!(e, GgufError::NotGguf), "{len}: {e}");
    }
}

#[test]
fn unsupported_versions() {
    // v1 used u32 counts; GgufWriter::new(1) still writes v3 layout, which must not matter.
    for v in [0, 1, 4, u32::MAX] {
        let e = err(&GgufWriter::new(v).kv("k", 1u8));
        assert!(
            matches!(e, GgufError::UnsupportedVersion(x) if x == v),
            "{e}"
        );
    }
}

#[test]
fn truncated_header() {
    let b = good().to_bytes();
    for len in [4, 8, 12, 20, 23] {
        let e = GgufFile::from_bytes(b[..len].to_vec()).unwrap_err();
        assert!(matches!(e, GgufError::Truncated { .. }), "{len}: {e}");
    }
}

/// A 43-byte file once hung a GGUF reader.
#[test]
fn forty_three_byte_file() {
    let b = good().to_bytes();
    let e = GgufFile::from_bytes(b[..43].to_vec()).unwrap_err();
    assert!(
        matches!(
            e,
            GgufError::Truncated { .. }
                | GgufError::StringTooLong { .. }
                | GgufError::CountTooLarge { .. }
        ),
        "{e}"
    );
    // And 43 bytes of header claiming one huge KV.
    let mut raw = b"GGUF".to_vec();
    put_u32(&mut raw, 3);
    put_u64(&mut raw, 0);
    put_u64(&mut raw, 1);
    put_u64(&mut raw, u64::MAX);
    raw.resize(43, 0xff);
    assert!(GgufFile::from_bytes(raw).is_err());
}

#[test]
fn every_prefix_of_a_valid_file_is_rejected() {
    let b = good().to_bytes();
    assert!(GgufFile::from_bytes(b.clone()).is_ok());
    for len in 0..b.len() {
        assert!(
            GgufFile::from_bytes(b[..len].to_vec()).is_err(),
            "prefix {len}"
        );
    }
}

#[test]
fn huge_tensor_count() {
    for n in HUGE.into_iter().chain([1000]) {
        let e = err(&good().tensor_count(n));
        assert!(
            matches!(e, GgufError::CountTooLarge { what: "tensor", count } if count == n),
            "{e}"
        );
    }
}

#[test]
fn huge_kv_count() {
    for n in HUGE.into_iter().chain([1000]) {
        let e = err(&good().kv_count(n));
        assert!(
            matches!(e, GgufError::CountTooLarge { what: "metadata key/value", count } if count == n),
            "{e}"
        );
    }
}

#[test]
fn key_length_too_long() {
    for n in HUGE.into_iter().chain([1000]) {
        let mut kv = Vec::new();
        put_u64(&mut kv, n);
        kv.extend_from_slice(&[b'a'; 16]);
        let e = err(&GgufWriter::new(3).raw_kv_bytes(&kv));
        assert!(
            matches!(e, GgufError::StringTooLong { len, .. } if len == n),
            "{e}"
        );
    }
}

#[test]
fn string_value_too_long() {
    for n in HUGE.into_iter().chain([1000]) {
        let mut p = Vec::new();
        put_u64(&mut p, n);
        p.extend_from_slice(b"abc");
        let e = err(&GgufWriter::new(3).raw_kv(b"k", ty::STRING, &p));
        assert!(
            matches!(e, GgufError::StringTooLong { len, .. } if len == n),
            "{e}"
        );
    }
}

#[test]
fn tensor_name_too_long() {
    let mut t = RawTensor::new("x", DType::F32, &[1], vec![0u8; 4]);
    t.name = vec![b'x'; 3];
    let mut b = GgufWriter::new(3).raw_tensor(t).to_bytes();
    // The name length field sits right after the 24-byte header.
    b[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
    let e = GgufFile::from_bytes(b).unwrap_err();
    assert!(
        matches!(
            e,
            GgufError::StringTooLong {
                what: "tensor name",
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn array_length_too_long() {
    for elem in [ty::U8, ty::U64, ty::STRING, ty::ARRAY] {
        for n in HUGE.into_iter().chain([1000, u64::MAX / 8 + 2]) {
            let mut p = array_header(elem, n);
            p.extend_from_slice(&[0u8; 64]);
            let e = err(&GgufWriter::new(3).raw_kv(b"k", ty::ARRAY, &p));
            assert!(
                matches!(e, GgufError::CountTooLarge { what: "array element", count } if count == n),
                "{elem} {n}: {e}"
            );
        }
    }
}

#[test]
fn array_of_strings_needs_eight_bytes_per_element() {
    // 64 bytes follow: enough for 64 u8 but not 9 strings.
    let mut p = array_header(ty::STRING, 9);
    p.extend_from_slice(&[0u8; 64]);
    let e = err(&GgufWriter::new(3).raw_kv(b"k", ty::ARRAY, &p));
    assert!(matches!(e, GgufError::CountTooLarge { .. }), "{e}");
    // 8 empty strings do fit.
    let mut p = array_header(ty::STRING, 8);
    p.extend_from_slice(&[0u8; 64]);
    let f = parse(&GgufWriter::new(3).raw_kv(b"k", ty::ARRAY, &p)).unwrap();
    assert_eq!(f.get_str_array("k").unwrap().unwrap(), vec![""; 8]);
}

#[test]
fn too_many_metadata_values() {
    // A 5 MB file of u8s is a real allocation of 160 MB of `Value`s: over the limit.
    let n = 5 << 20;
    let mut p = array_header(ty::U8, n);
    p.resize(p.len() + n as usize, 0);
    let e = err(&GgufWriter::new(3).raw_kv(b"k", ty::ARRAY, &p));
    assert!(
        matches!(e, GgufError::CountTooLarge { count, .. } if count == n),
        "{e}"
    );
}

#[test]
fn too_many_dims() {
    let t = RawTensor::new("x", DType::F32, &[1, 1, 1, 1, 1], vec![0u8; 4]);
    let e = err(&GgufWriter::new(3).raw_tensor(t));
    assert!(
        matches!(e, GgufError::TooManyDims { ref tensor, n: 5 } if tensor == "x"),
        "{e}"
    );
    let mut t = RawTensor::new("x", DType::F32, &[1], vec![0u8; 4]);
    t.n_dims = u32::MAX;
    assert!(matches!(
        err(&GgufWriter::new(3).raw_tensor(t)),
        GgufError::TooManyDims { .. }
    ));
}

#[test]
fn no_dims() {
    let t = RawTensor::new("x", DType::F32, &[], vec![0u8; 4]);
    let e = err(&GgufWriter::new(3).raw_tensor(t));
    assert!(matches!(e, GgufError::NoDims { .. }), "{e}");
}

#[test]
fn zero_dim() {
    let t = RawTensor::new("x", DType::F32, &[4, 0], vec![]);
    let e = err(&GgufWriter::new(3).raw_tensor(t));
    assert!(
        matches!(e, GgufError::ZeroDim { ref tensor } if tensor == "x"),
        "{e}"
    );
}

#[test]
fn negative_dim() {
    let t = RawTensor::new("x", DType::F32, &[4, u64::MAX], vec![]);
    let e = err(&GgufWriter::new(3).raw_tensor(t));
    assert!(
        matches!(e, GgufError::NegativeDim { dim: u64::MAX, .. }),
        "{e}"
    );
}

#[test]
fn element_count_overflow() {
    // Element count overflows.
    let t = RawTensor::new("x", DType::F32, &[1 << 32, 1 << 32], vec![]);
    let e = err(&GgufWriter::new(3).raw_tensor(t));
    assert!(matches!(e, GgufError::ElementCountOverflow { .. }), "{e}");
    // Element count fits, byte size overflows.
    let t = RawTensor::new("x", DType::F64, &[1 << 62], vec![]);
    let e = err(&GgufWriter::new(3).raw_tensor(t));
    assert!(matches!(e, GgufError::ElementCountOverflow { .. }), "{e}");
}

#[test]
fn unknown_tensor_type() {
    for id in [4, 16, 31, 1000, u32::MAX] {
        let mut t = RawTensor::new("x", DType::F32, &[1], vec![0u8; 4]);
        t.type_id = id;
        let e = err(&GgufWriter::new(3).raw_tensor(t));
        assert!(
            matches!(e, GgufError::UnknownTensorType { type_id, .. } if type_id == id),
            "{e}"
        );
    }
}

#[test]
fn not_whole_blocks() {
    let t = RawTensor::new("x", DType::Q4K, &[100, 256], vec![0u8; 144 * 100]);
    let e = err(&GgufWriter::new(3).raw_tensor(t));
    assert!(
        matches!(
            e,
            GgufError::NotWholeBlocks {
                dim0: 100,
                block_size: 256,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn tensor_past_end_of_file() {
    // Data shorter than the shape needs.
    let w = GgufWriter::new(3).tensor("x", DType::F32, &[100], vec![0u8; 8]);
    assert!(matches!(err(&w), GgufError::TensorOutOfBounds { .. }));
    // Offset past the end, and offsets that overflow when added to the data start.
    for off in [1 << 20, !31u64, 1 << 63] {
        let mut t = RawTensor::new("x", DType::F32, &[2], vec![0u8; 8]);
        t.offset = Some(off);
        let e = err(&GgufWriter::new(3).raw_tensor(t));
        assert!(
            matches!(e, GgufError::TensorOutOfBounds { offset, .. } if offset == off),
            "{e}"
        );
    }
    // Huge (but not overflowing) shape.
    let t = RawTensor::new("x", DType::F32, &[1 << 40], vec![0u8; 8]);
    assert!(matches!(
        err(&GgufWriter::new(3).raw_tensor(t)),
        GgufError::TensorOutOfBounds { .. }
    ));
}

#[test]
fn misaligned_tensor() {
    let mut t = RawTensor::new("x", DType::F32, &[1], vec![0u8; 64]);
    t.offset = Some(4);
    let e = err(&GgufWriter::new(3).raw_tensor(t));
    assert!(
        matches!(
            e,
            GgufError::MisalignedTensor {
                offset: 4,
                alignment: 32,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn overlapping_tensors() {
    let mut b = RawTensor::new("b", DType::F32, &[8], vec![0u8; 32]);
    b.offset = Some(0);
    let w = GgufWriter::new(3)
        .tensor("a", DType::F32, &[16], vec![0u8; 64])
        .raw_tensor(b);
    let e = err(&w);
    assert!(matches!(e, GgufError::OverlappingTensors { .. }), "{e}");
    // Partial overlap: a is 64 bytes, b starts at 32.
    let mut b = RawTensor::new("b", DType::F32, &[8], vec![0u8; 32]);
    b.offset = Some(32);
    let w = GgufWriter::new(3)
        .tensor("a", DType::F32, &[16], vec![0u8; 64])
        .raw_tensor(b);
    assert!(matches!(err(&w), GgufError::OverlappingTensors { .. }));
}

#[test]
fn bad_alignment() {
    for a in [0u64, 3, 48, 1 << 40, u64::MAX] {
        let w = GgufWriter::new(3).kv("general.alignment", Value::U64(a));
        let e = err(&w);
        assert!(
            matches!(e, GgufError::BadAlignment(x) if x == a),
            "{a}: {e}"
        );
    }
    let w = GgufWriter::new(3).kv("general.alignment", Value::I32(-32));
    assert!(matches!(err(&w), GgufError::BadAlignment(_)));
    // Any integer type with a power-of-two value is fine.
    let f = parse(&GgufWriter::new(3).kv("general.alignment", Value::U64(64))).unwrap();
    assert_eq!(f.alignment(), 64);
}

#[test]
fn wrong_type_for_known_keys() {
    let e = err(&GgufWriter::new(3).kv("general.alignment", "32"));
    assert!(
        matches!(e, GgufError::WrongType { ref key, .. } if key == "general.alignment"),
        "{e}"
    );
    let e = err(&GgufWriter::new(3).kv("general.alignment", Value::F32(32.0)));
    assert!(matches!(e, GgufError::WrongType { .. }), "{e}");
    let e = err(&GgufWriter::new(3).kv("general.architecture", 7u32));
    assert!(
        matches!(e, GgufError::WrongType { ref key, expected: "string", ref found } if key == "general.architecture" && found == "u32"),
        "{e}"
    );
}

#[test]
fn duplicate_key() {
    let w = good().kv("test.vocab", 1u8);
    assert!(matches!(err(&w), GgufError::DuplicateKey(k) if k == "test.vocab"));
}

#[test]
fn duplicate_tensor() {
    let w = good().tensor_f32("a", &[1], &[0.0]);
    assert!(matches!(err(&w), GgufError::DuplicateTensor(t) if t == "a"));
}

#[test]
fn invalid_utf8() {
    let bad = b"ab\xff\xfe";
    // key
    let e = err(&GgufWriter::new(3).raw_kv(bad, ty::U8, &[0]));
    assert!(matches!(e, GgufError::InvalidUtf8 { .. }), "{e}");
    // string value
    let mut p = Vec::new();
    put_string(&mut p, bad);
    let e = err(&GgufWriter::new(3).raw_kv(b"k", ty::STRING, &p));
    assert!(
        matches!(e, GgufError::InvalidUtf8 { ref what } if what.contains("\"k\"")),
        "{e}"
    );
    // string inside an array
    let mut p = array_header(ty::STRING, 2);
    put_string(&mut p, b"ok");
    put_string(&mut p, bad);
    assert!(matches!(
        err(&GgufWriter::new(3).raw_kv(b"k", ty::ARRAY, &p)),
        GgufError::InvalidUtf8 { .. }
    ));
    // tensor name
    let mut t = RawTensor::new("x", DType::F32, &[1], vec![0u8; 4]);
    t.name = bad.to_vec();
    assert!(matches!(
        err(&GgufWriter::new(3).raw_tensor(t)),
        GgufError::InvalidUtf8 { .. }
    ));
}

#[test]
fn bad_value_type() {
    for id in [13, 100, u32::MAX] {
        let e = err(&GgufWriter::new(3).raw_kv(b"k", id, &[0; 16]));
        assert!(
            matches!(e, GgufError::BadValueType { type_id, .. } if type_id == id),
            "{e}"
        );
        let mut p = array_header(id, 1);
        p.extend_from_slice(&[0; 16]);
        let e = err(&GgufWriter::new(3).raw_kv(b"k", ty::ARRAY, &p));
        assert!(
            matches!(e, GgufError::BadValueType { type_id, .. } if type_id == id),
            "{e}"
        );
    }
}

#[test]
fn bad_bool() {
    let e = err(&GgufWriter::new(3).raw_kv(b"k", ty::BOOL, &[2]));
    assert!(matches!(e, GgufError::BadBool { byte: 2, .. }), "{e}");
}

#[test]
fn array_nesting_depth_limit() {
    fn nested(depth: usize) -> Value {
        let inner = Array::U8(vec![1]);
        Value::Array((1..depth).fold(inner, |a, _| Array::Array(vec![a])))
    }
    let limit = nao_gguf::reader::MAX_ARRAY_DEPTH;
    let f = parse(&GgufWriter::new(3).kv("k", nested(limit))).unwrap();
    assert_eq!(f.get("k"), Some(&nested(limit)));
    let e = err(&GgufWriter::new(3).kv("k", nested(limit + 1)));
    assert!(matches!(e, GgufError::ArrayTooDeep { .. }), "{e}");
    // A deep chain of array headers in raw bytes (no recursion blow-up).
    let mut p = Vec::new();
    for _ in 0..100_000 {
        p.extend_from_slice(&array_header(ty::ARRAY, 1));
    }
    let e = err(&GgufWriter::new(3).raw_kv(b"k", ty::ARRAY, &p));
    assert!(matches!(e, GgufError::ArrayTooDeep { .. }), "{e}");
}

#[test]
fn trailing_garbage_in_metadata_region_is_caught_by_counts() {
    // Claiming fewer KVs than written turns the rest into garbage tensor infos.
    let w = good().kv_count(1);
    assert!(parse(&w).is_err());
}

#[test]
fn metadata_budget_is_shared_across_keys() {
    // One array uses the whole budget but one value; the next two pairs exceed it.
    let n = nao_gguf::reader::MAX_METADATA_VALUES - 2;
    let mut p = array_header(ty::U8, n);
    p.resize(p.len() + n as usize, 0);
    let w = GgufWriter::new(3).raw_kv(b"k", ty::ARRAY, &p).kv("a", 1u8);
    assert!(parse(&w).is_ok());
    let e = err(&w.kv("b", 1u8));
    assert!(
        matches!(
            e,
            GgufError::CountTooLarge {
                what: "metadata value",
                ..
            }
        ),
        "{e}"
    );
}
