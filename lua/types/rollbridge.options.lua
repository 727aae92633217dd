---@meta rollbridge.options
-- LuaLS / LuaCATS annotations for `require("rollbridge.options")` (docs/lua.md).

---@class rollbridge.options
local M = {}

---The option `name` of the hook (ctx.options[name]), of Lua type `kind`;
---`default` when absent; with no default the option is required.
---@param ctx rollbridge.Ctx
---@param name string
---@param kind "string"|"number"|"table"|"boolean"
---@param default? any `false` makes an option optional without a value.
---@return any
function M.get(ctx, name, kind, default) end

---Like get(), for a millisecond count (0 or more).
---@param ctx rollbridge.Ctx
---@param name string
---@param default? number|false
---@return number|false
function M.millis(ctx, name, default) end

---A list option; a single string counts as a one-element list.
---@param ctx rollbridge.Ctx
---@param name string
---@param default? any[]
---@return any[]
function M.list(ctx, name, default) end

return M
