//! Reading one call written as JSON, char by char, so that its name can be announced as
//! soon as it is known and its arguments passed on as they arrive.
//!
//! Two shapes: a wrapped call `{"name": "f", "arguments": {..}}` (Hermes/Qwen, Llama 3,
//! with `parameters` as another spelling and members in any order), and a bare arguments
//! object whose name came before it (GLM-4's `f\n{..}`).
//!
//! What goes out is always safe to send: the name only once it is complete and declared,
//! argument text only while everything so far is a valid JSON prefix (checked by
//! [`JsonScan`]), in compact verbatim form. Pieces join to exactly the `arguments` string
//! of the whole call. Arguments given as a JSON string holding an object (some models do
//! that) can only be checked once the string is complete, so they go out in one piece at
//! the end.

use super::json::{compact, Ev, JsonScan};

/// What a reader has decided about its call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CallEv {
    /// The call's name: complete and declared.
    Start(String),
    /// The next piece of its arguments.
    Args(String),
    /// The call and the markup around it are complete (sent by the format's reader, not
    /// by [`ObjectCall`], which cannot see the markup).
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Args {
    NotSeen,
    /// An object value starting at this offset of the compact text; its end once seen.
    Object(usize, Option<usize>),
    /// Any other value (a string holding the object, `null`, or something invalid).
    Other(usize, Option<usize>),
}

/// Which member a depth-1 value belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Name,
    Args,
    Type,
    Other,
}

/// One call object, read incrementally.
#[derive(Debug, Clone)]
pub(crate) struct ObjectCall {
    /// A bare arguments object (its name was announced by the caller), not a wrapped call.
    bare: bool,
    /// Wrapped calls only: a `type` member must be `"function"` (Llama 3).
    check_type: bool,
    scan: JsonScan,
    text: String,
    evs: Vec<Ev>,
    key: Key,
    value_start: usize,
    name: Option<String>,
    started: bool,
    args: Args,
    /// Compact-text offset up to which argument text went out.
    sent: usize,
    bad: bool,
}

/// Whether `name` may be called: declared, or anything non-empty when nothing is declared.
pub(crate) fn declared(names: &[String], name: &str) -> bool {
    !name.is_empty() && (names.is_empty() || names.iter().any(|n| n == name))
}

impl ObjectCall {
    /// A wrapped call `{"name": .., "arguments": ..}`.
    pub(crate) fn wrapped(check_type: bool) -> Self {
        ObjectCall {
            bare: false,
            check_type,
            scan: JsonScan::default(),
            text: String::new(),
            evs: Vec::new(),
            key: Key::Other,
            value_start: 0,
            name: None,
            started: false,
            args: Args::NotSeen,
            sent: 0,
            bad: false,
        }
    }

    /// The arguments object of a call whose name the caller already announced.
    pub(crate) fn bare() -> Self {
        ObjectCall {
            bare: true,
            started: true,
            ..ObjectCall::wrapped(false)
        }
    }

    /// The text can no longer be a valid call.
    pub(crate) fn bad(&self) -> bool {
        self.bad
    }

    /// The call object is complete and valid (only whitespace may follow).
    pub(crate) fn complete(&self) -> bool {
        !self.bad && self.scan.done()
    }

    /// Feeds text; appends what is now decided to `out`. After the object closed, anything
    /// but whitespace makes the call bad.
    pub(crate) fn push(&mut self, s: &str, names: &[String], out: &mut Vec<CallEv>) {
        let n = self.push_value(s, names, out);
        for c in s[n..].chars() {
            if !self.scan.push(c, &mut self.text, &mut self.evs) {
                self.bad = true;
                return;
            }
        }
    }

    /// Feeds text up to the end of the object; returns the bytes read (all of `s` unless
    /// the object closed inside it, or the text turned bad).
    pub(crate) fn push_value(&mut self, s: &str, names: &[String], out: &mut Vec<CallEv>) -> usize {
        for (i, c) in s.char_indices() {
            if self.bad || self.scan.done() {
                return i;
            }
            if !self.scan.push(c, &mut self.text, &mut self.evs) {
                self.bad = true;
                return i;
            }
            let evs = std::mem::take(&mut self.evs);
            for &e in &evs {
                self.on_event(e, names, out);
                if self.bad {
                    return i;
                }
            }
            self.evs = evs;
            self.evs.clear();
            self.flush(out);
        }
        s.len()
    }

