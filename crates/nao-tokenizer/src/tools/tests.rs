//! Parser tests for every format: calls, text around them, malformed and truncated
//! calls, and the same text fed split at every char boundary (and char by char), which
//! must give exactly the one-shot result.

use super::*;

fn names() -> Vec<String> {
    vec!["get_weather".into(), "get_time".into()]
}

fn call(name: &str, arguments: &str) -> ToolCall {
    ToolCall {
        name: name.into(),
        arguments: arguments.into(),
    }
}

/// Feeds `pieces` and returns the deltas, checking the delta grammar on the way:
/// `CallStart CallArgs* (CallEnd | CallAbort)` per call, nothing else inside a call, and
/// every announced name declared.
fn feed_deltas(format: ToolFormat, pieces: &[&str]) -> Vec<Delta> {
    let mut p = format.parser(&names());
    let mut out = Vec::new();
    for piece in pieces {
        p.push(piece, &mut out);
    }
    p.finish(&mut out);
    let mut in_call = false;
    for d in &out {
        match d {
            Delta::CallStart(n) => {
                assert!(!in_call, "{out:?}");
                assert!(names().contains(n), "{n}");
                in_call = true;
            }
            Delta::CallArgs(_) => assert!(in_call, "{out:?}"),
            Delta::CallEnd | Delta::CallAbort => {
                assert!(in_call, "{out:?}");
                in_call = false;
            }
            Delta::Content(_) => assert!(!in_call, "content inside a call: {out:?}"),
        }
    }
    assert!(!in_call, "a call left open: {out:?}");
    out
}

fn feed(format: ToolFormat, pieces: &[&str]) -> (String, Vec<ToolCall>) {
    join(feed_deltas(format, pieces))
}

fn chars(text: &str) -> Vec<String> {
    text.chars().map(String::from).collect()
}

/// The expected result, one shot, at every split point and char by char. Every call's
/// arguments must be JSON that serde reads as an object.
fn check(format: ToolFormat, text: &str, content: &str, calls: &[ToolCall]) {
    let want = (content.to_string(), calls.to_vec());
    assert_eq!(parse(format, &names(), text), want, "one shot: {text:?}");
    for c in calls {
        let v: serde_json::Value = serde_json::from_str(&c.arguments).unwrap();
        assert!(v.is_object(), "{c:?}");
    }
    for i in (0..=text.len()).filter(|&i| text.is_char_boundary(i)) {
        assert_eq!(
            feed(format, &[&text[..i], &text[i..]]),
            want,
            "split at {i}: {text:?}"
        );
    }
    let chars = chars(text);
    let refs: Vec<&str> = chars.iter().map(String::as_str).collect();
    assert_eq!(feed(format, &refs), want, "char by char: {text:?}");
}

const PARIS: &str = r#"{"location":"Paris","unit":"celsius"}"#;

