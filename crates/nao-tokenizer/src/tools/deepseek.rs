//! DeepSeek V3 / R1 calls:
//! `<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\n```json\n{..}\n```<｜tool▁call▁end｜>…<｜tool▁calls▁end｜>`,
//! and V3.1's shorter `<｜tool▁call▁begin｜>NAME<｜tool▁sep｜>{..}<｜tool▁call▁end｜>`.
//! R1 sometimes drops the outer `calls` markers or spells them with `_` or spaces, so
//! those variants open a region too (as llama.cpp's parser accepts them).

use super::{json_object, make_call, BlockSpec, CallSyntax, ToolCall};
use serde_json::Value as Json;

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

impl DeepSeek {
    /// One call's inner text (between `<｜tool▁call▁begin｜>` and `<｜tool▁call▁end｜>`).
    fn one(&self, inner: &str) -> Option<ToolCall> {
        let (head, rest) = inner.split_once(SEP)?;
        let (name, args) = if head.trim() == "function" {
            // V3 / R1: `NAME\n```json\n{..}\n```` after the separator.
            rest.split_once('\n')?
        } else {
            (head, rest)
        };
        let args = strip_fence(args.trim());
        let obj = json_object(args)?;
        make_call(&self.names, name, Some(&Json::Object(obj)))
    }
}

/// `` ```json\n{..}\n``` `` → `{..}`; unfenced text unchanged.
fn strip_fence(s: &str) -> &str {
    match s.strip_prefix("```") {
        Some(rest) => {
            let rest = rest.strip_prefix("json").unwrap_or(rest);
            rest.strip_suffix("```").unwrap_or(rest).trim()
        }
        None => s,
    }
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

    /// Every call in the block must be complete and valid, with only whitespace between
    /// them; a block cut off by the end of output still counts when each call in it is
    /// whole (R1 sometimes ends its turn without `<｜tool▁calls▁end｜>`).
    fn parse(&self, start: usize, body: &str, complete: bool) -> Option<Vec<ToolCall>> {
        if STARTS[start] == CALL_BEGIN {
            if !complete {
                return None;
            }
            return Some(vec![self.one(body)?]);
        }
        let mut calls = Vec::new();
        let mut rest = body;
        loop {
            let t = rest.trim_start();
            if t.is_empty() {
                break;
            }
            let inner = t.strip_prefix(CALL_BEGIN)?;
            let (inner, after) = inner.split_once(CALL_END)?;
            calls.push(self.one(inner)?);
            rest = after;
        }
        (!calls.is_empty()).then_some(calls)
    }
}
