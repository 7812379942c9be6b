//! Chat templates (minijinja, sandboxed).
//!
//! A GGUF's `tokenizer.chat_template` is untrusted code.  It runs in a minijinja
//! environment with no loader (no file or network access), a fuel limit (bounded work
//! and memory per render), the engine's recursion limit and a cap on the output size.
//!
//! Rendering follows Hugging Face transformers (`trim_blocks`, `lstrip_blocks`,
//! `raise_exception`, `tojson` as `json.dumps(..., ensure_ascii=False)`, `strftime_now`,
//! Python string/dict methods) and llama.cpp's `--jinja` message preparation: text-only
//! content-part lists are joined into a string unless the template needs typed content,
//! and tool-call `arguments` given as JSON strings are parsed into objects when the
//! template only renders object arguments.

mod builtin;
mod pyjson;
mod strftime;

use minijinja::value::{Kwargs, Serde, Value, ValueKind};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, UndefinedBehavior};
use serde_json::{json, Value as Json};

pub use builtin::builtin_template;

/// Fuel per render (~ one unit per instruction, one per 64 bytes of data created).
const FUEL: u64 = 5_000_000;
/// Maximum rendered prompt size in bytes.
const MAX_OUTPUT: usize = 64 << 20;
/// Maximum nesting depth of `messages` / `tools`.
const MAX_INPUT_DEPTH: usize = 128;
const TEMPLATE_NAME: &str = "chat_template";

/// Errors from compiling or rendering a chat template.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The template does not parse.
    #[error("chat template syntax error: {0}")]
    Syntax(String),
    /// Rendering failed, including `raise_exception(msg)` (then the message is `msg`).
    #[error("chat template error: {0}")]
    Render(String),
    /// The template used up its fuel (too much work or memory).
    #[error("chat template ran out of fuel (too much work)")]
    FuelExhausted,
    /// The messages (or tools) are not in the expected shape.
    #[error("bad chat messages: {0}")]
    BadMessages(String),
}

/// Marker source error attached to errors from `raise_exception`.
#[derive(Debug)]
struct RaisedException(String);

impl std::fmt::Display for RaisedException {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RaisedException {}

/// A compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
    /// The template renders content only when given as `[{type: "text", text}]` parts.
    requires_typed_content: bool,
    /// The template renders tool-call arguments only when they are objects.
    requires_object_arguments: bool,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .field("requires_typed_content", &self.requires_typed_content)
            .field("requires_object_arguments", &self.requires_object_arguments)
            .finish_non_exhaustive()
    }
}

fn raise_exception(msg: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, msg.clone()).with_source(RaisedException(msg)))
}

fn tojson(value: &Value, kwargs: Kwargs) -> Result<Value, Error> {
    let indent: Option<Value> = kwargs.get("indent")?;
    let indent = match indent {
        None => None,
        Some(v) if v.is_none() || v.is_undefined() => None,
        Some(v) => match v.kind() {
            ValueKind::Number => {
                let n = v.as_i64().unwrap_or(0).clamp(0, 64) as usize;
                Some(" ".repeat(n))
            }
            ValueKind::String => Some(v.as_str().unwrap_or_default().to_string()),
            _ => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    "tojson: indent must be an integer or a string",
                ))
            }
        },
    };
    let mut opts = pyjson::DumpOptions::new(indent);
    if let Some(sort) = kwargs.get::<Option<bool>>("sort_keys")? {
        opts.sort_keys = sort;
    }
    if let Some(seps) = kwargs.get::<Option<Vec<String>>>("separators")? {
        if let [item, key] = seps.as_slice() {
            opts.item_sep = item.clone();
            opts.key_sep = key.clone();
        } else {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "tojson: separators must be a (item, key) pair",
            ));
        }
    }
    // Accepted for compatibility; output is always as with ensure_ascii=False.
    let _: Option<bool> = kwargs.get("ensure_ascii")?;
    kwargs.assert_all_used()?;
    Ok(Value::from(pyjson::dumps(value, &opts)?))
}

fn build_env(source: &str) -> Result<Environment<'static>, TemplateError> {
    let mut env = Environment::new();
    env.set_syntax(
        minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| TemplateError::Syntax(e.to_string()))?,
    );
    env.set_undefined_behavior(UndefinedBehavior::Lenient);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_fuel(Some(FUEL));
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.set_formatter(|out, _state, value| {
        let mut s = String::new();
        pyjson::py_display(&mut s, value, 0)?;
        out.write_str(&s)
            .map_err(|_| Error::new(ErrorKind::WriteFailure, "failed to write output"))
    });
    env.add_function("raise_exception", raise_exception);
    env.add_function("strftime_now", |fmt: String| strftime::strftime_now(&fmt));
    env.add_filter("tojson", tojson);
    env.add_template_owned(TEMPLATE_NAME, source.to_string())
        .map_err(|e| TemplateError::Syntax(describe(&e)))?;
    Ok(env)
}

