#!/usr/bin/env python3
"""Generate reference fixtures for nao-kernels' dequantizers.

For each of the 14 formats (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K,
Q5_K, Q6_K, Q8_K) this writes crates/nao-kernels/tests/fixtures/dequant/<type>.json with
seeded random block bytes and the dequantized values computed by an *independent* decoder:
the numpy implementation in the `gguf` Python package (gguf-py, from llama.cpp), except for
Q8_K, which gguf-py does not implement, so its reference is built right here in numpy from
the format spec (x = d * q, d an f32).

Block bytes are random, except that every f16 scale field (d, m, dmin) is overwritten with a
random f16 of moderate magnitude (so results are finite), and Q8_K's f32 `d` likewise. A
couple of blocks per format are all-zero / all-0xFF (again with sane scales) to hit the
extremes of every bit field. For F32/F16/BF16 the bytes are fully random, NaNs included.

Each fixture is JSON:
    {"type": "q4_K", "ggml_type": 12, "n": <elements>,
     "src": "<hex of raw tensor bytes>", "expected": "<hex of little-endian f32 output>"}

With --model PATH (a GGUF file), it also writes real_<tensor>.json fixtures holding the
first few blocks of one tensor of each quantized type found in that model (the Rust test
reads every *.json in the directory; the model itself is never needed by the tests).

Regenerate (from the repository root):
    python3 -m venv /work/venv-deq && /work/venv-deq/bin/pip install gguf numpy
    /work/venv-deq/bin/python scripts/gen-dequant-fixtures.py \
        [--model models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf]
Written with gguf 0.19.0 and numpy 2.4.
"""

from __future__ import annotations

import argparse
import json
import pathlib

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import quants

OUT_DIR = pathlib.Path(__file__).resolve().parent.parent / "crates/nao-kernels/tests/fixtures/dequant"
SEED = 0x6E616F  # "nao"

# name, ggml type, elements per block, bytes per block, byte offsets of f16 scale fields.
# Offsets follow ggml-common.h: e.g. block_q2_K = {scales[16], qs[64], d, dmin}.
FORMATS = [
    ("f32", T.F32, 1, 4, []),
    ("f16", T.F16, 1, 2, []),
    ("bf16", T.BF16, 1, 2, []),
    ("q4_0", T.Q4_0, 32, 18, [0]),
    ("q4_1", T.Q4_1, 32, 20, [0, 2]),
    ("q5_0", T.Q5_0, 32, 22, [0]),
    ("q5_1", T.Q5_1, 32, 24, [0, 2]),
    ("q8_0", T.Q8_0, 32, 34, [0]),
    ("q2_K", T.Q2_K, 256, 84, [80, 82]),
    ("q3_K", T.Q3_K, 256, 110, [108]),
    ("q4_K", T.Q4_K, 256, 144, [0, 2]),
    ("q5_K", T.Q5_K, 256, 176, [0, 2]),
    ("q6_K", T.Q6_K, 256, 210, [208]),
    ("q8_K", T.Q8_K, 256, 292, []),  # f32 d handled separately
]


def sane_scales(rng: np.random.Generator, count: int) -> np.ndarray:
    """Random floats with random sign and magnitude 2^-12 .. 2^3 (all normal in f16)."""
    mag = np.exp2(rng.uniform(-12.0, 3.0, size=count))
    sign = rng.choice([-1.0, 1.0], size=count)
    return (sign * mag).astype(np.float32)


def make_blocks(rng: np.random.Generator, n_blocks: int, block_bytes: int, f16_offsets, qtype) -> np.ndarray:
    blocks = rng.integers(0, 256, size=(n_blocks, block_bytes), dtype=np.uint8)
    if qtype in (T.F32, T.F16, T.BF16):
        return blocks
    # Extremes: one all-zero and one all-0xFF block (scales re-randomised below).
    blocks[1, :] = 0x00
    blocks[2, :] = 0xFF
    for off in f16_offsets:
        blocks[:, off : off + 2] = sane_scales(rng, n_blocks).astype(np.float16).reshape(n_blocks, 1).view(np.uint8)
    if qtype == T.Q8_K:
        # block_q8_K = {float d; int8_t qs[256]; int16_t bsums[16]}; make bsums consistent.
        blocks[:, 0:4] = sane_scales(rng, n_blocks).reshape(n_blocks, 1).view(np.uint8)
        qs = blocks[:, 4:260].view(np.int8).astype(np.int16)
        bsums = qs.reshape(n_blocks, 16, 16).sum(axis=-1).astype("<i2")
        blocks[:, 260:292] = bsums.view(np.uint8)
    return blocks


