//! Chat-template tests: llama.cpp `--jinja` fixtures, HF-compatible features, sandbox limits.

use std::path::PathBuf;

use nao_tokenizer::chat::{ChatTemplate, TemplateError};
use serde_json::{json, Value};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name)
}

fn qwen() -> ChatTemplate {
    let src = std::fs::read_to_string(fixture("qwen2.5-coder-1.5b-instruct.chat_template.jinja"))
        .expect("template fixture");
    ChatTemplate::new(&src, "<|endoftext|>", "<|im_end|>").expect("qwen template compiles")
}

fn tmpl(src: &str) -> ChatTemplate {
    ChatTemplate::new(src, "<s>", "</s>").expect("template compiles")
}

fn user(text: &str) -> Value {
    json!([{"role": "user", "content": text}])
}

#[test]
fn qwen_fixture_cases_render_exactly() {
    let t = qwen();
    let text = std::fs::read_to_string(fixture("qwen2.5-coder-1.5b-instruct-q4_k_m.chat.json"))
        .expect("chat fixture");
    let fx: Value = serde_json::from_str(&text).expect("fixture json");
    let cases = fx["cases"].as_array().expect("cases");
    assert!(!cases.is_empty());
    for (i, case) in cases.iter().enumerate() {
        let tools = case.get("tools").filter(|t| !t.is_null());
        let got = t.render(&case["messages"], tools, true).expect("render");
        assert_eq!(got, case["prompt"].as_str().expect("prompt"), "case {i}");
    }
}

fn weather_tools() -> Value {
    json!([{"type": "function", "function": {
        "name": "get_weather",
        "description": "Get the weather — «current»",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "description": "City, e.g. \"Paris\""},
            "days": {"type": "integer"}}, "required": ["city"]}}}])
}

/// Expected strings produced by Python jinja2 with transformers' environment.
#[test]
fn qwen_tools_and_tool_calls_match_transformers() {
    let t = qwen();
    assert!(t.requires_object_arguments());
    assert!(!t.requires_typed_content());
    let msgs = json!([
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": [{"type": "text", "text": "Weather in Zürich?"}]},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\": \"Zürich\", \"days\": 2}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "{\"temp\": 21}"},
        {"role": "tool", "tool_call_id": "c2", "content": "sunny"}
    ]);
    let tools = weather_tools();
    let got = t.render(&msgs, Some(&tools), true).expect("render");
    assert_eq!(got, "<|im_start|>system\nYou are helpful.\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Get the weather — «current»\", \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\", \"description\": \"City, e.g. \\\"Paris\\\"\"}, \"days\": {\"type\": \"integer\"}}, \"required\": [\"city\"]}}}\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{{\"name\": <function-name>, \"arguments\": <args-json-object>}}\n</tool_call><|im_end|>\n<|im_start|>user\nWeather in Zürich?<|im_end|>\n<|im_start|>assistant\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Zürich\", \"days\": 2}}\n</tool_call><|im_end|>\n<|im_start|>user\n<tool_response>\n{\"temp\": 21}\n</tool_response>\n<tool_response>\nsunny\n</tool_response><|im_end|>\n<|im_start|>assistant\n");
    let got = t.render(&user("hi"), Some(&tools), false).expect("render");
    assert_eq!(got, "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Get the weather — «current»\", \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\", \"description\": \"City, e.g. \\\"Paris\\\"\"}, \"days\": {\"type\": \"integer\"}}, \"required\": [\"city\"]}}}\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{{\"name\": <function-name>, \"arguments\": <args-json-object>}}\n</tool_call><|im_end|>\n<|im_start|>user\nhi<|im_end|>\n");
}

#[test]
fn content_parts_are_joined() {
    let t = qwen();
    let msgs = json!([{"role": "user", "content": [
        {"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": "x"}},
        {"type": "text", "text": "b"}]}]);
    let got = t.render(&msgs, None, true).expect("render");
    assert!(got.contains("<|im_start|>user\na\nb<|im_end|>\n"), "{got}");
}

#[test]
fn typed_content_templates_get_parts() {
    let src =
        "{% for m in messages %}{% for p in m.content %}[{{ p.text }}]{% endfor %}{% endfor %}";
    let t = tmpl(src);
    assert!(t.requires_typed_content());
    let msgs = json!([{"role": "user", "content": [{"type": "text", "text": "x"}, {"type": "text", "text": "y"}]}]);
    assert_eq!(t.render(&msgs, None, false).expect("render"), "[x][y]");
}

