//! Splitting a chat choice's generated text into reasoning, content and tool calls, the
//! same way for streamed and collected responses (so both give identical results).
//!
//! Text goes through two stages: the reasoning splitter (`<think>` … `</think>`, when
//! `--reasoning-format deepseek`), then the model family's tool-call parser on what is
//! left (when the request declared tools and allows calls). With neither active, text
//! passes through untouched and no parser is built at all.

use super::random_u64;
use nao_tokenizer::tools::reasoning::{Part, ReasoningSplitter};
use nao_tokenizer::tools::{Delta, ToolCall, ToolFormat, ToolParser};
use serde_json::{json, Value};

/// `--reasoning-format`: what to do with `<think>` blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReasoningFormat {
    /// Leave them in `content`, as generated.
    None,
    /// Move them to `reasoning_content` (llama-server's default, DeepSeek's field name).
    #[default]
    DeepSeek,
}

/// How one request's choices are parsed.
#[derive(Debug, Clone)]
pub struct OutputSpec {
    /// Parse calls in this format, accepting these function names.
    pub tools: Option<(ToolFormat, Vec<String>)>,
    /// Split off reasoning; `Some(true)`: the prompt already opened `<think>`.
    pub reasoning: Option<bool>,
}

impl OutputSpec {
    /// No parsing at all (legacy completions, or nothing to look for).
    pub fn plain() -> Self {
        OutputSpec {
            tools: None,
            reasoning: None,
        }
    }

    /// A parser for one choice; `None` when text passes through unchanged.
    pub fn parser(&self) -> Option<OutputParser> {
        if self.tools.is_none() && self.reasoning.is_none() {
            return None;
        }
        Some(OutputParser {
            reasoning: self.reasoning.map(ReasoningSplitter::new),
            tools: self.tools.as_ref().map(|(f, names)| f.parser(names)),
            parts: Vec::new(),
            deltas: Vec::new(),
        })
    }
}

/// A decided piece of a choice. Calls come in pieces (see [`nao_tokenizer::tools`]):
/// `CallStart CallArgs* (CallEnd | CallAbort)`; an aborted call's text follows as content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Out {
    Reasoning(String),
    Content(String),
    /// A call begins: its new `call_…` id and its function's name.
    CallStart(String, String),
    /// The next piece of the current call's arguments.
    CallArgs(String),
    /// The current call is complete and valid.
    CallEnd,
    /// The current call turned out malformed: it is not a call.
    CallAbort,
}

/// One choice's two-stage parser.
pub struct OutputParser {
    reasoning: Option<ReasoningSplitter>,
    tools: Option<Box<dyn ToolParser>>,
    parts: Vec<Part>,
    deltas: Vec<Delta>,
}

impl OutputParser {
    /// Feeds generated text; returns what is decided.
    pub fn push(&mut self, text: &str) -> Vec<Out> {
        match &mut self.reasoning {
            Some(r) => r.push(text, &mut self.parts),
            None => self.parts.push(Part::Content(text.to_string())),
        }
        self.drain(false)
    }

    /// The choice ended: returns everything still held, decided.
    pub fn finish(&mut self) -> Vec<Out> {
        if let Some(r) = &mut self.reasoning {
            r.finish(&mut self.parts);
        }
        self.drain(true)
    }

    fn drain(&mut self, end: bool) -> Vec<Out> {
        let mut out = Vec::new();
        for p in std::mem::take(&mut self.parts) {
            match p {
                Part::Reasoning(r) => out.push(Out::Reasoning(r)),
                Part::Content(c) => match &mut self.tools {
                    Some(t) => {
                        t.push(&c, &mut self.deltas);
                        take_deltas(&mut self.deltas, &mut out);
                    }
                    None if c.is_empty() => {}
                    None => out.push(Out::Content(c)),
                },
            }
        }
        if end {
            if let Some(t) = &mut self.tools {
                t.finish(&mut self.deltas);
                take_deltas(&mut self.deltas, &mut out);
            }
        }
        out
    }
}

fn take_deltas(deltas: &mut Vec<Delta>, out: &mut Vec<Out>) {
    for d in deltas.drain(..) {
        match d {
            Delta::Content(c) if c.is_empty() => {}
            Delta::Content(c) => out.push(Out::Content(c)),
            Delta::CallStart(name) => out.push(Out::CallStart(call_id(), name)),
            Delta::CallArgs(a) => out.push(Out::CallArgs(a)),
            Delta::CallEnd => out.push(Out::CallEnd),
            Delta::CallAbort => out.push(Out::CallAbort),
        }
    }
}

/// `call_` and 24 random alphanumerics, like OpenAI's ids.
pub fn call_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut id = String::from("call_");
    let mut bits = 0;
    for k in 0..24 {
        // 62^10 < 2^64: ten characters per random word.
        if k % 10 == 0 {
            bits = random_u64();
        }
        id.push(ALPHABET[(bits % ALPHABET.len() as u64) as usize] as char);
        bits /= ALPHABET.len() as u64;
    }
    id
}

/// A complete call as in `message.tool_calls`.
pub fn call_json(id: &str, c: &ToolCall) -> Value {
    json!({
        "id": id,
        "type": "function",
        "function": {"name": c.name, "arguments": c.arguments},
    })
}

/// The first stream delta of call `index`: id, type, name, empty arguments.
pub fn call_head_delta(index: usize, id: &str, name: &str) -> Value {
    json!({"tool_calls": [{
        "index": index,
        "id": id,
        "type": "function",
        "function": {"name": name, "arguments": ""},
    }]})
}

/// A later stream delta of call `index`: a piece of its arguments.
pub fn call_args_delta(index: usize, arguments: &str) -> Value {
    json!({"tool_calls": [{"index": index, "function": {"arguments": arguments}}]})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(spec: &OutputSpec, pieces: &[&str]) -> Vec<Out> {
        let mut p = spec.parser().unwrap();
        let mut out = Vec::new();
        for piece in pieces {
            out.extend(p.push(piece));
        }
        out.extend(p.finish());
        out
    }

    #[test]
    fn reasoning_then_call() {
        let spec = OutputSpec {
            tools: Some((ToolFormat::Hermes, vec!["f".into()])),
            reasoning: Some(false),
        };
        let out = run(
            &spec,
            &[
                "<think>need f",
                "</think>\n\nok <tool_",
                "call>{\"name\": \"f\", \"arguments\": {}}</tool_call>",
            ],
        );
        assert_eq!(out[0], Out::Reasoning("need f".into()));
        assert_eq!(out[1], Out::Content("ok".into()));
        match &out[2] {
            Out::CallStart(id, name) => {
                assert!(id.starts_with("call_") && id.len() == 29, "{id}");
                assert_eq!(name, "f");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(out[3..], [Out::CallArgs("{}".into()), Out::CallEnd]);
    }

    #[test]
    fn ids_differ() {
        assert_ne!(call_id(), call_id());
    }
}
