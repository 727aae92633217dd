-- rollbridge config for a small Python shop: a proxied web app, a background
-- worker that runs beside each release, a scheduler that must run only once per
-- host, and a cache service that outlives deploys.
--
-- Check it with:  rollbridge validate --config examples/rollbridge.lua
--
-- A config may be evaluated several times (validate, daemon start, reload before
-- each deploy), so it only builds and returns a table: no side effects.

local rb = require("rollbridge")

return {
  application = "acme-shop",

  control = {
    path = "/tmp/rollbridge-acme-shop.sock",
    mode = "660",
  },

  proxy = {
    host = "127.0.0.1",
    port = 4500,
    healthPath = "/ping",
    healthTimeoutMs = 30000,
    drainTimeoutMs = 30000,
  },

  releaseRetention = { keep = 5 },
  statePath = "/tmp/rollbridge-acme-shop-state.json",

  processes = {
    {
      -- Started once and kept across deploys; every release finds it through
      -- {{ports.cache}} and ROLLBRIDGE_CACHE_PORT.
      id = "cache",
      policy = "service",
      command = "python3 {{releasePath}}/cache.py --port {{port}}",
      port = rb.range(18600, 18699),
    },
    {
      id = "web",
      policy = "proxied",
      command = "python3 {{releasePath}}/app.py --port {{port}}",
      port = rb.range(18000, 18099),
      env = {
        APP_ENV = "production",
        CACHE_URL = "http://127.0.0.1:{{ports.cache}}",
      },
      health = { path = "/ping", timeoutMs = 20000, intervalMs = 250 },
      lifecycle = {
        -- Ask the app to stop taking new work, then wait up to 5 s for it to
        -- finish what it has. In Lua, a hook can also be a function:
        --   quiet = function(ctx) ... end
        quiet = "kill -USR1 $ROLLBRIDGE_PID",
        drain = rb.plugin("wait-exit"),
        drainTimeoutMs = 5000,
      },
      memory = { limitBytes = 536870912, warnBytes = 402653184 },
    },
    {
      id = "worker",
      policy = "companion",
      command = "python3 {{releasePath}}/worker.py --queue default",
      replicas = 2,
      nonBlockingDrain = true,
      gracefulStopMs = 30000,
      restart = { maxRestarts = 5, windowMs = 60000, backoffFactor = 2, maxDelayMs = 30000 },
      env = { CACHE_URL = "http://127.0.0.1:{{ports.cache}}" },
      -- Also append each replica's output to a file of its own (relative to
      -- this file's folder), rolled over daily with a week of files kept:
      -- logFile = { path = "logs/worker-{{replicaIndex}}.log", rotation = "daily", keep = 7 },
    },
    {
      id = "scheduler",
      policy = "singleton",
      command = "python3 {{releasePath}}/scheduler.py",
      stopSignal = "SIGINT",
    },
  },
}
