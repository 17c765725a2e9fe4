-- Shared by the wrk scripts of bench/run.sh: prints one machine-readable line at the end.
-- `errors` counts status >= 400 (wrk's own "non-2xx or 3xx" is the same here: no request
-- sends If-None-Match, so no 3xx can come back) plus every socket error.
function report(summary, latency)
   local e = summary.errors
   io.write(string.format(
      "RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d status=%d connect=%d read=%d write=%d timeout=%d\n",
      summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
      e.status, e.connect, e.read, e.write, e.timeout))
end
