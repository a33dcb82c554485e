#!/usr/bin/env bash
# Loopback benchmark with wrk against a release fnhost, run by scripts/with-services.sh
# (throwaway PostgreSQL and Redis): GET /health, then the contract's scenario, the
# authenticated GET /api/leads?limit=20 (development host tokens, 100 leads in the tenant);
# then audited writes (POST /api/leads: a lead and its hash-chained event per request) on one
# tenant and spread over 16 tenants, the fairness of creates while another tenant sends refused ones,
# and `fnhost verify-audit --full` over everything written.
# Usage: scripts/with-services.sh scripts/bench.sh PATH/TO/fnhost   (DURATION, CONNECTIONS, THREADS override;
# FAIR_CONNECTIONS, HAMMER_CONNECTIONS, HAMMER_DELAY_MS the fairness scenario's)
# Prints wrk's report for humans and, per scenario, one JSON line (prefix `{"scenario"`): req/s, p50,
# p99, p99.9 (ms), errors (socket errors + non-2xx), fnhost CPU seconds per 1,000 requests, fnhost RSS
# (MiB) after the run; then idle RSS, the listing ÷ /health ratio (compare that across machines) and
# verify-audit's events/s. `BENCH_JSON=FILE` also writes the JSON lines to FILE.
set -euo pipefail
binary=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
duration=${DURATION:-10s}
connections=${CONNECTIONS:-64}
threads=${THREADS:-2}
repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/bench-host.sh
source "$repo/scripts/bench-host.sh"
ticks=$(getconf CLK_TCK)
json=${BENCH_JSON:-$work/bench.jsonl}
: > "$json"
cpu() { awk '{ print $14 + $15 }' "/proc/$pid/stat"; }
rss() { awk '/^VmRSS/ { printf "%.1f", $2 / 1024 }' "/proc/$pid/status"; }
echo "{\"scenario\":\"idle\",\"rss_mib\":$(rss)}" | tee -a "$json"
# scenario NAME CONNECTIONS SCRIPT [wrk args…]: wrk's report, then the scenario's JSON line.
scenario() {
  local name=$1 conns=$2 script=$3; shift 3
  local before after out
  before=$(cpu)
  out=$(wrk -t"$threads" -c"$conns" -d"$duration" --latency -s "$script" "$@")
  after=$(cpu)
  echo "$out" | grep -v '^BENCH '
  python3 -c 'import json,sys
r=json.loads(sys.argv[1]); cpu=(int(sys.argv[3])-int(sys.argv[2]))/int(sys.argv[4])
print(json.dumps({"scenario":sys.argv[5],"connections":int(sys.argv[6]),"rps":r["rps"],"p50_ms":r["p50_ms"],"p99_ms":r["p99_ms"],
 "p999_ms":r["p999_ms"],"errors":r["errors"]+r["non_2xx"],"cpu_s_per_1000":round(cpu*1000/max(r["requests"],1),4),"rss_mib":float(sys.argv[7])}))' \
    "$(echo "$out" | grep '^BENCH ' | cut -c7-)" "$before" "$after" "$ticks" "$name" "$conns" "$(rss)" | tee -a "$json"
}
report="$repo/scripts/bench-report.lua"
cat "$repo/scripts/bench-post.lua" "$report" > "$work/post.lua"
echo "== GET /health  ($threads threads, $connections connections, $duration)"
scenario health "$connections" "$report" "$base/health"
echo "== GET /api/leads?limit=20 with a bearer token, Postgres + Redis  ($threads threads, $connections connections, $duration)"
scenario listing "$connections" "$report" -H "Authorization: Bearer $token" "$base/api/leads?limit=20"
echo "== the same at 4 connections (the latency floor)"
scenario listing_4 4 "$report" -H "Authorization: Bearer $token" "$base/api/leads?limit=20"

echo "== POST /api/leads (lead + audit event in one transaction), one tenant  ($threads threads, $connections connections, $duration)"
echo "$token" > "$work/one.tokens"
TOKENS_FILE="$work/one.tokens" scenario writes_1_tenant "$connections" "$work/post.lua" "$base"
for i in $(seq 1 16); do
  (cd "$work" && "$binary" token --tenant "t-bench-$i" --user u-bench --perm LEADS_WRITE | tail -1)
done > "$work/many.tokens"
echo "== POST /api/leads (lead + audit event in one transaction), 16 tenants  ($threads threads, $connections connections, $duration)"
TOKENS_FILE="$work/many.tokens" scenario writes_16_tenants "$connections" "$work/post.lua" "$base"
# Fairness (docs/benchmarks.md): one tenant creates leads alone, then while another tenant sends only
# creates the module must refuse (scripts/bench-hammer.lua: over-long values counted in Unicode
# scalars, invalid ones; HAMMER_CONNECTIONS connections, each pausing HAMMER_DELAY_MS between
# requests), then alone again. The line "fairness" compares its creates/s and p50 with the hammer to
# its mean alone, and counts the hammer's answers by status (only 400 is right).
fair_connections=${FAIR_CONNECTIONS:-16}
hammer_connections=${HAMMER_CONNECTIONS:-8}
(cd "$work" && "$binary" token --tenant t-fair-normal --user u-fair --perm LEADS_WRITE | tail -1) > "$work/fair.tokens"
hammer_token=$(cd "$work" && "$binary" token --tenant t-fair-hammer --user u-hammer --perm LEADS_WRITE | tail -1)
hammer_seconds=$(python3 -c 'import re,sys; m=re.fullmatch(r"(\d+)(ms|s|m|h)?",sys.argv[1]); n=int(m[1]); print(int({"ms":n/1000,"s":n,"m":n*60,"h":n*3600,None:n}[m[2]])+4)' "$duration")
echo "== fairness: POST /api/leads, one tenant alone  ($threads threads, $fair_connections connections, $duration)"
TOKENS_FILE="$work/fair.tokens" scenario fair_alone "$fair_connections" "$work/post.lua" "$base"
echo "== fairness: the same while another tenant sends refused creates  ($hammer_connections connections, ${HAMMER_DELAY_MS:-10} ms apart)"
HAMMER_TOKEN="$hammer_token" HAMMER_DELAY_MS=${HAMMER_DELAY_MS:-10} \
  wrk -t1 -c"$hammer_connections" -d"${hammer_seconds}s" --latency -s "$repo/scripts/bench-hammer.lua" "$base" > "$work/hammer.out" &
