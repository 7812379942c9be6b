"""End-to-end tool calling through the official `openai` client on the real `nao serve`
with Qwen2.5-Coder-1.5B-Instruct (its chat template renders `tools`, `tool_calls` and
`role: "tool"` messages; its calls come back as `<tool_call>` blocks that the server
parses into `message.tool_calls`). Covers a weather round trip (call, tool result, final
answer) streamed and not, `tool_choice: "required"` and a named function (both enforced
by a grammar, so every sample must be a valid call), streamed arguments (several pieces
that join to exactly the non-streamed `arguments`), and a 400 for a bad `tool_choice`.

Environment: NAO_BIN (the nao binary), NAO_TOOLS_MODEL (default: the Qwen file in models/).
The server helper is in conftest.py.
"""

import json
import os

import conftest
import jsonschema
import openai
import pytest

QWEN = os.environ.get("NAO_TOOLS_MODEL", "models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf")

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "City name, e.g. Paris"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["location"],
            "additionalProperties": False,
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Get the current time in a time zone.",
        "parameters": {
            "type": "object",
            "properties": {"timezone": {"type": "string"}},
            "required": ["timezone"],
            "additionalProperties": False,
        },
    },
}
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in (WEATHER, TIME)}
QUESTION = [{"role": "user", "content": "What is the weather like in Paris right now?"}]


@pytest.fixture(scope="module")
def server(start_server):
    if not os.path.exists(QWEN):
        if os.environ.get("NAO_REQUIRE_MODELS"):
            pytest.fail(f"{QWEN} is missing: run scripts/fetch_models.py")
        pytest.skip(f"{QWEN} not found (run scripts/fetch_models.py)")
    # conftest's Server takes the model from its module global; point it at Qwen here.
    saved = conftest.MODEL
    conftest.MODEL = QWEN
    try:
        s = start_server("--parallel", "2")
    finally:
        conftest.MODEL = saved
    yield s
    s.stop()


@pytest.fixture(scope="module")
def client(server):
    return server.client()


@pytest.fixture(scope="module")
def model_id(client):
    return client.models.list().data[0].id


def check_call(call, names=SCHEMAS):
    """A call's shape and arguments, checked against the declared schema."""
    assert call.type == "function"
    assert call.id.startswith("call_") and len(call.id) > 8
    assert call.function.name in names
    args = json.loads(call.function.arguments)
    jsonschema.validate(args, SCHEMAS[call.function.name])
    return args


def streamed(client, **kw):
    """Runs a streamed request and rebuilds (content, tool_calls, finish_reason) from the
    deltas, checking the delta shape on the way. Each call also keeps the list of its
    argument `pieces` as they came."""
    content, calls, finish = "", [], None
    for chunk in client.chat.completions.create(stream=True, **kw):
        if not chunk.choices:
            continue
        ch = chunk.choices[0]
        d = ch.delta
        if d.content:
            assert "<tool_call>" not in d.content
            content += d.content
        for tc in d.tool_calls or []:
            if tc.index == len(calls):
                assert tc.id and tc.type == "function" and tc.function.name
                first = tc.function.arguments or ""
                calls.append({"id": tc.id, "name": tc.function.name, "arguments": first,
                              "pieces": [first] if first else []})
            else:
                assert tc.index == len(calls) - 1 and tc.id is None
                assert tc.function.name is None
                calls[tc.index]["arguments"] += tc.function.arguments
                calls[tc.index]["pieces"].append(tc.function.arguments)
        if ch.finish_reason:
            finish = ch.finish_reason
    return content, calls, finish