#[test]
fn tojson_and_printing_match_python() {
    let t = tmpl("{{ messages[0].x | tojson(indent=2) }}|{{ messages[0].x|tojson }}|{{ messages[0].y }}|{{ messages[0].n }}|{{ messages[0].b }}|{{ messages[0].f }}");
    let msgs = json!([{"role": "user",
        "x": {"b": [1, 2.5, {}], "a": "é\n\"", "c": [], "d": null, "e": true, "g": 1e20, "h": 1.5e-7},
        "y": {"k": "it's", "l": [null, true, 1.0]}, "n": null, "b": false, "f": 3.0}]);
    assert_eq!(t.render(&msgs, None, false).expect("render"), "{\n  \"b\": [\n    1,\n    2.5,\n    {}\n  ],\n  \"a\": \"é\\n\\\"\",\n  \"c\": [],\n  \"d\": null,\n  \"e\": true,\n  \"g\": 1e+20,\n  \"h\": 1.5e-07\n}|{\"b\": [1, 2.5, {}], \"a\": \"é\\n\\\"\", \"c\": [], \"d\": null, \"e\": true, \"g\": 1e+20, \"h\": 1.5e-07}|{'k': \"it's\", 'l': [None, True, 1.0]}|None|False|3.0");
}

#[test]
fn hf_features() {
    let src = "{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}\
{{ m.content.strip().upper() }}{% if m.content.startswith(' ') %}!{% endif %}{% if not loop.last %},{% endif %}{% endfor %}\
|{{ ns.n }}|{{ messages[0].missing is defined }}|{{ tools is defined }}|{{ bos_token }}{{ eos_token }}\
|{{ 'a b c'.split() | join('-') }}|{{ add_generation_prompt }}";
    let t = tmpl(src);
    let msgs = json!([{"role": "user", "content": " hi "}, {"role": "assistant", "content": "yo"}]);
    assert_eq!(
        t.render(&msgs, None, true).expect("render"),
        "HI!,YO|2|False|False|<s></s>|a-b-c|True"
    );
    let tools = json!([{"type": "function", "function": {"name": "f"}}]);
    let got = t.render(&msgs, Some(&tools), false).expect("render");
    assert!(got.ends_with("|True|<s></s>|a-b-c|False"), "{got}");
}

#[test]
fn trim_and_lstrip_blocks() {
    let t = tmpl("{% for m in messages %}\n    {% if true %}\n{{ m.content }}\n    {% endif %}\n{% endfor %}\n");
    assert_eq!(t.render(&user("x"), None, false).expect("render"), "x\n");
}

#[test]
fn strftime_now_formats_a_date() {
    let t = tmpl("{{ strftime_now('%d %b %Y') }}");
    let got = t.render(&user("x"), None, false).expect("render");
    let parts: Vec<&str> = got.split(' ').collect();
    assert_eq!(parts.len(), 3, "{got}");
    assert_eq!(parts[0].len(), 2);
    assert_eq!(parts[1].len(), 3);
    assert!(parts[2].parse::<u32>().expect("year") >= 2024);
}

#[test]
fn syntax_error_is_reported() {
    match ChatTemplate::new("{% for m in messages %}{{ m.content }", "", "") {
        Err(TemplateError::Syntax(msg)) => assert!(!msg.is_empty()),
        other => panic!("expected syntax error, got {other:?}"),
    }
    match ChatTemplate::new("{% if %}", "", "") {
        Err(TemplateError::Syntax(_)) => {}
        other => panic!("expected syntax error, got {other:?}"),
    }
}

#[test]
fn raise_exception_is_a_render_error() {
    let t = tmpl("{% if messages[0].role != 'system' %}{{ raise_exception('System message required!') }}{% endif %}ok");
    match t.render(&user("x"), None, false) {
        Err(TemplateError::Render(msg)) => assert_eq!(msg, "System message required!"),
        other => panic!("expected render error, got {other:?}"),
    }
    let sys = json!([{"role": "system", "content": "s"}]);
    assert_eq!(t.render(&sys, None, false).expect("render"), "ok");
}

#[test]
fn huge_range_fails() {
    let t = tmpl("{% for i in range(10**9) %}x{% endfor %}");
    assert!(t.render(&user("x"), None, false).is_err());
}

