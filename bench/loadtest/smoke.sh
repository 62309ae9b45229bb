#!/usr/bin/env bash
# CTest smoke test of the load test: every gateway profile answers a few
# hundred requests (50 B and 1 KiB, 2 connections) through a fresh gateway,
# and every response must be exactly right. It asserts accuracy only, never
# a time: wrk's duration is just an upper bound on a count-limited run.
#
#   bench/loadtest/smoke.sh [BUILD_DIR]      (default: $BUILD, else ./build)
#
# Exit: 0 all accurate; 1 a cell failed or was not 100 % accurate;
#       77 (CTest "skipped") when wrk, nginx or its echo module is missing.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
build="${1:-${BUILD:-$here/../../build}}"
build="$(cd "$build" && pwd)"

missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
[ -e /usr/lib/nginx/modules/ngx_http_echo_module.so ] ||
  [ -e /usr/share/nginx/modules/ngx_http_echo_module.so ] || missing+=(libnginx-mod-http-echo)
if [ ${#missing[@]} -gt 0 ]; then
  echo "loadtest smoke: SKIP, not installed: ${missing[*]} (bench/loadtest/setup.sh installs them)"
  exit 77
fi

out="$build/loadtest/smoke"
rm -rf "$out"
exec "$here/run.sh" \
  --build-dir "$build" --out "$out" \
  --profiles no-policies,native-4,python-4,mix-4 \
  --concurrency 2 --extra-payloads 1024 --extra-concurrency 2 \
  --warmup 0 --duration 30 --max-requests 300 --allow-cpu-idle \
  --require-all --require-accuracy --no-report
