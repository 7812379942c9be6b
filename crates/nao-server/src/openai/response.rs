//! Building OpenAI response objects and stream chunks.
//!
//! Field names, nesting and `null`s follow OpenAI's responses exactly, because SDKs
//! validate them: `logprobs: null` when not asked for, `finish_reason: null` on every
//! chunk but the last of a choice, `usage: null` on chunks when usage was requested.

use super::output::{call_json, Out};
use nao_engine::api::{Finish, TokenLogprob, Usage};
use nao_tokenizer::tools::ToolCall;
use serde_json::{json, Map, Value};

/// Which endpoint a response belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Chat,
    Completion,
}

/// What every object of one response shares.
#[derive(Debug, Clone)]
pub struct Meta {
    pub kind: Kind,
    pub id: String,
    pub created: u64,
    pub model: String,
    /// The request asked for logprobs (so `logprobs` is an object, not `null`).
    pub logprobs: bool,
    /// Streaming only: `stream_options.include_usage`.
    pub include_usage: bool,
}

/// One choice collected for a non-streamed response.
#[derive(Debug, Clone, Default)]
pub struct Choice {
    /// The content (chat) or text (completions).
    pub text: String,
    /// `<think>` text split off (chat, `--reasoning-format deepseek`).
    pub reasoning: String,
    /// Parsed tool calls with their ids.
    pub calls: Vec<(String, ToolCall)>,
    /// The call being read (its id and what has come of it).
    pending: Option<(String, ToolCall)>,
    pub logprobs: Vec<TokenLogprob>,
    pub finish: Option<Finish>,
}

impl Choice {
    /// Adds parsed pieces of the output.
    pub fn take(&mut self, outs: Vec<Out>) {
        for o in outs {
            match o {
                Out::Reasoning(r) => self.reasoning.push_str(&r),
                Out::Content(c) => self.text.push_str(&c),
                Out::CallStart(id, name) => {
                    let call = ToolCall {
                        name,
                        arguments: String::new(),
                    };
                    self.pending = Some((id, call));
                }
                Out::CallArgs(a) => {
                    if let Some((_, c)) = &mut self.pending {
                        c.arguments.push_str(&a);
                    }
                }
                Out::CallEnd => self.calls.extend(self.pending.take()),
                Out::CallAbort => self.pending = None,
            }
        }
    }

    /// The chat `message` object: `content` is `null` when the model only called tools;
    /// `tool_calls` and `reasoning_content` appear only when there are some.
    fn message(&self) -> Value {
        let mut m = json!({"role": "assistant", "content": self.text, "refusal": null});
        if !self.calls.is_empty() {
            if self.text.is_empty() {
                m["content"] = Value::Null;
            }
            let calls: Vec<Value> = self.calls.iter().map(|(id, c)| call_json(id, c)).collect();
            m["tool_calls"] = Value::Array(calls);
        }
        if !self.reasoning.is_empty() {
            m["reasoning_content"] = Value::from(self.reasoning.as_str());
        }
        m
    }
}

/// `usage` summed over choices, prompt tokens counted once per prompt (as OpenAI does
/// for `n > 1`).
pub fn usage_json(u: Usage) -> Value {
    json!({
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens + u.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
    })
}

/// Chat format: `{"content": [{token, logprob, bytes, top_logprobs: [...]}], "refusal": null}`.
pub fn chat_logprobs(lps: &[TokenLogprob]) -> Value {
    let content: Vec<Value> = lps
        .iter()
        .map(|t| {
            let top: Vec<Value> = t
                .top
                .iter()
                .map(|(tok, bytes, lp)| json!({"token": tok, "logprob": lp, "bytes": bytes}))
                .collect();
            json!({"token": t.token, "logprob": t.logprob, "bytes": t.bytes, "top_logprobs": top})
        })
        .collect();
    json!({"content": content, "refusal": null})
}

