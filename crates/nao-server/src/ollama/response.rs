//! Ollama response objects: generation chunks and final lines, model listings, `show`,
//! and the small formatting helpers they need (RFC 3339 times, parameter sizes).
//!
//! Durations are nanoseconds, as Ollama documents. Field names and nesting follow
//! Ollama's API docs and the `ollama` Python package's response types.

use super::request::listed_name;
use nao_engine::api::{Finish, ModelInfo, TokenLogprob, Usage};
use nao_tokenizer::tools::ToolCall;
use serde_json::{json, Map, Value};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Which endpoint a generation belongs to: it decides where the text goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `/api/generate`: text in `response`.
    Generate,
    /// `/api/chat`: text in `message.content`.
    Chat,
}

/// `secs` since the Unix epoch (UTC) and `nanos` as RFC 3339, e.g.
/// `2024-05-01T12:00:00.123456789Z` (fraction left out when zero).
pub fn rfc3339(secs: u64, nanos: u32) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    let (hh, mm, ss) = (rem / 3600, rem % 3600 / 60, rem % 60);
    if nanos == 0 {
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
    } else {
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{nanos:09}Z")
    }
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, <https://howardhinnant.github.io/date_algorithms.html>).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March-based
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The current time, for `created_at`.
pub fn now_rfc3339() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(d.as_secs(), d.subsec_nanos())
}

/// A parameter count the way Ollama prints it: `268.10M`, `1.5B`, `8.0B`.
pub fn parameter_size(n: u64) -> String {
    let x = n as f64;
    if n >= 1_000_000_000 {
        format!("{:.1}B", x / 1e9)
    } else if n >= 1_000_000 {
        format!("{:.2}M", x / 1e6)
    } else if n >= 1_000 {
        format!("{:.0}K", x / 1e3)
    } else {
        n.to_string()
    }
}

/// A stable 64-hex-digit identifier of the served model for Ollama's `digest` fields.
/// Ollama sends the SHA-256 of its manifest; hashing a multi-gigabyte file at start-up to
/// imitate that is not worth it, and clients only compare digests for equality. This
/// changes whenever the id, file size, file time or parameter count does.
pub fn digest(info: &ModelInfo) -> String {
    let d = &info.details;
    (0u8..4)
        .map(|lane| {
            let mut h = DefaultHasher::new();
            (
                lane,
                &info.id,
                d.file_size,
                d.file_modified,
                d.parameter_count,
            )
                .hash(&mut h);
            format!("{:016x}", h.finish())
        })
        .collect()
}

/// The `details` object of listings and `show`.
pub fn details(info: &ModelInfo) -> Value {
    let d = &info.details;
    let family = &d.architecture;
    json!({
        "parent_model": "",
        "format": "gguf",
        "family": family,
        "families": if family.is_empty() { Value::Null } else { json!([family]) },
        "parameter_size": if d.parameter_count > 0 {
            parameter_size(d.parameter_count)
        } else {
            String::new()
        },
        "quantization_level": d.quantization,
    })
}

/// When the file was last modified, falling back to the load time.
fn modified_at(info: &ModelInfo) -> String {
    let t = match info.details.file_modified {
        0 => info.created,
        t => t,
    };
    rfc3339(t, 0)
}

/// `GET /api/tags`: every model the server can serve, loaded or not.
pub fn tags(models: &[ModelInfo]) -> Value {
    let list: Vec<Value> = models
        .iter()
        .map(|info| {
            let name = listed_name(info);
            json!({
                "name": name,
                "model": name,
                "modified_at": modified_at(info),
                "size": info.details.file_size,
                "digest": digest(info),
                "details": details(info),
            })
        })
        .collect();
    json!({ "models": list })
}

/// `GET /api/ps`: the models loaded now. A model stays loaded until it is evicted for
/// another or unloaded by `keep_alive: 0` (there is no idle timer), so `expires_at` is
/// far in the future (as Ollama reports for `keep_alive: -1`); nothing lives in GPU memory.
pub fn ps(models: &[ModelInfo]) -> Value {
    const CENTURY: u64 = 100 * 365 * 86_400;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let list: Vec<Value> = models
        .iter()
        .map(|info| {
            let name = listed_name(info);
            json!({
                "name": name,
                "model": name,
                "size": info.details.file_size,
                "digest": digest(info),
                "details": details(info),
                "expires_at": rfc3339(now.saturating_add(CENTURY), 0),
                "size_vram": 0,
                "context_length": info.n_ctx,
            })
        })
        .collect();
    json!({ "models": list })
}

