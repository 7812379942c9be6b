//! Server tests against the fake engine: every server-side line of API.md's error
//! checklist, the happy paths of both endpoints (plain and streamed), metrics, auth,
//! client disconnects and graceful shutdown (the last two on a real loopback socket).

mod fake;

use axum::body::Body;
use axum::http::{header, Request};
use axum::Router;
use fake::http::{app, send, Resp};
use fake::{Fake, BOS, N_CTX};
use nao_server::{router, serve, ServerConfig};
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

impl Resp {
    /// The `data:` payloads of an SSE body, in order.
    fn sse(&self) -> Vec<String> {
        sse_lines(&self.text())
    }
}

fn sse_lines(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter(|f| !f.trim().is_empty())
        .map(|f| {
            f.strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not a data frame: {f:?}"))
                .to_string()
        })
        .collect()
}

async fn post_raw(app: &Router, path: &str, ctype: Option<&str>, body: impl Into<Body>) -> Resp {
    let mut b = Request::post(path);
    if let Some(c) = ctype {
        b = b.header(header::CONTENT_TYPE, c);
    }
    send(app, b.body(body.into()).unwrap()).await
}

async fn post(app: &Router, path: &str, v: Value) -> Resp {
    post_raw(app, path, Some("application/json"), v.to_string()).await
}

async fn get(app: &Router, path: &str) -> Resp {
    send(app, Request::get(path).body(Body::empty()).unwrap()).await
}

/// Checks the OpenAI error shape and returns the error object.
fn check_error(r: &Resp, status: u16, kind: &str, param: Option<&str>) -> Value {
    assert_eq!(r.status.as_u16(), status, "{}", r.text());
    assert!(
        r.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/json"),
        "error content type"
    );
    let v = r.json();
    let e = &v["error"];
    assert!(
        e["message"].is_string() && !e["message"].as_str().unwrap().is_empty(),
        "{v}"
    );
    assert_eq!(e["type"], kind, "{v}");
    assert!(
        e["code"].is_string() || e["code"].is_null(),
        "code must be string or null: {v}"
    );
    assert!(e.get("param").is_some(), "param key present: {v}");
    if let Some(p) = param {
        assert_eq!(e["param"], p, "{v}");
    }
    e.clone()
}

fn chat_body(extra: Value) -> Value {
    let mut v = json!({"model": "tiny-model", "messages": [{"role": "user", "content": "hi"}]});
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    v
}

const CHAT: &str = "/v1/chat/completions";
const COMPL: &str = "/v1/completions";

// ---------------------------------------------------------------------------------
// Health, models, routing, auth

#[tokio::test]
async fn health_and_models() {
    let fake = Fake::new();
    let app = app(&fake);
    for p in ["/health", "/healthz"] {
        let r = get(&app, p).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json(), json!({"status": "ok"}));
    }
    let r = get(&app, "/v1/models").await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"][0]["id"], "tiny-model");
    assert_eq!(v["data"][0]["object"], "model");
    assert_eq!(v["data"][0]["created"], 1_700_000_000);
    assert!(v["data"][0]["owned_by"].is_string());

    let r = get(&app, "/v1/models/tiny-model").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["id"], "tiny-model");
    let e = check_error(
        &get(&app, "/v1/models/gpt-4").await,
        404,
        "invalid_request_error",
        Some("model"),
    );
    assert_eq!(e["code"], "model_not_found");
    check_error(
        &get(&app, "/v1/models/org/other").await,
        404,
        "invalid_request_error",
        None,
    );
}

#[tokio::test]
async fn unknown_route_and_method_are_openai_errors() {
    let app = app(&Fake::new());
    check_error(
        &get(&app, "/v1/nope").await,
        404,
        "invalid_request_error",
        None,
    );
    check_error(
        &post(&app, "/v2/chat", json!({})).await,
        404,
        "invalid_request_error",
        None,
    );
    check_error(&get(&app, CHAT).await, 405, "invalid_request_error", None);
}