/// Legacy completions format: parallel lists, `top_logprobs` as one `{token: logprob}`
/// dict per position, `text_offset` in characters from the start of the completion.
/// `offset` is the number of characters already sent (for stream chunks); returns the
/// object and the offset after these tokens.
pub fn legacy_logprobs(lps: &[TokenLogprob], mut offset: usize) -> (Value, usize) {
    let mut tokens = Vec::with_capacity(lps.len());
    let mut token_logprobs = Vec::with_capacity(lps.len());
    let mut top_logprobs = Vec::with_capacity(lps.len());
    let mut text_offset = Vec::with_capacity(lps.len());
    for t in lps {
        tokens.push(Value::from(t.token.clone()));
        token_logprobs.push(json!(t.logprob));
        let top: Map<String, Value> = t
            .top
            .iter()
            .map(|(tok, _, lp)| (tok.clone(), json!(lp)))
            .collect();
        top_logprobs.push(Value::Object(top));
        text_offset.push(Value::from(offset));
        offset += t.token.chars().count();
    }
    let v = json!({
        "tokens": tokens,
        "token_logprobs": token_logprobs,
        "top_logprobs": top_logprobs,
        "text_offset": text_offset,
    });
    (v, offset)
}

fn finish_json(f: Option<Finish>) -> Value {
    f.map_or(Value::Null, |f| Value::from(f.as_str()))
}

/// `finish_reason` of a chat choice: `tool_calls` once it called a tool (even when the
/// length limit cut what came after), else the engine's reason.
pub fn chat_finish(f: Option<Finish>, called: bool) -> Value {
    match f {
        Some(_) if called => Value::from("tool_calls"),
        f => finish_json(f),
    }
}

/// The complete, non-streamed response: `chat.completion` or `text_completion`.
pub fn full_response(meta: &Meta, choices: &[Choice], usage: Usage) -> Value {
    let list: Vec<Value> = choices
        .iter()
        .enumerate()
        .map(|(index, c)| match meta.kind {
            Kind::Chat => json!({
                "index": index,
                "message": c.message(),
                "logprobs": if meta.logprobs { chat_logprobs(&c.logprobs) } else { Value::Null },
                "finish_reason": chat_finish(c.finish, !c.calls.is_empty()),
            }),
            Kind::Completion => json!({
                "text": c.text,
                "index": index,
                "logprobs": if meta.logprobs { legacy_logprobs(&c.logprobs, 0).0 } else { Value::Null },
                "finish_reason": finish_json(c.finish),
            }),
        })
        .collect();
    let object = match meta.kind {
        Kind::Chat => "chat.completion",
        Kind::Completion => "text_completion",
    };
    json!({
        "id": meta.id,
        "object": object,
        "created": meta.created,
        "model": meta.model,
        "choices": list,
        "usage": usage_json(usage),
    })
}

/// A stream chunk around `choices`; `usage` is `null` on every chunk when the client
/// asked for usage (the last chunk carries it instead, see [`usage_chunk`]).
fn chunk(meta: &Meta, choices: Vec<Value>) -> Value {
    let object = match meta.kind {
        Kind::Chat => "chat.completion.chunk",
        Kind::Completion => "text_completion",
    };
    let mut v = json!({
        "id": meta.id,
        "object": object,
        "created": meta.created,
        "model": meta.model,
        "choices": choices,
    });
    if meta.include_usage {
        v["usage"] = Value::Null;
    }
    v
}

/// Chat only: the first chunk of a choice, carrying the role.
pub fn role_chunk(meta: &Meta, index: usize) -> Value {
    chunk(
        meta,
        vec![json!({
            "index": index,
            "delta": {"role": "assistant", "content": ""},
            "logprobs": null,
            "finish_reason": null,
        })],
    )
}

