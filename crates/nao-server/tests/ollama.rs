//! The Ollama API against the fake engine: NDJSON streaming and its final line, the
//! non-streamed shape, `options` → sampler mapping (checked on what the engine received),
//! prompt building (template, raw, system, context), model-name matching, the refusals
//! (`format`, `images`, …), error shape and statuses, auth, metrics, listings, and a
//! client disconnect on a real socket.

mod fake;

use axum::body::Body;
use axum::http::{header, Method, Request};
use axum::Router;
use fake::http::{app, send, Resp};
use fake::{Fake, BOS, N_CTX};
use nao_engine::api::Grammar;
use nao_server::{router, serve, ServerConfig};
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

impl Resp {
    /// The objects of an NDJSON body; every line must be one complete JSON object.
    fn lines(&self) -> Vec<Value> {
        let t = self.text();
        assert!(t.ends_with('\n'), "NDJSON ends with a newline: {t:?}");
        t.lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}"));
                assert!(v.is_object(), "{l}");
                v
            })
            .collect()
    }

    fn content_type(&self) -> String {
        self.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .to_string()
    }
}

async fn post_raw(app: &Router, path: &str, body: impl Into<Body>) -> Resp {
    let req = Request::post(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.into())
        .unwrap();
    send(app, req).await
}

async fn post(app: &Router, path: &str, v: Value) -> Resp {
    post_raw(app, path, v.to_string()).await
}

async fn get(app: &Router, path: &str) -> Resp {
    send(app, Request::get(path).body(Body::empty()).unwrap()).await
}

/// Checks Ollama's error shape (`{"error": "message"}`, nothing else) and returns the
/// message.
fn check_error(r: &Resp, status: u16) -> String {
    assert_eq!(r.status.as_u16(), status, "{}", r.text());
    assert!(r.content_type().starts_with("application/json"));
    let v = r.json();
    let obj = v.as_object().unwrap();
    assert_eq!(obj.len(), 1, "only `error`: {v}");
    let msg = v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("error is a string: {v}"));
    assert!(!msg.is_empty());
    msg.to_string()
}

fn bytes(s: &str) -> Vec<u32> {
    s.bytes().map(u32::from).collect()
}

const GEN: &str = "/api/generate";
const CHAT: &str = "/api/chat";

fn is_nanos(v: &Value) -> bool {
    v.as_u64().is_some()
}

// ---------------------------------------------------------------------------------
// /api/generate

