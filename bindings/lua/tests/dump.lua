-- The fixed exchange script of tests/hosts/exchange_dump.c, through the Lua
-- binding, printed in the same canonical form (keep them identical).
local pe = require "policyexec"

local function esc(s)
  return (s:gsub(".", function(c)
    local b = c:byte()
    if b < 0x21 or b > 0x7e or b == 0x5c then return string.format("\\x%02x", b) end
  end))
end

local function run_script(chain, ex)
  local ok, err = pcall(function()
    ex:set_method("POST")
    ex:set_path("/echo?x=1")
    ex:set_authority("backend.local:9000")
    ex:add_header(pe.REQUEST, "User-Agent", "dump")
    ex:add_header(pe.REQUEST, "Accept", "a")
    ex:add_header(pe.REQUEST, "accept", "b")
    ex:add_header(pe.REQUEST, "x-in", "v\233")
    ex:set_meta("tenant", "t1")
    ex:set_body(pe.REQUEST, "hello\0world\255")
    for _, phase in ipairs({pe.REQUEST_HEADERS, pe.REQUEST_BODY}) do
      if ex:verdict() == pe.CONTINUE then chain:run(ex, phase) end
    end
    if ex:verdict() ~= pe.CONTINUE then return end
    ex:set_status(200)
    ex:add_header(pe.RESPONSE, "Content-Type", "text/plain")
    ex:add_header(pe.RESPONSE, "Set-Cookie", "a=1")
    ex:add_header(pe.RESPONSE, "set-cookie", "b=2")
    ex:set_body(pe.RESPONSE, ex:body(pe.REQUEST))
    chain:run_phases(ex, pe.RESPONSE_HEADERS, pe.RESPONSE_BODY)
  end)
  if ok then return "PE_OK" end
  if pe.is_error(err) then return err.name end
  error(err, 0)
end

local function dump(ex, rc)
  local out = {"rc " .. rc, "verdict " .. ex:verdict(), "status " .. ex:status(),
               "method " .. esc(ex:method()), "path " .. esc(ex:path()),
               "authority " .. esc(ex:authority())}
  for dir, side in ipairs({"request", "response"}) do
    for _, nv in ipairs(ex:headers(dir - 1)) do
      out[#out + 1] = side .. "-header " .. esc(nv[1]) .. ": " .. esc(nv[2])
    end
    out[#out + 1] = side .. "-body " .. esc(ex:body(dir - 1))
  end
  for _, kv in ipairs(ex:metadata()) do out[#out + 1] = "meta " .. esc(kv[1]) .. "=" .. esc(kv[2]) end
  return table.concat(out, "\n") .. "\n"
end

-- main(plugin, worker, chain_file, module_dir...) -> the dump text
return function(plugin, worker, chain_file, ...)
  local engine = pe.engine()
  engine:load_plugin(plugin)
  local dirs = {...}
  if #dirs > 0 then engine:start_python{module_paths = dirs, workers = 1, worker_path = worker} end
  local f = assert(io.open(chain_file, "rb"))
  local chain = engine:chain(f:read("*a"))
  f:close()
  local ex = engine:exchange()
  local text = dump(ex, run_script(chain, ex))
  ex:close()
  chain:close()
  engine:close()
  return text
end
