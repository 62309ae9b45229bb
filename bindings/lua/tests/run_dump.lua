-- luajit run_dump.lua PLUGIN PYWORKER CHAIN.json [MODULE_DIR...]: prints the dump.
local dir = arg[0]:match("^(.*)/[^/]*$") or "."
package.path = dir .. "/?.lua;" .. dir .. "/../?.lua;" .. package.path
io.write(require("dump")(unpack(arg)))
