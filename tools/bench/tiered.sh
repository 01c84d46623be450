#!/usr/bin/env bash
# The tiered design against what users would run instead, in one command (issue 6):
#
#   ram      larger than RAM: KEYS values of VALUE_SIZE (2M x 1 KB = 2 GB) loaded over the
#            wire into a MAXMEMORY (64mb) process, then DURATION s of Zipf(0.99) traffic,
#            90% reads, 50 connections; then a hot-set run (HOT_KEYS keys that fit in
#            memory) for latency; then every key read back and checked. HyperCache, Debian's
#            redis-server (maxmemory + allkeys-lru: it must evict) and Debian's memcached
#            (-m 64 with extstore on disk, through its own text protocol).
#   misses   half of all GETs ask for absent keys, against the same data: HyperCache with
#            the cuckoo filter, without it (storage.filter: false), and with 32-bit
#            fingerprints; each loads its own copy, so RocksDB writes the bloom filters it
#            would have in that configuration. With and without the filter also a run of
#            absent GETs only; every run reports the server's and the load generator's CPU
#            per GET, and the last row the ratio if absent GETs cost nothing.
#   restart  clean shutdown, then the time from process start to the first PONG and the hit
#            ratios of the first 10 s, against redis-server restarting from its RDB; then the
#            same at BIG_KEYS (20M) keys of BIG_VALUE_SIZE (100 B: ~2 GB, as the disk allows)
#            to show the restart time does not grow with the number of keys.
#
#   tools/bench/tiered.sh                  # all three, the documented run (~25 minutes)
#   tools/bench/tiered.sh ram              # one part
#   KEYS=200000 DURATION=10 BIG_KEYS=0 tools/bench/tiered.sh   # a quick look
#   HC_THREADS=0 tools/bench/tiered.sh ram   # HyperCache's default: one async worker per core
#
# Every measurement is also kept as JSON under OUT (default: a new directory in /tmp).
set -euo pipefail
cd "$(dirname "$0")/../.."

PARTS="${1:-all}"
KEYS="${KEYS:-2000000}"
VALUE_SIZE="${VALUE_SIZE:-1024}"
MAXMEMORY="${MAXMEMORY:-64mb}"
DURATION="${DURATION:-60}"
CONNECTIONS="${CONNECTIONS:-50}"
HOT_KEYS="${HOT_KEYS:-16000}"
BIG_KEYS="${BIG_KEYS:-20000000}"
BIG_VALUE_SIZE="${BIG_VALUE_SIZE:-100}"
SKIP_MEMCACHED="${SKIP_MEMCACHED:-}"
OUT="${OUT:-$(mktemp -d /tmp/hypercache-bench.XXXXXX)}"
mkdir -p "$OUT"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/hypercache/target}"
bash tools/setup.sh
cargo build --release --bin hypercache -p hypercache -p hypercache-loadgen >&2
HC_BIN="$CARGO_TARGET_DIR/release/hypercache"
LOADGEN="$CARGO_TARGET_DIR/release/hypercache-loadgen"

PORT=$((20000 + RANDOM % 10000))
SERVER_PID=""
stop_server() {
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    SERVER_PID=""
}
trap 'stop_server; rm -rf "$OUT/data"' EXIT

# Stops the server as a user would, with SHUTDOWN (and its arguments, e.g. SAVE), so a clean
# stop is what the next start sees; waits for the process to exit.
shutdown_server() {
    redis-cli -p "$PORT" shutdown "$@" >/dev/null 2>&1 || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}

log() { echo "[$(date +%T)] $*" >&2; }

# Seconds since the epoch, with fractions.
now() { date +%s.%N; }

# Waits until the RESP server on $PORT answers PONG (Redis answers -LOADING until its RDB is
# in memory). Prints the seconds since $1.
wait_for_pong() {
    local started="$1"
    for _ in $(seq 1 60000); do
        if [[ "$(redis-cli -p "$PORT" ping 2>/dev/null)" == PONG ]]; then
            awk -v a="$(now)" -v b="$started" 'BEGIN { printf "%.3f\n", a - b }'
            return 0
        fi
        sleep 0.01
    done
    echo "server on port $PORT did not answer" >&2
    return 1
}

wait_for_memcached() {
    for _ in $(seq 1 500); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then return 0; fi
        sleep 0.01
    done
    echo "memcached on port $PORT did not start" >&2
    return 1
}

