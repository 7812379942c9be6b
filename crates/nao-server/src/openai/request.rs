//! Parsing and validating OpenAI request bodies: the body itself and the sampling and
//! output fields both endpoints share (`prompt` and `messages` are in `prompt.rs`),
//! including the structured-output fields: OpenAI's `response_format` and llama.cpp's
//! `json_schema` and `grammar` extensions, all read into one engine [`Grammar`].
//!
//! Bodies are parsed to a `serde_json::Value` and read field by field instead of through
//! a derived struct: that way every error names its `param`, `null` can mean "absent"
//! everywhere (clients send `"stop": null`), unknown fields are ignored, and no limit is
//! checked after an allocation it was meant to prevent (a 10^6-element `stop` list is
//! refused on its length before any string is copied).

use crate::error::ApiError;
use crate::ServerConfig;
use nao_engine::api::{Grammar, ModelInfo};
use nao_engine::gbnf::gbnf_to_lark;
use nao_engine::sample::SamplerConfig;
use serde_json::{Map, Value};

/// Sampling and output options shared by both endpoints.
#[derive(Debug, Clone)]
pub struct GenParams {
    pub max_tokens: usize,
    /// `seed` is the first choice's; choice `i` gets `seed + i`.
    pub sampler: SamplerConfig,
    pub logit_bias: Vec<(u32, f32)>,
    pub logprobs: Option<usize>,
    pub stop: Vec<String>,
    pub stop_at_eog: bool,
    pub n: usize,
    pub stream: bool,
    pub include_usage: bool,
    /// The grammar the output must follow (`response_format`, `json_schema`, `grammar`).
    pub constraint: Option<Grammar>,
}

/// Parses a body as a JSON object. The content type is not checked (curl's `-d` sends
/// form-urlencoded, llama.cpp accepts it, and the body decides anyway); the JSON is.
pub fn parse_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_body(
            "the request body is empty; send a JSON object",
        ));
    }
    let text = std::str::from_utf8(body).map_err(|e| {
        ApiError::bad_body(format!(
            "the request body is not valid UTF-8 (at byte {})",
            e.valid_up_to()
        ))
    })?;
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(ApiError::bad_body(format!(
            "the request body must be a JSON object, got {}",
            type_name(&other)
        ))),
        Err(e) => Err(ApiError::bad_body(format!(
            "the request body is not valid JSON: {e}"
        ))),
    }
}

pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Typed access to the top-level fields, `null` read as absent.
pub(crate) struct Fields<'a>(pub(crate) &'a Map<String, Value>);

impl<'a> Fields<'a> {
    pub(crate) fn get(&self, name: &str) -> Option<&'a Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }

    pub(crate) fn bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(wrong_type(name, "a boolean", v)),
        }
    }

    pub(crate) fn str(&self, name: &str) -> Result<Option<&'a str>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(wrong_type(name, "a string", v)),
        }
    }

    /// A number in `[lo, hi]` (rejecting NaN-free but out-of-range JSON numbers too).
    pub(crate) fn f32_in(&self, name: &str, lo: f64, hi: f64) -> Result<Option<f32>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Number(n)) => match n.as_f64() {
                Some(x) if (lo..=hi).contains(&x) => Ok(Some(x as f32)),
                _ => Err(ApiError::bad(
                    name,
                    format!("{name} must be between {lo} and {hi}, got {n}"),
                )),
            },
            Some(v) => Err(wrong_type(name, "a number", v)),
        }
    }

    /// A non-negative integer; the bound check is the caller's, on the full `u64`.
    pub(crate) fn uint(&self, name: &str) -> Result<Option<u64>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Number(n)) => match n.as_u64() {
                Some(x) => Ok(Some(x)),
                None => Err(ApiError::bad(
                    name,
                    format!("{name} must be a non-negative integer, got {n}"),
                )),
            },
            Some(v) => Err(wrong_type(name, "an integer", v)),
        }
    }

    /// A non-negative integer in `[lo, hi]`.
    pub(crate) fn uint_in(&self, name: &str, lo: u64, hi: u64) -> Result<Option<usize>, ApiError> {
        match self.uint(name)? {
            None => Ok(None),
            Some(x) if (lo..=hi).contains(&x) => Ok(Some(x as usize)),
            Some(x) => Err(ApiError::bad(
                name,
                format!("{name} must be between {lo} and {hi}, got {x}"),
            )),
        }
    }
}

