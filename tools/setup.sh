#!/usr/bin/env bash
# Installs what the build and the tests need on a fresh Debian machine: libclang-dev/clang
# (bindgen for RocksDB's bindings), redis-tools/redis-server (the reference clients and
# server the compatibility tests and benchmarks drive), memcached (the load generator's
# tests and tools/bench/tiered.sh), jq (the benchmark scripts read JSON reports), and
# redis-py from PyPI and ioredis from npm (other clients the compatibility tests drive;
# ioredis goes to ~/.cache/hypercache/npm, the tests find it there).
# Safe to run again: it installs only what is missing. Extra Debian packages a benchmark
# needs are named as arguments (tools/bench/instructions.sh: valgrind).
set -euo pipefail

packages=(libclang-dev clang redis-tools redis-server memcached jq "$@")
# Node.js may come from elsewhere (NodeSource); Debian's packages only when there is none.
if ! command -v npm >/dev/null 2>&1; then
    packages+=(nodejs npm)
fi
missing=()
for package in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$package")
    fi
done

if ((${#missing[@]} > 0)); then
    echo "setup: installing ${missing[*]}" >&2
    sudo_cmd=()
    if [[ $(id -u) -ne 0 ]]; then
        sudo_cmd=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${sudo_cmd[@]}" apt-get update -qq
    "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # Debian starts redis-server and memcached as services on install; the tests and
    # benchmarks start their own instances on their own ports, so the system ones are not
    # needed.
    if command -v systemctl >/dev/null 2>&1; then
        "${sudo_cmd[@]}" systemctl disable --now redis-server memcached >/dev/null 2>&1 || true
    fi
fi

if ! python3 -c "import redis" >/dev/null 2>&1; then
    echo "setup: installing redis-py" >&2
    python3 -m pip install --quiet --disable-pip-version-check redis
fi

npm_prefix="$HOME/.cache/hypercache/npm"
if [[ ! -d "$npm_prefix/node_modules/ioredis" ]]; then
    echo "setup: installing ioredis" >&2
    npm install --silent --no-audit --no-fund --prefix "$npm_prefix" ioredis@5 >/dev/null
fi
