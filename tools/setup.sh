#!/usr/bin/env bash
# Installs what the build and the tests need on a fresh Debian machine: libclang-dev/clang
# (bindgen for RocksDB's bindings), redis-tools/redis-server (the reference clients and
# server the compatibility tests and benchmarks drive), memcached (the load generator's
# tests and tools/bench/tiered.sh), jq (the benchmark scripts read JSON reports), and
# redis-py from PyPI (another client the compatibility tests drive).
# Safe to run again: it installs only what is missing.
set -euo pipefail

packages=(libclang-dev clang redis-tools redis-server memcached jq)
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
