-- Recipes for background job workers that stop taking jobs on one signal and
-- shut down on another (Sidekiq: TSTP then TERM; Resque: USR2 then QUIT).
--
--   local workers = require("rollbridge.workers")
--   processes = {
--     { id = "jobs", command = "bundle exec sidekiq", policy = "companion",
--       lifecycle = workers.tstp_then_term{ busyCommand = "bin/busy-jobs", drainTimeoutMs = 25000 } },
--   }
--
-- A recipe returns a whole `lifecycle` table: quiet sends the quiet signal, drain
-- waits until no job is busy, stop sends the stop signal and waits for the exit.
-- The hooks (M.quiet, M.drain, M.stop) read their settings from ctx.options, so
-- a JSON config can use them through `return require("rollbridge.workers")`.

local options = require("rollbridge.options")

local M = {}

local MARGIN_MS = 50

-- Quiet: send `signal` (default "TSTP") to the group.
function M.quiet(ctx)
  ctx:signal(options.get(ctx, "signal", "string", "TSTP"))
end

-- How many jobs are still running, from the first of these options that is set:
-- `busyCommand` (a shell command printing a number), `busyFile` (a file holding
-- a number; missing means 0) or `busyUrl` (an HTTP endpoint answering with a
-- number). nil when none is set.
local function busy_jobs(ctx)
  local command = options.get(ctx, "busyCommand", "string", false)
  if command then
    local result = ctx:exec(command, { timeoutMs = math.max(math.min(5000, ctx:remaining_ms() - MARGIN_MS), 1) })
    if result.code ~= 0 then
      error("busyCommand failed (exit " .. tostring(result.code) .. "): " .. result.stderr, 0)
    end
    return tonumber(result.stdout:match("%-?%d+")) or error("busyCommand printed no number: " .. result.stdout, 0)
  end
  local file = options.get(ctx, "busyFile", "string", false)
  if file then
    local text = ctx:read_file(file)
    if text == nil then return 0 end
    return tonumber(text:match("%-?%d+")) or 0
  end
  local url = options.get(ctx, "busyUrl", "string", false)
  if url then
    local response = ctx:http("GET", url, { timeoutMs = math.max(math.min(5000, ctx:remaining_ms() - MARGIN_MS), 1) })
    return tonumber(response.body:match("%-?%d+")) or error("busyUrl answered without a number", 0)
  end
  return nil
end

-- Drain: wait until no job is busy (see busy_jobs), polling every `intervalMs`
-- (default 1000), or until the group exits. The first time jobs are busy it
-- records the event `waiting for busy jobs {busy}`. Without a way to count jobs it waits
-- for the group to exit or the drain window to close. Returns near the end of the
-- window instead of being cut off.
function M.drain(ctx)
  local interval = options.millis(ctx, "intervalMs", 1000)
  local reported = false
  while true do
    local left = ctx:remaining_ms() - MARGIN_MS
    if left <= 0 then return "window closed" end
    local busy = busy_jobs(ctx)
    if busy ~= nil and busy <= 0 then return "idle" end
    -- Once per drain, so `events` and deploy progress say why the stop waits.
    if busy ~= nil and not reported then
      ctx:event("waiting for busy jobs", { busy = busy })
      reported = true
    end
    if ctx:wait_exit(math.min(interval, left)) then return "exited" end
  end
end

-- Stop: send `signal` (default "TERM") and wait for the group to exit for the
-- rest of the stop window. Raises when it is still running, so rollbridge falls
-- back to the stop signal and SIGKILL.
function M.stop(ctx)
  local signal = options.get(ctx, "signal", "string", "TERM")
  ctx:signal(signal)
  if not ctx:wait_exit(math.max(ctx:remaining_ms() - MARGIN_MS, 0)) then
    error("the workers were still running after " .. signal, 0)
  end
end

local BUSY_KEYS = { "busyCommand", "busyFile", "busyUrl", "intervalMs" }

-- A lifecycle table with the quiet signal `quietSignal`, the stop signal
-- `stopSignal`, and the drain settings busyCommand / busyFile / busyUrl /
-- intervalMs and drainTimeoutMs (default 30000).
function M.lifecycle(settings)
  settings = settings or {}
  local drain = { fn = M.drain }
  for _, key in ipairs(BUSY_KEYS) do drain[key] = settings[key] end
  return {
    quiet = { fn = M.quiet, signal = settings.quietSignal or "TSTP" },
    drain = drain,
    drainTimeoutMs = settings.drainTimeoutMs or 30000,
    stop = { fn = M.stop, signal = settings.stopSignal or "TERM" },
  }
end

local function with_signals(settings, quiet, stop)
  local copy = {}
  for key, value in pairs(settings or {}) do copy[key] = value end
  copy.quietSignal = copy.quietSignal or quiet
  copy.stopSignal = copy.stopSignal or stop
  return M.lifecycle(copy)
end

-- Sidekiq-style: TSTP stops fetching new jobs, TERM shuts down.
function M.tstp_then_term(settings)
  return with_signals(settings, "TSTP", "TERM")
end

-- Resque-style: USR2 pauses the worker, QUIT lets the current job finish and exits.
function M.resque(settings)
  return with_signals(settings, "USR2", "QUIT")
end

return M
