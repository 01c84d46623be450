#!/usr/bin/env bash
# Hit ratio over two tiers (issue 13): a cache-aside workload (hypercache-loadgen cache:
# Zipf(0.99), 90% GETs, a miss is followed by a SET of the key, 10% SETs of a new version,
# every value read verified) over a data set 4x (MAXMEMORY + MAXDISK), against
#
#   hypercache  --maxmemory MAXMEMORY --maxdisk MAXDISK --maxmemory-policy allkeys-lru, then
#               allkeys-lfu; WAL off, a fresh --dir each;
#   redis       Debian's redis-server with the same maxmemory and policy (it holds RAM only),
#               persistence off;
#   sim         an exact LRU of MAXMEMORY + MAXDISK bytes (what allkeys-lru over both tiers
#               should approach) and of MAXMEMORY alone (the RAM-only reference), fed the same
#               operation sequence model by hypercache-loadgen simulate-lru.
#
# Each server run warms up WARMUP s (the cache fills through misses; pipeline WARMUP_PIPELINE,
# 16, so that a few million requests fit in it: an exact LRU of 320 MB needs about 2 million
# operations over 1.3M keys to reach its steady state), then measures DURATION s at PIPELINE
# (1); the first and last INTERVAL's hit ratios show whether the warmup was long enough.
# Meanwhile the data directory's size (du -sb) and INFO's cold_used_bytes, maxdisk,
# evicted_keys and used_memory are sampled every second. Prints one table: hit ratio, its
# ratio to the LRU simulations, ops/s, p99, the most disk used against the budget, evictions,
# and verification failures (must be 0); the samples stay in OUT as CSV.
#
# Servers run pinned to CPU $SERVER_CPU (1), the load generator to CPU $CLIENT_CPU (0), the
# servers alternating (HyperCache, Redis, HyperCache, Redis).
#
#   tools/bench/hit_ratio.sh                 # 64mb + 256mb, 1.3M keys x 1 KB, ~7 minutes
#   QUICK=1 tools/bench/hit_ratio.sh         # 16mb + 64mb, 15 s + 30 s per run, ~3.5 minutes
#   SERVERS=redis tools/bench/hit_ratio.sh   # only Redis and the simulations
#   HYPERCACHE_BIN=/path/to/hypercache POLICIES=allkeys-lru tools/bench/hit_ratio.sh
#
# A HyperCache binary without --maxdisk (built before issue 13) is skipped, its rows marked
# pending; with HC_WITHOUT_MAXDISK=1 it runs once without --maxdisk and --maxmemory-policy
# instead (disk unbounded: not a result, a test of this script).
set -euo pipefail
cd "$(dirname "$0")/../.."

if [[ -n "${QUICK:-}" ]]; then
    : "${MAXMEMORY:=16mb}" "${MAXDISK:=64mb}" "${WARMUP:=15}" "${DURATION:=30}" "${SIM_OPS:=3000000}"
fi
MAXMEMORY="${MAXMEMORY:-64mb}"
MAXDISK="${MAXDISK:-256mb}"
VALUE_SIZE="${VALUE_SIZE:-1024}"
WARMUP="${WARMUP:-30}"
WARMUP_PIPELINE="${WARMUP_PIPELINE:-16}"
DURATION="${DURATION:-60}"
INTERVAL="${INTERVAL:-10}"
CONNECTIONS="${CONNECTIONS:-50}"
PIPELINE="${PIPELINE:-1}"
SEED="${SEED:-1}"
SIM_OPS="${SIM_OPS:-10000000}"
POLICIES="${POLICIES:-allkeys-lru allkeys-lfu}"
SERVERS="${SERVERS:-hypercache redis}"
HC_THREADS="${HC_THREADS:-1}"
HC_WITHOUT_MAXDISK="${HC_WITHOUT_MAXDISK:-}"
SERVER_CPU="${SERVER_CPU:-1}"
CLIENT_CPU="${CLIENT_CPU:-0}"
OUT="${OUT:-$(mktemp -d /tmp/hypercache-hit-ratio.XXXXXX)}"
mkdir -p "$OUT"

