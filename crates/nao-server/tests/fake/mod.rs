//! A fake engine for the server tests.
//!
//! Tokens are bytes (BOS = 256 when `add_special`), chat renders as `role: content` lines,
//! and generation plays a fixed script (`"Hello"`, `" world"`, `"!"`), cut by
//! `max_tokens`. Prompts containing these markers change the behaviour:
//! - `SLOW`: emit `"x"` every 20 ms forever; when the receiver is gone, set `dropped`.
//! - `FAIL`: emit `"partial"`, then an `Error` event.
//! - `BADTEMPLATE` (chat content): `render_chat` fails.
//! - `REPLY:<key>` on a line of its own: play the script named `key` in [`REPLIES`]
//!   instead (tool calls, reasoning, malformed calls), split at awkward places.
//!
//! `queue_full` makes `submit` refuse with `QueueFull`; a JSON schema using `uniqueItems`
//! is refused with `BadGrammar`.

pub mod http;

use nao_engine::api::{
    EngineHandle, EngineStats, Event, Finish, Grammar, ModelDetails, ModelInfo, PromptError,
    Request, RequestHandle, SubmitError, TokenLogprob, Usage,
};
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

pub const N_CTX: usize = 64;
pub const N_VOCAB: usize = 300;
pub const BOS: u32 = 256;
pub const SCRIPT: [&str; 3] = ["Hello", " world", "!"];

/// Scripted replies, chosen by a `REPLY:<key>` line in the prompt; pieces split markers
/// and JSON the way tokens do.
pub const REPLIES: &[(&str, &[&str])] = &[
    (
        "call",
        &[
            "<tool_",
            "call>\n{\"name\": \"get_weather\", \"argu",
            "ments\": {\"location\": \"Paris\"}}\n</tool_call>",
        ],
    ),
    (
        "text_then_calls",
        &[
            "Checking both.",
            " <tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"location\": \"Paris\"}}\n</tool_call>\n<tool",
            "_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>",
        ],
    ),
    (
        "pieces_call",
        &[
            "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"location\": \"Pa",
            "ris\", \"unit\": ",
            "\"celsius\"}}\n</tool_call>",
        ],
    ),
    (
        "bad_call",
        &[
            "<tool_call>\n{\"name\": \"get_weather\", ",
            "\"arguments\": {\"location\": oops}}\n</tool_call>",
        ],
    ),
    (
        "think",
        &[
            "<think>\nThe user",
            " wants a greeting.\n</th",
            "ink>\n\nHello!",
        ],
    ),
];

/// The script for `prompt`: a `REPLY:` one if named, else [`SCRIPT`].
fn script(prompt: &[u32]) -> &'static [&'static str] {
    for (key, pieces) in REPLIES {
        if contains(prompt, &format!("REPLY:{key}\n")) {
            return pieces;
        }
    }
    &SCRIPT
}
#[derive(Default)]
pub struct Fake {
    pub queue_full: AtomicBool,
    pub submitted: Mutex<Vec<Request>>,
    pub rendered: Mutex<Vec<String>>,
    /// The `tools` each `render_chat` call received.
    pub tools: Mutex<Vec<Option<Value>>>,
    /// Set by a `SLOW` request's generator once it sees its receiver dropped.
    pub dropped: Arc<AtomicBool>,
    /// Report a chat template with `<think>` markers (a reasoning model).
    pub thinking_template: AtomicBool,
}

impl Fake {
    pub fn new() -> Arc<Fake> {
        Arc::new(Fake::default())
    }

    pub fn requests(&self) -> Vec<Request> {
        self.submitted.lock().unwrap().clone()
    }
}

fn contains(prompt: &[u32], marker: &str) -> bool {
    let m: Vec<u32> = marker.bytes().map(u32::from).collect();
    prompt.windows(m.len()).any(|w| w == m.as_slice())
}

fn logprob(word: &str, k: usize) -> TokenLogprob {
    let mut top = vec![(word.to_string(), word.as_bytes().to_vec(), -0.25)];
    for j in 1..k {
        let alt = format!("alt{j}");
        top.push((alt.clone(), alt.into_bytes(), -1.0 - j as f32));
    }
    top.truncate(k);
    TokenLogprob {
        token: word.to_string(),
        bytes: word.as_bytes().to_vec(),
        logprob: -0.25,
        top,
    }
}

