#!/usr/bin/env bash
# Replication benchmarks (issue 16), in one run:
#   1. SET throughput of a primary with one replica attached against the same primary without
#      one, rounds alternating (target: at least 0.9x), for HyperCache and for redis-server as
#      the reference, with the primary's CPU time per SET (from /proc: what replication costs
#      the primary itself) and the replica's lag sampled during the loaded run (offset units
#      behind the primary, p50/p99/max, and the p99 in milliseconds at the measured rate);
#   2. full-sync time of a data set of FULL_KEYS x FULL_VALUE bytes (default 2M x 1000 B,
#      2 GB): a fresh HyperCache replica of a HyperCache primary against a fresh redis-server
#      replica of a redis-server primary holding the same data.
# The primaries are pinned to CPU $SERVER_CPU (1), redis-benchmark and the replicas to CPU
# $CLIENT_CPU (0): on two cores the replica has to share one with the load generator, the same
# handicap for both servers. Persistence: HyperCache needs its WAL (appendfsync everysec);
# redis-server runs with RDB replication (its default) and no AOF.
#
#   ROUNDS=3 REQUESTS=500000 tools/bench/replication.sh
#   FULL_KEYS=200000 tools/bench/replication.sh   # a quicker full-sync comparison
#   SKIP_THROUGHPUT=1 tools/bench/replication.sh  # the full-sync comparison alone
set -euo pipefail
cd "$(dirname "$0")/../.."
source tools/bench/lib.sh

ROUNDS="${ROUNDS:-3}"
REQUESTS="${REQUESTS:-500000}"
KEYSPACE="${KEYSPACE:-1000000}"
VALUE="${VALUE:-100}"
FULL_KEYS="${FULL_KEYS:-2000000}"
FULL_VALUE="${FULL_VALUE:-1000}"
SERVER_CPU="${SERVER_CPU:-1}"
CLIENT_CPU="${CLIENT_CPU:-0}"

build_hypercache
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
    for port in "${PORTS_USED[@]:-}"; do
        [ -n "$port" ] && redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
    done
    sleep 0.5
    rm -rf "$WORK"
}
PORTS_USED=()
trap cleanup EXIT
base=$((30000 + RANDOM % 10000))

# Waits until the server on port $1 answers, -LOADING included (a replica loading its
# primary's snapshot answers PING with -LOADING, as Redis does).
wait_answers() {
    for _ in $(seq 1 200); do
        if redis-cli -p "$1" ping 2>/dev/null | grep -Eq "PONG|LOADING"; then return 0; fi
        sleep 0.05
    done
    echo "server on port $1 did not start" >&2
    return 1
}

start_hc() { # name port cpu [extra flags...]
    local name=$1 port=$2 cpu=$3
    shift 3
    mkdir -p "$WORK/$name"
    PORTS_USED+=("$port")
    HYPERCACHE_SERVER__THREADS=1 taskset -c "$cpu" "$BIN" --port "$port" --dir "$WORK/$name" \
        --maxmemory 1gb --appendonly yes --appendfsync everysec "$@" >"$WORK/$name.log" 2>&1 &
    wait_answers "$port"
}

stop() { # port [dir to remove]
    redis-cli -p "$1" shutdown nosave >/dev/null 2>&1 || true
    sleep 0.3
    if [ -n "${2:-}" ]; then rm -rf "$2"; fi
}

offset_of() { redis-cli -p "$1" info replication | tr -d '\r' | awk -F: '$1 == "master_repl_offset" { print $2 }'; }

wait_caught_up() { # primary replica
    for _ in $(seq 1 6000); do
        local link
        link=$(redis-cli -p "$2" info replication | tr -d '\r' | awk -F: '$1 == "master_link_status" { print $2 }')
        if [ "$link" = up ] && [ "$(offset_of "$1")" = "$(offset_of "$2")" ]; then return 0; fi
        sleep 0.05
    done
    echo "replica on $2 did not catch up" >&2
    return 1
}

set_rps() { # port pipeline
    taskset -c "$CLIENT_CPU" redis-benchmark -p "$1" -t set -n "$REQUESTS" -r "$KEYSPACE" \
        -d "$VALUE" -c 50 -P "$2" -q --csv | tr -d '"' | awk -F, '$1 == "SET" { printf "%d", $2 }'
}

