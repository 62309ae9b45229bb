#!/usr/bin/env bash
# Installs what the load test needs beyond scripts/setup.sh: wrk (load
# generator with Lua validation), nginx + the echo module (echo backend and
# the reverse-proxy anchor), gnuplot (charts). Kept apart from the build's
# setup so a plain build never pulls a web server. apt runs only when a
# package is missing, so a second call is quick.
set -euo pipefail

packages=(
  wrk
  nginx-light                 # smallest nginx with proxy + upstream keepalive
  libnginx-mod-http-echo      # echo_read_request_body / echo_request_body
  gnuplot-nox                 # PNG charts, no X needed
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "loadtest setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  # policy-rc.d keeps the package's postinst from starting the system nginx
  # on port 80: the load test runs its own nginx instances only.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "loadtest setup: all packages present"
fi
