#!/usr/bin/env bash
# Loopback benchmark with wrk against a release fnhost, run by scripts/with-services.sh
# (throwaway PostgreSQL and Redis): GET /health, then the contract's scenario, the
# authenticated GET /api/leads?limit=20 (development host tokens, 100 leads in the tenant);
# then audited writes (POST /api/leads: a lead and its hash-chained event per request) on one
# tenant and spread over 16 tenants, and `fnhost verify-audit --full` over everything written.
# Usage: scripts/with-services.sh scripts/bench.sh PATH/TO/fnhost   (DURATION, CONNECTIONS, THREADS override)
set -euo pipefail
binary=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
duration=${DURATION:-10s}
connections=${CONNECTIONS:-64}
threads=${THREADS:-2}
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
cp "$repo/function.json" "$work/"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
export DATABASE_URL=${FNHOST_TEST_DATABASE_URL:?run through scripts/with-services.sh}
export REDIS_URL=${FNHOST_TEST_REDIS_URL:?run through scripts/with-services.sh}
# One bench user sends thousands of requests a second: a budget that high keeps the limiter in
# the path (one Redis round trip per request) without turning the run into 429s.
export RATE_LIMIT_PER_SECOND=${RATE_LIMIT_PER_SECOND:-1000000} RATE_LIMIT_BURST=${RATE_LIMIT_BURST:-1000000}
(cd "$work" && LOG_LEVEL=${LOG_LEVEL:-info} exec "$binary" start --port "$port" > "$work/fnhost.log" 2>&1) &
pid=$!
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break; sleep 0.1; done
base="http://127.0.0.1:$port"
token=$(cd "$work" && "$binary" token --tenant t-bench --user u-bench --perm LEADS_READ --perm LEADS_WRITE | tail -1)
for i in $(seq 1 100); do
  curl -fsS -o /dev/null -X POST "$base/api/leads" -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
    -d "{\"name\":\"Lead $i\",\"email\":\"lead$i@bench.example\",\"company\":\"Bench $i\"}"
done
curl -fsS "$base/api/leads?limit=20" -H "Authorization: Bearer $token" | python3 -c 'import sys,json; d=json.load(sys.stdin); assert len(d["items"])==20, d'
echo "== GET /health  ($threads threads, $connections connections, $duration)"
wrk -t"$threads" -c"$connections" -d"$duration" --latency "$base/health"
echo "== GET /api/leads?limit=20 with a bearer token, Postgres + Redis  ($threads threads, $connections connections, $duration)"
wrk -t"$threads" -c"$connections" -d"$duration" --latency -H "Authorization: Bearer $token" "$base/api/leads?limit=20"

echo "== POST /api/leads (lead + audit event in one transaction), one tenant  ($threads threads, $connections connections, $duration)"
echo "$token" > "$work/one.tokens"
TOKENS_FILE="$work/one.tokens" wrk -t"$threads" -c"$connections" -d"$duration" --latency -s "$repo/scripts/bench-post.lua" "$base"
for i in $(seq 1 16); do
  (cd "$work" && "$binary" token --tenant "t-bench-$i" --user u-bench --perm LEADS_WRITE | tail -1)
done > "$work/many.tokens"
echo "== POST /api/leads (lead + audit event in one transaction), 16 tenants  ($threads threads, $connections connections, $duration)"
TOKENS_FILE="$work/many.tokens" wrk -t"$threads" -c"$connections" -d"$duration" --latency -s "$repo/scripts/bench-post.lua" "$base"
echo "== fnhost verify-audit --full (every chain from seq 1)"
kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; pid=""
started=$(date +%s.%N)
summary=$(cd "$work" && "$binary" verify-audit --full 2>/dev/null | tail -1)
finished=$(date +%s.%N)
echo "$summary"
python3 -c 'import re,sys; n=int(re.search(r"(\d+) events", sys.argv[1]).group(1)); t=float(sys.argv[3])-float(sys.argv[2]); print(f"{n} events verified in {t:.2f} s (process start included): {n/t:,.0f} events/s")' "$summary" "$started" "$finished"
