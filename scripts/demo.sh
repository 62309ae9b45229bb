#!/usr/bin/env bash
# Sets up, builds, and runs the main job: the reference gateway with the
# sample policies (native, Python and mixed chains) in front of an echo
# backend on localhost. It prints a curl command for each profile, runs each
# once, and serves until Ctrl-C. Pass --check to verify the answers and exit.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)"
exec examples/gateway/run-demo.sh --build-dir build "$@"