# Sizes as Redis reads them: k = 1000, kb = 1024, m, mb, g, gb.
bytes_of() {
    local lower="${1,,}"
    local number="${lower%%[!0-9]*}" unit="${lower##*[0-9]}"
    case "$unit" in
        "" | b) echo "$number" ;;
        k) echo $((number * 1000)) ;;
        kb) echo $((number * 1024)) ;;
        m) echo $((number * 1000000)) ;;
        mb) echo $((number * 1048576)) ;;
        g) echo $((number * 1000000000)) ;;
        gb) echo $((number * 1073741824)) ;;
        *) echo "bad size $1" >&2; exit 2 ;;
    esac
}
MEM_BYTES=$(bytes_of "$MAXMEMORY")
DISK_BYTES=$(bytes_of "$MAXDISK")
KEYS="${KEYS:-$((4 * (MEM_BYTES + DISK_BYTES) / VALUE_SIZE))}"

if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null ||
    ! command -v jq >/dev/null; then
    bash tools/setup.sh
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/hypercache/target}"
cargo build --release -p hypercache-loadgen >&2
LOADGEN="$CARGO_TARGET_DIR/release/hypercache-loadgen"
HYPERCACHE_BIN="${HYPERCACHE_BIN:-$CARGO_TARGET_DIR/release/hypercache}"

log() { echo "[$(date +%T)] $*" >&2; }

# What HyperCache runs: "tiers" (with --maxdisk and the policy), "legacy" (without), "".
HC_MODE=""
if [[ " $SERVERS " == *" hypercache "* ]]; then
    if [[ ! -x "$HYPERCACHE_BIN" ]]; then
        echo "HYPERCACHE_BIN=$HYPERCACHE_BIN is not an executable: build it with" \
            "cargo build --release -p hypercache, or set SERVERS=redis" >&2
        exit 2
    fi
    if "$HYPERCACHE_BIN" --help | grep -q -- '--maxdisk'; then
        HC_MODE=tiers
    elif [[ -n "$HC_WITHOUT_MAXDISK" ]]; then
        HC_MODE=legacy
        log "$HYPERCACHE_BIN has no --maxdisk: running it without --maxdisk and --maxmemory-policy (HC_WITHOUT_MAXDISK)"
    else
        log "$HYPERCACHE_BIN has no --maxdisk: HyperCache skipped (HC_WITHOUT_MAXDISK=1 runs it without)"
    fi
fi

PORT=$((20000 + RANDOM % 10000))
SERVER_PID=""
SAMPLER_PID=""
stop_server() {
    if [[ -n "$SAMPLER_PID" ]]; then
        kill "$SAMPLER_PID" 2>/dev/null || true
        wait "$SAMPLER_PID" 2>/dev/null || true
        SAMPLER_PID=""
    fi
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        redis-cli -p "$PORT" shutdown nosave >/dev/null 2>&1 || kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    SERVER_PID=""
}
trap 'stop_server; rm -rf "$OUT/data"' EXIT

wait_for_pong() {
    for _ in $(seq 1 1000); do
        if [[ "$(redis-cli -p "$PORT" ping 2>/dev/null)" == PONG ]]; then return 0; fi
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
        sleep 0.02
    done
    echo "server on port $PORT did not start; its log:" >&2
    tail -20 "$OUT/$1.log" >&2
    return 1
}

# start NAME SERVER POLICY DIR
start() {
    local name="$1" server="$2" policy="$3" dir="$4"
    mkdir -p "$dir"
    case "$server" in
        hypercache)
            local tier_flags=()
            if [[ "$HC_MODE" == tiers ]]; then
                tier_flags=(--maxdisk "$MAXDISK" --maxmemory-policy "$policy")
            fi
            # HyperCache reads HYPERCACHE_* variables as settings and rejects unknown ones,
            # so this script's own HYPERCACHE_BIN must not reach it.
            env -u HYPERCACHE_BIN HYPERCACHE_SERVER__THREADS="$HC_THREADS" \
                taskset -c "$SERVER_CPU" "$HYPERCACHE_BIN" \
                --port "$PORT" --bind 127.0.0.1 --dir "$dir" --maxmemory "$MAXMEMORY" \
                "${tier_flags[@]}" --appendonly no >"$OUT/$name.log" 2>&1 &
            ;;
        redis)
            taskset -c "$SERVER_CPU" redis-server --port "$PORT" --bind 127.0.0.1 --dir "$dir" \
                --save '' --appendonly no --maxmemory "$MAXMEMORY" --maxmemory-policy "$policy" \
                --logfile "$OUT/$name.log" &
            ;;
    esac
    SERVER_PID=$!
    wait_for_pong "$name"
}

