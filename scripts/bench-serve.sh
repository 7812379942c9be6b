#!/usr/bin/env bash
# Serving benchmark: `nao serve` against `llama-server` (continuous batching on) with C
# concurrent streaming clients, C = 1, 4, 8, 16 by default, in one run; then TTFT with a
# shared ~1,000-token system prompt. A benchmark command, not a test.
#
# Usage: scripts/bench-serve.sh MODEL.gguf [bench_serve.py options: --conc 1,4,8,16
#        --requests-per-client 2 --max-tokens 64 --threads 2 --skip-prefix]
# Environment:
#   NAO_BIN       nao binary (default: cargo build --release -p nao, then target/release/nao)
#   LLAMA_SERVER  llama-server binary (default: peers/llama.cpp/build/bin/llama-server; build
#                 it with scripts/bench-vs-llama-cpp.sh or ../shared/scripts/build-llama-cpp.sh)
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[ $# -ge 1 ] || { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 2; }
model=$1; shift
[ -f "$model" ] || { echo "bench-serve: no such model file: $model" >&2; exit 1; }
if [ -z "${NAO_BIN:-}" ]; then
  (cd "$repo" && cargo build --release -p nao)
  NAO_BIN="$repo/target/release/nao"
fi
LLAMA_SERVER=${LLAMA_SERVER:-$repo/peers/llama.cpp/build/bin/llama-server}
[ -x "$LLAMA_SERVER" ] || { echo "bench-serve: llama-server not found at $LLAMA_SERVER" >&2; exit 1; }
exec python3 "$repo/scripts/bench_serve.py" --nao-bin "$NAO_BIN" --llama-server "$LLAMA_SERVER" \
  --model "$model" "$@"