# start_hypercache DIR [VAR=value ...]: the release binary on its embedded defaults plus
# MAXMEMORY and HC_THREADS async workers, with extra settings as environment variables.
# One async worker by default, as Redis serves from one thread: on this 2-core machine the
# load generator takes the other core, and a second worker only fights it for the CPU
# (hot-set read p99 1,349 us with 2 workers, 597 us with 1; Redis 746 us).
HC_THREADS="${HC_THREADS:-1}"
start_hypercache() {
    local dir="$1"
    shift
    env HYPERCACHE_SERVER__THREADS="$HC_THREADS" "$@" \
        "$HC_BIN" --port "$PORT" --dir "$dir" --maxmemory "$MAXMEMORY" \
        >>"$OUT/hypercache.log" 2>&1 &
    SERVER_PID=$!
}

# start_redis DIR MAXMEMORY: Debian's redis-server, RDB file in DIR, no automatic saves.
start_redis() {
    local limit=()
    if [[ "$2" != 0 ]]; then limit=(--maxmemory "$2" --maxmemory-policy allkeys-lru); fi
    redis-server --port "$PORT" --bind 127.0.0.1 --dir "$1" --save '' --appendonly no \
        "${limit[@]}" --logfile "$OUT/redis.log" &
    SERVER_PID=$!
}

start_memcached() {
    memcached -p "$PORT" -l 127.0.0.1 -U 0 -u "$(id -un)" -m "${MAXMEMORY%mb}" -c 4096 \
        -o "ext_path=$1/extstore:$((KEYS * (VALUE_SIZE + 200) * 2 / 1048576 + 256))m" \
        >>"$OUT/memcached.log" 2>&1 &
    SERVER_PID=$!
}

