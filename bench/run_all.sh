#!/usr/bin/env bash
# Runs every bench_hooks measurement that doc/BENCHMARKS.md quotes, in one
# go, and leaves the raw output (tables and JSON lines) in one directory.
#
#   bench/run_all.sh [BUILD_DIR] [OUT_DIR]      (defaults: build, build/bench-results/<date>)
#
# Each section's command is printed before its output, so the document can
# cite exactly what produced a figure.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
out=${2:-$build/bench-results/$(date +%Y-%m-%d-%H%M)}
bh=$build/bin/bench_hooks
[ -x "$bh" ] || { echo "no $bh: build first (cmake --build $build)" >&2; exit 2; }
mkdir -p "$out"
dur=${BENCH_DURATION:-3}

run() { # name, args...
  local name=$1
  shift
  echo "\$ bench_hooks $*" | tee "$out/$name.txt"
  "$bh" "$@" | tee -a "$out/$name.txt"
  echo
}

{
  echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
  echo "cpu: $(lscpu | sed -n 's/^Model name:[[:space:]]*//p') x $(nproc)"
  echo "kernel: $(uname -r)"
  echo "compiler: $(cc --version | head -n1)"
  echo "python: $(/usr/bin/python3 --version 2>&1)"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$out/machine.txt"

# 1. The standard set: four profiles at 50 B and 1 KiB, one thread, pinned.
run standard --duration "$dur"
# 2. The same Python profiles unpinned: the cost of cross-CPU wake-ups.
run unpinned --no-pin --profile python-1 --profile python-4 --profile mix-4 --payload 50 \
  --workers 1 --duration "$dur" --no-floor
# 3. Chain length sweep.
run sweep --profile native-1 --profile native-2 --profile native-4 --profile native-8 \
  --profile native-16 --profile python-1 --profile python-2 --profile python-4 \
  --profile python-8 --profile python-16 --payload 50 --duration "$dur" --no-floor --json
# 4. Payload sizes through one body step.
run payloads --profile native-body --profile python-body --payload 50 --payload 1k \
  --payload 64k --payload 1m --duration "$dur" --no-floor
# 5. Throughput with two host threads: one worker, then two.
run workers1 --profile python-4 --payload 50 --threads 2 --inflight 4 --workers 1 \
  --duration "$dur" --no-floor --json
run workers2 --profile python-4 --payload 50 --threads 2 --inflight 4 --workers 2 \
  --duration "$dur" --no-floor --json
echo "results in $out"
