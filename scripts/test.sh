#!/usr/bin/env bash
# Sets up, builds and runs the whole test suite:
#   1. release build with -Werror, every CTest test (the load test's smoke
#      test included: wrk against the gateway, every response checked);
#   2. AddressSanitizer + UBSan build, every CTest test;
#   3. the API reference (Doxygen, warnings are errors);
#   4. an install into a scratch prefix, and the embed example built against
#      it with pkg-config, the way a user builds;
#   5. clang-format and cppcheck over every C file;
#   6. the libFuzzer targets (fuzz/), 30 s each.
# Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
jobs=$(nproc)

"$root/scripts/setup.sh"
"$root/bench/loadtest/setup.sh" # wrk, nginx + echo module: the load test's smoke test

step() { printf '\n==== %s\n' "$*"; }

step "release build"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$jobs"
step "tests (release)"
(cd build && ctest --output-on-failure -j"$jobs")

step "sanitizer build (ASan + UBSan)"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DPE_SANITIZE=ON >/dev/null
cmake --build build-asan -j"$jobs"
step "tests (ASan + UBSan)"
# CK_FORK=no: one process per suite, so LeakSanitizer sees every leak.
(cd build-asan && CK_FORK=no ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j"$jobs")

step "API reference (Doxygen)"
cmake --build build --target docs

step "install + pkg-config consumer"
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake --install build --prefix "$prefix" >/dev/null
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig:$prefix/lib/$(gcc -dumpmachine)/pkgconfig"
cc -Wall -Wextra -Werror -o "$prefix/embed" examples/embed/embed.c \
  $(pkg-config --cflags --libs policyexec)
plugin=$(find "$prefix" -name 'sample_native_policies.so' | head -n1)
LD_LIBRARY_PATH="$(dirname "$(find "$prefix" -name 'libpolicyexec.so.*' | head -n1)")" \
  "$prefix/embed" "$plugin" >/dev/null
# The installed programs find the installed library through their RPATH
# ($ORIGIN-relative), with no LD_LIBRARY_PATH. The installed bench_hooks uses
# only installed files: the plugin, the worker (found by the library beside
# itself) and the sample Python policies.
env -u LD_LIBRARY_PATH "$prefix/bin/policyexec-gateway" --help >/dev/null
env -u LD_LIBRARY_PATH "$prefix/libexec/policyexec-pyworker" --help >/dev/null
env -u LD_LIBRARY_PATH \
  "$prefix/bin/bench_hooks" --profile native-4 --profile python-4 --workers 1 --duration 0.2 \
  --warmup 0.05 --no-floor --json >/dev/null
# The installed bindings find the installed library by themselves (from their
# own install prefix: no LD_LIBRARY_PATH, no POLICYEXEC_LIBRARY) and load the
# installed plugin with the library opened RTLD_LOCAL.
PYTHONPATH="$(pkg-config --variable=pythondir policyexec)" python3 -c \
  "from policyexec import host; host.Engine().load_plugin('$plugin')"
LUA_PATH="$(pkg-config --variable=luadir policyexec)/?.lua;;" luajit -e \
  "require('policyexec').engine():load_plugin('$plugin')"
# The installed nginx module loads into the stock nginx through its installed
# load_module snippet, and its chain names an installed sample policy.
snippet="$prefix/share/nginx/modules-available/mod-http-policyexec.conf"
if [ -f "$snippet" ]; then
  mkdir -p "$prefix/ngx/logs"
  printf '%s\n' "include $snippet;" "pid $prefix/ngx/nginx.pid;" "events {}" "http {" \
    "  policyexec_plugin $plugin;" \
    "  server { listen 127.0.0.1:1; location / { policyexec_chain '[{\"name\": \"sample-native-request-header\", \"version\": \"1.0.0\"}]'; } }" \
    "}" >"$prefix/ngx/nginx.conf"
  LD_LIBRARY_PATH="$(dirname "$(find "$prefix" -name 'libpolicyexec.so.*' | head -n1)")" \
    nginx -t -q -p "$prefix/ngx" -c "$prefix/ngx/nginx.conf" -e "$prefix/ngx/logs/error.log"
fi
echo "installed library, headers, policyexec.pc, worker, sample policies, bindings and nginx module work"

step "style and static checks"
files=$(git ls-files '*.c' '*.h' '*.h.in' 2>/dev/null || find . -name '*.[ch]' -not -path './build*')
clang-format --dry-run --Werror $files
cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability --std=c11 \
  --inline-suppr -I include -I lib/core -I lib/python -I lib/grpc -I lib/shared -I tests \
  --suppress=missingIncludeSystem \
  lib examples bindings/python/worker bindings/python/executor bindings/nginx bindings/go \
  bench tests fuzz 2>&1
echo "clang-format and cppcheck clean"

step "fuzz (30 s per target)"
"$root/scripts/fuzz.sh" 30

printf '\nall checks passed\n'
