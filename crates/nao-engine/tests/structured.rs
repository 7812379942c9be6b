//! Structured output on the real Qwen2.5-Coder-1.5B file: for each of two dozen JSON
//! schemas (nested objects, arrays with item bounds, enums, `required`, patterns, bounded
//! numbers, `anyOf`, string lengths, booleans, nulls, ...) a chat prompt asks for matching
//! data, at temperature 0 and at temperature 1 with a fixed seed. Every output must end
//! by itself (`Finish::Stop`, not cut by `max_tokens`), parse as JSON and validate against
//! its schema. All requests are submitted at once so the engine batches them.
//!
//! Validation uses the small validator below, written for exactly the keywords these
//! schemas use (and tested on hand-written documents), rather than the grammar engine that
//! produced the output.
//!
//! `mask_cost` (ignored by default: it is a measurement) compares decode tokens/s with and
//! without a schema in the same run and times the mask alone by replaying the tokens.
//!
//! The model file is fetched by `scripts/fetch_models.py` into `models/`; when it is absent
//! the tests say so and pass only if `NAO_REQUIRE_MODELS` is unset (CI sets it).

mod common;

use common::model_path;
use nao_engine::api::{EngineHandle, Event, Finish, Grammar, Request, RequestHandle};
use nao_engine::constraint::ConstraintFactory;
use nao_engine::engine::{start, EngineClient, EngineConfig};
use nao_engine::SamplerConfig;
use nao_gguf::GgufFile;
use nao_models::load_model;
use nao_tokenizer::Tokenizer;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

const QWEN: &str = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf";
const MAX_TOKENS: usize = 200;

/// The engine plus a tokenizer of our own (for the mask replay).
fn engine(max_running: usize) -> Option<(Arc<EngineClient>, Arc<Tokenizer>)> {
    let path = model_path(QWEN)?;
    let file = Arc::new(GgufFile::open(&path).expect("model opens"));
    let tok = Tokenizer::from_gguf(&file).expect("tokenizer builds");
    let tok2 = Arc::new(Tokenizer::from_gguf(&file).expect("tokenizer builds"));
    let template = file
        .get_str("tokenizer.chat_template")
        .expect("metadata readable")
        .map(str::to_string);
    let model = load_model(Arc::clone(&file)).expect("model loads");
    let cfg = EngineConfig {
        model_id: "qwen".into(),
        n_ctx: 1024,
        kv_positions: 1024 * max_running.min(8),
        block_size: 16,
        max_running,
        token_budget: 512,
        max_queue: 256,
        n_threads: 2,
    };
    let (client, _thread) = start(model, tok, template.as_deref(), cfg).expect("engine starts");
    Some((client, tok2))
}

/// The prompt names the task, not the schema: the grammar alone must keep the output
/// valid (and the schema text would triple the prefill work of this test).
fn chat_prompt(e: &dyn EngineHandle, ask: &str) -> Vec<u32> {
    let messages = json!([
        {"role": "system", "content": "You reply with JSON only."},
        {"role": "user", "content": ask},
    ]);
    let text = e.render_chat(&messages, None).expect("template renders");
    e.tokenize(&text, false)
}

fn sampler(seed: Option<u64>) -> SamplerConfig {
    match seed {
        None => SamplerConfig::greedy(),
        // OpenAI's defaults: plain temperature-1 sampling, no truncation.
        Some(seed) => SamplerConfig {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            seed,
            ..SamplerConfig::default()
        },
    }
}

struct Outcome {
    text: String,
    finish: Finish,
    completion_tokens: usize,
    ttft: Duration,
    done_at: Instant,
}

fn collect(mut h: RequestHandle) -> Result<Outcome, String> {
    let mut text = String::new();
    loop {
        match h.events.blocking_recv() {
            Some(Event::Text { text: t, .. }) => text.push_str(&t),
            Some(Event::Done {
                finish,
                usage,
                time_to_first_token,
            }) => {
                return Ok(Outcome {
                    text,
                    finish,
                    completion_tokens: usage.completion_tokens,
                    ttft: time_to_first_token,
                    done_at: Instant::now(),
                })
            }
            Some(Event::Error(e)) => return Err(e),
            None => return Err("engine dropped the request".into()),
        }
    }
}

