//! Reasoning ("thinking") text: `<think>` … `</think>` at the start of a message, as Qwen 3,
//! DeepSeek R1 and QwQ write it, goes to `reasoning_content` instead of `content`.
//!
//! Some templates open `<think>` in the prompt, so the output starts inside the reasoning
//! and only `</think>` appears: [`ReasoningSplitter::new`] takes that from the caller
//! (who sees the rendered prompt). Otherwise the message must start (after whitespace)
//! with `<think>`; any other text makes the whole message content, unchanged. Whitespace
//! around the reasoning is trimmed, as llama.cpp does. An unclosed `<think>` (the output
//! was cut off) stays reasoning.

use super::partial_marker_len;

pub const OPEN: &str = "<think>";
pub const CLOSE: &str = "</think>";

/// A piece of a message, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Reasoning(String),
    Content(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing but whitespace or part of `<think>` yet.
    Start,
    Thinking,
    /// Just after `</think>`: leading whitespace of the content is dropped.
    After,
    Content,
}

/// Splits one message's text, fed in pieces, into reasoning and content.
#[derive(Debug, Clone)]
pub struct ReasoningSplitter {
    state: State,
    buf: String,
    /// Reasoning has started emitting (its leading whitespace is gone).
    started: bool,
    /// Trailing whitespace of the reasoning, held until more reasoning follows.
    held_ws: String,
}

impl ReasoningSplitter {
    /// `inside`: the prompt already opened `<think>`.
    pub fn new(inside: bool) -> Self {
        ReasoningSplitter {
            state: if inside {
                State::Thinking
            } else {
                State::Start
            },
            buf: String::new(),
            started: false,
            held_ws: String::new(),
        }
    }

    /// Whether a rendered prompt ends inside an opened `<think>` block.
    pub fn prompt_opens_thinking(prompt: &str) -> bool {
        let p = prompt.trim_end();
        match (p.rfind(OPEN), p.rfind(CLOSE)) {
            (Some(o), Some(c)) => o > c && p.ends_with(OPEN),
            (Some(_), None) => p.ends_with(OPEN),
            _ => false,
        }
    }

    fn reasoning(&mut self, s: &str, out: &mut Vec<Part>) {
        let s = if self.started { s } else { s.trim_start() };
        let body = s.trim_end();
        if body.is_empty() {
            if self.started {
                self.held_ws.push_str(s);
            }
            return;
        }
        self.started = true;
        let mut text = std::mem::take(&mut self.held_ws);
        text.push_str(body);
        self.held_ws.push_str(&s[body.len()..]);
        push(out, Part::Reasoning(text));
    }

    pub fn push(&mut self, text: &str, out: &mut Vec<Part>) {
        self.buf.push_str(text);
        loop {
            match self.state {
                State::Start => {
                    let s = self.buf.trim_start();
                    if let Some(rest) = s.strip_prefix(OPEN) {
                        let cut = self.buf.len() - rest.len();
                        self.buf.drain(..cut);
                        self.state = State::Thinking;
                        continue;
                    }
                    if OPEN.starts_with(s) {
                        return;
                    }
                    self.state = State::Content;
                }
                State::Thinking => {
                    if let Some(p) = self.buf.find(CLOSE) {
                        let b = std::mem::take(&mut self.buf);
                        self.reasoning(&b[..p], out);
                        self.held_ws.clear();
                        self.buf.push_str(&b[p + CLOSE.len()..]);
                        self.state = State::After;
                        continue;
                    }
                    let keep = partial_marker_len(&self.buf, &[CLOSE]);
                    let b = std::mem::take(&mut self.buf);
                    let cut = b.len() - keep;
                    self.reasoning(&b[..cut], out);
                    self.buf.push_str(&b[cut..]);
                    return;
                }
                State::After => {
                    let s = self.buf.trim_start();
                    if s.is_empty() {
                        self.buf.clear();
                        return;
                    }
                    let cut = self.buf.len() - s.len();
                    self.buf.drain(..cut);
                    self.state = State::Content;
                }
                State::Content => {
                    if !self.buf.is_empty() {
                        push(out, Part::Content(std::mem::take(&mut self.buf)));
                    }
                    return;
                }
            }
        }
    }

