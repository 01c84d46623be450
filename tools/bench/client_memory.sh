#!/usr/bin/env bash
# The two client-memory probes of issue 19, against the built binary at --maxmemory 64mb,
# printing the server's peak RSS (VmHWM) for each:
#   partial: 100 connections each send `SET big` announcing a 100,000,000-byte value,
#            then 5 MB of it, and pause.
#   readers: SET big to 1 MB, then 10 connections with a 4 KB receive buffer each pipeline
#            100 `GET big` and never read.
# Each probe runs with maxmemory-clients at its default (the clients share, 10%) and at 0
# (no bound: the behaviour before issue 19 for the partial requests).
#
#   HYPERCACHE_BIN=$CARGO_TARGET_DIR/release/hypercache tools/bench/client_memory.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

BIN="${HYPERCACHE_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/hypercache/target}/release/hypercache}"
PORT="${PORT:-16391}"
[ -x "$BIN" ] || { echo "no binary at $BIN (cargo build --release, or set HYPERCACHE_BIN)" >&2; exit 1; }
work="$(mktemp -d)"
trap 'kill "${server:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT

probe() {
    local name="$1" limit="$2"
    rm -rf "$work/data"
    env -u HYPERCACHE_BIN "$BIN" --port "$PORT" --dir "$work/data" --maxmemory 64mb >"$work/log" 2>&1 &
    server=$!
    for _ in $(seq 300); do
        [ "$(redis-cli -p "$PORT" ping 2>/dev/null)" = PONG ] && break
        sleep 0.1
    done
    [ "$(redis-cli -p "$PORT" ping 2>/dev/null)" = PONG ] || { cat "$work/log" >&2; exit 1; }
    redis-cli -p "$PORT" config set maxmemory-clients "$limit" >/dev/null
    python3 - "$PORT" "$name" <<'EOF'
import socket, sys, time
port, name = int(sys.argv[1]), sys.argv[2]
conns = []
if name == "partial":
    header = b"*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$100000000\r\n"
    chunk = b"x" * (5 << 20)
    for _ in range(100):
        s = socket.create_connection(("127.0.0.1", port))
        try:
            s.sendall(header + chunk)
        except OSError:
            pass  # refused or evicted: the server closed it
        conns.append(s)
else:
    s = socket.create_connection(("127.0.0.1", port))
    value = b"v" * (1 << 20)
    s.sendall(b"*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$%d\r\n%s\r\n" % (len(value), value))
    s.recv(16)
    request = b"*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n" * 100
    for _ in range(10):
        r = socket.socket()
        r.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        r.connect(("127.0.0.1", port))
        r.sendall(request)
        conns.append(r)
time.sleep(3)
EOF
    local peak
    peak=$(awk '/VmHWM/ {print int($2 / 1024)}' "/proc/$server/status")
    local evicted
    evicted=$(redis-cli -p "$PORT" info stats | tr -d '\r' | awk -F: '/^evicted_clients/ {print $2}')
    printf '%-8s maxmemory-clients %-4s peak RSS %5d MB  evicted_clients %s\n' \
        "$name" "$limit" "$peak" "$evicted"
    kill "$server"
    wait "$server" 2>/dev/null || true
}

for name in partial readers; do
    probe "$name" 10%
    probe "$name" 0
done
