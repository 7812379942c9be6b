"""Shared helpers of the end-to-end tests: start the real `nao serve` on a free loopback
port with Gemma-3-270M, wait until it is healthy, read its metrics, stop it.

Environment: NAO_BIN (the nao binary), NAO_MODEL (the GGUF file). Servers get an empty
NAO_HOME of their own unless the test passes one, so a model store on the machine never
changes what they list.
"""

import os
import re
import socket
import subprocess
import tempfile
import time
import urllib.request

import pytest

NAO_BIN = os.environ.get("NAO_BIN", "target/release/nao")
MODEL = os.environ.get("NAO_MODEL", "models/gemma-3-270m-q4_k_m.gguf")
CTX = 1024
# `model=` default of Server: this module's MODEL when the server starts (tests may point
# MODEL at another file first).
DEFAULT = object()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One `nao serve` process; `extra` are additional command-line arguments, `model` the
    `-m` argument (default MODEL; None: no default model, only the store's)."""

    def __init__(self, *extra, env=None, model=DEFAULT):
        if model is DEFAULT:
            model = MODEL
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.ctx = CTX
        self.model_path = model
        default = ["-m", model] if model is not None else []
        cmd = [NAO_BIN, "serve", *default, "--port", str(self.port), "--ctx", str(CTX),
               "-t", "2", *extra]
        # A store home that does not exist: `-m FILE` alone then serves just that file.
        home = os.path.join(tempfile.gettempdir(), f"nao-e2e-no-store-{os.getpid()}")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     env={**os.environ, "NAO_HOME": home, **(env or {})})
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
        self.proc.kill()
        raise RuntimeError("nao serve did not become healthy")

    def client(self, key="none", **kw):
        """An `openai.OpenAI` client for this server."""
        import openai

        return openai.OpenAI(base_url=self.base + "/v1", api_key=key, **kw)

    def get(self, path, timeout=5):
        """`(status, body text)` of a GET without credentials."""
        with urllib.request.urlopen(self.base + path, timeout=timeout) as r:
            return r.status, r.read().decode()

    def metrics(self):
        _, text = self.get("/metrics")
        out = {}
        for line in text.splitlines():
            m = re.match(r"^([a-z_]+)(\{[^}]*\})? ([0-9.eE+-]+)$", line)
            if m and not m.group(2):
                out[m.group(1)] = float(m.group(3))
        return out

    def stop(self):
        """SIGTERM, then a clean exit within 15 s is part of what is tested."""
        if self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            pytest.fail("nao serve did not shut down within 15 s of SIGTERM")


EMBED_MODEL = os.environ.get("NAO_EMBED_MODEL", "models/all-MiniLM-L6-v2")


@pytest.fixture(scope="session")
def embed_server(start_server):
    """A server with the all-MiniLM-L6-v2 embedding model next to the chat model
    (`--embedding-model DIR`); skipped when the model directory is absent."""
    if not os.path.isfile(os.path.join(EMBED_MODEL, "model.safetensors")):
        if os.environ.get("NAO_REQUIRE_MODELS"):
            pytest.fail(f"{EMBED_MODEL} is missing: run scripts/fetch_models.py")
        pytest.skip(f"{EMBED_MODEL} not found (run scripts/fetch_models.py)")
    return start_server("--embedding-model", EMBED_MODEL)


@pytest.fixture(scope="session")
def start_server():
    """`start_server(*args, env=None, model=MODEL)` starts a server; any left running at the
    end of the session are stopped."""
    started = []

    def start(*extra, env=None, model=DEFAULT):
        s = Server(*extra, env=env, model=model)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()
