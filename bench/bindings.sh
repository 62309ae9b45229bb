#!/bin/sh
# The cost of one native-4 exchange (fill, four phases, read the result)
# through the C API, the LuaJIT binding and the Python binding, one after
# the other in one command, and what LuaJIT pays for a pe_slice passed by
# value (why the ABI has _n variants):
#   bench/bindings.sh [BUILD_DIR [ITERATIONS]]
# Python runs a tenth of ITERATIONS (it is the slowest by far).
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$src/build}" && pwd)
n=${2:-200000}
plugin=$build/examples/policies/sample_native_policies.so
export POLICYEXEC_LIBRARY="$build/lib/libpolicyexec.so.0"
# The interpreter the worker embeds (the system's), not whatever python3 is
# first on PATH (a pyenv build may lack the system's PGO/LTO optimisations).
python=$(pkg-config --variable=prefix python3-embed 2>/dev/null || true)/bin/python3
[ -x "$python" ] || python=python3
"$build/bin/bench_exchange" "$plugin" "$n" 5
luajit "$src/bindings/lua/tests/bench.lua" "$plugin" "$n" 5
luajit "$src/bindings/lua/tests/bench_byvalue.lua" "$n"
PYTHONPATH="$src/bindings/python" "$python" "$src/bindings/python/tests/host/bench.py" "$plugin" \
  $((n / 10)) 5
