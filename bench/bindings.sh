#!/bin/sh
# The cost of one native-4 exchange (fill, four phases, read the result)
# through the C API, the LuaJIT binding and the Python binding, one after
# the other in one command:
#   bench/bindings.sh [BUILD_DIR [ITERATIONS]]
# Python runs a tenth of ITERATIONS (it is the slowest by far).
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$src/build}" && pwd)
n=${2:-200000}
plugin=$build/examples/policies/sample_native_policies.so
export POLICYEXEC_LIBRARY="$build/lib/libpolicyexec.so.0"
python=$(sed -n 's/^PE_PYTHON_EXECUTABLE:[A-Z]*=//p' "$build/CMakeCache.txt" 2>/dev/null || true)
[ -n "$python" ] || python=python3
"$build/bin/bench_exchange" "$plugin" "$n" 5
luajit "$src/bindings/lua/tests/bench.lua" "$plugin" "$n" 5
PYTHONPATH="$src/bindings/python" "$python" "$src/bindings/python/tests/host/bench.py" "$plugin" \
  $((n / 10)) 5