impl EngineHandle for Fake {
    fn model_info(&self) -> ModelInfo {
        ModelInfo {
            id: "tiny-model".into(),
            n_ctx: N_CTX,
            n_vocab: N_VOCAB,
            created: 1_700_000_000,
            details: ModelDetails {
                architecture: "tinyarch".into(),
                parameter_count: 268_098_176,
                quantization: "Q4_K_M".into(),
                file_size: 253_000_000,
                file_modified: 1_600_000_000,
                n_ctx_train: 4096,
                n_embd: 64,
                n_layer: 2,
                n_head: 4,
                n_head_kv: 1,
                chat_template: Some(if self.thinking_template.load(Ordering::Relaxed) {
                    "{{ messages }}{# <think> … </think> #}".into()
                } else {
                    "{{ messages }}".into()
                }),
            },
        }
    }

    fn render_chat(&self, messages: &Value, tools: Option<&Value>) -> Result<String, PromptError> {
        self.tools.lock().unwrap().push(tools.cloned());
        let mut out = String::new();
        for m in messages.as_array().unwrap() {
            let content = match &m["content"] {
                Value::String(s) => s.clone(),
                Value::Array(parts) => parts
                    .iter()
                    .map(|p| p["text"].as_str().unwrap().to_string())
                    .collect(),
                _ => String::new(),
            };
            if content == "BADTEMPLATE" {
                return Err(PromptError::BadMessages("the template refused".into()));
            }
            out.push_str(&format!("{}: {}\n", m["role"].as_str().unwrap(), content));
        }
        out.push_str("assistant:");
        self.rendered.lock().unwrap().push(out.clone());
        Ok(out)
    }

    fn tokenize(&self, text: &str, add_special: bool) -> Vec<u32> {
        let mut ids: Vec<u32> = if add_special { vec![BOS] } else { vec![] };
        ids.extend(text.bytes().map(u32::from));
        ids
    }

    fn submit(&self, req: Request) -> Result<RequestHandle, SubmitError> {
        if self.queue_full.load(Ordering::SeqCst) {
            return Err(SubmitError::QueueFull {
                waiting: 4,
                limit: 4,
            });
        }
        if req.prompt.is_empty() {
            return Err(SubmitError::EmptyPrompt);
        }
        if req.prompt.len() > N_CTX {
            return Err(SubmitError::PromptTooLong {
                n_prompt_tokens: req.prompt.len(),
                n_ctx: N_CTX,
            });
        }
        if let Some(&id) = req.prompt.iter().find(|&&id| id as usize >= N_VOCAB) {
            return Err(SubmitError::TokenOutOfRange {
                id: id as i64,
                n_vocab: N_VOCAB,
            });
        }
        req.sampler
            .validate()
            .map_err(|e| SubmitError::BadParams(e.to_string()))?;
        // Like the real engine's grammar compiler, refuse a keyword it does not implement.
        if let Some(Grammar::JsonSchema(schema)) = &req.constraint {
            if schema.to_string().contains("\"uniqueItems\"") {
                return Err(SubmitError::BadGrammar(
                    "Unimplemented keys: [\"uniqueItems\"]".into(),
                ));
            }
        }
        self.submitted.lock().unwrap().push(req.clone());
        let (tx, rx) = mpsc::unbounded_channel();
        let k = req.logprobs;
        let lps = |w: &str| k.map(|k| vec![logprob(w, k)]).unwrap_or_default();
        if contains(&req.prompt, "SLOW") {
            let dropped = self.dropped.clone();
            tokio::spawn(async move {
                loop {
                    let ev = Event::Text {
                        text: "x".into(),
                        logprobs: vec![],
                    };
                    if tx.send(ev).is_err() {
                        dropped.store(true, Ordering::SeqCst);
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            });
        } else if contains(&req.prompt, "FAIL") {
            tx.send(Event::Text {
                text: "partial".into(),
                logprobs: lps("partial"),
            })
            .unwrap();
            tx.send(Event::Error("the model exploded".into())).unwrap();
        } else {
            let script = script(&req.prompt);
            let n = req.max_tokens.min(script.len());
            for w in &script[..n] {
                tx.send(Event::Text {
                    text: w.to_string(),
                    logprobs: lps(w),
                })
                .unwrap();
            }
            let finish = if n == script.len() {
                Finish::Stop
            } else {
                Finish::Length
            };
            tx.send(Event::Done {
                finish,
                usage: Usage {
                    prompt_tokens: req.prompt.len(),
                    completion_tokens: n,
                    cached_tokens: 1,
                },
                time_to_first_token: Duration::from_millis(1),
            })
            .unwrap();
        }
        Ok(RequestHandle { events: rx })
    }

    fn stats(&self) -> EngineStats {
        EngineStats {
            waiting: 2,
            running: 1,
            kv_blocks_total: 100,
            kv_blocks_used: 30,
            prefix_cache_hit_tokens: 7,
            prompt_tokens: 42,
            generated_tokens: 17,
            preemptions: 0,
        }
    }
}
