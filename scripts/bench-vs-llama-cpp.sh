#!/usr/bin/env bash
# Compare `nao bench` with llama.cpp's `llama-bench` on the same machine, same model file,
# same thread count, in one run. The tools run alternately (llama.cpp, nao, llama.cpp, nao, ...),
# one repetition (-r 1) of each per round, so that drift in the machine (thermal state, a
# neighbour's load, page cache) hits both alike. Each figure (ppP, tgN) is printed side by side
# as mean ± stddev over the rounds, with the ratio of means nao/llama.cpp.
#
# Usage: scripts/bench-vs-llama-cpp.sh MODEL.gguf [-p 512] [-n 128] [-t 2] [-r 5]
#                                      [--llama-dir DIR] [--no-build]
#   -p N            prompt tokens for the prefill test (0 skips it)       default 512
#   -n N            generated tokens for the decode test (0 skips it)     default 128
#   -t N[,M...]     threads, applied to both tools                        default 2
#                   (a list, e.g. 1,2, adds a best-against-best line per test)
#   -r N            rounds (each round runs each tool once, with -r 1)    default 5
#   --llama-dir DIR where llama.cpp is found or built   default <repo>/peers/llama.cpp
#   --no-build      do not build nao (use NAO_BIN or target/release/nao as it is)
# Environment:
#   NAO_BIN      nao binary to run (default: `cargo build --release -p nao`, then target/release/nao)
#   LLAMA_BENCH  llama-bench binary to run (default: DIR/build/bin/llama-bench, built if absent)
#
# llama.cpp is built, when absent, from the source that llama-cpp-python 0.3.36 vendors
# (as ../shared/scripts/build-llama-cpp.sh does), but with GGML_NATIVE=OFF and explicit ISA
# flags: these VMs list AMX in /proc/cpuinfo without the kernel granting it, and a native
# build dies with SIGILL (tilezero). The build takes 15-30 minutes on 2 cores.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
llama_version=0.3.36

die() { echo "bench-vs-llama-cpp: error: $*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }

model="" p=512 n=128 t=2 r=5 llama_dir="$repo/peers/llama.cpp" build_nao=1
need_int() { [[ "$2" =~ ^[0-9]+$ ]] || die "$1 wants a non-negative integer, got '$2'"; }
while [ $# -gt 0 ]; do
  case "$1" in
    -p) [ $# -ge 2 ] || die "-p needs a value"; need_int -p "$2"; p=$2; shift 2 ;;
    -n) [ $# -ge 2 ] || die "-n needs a value"; need_int -n "$2"; n=$2; shift 2 ;;
    -t) [ $# -ge 2 ] || die "-t needs a value"
        [[ "$2" =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] || die "-t wants N or N,M,... (each >= 1), got '$2'"
        t=$2; shift 2 ;;
    -r) [ $# -ge 2 ] || die "-r needs a value"; need_int -r "$2"; r=$2; shift 2 ;;
    --llama-dir) [ $# -ge 2 ] || die "--llama-dir needs a value"; llama_dir=$2; shift 2 ;;
    --no-build) build_nao=0; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) die "unknown option '$1' (see --help)" ;;
    *) [ -z "$model" ] || die "more than one MODEL given ('$model', '$1')"; model=$1; shift ;;
  esac
done
[ -n "$model" ] || { usage >&2; die "no MODEL given"; }
[ -f "$model" ] || die "model file not found: $model"
[ -r "$model" ] || die "model file not readable: $model"
[ "$r" -ge 1 ] || die "-r must be >= 1"
[ "$p" -gt 0 ] || [ "$n" -gt 0 ] || die "-p and -n are both 0: nothing to measure"
command -v python3 >/dev/null || die "python3 is required"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/bench-vs-llama-cpp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'echo "bench-vs-llama-cpp: interrupted" >&2; exit 130' INT TERM

# ---------- llama.cpp: find or build ----------
cpu_flags=" $(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || true) "
cpu_has() { [[ "$cpu_flags" == *" $1 "* ]]; }

llama_cmake_flags() {
  local f=(-DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF
           -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON)
  cpu_has avx512f     && f+=(-DGGML_AVX512=ON)
  cpu_has avx512_vnni && f+=(-DGGML_AVX512_VNNI=ON)
  cpu_has avx512vbmi  && f+=(-DGGML_AVX512_VBMI=ON)
  cpu_has avx512_bf16 && f+=(-DGGML_AVX512_BF16=ON)
  cpu_has avx_vnni    && f+=(-DGGML_AVX_VNNI=ON)
  f+=(-DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF
      -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF)
  printf '%s\n' "${f[@]}"
}

