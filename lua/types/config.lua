---@meta
-- LuaLS / LuaCATS annotations for rollbridge configs (docs/config.md).
-- Written by hand and kept honest by tests/hooks/lua_types.rs,
-- which fails when a config key exists in rollbridge's validation but not here,
-- or the reverse. Annotate a config with:
--
--   ---@type rollbridge.Config
--   return { proxy = { port = 4500 }, processes = { ... } }

---A hook value: a shell command, a Lua function (`fn(ctx)`), a function with
---options, a plugin by name, or a function of a Lua script.
---@alias rollbridge.HookValue
---| string
---| fun(ctx: rollbridge.Ctx): any
---| rollbridge.HookTable

---A hook value as a table: exactly one of `fn`, `plugin` or `lua` (with `fn`);
---every other key is an option the hook reads from `ctx.options`.
---@class rollbridge.HookTable
---@field fn? string|fun(ctx: rollbridge.Ctx): any Lua function, or with `lua` the name of a function of that script.
---@field plugin? string A built-in or native plugin by name ("command", "signal", "wait-exit", "http", "tcp", "cmdline", "screen").
---@field lua? string A Lua script relative to the config's folder; `fn` names its function.
---@field [string] any Options passed to the hook as `ctx.options`.

---A matcher for `legacyTakeover.matchers`: `fn(proc, ctx)` returning a boolean,
---or a plugin / script table.
---@alias rollbridge.MatcherValue
---| fun(proc: rollbridge.Proc, ctx: rollbridge.Ctx): boolean
---| rollbridge.HookTable

---@alias rollbridge.Policy
---| "proxied"   # receives the proxy's traffic; one per release, health-checked
---| "companion" # runs beside each release and retires with it
---| "singleton" # one per host, replaced after the traffic switch
---| "service"   # outlives deploys (persistent) or one per release (handoff)

---@alias rollbridge.DeployStrategy
---| "persistent" # one instance that outlives deploys
---| "handoff"    # a fresh instance per release, started first, stopped last

---A signal name, with or without `SIG`: "SIGTERM", "TERM", "SIGINT", "SIGQUIT",
---"SIGHUP", "SIGUSR1", "SIGUSR2", "SIGTSTP", "SIGWINCH", ... (not SIGKILL/SIGSTOP).
---@alias rollbridge.SignalName string

---A port range; `from` defaults to 0 and `to` to `from`; 0 lets the system choose.
---@class rollbridge.PortRange
---@field from? integer First port (0–65535).
---@field to? integer Last port (0–65535, at least `from`).

---The whole config a `rollbridge.lua` returns (docs/config.md).
---@class rollbridge.Config
---@field application? string Name used in the default socket path and `status`; default: the config folder's name.
---@field control? rollbridge.Control The control socket the CLI talks to.
---@field proxy rollbridge.Proxy The HTTP/WebSocket proxy (required).
---@field processes rollbridge.Process[] The managed processes of every release (required).
---@field legacyTakeover? rollbridge.LegacyTakeover What `predeploy-cleanup` may stop.
---@field releaseRetention? rollbridge.ReleaseRetention Stopped releases kept for `status` and `rollback`.
---@field statePath? string File where the daemon records its state; unset: nothing persisted.
---@field plugins? rollbridge.Plugins Native plugin libraries.
---@field metrics? rollbridge.Metrics Prometheus metrics endpoint (docs/metrics.md).
---@field rollout? rollbridge.Rollout Post-switch watch with automatic rollback, canary stickiness (docs/rollouts.md).

---@class rollbridge.Control
---@field path? string Unix socket path; default `/tmp/rollbridge-<application>.sock`.
---@field mode? string|integer Socket permissions: "660", "0o660" or 432; at most 0o777.
---@field owner? string|integer Socket owner, a user name or id.
---@field group? string|integer Socket group, a group name or id.

---@class rollbridge.Proxy
---@field host? string Listen address; default "127.0.0.1".
---@field port? integer Listen port 0–65535; default 8182; 0 lets the system choose.
---@field upstreamHost? string Where the proxy and health checks reach processes; default `host` (loopback for wildcards).
---@field healthPath? string Default `health.path` of every process; default "/ping".
---@field healthTimeoutMs? number Default `health.timeoutMs`; default 30000.
---@field drainTimeoutMs? number How long a retired release may keep serving open connections; default 60000.
---@field forceStopTimeoutMs? number Default `gracefulStopMs` and `recover --force` grace; default 10000.
---@field accessLog? rollbridge.AccessLog Access log of proxied requests (docs/metrics.md).
---@field trustedProxies? string[] Peers (addresses or CIDR blocks) whose X-Forwarded-* and Forwarded headers are believed; default { "127.0.0.0/8", "::1" }.
---@field bodyTimeoutMs? number Longest a request body may go without 1 KiB more (then 408) or a response body without a byte (then aborted); default 30000, 0 = off.
---@field allowedUpgrades? string[] Upgrade protocols tunnelled besides "websocket", e.g. { "h2c" }; default {}.
---@field readinessPath? string Path the proxy answers itself for load balancers: 200 when routing, 503 in maintenance, paused or shutting down; unset by default.

---@class rollbridge.AccessLog
---@field path string File to append to; relative to the config's folder.
---@field format? "json"|"combined" Line format; default "json".

