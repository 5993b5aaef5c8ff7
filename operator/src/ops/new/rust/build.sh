#!/usr/bin/env bash
# Builds {{name}}.wasm: cargo for wasm32-wasip2 (the target comes from
# rust-toolchain.toml), release profile, copied next to this script.
set -euo pipefail
cd "$(dirname "$0")"
cargo build --release --target wasm32-wasip2
cp "${CARGO_TARGET_DIR:-target}/wasm32-wasip2/release/{{crate}}.wasm" {{name}}.wasm
echo "wrote {{name}}.wasm"
