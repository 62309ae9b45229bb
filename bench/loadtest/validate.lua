-- wrk script of the load test: POSTs the payload and checks EVERY response.
--
-- Arguments (after "--" on wrk's command line):
--   1  payload file (its exact bytes are the request body)
--   2  mode: "policies"  -> expect header x-sample-policy-phase: response-header
--                           and body "[sample-response-body][sample-request-body]" .. payload
--            "plain"     -> expect no such header and body == payload
--   3  max requests per thread, 0 = unlimited (the smoke test counts
--      requests instead of timing them; wrk's -d stays as a safety bound)
--
-- Counting is per thread: a response that arrives is checked, a request cut
-- off by the end of the run is not counted by wrk either.
--
-- done() prints one line "LOADTEST_RESULT {json}" that harness/wrk_run.py
-- parses: wrk's own counters and latency distribution plus our validation
-- counters summed over all threads.

local POLICY_HEADER = "x-sample-policy-phase"
local POLICY_VALUE = "response-header"
local BODY_PREFIX = "[sample-response-body][sample-request-body]"

-- Each wrk thread runs its own Lua state; setup() runs in the main state and
-- keeps the thread handles so done() can read each thread's counters.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

local function read_file(path)
  local f = assert(io.open(path, "rb"), "cannot open payload file " .. tostring(path))
  local data = f:read("*a")
  f:close()
  return data
end

-- Thread-local state (globals of this thread's Lua state, read by done()).
checked = 0
ok = 0
non2xx = 0
mismatches = 0
first_failure = ""
stopping = false

local expected_body, expect_header, max_requests

function init(args)
  local payload = read_file(args[1])
  local mode = args[2]
  assert(mode == "policies" or mode == "plain", "mode must be policies or plain")
  expect_header = (mode == "policies")
  expected_body = expect_header and (BODY_PREFIX .. payload) or payload
  max_requests = tonumber(args[3] or "0") or 0

  wrk.method = "POST"
  wrk.body = payload
  wrk.headers["Content-Type"] = "application/json"
end

-- Header names arrive as the server spelled them; HTTP names are
-- case-insensitive, so compare lower-cased.
local function policy_header(headers)
  for name, value in pairs(headers) do
    if string.lower(name) == POLICY_HEADER then
      return value
    end
  end
  return nil
end

local function note_failure(why)
  if first_failure == "" then
    first_failure = why
  end
end

function response(status, headers, body)
  checked = checked + 1
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
    note_failure("status " .. status)
  else
    local value = policy_header(headers)
    local header_ok
    if expect_header then
      header_ok = (value == POLICY_VALUE)
    else
      header_ok = (value == nil)
    end
    if header_ok and body == expected_body then
      ok = ok + 1
    else
      mismatches = mismatches + 1
      note_failure("header=" .. tostring(value) .. " body=" .. string.sub(tostring(body), 1, 120))
    end
  end
  if max_requests > 0 and checked >= max_requests and not stopping then
    stopping = true
    -- wrk's main thread sleeps for the whole -d duration whatever its
    -- threads do; this line tells harness/wrk_run.py to end it early
    -- (SIGINT, after which wrk reports as usual).
    io.write("LOADTEST_THREAD_DONE\n")
    io.flush()
    wrk.thread:stop()
  end
end

-- Minimal JSON encoding: numbers and escaped strings only.
local function json_string(s)
  s = string.gsub(s, '[%c"\\]', function(c)
    return string.format("\\u%04x", string.byte(c))
  end)
  return '"' .. s .. '"'
end

function done(summary, latency, requests)
  local c, k, n2, mm, failure = 0, 0, 0, 0, ""
  for _, t in ipairs(threads) do
    c = c + t:get("checked")
    k = k + t:get("ok")
    n2 = n2 + t:get("non2xx")
    mm = mm + t:get("mismatches")
    if failure == "" then
      failure = t:get("first_failure")
    end
  end

  -- Latency distribution (microseconds) for the percentile chart.
  local points = {}
  -- (wrk's percentile(100) answers 0, so the 100th point is latency.max.)
  local pcts = { 1, 5, 10, 20, 25, 30, 40, 50, 60, 70, 75, 80, 90, 95, 97.5, 99, 99.5, 99.9, 99.99 }
  for _, p in ipairs(pcts) do
    table.insert(points, string.format("[%g,%d]", p, latency:percentile(p)))
  end
  table.insert(points, string.format("[100,%d]", latency.max))

  local e = summary.errors
  io.write("LOADTEST_RESULT {",
    string.format('"duration_us":%d,"requests":%d,"bytes":%d,', summary.duration, summary.requests, summary.bytes),
    string.format('"socket_errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},',
      e.connect, e.read, e.write, e.status, e.timeout),
    string.format('"latency_us":{"min":%d,"mean":%.3f,"stdev":%.3f,"max":%d,"p50":%d,"p95":%d,"p99":%d},',
      latency.min, latency.mean, latency.stdev, latency.max,
      latency:percentile(50), latency:percentile(95), latency:percentile(99)),
    string.format('"checked":%d,"ok":%d,"non2xx":%d,"mismatches":%d,', c, k, n2, mm),
    '"first_failure":', json_string(failure), ',',
    '"latency_distribution_us":[', table.concat(points, ","), ']',
    "}\n")
end
