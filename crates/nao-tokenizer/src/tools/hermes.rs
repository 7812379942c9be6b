//! Hermes-style calls, as Qwen 2.5 / Qwen 3 (and NousResearch Hermes) write them:
//! `<tool_call>\n{"name": "f", "arguments": {..}}\n</tool_call>`, one block per call,
//! blocks back to back for parallel calls.
//!
//! Small Qwen 2.5 (Coder) models often write the same object in a Markdown block instead
//! (`` ```json\n{"name": "f", "arguments": {..}}\n``` ``); llama.cpp's Hermes parser
//! accepts that too, and so do we, but only when the object is a call of a declared tool:
//! any other JSON block stays content (it is held until its closing fence).

use super::{json_object, make_call, BlockSpec, CallSyntax, ToolCall};

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

    /// One JSON object with `name` and `arguments` (or `parameters`). A body without its
    /// `</tool_call>` is still a call when its JSON is complete: models sometimes end the
    /// turn right after the object.
    fn parse(&self, _start: usize, body: &str, _complete: bool) -> Option<Vec<ToolCall>> {
        let obj = json_object(body)?;
        let name = obj.get("name")?.as_str()?;
        let args = obj.get("arguments").or_else(|| obj.get("parameters"));
        Some(vec![make_call(&self.names, name, args)?])
    }
}
