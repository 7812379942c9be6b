//! Opens the real model files when they are present (skipped with a message otherwise).

use std::path::Path;
use std::time::Instant;

use nao_gguf::GgufFile;
use nao_kernels::DType;

fn open_if_present(rel: &str) -> Option<GgufFile> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../models")
        .join(rel);
    if !path.exists() {
        eprintln!("skipping: {} not found", path.display());
        return None;
    }
    let t = Instant::now();
    let f = GgufFile::open(&path).unwrap();
    eprintln!("{rel}: opened in {:?}", t.elapsed());
    // Every tensor's bytes are in range (validated at open; this exercises the views).
    for t in f.tensors() {
        assert_eq!(f.tensor_data(t).len() as u64, t.n_bytes);
    }
    Some(f)
}

#[test]
fn qwen2_5_coder_1_5b_q4_k_m() {
    let Some(f) = open_if_present("qwen2.5-coder-1.5b-instruct-q4_k_m.gguf") else {
        return;
    };
    assert_eq!(f.architecture().unwrap(), "qwen2");
    assert!(
        (330..=345).contains(&f.tensors().len()),
        "{}",
        f.tensors().len()
    );
    let t = f.tensor("token_embd.weight").unwrap();
    assert_eq!(t.dims, [1536, 151936]);
    assert_eq!(t.dtype, DType::Q4K);
    assert_eq!(f.get_u32("qwen2.embedding_length").unwrap(), Some(1536));
    assert_eq!(f.get_u32("qwen2.block_count").unwrap(), Some(28));
    let vocab = f.get_str_array("tokenizer.ggml.tokens").unwrap().unwrap();
    assert_eq!(vocab.len(), 151936);
}

#[test]
fn gemma3_270m_q4_k_m() {
    let Some(f) = open_if_present("gemma-3-270m-q4_k_m.gguf") else {
        return;
    };
    assert_eq!(f.architecture().unwrap(), "gemma3");
    assert!(f.tensor("token_embd.weight").is_some());
    let vocab = f.get_str_array("tokenizer.ggml.tokens").unwrap().unwrap();
    assert!(vocab.len() > 200_000, "{}", vocab.len());
}
