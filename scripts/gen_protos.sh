#!/usr/bin/env bash
# Regenerate generated/ from protos/ with grpcio-tools. `--check` fails if generated/ is stale.
set -euo pipefail
cd "$(dirname "$0")/.."
out=generated
if [[ "${1:-}" == "--check" ]]; then out=$(mktemp -d); fi
mapfile -t files < <(cd protos && find . -name '*.proto' | sed 's|^\./||' | sort)
python -m grpc_tools.protoc -I protos --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" "${files[@]}"
# Every generated directory is a package so setuptools finds it.
find "$out" -mindepth 1 -type d -exec sh -c 'test -f "$1/__init__.py" || : > "$1/__init__.py"' _ {} \;
if [[ "${1:-}" == "--check" ]]; then
  if ! diff -r -x __pycache__ generated "$out" >/dev/null; then
    echo "generated/ is out of date with protos/: run scripts/gen_protos.sh" >&2
    diff -r -x __pycache__ generated "$out" | head -20 >&2
    exit 1
  fi
  echo "generated/ is current"
fi
