//! Tool calling and reasoning through the server against the fake engine: `tools` /
//! `tool_choice` validation (400s naming the field), what reaches the template and the
//! engine (tools, the call-forcing grammar), the non-streamed and streamed shapes of
//! parsed calls, malformed calls coming back as content with `finish_reason: "stop"`, and
//! `<think>` text split into `reasoning_content`.
//!
//! The fake engine plays scripted replies (`REPLY:<key>`, see fake/mod.rs) split in the
//! middle of markers and JSON, as real tokens split them.

mod fake;

use axum::body::Body;
use axum::http::{header, Request};
use axum::Router;
use fake::http::send;
use fake::Fake;
use nao_engine::api::Grammar;
use nao_engine::constraint::{ConstraintFactory, VocabEnv, VocabSpec};
use nao_server::{router, ReasoningFormat, ServerConfig};
use serde_json::{json, Value};
use std::sync::Arc;

const CHAT: &str = "/v1/chat/completions";

fn weather_tools() -> Value {
    json!([
        {"type": "function", "function": {
            "name": "get_weather",
            "description": "Current weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"location": {"type": "string"}},
                "required": ["location"],
                "additionalProperties": false
            }
        }},
        {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}
    ])
}

fn app_with(fake: &Arc<Fake>, reasoning: ReasoningFormat) -> Router {
    router(
        fake.clone(),
        ServerConfig {
            reasoning_format: reasoning,
            ..ServerConfig::default()
        },
    )
}

async fn post(app: &Router, body: Value) -> (u16, Value, String) {
    let req = Request::post(CHAT)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let r = send(app, req).await;
    let text = r.text();
    let v = if text.starts_with("data: ") {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::Null)
    };
    (r.status.as_u16(), v, text)
}

/// A chat body whose user message picks the fake's scripted reply.
fn ask(reply: &str, extra: Value) -> Value {
    let mut v = json!({"messages": [{"role": "user", "content": format!("REPLY:{reply}")}]});
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    v
}

/// The `data:` payloads of an SSE body, without `[DONE]` (which must end it).
fn sse(text: &str) -> Vec<Value> {
    let frames: Vec<&str> = text.split("\n\n").filter(|f| !f.is_empty()).collect();
    assert_eq!(frames.last(), Some(&"data: [DONE]"), "{text}");
    frames[..frames.len() - 1]
        .iter()
        .map(|f| serde_json::from_str(f.strip_prefix("data: ").unwrap()).unwrap())
        .collect()
}

#[tokio::test]
async fn bad_tool_fields_are_400s_naming_the_field() {
    let fake = Fake::new();
    let app = app_with(&fake, ReasoningFormat::DeepSeek);
    let f = |name: &str| json!({"type": "function", "function": {"name": name}});
    let cases = [
        (json!({"tools": "get_weather"}), "tools"),
        (json!({"tools": [1]}), "tools[0]"),
        (
            json!({"tools": [{"type": "function"}]}),
            "tools[0].function",
        ),
        (
            json!({"tools": [{"function": {"name": "a"}}]}),
            "tools[0].type",
        ),
        (
            json!({"tools": [{"type": "retrieval", "function": {"name": "a"}}]}),
            "tools[0].type",
        ),
        (
            json!({"tools": [{"type": "function", "function": {}}]}),
            "tools[0].function.name",
        ),
        (json!({"tools": [f("has space")]}), "tools[0].function.name"),
        (json!({"tools": [f("a"), f("a")]}), "tools[1].function.name"),
        (
            json!({"tools": [{"type": "function", "function": {"name": "a", "parameters": "x"}}]}),
            "tools[0].function.parameters",
        ),
        (
            json!({"tools": [f("a")], "tool_choice": "sometimes"}),
            "tool_choice",
        ),
        (json!({"tools": [f("a")], "tool_choice": 3}), "tool_choice"),
        (
            json!({"tools": [f("a")], "tool_choice": {"type": "function", "function": {"name": "b"}}}),
            "tool_choice.function.name",
        ),
        (json!({"tool_choice": "required"}), "tool_choice"),
        (
            json!({"tools": [f("a")], "parallel_tool_calls": "yes"}),
            "parallel_tool_calls",
        ),
        (
            json!({"tools": [f("a")], "tool_choice": "required",
                   "response_format": {"type": "json_object"}}),
            "tool_choice",
        ),
    ];
    for (extra, param) in cases {
        let (status, v, _) = post(&app, ask("call", extra.clone())).await;
        assert_eq!(status, 400, "{extra}: {v}");
        assert_eq!(v["error"]["param"], param, "{extra}: {v}");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert!(v["error"]["code"].is_null() || v["error"]["code"].is_string());
    }
    // Assistant tool calls in the history are checked too.
    let bad_history = json!({"messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "tool_calls": {"id": "x"}},
    ]});
    let (status, v, _) = post(&app, bad_history).await;
    assert_eq!(status, 400);
    assert_eq!(v["error"]["param"], "messages[1].tool_calls");
    assert!(fake.requests().is_empty(), "nothing reached the engine");
}

