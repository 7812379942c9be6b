//! The prompt-carrying fields: chat `messages` (and `tools`, read in `tools.rs`) and
//! completions `prompt`.
//!
//! Messages are checked before the chat template sees them (roles, text-only content)
//! so a template never has to cope with shapes it was not written for; completions
//! prompts may be text or token ids, the ids checked against the vocabulary here.

use super::request::{parse_params, type_name, wrong_type, Fields, GenParams};
use super::tools::{check_message_calls, parse_tools, ToolsRequest};
use crate::error::ApiError;
use crate::ServerConfig;
use nao_engine::api::ModelInfo;
use serde_json::{Map, Value};

/// Roles the chat endpoint accepts (`developer` is OpenAI's newer name for `system`).
const ROLES: [&str; 5] = ["system", "developer", "user", "assistant", "tool"];

/// OpenAI caps legacy completions `logprobs` at 5.
const MAX_LEGACY_LOGPROBS: usize = 5;

#[derive(Debug, Clone)]
pub struct ChatRequest {
    /// The messages with `null` members removed, ready for `render_chat`.
    pub messages: Value,
    /// `tools`, `tool_choice`, `parallel_tool_calls`, validated.
    pub tools: ToolsRequest,
    pub params: GenParams,
}

/// One completions prompt: text still to tokenize, or token ids already checked against
/// the vocabulary.
#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    Text(String),
    Tokens(Vec<u32>),
}

#[derive(Debug, Clone)]
pub struct CompletionRequest {
    pub prompts: Vec<Prompt>,
    pub params: GenParams,
}

pub fn parse_chat(
    obj: &Map<String, Value>,
    cfg: &ServerConfig,
    info: &ModelInfo,
) -> Result<ChatRequest, ApiError> {
    let f = Fields(obj);
    let messages = match f.get("messages") {
        None => return Err(ApiError::bad("messages", "messages is required")),
        Some(Value::Array(list)) => parse_messages(list)?,
        Some(v) => return Err(wrong_type("messages", "an array", v)),
    };
    let tools = parse_tools(&f)?;
    let top = f.uint_in("top_logprobs", 0, cfg.max_top_logprobs as u64)?;
    let logprobs = match (f.bool("logprobs")?, top) {
        (Some(true), k) => Some(k.unwrap_or(0)),
        (_, Some(k)) if k > 0 => {
            return Err(ApiError::bad(
                "top_logprobs",
                "logprobs must be set to true when top_logprobs is used",
            ))
        }
        _ => None,
    };
    let max_tokens = match f.get("max_completion_tokens") {
        Some(_) => "max_completion_tokens",
        None => "max_tokens",
    };
    let params = parse_params(&f, cfg, info, max_tokens, logprobs)?;
    Ok(ChatRequest {
        messages,
        tools,
        params,
    })
}

/// Checks roles and content, and drops `null` members so templates see them as absent.
fn parse_messages(list: &[Value]) -> Result<Value, ApiError> {
    if list.is_empty() {
        return Err(ApiError::bad("messages", "messages must not be empty"));
    }
    let mut out = Vec::with_capacity(list.len());
    for (i, m) in list.iter().enumerate() {
        let Value::Object(m) = m else {
            return Err(ApiError::bad(
                format!("messages[{i}]"),
                format!("messages[{i}] must be an object, got {}", type_name(m)),
            ));
        };
        let m: Map<String, Value> = m
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let role = match m.get("role") {
            Some(Value::String(r)) if ROLES.contains(&r.as_str()) => r.as_str(),
            Some(Value::String(r)) => {
                return Err(ApiError::bad(
                    format!("messages[{i}].role"),
                    format!(
                        "messages[{i}].role `{r}` is not one of {}",
                        ROLES.join(", ")
                    ),
                ))
            }
            Some(v) => return Err(wrong_type(&format!("messages[{i}].role"), "a string", v)),
            None => {
                return Err(ApiError::bad(
                    format!("messages[{i}].role"),
                    format!("messages[{i}].role is required"),
                ))
            }
        };
        match m.get("content") {
            Some(Value::String(_)) => {}
            Some(Value::Array(parts)) => check_parts(i, parts)?,
            Some(v) => {
                return Err(wrong_type(
                    &format!("messages[{i}].content"),
                    "a string or an array of text parts",
                    v,
                ))
            }
            // An assistant turn that only called tools has no content.
            None if role == "assistant" => {}
            None => {
                return Err(ApiError::bad(
                    format!("messages[{i}].content"),
                    format!("messages[{i}].content is required"),
                ))
            }
        }
        if let Some(calls) = m.get("tool_calls") {
            check_message_calls(i, calls)?;
        }
        out.push(Value::Object(m));
    }
    Ok(Value::Array(out))
}

