#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/) with clang, ASan and UBSan in
# build-fuzz, and runs each for SECONDS (default 30) on a scratch copy of its
# seed corpus plus its regression inputs. Exits non-zero if a target finds a
# crash, leak or timeout, and says where the reproducer is.
#   scripts/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
seconds=${1:-30}
build=$root/build-fuzz
targets=(fuzz_gw_http fuzz_py_reply)

# The whole build dir is instrumented (fuzzer-no-link: coverage without
# libFuzzer's main), so that the library's code guides the fuzzer too.
sanitize="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined"
cmake -S . -B "$build" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug \
  -DCMAKE_C_FLAGS="$sanitize -fno-omit-frame-pointer -O1" \
  -DPE_FUZZ=ON -DPE_BUILD_TESTS=OFF -DPE_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$build" -j"$(nproc)" --target "${targets[@]}"

failed=0
for t in "${targets[@]}"; do
  work=$build/fuzz/run-$t
  rm -rf "$work"
  mkdir -p "$work/corpus" "$work/artifacts"
  cp fuzz/corpus/"$t"/* "$work/corpus/"
  if [ -d fuzz/regressions/"$t" ]; then
    cp fuzz/regressions/"$t"/* "$work/corpus/" 2>/dev/null || true
  fi
  echo "fuzz: $t for ${seconds}s"
  if ! UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ASAN_OPTIONS=detect_leaks=1 \
    "$build/fuzz/$t" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
    -print_final_stats=1 -artifact_prefix="$work/artifacts/" "$work/corpus" \
    >"$work/log" 2>&1; then
    failed=1
    tail -n 40 "$work/log"
    echo "fuzz: $t FAILED; reproducer(s):"
    ls -1 "$work/artifacts/"* 2>/dev/null | sed 's/^/  /' || true
    echo "  replay: $build/fuzz/$t <file>   (full log: $work/log)"
  else
    grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "$work/log" |
      sed "s/^/  /" || true
  fi
done
exit $failed