/// An error's message with its location, without minijinja's debug dump.
fn describe(e: &Error) -> String {
    let mut msg = match e.detail() {
        Some(d) => format!("{}: {d}", e.kind()),
        None => e.kind().to_string(),
    };
    if let Some(line) = e.line() {
        msg.push_str(&format!(" (line {line})"));
    }
    msg
}

fn map_render_error(e: Error) -> TemplateError {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(err) = cur {
        if let Some(raised) = err.downcast_ref::<RaisedException>() {
            return TemplateError::Render(raised.0.clone());
        }
        if let Some(mj) = err.downcast_ref::<Error>() {
            if mj.kind() == ErrorKind::OutOfFuel {
                return TemplateError::FuelExhausted;
            }
        }
        cur = err.source();
    }
    match e.kind() {
        ErrorKind::SyntaxError => TemplateError::Syntax(describe(&e)),
        _ => TemplateError::Render(describe(&e)),
    }
}

/// A `fmt::Write` sink that refuses to grow past `MAX_OUTPUT` bytes.
struct BoundedOutput {
    buf: String,
    overflowed: bool,
}

impl std::io::Write for BoundedOutput {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + data.len() > MAX_OUTPUT {
            self.overflowed = true;
            return Err(std::io::Error::other("output too large"));
        }
        // Template output is always UTF-8 (written from &str); stay lossless anyway.
        self.buf.push_str(&String::from_utf8_lossy(data));
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn depth(v: &Json, limit: usize) -> bool {
    if limit == 0 {
        return false;
    }
    match v {
        Json::Array(a) => a.iter().all(|x| depth(x, limit - 1)),
        Json::Object(o) => o.values().all(|x| depth(x, limit - 1)),
        _ => true,
    }
}

impl ChatTemplate {
    /// Compiles `source` (a Jinja chat template).  `bos_token`/`eos_token` are the token
    /// texts the template may reference as `bos_token`/`eos_token`.
    pub fn new(
        source: &str,
        bos_token: &str,
        eos_token: &str,
    ) -> Result<ChatTemplate, TemplateError> {
        let env = build_env(source)?;
        let mut tmpl = ChatTemplate {
            env,
            bos_token: bos_token.to_string(),
            eos_token: eos_token.to_string(),
            requires_typed_content: false,
            requires_object_arguments: false,
        };
        let (typed, object_args) = tmpl.probe_capabilities();
        tmpl.requires_typed_content = typed;
        tmpl.requires_object_arguments = object_args;
        Ok(tmpl)
    }

    /// Whether the template only renders `[{type: "text", text}]` content (detected).
    pub fn requires_typed_content(&self) -> bool {
        self.requires_typed_content
    }

    /// Whether the template only renders tool-call arguments given as objects (detected).
    pub fn requires_object_arguments(&self) -> bool {
        self.requires_object_arguments
    }

    /// Capability detection as in llama.cpp (minja): trial renders with needles.
    fn probe_capabilities(&self) -> (bool, bool) {
        let needle = "<User Needle>";
        let try_render = |messages: Json| -> String {
            self.render_raw(&messages, None, false).unwrap_or_default()
        };
        let str_user = json!({"role": "user", "content": needle});
        let typed_user = json!({"role": "user", "content": [{"type": "text", "text": needle}]});
        let requires_typed_content = !try_render(json!([str_user])).contains(needle)
            && try_render(json!([typed_user])).contains(needle);
        let user = if requires_typed_content {
            typed_user
        } else {
            str_user
        };

        let args = json!({"argument_needle": "print('Hello, World!')"});
        let call_msg = |arguments: Json| {
            json!({
                "role": "assistant",
                "content": null,
                "tool_calls": [{
                    "id": "call_1___",
                    "type": "function",
                    "function": {"arguments": arguments, "name": "ipython"},
                }],
            })
        };
        let renders_args = |out: String| {
            out.contains("\"argument_needle\":")
                || out.contains("'argument_needle':")
                || out.contains("<parameter=argument_needle>")
        };
        let str_args = renders_args(try_render(json!([
            user.clone(),
            call_msg(Json::String(args.to_string()))
        ])));
        let obj_args = renders_args(try_render(json!([user, call_msg(args)])));
        (requires_typed_content, !str_args && obj_args)
    }