#[tokio::test]
async fn tools_reach_the_template_and_a_forced_call_becomes_a_grammar() {
    let fake = Fake::new();
    let app = app_with(&fake, ReasoningFormat::DeepSeek);
    let history = json!({"messages": [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"location\": \"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ], "tools": weather_tools()});
    let (status, v, _) = post(&app, history).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(fake.tools.lock().unwrap()[0], Some(weather_tools()));
    assert!(
        fake.requests()[0].constraint.is_none(),
        "auto is not forced"
    );

    // tool_choice none: the template does not see the tools.
    let (status, _, _) = post(
        &app,
        ask(
            "call",
            json!({"tools": weather_tools(), "tool_choice": "none"}),
        ),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(fake.tools.lock().unwrap()[1], None);

    for (choice, parallel) in [
        (json!("required"), true),
        (json!("required"), false),
        (
            json!({"type": "function", "function": {"name": "get_time"}}),
            true,
        ),
    ] {
        let body = ask(
            "call",
            json!({"tools": weather_tools(), "tool_choice": choice, "parallel_tool_calls": parallel}),
        );
        let (status, v, _) = post(&app, body).await;
        assert_eq!(status, 200, "{v}");
        let Some(Grammar::Lark(lark)) = fake.requests().last().unwrap().constraint.clone() else {
            panic!("{choice}: no Lark grammar")
        };
        check_grammar(&lark, &choice, parallel);
    }
}

/// Runs the grammar over a byte vocabulary: the valid calls it must accept and the
/// outputs it must refuse, as the real engine's matcher would.
fn check_grammar(lark: &str, choice: &Value, parallel: bool) {
    let mut tokens: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
    tokens.push(b"<|im_end|>".to_vec());
    let env = VocabEnv::from_spec(&VocabSpec {
        tokens,
        special: vec![],
        eog: vec![256],
    })
    .unwrap();
    let factory = ConstraintFactory::new(env).unwrap();
    let accepts = |text: &str| -> bool {
        let mut c = factory
            .compile(&Grammar::Lark(lark.to_string()))
            .unwrap_or_else(|e| panic!("{e}\n{lark}"));
        for b in text.bytes() {
            if c.is_stopped() {
                // Complete, and nothing may follow.
                return false;
            }
            let mask = c.mask().unwrap();
            if !mask.is_allowed(b as u32) {
                return false;
            }
            c.commit(b as u32).unwrap();
        }
        c.is_accepting()
    };
    let weather = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"location\": \"Paris\"}}\n</tool_call>";
    let time = "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>";
    let named = choice.is_object();
    assert!(accepts(time), "{lark}");
    assert_eq!(accepts(weather), !named, "{lark}");
    assert_eq!(accepts(&format!("{time}\n{time}")), parallel, "{lark}");
    // Arguments must follow the schema; no prose instead of a call; no unknown function.
    assert!(!accepts("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>"));
    assert!(!accepts("Sure! "));
    assert!(!accepts(
        "<tool_call>\n{\"name\": \"rm\", \"arguments\": {}}\n</tool_call>"
    ));
}

#[tokio::test]
async fn calls_come_back_as_tool_calls() {
    let fake = Fake::new();
    let app = app_with(&fake, ReasoningFormat::DeepSeek);
    let (status, v, _) = post(&app, ask("call", json!({"tools": weather_tools()}))).await;
    assert_eq!(status, 200, "{v}");
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    let msg = &choice["message"];
    assert_eq!(msg["role"], "assistant");
    assert!(msg["content"].is_null(), "{msg}");
    let calls = msg["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1);
    let id = calls[0]["id"].as_str().unwrap();
    assert!(id.starts_with("call_") && id.len() > 10, "{id}");
    assert_eq!(calls[0]["type"], "function");
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    let args: Value =
        serde_json::from_str(calls[0]["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"location": "Paris"}));

    let (_, v, _) = post(
        &app,
        ask("text_then_calls", json!({"tools": weather_tools()})),
    )
    .await;
    let msg = &v["choices"][0]["message"];
    assert_eq!(msg["content"], "Checking both.");
    let names: Vec<&str> = msg["tool_calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["get_weather", "get_time"]);
    assert_ne!(msg["tool_calls"][0]["id"], msg["tool_calls"][1]["id"]);
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
}

#[tokio::test]
async fn streamed_calls_follow_the_openai_delta_shape() {
    let fake = Fake::new();
    let app = app_with(&fake, ReasoningFormat::DeepSeek);
    let body = ask(
        "text_then_calls",
        json!({"tools": weather_tools(), "stream": true}),
    );
    let (status, _, text) = post(&app, body).await;
    assert_eq!(status, 200);
    let chunks = sse(&text);
    let mut content = String::new();
    // index -> (id, name, arguments)
    let mut calls: Vec<(String, String, String)> = Vec::new();
    let mut finish = Vec::new();
    for c in &chunks {
        let ch = &c["choices"][0];
        finish.push(ch["finish_reason"].clone());
        let d = &ch["delta"];
        if let Some(s) = d["content"].as_str() {
            assert!(!s.contains('<'), "markup leaked into content: {s:?}");
            content.push_str(s);
        }
        for tc in d["tool_calls"].as_array().into_iter().flatten() {
            let k = tc["index"].as_u64().unwrap() as usize;
            if k == calls.len() {
                // The first delta of a call: id, type and name once.
                assert_eq!(tc["type"], "function", "{tc}");
                calls.push((
                    tc["id"].as_str().unwrap().to_string(),
                    tc["function"]["name"].as_str().unwrap().to_string(),
                    tc["function"]["arguments"].as_str().unwrap().to_string(),
                ));
            } else {
                assert_eq!(k + 1, calls.len(), "{tc}");
                assert!(tc.get("id").is_none() && tc["function"].get("name").is_none());
                calls[k]
                    .2
                    .push_str(tc["function"]["arguments"].as_str().unwrap());
            }
        }
    }
    assert_eq!(content, "Checking both.");
    assert_eq!(calls.len(), 2);
    assert!(calls[0].0.starts_with("call_"));
    assert_eq!(calls[0].1, "get_weather");
    let args: Value = serde_json::from_str(&calls[0].2).unwrap();
    assert_eq!(args, json!({"location": "Paris"}));
    assert_eq!(
        (calls[1].1.as_str(), calls[1].2.as_str()),
        ("get_time", "{}")
    );
    assert_eq!(finish.last().unwrap(), "tool_calls");
    assert!(finish[..finish.len() - 1].iter().all(Value::is_null));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
}

#[tokio::test]
async fn streamed_arguments_come_in_pieces_that_join_to_the_non_streamed_string() {
    let fake = Fake::new();
    let app = app_with(&fake, ReasoningFormat::DeepSeek);
    let (_, v, _) = post(&app, ask("pieces_call", json!({"tools": weather_tools()}))).await;
    let whole = v["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(whole, r#"{"location":"Paris","unit":"celsius"}"#);
    let body = ask(
        "pieces_call",
        json!({"tools": weather_tools(), "stream": true}),
    );
    let (_, _, text) = post(&app, body).await;
    let chunks = sse(&text);
    let pieces: Vec<String> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].as_array())
        .flatten()
        .map(|e| e["function"]["arguments"].as_str().unwrap().to_string())
        .filter(|a| !a.is_empty())
        .collect();
    // One piece per engine event that carried argument text.
    assert_eq!(
        pieces,
        [r#"{"location":"Pa"#, r#"ris","unit":"#, r#""celsius"}"#]
    );
    assert_eq!(pieces.concat(), whole);
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "tool_calls"
    );
}

#[tokio::test]
async fn malformed_calls_are_content_with_stop() {
    let fake = Fake::new();
    let app = app_with(&fake, ReasoningFormat::DeepSeek);
    let raw = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"location\": oops}}\n</tool_call>";
    let (status, v, _) = post(&app, ask("bad_call", json!({"tools": weather_tools()}))).await;
    assert_eq!(status, 200);
    assert_eq!(v["choices"][0]["message"]["content"], raw);
    assert!(v["choices"][0]["message"].get("tool_calls").is_none());
    assert_eq!(v["choices"][0]["finish_reason"], "stop");

    let body = ask(
        "bad_call",
        json!({"tools": weather_tools(), "stream": true}),
    );
    let (_, _, text) = post(&app, body).await;
    let chunks = sse(&text);
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    // The same content as the non-streamed response. The call had been announced (its
    // name was complete and declared) before its arguments broke: that entry stays with
    // the valid JSON prefix sent so far, and the finish reason says no call was made.
    assert_eq!(content, raw);
    let entries: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].as_array())
        .flatten()
        .collect();
    assert_eq!(entries[0]["function"]["name"], "get_weather");
    let sent: String = entries
        .iter()
        .map(|e| e["function"]["arguments"].as_str().unwrap())
        .collect();
    assert_eq!(sent, "{\"location\":");
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "stop"
    );

    // Without tools nothing is parsed: the markup is the answer.
    let (_, v, _) = post(&app, ask("call", json!({}))).await;
    assert!(v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .starts_with("<tool_call>"));
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn think_blocks_become_reasoning_content() {
    let fake = Fake::new();
    let app = app_with(&fake, ReasoningFormat::DeepSeek);
    let (_, v, _) = post(&app, ask("think", json!({}))).await;
    let msg = &v["choices"][0]["message"];
    assert_eq!(msg["reasoning_content"], "The user wants a greeting.");
    assert_eq!(msg["content"], "Hello!");

    let (_, _, text) = post(&app, ask("think", json!({"stream": true}))).await;
    let (mut reasoning, mut content) = (String::new(), String::new());
    for c in sse(&text) {
        let d = &c["choices"][0]["delta"];
        reasoning.push_str(d["reasoning_content"].as_str().unwrap_or(""));
        content.push_str(d["content"].as_str().unwrap_or(""));
    }
    assert_eq!(reasoning, "The user wants a greeting.");
    assert_eq!(content, "Hello!");

    // Plain replies carry no reasoning field at all.
    let (_, v, _) = post(&app, ask("none", json!({}))).await;
    assert_eq!(v["choices"][0]["message"]["content"], "Hello world!");
    assert!(v["choices"][0]["message"]
        .get("reasoning_content")
        .is_none());

    // --reasoning-format none: the text stays as generated.
    let app = app_with(&fake, ReasoningFormat::None);
    let (_, v, _) = post(&app, ask("think", json!({}))).await;
    let msg = &v["choices"][0]["message"];
    assert_eq!(
        msg["content"],
        "<think>\nThe user wants a greeting.\n</think>\n\nHello!"
    );
    assert!(msg.get("reasoning_content").is_none());
}

#[tokio::test]
async fn ollama_think_returns_thinking() {
    let fake = Fake::new();
    fake.thinking_template
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let app = app_with(&fake, ReasoningFormat::DeepSeek);
    let req = |path: &str, b: Value| {
        Request::post(path)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(b.to_string()))
            .unwrap()
    };
    let chat = |stream: bool, think: Value| {
        json!({"model": "tiny-model", "stream": stream, "think": think,
               "messages": [{"role": "user", "content": "REPLY:think"}]})
    };
    let r = send(&app, req("/api/chat", chat(false, json!(true)))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["message"]["thinking"], "The user wants a greeting.");
    assert_eq!(v["message"]["content"], "Hello!");

    let r = send(&app, req("/api/chat", chat(true, json!("high")))).await;
    let lines: Vec<Value> = r
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let field = |k: &str| -> String {
        lines
            .iter()
            .map(|l| l["message"][k].as_str().unwrap_or(""))
            .collect()
    };
    assert_eq!(field("thinking"), "The user wants a greeting.");
    assert_eq!(field("content"), "Hello!");
    assert_eq!(lines.last().unwrap()["done"], true);

    // /api/generate puts it at the top level.
    let gen = json!({"model": "tiny-model", "stream": false, "think": true,
                     "prompt": "REPLY:think"});
    let v = send(&app, req("/api/generate", gen)).await.json();
    assert_eq!(v["thinking"], "The user wants a greeting.");
    assert_eq!(v["response"], "Hello!");

    // Without `think` the text stays as generated.
    let v = send(&app, req("/api/chat", chat(false, json!(false))))
        .await
        .json();
    assert!(v["message"].get("thinking").is_none());
    assert_eq!(
        v["message"]["content"],
        "<think>\nThe user wants a greeting.\n</think>\n\nHello!"
    );
}

#[tokio::test]
async fn ollama_chat_returns_calls_with_object_arguments() {
    let fake = Fake::new();
    let app = app_with(&fake, ReasoningFormat::DeepSeek);
    let body = |stream: bool| {
        json!({"model": "tiny-model", "stream": stream, "tools": weather_tools(),
               "messages": [{"role": "user", "content": "REPLY:text_then_calls"}]})
    };
    let req = |b: Value| {
        Request::post("/api/chat")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(b.to_string()))
            .unwrap()
    };
    let r = send(&app, req(body(false))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["message"]["content"], "Checking both.");
    let calls = v["message"]["tool_calls"].as_array().unwrap();
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    assert_eq!(
        calls[0]["function"]["arguments"],
        json!({"location": "Paris"})
    );
    assert_eq!(calls[1]["function"]["name"], "get_time");

    let r = send(&app, req(body(true))).await;
    let lines: Vec<Value> = r
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let content: String = lines
        .iter()
        .map(|l| l["message"]["content"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(content, "Checking both.");
    let names: Vec<&str> = lines
        .iter()
        .flat_map(|l| l["message"]["tool_calls"].as_array().into_iter().flatten())
        .map(|c| c["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["get_weather", "get_time"]);
    assert_eq!(lines.last().unwrap()["done"], true);
}