# One INFO field (0 when the server does not report it).
field() { awk -F: -v k="$1" '$1 == k { v = $2 } END { print (v == "" ? 0 : v) }' "$2"; }

# sample NAME DIR: one CSV line a second until killed.
sample() {
    local name="$1" dir="$2" info="$OUT/$1.info" start
    start=$(date +%s)
    echo "secs,du_bytes,cold_used_bytes,maxdisk,evicted_keys,used_memory" >"$OUT/$name.disk.csv"
    while true; do
        redis-cli -p "$PORT" info all 2>/dev/null | tr -d '\r' >"$info" || true
        echo "$(($(date +%s) - start)),$(du -sb "$dir" 2>/dev/null | cut -f1),$(field cold_used_bytes "$info"),$(field maxdisk "$info"),$(field evicted_keys "$info"),$(field used_memory "$info")" \
            >>"$OUT/$name.disk.csv"
        sleep 1
    done
}

# measure NAME SERVER POLICY
measure() {
    local name="$1" dir="$OUT/data/$1"
    log "$name: $KEYS keys x $VALUE_SIZE B, maxmemory $MAXMEMORY, ${WARMUP} s warmup + ${DURATION} s"
    rm -rf "$OUT/data" && mkdir -p "$OUT/data"
    start "$@" "$dir"
    sample "$name" "$dir" &
    SAMPLER_PID=$!
    taskset -c "$CLIENT_CPU" "$LOADGEN" cache --port "$PORT" --keys "$KEYS" \
        --value-size "$VALUE_SIZE" --distribution zipf --zipf-s 0.99 --read-ratio 0.9 \
        --connections "$CONNECTIONS" --pipeline "$PIPELINE" --seed "$SEED" \
        --warmup "$WARMUP" --warmup-pipeline "$WARMUP_PIPELINE" --duration "$DURATION" --interval "$INTERVAL" --json \
        >"$OUT/$name.json" 2>>"$OUT/loadgen.log" || true
    redis-cli -p "$PORT" info all 2>/dev/null | tr -d '\r' >"$OUT/$name.final.info" || true
    stop_server
    rm -rf "$OUT/data"
}

# simulate NAME CAPACITY_BYTES
simulate() {
    log "$1: exact LRU of $2 bytes, $SIM_OPS ops"
    "$LOADGEN" simulate-lru --capacity-bytes "$2" --keys "$KEYS" --value-size "$VALUE_SIZE" \
        --distribution zipf --zipf-s 0.99 --read-ratio 0.9 --connections "$CONNECTIONS" \
        --seed "$SEED" --ops "$SIM_OPS" --json >"$OUT/$1.json"
}

simulate sim-total "$((MEM_BYTES + DISK_BYTES))"
simulate sim-ram "$MEM_BYTES"

runs=()
for policy in $POLICIES; do
    for server in $SERVERS; do
        case "$server" in
            hypercache)
                [[ -n "$HC_MODE" ]] || continue
                if [[ "$HC_MODE" == legacy ]]; then
                    # Without the policy flag every policy is the same run: once is enough.
                    [[ " ${runs[*]} " == *" hypercache-unbounded "* ]] && continue
                    measure hypercache-unbounded hypercache "$policy"
                    runs+=(hypercache-unbounded)
                else
                    measure "hypercache-$policy" hypercache "$policy"
                    runs+=("hypercache-$policy")
                fi
                ;;
            redis)
                measure "redis-$policy" redis "$policy"
                runs+=("redis-$policy")
                ;;
            *) echo "unknown server $server (hypercache, redis)" >&2; exit 2 ;;
        esac
    done
done

