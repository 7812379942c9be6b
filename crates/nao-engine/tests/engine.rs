//! The serving engine on the real Gemma-3-270M file: concurrent requests give exactly the
//! tokens they give alone (continuous batching, chunked prefill, preemption and the prefix
//! cache change nothing a client sees), the prefix cache is used and reported, cancelled
//! requests free their KV blocks, and the queue bound holds.
//!
//! The model file is fetched by `scripts/fetch_models.py` into `models/`; when it is absent
//! the test says so and passes only if `NAO_REQUIRE_MODELS` is unset (CI sets it).

mod common;

use common::model_path;
use nao_engine::api::{EngineHandle, EngineStats, Event, Finish, Request, SubmitError, Usage};
use nao_engine::engine::{start, EngineConfig};
use nao_engine::SamplerConfig;
use nao_gguf::GgufFile;
use nao_models::load_model;
use nao_tokenizer::Tokenizer;
use std::sync::Arc;
use std::time::{Duration, Instant};

const GEMMA: &str = "gemma-3-270m-q4_k_m.gguf";

fn config(max_running: usize, kv_positions: usize, token_budget: usize) -> EngineConfig {
    EngineConfig {
        model_id: "gemma".into(),
        n_ctx: kv_positions.min(512),
        kv_positions,
        block_size: 16,
        max_running,
        token_budget,
        max_queue: 64,
        n_threads: 2,
    }
}

fn engine(cfg: EngineConfig) -> Option<Arc<nao_engine::engine::EngineClient>> {
    let path = model_path(GEMMA)?;
    let file = Arc::new(GgufFile::open(&path).expect("model opens"));
    let tok = Tokenizer::from_gguf(&file).expect("tokenizer builds");
    let template = file
        .get_str("tokenizer.chat_template")
        .expect("metadata readable")
        .map(str::to_string);
    let model = load_model(Arc::clone(&file)).expect("model loads");
    let (client, _thread) = start(model, tok, template.as_deref(), cfg).expect("engine starts");
    Some(client)
}

fn request(e: &dyn EngineHandle, prompt: &str, max_tokens: usize, seed: u64) -> Request {
    let sampler = if seed == 0 {
        SamplerConfig::greedy()
    } else {
        SamplerConfig {
            temperature: 0.9,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            seed,
            ..SamplerConfig::default()
        }
    };
    Request {
        prompt: e.tokenize(prompt, true),
        max_tokens,
        sampler,
        logit_bias: Vec::new(),
        logprobs: None,
        stop: Vec::new(),
        stop_at_eog: true,
        constraint: None,
    }
}

/// Reads a request's events to the end.
fn collect(mut h: nao_engine::api::RequestHandle) -> (String, Finish, Usage) {
    let mut text = String::new();
    loop {
        match h.events.blocking_recv() {
            Some(Event::Text { text: t, .. }) => text.push_str(&t),
            Some(Event::Done { finish, usage, .. }) => return (text, finish, usage),
            Some(Event::Error(e)) => panic!("engine error: {e}"),
            None => panic!("engine dropped the request"),
        }
    }
}