pub(crate) fn wrong_type(name: &str, want: &str, got: &Value) -> ApiError {
    ApiError::bad(
        name,
        format!("{name} must be {want}, got {}", type_name(got)),
    )
}

/// The fields both endpoints share. Defaults follow OpenAI (temperature 1, no top-k,
/// top-p or min-p truncation), not llama.cpp's CLI defaults.
pub(super) fn parse_params(
    f: &Fields<'_>,
    cfg: &ServerConfig,
    info: &ModelInfo,
    max_tokens_name: &str,
    logprobs: Option<usize>,
) -> Result<GenParams, ApiError> {
    let cap = cfg.max_tokens_cap.min(info.n_ctx).max(1);
    let max_tokens = match f.uint(max_tokens_name)? {
        None => cap,
        Some(0) => {
            return Err(ApiError::bad(
                max_tokens_name,
                format!("{max_tokens_name} must be at least 1"),
            ))
        }
        Some(x) if x > cap as u64 => {
            return Err(ApiError::bad(
                max_tokens_name,
                format!("{max_tokens_name} is {x}, more than the limit of {cap} tokens"),
            ))
        }
        Some(x) => x as usize,
    };
    let n = f.uint_in("n", 1, cfg.max_n as u64)?.unwrap_or(1);

    let mut sampler = SamplerConfig {
        temperature: 1.0,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        repeat_penalty: 1.0,
        presence_penalty: 0.0,
        frequency_penalty: 0.0,
        seed: 0,
        ..SamplerConfig::default()
    };
    if let Some(t) = f.f32_in("temperature", 0.0, 2.0)? {
        sampler.temperature = t;
    }
    if let Some(p) = f.f32_in("top_p", 0.0, 1.0)? {
        sampler.top_p = p;
    }
    if let Some(p) = f.f32_in("min_p", 0.0, 1.0)? {
        sampler.min_p = p;
    }
    if let Some(k) = f.uint("top_k")? {
        // Past the vocabulary top-k keeps everything anyway.
        sampler.top_k = k.min(info.n_vocab as u64) as usize;
    }
    if let Some(p) = f.f32_in("presence_penalty", -2.0, 2.0)? {
        sampler.presence_penalty = p;
    }
    if let Some(p) = f.f32_in("frequency_penalty", -2.0, 2.0)? {
        sampler.frequency_penalty = p;
    }
    if let Some(p) = f.f32_in("repeat_penalty", 0.0, 10.0)? {
        if p <= 0.0 {
            return Err(ApiError::bad(
                "repeat_penalty",
                "repeat_penalty must be greater than 0",
            ));
        }
        sampler.repeat_penalty = p;
    }
    if let Some(k) = f.uint("repeat_last_n")? {
        sampler.repeat_last_n = k.min(info.n_ctx as u64) as usize;
    }
    sampler.seed = match f.get("seed") {
        None => crate::openai::random_u64(),
        // Negative seeds are valid in OpenAI's API; any 64-bit pattern is a fine seed.
        Some(Value::Number(x)) => match (x.as_u64(), x.as_i64()) {
            (Some(u), _) => u,
            (None, Some(i)) => i as u64,
            _ => {
                return Err(ApiError::bad(
                    "seed",
                    format!("seed must be an integer, got {x}"),
                ))
            }
        },
        Some(v) => return Err(wrong_type("seed", "an integer", v)),
    };
    sampler
        .validate()
        .map_err(|e| ApiError::bad_body(e.to_string()))?;

    let stop = parse_stop(f.get("stop"), cfg)?;
    let logit_bias = parse_logit_bias(f.get("logit_bias"), cfg, info)?;
    let stream = f.bool("stream")?.unwrap_or(false);
    let include_usage = match f.get("stream_options") {
        None => false,
        Some(Value::Object(o)) => match o.get("include_usage") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(v) => return Err(wrong_type("stream_options.include_usage", "a boolean", v)),
        },
        Some(v) => return Err(wrong_type("stream_options", "an object", v)),
    };
    let stop_at_eog = !f.bool("ignore_eos")?.unwrap_or(false);
    let constraint = parse_constraint(f)?;
    Ok(GenParams {
        max_tokens,
        sampler,
        logit_bias,
        logprobs,
        stop,
        stop_at_eog,
        n,
        stream,
        include_usage,
        constraint,
    })
}

