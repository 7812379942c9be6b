//! GBNF translation tests: each construct's Lark text, bad grammars' positions, and
//! llama.cpp-style grammars (arithmetic, list, JSON) checked through the real matcher on a
//! byte vocabulary, both by fixed strings and by random constrained walks whose output an
//! independent checker (or serde_json) must accept.

use super::*;
use crate::api::Grammar;
use crate::constraint::{Constraint, ConstraintFactory, VocabEnv, VocabSpec};

/// Byte tokens 0..=255, then end of generation.
const EOS: u32 = 256;

fn factory() -> ConstraintFactory {
    let mut tokens: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
    tokens.push(b"<eos>".to_vec());
    let env = VocabEnv::from_spec(&VocabSpec {
        tokens,
        special: vec![],
        eog: vec![EOS],
    })
    .unwrap();
    ConstraintFactory::new(env).unwrap()
}

fn compile(f: &ConstraintFactory, gbnf: &str) -> Constraint {
    let lark = gbnf_to_lark(gbnf).unwrap();
    f.compile(&Grammar::Lark(lark.clone()))
        .unwrap_or_else(|e| panic!("{e}\n{lark}"))
}

/// Whether the grammar accepts exactly `text`: every byte allowed by the mask, and the
/// end of generation allowed after the last.
fn accepts(f: &ConstraintFactory, gbnf: &str, text: &str) -> bool {
    let mut c = compile(f, gbnf);
    for b in text.bytes() {
        if c.is_stopped() {
            return false;
        }
        let Ok(mask) = c.mask() else { return false };
        if !mask.is_allowed(b as u32) || c.commit(b as u32).is_err() {
            return false;
        }
    }
    c.is_stopped() || c.mask().is_ok_and(|m| m.is_allowed(EOS))
}

/// SplitMix64, for reproducible random walks.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Constrained generation with random choices among the allowed tokens (ending as soon
/// as a coin says so once the end is allowed); `None` if it ran past `max` bytes.
fn generate(f: &ConstraintFactory, gbnf: &str, seed: u64, max: usize) -> Option<String> {
    let mut c = compile(f, gbnf);
    let mut rng = Rng(seed);
    let mut out = Vec::new();
    while out.len() < max {
        if c.is_stopped() {
            return Some(String::from_utf8(out).unwrap());
        }
        let allowed = c.mask().unwrap().to_list();
        assert!(!allowed.is_empty());
        if allowed.contains(&EOS) && rng.next().is_multiple_of(2) {
            return Some(String::from_utf8(out).unwrap());
        }
        let bytes: Vec<u32> = allowed.into_iter().filter(|&t| t != EOS).collect();
        if bytes.is_empty() {
            return Some(String::from_utf8(out).unwrap());
        }
        // Favour ASCII punctuation and letters so walks end in reasonable time.
        let ascii: Vec<u32> = bytes.iter().copied().filter(|&t| t < 128).collect();
        let pool = if !ascii.is_empty() && !rng.next().is_multiple_of(8) {
            &ascii
        } else {
            &bytes
        };
        let t = pool[(rng.next() % pool.len() as u64) as usize];
        c.commit(t).unwrap();
        out.push(t as u8);
    }
    None
}

const ARITHMETIC: &str = r#"
root  ::= (expr "=" ws term "\n")+
expr  ::= term ([-+*/] term)*
term  ::= ident | num | "(" ws expr ")" ws
ident ::= [a-z] [a-z0-9_]* ws
num   ::= [0-9]+ ws
ws    ::= [ \t\n]*
"#;

const LIST: &str = r#"
root ::= item+

# Excludes various line break characters
item ::= "- " [^\r\n\x0b\x0c\x85\u2028\u2029]+ "\n"
"#;

const JSON: &str = r#"
root   ::= object
value  ::= object | array | string | number | ("true" | "false" | "null") ws

object ::=
  "{" ws (
        string ":" ws value
("," ws string ":" ws value)*
  )? "}" ws

array  ::=
  "[" ws (
        value
("," ws value)*
  )? "]" ws

