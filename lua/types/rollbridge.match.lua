---@meta rollbridge.match
-- LuaLS / LuaCATS annotations for `require("rollbridge.match")` (docs/lua.md):
-- legacy-takeover matchers by working directory, user and command line.

---Criteria; every one given must hold, at least one is required.
---@class rollbridge.MatchCriteria
---@field cwd? string The working directory, exactly.
---@field cwdUnder? string A folder the working directory is in (or is).
---@field user? string The user name the process runs as.
---@field cmdline? string|string[] Lua patterns each found in the command line.
---@field plain? boolean Treat the cmdline entries as plain text.

---@class rollbridge.match
local M = {}

---Whether `proc` meets every criterion given.
---@param proc rollbridge.Proc
---@param criteria rollbridge.MatchCriteria
---@return boolean
function M.test(proc, criteria) end

---A matcher function with `criteria` bound (checked when the config loads).
---@param criteria rollbridge.MatchCriteria
---@return fun(proc: rollbridge.Proc): boolean
function M.by(criteria) end

---The matcher reading its criteria from ctx.options (for JSON configs).
---@param proc rollbridge.Proc
---@param ctx rollbridge.Ctx
---@return boolean
function M.process(proc, ctx) end

return M