#[tokio::test]
async fn api_key_guards_everything_but_health() {
    let fake = Fake::new();
    let cfg = ServerConfig {
        api_key: Some("sekret".into()),
        ..ServerConfig::default()
    };
    let app = router(fake.clone(), cfg);
    assert_eq!(get(&app, "/health").await.status, 200);
    assert_eq!(get(&app, "/healthz").await.status, 200);
    for path in ["/v1/models", "/metrics", "/v1/models/tiny-model"] {
        let e = check_error(&get(&app, path).await, 401, "authentication_error", None);
        assert_eq!(e["code"], "invalid_api_key");
    }
    check_error(
        &post(&app, CHAT, chat_body(json!({}))).await,
        401,
        "authentication_error",
        None,
    );
    assert!(
        fake.requests().is_empty(),
        "nothing submitted without a key"
    );

    let with = |auth: &str| {
        Request::get("/v1/models")
            .header(header::AUTHORIZATION, auth)
            .body(Body::empty())
            .unwrap()
    };
    check_error(
        &send(&app, with("Bearer wrong")).await,
        401,
        "authentication_error",
        None,
    );
    check_error(
        &send(&app, with("Bearer sekret2")).await,
        401,
        "authentication_error",
        None,
    );
    check_error(
        &send(&app, with("sekret")).await,
        401,
        "authentication_error",
        None,
    );
    assert_eq!(send(&app, with("Bearer sekret")).await.status, 200);

    let req = Request::post(CHAT)
        .header(header::AUTHORIZATION, "Bearer sekret")
        .body(Body::from(chat_body(json!({})).to_string()))
        .unwrap();
    assert_eq!(send(&app, req).await.status, 200);
}

// ---------------------------------------------------------------------------------
// Bodies

#[tokio::test]
async fn bad_bodies() {
    let app = app(&Fake::new());
    for path in [CHAT, COMPL] {
        for body in [
            &b"not json"[..],
            b"[1,2]",
            b"\"str\"",
            b"null",
            b"42",
            b"",
            b"{\"messages\": [",
        ] {
            let r = post_raw(&app, path, Some("application/json"), body.to_vec()).await;
            check_error(&r, 400, "invalid_request_error", None);
        }
        let r = post_raw(
            &app,
            path,
            Some("application/json"),
            b"{\"prompt\": \"\xff\xfe\"}".to_vec(),
        )
        .await;
        let e = check_error(&r, 400, "invalid_request_error", None);
        assert!(e["message"].as_str().unwrap().contains("UTF-8"), "{e}");
    }
}

#[tokio::test]
async fn content_type_is_lenient_json_is_strict() {
    let fake = Fake::new();
    let app = app(&fake);
    let body = chat_body(json!({})).to_string();
    // curl -d sends form-urlencoded; missing or odd content types are accepted when the
    // body is a JSON object.
    for ctype in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let r = post_raw(&app, CHAT, ctype, body.clone()).await;
        assert_eq!(r.status, 200, "{ctype:?}: {}", r.text());
    }
    let r = post_raw(
        &app,
        CHAT,
        Some("application/x-www-form-urlencoded"),
        "a=1&b=2",
    )
    .await;
    check_error(&r, 400, "invalid_request_error", None);
}

#[tokio::test]
async fn body_over_limit_is_413() {
    let cfg = ServerConfig {
        max_body_bytes: 1024,
        ..ServerConfig::default()
    };
    let app = router(Fake::new(), cfg);
    let big = chat_body(json!({"messages": [{"role": "user", "content": "a".repeat(4000)}]}));
    let r = post(&app, CHAT, big).await;
    let e = check_error(&r, 413, "invalid_request_error", None);
    assert!(e["message"].as_str().unwrap().contains("1024"), "{e}");
    // Under the limit still works.
    assert_eq!(post(&app, CHAT, chat_body(json!({}))).await.status, 200);
}

// ---------------------------------------------------------------------------------
// Chat messages

