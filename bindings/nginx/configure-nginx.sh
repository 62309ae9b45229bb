#!/bin/bash
# Configures a copy of Debian's nginx source tree (nginx-dev) with the flags
# of the packaged nginx, so the module is binary-compatible with
# /usr/sbin/nginx, plus --add-dynamic-module for ours.
#   configure-nginx.sh BUILD_DIR MODULE_DIR CC_OPT
set -euo pipefail
build=$1 module=$2 cc_opt=$3
cd "$build"
# shellcheck disable=SC1091
. ./conf_flags
./configure "${NGX_CONF_FLAGS[@]}" --with-cc-opt="$cc_opt" --add-dynamic-module="$module"