peak_rss_mb() { awk '/VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$SERVER_PID/status"; }
info_field() { redis-cli -p "$PORT" info "$1" | tr -d '\r' | awk -F: -v k="$2" '$1 == k {print $2}'; }
json() { jq -r "$2" "$OUT/$1.json"; }

# loadgen NAME SUBCOMMAND ARGS...: runs the load generator against $PORT, report in NAME.json.
loadgen() {
    local name="$1"
    shift
    local subcommand="$1"
    shift
    "$LOADGEN" "$subcommand" --port "$PORT" --keys "$KEYS" --value-size "$VALUE_SIZE" \
        --connections "$CONNECTIONS" --json "$@" >"$OUT/$name.json" 2>>"$OUT/loadgen.log" || true
}

zipf_run() {
    loadgen "$1" run --duration "$DURATION" --distribution zipf --zipf-s 0.99 --read-ratio 0.9 \
        --interval 10 "${@:2}"
}

# The hot set: HOT_KEYS keys (a few MB) that fit in every server's memory, read and written
# uniformly; 10 s to warm up, then 20 s measured. This is the latency the target compares.
hot_run() {
    "$LOADGEN" run --port "$PORT" --keys "$HOT_KEYS" --value-size "$VALUE_SIZE" \
        --connections "$CONNECTIONS" --read-ratio 0.9 --warmup 10 --duration 20 --json "${@:2}" \
        >"$OUT/$1.json" 2>>"$OUT/loadgen.log" || true
}

RESULTS="$OUT/results.md"
row() { echo "| $* |" >>"$RESULTS"; }

part_ram() {
    log "ram: HyperCache"
    rm -rf "$OUT/data" && mkdir -p "$OUT/data"
    start_hypercache "$OUT/data/hc"
    wait_for_pong "$(now)" >/dev/null
    loadgen hc-load load
    local before_hot before_cold before_miss
    before_hot=$(info_field tiers hot_hits)
    before_cold=$(info_field tiers cold_hits)
    before_miss=$(info_field tiers cold_misses)
    zipf_run hc-zipf
    local hot=$(($(info_field tiers hot_hits) - before_hot))
    local cold=$(($(info_field tiers cold_hits) - before_cold))
    local cold_miss=$(($(info_field tiers cold_misses) - before_miss))
    hot_run hc-hot
    loadgen hc-verify verify --pipeline 16
    local disk
    disk=$(du -sm "$OUT/data/hc" | cut -f1)
    local rss
    rss=$(peak_rss_mb)
    echo "{\"hot_hits\":$hot,\"cold_hits\":$cold,\"cold_misses\":$cold_miss,\"peak_rss_mb\":$rss,\"disk_mb\":$disk}" \
        >"$OUT/hc-tiers.json"
    shutdown_server

    log "ram: redis-server maxmemory $MAXMEMORY allkeys-lru"
    mkdir -p "$OUT/data/redis"
    start_redis "$OUT/data/redis" "$MAXMEMORY"
    wait_for_pong "$(now)" >/dev/null
    loadgen redis-load load
    zipf_run redis-zipf
    hot_run redis-hot
    loadgen redis-verify verify --pipeline 16 --allow-missing
    echo "{\"peak_rss_mb\":$(peak_rss_mb),\"evicted\":$(info_field stats evicted_keys)}" >"$OUT/redis-extra.json"
    stop_server

    if [[ -z "$SKIP_MEMCACHED" ]]; then
        log "ram: memcached -m ${MAXMEMORY%mb} with extstore"
        mkdir -p "$OUT/data/memcached"
        start_memcached "$OUT/data/memcached"
        wait_for_memcached
        loadgen mc-load load --protocol memcache
        zipf_run mc-zipf --protocol memcache
        hot_run mc-hot --protocol memcache
        loadgen mc-verify verify --protocol memcache --pipeline 16 --allow-missing
        echo "{\"peak_rss_mb\":$(peak_rss_mb),\"disk_mb\":$(du -sm "$OUT/data/memcached" | cut -f1)}" \
            >"$OUT/mc-extra.json"
        stop_server
    fi
    rm -rf "$OUT/data"

    {
        echo
        echo "## Larger than RAM: $KEYS keys x $VALUE_SIZE B, maxmemory $MAXMEMORY, Zipf(0.99) 90% reads, $CONNECTIONS connections, ${DURATION} s"
        echo
        echo "| server | load keys/s | ops/s | read p50 / p99 / p99.9 us | hit ratio | hot-set read p99 us | keys retrievable | peak RSS MB | notes |"
        echo "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | --- |"
    } >>"$RESULTS"
    local servers=(hc redis)
    [[ -z "$SKIP_MEMCACHED" ]] && servers+=(mc)
    for s in "${servers[@]}"; do
        local notes=""
        case "$s" in
            hc) notes="hot-tier hit ratio $(jq '(.hot_hits / (.hot_hits + .cold_hits)) * 1000 | round / 1000' "$OUT/hc-tiers.json"), cold reads/s $(jq --argjson d "$(json hc-zipf .duration_secs)" '(.cold_hits + .cold_misses) / $d | round' "$OUT/hc-tiers.json"), disk $(json hc-tiers .disk_mb) MB" ;;
            redis) notes="evicted $(json redis-extra .evicted) keys" ;;
            mc) notes="extstore disk $(json mc-extra .disk_mb) MB" ;;
        esac
        local rss
        case "$s" in hc) rss=$(json hc-tiers .peak_rss_mb) ;; redis) rss=$(json redis-extra .peak_rss_mb) ;; mc) rss=$(json mc-extra .peak_rss_mb) ;; esac
        row "$s | $(json "$s-load" '.ops_per_sec | round') | $(json "$s-zipf" '.ops_per_sec | round') | $(json "$s-zipf" '"\(.latency_us.read.p50) / \(.latency_us.read.p99) / \(.latency_us.read.p999)"') | $(json "$s-zipf" '.hit_ratio * 1000 | round / 1000') | $(json "$s-hot" .latency_us.read.p99) | $(json "$s-verify" .hits) / $KEYS | $rss | $notes"
    done
    row "errors (load, run, verify) | $(for s in "${servers[@]}"; do echo -n "$s: $(json "$s-load" .errors)+$(json "$s-zipf" '.errors + .wrong_values')+$(json "$s-verify" '.errors + .wrong_values') "; done) | | | | | | | |"
}

# CPU clock ticks (user + system) process $1 has used.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TICKS_PER_SEC=$(getconf CLK_TCK)

# misses_run NAME ABSENT_RATIO: one read-only run, Zipf over the present keys, with that
# fraction of GETs for absent keys. Also records the CPU seconds the server and the load
# generator used: both runs are CPU-bound on this machine, so ops/s follows CPU per GET.
misses_run() {
    local name="$1" absent="$2"
    local before_miss before_fp before_server loadgen_ticks
    before_miss=$(info_field tiers cold_misses)
    before_fp=$(info_field tiers filter_false_positives)
    before_server=$(cpu_ticks "$SERVER_PID")
    # The subshell's own children's ticks, read after the load generator has been waited for.
    loadgen_ticks=$(
        loadgen "$name" run --duration "$((DURATION / 2))" --distribution zipf --read-ratio 1 \
            --absent-ratio "$absent"
        awk '{print $16 + $17}' "/proc/$BASHPID/stat"
    )
    jq -n --argjson cold_misses "$(($(info_field tiers cold_misses) - before_miss))" \
        --argjson false_positives "$(($(info_field tiers filter_false_positives) - before_fp))" \
        --argjson server "$(($(cpu_ticks "$SERVER_PID") - before_server))" \
        --argjson loadgen "$loadgen_ticks" --argjson hz "$TICKS_PER_SEC" \
        --argjson ops "$(json "$name" .ops)" \
        '{$cold_misses, $false_positives, server_cpu_us_per_get: ($server / $hz / $ops * 1e6),
          loadgen_cpu_us_per_get: ($loadgen / $hz / $ops * 1e6)}' >"$OUT/$name-tiers.json"
}

