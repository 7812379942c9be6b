#!/usr/bin/env bash
# Build nao, fetch the default model (Qwen2.5-Coder-1.5B-Instruct Q4_K_M) and answer a prompt.
# Usage: scripts/quickstart.sh ["your prompt"]
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null; then
  echo "error: cargo not found; install Rust from https://rustup.rs" >&2
  exit 1
fi
python3 scripts/fetch_models.py qwen
cargo build --release -p nao
prompt=${1:-"Write a Rust function that reverses a string."}
exec target/release/nao run -m models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf --chat -p "$prompt" -n 256 --temp 0
