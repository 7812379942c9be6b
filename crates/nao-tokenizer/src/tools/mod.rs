//! Tool calls in model output: each model family writes calls in its own syntax, and the
//! server has to turn that text back into OpenAI `tool_calls` while it streams.
//!
//! This lives next to the chat templates because both are the model's conversation
//! format: the template writes calls into the prompt, the parsers here read them back.
//! Nothing here knows HTTP or the engine; the server drives a [`ToolParser`] per choice.
//!
//! - [`ToolFormat`]: which syntax a model uses, detected from its chat template.
//! - [`ToolParser`]: incremental parsing, one implementation per format ([`hermes`]
//!   (Qwen 2.5/3, Hermes), [`deepseek`] (V3/R1), [`llama3`] (Llama 3.x JSON), [`glm4`]).
//! - [`CallSyntax`]: the literal text around a call, so the server can build a grammar
//!   that forces a call (`tool_choice: "required"` or a named function).
//! - [`reasoning`]: `<think>` … `</think>` split off as reasoning content.
//!
//! Contract shared by all parsers: a call is emitted only once it is complete and valid
//! (its JSON parses, its name is one of the declared tools); until then its text is held
//! back, and a call that turns out malformed or truncated comes out as plain content.
//! Text that cannot be the start of a call is released at once; only a suffix that could
//! still become a marker is held. Whitespace next to a call is dropped. The result never
//! depends on how the text was split into pieces.

mod deepseek;
mod glm4;
mod hermes;
mod llama3;
pub mod reasoning;
#[cfg(test)]
mod tests;

use serde_json::Value as Json;

/// One parsed call: the function's name and its arguments as a JSON object text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    pub name: String,
    /// Compact JSON text of an object (OpenAI sends arguments as a string).
    pub arguments: String,
}

/// What a parser decided about the text fed so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delta {
    /// Ordinary text, to send as `content`.
    Content(String),
    /// A complete, valid call.
    Call(ToolCall),
}

/// An incremental tool-call parser for one generated message.
pub trait ToolParser: Send {
    /// Feeds the next piece of generated text (any split, even inside a marker) and
    /// appends what is now decided to `out`.
    fn push(&mut self, text: &str, out: &mut Vec<Delta>);

    /// The output ended: everything still held is decided (an unfinished call becomes
    /// content) and appended to `out`.
    fn finish(&mut self, out: &mut Vec<Delta>);
}

/// The tool-call syntaxes we read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolFormat {
    /// `<tool_call>\n{"name": .., "arguments": {..}}\n</tool_call>` (Qwen 2.5/3, Hermes).
    Hermes,
    /// `<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\n```json …`.
    DeepSeek,
    /// `{"name": .., "parameters": {..}}` as the whole message, maybe after
    /// `<|python_tag|>` (Llama 3.x).
    Llama3,
    /// `NAME\n{json}` as the whole message after `<|assistant|>` (GLM-4).
    Glm4,
}

/// The literal text a format puts around calls, for building a grammar that forces one:
/// `block_open (call_open NAME name_args ARGS call_close) (separator …)* block_close`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallSyntax {
    pub block_open: &'static str,
    pub call_open: &'static str,
    pub name_args: &'static str,
    pub call_close: &'static str,
    pub separator: &'static str,
    pub block_close: &'static str,
    /// Whether the format can carry more than one call.
    pub parallel: bool,
}

impl ToolFormat {
    /// The format a chat template writes (the template text names its markers); Hermes
    /// when nothing matches, since it is the most common and its marker never appears
    /// by accident.
    pub fn detect(template: Option<&str>, architecture: &str) -> ToolFormat {
        let t = template.unwrap_or("");
        if t.contains("tool▁calls▁begin") || t.contains("tool_calls_begin") {
            ToolFormat::DeepSeek
        } else if t.contains("<tool_call>") {
            ToolFormat::Hermes
        } else if t.contains("<|python_tag|>")
            || (t.contains("<|start_header_id|>") && t.contains("\"parameters\""))
        {
            ToolFormat::Llama3
        } else if t.contains("<|observation|>") || architecture == "chatglm" {
            ToolFormat::Glm4
        } else {
            match architecture {
                "deepseek2" | "deepseek3" => ToolFormat::DeepSeek,
                "llama" if t.contains("<|eot_id|>") => ToolFormat::Llama3,
                "glm4" => ToolFormat::Glm4,
                _ => ToolFormat::Hermes,
            }
        }
    }

