#!/usr/bin/env bash
# Builds (release) and starts the server with its embedded defaults; extra arguments are
# passed to it, e.g. `tools/run.sh --port 6380 --maxmemory 256mb`.
set -euo pipefail
cd "$(dirname "$0")/.."

bash tools/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/hypercache/target}"
exec cargo run --release --bin hypercache -- "$@"
