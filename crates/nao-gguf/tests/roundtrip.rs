//! Happy path: everything the writer writes, the reader reads back unchanged.

use nao_gguf::writer::GgufWriter;
use nao_gguf::{Array, GgufError, GgufFile, Value};
use nao_kernels::DType;

fn all_values() -> Vec<(&'static str, Value)> {
    vec![
        ("t.u8", Value::U8(200)),
        ("t.i8", Value::I8(-100)),
        ("t.u16", Value::U16(60000)),
        ("t.i16", Value::I16(-30000)),
        ("t.u32", Value::U32(4_000_000_000)),
        ("t.i32", Value::I32(-2_000_000_000)),
        ("t.u64", Value::U64(u64::MAX)),
        ("t.i64", Value::I64(i64::MIN)),
        ("t.f32", Value::F32(1.5e-6)),
        ("t.f64", Value::F64(-2.25e300)),
        ("t.bool_t", Value::Bool(true)),
        ("t.bool_f", Value::Bool(false)),
        ("t.str", Value::String("héllo ✓".into())),
        ("t.empty_str", Value::String(String::new())),
        ("t.arr_str", Value::from(vec!["a", "", "ccc"])),
        ("t.arr_f32", Value::from(vec![1.0f32, -2.5])),
        ("t.arr_i32", Value::from(vec![-1i32, 7])),
        ("t.arr_empty", Value::Array(Array::U8(vec![]))),
        ("t.arr_empty_str", Value::from(Vec::<String>::new())),
        (
            "t.arr_nested",
            Value::from(vec![
                Array::from(vec![1u8, 2]),
                Array::from(vec!["x"]),
                Array::from(vec![Array::from(vec![true])]),
            ]),
        ),
    ]
}

#[test]
fn every_value_type_round_trips_v2_and_v3() {
    for version in [2, 3] {
        let mut w = GgufWriter::new(version);
        for (k, v) in all_values() {
            w.push_kv(k, v);
        }
        let f = GgufFile::from_bytes(w.to_bytes()).unwrap();
        assert_eq!(f.version(), version);
        assert_eq!(f.alignment(), 32);
        let expected = all_values();
        assert_eq!(f.metadata().len(), expected.len());
        for ((k, v), (fk, fv)) in expected.iter().zip(f.metadata()) {
            assert_eq!(k, fk, "file order kept");
            assert_eq!(v, fv);
            assert_eq!(f.get(k), Some(v));
        }
        assert!(f.tensors().is_empty());
    }
}

