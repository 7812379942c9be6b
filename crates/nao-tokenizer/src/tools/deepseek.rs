//! DeepSeek V3 / R1 calls:
//! `<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\n```json\n{..}\n```<｜tool▁call▁end｜>…<｜tool▁calls▁end｜>`,
//! and V3.1's shorter `<｜tool▁call▁begin｜>NAME<｜tool▁sep｜>{..}<｜tool▁call▁end｜>`.
//! R1 sometimes drops the outer `calls` markers or spells them with `_` or spaces, so
//! those variants open a region too (as llama.cpp's parser accepts them).
//!
//! Streamed: a call is announced when its name is complete (at the newline after it, or
//! at the separator in V3.1), its arguments go out as they come, and it is confirmed at
//! `<｜tool▁call▁end｜>`. A block may end without `<｜tool▁calls▁end｜>` (R1 sometimes
//! ends its turn there) as long as every call in it is whole.

use super::call::{declared, CallEv, ObjectCall};
use super::{partial_marker_len, BlockSpec, BodyReader, CallSyntax};

const CALLS_BEGIN: &str = "<｜tool▁calls▁begin｜>";
const CALLS_END: &str = "<｜tool▁calls▁end｜>";
const CALL_BEGIN: &str = "<｜tool▁call▁begin｜>";
const CALL_END: &str = "<｜tool▁call▁end｜>";
const SEP: &str = "<｜tool▁sep｜>";

/// Region openers; the last one opens a single call without the outer block.
const STARTS: &[&str] = &[
    CALLS_BEGIN,
    "<｜tool_calls_begin｜>",
    "<｜tool calls begin｜>",
    "<｜tool\\_calls\\_begin｜>",
    CALL_BEGIN,
];

pub(super) const SYNTAX: CallSyntax = CallSyntax {
    block_open: CALLS_BEGIN,
    call_open: "<｜tool▁call▁begin｜>function<｜tool▁sep｜>",
    name_args: "\n```json\n",
    call_close: "\n```<｜tool▁call▁end｜>",
    separator: "\n",
    block_close: CALLS_END,
    parallel: true,
};

pub(super) struct DeepSeek {
    pub(super) names: Vec<String>,
}

impl BlockSpec for DeepSeek {
    fn starts(&self) -> &'static [&'static str] {
        STARTS
    }

    fn end(&self, start: usize) -> &'static str {
        if STARTS[start] == CALL_BEGIN {
            CALL_END
        } else {
            CALLS_END
        }
    }

    fn reader(&self, start: usize) -> Box<dyn BodyReader> {
        let block = STARTS[start] != CALL_BEGIN;
        Box::new(Block {
            names: self.names.clone(),
            block,
            phase: if block { Phase::Between } else { Phase::Head },
            buf: String::new(),
            consumed: 0,
            ended_at: 0,
            calls: 0,
            call: ObjectCall::bare(),
            bad: false,
        })
    }
}

/// Longest name or `function` head we wait for before calling the text malformed.
const MAX_HEAD: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Block only: whitespace, then `<｜tool▁call▁begin｜>`.
    Between,
    /// Up to `<｜tool▁sep｜>`: `function` (V3/R1) or the name (V3.1).
    Head,
    /// V3/R1: the name, up to its newline.
    Name,
    /// Before the arguments: whitespace and an optional `` ```json `` fence.
    Open,
    Args,
    /// After the arguments: whitespace, an optional closing fence, then (in a block)
    /// `<｜tool▁call▁end｜>`.
    After,
}

/// The body of one region, read as it comes.
struct Block {
    names: Vec<String>,
    /// A `calls` block (calls wrapped in their own markers), not a single bare call.
    block: bool,
    phase: Phase,
    /// Text not yet decided.
    buf: String,
    /// Body bytes taken out of `buf` so far.
    consumed: usize,
    /// Body offset just after the last complete call.
    ended_at: usize,
    calls: usize,
    call: ObjectCall,
    bad: bool,
}

impl Block {
    fn take(&mut self, n: usize) {
        self.buf.drain(..n);
        self.consumed += n;
    }

    /// Whitespace at the front of `buf`, in bytes.
    fn ws(&self) -> usize {
        self.buf.len() - self.buf.trim_start().len()
    }

