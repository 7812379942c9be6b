#!/usr/bin/env python3
"""Summarise an alternating llama-bench / nao bench run (see bench-vs-llama-cpp.sh).

Reads DIR/llama.cpp.K.json and DIR/nao.K.json for K = 1..ROUNDS, each a JSON array in
llama-bench's `-o json` shape (n_prompt, n_gen, n_threads, avg_ts, stddev_ts, ...), one
repetition per file. For each test (ppP, tgN) it prints, per tool, the mean ± sample
stddev of the per-round tokens/s, and the ratio of means nao/llama.cpp. Stdlib only.
"""
import argparse
import json
import math
import os
import statistics
import sys

TOOLS = ("llama.cpp", "nao")


def load_array(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        # Tolerate log lines around the array: take the outermost [...].
        a, b = text.find("["), text.rfind("]")
        if a < 0 or b <= a:
            raise SystemExit(f"bench_compare: no JSON array in {path}:\n{text[:2000]}")
        try:
            data = json.loads(text[a : b + 1])
        except json.JSONDecodeError as e:
            raise SystemExit(f"bench_compare: bad JSON in {path}: {e}\n{text[:2000]}")
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise SystemExit(f"bench_compare: {path} does not hold a JSON array")
    return data


def test_name(e):
    np_, ng = int(e.get("n_prompt", 0)), int(e.get("n_gen", 0))
    if np_ and ng:
        return f"pp{np_}+tg{ng}"
    return f"pp{np_}" if np_ else f"tg{ng}"


def order_key(key):
    name, nt = key
    return (0 if name.startswith("pp") and "+" not in name else 1 if name.startswith("tg") else 2, name, nt)


def mean_sd(xs):
    m = statistics.fmean(xs)
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return m, sd


def cmake_cache(build_dir):
    vals = {}
    path = os.path.join(build_dir, "CMakeCache.txt")
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                line = line.strip()
                if not line or line[0] in "#/" or "=" not in line or ":" not in line.split("=", 1)[0]:
                    continue
                k, v = line.split("=", 1)
                name, typ = k.split(":", 1)
                if typ != "INTERNAL":
                    vals[name] = v
    except OSError:
        return None
    return vals


def describe_build(build_dir):
    c = cmake_cache(build_dir)
    if c is None:
        return "unknown (no CMakeCache.txt in %s)" % build_dir
    isa = ["AVX", "AVX2", "FMA", "F16C", "BMI2", "AVX512", "AVX512_VNNI", "AVX512_VBMI",
           "AVX512_BF16", "AVX_VNNI", "AMX_TILE", "AMX_INT8", "AMX_BF16"]
    other = ["NATIVE", "OPENMP", "LLAMAFILE", "CPU_REPACK"]

    def on(k):
        return c.get("GGML_" + k, "").upper() in ("ON", "1", "TRUE", "YES")

    parts = [c.get("CMAKE_BUILD_TYPE", "?") or "?"]
    parts.append(" ".join(f"GGML_{k}={'ON' if on(k) else 'OFF'}" for k in other))
    parts.append("ISA on: " + (" ".join(k for k in isa if on(k)) or "none"))
    parts.append("off: " + (" ".join(k for k in isa if not on(k)) or "none"))
    if on("NATIVE"):
        parts.append("WARNING: GGML_NATIVE=ON may SIGILL on these VMs (AMX listed, not granted)")
    src = c.get("CMAKE_HOME_DIRECTORY") or c.get("llama.cpp_SOURCE_DIR")
    line = "; ".join(parts)
    if src:
        marker = os.path.join(src, ".nao-peer-source")
        if os.path.exists(marker):
            with open(marker) as f:
                line += f"; source: {f.read().strip()}"
    return line


def fmt(m, sd):
    return f"{m:9.2f} ± {sd:7.2f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--rounds", type=int, required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", required=True, help="the -t value given to both tools (N or N,M,...)")
    ap.add_argument("--llama-bench", default="llama-bench")
    ap.add_argument("--llama-build-dir", default="")
    ap.add_argument("--nao", default="nao")
    ap.add_argument("--load", nargs=2, metavar=("BEFORE", "AFTER"), help="/proc/loadavg 1/5/15 min")
    a = ap.parse_args()

    # samples[tool][(test, n_threads)] = [tokens/s per round]; threads[tool] = set of n_threads seen
    samples = {t: {} for t in TOOLS}
    threads = {t: set() for t in TOOLS}
    extra = {t: {} for t in TOOLS}
    for k in range(1, a.rounds + 1):
        for tool in TOOLS:
            for e in load_array(os.path.join(a.dir, f"{tool}.{k}.json")):
                if "avg_ts" not in e:
                    raise SystemExit(f"bench_compare: {tool} round {k}: entry without avg_ts: {e}")
                nt = int(e.get("n_threads", 0))
                samples[tool].setdefault((test_name(e), nt), []).append(float(e["avg_ts"]))
                if nt:
                    threads[tool].add(nt)
                for key in ("build_commit", "build_number", "cpu_info", "model_type", "model_size"):
                    if key in e:
                        extra[tool].setdefault(key, e[key])
                if "peak_rss_bytes" in e:
                    rss = int(e["peak_rss_bytes"])
                    extra[tool]["peak_rss_bytes"] = max(rss, extra[tool].get("peak_rss_bytes", 0))

    tests = sorted(set(samples["llama.cpp"]) | set(samples["nao"]), key=order_key)
    multi_t = len({nt for _, nt in tests}) > 1

    def label(key):
        return f"{key[0]} -t {key[1]}" if multi_t else key[0]

    try:
        size = os.path.getsize(a.model)
    except OSError:
        size = 0
    lx = extra["llama.cpp"]

    def th(tool):
        s = threads[tool]
        return ",".join(map(str, sorted(s))) if s else "?"

    print()
    print(f"model:      {a.model} ({size / 1e6:.1f} MB" +
          (f", {lx['model_type']}" if "model_type" in lx else "") + ")")
    if "cpu_info" in lx:
        print(f"cpu:        {lx['cpu_info']}, {os.cpu_count()} logical CPUs")
    print(f"threads:    -t {a.threads} for both (reported n_threads: llama.cpp {th('llama.cpp')}, nao {th('nao')})")
    if a.load:
        print(f"loadavg:    {a.load[0]} before, {a.load[1]} after (other work on the cores skews both tools)")
    print(f"rounds:     {a.rounds}, alternating llama.cpp then nao, -r 1 each; mean ± sample stddev over rounds")
    commit = lx.get("build_commit", "?")
    print(f"llama.cpp:  {a.llama_bench} (build_commit {commit}, build_number {lx.get('build_number', '?')})")
    if a.llama_build_dir:
        print(f"  flags:    {describe_build(a.llama_build_dir)}")
    print(f"nao:        {a.nao}")
    if "peak_rss_bytes" in extra["nao"]:
        print(f"  peak RSS: {extra['nao']['peak_rss_bytes'] / 2**20:.1f} MiB (max over rounds)")
    print()
    w = max([len("test")] + [len(label(t)) for t in tests])
    hdr = f"{'test':<{w}}  {'llama.cpp t/s':>19}  {'nao t/s':>19}  {'nao/llama.cpp':>13}"
    print(hdr)
    print("-" * len(hdr))
    status = 0
    for test in tests:
        cells = []
        means = {}
        for tool in TOOLS:
            xs = samples[tool].get(test)
            if xs:
                m, sd = mean_sd(xs)
                means[tool] = m
                cells.append(fmt(m, sd))
            else:
                cells.append(f"{'(missing)':>19}")
                status = 1
        if "llama.cpp" in means and "nao" in means and means["llama.cpp"] > 0:
            ratio = f"{means['nao'] / means['llama.cpp']:13.3f}"
        else:
            ratio = f"{'-':>13}"
        print(f"{label(test):<{w}}  {cells[0]}  {cells[1]}  {ratio}")
    if multi_t:
        print()
        print("best against best (each tool at its faster thread count, by mean):")
        for base in sorted({b for b, _ in tests}, key=lambda b: order_key((b, 0))):
            best = {}
            for tool in TOOLS:
                cand = [(statistics.fmean(xs), nt) for (b, nt), xs in samples[tool].items() if b == base and xs]
                if cand:
                    best[tool] = max(cand)
            if len(best) == 2 and best["llama.cpp"][0] > 0:
                (lm, lt), (nm, nt) = best["llama.cpp"], best["nao"]
                print(f"  {base:<{w}}  llama.cpp {lm:9.2f} (-t {lt})  nao {nm:9.2f} (-t {nt})  "
                      f"nao/llama.cpp {nm / lm:.3f}")
    print()
    print("per-round t/s:")
    for test in tests:
        for tool in TOOLS:
            xs = samples[tool].get(test, [])
            print(f"  {label(test):<{w}} {tool:<9} " + " ".join(f"{x:.2f}" for x in xs))
    noisy = []
    for tool in TOOLS:
        for test, xs in samples[tool].items():
            m, sd = mean_sd(xs)
            if m > 0 and sd / m > 0.10:
                noisy.append(f"{tool} {label(test)} ({100 * sd / m:.0f}%)")
    if noisy:
        print("warning: stddev above 10% of the mean for " + ", ".join(noisy) +
              "; the machine was probably busy, rerun when it is idle", file=sys.stderr)
    for tool in TOOLS:
        for test, xs in samples[tool].items():
            if len(xs) != a.rounds:
                print(f"warning: {tool} {label(test)} has {len(xs)} samples for {a.rounds} rounds", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