    fn on_event(&mut self, e: Ev, names: &[String], out: &mut Vec<CallEv>) {
        match e {
            Ev::Start { depth: 0, at } => {
                if self.text.as_bytes().get(at) != Some(&b'{') {
                    self.bad = true;
                } else if self.bare {
                    self.args = Args::Object(at, None);
                }
            }
            Ev::End { depth: 0, .. } => self.close(out),
            _ if self.bare => {}
            Ev::Key { depth: 1, from, to } => {
                let key = serde_json::from_str::<String>(&self.text[from..to]).unwrap_or_default();
                self.key = match key.as_str() {
                    "name" if self.name.is_none() => Key::Name,
                    "arguments" | "parameters" if self.args == Args::NotSeen => Key::Args,
                    "type" if self.check_type => Key::Type,
                    // A second name or arguments member: ambiguous, not a call.
                    "name" | "arguments" | "parameters" => {
                        self.bad = true;
                        Key::Other
                    }
                    _ => Key::Other,
                };
            }
            Ev::Start { depth: 1, at } => {
                self.value_start = at;
                if self.key == Key::Args {
                    self.args = if self.text.as_bytes().get(at) == Some(&b'{') {
                        Args::Object(at, None)
                    } else {
                        Args::Other(at, None)
                    };
                }
            }
            Ev::End { depth: 1, at } => {
                let value = &self.text[self.value_start..at];
                match self.key {
                    Key::Name => match serde_json::from_str::<String>(value) {
                        Ok(n) if declared(names, &n) => {
                            self.started = true;
                            out.push(CallEv::Start(n.clone()));
                            self.name = Some(n);
                        }
                        _ => self.bad = true,
                    },
                    Key::Type => {
                        if value != "\"function\"" {
                            self.bad = true;
                        }
                    }
                    Key::Args => {
                        self.args = match self.args {
                            Args::Object(s, _) => Args::Object(s, Some(at)),
                            Args::Other(s, _) => Args::Other(s, Some(at)),
                            Args::NotSeen => Args::NotSeen,
                        }
                    }
                    Key::Other => {}
                }
                self.key = Key::Other;
            }
            _ => {}
        }
    }

    /// Sends the argument text of an object value that is now known to be valid so far.
    fn flush(&mut self, out: &mut Vec<CallEv>) {
        if !self.started {
            return;
        }
        if let Args::Object(start, end) = self.args {
            let from = self.sent.max(start);
            let to = end.unwrap_or(self.text.len());
            if to > from {
                let piece = &self.text[from..to];
                match out.last_mut() {
                    // One piece per push, however many chars it held.
                    Some(CallEv::Args(last)) => last.push_str(piece),
                    _ => out.push(CallEv::Args(piece.to_string())),
                }
                self.sent = to;
            }
        }
    }

    /// The object closed: the call is whole if it has a name and usable arguments.
    fn close(&mut self, out: &mut Vec<CallEv>) {
        if self.bare {
            return;
        }
        let Some(name) = self.name.clone() else {
            self.bad = true;
            return;
        };
        let rest = match self.args {
            Args::NotSeen => Some("{}".to_string()),
            Args::Object(..) => None,
            Args::Other(s, Some(e)) => other_args(&self.text[s..e]),
            Args::Other(_, None) => None,
        };
        match (self.args, rest) {
            (Args::Object(..), _) => {}
            (_, Some(text)) => {
                if !self.started {
                    self.started = true;
                    out.push(CallEv::Start(name));
                }
                out.push(CallEv::Args(text));
            }
            (_, None) => self.bad = true,
        }
    }
}

/// Arguments that are not an object value: `null` means none, a string must hold one
/// JSON object (compacted like any other).
fn other_args(value: &str) -> Option<String> {
    if value == "null" {
        return Some("{}".into());
    }
    let inner = serde_json::from_str::<String>(value).ok()?;
    compact(&inner).filter(|c| c.starts_with('{'))
}
