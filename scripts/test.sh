#!/usr/bin/env bash
# The whole test suite, as CI runs it: fetch the real models (verified by sha256, cached in
# ./models), check formatting, then run every test with the models required to be present.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 scripts/fetch_models.py qwen gemma
cargo fmt --all --check
NAO_REQUIRE_MODELS=1 cargo test --workspace