/// New text (and/or logprobs) for one choice. `offset` tracks the legacy `text_offset`.
pub fn delta_chunk(
    meta: &Meta,
    index: usize,
    text: &str,
    lps: &[TokenLogprob],
    offset: &mut usize,
) -> Value {
    let choice = match meta.kind {
        Kind::Chat => json!({
            "index": index,
            "delta": {"content": text},
            "logprobs": if meta.logprobs { chat_logprobs(lps) } else { Value::Null },
            "finish_reason": null,
        }),
        Kind::Completion => {
            let logprobs = if meta.logprobs {
                let (v, next) = legacy_logprobs(lps, *offset);
                *offset = next;
                v
            } else {
                Value::Null
            };
            json!({"text": text, "index": index, "logprobs": logprobs, "finish_reason": null})
        }
    };
    chunk(meta, vec![choice])
}

/// A chat chunk with an arbitrary `delta` (reasoning, tool calls) and optional logprobs.
pub fn chat_delta_chunk(meta: &Meta, index: usize, delta: Value, lps: &[TokenLogprob]) -> Value {
    let logprobs = if meta.logprobs {
        chat_logprobs(lps)
    } else {
        Value::Null
    };
    chunk(
        meta,
        vec![json!({"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": null})],
    )
}

/// The last chunk of one choice: empty delta and the finish reason (`called`: the choice
/// made tool calls).
pub fn finish_chunk(meta: &Meta, index: usize, finish: Finish, called: bool) -> Value {
    let choice = match meta.kind {
        Kind::Chat => json!({
            "index": index,
            "delta": {},
            "logprobs": null,
            "finish_reason": chat_finish(Some(finish), called),
        }),
        Kind::Completion => json!({
            "text": "",
            "index": index,
            "logprobs": null,
            "finish_reason": finish.as_str(),
        }),
    };
    chunk(meta, vec![choice])
}

/// The chunk after all choices finished, when `include_usage` was asked for.
pub fn usage_chunk(meta: &Meta, usage: Usage) -> Value {
    let mut v = chunk(meta, Vec::new());
    v["usage"] = usage_json(usage);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lp(tok: &str) -> TokenLogprob {
        TokenLogprob {
            token: tok.into(),
            bytes: tok.as_bytes().to_vec(),
            logprob: -0.5,
            top: vec![
                (tok.into(), tok.as_bytes().to_vec(), -0.5),
                ("z".into(), b"z".to_vec(), -2.0),
            ],
        }
    }

    #[test]
    fn legacy_offsets_count_characters() {
        let (v, end) = legacy_logprobs(&[lp("hé"), lp("llo")], 3);
        assert_eq!(v["text_offset"], json!([3, 5]));
        assert_eq!(end, 8);
        assert_eq!(v["top_logprobs"][0]["z"], json!(-2.0));
        assert_eq!(v["tokens"], json!(["hé", "llo"]));
    }

    #[test]
    fn chat_logprobs_shape() {
        let v = chat_logprobs(&[lp("a")]);
        assert_eq!(v["content"][0]["bytes"], json!([97]));
        assert_eq!(v["content"][0]["top_logprobs"][1]["token"], "z");
        assert!(v["refusal"].is_null());
    }

    #[test]
    fn usage_only_on_chunks_when_asked() {
        let mut meta = Meta {
            kind: Kind::Chat,
            id: "x".into(),
            created: 1,
            model: "m".into(),
            logprobs: false,
            include_usage: false,
        };
        assert!(role_chunk(&meta, 0).get("usage").is_none());
        meta.include_usage = true;
        assert!(role_chunk(&meta, 0)["usage"].is_null());
        assert!(role_chunk(&meta, 0).get("usage").is_some());
        let u = usage_chunk(
            &meta,
            Usage {
                prompt_tokens: 2,
                completion_tokens: 3,
                cached_tokens: 1,
            },
        );
        assert_eq!(u["usage"]["total_tokens"], 5);
        assert_eq!(u["choices"], json!([]));
    }
}