/// `POST /api/show`. `template` is the Jinja chat template nao renders (Ollama's is a Go
/// template; clients only display it). `{arch}.context_length` in `model_info` is the
/// training context, as in the GGUF file; the context actually served is `num_ctx` in
/// `parameters` and `nao.context_length`.
pub fn show(info: &ModelInfo, name: &str) -> Value {
    let d = &info.details;
    let arch = if d.architecture.is_empty() {
        "unknown"
    } else {
        d.architecture.as_str()
    };
    let template = d.chat_template.clone().unwrap_or_default();
    let mut model_info = Map::new();
    let mut put = |k: String, v: Value| {
        model_info.insert(k, v);
    };
    put("general.architecture".into(), json!(arch));
    put("general.name".into(), json!(info.id));
    if d.parameter_count > 0 {
        put("general.parameter_count".into(), json!(d.parameter_count));
    }
    for (key, v) in [
        ("context_length", d.n_ctx_train),
        ("embedding_length", d.n_embd),
        ("block_count", d.n_layer),
        ("attention.head_count", d.n_head),
        ("attention.head_count_kv", d.n_head_kv),
        ("vocab_size", info.n_vocab),
    ] {
        if v > 0 {
            put(format!("{arch}.{key}"), json!(v));
        }
    }
    put("nao.context_length".into(), json!(info.n_ctx));
    let parameters = format!("{:<30} {}", "num_ctx", info.n_ctx);
    let mut modelfile = format!(
        "# Modelfile generated by nao {}\n# (the template is Jinja, rendered by nao, not an Ollama Go template)\nFROM {name}\n",
        env!("CARGO_PKG_VERSION")
    );
    if !template.is_empty() {
        modelfile.push_str(&format!("TEMPLATE \"\"\"{template}\"\"\"\n"));
    }
    modelfile.push_str(&format!("PARAMETER num_ctx {}\n", info.n_ctx));
    let mut capabilities = vec!["completion"];
    // The template decides whether tool definitions reach the model at all.
    if template.contains("tools") {
        capabilities.push("tools");
    }
    json!({
        "modelfile": modelfile,
        "parameters": parameters,
        "template": template,
        "details": details(info),
        "model_info": model_info,
        "capabilities": capabilities,
        "modified_at": modified_at(info),
    })
}

/// Where the text of a chunk or final line goes.
fn put_text(obj: &mut Map<String, Value>, kind: Kind, text: &str) {
    match kind {
        Kind::Generate => {
            obj.insert("response".into(), json!(text));
        }
        Kind::Chat => {
            obj.insert(
                "message".into(),
                json!({"role": "assistant", "content": text}),
            );
        }
    }
}

fn logprobs_json(lps: &[TokenLogprob]) -> Value {
    let one = |token: &str, bytes: &[u8], logprob: f32| json!({"token": token, "logprob": logprob, "bytes": bytes});
    lps.iter()
        .map(|t| {
            let mut v = one(&t.token, &t.bytes, t.logprob);
            v["top_logprobs"] = t
                .top
                .iter()
                .map(|(tok, bytes, lp)| one(tok, bytes, *lp))
                .collect();
            v
        })
        .collect()
}

fn base(kind: Kind, model: &str, text: &str, done: bool) -> Map<String, Value> {
    let mut obj = Map::new();
    obj.insert("model".into(), json!(model));
    obj.insert("created_at".into(), json!(now_rfc3339()));
    put_text(&mut obj, kind, text);
    obj.insert("done".into(), json!(done));
    obj
}

/// One streamed piece of text (`done: false`).
pub fn chunk(kind: Kind, model: &str, text: &str, logprobs: Option<&[TokenLogprob]>) -> Value {
    let mut obj = base(kind, model, text, false);
    if let Some(lps) = logprobs {
        obj.insert("logprobs".into(), logprobs_json(lps));
    }
    Value::Object(obj)
}

