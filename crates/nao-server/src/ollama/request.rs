//! Parsing and validating Ollama request bodies (`/api/generate`, `/api/chat`,
//! `/api/show`).
//!
//! Like the OpenAI side, bodies are read field by field from a `serde_json::Value`, `null`
//! means absent, unknown fields are ignored, and every error names its field (as
//! `options.top_p`, `messages[2].images`, …). What differs is Ollama's vocabulary:
//!
//! - `stream` defaults to **true**;
//! - sampling lives in `options`, with Ollama's defaults (temperature 0.8, top_k 40,
//!   top_p 0.9, min_p 0, repeat_penalty 1.1, repeat_last_n 64) and Ollama's special values
//!   (`num_predict` ≤ 0 and `repeat_last_n: -1` mean "the context size", a negative
//!   `seed` means "random");
//! - `num_ctx` is type-checked and otherwise **ignored**: the context is fixed when the
//!   server starts, and clients (Open WebUI, Continue) send it on every request, so a 400
//!   would break them; a request that outgrows the served context ends with
//!   `done_reason: "length"` (or a 400 when the prompt alone does not fit).
//!   Load-time and hardware options (`num_gpu`, `num_thread`, `use_mmap`, …) and the
//!   samplers nao does not have (`typical_p`, `mirostat*`, `tfs_z`, `penalize_newline`)
//!   are ignored the same way; Ollama itself ignores most of them in its newer engine.
//! - `format` (`"json"` or a JSON schema object) becomes the same decoding constraint as
//!   OpenAI's `response_format`, enforced token by token;
//! - `think: true` (or a level, `"low"`/`"medium"`/`"high"`) returns the model's
//!   `<think>` … `</think>` text in `thinking` instead of the answer; a model whose chat
//!   template has no thinking markers gets a 400, as in Ollama. `think: false` (or absent)
//!   leaves the output as generated.
//! - what nao cannot do is refused with a 400 rather than silently dropped: `images`,
//!   `suffix` (fill-in-the-middle), `template` (Ollama's Go templates).
//! - `context` (the legacy conversation memory of `/api/generate`) is accepted as token
//!   ids prepended to the prompt; see `mod.rs` for what is returned in it.

use crate::error::ApiError;
use crate::openai::request::{type_name, wrong_type, Fields};
use crate::ServerConfig;
use nao_engine::api::{Grammar, ModelInfo};
use nao_engine::sample::SamplerConfig;
use nao_tokenizer::tools::ToolFormat;
use serde_json::{Map, Value};

/// Most stop strings in `options.stop`. Ollama has no limit and Modelfiles commonly carry
/// four to eight, so OpenAI's limit of four would refuse ordinary requests; this one only
/// bounds the work of the stop matcher.
pub const MAX_STOP: usize = 16;

/// Roles Ollama's chat accepts.
const ROLES: [&str; 4] = ["system", "user", "assistant", "tool"];

/// Sampling and output options of one request.
#[derive(Debug, Clone)]
pub struct Params {
    pub max_tokens: usize,
    pub sampler: SamplerConfig,
    pub stop: Vec<String>,
    /// `Some(k)`: return each token's logprob and its `k` most likely alternatives.
    pub logprobs: Option<usize>,
    pub stream: bool,
    /// Chat with tools: parse calls in this format, accepting these names.
    pub tool_calls: Option<(ToolFormat, Vec<String>)>,
    /// `keep_alive: 0`: unload the model once this request is done.
    pub unload_after: bool,
    /// `format`: the grammar the output must follow.
    pub constraint: Option<Grammar>,
    /// `think`: split reasoning off into `thinking`.
    pub think: bool,
    /// Set by the handler once the prompt is rendered (when `think`): `Some(true)` when
    /// the prompt already opened `<think>`.
    pub reasoning: Option<bool>,
}

#[derive(Debug, Clone)]
pub struct GenerateRequest {
    /// The model name as the client sent it (echoed in responses), or the listed name.
    pub model: String,
    pub prompt: String,
    pub system: Option<String>,
    /// `true`: tokenize `prompt` as it is; `false`: wrap it in the chat template.
    pub raw: bool,
    /// Legacy `context` token ids, already checked against the vocabulary.
    pub context: Vec<u32>,
    pub params: Params,
}

