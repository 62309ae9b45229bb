-- The native-4 exchange of bench/bench_exchange.c through the LuaJIT
-- binding (bench_loop.lua): luajit bench.lua PLUGIN.so [ITERATIONS [REPEATS]]
-- Prints the minimum and the median over REPEATS runs, in ns per exchange.
local dir = arg[0]:match("^(.*)/[^/]*$") or "."
package.path = dir .. "/?.lua;" .. dir .. "/../?.lua;" .. package.path
local ffi = require "ffi"
local pe = require "policyexec"
local loop = require "bench_loop"

ffi.cdef [[
struct pe_bench_timespec { long tv_sec; long tv_nsec; };
int clock_gettime(int clk, struct pe_bench_timespec *ts);
]]
local ts = ffi.new("struct pe_bench_timespec")
local function now_ns()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1e9 + tonumber(ts.tv_nsec)
end

local plugin = assert(arg[1], "usage: bench.lua PLUGIN.so [ITERATIONS [REPEATS]]")
local n, repeats = tonumber(arg[2] or 200000), tonumber(arg[3] or 5)
local e = pe.engine()
e:load_plugin(plugin)
local chain = e:chain([==[[
  {"name": "sample-native-response-header", "version": "1.0.0"},
  {"name": "sample-native-request-body", "version": "1.0.0"},
  {"name": "sample-native-response-header", "version": "1.0.0"},
  {"name": "sample-native-response-body", "version": "1.0.0"}]]==])
local ex = e:exchange()
local payload = string.rep("x", 50)
loop.run(chain, ex, payload, math.floor(n / 10) + 1)
local runs = {}
for r = 1, repeats do
  local t0 = now_ns()
  loop.run(chain, ex, payload, n)
  runs[r] = (now_ns() - t0) / n
end
table.sort(runs)
print(string.format("luajit   native-4 exchange: min %8.0f ns, median %8.0f ns (%d runs of %d)",
                    runs[1], runs[math.floor(repeats / 2) + 1], repeats, n))
