//! llama.cpp's GBNF grammars, translated to llguidance's Lark syntax so the one grammar
//! engine serves them (llguidance's own converter is Python only).
//!
//! GBNF (<https://github.com/ggml-org/llama.cpp/blob/master/grammars/README.md>):
//! `name ::= alternatives` rules, one per line (a rule continues on the next line only
//! inside parentheses or after `|`), `#` comments, sequences of string literals
//! `"..."`, character classes `[a-z_]` / `[^"\\]`, `.` (any character), rule references
//! and groups `( ... )`, each optionally followed by `*`, `+`, `?`, `{m}`, `{m,}` or
//! `{m,n}`. Escapes in literals and classes: `\n \r \t \\ \" \[ \] \xHH \uHHHH
//! \UHHHHHHHH`. Generation starts at `root`.
//!
//! The translation keeps GBNF's meaning, character by character: every rule stays a Lark
//! rule (none becomes a lexer token), each character class becomes a one-character regex
//! and each literal a string. Why not turn all-terminal rules into tokens, as llguidance's
//! Python converter does: llguidance's lexer matches tokens greedily, so a token rule such
//! as `ident ::= [a-z]+ ws` followed by `"\n"` would swallow the newline into `ws` and
//! never let the `"\n"` come, which GBNF allows. Character-level rules cost more parser
//! work per mask but accept exactly GBNF's language.
//!
//! Errors name the line and column (1-based, in characters) of the problem.

use std::collections::HashMap;
use std::fmt::Write as _;

/// Largest repetition count accepted in `{m,n}`: repetitions are expanded by the grammar
/// engine, so a huge bound would be a huge grammar.
const MAX_REPEAT: u32 = 1000;

/// A GBNF grammar the translator cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("GBNF grammar: line {line}, column {col}: {msg}")]
pub struct GbnfError {
    pub line: usize,
    pub col: usize,
    pub msg: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Lit(String),
    /// A character class: inclusive ranges, negated or not.
    Class(bool, Vec<(char, char)>),
    Any,
    /// A rule reference, with its position for "undefined rule" errors.
    Ref(String, usize),
    Seq(Vec<Node>),
    Alt(Vec<Node>),
    Rep(Box<Node>, u32, Option<u32>),
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
}

fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