#[derive(Debug, Clone)]
pub struct ChatRequest {
    pub model: String,
    /// Checked messages, ready for `render_chat`; empty means "load the model".
    pub messages: Vec<Value>,
    pub tools: Option<Value>,
    pub params: Params,
}

pub use nao_engine::manager::with_tag;

/// The name the served model is listed under (`/api/tags`, `/api/ps`).
pub fn listed_name(info: &ModelInfo) -> String {
    with_tag(&info.id)
}

/// The name to echo in responses: `model` as the client sent it, or the listed name of
/// the model that served the request (`info`, already resolved from that name by the
/// model provider) when it sent none.
pub fn echo_name(f: &Fields<'_>, info: &ModelInfo) -> Result<String, ApiError> {
    match f.str("model")? {
        None | Some("") => Ok(listed_name(info)),
        Some(m) => Ok(m.to_string()),
    }
}

/// Whether `keep_alive` asks to unload the model right after this request: `0`, or a
/// duration string whose numbers are all zero (`"0"`, `"0s"`, `"0m0s"`), as Ollama reads
/// it. Any other value (or type) keeps the model loaded; nao has no idle timer, so
/// positive durations and `-1` all mean "until evicted".
pub fn keep_alive_zero(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Number(n)) => n.as_f64() == Some(0.0),
        Some(Value::String(s)) => {
            let s = s.trim();
            s.chars().any(|c| c.is_ascii_digit())
                && !s.starts_with('-')
                && s.chars()
                    .all(|c| matches!(c, '0' | '.' | 'n' | 'u' | 'µ' | 'm' | 's' | 'h'))
        }
        _ => false,
    }
}

pub fn parse_generate(
    obj: &Map<String, Value>,
    cfg: &ServerConfig,
    info: &ModelInfo,
) -> Result<GenerateRequest, ApiError> {
    let f = Fields(obj);
    let model = echo_name(&f, info)?;
    let prompt = f.str("prompt")?.unwrap_or_default().to_string();
    let system = f.str("system")?.map(str::to_string);
    let raw = f.bool("raw")?.unwrap_or(false);
    check_images(f.get("images"), "images")?;
    if f.str("suffix")?.is_some_and(|s| !s.is_empty()) {
        return Err(ApiError::bad(
            "suffix",
            "suffix (fill-in-the-middle) is not supported",
        ));
    }
    if f.str("template")?.is_some_and(|s| !s.is_empty()) {
        return Err(ApiError::bad(
            "template",
            "template overrides are not supported; nao renders the model's own chat \
             template (use raw=true to send a fully formatted prompt)",
        ));
    }
    let context = match f.get("context") {
        None => Vec::new(),
        Some(Value::Array(ids)) => token_ids(ids, info)?,
        Some(v) => return Err(wrong_type("context", "an array of token ids", v)),
    };
    let params = parse_common(&f, cfg, info)?;
    Ok(GenerateRequest {
        model,
        prompt,
        system,
        raw,
        context,
        params,
    })
}

pub fn parse_chat(
    obj: &Map<String, Value>,
    cfg: &ServerConfig,
    info: &ModelInfo,
) -> Result<ChatRequest, ApiError> {
    let f = Fields(obj);
    let model = echo_name(&f, info)?;
    let messages = match f.get("messages") {
        None => Vec::new(),
        Some(Value::Array(list)) => list
            .iter()
            .enumerate()
            .map(|(i, m)| parse_message(i, m))
            .collect::<Result<_, _>>()?,
        Some(v) => return Err(wrong_type("messages", "an array", v)),
    };
    let tools = match f.get("tools") {
        None => None,
        Some(Value::Array(t)) if t.is_empty() => None,
        Some(t @ Value::Array(_)) => Some(t.clone()),
        Some(v) => return Err(wrong_type("tools", "an array", v)),
    };
    let params = parse_common(&f, cfg, info)?;
    Ok(ChatRequest {
        model,
        messages,
        tools,
        params,
    })
}

