//! Serving several models: the router over a real `ModelManager` whose loader makes fake
//! engines. Requests go to the model they name (OpenAI and Ollama routes), unknown names
//! are 404 in each API's shape, a request without a model needs a default, listings show
//! loaded and loadable models, `--max-loaded 1` evicts the least recently used model but
//! never one with a request in flight, `keep_alive: 0` unloads, and metrics aggregate.

mod fake;

use axum::body::Body;
use axum::http::{header, Request};
use axum::Router;
use fake::http::{send, Resp};
use fake::Fake;
use nao_engine::api::{
    EngineHandle, EngineStats, ModelInfo, PromptError, Request as EngineRequest, RequestHandle,
    SubmitError,
};
use nao_engine::manager::{names_model, LoadError, Loaded, Loader, ManagerConfig, ModelManager};
use nao_server::{router_with_models, ServerConfig};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tower::ServiceExt;

/// A fake engine under another id.
struct Named {
    id: String,
    fake: Arc<Fake>,
}

impl EngineHandle for Named {
    fn model_info(&self) -> ModelInfo {
        ModelInfo {
            id: self.id.clone(),
            ..self.fake.model_info()
        }
    }
    fn render_chat(&self, m: &Value, t: Option<&Value>) -> Result<String, PromptError> {
        self.fake.render_chat(m, t)
    }
    fn tokenize(&self, text: &str, add_special: bool) -> Vec<u32> {
        self.fake.tokenize(text, add_special)
    }
    fn submit(&self, req: EngineRequest) -> Result<RequestHandle, SubmitError> {
        self.fake.submit(req)
    }
    fn stats(&self) -> EngineStats {
        self.fake.stats()
    }
}

/// Loads `alpha:latest` and `beta:1b`, each a fresh [`Fake`] per load.
#[derive(Default)]
struct Models {
    default: Option<&'static str>,
    loads: Mutex<Vec<(String, Arc<Fake>)>>,
}

const IDS: [&str; 2] = ["alpha:latest", "beta:1b"];

impl Models {
    fn loads(&self) -> Vec<String> {
        self.loads
            .lock()
            .unwrap()
            .iter()
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Requests the latest engine of `id` received.
    fn requests(&self, id: &str) -> usize {
        let loads = self.loads.lock().unwrap();
        loads
            .iter()
            .rev()
            .find(|(i, _)| i == id)
            .map_or(0, |(_, f)| f.requests().len())
    }
}

fn described(id: &str) -> ModelInfo {
    ModelInfo {
        id: id.to_string(),
        ..Fake::default().model_info()
    }
}

/// The loader the manager owns; the test keeps another handle to look inside.
struct Shared(Arc<Models>);

impl Loader for Shared {
    fn default_id(&self) -> Option<String> {
        self.0.default.map(str::to_string)
    }
    fn resolve(&self, name: &str) -> Option<String> {
        IDS.iter()
            .find(|id| names_model(name, id))
            .map(|id| id.to_string())
    }
    fn describe(&self, id: &str) -> Option<ModelInfo> {
        IDS.contains(&id).then(|| described(id))
    }
    fn catalog(&self) -> Vec<ModelInfo> {
        IDS.iter().map(|id| described(id)).collect()
    }
    fn load(&self, id: &str) -> Result<Loaded, LoadError> {
        let fake = Fake::new();
        self.0
            .loads
            .lock()
            .unwrap()
            .push((id.to_string(), fake.clone()));
        Ok(Loaded {
            engine: Arc::new(Named {
                id: id.to_string(),
                fake,
            }),
            thread: None,
        })
    }
}

fn app_with(models: &Arc<Models>, max_loaded: usize, wait: Duration) -> Router {
    let manager = ModelManager::new(
        Shared(Arc::clone(models)),
        ManagerConfig {
            max_loaded,
            max_waiting: 8,
            wait_timeout: wait,
            join_timeout: Duration::from_secs(1),
        },
    );
    router_with_models(Arc::new(manager), None, ServerConfig::default())
}

fn make_app(models: &Arc<Models>, max_loaded: usize) -> Router {
    app_with(models, max_loaded, Duration::from_secs(10))
}

async fn post(app: &Router, path: &str, v: Value) -> Resp {
    let req = Request::post(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(v.to_string()))
        .unwrap();
    send(app, req).await
}

async fn get(app: &Router, path: &str) -> Resp {
    send(app, Request::get(path).body(Body::empty()).unwrap()).await
}

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
}

fn ollama_gen(model: &str) -> Value {
    json!({"model": model, "prompt": "hi", "stream": false})
}

