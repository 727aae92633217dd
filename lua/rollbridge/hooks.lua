-- Ready-made lifecycle hooks. Each one is a hook function that reads its
-- settings from ctx.options, so it works both in a Lua config:
--
--   local hooks = require("rollbridge.hooks")
--   lifecycle = {
--     quiet = { fn = hooks.quiet_by_signal, signal = "TSTP", waitMs = 2000 },
--     drain = { fn = hooks.drain_until_idle, path = "/busy" },
--     drainTimeoutMs = 30000,
--     stop  = { fn = hooks.stop_escalating, signals = { "TERM", "INT" } },
--   }
--
-- and from a JSON config through a one-line script (`return require("rollbridge.hooks")`):
--
--   "quiet": { "lua": "hooks.lua", "fn": "quiet_by_signal", "signal": "TSTP" }

local options = require("rollbridge.options")

local M = {}

-- Time kept back at the end of a stage so a helper can return on its own
-- instead of being cut off (which would count as a failed hook).
local MARGIN_MS = 50

-- Sends `signal` (default "TSTP") to the process group, then waits up to
-- `waitMs` (default 0: not at all) for the group to exit.
function M.quiet_by_signal(ctx)
  local signal = options.get(ctx, "signal", "string", "TSTP")
  local wait = options.millis(ctx, "waitMs", 0)
  ctx:signal(signal)
  if wait > 0 then
    ctx:wait_exit(math.min(wait, math.max(ctx:remaining_ms() - MARGIN_MS, 0)))
  end
end

-- The URL a drain helper polls: `url`, or `path` on the process's own port.
local function poll_url(ctx)
  local url = options.get(ctx, "url", "string", false)
  if url then return url end
  local path = options.get(ctx, "path", "string", false)
  if not path then
    error("drain_until_idle needs a 'url' option, or a 'path' on the process's port", 0)
  end
  if ctx.process.port == nil then
    error("drain_until_idle got a 'path' but the process has no port; give a full 'url'", 0)
  end
  if path:sub(1, 1) ~= "/" then path = "/" .. path end
  return "http://127.0.0.1:" .. ctx.process.port .. path
end

-- Whether one answer of the drain endpoint means "idle".
local function says_idle(ctx, response)
  local status = options.get(ctx, "idleStatus", "number", 200)
  if response.status ~= status then return false end
  local pattern = options.get(ctx, "idleBody", "string", false)
  return not pattern or response.body:find(pattern) ~= nil
end

-- Polls an HTTP endpoint of the process every `intervalMs` (default 500) until
-- it says the process is idle: status `idleStatus` (default 200) and, when
-- `idleBody` is given, a body matching that Lua pattern. The endpoint is `url`,
-- or `path` on the process's port. Returns when idle, when the process group has
-- exited, or just before the drain window closes. Returns the reason.
function M.drain_until_idle(ctx)
  local url = poll_url(ctx)
  local interval = options.millis(ctx, "intervalMs", 500)
  local last = "no answer yet"
  while true do
    local left = ctx:remaining_ms()
    if left <= MARGIN_MS then
      ctx:event("drain window closed before the process was idle", { url = url, last = last })
      return "window closed"
    end
    local ok, response = pcall(ctx.http, ctx, "GET", url, { timeoutMs = math.max(math.min(interval, left - MARGIN_MS), 1) })
    if ok then
      if says_idle(ctx, response) then return "idle" end
      last = "HTTP " .. response.status
    else
      last = tostring(response)
      if not ctx:alive() then return "exited" end
    end
    ctx:sleep(math.max(math.min(interval, ctx:remaining_ms() - MARGIN_MS), 0))
  end
end

-- Sends each of `signals` (default { "TERM", "INT" }) in turn and waits up to
-- `stepMs` after each one for the process group to exit (default: the stage's
-- time split evenly). Returns as soon as the group is gone; raises when it is
-- still running after the last signal, so rollbridge falls back to the stop
-- signal and, after gracefulStopMs, SIGKILL.
function M.stop_escalating(ctx)
  local signals = options.list(ctx, "signals", { "TERM", "INT" })
  if #signals == 0 then error("the hook option 'signals' must name at least one signal", 0) end
  local step = options.millis(ctx, "stepMs", false)
  for index, signal in ipairs(signals) do
    local left = math.max(ctx:remaining_ms() - MARGIN_MS, 0)
    local wait = step or left / (#signals - index + 1)
    if not ctx:signal(signal) and not ctx:alive() then return end
    if ctx:wait_exit(math.min(wait, left)) then return end
  end
  error("the process group was still running after " .. table.concat(signals, ", "), 0)
end

return M
