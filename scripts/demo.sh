#!/usr/bin/env bash
# Sets up, builds, and runs the demo: the embed example loads the sample
# native plugin, builds the native-4 chain and runs one exchange through all
# four phases, printing what the policies did.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target embed sample_native_policies
./build/examples/embed ./build/examples/policies/sample_native_policies.so
