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
//! Contract shared by all parsers, streamed calls: a call is announced
//! ([`Delta::CallStart`]) once its name is complete and declared, then its arguments follow
//! in pieces ([`Delta::CallArgs`]) as long as everything so far is a valid JSON prefix,
//! and [`Delta::CallEnd`] confirms it once the call and its closing markup are complete.
//! A call that turns out malformed or truncated after it was announced gets
//! [`Delta::CallAbort`], and then its whole text comes as content. So joining the deltas
//! ([`join`]) gives exactly what a one-shot parse gives: complete calls, and malformed ones
//! as plain content; a streaming client sees the same content, and the aborted call as an
//! unfinished entry. Arguments are the model's JSON with the whitespace between tokens
//! removed (strings, numbers and key order as written), so the pieces join to exactly the
//! non-streamed `arguments`. Every format streams its arguments as they come; calls stand
//! one by one (a malformed call after good ones leaves those calls standing).
//!
//! Text that cannot be the start of a call is released at once; only a suffix that could
//! still become a marker is held. Whitespace next to a complete call is dropped. The
//! result never depends on how the text was split into pieces.

mod call;
mod deepseek;
mod glm4;
mod hermes;
mod json;
mod llama3;
pub mod reasoning;
#[cfg(test)]
mod tests;

use call::CallEv;

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
    /// A call begins; its name is complete and declared. Calls are numbered in the order
    /// of their `CallStart`s.
    CallStart(String),
    /// The next piece of the current call's arguments: all pieces so far form a valid
    /// JSON prefix, and all of them together the call's arguments.
    CallArgs(String),
    /// The current call is complete and valid.
    CallEnd,
    /// The current call turned out malformed or truncated: forget it. Its text follows as
    /// [`Delta::Content`].
    CallAbort,
}

/// An incremental tool-call parser for one generated message.
pub trait ToolParser: Send {
    /// Feeds the next piece of generated text (any split, even inside a marker) and
    /// appends what is now decided to `out`.
    fn push(&mut self, text: &str, out: &mut Vec<Delta>);

    /// The output ended: everything still held is decided (an unfinished call is aborted
    /// and becomes content) and appended to `out`.
    fn finish(&mut self, out: &mut Vec<Delta>);
}

/// A decided piece of a message, with calls whole (for APIs that send complete calls).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Whole {
    Content(String),
    Call(ToolCall),
}

/// Turns [`Delta`]s into [`Whole`] pieces: a call comes out at its `CallEnd`.
#[derive(Debug, Default)]
pub struct Assembler {
    pending: Option<ToolCall>,
}

impl Assembler {
    pub fn take(&mut self, d: Delta) -> Option<Whole> {
        match d {
            Delta::Content(c) => Some(Whole::Content(c)),
            Delta::CallStart(name) => {
                self.pending = Some(ToolCall {
                    name,
                    arguments: String::new(),
                });
                None
            }
            Delta::CallArgs(a) => {
                if let Some(p) = &mut self.pending {
                    p.arguments.push_str(&a);
                }
                None
            }
            Delta::CallEnd => self.pending.take().map(Whole::Call),
            Delta::CallAbort => {
                self.pending = None;
                None
            }
        }
    }
}

/// The tool-call syntaxes we read.
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
    let mut asm = Assembler::default();
    for d in deltas {
        match asm.take(d) {
            Some(Whole::Content(s)) => content.push_str(&s),
            Some(Whole::Call(c)) => calls.push(c),
            None => {}
        }
    }
    (content, calls)
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
/// until more text shows it is not the gap before a call; whitespace right after a
/// complete call is dropped. Call deltas go through here too, so that a call that is
/// aborted gives back exactly the text it would have given had it never looked like one.
#[derive(Debug, Default)]
pub(crate) struct TextOut {
    held_ws: String,
    after_call: bool,
    any_call: bool,
    /// A call was announced and is neither complete nor aborted.
    in_call: bool,
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

    /// Passes a call reader's decisions on.
    pub(crate) fn call_events(&mut self, evs: &mut Vec<CallEv>, out: &mut Vec<Delta>) {
        for e in evs.drain(..) {
            match e {
                CallEv::Start(name) => {
                    self.in_call = true;
                    out.push(Delta::CallStart(name));
                }
                CallEv::Args(a) => out.push(Delta::CallArgs(a)),
                CallEv::End => self.call_end(out),
            }
        }
    }

    /// The announced call is complete.
    pub(crate) fn call_end(&mut self, out: &mut Vec<Delta>) {
        if !self.in_call {
            return;
        }
        self.in_call = false;
        self.held_ws.clear();
        self.after_call = true;
        self.any_call = true;
        out.push(Delta::CallEnd);
    }

