-- Runs a libpolicyexec chain in OpenResty / lua-nginx-module:
--
--   init_worker_by_lua_block  { require("policyexec_nginx").init{plugins = {...}, chain = json} }
--   access_by_lua_block       { require("policyexec_nginx").access() }
--   header_filter_by_lua_block{ require("policyexec_nginx").header_filter() }
--   log_by_lua_block          { require("policyexec_nginx").log() }
--
-- The request phases run in the access phase (reading the body when the
-- chain needs it); an immediate response is sent from there. The response
-- headers phase runs in the header filter. Each nginx worker has its own
-- engine (and, if started, its own Python pool). A response body phase
-- would need the body buffered in a body filter; this example leaves it out.
local pe = require "policyexec"

local ngx = ngx
local _M = {}
local engine, chain

function _M.init(opts)
  engine = pe.engine{library = opts.library}
  for _, path in ipairs(opts.plugins or {}) do engine:load_plugin(path) end
  if opts.python then engine:start_python(opts.python) end
  chain = engine:chain(opts.chain)
end

-- Adds nginx's header table (name -> string or list) to side dir.
local function add_headers(ex, dir, headers)
  for name, v in pairs(headers) do
    if type(v) == "table" then
      for _, x in ipairs(v) do ex:add_header(dir, name, x) end
    else
      ex:add_header(dir, name, v)
    end
  end
end

-- The exchange's headers of side dir, grouped: lowercase name -> list.
local function grouped(ex, dir)
  local out = {}
  for _, nv in ipairs(ex:headers(dir)) do
    local k = nv[1]:lower()
    local t = out[k]
    if not t then t = {}; out[k] = t end
    t[#t + 1] = nv[2]
  end
  return out
end

local function send_immediate(ex)
  ngx.ctx.pe_responded = true
  ngx.status = ex:status()
  for name, values in pairs(grouped(ex, pe.RESPONSE)) do
    ngx.header[name] = #values == 1 and values[1] or values
  end
  ngx.header["content-length"] = #ex:body(pe.RESPONSE)
  ngx.print(ex:body(pe.RESPONSE))
  return ngx.exit(ngx.status)
end

function _M.access()
  local ex = engine:exchange()
  ngx.ctx.pe_ex = ex
  ex:set_method(ngx.req.get_method())
  ex:set_path(ngx.var.request_uri)
  ex:set_authority(ngx.var.http_host or "")
  local before = ngx.req.get_headers(100, true)
  add_headers(ex, pe.REQUEST, before)
  if chain:run(ex, pe.REQUEST_HEADERS) == pe.RESPOND then return send_immediate(ex) end
  if chain.needs % 2 == 1 then -- NEEDS_REQUEST_BODY
    ngx.req.read_body()
    ex:set_body(pe.REQUEST, ngx.req.get_body_data() or "")
    if chain:run(ex, pe.REQUEST_BODY) == pe.RESPOND then return send_immediate(ex) end
    ngx.req.set_body_data(ex:body(pe.REQUEST))
  end
  -- The upstream sees the request headers as the policies left them.
  local after = grouped(ex, pe.REQUEST)
  for name in pairs(before) do
    if not after[name:lower()] then ngx.req.clear_header(name) end
  end
  for name, values in pairs(after) do
    ngx.req.set_header(name, #values == 1 and values[1] or values)
  end
end

function _M.header_filter()
  local ex = ngx.ctx.pe_ex
  if not ex or ngx.ctx.pe_responded then return end
  ex:set_status(ngx.status)
  local before = ngx.resp.get_headers(100, true)
  add_headers(ex, pe.RESPONSE, before)
  chain:run(ex, pe.RESPONSE_HEADERS)
  if ex:responded() then
    ngx.status = ex:status() -- the body is the upstream's (see the note above)
  end
  local after = grouped(ex, pe.RESPONSE)
  for name in pairs(before) do
    if not after[name:lower()] then ngx.header[name] = nil end
  end
  for name, values in pairs(after) do
    ngx.header[name] = #values == 1 and values[1] or values
  end
end

-- Frees the exchange at once (the GC would too, later).
function _M.log()
  local ex = ngx.ctx.pe_ex
  if ex then
    ngx.ctx.pe_ex = nil
    ex:close()
  end
end

return _M