hammer=$!
sleep 2
TOKENS_FILE="$work/fair.tokens" scenario fair_shared "$fair_connections" "$work/post.lua" "$base"
wait "$hammer"
grep -v '^BENCH ' "$work/hammer.out"
echo "== fairness: the same tenant alone again"
TOKENS_FILE="$work/fair.tokens" scenario fair_alone_again "$fair_connections" "$work/post.lua" "$base"
python3 -c 'import json,sys
rows={}
for line in open(sys.argv[1]):
    row=json.loads(line); rows[row["scenario"]]=row
h=json.loads(sys.argv[2])
alone=[rows["fair_alone"],rows["fair_alone_again"]]; shared=rows["fair_shared"]
rps=sum(r["rps"] for r in alone)/2; p50=sum(r["p50_ms"] for r in alone)/2
print(json.dumps({"scenario":"fairness","alone_rps":round(rps,1),"shared_rps":shared["rps"],"rps_ratio":round(shared["rps"]/rps,3),
 "alone_p50_ms":round(p50,3),"shared_p50_ms":shared["p50_ms"],"p50_ratio":round(shared["p50_ms"]/p50,3),"normal_errors":shared["errors"],
 "hammer_requests":h["requests"],"hammer_rps":h["rps"],"hammer_statuses":h["statuses"],"hammer_only_400":set(h["statuses"])=={"400"}}))' \
  "$json" "$(grep '^BENCH ' "$work/hammer.out" | cut -c7-)" | tee -a "$json"
python3 -c 'import json,sys
rows={}
for line in open(sys.argv[1]):
    row=json.loads(line); rows[row["scenario"]]=row
print(json.dumps({"scenario":"listing_to_health","ratio":round(rows["listing"]["rps"]/rows["health"]["rps"],4)}))' "$json" | tee -a "$json"
echo "== fnhost verify-audit --full (every chain from seq 1)"
kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; pid=""
started=$(date +%s.%N)
summary=$(cd "$work" && "$binary" verify-audit --full 2>/dev/null | tail -1)
finished=$(date +%s.%N)
echo "$summary"
python3 -c 'import re,sys,json; n=int(re.search(r"(\d+) events", sys.argv[1]).group(1)); t=float(sys.argv[3])-float(sys.argv[2]); print(f"{n} events verified in {t:.2f} s (process start included): {n/t:,.0f} events/s"); open(sys.argv[4],"a").write(json.dumps({"scenario":"verify_audit_full","events":n,"seconds":round(t,3),"events_per_s":round(n/t)})+"\n"); print(json.dumps({"scenario":"verify_audit_full","events":n,"seconds":round(t,3),"events_per_s":round(n/t)}))' "$summary" "$started" "$finished" "$json"

# Allocations per request (scripts/malloc-count.c, LD_PRELOAD) on a second, counted instance: the
# allocator calls and bytes asked for during a wrk run, divided by its requests (background work of
# those seconds included, so this is an upper bound).
if command -v cc >/dev/null; then
  cc -O2 -shared -fPIC -o "$work/malloc-count.so" "$repo/scripts/malloc-count.c" -lpthread
  counts="$work/malloc-count.txt"
  (cd "$work" && MALLOC_COUNT_FILE="$counts" LD_PRELOAD="$work/malloc-count.so" LOG_LEVEL=warning exec "$binary" start --port "$port" > "$work/fnhost-counted.log" 2>&1) &
  pid=$!
  for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break; sleep 0.1; done
  # allocations NAME [wrk args…]: warm up, then count over a short run.
  allocations() {
    local name=$1; shift
    wrk -t"$threads" -c"$connections" -d2s "$@" > /dev/null
    sleep 0.2; local before; before=$(cat "$counts")
    local out; out=$(wrk -t"$threads" -c"$connections" -d3s -s "$report" "$@")
    sleep 0.2; local after; after=$(cat "$counts")
    python3 -c 'import json,sys
r=json.loads(sys.argv[1]); b=[int(x) for x in sys.argv[2].split()]; a=[int(x) for x in sys.argv[3].split()]; n=max(r["requests"],1)
print(json.dumps({"scenario":"allocations_"+sys.argv[4],"requests":r["requests"],"allocations_per_request":round((a[0]-b[0])/n,1),
 "bytes_per_request":round((a[1]-b[1])/n),"frees_per_request":round((a[2]-b[2])/n,1)}))' \
      "$(echo "$out" | grep '^BENCH ' | cut -c7-)" "$before" "$after" "$name" | tee -a "$json"
  }
  allocations health "$base/health"
  allocations listing -H "Authorization: Bearer $token" "$base/api/leads?limit=20"
  kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; pid=""
fi