/// One chat message, checked and normalized for the chat template: `null` members
/// dropped, missing `content` read as `""` (Ollama's meaning), and Ollama's `tool_name`
/// also given as `name`, which is what Hugging Face templates read on tool results.
fn parse_message(i: usize, m: &Value) -> Result<Value, ApiError> {
    let Value::Object(m) = m else {
        return Err(ApiError::bad(
            format!("messages[{i}]"),
            format!("messages[{i}] must be an object, got {}", type_name(m)),
        ));
    };
    let mut m: Map<String, Value> = m
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let param = |field: &str| format!("messages[{i}].{field}");
    match m.get("role") {
        Some(Value::String(r)) if ROLES.contains(&r.as_str()) => {}
        Some(Value::String(r)) => {
            return Err(ApiError::bad(
                param("role"),
                format!(
                    "messages[{i}].role `{r}` is not one of {}",
                    ROLES.join(", ")
                ),
            ))
        }
        Some(v) => return Err(wrong_type(&param("role"), "a string", v)),
        None => {
            return Err(ApiError::bad(
                param("role"),
                format!("messages[{i}].role is required"),
            ))
        }
    }
    match m.get("content") {
        None => {
            m.insert("content".into(), Value::String(String::new()));
        }
        Some(Value::String(_)) => {}
        Some(v) => return Err(wrong_type(&param("content"), "a string", v)),
    }
    check_images(m.get("images"), &param("images"))?;
    // Checked empty above; templates need not see it.
    m.remove("images");
    match m.get("tool_calls") {
        None | Some(Value::Array(_)) => {}
        Some(v) => return Err(wrong_type(&param("tool_calls"), "an array", v)),
    }
    if let Some(Value::String(name)) = m.get("tool_name") {
        if !m.contains_key("name") {
            let name = name.clone();
            m.insert("name".into(), Value::String(name));
        }
    }
    Ok(Value::Object(m))
}

/// Images are refused, not dropped: the served models are text-only, and answering a
/// question about a picture nobody looked at would be worse than an error.
fn check_images(v: Option<&Value>, param: &str) -> Result<(), ApiError> {
    match v {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Array(list)) if list.is_empty() => Ok(()),
        Some(Value::Array(_)) => Err(ApiError::bad(
            param,
            format!("{param}: images are not supported; the served model is text-only"),
        )),
        Some(v) => Err(wrong_type(param, "an array of base64 images", v)),
    }
}

fn token_ids(list: &[Value], info: &ModelInfo) -> Result<Vec<u32>, ApiError> {
    list.iter()
        .enumerate()
        .map(|(i, v)| match v.as_i64() {
            Some(id) if id >= 0 && (id as u64) < info.n_vocab as u64 => Ok(id as u32),
            Some(id) => Err(ApiError::bad(
                "context",
                format!(
                    "context[{i}]: token id {id} is outside the vocabulary (size {})",
                    info.n_vocab
                ),
            )),
            None => Err(ApiError::bad(
                "context",
                format!("context[{i}] must be an integer token id, got {v}"),
            )),
        })
        .collect()
}

/// The fields both generation endpoints share.
fn parse_common(f: &Fields<'_>, cfg: &ServerConfig, info: &ModelInfo) -> Result<Params, ApiError> {
    let constraint = parse_format(f.get("format"))?;
    let think = match f.get("think") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::String(s)) if s.is_empty() || s == "false" => false,
        Some(Value::Bool(true)) => true,
        Some(Value::String(s)) if matches!(s.as_str(), "true" | "low" | "medium" | "high") => true,
        Some(v) => {
            return Err(wrong_type(
                "think",
                "a boolean or \"low\", \"medium\", \"high\"",
                v,
            ))
        }
    };
    if think {
        let t = info.details.chat_template.as_deref().unwrap_or("");
        if !t.contains("<think>") && !t.contains("</think>") {
            return Err(ApiError::bad(
                "think",
                format!("\"{}\" does not support thinking", info.id),
            ));
        }
    }
    let top = f.uint_in("top_logprobs", 0, cfg.max_top_logprobs as u64)?;
    let logprobs = match (f.bool("logprobs")?, top) {
        (Some(true), k) => Some(k.unwrap_or(0)),
        (_, Some(k)) if k > 0 => {
            return Err(ApiError::bad(
                "top_logprobs",
                "logprobs must be set to true when top_logprobs is used",
            ))
        }
        _ => None,
    };
    let stream = f.bool("stream")?.unwrap_or(true);
    let (max_tokens, sampler, stop) = parse_options(f.get("options"), cfg, info)?;
    Ok(Params {
        max_tokens,
        sampler,
        stop,
        logprobs,
        stream,
        tool_calls: None,
        unload_after: keep_alive_zero(f.get("keep_alive")),
        constraint,
        think,
        reasoning: None,
    })
}