    /// Renders the prompt.  `messages`: JSON array of `{role, content (string | array of
    /// {type: "text", text}), tool_calls?, tool_call_id?, name?}`; `tools`: optional JSON
    /// array of OpenAI tool definitions.
    pub fn render(
        &self,
        messages: &Json,
        tools: Option<&Json>,
        add_generation_prompt: bool,
    ) -> Result<String, TemplateError> {
        let messages = self.prepare_messages(messages)?;
        let tools = match tools {
            None | Some(Json::Null) => None,
            Some(Json::Array(a)) if a.is_empty() => None,
            Some(t @ Json::Array(_)) => {
                if !depth(t, MAX_INPUT_DEPTH) {
                    return Err(TemplateError::BadMessages("tools nested too deeply".into()));
                }
                Some(t)
            }
            Some(_) => return Err(TemplateError::BadMessages("tools must be an array".into())),
        };
        self.render_raw(&messages, tools, add_generation_prompt)
    }

    fn render_raw(
        &self,
        messages: &Json,
        tools: Option<&Json>,
        add_generation_prompt: bool,
    ) -> Result<String, TemplateError> {
        let tmpl = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| TemplateError::Render(describe(&e)))?;
        let mut ctx = serde_json::Map::new();
        ctx.insert("messages".into(), messages.clone());
        ctx.insert(
            "add_generation_prompt".into(),
            Json::Bool(add_generation_prompt),
        );
        ctx.insert("bos_token".into(), Json::String(self.bos_token.clone()));
        ctx.insert("eos_token".into(), Json::String(self.eos_token.clone()));
        if let Some(t) = tools {
            ctx.insert("tools".into(), t.clone());
        }
        let ctx = Value::from(Serde(&ctx));
        let mut out = BoundedOutput {
            buf: String::new(),
            overflowed: false,
        };
        let result = tmpl.render_captured_to(ctx, &mut out).map(drop);
        match result {
            Ok(()) => Ok(out.buf),
            Err(_) if out.overflowed => Err(TemplateError::Render(format!(
                "rendered prompt exceeds {MAX_OUTPUT} bytes"
            ))),
            Err(e) => Err(map_render_error(e)),
        }
    }

    /// Validates messages and applies llama.cpp's normalisation (joined text parts,
    /// parsed tool-call arguments).
    fn prepare_messages(&self, messages: &Json) -> Result<Json, TemplateError> {
        let bad = |m: String| TemplateError::BadMessages(m);
        let Json::Array(list) = messages else {
            return Err(bad("messages must be an array".into()));
        };
        if !depth(messages, MAX_INPUT_DEPTH) {
            return Err(bad("messages nested too deeply".into()));
        }
        let mut out = Vec::with_capacity(list.len());
        for (i, msg) in list.iter().enumerate() {
            let Json::Object(obj) = msg else {
                return Err(bad(format!("message {i} is not an object")));
            };
            if !matches!(obj.get("role"), Some(Json::String(_))) {
                return Err(bad(format!("message {i} has no string \"role\"")));
            }
            let mut obj = obj.clone();
            match obj.get("content") {
                None | Some(Json::Null) | Some(Json::String(_)) => {}
                Some(Json::Array(parts)) => {
                    let mut texts = Vec::new();
                    for (j, part) in parts.iter().enumerate() {
                        let Json::Object(p) = part else {
                            return Err(bad(format!(
                                "message {i} content part {j} is not an object"
                            )));
                        };
                        match p.get("type") {
                            Some(Json::String(t)) if t == "text" => match p.get("text") {
                                Some(Json::String(s)) => texts.push(s.as_str()),
                                _ => {
                                    return Err(bad(format!(
                                        "message {i} content part {j} has no string \"text\""
                                    )))
                                }
                            },
                            Some(Json::String(_)) => {}
                            _ => {
                                return Err(bad(format!(
                                    "message {i} content part {j} has no string \"type\""
                                )))
                            }
                        }
                    }
                    if !self.requires_typed_content {
                        let joined = texts.join("\n");
                        obj.insert("content".into(), Json::String(joined));
                    }
                }
                Some(_) => {
                    return Err(bad(format!(
                        "message {i} content must be a string, null or an array of parts"
                    )))
                }
            }
            if let Some(calls) = obj.get_mut("tool_calls") {
                match calls {
                    Json::Null => {}
                    Json::Array(calls) => {
                        if self.requires_object_arguments {
                            for call in calls.iter_mut() {
                                let Some(Json::Object(f)) = call.get_mut("function") else {
                                    continue;
                                };
                                if let Some(Json::String(s)) = f.get("arguments") {
                                    if let Ok(parsed) = serde_json::from_str::<Json>(s) {
                                        f.insert("arguments".into(), parsed);
                                    }
                                }
                            }
                        }
                    }
                    _ => return Err(bad(format!("message {i} tool_calls must be an array"))),
                }
            }
            out.push(Json::Object(obj));
        }
        Ok(Json::Array(out))
    }
}
