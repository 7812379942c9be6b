//! all-MiniLM-L6-v2 against sentence-transformers: the vectors of the 20 fixture sentences
//! (English, Chinese, code, SQL, empty, whitespace, emoji, a 41-token sentence), computed
//! by transformers + torch from the same token ids, must have cosine ≥ 0.9999 with ours,
//! alone and in one packed batch; batching must not change any vector.
//! Skips when the model is not fetched (fails with NAO_REQUIRE_MODELS=1).

use nao_models::sentence::SentenceEncoder;
use nao_models::Compute;
use serde_json::Value;
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn model_dir() -> Option<PathBuf> {
    let p = root().join("models/all-MiniLM-L6-v2");
    if p.join("model.safetensors").exists() {
        return Some(p);
    }
    assert!(
        std::env::var_os("NAO_REQUIRE_MODELS").is_none(),
        "{} is missing and NAO_REQUIRE_MODELS is set: run scripts/fetch_models.py",
        p.display()
    );
    eprintln!(
        "skipping: {} not found (run scripts/fetch_models.py)",
        p.display()
    );
    None
}

struct Case {
    text: String,
    ids: Vec<u32>,
    want: Vec<f32>,
}

fn cases() -> Vec<Case> {
    let path = root().join("tests/fixtures/all-MiniLM-L6-v2.embeddings.json");
    let text = std::fs::read_to_string(&path).expect("fixture");
    let v: Value = serde_json::from_str(&text).expect("fixture JSON");
    let list = v["cases"].as_array().expect("cases");
    list.iter()
        .map(|c| Case {
            text: c["text"].as_str().expect("text").to_string(),
            ids: c["input_ids"]
                .as_array()
                .expect("ids")
                .iter()
                .map(|x| x.as_u64().expect("id") as u32)
                .collect(),
            want: c["embedding"]
                .as_array()
                .expect("embedding")
                .iter()
                .map(|x| x.as_f64().expect("float") as f32)
                .collect(),
        })
        .collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum();
    let na: f64 = a.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

#[test]
fn minilm_matches_sentence_transformers_alone_and_batched() {
    let Some(dir) = model_dir() else { return };
    let enc = SentenceEncoder::load(&dir).expect("load all-MiniLM-L6-v2");
    assert_eq!(
        (enc.n_embd(), enc.max_tokens(), enc.normalize),
        (384, 512, true)
    );
    let cases = cases();
    assert!(cases.len() >= 20, "fixture has {} cases", cases.len());
    let mut c = Compute::new(2);
    let mut alone = Vec::new();
    let mut min_cos = 1.0f64;
    for case in &cases {
        let v = enc.encode(&[&case.ids], &mut c).expect("encode").remove(0);
        let cos = cosine(&v, &case.want);
        min_cos = min_cos.min(cos);
        assert!(cos >= 0.9999, "{:?}: cosine {cos}", case.text);
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{:?}: norm {norm}", case.text);
        alone.push(v);
    }
    // All sentences in one packed batch (lengths 2 to 41), and in reverse order.
    let ids: Vec<&[u32]> = cases.iter().map(|c| c.ids.as_slice()).collect();
    let batched = enc.encode(&ids, &mut c).expect("batch");
    let rev: Vec<&[u32]> = ids.iter().rev().copied().collect();
    let mut reversed = enc.encode(&rev, &mut c).expect("reversed batch");
    reversed.reverse();
    let mut max_diff = 0.0f32;
    for ((a, b), r) in alone.iter().zip(&batched).zip(&reversed) {
        for ((x, y), z) in a.iter().zip(b).zip(r) {
            max_diff = max_diff.max((x - y).abs()).max((x - z).abs());
        }
    }
    eprintln!(
        "min cosine {min_cos:.9} (1 - min = {:.2e}), batch max |diff| {max_diff:e}",
        1.0 - min_cos
    );
    assert!(max_diff <= 1e-5, "batching changed a vector by {max_diff}");
}

#[test]
fn minilm_rejects_bad_input() {
    let Some(dir) = model_dir() else { return };
    let enc = SentenceEncoder::load(&dir).expect("load");
    let mut c = Compute::new(1);
    assert!(
        enc.encode(&[&[101, 30522, 102]], &mut c).is_err(),
        "id past vocab"
    );
    let long = vec![100u32; 513];
    assert!(
        enc.encode(&[&long], &mut c).is_err(),
        "513 tokens > 512 positions"
    );
}
