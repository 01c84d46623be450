#!/usr/bin/env bash
# User-space instructions per request, counted by callgrind, of HyperCache against Debian's
# redis-server 7.0.15 and Valkey 9.1 for the hot-path commands and scripts (issues 15, 18):
#   redis-benchmark -n $REQUESTS -c 50 -P $PIPELINE <command>   (after a 5,000-request warm-up)
# The count does not drift with the machine as throughput does (this one drifts 2x in an
# hour), so a change of a few percent shows in one run. It leaves out the kernel (system
# calls) and the cost of cache misses, which tools/bench/compare.sh and scripting.sh
# include: use it to find and check a change, and those for the ratio a user sees.
# Persistence off everywhere; HyperCache with one async worker. Each server runs under
# valgrind (about 50x slower), so requests are few; the count per request is steady from a
# few thousand on.
#
#   tools/bench/instructions.sh                  # 20,000 requests, -P 16, every command
#   PIPELINE=1 REQUESTS=10000 tools/bench/instructions.sh
#   BASELINE_BIN=/path/to/old/hypercache tools/bench/instructions.sh   # adds an older build
set -euo pipefail
cd "$(dirname "$0")/../.."
source tools/bench/lib.sh

REQUESTS="${REQUESTS:-20000}"
PIPELINE="${PIPELINE:-16}"
build_hypercache valgrind
VALKEY="$(valkey_server)"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

SCRIPT="return redis.call('incr', KEYS[1])"
LIBRARY="#!lua name=bench
redis.register_function('incr_it', function(keys, args) return redis.call('incr', keys[1]) end)"
SHA=$(echo -n "$SCRIPT" | sha1sum | cut -d' ' -f1)
COMMANDS=("get counter" "set counter 1" "incr counter" "evalsha $SHA 1 counter"
    "fcall incr_it 1 counter")

# Prints instructions per request of server $1 (redis | valkey | hc | baseline) for the
# command in $2.
count() {
    # Below the kernel's ephemeral range (32768-), where redis-benchmark's own connections live.
    local server=$1 command=$2 port=$((20000 + RANDOM % 10000))
    local dir="$WORK/$server-$port"
    mkdir -p "$dir"
    local out="$dir/callgrind.out"
    case $server in
        redis) valgrind --tool=callgrind --callgrind-out-file="$out" redis-server --port "$port" \
            --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" >"$dir/log" 2>&1 & ;;
        valkey) valgrind --tool=callgrind --callgrind-out-file="$out" "$VALKEY" --port "$port" \
            --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" >"$dir/log" 2>&1 & ;;
        hc | baseline)
            local bin=$BIN
            [ "$server" = baseline ] && bin=$BASELINE_BIN
            HYPERCACHE_SERVER__THREADS=1 valgrind --tool=callgrind --callgrind-out-file="$out" \
                "$bin" --port "$port" --dir "$dir/data" --maxmemory 1gb --appendonly no \
                >"$dir/log" 2>&1 & ;;
    esac
    local pid=$!
    local up=no
    for _ in $(seq 1 1200); do
        if redis-cli -p "$port" ping 2>/dev/null | grep -q PONG; then up=yes; break; fi
        if ! kill -0 "$pid" 2>/dev/null; then break; fi
        sleep 0.1
    done
    if [ "$up" != yes ]; then
        echo "$server did not start on port $port; its log ends:" >&2
        tail -5 "$dir/log" >&2
        kill "$pid" 2>/dev/null || true
        return 1
    fi
    redis-cli -p "$port" set counter 0 >/dev/null
    redis-cli -p "$port" script load "$SCRIPT" >/dev/null
    redis-cli -p "$port" function load replace "$LIBRARY" >/dev/null
    # shellcheck disable=SC2086 # the command's words are separate arguments
    redis-benchmark -p "$port" -n 5000 -c 50 -P "$PIPELINE" -q $command >/dev/null 2>&1
    callgrind_control -z "$pid" >/dev/null 2>&1
    # shellcheck disable=SC2086
    redis-benchmark -p "$port" -n "$REQUESTS" -c 50 -P "$PIPELINE" -q $command >/dev/null 2>&1
    callgrind_control -d "$pid" >/dev/null 2>&1
    redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
    wait "$pid" 2>/dev/null || true
    # The dump made after zeroing the counts (.1) holds exactly the measured requests.
    local total
    total=$(grep -E '^(summary|totals):' "$out.1" | head -1 | awk '{ print $2 }')
    echo $((total / REQUESTS))
}

SERVERS=(redis valkey hc)
if [ -n "${BASELINE_BIN:-}" ]; then SERVERS+=(baseline); fi
echo "user-space instructions per request, -P $PIPELINE, $REQUESTS requests" >&2
printf "%-24s" command
for server in "${SERVERS[@]}"; do printf "%12s" "$server"; done
printf "%12s\n" "hc/redis"
for command in "${COMMANDS[@]}"; do
    declare -A per=()
    for server in "${SERVERS[@]}"; do
        per[$server]=$(count "$server" "$command") || exit 1
    done
    printf "%-24s" "${command%% *}"
    for server in "${SERVERS[@]}"; do printf "%12s" "${per[$server]}"; done
    printf "%12s\n" "$(ratio "${per[hc]}" "${per[redis]}")"
    unset per
done