/// (what to ask for, schema); `Value::Null` as schema means `Grammar::JsonObject`.
fn cases() -> Vec<(&'static str, Value)> {
    let name = json!({"type": "string", "minLength": 1, "maxLength": 40});
    vec![
        (
            "Describe a fictional person.",
            json!({"type": "object", "properties": {
                "name": name, "age": {"type": "integer", "minimum": 0, "maximum": 120}},
                "required": ["name", "age"], "additionalProperties": false}),
        ),
        (
            "What color is the sky on a clear day?",
            json!({"type": "object", "properties": {
                "color": {"enum": ["red", "green", "blue", "yellow"]}},
                "required": ["color"], "additionalProperties": false}),
        ),
        (
            "List a few prime numbers.",
            json!({"type": "object", "properties": {
                "primes": {"type": "array", "items": {"type": "integer", "minimum": 2,
                    "maximum": 100}, "minItems": 3, "maxItems": 5}},
                "required": ["primes"], "additionalProperties": false}),
        ),
        (
            "Give the address of a fictional company in the USA.",
            json!({"type": "object", "properties": {
                "company": name,
                "address": {"type": "object", "properties": {
                    "street": name, "city": name,
                    "zip": {"type": "string", "pattern": "^[0-9]{5}$"}},
                    "required": ["street", "city", "zip"], "additionalProperties": false}},
                "required": ["company", "address"], "additionalProperties": false}),
        ),
        (
            "Report today's weather in Paris (make it up).",
            json!({"type": "object", "properties": {
                "is_raining": {"type": "boolean"},
                "temperature_c": {"type": "integer", "minimum": -50, "maximum": 60}},
                "required": ["is_raining", "temperature_c"], "additionalProperties": false}),
        ),
        (
            "Give the first name of someone without a middle name.",
            json!({"type": "object", "properties": {
                "first_name": name, "middle_name": {"type": "null"}},
                "required": ["first_name", "middle_name"], "additionalProperties": false}),
        ),
        (
            "Give a value: either a small number or a short word.",
            json!({"type": "object", "properties": {
                "value": {"anyOf": [{"type": "integer", "minimum": 0, "maximum": 1000},
                    {"type": "string", "maxLength": 10}]}},
                "required": ["value"], "additionalProperties": false}),
        ),
        (
            "Write a short shopping list.",
            json!({"type": "object", "properties": {
                "items": {"type": "array", "minItems": 1, "maxItems": 3, "items": {
                    "type": "object", "properties": {
                        "name": {"type": "string", "minLength": 1, "maxLength": 20},
                        "qty": {"type": "integer", "minimum": 1, "maximum": 10}},
                    "required": ["name", "qty"], "additionalProperties": false}}},
                "required": ["items"], "additionalProperties": false}),
        ),
        (
            "When did the first moon landing happen?",
            json!({"type": "object", "properties": {
                "date": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"}},
                "required": ["date"], "additionalProperties": false}),
        ),
        (
            "Tag this sentence: 'The new GPU makes games run faster.'",
            json!({"type": "object", "properties": {
                "tags": {"type": "array", "items": {"enum": ["tech", "games", "sports",
                    "food", "music"]}, "minItems": 1, "maxItems": 3}},
                "required": ["tags"], "additionalProperties": false}),
        ),
        (
            "Name a few programming languages.",
            json!({"type": "array", "items": {"type": "string", "minLength": 1,
                "maxLength": 15}, "minItems": 2, "maxItems": 4}),
        ),
        (
            "How likely is it to rain tomorrow in London?",
            json!({"type": "object", "properties": {
                "probability": {"type": "number", "minimum": 0, "maximum": 1}},
                "required": ["probability"], "additionalProperties": false}),
        ),
        (
            "Suggest a title for a book about the sea.",
            json!({"type": "object", "properties": {
                "title": name, "subtitle": name},
                "required": ["title"], "additionalProperties": false}),
        ),
        (
            "Describe version 2 of a software product.",
            json!({"type": "object", "properties": {
                "version": {"const": 2}, "product": name},
                "required": ["version", "product"], "additionalProperties": false}),
        ),
        (
            "Write a 2x2 matrix of single digits.",
            json!({"type": "object", "properties": {
                "matrix": {"type": "array", "minItems": 2, "maxItems": 2, "items": {
                    "type": "array", "minItems": 2, "maxItems": 2,
                    "items": {"type": "integer", "minimum": 0, "maximum": 9}}}},
                "required": ["matrix"], "additionalProperties": false}),
        ),
        (
            "Give a nickname for Robert, or null if none fits.",
            json!({"type": "object", "properties": {
                "nickname": {"type": ["string", "null"], "maxLength": 20}},
                "required": ["nickname"], "additionalProperties": false}),
        ),
        (
            "Describe a geometric shape.",
            json!({"type": "object", "properties": {
                "shape": {"anyOf": [
                    {"type": "object", "properties": {
                        "kind": {"const": "circle"},
                        "radius": {"type": "integer", "minimum": 1, "maximum": 100}},
                        "required": ["kind", "radius"], "additionalProperties": false},
                    {"type": "object", "properties": {
                        "kind": {"const": "square"},
                        "side": {"type": "integer", "minimum": 1, "maximum": 100}},
                        "required": ["kind", "side"], "additionalProperties": false}]}},
                "required": ["shape"], "additionalProperties": false}),
        ),
        (
            "Make up an email address for Alice at example.com.",
            json!({"type": "object", "properties": {
                "email": {"type": "string", "pattern": "^[a-z]+@[a-z]+\\.com$"}},
                "required": ["email"], "additionalProperties": false}),
        ),
        (
            "Describe a classic novel.",
            json!({"type": "object", "properties": {
                "title": name, "author": name,
                "year": {"type": "integer", "minimum": 1000, "maximum": 2025},
                "genres": {"type": "array", "minItems": 1, "maxItems": 2, "items": {
                    "enum": ["fiction", "romance", "mystery", "adventure", "satire"]}}},
                "required": ["title", "author", "year", "genres"],
                "additionalProperties": false}),
        ),
        (
            "Give an HTTP status for a missing page.",
            json!({"type": "object", "properties": {
                "code": {"enum": [200, 404, 500]},
                "message": {"type": "string", "maxLength": 30}},
                "required": ["code", "message"], "additionalProperties": false}),
        ),
        (
            "Give the color of grass as a hex code.",
            json!({"type": "object", "properties": {
                "hex": {"type": "string", "pattern": "^#[0-9a-f]{6}$"}},
                "required": ["hex"], "additionalProperties": false}),
        ),
        (
            "Give the coordinates of Tokyo.",
            json!({"type": "object", "properties": {
                "lat": {"type": "number", "minimum": -90, "maximum": 90},
                "lon": {"type": "number", "minimum": -180, "maximum": 180}},
                "required": ["lat", "lon"], "additionalProperties": false}),
        ),
        (
            "Fill in a deeply nested record with one number.",
            json!({"type": "object", "properties": {"a": {"type": "object", "properties": {
                "b": {"type": "object", "properties": {"c": {"type": "integer"}},
                    "required": ["c"], "additionalProperties": false}},
                "required": ["b"], "additionalProperties": false}},
                "required": ["a"], "additionalProperties": false}),
        ),
        (
            "Give just the name and age of a cat, as a JSON object.",
            Value::Null,
        ),
    ]
}

#[test]
fn every_output_parses_and_validates() {
    let Some((e, _)) = engine(16) else {
        return;
    };
    let cases = cases();
    assert!(cases.len() >= 20);
    let t0 = Instant::now();
    let mut handles = Vec::new();
    // Temperature 0 first, then 1: by the time the second wave is admitted its prompts
    // are in the prefix cache.
    for temp1 in [false, true] {
        for (i, (ask, schema)) in cases.iter().enumerate() {
            let grammar = match schema {
                Value::Null => Grammar::JsonObject,
                s => Grammar::JsonSchema(s.clone()),
            };
            let seed = temp1.then_some(1000 + i as u64);
            let req = Request {
                prompt: chat_prompt(&*e, ask),
                max_tokens: MAX_TOKENS,
                sampler: sampler(seed),
                logit_bias: Vec::new(),
                logprobs: None,
                stop: Vec::new(),
                stop_at_eog: true,
                constraint: Some(grammar.clone()),
            };
            let h = e
                .submit(req)
                .unwrap_or_else(|err| panic!("case {i}: {err}"));
            handles.push((i, seed, h));
        }
    }
    let mut failures = Vec::new();
    let mut n_tokens = 0;
    for (i, seed, h) in handles {
        let (ask, schema) = &cases[i];
        let out = match collect(h) {
            Ok(o) => o,
            Err(err) => {
                failures.push(format!("case {i} ({ask}) seed {seed:?}: error {err}"));
                continue;
            }
        };
        n_tokens += out.completion_tokens;
        let schema = if schema.is_null() {
            json!({"type": "object"})
        } else {
            schema.clone()
        };
        let problem = if out.finish != Finish::Stop {
            Some(format!("finished with {:?}", out.finish))
        } else {
            match serde_json::from_str::<Value>(&out.text) {
                Err(err) => Some(format!("not JSON: {err}")),
                Ok(v) => validate(&v, &schema, "$").err(),
            }
        };
        match problem {
            Some(p) => failures.push(format!(
                "case {i} ({ask}) seed {seed:?}: {p}\n  output: {}",
                out.text
            )),
            None => eprintln!("ok case {i} seed {seed:?}: {}", out.text),
        }
    }
    eprintln!(
        "{} requests, {n_tokens} tokens in {:.1}s",
        cases.len() * 2,
        t0.elapsed().as_secs_f64()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn unsupported_schema_is_refused_at_submit() {
    let Some((e, _)) = engine(2) else {
        return;
    };
    let req = Request {
        prompt: chat_prompt(&*e, "List numbers."),
        max_tokens: 8,
        sampler: sampler(None),
        logit_bias: Vec::new(),
        logprobs: None,
        stop: Vec::new(),
        stop_at_eog: true,
        constraint: Some(Grammar::JsonSchema(
            json!({"type": "array", "uniqueItems": true}),
        )),
    };
    match e.submit(req) {
        Err(nao_engine::api::SubmitError::BadGrammar(m)) => {
            assert!(m.contains("uniqueItems"), "{m}")
        }
        Err(other) => panic!("wrong error: {other}"),
        Ok(_) => panic!("an unsupported schema was accepted"),
    }
}

/// Decode tokens/s with and without a schema (same engine, same prompt, one sequence at a
/// time), and the mask's own cost by replaying the constrained tokens through a fresh
/// matcher. Run with `cargo test --release -p nao-engine --test structured mask_cost --
/// --ignored --nocapture`.
#[test]
#[ignore = "measurement; run explicitly"]
fn mask_cost() {
    let Some((e, tok)) = engine(1) else {
        return;
    };
    const N: usize = 96;
    // A schema that cannot be finished in N tokens, so both runs decode exactly N.
    let schema = json!({"type": "object", "properties": {
        "numbers": {"type": "array", "items": {"type": "integer"}, "minItems": 200}},
        "required": ["numbers"]});
    let prompt = chat_prompt(&*e, "Count from 1 upwards as a JSON list of numbers.");
    let run = |constraint: Option<Grammar>| {
        let req = Request {
            prompt: prompt.clone(),
            max_tokens: N,
            sampler: sampler(None),
            logit_bias: Vec::new(),
            logprobs: None,
            stop: Vec::new(),
            stop_at_eog: false,
            constraint,
        };
        let start = Instant::now();
        let out = collect(e.submit(req).expect("submit")).expect("runs");
        assert_eq!(out.completion_tokens, N, "{}", out.text);
        // Decode only: from the first token to the last.
        let decode = out.done_at.duration_since(start) - out.ttft;
        ((N - 1) as f64 / decode.as_secs_f64(), out.text)
    };
    let grammar = Grammar::JsonSchema(schema);
    // Warm up (and build the grammar compiler) before timing anything.
    run(Some(grammar.clone()));
    let mut free = Vec::new();
    let mut constrained = Vec::new();
    let mut text = String::new();
    for _ in 0..3 {
        free.push(run(None).0);
        let (tps, t) = run(Some(grammar.clone()));
        constrained.push(tps);
        text = t;
    }
    let best = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    let (free, constrained) = (best(&free), best(&constrained));

    // The mask alone: replay the constrained output's tokens.
    let t = Instant::now();
    let factory = ConstraintFactory::from_tokenizer(Arc::clone(&tok)).expect("factory");
    let built = t.elapsed();
    let t = Instant::now();
    let mut c = factory.compile(&grammar).expect("compiles");
    eprintln!(
        "grammar compiler built in {:.0} ms (once per model); schema compiled in {:.1} ms",
        built.as_secs_f64() * 1e3,
        t.elapsed().as_secs_f64() * 1e3
    );
    let ids = tok.encode(&text, false, false);
    let mut logits = vec![0.0f32; tok.n_vocab()];
    let t = Instant::now();
    let mut n = 0;
    for &id in &ids {
        if c.mask_logits(&mut logits).is_err() || c.commit(id).is_err() {
            break;
        }
        n += 1;
    }
    let per_token = t.elapsed().as_secs_f64() / n.max(1) as f64;
    let share = per_token * free;
    eprintln!(
        "decode tokens/s: {free:.2} free, {constrained:.2} with a schema ({:+.1}%); \
         mask+commit {:.3} ms/token over {n} replayed tokens = {:.1}% of a free decode step",
        (constrained / free - 1.0) * 100.0,
        per_token * 1e3,
        share * 100.0
    );
    assert!(n > N / 2, "replay stopped early after {n} tokens");
    assert!(
        share < 0.10,
        "the mask costs {:.1}% of decode",
        share * 100.0
    );
}

// ---------------------------------------------------------------------------------
// A JSON-schema validator for exactly the keywords the schemas above use.

fn validate(v: &Value, s: &Value, at: &str) -> Result<(), String> {
    let err = |m: String| Err(format!("{at}: {m}"));
    let Some(s) = s.as_object() else {
        return err(format!("schema is not an object: {s}"));
    };
    for k in s.keys() {
        let known = [
            "type",
            "properties",
            "required",
            "additionalProperties",
            "items",
            "minItems",
            "maxItems",
            "enum",
            "const",
            "pattern",
            "minLength",
            "maxLength",
            "minimum",
            "maximum",
            "anyOf",
        ];
        if !known.contains(&k.as_str()) {
            return err(format!("validator does not know keyword {k}"));
        }
    }
    if let Some(t) = s.get("type") {
        let types: Vec<&str> = match t {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => return err(format!("bad type {t}")),
        };
        if !types.iter().any(|t| has_type(v, t)) {
            return err(format!("{v} is not of type {t}"));
        }
    }
    if let Some(e) = s.get("enum").and_then(Value::as_array) {
        if !e.iter().any(|x| same(x, v)) {
            return err(format!("{v} is not one of {e:?}"));
        }
    }
    if let Some(c) = s.get("const") {
        if !same(c, v) {
            return err(format!("{v} is not {c}"));
        }
    }
    if let Some(any) = s.get("anyOf").and_then(Value::as_array) {
        if !any.iter().any(|sub| validate(v, sub, at).is_ok()) {
            return err(format!("{v} matches no anyOf branch"));
        }
    }
    if let Value::Object(o) = v {
        let props = s.get("properties").and_then(Value::as_object);
        for r in s
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let r = r.as_str().unwrap_or_default();
            if !o.contains_key(r) {
                return err(format!("missing required property {r}"));
            }
        }
        for (k, x) in o {
            match props.and_then(|p| p.get(k)) {
                Some(sub) => validate(x, sub, &format!("{at}.{k}"))?,
                None => match s.get("additionalProperties") {
                    Some(Value::Bool(false)) => return err(format!("extra property {k}")),
                    Some(sub @ Value::Object(_)) => validate(x, sub, &format!("{at}.{k}"))?,
                    _ => {}
                },
            }
        }
    }
    if let Value::Array(a) = v {
        let n = a.len() as u64;
        if let Some(m) = s.get("minItems").and_then(Value::as_u64) {
            if n < m {
                return err(format!("{n} items, fewer than {m}"));
            }
        }
        if let Some(m) = s.get("maxItems").and_then(Value::as_u64) {
            if n > m {
                return err(format!("{n} items, more than {m}"));
            }
        }
        if let Some(items) = s.get("items") {
            for (i, x) in a.iter().enumerate() {
                validate(x, items, &format!("{at}[{i}]"))?;
            }
        }
    }
    if let Value::String(t) = v {
        let n = t.chars().count() as u64;
        if let Some(m) = s.get("minLength").and_then(Value::as_u64) {
            if n < m {
                return err(format!("{t:?} is shorter than {m}"));
            }
        }
        if let Some(m) = s.get("maxLength").and_then(Value::as_u64) {
            if n > m {
                return err(format!("{t:?} is longer than {m}"));
            }
        }
        if let Some(p) = s.get("pattern").and_then(Value::as_str) {
            let re = regex::Regex::new(p).map_err(|e| format!("{at}: bad pattern: {e}"))?;
            if !re.is_match(t) {
                return err(format!("{t:?} does not match {p}"));
            }
        }
    }
    if let Some(x) = v.as_f64() {
        if let Some(m) = s.get("minimum").and_then(Value::as_f64) {
            if x < m {
                return err(format!("{x} is below {m}"));
            }
        }
        if let Some(m) = s.get("maximum").and_then(Value::as_f64) {
            if x > m {
                return err(format!("{x} is above {m}"));
            }
        }
    }
    Ok(())
}

fn has_type(v: &Value, t: &str) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|x| x.fract() == 0.0),
        _ => false,
    }
}

