# Sourced by scripts/bench.sh and scripts/profile.sh (after `set -euo pipefail`, with $binary and $repo
# set, run through scripts/with-services.sh): a release fnhost on a free loopback port, in a scratch
# script root, against the throwaway PostgreSQL and Redis, with the benchmark's settings, and 100 leads
# in tenant t-bench. Sets: work (the scratch root, removed on exit), port, base, pid (fnhost's; killed
# on exit) and token (a development host token for t-bench with LEADS_READ and LEADS_WRITE).
work=$(mktemp -d)
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
cp "$repo/function.json" "$work/"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
# BENCH_DATABASE_URL: another route to the same database (the pooler's A/B: FNHOST_TEST_PGBOUNCER_URL with
# DATABASE_POOLER=transaction, docs/benchmarks.md).
export DATABASE_URL=${BENCH_DATABASE_URL:-${FNHOST_TEST_DATABASE_URL:?run through scripts/with-services.sh}}
export REDIS_URL=${FNHOST_TEST_REDIS_URL:?run through scripts/with-services.sh}
# One bench user sends thousands of requests a second: a budget that high keeps the limiter in
# the path (its reservations from Redis) without turning the run into 429s.
export RATE_LIMIT_PER_SECOND=${RATE_LIMIT_PER_SECOND:-1000000} RATE_LIMIT_BURST=${RATE_LIMIT_BURST:-1000000}
# A steady load: the whole pool stays open (no idle-timeout timer per release; docs/settings.md).
export DATABASE_POOL_KEEP_OPEN=${DATABASE_POOL_KEEP_OPEN:-20}
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
