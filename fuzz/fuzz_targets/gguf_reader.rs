//! Fuzzes the GGUF reader: any input must parse or fail with an error, never panic, hang or
//! allocate without bound; and whatever parses must be safe to read in full.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nao_gguf::{GgufFile, Value};

fn touch(v: &Value) -> u64 {
    match v {
        Value::String(s) => s.len() as u64,
        Value::Array(a) => a.iter().map(touch).fold(0, u64::wrapping_add),
        other => other.as_u64().unwrap_or(1),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(f) = GgufFile::from_bytes(data.to_vec()) else {
        return;
    };
    let mut sum = 0u64;
    for (k, v) in f.metadata() {
        sum = sum.wrapping_add(touch(v));
        // Lookups must find this very entry (compared by address: NaN != NaN), and no
        // typed getter may panic.
        assert!(f.get(k).is_some_and(|g| std::ptr::eq(g, v)));
        let _ = (
            f.get_u32(k),
            f.get_u64(k),
            f.get_f32(k),
            f.get_bool(k),
            f.get_str(k),
        );
        let _ = (f.get_str_array(k), f.get_f32_array(k), f.get_i32_array(k));
    }
    let _ = f.architecture();
    for t in f.tensors() {
        let bytes = f.tensor_data(t);
        assert_eq!(bytes.len() as u64, t.n_bytes);
        assert_eq!(t.offset % f.alignment(), 0);
        sum = sum.wrapping_add(bytes.iter().map(|&b| b as u64).sum::<u64>());
        assert!(std::ptr::eq(f.tensor(&t.name).unwrap(), t));
    }
    std::hint::black_box(sum);
});
