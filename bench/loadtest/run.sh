#!/usr/bin/env bash
# The load test in one command: runs the matrix (bench/loadtest/loadtest.py,
# options: --help) and writes results.jsonl + report.md + charts into the
# output dir (default build/loadtest/<date-time>).
#
#   bench/loadtest/run.sh --smoke                       # seconds per cell
#   bench/loadtest/run.sh                               # the real one (minutes)
#   bench/loadtest/run.sh --profiles no-gateway,nginx-proxy --concurrency 1,10
#
# The driver stops every process it started; the trap is a second line of
# defence if the driver itself is killed.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

driver_pid=""
stop_driver() {
  if [ -n "$driver_pid" ] && kill -0 "$driver_pid" 2>/dev/null; then
    kill -TERM "$driver_pid" 2>/dev/null || true
    wait "$driver_pid" 2>/dev/null || true
  fi
}
trap stop_driver EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

/usr/bin/python3 "$here/loadtest.py" "$@" &
driver_pid=$!
set +e
wait "$driver_pid"
status=$?
set -e
driver_pid=""
exit "$status"
