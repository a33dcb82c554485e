#!/usr/bin/env bash
# perf profile of the authenticated listing (GET /api/leads?limit=20), run by scripts/with-services.sh:
#   scripts/with-services.sh scripts/profile.sh .build/release/fnhost   (make profile)
# Starts a release fnhost as scripts/bench.sh does (100 leads, development tokens), warms it up, then
# records it with `perf record -g` during a wrk run and prints: wrk's figures, fnhost's CPU and context
# switches per request (/proc), and perf's report by library and by symbol. PROFILE_OUT=DIR keeps
# perf.data and the reports; PROFILE_URL=PATH profiles another path (e.g. /health); PROFILE_SYSTEM=1 records every process
# (PostgreSQL, Redis, wrk too; PROFILE_WRITES=N profiles audited writes over N tenants instead; `perf report --comm postgres` on the kept perf.data); PROFILE_RECORD=0 measures
# without perf (the figures alone); PROFILE_EVENTS=E1,E2 counts perf events (e.g. uprobes made with `perf probe -x
# libswift_Concurrency.so -a swift_task_create`) per request instead of sampling. Samples are taken on
# PROFILE_EVENT (default cpu-clock: perf's default, cycles, is not counted on a VM without a PMU, and
# perf then records nothing); the host's start-up and seeding are scripts/bench-host.sh, as bench.sh's.
set -euo pipefail
binary=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
repo=$(cd "$(dirname "$0")/.." && pwd)
"$repo/scripts/ensure-packages.sh" wrk linux-perf
out=${PROFILE_OUT:-$(mktemp -d)}
mkdir -p "$out"
# shellcheck source=scripts/bench-host.sh
source "$repo/scripts/bench-host.sh"
url="$base${PROFILE_URL:-/api/leads?limit=20}"
# PROFILE_WRITES=N: audited writes (POST /api/leads) over N tenants instead of the GET.
script="$repo/scripts/bench-report.lua"
if [ -n "${PROFILE_WRITES:-}" ]; then
  for i in $(seq 1 "$PROFILE_WRITES"); do
    (cd "$work" && "$binary" token --tenant "t-write-$i" --user u-bench --perm LEADS_WRITE | tail -1)
  done > "$work/tokens"
  export TOKENS_FILE="$work/tokens"
  cat "$repo/scripts/bench-post.lua" "$repo/scripts/bench-report.lua" > "$work/post.lua"
  script="$work/post.lua"
  url="$base"
  PROFILE_URL="POST /api/leads, $PROFILE_WRITES tenants"
fi
wrk -t2 -c64 -d3s -s "$script" -H "Authorization: Bearer $token" "$url" > /dev/null
stat() { awk '{ print $14 + $15 }' "/proc/$pid/stat"; }
switches() { awk '/ctxt_switches/ { n += $2 } END { print n }' /proc/"$pid"/task/*/status; }
# PostgreSQL's and Redis's CPU too (every process of the postgres user, redis-server): what a request costs the machine.
services_cpu() { for p in $(pgrep -u postgres) $(pgrep -x redis-server); do awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null; done | awk '{ s += $1 } END { print s + 0 }'; }
cpu0=$(stat); sw0=$(switches); svc0=$(services_cpu)
if [ -n "${PROFILE_EVENTS:-}" ]; then
  perf stat -x, -e "$PROFILE_EVENTS" -o "$out/stat.csv" -p "$pid" -- sleep 6 2> /dev/null &
  perf_pid=$!
elif [ "${PROFILE_RECORD:-1}" = 1 ]; then
  if [ "${PROFILE_SYSTEM:-0}" = 1 ]; then target=(-a); else target=(-p "$pid"); fi
  perf record -e "${PROFILE_EVENT:-cpu-clock}" -F 999 -g -o "$out/perf.data" "${target[@]}" -- sleep 6 2> /dev/null &
  perf_pid=$!
else
  sleep 6 & perf_pid=$!
fi
report=$(wrk -t2 -c64 -d6s --latency -s "$script" -H "Authorization: Bearer $token" "$url" | grep '^BENCH ' | cut -c7-)
wait "$perf_pid" || true
cpu1=$(stat); sw1=$(switches); svc1=$(services_cpu)
python3 -c 'import json,sys
r=json.loads(sys.argv[1]); n=max(r["requests"],1)
print(json.dumps({"profiled":sys.argv[6],"rps":r["rps"],"p99_ms":r["p99_ms"],"errors":r["errors"]+r["non_2xx"],
 "cpu_us_per_request":round((int(sys.argv[3])-int(sys.argv[2]))/int(sys.argv[7])*1e6/n,1),
 "services_cpu_us_per_request":round((int(sys.argv[9])-int(sys.argv[8]))/int(sys.argv[7])*1e6/n,1),
 "context_switches_per_request":round((int(sys.argv[5])-int(sys.argv[4]))/n,2)}))' \
  "$report" "$cpu0" "$cpu1" "$sw0" "$sw1" "${PROFILE_URL:-/api/leads?limit=20}" "$(getconf CLK_TCK)" "$svc0" "$svc1" | tee "$out/summary.json"
if [ -n "${PROFILE_EVENTS:-}" ]; then
  requests=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["requests"])' "$report")
  awk -F, -v n="$requests" '$1 ~ /^[0-9]+$/ { printf "%-60s %10.2f per request\n", $3, $1 / n }' "$out/stat.csv" | tee "$out/events.txt"
  exit 0
fi
[ "${PROFILE_RECORD:-1}" = 1 ] || exit 0
if [ "${PROFILE_SYSTEM:-0}" = 1 ]; then
  perf report -i "$out/perf.data" --no-children --sort comm -g none --stdio 2> /dev/null | grep -v '^#' | grep -v '^$' | head -8 | tee "$out/by-process.txt"
fi
perf report -i "$out/perf.data" --no-children --sort dso -g none --stdio 2> /dev/null | grep -v '^#' | grep -v '^$' | head -12 | tee "$out/by-library.txt"
perf report -i "$out/perf.data" --no-children --sort symbol -g none --stdio 2> /dev/null | grep -v '^#' | grep -v '^$' | head -${PROFILE_TOP:-40} \
  | cut -c1-160 | tee "$out/by-symbol.txt"
echo "profile in $out"
