#!/usr/bin/env bash
# Installs what building and testing libpolicyexec needs, from Debian's
# packages. Quick when everything is already there: apt runs only when a
# package is missing.
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  libjansson-dev                       # JSON chains and params
  libprotobuf-c-dev protobuf-c-compiler # executor protocol
  python3-dev                          # policyexec-pyworker embeds CPython
  check libsubunit-dev                 # unit tests
  doxygen                              # API reference
  clang-format cppcheck                # style and static checks
  libevent-dev                         # reference gateway (examples/gateway)
  clang libclang-rt-14-dev             # fuzz targets (scripts/fuzz.sh): libFuzzer runtime
  nginx nginx-dev libpcre2-dev         # the nginx dynamic module (bindings/nginx)
  luajit2 libluajit2-5.1-dev           # LuaJIT (OpenResty branch, as lua-nginx-module needs)
  libnginx-mod-http-lua                # the LuaJIT binding inside OpenResty-style nginx
  golang-go                            # Go binding (bindings/go)
  libgrpc-dev protobuf-compiler-grpc   # remote executors over gRPC
  python3-grpcio python3-protobuf      # gRPC interop executor written in Python
  redis-server python3-redis           # async Python policies (rate limit sample)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  # policy-rc.d keeps postinst scripts from starting the system nginx and
  # redis: tests and demos run their own instances on private ports.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup: all packages present"
fi
