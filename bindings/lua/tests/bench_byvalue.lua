-- Why the C ABI has _n variants: the same header set + body read through
-- the pe_slice-by-value functions (the JIT cannot compile those calls, so
-- the loop runs in the interpreter) and through the pointer + length ones.
--   luajit bench_byvalue.lua [ITERATIONS]      (POLICYEXEC_LIBRARY set)
local dir = arg[0]:match("^(.*)/[^/]*$") or "."
package.path = dir .. "/../?.lua;" .. package.path
local ffi = require "ffi"
local pe = require "policyexec"
ffi.cdef [[
int pe_exchange_header_set(pe_exchange *ex, int dir, pe_slice name, pe_slice value);
pe_slice pe_exchange_body(const pe_exchange *ex, int dir);
struct pe_bv_timespec { long tv_sec; long tv_nsec; };
int clock_gettime(int clk, struct pe_bv_timespec *ts);
]]
local C = pe.load()
local ts = ffi.new("struct pe_bv_timespec")
local function now_ns()
  ffi.C.clock_gettime(1, ts)
  return tonumber(ts.tv_sec) * 1e9 + tonumber(ts.tv_nsec)
end
local n = tonumber(arg[1] or 1000000)
local ex = pe.engine():exchange()
local h = ex.h
ex:set_body(pe.REQUEST, "hello")
local name, value = ffi.new("pe_slice", {"x-a", 3}), ffi.new("pe_slice", {"v", 1})

local function by_value()
  local total = 0
  for _ = 1, n do
    C.pe_exchange_header_set(h, 0, name, value)
    total = total + tonumber(C.pe_exchange_body(h, 0).len)
  end
  return total
end

local len = ffi.new("size_t[1]")
local function by_pointer()
  local total = 0
  for _ = 1, n do
    C.pe_exchange_header_set_n(h, 0, "x-a", 3, "v", 1)
    C.pe_exchange_body_n(h, 0, len)
    total = total + tonumber(len[0])
  end
  return total
end

for _, case in ipairs({{"pe_slice by value", by_value}, {"pointer + length (_n)", by_pointer}}) do
  case[2]() -- warm up (and compile, where the JIT can)
  local best = math.huge
  for _ = 1, 3 do -- the least disturbed of three runs
    local t0 = now_ns()
    assert(case[2]() == 5 * n)
    best = math.min(best, (now_ns() - t0) / n)
  end
  print(string.format("luajit   header set + body read, %-22s min %6.0f ns", case[1] .. ":", best))
end
