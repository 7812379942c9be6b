//! The tool-calling request fields: `tools`, `tool_choice`, `parallel_tool_calls`, and the
//! `tool_calls` of assistant messages; plus the grammar that forces a call.
//!
//! Everything a template or the grammar compiler would choke on is refused here with a
//! 400 naming the field, so a bad tool list never reaches the engine. With
//! `tool_choice: "required"` or a named function the call is not hoped for but enforced:
//! the output is constrained to the model's own call syntax ([`CallSyntax`]) with each
//! function's `parameters` schema embedded as `%json` (llguidance Lark).

use super::request::{type_name, wrong_type, Fields};
use crate::error::ApiError;
use nao_engine::api::Grammar;
use nao_engine::constraint::with_whitespace;
use nao_tokenizer::tools::CallSyntax;
use serde_json::{json, Map, Value};

/// OpenAI's limit on the number of tools.
const MAX_TOOLS: usize = 128;

/// What the client allows the model to do with the tools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    /// No calls: tools are not shown to the model and output is not parsed for calls.
    None,
    Auto,
    /// At least one call (enforced by a grammar).
    Required,
    /// A call of this function (enforced by a grammar).
    Named(String),
}

/// One declared function.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolDef {
    pub name: String,
    /// The JSON schema of its arguments (`{"type": "object"}` when not given).
    pub parameters: Value,
}

/// The validated tool fields of a chat request.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolsRequest {
    /// The `tools` array as sent (null members removed), for the chat template.
    pub tools: Option<Value>,
    pub defs: Vec<ToolDef>,
    pub choice: ToolChoice,
    /// `parallel_tool_calls` (default true).
    pub parallel: bool,
}

impl ToolsRequest {
    /// The tools the template should show (none when calls are off).
    pub fn for_template(&self) -> Option<Value> {
        match self.choice {
            ToolChoice::None => None,
            _ => self.tools.clone(),
        }
    }

    /// Whether output should be parsed for calls.
    pub fn parse_calls(&self) -> bool {
        !self.defs.is_empty() && self.choice != ToolChoice::None
    }

    pub fn names(&self) -> Vec<String> {
        self.defs.iter().map(|d| d.name.clone()).collect()
    }
}

fn bad(param: &str, msg: impl Into<String>) -> ApiError {
    ApiError::bad(param, msg)
}

/// OpenAI's rule for function names: letters, digits, `_` and `-`, at most 64.
fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn strip_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, x)| !x.is_null())
                .map(|(k, x)| (k.clone(), strip_nulls(x)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Reads `tools`, `tool_choice` and `parallel_tool_calls`.
pub fn parse_tools(f: &Fields<'_>) -> Result<ToolsRequest, ApiError> {
    let list = match f.get("tools") {
        None => &[][..],
        Some(Value::Array(list)) => list.as_slice(),
        Some(v) => return Err(wrong_type("tools", "an array", v)),
    };
    if list.len() > MAX_TOOLS {
        return Err(bad(
            "tools",
            format!("at most {MAX_TOOLS} tools are allowed, got {}", list.len()),
        ));
    }
    let mut defs: Vec<ToolDef> = Vec::with_capacity(list.len());
    let mut cleaned = Vec::with_capacity(list.len());
    for (i, t) in list.iter().enumerate() {
        let p = format!("tools[{i}]");
        let Value::Object(t) = t else {
            return Err(bad(
                &p,
                format!("{p} must be an object, got {}", type_name(t)),
            ));
        };
        match t.get("type") {
            Some(Value::String(s)) if s == "function" => {}
            Some(Value::String(s)) => {
                return Err(bad(
                    &format!("{p}.type"),
                    format!("{p}.type `{s}` is not supported; only `function` is"),
                ))
            }
            None | Some(Value::Null) => {
                return Err(bad(&format!("{p}.type"), format!("{p}.type is required")))
            }
            Some(v) => return Err(wrong_type(&format!("{p}.type"), "a string", v)),
        }
        let func = match t.get("function") {
            Some(Value::Object(func)) => func,
            None | Some(Value::Null) => {
                return Err(bad(
                    &format!("{p}.function"),
                    format!("{p}.function is required"),
                ))
            }
            Some(v) => return Err(wrong_type(&format!("{p}.function"), "an object", v)),
        };
        let name = function_name(func, &format!("{p}.function"))?;
        if defs.iter().any(|d| d.name == name) {
            return Err(bad(
                &format!("{p}.function.name"),
                format!("the function name `{name}` is declared twice"),
            ));
        }
        match func.get("description") {
            None | Some(Value::Null) | Some(Value::String(_)) => {}
            Some(v) => {
                return Err(wrong_type(
                    &format!("{p}.function.description"),
                    "a string",
                    v,
                ))
            }
        }
        let parameters = match func.get("parameters") {
            None | Some(Value::Null) => json!({"type": "object"}),
            Some(s @ Value::Object(_)) => s.clone(),
            Some(v) => {
                return Err(wrong_type(
                    &format!("{p}.function.parameters"),
                    "an object (a JSON schema)",
                    v,
                ))
            }
        };
        defs.push(ToolDef {
            name: name.to_string(),
            parameters,
        });
        cleaned.push(strip_nulls(&Value::Object(t.clone())));
    }
    let choice = match f.get("tool_choice") {
        None if defs.is_empty() => ToolChoice::None,
        None => ToolChoice::Auto,
        Some(Value::String(s)) => match s.as_str() {
            "none" => ToolChoice::None,
            "auto" => ToolChoice::Auto,
            "required" => ToolChoice::Required,
            other => {
                return Err(bad(
                    "tool_choice",
                    format!(
                        "tool_choice `{other}` is not one of none, auto, required or a \
                         {{\"type\": \"function\", \"function\": {{\"name\": ..}}}} object"
                    ),
                ))
            }
        },
        Some(Value::Object(o)) => {
            match o.get("type") {
                Some(Value::String(s)) if s == "function" => {}
                _ => {
                    return Err(bad(
                        "tool_choice.type",
                        "tool_choice.type must be \"function\"",
                    ))
                }
            }
            let func = match o.get("function") {
                Some(Value::Object(func)) => func,
                _ => {
                    return Err(bad(
                        "tool_choice.function",
                        "tool_choice.function must be an object with a name",
                    ))
                }
            };
            let name = function_name(func, "tool_choice.function")?;
            if !defs.iter().any(|d| d.name == name) {
                return Err(bad(
                    "tool_choice.function.name",
                    format!("tool_choice names `{name}`, which is not one of the tools"),
                ));
            }
            ToolChoice::Named(name.to_string())
        }
        Some(v) => return Err(wrong_type("tool_choice", "a string or an object", v)),
    };
    if defs.is_empty() && matches!(choice, ToolChoice::Required | ToolChoice::Named(_)) {
        return Err(bad(
            "tool_choice",
            "tool_choice requires a call but no tools were given",
        ));
    }
    let parallel = f.bool("parallel_tool_calls")?.unwrap_or(true);
    Ok(ToolsRequest {
        tools: (!cleaned.is_empty()).then_some(Value::Array(cleaned)),
        defs,
        choice,
        parallel,
    })
}

fn function_name<'a>(func: &'a Map<String, Value>, p: &str) -> Result<&'a str, ApiError> {
    match func.get("name") {
        Some(Value::String(n)) if valid_name(n) => Ok(n),
        Some(Value::String(n)) => Err(bad(
            &format!("{p}.name"),
            format!("{p}.name `{n}` must be 1 to 64 letters, digits, underscores or dashes"),
        )),
        None | Some(Value::Null) => Err(bad(&format!("{p}.name"), format!("{p}.name is required"))),
        Some(v) => Err(wrong_type(&format!("{p}.name"), "a string", v)),
    }
}