#[test]
fn hermes_single_and_parallel_calls() {
    let f = ToolFormat::Hermes;
    check(
        f,
        "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"location\": \"Paris\", \"unit\": \"celsius\"}}\n</tool_call>",
        "",
        &[call("get_weather", PARIS)],
    );
    check(
        f,
        "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"location\": \"Paris\", \"unit\": \"celsius\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>",
        "Let me check.",
        &[call("get_weather", PARIS), call("get_time", "{}")],
    );
    // Arguments given as a JSON string and under `parameters` are accepted.
    check(
        f,
        "<tool_call>{\"name\": \"get_time\", \"parameters\": \"{\\\"tz\\\": \\\"UTC\\\"}\"}</tool_call>",
        "",
        &[call("get_time", r#"{"tz":"UTC"}"#)],
    );
}

#[test]
fn hermes_accepts_calls_in_json_fences() {
    let f = ToolFormat::Hermes;
    // What Qwen2.5-Coder-1.5B writes for a weather question.
    check(
        f,
        "```json\n{\n  \"name\": \"get_weather\",\n  \"arguments\": {\n    \"location\": \"Paris\",\n    \"unit\": \"celsius\"\n  }\n}\n```",
        "",
        &[call("get_weather", PARIS)],
    );
    // Other JSON in a fence is an answer, not a call.
    for text in [
        "Here:\n```json\n{\"name\": \"Bob\", \"age\": 3}\n```\nDone.",
        "```json\n[1, 2]\n```",
        "```python\nprint(1)\n```",
        "```json\n{\"name\": \"get_weather\", \"arguments\": {\"loc",
    ] {
        check(f, text, text, &[]);
    }
}

#[test]
fn hermes_plain_text_passes_unchanged() {
    let f = ToolFormat::Hermes;
    check(
        f,
        "Hello, <b>world</b> <tool",
        "Hello, <b>world</b> <tool",
        &[],
    );
    check(f, "  spaced  out  ", "  spaced  out  ", &[]);
    check(f, "", "", &[]);
}

#[test]
fn hermes_malformed_and_truncated_calls_are_content() {
    let f = ToolFormat::Hermes;
    for text in [
        // Not JSON.
        "<tool_call>\nget_weather(Paris)\n</tool_call>",
        // Unknown function.
        "<tool_call>\n{\"name\": \"launch\", \"arguments\": {}}\n</tool_call>",
        // No name; arguments not an object.
        "<tool_call>{\"arguments\": {}}</tool_call>",
        "<tool_call>{\"name\": \"get_time\", \"arguments\": [1]}</tool_call>",
        // Cut off mid-JSON (max_tokens).
        "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"loc",
        "<tool_",
    ] {
        check(f, text, text, &[]);
    }
    // The end tag may be missing when the JSON is complete (the model ended its turn).
    check(
        f,
        "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n",
        "",
        &[call("get_time", "{}")],
    );
    // A good call after a bad one still counts; the bad one stays text.
    check(
        f,
        "<tool_call>oops</tool_call> <tool_call>{\"name\": \"get_time\", \"arguments\": {}}</tool_call>",
        "<tool_call>oops</tool_call>",
        &[call("get_time", "{}")],
    );
}

#[test]
fn deepseek_formats() {
    let f = ToolFormat::DeepSeek;
    let r1 = "I will look it up.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{\"location\": \"Paris\", \"unit\": \"celsius\"}\n```<｜tool▁call▁end｜>\n<｜tool▁call▁begin｜>function<｜tool▁sep｜>get_time\n```json\n{}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>";
    check(
        f,
        r1,
        "I will look it up.",
        &[call("get_weather", PARIS), call("get_time", "{}")],
    );
    // V3.1: name before the separator, bare JSON after it.
    check(
        f,
        "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_time<｜tool▁sep｜>{\"tz\": \"UTC\"}<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
        "",
        &[call("get_time", r#"{"tz":"UTC"}"#)],
    );
    // No outer block, and a block whose end marker never came.
    check(
        f,
        "<｜tool▁call▁begin｜>function<｜tool▁sep｜>get_time\n```json\n{}\n```<｜tool▁call▁end｜>",
        "",
        &[call("get_time", "{}")],
    );
    check(
        f,
        "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_time\n```json\n{}\n```<｜tool▁call▁end｜>",
        "",
        &[call("get_time", "{}")],
    );
    for bad in [
        // Truncated inside the JSON.
        "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_time\n```json\n{\"tz\"",
        // Unknown name.
        "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>rm_rf\n```json\n{}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
        // Junk between calls.
        "<｜tool▁calls▁begin｜>junk<｜tool▁calls▁end｜>",
    ] {
        check(f, bad, bad, &[]);
    }
    check(f, "plain ｜ text <｜", "plain ｜ text <｜", &[]);
}

#[test]
fn llama3_formats() {
    let f = ToolFormat::Llama3;
    check(
        f,
        "{\"name\": \"get_weather\", \"parameters\": {\"location\": \"Paris\", \"unit\": \"celsius\"}}",
        "",
        &[call("get_weather", PARIS)],
    );
    check(
        f,
        "<|python_tag|>{\"type\": \"function\", \"name\": \"get_time\", \"arguments\": {}}; {\"name\": \"get_time\", \"parameters\": {\"tz\": \"UTC\"}}",
        "",
        &[call("get_time", "{}"), call("get_time", r#"{"tz":"UTC"}"#)],
    );
    for text in [
        "The weather is nice.",
        // JSON that is not a call.
        "{\"answer\": 42}",
        // Truncated.
        "{\"name\": \"get_weather\", \"parameters\": {\"loc",
        // Unknown function.
        "{\"name\": \"nope\", \"parameters\": {}}",
        // A call followed by prose is not a call message.
        "{\"name\": \"get_time\", \"parameters\": {}} and then",
        "<|python_tag|>brave_search.call(query=\"x\")",
        "<|python",
    ] {
        check(f, text, text, &[]);
    }
}

#[test]
fn glm4_formats() {
    let f = ToolFormat::Glm4;
    check(
        f,
        "get_weather\n{\"location\": \"Paris\", \"unit\": \"celsius\"}",
        "",
        &[call("get_weather", PARIS)],
    );
    check(
        f,
        "get_weather\n{\"location\": \"Paris\", \"unit\": \"celsius\"}<|assistant|>get_time\n{}",
        "",
        &[call("get_weather", PARIS), call("get_time", "{}")],
    );
    for text in [
        "\nThe weather in Paris is sunny.",
        "get_weather is a tool I have.",
        "get_weather\nnot json",
        "get_weather\n{\"location\": \"Par",
        "get_wea",
    ] {
        check(f, text, text, &[]);
    }
}

#[test]
fn formats_are_detected_from_templates() {
    let qwen = "{%- if tools %}<tool_call>\\n{\"name\": <function-name>}</tool_call>{%- endif %}";
    assert_eq!(ToolFormat::detect(Some(qwen), "qwen2"), ToolFormat::Hermes);
    assert_eq!(
        ToolFormat::detect(Some("{{'<｜tool▁calls▁begin｜>'}}"), "deepseek2"),
        ToolFormat::DeepSeek
    );
    assert_eq!(
        ToolFormat::detect(
            Some("<|start_header_id|>ipython<|end_header_id|> \"parameters\": <|eot_id|>"),
            "llama"
        ),
        ToolFormat::Llama3
    );
    assert_eq!(
        ToolFormat::detect(Some("[gMASK]<sop>{{ '<|observation|>' }}"), "glm4"),
        ToolFormat::Glm4
    );
    assert_eq!(ToolFormat::detect(None, "gemma3"), ToolFormat::Hermes);
}

#[test]
fn marker_holdback_is_minimal() {
    assert_eq!(partial_marker_len("abc <tool", &["<tool_call>"]), 5);
    assert_eq!(partial_marker_len("abc <tool_call", &["<tool_call>"]), 10);
    assert_eq!(partial_marker_len("abc <x", &["<tool_call>"]), 0);
    assert_eq!(partial_marker_len("abc", &["<tool_call>"]), 0);
    assert_eq!(partial_marker_len("é<｜", &["<｜tool▁calls▁begin｜>"]), 4);
}

#[test]
fn text_before_a_call_streams_before_the_call_is_complete() {
    let mut p = ToolFormat::Hermes.parser(&names());
    let mut out = Vec::new();
    p.push(
        "Let me check the weather.\n<tool_call>\n{\"name\": \"get_",
        &mut out,
    );
    // Everything but the gap before the marker is out; the call is still held.
    assert_eq!(
        out,
        vec![Delta::Content("Let me check the weather.".into())]
    );
    out.clear();
    p.push(
        "weather\", \"arguments\": {\"location\": \"Paris\"}}\n</tool_call>",
        &mut out,
    );
    assert_eq!(
        out,
        vec![
            Delta::CallStart("get_weather".into()),
            Delta::CallArgs(r#"{"location":"Paris"}"#.into()),
            Delta::CallEnd
        ]
    );
    // Only a possible marker start is held back.
    out.clear();
    p.push(" ok <tool", &mut out);
    assert_eq!(out, vec![Delta::Content("ok".into())]);
}

/// Fed char by char: for each call, the input position at which it was announced, its
/// argument pieces, and how it ended (true: `CallEnd`).
fn streamed_calls(format: ToolFormat, text: &str) -> Vec<(usize, Vec<String>, bool)> {
    let mut p = format.parser(&names());
    let mut calls: Vec<(usize, Vec<String>, bool)> = Vec::new();
    let mut out = Vec::new();
    let mut pos = 0;
    let mut on = |out: &mut Vec<Delta>, pos: usize| {
        for d in out.drain(..) {
            match d {
                Delta::CallStart(_) => calls.push((pos, Vec::new(), false)),
                Delta::CallArgs(a) => calls.last_mut().unwrap().1.push(a),
                Delta::CallEnd => calls.last_mut().unwrap().2 = true,
                _ => {}
            }
        }
    };
    for c in text.chars() {
        pos += c.len_utf8();
        p.push(&c.to_string(), &mut out);
        on(&mut out, pos);
    }
    p.finish(&mut out);
    on(&mut out, pos + 1);
    calls
}

#[test]
fn arguments_stream_in_pieces_that_join_to_the_whole_call() {
    let cases = [
        (
            ToolFormat::Hermes,
            "Sure.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"location\": \"Paris, \\\"FR\\\" é\", \"unit\": \"celsius\", \"days\": [1, 2.5e1, -0], \"x\": {\"y\": null}}}\n</tool_call>",
        ),
        (
            ToolFormat::Hermes,
            "```json\n{\n  \"name\": \"get_weather\",\n  \"arguments\": {\n    \"location\": \"Paris\",\n    \"unit\": \"celsius\"\n  }\n}\n```",
        ),
        (
            ToolFormat::Llama3,
            "{\"type\": \"function\", \"name\": \"get_weather\", \"parameters\": {\"location\": \"Paris\", \"unit\": \"celsius\"}}",
        ),
        (
            ToolFormat::Glm4,
            "get_weather\n{\"location\": \"Paris\", \"unit\": \"celsius\"}",
        ),
        (
            ToolFormat::DeepSeek,
            "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{\"location\": \"Paris\", \"unit\": \"celsius\"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
        ),
        (
            ToolFormat::DeepSeek,
            "<｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{\"location\": \"Paris\", \"unit\": \"celsius\"}<｜tool▁call▁end｜>",
        ),
    ];
    for (format, text) in cases {
        let (_, whole) = parse(format, &names(), text);
        assert_eq!(whole.len(), 1, "{text:?}");
        let streamed = streamed_calls(format, text);
        assert_eq!(streamed.len(), 1, "{text:?}");
        let (at, pieces, ended) = &streamed[0];
        assert!(*ended);
        // Announced while the arguments were still coming, and sent in several pieces.
        let args_open = text.find("\"location\"").unwrap();
        assert!(
            *at <= args_open,
            "announced at {at}, arguments start at {args_open}"
        );
        assert!(pieces.len() > 3, "{pieces:?}");
        assert_eq!(pieces.concat(), whole[0].arguments);
        // The model's own value, whitespace between tokens dropped (independent check).
        let joined: serde_json::Value = serde_json::from_str(&pieces.concat()).unwrap();
        let start = text
            .find("{\"location\"")
            .or_else(|| text.find("{\n    \"location\""))
            .unwrap();
        let mut de =
            serde_json::Deserializer::from_str(&text[start..]).into_iter::<serde_json::Value>();
        assert_eq!(joined, de.next().unwrap().unwrap(), "{text:?}");
        // Every prefix of the joined pieces is where a JSON value could be going.
        let mut so_far = String::new();
        for piece in pieces {
            so_far.push_str(piece);
            assert!(json_prefix(&so_far), "{so_far:?}");
        }
    }
}

/// Whether `s` can be completed into JSON: serde reports an error only at the very end
/// ("EOF while parsing") rather than at a character inside `s`.
fn json_prefix(s: &str) -> bool {
    match serde_json::from_str::<serde_json::Value>(s) {
        Ok(_) => true,
        Err(e) => e.is_eof(),
    }
}

#[test]
fn a_call_that_breaks_after_it_was_announced_is_aborted_and_becomes_content() {
    for (format, text) in [
        // Truncated inside the arguments.
        (ToolFormat::Hermes, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"location\": \"Par"),
        // Invalid JSON inside the arguments.
        (ToolFormat::Hermes, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"location\": Paris}}\n</tool_call>"),
        // Junk after the object, before the end tag.
        (ToolFormat::Hermes, "<tool_call>{\"name\": \"get_time\", \"arguments\": {}} oops</tool_call>"),
        // A second name member.
        (ToolFormat::Hermes, "<tool_call>{\"name\": \"get_time\", \"name\": \"get_weather\", \"arguments\": {}}</tool_call>"),
        (ToolFormat::Llama3, "{\"name\": \"get_time\", \"parameters\": {}} and then"),
        (ToolFormat::Glm4, "get_weather\n{\"location\": \"Paris\"} trailing"),
        (
            ToolFormat::DeepSeek,
            "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_time\n```json\n{\"tz\": \"UT",
        ),
        (
            ToolFormat::DeepSeek,
            "<｜tool▁call▁begin｜>get_time<｜tool▁sep｜>{\"tz\": \"UTC\"} junk<｜tool▁call▁end｜>",
        ),
    ] {
        let deltas = feed_deltas(format, &chars(text).iter().map(String::as_str).collect::<Vec<_>>());
        assert!(deltas.contains(&Delta::CallAbort), "{text:?}: {deltas:?}");
        assert_eq!(join(deltas), (text.to_string(), vec![]), "{text:?}");
        check(format, text, text, &[]);
    }
}

#[test]
fn members_in_any_order_and_other_argument_spellings() {
    let f = ToolFormat::Hermes;
    // Arguments before the name: announced when the name arrives, arguments in one piece.
    let text = "<tool_call>{\"arguments\": {\"tz\": \"UTC\"}, \"name\": \"get_time\"}</tool_call>";
    check(f, text, "", &[call("get_time", r#"{"tz":"UTC"}"#)]);
    // No arguments, and `null` arguments: an empty object.
    check(
        f,
        "<tool_call>{\"name\": \"get_time\"}</tool_call>",
        "",
        &[call("get_time", "{}")],
    );
    check(
        f,
        "<tool_call>{\"name\": \"get_time\", \"arguments\": null}</tool_call>",
        "",
        &[call("get_time", "{}")],
    );
    // Arguments as a string that does not hold an object: not a call.
    let bad = "<tool_call>{\"name\": \"get_time\", \"arguments\": \"UTC\"}</tool_call>";
    check(f, bad, bad, &[]);
    // Whitespace inside strings is kept, between tokens dropped.
    check(
        f,
        "<tool_call>{\"name\":\"get_time\",\"arguments\":{ \"tz\" :\n\"Europe/ Paris\" }}</tool_call>",
        "",
        &[call("get_time", r#"{"tz":"Europe/ Paris"}"#)],
    );
}

#[test]
fn glm4_llama3_and_deepseek_calls_stand_one_by_one() {
    // In a DeepSeek block, a bad call after a good one: the good one stands, the text
    // from the bad one on is content.
    check(
        ToolFormat::DeepSeek,
        "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_time\n```json\n{}\n```<｜tool▁call▁end｜>\n<｜tool▁call▁begin｜>function<｜tool▁sep｜>rm_rf\n```json\n{}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
        "<｜tool▁call▁begin｜>function<｜tool▁sep｜>rm_rf\n```json\n{}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
        &[call("get_time", "{}")],
    );
    // A good call, then a broken one: the good one stays a call, the broken one is text.
    check(
        ToolFormat::Glm4,
        "get_time\n{}<|assistant|>get_weather\n{\"location\": ",
        // Whitespace at the end of a message with calls is dropped.
        "<|assistant|>get_weather\n{\"location\":",
        &[call("get_time", "{}")],
    );
    check(
        ToolFormat::Llama3,
        "{\"name\": \"get_time\", \"parameters\": {}}; {\"name\": \"nope\", \"parameters\": {}}",
        "; {\"name\": \"nope\", \"parameters\": {}}",
        &[call("get_time", "{}")],
    );
}
