-- wrk script: POST /api/leads, rotating over the bearer tokens in $TOKENS_FILE (one per line),
-- so each request writes a lead and its audit event on the token's tenant chain.
local tokens = {}
for line in io.lines(os.getenv("TOKENS_FILE")) do tokens[#tokens + 1] = line end
local counter = 0
local body = '{"name":"Bench lead","email":"lead@bench.example","company":"Bench"}'

request = function()
  counter = counter + 1
  local headers = {
    ["Authorization"] = "Bearer " .. tokens[(counter % #tokens) + 1],
    ["Content-Type"] = "application/json",
  }
  return wrk.format("POST", "/api/leads", headers, body)
end
