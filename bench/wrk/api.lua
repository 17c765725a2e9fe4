-- One fixed request, built once by wrk (no Lua per request): method, body and bearer
-- token come from the environment (BENCH_METHOD, BENCH_BODY, BENCH_TOKEN).
package.path = os.getenv("BENCH_DIR") .. "/wrk/?.lua;" .. package.path
require "report"

wrk.method = os.getenv("BENCH_METHOD") or "GET"
local token = os.getenv("BENCH_TOKEN") or ""
if token ~= "" then
   wrk.headers["Authorization"] = "Bearer " .. token
end
local body = os.getenv("BENCH_BODY") or ""
if body ~= "" then
   wrk.body = body
   wrk.headers["Content-Type"] = "application/json"
end

function done(summary, latency, requests)
   report(summary, latency)
end