    /// A fresh parser. `names`: the declared tools; a call naming anything else is
    /// malformed. Empty: any name is accepted.
    pub fn parser(self, names: &[String]) -> Box<dyn ToolParser> {
        let names = names.to_vec();
        match self {
            ToolFormat::Hermes => Box::new(Delimited::new(hermes::Hermes { names })),
            ToolFormat::DeepSeek => Box::new(Delimited::new(deepseek::DeepSeek { names })),
            ToolFormat::Llama3 => Box::new(llama3::Llama3::new(names)),
            ToolFormat::Glm4 => Box::new(glm4::Glm4::new(names)),
        }
    }

    pub fn syntax(self) -> CallSyntax {
        match self {
            ToolFormat::Hermes => hermes::SYNTAX,
            ToolFormat::DeepSeek => deepseek::SYNTAX,
            ToolFormat::Llama3 => llama3::SYNTAX,
            ToolFormat::Glm4 => glm4::SYNTAX,
        }
    }
}

/// One-shot parse: the whole text fed at once, content deltas joined.
pub fn parse(format: ToolFormat, names: &[String], text: &str) -> (String, Vec<ToolCall>) {
    let mut p = format.parser(names);
    let mut out = Vec::new();
    p.push(text, &mut out);
    p.finish(&mut out);
    join(out)
}

/// Joins deltas into (content, calls).
pub fn join(deltas: Vec<Delta>) -> (String, Vec<ToolCall>) {
    let mut content = String::new();
    let mut calls = Vec::new();
    for d in deltas {
        match d {
            Delta::Content(s) => content.push_str(&s),
            Delta::Call(c) => calls.push(c),
        }
    }
    (content, calls)
}

/// Builds a call from a name and a JSON arguments value, checking both: the name must be
/// declared (when `names` is not empty), the arguments an object or a string holding one.
pub(crate) fn make_call(names: &[String], name: &str, args: Option<&Json>) -> Option<ToolCall> {
    let name = name.trim();
    if name.is_empty() || (!names.is_empty() && !names.iter().any(|n| n == name)) {
        return None;
    }
    let arguments = match args {
        None | Some(Json::Null) => "{}".to_string(),
        Some(o @ Json::Object(_)) => o.to_string(),
        Some(Json::String(s)) => match serde_json::from_str::<Json>(s) {
            Ok(o @ Json::Object(_)) => o.to_string(),
            _ => return None,
        },
        Some(_) => return None,
    };
    Some(ToolCall {
        name: name.to_string(),
        arguments,
    })
}

/// Parses `text` (trimmed) as exactly one JSON object.
pub(crate) fn json_object(text: &str) -> Option<serde_json::Map<String, Json>> {
    match serde_json::from_str::<Json>(text.trim()) {
        Ok(Json::Object(m)) => Some(m),
        _ => None,
    }
}

/// Length of the longest suffix of `text` that is a proper, non-empty prefix of one of
/// `markers` (at a char boundary): the part that must be held back.
pub(crate) fn partial_marker_len(text: &str, markers: &[&str]) -> usize {
    let mut best = 0;
    for m in markers {
        let max = m.len().saturating_sub(1).min(text.len());
        for k in (best + 1..=max).rev() {
            let start = text.len() - k;
            if text.is_char_boundary(start) && m.starts_with(&text[start..]) {
                best = k;
                break;
            }
        }
    }
    best
}

/// The earliest occurrence of any of `markers`: `(byte position, marker index)`.
pub(crate) fn find_first(text: &str, markers: &[&str]) -> Option<(usize, usize)> {
    markers
        .iter()
        .enumerate()
        .filter_map(|(i, m)| text.find(m).map(|p| (p, i)))
        .min_by_key(|&(p, i)| (p, std::cmp::Reverse(markers[i].len())))
}

/// Emits content with the whitespace next to calls removed: trailing whitespace is held
/// until more text shows it is not the gap before a call; whitespace right after a call
/// is dropped.
#[derive(Debug, Default)]
pub(crate) struct TextOut {
    held_ws: String,
    after_call: bool,
    any_call: bool,
}

impl TextOut {
    pub(crate) fn text(&mut self, s: &str, out: &mut Vec<Delta>) {
        let mut s = s;
        if self.after_call {
            let t = s.trim_start();
            if t.is_empty() {
                return;
            }
            s = t;
            self.after_call = false;
        }
        let body = s.trim_end();
        if body.is_empty() {
            self.held_ws.push_str(s);
            return;
        }
        let mut text = std::mem::take(&mut self.held_ws);
        text.push_str(body);
        self.held_ws.push_str(&s[body.len()..]);
        push_content(out, text);
    }

