---@meta rollbridge.hooks
-- LuaLS / LuaCATS annotations for `require("rollbridge.hooks")` (docs/lua.md).
-- Each helper is a hook function reading its settings from ctx.options:
--   quiet = { fn = hooks.quiet_by_signal, signal = "TSTP", waitMs = 2000 }

---@class rollbridge.hooks
local M = {}

---Sends `signal` (default "TSTP") to the group, then waits up to `waitMs`
---(default 0) for it to exit.
---@param ctx rollbridge.Ctx
function M.quiet_by_signal(ctx) end

---Polls `url` (or `path` on the process's port) every `intervalMs` (500) until
---it answers `idleStatus` (200) with a body matching `idleBody`; returns early
---when the group exits or the drain window closes.
---@param ctx rollbridge.Ctx
---@return "idle"|"exited"|"window closed" reason
function M.drain_until_idle(ctx) end

---Sends each of `signals` ({ "TERM", "INT" }) in turn, waiting `stepMs` after
---each for the group to exit; raises when it outlives them all.
---@param ctx rollbridge.Ctx
function M.stop_escalating(ctx) end

return M