#[test]
fn nested_loops_run_out_of_fuel() {
    let t =
        tmpl("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}");
    let start = std::time::Instant::now();
    assert!(matches!(
        t.render(&user("x"), None, false),
        Err(TemplateError::FuelExhausted)
    ));
    assert!(start.elapsed().as_secs() < 30);
}

#[test]
fn recursive_macro_fails() {
    let t = tmpl("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}");
    assert!(t.render(&user("x"), None, false).is_err());
}

#[test]
fn deep_nesting_fails_cleanly() {
    let depth = 5000;
    let src = "{% if true %}".repeat(depth) + "x" + &"{% endif %}".repeat(depth);
    if let Ok(t) = ChatTemplate::new(&src, "", "") {
        assert!(t.render(&user("x"), None, false).is_err());
    }
    let src = "{{ ".to_string() + &"(".repeat(depth) + "1" + &")".repeat(depth) + " }}";
    if let Ok(t) = ChatTemplate::new(&src, "", "") {
        assert!(t.render(&user("x"), None, false).is_err());
    }
    let mut deep = json!("x");
    for _ in 0..1000 {
        deep = json!([deep]);
    }
    let msgs = json!([{"role": "user", "content": "x", "extra": deep}]);
    assert!(matches!(
        qwen().render(&msgs, None, true),
        Err(TemplateError::BadMessages(_))
    ));
}

#[test]
fn huge_output_fails() {
    let t = tmpl("{% set s = 'x' * 1000 %}{% for i in range(100000) %}{% for j in range(100000) %}{{ s }}{% endfor %}{% endfor %}");
    assert!(t.render(&user("x"), None, false).is_err());
    let t = tmpl("{{ 'x' * 10000000000 }}");
    assert!(t.render(&user("x"), None, false).is_err());
}

#[test]
fn no_file_access() {
    let t = tmpl("{% include '/etc/passwd' %}");
    assert!(t.render(&user("x"), None, false).is_err());
    let t = tmpl("{% import '/etc/passwd' as p %}x");
    assert!(t.render(&user("x"), None, false).is_err());
}

#[test]
fn bad_messages() {
    let t = qwen();
    for bad in [
        json!({"role": "user"}),
        json!([1]),
        json!([{"content": "x"}]),
        json!([{"role": "user", "content": 5}]),
        json!([{"role": "user", "content": [{"type": "text"}]}]),
        json!([{"role": "user", "content": [7]}]),
    ] {
        assert!(
            matches!(
                t.render(&bad, None, true),
                Err(TemplateError::BadMessages(_))
            ),
            "{bad}"
        );
    }
}

/// Gemma 3's chat template logic (the GGUF under models/ carries no template, so the
/// upstream template is written out here), on a hand-checked conversation.
const GEMMA3: &str = r#"{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '

' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '

' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '
' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'image' -%}
                {{ '<start_of_image>' }}
            {%- elif item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>
' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model
'}}
{%- endif -%}
"#;

#[test]
fn gemma3_conversation() {
    let t = ChatTemplate::new(GEMMA3, "<bos>", "<eos>").expect("gemma template");
    let msgs = json!([
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": " Hi there "},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": [{"type": "text", "text": "Bye"}]}
    ]);
    assert_eq!(
        t.render(&msgs, None, true).expect("render"),
        "<bos><start_of_turn>user\nBe brief.\n\nHi there<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n<start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n"
    );
    let bad = json!([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]);
    match t.render(&bad, None, true) {
        Err(TemplateError::Render(m)) => assert!(m.contains("must alternate"), "{m}"),
        other => panic!("expected raise_exception, got {other:?}"),
    }
}

#[test]
fn long_conversation_fits_the_fuel_budget() {
    let t = qwen();
    let text = "lorem ipsum dolor sit amet ".repeat(150);
    let mut msgs = vec![json!({"role": "system", "content": "sys"})];
    for i in 0..1000 {
        let role = if i % 2 == 0 { "user" } else { "assistant" };
        msgs.push(json!({"role": role, "content": format!("{i} {text}")}));
    }
    let msgs = Value::Array(msgs);
    let tools = Value::Array(vec![weather_tools()[0].clone(); 50]);
    let got = t.render(&msgs, Some(&tools), true).expect("render");
    assert!(got.len() > 1000 * text.len());
    assert!(got.ends_with("<|im_start|>assistant\n"));
}
