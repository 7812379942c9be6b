//! An incremental JSON reader for tool-call text: it checks, one char at a time, that the
//! text so far is a prefix of a valid JSON value (RFC 8259), and writes the same text
//! without the whitespace between tokens ("compact verbatim": strings, numbers and key
//! order stay exactly as the model wrote them).
//!
//! Why not serde_json: tool-call arguments are streamed in pieces, and the pieces must
//! join to exactly the `arguments` string of the non-streamed response. Compacting the
//! model's own text is append-only (each char is kept or dropped the moment it arrives),
//! whereas re-serializing a parsed value (number formats, escapes, duplicate keys) can
//! only be done once the value is complete.

/// What the reader saw with one char; positions are byte offsets in the compact output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ev {
    /// A value starts at `at`, `depth` containers deep (0: the top value).
    Start { depth: usize, at: usize },
    /// The value at `depth` ended at `at` (exclusive).
    End { depth: usize, at: usize },
    /// An object key (a string, quotes included) spans `from..to`, `depth` deep (1:
    /// a member of the top object).
    Key {
        depth: usize,
        from: usize,
        to: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ctx {
    Obj,
    Arr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Num {
    Minus,
    Zero,
    Int,
    Dot,
    Frac,
    E,
    ESign,
    Exp,
}

impl Num {
    fn accepting(self) -> bool {
        matches!(self, Num::Zero | Num::Int | Num::Frac | Num::Exp)
    }

    fn next(self, c: char) -> Option<Num> {
        let d = c.is_ascii_digit();
        Some(match (self, c) {
            (Num::Minus, '0') => Num::Zero,
            (Num::Minus, _) if d => Num::Int,
            (Num::Int, _) if d => Num::Int,
            (Num::Zero | Num::Int, '.') => Num::Dot,
            (Num::Dot | Num::Frac, _) if d => Num::Frac,
            (Num::Zero | Num::Int | Num::Frac, 'e' | 'E') => Num::E,
            (Num::E, '+' | '-') => Num::ESign,
            (Num::E | Num::ESign | Num::Exp, _) if d => Num::Exp,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    /// A value must come (top level, after `:` or `,` in an array).
    Value,
    /// After `[`: a value or `]`.
    ValueOrClose,
    /// After `{`: a key or `}`.
    KeyOrClose,
    /// After `,` in an object.
    Key,
    Colon,
    /// After a value inside a container.
    CommaOrClose,
    /// Inside a string; `esc`: 0 none, 1 after `\`, 2..=5 hex digits of `\u` still due + 1.
    Str {
        key: bool,
        esc: u8,
        from: usize,
    },
    Num(Num),
    /// The rest of `true`, `false` or `null`.
    Lit(&'static str),
    /// The top value is complete; only whitespace may follow.
    Done,
    Bad,
}

/// Deeper nesting is refused (no model writes it; it bounds the stack).
const MAX_DEPTH: usize = 128;

/// One JSON value read char by char.
#[derive(Debug, Clone)]
pub(crate) struct JsonScan {
    stack: Vec<Ctx>,
    st: St,
}

impl Default for JsonScan {
    fn default() -> Self {
        JsonScan {
            stack: Vec::new(),
            st: St::Value,
        }
    }
}

fn ws(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

impl JsonScan {
    /// The top value is complete.
    pub(crate) fn done(&self) -> bool {
        self.st == St::Done
    }

    /// Reads `c`, appending what it keeps to `out` and what it saw to `evs`. Returns false
    /// (and stays bad) when `c` cannot continue a JSON value.
    pub(crate) fn push(&mut self, c: char, out: &mut String, evs: &mut Vec<Ev>) -> bool {
        let ok = self.step(c, out, evs);
        if !ok {
            self.st = St::Bad;
        }
        ok
    }

    fn after_value(&mut self, out: &str, evs: &mut Vec<Ev>) {
        evs.push(Ev::End {
            depth: self.stack.len(),
            at: out.len(),
        });
        self.st = if self.stack.is_empty() {
            St::Done
        } else {
            St::CommaOrClose
        };
    }

    fn step(&mut self, c: char, out: &mut String, evs: &mut Vec<Ev>) -> bool {
        match self.st {
            St::Bad => false,
            St::Done => ws(c),
            St::Str { key, esc, from } => {
                let esc = match esc {
                    0 if c == '"' => {
                        out.push(c);
                        if key {
                            evs.push(Ev::Key {
                                depth: self.stack.len(),
                                from,
                                to: out.len(),
                            });
                            self.st = St::Colon;
                        } else {
                            self.after_value(out, evs);
                        }
                        return true;
                    }
                    0 if c == '\\' => 1,
                    0 if (c as u32) < 0x20 => return false,
                    0 => 0,
                    1 if c == 'u' => 5,
                    1 if matches!(c, '"' | '\\' | '/' | 'b' | 'f' | 'n' | 'r' | 't') => 0,
                    1 => return false,
                    n if c.is_ascii_hexdigit() => {
                        if n == 2 {
                            0
                        } else {
                            n - 1
                        }
                    }
                    _ => return false,
                };
                out.push(c);
                self.st = St::Str { key, esc, from };
                true
            }
            St::Num(n) => match n.next(c) {
                Some(m) => {
                    out.push(c);
                    self.st = St::Num(m);
                    true
                }
                None if n.accepting() => {
                    self.after_value(out, evs);
                    self.step(c, out, evs)
                }
                None => false,
            },
            St::Lit(rest) => {
                let mut it = rest.chars();
                if it.next() != Some(c) {
                    return false;
                }
                out.push(c);
                let rest = it.as_str();
                if rest.is_empty() {
                    self.after_value(out, evs);
                } else {
                    self.st = St::Lit(rest);
                }
                true
            }
            _ if ws(c) => true,
            St::Value | St::ValueOrClose if self.st == St::ValueOrClose && c == ']' => {
                self.close(Ctx::Arr, c, out, evs)
            }
            St::Value | St::ValueOrClose => self.value(c, out, evs),
            St::KeyOrClose if c == '}' => self.close(Ctx::Obj, c, out, evs),
            St::KeyOrClose | St::Key => {
                if c != '"' {
                    return false;
                }
                let from = out.len();
                out.push(c);
                self.st = St::Str {
                    key: true,
                    esc: 0,
                    from,
                };
                true
            }
            St::Colon => {
                if c != ':' {
                    return false;
                }
                out.push(c);
                self.st = St::Value;
                true
            }
            St::CommaOrClose => match (c, self.stack.last()) {
                (',', Some(ctx)) => {
                    out.push(c);
                    self.st = match ctx {
                        Ctx::Obj => St::Key,
                        Ctx::Arr => St::Value,
                    };
                    true
                }
                ('}', Some(Ctx::Obj)) => self.close(Ctx::Obj, c, out, evs),
                (']', Some(Ctx::Arr)) => self.close(Ctx::Arr, c, out, evs),
                _ => false,
            },
        }
    }

    fn close(&mut self, ctx: Ctx, c: char, out: &mut String, evs: &mut Vec<Ev>) -> bool {
        if self.stack.pop() != Some(ctx) {
            return false;
        }
        out.push(c);
        self.after_value(out, evs);
        true
    }

    fn value(&mut self, c: char, out: &mut String, evs: &mut Vec<Ev>) -> bool {
        let depth = self.stack.len();
        let st = match c {
            '{' | '[' => {
                if depth >= MAX_DEPTH {
                    return false;
                }
                let (ctx, st) = if c == '{' {
                    (Ctx::Obj, St::KeyOrClose)
                } else {
                    (Ctx::Arr, St::ValueOrClose)
                };
                self.stack.push(ctx);
                st
            }
            '"' => St::Str {
                key: false,
                esc: 0,
                from: out.len(),
            },
            '-' => St::Num(Num::Minus),
            '0' => St::Num(Num::Zero),
            '1'..='9' => St::Num(Num::Int),
            't' => St::Lit("rue"),
            'f' => St::Lit("alse"),
            'n' => St::Lit("ull"),
            _ => return false,
        };
        evs.push(Ev::Start {
            depth,
            at: out.len(),
        });
        out.push(c);
        self.st = st;
        true
    }
}

/// `text` (surrounding whitespace allowed) as one compact JSON object or array; `None`
/// when it is not exactly one such value. A top-level number has no end of its own, so
/// only containers are accepted, which is all tool calls need.
pub(crate) fn compact(text: &str) -> Option<String> {
    let mut scan = JsonScan::default();
    let mut out = String::with_capacity(text.len());
    let mut evs = Vec::new();
    for c in text.chars() {
        if !scan.push(c, &mut out, &mut evs) {
            return None;
        }
        evs.clear();
    }
    (scan.done() && matches!(out.as_bytes().first(), Some(b'{' | b'['))).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn compact_keeps_text_and_drops_whitespace() {
        let cases = [
            (
                " { \"a\" : 1 ,\n \"b\":[ true , null,false ] } ",
                r#"{"a":1,"b":[true,null,false]}"#,
            ),
            (
                r#"{"s": "x y\"\\ \u00e9 é", "n": -0.5e+10}"#,
                r#"{"s":"x y\"\\ \u00e9 é","n":-0.5e+10}"#,
            ),
            ("[]", "[]"),
            ("{}", "{}"),
            (
                r#"[{"k":[{}]}, 1e3, 0, -12.25E-3]"#,
                r#"[{"k":[{}]},1e3,0,-12.25E-3]"#,
            ),
        ];
        for (text, want) in cases {
            let got = compact(text).unwrap();
            assert_eq!(got, want, "{text:?}");
            // Independent truth: serde_json reads both as the same value.
            let a: Value = serde_json::from_str(text).unwrap();
            let b: Value = serde_json::from_str(&got).unwrap();
            assert_eq!(a, b);
        }
    }

    #[test]
    fn compact_refuses_what_serde_refuses() {
        for text in [
            "",
            "{",
            "{\"a\"}",
            "{\"a\":}",
            "[1,]",
            "{,}",
            "[01]",
            "[1.]",
            "[.5]",
            "[-]",
            "[1e]",
            "[tru]",
            "[True]",
            "{\"a\":1}}",
            "{} {}",
            "[\"\t\"]",
            "[\"\\x\"]",
            "[\"\\u12G4\"]",
            "{'a':1}",
            "[1 2]",
            "{\"a\" 1}",
            "[nul]",
            "\"str\"",
            "12",
        ] {
            assert_eq!(compact(text), None, "{text:?}");
            if let Ok(v) = serde_json::from_str::<Value>(text) {
                // Only the top-level scalars serde takes are refused on purpose.
                assert!(!v.is_object() && !v.is_array(), "{text:?}");
            }
        }
    }

    #[test]
    fn deep_nesting_is_refused() {
        let deep = "[".repeat(MAX_DEPTH + 1);
        assert_eq!(
            compact(&format!("{deep}{}", "]".repeat(MAX_DEPTH + 1))),
            None
        );
        let ok = "[".repeat(MAX_DEPTH);
        assert!(compact(&format!("{ok}{}", "]".repeat(MAX_DEPTH))).is_some());
    }

    #[test]
    fn events_mark_members() {
        let mut scan = JsonScan::default();
        let (mut out, mut evs) = (String::new(), Vec::new());
        for c in r#"{"k": 12, "v": {"x": "y"}}"#.chars() {
            assert!(scan.push(c, &mut out, &mut evs));
        }
        assert!(scan.done());
        let spans: Vec<&str> = evs
            .iter()
            .filter_map(|e| match *e {
                Ev::Key { depth: 1, from, to } => Some(&out[from..to]),
                _ => None,
            })
            .collect();
        assert_eq!(spans, vec!["\"k\"", "\"v\""]);
        let starts: Vec<usize> = evs
            .iter()
            .filter_map(|e| match *e {
                Ev::Start { depth: 1, at } => Some(at),
                _ => None,
            })
            .collect();
        let ends: Vec<usize> = evs
            .iter()
            .filter_map(|e| match *e {
                Ev::End { depth: 1, at } => Some(at),
                _ => None,
            })
            .collect();
        let values: Vec<&str> = starts
            .iter()
            .zip(&ends)
            .map(|(&s, &e)| &out[s..e])
            .collect();
        assert_eq!(values, vec!["12", r#"{"x":"y"}"#]);
    }
}
