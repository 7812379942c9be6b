"""End-to-end: the real `nao serve` on loopback with Gemma-3-270M, driven by the official
`openai` Python client (installed by scripts/test.sh into .venv). The server helper is in
conftest.py.

Environment: NAO_BIN (the nao binary), NAO_MODEL (the GGUF file).
"""

import concurrent.futures
import json
import socket
import time
import urllib.request

import openai
import pytest


@pytest.fixture(scope="module")
def server(start_server):
    s = start_server("--parallel", "16")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def client(server):
    return server.client()


@pytest.fixture(scope="module")
def model_id(client):
    models = client.models.list().data
    assert len(models) == 1
    return models[0].id


def chat(client, model_id, content, **kw):
    return client.chat.completions.create(
        model=model_id, messages=[{"role": "user", "content": content}], **kw)


def test_models_list_and_get(client, model_id):
    m = client.models.retrieve(model_id)
    assert m.id == model_id
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def test_chat_non_streaming(client, model_id):
    r = chat(client, model_id, "Say hello.", max_tokens=16, temperature=0)
    c = r.choices[0]
    assert r.object == "chat.completion"
    assert c.message.role == "assistant"
    assert isinstance(c.message.content, str) and c.message.content
    assert c.finish_reason in ("stop", "length")
    u = r.usage
    assert u.prompt_tokens > 0 and 0 < u.completion_tokens <= 16
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens


def test_chat_streaming_matches_non_streaming_with_seed(client, model_id):
    kw = dict(max_tokens=32, temperature=1.0, seed=1234)
    full = chat(client, model_id, "Tell me about the sea.", **kw).choices[0].message.content
    stream = chat(client, model_id, "Tell me about the sea.", stream=True,
                  stream_options={"include_usage": True}, **kw)
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] in ("stop", "length") and all(f is None for f in finishes[:-1])
    # Usage: null on every chunk but the last, which has no choices.
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    assert all(c.usage is None for c in chunks[:-1])
    # A different seed gives (almost surely) different text.
    other = chat(client, model_id, "Tell me about the sea.", max_tokens=32, temperature=1.0,
                 seed=99).choices[0].message.content
    assert other != full


def test_completions_streaming_and_not(client, model_id):
    r = client.completions.create(model=model_id, prompt="The capital of France is",
                                  max_tokens=12, temperature=0)
    assert r.object == "text_completion"
    text = r.choices[0].text
    assert text
    s = client.completions.create(model=model_id, prompt="The capital of France is",
                                  max_tokens=12, temperature=0, stream=True)
    assert "".join(c.choices[0].text for c in s if c.choices) == text


def test_stop_strings(client, model_id):
    base = client.completions.create(model=model_id, prompt="1, 2, 3, 4, 5,", max_tokens=24,
                                     temperature=0).choices[0].text
    assert "8" in base, base
    r = client.completions.create(model=model_id, prompt="1, 2, 3, 4, 5,", max_tokens=24,
                                  temperature=0, stop=["8", "never"])
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].text == base[:base.index("8")]
    s = client.completions.create(model=model_id, prompt="1, 2, 3, 4, 5,", max_tokens=24,
                                  temperature=0, stop="8", stream=True)
    assert "".join(c.choices[0].text for c in s if c.choices) == base[:base.index("8")]


def test_logprobs(client, model_id):
    r = chat(client, model_id, "Name a color.", max_tokens=5, temperature=0, logprobs=True,
             top_logprobs=3)
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens
    for lp in content:
        assert lp.logprob <= 0
        assert len(lp.top_logprobs) == 3
        # Greedy: the chosen token is the most likely one.
        assert lp.top_logprobs[0].token == lp.token
        assert abs(lp.top_logprobs[0].logprob - lp.logprob) < 1e-4
        assert lp.bytes == list(lp.token.encode()) or lp.bytes is not None
    c = client.completions.create(model=model_id, prompt="Hello", max_tokens=4, temperature=0,
                                  logprobs=2)
    lp = c.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs)
    assert all(len(t) <= 2 for t in lp.top_logprobs)


def test_n_choices(client, model_id):
    r = chat(client, model_id, "Pick a number.", max_tokens=8, temperature=1.0, seed=5, n=3)
    assert [c.index for c in r.choices] == [0, 1, 2]


PROMPTS = [f"Write one sentence about the number {i}." for i in range(16)]


def test_sixteen_concurrent_requests_match_sequential(client, model_id):
    def ask(i):
        return chat(client, model_id, PROMPTS[i], max_tokens=24, temperature=0.7,
                    seed=i).choices[0].message.content

    sequential = [ask(i) for i in range(16)]
    with concurrent.futures.ThreadPoolExecutor(16) as ex:
        concurrent_ = list(ex.map(ask, range(16)))
    assert concurrent_ == sequential


def test_disconnect_mid_stream_frees_the_sequence(server, model_id):
    body = json.dumps({"model": model_id, "prompt": "Write a very long story.",
                       "max_tokens": 900, "stream": True, "temperature": 0}).encode()
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    sock.settimeout(30)
    got = b""
    while got.count(b"data:") < 3:
        more = sock.recv(4096)
        assert more, f"server closed the stream early: {got!r}"
        got += more
    assert server.metrics()["nao_requests_running"] == 1
    sock.close()
    deadline = time.time() + 1.5
    while time.time() < deadline:
        m = server.metrics()
        if m["nao_requests_running"] == 0 and m["nao_kv_blocks_used"] == 0:
            break
        time.sleep(0.05)
    m = server.metrics()
    assert m["nao_requests_running"] == 0 and m["nao_kv_blocks_used"] == 0, m


def test_context_overflow_is_400(server, client, model_id):
    with pytest.raises(openai.BadRequestError) as e:
        chat(client, model_id, "word " * (server.ctx + 100), max_tokens=4)
    msg = str(e.value)
    assert str(server.ctx) in msg, msg


def test_overload_gives_503(start_server):
    s = start_server("--parallel", "1", "--max-queue", "1")
    try:
        c = s.client(max_retries=0)
        mid = c.models.list().data[0].id
        body = {"model": mid, "prompt": "Count to a thousand:", "max_tokens": 100}
        with concurrent.futures.ThreadPoolExecutor(6) as ex:
            futs = [ex.submit(c.completions.create, **body) for _ in range(6)]
            errors = []
            for f in futs:
                try:
                    f.result()
                except openai.APIStatusError as e:
                    errors.append(e)
        assert errors and all(e.status_code == 503 for e in errors), errors
        assert errors[0].response.headers.get("retry-after")
    finally:
        s.stop()


def test_api_key_enforced(start_server):
    s = start_server("--parallel", "2", env={"NAO_API_KEY": "sekret"})
    try:
        with pytest.raises(openai.AuthenticationError):
            s.client(key="wrong", max_retries=0).models.list()
        assert s.client(key="sekret").models.list().data
        # Health stays open.
        with urllib.request.urlopen(s.base + "/health", timeout=5) as r:
            assert r.status == 200
    finally:
        s.stop()