json() { jq -r "$2" "$OUT/$1.json"; }
mb() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
SIM_TOTAL=$(json sim-total .hit_ratio)
SIM_RAM=$(json sim-ram .hit_ratio)
RESULTS="$OUT/results.md"
{
    echo "# tools/bench/hit_ratio.sh ($(date -u +%F), $(nproc) cores)"
    echo
    echo "Zipf(0.99), 90% GETs (miss -> SET), 10% SETs; $KEYS keys x $VALUE_SIZE B = $(mb $((KEYS * VALUE_SIZE))) MB;" \
        "maxmemory $MAXMEMORY, maxdisk $MAXDISK; $CONNECTIONS connections x pipeline $PIPELINE;" \
        "${WARMUP} s warmup at pipeline $WARMUP_PIPELINE, ${DURATION} s measured. Exact LRU: $(json sim-total .entry_charge) B per entry" \
        "(key + value), $(json sim-total .warmup_ops) warmup ops, $SIM_OPS ops."
    echo
    echo "| server / policy | hit ratio | / LRU sim RAM+disk | / LRU sim RAM | hit ratio first / last ${INTERVAL} s | ops/s | p99 us (all / read) | max disk used MB (du / cold_used_bytes) | disk budget MB | evicted keys | wrong values + errors |"
    echo "| --- | ---: | ---: | ---: | --- | ---: | --- | --- | ---: | ---: | ---: |"
    printf "| exact LRU sim, RAM + disk (%s entries) | %.4f | 1.00 | %.2f | | | | | | %s | |\n" \
        "$(json sim-total .capacity_entries)" "$SIM_TOTAL" "$(jq -n "$SIM_TOTAL / $SIM_RAM")" \
        "$(json sim-total .evictions)"
    printf "| exact LRU sim, RAM only (%s entries) | %.4f | %.2f | 1.00 | | | | | | %s | |\n" \
        "$(json sim-ram .capacity_entries)" "$SIM_RAM" "$(jq -n "$SIM_RAM / $SIM_TOTAL")" \
        "$(json sim-ram .evictions)"
    for run in "${runs[@]}"; do
        if [[ ! -s "$OUT/$run.json" ]]; then
            echo "| $run | failed: see $OUT/$run.log and $OUT/loadgen.log | | | | | | | | | |"
            continue
        fi
        hit=$(json "$run" '.hit_ratio // 0')
        budget="-"
        [[ "$run" == hypercache-allkeys-* ]] && budget=$(mb "$DISK_BYTES")
        csv="$OUT/$run.disk.csv"
        max_du=$(awk -F, 'NR > 1 && $2 > m { m = $2 } END { print m + 0 }' "$csv")
        max_cold=$(awk -F, 'NR > 1 && $3 > m { m = $3 } END { print m + 0 }' "$csv")
        evicted=$(field evicted_keys "$OUT/$run.final.info")
        printf "| %s | %.4f | %.2f | %.2f | %s | %s | %s | %s / %s | %s | %s | %s |\n" \
            "$run" "$hit" "$(jq -n "$hit / $SIM_TOTAL")" "$(jq -n "$hit / $SIM_RAM")" \
            "$(json "$run" '"\((.intervals[0].hit_ratio // 0) * 10000 | round / 10000) / \((.intervals[-1].hit_ratio // 0) * 10000 | round / 10000)"')" \
            "$(json "$run" '.ops_per_sec | round')" \
            "$(json "$run" '"\(.latency_us.all.p99) / \(.latency_us.read.p99)"')" \
            "$(mb "$max_du")" "$(mb "$max_cold")" "$budget" "$evicted" \
            "$(json "$run" '.wrong_values + .errors')"
    done
    for run in "${runs[@]}"; do
        [[ "$run" == hypercache-* && -s "$OUT/$run.disk.csv" ]] || continue
        echo
        echo "$run disk used over time (du, MB, the most in each 10 s from the start): $(awk -F, '
            NR > 1 { b = int($1 / 10); if ($2 > m[b]) m[b] = $2; if (b > last) last = b }
            END { for (i = 0; i <= last; i++) printf "%s%.0f", (i ? " " : ""), m[i] / 1048576 }' \
            "$OUT/$run.disk.csv")"
    done
    if [[ " $SERVERS " == *" hypercache "* && "$HC_MODE" != tiers ]]; then
        echo
        echo "HyperCache allkeys-lru / allkeys-lfu: pending: needs --maxdisk ($HYPERCACHE_BIN has no such flag)."
    fi
} >"$RESULTS"
cat "$RESULTS"
echo "(JSON reports, logs and per-second disk samples in $OUT)" >&2