string ::=
  "\"" (
[^"\\\x7F\x00-\x1F] |
"\\" (["\\bfnrt] | "u" [0-9a-fA-F]{4}) # escapes
  )* "\"" ws

number ::= ("-"? ([0-9] | [1-9] [0-9]{0,15})) ("." [0-9]+)? ([eE] [-+]? [0-9] [1-9]{0,15})? ws

# Optional space: by convention, applied in this grammar after literal chars when allowed
ws ::= | " " | "\n" [ \t]{0,20}
"#;

#[test]
fn translation_of_each_construct() {
    let lark = gbnf_to_lark(
        "root ::= \"a\\n\\\"\" [^a-c\\]] . my-Rule{2,3} (x | \"\")* x? x+ x{2} x{1,} x{3,}\nmy-Rule ::= [\\x41\\u00e9/]\nx ::= \"x\" # note\n",
    )
    .unwrap();
    assert_eq!(
        lark,
        "%llguidance {}\n\n\
         start: \"a\\n\\\"\" /[^a-c\\x{5d}]/ /(?s:.)/ (r1_my_rule){2,3} (r2_x | \"\")* (r2_x)? (r2_x)+ (r2_x){2} (r2_x)+ (r2_x){3} (r2_x)*\n\
         r1_my_rule: /[A\\x{e9}\\x{2f}]/\n\
         r2_x: \"x\"\n"
    );
}

#[test]
fn arithmetic_grammar() {
    let f = factory();
    for ok in ["a=b\n", "x1 +(y*2)= 3\n", "a=b\nc-d=e\n", "a = b \n\n"] {
        assert!(accepts(&f, ARITHMETIC, ok), "{ok:?}");
    }
    // `ws` may end in the newline that `root` needs (GBNF semantics, char by char).
    assert!(accepts(&f, ARITHMETIC, "a=b \n"));
    // No space may follow an operator: `term` starts right away.
    for bad in ["", "a=b", "a==b\n", "(a=b\n", "A=b\n", "1a=b\n", "a+ b=c\n"] {
        assert!(!accepts(&f, ARITHMETIC, bad), "{bad:?}");
    }
    let mut ended = 0;
    for seed in 0..20 {
        if let Some(s) = generate(&f, ARITHMETIC, seed, 400) {
            assert!(arith_ok(&s), "{s:?}");
            ended += 1;
        }
    }
    assert!(ended >= 5, "only {ended} walks ended");
    // The checker itself tells good from bad.
    assert!(arith_ok("a=b \n") && arith_ok("(x)+2=(y )\n\n"));
    assert!(!arith_ok("a+ b=c\n") && !arith_ok("a=b"));
}

/// An independent recursive-descent reader of the arithmetic grammar's language.
fn arith_ok(s: &str) -> bool {
    fn ws(b: &[u8], i: &mut usize) {
        while *i < b.len() && matches!(b[*i], b' ' | b'\t' | b'\n') {
            *i += 1;
        }
    }
    // Returns every position where a `term` starting at `i` can end.
    fn term(b: &[u8], i: usize, out: &mut Vec<usize>) {
        if i >= b.len() {
            return;
        }
        let mut j = i;
        if b[j].is_ascii_lowercase() {
            j += 1;
            while j < b.len()
                && (b[j].is_ascii_lowercase() || b[j].is_ascii_digit() || b[j] == b'_')
            {
                j += 1;
            }
        } else if b[j].is_ascii_digit() {
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
        } else if b[j] == b'(' {
            j += 1;
            ws(b, &mut j);
            let mut ends = Vec::new();
            expr(b, j, &mut ends);
            for e in ends {
                if e < b.len() && b[e] == b')' {
                    let mut k = e + 1;
                    trailing_ws(b, k, out);
                    ws(b, &mut k);
                }
            }
            return;
        } else {
            return;
        }
        trailing_ws(b, j, out);
    }
    fn trailing_ws(b: &[u8], mut j: usize, out: &mut Vec<usize>) {
        out.push(j);
        while j < b.len() && matches!(b[j], b' ' | b'\t' | b'\n') {
            j += 1;
            out.push(j);
        }
    }
    fn expr(b: &[u8], i: usize, out: &mut Vec<usize>) {
        let mut ends = Vec::new();
        term(b, i, &mut ends);
        while let Some(e) = ends.pop() {
            if out.contains(&e) {
                continue;
            }
            out.push(e);
            if e < b.len() && b"-+*/".contains(&b[e]) {
                term(b, e + 1, &mut ends);
            }
        }
    }
    fn line(b: &[u8], i: usize, out: &mut Vec<usize>) {
        let mut ends = Vec::new();
        expr(b, i, &mut ends);
        for e in ends {
            if e < b.len() && b[e] == b'=' {
                let mut j = e + 1;
                let mut ks = Vec::new();
                trailing_ws(b, j, &mut ks);
                ws(b, &mut j);
                for k in ks {
                    let mut ts = Vec::new();
                    term(b, k, &mut ts);
                    for t in ts {
                        if t < b.len() && b[t] == b'\n' {
                            out.push(t + 1);
                        }
                    }
                }
            }
        }
    }
    let b = s.as_bytes();
    let mut frontier = vec![0usize];
    let mut seen = Vec::new();
    let mut reached_end = false;
    while let Some(i) = frontier.pop() {
        if seen.contains(&i) {
            continue;
        }
        seen.push(i);
        let mut ends = Vec::new();
        line(b, i, &mut ends);
        for e in ends {
            if e == b.len() {
                reached_end = true;
            }
            frontier.push(e);
        }
    }
    reached_end
}

#[test]
fn list_grammar() {
    let f = factory();
    assert!(accepts(&f, LIST, "- milk\n- eggs and ham\n"));
    assert!(accepts(&f, LIST, "- é ü\n"));
    for bad in [
        "",
        "- \n",
        "-milk\n",
        "- milk",
        "- a\rb\n",
        "- a\u{2028}b\n",
    ] {
        assert!(!accepts(&f, LIST, bad), "{bad:?}");
    }
    for seed in 0..20 {
        if let Some(s) = generate(&f, LIST, seed, 300) {
            assert!(!s.is_empty());
            for line in s.split_inclusive('\n') {
                let item = line.strip_prefix("- ").and_then(|l| l.strip_suffix('\n'));
                let item = item.unwrap_or_else(|| panic!("{s:?}"));
                assert!(!item.is_empty());
                assert!(
                    !item.contains(['\r', '\n', '\x0b', '\x0c', '\u{85}', '\u{2028}', '\u{2029}'])
                );
            }
        }
    }
}

#[test]
fn json_grammar() {
    let f = factory();
    for ok in [
        "{}",
        "{\"a\": [1, -2.5e3, true, null, \"x\\u00e9\\n\"]}",
        "{\n  \"k\": {\"n\": false}\n}",
    ] {
        assert!(accepts(&f, JSON, ok), "{ok:?}");
    }
    for bad in [
        "[]",
        "{\"a\" 1}",
        "{\"a\": 01}",
        "{\"a\": \"\\x\"}",
        "{\"a\": tru}",
        "{}}",
    ] {
        assert!(!accepts(&f, JSON, bad), "{bad:?}");
    }
    let mut parsed = 0;
    for seed in 0..30 {
        if let Some(s) = generate(&f, JSON, seed, 600) {
            match serde_json::from_str::<serde_json::Value>(&s) {
                Ok(v) => assert!(v.is_object(), "{s:?}"),
                // The grammar allows 16-digit exponents, past what an f64 holds.
                Err(e) if e.to_string().starts_with("number out of range") => {}
                Err(e) => panic!("{e}: {s:?}"),
            }
            parsed += 1;
        }
    }
    assert!(parsed >= 10, "only {parsed} walks ended");
}

#[test]
fn bad_grammars_name_line_and_column() {
    let cases = [
        ("root ::= \"a\" b\n", 1, 14, "rule `b` is not defined"),
        ("root ::= \"a\n", 1, 10, "unterminated string literal"),
        ("root ::= [a-\n", 1, 10, "unterminated character class"),
        ("x ::= \"a\"\n", 1, 1, "no `root` rule"),
        ("root ::= \"a\"\n\nroot ::= \"b\"\n", 3, 1, "defined twice"),
        ("root = \"a\"\n", 1, 6, "expected `::=`"),
        ("root ::= (\"a\" | \"b\"\n", 1, 10, "never closed"),
        ("root ::= \"a\")\n", 1, 13, "`)` without"),
        ("root ::= \"\\q\"\n", 1, 11, "unknown escape"),
        ("root ::= \"\\x4\"\n", 1, 11, "hex digits"),
        ("root ::= [z-a]\n", 1, 11, "out of order"),
        ("root ::= \"a\"{3,2}\n", 1, 13, "below its minimum"),
        ("root ::= \"a\"{5000}\n", 1, 14, "over 1000"),
        ("root ::= []\n", 1, 10, "empty character class"),
        ("root ::= \"a\" x ::= \"b\"\n", 1, 14, "new line"),
        ("  ::= \"a\"\n", 1, 3, "expected a rule name"),
    ];
    for (g, line, col, msg) in cases {
        let e = gbnf_to_lark(g).unwrap_err();
        assert_eq!((e.line, e.col), (line, col), "{g:?}: {e}");
        assert!(e.msg.contains(msg), "{g:?}: {e}");
        assert!(e
            .to_string()
            .starts_with(&format!("GBNF grammar: line {line}, column {col}: ")));
    }
}
