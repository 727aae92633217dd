---@meta rollbridge
-- LuaLS / LuaCATS annotations for `require("rollbridge")` (docs/config.md).
-- tests/hooks/lua_types.rs compares the functions below with the library compiled
-- into rollbridge.

---@class rollbridge.lib
local M = {}

---A port range for `port`: range(18000, 18099) -> { from = 18000, to = 18099 }.
---@param from integer First port.
---@param to? integer Last port; default `from`.
---@return rollbridge.PortRange
function M.range(from, to) end

---An environment variable of the process evaluating the config, or `default`
---when it is unset or empty.
---@generic T
---@param name string
---@param default? T
---@return string|T
function M.env(name, default) end

---An environment variable; an error naming it when unset or empty.
---@param name string
---@return string
function M.require_env(name) end

---A hook value that runs a plugin by name: plugin("signal", { signal = "TSTP" }).
---@param name string
---@param options? table<string, any>
---@return rollbridge.HookTable
function M.plugin(name, options) end

---A hook value that runs the function `fn` of the Lua script `file` (relative to
---the config's folder).
---@param file string
---@param fn string
---@param options? table<string, any>
---@return rollbridge.HookTable
function M.script(file, fn, options) end

---A deep copy of `base` with `overrides` applied: nested tables of named keys
---are merged, anything else (lists included) is replaced.
---@generic T: table
---@param base T
---@param overrides? table
---@return T
function M.merge(base, overrides) end

return M
