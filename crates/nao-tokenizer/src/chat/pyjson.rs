//! Python-compatible serialisation of template values: `json.dumps(obj, ensure_ascii=False)`
//! (the `tojson` filter) and `repr()`-like printing (the `{{ }}` formatter).

use std::fmt::Write as _;

use minijinja::value::{Value, ValueKind};
use minijinja::{Error, ErrorKind};

/// Maximum nesting depth accepted when serialising a value.
const MAX_DEPTH: usize = 256;

/// Options of Python's `json.dumps` that the `tojson` filter supports.
pub(crate) struct DumpOptions {
    /// `None`: compact single line; `Some(s)`: newline + `s` repeated per level.
    pub indent: Option<String>,
    pub item_sep: String,
    pub key_sep: String,
    pub sort_keys: bool,
}

impl DumpOptions {
    pub(crate) fn new(indent: Option<String>) -> DumpOptions {
        // Python: with an indent the default item separator is "," (no trailing space).
        let item_sep = if indent.is_some() { "," } else { ", " };
        DumpOptions {
            indent,
            item_sep: item_sep.to_string(),
            key_sep: ": ".to_string(),
            sort_keys: false,
        }
    }
}

fn bad(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidOperation, msg.into())
}

/// Python `float.__repr__` (shortest round-trip digits, Python's exponent rules).
pub(crate) fn py_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".to_string();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.to_string();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0" } else { "0.0" }.to_string();
    }
    // `{:e}` gives the shortest round-trip digits, e.g. "1.5e-5" or "1e20".
    let sci = format!("{f:e}");
    let (mantissa, exp) = match sci.split_once('e') {
        Some((m, e)) => (m, e.parse::<i32>().unwrap_or(0)),
        None => (sci.as_str(), 0),
    };
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    let sign = if negative { "-" } else { "" };
    if (-4..16).contains(&exp) {
        let n = digits.len() as i32;
        let s = if exp >= 0 {
            let int_len = exp + 1;
            if n <= int_len {
                format!("{digits}{}.0", "0".repeat((int_len - n) as usize))
            } else {
                let (a, b) = digits.split_at(int_len as usize);
                format!("{a}.{b}")
            }
        } else {
            format!("0.{}{digits}", "0".repeat((-exp - 1) as usize))
        };
        format!("{sign}{s}")
    } else {
        let (first, rest) = digits.split_at(1.min(digits.len()));
        let m = if rest.is_empty() {
            first.to_string()
        } else {
            format!("{first}.{rest}")
        };
        let esign = if exp < 0 { "-" } else { "+" };
        format!("{sign}{m}e{esign}{:02}", exp.unsigned_abs())
    }
}

fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn number(v: &Value) -> Result<String, Error> {
    if v.is_integer() {
        if let Some(i) = v.as_i64() {
            return Ok(i.to_string());
        }
        // Large integers (i128/u64): their Display is the decimal digits.
        return Ok(v.to_string());
    }
    match f64::try_from(v.clone()) {
        Ok(f) => Ok(py_float(f)),
        Err(_) => Ok(v.to_string()),
    }
}

fn map_key(k: &Value) -> Result<String, Error> {
    match k.kind() {
        ValueKind::String => Ok(k.as_str().unwrap_or_default().to_string()),
        ValueKind::Number => number(k),
        ValueKind::Bool => Ok(if k.is_true() { "true" } else { "false" }.to_string()),
        ValueKind::None => Ok("null".to_string()),
        _ => Err(bad(format!(
            "keys must be str, int, float, bool or None, not {}",
            k.kind()
        ))),
    }
}

fn newline(out: &mut String, opts: &DumpOptions, level: usize) {
    if let Some(ind) = &opts.indent {
        out.push('\n');
        for _ in 0..level {
            out.push_str(ind);
        }
    }
}

/// `json.dumps(value, ensure_ascii=False, ...)`.
pub(crate) fn dumps(v: &Value, opts: &DumpOptions) -> Result<String, Error> {
    let mut out = String::new();
    dump(&mut out, v, opts, 0)?;
    Ok(out)
}

fn dump(out: &mut String, v: &Value, opts: &DumpOptions, level: usize) -> Result<(), Error> {
    if level > MAX_DEPTH {
        return Err(bad("tojson: value nested too deeply"));
    }
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::Number => out.push_str(&number(v)?),
        ValueKind::String => json_string(out, v.as_str().unwrap_or_default()),
        ValueKind::Map => {
            let mut keys: Vec<Value> = v.try_iter()?.collect();
            if keys.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            if opts.sort_keys {
                keys.sort();
            }
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push_str(&opts.item_sep);
                }
                newline(out, opts, level + 1);
                json_string(out, &map_key(k)?);
                out.push_str(&opts.key_sep);
                dump(out, &v.get_item(k)?, opts, level + 1)?;
            }
            newline(out, opts, level);
            out.push('}');
        }
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = v.try_iter()?.collect();
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(&opts.item_sep);
                }
                newline(out, opts, level + 1);
                dump(out, item, opts, level + 1)?;
            }
            newline(out, opts, level);
            out.push(']');
        }
        ValueKind::Bytes | ValueKind::Plain | ValueKind::Invalid => {
            return Err(bad(format!(
                "Object of type {} is not JSON serializable",
                v.kind()
            )));
        }
        _ => {
            return Err(bad(format!(
                "Object of type {} is not JSON serializable",
                v.kind()
            )));
        }
    }
    Ok(())
}

/// Python `str.__repr__`.
fn py_str_repr(out: &mut String, s: &str) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

/// Python `repr()` of a value nested inside a container.
fn py_repr(out: &mut String, v: &Value, level: usize) -> Result<(), Error> {
    if level > MAX_DEPTH {
        return Err(bad("value nested too deeply"));
    }
    match v.kind() {
        ValueKind::String => py_str_repr(out, v.as_str().unwrap_or_default()),
        ValueKind::Map => {
            out.push('{');
            for (i, k) in v.try_iter()?.enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                py_repr(out, &k, level + 1)?;
                out.push_str(": ");
                py_repr(out, &v.get_item(&k)?, level + 1)?;
            }
            out.push('}');
        }
        ValueKind::Seq | ValueKind::Iterable => {
            out.push('[');
            for (i, item) in v.try_iter()?.enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                py_repr(out, &item, level + 1)?;
            }
            out.push(']');
        }
        _ => py_display(out, v, level)?,
    }
    Ok(())
}

/// Python `str()` of a value, as Jinja2 prints it with `{{ }}`.
pub(crate) fn py_display(out: &mut String, v: &Value, level: usize) -> Result<(), Error> {
    match v.kind() {
        ValueKind::Undefined => {}
        ValueKind::None => out.push_str("None"),
        ValueKind::Bool => out.push_str(if v.is_true() { "True" } else { "False" }),
        ValueKind::Number => {
            if v.is_integer() {
                let _ = write!(out, "{v}");
            } else {
                match f64::try_from(v.clone()) {
                    Ok(f) if f.is_nan() => out.push_str("nan"),
                    Ok(f) if f.is_infinite() => out.push_str(if f > 0.0 { "inf" } else { "-inf" }),
                    Ok(f) => out.push_str(&py_float(f)),
                    Err(_) => {
                        let _ = write!(out, "{v}");
                    }
                }
            }
        }
        ValueKind::Map | ValueKind::Seq => py_repr(out, v, level)?,
        _ => {
            let _ = write!(out, "{v}");
        }
    }
    Ok(())
}
