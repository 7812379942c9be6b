//! GLM-4 calls (GLM-4-9B-chat, GLM-4-0414): the assistant turn is the function's name on
//! its own line, then the arguments as JSON: `get_weather\n{"city": "Paris"}`; further
//! calls follow after `<|assistant|>`. Only a first line that names a declared tool
//! starts a call, so ordinary answers stream as soon as their first line rules that out.

use super::{json_object, make_call, CallSyntax, Delta, TextOut, ToolCall, ToolParser};
use serde_json::Value as Json;

const NEXT: &str = "<|assistant|>";

/// One call per message in the grammar: `<|assistant|>` is a control token, which the
/// grammar cannot produce as one token.
pub(super) const SYNTAX: CallSyntax = CallSyntax {
    block_open: "",
    call_open: "",
    name_args: "\n",
    call_close: "",
    separator: "",
    block_close: "",
    parallel: false,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The first line is not complete yet and could still be a tool's name.
    Start,
    /// The first line named a tool: hold the message to its end.
    Call,
    Text,
}

pub(super) struct Glm4 {
    names: Vec<String>,
    state: State,
    buf: String,
    text: TextOut,
}

fn ident(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

impl Glm4 {
    pub(super) fn new(names: Vec<String>) -> Self {
        Glm4 {
            names,
            state: State::Start,
            buf: String::new(),
            text: TextOut::default(),
        }
    }

    fn is_name(&self, s: &str) -> bool {
        if self.names.is_empty() {
            ident(s)
        } else {
            self.names.iter().any(|n| n == s)
        }
    }

    fn may_be_name(&self, s: &str) -> bool {
        if self.names.is_empty() {
            s.is_empty() || ident(s)
        } else {
            self.names.iter().any(|n| n.starts_with(s))
        }
    }

    fn calls(&self) -> Option<Vec<ToolCall>> {
        let mut calls = Vec::new();
        for seg in self.buf.trim_start().split(NEXT) {
            let (name, args) = seg.trim_start().split_once('\n')?;
            let obj = json_object(args)?;
            calls.push(make_call(
                &self.names,
                name.trim_end(),
                Some(&Json::Object(obj)),
            )?);
        }
        Some(calls)
    }
}

impl ToolParser for Glm4 {
    fn push(&mut self, t: &str, out: &mut Vec<Delta>) {
        match self.state {
            State::Text => self.text.text(t, out),
            State::Call => self.buf.push_str(t),
            State::Start => {
                self.buf.push_str(t);
                let s = self.buf.trim_start();
                let decided = match s.split_once('\n') {
                    Some((line, _)) => Some(self.is_name(line.trim_end_matches('\r'))),
                    None if self.may_be_name(s) => None,
                    None => Some(false),
                };
                match decided {
                    None => {}
                    Some(true) => self.state = State::Call,
                    Some(false) => {
                        self.state = State::Text;
                        let b = std::mem::take(&mut self.buf);
                        self.text.text(&b, out);
                    }
                }
            }
        }
    }

    fn finish(&mut self, out: &mut Vec<Delta>) {
        let calls = if self.state == State::Call {
            self.calls()
        } else {
            None
        };
        self.text.finish_held(calls, &mut self.buf, out);
    }
}
