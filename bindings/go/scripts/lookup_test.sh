#!/usr/bin/env bash
# How the Go binding finds libpolicyexec, each way a user may have it:
#   1. installed in a prefix, found by pkg-config;
#   2. at an explicit path (-tags policyexec_nopkgconfig, CGO_CFLAGS/LDFLAGS);
#   3. not at all: the build fails saying what is missing.
# Usage: lookup_test.sh <cmake build dir>   (run from bindings/go; CTest
# sets GOCACHE, GOPATH, PE_GO_PLUGIN, ...)
set -euo pipefail
build=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix
cmake --install "$build" --prefix "$prefix" >/dev/null
libdir=$(dirname "$(find "$prefix" -name 'libpolicyexec.so' | head -n1)")
unset PKG_CONFIG_PATH

echo "== 1. installed prefix, through pkg-config"
PKG_CONFIG_PATH=$libdir/pkgconfig LD_LIBRARY_PATH=$libdir \
  go test -count=1 -run 'TestNative4Loop|TestGoPolicy$' .

echo "== 2. explicit path, without pkg-config"
PKG_CONFIG_LIBDIR=$work/none CGO_CFLAGS="-I$prefix/include" \
  CGO_LDFLAGS="-L$libdir -Wl,-rpath,$libdir" \
  go test -count=1 -tags policyexec_nopkgconfig -run 'TestNative4Loop|TestGoPolicy$' .

echo "== 3. nothing to find: the error says what is missing"
# A cache of its own: a cached build of the package would hide the failure.
export GOCACHE=$work/gocache
if PKG_CONFIG_LIBDIR=$work/none go build -o "$work/x" . >"$work/out" 2>&1; then
  echo "built without any libpolicyexec"; exit 1
fi
cat "$work/out"
grep -q "Package policyexec was not found" "$work/out"
if [ ! -e /usr/include/policyexec/policyexec.h ] && [ ! -e /usr/local/include/policyexec/policyexec.h ]; then
  if PKG_CONFIG_LIBDIR=$work/none go build -tags policyexec_nopkgconfig -o "$work/x" . >"$work/out" 2>&1; then
    echo "built without any libpolicyexec headers"; exit 1
  fi
  cat "$work/out"
  grep -q "libpolicyexec headers not found" "$work/out"
fi
echo "lookup: all three cases behave"
