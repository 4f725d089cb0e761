-- wrk script for hoist's intake benchmark (run by benches/bench.py).
--
--   wrk -t2 -c64 -d15s -s benches/intake.lua http://127.0.0.1:PORT -- PAYLOAD_DIR TOKEN [RATIO [unique]]
--
-- Every request is a POST /v1/hooks/distribution with the bearer token. Half of
-- them (RATIO, default 0.5) are the captured and constructed Distribution
-- bodies from PAYLOAD_DIR (distribution-*.json, sent as they are: blob pushes,
-- pulls, mounts, deletes, by-digest pushes, and tag pushes of repositories no
-- container runs, which repeat their event ids, as a registry's retries do).
-- The other half are manifest pushes to tags nothing runs (bench-0..bench-49),
-- each with its own event id, so hoist queues every one and its runner finds no
-- target. Requests are built once per thread, then replayed round-robin.
-- With `unique` (and RATIO 0.5), every other request is instead a push to a
-- tag never pushed before, built on the fly (to see memory per distinct tag).
-- At the end one line `INTAKE_JSON {...}` sums up throughput, latency
-- percentiles (microseconds) and the status codes seen.

local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
  table.insert(threads, thread)
end

local requests = {}
local index = 0

local function read_file(path)
  local f = assert(io.open(path, "rb"))
  local text = f:read("*a")
  f:close()
  return text
end

local function list_payloads(dir)
  local names = {}
  local p = assert(io.popen('ls "' .. dir .. '"'))
  for name in p:lines() do
    if name:match("^distribution%-.*%.json$") then
      table.insert(names, dir .. "/" .. name)
    end
  end
  p:close()
  table.sort(names)
  return names
end

function init(args)
  local dir, token = args[1], args[2]
  local ratio = tonumber(args[3] or "0.5")
  headers = {
    ["Content-Type"] = "application/vnd.docker.distribution.events.v1+json",
    ["Authorization"] = "Bearer " .. token,
  }
  path = "/v1/hooks/distribution"
  local fixed = {}
  for _, file in ipairs(list_payloads(dir)) do
    table.insert(fixed, read_file(file))
  end
  assert(#fixed > 0, "no distribution-*.json in " .. dir)
  template = read_file(dir .. "/distribution-push-manifest.json")
  unique_tags = args[4] == "unique"
  unique_count = 0
  run_id = os.time()
  local tid = _G.tid or 0
  -- 6000 per thread: more distinct event ids than hoist remembers (4096), so
  -- the synthesized pushes are never taken for redeliveries.
  local count = 6000
  local every = math.max(1, math.floor(1 / (1 - ratio) + 0.5))
  local f = 0
  for i = 1, count do
    local body
    if ratio < 1 and i % every == 0 then
      local id = string.format("bench-%d-%08d-0000-4000-8000-000000000000", tid, i)
      body = template
        :gsub('"id": "19cbf5d3%-3d57%-44b2%-b35d%-c578eb991099"', '"id": "' .. id .. '"', 1)
        :gsub('"tag": "1%.0"', '"tag": "bench-' .. (i % 50) .. '"', 1)
    else
      f = f % #fixed + 1
      body = fixed[f]
    end
    requests[i] = wrk.format("POST", path, headers, body)
  end
end

function request()
  index = index % #requests + 1
  if unique_tags and index % 2 == 0 then
    -- A tag never pushed before, every time (for growth per distinct tag).
    unique_count = unique_count + 1
    local id = string.format("uniq-%d-%d-%010d-0000-4000-8000-000000000000", run_id, _G.tid or 0, unique_count)
    local body = template
      :gsub('"id": "19cbf5d3%-3d57%-44b2%-b35d%-c578eb991099"', '"id": "' .. id .. '"', 1)
      :gsub('"tag": "1%.0"', '"tag": "u' .. run_id .. '-' .. (_G.tid or 0) .. '-' .. unique_count .. '"', 1)
    return wrk.format("POST", path, headers, body)
  end
  return requests[index]
end

-- Counted in the thread's globals, which done() reads through thread:get.
function response(status, headers, body)
  local key = "n" .. status
  _G[key] = (_G[key] or 0) + 1
end

function done(summary, latency, requests)
  local statuses = {}
  for _, thread in ipairs(threads) do
    for _, code in ipairs({200, 202, 400, 401, 404, 413, 503}) do
      local n = thread:get("n" .. code)
      if n and n > 0 then
        statuses[code] = (statuses[code] or 0) + n
      end
    end
  end
  local parts = {}
  for code, n in pairs(statuses) do
    table.insert(parts, string.format('"%d": %d', code, n))
  end
  local seconds = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    'INTAKE_JSON {"requests": %d, "seconds": %.3f, "rps": %.1f, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f, "errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, "statuses": {%s}}\n',
    summary.requests, seconds, summary.requests / seconds,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
    e.connect, e.read, e.write, e.status, e.timeout, table.concat(parts, ", ")))
end