#[test]
fn typed_getters() {
    let mut w = GgufWriter::new(3).kv("general.architecture", "llama");
    for (k, v) in all_values() {
        w.push_kv(k, v);
    }
    let f = GgufFile::from_bytes(w.to_bytes()).unwrap();
    assert_eq!(f.architecture().unwrap(), "llama");
    assert_eq!(f.get_u32("t.u8").unwrap(), Some(200));
    assert_eq!(f.get_u32("t.u64").ok(), None, "u64::MAX does not fit u32");
    assert!(matches!(
        f.get_u32("t.i8"),
        Err(GgufError::OutOfRange { .. })
    ));
    assert!(matches!(
        f.get_u32("t.str"),
        Err(GgufError::WrongType { .. })
    ));
    assert_eq!(f.get_u64("t.u64").unwrap(), Some(u64::MAX));
    assert_eq!(f.get_i64("t.i64").unwrap(), Some(i64::MIN));
    assert_eq!(f.get_u32("missing").unwrap(), None);
    assert_eq!(f.get_f32("t.f32").unwrap(), Some(1.5e-6));
    assert_eq!(f.get_f32("t.f64").unwrap(), Some(-2.25e300f64 as f32));
    assert!(matches!(
        f.get_f32("t.u32"),
        Err(GgufError::WrongType { .. })
    ));
    assert_eq!(f.get_bool("t.bool_t").unwrap(), Some(true));
    assert_eq!(f.get_str("t.str").unwrap(), Some("héllo ✓"));
    match f.get_str("t.u32") {
        Err(GgufError::WrongType {
            key,
            expected,
            found,
        }) => {
            assert_eq!(
                (key.as_str(), expected, found.as_str()),
                ("t.u32", "string", "u32")
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(f.get_array("t.arr_f32").unwrap().unwrap().len(), 2);
    assert_eq!(
        f.get_str_array("t.arr_str").unwrap(),
        Some(vec!["a", "", "ccc"])
    );
    assert_eq!(f.get_f32_array("t.arr_f32").unwrap(), Some(vec![1.0, -2.5]));
    assert_eq!(f.get_i32_array("t.arr_i32").unwrap(), Some(vec![-1, 7]));
    assert_eq!(f.get_str_array("t.arr_empty").unwrap(), Some(vec![]));
    match f.get_str_array("t.arr_i32") {
        Err(GgufError::WrongType { found, .. }) => assert_eq!(found, "array of i32"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        f.get_i32_array("t.str"),
        Err(GgufError::WrongType { .. })
    ));
}

#[test]
fn missing_architecture_is_missing_key() {
    let f = GgufFile::from_bytes(GgufWriter::new(3).to_bytes()).unwrap();
    assert!(
        matches!(f.architecture(), Err(GgufError::MissingKey(k)) if k == "general.architecture")
    );
}

#[test]
fn tensor_data_is_a_zero_copy_view_of_the_written_bytes() {
    for version in [2, 3] {
        let a: Vec<f32> = (0..8).map(|i| i as f32 * 0.5).collect();
        let q4k: Vec<u8> = (0..2 * 144).map(|i| (i * 7 % 251) as u8).collect();
        let q8: Vec<u8> = (0..34 * 3).map(|i| i as u8).collect();
        let bytes = GgufWriter::new(version)
            .kv("general.architecture", "test")
            .tensor_f32("a", &[4, 2], &a)
            .tensor("b", DType::Q4K, &[512], q4k.clone())
            .tensor("c", DType::Q8_0, &[32, 3], q8.clone())
            .tensor("d", DType::F16, &[3], vec![1u8, 2, 3, 4, 5, 6])
            .to_bytes();
        let f = GgufFile::from_bytes(bytes.clone()).unwrap();
        assert_eq!(f.data(), &bytes[..]);
        let names: Vec<&str> = f.tensors().iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c", "d"]);

        let ta = f.tensor("a").unwrap();
        assert_eq!((ta.dims.as_slice(), ta.dtype), (&[4u64, 2][..], DType::F32));
        assert_eq!(ta.n_elements(), 8);
        assert_eq!(ta.n_bytes, 32);
        let got: Vec<f32> = f
            .tensor_data(ta)
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(got, a);
        assert_eq!(f.tensor_data(f.tensor("b").unwrap()), &q4k[..]);
        assert_eq!(f.tensor_data(f.tensor("c").unwrap()), &q8[..]);
        assert_eq!(f.tensor_data(f.tensor("d").unwrap()), &[1, 2, 3, 4, 5, 6]);

        for t in f.tensors() {
            assert_eq!(t.offset % 32, 0);
            assert!(t.offset >= f.data_offset());
            // Zero-copy: the slice points into the file buffer, which is page-aligned.
            let ptr = f.tensor_data(t).as_ptr() as usize;
            assert_eq!(ptr - f.data().as_ptr() as usize, t.offset as usize);
            assert_eq!(ptr % 32, 0);
        }
        assert!(f.tensor("nope").is_none());
    }
}

#[test]
fn custom_alignment_is_honoured() {
    let bytes = GgufWriter::new(3)
        .alignment(256)
        .tensor("a", DType::I8, &[3], vec![1u8, 2, 3])
        .tensor("b", DType::I8, &[1], vec![9u8])
        .to_bytes();
    let f = GgufFile::from_bytes(bytes).unwrap();
    assert_eq!(f.alignment(), 256);
    assert_eq!(f.get_u32("general.alignment").unwrap(), Some(256));
    for t in f.tensors() {
        assert_eq!(t.offset % 256, 0);
        assert_eq!(f.tensor_data(t).as_ptr() as usize % 256, 0);
    }
    assert_eq!(f.tensor_data(f.tensor("b").unwrap()), &[9]);

    // Alignment 1 packs tensors back to back.
    let f = GgufFile::from_bytes(
        GgufWriter::new(3)
            .alignment(1)
            .tensor("a", DType::I8, &[3], vec![1u8, 2, 3])
            .tensor("b", DType::I8, &[1], vec![9u8])
            .to_bytes(),
    )
    .unwrap();
    let (a, b) = (f.tensor("a").unwrap(), f.tensor("b").unwrap());
    assert_eq!(b.offset, a.offset + 3);
}

#[test]
fn open_maps_a_file_from_disk() {
    let dir = std::env::temp_dir().join(format!("nao-gguf-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("t.gguf");
    GgufWriter::new(3)
        .kv("general.architecture", "x")
        .tensor_f32("w", &[2], &[1.0, 2.0])
        .write_to(&path)
        .unwrap();
    let f = GgufFile::open(&path).unwrap();
    assert_eq!(f.architecture().unwrap(), "x");
    assert_eq!(f.tensor_data(f.tensor("w").unwrap()).len(), 8);
    std::fs::remove_dir_all(&dir).unwrap();

    let err = GgufFile::open(dir.join("absent.gguf")).unwrap_err();
    assert!(matches!(err, GgufError::Io { .. }));
    assert!(err.to_string().contains("absent.gguf"), "{err}");
}

#[test]
fn foreign_tensor_info_does_not_panic() {
    let f = GgufFile::from_bytes(
        GgufWriter::new(3)
            .tensor_f32("w", &[2], &[1.0, 2.0])
            .to_bytes(),
    )
    .unwrap();
    let mut t = f.tensor("w").unwrap().clone();
    t.offset = u64::MAX - 1;
    assert!(f.tensor_data(&t).is_empty());
}

/// The fuzz seeds are written by an independent Python encoder; they must all parse.
#[test]
fn fuzz_seeds_parse() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz/seeds/gguf_reader");
    let Ok(entries) = std::fs::read_dir(dir) else {
        eprintln!("skipping: {dir} not found");
        return;
    };
    for e in entries {
        let path = e.unwrap().path();
        let f = GgufFile::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if path.ends_with("v3_full.gguf") {
            assert_eq!(f.alignment(), 64);
            assert_eq!(f.architecture().unwrap(), "qwen2");
            assert_eq!(
                f.get_str_array("t.tokens").unwrap(),
                Some(vec!["a", "bb", ""])
            );
            assert_eq!(f.get_i64("t.i64").unwrap(), Some(-5));
            assert_eq!(f.tensor_data(f.tensor("b").unwrap()), &[2u8; 34][..]);
            assert_eq!(f.tensor("c").unwrap().dtype, DType::F16);
        }
    }
}