/// Adds reasoning text to a chunk or final line: `message.thinking` (chat) or `thinking`
/// (generate), as Ollama sends it.
pub fn put_thinking(v: &mut Value, kind: Kind, thinking: &str) {
    match kind {
        Kind::Generate => v["thinking"] = json!(thinking),
        Kind::Chat => v["message"]["thinking"] = json!(thinking),
    }
}

/// Ollama's `message.tool_calls`: arguments as an object, not a JSON string.
pub fn tool_calls_json(calls: &[ToolCall]) -> Value {
    let list: Vec<Value> = calls
        .iter()
        .map(|c| {
            let args: Value = serde_json::from_str(&c.arguments).unwrap_or_else(|_| json!({}));
            json!({"function": {"name": c.name, "arguments": args}})
        })
        .collect();
    Value::Array(list)
}

/// What a finished generation reports.
#[derive(Debug, Clone)]
pub struct Summary {
    pub finish: Finish,
    pub usage: Usage,
    /// From the request's arrival to the engine's `Done`.
    pub total: Duration,
    /// From the request's arrival to its submission (template, tokenization).
    pub prepare: Duration,
    /// From submission to the first token (queueing and prefill): Ollama's prompt eval.
    pub time_to_first_token: Duration,
    /// From submission to `Done`.
    pub generation: Duration,
}

fn nanos(d: Duration) -> u64 {
    d.as_nanos().min(u128::from(u64::MAX)) as u64
}

/// The last line (`done: true`). `text` is the whole answer when not streamed and empty
/// when streamed, as in Ollama; `context` only for `/api/generate` without `raw`.
pub fn final_line(
    kind: Kind,
    model: &str,
    text: &str,
    logprobs: Option<&[TokenLogprob]>,
    s: &Summary,
    context: Option<Vec<u32>>,
) -> Value {
    let mut obj = base(kind, model, text, true);
    obj.insert("done_reason".into(), json!(s.finish.as_str()));
    if let Some(ctx) = context {
        obj.insert("context".into(), json!(ctx));
    }
    // eval_duration is what clients divide by (tokens/s); keep it above zero.
    let eval = s.generation.saturating_sub(s.time_to_first_token);
    obj.insert("total_duration".into(), json!(nanos(s.total)));
    // What a request waits for before submission: loading the model when it was not
    // loaded, and prompt preparation; reported here so the parts add up to the total.
    obj.insert("load_duration".into(), json!(nanos(s.prepare)));
    obj.insert("prompt_eval_count".into(), json!(s.usage.prompt_tokens));
    obj.insert(
        "prompt_eval_duration".into(),
        json!(nanos(s.time_to_first_token)),
    );
    obj.insert("eval_count".into(), json!(s.usage.completion_tokens));
    obj.insert("eval_duration".into(), json!(nanos(eval).max(1)));
    if let Some(lps) = logprobs {
        obj.insert("logprobs".into(), logprobs_json(lps));
    }
    Value::Object(obj)
}

/// The answer to a request without a prompt: Ollama loads the model and says so
/// (`reason` "load"), or with `keep_alive: 0` unloads it ("unload").
pub fn load_line(kind: Kind, model: &str, reason: &str) -> Value {
    let mut obj = base(kind, model, "", true);
    obj.insert("done_reason".into(), json!(reason));
    Value::Object(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000, 0), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400, 5), "2000-02-29T00:00:00.000000005Z");
        assert_eq!(rfc3339(4_107_542_399, 0), "2100-02-28T23:59:59Z");
        assert_eq!(rfc3339(4_107_542_400, 0), "2100-03-01T00:00:00Z");
    }

    #[test]
    fn parameter_sizes() {
        assert_eq!(parameter_size(268_098_176), "268.10M");
        assert_eq!(parameter_size(1_543_714_304), "1.5B");
        assert_eq!(parameter_size(8_030_261_248), "8.0B");
        assert_eq!(parameter_size(12_345), "12K");
        assert_eq!(parameter_size(999), "999");
    }

    #[test]
    fn digest_is_stable_hex() {
        let info = ModelInfo {
            id: "m".into(),
            n_ctx: 8,
            n_vocab: 8,
            created: 0,
            details: Default::default(),
        };
        let d = digest(&info);
        assert_eq!(d.len(), 64);
        assert!(d.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(d, digest(&info));
    }
}
