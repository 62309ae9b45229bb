-- policyexec: run libpolicyexec chains from LuaJIT (plain luajit or
-- OpenResty's lua-nginx-module), on ffi.cdef. See README.md.
--
-- Objects map one to one onto the C ABI: Engine, Chain, Exchange. Handles
-- are freed by :close() or by the garbage collector (ffi.gc), never twice;
-- a closed object raises a PE_ERR_STATE error. Failures raise an error
-- object (a table: code, name, message; tostring() gives "NAME: message").
--
-- The hot path (exchange setters and getters, runs) calls only the
-- pointer + length variants of the C API (<policyexec/ffi.h>): LuaJIT's
-- compiler cannot pass or return structs by value and would fall back to
-- the interpreter. It creates no closures and uses no pairs(), so it
-- compiles whole (check with luajit -jv).
local ffi = require "ffi"

local C_string, C_new, C_gc = ffi.string, ffi.new, ffi.gc
local setmetatable, error, type, tostring, tonumber = setmetatable, error, type, tostring, tonumber

ffi.cdef [[
typedef struct pe_engine pe_engine;
typedef struct pe_chain pe_chain;
typedef struct pe_exchange pe_exchange;
typedef struct pe_engine_options pe_engine_options;
typedef struct pe_python_options pe_python_options;
typedef struct pe_slice { const char *ptr; size_t len; } pe_slice;

const char *pe_strerror(int code);
const char *pe_errname(int code);
int pe_version(const char **str);

int pe_engine_options_new(pe_engine_options **out);
void pe_engine_options_free(pe_engine_options *opts);
int pe_engine_options_set_limit(pe_engine_options *opts, int which, size_t value);
int pe_engine_new(pe_engine **out, const pe_engine_options *opts);
void pe_engine_free(pe_engine *engine);
size_t pe_engine_limit(const pe_engine *engine, int which);
const char *pe_engine_errmsg(const pe_engine *engine);
int pe_engine_load_plugin(pe_engine *engine, const char *path);
int pe_engine_has_policy_n(pe_engine *engine, const char *name, size_t name_len,
                           const char *version, size_t version_len);

int pe_python_options_new(pe_python_options **out);
void pe_python_options_free(pe_python_options *opts);
int pe_python_options_set_workers(pe_python_options *opts, unsigned workers);
int pe_python_options_set_worker_path(pe_python_options *opts, const char *path);
int pe_python_options_add_module_path(pe_python_options *opts, const char *dir);
int pe_python_options_set_default_timeout(pe_python_options *opts, uint32_t timeout_ms);
int pe_engine_start_python(pe_engine *engine, const pe_python_options *opts);
int pe_engine_python_ping(pe_engine *engine, size_t *alive);

int pe_chain_new_from_json_n(pe_chain **out, pe_engine *engine, const char *json,
                             size_t json_len, char *errmsg, size_t errmsg_size);
void pe_chain_free(pe_chain *chain);
size_t pe_chain_step_count(const pe_chain *chain);
unsigned pe_chain_phases(const pe_chain *chain);
unsigned pe_chain_needs(const pe_chain *chain);
int pe_chain_run(const pe_chain *chain, pe_exchange *ex, int phase);
int pe_chain_run_phases(const pe_chain *chain, pe_exchange *ex, int first, int last);

int pe_exchange_new(pe_exchange **out, pe_engine *engine);
void pe_exchange_free(pe_exchange *ex);
int pe_exchange_reset(pe_exchange *ex);
const char *pe_exchange_errmsg(const pe_exchange *ex);
int pe_exchange_set_method_n(pe_exchange *ex, const char *p, size_t n);
int pe_exchange_set_path_n(pe_exchange *ex, const char *p, size_t n);
int pe_exchange_set_authority_n(pe_exchange *ex, const char *p, size_t n);
const char *pe_exchange_method_n(const pe_exchange *ex, size_t *len);
const char *pe_exchange_path_n(const pe_exchange *ex, size_t *len);
const char *pe_exchange_authority_n(const pe_exchange *ex, size_t *len);
int pe_exchange_set_status(pe_exchange *ex, int status);
int pe_exchange_status(const pe_exchange *ex);
size_t pe_exchange_header_count(const pe_exchange *ex, int dir);
int pe_exchange_header_at(const pe_exchange *ex, int dir, size_t index, pe_slice *name,
                          pe_slice *value);
int pe_exchange_header_get_nth_n(const pe_exchange *ex, int dir, const char *name,
                                 size_t name_len, size_t nth, pe_slice *value);
int pe_exchange_header_set_n(pe_exchange *ex, int dir, const char *name, size_t name_len,
                             const char *value, size_t value_len);
int pe_exchange_header_add_n(pe_exchange *ex, int dir, const char *name, size_t name_len,
                             const char *value, size_t value_len);
int pe_exchange_header_remove_n(pe_exchange *ex, int dir, const char *name, size_t name_len);
const char *pe_exchange_body_n(const pe_exchange *ex, int dir, size_t *len);
int pe_exchange_body_set_n(pe_exchange *ex, int dir, const char *data, size_t len);
int pe_exchange_body_prepend_n(pe_exchange *ex, int dir, const char *data, size_t len);
int pe_exchange_body_append_n(pe_exchange *ex, int dir, const char *data, size_t len);
size_t pe_exchange_meta_count(const pe_exchange *ex);
int pe_exchange_meta_at(const pe_exchange *ex, size_t index, pe_slice *key, pe_slice *value);
int pe_exchange_meta_get_n(const pe_exchange *ex, const char *key, size_t key_len,
                           pe_slice *value);
int pe_exchange_meta_set_n(pe_exchange *ex, const char *key, size_t key_len, const char *value,
                           size_t value_len);
int pe_exchange_meta_remove_n(pe_exchange *ex, const char *key, size_t key_len);
int pe_exchange_respond_n(pe_exchange *ex, int status, const char *body, size_t body_len);
int pe_exchange_verdict(const pe_exchange *ex);
]]

local M = {
  _VERSION = "0.1.0",
  REQUEST_HEADERS = 0, REQUEST_BODY = 1, RESPONSE_HEADERS = 2, RESPONSE_BODY = 3,
  REQUEST = 0, RESPONSE = 1,
  CONTINUE = 0, RESPOND = 1,
  NEEDS_REQUEST_BODY = 1, NEEDS_RESPONSE_BODY = 2,
  SONAME = "libpolicyexec.so.0",
}

-- The library's return codes, by name and back.
local codes = {
  OK = 0, PENDING = 1, INVALID_ARGUMENT = -1, NOMEM = -2, NOT_FOUND = -3, EXISTS = -4,
  JSON = -5, PARAM = -6, UNKNOWN_POLICY = -7, PLUGIN = -8, HEADER_NAME = -9,
  HEADER_VALUE = -10, TOO_MANY_HEADERS = -11, HEADERS_TOO_LARGE = -12, BODY_TOO_LARGE = -13,
  POLICY = -14, TIMEOUT = -15, WORKER = -16, BUSY = -17, STATE = -18, UNSUPPORTED = -19,
  IO = -20, INVALID_VALUE = -21,
}
M.codes = codes

local C -- the library, once loaded

-- ---- errors ----

local Error = {}
Error.__index = Error
Error.__tostring = function(e) return e.name .. ": " .. e.message end
M.Error = Error

local function raise(code, message, name)
  if C then
    name = name or C_string(C.pe_errname(code))
    if not message or message == "" then message = C_string(C.pe_strerror(code)) end
  end
  error(setmetatable({code = code, name = name or "PE_ERR", message = message or ""}, Error), 3)
end

local function closed(what)
  raise(codes.STATE, what .. " is closed", "PE_ERR_STATE")
end

--- Whether v is an error raised by this module.
function M.is_error(v)
  return getmetatable(v) == Error
end

-- ---- finding the library ----

local function pkg_config_libdir()
  local p = io.popen("pkg-config --variable=libdir policyexec 2>/dev/null")
  if not p then return nil end
  local out = p:read("*l")
  p:close()
  if out and out ~= "" then return out end
  return nil
end

local function install_prefix_libdir()
  -- policyexec_installed.lua is written by cmake --install beside this file.
  local ok, cfg = pcall(require, "policyexec_installed")
  if not ok or type(cfg) ~= "table" then return nil end
  local src = debug.getinfo(1, "S").source
  local dir = src:sub(1, 1) == "@" and src:match("^@(.*)/[^/]*$") or "."
  return dir .. "/" .. cfg.libdir_rel
end

--- Loads libpolicyexec (once) and returns the ffi library namespace.
-- Order: path, POLICYEXEC_LIBRARY, the install prefix, pkg-config, the
-- system loader. ffi.load opens it RTLD_LOCAL. One library per process: a
-- later call with another path is an error.
function M.load(path)
  if C then
    if path and path ~= M.library_path then
      error("libpolicyexec is already loaded from " .. M.library_path .. "; cannot also load " ..
            path, 2)
    end
    return C
  end
  local tried = {}
  local function try(how, candidate)
    if not candidate then return false end
    local ok, lib = pcall(ffi.load, candidate)
    if ok then
      C, M.library_path = lib, candidate
      return true
    end
    tried[#tried + 1] = how .. ": " .. tostring(lib)
    return false
  end
  if path then
    if try("explicit path", path) then return C end
  else
    local env = os.getenv("POLICYEXEC_LIBRARY")
    if env then
      if try("POLICYEXEC_LIBRARY", env) then return C end
    else
      local dir = install_prefix_libdir()
      if dir and try("install prefix", dir .. "/" .. M.SONAME) then return C end
      dir = pkg_config_libdir()
      if dir then
        if try("pkg-config", dir .. "/" .. M.SONAME) then return C end
      else
        tried[#tried + 1] = "pkg-config: no policyexec.pc (or no pkg-config)"
      end
      if try("system loader", M.SONAME) then return C end
    end
  end
  error("libpolicyexec not found. Tried:\n  " .. table.concat(tried, "\n  ") ..
        "\nInstall it (cmake --install), or set POLICYEXEC_LIBRARY=/path/to/" .. M.SONAME ..
        " (in nginx also `env POLICYEXEC_LIBRARY;`), or PKG_CONFIG_PATH, or call " ..
        "policyexec.load(path).", 2)
end

-- ---- engine ----

local Engine = {}
Engine.__index = Engine
M.Engine = Engine

local limits = {header_count = 0, header_bytes = 1, body_bytes = 2, meta_count = 3,
                meta_bytes = 4}

local function engine_check(self, rc)
  if rc < 0 then raise(rc, C_string(C.pe_engine_errmsg(self.h))) end
  return rc
end

--- pe.engine{library = path, limits = {body_bytes = n, ...}}
function M.engine(opts)
  opts = opts or {}
  M.load(opts.library)
  local o = C_new("pe_engine_options *[1]")
  local rc = C.pe_engine_options_new(o)
  if rc < 0 then raise(rc) end
  o = o[0]
  if opts.limits then
    for name, value in pairs(opts.limits) do
      if not limits[name] then
        C.pe_engine_options_free(o)
        raise(codes.INVALID_ARGUMENT, "unknown limit " .. tostring(name))
      end
      rc = C.pe_engine_options_set_limit(o, limits[name], value)
      if rc < 0 then C.pe_engine_options_free(o); raise(rc) end
    end
  end
  local out = C_new("pe_engine *[1]")
  rc = C.pe_engine_new(out, o)
  C.pe_engine_options_free(o)
  if rc < 0 then raise(rc) end
  return setmetatable({h = C_gc(out[0], C.pe_engine_free)}, Engine)
end

local function engine_handle(self)
  local h = self.h
  if h == nil then closed("engine") end
  return h
end

--- Releases the engine (idempotent). Chains and exchanges made from it
-- keep the C engine alive (it is reference-counted).
function Engine:close()
  local h = self.h
  if h ~= nil then
    self.h = nil
    C_gc(h, nil)
    C.pe_engine_free(h)
  end
end

function Engine:load_plugin(path)
  engine_check(self, C.pe_engine_load_plugin(engine_handle(self), path))
end

--- Starts the Python pool: {module_paths = {...}, workers = n,
-- worker_path = p, default_timeout_ms = n}.
function Engine:start_python(opts)
  local h = engine_handle(self)
  local o = C_new("pe_python_options *[1]")
  local rc = C.pe_python_options_new(o)
  if rc < 0 then raise(rc) end
  o = o[0]
  for _, p in ipairs(opts.module_paths or {}) do
    rc = rc < 0 and rc or C.pe_python_options_add_module_path(o, p)
  end
  if opts.workers and rc >= 0 then rc = C.pe_python_options_set_workers(o, opts.workers) end
  if opts.worker_path and rc >= 0 then
    rc = C.pe_python_options_set_worker_path(o, opts.worker_path)
  end
  if opts.default_timeout_ms and rc >= 0 then
    rc = C.pe_python_options_set_default_timeout(o, opts.default_timeout_ms)
  end
  if rc >= 0 then rc = C.pe_engine_start_python(h, o) end
  C.pe_python_options_free(o)
  engine_check(self, rc)
end

function Engine:python_ping()
  local alive = C_new("size_t[1]")
  engine_check(self, C.pe_engine_python_ping(engine_handle(self), alive))
  return tonumber(alive[0])
end

function Engine:has_policy(name, version)
  return C.pe_engine_has_policy_n(engine_handle(self), name, #name, version, #version) == 1
end

function Engine:limit(name)
  if not limits[name] then raise(codes.INVALID_ARGUMENT, "unknown limit " .. tostring(name)) end
  return tonumber(C.pe_engine_limit(engine_handle(self), limits[name]))
end

-- ---- chain ----

local Chain = {}
Chain.__index = Chain
M.Chain = Chain

--- Builds a chain from JSON text.
function Engine:chain(json)
  if type(json) ~= "string" then raise(codes.INVALID_ARGUMENT, "chain JSON must be a string") end
  local out = C_new("pe_chain *[1]")
  local err = C_new("char[1024]")
  local rc = C.pe_chain_new_from_json_n(out, engine_handle(self), json, #json, err, 1024)
  if rc < 0 then raise(rc, C_string(err)) end
  local h = C_gc(out[0], C.pe_chain_free)
  return setmetatable({
    h = h, engine = self,
    step_count = tonumber(C.pe_chain_step_count(h)),
    phases = tonumber(C.pe_chain_phases(h)),
    needs = tonumber(C.pe_chain_needs(h)),
  }, Chain)
end

function Chain:close()
  local h = self.h
  if h ~= nil then
    self.h = nil
    C_gc(h, nil)
    C.pe_chain_free(h)
  end
end

local function run_failed(ex, rc)
  raise(rc, C_string(C.pe_exchange_errmsg(ex.h)))
end

--- Runs one phase; returns the verdict (CONTINUE or RESPOND). A failing
-- step follows its failure mode (not an error here).
function Chain:run(ex, phase)
  local h, xh = self.h, ex.h
  if h == nil then closed("chain") end
  if xh == nil then closed("exchange") end
  local rc = C.pe_chain_run(h, xh, phase)
  if rc < 0 then run_failed(ex, rc) end
  return C.pe_exchange_verdict(xh)
end

--- Runs phases first..last as one; returns the verdict.
function Chain:run_phases(ex, first, last)
  local h, xh = self.h, ex.h
  if h == nil then closed("chain") end
  if xh == nil then closed("exchange") end
  local rc = C.pe_chain_run_phases(h, xh, first, last)
  if rc < 0 then run_failed(ex, rc) end
  return C.pe_exchange_verdict(xh)
end

-- ---- exchange ----

local Exchange = {}
Exchange.__index = Exchange
M.Exchange = Exchange

function Engine:exchange()
  local out = C_new("pe_exchange *[1]")
  engine_check(self, C.pe_exchange_new(out, engine_handle(self)))
  return setmetatable({
    h = C_gc(out[0], C.pe_exchange_free),
    engine = self,
    -- Out-parameters reused by every getter: no allocation per call.
    len = C_new("size_t[1]"),
    s1 = C_new("pe_slice[1]"),
    s2 = C_new("pe_slice[1]"),
  }, Exchange)
end

function Exchange:close()
  local h = self.h
  if h ~= nil then
    self.h = nil
    C_gc(h, nil)
    C.pe_exchange_free(h)
  end
end

local function xh(self)
  local h = self.h
  if h == nil then closed("exchange") end
  return h
end

local function check(self, rc)
  if rc < 0 then raise(rc, C_string(C.pe_exchange_errmsg(self.h))) end
  return rc
end

local function str(v, what)
  if type(v) ~= "string" then
    if type(v) == "number" then return tostring(v) end
    raise(codes.INVALID_ARGUMENT, what .. " must be a string")
  end
  return v
end

function Exchange:reset() check(self, C.pe_exchange_reset(xh(self))) end

function Exchange:set_method(v)
  v = str(v, "method")
  check(self, C.pe_exchange_set_method_n(xh(self), v, #v))
end
function Exchange:set_path(v)
  v = str(v, "path")
  check(self, C.pe_exchange_set_path_n(xh(self), v, #v))
end
function Exchange:set_authority(v)
  v = str(v, "authority")
  check(self, C.pe_exchange_set_authority_n(xh(self), v, #v))
end
function Exchange:method()
  local p = C.pe_exchange_method_n(xh(self), self.len)
  return C_string(p, self.len[0])
end
function Exchange:path()
  local p = C.pe_exchange_path_n(xh(self), self.len)
  return C_string(p, self.len[0])
end
function Exchange:authority()
  local p = C.pe_exchange_authority_n(xh(self), self.len)
  return C_string(p, self.len[0])
end

function Exchange:set_status(status)
  if type(status) ~= "number" then raise(codes.INVALID_ARGUMENT, "status must be a number") end
  check(self, C.pe_exchange_set_status(xh(self), status))
end
function Exchange:status() return C.pe_exchange_status(xh(self)) end

--- The nth (0-based, default 0) value of header name on side dir, or nil.
function Exchange:header(dir, name, nth)
  name = str(name, "header name")
  local s = self.s1
  local rc = C.pe_exchange_header_get_nth_n(xh(self), dir, name, #name, nth or 0, s)
  if rc == -3 then return nil end
  check(self, rc)
  return C_string(s[0].ptr, s[0].len)
end

--- Every value of header name, in order (an empty table if none).
function Exchange:header_all(dir, name)
  local out, i = {}, 0
  while true do
    local v = self:header(dir, name, i)
    if v == nil then return out end
    i = i + 1
    out[i] = v
  end
end

function Exchange:set_header(dir, name, value)
  name, value = str(name, "header name"), str(value, "header value")
  check(self, C.pe_exchange_header_set_n(xh(self), dir, name, #name, value, #value))
end
function Exchange:add_header(dir, name, value)
  name, value = str(name, "header name"), str(value, "header value")
  check(self, C.pe_exchange_header_add_n(xh(self), dir, name, #name, value, #value))
end
--- Removes every value of name; returns how many there were.
function Exchange:remove_header(dir, name)
  name = str(name, "header name")
  return check(self, C.pe_exchange_header_remove_n(xh(self), dir, name, #name))
end
function Exchange:header_count(dir)
  return tonumber(C.pe_exchange_header_count(xh(self), dir))
end
--- All fields of side dir, in order: { {name, value}, ... }.
function Exchange:headers(dir)
  local h, k, v = xh(self), self.s1, self.s2
  local out, i = {}, 0
  while C.pe_exchange_header_at(h, dir, i, k, v) == 0 do
    i = i + 1
    out[i] = {C_string(k[0].ptr, k[0].len), C_string(v[0].ptr, v[0].len)}
  end
  return out
end

function Exchange:body(dir)
  local p = C.pe_exchange_body_n(xh(self), dir, self.len)
  return C_string(p, self.len[0])
end
function Exchange:set_body(dir, data)
  data = str(data, "body")
  check(self, C.pe_exchange_body_set_n(xh(self), dir, data, #data))
end
function Exchange:append_body(dir, data)
  data = str(data, "body")
  check(self, C.pe_exchange_body_append_n(xh(self), dir, data, #data))
end
function Exchange:prepend_body(dir, data)
  data = str(data, "body")
  check(self, C.pe_exchange_body_prepend_n(xh(self), dir, data, #data))
end

function Exchange:meta(key)
  key = str(key, "metadata key")
  local s = self.s1
  local rc = C.pe_exchange_meta_get_n(xh(self), key, #key, s)
  if rc == -3 then return nil end
  check(self, rc)
  return C_string(s[0].ptr, s[0].len)
end
function Exchange:set_meta(key, value)
  key, value = str(key, "metadata key"), str(value, "metadata value")
  check(self, C.pe_exchange_meta_set_n(xh(self), key, #key, value, #value))
end
--- Removes key; returns true if it was there.
function Exchange:remove_meta(key)
  key = str(key, "metadata key")
  return check(self, C.pe_exchange_meta_remove_n(xh(self), key, #key)) == 1
end
--- All metadata, in order: { {key, value}, ... }.
function Exchange:metadata()
  local h, k, v = xh(self), self.s1, self.s2
  local out, i = {}, 0
  while C.pe_exchange_meta_at(h, i, k, v) == 0 do
    i = i + 1
    out[i] = {C_string(k[0].ptr, k[0].len), C_string(v[0].ptr, v[0].len)}
  end
  return out
end

--- Answers at once: status, body, and optional headers { {name, value}, ... }
-- or {name = value}.
function Exchange:respond(status, body, headers)
  if type(status) ~= "number" then raise(codes.INVALID_ARGUMENT, "status must be a number") end
  body = body and str(body, "body") or ""
  check(self, C.pe_exchange_respond_n(xh(self), status, body, #body))
  if headers then
    if headers[1] then
      for _, nv in ipairs(headers) do self:add_header(1, nv[1], nv[2]) end
    else
      for n, v in pairs(headers) do self:add_header(1, n, v) end
    end
  end
end

function Exchange:verdict() return C.pe_exchange_verdict(xh(self)) end
function Exchange:responded() return C.pe_exchange_verdict(xh(self)) == 1 end
function Exchange:errmsg() return C_string(C.pe_exchange_errmsg(xh(self))) end

return M