/// `format`: `"json"` (any JSON object, as Ollama's JSON mode gives) or a JSON schema
/// object; `""` means none. The schema is compiled when the request is submitted, so an
/// unsupported keyword is a 400 naming it, as on the OpenAI side.
fn parse_format(v: Option<&Value>) -> Result<Option<Grammar>, ApiError> {
    match v {
        None => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) if s == "json" => Ok(Some(Grammar::JsonObject)),
        Some(Value::String(s)) => Err(ApiError::bad(
            "format",
            format!("format must be \"json\" or a JSON schema object, got \"{s}\""),
        )),
        Some(schema @ Value::Object(_)) => Ok(Some(Grammar::JsonSchema(schema.clone()))),
        Some(v) => Err(wrong_type("format", "\"json\" or a JSON schema object", v)),
    }
}

/// `options` with `null` members read as absent, each error naming `options.<key>`.
struct Options<'a>(Option<&'a Map<String, Value>>);

impl<'a> Options<'a> {
    fn get(&self, key: &str) -> Option<&'a Value> {
        self.0?.get(key).filter(|v| !v.is_null())
    }

    fn number(&self, key: &str) -> Result<Option<f64>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            // serde_json never yields NaN or infinities from JSON text.
            Some(Value::Number(n)) => Ok(n.as_f64()),
            Some(v) => Err(wrong_type(&format!("options.{key}"), "a number", v)),
        }
    }

    /// A number in `[lo, hi]`.
    fn f32_in(&self, key: &str, lo: f64, hi: f64) -> Result<Option<f32>, ApiError> {
        match self.number(key)? {
            None => Ok(None),
            Some(x) if (lo..=hi).contains(&x) => Ok(Some(x as f32)),
            Some(x) => Err(ApiError::bad(
                format!("options.{key}"),
                format!("options.{key} must be between {lo} and {hi}, got {x}"),
            )),
        }
    }

    /// An integer (Ollama's clients send JSON numbers; `100.0` is accepted as 100).
    fn int(&self, key: &str) -> Result<Option<i64>, ApiError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let n = match v {
            Value::Number(n) => n,
            v => return Err(wrong_type(&format!("options.{key}"), "an integer", v)),
        };
        if let Some(i) = n.as_i64() {
            return Ok(Some(i));
        }
        match n.as_f64() {
            Some(x) if x.fract() == 0.0 && x.abs() < 9.0e15 => Ok(Some(x as i64)),
            // Past i64 (only seeds can be that large) saturate: still "a large value".
            _ if n.as_u64().is_some() => Ok(Some(i64::MAX)),
            _ => Err(ApiError::bad(
                format!("options.{key}"),
                format!("options.{key} must be an integer, got {n}"),
            )),
        }
    }
}

