#!/usr/bin/env bash
# The native-4 exchange through the Go binding beside the same loop on the
# C API, in one process, ROUNDS times (Go then C each round, so both see the
# same machine load), then the median of each and of the per-round ratio.
# Usage: scripts/bench.sh [build dir (default ../../build)] [rounds (default 10)]
set -euo pipefail
cd "$(dirname "$0")/.."
build=$(cd "${1:-../../build}" && pwd)
rounds=${2:-10}
export PKG_CONFIG_PATH=$build/bindings/go/pkgconfig GOFLAGS=-mod=mod
export GOCACHE=${GOCACHE:-$build/bindings/go/gocache} GOPATH=${GOPATH:-$build/bindings/go/gopath}
export PE_GO_PLUGIN=$build/examples/policies/sample_native_policies.so
bin=$(mktemp)
trap 'rm -f "$bin"' EXIT
go test -c -o "$bin" .
for _ in $(seq "$rounds"); do
  "$bin" -test.run XXX -test.bench 'Native4|CgoCall' -test.benchmem -test.benchtime 300000x |
    grep '^Benchmark'
done | tee /dev/stderr | awk '
  /Native4Go/ { g[++ng] = $3 } /Native4C/ { c[++nc] = $3 } /CgoCall/ { k[++nk] = $3 }
  function median(a, n,   i, j, t) {
    for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] > a[j]; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
    return n % 2 ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2
  }
  END {
    for (i = 1; i <= ng; i++) r[i] = g[i] / c[i]
    printf "median over %d rounds: Go %.0f ns/op, C %.0f ns/op, Go/C %.2fx (median of per-round ratios), one cgo call %.1f ns\n",
      ng, median(g, ng), median(c, nc), median(r, ng), median(k, nk)
  }'
