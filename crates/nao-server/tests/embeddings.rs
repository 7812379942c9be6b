//! `/v1/embeddings`, `/api/embed`, `/api/embeddings` and the two-model `/v1/models`
//! against a fake embedder: request parsing (every `input` shape), response shape, base64
//! bytes, `dimensions`, and the mapping of each engine error to a status.

// Shared with the other server test files; this one uses only the fake chat engine.
#[allow(dead_code)]
mod fake;

use axum::body::Body;
use axum::http::{header, Method, Request};
use axum::Router;
use fake::http::{send, Resp};
use fake::Fake;
use nao_engine::embed::{
    EmbedError, EmbedHandle, EmbedInput, EmbedModelInfo, EmbedOutput, EmbedRequest,
};
use nao_server::{router, router_with_embedder, ServerConfig};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// Answers every input with `[1, -2, 0.5]` (or the configured error) and records requests.
struct FakeEmbed {
    matryoshka: bool,
    fail: Option<EmbedError>,
    seen: Mutex<Vec<EmbedRequest>>,
}

impl FakeEmbed {
    fn new(matryoshka: bool, fail: Option<EmbedError>) -> Arc<FakeEmbed> {
        Arc::new(FakeEmbed {
            matryoshka,
            fail,
            seen: Mutex::new(Vec::new()),
        })
    }

    fn last(&self) -> EmbedRequest {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("a request")
    }
}

impl EmbedHandle for FakeEmbed {
    fn info(&self) -> EmbedModelInfo {
        EmbedModelInfo {
            id: "mini".into(),
            n_embd: 3,
            max_tokens: 8,
            n_vocab: 100,
            n_layer: 1,
            n_head: 1,
            created: 1_700_000_000,
            pooling: "mean",
            normalize: true,
            matryoshka: self.matryoshka,
        }
    }

    fn embed(&self, req: EmbedRequest) -> oneshot::Receiver<Result<EmbedOutput, EmbedError>> {
        let n = req.inputs.len();
        self.seen.lock().unwrap().push(req);
        let (tx, rx) = oneshot::channel();
        let res = match &self.fail {
            Some(e) => Err(e.clone()),
            None => Ok(EmbedOutput {
                embeddings: vec![vec![1.0, -2.0, 0.5]; n],
                prompt_tokens: 5 * n,
                compute_time: Default::default(),
            }),
        };
        let _ = tx.send(res);
        rx
    }
}

fn app(e: &Arc<FakeEmbed>) -> Router {
    router_with_embedder(Fake::new(), Some(e.clone()), ServerConfig::default())
}

async fn post(app: &Router, path: &str, body: Value) -> Resp {
    let req = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    send(app, req).await
}

async fn get(app: &Router, path: &str) -> Resp {
    send(
        app,
        Request::builder().uri(path).body(Body::empty()).unwrap(),
    )
    .await
}

#[tokio::test]
async fn every_input_shape() {
    let e = FakeEmbed::new(false, None);
    let app = app(&e);
    let text = |s: &str| EmbedInput::Text(s.into());
    let cases = [
        (json!("hello"), vec![text("hello")]),
        (json!(["a", "b"]), vec![text("a"), text("b")]),
        (json!([1, 2, 3]), vec![EmbedInput::Tokens(vec![1, 2, 3])]),
        (
            json!([[1, 2], [-3]]),
            vec![EmbedInput::Tokens(vec![1, 2]), EmbedInput::Tokens(vec![-3])],
        ),
        (
            json!(["a", [7]]),
            vec![text("a"), EmbedInput::Tokens(vec![7])],
        ),
    ];
    for (input, want) in cases {
        let r = post(
            &app,
            "/v1/embeddings",
            json!({"model": "mini", "input": input}),
        )
        .await;
        assert_eq!(r.status, 200, "{input}: {}", r.text());
        assert_eq!(e.last().inputs, want, "{input}");
        assert!(!e.last().truncate);
        let v = r.json();
        assert_eq!(v["object"], "list");
        assert_eq!(v["model"], "mini");
        let n = want.len();
        assert_eq!(v["data"].as_array().map(Vec::len), Some(n));
        for (i, d) in v["data"].as_array().unwrap().iter().enumerate() {
            assert_eq!(d["object"], "embedding");
            assert_eq!(d["index"], i);
            assert_eq!(d["embedding"], json!([1.0, -2.0, 0.5]));
        }
        assert_eq!(
            v["usage"],
            json!({"prompt_tokens": 5 * n, "total_tokens": 5 * n})
        );
    }
}

#[tokio::test]
async fn base64_is_little_endian_f32() {
    let e = FakeEmbed::new(false, None);
    let r = post(
        &app(&e),
        "/v1/embeddings",
        json!({"input": "x", "encoding_format": "base64"}),
    )
    .await;
    // struct.pack('<3f', 1.0, -2.0, 0.5), base64-encoded by Python.
    assert_eq!(r.json()["data"][0]["embedding"], "AACAPwAAAMAAAAA/");
}