#[tokio::test]
async fn chat_message_errors() {
    let fake = Fake::new();
    let app = app(&fake);
    let cases = [
        (json!({"messages": []}), "messages"),
        (json!({"model": "tiny-model"}), "messages"),
        (json!({"messages": "hi"}), "messages"),
        (
            json!({"messages": [{"role": "wizard", "content": "x"}]}),
            "messages[0].role",
        ),
        (
            json!({"messages": [{"role": "user", "content": "a"}, {"role": 5, "content": "x"}]}),
            "messages[1].role",
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x"}}]}]}),
            "messages[0].content[0].type",
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "text"}]}]}),
            "messages[0].content[0].text",
        ),
        (
            json!({"messages": [{"role": "user", "content": 5}]}),
            "messages[0].content",
        ),
        (
            json!({"messages": [{"role": "user"}]}),
            "messages[0].content",
        ),
        (
            json!({"messages": [{"role": "user", "content": "BADTEMPLATE"}]}),
            "messages",
        ),
    ];
    for (body, param) in cases {
        let r = post(&app, CHAT, body.clone()).await;
        check_error(&r, 400, "invalid_request_error", Some(param));
    }
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn chat_accepts_text_parts_all_roles_and_nulls() {
    let fake = Fake::new();
    let app = app(&fake);
    let body = json!({
        "model": "tiny-model",
        "messages": [
            {"role": "system", "content": "S", "name": null},
            {"role": "developer", "content": "D"},
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "content": "T", "tool_call_id": "c1"},
        ],
        "temperature": null, "top_p": null, "stop": null, "n": null, "max_tokens": null,
        "logit_bias": null, "seed": null, "user": "someone", "some_future_field": {"x": 1},
    });
    let r = post(&app, CHAT, body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let rendered = fake.rendered.lock().unwrap().clone();
    assert_eq!(
        rendered,
        vec!["system: S\ndeveloper: D\nuser: ab\nassistant: \ntool: T\nassistant:".to_string()]
    );
    // Chat prompts are tokenized without BOS (the template holds its special tokens).
    let reqs = fake.requests();
    assert_ne!(reqs[0].prompt[0], BOS);
}

// ---------------------------------------------------------------------------------
// Field limits

