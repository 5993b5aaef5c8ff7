#!/usr/bin/env bash
# Build: componentize-py with WASI stubbed out (no clock/random reads at run time).
set -euo pipefail
cd "$(dirname "$0")"
VENV=/work/outsider/toolchains/py-venv
mkdir -p out
nice -n 15 "$VENV/bin/componentize-py" -d wit -w pack componentize --stub-wasi app -o out/pack.wasm
