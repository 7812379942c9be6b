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

/// Feeds `pieces` and returns (content, calls), checking that no call ever arrives
/// before the content that precedes it in the text.
fn feed(format: ToolFormat, pieces: &[&str]) -> (String, Vec<ToolCall>) {
    let mut p = format.parser(&names());
    let mut out = Vec::new();
    for piece in pieces {
        p.push(piece, &mut out);
    }
    p.finish(&mut out);
    join(out)
}

/// The expected result, one shot, at every split point and char by char.
fn check(format: ToolFormat, text: &str, content: &str, calls: &[ToolCall]) {
    let want = (content.to_string(), calls.to_vec());
    assert_eq!(parse(format, &names(), text), want, "one shot: {text:?}");
    for i in (0..=text.len()).filter(|&i| text.is_char_boundary(i)) {
        assert_eq!(
            feed(format, &[&text[..i], &text[i..]]),
            want,
            "split at {i}: {text:?}"
        );
    }
    let chars: Vec<String> = text.chars().map(String::from).collect();
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
        vec![Delta::Call(call("get_weather", r#"{"location":"Paris"}"#))]
    );
    // Only a possible marker start is held back.
    out.clear();
    p.push(" ok <tool", &mut out);
    assert_eq!(out, vec![Delta::Content("ok".into())]);
}
