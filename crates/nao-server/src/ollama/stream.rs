//! Newline-delimited JSON for Ollama's streamed responses (`stream` unset or `true`).
//!
//! Like the SSE body, [`NdjsonStream`] is the response body itself and owns the engine
//! receiver, so a client that goes away drops it and cancels the sequence; no task is
//! spawned. Lines: one `done: false` object per piece of text, then one `done: true`
//! object with `done_reason` and the timings. An engine failure or the server shutting
//! down ends the stream with an `{"error": "..."}` line, which is how Ollama reports
//! errors after the status line went out (its clients raise on such a line).

use super::response::{self, Kind, Summary};
use crate::error::ApiError;
use crate::metrics::{log_line, LogTokens};
use crate::openai::Events;
use axum::body::Bytes;
use futures_core::Stream;
use nao_engine::api::{EngineHandle, Event, Finish, TokenLogprob, Usage};
use nao_tokenizer::tools::reasoning::{Part, ReasoningSplitter};
use nao_tokenizer::tools::{Assembler, Delta, ToolParser, Whole};
use serde_json::Value;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// What `/api/generate` needs to return the legacy `context` on its last line: the
/// prompt's token ids and the tokenizer to encode the answer with.
pub struct ContextOut {
    pub engine: Arc<dyn EngineHandle>,
    pub prompt: Vec<u32>,
}

impl ContextOut {
    /// Prompt ids followed by the answer re-tokenized. The engine reports text, not ids,
    /// so the answer's ids are re-derived; they can differ from the sampled ones at token
    /// boundaries, which a client sending them back as context does not notice.
    pub fn ids(&self, answer: &str) -> Vec<u32> {
        let mut ids = self.prompt.clone();
        ids.extend(self.engine.tokenize(answer, false));
        ids
    }
}

/// Request timing, measured here so it covers what the client waits for.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// The request arrived.
    pub start: Instant,
    /// It was submitted to the engine.
    pub submitted: Instant,
}

impl Clock {
    /// The timings of a request whose `Done` event arrives now.
    pub fn summary(&self, done: FinishInfo) -> Summary {
        let now = Instant::now();
        Summary {
            finish: done.finish,
            usage: done.usage,
            total: now - self.start,
            prepare: self.submitted - self.start,
            time_to_first_token: done.time_to_first_token,
            generation: now - self.submitted,
        }
    }
}

/// The fields of [`Event::Done`].
#[derive(Debug, Clone, Copy)]
pub struct FinishInfo {
    pub finish: Finish,
    pub usage: Usage,
    pub time_to_first_token: Duration,
}

pub struct NdjsonStream {
    /// Chat with tools: the call parser (calls go out as `message.tool_calls` lines).
    tools: Option<Box<dyn ToolParser>>,
    /// Ollama sends each call whole: streamed call deltas are put together here.
    calls: Assembler,
    /// `think`: reasoning goes out as `thinking`.
    reasoning: Option<ReasoningSplitter>,
    kind: Kind,
    /// The model name echoed in every line.
    model: String,
    events: Events,
    abort: Pin<Box<dyn Future<Output = ()> + Send>>,
    queue: VecDeque<Bytes>,
    ended: bool,
    logprobs: bool,
    context: Option<ContextOut>,
    /// The answer so far; kept only when `context` needs it.
    text: String,
    clock: Clock,
    path: &'static str,
    completion_tokens: usize,
    prompt_tokens: usize,
    /// Set when the stream ended by itself (not by the client leaving), for the log line.
    outcome: &'static str,
}