/// The output grammar from `response_format` (OpenAI), or llama.cpp's top-level
/// `json_schema` (a schema) and `grammar` (GBNF) extensions. At most one may constrain the
/// output: two different constraints cannot both be honoured, and picking one silently
/// would break the other's promise.
pub(crate) fn parse_constraint(f: &Fields<'_>) -> Result<Option<Grammar>, ApiError> {
    let mut found: Vec<(&str, Grammar)> = Vec::new();
    if let Some(rf) = f.get("response_format") {
        if let Some(g) = parse_response_format(rf)? {
            found.push(("response_format", g));
        }
    }
    match f.get("json_schema") {
        None => {}
        Some(s @ (Value::Object(_) | Value::Bool(_))) => {
            found.push(("json_schema", Grammar::JsonSchema(s.clone())))
        }
        Some(v) => return Err(wrong_type("json_schema", "an object", v)),
    }
    match f.str("grammar")? {
        // Clients built for llama.cpp send `"grammar": ""` to mean "none".
        None => {}
        Some(g) if g.trim().is_empty() => {}
        // llama.cpp passes grammars starting with `%llguidance` to llguidance as Lark; so
        // do we, since that is our grammar engine too.
        Some(g) if g.trim_start().starts_with("%llguidance") => {
            found.push(("grammar", Grammar::Lark(g.to_string())))
        }
        // Anything else is GBNF, translated to the same Lark; a grammar we cannot read is
        // a 400 naming the line and column.
        Some(g) => match gbnf_to_lark(g) {
            Ok(lark) => found.push(("grammar", Grammar::Lark(lark))),
            Err(e) => return Err(ApiError::bad("grammar", e.to_string())),
        },
    }
    match found.len() {
        0 | 1 => Ok(found.pop().map(|(_, g)| g)),
        _ => {
            let names: Vec<&str> = found.iter().map(|(n, _)| *n).collect();
            Err(ApiError::bad(
                names[1],
                format!(
                    "only one output constraint may be given, got {}",
                    names.join(" and ")
                ),
            ))
        }
    }
}

/// `{"type": "text" | "json_object" | "json_schema", ...}`; `None` for plain text.
fn parse_response_format(rf: &Value) -> Result<Option<Grammar>, ApiError> {
    const P: &str = "response_format";
    let Value::Object(rf) = rf else {
        return Err(wrong_type(P, "an object", rf));
    };
    let kind = match rf.get("type") {
        Some(Value::String(t)) => t.as_str(),
        None | Some(Value::Null) => {
            return Err(ApiError::bad(
                "response_format.type",
                "response_format.type is required",
            ))
        }
        Some(v) => return Err(wrong_type("response_format.type", "a string", v)),
    };
    match kind {
        "text" => Ok(None),
        // llama.cpp also reads a `schema` next to `json_object`.
        "json_object" => match rf.get("schema") {
            None | Some(Value::Null) => Ok(Some(Grammar::JsonObject)),
            Some(s @ (Value::Object(_) | Value::Bool(_))) => {
                Ok(Some(Grammar::JsonSchema(s.clone())))
            }
            Some(v) => Err(wrong_type("response_format.schema", "an object", v)),
        },
        "json_schema" => {
            let js = match rf.get("json_schema") {
                Some(Value::Object(js)) => js,
                None | Some(Value::Null) => {
                    return Err(ApiError::bad(
                        "response_format.json_schema",
                        "response_format.json_schema is required when type is json_schema",
                    ))
                }
                Some(v) => return Err(wrong_type("response_format.json_schema", "an object", v)),
            };
            match js.get("name") {
                None | Some(Value::Null) | Some(Value::String(_)) => {}
                Some(v) => {
                    return Err(wrong_type(
                        "response_format.json_schema.name",
                        "a string",
                        v,
                    ))
                }
            }
            // `strict: false` still gets the schema enforced: never weaker than asked.
            match js.get("strict") {
                None | Some(Value::Null) | Some(Value::Bool(_)) => {}
                Some(v) => {
                    return Err(wrong_type(
                        "response_format.json_schema.strict",
                        "a boolean",
                        v,
                    ))
                }
            }
            match js.get("schema") {
                // No schema: any JSON object, as with json_object.
                None | Some(Value::Null) => Ok(Some(Grammar::JsonObject)),
                Some(s @ (Value::Object(_) | Value::Bool(_))) => {
                    Ok(Some(Grammar::JsonSchema(s.clone())))
                }
                Some(v) => Err(wrong_type(
                    "response_format.json_schema.schema",
                    "an object",
                    v,
                )),
            }
        }
        other => Err(ApiError::bad(
            "response_format.type",
            format!(
                "response_format.type `{other}` is not supported; use text, json_object or \
                 json_schema"
            ),
        )),
    }
}

