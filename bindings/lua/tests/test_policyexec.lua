-- The LuaJIT binding against the real library, run by CTest with plain
-- luajit: every public function, the bad inputs, lifetimes, the plugin
-- loaded with the library RTLD_LOCAL, byte-for-byte agreement with the C
-- API (tests/hosts/exchange_dump.c), and no NYI on the hot path (jit.v).
local dir = arg[0]:match("^(.*)/[^/]*$") or "."
package.path = dir .. "/?.lua;" .. dir .. "/../?.lua;" .. package.path

local ffi = require "ffi"
local pe = require "policyexec"
local env = os.getenv
local PLUGIN, PYWORKER = env("PE_SAMPLE_PLUGIN"), env("PE_PYWORKER")
local PY_SAMPLES, PY_TEST = env("PE_PY_SAMPLES"), env("PE_PY_TEST_POLICIES")
local CHAINS = env("PE_SOURCE_DIR") .. "/tests/hosts/chains/"
local NATIVE4 = [==[[
  {"name": "sample-native-response-header", "version": "1.0.0"},
  {"name": "sample-native-request-body", "version": "1.0.0"},
  {"name": "sample-native-response-header", "version": "1.0.0"},
  {"name": "sample-native-response-body", "version": "1.0.0"}]]==]

local tests, names = {}, {}
local function test(name, fn) names[#names + 1] = name; tests[name] = fn end

local function eq(got, want, what)
  if got ~= want then
    error(string.format("%s: got %q, want %q", what or "value", tostring(got), tostring(want)), 2)
  end
end

-- Calls fn and checks it raised a library error with this code.
local function raises(code, fn, ...)
  local ok, err = pcall(fn, ...)
  if ok then error("no error raised, want " .. code, 2) end
  if not pe.is_error(err) then error("not a policyexec error: " .. tostring(err), 2) end
  if err.code ~= pe.codes[code] then error("raised " .. tostring(err) .. ", want " .. code, 2) end
  if err.message == "" then error("error without a message", 2) end
  return err
end

local function native_engine(opts)
  local e = pe.engine(opts)
  e:load_plugin(PLUGIN)
  return e
end

test("library is RTLD_LOCAL and the plugin still loads", function()
  local e = native_engine()
  eq(e:has_policy("sample-native-request-body", "1.0.0"), true)
  eq(e:has_policy("sample-native-request-body", "2"), false)
  -- pe_* are not in the global namespace: the plugin used its API table.
  eq(pcall(function() return ffi.C.pe_engine_new end), false, "global pe_engine_new")
  eq(pe.library_path, env("POLICYEXEC_LIBRARY"))
  eq(pe.load(), pe.load(env("POLICYEXEC_LIBRARY")))
  eq(pcall(pe.load, "/nonexistent/libpolicyexec.so.0"), false, "a second library")
  e:close()
end)

test("missing library says what was tried", function()
  local p = io.popen("POLICYEXEC_LIBRARY=/nonexistent/libpolicyexec.so.0 luajit -e '" ..
                     "package.path=\"" .. dir .. "/../?.lua;\"..package.path; " ..
                     "print(select(2, pcall(require(\"policyexec\").load)))' 2>&1")
  local out = p:read("*a")
  p:close()
  assert(out:find("libpolicyexec not found", 1, true), out)
  assert(out:find("/nonexistent/libpolicyexec.so.0", 1, true), out)
end)

test("engine: plugins, limits, python pool", function()
  local e = pe.engine{limits = {header_count = 3, body_bytes = 10}}
  local err = raises("PLUGIN", e.load_plugin, e, "/nonexistent/plugin.so")
  assert(err.message:find("/nonexistent/plugin.so", 1, true))
  e:load_plugin(PLUGIN)
  raises("EXISTS", e.load_plugin, e, PLUGIN)
  eq(e:limit("header_count"), 3)
  eq(e:limit("body_bytes"), 10)
  raises("INVALID_ARGUMENT", e.limit, e, "nope")
  raises("INVALID_ARGUMENT", pe.engine, {limits = {bogus = 1}})
  local ex = e:exchange()
  raises("BODY_TOO_LARGE", ex.set_body, ex, pe.REQUEST, string.rep("x", 11))
  for i = 1, 3 do ex:add_header(pe.REQUEST, "h" .. i, "v") end
  raises("TOO_MANY_HEADERS", ex.add_header, ex, pe.REQUEST, "h4", "v")
  e:start_python{module_paths = {PY_SAMPLES, PY_TEST}, workers = 1, worker_path = PYWORKER,
                 default_timeout_ms = 5000}
  eq(e:python_ping(), 1)
  local c = e:chain('[{"name": "test-raise", "version": "1.0.0"}]')
  ex:reset()
  ex:set_method("GET")
  ex:set_path("/")
  eq(c:run(ex, pe.REQUEST_HEADERS), pe.RESPOND)
  eq(ex:status(), 500)
  assert(ex:errmsg():find("test-raise", 1, true), ex:errmsg())
  ex:close(); c:close(); e:close()
end)

test("chain: build errors and properties", function()
  local e = native_engine()
  raises("JSON", e.chain, e, "[")
  raises("UNKNOWN_POLICY", e.chain, e, '[{"name": "nope", "version": "1"}]')
  raises("PARAM", e.chain, e,
         '[{"name": "sample-native-request-body", "version": "1.0.0", "params": {"x": 1}}]')
  raises("INVALID_ARGUMENT", e.chain, e, {})
  local c = e:chain(NATIVE4)
  eq(c.step_count, 4)
  eq(c.needs, 3)
  eq(c.phases, 14)
  local ex = e:exchange()
  raises("INVALID_ARGUMENT", c.run, c, ex, 7)
  e:close()
end)

test("exchange: request line, status, bodies, metadata", function()
  local e = native_engine()
  local ex = e:exchange()
  eq(ex:method(), ""); eq(ex:path(), ""); eq(ex:authority(), ""); eq(ex:status(), 0)
  ex:set_method("PUT"); ex:set_path("/a?b=1"); ex:set_authority("h:1"); ex:set_status(204)
  eq(ex:method(), "PUT"); eq(ex:path(), "/a?b=1"); eq(ex:authority(), "h:1"); eq(ex:status(), 204)
  raises("INVALID_VALUE", ex.set_method, ex, "G T")
  raises("INVALID_VALUE", ex.set_path, ex, "/a b")
  raises("INVALID_VALUE", ex.set_status, ex, 42)
  raises("INVALID_ARGUMENT", ex.set_status, ex, "200")
  raises("INVALID_ARGUMENT", ex.set_method, ex, {})
  eq(ex:body(pe.REQUEST), "")
  ex:set_body(pe.REQUEST, "b\0c")
  ex:prepend_body(pe.REQUEST, "a")
  ex:append_body(pe.REQUEST, "d")
  eq(ex:body(pe.REQUEST), "ab\0cd")
  ex:set_meta("k", "v")
  ex:set_meta("b", "\255")
  eq(ex:meta("k"), "v"); eq(ex:meta("none"), nil)
  local m = ex:metadata()
  eq(#m, 2); eq(m[2][1], "b"); eq(m[2][2], "\255")
  eq(ex:remove_meta("k"), true); eq(ex:remove_meta("k"), false)
  raises("INVALID_ARGUMENT", ex.set_meta, ex, "", "v")
  e:close()
end)

test("exchange: headers", function()
  local e = native_engine()
  local ex = e:exchange()
  local R = pe.REQUEST
  ex:add_header(R, "Accept", "a")
  ex:add_header(R, "accept", "b")
  ex:set_header(R, "X-One", "1")
  eq(ex:header(R, "ACCEPT"), "a")
  eq(ex:header(R, "accept", 1), "b")
  eq(ex:header(R, "none"), nil)
  eq(table.concat(ex:header_all(R, "accept"), ","), "a,b")
  eq(#ex:header_all(R, "none"), 0)
  eq(ex:header_count(R), 3)
  local all = ex:headers(R)
  eq(all[1][1], "Accept"); eq(all[2][2], "b"); eq(all[3][1], "X-One")
  ex:set_header(R, "accept", "c")
  eq(table.concat(ex:header_all(R, "Accept"), ","), "c")
  eq(ex:remove_header(R, "ACCEPT"), 1)
  eq(ex:remove_header(R, "ACCEPT"), 0)
  for _, bad in ipairs({{"x", "a\r\nb", "HEADER_VALUE"}, {"x", "a\nb", "HEADER_VALUE"},
                        {"x", "a\0b", "HEADER_VALUE"}, {"a b", "v", "HEADER_NAME"},
                        {"", "v", "HEADER_NAME"}, {"x:y", "v", "HEADER_NAME"}}) do
    raises(bad[3], ex.set_header, ex, R, bad[1], bad[2])
    raises(bad[3], ex.add_header, ex, R, bad[1], bad[2])
  end
  eq(ex:header_count(R), 1)
  e:close()
end)

test("exchange: respond, verdict, reset", function()
  local e = native_engine()
  local ex = e:exchange()
  eq(ex:verdict(), pe.CONTINUE); eq(ex:responded(), false)
  ex:set_header(pe.RESPONSE, "x-old", "1")
  ex:respond(403, "no", {{"content-type", "text/plain"}})
  eq(ex:responded(), true); eq(ex:status(), 403); eq(ex:body(pe.RESPONSE), "no")
  eq(ex:header(pe.RESPONSE, "x-old"), nil)
  eq(ex:header(pe.RESPONSE, "content-type"), "text/plain")
  raises("INVALID_VALUE", ex.respond, ex, 1000)
  ex:respond(401, nil, {["www-authenticate"] = "Basic"})
  eq(ex:header(pe.RESPONSE, "www-authenticate"), "Basic")
  ex:reset()
  eq(ex:verdict(), pe.CONTINUE); eq(ex:status(), 0); eq(ex:errmsg(), "")
  e:close()
end)

test("use after close is refused; closing twice frees once", function()
  local e = native_engine()
  local c = e:chain(NATIVE4)
  local ex = e:exchange()
  ex:close(); ex:close()
  for _, f in ipairs({function() ex:method() end, function() ex:set_path("/") end,
                      function() ex:add_header(0, "a", "b") end, function() ex:metadata() end,
                      function() ex:body(0) end, function() ex:reset() end,
                      function() c:run(ex, 0) end, function() ex:respond(200) end}) do
    raises("STATE", f)
  end
  c:close(); c:close()
  local ex2 = e:exchange()
  assert(tostring(raises("STATE", c.run, c, ex2, 0)):find("chain is closed", 1, true))
  e:close(); e:close()
  raises("STATE", e.exchange, e)
  raises("STATE", e.chain, e, NATIVE4)
  raises("STATE", e.load_plugin, e, PLUGIN)
  -- ex2 outlives its engine's handle: the C engine is reference-counted.
  ex2:set_status(200)
  ex2:close()
end)

test("garbage collection frees handles", function()
  for _ = 1, 50 do
    local e = native_engine()
    local c = e:chain(NATIVE4)
    local ex = e:exchange()
    ex:set_body(pe.REQUEST, string.rep("x", 1000))
    c:run(ex, pe.REQUEST_BODY)
  end
  collectgarbage()
  collectgarbage()
end)

test("same bytes as the C API (native, mixed native + Python, immediate response)", function()
  local run = require "dump"
  for _, case in ipairs({{"native4", false}, {"mixed", true}, {"respond", true}}) do
    local args = {PLUGIN, PYWORKER, CHAINS .. case[1] .. ".json"}
    if case[2] then args[4], args[5] = PY_SAMPLES, PY_TEST end
    local p = io.popen(env("PE_EXCHANGE_DUMP") .. " " .. table.concat(args, " "))
    local want = p:read("*a")
    p:close()
    assert(#want > 100, "exchange_dump printed nothing")
    eq(run(unpack(args)), want, case[1])
  end
end)

test("no NYI on the hot path (jit.v)", function()
  local log = os.tmpname()
  local bench = require "bench_loop"
  local e = native_engine()
  local c = e:chain(NATIVE4)
  local ex = e:exchange()
  local v = require "jit.v"
  v.on(log)
  bench.run(c, ex, string.rep("x", 50), 3000)
  v.off()
  local f = assert(io.open(log))
  local text = f:read("*a")
  f:close()
  os.remove(log)
  -- The loop itself must compile (with the whole exchange inlined), and
  -- nothing may abort for a reason other than a function-entry trace
  -- reaching the loop, which LuaJIT then records as part of the loop.
  assert(text:find("bench_loop.lua:%d+ loop%]"), "the exchange loop did not compile:\n" .. text)
  for line in text:gmatch("[^\n]+") do
    if line:find("NYI", 1, true) then error("JIT fallback: " .. line) end
    if line:find("TRACE ---", 1, true) and not line:find("leaving loop in root trace", 1, true) then
      error("trace aborted: " .. line)
    end
  end
  e:close()
end)

local failed = 0
for _, name in ipairs(names) do
  local ok, err = xpcall(tests[name], debug.traceback)
  print((ok and "ok   " or "FAIL ") .. name)
  if not ok then
    failed = failed + 1
    print("  " .. tostring(err):gsub("\n", "\n  "))
  end
end
print(string.format("%d tests, %d failed", #names, failed))
os.exit(failed == 0 and 0 or 1)