/// Maps `options` onto the sampler: `(max_tokens, sampler, stop)`.
fn parse_options(
    v: Option<&Value>,
    cfg: &ServerConfig,
    info: &ModelInfo,
) -> Result<(usize, SamplerConfig, Vec<String>), ApiError> {
    let o = match v {
        None => Options(None),
        Some(Value::Object(m)) => Options(Some(m)),
        Some(v) => return Err(wrong_type("options", "an object", v)),
    };
    let cap = cfg.max_tokens_cap.min(info.n_ctx).max(1);
    // Ollama: -1 = until the context is full, -2 = fill the context; both are what the
    // cap means here. 0 has no useful meaning and is read the same way. Larger values are
    // clamped: the engine would stop at the context anyway.
    let max_tokens = match o.int("num_predict")? {
        None => cap,
        Some(n) if n <= 0 => cap,
        Some(n) => (n as u64).min(cap as u64) as usize,
    };
    // Ollama's defaults, not OpenAI's: the same request must sample the same way here as
    // against Ollama.
    let mut s = SamplerConfig {
        temperature: 0.8,
        top_k: 40,
        top_p: 0.9,
        min_p: 0.0,
        repeat_penalty: 1.1,
        repeat_last_n: 64.min(info.n_ctx),
        presence_penalty: 0.0,
        frequency_penalty: 0.0,
        seed: crate::openai::random_u64(),
    };
    if let Some(t) = o.f32_in("temperature", 0.0, 100.0)? {
        s.temperature = t;
    }
    if let Some(k) = o.int("top_k")? {
        // Ollama (llama.cpp) reads top_k <= 0 as "off"; past the vocabulary it keeps
        // everything anyway.
        s.top_k = k.clamp(0, info.n_vocab as i64) as usize;
    }
    if let Some(p) = o.f32_in("top_p", 0.0, 1.0)? {
        s.top_p = p;
    }
    if let Some(p) = o.f32_in("min_p", 0.0, 1.0)? {
        s.min_p = p;
    }
    if let Some(p) = o.f32_in("repeat_penalty", 0.0, 100.0)? {
        if p <= 0.0 {
            return Err(ApiError::bad(
                "options.repeat_penalty",
                "options.repeat_penalty must be greater than 0 (1 turns it off)",
            ));
        }
        s.repeat_penalty = p;
    }
    match o.int("repeat_last_n")? {
        None => {}
        Some(-1) => s.repeat_last_n = info.n_ctx,
        Some(n) if n >= 0 => s.repeat_last_n = (n as u64).min(info.n_ctx as u64) as usize,
        Some(n) => {
            return Err(ApiError::bad(
                "options.repeat_last_n",
                format!("options.repeat_last_n must be -1 (the context size) or >= 0, got {n}"),
            ))
        }
    }
    if let Some(p) = o.f32_in("presence_penalty", -100.0, 100.0)? {
        s.presence_penalty = p;
    }
    if let Some(p) = o.f32_in("frequency_penalty", -100.0, 100.0)? {
        s.frequency_penalty = p;
    }
    match o.get("seed") {
        None => {}
        Some(Value::Number(n)) => match (n.as_i64(), n.as_u64()) {
            // Ollama's default seed is -1, meaning "random": keep the random one.
            (Some(i), _) if i < 0 => {}
            (_, Some(u)) => s.seed = u,
            _ => {
                return Err(ApiError::bad(
                    "options.seed",
                    format!("options.seed must be an integer, got {n}"),
                ))
            }
        },
        Some(v) => return Err(wrong_type("options.seed", "an integer", v)),
    }
    // Type-checked so a typo'd value is caught, then ignored (see the module docs).
    o.int("num_ctx")?;
    s.validate()
        .map_err(|e| ApiError::bad("options", e.to_string()))?;
    let stop = parse_stop(o.get("stop"), cfg)?;
    Ok((max_tokens, s, stop))
}

fn parse_stop(v: Option<&Value>, cfg: &ServerConfig) -> Result<Vec<String>, ApiError> {
    const P: &str = "options.stop";
    let list: Vec<&Value> = match v {
        None => return Ok(Vec::new()),
        // Ollama's type is a list; a lone string is taken as a list of one.
        Some(s @ Value::String(_)) => vec![s],
        Some(Value::Array(list)) if list.len() > MAX_STOP => {
            return Err(ApiError::bad(
                P,
                format!(
                    "at most {MAX_STOP} stop sequences are allowed, got {}",
                    list.len()
                ),
            ))
        }
        Some(Value::Array(list)) => list.iter().collect(),
        Some(v) => return Err(wrong_type(P, "an array of strings", v)),
    };
    list.into_iter()
        .map(|s| match s {
            Value::String(s) if s.is_empty() => {
                Err(ApiError::bad(P, "stop sequences must not be empty"))
            }
            Value::String(s) if s.len() > cfg.max_stop_len => Err(ApiError::bad(
                P,
                format!(
                    "stop sequences may be at most {} bytes long, got {}",
                    cfg.max_stop_len,
                    s.len()
                ),
            )),
            Value::String(s) => Ok(s.clone()),
            other => Err(wrong_type(P, "a string", other)),
        })
        .collect()
}