# Samples records-behind every 20 ms while the file $3 exists.
sample_lag() { # primary replica flag-file out-file
    while [ -e "$3" ]; do
        local p r
        # The replica first: read later, the primary's offset can only overstate the lag.
        r=$(offset_of "$2") p=$(offset_of "$1")
        [ -n "$p" ] && [ -n "$r" ] && echo $((p - r)) >>"$4"
        sleep 0.02
    done
}

percentile() { # p < numbers
    sort -n | awk -v p="$1" '{ v[NR] = $1 } END { if (NR == 0) { print 0 } else { i = int(NR * p / 100 + 0.999); if (i < 1) i = 1; print v[i] } }'
}

# CPU time (clock ticks) the process has used: user + system.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

start_redis() { # name port cpu [extra flags...]
    local name=$1 port=$2 cpu=$3
    shift 3
    mkdir -p "$WORK/$name"
    PORTS_USED+=("$port")
    taskset -c "$cpu" redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
        --repl-diskless-sync-delay 0 --dir "$WORK/$name" --logfile "$WORK/$name.log" "$@" &
    LAST_PID=$!
    wait_answers "$port"
}

# Rounds of SET against a primary of kind $1 (hc | redis), alone and with a replica attached,
# alternating; prints one line per pipeline with the medians, and the primary's CPU time per
# SET (the cost replication adds, whatever the replica's own CPU does to the load generator).
throughput_rounds() {
    local kind=$1 primary=$((base + 2)) replica=$((base + 3))
    if [ "$kind" = hc ]; then
        start_hc "$kind-primary" "$primary" "$SERVER_CPU"
        local pid
        pid=$(pgrep -f -- "--port $primary --dir $WORK/$kind-primary")
    else
        start_redis "$kind-primary" "$primary" "$SERVER_CPU"
        local pid=$LAST_PID
    fi
    declare -A results=()
    for round in $(seq 1 "$ROUNDS"); do
        for pipeline in 16 1; do
            local before after alone with cpu_alone cpu_with
            before=$(cpu_ticks "$pid")
            alone=$(set_rps "$primary" "$pipeline")
            after=$(cpu_ticks "$pid")
            cpu_alone=$(awk -v t=$((after - before)) -v n="$REQUESTS" 'BEGIN { printf "%.3f", t * 10000 / n }')
            if [ "$kind" = hc ]; then
                start_hc "$kind-replica$round" "$replica" "$CLIENT_CPU" --replicaof 127.0.0.1 "$primary"
            else
                start_redis "$kind-replica$round" "$replica" "$CLIENT_CPU" --replicaof 127.0.0.1 "$primary"
            fi
            wait_caught_up "$primary" "$replica"
            touch "$WORK/sampling"
            sample_lag "$primary" "$replica" "$WORK/sampling" "$WORK/$kind-lag-$pipeline" &
            local sampler=$!
            before=$(cpu_ticks "$pid")
            with=$(set_rps "$primary" "$pipeline")
            after=$(cpu_ticks "$pid")
            cpu_with=$(awk -v t=$((after - before)) -v n="$REQUESTS" 'BEGIN { printf "%.3f", t * 10000 / n }')
            rm -f "$WORK/sampling"
            wait "$sampler" || true
            wait_caught_up "$primary" "$replica"
            stop "$replica" "$WORK/$kind-replica$round"
            echo "$kind round $round -P$pipeline: alone $alone/s ($cpu_alone us CPU per SET), with replica $with/s ($cpu_with us) ($(ratio "$with" "$alone"))"
            results[alone$pipeline]+="$alone "
            results[with$pipeline]+="$with "
            results[cpualone$pipeline]+="$cpu_alone "
            results[cpuwith$pipeline]+="$cpu_with "
        done
    done
    stop "$primary" "$WORK/$kind-primary"
    for pipeline in 16 1; do
        local alone with cpu_alone cpu_with p50 p99 max p99_ms
        alone=$(echo "${results[alone$pipeline]}" | tr ' ' '\n' | grep . | median)
        with=$(echo "${results[with$pipeline]}" | tr ' ' '\n' | grep . | median)
        cpu_alone=$(echo "${results[cpualone$pipeline]}" | tr ' ' '\n' | grep . | median)
        cpu_with=$(echo "${results[cpuwith$pipeline]}" | tr ' ' '\n' | grep . | median)
        p50=$(percentile 50 <"$WORK/$kind-lag-$pipeline")
        p99=$(percentile 99 <"$WORK/$kind-lag-$pipeline")
        max=$(percentile 100 <"$WORK/$kind-lag-$pipeline")
        # HyperCache: offsets count records (one per SET), so records behind / (SETs per ms) is
        # the lag in time. Redis: offsets count bytes of the command stream.
        p99_ms=$(awk -v r="$p99" -v rps="$with" -v k="$kind" 'BEGIN { per = (k == "hc") ? 1 : 150; printf "%.1f", r / per / (rps / 1000) }')
        echo "$kind -P$pipeline median: alone $alone/s, with replica $with/s, ratio $(ratio "$with" "$alone"); primary CPU per SET $cpu_alone -> $cpu_with us (alone/with $(ratio "$cpu_alone" "$cpu_with")); lag p50 $p50 p99 $p99 max $max (offset units; p99 ~ $p99_ms ms)"
    done
}

