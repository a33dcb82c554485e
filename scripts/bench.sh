#!/usr/bin/env bash
# Loopback benchmark with wrk against a release fnhost in a throwaway script root.
# Usage: scripts/bench.sh PATH/TO/fnhost   (DURATION, CONNECTIONS, THREADS override the defaults)
set -euo pipefail
binary=${1:?usage: bench.sh PATH/TO/fnhost}
duration=${DURATION:-10s}
connections=${CONNECTIONS:-64}
threads=${THREADS:-2}
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
cp "$repo/function.json" "$work/"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
LOG_LEVEL=${LOG_LEVEL:-info} "$binary" start --port "$port" --script-root "$work" > "$work/fnhost.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS "http://127.0.0.1:$port/health" >/dev/null
echo "== GET /health  ($threads threads, $connections connections, $duration)"
wrk -t"$threads" -c"$connections" -d"$duration" --latency "http://127.0.0.1:$port/health"
