-- The native-4 exchange a proxy runs, as bench/bench_exchange.c does it in
-- C: fill the request, run the four phases, read the result. Shared by the
-- JIT test (jit.v must show no NYI) and the benchmark.
local pe = require "policyexec"
local REQ, RESP = pe.REQUEST, pe.RESPONSE

local M = {}

function M.one(chain, ex, payload)
  ex:reset()
  ex:set_method("POST")
  ex:set_path("/echo")
  ex:set_authority("backend.local:9000")
  ex:add_header(REQ, "user-agent", "bench")
  ex:add_header(REQ, "content-type", "text/plain")
  ex:add_header(REQ, "accept", "*/*")
  ex:set_body(REQ, payload)
  chain:run(ex, 0)
  chain:run(ex, 1)
  if ex:verdict() ~= 0 then return nil end
  ex:set_status(200)
  ex:add_header(RESP, "content-type", "text/plain")
  ex:set_body(RESP, ex:body(REQ))
  chain:run_phases(ex, 2, 3)
  -- Read the result as a proxy would.
  local status = ex:status()
  local phase = ex:header(RESP, "x-sample-policy-phase")
  local body = ex:body(RESP)
  return status == 200 and phase ~= nil and #body > #payload
end

function M.run(chain, ex, payload, n)
  local one, ok = M.one, 0
  for _ = 1, n do
    if one(chain, ex, payload) then ok = ok + 1 end
  end
  if ok ~= n then error(string.format("%d of %d exchanges wrong", n - ok, n)) end
  return ok
end

return M
