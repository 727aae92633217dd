-- The config of the README demo (examples/demo/run.sh).
-- DEMO_DIR is a scratch folder the demo script creates; everything the daemon
-- writes (control socket, state file) stays inside it.
local dir = os.getenv("DEMO_DIR") or "/tmp/rollbridge-demo"

return {
  application = "demo",
  control = { path = dir .. "/control.sock" },
  -- Port 0: the kernel picks a free port; `rollbridge status` reports it.
  proxy = { port = tonumber(os.getenv("DEMO_PORT") or "0"), drainTimeoutMs = 5000 },
  statePath = dir .. "/state.json",
  processes = {
    {
      id = "web",
      policy = "proxied",
      command = "exec python3 {{releasePath}}/app.py",
      port = { from = 18700, to = 18799 },
      health = { path = "/ping", timeoutMs = 10000, intervalMs = 100 },
      lifecycle = {
        -- A Lua hook: runs when an old release's web process is being retired,
        -- after its connections drained and before SIGTERM. Here it only leaves a
        -- note in the event history; a real app could call an endpoint or signal.
        quiet = function(ctx)
          ctx:event("demo: retiring web", { releaseId = ctx.process.releaseId, pid = ctx.process.pid })
        end,
      },
    },
    {
      id = "worker",
      policy = "companion",
      command = "exec python3 {{releasePath}}/worker.py",
      replicas = 2,
      gracefulStopMs = 5000,
    },
  },
}