/// `POST /api/show` names its model in `model` (older clients: `name`); unlike the
/// generation endpoints a name is required, as in Ollama. Returns the name.
pub fn parse_show(obj: &Map<String, Value>) -> Result<String, ApiError> {
    let f = Fields(obj);
    let name = match f.str("model")? {
        Some(m) if !m.is_empty() => m,
        _ => f.str("name")?.unwrap_or_default(),
    };
    if name.is_empty() {
        return Err(ApiError::bad("model", "model is required"));
    }
    Ok(name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn info(id: &str) -> ModelInfo {
        ModelInfo {
            id: id.into(),
            n_ctx: 100,
            n_vocab: 50,
            created: 0,
            details: Default::default(),
        }
    }

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    fn generate(v: Value) -> Result<GenerateRequest, ApiError> {
        parse_generate(&obj(v), &ServerConfig::default(), &info("m"))
    }

    fn param_of(e: ApiError) -> Option<String> {
        match e {
            ApiError::BadRequest { param, .. } => param,
            other => panic!("not a 400: {other:?}"),
        }
    }

    #[test]
    fn the_sent_name_is_echoed_else_the_listed_one() {
        let echo = |id: &str, m: Value| echo_name(&Fields(&obj(json!({"model": m}))), &info(id));
        assert_eq!(echo("m", json!("m")).unwrap(), "m");
        assert_eq!(echo("m", json!("m:latest")).unwrap(), "m:latest");
        assert_eq!(echo("m", json!("")).unwrap(), "m:latest");
        assert_eq!(echo("q:1.5b", json!(null)).unwrap(), "q:1.5b");
        assert_eq!(
            param_of(echo("m", json!(3)).unwrap_err()).as_deref(),
            Some("model")
        );
        assert_eq!(with_tag("host:5000/ns/m"), "host:5000/ns/m:latest");
    }

    #[test]
    fn keep_alive_zero_as_ollama_reads_it() {
        for v in [
            json!(0),
            json!(0.0),
            json!("0"),
            json!("0s"),
            json!("0m0s"),
            json!(" 0ms "),
        ] {
            assert!(keep_alive_zero(Some(&v)), "{v}");
        }
        for v in [
            json!(-1),
            json!(300),
            json!("5m"),
            json!("-1"),
            json!("10s"),
            json!(""),
            json!("s"),
            json!(null),
            json!(false),
        ] {
            assert!(!keep_alive_zero(Some(&v)), "{v}");
        }
        assert!(!keep_alive_zero(None));
        assert!(
            generate(json!({"keep_alive": 0}))
                .unwrap()
                .params
                .unload_after
        );
        assert!(
            !generate(json!({"keep_alive": "5m"}))
                .unwrap()
                .params
                .unload_after
        );
    }

    #[test]
    fn defaults_are_ollamas() {
        let r = generate(json!({"prompt": "hi"})).unwrap();
        let s = &r.params.sampler;
        assert_eq!(
            (s.temperature, s.top_k, s.top_p, s.min_p),
            (0.8, 40, 0.9, 0.0)
        );
        assert_eq!((s.repeat_penalty, s.repeat_last_n), (1.1, 64));
        assert!(r.params.stream, "stream defaults to true");
        assert_eq!(r.params.max_tokens, 100, "capped by n_ctx");
        assert!(!r.raw);
    }

    #[test]
    fn special_option_values() {
        let r = generate(json!({"options": {"num_predict": -1, "repeat_last_n": -1,
            "top_k": -5, "seed": -1, "num_ctx": 1000000, "mirostat": 2}}))
        .unwrap();
        assert_eq!(r.params.max_tokens, 100);
        assert_eq!(r.params.sampler.repeat_last_n, 100);
        assert_eq!(r.params.sampler.top_k, 0);
        let r = generate(json!({"options": {"num_predict": 7.0, "seed": 18446744073709551615u64}}))
            .unwrap();
        assert_eq!(r.params.max_tokens, 7);
        assert_eq!(r.params.sampler.seed, u64::MAX);
    }

    #[test]
    fn format_becomes_the_constraint() {
        let schema = json!({"type": "object", "properties": {"a": {"type": "integer"}}});
        for (format, want) in [
            (json!("json"), Some(Grammar::JsonObject)),
            (schema.clone(), Some(Grammar::JsonSchema(schema.clone()))),
            (json!(""), None),
            (Value::Null, None),
        ] {
            let r = generate(json!({"format": format})).unwrap();
            assert_eq!(r.params.constraint, want, "{format}");
        }
    }

    #[test]
    fn bad_fields_name_their_param() {
        let cases = [
            (json!({"format": "yaml"}), "format"),
            (json!({"format": 3}), "format"),
            (json!({"images": ["aGk="]}), "images"),
            (json!({"suffix": "x"}), "suffix"),
            (json!({"template": "{{ .Prompt }}"}), "template"),
            (json!({"think": true}), "think"),
            (json!({"context": [50]}), "context"),
            (json!({"context": "x"}), "context"),
            (json!({"options": []}), "options"),
            (
                json!({"options": {"temperature": "hot"}}),
                "options.temperature",
            ),
            (json!({"options": {"top_p": 1.5}}), "options.top_p"),
            (
                json!({"options": {"num_predict": 1.5}}),
                "options.num_predict",
            ),
            (
                json!({"options": {"repeat_penalty": 0}}),
                "options.repeat_penalty",
            ),
            (
                json!({"options": {"repeat_last_n": -2}}),
                "options.repeat_last_n",
            ),
            (json!({"options": {"stop": [""]}}), "options.stop"),
            (json!({"options": {"stop": [1]}}), "options.stop"),
            (json!({"options": {"num_ctx": "big"}}), "options.num_ctx"),
            (json!({"stream": "yes"}), "stream"),
        ];
        for (body, want) in cases {
            let e = generate(body.clone())
                .err()
                .unwrap_or_else(|| panic!("{body} passed"));
            assert_eq!(param_of(e).as_deref(), Some(want), "{body}");
        }
        let many: Vec<String> = (0..=MAX_STOP).map(|i| format!("s{i}")).collect();
        assert!(generate(json!({"options": {"stop": many}})).is_err());
        // Empty values mean "not used" and pass.
        assert!(generate(
            json!({"format": "", "images": [], "suffix": "", "think": false,
            "keep_alive": "5m", "template": ""})
        )
        .is_ok());
    }

    #[test]
    fn chat_messages_are_checked_and_normalized() {
        let chat = |v: Value| parse_chat(&obj(v), &ServerConfig::default(), &info("m"));
        let r = chat(json!({"messages": [
            {"role": "user", "content": "hi", "images": null},
            {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": {}}}]},
            {"role": "tool", "content": "42", "tool_name": "f"}
        ]}))
        .unwrap();
        assert_eq!(r.messages[0], json!({"role": "user", "content": "hi"}));
        assert_eq!(r.messages[1]["content"], "");
        assert_eq!(r.messages[2]["name"], "f");
        assert!(chat(json!({"messages": []})).unwrap().messages.is_empty());
        for (body, want) in [
            (
                json!({"messages": [{"role": "user", "content": "x", "images": ["aGk="]}]}),
                "messages[0].images",
            ),
            (
                json!({"messages": [{"role": "bot", "content": "x"}]}),
                "messages[0].role",
            ),
            (json!({"messages": [{"content": "x"}]}), "messages[0].role"),
            (
                json!({"messages": [{"role": "user", "content": ["x"]}]}),
                "messages[0].content",
            ),
            (json!({"messages": [7]}), "messages[0]"),
            (json!({"messages": {}}), "messages"),
            (json!({"messages": [], "tools": {}}), "tools"),
        ] {
            let e = chat(body.clone())
                .err()
                .unwrap_or_else(|| panic!("{body} passed"));
            assert_eq!(param_of(e).as_deref(), Some(want), "{body}");
        }
    }

    #[test]
    fn show_needs_a_name() {
        assert_eq!(
            parse_show(&obj(json!({"model": "m:latest"}))).unwrap(),
            "m:latest"
        );
        assert_eq!(parse_show(&obj(json!({"name": "m"}))).unwrap(), "m");
        assert!(matches!(
            parse_show(&obj(json!({}))),
            Err(ApiError::BadRequest { .. })
        ));
    }
}