/// Only text parts: this server serves text models, and dropping an image silently would
/// answer a question the user did not ask.
fn check_parts(i: usize, parts: &[Value]) -> Result<(), ApiError> {
    for (j, p) in parts.iter().enumerate() {
        let param = format!("messages[{i}].content[{j}]");
        let kind = p.get("type").and_then(Value::as_str);
        let text = p.get("text").and_then(Value::as_str);
        match (kind, text) {
            (Some("text"), Some(_)) => {}
            (Some("text"), None) => {
                return Err(ApiError::bad(
                    format!("{param}.text"),
                    format!("{param}.text must be a string"),
                ))
            }
            (Some(other), _) => {
                return Err(ApiError::bad(
                    format!("{param}.type"),
                    format!("{param}.type `{other}` is not supported; only text parts are"),
                ))
            }
            (None, _) => {
                return Err(ApiError::bad(
                    format!("{param}.type"),
                    format!("{param} must be an object with a string `type`"),
                ))
            }
        }
    }
    Ok(())
}

pub fn parse_completion(
    obj: &Map<String, Value>,
    cfg: &ServerConfig,
    info: &ModelInfo,
) -> Result<CompletionRequest, ApiError> {
    let f = Fields(obj);
    let prompts = parse_prompt(f.get("prompt"), cfg, info)?;
    let legacy = cfg.max_top_logprobs.min(MAX_LEGACY_LOGPROBS) as u64;
    let logprobs = f.uint_in("logprobs", 0, legacy)?;
    if f.bool("echo")? == Some(true) {
        return Err(ApiError::bad("echo", "echo is not supported"));
    }
    let params = parse_params(&f, cfg, info, "max_tokens", logprobs)?;
    Ok(CompletionRequest { prompts, params })
}

/// `prompt`: a string, a list of strings, a list of token ids, or a list of lists of
/// token ids. Each element of a batch becomes its own prompt.
fn parse_prompt(
    v: Option<&Value>,
    cfg: &ServerConfig,
    info: &ModelInfo,
) -> Result<Vec<Prompt>, ApiError> {
    let bad = |m: String| ApiError::bad("prompt", m);
    let list = match v {
        None => return Err(bad("prompt is required".into())),
        Some(Value::String(s)) => return Ok(vec![Prompt::Text(s.clone())]),
        Some(Value::Array(list)) => list,
        Some(v) => {
            return Err(bad(format!(
                "prompt must be a string or an array, got {}",
                type_name(v)
            )))
        }
    };
    match list.first() {
        None => Err(bad("prompt must not be empty".into())),
        Some(Value::Number(_)) => Ok(vec![Prompt::Tokens(token_ids(list, "prompt", info)?)]),
        Some(_) => {
            if list.len() > cfg.max_prompts {
                return Err(bad(format!(
                    "at most {} prompts per request, got {}",
                    cfg.max_prompts,
                    list.len()
                )));
            }
            list.iter()
                .enumerate()
                .map(|(i, p)| match p {
                    Value::String(s) => Ok(Prompt::Text(s.clone())),
                    Value::Array(ids) if !ids.is_empty() => Ok(Prompt::Tokens(token_ids(
                        ids,
                        &format!("prompt[{i}]"),
                        info,
                    )?)),
                    Value::Array(_) => Err(bad(format!("prompt[{i}] must not be empty"))),
                    other => Err(bad(format!(
                        "prompt[{i}] must be a string or an array of token ids, got {}",
                        type_name(other)
                    ))),
                })
                .collect()
        }
    }
}

