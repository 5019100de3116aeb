#!/usr/bin/env bash
# Builds Jaeger (github.com/jaegertracing/jaeger/cmd/jaeger v1.75.0) from Go modules
# into a cache outside the repository, once; later runs reuse the binary. Prints its
# path. A lock file keeps concurrent callers (parallel test runs) from building twice.
# The telemetry trace tests run it on loopback as the Zipkin/OTLP collector.
set -euo pipefail
VERSION=v1.75.0
CACHE=${ISTIOD_PY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/istiod_py}
DIR=$CACHE/jaeger-$VERSION
BIN=$DIR/jaeger
mkdir -p "$DIR"
exec 9>"$DIR/.lock"
flock 9
if [[ ! -x $BIN ]]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  (
    cd "$work"
    go mod init istiod-py-tools >/dev/null 2>&1
    go get -tool "github.com/jaegertracing/jaeger/cmd/jaeger@$VERSION" >&2
    nice -n 10 go build -o "$BIN.tmp" github.com/jaegertracing/jaeger/cmd/jaeger >&2
  )
  mv "$BIN.tmp" "$BIN"
fi
echo "$BIN"