impl Parser {
    fn err(&self, at: usize, msg: impl Into<String>) -> GbnfError {
        let before: String = self.chars[..at.min(self.chars.len())].iter().collect();
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        GbnfError {
            line,
            col,
            msg: msg.into(),
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_at(&self, k: usize) -> Option<char> {
        self.chars.get(self.pos + k).copied()
    }

    /// Skips spaces, tabs and comments; newlines too when `newlines`.
    fn space(&mut self, newlines: bool) {
        while let Some(c) = self.peek() {
            match c {
                ' ' | '\t' => self.pos += 1,
                '\r' | '\n' if newlines => self.pos += 1,
                '#' => {
                    while self.peek().is_some_and(|c| c != '\n' && c != '\r') {
                        self.pos += 1;
                    }
                }
                _ => break,
            }
        }
    }

    fn name(&mut self) -> Result<String, GbnfError> {
        let start = self.pos;
        while self.peek().is_some_and(is_word) {
            self.pos += 1;
        }
        if self.pos == start {
            let what = self
                .peek()
                .map_or("the end of the grammar".to_string(), |c| format!("{c:?}"));
            return Err(self.err(start, format!("expected a rule name, found {what}")));
        }
        Ok(self.chars[start..self.pos].iter().collect())
    }

    fn hex(&mut self, n: usize, at: usize) -> Result<char, GbnfError> {
        let digits: String = self.chars[self.pos..(self.pos + n).min(self.chars.len())]
            .iter()
            .collect();
        if digits.len() != n || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(self.err(at, format!("expected {n} hex digits in the escape")));
        }
        self.pos += n;
        u32::from_str_radix(&digits, 16)
            .ok()
            .and_then(char::from_u32)
            .ok_or_else(|| self.err(at, format!("\\u{digits} is not a Unicode character")))
    }

    /// One character of a literal or class, escapes decoded.
    fn char(&mut self) -> Result<char, GbnfError> {
        let at = self.pos;
        let Some(c) = self.peek() else {
            return Err(self.err(at, "unexpected end of the grammar"));
        };
        self.pos += 1;
        if c != '\\' {
            return Ok(c);
        }
        let Some(e) = self.peek() else {
            return Err(self.err(at, "unexpected end of the grammar after `\\`"));
        };
        self.pos += 1;
        match e {
            'n' => Ok('\n'),
            'r' => Ok('\r'),
            't' => Ok('\t'),
            '\\' | '"' | '[' | ']' | '-' | '^' | '/' => Ok(e),
            'x' => self.hex(2, at),
            'u' => self.hex(4, at),
            'U' => self.hex(8, at),
            _ => Err(self.err(at, format!("unknown escape `\\{e}`"))),
        }
    }

    fn literal(&mut self) -> Result<Node, GbnfError> {
        let open = self.pos;
        self.pos += 1;
        let mut s = String::new();
        loop {
            match self.peek() {
                None | Some('\n') | Some('\r') => {
                    return Err(self.err(open, "unterminated string literal"))
                }
                Some('"') => {
                    self.pos += 1;
                    return Ok(Node::Lit(s));
                }
                Some(_) => s.push(self.char()?),
            }
        }
    }

    fn class(&mut self) -> Result<Node, GbnfError> {
        let open = self.pos;
        self.pos += 1;
        let negated = self.peek() == Some('^');
        if negated {
            self.pos += 1;
        }
        let mut ranges = Vec::new();
        loop {
            match self.peek() {
                None | Some('\n') | Some('\r') => {
                    return Err(self.err(open, "unterminated character class"))
                }
                Some(']') => {
                    self.pos += 1;
                    break;
                }
                Some(_) => {
                    let at = self.pos;
                    let lo = self.char()?;
                    let mut hi = lo;
                    if self.peek() == Some('-')
                        && self
                            .peek_at(1)
                            .is_some_and(|c| !matches!(c, ']' | '\n' | '\r'))
                    {
                        self.pos += 1;
                        hi = self.char()?;
                        if hi < lo {
                            return Err(self.err(
                                at,
                                format!("character range {lo:?}-{hi:?} is out of order"),
                            ));
                        }
                    }
                    ranges.push((lo, hi));
                }
            }
        }
        if ranges.is_empty() && !negated {
            return Err(self.err(open, "empty character class"));
        }
        Ok(Node::Class(negated, ranges))
    }

    fn number(&mut self) -> Result<u32, GbnfError> {
        let at = self.pos;
        let mut n: u32 = 0;
        while let Some(d) = self.peek().and_then(|c| c.to_digit(10)) {
            n = n.saturating_mul(10).saturating_add(d);
            self.pos += 1;
        }
        if self.pos == at {
            return Err(self.err(at, "expected a number"));
        }
        if n > MAX_REPEAT {
            return Err(self.err(at, format!("repetition count {n} is over {MAX_REPEAT}")));
        }
        Ok(n)
    }

    /// `{m}`, `{m,}`, `{m,n}` after an item.
    fn braces(&mut self) -> Result<(u32, Option<u32>), GbnfError> {
        let open = self.pos;
        self.pos += 1;
        self.space(true);
        let min = self.number()?;
        self.space(true);
        let max = match self.peek() {
            Some('}') => Some(min),
            Some(',') => {
                self.pos += 1;
                self.space(true);
                if self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    let max = self.number()?;
                    self.space(true);
                    Some(max)
                } else {
                    None
                }
            }
            _ => return Err(self.err(self.pos, "expected `,` or `}` in a repetition")),
        };
        if self.peek() != Some('}') {
            return Err(self.err(self.pos, "expected `}` to close the repetition"));
        }
        self.pos += 1;
        if max.is_some_and(|m| m < min) {
            return Err(self.err(open, "repetition maximum is below its minimum"));
        }
        Ok((min, max))
    }

    fn sequence(&mut self, nested: bool) -> Result<Node, GbnfError> {
        let mut items = Vec::new();
        loop {
            self.space(nested);
            let at = self.pos;
            let item = match self.peek() {
                Some('"') => self.literal()?,
                Some('[') => self.class()?,
                Some('(') => {
                    self.pos += 1;
                    let inner = self.alternatives(true)?;
                    self.space(true);
                    if self.peek() != Some(')') {
                        return Err(self.err(at, "`(` is never closed"));
                    }
                    self.pos += 1;
                    inner
                }
                Some('.') => {
                    self.pos += 1;
                    Node::Any
                }
                Some(c) if is_word(c) => {
                    let name = self.name()?;
                    self.space(false);
                    if self.chars[self.pos..].starts_with(&[':', ':', '=']) {
                        return Err(self.err(
                            at,
                            if nested {
                                "a `(` before this rule is never closed".to_string()
                            } else {
                                format!("rule `{name}` must start on a new line")
                            },
                        ));
                    }
                    Node::Ref(name, at)
                }
                _ => break,
            };
            self.space(nested);
            let item = match self.peek() {
                Some('*') => {
                    self.pos += 1;
                    Node::Rep(Box::new(item), 0, None)
                }
                Some('+') => {
                    self.pos += 1;
                    Node::Rep(Box::new(item), 1, None)
                }
                Some('?') => {
                    self.pos += 1;
                    Node::Rep(Box::new(item), 0, Some(1))
                }
                Some('{') => {
                    let (min, max) = self.braces()?;
                    Node::Rep(Box::new(item), min, max)
                }
                _ => item,
            };
            items.push(item);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Node::Seq(items)
        })
    }

    fn alternatives(&mut self, nested: bool) -> Result<Node, GbnfError> {
        let mut alts = vec![self.sequence(nested)?];
        loop {
            self.space(nested);
            if self.peek() != Some('|') {
                break;
            }
            self.pos += 1;
            self.space(true);
            alts.push(self.sequence(nested)?);
        }
        Ok(if alts.len() == 1 {
            alts.remove(0)
        } else {
            Node::Alt(alts)
        })
    }

    /// All rules, in order, with the position of each name.
    fn rules(&mut self) -> Result<Vec<(String, usize, Node)>, GbnfError> {
        let mut rules: Vec<(String, usize, Node)> = Vec::new();
        loop {
            self.space(true);
            if self.peek().is_none() {
                return Ok(rules);
            }
            let at = self.pos;
            let name = self.name()?;
            if rules.iter().any(|(n, _, _)| *n == name) {
                return Err(self.err(at, format!("rule `{name}` is defined twice")));
            }
            self.space(false);
            if !self.chars[self.pos..].starts_with(&[':', ':', '=']) {
                return Err(self.err(self.pos, format!("expected `::=` after `{name}`")));
            }
            self.pos += 3;
            self.space(true);
            let body = self.alternatives(false)?;
            self.space(false);
            match self.peek() {
                None | Some('\n') | Some('\r') => {}
                Some(')') => return Err(self.err(self.pos, "`)` without a matching `(`")),
                Some(c) => return Err(self.err(self.pos, format!("unexpected {c:?}"))),
            }
            rules.push((name, at, body));
        }
    }
}

