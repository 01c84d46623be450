#!/usr/bin/env bash
# Throughput of HyperCache against Debian's redis-server, measured the same way in one run:
#   redis-benchmark -t set,get -n N -r N -d 100 -c 50 at -P 1 and -P 16
# By default Redis runs with persistence off and HyperCache with the WAL off (pure cache).
# FSYNC=everysec|always runs both durable instead: Redis with `appendonly yes appendfsync
# FSYNC`, HyperCache with `--appendonly yes --appendfsync FSYNC`. Both on loopback, one after
# the other. Prints each throughput and the ratio HyperCache / Redis.
#
# Each cell is the median of ROUNDS runs (default 3), Redis and HyperCache alternating, since
# on a 2-core machine the benchmark client shares the CPU with the server and single runs
# vary by 10-20%.
#
#   tools/bench/compare.sh            # N = 1,000,000, 3 rounds (the documented run)
#   REQUESTS=200000 ROUNDS=1 tools/bench/compare.sh
#   FSYNC=everysec tools/bench/compare.sh   # durable: both append-only, fsync every second
#   TESTS=set tools/bench/compare.sh         # only SET
set -euo pipefail
cd "$(dirname "$0")/../.."

REQUESTS="${REQUESTS:-1000000}"
ROUNDS="${ROUNDS:-3}"
CLIENTS="${CLIENTS:-50}"
FSYNC="${FSYNC:-off}"
TESTS="${TESTS:-set,get}"
case "$FSYNC" in
    off) REDIS_PERSIST=(--appendonly no); HC_PERSIST=(--appendonly no) ;;
    everysec|always|no)
        REDIS_PERSIST=(--appendonly yes --appendfsync "$FSYNC")
        HC_PERSIST=(--appendonly yes --appendfsync "$FSYNC") ;;
    *) echo "FSYNC must be off, everysec, always or no" >&2; exit 2 ;;
esac
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/hypercache/target}"
bash tools/setup.sh
cargo build --release --bin hypercache >&2
BIN="$CARGO_TARGET_DIR/release/hypercache"

WORK="$(mktemp -d)"
REDIS_PORT=$((20000 + RANDOM % 10000))
HC_PORT=$((REDIS_PORT + 1))
cleanup() {
    redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
    redis-cli -p "$HC_PORT" shutdown nosave >/dev/null 2>&1 || true
    sleep 0.5
    rm -rf "$WORK"
}
trap cleanup EXIT

wait_for() {
    for _ in $(seq 1 200); do
        if redis-cli -p "$1" ping 2>/dev/null | grep -q PONG; then return 0; fi
        sleep 0.05
    done
    echo "server on port $1 did not start" >&2
    return 1
}

# Prints "<set rps> <get rps>" for the server on port $1 with pipeline $2.
measure() {
    redis-cli -p "$1" flushall >/dev/null
    redis-benchmark -p "$1" -t "$TESTS" -n "$REQUESTS" -r "$REQUESTS" -d 100 -c "$CLIENTS" -P "$2" -q 2>/dev/null \
        | tr '\r' '\n' | awk '/^SET:/ {set=$2} /^GET:/ {get=$2} END {print set, get}'
}

echo "persistence: $FSYNC" >&2
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' "${REDIS_PERSIST[@]}" \
    --dir "$WORK" --daemonize yes --logfile "$WORK/redis.log"
wait_for "$REDIS_PORT"
"$BIN" --port "$HC_PORT" --dir "$WORK/hypercache" --maxmemory 1gb "${HC_PERSIST[@]}" \
    >"$WORK/hypercache.log" 2>&1 &
wait_for "$HC_PORT"

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

printf "%-10s %-4s %14s %14s %8s\n" "pipeline" "op" "redis rps" "hypercache rps" "ratio"
for pipeline in 1 16; do
    : >"$WORK/redis.set"; : >"$WORK/redis.get"; : >"$WORK/hc.set"; : >"$WORK/hc.get"
    for _ in $(seq 1 "$ROUNDS"); do
        read -r s g < <(measure "$REDIS_PORT" "$pipeline"); echo "$s" >>"$WORK/redis.set"; echo "$g" >>"$WORK/redis.get"
        read -r s g < <(measure "$HC_PORT" "$pipeline"); echo "$s" >>"$WORK/hc.set"; echo "$g" >>"$WORK/hc.get"
    done
    for op in set get; do
        r=$(median <"$WORK/redis.$op"); h=$(median <"$WORK/hc.$op")
        [ -n "$r" ] && [ -n "$h" ] || continue   # not in TESTS
        ratio=$(awk -v h="$h" -v r="$r" 'BEGIN { printf "%.2f", h / r }')
        printf "%-10s %-4s %14s %14s %8s\n" "-P $pipeline" "${op^^}" "$r" "$h" "$ratio"
    done
done