/// Checks an assistant message's `tool_calls`: a list of
/// `{id?, type?: "function", function: {name, arguments (string or object)}}`.
pub fn check_message_calls(i: usize, calls: &Value) -> Result<(), ApiError> {
    let p = format!("messages[{i}].tool_calls");
    let Value::Array(calls) = calls else {
        return Err(wrong_type(&p, "an array", calls));
    };
    for (j, c) in calls.iter().enumerate() {
        let pj = format!("{p}[{j}]");
        let Some(func) = c.get("function").and_then(Value::as_object) else {
            return Err(bad(
                &format!("{pj}.function"),
                format!("{pj}.function must be an object"),
            ));
        };
        match func.get("name") {
            Some(Value::String(_)) => {}
            _ => {
                return Err(bad(
                    &format!("{pj}.function.name"),
                    format!("{pj}.function.name must be a string"),
                ))
            }
        }
        match func.get("arguments") {
            None | Some(Value::String(_)) | Some(Value::Object(_)) => {}
            Some(v) => {
                return Err(wrong_type(
                    &format!("{pj}.function.arguments"),
                    "a JSON string",
                    v,
                ))
            }
        }
    }
    Ok(())
}

/// The grammar forcing calls for `required` / a named function; `None` for none/auto.
/// `parallel`: one or more calls (when the format can carry several), else exactly one.
pub fn call_grammar(req: &ToolsRequest, syntax: CallSyntax) -> Option<Grammar> {
    let defs: Vec<&ToolDef> = match &req.choice {
        ToolChoice::None | ToolChoice::Auto => return None,
        ToolChoice::Required => req.defs.iter().collect(),
        ToolChoice::Named(n) => req.defs.iter().filter(|d| &d.name == n).collect(),
    };
    Some(Grammar::Lark(lark(&defs, syntax, req.parallel)))
}

/// A Lark string literal (JSON string escapes are what llguidance reads).
fn lit(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

fn lark(defs: &[&ToolDef], syntax: CallSyntax, parallel: bool) -> String {
    let calls = match (parallel && syntax.parallel, syntax.separator) {
        (false, _) => "call".to_string(),
        (true, "") => "call+".to_string(),
        (true, sep) => format!("call ({} call)*", lit(sep)),
    };
    let mut start = Vec::new();
    if !syntax.block_open.is_empty() {
        start.push(lit(syntax.block_open));
    }
    start.push(calls);
    if !syntax.block_close.is_empty() {
        start.push(lit(syntax.block_close));
    }
    let mut g = format!("%llguidance {{}}\n\nstart: {}\n", start.join(" "));
    let alts: Vec<String> = (0..defs.len()).map(|i| format!("call_{i}")).collect();
    g.push_str(&format!("call: {}\n", alts.join(" | ")));
    for (i, d) in defs.iter().enumerate() {
        let head = format!("{}{}{}", syntax.call_open, d.name, syntax.name_args);
        let tail = if syntax.call_close.is_empty() {
            String::new()
        } else {
            format!(" {}", lit(syntax.call_close))
        };
        g.push_str(&format!("call_{i}: {} args_{i}{tail}\n", lit(&head)));
        g.push_str(&format!(
            "args_{i}: %json {}\n",
            with_whitespace(d.parameters.clone())
        ));
    }
    g
}
