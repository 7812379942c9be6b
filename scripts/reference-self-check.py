#!/usr/bin/env python3
"""Checks a running llama-server against the greedy fixtures with the same rule nao's
parity test uses, to measure how far llama.cpp itself (another build, another CPU) sits
from the fixtures. Usage: reference-self-check.py PORT FIXTURE.json"""
import json
import sys
import urllib.request

port, path = sys.argv[1], sys.argv[2]
cases = json.load(open(path))["cases"]
worst, fails, compared, total = 0.0, 0, 0, 0.0
for c in cases:
    req = {"prompt": c["prompt"], "n_predict": len(c["steps"]), "temperature": -1, "n_probs": 5}
    r = urllib.request.urlopen(urllib.request.Request(
        f"http://127.0.0.1:{port}/completion", json.dumps(req).encode(),
        {"Content-Type": "application/json"}))
    got = json.load(r)["completion_probabilities"]
    for i, step in enumerate(c["steps"]):
        if i >= len(got):
            break
        ours = {t["id"]: t["logprob"] for t in got[i]["top_logprobs"]}
        lp = ours.get(step["id"])
        d = abs(lp - step["logprob"]) if lp is not None else float("inf")
        worst = max(worst, d)
        total += min(d, 1.0)
        compared += 1
        if d > 0.1:
            fails += 1
            print(f"{c['prompt'][:30]!r} step {i}: {lp} vs {step['logprob']:.4f}")
        top = step["top"]
        if abs(top[0][1] - top[1][1]) < 0.1:
            break
        if got[i]["id"] != step["id"]:
            print(f"{c['prompt'][:30]!r} step {i}: token {got[i]['id']} vs {step['id']}")
            fails += 1
            break
print(f"{path}: {compared} steps compared, {fails} over 0.1, worst {worst:.3f}, mean {total / max(compared, 1):.4f}")