def reference(qtype, raw: np.ndarray) -> np.ndarray:
    """Dequantize flat raw bytes with the independent decoder."""
    if qtype == T.Q8_K:
        # gguf-py has no Q8_K; spec (ggml dequantize_row_q8_K): y = d * qs, d an f32.
        blocks = raw.reshape(-1, 292)
        d = blocks[:, 0:4].copy().view("<f4").astype(np.float32)
        qs = blocks[:, 4:260].view(np.int8).astype(np.float32)
        return (d * qs).reshape(-1).astype(np.float32)
    if qtype == T.BF16:
        # gguf-py's BF16 dequantizer (bits << 16); cross-checked against the spec below.
        out = quants.dequantize(raw, qtype).reshape(-1).astype(np.float32)
        spec = (raw.view("<u2").astype(np.uint32) << 16).view(np.float32)
        assert np.array_equal(out.view(np.uint32), spec.view(np.uint32))
        return out
    return quants.dequantize(raw, qtype).reshape(-1).astype(np.float32)


def write_fixture(path: pathlib.Path, name: str, qtype, raw: np.ndarray, expected: np.ndarray) -> None:
    doc = {
        "type": name,
        "ggml_type": int(qtype),
        "n": int(expected.size),
        "src": raw.tobytes().hex(),
        "expected": expected.astype("<f4").tobytes().hex(),
    }
    path.write_text(json.dumps(doc) + "\n")
    print(f"wrote {path.name}: {raw.size} bytes -> {expected.size} values")


def from_model(model: str) -> None:
    from gguf import GGUFReader

    reader = GGUFReader(model)
    names = {n: (qt, bs, bb) for n, qt, bs, bb, _ in FORMATS}
    by_type = {qt: n for n, (qt, _, _) in names.items()}
    done = set()
    for t in reader.tensors:
        qtype = T(t.tensor_type)
        if qtype in done or qtype not in by_type or qtype in (T.F32, T.F16, T.BF16):
            continue
        name = by_type[qtype]
        _, bs, bb = names[name]
        n_blocks = 8 if bs == 32 else 4
        raw = np.asarray(t.data).view(np.uint8).reshape(-1)[: n_blocks * bb].copy()
        # Sanity: the full-tensor dequantization agrees with the prefix one.
        full = quants.dequantize(np.asarray(t.data).view(np.uint8), qtype).reshape(-1)
        expected = reference(qtype, raw)
        assert np.array_equal(full[: expected.size], expected)
        safe = t.name.replace(".", "_")
        write_fixture(OUT_DIR / f"real_{name}_{safe}.json", name, qtype, raw, expected)
        done.add(qtype)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="optional GGUF file to take a few real blocks from")
    args = ap.parse_args()

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    for name, qtype, block, block_bytes, f16_offsets in FORMATS:
        # 256 elements for plain types and legacy quants, 4 super-blocks for K-quants.
        n_blocks = 256 // block if block < 256 else 4
        blocks = make_blocks(rng, n_blocks, block_bytes, f16_offsets, qtype)
        raw = blocks.reshape(-1)
        expected = reference(qtype, raw)
        assert expected.size == n_blocks * block
        if qtype not in (T.F32, T.F16, T.BF16):
            assert np.isfinite(expected).all(), name
        write_fixture(OUT_DIR / f"{name}.json", name, qtype, raw, expected)
    if args.model:
        from_model(args.model)


if __name__ == "__main__":
    main()
