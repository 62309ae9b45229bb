#!/usr/bin/env bash
# Starts the reference gateway with sample-config.json in front of an echo
# backend on 127.0.0.1:9000 (and, for the policies that wait on I/O, a lookup
# service on :9002 and a private redis-server on :6390), shows a curl command
# for each profile, runs it once and prints the answer, then keeps serving
# until Ctrl-C.
#
#   examples/gateway/run-demo.sh [--check] [--build-dir DIR]
#
#   --check          run the curls, verify every answer, stop, exit 0/1
#   --build-dir DIR  the CMake build directory (default: build); it is
#                    configured and the gateway built there if needed
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
build="$root/build"
check=0
while [ $# -gt 0 ]; do
  case "$1" in
    --check) check=1 ;;
    --build-dir) build="$(cd "$2" 2>/dev/null && pwd || echo "$2")"; shift ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "run-demo: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

gateway="$build/bin/policyexec-gateway"
if [ ! -x "$gateway" ]; then
  echo "run-demo: building policyexec-gateway in $build"
  [ -f "$build/CMakeCache.txt" ] || cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$build" -j"$(nproc)" --target policyexec-gateway >/dev/null
fi

for port in 8080 9901 9000 9002 6390; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "run-demo: port $port is already in use; stop what listens there first" >&2
    exit 1
  fi
done

logdir="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$logdir"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

/usr/bin/python3 "$here/tests/echo_backend.py" --port 9000 2>"$logdir/echo.log" &
pids+=($!)
"$gateway" --config "$here/sample-config.json" 2>"$logdir/gateway.log" &
pids+=($!)
# What sample-python-lookup and sample-python-rate-limit talk to.
/usr/bin/python3 -I "$root/tests/lookup_service.py" --port 9002 --port-file "$logdir/lookup.port" \
  2>"$logdir/lookup.log" &
pids+=($!)
redis-server --port 6390 --bind 127.0.0.1 --dir "$logdir" --save "" --appendonly no \
  --loglevel warning >"$logdir/redis.log" 2>&1 &
pids+=($!)

for _ in $(seq 1 300); do # up to 30 s: Python workers start with the gateway
  curl -fsS http://127.0.0.1:9901/health >/dev/null 2>&1 && break
  if ! kill -0 "${pids[1]}" 2>/dev/null; then
    echo "run-demo: the gateway did not start:" >&2
    cat "$logdir/gateway.log" >&2
    exit 1
  fi
  sleep 0.1
done

echo "Gateway on http://127.0.0.1:8080 (admin http://127.0.0.1:9901), echo backend on :9000"
echo
failures=0
for profile in no-policies native-4 python-4 mix-4; do
  cmd=(curl -sS -i -X POST --data-binary "hello" "http://127.0.0.1:8080/$profile/echo")
  echo "\$ ${cmd[*]}"
  if ! answer="$("${cmd[@]}" 2>&1)"; then
    echo "$answer"
    failures=$((failures + 1))
    continue
  fi
  answer="${answer//$'\r'/}"
  echo "$answer" | grep -iE '^(HTTP/|x-sample-policy-phase|content-length)'
  body="${answer##*$'\n\n'}"
  echo "body: $body"
  echo
  if [ "$profile" = no-policies ]; then
    expected_body="hello"
    header_wanted=0
  else
    expected_body="[sample-response-body][sample-request-body]hello"
    header_wanted=1
  fi
  has_header=0
  echo "$answer" | grep -qi '^x-sample-policy-phase: response-header' && has_header=1
  if [ "$body" != "$expected_body" ] || [ "$has_header" != "$header_wanted" ]; then
    echo "run-demo: $profile: unexpected answer" >&2
    failures=$((failures + 1))
  fi
done

# Policies that wait on I/O: the lookup's answer goes upstream in a request
# header (a 200 means it arrived: the step fails closed); the rate limit
# answers 429 past 5 requests a minute per x-user.
for _ in $(seq 1 100); do
  [ -s "$logdir/lookup.port" ] && (exec 3<>/dev/tcp/127.0.0.1/6390) 2>/dev/null && break
  sleep 0.1
done
cmd=(curl -sS -o /dev/null -w '%{http_code}' -H 'x-user: ada' --data-binary hello
     http://127.0.0.1:8080/python-lookup/echo)
echo "\$ ${cmd[*]}"
code="$("${cmd[@]}" 2>&1 || true)"
echo "status: $code"
if [ "$code" != 200 ]; then
  echo "run-demo: python-lookup: unexpected status $code" >&2
  failures=$((failures + 1))
fi
user="demo-$$"
codes=""
for _ in $(seq 1 12); do
  codes+="$(curl -sS -o /dev/null -w '%{http_code}' -H "x-user: $user" \
    http://127.0.0.1:8080/python-rate-limit/echo 2>/dev/null || true) "
done
echo "\$ curl -H 'x-user: $user' http://127.0.0.1:8080/python-rate-limit/echo   # 12 times"
echo "statuses: $codes"
case "$codes" in
  "200 "*429*) ;;
  *) echo "run-demo: python-rate-limit: expected 200s then 429" >&2; failures=$((failures + 1)) ;;
esac
echo

echo "Admin API:"
echo "  curl -s http://127.0.0.1:9901/apis"
echo "  curl -s http://127.0.0.1:9901/metrics"
echo "  curl -s -X POST http://127.0.0.1:9901/apis -d '{\"name\":\"mine\",\"context\":\"/mine\",\"upstream\":\"http://127.0.0.1:9000\",\"policies\":[{\"name\":\"sample-native-response-header\",\"version\":\"1.0.0\"}]}'"
echo "  curl -s -X DELETE http://127.0.0.1:9901/apis/mine"

if [ "$check" = 1 ]; then
  if [ "$failures" -eq 0 ]; then echo "run-demo: all profiles answered as expected"; fi
  [ "$failures" -eq 0 ]
  exit
fi
echo
echo "Serving until Ctrl-C."
wait "${pids[1]}"
