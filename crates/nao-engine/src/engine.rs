//! The serving engine: one thread owns the model and runs continuous batching; the server
//! talks to it through [`EngineClient`], an [`EngineHandle`].
//!
//! Each loop turn the engine takes new requests from its channel, drops requests whose
//! client went away (their event channel closed), asks the [`Scheduler`] for a step, runs
//! the step's token ranges as one batch through the model, and for each sequence that
//! reached its last token samples the next one, detokenizes it incrementally, matches stop
//! strings and sends the released text to the client.

use crate::api::{
    EngineHandle, EngineStats, Event, Finish, ModelDetails, ModelInfo, PromptError, Request,
    RequestHandle, SubmitError, TokenLogprob, Usage,
};
use crate::blocks::BlockPool;
use crate::constraint::{Constraint, ConstraintFactory};
use crate::sample::{top_logprobs, Sampler};
use crate::scheduler::{SchedConfig, Scheduler, SeqId, Step};
use crate::stop::StopMatcher;
use nao_models::{Compute, KvPool, Logits, Model, SeqBatch};
use nao_tokenizer::chat::ChatTemplate;
use nao_tokenizer::{StreamDecoder, Tokenizer};
use serde_json::Value as Json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::mpsc as tmpsc;

/// How the engine is sized.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The id clients use for the model.
    pub model_id: String,
    /// Most positions (prompt + generated) of one sequence.
    pub n_ctx: usize,
    /// Positions the shared KV pool holds across all sequences (at least `n_ctx`).
    pub kv_positions: usize,
    /// Positions per KV block (a power of two).
    pub block_size: usize,
    /// Most sequences computed together.
    pub max_running: usize,
    /// Most tokens run through the model in one step.
    pub token_budget: usize,
    /// Most requests waiting to start; more are refused at once.
    pub max_queue: usize,
    pub n_threads: usize,
}