impl NdjsonStream {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        kind: Kind,
        model: String,
        events: Events,
        abort: Pin<Box<dyn Future<Output = ()> + Send>>,
        logprobs: bool,
        context: Option<ContextOut>,
        clock: Clock,
        path: &'static str,
    ) -> Self {
        let prompt_tokens = events.prompt_tokens;
        NdjsonStream {
            tools: None,
            calls: Assembler::default(),
            reasoning: None,
            kind,
            model,
            events,
            abort,
            queue: VecDeque::new(),
            ended: false,
            logprobs,
            context,
            text: String::new(),
            clock,
            path,
            completion_tokens: 0,
            prompt_tokens,
            outcome: " (client disconnected)",
        }
    }

    fn push(&mut self, v: &Value) {
        self.queue.push_back(Bytes::from(format!("{v}\n")));
    }

    /// Splits reasoning off (`think`; `Some(true)`: the prompt opened `<think>`).
    pub fn with_reasoning(mut self, reasoning: Option<bool>) -> Self {
        self.reasoning = reasoning.map(ReasoningSplitter::new);
        self
    }

    /// Reasoning and content of new text, as lines; logprobs go with the first.
    fn on_text(&mut self, text: &str, lps: Option<&[TokenLogprob]>, end: bool) {
        let mut lps = lps;
        let parts = match &mut self.reasoning {
            Some(r) => {
                let mut parts = Vec::new();
                r.push(text, &mut parts);
                if end {
                    r.finish(&mut parts);
                }
                parts
            }
            None => vec![Part::Content(text.to_string())],
        };
        for p in parts {
            match p {
                Part::Reasoning(r) => {
                    let mut c = response::chunk(self.kind, &self.model, "", lps.take());
                    response::put_thinking(&mut c, self.kind, &r);
                    self.push(&c);
                }
                Part::Content(c) => match &mut self.tools {
                    Some(p) => {
                        let mut deltas = Vec::new();
                        p.push(&c, &mut deltas);
                        self.emit(deltas, lps.take());
                    }
                    None if c.is_empty() && end => {}
                    None => {
                        let c = response::chunk(self.kind, &self.model, &c, lps.take());
                        self.push(&c);
                    }
                },
            }
        }
        if let Some(l) = lps.filter(|l| !l.is_empty()) {
            let c = response::chunk(self.kind, &self.model, "", Some(l));
            self.push(&c);
        }
    }

    /// Parses the streamed text for tool calls (chat requests that declared tools).
    pub fn with_tool_parser(mut self, parser: Option<Box<dyn ToolParser>>) -> Self {
        self.tools = parser;
        self
    }

    /// Lines for parsed output; logprobs go with the first (or alone when everything was
    /// held back).
    fn emit(&mut self, deltas: Vec<Delta>, lps: Option<&[TokenLogprob]>) {
        let mut lps = lps;
        for d in deltas {
            let c = match self.calls.take(d) {
                None => continue,
                Some(Whole::Content(text)) => {
                    response::chunk(self.kind, &self.model, &text, lps.take())
                }
                Some(Whole::Call(call)) => {
                    let mut c = response::chunk(self.kind, &self.model, "", lps.take());
                    c["message"]["tool_calls"] = response::tool_calls_json(&[call]);
                    c
                }
            };
            self.push(&c);
        }
        if let Some(l) = lps.filter(|l| !l.is_empty()) {
            let c = response::chunk(self.kind, &self.model, "", Some(l));
            self.push(&c);
        }
    }

    fn fail(&mut self, err: ApiError, outcome: &'static str) {
        self.events.cancel();
        self.push(&err.to_ollama_json());
        self.ended = true;
        self.outcome = outcome;
    }

    fn on_event(&mut self, ev: Event) {
        match ev {
            Event::Text { text, logprobs } => {
                if text.is_empty() && logprobs.is_empty() {
                    return;
                }
                if self.context.is_some() {
                    self.text.push_str(&text);
                }
                let lps = self.logprobs.then_some(logprobs.as_slice());
                self.on_text(&text, lps, false);
            }
            Event::Done {
                finish,
                usage,
                time_to_first_token,
            } => {
                if self.reasoning.is_some() {
                    self.on_text("", None, true);
                }
                if let Some(p) = &mut self.tools {
                    let mut deltas = Vec::new();
                    p.finish(&mut deltas);
                    self.emit(deltas, None);
                }
                self.completion_tokens = usage.completion_tokens;
                self.prompt_tokens = usage.prompt_tokens;
                let summary = self.clock.summary(FinishInfo {
                    finish,
                    usage,
                    time_to_first_token,
                });
                let context = self.context.as_ref().map(|c| c.ids(&self.text));
                // Streamed logprobs went out with their chunks.
                let line =
                    response::final_line(self.kind, &self.model, "", None, &summary, context);
                self.push(&line);
                self.ended = true;
                self.outcome = "";
            }
            Event::Error(msg) => self.fail(ApiError::Internal(msg), " (engine error)"),
        }
    }
}

impl Stream for NdjsonStream {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(line) = this.queue.pop_front() {
                return Poll::Ready(Some(Ok(line)));
            }
            if this.ended {
                return Poll::Ready(None);
            }
            if this.abort.as_mut().poll(cx).is_ready() {
                this.fail(
                    ApiError::Unavailable("the server is shutting down".into()),
                    " (ended by shutdown)",
                );
                continue;
            }
            match this.events.poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some((_, ev))) => this.on_event(ev),
                // `Events` turns a channel closed without `Done` into an `Error`, so this
                // only follows a final line.
                Poll::Ready(None) => this.ended = true,
            }
        }
    }
}

impl Drop for NdjsonStream {
    /// The log line of a streamed request, written when its body is done or dropped.
    fn drop(&mut self) {
        log_line(
            "POST",
            self.path,
            200,
            self.clock.start.elapsed(),
            Some(LogTokens {
                prompt: self.prompt_tokens,
                completion: self.completion_tokens,
            }),
            self.outcome,
        );
    }
}