build_llama() {
  local dest=$1
  echo "== llama-bench not found; building llama.cpp (llama-cpp-python $llama_version vendor) in $dest" >&2
  echo "   this takes 15-30 minutes on 2 cores" >&2
  PIP_ROOT_USER_ACTION=ignore python3 -m pip install -q --disable-pip-version-check cmake ninja || die "pip install cmake ninja failed"
  if [ ! -f "$dest/CMakeLists.txt" ]; then
    if [ -e "$dest" ] && [ -n "$(ls -A "$dest" 2>/dev/null)" ]; then
      die "$dest exists, is not empty and holds no llama.cpp source; move it away or pass --llama-dir"
    fi
    PIP_ROOT_USER_ACTION=ignore python3 -m pip download -q --disable-pip-version-check --no-deps --no-binary llama-cpp-python -d "$tmp/src" \
      "llama-cpp-python==$llama_version" || die "could not download llama-cpp-python $llama_version sdist"
    tar xzf "$tmp/src/llama_cpp_python-$llama_version.tar.gz" -C "$tmp/src"
    mkdir -p "$(dirname "$dest")"; rm -rf "$dest"
    mv "$tmp/src/llama_cpp_python-$llama_version/vendor/llama.cpp" "$dest"
    echo "llama-cpp-python==$llama_version vendor/llama.cpp" > "$dest/.nao-peer-source"
  fi
  local flags; mapfile -t flags < <(llama_cmake_flags)
  echo "   cmake flags: ${flags[*]}" >&2
  (cd "$dest" && cmake -B build -G Ninja "${flags[@]}" >&2 \
     && cmake --build build -j"$(nproc)" --target llama-bench >&2) || die "llama.cpp build failed"
}

if [ -n "${LLAMA_BENCH:-}" ]; then
  llama_bench=$LLAMA_BENCH
  [ -x "$llama_bench" ] || die "LLAMA_BENCH=$llama_bench is not an executable"
else
  llama_bench="$llama_dir/build/bin/llama-bench"
  [ -x "$llama_bench" ] || build_llama "$llama_dir"
  [ -x "$llama_bench" ] || die "no llama-bench at $llama_bench after the build"
fi
llama_build_dir=$(cd "$(dirname "$llama_bench")/.." && pwd)

# ---------- nao: build or find ----------
if [ -n "${NAO_BIN:-}" ]; then
  nao_bin=$NAO_BIN
else
  nao_bin="$repo/target/release/nao"
  if [ "$build_nao" = 1 ]; then
    echo "== cargo build --release -p nao" >&2
    (cd "$repo" && cargo build --release -p nao >&2) || die "cargo build --release -p nao failed"
  fi
fi
[ -x "$nao_bin" ] || die "no nao binary at $nao_bin (set NAO_BIN or drop --no-build)"
"$nao_bin" bench --help >/dev/null 2>&1 || die "$nao_bin has no working 'bench' subcommand"

# ---------- run, alternating ----------
# run_one TOOL ROUND CMD...: stdout (JSON) to $tmp/TOOL.ROUND.json, stderr to a log shown on failure.
run_one() {
  local tool=$1 round=$2; shift 2
  local out="$tmp/$tool.$round.json" log="$tmp/$tool.$round.log" rc=0
  "$@" >"$out" 2>"$log" || rc=$?
  if [ "$rc" -ne 0 ]; then
    echo >&2
    echo "bench-vs-llama-cpp: $tool failed in round $round (exit $rc): $*" >&2
    tail -n 20 "$log" >&2
    if [ "$tool" = llama.cpp ] && [ "$rc" -eq 132 ]; then
      echo "SIGILL: this llama.cpp build uses instructions the kernel does not grant (AMX?)." >&2
      if [ -z "${LLAMA_BENCH:-}" ]; then
        echo "Remove $llama_build_dir and rerun: this script rebuilds it with GGML_NATIVE=OFF." >&2
      else
        echo "Rebuild it with -DGGML_NATIVE=OFF and AMX off (see --help), or unset LLAMA_BENCH." >&2
      fi
    fi
    exit 1
  fi
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "?")
echo "== $r rounds, each: llama-bench -r 1, then nao bench -r 1 (-p $p -n $n -t $t)" >&2
for ((i = 1; i <= r; i++)); do
  printf '   round %d/%d: llama.cpp' "$i" "$r" >&2
  run_one llama.cpp "$i" "$llama_bench" -m "$model" -p "$p" -n "$n" -t "$t" -r 1 -o json
  printf ', nao\n' >&2
  run_one nao "$i" "$nao_bin" bench -m "$model" -p "$p" -n "$n" -t "$t" -r 1 --json
done

load_after=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "?")

python3 "$here/bench_compare.py" --dir "$tmp" --rounds "$r" --model "$model" \
  --load "$load_before" "$load_after" --threads "$t" --llama-bench "$llama_bench" --llama-build-dir "$llama_build_dir" --nao "$nao_bin"
