//! GLM-4 calls (GLM-4-9B-chat, GLM-4-0414): the assistant turn is the function's name on
//! its own line, then the arguments as JSON: `get_weather\n{"city": "Paris"}`; further
//! calls follow after `<|assistant|>`. Only a first line that names a declared tool
//! starts a call, so ordinary answers stream as soon as their first line rules that out.
//! The name is announced when its line ends and the arguments stream as they come; a
//! call is confirmed by the end of the message or the next `<|assistant|>`. A segment that
//! turns out malformed is content (calls before it stand).

use super::call::{CallEv, ObjectCall};
use super::{partial_marker_len, CallSyntax, Delta, TextOut, ToolParser};

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

enum State {
    /// The segment's first line is not complete yet and could still be a tool's name.
    Start,
    /// The first line named a tool: its arguments are being read.
    Call(ObjectCall),
    Text,
}

pub(super) struct Glm4 {
    names: Vec<String>,
    state: State,
    /// The current segment's text: all of it while deciding the first line, the raw
    /// text of a call (for content if it breaks).
    raw: String,
    /// Start state: where the segment's own text starts in `raw` (after `<|assistant|>`).
    head: usize,
    /// Call state: text after the complete arguments object (whitespace, `<|assistant|>`).
    after: String,
    evs: Vec<CallEv>,
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
            raw: String::new(),
            head: 0,
            after: String::new(),
            evs: Vec::new(),
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

    /// The segment is not a call: its text is content, and so is everything after it.
    fn become_text(&mut self, out: &mut Vec<Delta>) {
        let raw = std::mem::take(&mut self.raw);
        self.after.clear();
        self.text.not_a_call(&raw, out);
        self.state = State::Text;
    }

    fn on_start(&mut self, out: &mut Vec<Delta>) {
        let s = self.raw[self.head..].trim_start();
        let decided = match s.split_once('\n') {
            Some((line, rest)) => {
                let line = line.trim_end_matches('\r');
                self.is_name(line)
                    .then(|| (line.to_string(), rest.to_string()))
            }
            None if self.may_be_name(s) => return,
            None => None,
        };
        let Some((name, rest)) = decided else {
            return self.become_text(out);
        };
        self.evs.push(CallEv::Start(name));
        self.text.call_events(&mut self.evs, out);
        self.state = State::Call(ObjectCall::bare());
        self.on_call(&rest, out);
    }

    /// `t`: new text of the segment (already in `raw`).
    fn on_call(&mut self, t: &str, out: &mut Vec<Delta>) {
        let State::Call(call) = &mut self.state else {
            return;
        };
        let mut rest = t;
        if !call.complete() {
            let n = call.push_value(t, &self.names, &mut self.evs);
            self.text.call_events(&mut self.evs, out);
            if call.bad() {
                return self.become_text(out);
            }
            rest = &t[n..];
        }
        self.after.push_str(rest);
        let a = self.after.trim_start();
        if let Some(next) = a.strip_prefix(NEXT) {
            // The call is whole; the next segment starts.
            let next = next.to_string();
            self.evs.push(CallEv::End);
            self.text.call_events(&mut self.evs, out);
            self.raw = NEXT.to_string();
            self.head = NEXT.len();
            self.after.clear();
            self.state = State::Start;
            self.raw.push_str(&next);
            self.on_start(out);
        } else if !a.is_empty() && partial_marker_len(a, &[NEXT]) != a.len() {
            self.become_text(out);
        }
    }
}

impl ToolParser for Glm4 {
    fn push(&mut self, t: &str, out: &mut Vec<Delta>) {
        match self.state {
            State::Text => self.text.text(t, out),
            State::Call(_) => {
                self.raw.push_str(t);
                self.on_call(t, out);
            }
            State::Start => {
                self.raw.push_str(t);
                self.on_start(out);
            }
        }
    }

    fn finish(&mut self, out: &mut Vec<Delta>) {
        match &self.state {
            State::Call(c) if c.complete() && self.after.trim().is_empty() => {
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
