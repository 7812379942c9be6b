"""/v1/embeddings and /api/embed on the real `nao serve` with all-MiniLM-L6-v2 next to the
chat model, driven by the official `openai` and `ollama` clients. Truth is the
sentence-transformers fixture (tests/fixtures/all-MiniLM-L6-v2.embeddings.json)."""

import base64
import json
import math
import os
import struct
import urllib.error
import urllib.request

import openai
import pytest

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "fixtures", "all-MiniLM-L6-v2.embeddings.json")
MODEL_ID = "all-MiniLM-L6-v2"


@pytest.fixture(scope="module")
def cases():
    with open(FIXTURE) as f:
        return json.load(f)["cases"]


def cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def close_to_fixture(got, case):
    assert len(got) == 384
    c = cosine(got, case["embedding"])
    assert c >= 0.9999, f"{case['text']!r}: cosine {c}"


def post(server, path, body):
    req = urllib.request.Request(server.base + path, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_single_string_default_encoding(embed_server, cases):
    # The client asks for base64 unless told otherwise and decodes it itself.
    r = embed_server.client().embeddings.create(model=MODEL_ID, input=cases[0]["text"])
    assert r.model == MODEL_ID and len(r.data) == 1 and r.data[0].index == 0
    close_to_fixture(r.data[0].embedding, cases[0])
    assert r.usage.prompt_tokens == len(cases[0]["input_ids"]) == r.usage.total_tokens


def test_list_of_strings_float(embed_server, cases):
    texts = [c["text"] for c in cases]
    r = embed_server.client().embeddings.create(model=MODEL_ID, input=texts, encoding_format="float")
    assert [d.index for d in r.data] == list(range(len(cases)))
    for d, c in zip(r.data, cases):
        close_to_fixture(d.embedding, c)
    assert r.usage.prompt_tokens == sum(len(c["input_ids"]) for c in cases)


def test_token_arrays(embed_server, cases):
    client = embed_server.client()
    r = client.embeddings.create(model=MODEL_ID, input=cases[3]["input_ids"], encoding_format="float")
    close_to_fixture(r.data[0].embedding, cases[3])
    r = client.embeddings.create(model=MODEL_ID, input=[c["input_ids"] for c in cases[:5]],
                                 encoding_format="float")
    for d, c in zip(r.data, cases[:5]):
        close_to_fixture(d.embedding, c)


def test_base64_decodes_to_the_same_floats(embed_server, cases):
    texts = [c["text"] for c in cases[:4]]
    _, as_float = post(embed_server, "/v1/embeddings", {"input": texts, "encoding_format": "float"})
    _, as_b64 = post(embed_server, "/v1/embeddings", {"input": texts, "encoding_format": "base64"})
    for f, b in zip(as_float["data"], as_b64["data"]):
        raw = base64.b64decode(b["embedding"])
        decoded = struct.unpack(f"<{len(raw) // 4}f", raw)
        rounded = [struct.unpack("<f", struct.pack("<f", x))[0] for x in f["embedding"]]
        assert list(decoded) == rounded


def test_dimensions_and_bad_requests(embed_server, cases):
    client = embed_server.client(max_retries=0)
    r = client.embeddings.create(model=MODEL_ID, input="x", dimensions=384, encoding_format="float")
    assert len(r.data[0].embedding) == 384
    with pytest.raises(openai.BadRequestError, match="dimensions"):
        client.embeddings.create(model=MODEL_ID, input="x", dimensions=128)
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model=MODEL_ID, input=[])
    with pytest.raises(openai.BadRequestError, match="512"):
        client.embeddings.create(model=MODEL_ID, input="word " * 600)
    r = client.embeddings.create(model=MODEL_ID, input="word " * 600, extra_body={"truncate": True},
                                 encoding_format="float")
    assert r.usage.prompt_tokens == 512
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model=MODEL_ID, input=[101, 99999999])
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="no-such-model", input="x")


def test_models_lists_both(embed_server):
    ids = [m.id for m in embed_server.client().models.list().data]
    assert MODEL_ID in ids and len(ids) == 2
    assert embed_server.client().models.retrieve(MODEL_ID).id == MODEL_ID


def test_ollama_embed(embed_server, cases):
    import ollama

    r = ollama.Client(host=embed_server.base).embed(model=MODEL_ID, input=[c["text"] for c in cases[:3]])
    assert len(r.embeddings) == 3 and r.prompt_eval_count == sum(len(c["input_ids"]) for c in cases[:3])
    for e, c in zip(r.embeddings, cases[:3]):
        close_to_fixture(e, c)
    status, body = post(embed_server, "/api/embed", {"model": MODEL_ID, "input": cases[1]["text"]})
    assert status == 200 and body["model"] == MODEL_ID and body["total_duration"] > 0
    close_to_fixture(body["embeddings"][0], cases[1])