    pub(crate) fn call(&mut self, c: ToolCall, out: &mut Vec<Delta>) {
        self.held_ws.clear();
        self.after_call = true;
        self.any_call = true;
        out.push(Delta::Call(c));
    }

    pub(crate) fn finish(&mut self, out: &mut Vec<Delta>) {
        let ws = std::mem::take(&mut self.held_ws);
        if !self.any_call && !ws.is_empty() {
            push_content(out, ws);
        }
    }

    /// End of message for parsers that hold a possible call in `buf` until the end: the
    /// calls parsed from it (`calls`, `None` when it was not a valid call or was never one)
    /// are emitted and the buffer dropped; otherwise the buffer is emitted as text. Then the
    /// text stream ends.
    pub(crate) fn finish_held(
        &mut self,
        calls: Option<Vec<ToolCall>>,
        buf: &mut String,
        out: &mut Vec<Delta>,
    ) {
        if let Some(calls) = calls {
            for c in calls {
                self.call(c, out);
            }
            buf.clear();
        }
        let b = std::mem::take(buf);
        self.text(&b, out);
        self.finish(out);
    }
}

fn push_content(out: &mut Vec<Delta>, text: String) {
    if text.is_empty() {
        return;
    }
    if let Some(Delta::Content(last)) = out.last_mut() {
        last.push_str(&text);
    } else {
        out.push(Delta::Content(text));
    }
}

/// A format whose calls sit between start and end markers inside ordinary text.
pub(crate) trait BlockSpec: Send {
    /// Markers opening a call region.
    fn starts(&self) -> &'static [&'static str];
    /// The marker closing a region opened by `starts()[start]`.
    fn end(&self, start: usize) -> &'static str;
    /// The calls in a region's body (`complete`: the end marker was seen; otherwise the
    /// output ended inside the region). `None`: malformed, the region is content.
    fn parse(&self, start: usize, body: &str, complete: bool) -> Option<Vec<ToolCall>>;
}

/// The streaming driver for [`BlockSpec`] formats.
pub(crate) struct Delimited<S: BlockSpec> {
    spec: S,
    buf: String,
    /// Inside a region opened by this start marker (which is still at the front of `buf`).
    open: Option<usize>,
    text: TextOut,
}

impl<S: BlockSpec> Delimited<S> {
    pub(crate) fn new(spec: S) -> Self {
        Delimited {
            spec,
            buf: String::new(),
            open: None,
            text: TextOut::default(),
        }
    }

    /// Decides the region at the front of `buf`: its calls, or its raw text as content.
    fn emit_region(
        &mut self,
        start: usize,
        body_end: usize,
        raw_end: usize,
        complete: bool,
        out: &mut Vec<Delta>,
    ) {
        let m = self.spec.starts()[start].len();
        match self.spec.parse(start, &self.buf[m..body_end], complete) {
            Some(calls) if !calls.is_empty() => {
                for c in calls {
                    self.text.call(c, out);
                }
            }
            _ => self.text.text(&self.buf[..raw_end], out),
        }
    }
}

impl<S: BlockSpec> ToolParser for Delimited<S> {
    fn push(&mut self, text: &str, out: &mut Vec<Delta>) {
        self.buf.push_str(text);
        loop {
            match self.open {
                None => {
                    let starts = self.spec.starts();
                    if let Some((p, i)) = find_first(&self.buf, starts) {
                        self.text.text(&self.buf[..p], out);
                        self.buf.drain(..p);
                        self.open = Some(i);
                        continue;
                    }
                    let keep = partial_marker_len(&self.buf, starts);
                    let cut = self.buf.len() - keep;
                    self.text.text(&self.buf[..cut], out);
                    self.buf.drain(..cut);
                    return;
                }
                Some(i) => {
                    let m = self.spec.starts()[i].len();
                    let end = self.spec.end(i);
                    let Some(q) = self.buf[m..].find(end) else {
                        return;
                    };
                    let (body_end, raw_end) = (m + q, m + q + end.len());
                    self.emit_region(i, body_end, raw_end, true, out);
                    self.buf.drain(..raw_end);
                    self.open = None;
                }
            }
        }
    }

    fn finish(&mut self, out: &mut Vec<Delta>) {
        match self.open.take() {
            Some(i) => {
                let n = self.buf.len();
                self.emit_region(i, n, n, false, out);
            }
            None => {
                let rest = std::mem::take(&mut self.buf);
                self.text.text(&rest, out);
            }
        }
        self.buf.clear();
        self.text.finish(out);
    }
}