fn parse_stop(v: Option<&Value>, cfg: &ServerConfig) -> Result<Vec<String>, ApiError> {
    let list: Vec<&Value> = match v {
        None => return Ok(Vec::new()),
        Some(s @ Value::String(_)) => vec![s],
        Some(Value::Array(list)) => {
            if list.len() > cfg.max_stop {
                return Err(ApiError::bad(
                    "stop",
                    format!(
                        "at most {} stop sequences are allowed, got {}",
                        cfg.max_stop,
                        list.len()
                    ),
                ));
            }
            list.iter().collect()
        }
        Some(v) => return Err(wrong_type("stop", "a string or an array of strings", v)),
    };
    list.into_iter()
        .map(|s| match s {
            Value::String(s) if s.is_empty() => {
                Err(ApiError::bad("stop", "stop sequences must not be empty"))
            }
            Value::String(s) if s.len() > cfg.max_stop_len => Err(ApiError::bad(
                "stop",
                format!(
                    "stop sequences may be at most {} bytes long, got {}",
                    cfg.max_stop_len,
                    s.len()
                ),
            )),
            Value::String(s) => Ok(s.clone()),
            other => Err(wrong_type("stop", "a string", other)),
        })
        .collect()
}

fn parse_logit_bias(
    v: Option<&Value>,
    cfg: &ServerConfig,
    info: &ModelInfo,
) -> Result<Vec<(u32, f32)>, ApiError> {
    let map = match v {
        None => return Ok(Vec::new()),
        Some(Value::Object(m)) => m,
        Some(v) => return Err(wrong_type("logit_bias", "an object", v)),
    };
    if map.len() > cfg.max_logit_bias {
        return Err(ApiError::bad(
            "logit_bias",
            format!(
                "logit_bias may hold at most {} entries, got {}",
                cfg.max_logit_bias,
                map.len()
            ),
        ));
    }
    map.iter()
        .map(|(k, v)| {
            let id = match k.parse::<u64>() {
                Ok(id) if id < info.n_vocab as u64 => id as u32,
                Ok(id) => {
                    return Err(ApiError::bad(
                        "logit_bias",
                        format!(
                            "logit_bias key {id} is outside the vocabulary (size {})",
                            info.n_vocab
                        ),
                    ))
                }
                Err(_) => {
                    return Err(ApiError::bad(
                        "logit_bias",
                        format!("logit_bias key `{k}` is not a token id"),
                    ))
                }
            };
            match v.as_f64() {
                Some(b) if (-100.0..=100.0).contains(&b) => Ok((id, b as f32)),
                _ => Err(ApiError::bad(
                    "logit_bias",
                    format!("logit_bias[{k}] must be a number between -100 and 100, got {v}"),
                )),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn constraint(body: Value) -> Result<Option<Grammar>, ApiError> {
        let Value::Object(m) = body else {
            panic!("not an object")
        };
        parse_constraint(&Fields(&m))
    }

    #[test]
    fn response_format_maps_to_grammar() {
        let schema = json!({"type": "object", "properties": {"a": {"type": "integer"}}});
        let cases = [
            (json!({}), None),
            (json!({"response_format": null}), None),
            (json!({"response_format": {"type": "text"}}), None),
            (
                json!({"response_format": {"type": "json_object"}}),
                Some(Grammar::JsonObject),
            ),
            (
                json!({"response_format": {"type": "json_object", "schema": schema}}),
                Some(Grammar::JsonSchema(schema.clone())),
            ),
            (
                json!({"response_format": {"type": "json_schema",
                    "json_schema": {"name": "x", "schema": schema, "strict": true}}}),
                Some(Grammar::JsonSchema(schema.clone())),
            ),
            (
                json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}),
                Some(Grammar::JsonObject),
            ),
            (
                json!({"json_schema": schema}),
                Some(Grammar::JsonSchema(schema.clone())),
            ),
            (json!({"grammar": ""}), None),
            (
                json!({"grammar": "%llguidance {}\nstart: \"a\""}),
                Some(Grammar::Lark("%llguidance {}\nstart: \"a\"".into())),
            ),
            // Plain text next to a schema is no conflict.
            (
                json!({"response_format": {"type": "text"}, "json_schema": schema}),
                Some(Grammar::JsonSchema(schema.clone())),
            ),
        ];
        for (body, want) in cases {
            assert_eq!(constraint(body.clone()).unwrap(), want, "{body}");
        }
    }

    #[test]
    fn bad_constraints_are_400_naming_the_field() {
        let cases = [
            (json!({"response_format": "json"}), "response_format"),
            (json!({"response_format": {}}), "response_format.type"),
            (
                json!({"response_format": {"type": 3}}),
                "response_format.type",
            ),
            (
                json!({"response_format": {"type": "xml"}}),
                "response_format.type",
            ),
            (
                json!({"response_format": {"type": "json_schema"}}),
                "response_format.json_schema",
            ),
            (
                json!({"response_format": {"type": "json_schema", "json_schema": []}}),
                "response_format.json_schema",
            ),
            (
                json!({"response_format": {"type": "json_schema",
                    "json_schema": {"name": "x", "schema": "{}"}}}),
                "response_format.json_schema.schema",
            ),
            (
                json!({"response_format": {"type": "json_schema",
                    "json_schema": {"name": "x", "strict": "yes"}}}),
                "response_format.json_schema.strict",
            ),
            (json!({"json_schema": "{}"}), "json_schema"),
            (json!({"grammar": "root ::= \"a"}), "grammar"),
            (json!({"grammar": 5}), "grammar"),
            (
                json!({"response_format": {"type": "json_object"}, "json_schema": {}}),
                "json_schema",
            ),
        ];
        for (body, param) in cases {
            match constraint(body.clone()) {
                Err(ApiError::BadRequest { param: p, .. }) => {
                    assert_eq!(p.as_deref(), Some(param), "{body}")
                }
                other => panic!("{body}: {other:?}"),
            }
        }
        let Err(e) = constraint(json!({"grammar": "root ::= \"a\"\nx ::= y"})) else {
            panic!("a GBNF grammar with an undefined rule was accepted")
        };
        assert!(
            e.to_string()
                .contains("line 2, column 7: rule `y` is not defined"),
            "{e}"
        );
        // A GBNF grammar that reads is the same Lark the translator gives.
        assert_eq!(
            constraint(json!({"grammar": "root ::= \"a\" | [0-9]+"})).unwrap(),
            Some(Grammar::Lark(
                "%llguidance {}\n\nstart: \"a\" | (/[0-9]/)+\n".into()
            ))
        );
    }

    #[test]
    fn body_must_be_a_utf8_json_object() {
        assert!(parse_object(b"{}").is_ok());
        for bad in [
            &b""[..],
            b"  ",
            b"[1]",
            b"null",
            b"{",
            b"\"x\"",
            b"{\"a\":\"\xff\"}",
        ] {
            assert!(parse_object(bad).is_err(), "{bad:?}");
        }
    }
}