    fn start(&mut self, name: &str, out: &mut Vec<CallEv>) -> bool {
        let name = name.trim();
        if !declared(&self.names, name) {
            return false;
        }
        out.push(CallEv::Start(name.to_string()));
        self.call = ObjectCall::bare();
        self.phase = Phase::Open;
        true
    }

    /// Advances as far as `buf` allows; false when the text cannot be calls.
    fn step(&mut self, out: &mut Vec<CallEv>) -> bool {
        loop {
            match self.phase {
                Phase::Between => {
                    let w = self.ws();
                    self.take(w);
                    if self.buf.starts_with(CALL_BEGIN) {
                        self.take(CALL_BEGIN.len());
                        self.phase = Phase::Head;
                    } else {
                        return CALL_BEGIN.starts_with(self.buf.as_str());
                    }
                }
                Phase::Head => {
                    let Some(p) = self.buf.find(SEP) else {
                        return self.buf.len() <= MAX_HEAD;
                    };
                    let head = self.buf[..p].trim().to_string();
                    self.take(p + SEP.len());
                    if head == "function" {
                        self.phase = Phase::Name;
                    } else if !self.start(&head, out) {
                        return false;
                    }
                }
                Phase::Name => {
                    let Some(p) = self.buf.find('\n') else {
                        return self.buf.len() <= MAX_HEAD;
                    };
                    let name = self.buf[..p].to_string();
                    self.take(p + 1);
                    if !self.start(&name, out) {
                        return false;
                    }
                }
                Phase::Open => {
                    let w = self.ws();
                    let t = &self.buf[w..];
                    if t.starts_with('{') {
                        self.take(w);
                        self.phase = Phase::Args;
                    } else if let Some(after) = t.strip_prefix("```") {
                        // An opening fence: "```", maybe "json", whitespace, then `{`.
                        let rest = match after.strip_prefix("json") {
                            Some(r) => r,
                            None if "json".starts_with(after) => return true,
                            None => after,
                        };
                        let inner = rest.trim_start();
                        if !inner.starts_with('{') {
                            return inner.is_empty();
                        }
                        let n = self.buf.len() - inner.len();
                        self.take(n);
                        self.phase = Phase::Args;
                    } else {
                        return "```".starts_with(t);
                    }
                }
                Phase::Args => {
                    let n = self.call.push_value(&self.buf, &self.names, out);
                    self.take(n);
                    if self.call.bad() {
                        return false;
                    }
                    if !self.call.complete() {
                        return true;
                    }
                    self.phase = Phase::After;
                }
                Phase::After => {
                    let t = self.buf.trim_start();
                    let t = t.strip_prefix("```").unwrap_or(t).trim_start();
                    if !self.block {
                        // The region ends right after the call: only a fence may follow.
                        return t.is_empty() || partial_marker_len(t, &["```"]) == t.len();
                    }
                    if t.starts_with(CALL_END) {
                        let n = self.buf.len() - t.len() + CALL_END.len();
                        self.take(n);
                        out.push(CallEv::End);
                        self.calls += 1;
                        self.ended_at = self.consumed;
                        self.phase = Phase::Between;
                    } else {
                        return t.is_empty()
                            || partial_marker_len(t, &["```", CALL_END]) == t.len();
                    }
                }
            }
        }
    }
}

impl BodyReader for Block {
    fn push(&mut self, text: &str, out: &mut Vec<CallEv>) {
        if self.bad {
            return;
        }
        self.buf.push_str(text);
        if !self.step(out) {
            self.bad = true;
        }
    }

    /// A bare call needs its end marker; a block may lack its own when every call in it
    /// is whole.
    fn finish(&mut self, complete: bool, out: &mut Vec<CallEv>) -> Result<(), usize> {
        if self.bad {
            return Err(self.ended_at);
        }
        if self.block {
            return if self.phase == Phase::Between && self.calls > 0 {
                Ok(())
            } else {
                Err(self.ended_at)
            };
        }
        let rest = self.buf.trim();
        if complete && self.phase == Phase::After && (rest.is_empty() || rest == "```") {
            out.push(CallEv::End);
            Ok(())
        } else {
            Err(0)
        }
    }
}
