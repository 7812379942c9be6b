//! The embedding path end to end below HTTP: `tokenizer.json` → WordPiece ids equal to
//! transformers' (the fixture's `input_ids`), vectors within cosine 0.9999 of
//! sentence-transformers', the same through the worker thread and in one batch, and the
//! validation rules (empty, too long, truncate, ids out of range).

mod common;

use nao_engine::embed::{EmbedError, EmbedHandle, EmbedInput, EmbedRequest, Embedder};
use nao_engine::embed_worker::EmbedWorker;
use nao_models::Compute;
use serde_json::Value;

fn model() -> Option<Embedder> {
    // Directory models are found like files: models/<name>, skipped when absent.
    let dir = common::model_path("all-MiniLM-L6-v2")?;
    Some(Embedder::load(&dir).expect("load all-MiniLM-L6-v2"))
}

fn fixture() -> Vec<(String, Vec<u32>, Vec<f32>)> {
    let p = common::root().join("tests/fixtures/all-MiniLM-L6-v2.embeddings.json");
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(p).expect("fixture")).expect("json");
    v["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| {
            let ids = c["input_ids"].as_array().expect("ids");
            let emb = c["embedding"].as_array().expect("embedding");
            (
                c["text"].as_str().expect("text").to_string(),
                ids.iter().map(|x| x.as_u64().expect("id") as u32).collect(),
                emb.iter().map(|x| x.as_f64().expect("f") as f32).collect(),
            )
        })
        .collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum();
    let n = |v: &[f32]| v.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (n(a) * n(b))
}

#[test]
fn text_to_vectors_match_sentence_transformers() {
    let Some(e) = model() else { return };
    let cases = fixture();
    for (text, ids, _) in &cases {
        assert_eq!(&e.tokenize(text, false).expect("tokenize"), ids, "{text:?}");
    }
    let req = EmbedRequest {
        inputs: cases
            .iter()
            .map(|c| EmbedInput::Text(c.0.clone()))
            .collect(),
        truncate: false,
    };
    let mut c = Compute::new(2);
    let out = e.embed(&req, &mut c).expect("embed");
    let n_tokens: usize = cases.iter().map(|c| c.1.len()).sum();
    assert_eq!(out.prompt_tokens, n_tokens);
    for ((text, _, want), got) in cases.iter().zip(&out.embeddings) {
        let cos = cosine(got, want);
        assert!(cos >= 0.9999, "{text:?}: cosine {cos}");
    }
    // Through the worker thread: same vectors as the direct call.
    let info = e.info("minilm".into(), 0);
    let (w, _thread) = EmbedWorker::start(e, info, 2, 4).expect("worker");
    let via_worker = w.embed(req).blocking_recv().expect("reply").expect("embed");
    assert_eq!(via_worker.embeddings, out.embeddings);
}

#[test]
fn validation_and_truncation() {
    let Some(e) = model() else { return };
    let none = EmbedRequest {
        inputs: vec![],
        truncate: false,
    };
    assert_eq!(e.prepare(&none), Err(EmbedError::NoInputs));
    let long = "word ".repeat(600); // 600 word pieces + [CLS] + [SEP]
    let req = |truncate| EmbedRequest {
        inputs: vec![
            EmbedInput::Text("short".into()),
            EmbedInput::Text(long.clone()),
        ],
        truncate,
    };
    assert!(matches!(
        e.prepare(&req(false)),
        Err(EmbedError::TooLong {
            index: 1,
            n_tokens: 602,
            max: 512
        })
    ));
    let seqs = e.prepare(&req(true)).expect("truncated");
    assert_eq!(seqs[1].len(), 512);
    assert_eq!((seqs[1][0], seqs[1][511]), (101, 102), "[CLS] … [SEP] kept");
    let bad = |ids: Vec<i64>| EmbedRequest {
        inputs: vec![EmbedInput::Tokens(ids)],
        truncate: false,
    };
    assert!(matches!(
        e.prepare(&bad(vec![101, -1])),
        Err(EmbedError::TokenOutOfRange { id: -1, .. })
    ));
    assert!(matches!(
        e.prepare(&bad(vec![30522])),
        Err(EmbedError::TokenOutOfRange { .. })
    ));
    assert_eq!(
        e.prepare(&bad(vec![])),
        Err(EmbedError::EmptyTokens { index: 0 })
    );
    let ok = e.prepare(&bad(vec![101, 7592, 102])).expect("token input");
    assert_eq!(ok, [vec![101, 7592, 102]]);
}
