//! Server-sent events for `"stream": true`.
//!
//! [`SseStream`] is the response body itself: it owns the engine receivers (through
//! [`Events`]) and turns events into `data: {json}\n\n` frames as the client reads them.
//! No task is spawned, so nothing else keeps a request alive: when the client goes away,
//! hyper drops the body, the receivers drop, and the engine cancels the sequences.
//!
//! Frame order per response: the role chunk of every choice (chat), then text chunks as
//! they come, one finish chunk per choice, the usage chunk when asked for, `[DONE]`.
//! An engine error or the server shutting down ends the stream with an `error` data line
//! followed by `[DONE]`.

use crate::error::ApiError;
use crate::metrics::{log_line, LogTokens};
use crate::openai::output::{call_args_delta, call_head_delta, Out, OutputParser, OutputSpec};
use crate::openai::response::{self, Kind, Meta};
use crate::openai::{Events, UsageSum};
use axum::body::Bytes;
use futures_core::Stream;
use nao_engine::api::Event;
use nao_engine::api::TokenLogprob;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

pub struct SseStream {
    meta: Meta,
    events: Events,
    /// Resolves when the server's shutdown drain is over.
    abort: Pin<Box<dyn Future<Output = ()> + Send>>,
    /// Frames ready to go out.
    queue: VecDeque<Bytes>,
    /// Legacy `text_offset` per choice.
    offsets: Vec<usize>,
    /// Per chat choice: the reasoning / tool-call parser (`None`: text passes through).
    parsers: Vec<Option<OutputParser>>,
    /// Per choice: tool calls announced so far (the next call's `index`).
    n_calls: Vec<usize>,
    /// Per choice: calls complete, and whether an announced call was aborted.
    done_calls: Vec<usize>,
    aborted: Vec<bool>,
    usage: UsageSum,
    /// The last frame is queued; nothing more will be produced.
    ended: bool,
    path: &'static str,
    start: Instant,
    /// Set when the stream ended by itself (not by the client leaving), for the log line.
    outcome: &'static str,
}

impl SseStream {
    pub fn new(
        meta: Meta,
        events: Events,
        output: &OutputSpec,
        abort: Pin<Box<dyn Future<Output = ()> + Send>>,
        path: &'static str,
        start: Instant,
    ) -> Self {
        let n = events.n_choices();
        let mut s = SseStream {
            meta,
            events,
            abort,
            queue: VecDeque::new(),
            offsets: vec![0; n],
            parsers: (0..n).map(|_| output.parser()).collect(),
            n_calls: vec![0; n],
            done_calls: vec![0; n],
            aborted: vec![false; n],
            usage: UsageSum::default(),
            ended: false,
            path,
            start,
            outcome: " (client disconnected)",
        };
        if s.meta.kind == Kind::Chat {
            for i in 0..n {
                let c = response::role_chunk(&s.meta, i);
                s.push(&c);
            }
        }
        s
    }

    fn push(&mut self, v: &Value) {
        self.queue.push_back(Bytes::from(format!("data: {v}\n\n")));
    }

    /// Ends the stream early with an error line; remaining sequences are cancelled.
    fn fail(&mut self, err: ApiError, outcome: &'static str) {
        self.events.cancel();
        self.push(&err.to_json());
        self.finish(outcome);
    }

    fn finish(&mut self, outcome: &'static str) {
        self.queue
            .push_back(Bytes::from_static(b"data: [DONE]\n\n"));
        self.ended = true;
        self.outcome = outcome;
    }

    /// Chunks for parsed output of choice `i`; `lps` go with the first one (or alone
    /// with empty content when the parser held everything back).
    ///
    /// A call goes out as API.md says: `id`, `type` and `name` once, then `arguments` in
    /// pieces. An announced call that turns out malformed cannot be taken back: its entry
    /// stays with the arguments sent so far (a valid JSON prefix), its text follows as
    /// `content` (the same content the non-streamed response has), and the choice's
    /// `finish_reason` is the engine's own (`stop`/`length`), never `tool_calls`.
    fn emit(&mut self, i: usize, outs: Vec<Out>, lps: &[TokenLogprob]) {
        let mut lps = Some(lps);
        for o in outs {
            let delta = match o {
                Out::Reasoning(r) => json!({"reasoning_content": r}),
                Out::Content(c) => json!({"content": c}),
                Out::CallStart(id, name) => {
                    let k = self.n_calls[i];
                    self.n_calls[i] += 1;
                    call_head_delta(k, &id, &name)
                }
                Out::CallArgs(a) => call_args_delta(self.n_calls[i].saturating_sub(1), &a),
                Out::CallEnd => {
                    self.done_calls[i] += 1;
                    continue;
                }
                Out::CallAbort => {
                    self.aborted[i] = true;
                    continue;
                }
            };
            let c =
                response::chat_delta_chunk(&self.meta, i, delta, lps.take().unwrap_or_default());
            self.push(&c);
        }
        if let Some(lps) = lps.filter(|l| !l.is_empty()) {
            let c = response::chat_delta_chunk(&self.meta, i, json!({"content": ""}), lps);
            self.push(&c);
        }
    }

    fn on_event(&mut self, i: usize, ev: Event) {
        match ev {
            Event::Text { text, logprobs } => {
                if text.is_empty() && logprobs.is_empty() {
                    return;
                }
                if let Some(p) = &mut self.parsers[i] {
                    let outs = p.push(&text);
                    self.emit(i, outs, &logprobs);
                    return;
                }
                let c =
                    response::delta_chunk(&self.meta, i, &text, &logprobs, &mut self.offsets[i]);
                self.push(&c);
            }
            Event::Done { finish, usage, .. } => {
                self.usage.add(self.events.prompt_idx(i), usage);
                if let Some(p) = &mut self.parsers[i] {
                    let outs = p.finish();
                    self.emit(i, outs, &[]);
                }
                let called = self.done_calls[i] > 0 && !self.aborted[i];
                let c = response::finish_chunk(&self.meta, i, finish, called);
                self.push(&c);
            }
            Event::Error(msg) => self.fail(ApiError::Internal(msg), " (engine error)"),
        }
    }
}

impl Stream for SseStream {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(frame) = this.queue.pop_front() {
                return Poll::Ready(Some(Ok(frame)));
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
                Poll::Ready(Some((i, ev))) => this.on_event(i, ev),
                Poll::Ready(None) => {
                    if this.meta.include_usage {
                        let c = response::usage_chunk(&this.meta, this.usage.total);
                        this.push(&c);
                    }
                    this.finish("");
                }
            }
        }
    }
}

impl Drop for SseStream {
    /// The log line of a streamed request, written when its body is done or dropped.
    fn drop(&mut self) {
        let u = self.usage.total;
        log_line(
            "POST",
            self.path,
            200,
            self.start.elapsed(),
            Some(LogTokens {
                prompt: u.prompt_tokens.max(self.events.prompt_tokens),
                completion: u.completion_tokens,
            }),
            self.outcome,
        );
    }
}
