#!/usr/bin/env bash
# Builds {{name}}.wasm from pack.js with ComponentizeJS (installed by
# `npm install`, pinned in package.json).
set -euo pipefail
cd "$(dirname "$0")"
node build.mjs
