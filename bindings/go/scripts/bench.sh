#!/usr/bin/env bash
# The native-4 exchange through the Go binding beside the same loop on the
# C API, in one process, ROUNDS times (Go then C each round, so both see the
# same machine load), then the median of each and of the per-round ratio.
# Then each side alone for 2,000,000 exchanges under /usr/bin/time: CPU time
# per exchange (user + sys of the whole process, Go's runtime threads
# included), which a loaded machine inflates less than wall time.
# Usage: bindings/go/scripts/bench.sh [build dir (default: the repository's build/)] [rounds (default 10)]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$here/../../build}" && pwd)
cd "$here"
rounds=${2:-10}
export PKG_CONFIG_PATH=$build/bindings/go/pkgconfig GOFLAGS=-mod=mod
export GOCACHE=${GOCACHE:-$build/bindings/go/gocache} GOPATH=${GOPATH:-$build/bindings/go/gopath}
export PE_GO_PLUGIN=$build/examples/policies/sample_native_policies.so
bin=$(mktemp)
raw=$(mktemp)
trap 'rm -f "$bin" "$raw"' EXIT
go test -c -o "$bin" .
for _ in $(seq "$rounds"); do
  "$bin" -test.run XXX -test.bench 'Native4|CgoCall' -test.benchmem -test.benchtime 300000x |
    grep '^Benchmark' | tee -a "$raw"
done
awk '
  $1 ~ /^BenchmarkNative4Go-/ { g[++ng] = $3 } $1 ~ /^BenchmarkNative4C-/ { c[++nc] = $3 }
  $1 ~ /^BenchmarkNative4GoPerField-/ { f[++nf] = $3 } $1 ~ /^BenchmarkCgoCall-/ { k[++nk] = $3 }
  function median(a, n,   i, j, t) {
    for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] > a[j]; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
    return n % 2 ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2
  }
  END {
    for (i = 1; i <= ng; i++) { r[i] = g[i] / c[i]; rf[i] = f[i] / c[i] }
    printf "median over %d rounds: Go %.0f ns/op, C %.0f ns/op, Go/C %.2fx (median of per-round ratios)\n",
      ng, median(g, ng), median(c, nc), median(r, ng)
    printf "  Go with one call per field and phase %.0f ns/op (%.2fx C); one cgo call %.1f ns\n",
      median(f, nf), median(rf, nf), median(k, nk)
  }' "$raw"
n=2000000
for side in Go C; do
  /usr/bin/time -f "%U %S" -o "$raw" "$bin" -test.run XXX -test.bench "^BenchmarkNative4$side\$" \
    -test.benchtime ${n}x >/dev/null
  awk -v side=$side -v n=$n '{ printf "CPU time, %s alone: %.0f ns per exchange (user %ss + sys %ss over %d)\n", side, ($1 + $2) * 1e9 / n, $1, $2, n }' "$raw"
done
