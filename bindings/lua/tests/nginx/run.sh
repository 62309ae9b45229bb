#!/bin/sh
# Starts Debian's nginx with lua-nginx-module on a free loopback port, runs
# the example chain from access_by_lua_block and header_filter_by_lua_block,
# and checks with curl: policy edits reach the upstream and the client, an
# immediate response is sent, and the error log holds no Lua error.
#   run.sh SOURCE_DIR SAMPLE_PLUGIN DENY_PLUGIN      (POLICYEXEC_LIBRARY set)
# PE_KEEP_NGINX_PREFIX=1 keeps the nginx prefix (config, logs) for a look.
set -eu
src=$1 sample=$2 deny=$3
prefix=$(mktemp -d)
mkdir -p "$prefix/tmp"
pid=
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  [ -n "${PE_KEEP_NGINX_PREFIX:-}" ] || rm -rf "$prefix"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
# The client tools run without a sanitizer runtime the caller may preload for
# nginx (the ASan build does; curl hangs under it).
client() { env -u LD_PRELOAD curl -s -m 10 "$@"; }
fail() { echo "FAIL: $*"; echo "--- error.log"; cat "$prefix/error.log" 2>/dev/null; exit 1; }

port=$(env -u LD_PRELOAD python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
lua_path="$src/bindings/lua/?.lua;$src/bindings/lua/examples/?.lua"
sed -e "s|@PREFIX@|$prefix|g" -e "s|@PORT@|$port|g" -e "s|@LUA_PATH@|$lua_path|g" \
    -e "s|@SAMPLE_PLUGIN@|$sample|g" -e "s|@DENY_PLUGIN@|$deny|g" \
    "$src/bindings/lua/examples/nginx.conf.in" > "$prefix/nginx.conf"

nginx -p "$prefix" -c "$prefix/nginx.conf" -t -q 2>"$prefix/t.log" || { cat "$prefix/t.log"; fail "nginx -t"; }
nginx -p "$prefix" -c "$prefix/nginx.conf" &
pid=$!
i=0
until client -o /dev/null "http://127.0.0.1:$port/"; do
  kill -0 "$pid" 2>/dev/null || fail "nginx exited"
  i=$((i + 1)); [ $i -lt 300 ] || fail "nginx did not start"; sleep 0.1
done

out=$(client -D "$prefix/h1" "http://127.0.0.1:$port/hello")
[ "$out" = "upstream saw x-sample-policy-phase=request-header" ] || fail "body: $out"
grep -qi '^x-sample-policy-phase: response-header' "$prefix/h1" || fail "no response header: $(cat "$prefix/h1")"
grep -qi '^x-upstream: 1' "$prefix/h1" || fail "upstream header lost"

out=$(client -D "$prefix/h2" -H 'x-deny: 1' "http://127.0.0.1:$port/hello")
[ "$out" = "denied by test-deny" ] || fail "deny body: $out"
head -n1 "$prefix/h2" | grep -q ' 403' || fail "deny status: $(head -n1 "$prefix/h2")"
grep -qi '^x-denied-by: test-deny' "$prefix/h2" || fail "no x-denied-by"
grep -qi '^x-upstream' "$prefix/h2" && fail "the upstream ran for a denied request"

# A few more requests, so that exchanges are made and freed repeatedly.
for _ in 1 2 3 4 5 6 7 8 9 10; do client -o /dev/null "http://127.0.0.1:$port/"; done
if grep -E '\[(error|alert|crit|emerg)\]' "$prefix/error.log"; then fail "errors logged"; fi
echo "nginx + policyexec.lua: ok"
