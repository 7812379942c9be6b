"""End-to-end: the real `nao serve` on loopback with Gemma-3-270M, driven by the official
`openai` Python client (installed by scripts/test.sh into .venv).

Environment: NAO_BIN (the nao binary), NAO_MODEL (the GGUF file).
"""

import concurrent.futures
import json
import os
import re
import socket
import subprocess
import time
import urllib.request

import openai
import pytest

NAO_BIN = os.environ.get("NAO_BIN", "target/release/nao")
MODEL = os.environ.get("NAO_MODEL", "models/gemma-3-270m-q4_k_m.gguf")
CTX = 1024


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, *extra, env=None):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        cmd = [NAO_BIN, "serve", "-m", MODEL, "--port", str(self.port), "--ctx", str(CTX),
               "-t", "2", *extra]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     env={**os.environ, **(env or {})})
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nao serve exited: {self.proc.stderr.read().decode()}")
            try:
                with urllib.request.urlopen(self.base + "/health", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("nao serve did not become healthy")

    def client(self, key="none", **kw):
        return openai.OpenAI(base_url=self.base + "/v1", api_key=key, **kw)

    def metrics(self):
        with urllib.request.urlopen(self.base + "/metrics", timeout=5) as r:
            text = r.read().decode()
        out = {}
        for line in text.splitlines():
            m = re.match(r"^([a-z_]+)(\{[^}]*\})? ([0-9.eE+-]+)$", line)
            if m and not m.group(2):
                out[m.group(1)] = float(m.group(3))
        return out

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            pytest.fail("nao serve did not shut down within 15 s of SIGTERM")


@pytest.fixture(scope="module")
def server():
    s = Server("--parallel", "16")
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


def test_context_overflow_is_400(client, model_id):
    with pytest.raises(openai.BadRequestError) as e:
        chat(client, model_id, "word " * (CTX + 100), max_tokens=4)
    msg = str(e.value)
    assert str(CTX) in msg, msg


def test_overload_gives_503():
    s = Server("--parallel", "1", "--max-queue", "1")
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


def test_api_key_enforced():
    s = Server("--parallel", "2", env={"NAO_API_KEY": "sekret"})
    try:
        with pytest.raises(openai.AuthenticationError):
            s.client(key="wrong", max_retries=0).models.list()
        assert s.client(key="sekret").models.list().data
        # Health stays open.
        with urllib.request.urlopen(s.base + "/health", timeout=5) as r:
            assert r.status == 200
    finally:
        s.stop()
