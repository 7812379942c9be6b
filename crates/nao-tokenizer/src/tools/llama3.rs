//! Llama 3.x calls: the whole message is `{"name": "f", "parameters": {..}}` (also
//! `"arguments"`, with an optional `"type": "function"`), possibly after `<|python_tag|>`
//! and possibly several objects separated by `;`. A message that starts with `{` may be
//! a call: its name is announced once the object's `name` member is complete and names a
//! declared tool, and its arguments stream from there. A call is confirmed by the end of
//! the message or a `;`; anything else after the object (prose, a JSON answer) makes that
//! object content again (calls confirmed before it stand).

use super::call::{CallEv, ObjectCall};
use super::{CallSyntax, Delta, TextOut, ToolParser};

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

enum State {
    /// Only whitespace (or part of `<|python_tag|>`) so far.
    Start,
    /// The message may be calls: the current object is being read.
    Json(ObjectCall),
    /// Plain text: stream it.
    Text,
}

pub(super) struct Llama3 {
    names: Vec<String>,
    state: State,
    /// The raw text since the last confirmed call (content if the current one breaks).
    raw: String,
    /// Text after the current object, once it is complete.
    after: String,
    evs: Vec<CallEv>,
    text: TextOut,
}

impl Llama3 {
    pub(super) fn new(names: Vec<String>) -> Self {
        Llama3 {
            names,
            state: State::Start,
            raw: String::new(),
            after: String::new(),
            evs: Vec::new(),
            text: TextOut::default(),
        }
    }

    fn become_text(&mut self, out: &mut Vec<Delta>) {
        let raw = std::mem::take(&mut self.raw);
        self.after.clear();
        self.text.not_a_call(&raw, out);
        self.state = State::Text;
    }

    /// `t`: new text (already in `raw`) for the current object or what follows it.
    fn on_json(&mut self, t: &str, out: &mut Vec<Delta>) {
        let mut t = t.to_string();
        loop {
            let State::Json(call) = &mut self.state else {
                return;
            };
            let mut rest = t.as_str();
            if !call.complete() {
                let n = call.push_value(rest, &self.names, &mut self.evs);
                self.text.call_events(&mut self.evs, out);
                if call.bad() {
                    return self.become_text(out);
                }
                rest = &rest[n..];
            }
            self.after.push_str(rest);
            let a = self.after.trim_start();
            let Some(next) = a.strip_prefix(';') else {
                if !a.is_empty() {
                    self.become_text(out);
                }
                return;
            };
            // The call is whole; the next object follows.
            let next = next.to_string();
            self.evs.push(CallEv::End);
            self.text.call_events(&mut self.evs, out);
            self.raw = a.to_string();
            self.after.clear();
            self.state = State::Json(ObjectCall::wrapped(true));
            t = next;
        }
    }
}

impl ToolParser for Llama3 {
    fn push(&mut self, t: &str, out: &mut Vec<Delta>) {
        match self.state {
            State::Text => self.text.text(t, out),
            State::Json(_) => {
                self.raw.push_str(t);
                self.on_json(t, out);
            }
            State::Start => {
                self.raw.push_str(t);
                let s = self.raw.trim_start();
                if s.is_empty() || (PYTHON_TAG.starts_with(s) && s.len() < PYTHON_TAG.len()) {
                    return;
                }
                if s.starts_with(PYTHON_TAG) || s.starts_with('{') {
                    let body = s.strip_prefix(PYTHON_TAG).unwrap_or(s).to_string();
                    self.state = State::Json(ObjectCall::wrapped(true));
                    self.on_json(&body, out);
                } else {
                    let b = std::mem::take(&mut self.raw);
                    self.text.text(&b, out);
                    self.state = State::Text;
                }
            }
        }
    }

    fn finish(&mut self, out: &mut Vec<Delta>) {
        match &self.state {
            State::Json(c) if c.complete() && self.after.trim().is_empty() => {
                self.evs.push(CallEv::End);
                self.text.call_events(&mut self.evs, out);
                self.raw.clear();
                self.after.clear();
            }
            State::Text => {}
            _ => self.become_text(out),
        }
        self.text.finish(out);
    }
}
