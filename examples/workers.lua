-- A worked example: a Rails-style app with a web process and two kinds of
-- background workers, customised with Lua hooks. Check it with
--
--   rollbridge validate --config examples/workers.lua
--
-- docs/lua.md explains every hook and helper used here.

local rollbridge = require("rollbridge")
local hooks = require("rollbridge.hooks")
local workers = require("rollbridge.workers")
local match = require("rollbridge.match")

-- Built once when the config is loaded and shared by every hook call below.
local app_root = rollbridge.env("APP_ROOT", "/srv/shop")
local busy_file = "tmp/busy_jobs"

-- Readiness of the web process: /up must answer 200 *and* report that the
-- database migrations of this release have run. Every error counts as "not
-- ready yet"; the deploy fails with the last detail after health.timeoutMs.
local function web_ready(ctx)
  local url = "http://127.0.0.1:" .. ctx.process.port .. "/up"
  local ok, answer = pcall(ctx.http, ctx, "GET", url, { timeoutMs = 2000 })
  if not ok then
    return false, "no answer from /up yet"
  end
  if answer.status ~= 200 then
    return false, "/up answered " .. answer.status
  end
  if not answer.body:find('"migrations":%s*"current"') then
    return false, "migrations of " .. ctx.process.releaseId .. " are still running"
  end
  return true
end

-- A worker with hand-written hooks: it pauses on USR2, reports how many jobs it
-- still holds in a file, and finishes its current job on QUIT.
local mailer_lifecycle = {
  quiet = function(ctx)
    ctx:signal("USR2")
    ctx:event("mailer paused", { children = #ctx:children() })
  end,

  drain = function(ctx)
    while ctx:remaining_ms() > 500 do
      local held = tonumber(ctx:read_file(busy_file) or "0") or 0
      if held == 0 then
        return
      end
      if ctx:wait_exit(1000) then
        return
      end
    end
    ctx:event("mailer still busy at the end of its drain window")
  end,

  drainTimeoutMs = 120000,

  stop = { fn = hooks.stop_escalating, signals = { "QUIT", "TERM" }, stepMs = 20000 },
}

return {
  application = "shop",
  proxy = { port = 8182, drainTimeoutMs = 30000 },

  processes = {
    {
      id = "web",
      policy = "proxied",
      command = "bundle exec puma -p {{port}}",
      port = rollbridge.range(18000, 18099),
      health = { check = web_ready, timeoutMs = 60000, intervalMs = 500 },
      lifecycle = {
        -- Tell puma to stop accepting before the connection drain ends.
        quiet = { fn = hooks.quiet_by_signal, signal = "USR1" },
      },
    },

    {
      -- Sidekiq: TSTP stops fetching jobs, TERM shuts down. The drain waits
      -- until the job counter written by the app reaches zero.
      id = "jobs",
      command = "bundle exec sidekiq -t 25",
      replicas = 2,
      gracefulStopMs = 30000,
      lifecycle = workers.tstp_then_term({ busyFile = busy_file, drainTimeoutMs = 300000 }),
    },

    {
      id = "mailer",
      command = "bundle exec rake resque:work QUEUE=mailers",
      gracefulStopMs = 45000,
      lifecycle = mailer_lifecycle,
    },
  },

  -- Processes of the pre-rollbridge deployment that `predeploy-cleanup` may stop:
  -- anything still running from the old checkout, and its stray puma.
  legacyTakeover = {
    matchers = {
      match.by({ cwdUnder = app_root .. "/current" }),
      match.by({ user = "deploy", cmdline = { "^puma ", "%[shop%]" } }),
    },
  },
}
