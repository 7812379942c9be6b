"""End-to-end structured output: `response_format` (json_object, json_schema) and
llama.cpp's `json_schema` / `grammar` extensions through the official `openai` client on the
real `nao serve` with Gemma-3-270M. Outputs must end by themselves (`finish_reason: stop`),
parse, and validate with the `jsonschema` package; GBNF grammars (translated to Lark) are
enforced, and unsupported schemas and unreadable GBNF are 400s naming the problem.
The server helper is in conftest.py.

Environment: NAO_BIN (the nao binary), NAO_MODEL (the GGUF file).
"""

import json
import re

import jsonschema
import openai
import pytest

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 30},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "pets": {
            "type": "array",
            "items": {"enum": ["cat", "dog", "fish"]},
            "minItems": 1,
            "maxItems": 3,
        },
        "email": {"type": "string", "pattern": "^[a-z]{1,10}@example\\.com$"},
        "married": {"type": "boolean"},
    },
    "required": ["name", "age", "pets", "email", "married"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def server(start_server):
    s = start_server("--parallel", "8")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def client(server):
    return server.client()


@pytest.fixture(scope="module")
def model_id(client):
    return client.models.list().data[0].id


def ask(client, model_id, **kw):
    return client.chat.completions.create(
        model=model_id,
        messages=[{"role": "user", "content": "Describe a person as JSON."}],
        max_tokens=200,
        **kw,
    )


def schema_format(schema):
    return {"type": "json_schema",
            "json_schema": {"name": "person", "schema": schema, "strict": True}}


@pytest.mark.parametrize("temperature,seed", [(0, None), (1.0, 7), (1.0, 8)])
def test_json_schema_output_validates(client, model_id, temperature, seed):
    r = ask(client, model_id, response_format=schema_format(PERSON),
            temperature=temperature, seed=seed)
    c = r.choices[0]
    assert c.finish_reason == "stop", c.message.content
    jsonschema.validate(json.loads(c.message.content), PERSON)


def test_json_schema_streamed_matches_non_streamed(client, model_id):
    kw = dict(response_format=schema_format(PERSON), temperature=1.0, seed=11)
    full = ask(client, model_id, **kw).choices[0].message.content
    chunks = list(ask(client, model_id, stream=True, **kw))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full
    assert chunks[-1].choices[0].finish_reason == "stop"
    jsonschema.validate(json.loads(text), PERSON)


def test_json_object(client, model_id):
    r = ask(client, model_id, response_format={"type": "json_object"}, temperature=0)
    c = r.choices[0]
    if c.finish_reason == "stop":
        assert isinstance(json.loads(c.message.content), dict)
    else:
        # An unbounded object may run to max_tokens; it still starts as an object.
        assert c.finish_reason == "length" and c.message.content.startswith("{")


def test_completions_llama_cpp_extensions(client, model_id):
    schema = {"type": "object",
              "properties": {"answer": {"enum": ["yes", "no"]}},
              "required": ["answer"], "additionalProperties": False}
    for extra in ({"json_schema": schema},
                  {"response_format": {"type": "json_object", "schema": schema}}):
        r = client.completions.create(model=model_id, prompt="Is the sky blue? JSON:",
                                      max_tokens=32, temperature=0, extra_body=extra)
        assert r.choices[0].finish_reason == "stop"
        jsonschema.validate(json.loads(r.choices[0].text), schema)
    # A Lark grammar in llama.cpp's `%llguidance` form.
    r = client.completions.create(
        model=model_id, prompt="Pick a color:", max_tokens=8, temperature=1.0, seed=3,
        extra_body={"grammar": '%llguidance {}\nstart: " red" | " green" | " blue"'})
    assert r.choices[0].text in (" red", " green", " blue")
    assert r.choices[0].finish_reason == "stop"


def test_unsupported_constraints_are_400(client, model_id):
    bad = {"type": "array", "uniqueItems": True}
    with pytest.raises(openai.BadRequestError) as e:
        ask(client, model_id, response_format=schema_format(bad))
    assert "uniqueItems" in e.value.body["message"]
    with pytest.raises(openai.BadRequestError) as e:
        ask(client, model_id, response_format={"type": "yaml"})
    assert e.value.body["param"] == "response_format.type"
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=model_id, prompt="x", max_tokens=4,
                                  extra_body={"grammar": 'root ::= "a" item\n'})
    assert e.value.body["param"] == "grammar"
    assert "line 1, column 14" in e.value.body["message"], e.value.body
    assert "item" in e.value.body["message"]


# llama.cpp's grammars/list.gbnf, and a date grammar in the same style.
LIST_GBNF = r"""
root ::= item+

# Excludes various line break characters
item ::= "- " [^\r\n\x0b\x0c\x85\u2028\u2029]+ "\n"
"""
DATE_GBNF = r"""
root  ::= date " " time
date  ::= year "-" month "-" day
year  ::= [12] [0-9]{3}
month ::= "0" [1-9] | "1" [0-2]
day   ::= "0" [1-9] | [12] [0-9] | "3" [01]
time  ::= ([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9]
"""


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_gbnf_grammars_constrain_completions(client, model_id, seed):
    r = client.completions.create(
        model=model_id, prompt="A date and time:", max_tokens=20, temperature=1.0, seed=seed,
        extra_body={"grammar": DATE_GBNF})
    text = r.choices[0].text
    assert r.choices[0].finish_reason == "stop", text
    assert re.fullmatch(r"[12][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01]) "
                        r"([01][0-9]|2[0-3]):[0-5][0-9]", text), text
    r = client.chat.completions.create(
        model=model_id, messages=[{"role": "user", "content": "List three fruits."}],
        max_tokens=40, temperature=1.0, seed=seed, extra_body={"grammar": LIST_GBNF})
    text = r.choices[0].message.content
    lines = text.split("\n")
    # Every complete line is an item; a cut-off last line is allowed only at max_tokens.
    assert text.startswith("- "), text
    for line in lines[:-1]:
        assert line.startswith("- ") and len(line) > 2, text
    if r.choices[0].finish_reason == "stop":
        assert lines[-1] == "", text
