"""End-to-end: the real `nao serve` on loopback with Gemma-3-270M, driven by the official
`ollama` Python client against nao's Ollama API (`/api/*`). The server helper is in
conftest.py.

Environment: NAO_BIN (the nao binary), NAO_MODEL (the GGUF file).
"""

import datetime
import json
import os
import urllib.error
import urllib.request

import jsonschema
import ollama
import pytest


@pytest.fixture(scope="module")
def server(start_server):
    s = start_server("--parallel", "4")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def client(server):
    return ollama.Client(host=server.base)


@pytest.fixture(scope="module")
def model(client):
    models = client.list().models
    assert len(models) == 1
    return models[0].model


GREEDY = {"temperature": 0, "num_predict": 24}


def test_list_show_ps(server, client, model):
    m = client.list().models[0]
    assert model.endswith(":latest")
    assert m.size == os.path.getsize(server.model_path)
    assert isinstance(m.modified_at, datetime.datetime)
    assert len(m.digest) == 64
    d = m.details
    assert (d.format, d.family, d.quantization_level) == ("gguf", "gemma3", "Q4_K_M")
    assert d.parameter_size.endswith("M"), d.parameter_size

    s = client.show(model)
    assert s.modelinfo["general.architecture"] == "gemma3"
    assert s.modelinfo["gemma3.context_length"] >= server.ctx
    assert s.modelinfo["nao.context_length"] == server.ctx
    assert s.modelinfo["general.parameter_count"] > 100_000_000
    assert "start_of_turn" in s.template
    assert s.details.family == "gemma3"
    assert "num_ctx" in s.parameters and str(server.ctx) in s.parameters
    # Without the tag, as Ollama clients often send it.
    assert client.show(model.removesuffix(":latest")).details.family == "gemma3"

    p = client.ps().models[0]
    assert p.model == model and p.size_vram == 0 and p.context_length == server.ctx
    assert p.expires_at.year > datetime.datetime.now().year


def test_generate_streamed_equals_non_streamed_greedy(client, model):
    r = client.generate(model=model, prompt="Why is the sky blue?", options=GREEDY)
    assert r.done and r.done_reason in ("stop", "length")
    assert r.response
    assert r.model == model
    assert 0 < r.eval_count <= 24 and r.prompt_eval_count > 0
    assert r.total_duration > 0 and r.eval_duration > 0 and r.prompt_eval_duration > 0
    assert r.context and all(isinstance(t, int) for t in r.context)

    parts = list(client.generate(model=model, prompt="Why is the sky blue?", options=GREEDY,
                                 stream=True))
    assert len(parts) > 2
    assert all(not p.done for p in parts[:-1]) and parts[-1].done
    assert parts[-1].done_reason == r.done_reason
    assert parts[-1].eval_count == r.eval_count
    assert "".join(p.response for p in parts) == r.response


def test_chat_streamed_equals_non_streamed_greedy(client, model):
    messages = [{"role": "system", "content": "You answer briefly."},
                {"role": "user", "content": "Name three colors."}]
    r = client.chat(model=model, messages=messages, options=GREEDY)
    assert r.done and r.done_reason in ("stop", "length")
    assert r.message.role == "assistant" and r.message.content
    assert r.prompt_eval_count > 0 and r.eval_count > 0

    parts = list(client.chat(model=model, messages=messages, options=GREEDY, stream=True))
    assert all(p.message.role == "assistant" for p in parts)
    assert all(not p.done for p in parts[:-1]) and parts[-1].done
    assert "".join(p.message.content for p in parts) == r.message.content


def test_options_reach_the_sampler(client, model):
    # Raw: the bare text continues the count; a stop string ends it early and is not
    # returned; num_predict caps the length.
    base = client.generate(model=model, prompt="1, 2, 3, 4, 5,", raw=True,
                           options=GREEDY).response
    assert "8" in base, base
    r = client.generate(model=model, prompt="1, 2, 3, 4, 5,", raw=True,
                        options={**GREEDY, "stop": ["8"]})
    assert r.done_reason == "stop"
    assert r.response == base[:base.index("8")]
    r = client.generate(model=model, prompt="1, 2, 3, 4, 5,", raw=True,
                        options={"temperature": 0, "num_predict": 3})
    assert r.eval_count == 3 and r.done_reason == "length"
    # Same seed, same sample.
    kw = dict(model=model, prompt="Tell me a story.", options={"temperature": 1.0,
                                                             "seed": 1234, "num_predict": 16})
    assert client.generate(**kw).response == client.generate(**kw).response


def test_errors(client, model):
    with pytest.raises(ollama.ResponseError) as e:
        client.generate(model="no-such-model:1b", prompt="x")
    assert e.value.status_code == 404
    assert e.value.error == "model 'no-such-model:1b' not found"
    # A schema the grammar engine cannot enforce is refused, naming the keyword.
    with pytest.raises(ollama.ResponseError) as e:
        client.chat(model=model, messages=[{"role": "user", "content": "x"}],
                    format={"type": "array", "uniqueItems": True}, stream=True).__next__()
    assert e.value.status_code == 400 and "uniqueItems" in e.value.error
    with pytest.raises(ollama.ResponseError) as e:
        client.show("no-such-model")
    assert e.value.status_code == 404


def test_format_constrains_the_output(client, model):
    schema = {"type": "object",
              "properties": {"name": {"type": "string", "maxLength": 20},
                             "age": {"type": "integer", "minimum": 0, "maximum": 120}},
              "required": ["name", "age"], "additionalProperties": False}
    r = client.generate(model=model, prompt="Describe a person as JSON.", format=schema,
                        options={"temperature": 1.0, "seed": 5, "num_predict": 80})
    assert r.done_reason == "stop", r.response
    jsonschema.validate(json.loads(r.response), schema)
    r = client.chat(model=model, messages=[{"role": "user", "content": "Give me JSON."}],
                    format="json", options={"temperature": 0, "num_predict": 80})
    if r.done_reason == "stop":
        assert isinstance(json.loads(r.message.content), dict)
    else:
        assert r.message.content.startswith("{")


def test_version_and_root(server):
    status, body = server.get("/")
    assert (status, body) == (200, "Ollama is running")
    status, body = server.get("/api/version")
    assert status == 200 and '"version"' in body


def test_api_key(start_server):
    s = start_server("--parallel", "1", env={"NAO_API_KEY": "sekret"})
    try:
        with pytest.raises(ollama.ResponseError) as e:
            ollama.Client(host=s.base).list()
        assert e.value.status_code == 401
        c = ollama.Client(host=s.base, headers={"Authorization": "Bearer sekret"})
        assert c.list().models
        assert s.get("/")[0] == 200
        with pytest.raises(urllib.error.HTTPError):
            s.get("/api/version")
    finally:
        s.stop()