/// Errors starting the engine.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Model(#[from] nao_models::ModelError),
    #[error(transparent)]
    Template(#[from] nao_tokenizer::chat::TemplateError),
    #[error("invalid engine setting: {0}")]
    BadConfig(String),
    #[error("cannot start the engine thread: {0}")]
    Thread(#[from] std::io::Error),
}

enum Cmd {
    Submit {
        id: SeqId,
        req: Request,
        /// `req.constraint`, compiled on the submitting thread.
        constraint: Option<Constraint>,
        tx: tmpsc::UnboundedSender<Event>,
        at: Instant,
    },
}

/// State shared between the client side and the engine thread.
struct Shared {
    stats: Mutex<EngineStats>,
    /// Requests submitted and not yet started (or dropped).
    queued: AtomicUsize,
}

/// The server's handle to a running engine.
pub struct EngineClient {
    tx: Mutex<mpsc::Sender<Cmd>>,
    shared: Arc<Shared>,
    tok: Arc<Tokenizer>,
    template: Option<ChatTemplate>,
    info: ModelInfo,
    max_queue: usize,
    next_id: AtomicUsize,
    /// Grammar compiler for this vocabulary, built on the first constrained request (it
    /// slices the whole vocabulary, which unconstrained servers should not pay for).
    constraints: OnceLock<Result<ConstraintFactory, String>>,
}

/// Starts the engine thread with `model`; returns the client and the thread's handle (it
/// ends when every client is dropped and no request is left).
pub fn start(
    model: Model,
    tok: Tokenizer,
    template_source: Option<&str>,
    cfg: EngineConfig,
) -> Result<(Arc<EngineClient>, JoinHandle<()>), StartError> {
    if cfg.n_ctx < 2 || cfg.max_running == 0 || cfg.token_budget == 0 || cfg.n_threads == 0 {
        return Err(StartError::BadConfig(
            "context >= 2, parallel, batch tokens and threads >= 1 are required".into(),
        ));
    }
    let n_ctx = cfg.n_ctx.min(model.config().n_ctx_train.max(2));
    let bs = cfg.block_size;
    let n_blocks = cfg.kv_positions.max(n_ctx).div_ceil(bs);
    let kv = model.new_pool(n_blocks, bs)?;
    let tok = Arc::new(tok);
    let text_of = |id: Option<u32>| {
        id.and_then(|i| tok.token_text(i))
            .unwrap_or_default()
            .to_string()
    };
    let template = match template_source {
        Some(src) => Some(ChatTemplate::new(
            src,
            &text_of(tok.bos()),
            &text_of(tok.eos()),
        )?),
        None => None,
    };
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let info = ModelInfo {
        id: cfg.model_id.clone(),
        n_ctx,
        n_vocab: model.config().n_vocab,
        created,
        // File-level facts (size, parameter count, quantization) are the caller's to add:
        // the engine only sees the loaded model.
        details: ModelDetails {
            architecture: model.config().arch.clone(),
            n_ctx_train: model.config().n_ctx_train,
            n_embd: model.config().n_embd,
            n_layer: model.config().n_layer,
            n_head: model.config().n_head,
            n_head_kv: model.config().n_head_kv,
            chat_template: template_source.map(str::to_string),
            ..ModelDetails::default()
        },
    };
    let shared = Arc::new(Shared {
        stats: Mutex::new(EngineStats {
            kv_blocks_total: n_blocks,
            ..EngineStats::default()
        }),
        queued: AtomicUsize::new(0),
    });
    let (tx, rx) = mpsc::channel();
    let sched = Scheduler::new(
        SchedConfig {
            max_running: cfg.max_running,
            token_budget: cfg.token_budget,
        },
        BlockPool::new(n_blocks, bs),
    );
    let worker = Worker {
        model,
        tok: Arc::clone(&tok),
        compute: Compute::new(cfg.n_threads),
        kv,
        sched,
        seqs: HashMap::new(),
        shared: Arc::clone(&shared),
        n_ctx,
        stats: EngineStats {
            kv_blocks_total: n_blocks,
            ..EngineStats::default()
        },
    };
    let thread = std::thread::Builder::new()
        .name("nao-engine".into())
        .spawn(move || worker.run(rx))?;
    let client = EngineClient {
        tx: Mutex::new(tx),
        shared,
        tok,
        template,
        info,
        max_queue: cfg.max_queue,
        next_id: AtomicUsize::new(1),
        constraints: OnceLock::new(),
    };
    Ok((Arc::new(client), thread))
}

impl EngineClient {
    /// The grammar compiler, built on first use.
    fn constraint_factory(&self) -> Result<&ConstraintFactory, SubmitError> {
        self.constraints
            .get_or_init(|| {
                ConstraintFactory::from_tokenizer(Arc::clone(&self.tok)).map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| SubmitError::BadGrammar(e.clone()))
    }
}

impl EngineHandle for EngineClient {
    fn model_info(&self) -> ModelInfo {
        self.info.clone()
    }

    fn render_chat(&self, messages: &Json, tools: Option<&Json>) -> Result<String, PromptError> {
        let t = self.template.as_ref().ok_or(PromptError::NoTemplate)?;
        t.render(messages, tools, true)
            .map_err(|e| PromptError::BadMessages(e.to_string()))
    }

    fn tokenize(&self, text: &str, add_special: bool) -> Vec<u32> {
        self.tok.encode(text, add_special, true)
    }

    fn submit(&self, req: Request) -> Result<RequestHandle, SubmitError> {
        if req.prompt.is_empty() {
            return Err(SubmitError::EmptyPrompt);
        }
        let n_vocab = self.info.n_vocab;
        if let Some(&id) = req.prompt.iter().find(|&&t| t as usize >= n_vocab) {
            return Err(SubmitError::TokenOutOfRange {
                id: id.into(),
                n_vocab,
            });
        }
        if let Some(&(id, _)) = req.logit_bias.iter().find(|(t, _)| *t as usize >= n_vocab) {
            return Err(SubmitError::TokenOutOfRange {
                id: id.into(),
                n_vocab,
            });
        }
        if req.prompt.len() >= self.info.n_ctx {
            return Err(SubmitError::PromptTooLong {
                n_prompt_tokens: req.prompt.len(),
                n_ctx: self.info.n_ctx,
            });
        }
        req.sampler
            .validate()
            .map_err(|e| SubmitError::BadParams(e.to_string()))?;
        // Why here and not on the engine thread: an unsupported schema must be a 400 before
        // the request is accepted, and compiling must not stall every running sequence.
        let constraint = match &req.constraint {
            None => None,
            Some(g) => Some(
                self.constraint_factory()?
                    .compile(g)
                    .map_err(|e| SubmitError::BadGrammar(e.to_string()))?,
            ),
        };
        // Reserve a queue place first, so concurrent submits cannot overshoot the bound.
        let waiting = self.shared.queued.fetch_add(1, Ordering::SeqCst);
        if waiting >= self.max_queue {
            self.shared.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(SubmitError::QueueFull {
                waiting,
                limit: self.max_queue,
            });
        }
        let (etx, erx) = tmpsc::unbounded_channel();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) as SeqId;
        let cmd = Cmd::Submit {
            id,
            req,
            constraint,
            tx: etx,
            at: Instant::now(),
        };
        let sent = match self.tx.lock() {
            Ok(tx) => tx.send(cmd).is_ok(),
            Err(_) => false,
        };
        if !sent {
            self.shared.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(SubmitError::ShutDown);
        }
        Ok(RequestHandle { events: erx })
    }

    fn stats(&self) -> EngineStats {
        let mut s = match self.shared.stats.lock() {
            Ok(s) => *s,
            Err(p) => *p.into_inner(),
        };
        s.waiting = self.shared.queued.load(Ordering::SeqCst);
        s
    }
}

/// Per-sequence state the scheduler does not keep.
struct Live {
    tx: tmpsc::UnboundedSender<Event>,
    sampler: Sampler,
    logit_bias: Vec<(u32, f32)>,
    logprobs: Option<usize>,
    stop_at_eog: bool,
    max_tokens: usize,
    n_generated: usize,
    decoder: StreamDecoder,
    stops: StopMatcher,
    /// The grammar the output must follow, if any.
    constraint: Option<Constraint>,
    submitted: Instant,
    ttft: Option<Duration>,
    /// Still counted in `Shared::queued`.
    queued: bool,
}

struct Worker {
    model: Model,
    tok: Arc<Tokenizer>,
    compute: Compute,
    kv: KvPool,
    sched: Scheduler,
    seqs: HashMap<SeqId, Live>,
    shared: Arc<Shared>,
    n_ctx: usize,
    stats: EngineStats,
}

impl Worker {
    fn run(mut self, rx: mpsc::Receiver<Cmd>) {
        let mut open = true;
        loop {
            // Take new requests; wait for one only when there is nothing to do.
            if self.sched.is_idle() {
                if !open {
                    return;
                }
                match rx.recv() {
                    Ok(cmd) => self.accept(cmd),
                    Err(_) => return,
                }
            }
            loop {
                match rx.try_recv() {
                    Ok(cmd) => self.accept(cmd),
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => {
                        open = false;
                        break;
                    }
                }
            }
            self.drop_cancelled();
            let step = self.sched.schedule();
            for id in &step.admitted {
                self.unqueue(*id);
            }
            if step.items.is_empty() {
                self.publish();
                if !self.sched.is_idle() {
                    // Nothing fits right now (cannot happen with a pool of at least one
                    // context, but never spin).
                    std::thread::sleep(Duration::from_millis(1));
                }
                continue;
            }
            self.run_step(&step);
            self.publish();
        }
    }

    fn accept(&mut self, cmd: Cmd) {
        let Cmd::Submit {
            id,
            req,
            constraint,
            tx,
            at,
        } = cmd;
        let sampler = match Sampler::new(req.sampler.clone()) {
            Ok(s) => s,
            Err(e) => {
                self.shared.queued.fetch_sub(1, Ordering::SeqCst);
                let _ = tx.send(Event::Error(e.to_string()));
                return;
            }
        };
        self.stats.prompt_tokens += req.prompt.len() as u64;
        self.sched.add(id, req.prompt);
        self.seqs.insert(
            id,
            Live {
                tx,
                sampler,
                logit_bias: req.logit_bias,
                logprobs: req.logprobs,
                stop_at_eog: req.stop_at_eog,
                max_tokens: req.max_tokens,
                n_generated: 0,
                decoder: StreamDecoder::new(),
                stops: StopMatcher::new(&req.stop),
                constraint,
                submitted: at,
                ttft: None,
                queued: true,
            },
        );
    }

    fn unqueue(&mut self, id: SeqId) {
        if let Some(l) = self.seqs.get_mut(&id) {
            if l.queued {
                l.queued = false;
                self.shared.queued.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }

    /// Removes a sequence everywhere, freeing its blocks.
    fn finish(&mut self, id: SeqId) {
        self.unqueue(id);
        self.seqs.remove(&id);
        self.sched.remove(id);
    }

    fn drop_cancelled(&mut self) {
        let gone: Vec<SeqId> = self
            .seqs
            .iter()
            .filter(|(_, l)| l.tx.is_closed())
            .map(|(&id, _)| id)
            .collect();
        for id in gone {
            self.finish(id);
        }
    }

    fn publish(&mut self) {
        self.stats.running = self.sched.n_running();
        self.stats.kv_blocks_used = self.sched.pool().n_used();
        if let Ok(mut s) = self.shared.stats.lock() {
            *s = self.stats;
        }
    }

    fn run_step(&mut self, step: &Step) {
        self.stats.preemptions += step.preempted.len() as u64;
        let mut batch = Vec::with_capacity(step.items.len());
        for it in &step.items {
            let Some(s) = self.sched.seq(it.seq) else {
                continue;
            };
            batch.push(SeqBatch {
                tokens: &s.tokens[it.start..it.start + it.len],
                pos: it.start,
                table: &s.blocks,
                logits: if it.sample {
                    Logits::Last
                } else {
                    Logits::None
                },
            });
        }
        let result = self
            .model
            .forward_batch(&batch, &mut self.kv, &mut self.compute);
        drop(batch);
        let logits = match result {
            Ok(l) => l,
            Err(e) => {
                for it in &step.items {
                    if let Some(l) = self.seqs.get(&it.seq) {
                        let _ = l.tx.send(Event::Error(format!("model error: {e}")));
                    }
                    self.finish(it.seq);
                }
                return;
            }
        };
        self.sched.commit(step);
        let n_vocab = self.model.config().n_vocab;
        let mut rows = logits.chunks_exact(n_vocab);
        for it in step.items.iter().filter(|it| it.sample) {
            let Some(row) = rows.next() else { break };
            self.sample_one(it.seq, row);
        }
    }

    /// Samples the next token of `id` from its logits and sends what it releases.
    fn sample_one(&mut self, id: SeqId, row: &[f32]) {
        let (Some(live), Some(seq)) = (self.seqs.get_mut(&id), self.sched.seq(id)) else {
            return;
        };
        let mut logits = row.to_vec();
        for &(t, b) in &live.logit_bias {
            if let Some(l) = logits.get_mut(t as usize) {
                *l += b;
            }
        }
        // Logprobs describe the model's (biased) distribution, before the grammar mask.
        let lp_info = live
            .logprobs
            .map(|k| (top_logprobs(&logits, k), logsumexp(&logits)));
        // The grammar mask goes first in the chain: penalties, top-k and the draw must only
        // ever see tokens the grammar allows.
        if let Some(c) = live.constraint.as_mut() {
            if let Err(e) = c.mask_logits(&mut logits) {
                let _ = live.tx.send(Event::Error(e.to_string()));
                self.finish(id);
                return;
            }
        }
        let token = match live.sampler.sample(&mut logits, &seq.tokens) {
            Ok(t) => t,
            Err(e) => {
                let _ = live.tx.send(Event::Error(format!("sampling failed: {e}")));
                self.finish(id);
                return;
            }
        };
        let tok = &self.tok;
        // An end-of-generation token under a grammar is only allowed once the grammar is
        // complete; it ends the output whatever `stop_at_eog` says, and is not fed to the
        // matcher (nothing follows it).
        let grammar_eog = live.constraint.is_some() && tok.is_eog(token);
        if let (Some(c), false) = (live.constraint.as_mut(), grammar_eog) {
            if let Err(e) = c.commit(token) {
                let _ = live.tx.send(Event::Error(e.to_string()));
                self.finish(id);
                return;
            }
        }
        let grammar_done = live.constraint.as_ref().is_some_and(Constraint::is_stopped);
        let (n_prompt, cached, len_after) = (seq.n_prompt, seq.cached_tokens, seq.tokens.len() + 1);
        self.sched.push_token(id, token);
        self.stats.generated_tokens += 1;
        if live.ttft.is_none() {
            live.ttft = Some(live.submitted.elapsed());
            self.stats.prefix_cache_hit_tokens += cached as u64;
        }
        live.n_generated += 1;
        let bytes_of = |t: u32| tok.token_bytes(t).unwrap_or_default().to_vec();
        let logprobs = match lp_info {
            Some((top, lse)) => {
                let bytes = bytes_of(token);
                vec![TokenLogprob {
                    token: String::from_utf8_lossy(&bytes).into_owned(),
                    logprob: row_logprob(row, &live.logit_bias, token, lse),
                    bytes,
                    top: top
                        .into_iter()
                        .map(|(t, lp)| {
                            let b = bytes_of(t);
                            (String::from_utf8_lossy(&b).into_owned(), b, lp)
                        })
                        .collect(),
                }]
            }
            None => Vec::new(),
        };

        let mut finish = None;
        let mut text = String::new();
        let mut flush = false;
        if grammar_eog || (live.stop_at_eog && tok.is_eog(token)) {
            finish = Some(Finish::Stop);
        } else {
            let piece = live.decoder.push(tok, token);
            let r = live.stops.push(&piece);
            text = r.text;
            if r.stopped {
                finish = Some(Finish::Stop);
            }
        }
        if finish.is_none() && grammar_done {
            finish = Some(Finish::Stop);
            flush = true;
        }
        if finish.is_none() && (live.n_generated >= live.max_tokens || len_after >= self.n_ctx) {
            finish = Some(Finish::Length);
            flush = true;
        }
        if flush {
            // Nothing more comes: release held bytes and held stop-string prefixes.
            let rest = live.decoder.finish();
            let r = live.stops.push(&rest);
            text.push_str(&r.text);
            if !r.stopped {
                text.push_str(&live.stops.finish());
            } else {
                finish = Some(Finish::Stop);
            }
        }
        if !text.is_empty() || !logprobs.is_empty() {
            let _ = live.tx.send(Event::Text { text, logprobs });
        }
        if let Some(finish) = finish {
            let _ = live.tx.send(Event::Done {
                finish,
                usage: Usage {
                    prompt_tokens: n_prompt,
                    completion_tokens: live.n_generated,
                    cached_tokens: cached,
                },
                time_to_first_token: live.ttft.unwrap_or_default(),
            });
            self.finish(id);
        }
    }
}

/// `ln(sum(exp(logits)))`, max-subtracted, summed in f64 (as `top_logprobs` does).
fn logsumexp(logits: &[f32]) -> f64 {
    let max = logits
        .iter()
        .copied()
        .filter(|x| !x.is_nan())
        .fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        return f64::NEG_INFINITY;
    }
    let sum: f64 = logits
        .iter()
        .filter(|x| !x.is_nan())
        .map(|&x| ((x - max).exp()) as f64)
        .sum();
    max as f64 + sum.ln()
}

/// The logprob of `token` under the biased raw logits `row + bias`.
fn row_logprob(row: &[f32], bias: &[(u32, f32)], token: u32, lse: f64) -> f32 {
    let mut l = row
        .get(token as usize)
        .copied()
        .unwrap_or(f32::NEG_INFINITY);
    for &(t, b) in bias {
        if t == token {
            l += b;
        }
    }
    (l as f64 - lse) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logprob_matches_hand_computed_softmax() {
        let row = [1.0f32, 2.0, 3.0];
        let lse = logsumexp(&row);
        let want = 3.0 - (1f64.exp() + 2f64.exp() + 3f64.exp()).ln();
        assert!((row_logprob(&row, &[], 2, lse) as f64 - want).abs() < 1e-6);
        // With a bias, the distribution is the biased one.
        let biased = [1.0f32, 2.0, 0.0];
        let lse_b = logsumexp(&biased);
        let got = row_logprob(&row, &[(2, -3.0)], 2, lse_b) as f64;
        let want_b = 0.0 - (1f64.exp() + 2f64.exp() + 1.0).ln();
        assert!((got - want_b).abs() < 1e-6);
    }
}