/// Polls the engine's stats (published after each step) until `ok` or one second passed.
fn wait_for(e: &dyn EngineHandle, ok: impl Fn(&EngineStats) -> bool) -> EngineStats {
    let t = Instant::now();
    loop {
        let s = e.stats();
        if ok(&s) || t.elapsed() > Duration::from_secs(1) {
            return s;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

const PROMPTS: [&str; 6] = [
    "The capital of France is",
    "def fibonacci(n):",
    "Once upon a time, in a small village by the sea,",
    "1, 2, 3, 4, 5,",
    "The three primary colors are",
    "Water boils at a temperature of",
];

#[test]
fn concurrent_requests_match_one_at_a_time() {
    // One at a time, a pool of exactly one context.
    let Some(alone) = engine(config(1, 64, 64)) else {
        return;
    };
    let want: Vec<_> = PROMPTS
        .iter()
        .enumerate()
        .map(|(i, p)| collect(alone.submit(request(&*alone, p, 24, i as u64)).unwrap()))
        .collect();
    for (text, finish, usage) in &want {
        assert!(!text.is_empty());
        assert!(*finish == Finish::Length || usage.completion_tokens <= 24);
    }
    // All at once, with a small token budget (chunked prefill) and a pool of 4 blocks
    // (each sequence needs 3), so sequences get preempted and recomputed.
    let Some(busy) = engine(config(6, 64, 8)) else {
        return;
    };
    let handles: Vec<_> = PROMPTS
        .iter()
        .enumerate()
        .map(|(i, p)| busy.submit(request(&*busy, p, 24, i as u64)).unwrap())
        .collect();
    let got: Vec<_> = handles.into_iter().map(collect).collect();
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g.0, w.0, "prompt {i}: text differs under batching");
        assert_eq!(g.1, w.1, "prompt {i}: finish differs");
        assert_eq!(g.2.completion_tokens, w.2.completion_tokens);
    }
    assert!(
        busy.stats().preemptions > 0,
        "the small pool should have forced preemption"
    );
    let s = wait_for(&*busy, |s| s.kv_blocks_used == 0 && s.running == 0);
    assert_eq!(s.kv_blocks_used, 0, "finished sequences hold no blocks");
}

#[test]
fn shared_prefix_is_served_from_cache() {
    let Some(e) = engine(config(4, 1024, 64)) else {
        return;
    };
    let system = "You are a helpful assistant who answers briefly and precisely. ".repeat(3);
    let a = collect(
        e.submit(request(&*e, &format!("{system}Q: 2+2?"), 8, 0))
            .unwrap(),
    );
    assert_eq!(a.2.cached_tokens, 0);
    let b = collect(
        e.submit(request(&*e, &format!("{system}Q: 3+3?"), 8, 0))
            .unwrap(),
    );
    let n_system = e.tokenize(&system, true).len();
    assert!(
        b.2.cached_tokens >= n_system - 16 && b.2.cached_tokens.is_multiple_of(16),
        "cached {} of a {n_system}-token shared prefix",
        b.2.cached_tokens
    );
    // A repeat of the first request is fully cached but for its last block and gives the
    // same text.
    let a2 = collect(
        e.submit(request(&*e, &format!("{system}Q: 2+2?"), 8, 0))
            .unwrap(),
    );
    assert_eq!(a2.0, a.0);
    assert!(a2.2.cached_tokens > b.2.cached_tokens - 16);
    assert!(e.stats().prefix_cache_hit_tokens >= (b.2.cached_tokens + a2.2.cached_tokens) as u64);
}

#[test]
fn dropped_request_frees_its_blocks_within_a_second() {
    let Some(e) = engine(config(4, 2048, 64)) else {
        return;
    };
    let mut h = e
        .submit(request(&*e, "Write a long story about a dragon.", 400, 0))
        .unwrap();
    // Wait until it is generating.
    match h.events.blocking_recv() {
        Some(Event::Text { .. }) => {}
        other => panic!("expected text, got {other:?}"),
    }
    assert!(wait_for(&*e, |s| s.kv_blocks_used > 0).kv_blocks_used > 0);
    drop(h);
    let t = Instant::now();
    while e.stats().kv_blocks_used > 0 {
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "blocks still held after 1 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(e.stats().running, 0);
}

#[test]
fn stop_strings_end_generation_and_are_not_returned() {
    let Some(e) = engine(config(2, 512, 64)) else {
        return;
    };
    let free = collect(e.submit(request(&*e, "1, 2, 3, 4, 5,", 24, 0)).unwrap());
    // Stop on a piece of text the free run produced after its start.
    let cut = free
        .0
        .char_indices()
        .nth(6)
        .map(|(i, _)| i)
        .expect("long enough");
    let stop: String = free.0[cut..].chars().take(3).collect();
    let mut r = request(&*e, "1, 2, 3, 4, 5,", 24, 0);
    r.stop = vec![stop.clone()];
    let stopped = collect(e.submit(r).unwrap());
    assert_eq!(stopped.1, Finish::Stop);
    let at = free.0.find(&stop).expect("stop occurs");
    assert_eq!(
        stopped.0,
        free.0[..at],
        "text up to the stop string, without it"
    );
}

#[test]
fn bad_submissions_fail_before_compute() {
    let Some(e) = engine(config(1, 512, 64)) else {
        return;
    };
    let mut r = request(&*e, "hi", 4, 0);
    r.prompt = vec![1; 600];
    assert_eq!(
        e.submit(r).err(),
        Some(SubmitError::PromptTooLong {
            n_prompt_tokens: 600,
            n_ctx: 512
        })
    );
    let mut r = request(&*e, "hi", 4, 0);
    r.prompt = vec![];
    assert_eq!(e.submit(r).err(), Some(SubmitError::EmptyPrompt));
    let mut r = request(&*e, "hi", 4, 0);
    let n_vocab = e.model_info().n_vocab;
    r.prompt.push(n_vocab as u32);
    assert!(matches!(
        e.submit(r).err(),
        Some(SubmitError::TokenOutOfRange { .. })
    ));
    let mut r = request(&*e, "hi", 4, 0);
    r.sampler.top_p = 7.0;
    assert!(matches!(e.submit(r).err(), Some(SubmitError::BadParams(_))));
}

#[test]
fn queue_bound_refuses_at_once() {
    let mut cfg = config(1, 512, 64);
    cfg.max_queue = 2;
    let Some(e) = engine(cfg) else {
        return;
    };
    // Two long requests: one may start, the rest wait; keep submitting until refused.
    let mut held = Vec::new();
    let mut refused = None;
    for _ in 0..4 {
        match e.submit(request(&*e, "Count to one hundred:", 200, 0)) {
            Ok(h) => held.push(h),
            Err(err) => {
                refused = Some(err);
                break;
            }
        }
    }
    assert!(
        matches!(refused, Some(SubmitError::QueueFull { limit: 2, .. })),
        "got {refused:?}"
    );
    drop(held);
}
