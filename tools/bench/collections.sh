#!/usr/bin/env bash
# Hash and set throughput (issue 17) on hot data, against Debian's redis-server 7.0.15 and
# Valkey 9.1, in one run:
#   HSET h:<r> f:<r> v | HGET h:<r> f:<r> | SADD s:<r> m:<r> | SISMEMBER s:<r> m:<r>
# with redis-benchmark -r $RANGE (default 1000: up to 1000 collections of up to 1000
# elements each, Redis's hashtable encoding), -c 50, pipelines 1 and 16. Each server is
# filled first (HSET and SADD with 4x the requests), so the reads mostly hit. Persistence
# off everywhere; each server pinned to CPU $SERVER_CPU (1), redis-benchmark to CPU
# $CLIENT_CPU (0); HyperCache with one async worker. Each cell is the median of ROUNDS runs
# (default 3), the servers alternating (in reverse order every other round). Prints the
# throughputs and HyperCache / best peer, then each server's element count and its
# used_memory per element (used_memory after the run minus before the fill).
#
#   tools/bench/collections.sh                     # N = 200,000, 3 rounds
#   REQUESTS=50000 ROUNDS=1 tools/bench/collections.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
source tools/bench/lib.sh

REQUESTS="${REQUESTS:-200000}"
ROUNDS="${ROUNDS:-3}"
RANGE="${RANGE:-1000}"
SERVER_CPU="${SERVER_CPU:-1}"
CLIENT_CPU="${CLIENT_CPU:-0}"
build_hypercache

VALKEY="$(valkey_server)"

echo "servers on CPU $SERVER_CPU, redis-benchmark on CPU $CLIENT_CPU, $REQUESTS requests," \
    "-r $RANGE" >&2
start_peer_servers

used_memory() {
    redis-cli -p "$1" info memory | sed -n 's/^used_memory:\([0-9]*\).*/\1/p'
}
declare -A EMPTY_MEMORY
for server in "${SERVERS[@]}"; do EMPTY_MEMORY[$server]=$(used_memory "${PORT[$server]}"); done

# Prints requests per second for `$@` against the server on port $1, pipeline $2, $3 requests.
measure() {
    local port=$1 pipeline=$2 requests=$3
    shift 3
    taskset -c "$CLIENT_CPU" redis-benchmark -p "$port" -n "$requests" -r "$RANGE" -c 50 \
        -P "$pipeline" -q "$@" 2>/dev/null | tr '\r' '\n' \
        | sed -n 's/.*: \([0-9.]*\) requests per second.*/\1/p' | tail -1
}

args_of() {
    case $1 in
        hset) echo "hset h:__rand_int__ f:__rand_int__ value" ;;
        hget) echo "hget h:__rand_int__ f:__rand_int__" ;;
        sadd) echo "sadd s:__rand_int__ m:__rand_int__" ;;
        sismember) echo "sismember s:__rand_int__ m:__rand_int__" ;;
    esac
}

for server in "${SERVERS[@]}"; do
    for command in hset sadd; do
        # shellcheck disable=SC2046
        measure "${PORT[$server]}" 16 $((REQUESTS * 4)) $(args_of $command) >/dev/null
    done
done

printf "%-8s %-10s %12s %12s %12s %10s\n" pipeline command redis valkey hypercache "hc/best"
for pipeline in 1 16; do
    for command in hset hget sadd sismember; do
        for server in "${SERVERS[@]}"; do : >"$WORK/$server.rps"; done
        for round in $(seq 1 "$ROUNDS"); do
            order=("${SERVERS[@]}")
            if ((round % 2 == 0)); then order=(hc valkey redis); fi
            for server in "${order[@]}"; do
                # shellcheck disable=SC2046
                measure "${PORT[$server]}" "$pipeline" "$REQUESTS" $(args_of $command) \
                    >>"$WORK/$server.rps"
            done
        done
        for server in "${SERVERS[@]}"; do
            echo "  -P $pipeline $command $server rounds: $(tr '\n' ' ' <"$WORK/$server.rps")" >&2
        done
        r=$(median <"$WORK/redis.rps"); v=$(median <"$WORK/valkey.rps")
        h=$(median <"$WORK/hc.rps")
        best=$(awk -v a="$r" -v b="$v" 'BEGIN { print (a > b) ? a : b }')
        printf "%-8s %-10s %12s %12s %12s %10s\n" "-P $pipeline" "$command" "$r" "$v" "$h" \
            "$(ratio "$h" "$best")"
    done
done
# Every element of every collection, counted with HLEN / SCARD (redis-benchmark pads
# __rand_int__ to 12 digits).
for server in "${SERVERS[@]}"; do
    port=${PORT[$server]}
    elements=$(for i in $(seq 0 $((RANGE - 1))); do
        printf 'HLEN h:%012d\nSCARD s:%012d\n' "$i" "$i"
    done | redis-cli -p "$port" | awk '{ n += $1 } END { print n }')
    used=$(used_memory "$port")
    echo "$server: keys $(redis-cli -p "$port" dbsize), elements $elements," \
        "used_memory $used, $(( (used - EMPTY_MEMORY[$server]) / elements )) B per element" >&2
done