async fn ps(app: &Router) -> Vec<String> {
    let v = get(app, "/api/ps").await.json();
    v["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn requests_go_to_the_model_they_name() {
    let models = Arc::new(Models::default());
    let app = make_app(&models, 2);
    let r = post(&app, "/v1/chat/completions", chat("alpha")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["model"], "alpha:latest");
    let r = post(
        &app,
        "/v1/completions",
        json!({"model": "beta:1b", "prompt": "x"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["model"], "beta:1b");
    let r = post(&app, "/api/generate", ollama_gen("alpha:latest")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["model"], "alpha:latest");
    let r = post(
        &app,
        "/api/chat",
        json!({"model": "beta:1b", "stream": false,
               "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["message"]["content"], "Hello world!");
    assert_eq!(
        models.loads(),
        ["alpha:latest", "beta:1b"],
        "each loaded once"
    );
    assert_eq!(models.requests("alpha:latest"), 2);
    assert_eq!(models.requests("beta:1b"), 2);
}

#[tokio::test]
async fn unknown_or_missing_models_are_errors_in_each_apis_shape() {
    let models = Arc::new(Models::default());
    let app = make_app(&models, 1);
    for (path, body) in [
        ("/v1/chat/completions", chat("gpt-4o")),
        ("/v1/completions", json!({"model": "beta", "prompt": "x"})),
    ] {
        let r = post(&app, path, body).await;
        assert_eq!(r.status, 404, "{}", r.text());
        let e = &r.json()["error"];
        assert_eq!(e["code"], "model_not_found");
        assert_eq!(e["type"], "invalid_request_error");
        assert_eq!(e["param"], "model");
    }
    assert_eq!(
        get(&app, "/v1/models/nope").await.json()["error"]["code"],
        "model_not_found"
    );
    for (path, body) in [
        ("/api/generate", ollama_gen("nope")),
        ("/api/chat", json!({"model": "nope", "messages": []})),
        ("/api/show", json!({"model": "nope"})),
    ] {
        let r = post(&app, path, body).await;
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(r.json(), json!({"error": "model 'nope' not found"}));
    }
    // No `-m` model: a request must name one.
    let r = post(&app, "/v1/chat/completions", chat("")).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["param"], "model");
    let r = post(&app, "/api/generate", json!({"prompt": "hi"})).await;
    assert_eq!(r.status, 400);
    assert!(r.json()["error"].as_str().unwrap().contains("model"));
    assert!(models.loads().is_empty(), "nothing was loaded");

    // With a default model, requests without one go to it.
    let models = Arc::new(Models {
        default: Some("beta:1b"),
        ..Models::default()
    });
    let app = make_app(&models, 1);
    let r = post(&app, "/v1/chat/completions", chat("")).await;
    assert_eq!(r.json()["model"], "beta:1b");
    let r = post(
        &app,
        "/api/generate",
        json!({"prompt": "hi", "stream": false}),
    )
    .await;
    assert_eq!(r.json()["model"], "beta:1b");
}

#[tokio::test]
async fn listings_show_loaded_and_loadable_models() {
    let models = Arc::new(Models::default());
    let app = make_app(&models, 2);
    let ids = |v: &Value, key: &str, field: &str| -> Vec<(String, Value)> {
        v[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m[field].as_str().unwrap().to_string(), m["loaded"].clone()))
            .collect()
    };
    let v = get(&app, "/v1/models").await.json();
    assert_eq!(
        ids(&v, "data", "id"),
        [
            ("alpha:latest".to_string(), json!(false)),
            ("beta:1b".to_string(), json!(false))
        ]
    );
    let tags = get(&app, "/api/tags").await.json();
    let names: Vec<&str> = tags["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alpha:latest", "beta:1b"]);
    assert!(ps(&app).await.is_empty());
    // An unloaded model is described from what the loader knows, without loading it.
    let r = post(&app, "/api/show", json!({"model": "beta:1b"})).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["details"]["family"], "tinyarch");
    assert_eq!(
        get(&app, "/v1/models/beta:1b").await.json()["loaded"],
        false
    );
    assert!(models.loads().is_empty());

    assert_eq!(
        post(&app, "/api/generate", ollama_gen("beta:1b"))
            .await
            .status,
        200
    );
    let v = get(&app, "/v1/models").await.json();
    assert_eq!(v["data"][1]["loaded"], true);
    assert_eq!(v["data"][0]["loaded"], false);
    assert_eq!(get(&app, "/v1/models/beta:1b").await.json()["loaded"], true);
    assert_eq!(ps(&app).await, ["beta:1b"]);
}

#[tokio::test]
async fn max_loaded_one_keeps_the_model_last_asked_for() {
    let models = Arc::new(Models::default());
    let app = make_app(&models, 1);
    for name in ["alpha", "beta:1b", "alpha"] {
        let r = post(&app, "/v1/chat/completions", chat(name)).await;
        assert_eq!(r.status, 200);
        assert_eq!(ps(&app).await.len(), 1);
    }
    assert_eq!(models.loads(), ["alpha:latest", "beta:1b", "alpha:latest"]);
    assert_eq!(ps(&app).await, ["alpha:latest"]);
}

#[tokio::test]
async fn a_model_streaming_an_answer_is_not_evicted() {
    let models = Arc::new(Models::default());
    let app = app_with(&models, 1, Duration::from_millis(300));
    let body = json!({"model": "alpha", "stream": true,
                      "messages": [{"role": "user", "content": "SLOW"}]});
    let req = Request::post("/v1/chat/completions")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let streaming = app.clone().oneshot(req).await.unwrap();
    assert_eq!(streaming.status(), 200);
    // `beta` waits for `alpha` to finish, up to the limit, then gets a 503 to retry.
    let r = post(&app, "/v1/chat/completions", chat("beta:1b")).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.headers[header::RETRY_AFTER], "1");
    assert_eq!(r.json()["error"]["code"], "server_overloaded");
    assert_eq!(ps(&app).await, ["alpha:latest"]);
    assert_eq!(models.loads(), ["alpha:latest"]);
    // The client goes away: `alpha` is idle and makes room.
    drop(streaming);
    let r = post(&app, "/v1/chat/completions", chat("beta:1b")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(ps(&app).await, ["beta:1b"]);
}

#[tokio::test]
async fn keep_alive_zero_unloads_the_model() {
    let models = Arc::new(Models::default());
    let app = make_app(&models, 2);
    let mut body = ollama_gen("alpha");
    body["keep_alive"] = json!(0);
    let r = post(&app, "/api/generate", body).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["response"], "Hello world!");
    assert!(ps(&app).await.is_empty(), "unloaded after the request");

    // A request without a prompt loads the model; with keep_alive 0 it unloads it.
    let r = post(
        &app,
        "/api/chat",
        json!({"model": "beta:1b", "stream": false}),
    )
    .await;
    assert_eq!(r.json()["done_reason"], "load");
    assert_eq!(ps(&app).await, ["beta:1b"]);
    let r = post(
        &app,
        "/api/generate",
        json!({"model": "beta:1b", "keep_alive": "0s", "stream": false}),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["done_reason"], "unload");
    assert_eq!(r.json()["model"], "beta:1b");
    assert!(ps(&app).await.is_empty());
    // Unloading what is not loaded is fine; unloading what does not exist is not.
    let r = post(
        &app,
        "/api/generate",
        json!({"model": "beta:1b", "keep_alive": 0}),
    )
    .await;
    assert_eq!(r.status, 200);
    let r = post(
        &app,
        "/api/generate",
        json!({"model": "nope", "keep_alive": 0}),
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(models.loads(), ["alpha:latest", "beta:1b"]);
}

#[tokio::test]
async fn metrics_add_up_over_models_and_survive_unloading() {
    let models = Arc::new(Models::default());
    let app = make_app(&models, 2);
    let metric = |text: &str, name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing"))
            .parse()
            .unwrap()
    };
    let text = get(&app, "/metrics").await.text();
    assert_eq!(metric(&text, "nao_models_loaded"), 0);
    assert_eq!(metric(&text, "nao_generation_tokens_total"), 0);
    post(&app, "/api/generate", ollama_gen("alpha")).await;
    post(&app, "/api/generate", ollama_gen("beta:1b")).await;
    // Each fake engine reports 17 generated tokens and 1 running sequence.
    let text = get(&app, "/metrics").await.text();
    assert_eq!(metric(&text, "nao_models_loaded"), 2);
    assert_eq!(metric(&text, "nao_generation_tokens_total"), 34);
    assert_eq!(metric(&text, "nao_requests_running"), 2);
    post(
        &app,
        "/api/generate",
        json!({"model": "alpha", "keep_alive": 0}),
    )
    .await;
    let text = get(&app, "/metrics").await.text();
    assert_eq!(metric(&text, "nao_models_loaded"), 1);
    assert_eq!(
        metric(&text, "nao_generation_tokens_total"),
        34,
        "counters never go down"
    );
    assert_eq!(metric(&text, "nao_requests_running"), 1);
}
