-- wrk script for the cost of a durable acknowledgement (run by benches/bench.py).
--
--   wrk -t1 -c1 -d10s -s benches/journaled.lua http://127.0.0.1:PORT -- PAYLOAD_DIR TOKEN HOST REPOSITORY PACE_MS
--
-- One connection, one request every PACE_MS: each a Distribution manifest push of
-- HOST/REPOSITORY:1 with an event id never sent before. When a target runs that
-- tag, hoist journals the push, and fsyncs the commit, before its 202; when
-- nothing runs it, hoist answers without a record. Paced so that hoist's
-- runner keeps up (no 503 for a full queue): the latency is the acknowledgement's.
-- At the end one line `INTAKE_JSON {...}` sums up as benches/intake.lua does.

local ids = 0

function init(args)
  local dir, token = args[1], args[2]
  host, repository, pace = args[3], args[4], tonumber(args[5] or "5")
  local f = assert(io.open(dir .. "/distribution-push-manifest.json", "rb"))
  template = f:read("*a")
  f:close()
  headers = {
    ["Content-Type"] = "application/vnd.docker.distribution.events.v1+json",
    ["Authorization"] = "Bearer " .. token,
  }
  run_id = os.time()
end

function delay()
  return pace
end

function request()
  ids = ids + 1
  local id = string.format("ack-%d-%010d-0000-4000-8000-000000000000", run_id, ids)
  local body = template
    :gsub('"id": "19cbf5d3%-3d57%-44b2%-b35d%-c578eb991099"', '"id": "' .. id .. '"', 1)
    :gsub('"repository": "team/app"', '"repository": "' .. repository .. '"', 1)
    :gsub('"host": "registry%.example%.test"', '"host": "' .. host .. '"', 1)
    :gsub('"tag": "1%.0"', '"tag": "1"', 1)
  return wrk.format("POST", "/v1/hooks/distribution", headers, body)
end

function response(status, headers, body)
  local key = "n" .. status
  _G[key] = (_G[key] or 0) + 1
end

local threads = {}
function setup(thread)
  table.insert(threads, thread)
end

function done(summary, latency, requests)
  local parts = {}
  for _, code in ipairs({200, 202, 400, 401, 404, 413, 503}) do
    local n = 0
    for _, thread in ipairs(threads) do
      n = n + (thread:get("n" .. code) or 0)
    end
    if n > 0 then
      table.insert(parts, string.format('"%d": %d', code, n))
    end
  end
  local seconds = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    'INTAKE_JSON {"requests": %d, "seconds": %.3f, "rps": %.1f, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f, "errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, "statuses": {%s}}\n',
    summary.requests, seconds, summary.requests / seconds,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
    e.connect, e.read, e.write, e.status, e.timeout, table.concat(parts, ", ")))
end