#[tokio::test]
async fn bad_requests_are_400_naming_the_field() {
    let e = FakeEmbed::new(false, None);
    let app = app(&e);
    let cases = [
        (json!({"input": []}), "input"),
        (json!({}), "input"),
        (json!({"input": 3}), "input"),
        (json!({"input": [1.5]}), "input"),
        (json!({"input": [{"text": "a"}]}), "input"),
        (
            json!({"input": "a", "encoding_format": "int8"}),
            "encoding_format",
        ),
        (json!({"input": "a", "dimensions": 2}), "dimensions"),
        (json!({"input": "a", "dimensions": 0}), "dimensions"),
        (json!({"input": "a", "dimensions": -1}), "dimensions"),
        (json!({"input": "a", "truncate": "yes"}), "truncate"),
    ];
    for (body, param) in cases {
        let r = post(&app, "/v1/embeddings", body.clone()).await;
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        assert_eq!(r.json()["error"]["param"], param, "{body}");
        assert_eq!(r.json()["error"]["type"], "invalid_request_error");
    }
    let too_many: Vec<&str> = vec!["a"; 2049];
    assert_eq!(
        post(&app, "/v1/embeddings", json!({"input": too_many}))
            .await
            .status,
        400
    );
    let r = post(
        &app,
        "/v1/embeddings",
        json!({"input": "a", "model": "other"}),
    )
    .await;
    assert_eq!(
        (r.status.as_u16(), r.json()["error"]["code"].clone()),
        (404, json!("model_not_found"))
    );
    // Full-size dimensions are fine; truncate is passed through.
    let r = post(
        &app,
        "/v1/embeddings",
        json!({"input": "a", "dimensions": 3, "truncate": true}),
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(e.last().truncate);
}

#[tokio::test]
async fn matryoshka_dimensions_cut_and_renormalise() {
    let e = FakeEmbed::new(true, None);
    let r = post(
        &app(&e),
        "/v1/embeddings",
        json!({"input": "a", "dimensions": 2}),
    )
    .await;
    let v = r.json()["data"][0]["embedding"].clone();
    // [1, -2] / sqrt(5)
    let want = [1.0 / 5f64.sqrt(), -2.0 / 5f64.sqrt()];
    let got: Vec<f64> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert_eq!(got.len(), 2);
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < 1e-6, "{got:?}");
    }
}

#[tokio::test]
async fn engine_errors_map_to_statuses() {
    let too_long = EmbedError::TooLong {
        index: 1,
        n_tokens: 9,
        max: 8,
    };
    let cases = [
        (too_long, 400, Some("context_length_exceeded")),
        (
            EmbedError::TokenOutOfRange {
                index: 0,
                id: -1,
                n_vocab: 100,
            },
            400,
            None,
        ),
        (
            EmbedError::QueueFull { limit: 4 },
            503,
            Some("server_overloaded"),
        ),
        (EmbedError::ShutDown, 503, Some("service_unavailable")),
        (EmbedError::Failed("boom".into()), 500, None),
    ];
    for (err, status, code) in cases {
        let e = FakeEmbed::new(false, Some(err.clone()));
        let r = post(&app(&e), "/v1/embeddings", json!({"input": ["a", "b"]})).await;
        assert_eq!(r.status.as_u16(), status, "{err:?}");
        assert_eq!(r.json()["error"]["code"], json!(code), "{err:?}");
        if status == 503 && matches!(err, EmbedError::QueueFull { .. }) {
            assert!(r.headers.get(header::RETRY_AFTER).is_some());
        }
    }
}

#[tokio::test]
async fn without_an_embedder() {
    let app = router(Fake::new(), ServerConfig::default());
    let r = post(&app, "/v1/embeddings", json!({"input": "a"})).await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("--embedding-model"));
    let models = get(&app, "/v1/models").await.json();
    assert_eq!(models["data"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn models_lists_both() {
    let e = FakeEmbed::new(false, None);
    let app = app(&e);
    let v = get(&app, "/v1/models").await.json();
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["tiny-model", "mini"]);
    let m = get(&app, "/v1/models/mini").await;
    assert_eq!(
        (m.status.as_u16(), m.json()["embedding_dimensions"].clone()),
        (200, json!(3))
    );
    assert_eq!(get(&app, "/v1/models/tiny-model").await.status, 200);
    assert_eq!(get(&app, "/v1/models/nope").await.status, 404);
}

#[tokio::test]
async fn ollama_embed_and_embeddings() {
    let e = FakeEmbed::new(false, None);
    let app = app(&e);
    let r = post(
        &app,
        "/api/embed",
        json!({"model": "mini:latest", "input": ["a", "b"]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["model"], "mini");
    assert_eq!(v["embeddings"], json!([[1.0, -2.0, 0.5], [1.0, -2.0, 0.5]]));
    assert_eq!(v["prompt_eval_count"], 10);
    assert!(v["total_duration"].is_u64());
    assert!(e.last().truncate, "Ollama truncates by default");
    let r = post(&app, "/api/embed", json!({"model": "mini", "input": []})).await;
    assert_eq!(r.json()["embeddings"], json!([]));
    let r = post(
        &app,
        "/api/embeddings",
        json!({"model": "mini", "prompt": "a"}),
    )
    .await;
    assert_eq!(r.json(), json!({"embedding": [1.0, -2.0, 0.5]}));
    let r = post(&app, "/api/embed", json!({"model": "other", "input": "a"})).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json(), json!({"error": "model 'other' not found"}));
}
