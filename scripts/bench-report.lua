-- wrk `done` hook: one machine-readable line per run, read by scripts/bench.sh.
-- BENCH {"requests":N,"seconds":S,"rps":R,"p50_ms":…,"p99_ms":…,"p999_ms":…,"errors":E,"non_2xx":N}
done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
  local seconds = summary.duration / 1e6
  io.write(string.format(
    'BENCH {"requests":%d,"seconds":%.3f,"rps":%.1f,"p50_ms":%.3f,"p99_ms":%.3f,"p999_ms":%.3f,"errors":%d,"non_2xx":%d}\n',
    summary.requests, seconds, summary.requests / seconds, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    latency:percentile(99.9) / 1000, errors, summary.errors.status))
end