/// JSON equality with numbers compared by value (`1` equals `1.0`).
fn same(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

#[test]
fn validator_accepts_and_rejects() {
    let person = json!({"type": "object", "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 5},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "minItems": 1,
            "maxItems": 2},
        "zip": {"type": "string", "pattern": "^[0-9]{5}$"},
        "v": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
        "k": {"const": 2},
        "n": {"type": ["string", "null"]}},
        "required": ["name", "age"], "additionalProperties": false});
    let good = [
        json!({"name": "Bo", "age": 3}),
        json!({"name": "Bo", "age": 3.0, "tags": ["a", "b"], "zip": "12345", "v": null,
            "k": 2.0, "n": null}),
        json!({"name": "Åsa", "age": 120, "v": 7, "n": "x"}),
    ];
    for g in &good {
        assert_eq!(validate(g, &person, "$"), Ok(()), "{g}");
    }
    let bad = [
        json!([]),
        json!({"name": "Bo"}),
        json!({"name": "", "age": 3}),
        json!({"name": "Robert", "age": 3}),
        json!({"name": "Bo", "age": 3.5}),
        json!({"name": "Bo", "age": -1}),
        json!({"name": "Bo", "age": 121}),
        json!({"name": "Bo", "age": "3"}),
        json!({"name": "Bo", "age": 3, "extra": 1}),
        json!({"name": "Bo", "age": 3, "tags": []}),
        json!({"name": "Bo", "age": 3, "tags": ["a", "b", "a"]}),
        json!({"name": "Bo", "age": 3, "tags": ["c"]}),
        json!({"name": "Bo", "age": 3, "zip": "1234"}),
        json!({"name": "Bo", "age": 3, "zip": "123456"}),
        json!({"name": "Bo", "age": 3, "v": "x"}),
        json!({"name": "Bo", "age": 3, "k": 3}),
        json!({"name": "Bo", "age": 3, "n": 1}),
    ];
    for b in &bad {
        assert!(validate(b, &person, "$").is_err(), "{b} passed");
    }
    // Unknown keywords are a test bug, not a pass.
    assert!(validate(&json!(1), &json!({"uniqueItems": true}), "$").is_err());
}