fn token_ids(list: &[Value], what: &str, info: &ModelInfo) -> Result<Vec<u32>, ApiError> {
    list.iter()
        .enumerate()
        .map(|(i, v)| match v.as_i64() {
            Some(id) if id >= 0 && (id as u64) < info.n_vocab as u64 => Ok(id as u32),
            Some(id) => Err(ApiError::bad(
                "prompt",
                format!(
                    "{what}[{i}]: token id {id} is outside the vocabulary (size {})",
                    info.n_vocab
                ),
            )),
            None => Err(ApiError::bad(
                "prompt",
                format!("{what}[{i}] must be an integer token id, got {v}"),
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn info() -> ModelInfo {
        ModelInfo {
            id: "m".into(),
            n_ctx: 100,
            n_vocab: 50,
            created: 0,
            details: Default::default(),
        }
    }

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    fn chat(v: Value) -> Result<ChatRequest, ApiError> {
        parse_chat(&obj(v), &ServerConfig::default(), &info())
    }

    fn param_of(e: ApiError) -> Option<String> {
        match e {
            ApiError::BadRequest { param, .. } => param,
            other => panic!("not a 400: {other:?}"),
        }
    }

    #[test]
    fn defaults_follow_openai() {
        let r = chat(json!({"messages": [{"role": "user", "content": "hi"}]})).unwrap();
        let s = &r.params.sampler;
        assert_eq!(
            (s.temperature, s.top_p, s.top_k, s.min_p),
            (1.0, 1.0, 0, 0.0)
        );
        assert_eq!(r.params.max_tokens, 100, "capped by n_ctx");
        assert_eq!(r.params.n, 1);
        assert!(r.params.stop_at_eog);
    }

    #[test]
    fn nulls_are_absent_and_stripped_from_messages() {
        let r = chat(
            json!({"messages": [{"role": "user", "content": "hi", "name": null}],
            "temperature": null, "stop": null, "n": null, "seed": 7}),
        )
        .unwrap();
        assert_eq!(r.messages, json!([{"role": "user", "content": "hi"}]));
        assert_eq!(r.params.sampler.seed, 7);
        assert_eq!(r.params.sampler.temperature, 1.0);
    }

    #[test]
    fn bad_fields_name_their_param() {
        let m = json!([{"role": "user", "content": "x"}]);
        let cases = [
            (json!({"messages": m, "temperature": 3}), "temperature"),
            (json!({"messages": m, "top_p": -0.1}), "top_p"),
            (json!({"messages": m, "n": 0}), "n"),
            (json!({"messages": m, "max_tokens": 101}), "max_tokens"),
            (
                json!({"messages": m, "max_completion_tokens": 0}),
                "max_completion_tokens",
            ),
            (json!({"messages": m, "stop": [1]}), "stop"),
            (json!({"messages": m, "seed": "x"}), "seed"),
            (
                json!({"messages": m, "logit_bias": {"49": 101}}),
                "logit_bias",
            ),
            (
                json!({"messages": m, "presence_penalty": 2.5}),
                "presence_penalty",
            ),
            (
                json!({"messages": [{"role": "user"}]}),
                "messages[0].content",
            ),
            (json!({"messages": [{"content": "x"}]}), "messages[0].role"),
            (json!({"messages": [1]}), "messages[0]"),
        ];
        for (body, want) in cases {
            let e = chat(body.clone())
                .err()
                .unwrap_or_else(|| panic!("{body} passed"));
            assert_eq!(param_of(e).as_deref(), Some(want), "{body}");
        }
    }

    #[test]
    fn prompt_forms() {
        let cfg = ServerConfig::default();
        let p = |v: Value| parse_prompt(Some(&v), &cfg, &info());
        assert_eq!(p(json!("a")).unwrap(), vec![Prompt::Text("a".into())]);
        assert_eq!(p(json!([1, 2])).unwrap(), vec![Prompt::Tokens(vec![1, 2])]);
        assert_eq!(
            p(json!([[1], [2, 3]])).unwrap(),
            vec![Prompt::Tokens(vec![1]), Prompt::Tokens(vec![2, 3])]
        );
        assert_eq!(p(json!(["a", "b"])).unwrap().len(), 2);
        assert!(p(json!([-1])).is_err());
        assert!(p(json!([50])).is_err());
        assert!(p(json!([1.5])).is_err());
        assert!(p(json!([])).is_err());
        assert!(p(json!([[]])).is_err());
        assert!(p(json!({})).is_err());
    }
}