#[tokio::test]
async fn generate_streams_ndjson_by_default() {
    let fake = Fake::new();
    let r = post(
        &app(&fake),
        GEN,
        json!({"model": "tiny-model", "prompt": "hi"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.content_type(), "application/x-ndjson");
    let lines = r.lines();
    assert_eq!(lines.len(), 4, "three pieces and the final line: {lines:?}");
    for (line, want) in lines.iter().zip(fake::SCRIPT) {
        assert_eq!(line["response"], want);
        assert_eq!(line["done"], false);
        assert_eq!(line["model"], "tiny-model");
        assert!(line["created_at"].as_str().unwrap().ends_with('Z'));
        assert!(line.get("done_reason").is_none());
    }
    let last = &lines[3];
    assert_eq!(last["done"], true);
    assert_eq!(last["done_reason"], "stop");
    assert_eq!(last["response"], "", "streamed text is not repeated");
    // The prompt went through the chat template, and context = prompt + answer ids.
    let prompt = bytes("user: hi\nassistant:");
    assert_eq!(fake.requests()[0].prompt, prompt);
    assert_eq!(last["prompt_eval_count"], prompt.len());
    assert_eq!(last["eval_count"], 3);
    for k in [
        "total_duration",
        "load_duration",
        "prompt_eval_duration",
        "eval_duration",
    ] {
        assert!(is_nanos(&last[k]), "{k}: {last}");
    }
    assert!(last["eval_duration"].as_u64().unwrap() > 0);
    assert!(last["total_duration"].as_u64().unwrap() >= last["load_duration"].as_u64().unwrap());
    let mut context = prompt.clone();
    context.extend(bytes("Hello world!"));
    assert_eq!(last["context"], json!(context));
}

#[tokio::test]
async fn generate_not_streamed_is_one_object() {
    let fake = Fake::new();
    let app = app(&fake);
    let r = post(&app, GEN, json!({"prompt": "hi", "stream": false})).await;
    assert_eq!(r.status, 200);
    assert!(r.content_type().starts_with("application/json"));
    let v = r.json();
    assert_eq!(v["response"], "Hello world!");
    assert_eq!(v["done"], true);
    assert_eq!(v["done_reason"], "stop");
    assert_eq!(
        v["model"], "tiny-model:latest",
        "no name sent: the listed one"
    );
    assert_eq!(v["eval_count"], 3);
    assert!(is_nanos(&v["total_duration"]) && is_nanos(&v["eval_duration"]));

    let r = post(
        &app,
        GEN,
        json!({"prompt": "hi", "stream": false, "options": {"num_predict": 2}}),
    )
    .await;
    let v = r.json();
    assert_eq!(v["response"], "Hello world");
    assert_eq!(v["done_reason"], "length");
}

#[tokio::test]
async fn generate_prompt_building() {
    let fake = Fake::new();
    let app = app(&fake);
    let ok = |r: Resp| {
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()
    };
    // system + prompt through the template.
    ok(post(
        &app,
        GEN,
        json!({"prompt": "P", "system": "S", "stream": false}),
    )
    .await);
    assert_eq!(
        fake.rendered.lock().unwrap().last().unwrap(),
        "system: S\nuser: P\nassistant:"
    );
    // raw: as is, with BOS, system ignored, no context returned.
    let v = ok(post(
        &app,
        GEN,
        json!({"prompt": "P", "system": "S", "raw": true, "stream": false}),
    )
    .await);
    let mut want = vec![BOS];
    want.extend(bytes("P"));
    assert_eq!(fake.requests()[1].prompt, want);
    assert!(v.get("context").is_none(), "{v}");
    // context is prepended; a raw prompt after it gets no second BOS.
    ok(post(
        &app,
        GEN,
        json!({"prompt": "P", "raw": true, "context": [1, 2, 3], "stream": false}),
    )
    .await);
    assert_eq!(fake.requests()[2].prompt, vec![1, 2, 3, u32::from(b'P')]);
    let v = ok(post(
        &app,
        GEN,
        json!({"prompt": "P", "context": [7], "stream": false}),
    )
    .await);
    let mut want = vec![7];
    want.extend(bytes("user: P\nassistant:"));
    assert_eq!(fake.requests()[3].prompt, want);
    want.extend(bytes("Hello world!"));
    assert_eq!(v["context"], json!(want));
}

#[tokio::test]
async fn empty_prompt_loads_the_model() {
    let fake = Fake::new();
    let app = app(&fake);
    let r = post(&app, GEN, json!({"model": "tiny-model"})).await;
    assert_eq!(r.status, 200);
    let lines = r.lines();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["done"], true);
    assert_eq!(lines[0]["done_reason"], "load");
    let r = post(&app, CHAT, json!({"messages": [], "stream": false})).await;
    let v = r.json();
    assert_eq!(v["done_reason"], "load");
    assert_eq!(v["message"]["role"], "assistant");
    assert!(fake.requests().is_empty(), "nothing was generated");
}

// ---------------------------------------------------------------------------------
// /api/chat

#[tokio::test]
async fn chat_streams_message_pieces() {
    let fake = Fake::new();
    let tools = json!([{"type": "function", "function": {"name": "f", "parameters": {}}}]);
    let r = post(
        &app(&fake),
        CHAT,
        json!({"model": "tiny-model:latest", "tools": tools,
               "messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.content_type(), "application/x-ndjson");
    let lines = r.lines();
    assert_eq!(lines.len(), 4);
    let text: String = lines[..3]
        .iter()
        .map(|l| {
            assert_eq!(l["done"], false);
            assert_eq!(l["message"]["role"], "assistant");
            assert_eq!(l["model"], "tiny-model:latest", "the name sent is echoed");
            l["message"]["content"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(text, "Hello world!");
    let last = &lines[3];
    assert_eq!(last["done"], true);
    assert_eq!(last["done_reason"], "stop");
    assert_eq!(last["message"]["content"], "");
    assert!(last.get("context").is_none());
    assert!(is_nanos(&last["eval_duration"]) && is_nanos(&last["prompt_eval_duration"]));
    assert_eq!(
        fake.requests()[0].prompt,
        bytes("system: S\nuser: hi\nassistant:")
    );
    assert_eq!(
        fake.tools.lock().unwrap()[0],
        Some(tools),
        "tools reach the template"
    );
}

#[tokio::test]
async fn chat_not_streamed() {
    let fake = Fake::new();
    let r = post(
        &app(&fake),
        CHAT,
        json!({"messages": [{"role": "user", "content": "hi"}], "stream": false}),
    )
    .await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(
        v["message"],
        json!({"role": "assistant", "content": "Hello world!"})
    );
    assert_eq!(v["done"], true);
    assert_eq!(v["done_reason"], "stop");
    assert_eq!(v["prompt_eval_count"], bytes("user: hi\nassistant:").len());
}

#[tokio::test]
async fn logprobs_when_asked() {
    let fake = Fake::new();
    let r = post(
        &app(&fake),
        CHAT,
        json!({"messages": [{"role": "user", "content": "hi"}], "logprobs": true,
               "top_logprobs": 2}),
    )
    .await;
    let lines = r.lines();
    let lp = &lines[0]["logprobs"][0];
    assert_eq!(lp["token"], "Hello");
    assert_eq!(lp["logprob"], -0.25);
    assert_eq!(lp["top_logprobs"].as_array().unwrap().len(), 2);
    assert_eq!(fake.requests()[0].logprobs, Some(2));
    let r = post(
        &app(&fake),
        CHAT,
        json!({"messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert!(r.lines()[0].get("logprobs").is_none());
}

// ---------------------------------------------------------------------------------
// options

#[tokio::test]
async fn options_map_onto_the_sampler() {
    let fake = Fake::new();
    let app = app(&fake);
    let r = post(
        &app,
        GEN,
        json!({"prompt": "hi", "stream": false, "options": {
            "temperature": 0.25, "top_k": 7, "top_p": 0.5, "min_p": 0.125, "seed": 42,
            "num_predict": 9, "stop": ["\n", "user:"], "repeat_penalty": 1.5,
            "repeat_last_n": 16, "presence_penalty": 0.5, "frequency_penalty": 0.75,
            "num_ctx": 1_000_000, "mirostat": 0, "num_thread": 8
        }}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let req = &fake.requests()[0];
    let s = &req.sampler;
    assert_eq!(
        (s.temperature, s.top_k, s.top_p, s.min_p, s.seed),
        (0.25, 7, 0.5, 0.125, 42)
    );
    assert_eq!((s.repeat_penalty, s.repeat_last_n), (1.5, 16));
    assert_eq!((s.presence_penalty, s.frequency_penalty), (0.5, 0.75));
    assert_eq!(req.max_tokens, 9);
    assert_eq!(req.stop, vec!["\n".to_string(), "user:".to_string()]);
    assert!(req.stop_at_eog);
    assert!(req.logit_bias.is_empty());
    assert_eq!(req.logprobs, None);

    // Ollama's defaults; special values.
    post(
        &app,
        CHAT,
        json!({"messages": [{"role": "user", "content": "x"}], "stream": false}),
    )
    .await;
    post(
        &app,
        GEN,
        json!({"prompt": "x", "stream": false, "options": {"num_predict": -1,
               "repeat_last_n": -1, "top_k": 0, "temperature": 0}}),
    )
    .await;
    let reqs = fake.requests();
    let d = &reqs[1].sampler;
    assert_eq!(
        (
            d.temperature,
            d.top_k,
            d.top_p,
            d.min_p,
            d.repeat_penalty,
            d.repeat_last_n
        ),
        (0.8, 40, 0.9, 0.0, 1.1, 64)
    );
    assert_eq!(
        reqs[1].max_tokens, N_CTX,
        "no num_predict: until the context"
    );
    let g = &reqs[2];
    assert_eq!(g.max_tokens, N_CTX);
    assert_eq!(g.sampler.repeat_last_n, N_CTX);
    assert_eq!((g.sampler.top_k, g.sampler.temperature), (0, 0.0));
}

#[tokio::test]
async fn random_seed_unless_given() {
    let fake = Fake::new();
    let app = app(&fake);
    for seed in [json!(null), json!(-1)] {
        for _ in 0..2 {
            post(
                &app,
                GEN,
                json!({"prompt": "x", "stream": false, "options": {"seed": seed}}),
            )
            .await;
        }
    }
    let seeds: Vec<u64> = fake.requests().iter().map(|r| r.sampler.seed).collect();
    assert_eq!(seeds.len(), 4);
    for (i, a) in seeds.iter().enumerate() {
        for b in &seeds[i + 1..] {
            assert_ne!(a, b, "random seeds differ: {seeds:?}");
        }
    }
}

// ---------------------------------------------------------------------------------
// Refusals and errors

#[tokio::test]
async fn model_names() {
    let fake = Fake::new();
    let app = app(&fake);
    for (name, echoed) in [
        (json!("tiny-model"), "tiny-model"),
        (json!("tiny-model:latest"), "tiny-model:latest"),
        (json!(""), "tiny-model:latest"),
        (json!(null), "tiny-model:latest"),
    ] {
        let r = post(
            &app,
            GEN,
            json!({"model": name, "prompt": "x", "stream": false}),
        )
        .await;
        assert_eq!(r.status, 200, "{name}: {}", r.text());
        assert_eq!(r.json()["model"], echoed);
    }
    let n = fake.requests().len();
    for name in ["qwen2.5-coder:1.5b", "tiny-model:7b", "tiny"] {
        for path in [GEN, CHAT] {
            let r = post(
                &app,
                path,
                json!({"model": name, "prompt": "x",
                       "messages": [{"role": "user", "content": "x"}]}),
            )
            .await;
            assert_eq!(check_error(&r, 404), format!("model '{name}' not found"));
        }
    }
    let r = post(&app, "/api/show", json!({"model": "nope"})).await;
    assert_eq!(check_error(&r, 404), "model 'nope' not found");
    assert_eq!(
        fake.requests().len(),
        n,
        "nothing submitted for unknown models"
    );
}

#[tokio::test]
async fn format_reaches_the_engine_as_a_grammar() {
    let user = json!([{"role": "user", "content": "x"}]);
    let schema = json!({"type": "object", "properties": {"a": {"type": "integer"}},
        "required": ["a"]});
    let cases = [
        (
            GEN,
            json!({"prompt": "x", "format": "json"}),
            Grammar::JsonObject,
        ),
        (
            CHAT,
            json!({"messages": user, "format": schema}),
            Grammar::JsonSchema(schema.clone()),
        ),
    ];
    for (path, body, want) in cases {
        let fake = Fake::new();
        let app = app(&fake);
        let mut body = body;
        body["stream"] = json!(false);
        let r = post(&app, path, body.clone()).await;
        assert_eq!(r.status.as_u16(), 200, "{body}: {}", r.text());
        let reqs = fake.requests();
        assert_eq!(reqs.len(), 1);
        assert_eq!(reqs[0].constraint, Some(want), "{body}");
    }
    // A format that is neither "json" nor a schema is a 400 naming the field.
    let fake = Fake::new();
    let app = app(&fake);
    let msg = check_error(
        &post(&app, GEN, json!({"prompt": "x", "format": "yaml"})).await,
        400,
    );
    assert!(msg.contains("format"), "{msg}");
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn unsupported_features_are_refused() {
    let fake = Fake::new();
    let app = app(&fake);
    let user = json!([{"role": "user", "content": "x"}]);
    let cases = [
        (GEN, json!({"prompt": "x", "images": ["aGk="]}), "images"),
        (
            CHAT,
            json!({"messages": [{"role": "user", "content": "x", "images": ["aGk="]}]}),
            "images",
        ),
        (GEN, json!({"prompt": "x", "suffix": "y"}), "suffix"),
        (
            GEN,
            json!({"prompt": "x", "template": "{{ .Prompt }}"}),
            "template",
        ),
        (CHAT, json!({"messages": user, "think": true}), "thinking"),
    ];
    for (path, body, word) in cases {
        let msg = check_error(&post(&app, path, body.clone()).await, 400);
        assert!(msg.contains(word), "{body}: {msg}");
        assert!(
            msg.contains("not supported") || msg.contains("does not support"),
            "{body}: {msg}"
        );
    }
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn bad_bodies_are_400_in_ollama_shape() {
    let fake = Fake::new();
    let app = app(&fake);
    for path in [GEN, CHAT, "/api/show"] {
        for body in ["", "{", "[1]", "null", "{\"prompt\": \"\u{0}\""] {
            check_error(&post_raw(&app, path, body).await, 400);
        }
        check_error(&post_raw(&app, path, &b"{\"a\":\"\xff\"}"[..]).await, 400);
    }
    for body in [
        json!({"prompt": 3}),
        json!({"prompt": "x", "stream": "no"}),
        json!({"prompt": "x", "options": {"top_p": 2}}),
        json!({"prompt": "x", "options": {"stop": [""]}}),
        json!({"prompt": "x", "context": [-1]}),
        json!({"prompt": "x", "context": [fake::N_VOCAB]}),
    ] {
        let msg = check_error(&post(&app, GEN, body.clone()).await, 400);
        assert!(!msg.is_empty(), "{body}");
    }
    let msg = check_error(
        &post(
            &app,
            CHAT,
            json!({"messages": [{"role": "robot", "content": "x"}]}),
        )
        .await,
        400,
    );
    assert!(msg.contains("robot"), "{msg}");
    // Prompt longer than the context: refused before compute, naming the sizes.
    let long = "a".repeat(N_CTX + 10);
    let msg = check_error(
        &post(&app, GEN, json!({"prompt": long, "raw": true})).await,
        400,
    );
    assert!(msg.contains(&N_CTX.to_string()), "{msg}");
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn queue_full_is_503_with_retry_after() {
    let fake = Fake::new();
    fake.queue_full.store(true, Ordering::SeqCst);
    let app = app(&fake);
    for (path, body) in [
        (GEN, json!({"prompt": "x"})),
        (
            CHAT,
            json!({"messages": [{"role": "user", "content": "x"}], "stream": false}),
        ),
    ] {
        let r = post(&app, path, body).await;
        let msg = check_error(&r, 503);
        assert!(msg.contains("busy"), "{msg}");
        assert_eq!(r.headers[header::RETRY_AFTER], "1");
    }
}

#[tokio::test]
async fn engine_failure_mid_stream_is_an_error_line() {
    let fake = Fake::new();
    let app = app(&fake);
    let r = post(&app, GEN, json!({"prompt": "FAIL", "raw": true})).await;
    assert_eq!(r.status, 200);
    let lines = r.lines();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["response"], "partial");
    assert_eq!(lines[1], json!({"error": "the model exploded"}));
    let r = post(&app, GEN, json!({"prompt": "FAIL", "stream": false})).await;
    assert_eq!(check_error(&r, 500), "the model exploded");
}

#[tokio::test]
async fn api_key_guards_ollama_routes() {
    let fake = Fake::new();
    let cfg = ServerConfig {
        api_key: Some("sekret".into()),
        ..ServerConfig::default()
    };
    let app = router(fake.clone(), cfg);
    for path in ["/api/tags", "/api/ps", "/api/version"] {
        check_error(&get(&app, path).await, 401);
    }
    for path in [GEN, CHAT, "/api/show"] {
        check_error(&post(&app, path, json!({"prompt": "x"})).await, 401);
    }
    assert!(fake.requests().is_empty());
    // `/` stays open: a liveness probe, like /health.
    assert_eq!(get(&app, "/").await.status, 200);
    let with_key = Request::post(GEN)
        .header(header::AUTHORIZATION, "Bearer sekret")
        .body(Body::from(
            json!({"prompt": "x", "stream": false}).to_string(),
        ))
        .unwrap();
    let r = send(&app, with_key).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let wrong = Request::get("/api/tags")
        .header(header::AUTHORIZATION, "Bearer nope")
        .body(Body::empty())
        .unwrap();
    check_error(&send(&app, wrong).await, 401);
}

#[tokio::test]
async fn unknown_api_routes_are_404_in_ollama_shape() {
    let app = app(&Fake::new());
    check_error(&post(&app, "/api/pull", json!({"model": "x"})).await, 404);
    check_error(&get(&app, GEN).await, 405);
}

// ---------------------------------------------------------------------------------
// Listings and probes

#[tokio::test]
async fn tags_ps_show_version_root() {
    let app = app(&Fake::new());
    let r = get(&app, "/api/tags").await;
    assert_eq!(r.status, 200);
    let v = r.json();
    let m = &v["models"][0];
    assert_eq!(v["models"].as_array().unwrap().len(), 1);
    assert_eq!(m["name"], "tiny-model:latest");
    assert_eq!(m["model"], "tiny-model:latest");
    assert_eq!(m["size"], 253_000_000);
    assert_eq!(m["modified_at"], "2020-09-13T12:26:40Z");
    let digest = m["digest"].as_str().unwrap();
    assert_eq!(digest.len(), 64);
    assert_eq!(
        m["details"],
        json!({"parent_model": "", "format": "gguf", "family": "tinyarch",
               "families": ["tinyarch"], "parameter_size": "268.10M",
               "quantization_level": "Q4_K_M"})
    );

    let v = get(&app, "/api/ps").await.json();
    let p = &v["models"][0];
    assert_eq!(p["name"], "tiny-model:latest");
    assert_eq!(p["size_vram"], 0);
    assert_eq!(p["size"], 253_000_000);
    assert_eq!(p["digest"], digest);
    assert_eq!(p["context_length"], N_CTX);
    assert!(p["expires_at"].as_str().unwrap().ends_with('Z'));

    let r = post(&app, "/api/show", json!({"model": "tiny-model"})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let s = r.json();
    assert_eq!(s["template"], "{{ messages }}");
    assert!(s["modelfile"].as_str().unwrap().contains("FROM tiny-model"));
    assert!(s["parameters"].as_str().unwrap().contains("num_ctx"));
    assert_eq!(s["details"]["family"], "tinyarch");
    let mi = &s["model_info"];
    assert_eq!(mi["general.architecture"], "tinyarch");
    assert_eq!(mi["general.parameter_count"], 268_098_176);
    assert_eq!(mi["tinyarch.context_length"], 4096);
    assert_eq!(mi["tinyarch.block_count"], 2);
    assert_eq!(mi["nao.context_length"], N_CTX);
    assert_eq!(s["capabilities"], json!(["completion"]));

    let v = get(&app, "/api/version").await.json();
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));

    let r = get(&app, "/").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "Ollama is running");
    let head = Request::builder()
        .method(Method::HEAD)
        .uri("/")
        .body(Body::empty())
        .unwrap();
    let r = send(&app, head).await;
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
}

#[tokio::test]
async fn metrics_count_ollama_requests() {
    let app = app(&Fake::new());
    post(&app, GEN, json!({"prompt": "x"})).await;
    post(&app, CHAT, json!({"model": "nope"})).await;
    get(&app, "/api/tags").await;
    let t = get(&app, "/metrics").await.text();
    for want in [
        "nao_requests_total{endpoint=\"/api/generate\",status=\"200\"} 1\n",
        "nao_requests_total{endpoint=\"/api/chat\",status=\"404\"} 1\n",
        "nao_requests_total{endpoint=\"/api/tags\",status=\"200\"} 1\n",
        "nao_time_to_first_token_seconds_count 1\n",
    ] {
        assert!(t.contains(want), "missing {want:?} in\n{t}");
    }
}

// ---------------------------------------------------------------------------------
// A real socket: the client leaving cancels the engine request.

#[tokio::test]
async fn client_disconnect_cancels_a_streamed_generation() {
    let fake = Fake::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_stop, rx) = tokio::sync::oneshot::channel::<()>();
    let engine: Arc<dyn nao_engine::api::EngineHandle> = fake.clone();
    tokio::spawn(serve(
        listener,
        engine,
        ServerConfig::default(),
        async move {
            let _ = rx.await;
        },
    ));
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let body = r#"{"prompt": "SLOW", "raw": true}"#;
    let req = format!(
        "POST {GEN} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    // Two pieces arrived: the stream is live.
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(5);
    while String::from_utf8_lossy(&got)
        .matches("\"done\":false")
        .count()
        < 2
    {
        let n = tokio::time::timeout_at(deadline.into(), s.read(&mut buf))
            .await
            .expect("timed out waiting for data")
            .unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&got).contains("application/x-ndjson"));
    assert!(!fake.dropped.load(Ordering::SeqCst));
    drop(s);
    let closed_at = Instant::now();
    while !fake.dropped.load(Ordering::SeqCst) {
        assert!(
            closed_at.elapsed() < Duration::from_secs(1),
            "the engine request was still alive 1 s after the client left"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