@pytest.mark.parametrize("stream", [False, True])
def test_weather_round_trip(client, model_id, stream):
    kw = dict(model=model_id, messages=QUESTION, tools=[WEATHER, TIME], temperature=0,
              max_tokens=60, seed=1)
    if stream:
        content, calls, finish = streamed(client, **kw)
        assert finish == "tool_calls"
        assert len(calls) >= 1 and calls[0]["name"] == "get_weather"
        call_id, args_text = calls[0]["id"], calls[0]["arguments"]
        assert call_id.startswith("call_")
    else:
        r = client.chat.completions.create(**kw)
        ch = r.choices[0]
        assert ch.finish_reason == "tool_calls"
        assert ch.message.tool_calls, ch.message
        call = ch.message.tool_calls[0]
        assert call.function.name == "get_weather"
        check_call(call)
        call_id, args_text = call.id, call.function.arguments
    args = json.loads(args_text)
    assert "paris" in args["location"].lower()

    history = QUESTION + [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": call_id, "type": "function",
             "function": {"name": "get_weather", "arguments": args_text}}]},
        {"role": "tool", "tool_call_id": call_id,
         "content": json.dumps({"temperature_celsius": 18, "condition": "sunny"})},
    ]
    # `tool_choice: "none"` asks for the answer: a 1.5B model given the tools again tends
    # to repeat the call. The history still carries the call and its result.
    kw = dict(model=model_id, messages=history, tools=[WEATHER, TIME], tool_choice="none",
              temperature=0, max_tokens=40, seed=1)
    if stream:
        content, calls, finish = streamed(client, **kw)
    else:
        r = client.chat.completions.create(**kw)
        content, calls, finish = r.choices[0].message.content, r.choices[0].message.tool_calls, \
            r.choices[0].finish_reason
    assert not calls and finish in ("stop", "length")
    assert "18" in content or "sunny" in content.lower(), content


# Like WEATHER, but both fields required: every call has a multi-field object.
WEATHER_BOTH = {"type": "function", "function": {
    **WEATHER["function"],
    "parameters": {**WEATHER["function"]["parameters"], "required": ["location", "unit"]}}}


@pytest.mark.parametrize("temperature,seed", [(0, 1), (1.0, 5)])
def test_streamed_arguments_come_in_pieces(client, model_id, temperature, seed):
    """The name comes once, the arguments in several pieces as tokens arrive, and the
    pieces join to exactly the non-streamed `arguments` string (same seed, same sample)."""
    kw = dict(model=model_id, messages=QUESTION, tools=[WEATHER_BOTH, TIME],
              tool_choice={"type": "function", "function": {"name": "get_weather"}},
              parallel_tool_calls=False, temperature=temperature, seed=seed, max_tokens=60)
    r = client.chat.completions.create(**kw)
    assert r.choices[0].finish_reason == "tool_calls"
    whole = r.choices[0].message.tool_calls[0].function.arguments
    content, calls, finish = streamed(client, **kw)
    assert finish == "tool_calls"
    assert len(calls) == 1 and calls[0]["name"] == "get_weather"
    pieces = [p for p in calls[0]["pieces"] if p]
    assert len(pieces) > 1, pieces
    assert "".join(pieces) == whole
    args = json.loads(whole)
    jsonschema.validate(args, WEATHER_BOTH["function"]["parameters"])


def test_required_always_yields_a_valid_call(client, model_id):
    r = client.chat.completions.create(
        model=model_id, messages=[{"role": "user", "content": "Tell me a joke."}],
        tools=[WEATHER, TIME], tool_choice="required", parallel_tool_calls=False,
        temperature=1.0, seed=7, max_tokens=48)
    for ch in r.choices:
        assert ch.finish_reason == "tool_calls", ch
        assert len(ch.message.tool_calls) == 1
        check_call(ch.message.tool_calls[0])


def test_named_function_is_the_one_called(client, model_id):
    choice = {"type": "function", "function": {"name": "get_time"}}
    r = client.chat.completions.create(
        model=model_id, messages=QUESTION, tools=[WEATHER, TIME], tool_choice=choice,
        temperature=1.0, seed=3, max_tokens=48)
    for ch in r.choices:
        assert ch.finish_reason == "tool_calls", ch
        for call in ch.message.tool_calls:
            assert call.function.name == "get_time"
            check_call(call)


def test_bad_tool_choice_is_a_400(client, model_id):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(
            model=model_id, messages=QUESTION, tools=[WEATHER],
            tool_choice={"type": "function", "function": {"name": "get_time"}})
    assert e.value.body["param"] == "tool_choice.function.name"
