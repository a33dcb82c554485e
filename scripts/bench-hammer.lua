-- wrk script for the fairness scenario of scripts/bench.sh: POST /api/leads for one tenant
-- ($HAMMER_TOKEN) with bodies the module must refuse, in turn: values one Unicode scalar over their
-- limit made of two-scalar characters (a name of 151 characters but 301 scalars, notes, phone,
-- company), an unknown status, an empty name, a NUL, a bad address, an unknown field. Each
-- connection waits $HAMMER_DELAY_MS (default 0) between requests. Every answer is counted by status;
-- the done hook prints BENCH {"requests":N,"seconds":S,"rps":R,"p50_ms":P,"statuses":{"400":N,…}}.
local token = os.getenv("HAMMER_TOKEN")
local pause = tonumber(os.getenv("HAMMER_DELAY_MS") or "0")
local e = "e\204\129" -- U+0065 U+0301: one character, two Unicode scalars
local bodies = {
  '{"name":"' .. string.rep(e, 150) .. 'x","email":"h@bench.example"}',
  '{"name":"' .. string.rep(e, 100) .. 'x","email":"h@bench.example"}',
  '{"name":"Bench","email":"h@bench.example","notes":"' .. string.rep(e, 5000) .. 'x"}',
  '{"name":"Bench","email":"h@bench.example","phone":"' .. string.rep(e, 25) .. 'x"}',
  '{"name":"Bench","email":"h@bench.example","company":"' .. string.rep(e, 100) .. 'x"}',
  '{"name":"Bench","email":"h@bench.example","status":"maybe"}',
  '{"name":"","email":"h@bench.example"}',
  '{"name":"a\\u0000b","email":"h@bench.example"}',
  '{"name":"Bench","email":"not-an-address"}',
  '{"name":"Bench","email":"h@bench.example","owner":"x"}',
}
local headers = { ["Authorization"] = "Bearer " .. (token or ""), ["Content-Type"] = "application/json" }
local threads = {}

function setup(thread)
  threads[#threads + 1] = thread
end

function init(args)
  statuses = {} -- a global of each thread's state, read by `done` through thread:get
  counter = 0
end

function request()
  counter = counter + 1
  return wrk.format("POST", "/api/leads", headers, bodies[(counter % #bodies) + 1])
end

function delay()
  return pause
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses") or {}) do
      total[status] = (total[status] or 0) + count
    end
  end
  local parts = {}
  for status, count in pairs(total) do parts[#parts + 1] = string.format('"%d":%d', status, count) end
  local seconds = summary.duration / 1e6
  io.write(string.format('BENCH {"requests":%d,"seconds":%.3f,"rps":%.1f,"p50_ms":%.3f,"statuses":{%s}}\n',
    summary.requests, seconds, summary.requests / seconds, latency:percentile(50) / 1000, table.concat(parts, ",")))
end
