#!/usr/bin/env python3
"""Serving benchmark: nao serve against llama-server on the same model, same machine, one run.

For each concurrency C, C streaming clients each send R chat requests (same prompts and
max_tokens for both servers); the servers alternate (llama-server, then nao) per C so drift
hits both alike. Printed side by side: aggregate generated tokens/s, p50/p99 time to first
token, p50 inter-token latency. Then a shared-system-prompt test: a ~1,000-token system
prompt followed by different questions, one at a time; TTFT of the first request against the
median of the later ones (prefix caching).

Only the standard library is used. Usage (see scripts/bench-serve.sh):
  bench_serve.py --nao-bin BIN --llama-server BIN --model FILE [--conc 1,4,8,16]
                 [--requests-per-client 2] [--max-tokens 64] [--threads 2]
"""

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time

QUESTIONS = [
    "Write a Python function that reverses a string.",
    "Explain what a hash map is in two sentences.",
    "Write a bash one-liner that counts lines in all .py files.",
    "What is the difference between a list and a tuple in Python?",
    "Write a SQL query that selects the ten newest rows of a table.",
    "Explain recursion to a beginner.",
    "Write a JavaScript function that debounces another function.",
    "What does the `git rebase` command do?",
    "Write a C function that computes the length of a string.",
    "Explain Big-O notation briefly.",
    "Write a Rust function that sums a slice of integers.",
    "What is a race condition?",
    "Write a regular expression that matches an email address.",
    "Explain what an HTTP status code 404 means.",
    "Write a Go function that reverses a slice.",
    "What is the purpose of a mutex?",
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(port, proc, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/health")
            r = c.getresponse()
            r.read()
            if r.status == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError("server did not become healthy")


def model_id(port):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/v1/models")
    return json.loads(c.getresponse().read())["data"][0]["id"]


def stream_chat(port, model, messages, max_tokens):
    """One streaming request; returns (ttft, [inter-token gaps], completion tokens)."""
    body = json.dumps({
        "model": model, "messages": messages, "max_tokens": max_tokens, "temperature": 0,
        "stream": True, "stream_options": {"include_usage": True},
    })
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    t0 = time.perf_counter()
    c.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
    r = c.getresponse()
    if r.status != 200:
        raise RuntimeError(f"HTTP {r.status}: {r.read()[:200]!r}")
    ttft, last, gaps, n_chunks, usage = None, None, [], 0, None
    for raw in r:
        line = raw.decode("utf-8", "replace").strip()
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            break
        obj = json.loads(data)
        if obj.get("usage"):
            usage = obj["usage"]
        for ch in obj.get("choices", []):
            if (ch.get("delta") or {}).get("content"):
                now = time.perf_counter()
                if ttft is None:
                    ttft = now - t0
                else:
                    gaps.append(now - last)
                last = now
                n_chunks += 1
    c.close()
    n = usage["completion_tokens"] if usage else n_chunks
    return ttft if ttft is not None else time.perf_counter() - t0, gaps, n


def load(port, model, conc, per_client, max_tokens):
    results, errors = [], []
    lock = threading.Lock()

    def client(i):
        for j in range(per_client):
            q = QUESTIONS[(i * per_client + j) % len(QUESTIONS)]
            try:
                res = stream_chat(port, model, [{"role": "user", "content": q}], max_tokens)
                with lock:
                    results.append(res)
            except Exception as e:  # reported, not hidden
                with lock:
                    errors.append(str(e))

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(conc)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        print(f"  {len(errors)} errors, first: {errors[0]}", file=sys.stderr)
    ttfts = sorted(r[0] for r in results)
    gaps = sorted(g for r in results for g in r[1])
    tokens = sum(r[2] for r in results)
    pct = lambda xs, p: xs[min(len(xs) - 1, int(p * len(xs)))] if xs else float("nan")
    return {"tok_s": tokens / wall, "ttft_p50": pct(ttfts, 0.5), "ttft_p99": pct(ttfts, 0.99),
            "itl_p50": pct(gaps, 0.5), "tokens": tokens, "errors": len(errors)}


def shared_prefix(port, model, max_tokens):
    system = ("You are a senior software engineer reviewing code for a team. "
              "Follow the team's style guide: " + " ".join(
                  f"Rule {i}: keep functions short, name things clearly, test edge cases, "
                  f"and document why, not what." for i in range(1, 40)))
    ttfts = []
    for q in QUESTIONS[:6]:
        msgs = [{"role": "system", "content": system}, {"role": "user", "content": q}]
        ttfts.append(stream_chat(port, model, msgs, max_tokens)[0])
    return ttfts[0], statistics.median(ttfts[1:])


class Proc:
    def __init__(self, cmd, port):
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_healthy(port, self.proc)
        self.port = port

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def start_llama(a, conc):
    port = free_port()
    cmd = [a.llama_server, "-m", a.model, "--port", str(port), "-t", str(a.threads),
           "--parallel", str(conc), "-c", str(a.ctx_per_seq * conc), "--cont-batching"]
    return Proc(cmd, port)


def start_nao(a, conc):
    port = free_port()
    cmd = [a.nao_bin, "serve", "-m", a.model, "--port", str(port), "-t", str(a.threads),
           "--parallel", str(conc), "--ctx", str(a.ctx_per_seq * max(conc, 2))]
    return Proc(cmd, port)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--nao-bin", required=True)
    ap.add_argument("--llama-server", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--conc", default="1,4,8,16")
    ap.add_argument("--requests-per-client", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ctx-per-seq", type=int, default=2048)
    ap.add_argument("--skip-prefix", action="store_true")
    a = ap.parse_args()
    concs = [int(c) for c in a.conc.split(",")]
    print(f"model {os.path.basename(a.model)}, {a.threads} threads, "
          f"{a.requests_per_client} requests per client, max_tokens {a.max_tokens}")
    print(f"{'C':>3} {'server':<13} {'tok/s':>7} {'TTFT p50':>9} {'TTFT p99':>9} "
          f"{'ITL p50':>8} {'tokens':>7}")
    rows = {}
    for conc in concs:
        for name, start in (("llama-server", start_llama), ("nao", start_nao)):
            p = start(a, conc)
            try:
                model = model_id(p.port)
                stream_chat(p.port, model, [{"role": "user", "content": "hi"}], 4)  # warm-up
                r = load(p.port, model, conc, a.requests_per_client, a.max_tokens)
            finally:
                p.stop()
            rows[(conc, name)] = r
            print(f"{conc:>3} {name:<13} {r['tok_s']:>7.2f} {r['ttft_p50']:>8.2f}s "
                  f"{r['ttft_p99']:>8.2f}s {r['itl_p50'] * 1000:>6.0f}ms {r['tokens']:>7}",
                  flush=True)
        l, n = rows[(conc, "llama-server")], rows[(conc, "nao")]
        if l["tok_s"] > 0:
            print(f"{conc:>3} {'nao/llama':<13} {n['tok_s'] / l['tok_s']:>7.2f}x", flush=True)
    if not a.skip_prefix:
        print("\nshared ~1,000-token system prompt, 6 requests one at a time:")
        for name, start in (("llama-server", start_llama), ("nao", start_nao)):
            p = start(a, 1)
            try:
                first, later = shared_prefix(p.port, model_id(p.port), 8)
            finally:
                p.stop()
            print(f"  {name:<13} TTFT first {first:.2f}s, later p50 {later:.2f}s "
                  f"({100 * later / first:.0f}% of first)", flush=True)


if __name__ == "__main__":
    main()