if [ -z "${SKIP_THROUGHPUT:-}" ]; then
    echo "== SET throughput: primary alone vs primary + 1 replica (pinned, $ROUNDS rounds, -n $REQUESTS -r $KEYSPACE -d $VALUE -c 50)"
    throughput_rounds hc
    throughput_rounds redis
fi

echo "== full sync of $FULL_KEYS keys x $FULL_VALUE B: HyperCache vs redis-server"
full_sync_seconds() { # kind
    local kind=$1 p=$((base + 10)) r=$((base + 11))
    if [ "$kind" = hc ]; then
        start_hc fullp "$p" "$SERVER_CPU"
    else
        mkdir -p "$WORK/rp" "$WORK/rr"
        PORTS_USED+=("$p" "$r")
        taskset -c "$SERVER_CPU" redis-server --port "$p" --bind 127.0.0.1 --save '' --appendonly no \
            --repl-diskless-sync-delay 0 --dir "$WORK/rp" --daemonize yes --logfile "$WORK/rp.log"
        wait_for "$p"
    fi
    # Keys are picked at random (with repeats): three times the key count covers about 95%.
    # Pipelines of 2: at -P16 a HyperCache whose data is twice its maxmemory receives writes
    # faster than it demotes them and answers some with OOM, which ends redis-benchmark.
    taskset -c "$CLIENT_CPU" redis-benchmark -p "$p" -t set -n $((FULL_KEYS * 3)) -r "$FULL_KEYS" \
        -d "$FULL_VALUE" -c 50 -P 2 -q >/dev/null
    local keys
    keys=$(redis-cli -p "$p" dbsize)
    local started
    started=$(date +%s.%N)
    if [ "$kind" = hc ]; then
        start_hc fullr "$r" "$CLIENT_CPU" --replicaof 127.0.0.1 "$p"
    else
        taskset -c "$CLIENT_CPU" redis-server --port "$r" --bind 127.0.0.1 --save '' --appendonly no \
            --dir "$WORK/rr" --daemonize yes --logfile "$WORK/rr.log" --replicaof 127.0.0.1 "$p"
        wait_for "$r"
    fi
    wait_caught_up "$p" "$r"
    local finished
    finished=$(date +%s.%N)
    local replica_keys
    replica_keys=$(redis-cli -p "$r" dbsize)
    echo "$kind: $keys keys on the primary, $replica_keys on the replica, full sync $(awk -v a="$started" -v b="$finished" 'BEGIN { printf "%.1f", b - a }') s" >&2
    awk -v a="$started" -v b="$finished" 'BEGIN { printf "%.1f", b - a }'
    stop "$r"
    stop "$p"
    rm -rf "$WORK/fullp" "$WORK/fullr" "$WORK/rp" "$WORK/rr"
}
hc_sync=$(full_sync_seconds hc)
redis_sync=$(full_sync_seconds redis)
echo "full sync: hypercache $hc_sync s, redis-server $redis_sync s (hypercache / redis $(ratio "$hc_sync" "$redis_sync"))"
