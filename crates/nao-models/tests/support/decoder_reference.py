#!/usr/bin/env python3
"""Independent f64 reference for the tiny decoders nao's tests write: a Hugging Face
directory (config.json + model.safetensors or a sharded index, optional modules.json /
1_Pooling/config.json) run the way transformers' Qwen2/Qwen3/Llama modelling code and
sentence-transformers run it, written from those sources, not from nao's.

Pure Python (standard library only), so any python3 runs it; the models are tiny.

Input (stdin, JSON): {"dir": PATH, "seqs": [[ids...], ...], "variant": "exact"}
Output (stdout, JSON): {"logits": [per seq: [n_tokens][n_vocab]] (when the model has a
head), "hidden": [per seq: [n_tokens][n_embd]] (after the final norm),
"embeddings": [per seq: pooled, normalised when modules.json says so],
"pooling": "last" | "mean" | "cls", "normalize": bool}

Variants exist to show that the tests can tell a right model from a plausible wrong one:
  exact            Qwen3 as transformers computes it: q/k RMS norm per head, then RoPE
  no_qk_norm       the q/k norms skipped (a Qwen2 loader running Qwen3 weights)
  norm_after_rope  the q/k norms applied after RoPE instead of before
"""
import json
import math
import os
import struct
import sys


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack_from("<Q", raw, 0)
    header = json.loads(raw[8 : 8 + n])
    base = 8 + n
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        buf = raw[base + a : base + b]
        dt = t["dtype"]
        if dt == "F32":
            vals = list(struct.unpack("<%df" % (len(buf) // 4), buf))
        elif dt == "F16":
            vals = list(struct.unpack("<%de" % (len(buf) // 2), buf))
        elif dt == "BF16":
            halves = struct.unpack("<%dH" % (len(buf) // 2), buf)
            vals = list(struct.unpack("<%df" % len(halves), struct.pack("<%dI" % len(halves), *[h << 16 for h in halves])))
        else:
            raise SystemExit("unsupported dtype " + dt)
        shape = t["shape"]
        if len(shape) == 2:
            rows, cols = shape
            vals = [vals[r * cols : (r + 1) * cols] for r in range(rows)]
        out[name] = vals
    return out


def load_weights(d):
    index = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    w = {}
    for name in files:
        w.update(read_safetensors(os.path.join(d, name)))
    # Checkpoints of the bare transformer (Qwen3Model) have no "model." prefix.
    return {(k if k.startswith("model.") or k == "lm_head.weight" else "model." + k): v for k, v in w.items()}


def matvec(m, x):
    return [math.fsum(a * b for a, b in zip(row, x)) for row in m]


def rms_norm(x, w, eps):
    s = 1.0 / math.sqrt(math.fsum(v * v for v in x) / len(x) + eps)
    return [v * s * g for v, g in zip(x, w)]


def rope(x, pos, theta):
    # rotate_half convention: dimension i pairs with i + d/2.
    d = len(x)
    half = d // 2
    out = list(x)
    for i in range(half):
        ang = pos * theta ** (-2.0 * i / d)
        c, s = math.cos(ang), math.sin(ang)
        out[i] = x[i] * c - x[i + half] * s
        out[i + half] = x[i + half] * c + x[i] * s
    return out


def silu(v):
    return v / (1.0 + math.exp(-v))


def forward(cfg, w, ids, variant):
    n_embd = cfg["hidden_size"]
    n_head = cfg["num_attention_heads"]
    n_kv = cfg.get("num_key_value_heads") or n_head
    hd = cfg.get("head_dim") or n_embd // n_head
    eps = cfg.get("rms_norm_eps", 1e-6)
    theta = cfg.get("rope_theta", 10000.0)
    group = n_head // n_kv
    h = [list(w["model.embed_tokens.weight"][t]) for t in ids]
    for il in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % il
        ks, vs, qs = [], [], []
        for pos, x in enumerate(h):
            xn = rms_norm(x, w[p + "input_layernorm.weight"], eps)
            proj = {}
            for m in "qkv":
                y = matvec(w[p + "self_attn.%s_proj.weight" % m], xn)
                b = w.get(p + "self_attn.%s_proj.bias" % m)
                if b is not None:
                    y = [a + c for a, c in zip(y, b)]
                proj[m] = y
            heads = {}
            for m, n in (("q", n_head), ("k", n_kv)):
                norm = w.get(p + "self_attn.%s_norm.weight" % m)
                out = []
                for hh in range(n):
                    v = proj[m][hh * hd : (hh + 1) * hd]
                    if norm is not None and variant == "exact":
                        v = rms_norm(v, norm, eps)
                    v = rope(v, pos, theta)
                    if norm is not None and variant == "norm_after_rope":
                        v = rms_norm(v, norm, eps)
                    out.append(v)
                heads[m] = out
            qs.append(heads["q"])
            ks.append(heads["k"])
            vs.append([proj["v"][hh * hd : (hh + 1) * hd] for hh in range(n_kv)])
        new_h = []
        for pos, x in enumerate(h):
            attn = []
            for hh in range(n_head):
                kh = hh // group
                q = qs[pos][hh]
                scores = [math.fsum(a * b for a, b in zip(q, ks[j][kh])) / math.sqrt(hd) for j in range(pos + 1)]
                mx = max(scores)
                e = [math.exp(s - mx) for s in scores]
                z = math.fsum(e)
                for i in range(hd):
                    attn.append(math.fsum(e[j] * vs[j][kh][i] for j in range(pos + 1)) / z)
            o = matvec(w[p + "self_attn.o_proj.weight"], attn)
            x = [a + b for a, b in zip(x, o)]
            xn = rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
            g = matvec(w[p + "mlp.gate_proj.weight"], xn)
            u = matvec(w[p + "mlp.up_proj.weight"], xn)
            dn = matvec(w[p + "mlp.down_proj.weight"], [silu(a) * b for a, b in zip(g, u)])
            new_h.append([a + b for a, b in zip(x, dn)])
        h = new_h
    return [rms_norm(x, w["model.norm.weight"], eps) for x in h]


def st_modules(d):
    """(pooling, normalize) the sentence-transformers way; no modules.json: mean, no norm."""
    path = os.path.join(d, "modules.json")
    if not os.path.exists(path):
        return "mean", False
    pooling, normalize = "mean", False
    with open(path) as f:
        for m in json.load(f):
            if m["type"].endswith("Pooling"):
                with open(os.path.join(d, m["path"], "config.json")) as g:
                    c = json.load(g)
                if c.get("pooling_mode_lasttoken"):
                    pooling = "last"
                elif c.get("pooling_mode_cls_token"):
                    pooling = "cls"
                else:
                    pooling = "mean"
            elif m["type"].endswith("Normalize"):
                normalize = True
    return pooling, normalize


def main():
    req = json.load(sys.stdin)
    d = req["dir"]
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    w = load_weights(d)
    variant = req.get("variant", "exact")
    pooling, normalize = st_modules(d)
    head = w.get("lm_head.weight")
    if head is None and cfg.get("tie_word_embeddings"):
        head = w["model.embed_tokens.weight"]
    out = {"hidden": [], "embeddings": [], "logits": [], "pooling": pooling, "normalize": normalize}
    for ids in req["seqs"]:
        hs = forward(cfg, w, ids, variant)
        out["hidden"].append(hs)
        if head is not None:
            out["logits"].append([matvec(head, x) for x in hs])
        if pooling == "last":
            v = list(hs[-1])
        elif pooling == "cls":
            v = list(hs[0])
        else:
            v = [math.fsum(col) / len(hs) for col in zip(*hs)]
        if normalize:
            n = math.sqrt(math.fsum(a * a for a in v))
            v = [a / max(n, 1e-12) for a in v]
        out["embeddings"].append(v)
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
