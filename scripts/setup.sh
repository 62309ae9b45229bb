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
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup: all packages present"
fi