    /// The text read as a call (`raw`) is not one after all: the announced call, if any,
    /// is aborted and `raw` is content.
    pub(crate) fn not_a_call(&mut self, raw: &str, out: &mut Vec<Delta>) {
        if self.in_call {
            self.in_call = false;
            out.push(Delta::CallAbort);
        }
        self.text(raw, out);
    }

    pub(crate) fn finish(&mut self, out: &mut Vec<Delta>) {
        let ws = std::mem::take(&mut self.held_ws);
        if !self.any_call && !ws.is_empty() {
            push_content(out, ws);
        }
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

/// Reads the body of one call region as it arrives.
pub(crate) trait BodyReader: Send {
    /// Feeds body text; appends decided call events to `out`.
    fn push(&mut self, text: &str, out: &mut Vec<CallEv>);
    /// The body is over (`complete`: its end marker came; otherwise the output ended).
    /// Appends the last events (each complete call ends with [`CallEv::End`]). `Err(from)`
    /// when the region's text from body offset `from` on is not calls after all (0: the
    /// whole region, start marker included); calls that ended before it stand.
    fn finish(&mut self, complete: bool, out: &mut Vec<CallEv>) -> Result<(), usize>;
}

/// A format whose calls sit between start and end markers inside ordinary text.
pub(crate) trait BlockSpec: Send {
    /// Markers opening a call region.
    fn starts(&self) -> &'static [&'static str];
    /// The marker closing a region opened by `starts()[start]`.
    fn end(&self, start: usize) -> &'static str;
    /// A reader for the body of a region opened by `starts()[start]`.
    fn reader(&self, start: usize) -> Box<dyn BodyReader>;
}

/// An open region: its marker index, its raw text so far, its reader.
struct Region {
    start: usize,
    raw: String,
    reader: Box<dyn BodyReader>,
}

/// The streaming driver for [`BlockSpec`] formats.
pub(crate) struct Delimited<S: BlockSpec> {
    spec: S,
    buf: String,
    open: Option<Region>,
    evs: Vec<CallEv>,
    text: TextOut,
}

impl<S: BlockSpec> Delimited<S> {
    pub(crate) fn new(spec: S) -> Self {
        Delimited {
            spec,
            buf: String::new(),
            open: None,
            evs: Vec::new(),
            text: TextOut::default(),
        }
    }

    /// Feeds `n` bytes of `buf` to the open region's body.
    fn feed(&mut self, n: usize, out: &mut Vec<Delta>) {
        if let Some(r) = &mut self.open {
            r.reader.push(&self.buf[..n], &mut self.evs);
            r.raw.push_str(&self.buf[..n]);
            self.text.call_events(&mut self.evs, out);
        }
        self.buf.drain(..n);
    }

    /// Decides the open region: its calls, or its raw text as content.
    fn close(&mut self, complete: bool, out: &mut Vec<Delta>) {
        let Some(mut r) = self.open.take() else {
            return;
        };
        let res = r.reader.finish(complete, &mut self.evs);
        self.text.call_events(&mut self.evs, out);
        if let Err(from) = res {
            let skip = match from {
                0 => 0,
                n => self.spec.starts()[r.start].len() + n,
            };
            self.text.not_a_call(r.raw.get(skip..).unwrap_or(""), out);
        }
    }
}

impl<S: BlockSpec> ToolParser for Delimited<S> {
    fn push(&mut self, text: &str, out: &mut Vec<Delta>) {
        self.buf.push_str(text);
        loop {
            match &self.open {
                None => {
                    let starts = self.spec.starts();
                    if let Some((p, i)) = find_first(&self.buf, starts) {
                        self.text.text(&self.buf[..p], out);
                        let m = starts[i];
                        self.buf.drain(..p + m.len());
                        self.open = Some(Region {
                            start: i,
                            raw: m.to_string(),
                            reader: self.spec.reader(i),
                        });
                        continue;
                    }
                    let keep = partial_marker_len(&self.buf, starts);
                    let cut = self.buf.len() - keep;
                    self.text.text(&self.buf[..cut], out);
                    self.buf.drain(..cut);
                    return;
                }
                Some(r) => {
                    let end = self.spec.end(r.start);
                    let Some(q) = self.buf.find(end) else {
                        let keep = partial_marker_len(&self.buf, &[end]);
                        self.feed(self.buf.len() - keep, out);
                        return;
                    };
                    self.feed(q, out);
                    if let Some(r) = &mut self.open {
                        r.raw.push_str(end);
                    }
                    self.buf.drain(..end.len());
                    self.close(true, out);
                }
            }
        }
    }

    fn finish(&mut self, out: &mut Vec<Delta>) {
        if self.open.is_some() {
            self.feed(self.buf.len(), out);
            self.close(false, out);
        } else {
            let rest = std::mem::take(&mut self.buf);
            self.text.text(&rest, out);
        }
        self.buf.clear();
        self.text.finish(out);
    }
}
