#!/usr/bin/env bash
# Memory per key (issue 15): 1M distinct keys (`key:0` .. `key:999999`) loaded with
# `redis-cli --pipe` into Debian's redis-server 7.0.15, Valkey 9.1 and HyperCache (all in
# RAM: HyperCache with a 4 GB budget, so nothing is demoted), at 10 B, 100 B and 1 KB values.
# Prints used_memory after minus before, per key, and the RSS, for each server.
#
#   tools/bench/memory.sh
#   KEYS=200000 SIZES="100" tools/bench/memory.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
source tools/bench/lib.sh

KEYS="${KEYS:-1000000}"
SIZES="${SIZES:-10 100 1000}"
build_hypercache
VALKEY="$(valkey_server)"

WORK="$(mktemp -d)"
PORT=$((20000 + RANDOM % 10000))
cleanup() {
    redis-cli -p "$PORT" shutdown nosave >/dev/null 2>&1 || true
    sleep 0.3
    rm -rf "$WORK"
}
trap cleanup EXIT

info() { redis-cli -p "$PORT" info memory | tr -d '\r' | awk -F: -v f="$1" '$1 == f {print $2}'; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

start() { # server name
    rm -rf "$WORK/data" && mkdir -p "$WORK/data"
    case "$1" in
        redis) redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no \
            --dir "$WORK/data" --daemonize no >"$WORK/server.log" 2>&1 & ;;
        valkey) "$VALKEY" --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no \
            --dir "$WORK/data" --daemonize no >"$WORK/server.log" 2>&1 & ;;
        hc) "$BIN" --port "$PORT" --dir "$WORK/data" --maxmemory 4gb --appendonly no \
            >"$WORK/server.log" 2>&1 & ;;
    esac
    SERVER_PID=$!
    wait_for "$PORT"
}

printf "%-8s %-10s %10s %14s %10s\n" "value" "server" "keys" "used B/key" "RSS MB"
for size in $SIZES; do
    # The load: SET key:<i> <size bytes>, as RESP, generated once per size.
    awk -v n="$KEYS" -v size="$size" 'BEGIN {
        value = sprintf("%*s", size, ""); gsub(/ /, "v", value)
        for (i = 0; i < n; i++) {
            key = "key:" i
            printf "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", length(key), key, size, value
        }
    }' >"$WORK/load.resp"
    for server in redis valkey hc; do
        start "$server"
        before=$(info used_memory)
        redis-cli -p "$PORT" --pipe <"$WORK/load.resp" >/dev/null
        keys=$(redis-cli -p "$PORT" dbsize)
        after=$(info used_memory)
        rss=$(rss_kb "$SERVER_PID")
        printf "%-8s %-10s %10s %14s %10s\n" "${size} B" "$server" "$keys" \
            "$(( (after - before) / keys ))" "$(( rss / 1024 ))"
        redis-cli -p "$PORT" shutdown nosave >/dev/null 2>&1 || true
        wait "$SERVER_PID" 2>/dev/null || true
    done
done