#[tokio::test]
async fn limits_are_enforced() {
    let fake = Fake::new();
    let app = app(&fake);
    let many_stops: Vec<String> = (0..1000).map(|i| format!("s{i}")).collect();
    // 2000 distinct keys, all valid token ids once leading zeros are read as numbers: only
    // the size cap can refuse this map.
    let huge_bias: serde_json::Map<String, Value> = (0..2000)
        .map(|i| (format!("{}{}", "0".repeat(i / 100), i % 100), json!(1)))
        .collect();
    assert_eq!(huge_bias.len(), 2000);
    let cases = [
        (json!({"n": 1_000_000}), "n"),
        (json!({"n": 0}), "n"),
        (json!({"max_tokens": 1_000_000_000u64}), "max_tokens"),
        (json!({"max_tokens": N_CTX + 1}), "max_tokens"),
        (json!({"max_tokens": -5}), "max_tokens"),
        (
            json!({"max_completion_tokens": 1_000_000_000u64}),
            "max_completion_tokens",
        ),
        (
            json!({"logprobs": true, "top_logprobs": 1000}),
            "top_logprobs",
        ),
        (json!({"top_logprobs": 3}), "top_logprobs"),
        (json!({"stop": many_stops}), "stop"),
        (json!({"stop": ""}), "stop"),
        (json!({"stop": ["ok", ""]}), "stop"),
        (json!({"stop": "x".repeat(1000)}), "stop"),
        (json!({"logit_bias": {"300": 1}}), "logit_bias"),
        (json!({"logit_bias": {"abc": 1}}), "logit_bias"),
        (json!({"logit_bias": {"-1": 1}}), "logit_bias"),
        (json!({"logit_bias": {"5": 1000}}), "logit_bias"),
        (json!({"logit_bias": huge_bias}), "logit_bias"),
        (json!({"temperature": 2.5}), "temperature"),
        (json!({"temperature": "hot"}), "temperature"),
        (json!({"top_p": 1.5}), "top_p"),
        (json!({"min_p": -1}), "min_p"),
        (json!({"presence_penalty": 3}), "presence_penalty"),
        (json!({"frequency_penalty": -3}), "frequency_penalty"),
        (json!({"repeat_penalty": 0}), "repeat_penalty"),
        (json!({"stream": "yes"}), "stream"),
        (
            json!({"response_format": {"type": "xml"}}),
            "response_format.type",
        ),
        (json!({"grammar": "root ::= \"a"}), "grammar"),
        (json!({"tool_choice": "required"}), "tool_choice"),
    ];
    for (extra, param) in cases {
        let r = post(&app, CHAT, chat_body(extra.clone())).await;
        check_error(&r, 400, "invalid_request_error", Some(param));
    }
    assert!(
        fake.requests().is_empty(),
        "no invalid request reached the engine"
    );

    // Completions: legacy logprobs cap and token ids.
    for (body, param) in [
        (json!({"prompt": "x", "logprobs": 6}), "logprobs"),
        (json!({"prompt": [-1]}), "prompt"),
        (json!({"prompt": [1, 300]}), "prompt"),
        (json!({"prompt": [[1], [2, -7]]}), "prompt"),
        (json!({"prompt": [1.5]}), "prompt"),
        (json!({"prompt": []}), "prompt"),
        (json!({"prompt": 7}), "prompt"),
        (json!({}), "prompt"),
        (json!({"prompt": vec!["a"; 17]}), "prompt"),
    ] {
        let r = post(&app, COMPL, body.clone()).await;
        check_error(&r, 400, "invalid_request_error", Some(param));
    }
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn model_field() {
    let fake = Fake::new();
    let app = app(&fake);
    let r = post(&app, CHAT, chat_body(json!({"model": "gpt-4o"}))).await;
    let e = check_error(&r, 404, "invalid_request_error", Some("model"));
    assert_eq!(e["code"], "model_not_found");
    let r = post(&app, COMPL, json!({"model": "other", "prompt": "x"})).await;
    check_error(&r, 404, "invalid_request_error", Some("model"));
    // One model served: an empty or missing model is accepted.
    assert_eq!(
        post(&app, CHAT, chat_body(json!({"model": ""})))
            .await
            .status,
        200
    );
    assert_eq!(post(&app, COMPL, json!({"prompt": "x"})).await.status, 200);
}

// ---------------------------------------------------------------------------------
// Engine refusals

#[tokio::test]
async fn queue_full_is_503_with_retry_after() {
    let fake = Fake::new();
    fake.queue_full.store(true, Ordering::SeqCst);
    let app = app(&fake);
    for (path, body) in [
        (CHAT, chat_body(json!({}))),
        (COMPL, json!({"prompt": "x", "stream": true})),
    ] {
        let r = post(&app, path, body).await;
        check_error(&r, 503, "server_error", None);
        assert_eq!(r.headers[header::RETRY_AFTER], "1");
    }
}

#[tokio::test]
async fn prompt_too_long_names_both_numbers() {
    let app = app(&Fake::new());
    let r = post(&app, COMPL, json!({"prompt": "y".repeat(100)})).await;
    let e = check_error(&r, 400, "invalid_request_error", Some("prompt"));
    let msg = e["message"].as_str().unwrap();
    assert!(
        msg.contains("101") && msg.contains(&N_CTX.to_string()),
        "{msg}"
    );
    assert_eq!(e["code"], "context_length_exceeded");
    let long = chat_body(json!({"messages": [{"role": "user", "content": "y".repeat(100)}]}));
    check_error(
        &post(&app, CHAT, long).await,
        400,
        "invalid_request_error",
        Some("messages"),
    );
}

#[tokio::test]
async fn engine_error_mid_request() {
    let app = app(&Fake::new());
    let r = post(&app, COMPL, json!({"prompt": "FAIL"})).await;
    let e = check_error(&r, 500, "server_error", None);
    assert!(e["message"].as_str().unwrap().contains("exploded"));

    let r = post(
        &app,
        CHAT,
        chat_body(json!({"messages": [{"role": "user", "content": "FAIL"}], "stream": true})),
    )
    .await;
    assert_eq!(r.status, 200);
    let lines = r.sse();
    assert_eq!(lines.last().unwrap(), "[DONE]");
    let err: Value = serde_json::from_str(&lines[lines.len() - 2]).unwrap();
    assert_eq!(err["error"]["type"], "server_error");
    assert!(err["error"]["code"].is_null() || err["error"]["code"].is_string());
    let partial: Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!(partial["choices"][0]["delta"]["content"], "partial");
}

// ---------------------------------------------------------------------------------
// Happy paths

#[tokio::test]
async fn chat_non_streamed() {
    let fake = Fake::new();
    let app = app(&fake);
    let r = post(&app, CHAT, chat_body(json!({"seed": 5}))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.headers[header::CONTENT_TYPE], "application/json");
    let v = r.json();
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "tiny-model");
    assert!(v["created"].as_u64().unwrap() > 1_600_000_000);
    let c = &v["choices"][0];
    assert_eq!(c["index"], 0);
    assert_eq!(c["message"]["role"], "assistant");
    assert_eq!(c["message"]["content"], "Hello world!");
    assert!(c["logprobs"].is_null());
    assert_eq!(c["finish_reason"], "stop");
    let prompt_len = "user: hi\nassistant:".len();
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": prompt_len, "completion_tokens": 3, "total_tokens": prompt_len + 3,
               "prompt_tokens_details": {"cached_tokens": 1}})
    );

    // The sampler gets OpenAI defaults and the request's fields.
    let req = &fake.requests()[0];
    assert_eq!(req.sampler.seed, 5);
    assert_eq!(req.sampler.temperature, 1.0);
    assert_eq!(req.sampler.top_p, 1.0);
    assert_eq!(req.sampler.top_k, 0);
    assert_eq!(req.sampler.min_p, 0.0);
    assert_eq!(req.max_tokens, N_CTX);
    assert!(req.stop_at_eog);
    assert_eq!(req.logprobs, None);

    let r = post(&app, CHAT, chat_body(json!({"max_tokens": 2, "temperature": 0, "top_k": 3, "stop": ["a", "b"],
        "logit_bias": {"7": -100, "12": 5.5}, "presence_penalty": 1.5, "max_completion_tokens": null}))).await;
    let v = r.json();
    assert_eq!(v["choices"][0]["message"]["content"], "Hello world");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    let req = &fake.requests()[1];
    assert_eq!(req.max_tokens, 2);
    assert_eq!(req.sampler.temperature, 0.0);
    assert_eq!(req.sampler.top_k, 3);
    assert_eq!(req.sampler.presence_penalty, 1.5);
    assert_eq!(req.stop, vec!["a".to_string(), "b".to_string()]);
    let mut bias = req.logit_bias.clone();
    bias.sort_by_key(|b| b.0);
    assert_eq!(bias, vec![(7, -100.0), (12, 5.5)]);
}

