-- Many schools: every request carries the token of one school drawn from a Zipf
-- distribution (rank k has weight 1/k^s) over the tokens in BENCH_TOKENS_FILE, one per
-- line, most popular first. BENCH_ZIPF_S sets s (default 1.0); BENCH_PATH the path.
-- When BENCH_PATH contains {slug}, the file's lines are school slugs instead: each request
-- is that path with {slug} replaced and no Authorization header (the public route).
package.path = os.getenv("BENCH_DIR") .. "/wrk/?.lua;" .. package.path
require "report"

local headers = {}
local tokens = {}
local cdf = {}
local path = os.getenv("BENCH_PATH") or "/api/lunch-week"

function init(args)
   local s = tonumber(os.getenv("BENCH_ZIPF_S") or "1.0")
   local by_slug = path:find("{slug}", 1, true)
   for line in io.lines(os.getenv("BENCH_TOKENS_FILE")) do
      if line ~= "" and by_slug then
         tokens[#tokens + 1] = (path:gsub("{slug}", line))
      elseif line ~= "" then
         tokens[#tokens + 1] = "Bearer " .. line
      end
   end
   local total = 0
   for k = 1, #tokens do
      total = total + 1 / (k ^ s)
      cdf[k] = total
   end
   for k = 1, #tokens do cdf[k] = cdf[k] / total end
   -- Each wrk thread has its own Lua state; seed each differently.
   math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)") or "0", 16) % 100000)
end

local function pick()
   local u = math.random()
   local lo, hi = 1, #cdf
   while lo < hi do
      local mid = math.floor((lo + hi) / 2)
      if cdf[mid] < u then lo = mid + 1 else hi = mid end
   end
   return tokens[lo]
end

function request()
   if path:find("{slug}", 1, true) then
      return wrk.format("GET", pick(), headers)
   end
   headers["Authorization"] = pick()
   return wrk.format("GET", path, headers)
end

function done(summary, latency, requests)
   report(summary, latency)
end