    /// The message ended: text still held is decided.
    pub fn finish(&mut self, out: &mut Vec<Part>) {
        let b = std::mem::take(&mut self.buf);
        match self.state {
            State::Start if !b.is_empty() => push(out, Part::Content(b)),
            State::Thinking => self.reasoning(&b, out),
            _ => {}
        }
        self.held_ws.clear();
    }
}

fn push(out: &mut Vec<Part>, p: Part) {
    match (out.last_mut(), p) {
        (Some(Part::Reasoning(a)), Part::Reasoning(b)) => a.push_str(&b),
        (Some(Part::Content(a)), Part::Content(b)) => a.push_str(&b),
        (_, p) => out.push(p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(inside: bool, pieces: &[&str]) -> (String, String) {
        let mut s = ReasoningSplitter::new(inside);
        let mut out = Vec::new();
        for p in pieces {
            s.push(p, &mut out);
        }
        s.finish(&mut out);
        let (mut r, mut c) = (String::new(), String::new());
        for p in out {
            match p {
                Part::Reasoning(x) => r.push_str(&x),
                Part::Content(x) => c.push_str(&x),
            }
        }
        (r, c)
    }

    fn every_split(inside: bool, text: &str, want: (&str, &str)) {
        let want = (want.0.to_string(), want.1.to_string());
        assert_eq!(split(inside, &[text]), want, "one shot: {text:?}");
        let cuts: Vec<usize> = (0..=text.len())
            .filter(|&i| text.is_char_boundary(i))
            .collect();
        for &i in &cuts {
            assert_eq!(
                split(inside, &[&text[..i], &text[i..]]),
                want,
                "split at {i}: {text:?}"
            );
        }
        let chars: Vec<String> = text.chars().map(String::from).collect();
        let refs: Vec<&str> = chars.iter().map(String::as_str).collect();
        assert_eq!(split(inside, &refs), want, "char by char: {text:?}");
    }

    #[test]
    fn think_block_at_start_is_reasoning() {
        every_split(
            false,
            "<think>\nThe user wants a greeting.\n</think>\n\nHello!",
            ("The user wants a greeting.", "Hello!"),
        );
        every_split(false, "  <think>a b</think>c", ("a b", "c"));
    }

    #[test]
    fn prompt_opened_thinking_needs_only_the_close_tag() {
        every_split(
            true,
            "\nstep 1\nstep 2\n</think>\nanswer",
            ("step 1\nstep 2", "answer"),
        );
        assert!(ReasoningSplitter::prompt_opens_thinking(
            "<|im_start|>assistant\n<think>\n"
        ));
        assert!(!ReasoningSplitter::prompt_opens_thinking(
            "<|im_start|>assistant\n<think>\n\n</think>\n\n"
        ));
        assert!(!ReasoningSplitter::prompt_opens_thinking(
            "<|im_start|>assistant\n"
        ));
    }

    #[test]
    fn text_without_think_is_untouched() {
        every_split(
            false,
            "\n Hello <think>x</think>",
            ("", "\n Hello <think>x</think>"),
        );
        every_split(false, "<thin", ("", "<thin"));
        every_split(false, "<b>bold</b>", ("", "<b>bold</b>"));
        every_split(false, "", ("", ""));
    }

    #[test]
    fn unclosed_reasoning_stays_reasoning() {
        every_split(
            false,
            "<think>I was cut off </thi",
            ("I was cut off </thi", ""),
        );
        every_split(true, "still thinking", ("still thinking", ""));
    }

    #[test]
    fn multibyte_text_splits_cleanly() {
        every_split(false, "<think>日本語 ✓</think>答え", ("日本語 ✓", "答え"));
    }
}