/// Translates a GBNF grammar into an llguidance Lark grammar (starting with
/// `%llguidance {}`) that accepts the same strings.
pub fn gbnf_to_lark(src: &str) -> Result<String, GbnfError> {
    let mut p = Parser {
        chars: src.chars().collect(),
        pos: 0,
    };
    let rules = p.rules()?;
    if !rules.iter().any(|(n, _, _)| n == "root") {
        return Err(p.err(0, "the grammar has no `root` rule"));
    }
    // GBNF names may hold `-` and capitals; Lark rule names are lowercase identifiers,
    // and uppercase ones would be tokens. Numbering keeps them distinct.
    let names: HashMap<&str, String> = rules
        .iter()
        .enumerate()
        .map(|(i, (n, _, _))| {
            let lark = if n == "root" {
                "start".to_string()
            } else {
                let clean: String = n
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() {
                            c.to_ascii_lowercase()
                        } else {
                            '_'
                        }
                    })
                    .collect();
                format!("r{i}_{clean}")
            };
            (n.as_str(), lark)
        })
        .collect();
    let mut out = String::from("%llguidance {}\n\n");
    for (name, _, body) in &rules {
        let _ = write!(out, "{}: ", names[name.as_str()]);
        emit(body, &names, &p, &mut out, true)?;
        out.push('\n');
    }
    Ok(out)
}

/// A regex class item for `c`: letters and digits as they are, anything else as `\x{..}`
/// (so no char can be read as class syntax or end the `/.../` token).
fn class_char(c: char, out: &mut String) {
    if c.is_ascii_alphanumeric() {
        out.push(c);
    } else {
        let _ = write!(out, "\\x{{{:x}}}", c as u32);
    }
}

fn emit(
    n: &Node,
    names: &HashMap<&str, String>,
    p: &Parser,
    out: &mut String,
    top: bool,
) -> Result<(), GbnfError> {
    match n {
        Node::Lit(s) => {
            // A Lark string is a JSON string.
            out.push_str(&serde_json::Value::String(s.clone()).to_string());
        }
        Node::Any => out.push_str("/(?s:.)/"),
        Node::Class(true, r) if r.is_empty() => out.push_str("/(?s:.)/"),
        Node::Class(neg, ranges) => {
            out.push_str(if *neg { "/[^" } else { "/[" });
            for &(lo, hi) in ranges {
                class_char(lo, out);
                if hi != lo {
                    out.push('-');
                    class_char(hi, out);
                }
            }
            out.push_str("]/");
        }
        Node::Ref(name, at) => match names.get(name.as_str()) {
            Some(l) => out.push_str(l),
            None => return Err(p.err(*at, format!("rule `{name}` is not defined"))),
        },
        Node::Seq(items) => {
            if items.is_empty() {
                out.push_str("\"\"");
            }
            if !top && items.len() > 1 {
                out.push('(');
            }
            for (i, it) in items.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                emit(it, names, p, out, false)?;
            }
            if !top && items.len() > 1 {
                out.push(')');
            }
        }
        Node::Alt(alts) => {
            if !top {
                out.push('(');
            }
            for (i, a) in alts.iter().enumerate() {
                if i > 0 {
                    out.push_str(" | ");
                }
                emit(a, names, p, out, true)?;
            }
            if !top {
                out.push(')');
            }
        }
        Node::Rep(inner, min, max) => {
            if *max == Some(0) {
                out.push_str("\"\"");
                return Ok(());
            }
            out.push('(');
            emit(inner, names, p, out, true)?;
            out.push(')');
            match (*min, *max) {
                (0, None) => out.push('*'),
                (1, None) => out.push('+'),
                (0, Some(1)) => out.push('?'),
                (m, None) => {
                    // `x{m,}` as `x{m} x*`.
                    let _ = write!(out, "{{{m}}} (");
                    emit(inner, names, p, out, true)?;
                    out.push_str(")*");
                }
                (m, Some(x)) if m == x => {
                    let _ = write!(out, "{{{m}}}");
                }
                (m, Some(x)) => {
                    let _ = write!(out, "{{{m},{x}}}");
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
