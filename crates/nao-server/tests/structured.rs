//! Structured output through the server against the fake engine: `response_format`
//! (`json_object`, `json_schema`) and llama.cpp's `json_schema` / `grammar` fields reach the
//! engine as the right [`Grammar`] on both endpoints, bad ones are 400s naming the field,
//! and a schema the engine cannot compile is a 400 that names the unsupported keyword.

mod fake;

use axum::body::Body;
use axum::http::{header, Request};
use axum::Router;
use fake::Fake;
use nao_engine::api::Grammar;
use nao_server::{router, ServerConfig};
use serde_json::{json, Value};
use tower::ServiceExt;

const CHAT: &str = "/v1/chat/completions";
const COMPL: &str = "/v1/completions";

async fn post(app: &Router, path: &str, body: Value) -> (u16, Value) {
    let req = Request::post(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, serde_json::from_slice(&bytes).unwrap())
}

fn body(path: &str, extra: Value) -> Value {
    let mut v = if path == CHAT {
        json!({"messages": [{"role": "user", "content": "hi"}]})
    } else {
        json!({"prompt": "hi"})
    };
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    v
}

#[tokio::test]
async fn response_formats_reach_the_engine_as_grammars() {
    let schema = json!({
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"]
    });
    let cases = [
        (json!({}), None),
        (json!({"response_format": {"type": "text"}}), None),
        (
            json!({"response_format": {"type": "json_object"}}),
            Some(Grammar::JsonObject),
        ),
        (
            json!({"response_format": {"type": "json_schema",
                "json_schema": {"name": "person", "schema": schema, "strict": true}}}),
            Some(Grammar::JsonSchema(schema.clone())),
        ),
        (
            json!({"json_schema": schema}),
            Some(Grammar::JsonSchema(schema.clone())),
        ),
        (
            json!({"grammar": "%llguidance {}\nstart: \"yes\" | \"no\""}),
            Some(Grammar::Lark(
                "%llguidance {}\nstart: \"yes\" | \"no\"".into(),
            )),
        ),
        // llama.cpp's GBNF, translated to the same Lark.
        (
            json!({"grammar": "root ::= answer\nanswer ::= \"yes\" | \"no\""}),
            Some(Grammar::Lark(
                "%llguidance {}\n\nstart: r1_answer\nr1_answer: \"yes\" | \"no\"\n".into(),
            )),
        ),
    ];
    for path in [CHAT, COMPL] {
        for (extra, want) in &cases {
            let fake = Fake::new();
            let app = router(fake.clone(), ServerConfig::default());
            let (status, v) = post(&app, path, body(path, extra.clone())).await;
            assert_eq!(status, 200, "{path} {extra}: {v}");
            let reqs = fake.requests();
            assert_eq!(reqs.len(), 1);
            assert_eq!(&reqs[0].constraint, want, "{path} {extra}");
        }
    }
    // Every choice of an `n > 1` request carries the grammar.
    let fake = Fake::new();
    let app = router(fake.clone(), ServerConfig::default());
    let extra = json!({"n": 2, "response_format": {"type": "json_object"}});
    let (status, _) = post(&app, CHAT, body(CHAT, extra)).await;
    assert_eq!(status, 200);
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 2);
    assert!(reqs
        .iter()
        .all(|r| r.constraint == Some(Grammar::JsonObject)));
}

#[tokio::test]
async fn bad_response_formats_are_400() {
    let cases = [
        (
            json!({"response_format": {"type": "xml"}}),
            "response_format.type",
        ),
        (json!({"response_format": "json"}), "response_format"),
        (
            json!({"response_format": {"type": "json_schema"}}),
            "response_format.json_schema",
        ),
        (
            json!({"response_format": {"type": "json_schema",
                "json_schema": {"name": "x", "schema": 5}}}),
            "response_format.json_schema.schema",
        ),
        (
            json!({"grammar": "root ::= [a-z]+ undefined-rule"}),
            "grammar",
        ),
        (
            json!({"json_schema": {}, "grammar": "%llguidance {}\nstart: \"a\""}),
            "grammar",
        ),
    ];
    for path in [CHAT, COMPL] {
        for (extra, param) in &cases {
            let fake = Fake::new();
            let app = router(fake.clone(), ServerConfig::default());
            let (status, v) = post(&app, path, body(path, extra.clone())).await;
            assert_eq!(status, 400, "{path} {extra}: {v}");
            assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
            assert_eq!(v["error"]["param"], *param, "{path} {extra}: {v}");
            assert!(
                fake.requests().is_empty(),
                "{path} {extra} reached the engine"
            );
        }
    }
}

#[tokio::test]
async fn uncompilable_schema_is_400_naming_the_keyword() {
    let fake = Fake::new();
    let app = router(fake.clone(), ServerConfig::default());
    let schema = json!({"type": "array", "uniqueItems": true});
    for path in [CHAT, COMPL] {
        let extra = json!({"response_format": {"type": "json_schema",
            "json_schema": {"name": "x", "schema": schema}}});
        let (status, v) = post(&app, path, body(path, extra)).await;
        assert_eq!(status, 400, "{v}");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["code"], "invalid_grammar");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains("uniqueItems"), "{msg}");
    }
}
