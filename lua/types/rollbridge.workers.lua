---@meta rollbridge.workers
-- LuaLS / LuaCATS annotations for `require("rollbridge.workers")` (docs/lua.md):
-- lifecycle recipes for job workers that stop fetching on one signal and shut
-- down on another.

---Settings of a worker recipe.
---@class rollbridge.WorkerSettings
---@field quietSignal? rollbridge.SignalName Quiet signal (recipe default).
---@field stopSignal? rollbridge.SignalName Stop signal (recipe default).
---@field busyCommand? string Shell command printing the number of busy jobs.
---@field busyFile? string File holding the number of busy jobs (missing: 0).
---@field busyUrl? string Endpoint answering with the number of busy jobs.
---@field intervalMs? number Polling interval of the drain; default 1000.
---@field drainTimeoutMs? number Drain window; default 30000.

---@class rollbridge.workers
local M = {}

---Quiet hook: sends `signal` (default "TSTP") to the group.
---@param ctx rollbridge.Ctx
function M.quiet(ctx) end

---Drain hook: waits until no job is busy, the group exits, or the window closes.
---@param ctx rollbridge.Ctx
---@return "idle"|"exited"|"window closed" reason
function M.drain(ctx) end

---Stop hook: sends `signal` (default "TERM") and waits for the exit; raises when
---the workers outlive the stop window.
---@param ctx rollbridge.Ctx
function M.stop(ctx) end

---A whole lifecycle table with your quiet and stop signals.
---@param settings? rollbridge.WorkerSettings
---@return rollbridge.Lifecycle
function M.lifecycle(settings) end

---Sidekiq style: TSTP stops fetching jobs, TERM shuts down.
---@param settings? rollbridge.WorkerSettings
---@return rollbridge.Lifecycle
function M.tstp_then_term(settings) end

---Resque style: USR2 pauses the worker, QUIT finishes the current job and exits.
---@param settings? rollbridge.WorkerSettings
---@return rollbridge.Lifecycle
function M.resque(settings) end

return M