#[tokio::test]
async fn seeds_are_random_when_absent() {
    let fake = Fake::new();
    let app = app(&fake);
    post(&app, CHAT, chat_body(json!({}))).await;
    post(&app, CHAT, chat_body(json!({}))).await;
    let r = fake.requests();
    assert_ne!(r[0].sampler.seed, r[1].sampler.seed);
}

#[tokio::test]
async fn n_choices_use_consecutive_seeds() {
    let fake = Fake::new();
    let app = app(&fake);
    let r = post(&app, CHAT, chat_body(json!({"n": 2, "seed": 41}))).await;
    let v = r.json();
    let choices = v["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 2);
    for (i, c) in choices.iter().enumerate() {
        assert_eq!(c["index"], i);
        assert_eq!(c["message"]["content"], "Hello world!");
    }
    let prompt_len = "user: hi\nassistant:".len();
    assert_eq!(
        v["usage"]["prompt_tokens"], prompt_len,
        "prompt counted once"
    );
    assert_eq!(v["usage"]["completion_tokens"], 6);
    assert_eq!(v["usage"]["total_tokens"], prompt_len + 6);
    let seeds: Vec<u64> = fake.requests().iter().map(|r| r.sampler.seed).collect();
    assert_eq!(seeds, vec![41, 42]);
}

#[tokio::test]
async fn chat_streamed_with_usage() {
    let app = app(&Fake::new());
    let r = post(
        &app,
        CHAT,
        chat_body(json!({"stream": true, "stream_options": {"include_usage": true}})),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers[header::CONTENT_TYPE], "text/event-stream");
    let lines = r.sse();
    assert_eq!(lines.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = lines[..lines.len() - 1]
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let id = chunks[0]["id"].as_str().unwrap();
    assert!(id.starts_with("chatcmpl-"));
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["id"], id, "one id per stream");
        assert_eq!(c["model"], "tiny-model");
        assert!(c.get("usage").is_some(), "usage key on every chunk");
    }
    // Role first.
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert!(chunks[0]["choices"][0]["finish_reason"].is_null());
    // Content in order, finish_reason null until the finish chunk.
    let n = chunks.len();
    let text: String = chunks[1..n - 2]
        .iter()
        .map(|c| {
            assert!(c["choices"][0]["finish_reason"].is_null());
            assert!(c["usage"].is_null());
            c["choices"][0]["delta"]["content"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(text, "Hello world!");
    assert_eq!(chunks[n - 2]["choices"][0]["finish_reason"], "stop");
    assert_eq!(chunks[n - 2]["choices"][0]["delta"], json!({}));
    assert!(chunks[n - 2]["usage"].is_null());
    // Usage chunk: empty choices.
    assert_eq!(chunks[n - 1]["choices"], json!([]));
    assert_eq!(chunks[n - 1]["usage"]["completion_tokens"], 3);
    assert_eq!(
        chunks[n - 1]["usage"]["prompt_tokens_details"]["cached_tokens"],
        1
    );

    // Without include_usage: no usage key anywhere, no usage chunk.
    let r = post(&app, CHAT, chat_body(json!({"stream": true, "n": 2}))).await;
    let lines = r.sse();
    assert_eq!(lines.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = lines[..lines.len() - 1]
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(chunks.iter().all(|c| c.get("usage").is_none()));
    for idx in 0..2 {
        let mine: Vec<&Value> = chunks
            .iter()
            .filter(|c| c["choices"][0]["index"] == idx)
            .collect();
        assert_eq!(
            mine[0]["choices"][0]["delta"]["role"], "assistant",
            "role first for {idx}"
        );
        assert_eq!(mine.last().unwrap()["choices"][0]["finish_reason"], "stop");
        let text: String = mine
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(text, "Hello world!");
    }
}

#[tokio::test]
async fn completions_plain_batch_and_streamed() {
    let fake = Fake::new();
    let app = app(&fake);
    let r = post(&app, COMPL, json!({"model": "tiny-model", "prompt": "Hi"})).await;
    let v = r.json();
    assert!(v["id"].as_str().unwrap().starts_with("cmpl-"));
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["choices"][0]["text"], "Hello world!");
    assert_eq!(v["choices"][0]["index"], 0);
    assert!(v["choices"][0]["logprobs"].is_null());
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["prompt_tokens"], 3, "BOS + 2 bytes");
    assert_eq!(fake.requests()[0].prompt, vec![BOS, 72, 105]);

    // Token ids go through untouched.
    post(&app, COMPL, json!({"prompt": [72, 105]})).await;
    assert_eq!(fake.requests()[1].prompt, vec![72, 105]);

    // Batch: one choice per prompt × n, prompt tokens summed once per prompt.
    let r = post(
        &app,
        COMPL,
        json!({"prompt": ["a", "bc"], "n": 2, "seed": 0}),
    )
    .await;
    let v = r.json();
    let idx: Vec<u64> = v["choices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["index"].as_u64().unwrap())
        .collect();
    assert_eq!(idx, vec![0, 1, 2, 3]);
    assert_eq!(v["usage"]["prompt_tokens"], 2 + 3);
    assert_eq!(v["usage"]["completion_tokens"], 12);
    let reqs = fake.requests();
    assert_eq!(reqs[2].prompt, reqs[3].prompt);
    assert_eq!(reqs[4].prompt, vec![BOS, b'b' as u32, b'c' as u32]);
    let seeds: Vec<u64> = reqs[2..].iter().map(|r| r.sampler.seed).collect();
    assert_eq!(seeds, vec![0, 1, 2, 3]);

    // Streamed.
    let r = post(
        &app,
        COMPL,
        json!({"prompt": "Hi", "stream": true, "stream_options": {"include_usage": true}}),
    )
    .await;
    let lines = r.sse();
    assert_eq!(lines.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = lines[..lines.len() - 1]
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(chunks.iter().all(|c| c["object"] == "text_completion"));
    let n = chunks.len();
    let text: String = chunks[..n - 2]
        .iter()
        .map(|c| c["choices"][0]["text"].as_str().unwrap())
        .collect();
    assert_eq!(text, "Hello world!");
    assert_eq!(chunks[n - 2]["choices"][0]["finish_reason"], "stop");
    assert_eq!(chunks[n - 1]["choices"], json!([]));
    assert_eq!(chunks[n - 1]["usage"]["total_tokens"], 6);
}

#[tokio::test]
async fn logprobs_shapes() {
    let fake = Fake::new();
    let app = app(&fake);
    let r = post(
        &app,
        CHAT,
        chat_body(json!({"logprobs": true, "top_logprobs": 2})),
    )
    .await;
    let v = r.json();
    assert_eq!(fake.requests()[0].logprobs, Some(2));
    let content = v["choices"][0]["logprobs"]["content"].as_array().unwrap();
    assert_eq!(content.len(), 3);
    assert_eq!(content[0]["token"], "Hello");
    assert_eq!(content[0]["logprob"], -0.25);
    assert_eq!(content[0]["bytes"], json!(b"Hello".to_vec()));
    let top = content[1]["top_logprobs"].as_array().unwrap();
    assert_eq!(top.len(), 2);
    assert_eq!(top[0]["token"], " world");
    assert!(top[1]["bytes"].is_array() && top[1]["logprob"].is_number());

    // logprobs without top_logprobs: the chosen token only.
    post(&app, CHAT, chat_body(json!({"logprobs": true}))).await;
    assert_eq!(fake.requests()[1].logprobs, Some(0));

    // Streamed chat: logprobs on the content chunks.
    let r = post(
        &app,
        CHAT,
        chat_body(json!({"logprobs": true, "top_logprobs": 1, "stream": true})),
    )
    .await;
    let lines = r.sse();
    let c: Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!(c["choices"][0]["logprobs"]["content"][0]["token"], "Hello");

    // Legacy completions format.
    let r = post(&app, COMPL, json!({"prompt": "x", "logprobs": 2})).await;
    let lp = &r.json()["choices"][0]["logprobs"];
    assert_eq!(lp["tokens"], json!(["Hello", " world", "!"]));
    assert_eq!(lp["token_logprobs"], json!([-0.25, -0.25, -0.25]));
    assert_eq!(lp["text_offset"], json!([0, 5, 11]));
    assert_eq!(lp["top_logprobs"][0]["Hello"], -0.25);
    assert_eq!(lp["top_logprobs"][0]["alt1"], -2.0);

    // Streamed legacy: text_offset continues across chunks.
    let r = post(
        &app,
        COMPL,
        json!({"prompt": "x", "logprobs": 1, "stream": true}),
    )
    .await;
    let lines = r.sse();
    let offsets: Vec<Value> = lines[..3]
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["choices"][0]["logprobs"]["text_offset"][0]
                .clone()
        })
        .collect();
    assert_eq!(offsets, vec![json!(0), json!(5), json!(11)]);
}

#[tokio::test]
async fn metrics_count_requests() {
    let app = app(&Fake::new());
    post(&app, CHAT, chat_body(json!({}))).await;
    post(&app, CHAT, chat_body(json!({"n": 0}))).await;
    get(&app, "/nowhere").await;
    let r = get(&app, "/metrics").await;
    assert_eq!(r.status, 200);
    assert!(r.headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let t = r.text();
    for want in [
        "nao_requests_total{endpoint=\"/v1/chat/completions\",status=\"200\"} 1\n",
        "nao_requests_total{endpoint=\"/v1/chat/completions\",status=\"400\"} 1\n",
        "nao_requests_total{endpoint=\"other\",status=\"404\"} 1\n",
        "# TYPE nao_requests_total counter\n",
        "nao_prompt_tokens_total 42\n",
        "nao_generation_tokens_total 17\n",
        "nao_requests_waiting 2\n",
        "nao_requests_running 1\n",
        "nao_kv_blocks_used 30\n",
        "nao_kv_blocks_free 70\n",
        "nao_prefix_cache_hit_tokens_total 7\n",
        "# TYPE nao_time_to_first_token_seconds histogram\n",
        "nao_time_to_first_token_seconds_count 1\n",
        "nao_time_per_output_token_seconds_count 1\n",
        "nao_time_to_first_token_seconds_bucket{le=\"+Inf\"} 1\n",
    ] {
        assert!(t.contains(want), "missing {want:?} in\n{t}");
    }
}

// ---------------------------------------------------------------------------------
// Real sockets: disconnects and shutdown

/// Starts `serve` on a loopback port; returns the address, the shutdown trigger and the
/// server task.
async fn start(
    fake: &Arc<Fake>,
    cfg: ServerConfig,
) -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let engine: Arc<dyn nao_engine::api::EngineHandle> = fake.clone();
    let task = tokio::spawn(serve(listener, engine, cfg, async move {
        let _ = rx.await;
    }));
    (addr, tx, task)
}

/// Sends one POST over a fresh connection; returns the open stream.
async fn raw_post(addr: std::net::SocketAddr, path: &str, body: &str) -> tokio::net::TcpStream {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    s
}

/// Reads until `needle` appears (or panics after 5 s); returns what was read.
async fn read_until(s: &mut tokio::net::TcpStream, needle: &str) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(5);
    while !String::from_utf8_lossy(&got).contains(needle) {
        let n = tokio::time::timeout_at(deadline.into(), s.read(&mut buf))
            .await
            .expect("timed out waiting for data")
            .unwrap();
        assert!(
            n > 0,
            "connection closed before {needle:?}: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_cancels_the_request() {
    let fake = Fake::new();
    let (addr, _stop, _task) = start(&fake, ServerConfig::default()).await;
    let mut s = raw_post(addr, COMPL, r#"{"prompt": "SLOW", "stream": true}"#).await;
    let head = read_until(&mut s, "\"text\":\"x\"").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head
        .to_ascii_lowercase()
        .contains("content-type: text/event-stream"));
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_ends_open_streams() {
    let fake = Fake::new();
    let cfg = ServerConfig {
        shutdown_drain: Duration::from_millis(300),
        ..ServerConfig::default()
    };
    let (addr, stop, task) = start(&fake, cfg).await;
    let mut s = raw_post(
        addr,
        CHAT,
        &json!({"messages": [{"role": "user", "content": "SLOW"}], "stream": true}).to_string(),
    )
    .await;
    read_until(&mut s, "\"content\":\"x\"").await;

    let t0 = Instant::now();
    stop.send(()).unwrap();
    // The stream goes on during the drain, then ends with an error line and [DONE].
    let rest = read_until(&mut s, "data: [DONE]").await;
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(250),
        "ended before the drain: {waited:?}"
    );
    assert!(rest.contains("\"type\":\"server_error\""), "{rest}");
    assert!(rest.contains("shutting down"), "{rest}");
    let res = tokio::time::timeout(Duration::from_secs(3), task)
        .await
        .expect("serve did not return after the drain")
        .unwrap();
    assert!(res.is_ok());
    assert!(t0.elapsed() < Duration::from_millis(300) + Duration::from_millis(1500));
    // The engine request is released too.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(fake.dropped.load(Ordering::SeqCst));
    // No longer accepting.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_returns_at_once_when_idle() {
    let fake = Fake::new();
    let (addr, stop, task) = start(&fake, ServerConfig::default()).await;
    let mut s = raw_post(addr, COMPL, r#"{"prompt": "hi"}"#).await;
    let r = read_until(&mut s, "Hello world!").await;
    assert!(r.starts_with("HTTP/1.1 200"));
    drop(s);
    let t0 = Instant::now();
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(t0.elapsed() < Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_cancels_a_non_streamed_request() {
    let fake = Fake::new();
    let (addr, _stop, _task) = start(&fake, ServerConfig::default()).await;
    let s = raw_post(addr, COMPL, r#"{"prompt": "SLOW"}"#).await;
    // Wait until the engine has the request, then leave.
    let t0 = Instant::now();
    while fake.requests().is_empty() {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "request never submitted"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
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
    // The abandoned request is still counted (as 499, never sent).
    let mut m = tokio::net::TcpStream::connect(addr).await.unwrap();
    m.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    read_until(
        &mut m,
        "nao_requests_total{endpoint=\"/v1/completions\",status=\"499\"} 1\n",
    )
    .await;
}