---@class rollbridge.Metrics
---@field host? string Listen address of the metrics endpoint; default "127.0.0.1".
---@field port integer Listen port of the metrics endpoint.

---@class rollbridge.Rollout
---@field watchMs? number After a switch, watch the new release this long with the previous one kept running; default 0 (no watch).
---@field maxErrorRate? number Share of 5xx responses (the proxy's own 502/504 included) that fails the rollout; default 0.05.
---@field minRequests? integer No error-rate verdict below this many responses; default 20.
---@field maxP99Ms? number p99 latency bound over the window; unset: none.
---@field healthFailures? integer Consecutive failed health probes of the new release that fail it; default 3.
---@field check? rollbridge.HookValue Asked about once a second with ctx.options.stats {requests, errors, errorRate, p50Ms, p99Ms, elapsedMs}; returns ok[, reason].
---@field stickyBy? string "header:<Name>" or "cookie:<name>": the same value stays on one release during a canary.

---@class rollbridge.ReleaseRetention
---@field keep? integer Stopped releases remembered; default 10.
---@field maxAgeMs? number Forget stopped releases older than this; default 0 (no age limit).

---@class rollbridge.Plugins
---@field native? string[] Shared libraries loaded when the daemon starts (relative to the config's folder).

---One managed process (docs/config.md, "processes[]").
---@class rollbridge.Process
---@field id string Unique id, not empty, without `#` (replicas are `id#0`, `id#1`, ...).
---@field command string Run with /bin/sh -c; templated ({{port}}, {{releasePath}}, ...). Start it with `exec`.
---@field policy? rollbridge.Policy Default "companion"; exactly one process must be "proxied".
---@field deployStrategy? rollbridge.DeployStrategy Services only; default "persistent".
---@field cwd? string Working directory; default the release path; templated.
---@field env? table<string, string> Extra environment; values are templated.
---@field port? integer|rollbridge.PortRange A port or range; proxied and companion processes need a multi-port range (or 0).
---@field health? rollbridge.Health|false Readiness check of a new proxied process; false turns it off.
---@field stopSignal? rollbridge.SignalName Sent to the process group to stop it; default "SIGTERM".
---@field gracefulStopMs? number|"indefinite" Wait before SIGKILL; default `proxy.forceStopTimeoutMs`.
---@field lifecycle? rollbridge.Lifecycle Hooks of a graceful stop: quiet, drain, stop.
---@field nonBlockingDrain? boolean Companions only: stop at once when the release retires; default false.
---@field restartDelayMs? number Delay before restarting a crashed process; default 1000.
---@field restart? rollbridge.Restart Crash-restart budget and back-off.
---@field memory? rollbridge.Memory Memory supervision.
---@field replicas? integer Instances per release; default 1; more only on a companion without a port.
---@field outputLines? integer Recent output lines kept for `logs`; default 50.
---@field logFile? string|rollbridge.LogFile Also append the output to a file.

---@class rollbridge.Health
---@field path? string Path probed with GET on the process's port; default `proxy.healthPath`.
---@field timeoutMs? number Give up after this long; default `proxy.healthTimeoutMs`.
---@field intervalMs? number Between probes; default 250.
---@field startDelayMs? number Before the first probe; default 0.
---@field check? rollbridge.HookValue Custom probe: `fn(ctx)` returns true, or false and a detail.

---@class rollbridge.Lifecycle
---@field quiet? rollbridge.HookValue Stage 1: stop taking new work.
---@field drain? rollbridge.HookValue Stage 2: finish current work (needs drainTimeoutMs > 0).
---@field stop? rollbridge.HookValue Stage 3: stop; replaces stopSignal.
---@field drainTimeoutMs? number Bound of the drain stage; default 0 (drain skipped).
---@field quietCommand? string Older spelling of a shell-command quiet hook.
---@field drainCommand? string Older spelling of a shell-command drain hook.
---@field stopCommand? string Older spelling of a shell-command stop hook.

---@class rollbridge.Restart
---@field maxRestarts? integer Restarts allowed in the window; unset: no limit; 0: never restart.
---@field windowMs? number Window of the budget; default 0 (the process's lifetime).
---@field backoffFactor? number Delay multiplier after each restart (≥ 1); default 1.
---@field maxDelayMs? number Upper bound of the delay; default 0 (no cap).

---@class rollbridge.Memory
---@field limitBytes integer Resident memory above which the process is restarted (required).
---@field warnBytes? integer Warn above this (below limitBytes); default 0 (off).
---@field checkIntervalMs? number How often memory is read; default 5000.

---@class rollbridge.LogFile
---@field path string File to append output to; templated; relative to the config's folder.
---@field format? "raw"|"json" Line format; default "raw".
---@field rotation? "never"|"hourly"|"daily" Rollover; default the daemon's --log-rotation.
---@field keep? integer Dated files kept after a rollover; default the daemon's --log-keep.

---@class rollbridge.LegacyTakeover
---@field screens? string[] Screen session names to stop.
---@field processes? rollbridge.LegacyProcess[] Processes whose command line contains every string of `includes`.
---@field matchers? rollbridge.MatcherValue[] Matcher hooks.
---@field forceStopTimeoutMs? number Wait before SIGKILL; default `proxy.forceStopTimeoutMs`.

---@class rollbridge.LegacyProcess
---@field includes string[] Strings the command line must all contain.
---@field name? string Label; default "legacy process <n>".
