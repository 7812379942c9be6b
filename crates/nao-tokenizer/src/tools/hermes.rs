//! Hermes-style calls, as Qwen 2.5 / Qwen 3 (and NousResearch Hermes) write them:
//! `<tool_call>\n{"name": "f", "arguments": {..}}\n</tool_call>`, one block per call,
//! blocks back to back for parallel calls.
//!
//! Small Qwen 2.5 (Coder) models often write the same object in a Markdown block instead
//! (`` ```json\n{"name": "f", "arguments": {..}}\n``` ``); llama.cpp's Hermes parser
//! accepts that too, and so do we, but only when the object is a call of a declared tool:
//! any other JSON block stays content (it is held until its closing fence).

use super::call::{CallEv, ObjectCall};
use super::{BlockSpec, BodyReader, CallSyntax};

const STARTS: &[&str] = &["<tool_call>", "```json"];
const ENDS: &[&str] = &["</tool_call>", "```"];

/// The shape Qwen's chat template shows the model (and renders past calls in).
pub(super) const SYNTAX: CallSyntax = CallSyntax {
    block_open: "",
    call_open: "<tool_call>\n{\"name\": \"",
    name_args: "\", \"arguments\": ",
    call_close: "}\n</tool_call>",
    separator: "\n",
    block_close: "",
    parallel: true,
};

pub(super) struct Hermes {
    pub(super) names: Vec<String>,
}

impl BlockSpec for Hermes {
    fn starts(&self) -> &'static [&'static str] {
        STARTS
    }

    fn end(&self, start: usize) -> &'static str {
        ENDS[start]
    }

    fn reader(&self, _start: usize) -> Box<dyn BodyReader> {
        Box::new(Body {
            names: self.names.clone(),
            call: ObjectCall::wrapped(false),
        })
    }
}

/// One JSON object with `name` and `arguments` (or `parameters`), streamed as it comes. A
/// body without its `</tool_call>` is still a call when its JSON is complete: models
/// sometimes end the turn right after the object.
struct Body {
    names: Vec<String>,
    call: ObjectCall,
}

impl BodyReader for Body {
    fn push(&mut self, text: &str, out: &mut Vec<CallEv>) {
        self.call.push(text, &self.names, out);
    }

    fn finish(&mut self, _complete: bool, out: &mut Vec<CallEv>) -> Result<(), usize> {
        if self.call.complete() {
            out.push(CallEv::End);
            Ok(())
        } else {
            Err(0)
        }
    }
}
