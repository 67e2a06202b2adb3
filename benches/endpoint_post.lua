-- wrk script for the endpoint benchmark: POST a CSV body of BODY_BYTES bytes
-- to PATH; prints the request rate and latency percentiles (microseconds).
local size = tonumber(os.getenv("BODY_BYTES") or "1024")
wrk.method = "POST"
wrk.path = os.getenv("TARGET_PATH") or "/invocations"
wrk.headers["Content-Type"] = "text/csv"
local row = "0.25,17,3.5,1,0,0,1,42.0,"
wrk.body = string.rep(row, math.ceil(size / #row)):sub(1, size)

function done(summary, latency, requests)
  local secs = summary.duration / 1e6
  io.write(string.format("RESULT rps=%.0f p50=%d p99=%d p999=%d errors=%d non2xx=%d\n",
    summary.requests / secs, latency:percentile(50), latency:percentile(99), latency:percentile(99.9),
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status))
end
