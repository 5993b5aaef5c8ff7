#!/usr/bin/env bash
# Builds the pack: build.sh [OUT] (default static-site-py.wasm here).
# componentize-py comes from COMPONENTIZE_PY, else the one
# scripts/setup-authoring installs, else the PATH.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$(realpath -m "${1:-$here/static-site-py.wasm}")"
tool="${COMPONENTIZE_PY:-$here/../../target/authoring/py-venv/bin/componentize-py}"
[ -x "$tool" ] || tool=componentize-py
cd "$here"
"$tool" -d ../../wit/history/1.1.0 -w pack componentize --stub-wasi app -o "$out"
