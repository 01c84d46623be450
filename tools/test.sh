#!/usr/bin/env bash
# Runs the whole test suite: installs missing system packages, then `cargo test` for the
# workspace. The cargo target directory lives outside the clone (RocksDB's C++ build takes
# ~13 minutes cold) unless CARGO_TARGET_DIR says otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

bash tools/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/hypercache/target}"
cargo test --workspace --all-targets "$@"
