#!/usr/bin/env bash
# Builds {{name}}.wasm from app.py with componentize-py (pinned in
# requirements-build.txt; set COMPONENTIZE_PY to use another one).
# --stub-wasi: the Python runtime reads WASI clocks and randomness in every
# instance; stubbed, it reads none, so the pack does not use `clock`
# without declaring it (conformance check capability.declared).
set -euo pipefail
cd "$(dirname "$0")"
"${COMPONENTIZE_PY:-componentize-py}" -d wit -w pack componentize --stub-wasi app -o {{name}}.wasm
echo "wrote {{name}}.wasm"