# misses_point NAME ABSENT_ONLY [VAR=value ...]: loads KEYS keys afresh into HyperCache
# started with the settings given (each run writes its own RocksDB files, so RocksDB keeps the
# bloom filters that configuration would have), then one miss-heavy run; with ABSENT_ONLY=yes
# also a run of absent GETs only (NAME-absent), to price one absent GET by itself.
misses_point() {
    local name="$1" absent_only="$2"
    shift 2
    log "misses: $name: loading $KEYS keys"
    rm -rf "$OUT/data" && mkdir -p "$OUT/data"
    start_hypercache "$OUT/data/hc" "$@"
    wait_for_pong "$(now)" >/dev/null
    loadgen "$name-load" load
    misses_run "$name" 0.5
    if [[ "$absent_only" == yes ]]; then misses_run "$name-absent" 1; fi
    stop_server
    rm -rf "$OUT/data"
}

part_misses() {
    misses_point misses-filter yes
    misses_point misses-nofilter yes HYPERCACHE_STORAGE__FILTER=false
    # 32-bit fingerprints take twice the memory: a 20% filter share (from the hot tier's).
    misses_point misses-filter32 no HYPERCACHE_STORAGE__FILTER_FINGERPRINT_BITS=32 \
        HYPERCACHE_STORAGE__MEMORY_SPLIT__HOT_PERCENT=45 \
        HYPERCACHE_STORAGE__MEMORY_SPLIT__FILTER_PERCENT=20
    {
        echo
        echo "## Miss-heavy: 50% of GETs for absent keys (present half Zipf 0.99), $KEYS keys x $VALUE_SIZE B, maxmemory $MAXMEMORY, $((DURATION / 2)) s each"
        echo
        echo "| run | ops/s | read p99 us | absent reads | cold-tier reads for absent keys | server CPU us/GET | load generator CPU us/GET | errors |"
        echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    } >>"$RESULTS"
    for run in misses-filter misses-filter32 misses-nofilter misses-filter-absent misses-nofilter-absent; do
        row "$run | $(json "$run" '.ops_per_sec | round') | $(json "$run" .latency_us.read.p99) | $(json "$run" .absent_reads) | $(json "$run-tiers" .cold_misses) | $(json "$run-tiers" '.server_cpu_us_per_get * 10 | round / 10') | $(json "$run-tiers" '.loadgen_cpu_us_per_get * 10 | round / 10') | $(json "$run" '.errors + .wrong_values + .absent_hits')"
    done
    for run in misses-filter misses-filter32; do
        row "$run / misses-nofilter | $(jq -n --argjson a "$(json "$run" .ops_per_sec)" --argjson b "$(json misses-nofilter .ops_per_sec)" '$a / $b * 100 | round / 100') | | | | | | "
    done
    # The most the filter could give: CPU per GET of the filter-off mix against the filter-on
    # mix with its absent GETs (priced by the absent-only run) costing nothing at all.
    local cpu='(.server_cpu_us_per_get + .loadgen_cpu_us_per_get)'
    row "ceiling: misses-nofilter / misses-filter with free absent GETs | $(jq -n \
        --argjson off "$(json misses-nofilter-tiers "$cpu")" \
        --argjson mix "$(json misses-filter-tiers "$cpu")" \
        --argjson absent "$(json misses-filter-absent-tiers "$cpu")" \
        '$off / ($mix - $absent / 2) * 100 | round / 100') | | | | | | "
}

