//! Llama 3.x calls: the whole message is `{"name": "f", "parameters": {..}}` (also
//! `"arguments"`, with an optional `"type": "function"`), possibly after `<|python_tag|>`
//! and possibly several objects separated by `;`. A message that starts with `{` is held
//! to its end, since only the complete text tells a call from a JSON answer.

use super::{make_call, CallSyntax, Delta, TextOut, ToolCall, ToolParser};
use serde_json::Value as Json;

const PYTHON_TAG: &str = "<|python_tag|>";

/// Llama 3.1's template shows one call per message; the grammar forces exactly one.
pub(super) const SYNTAX: CallSyntax = CallSyntax {
    block_open: "",
    call_open: "{\"name\": \"",
    name_args: "\", \"parameters\": ",
    call_close: "}",
    separator: "",
    block_close: "",
    parallel: false,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Only whitespace (or part of `<|python_tag|>`) so far.
    Start,
    /// The message may be calls: hold it all.
    Json,
    /// Plain text: stream it.
    Text,
}

pub(super) struct Llama3 {
    names: Vec<String>,
    state: State,
    buf: String,
    text: TextOut,
}

impl Llama3 {
    pub(super) fn new(names: Vec<String>) -> Self {
        Llama3 {
            names,
            state: State::Start,
            buf: String::new(),
            text: TextOut::default(),
        }
    }

    fn calls(&self) -> Option<Vec<ToolCall>> {
        let s = self.buf.trim_start();
        let mut rest = s.strip_prefix(PYTHON_TAG).unwrap_or(s);
        let mut calls = Vec::new();
        loop {
            rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == ';');
            if rest.is_empty() {
                break;
            }
            let mut it = serde_json::Deserializer::from_str(rest).into_iter::<Json>();
            let Some(Ok(Json::Object(obj))) = it.next() else {
                return None;
            };
            rest = &rest[it.byte_offset()..];
            match obj.get("type") {
                None => {}
                Some(Json::String(t)) if t == "function" => {}
                Some(_) => return None,
            }
            let name = obj.get("name")?.as_str()?;
            let args = obj.get("parameters").or_else(|| obj.get("arguments"));
            calls.push(make_call(&self.names, name, args)?);
        }
        (!calls.is_empty()).then_some(calls)
    }
}

impl ToolParser for Llama3 {
    fn push(&mut self, t: &str, out: &mut Vec<Delta>) {
        match self.state {
            State::Text => self.text.text(t, out),
            State::Json => self.buf.push_str(t),
            State::Start => {
                self.buf.push_str(t);
                let s = self.buf.trim_start();
                if s.is_empty() || (PYTHON_TAG.starts_with(s) && s.len() < PYTHON_TAG.len()) {
                    return;
                }
                if s.starts_with(PYTHON_TAG) || s.starts_with('{') {
                    self.state = State::Json;
                } else {
                    self.state = State::Text;
                    let b = std::mem::take(&mut self.buf);
                    self.text.text(&b, out);
                }
            }
        }
    }

    fn finish(&mut self, out: &mut Vec<Delta>) {
        let calls = if self.state == State::Json {
            self.calls()
        } else {
            None
        };
        self.text.finish_held(calls, &mut self.buf, out);
    }
}
