#!/usr/bin/env bash
# Build nao, fetch the default model (Qwen2.5-Coder-1.5B-Instruct Q4_K_M) and answer a prompt,
# or, with --serve, serve it over the OpenAI API on http://127.0.0.1:8080/v1.
# Usage: scripts/quickstart.sh ["your prompt"]
#        scripts/quickstart.sh --serve [nao serve options, e.g. --port 8081 --api-key KEY]
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null; then
  echo "error: cargo not found; install Rust from https://rustup.rs" >&2
  exit 1
fi
python3 scripts/fetch_models.py qwen
cargo build --release -p nao
model=models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf
if [ "${1:-}" = "--serve" ]; then
  shift
  exec target/release/nao serve -m "$model" "$@"
fi
prompt=${1:-"Write a Rust function that reverses a string."}
exec target/release/nao run -m "$model" --chat -p "$prompt" -n 256 --temp 0