# restart_point LABEL KEYS VALUE_SIZE: load, traffic, clean stop, timed restart, 10 s of
# traffic with per-second hit ratios, for HyperCache and then redis-server.
restart_point() {
    local label="$1" keys="$2" size="$3"
    local saved_keys="$KEYS" saved_size="$VALUE_SIZE"
    KEYS="$keys" VALUE_SIZE="$size"
    rm -rf "$OUT/data" && mkdir -p "$OUT/data"

    log "restart $label: HyperCache, loading $keys keys of $size B"
    start_hypercache "$OUT/data/hc"
    wait_for_pong "$(now)" >/dev/null
    loadgen "restart-$label-hc-load" load
    loadgen "restart-$label-hc-before" run --duration 10 --distribution zipf --read-ratio 0.9
    shutdown_server
    local started
    started=$(now)
    start_hypercache "$OUT/data/hc"
    local hc_secs
    hc_secs=$(wait_for_pong "$started")
    local startup_state
    startup_state=$(info_field persistence startup_state)
    # Hot-tier hit ratio per second, sampled from INFO while the traffic runs.
    (
        local last_hot=0 last_cold=0
        for second in $(seq 1 10); do
            sleep 1
            local hot cold
            hot=$(info_field tiers hot_hits)
            cold=$(info_field tiers cold_hits)
            echo "$second $((hot - last_hot)) $((cold - last_cold))"
            last_hot=$hot last_cold=$cold
        done
    ) >"$OUT/restart-$label-hc-hot.txt" &
    local sampler=$!
    loadgen "restart-$label-hc-after" run --duration 10 --interval 1 --distribution zipf --read-ratio 0.9
    wait "$sampler" || true
    stop_server
    local disk
    disk=$(du -sm "$OUT/data/hc" | cut -f1)
    rm -rf "$OUT/data/hc"

    log "restart $label: redis-server (maxmemory $MAXMEMORY and unlimited), RDB"
    local redis_cells=()
    for limit in "$MAXMEMORY" 0; do
        mkdir -p "$OUT/data/redis"
        start_redis "$OUT/data/redis" "$limit"
        wait_for_pong "$(now)" >/dev/null
        loadgen "restart-$label-redis$limit-load" load
        loadgen "restart-$label-redis$limit-before" run --duration 10 --distribution zipf --read-ratio 0.9
        shutdown_server save
        started=$(now)
        start_redis "$OUT/data/redis" "$limit"
        local redis_secs
        redis_secs=$(wait_for_pong "$started")
        loadgen "restart-$label-redis$limit-after" run --duration 10 --interval 1 --distribution zipf --read-ratio 0.9
        stop_server
        rm -rf "$OUT/data/redis"
        redis_cells+=("$(printf '%.2f' "$redis_secs") s, first-second / 10 s hit ratio $(json "restart-$label-redis$limit-after" '"\(.intervals[0].hit_ratio * 1000 | round / 1000) / \(.hit_ratio * 1000 | round / 1000)"')")
    done
    KEYS="$saved_keys" VALUE_SIZE="$saved_size"

    local hot_series
    hot_series=$(awk '{ printf "%s%.2f", (NR > 1 ? " " : ""), ($2 + $3 > 0 ? $2 / ($2 + $3) : 0) }' "$OUT/restart-$label-hc-hot.txt")
    row "$label: $keys x $size B ($disk MB on disk) | $(printf '%.2f' "$hc_secs") s ($startup_state) | $(json "restart-$label-hc-after" '.hit_ratio * 1000 | round / 1000') | $hot_series | $(json "restart-$label-hc-after" '.ops_per_sec | round') | ${redis_cells[0]} | ${redis_cells[1]}"
}

part_restart() {
    {
        echo
        echo "## Warm restart after a clean stop (maxmemory $MAXMEMORY; Redis from its RDB)"
        echo
        echo "| data set | HyperCache: start to PONG | keyspace hit ratio, first 10 s | hot-tier hit ratio, seconds 1..10 | ops/s, first 10 s | redis maxmemory $MAXMEMORY: start to PONG, hit ratio | redis unlimited: start to PONG, hit ratio |"
        echo "| --- | ---: | ---: | --- | ---: | --- | --- |"
    } >>"$RESULTS"
    restart_point small "$KEYS" "$VALUE_SIZE"
    if [[ "$BIG_KEYS" != 0 ]]; then
        restart_point big "$BIG_KEYS" "$BIG_VALUE_SIZE"
    fi
    rm -rf "$OUT/data"
}

echo "# tools/bench/tiered.sh $PARTS ($(date -u +%F), $(nproc) cores)" >"$RESULTS"
case "$PARTS" in
    ram) part_ram ;;
    misses) part_misses ;;
    restart) part_restart ;;
    all) part_ram; part_misses; part_restart ;;
    *) echo "usage: $0 [ram|misses|restart|all]" >&2; exit 2 ;;
esac
cat "$RESULTS"
echo "(JSON reports in $OUT)" >&2
