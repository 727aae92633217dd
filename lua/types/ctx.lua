---@meta
-- LuaLS / LuaCATS annotations for the `ctx` value Lua hooks receive
-- (docs/lua.md). tests/hooks/lua_types.rs compares the methods and fields below with
-- those rollbridge registers on the real `ctx`, so they cannot drift.
--
--   ---@param ctx rollbridge.Ctx
--   quiet = function(ctx) ctx:signal("TSTP") end
--
-- Helpers are methods: call them with a colon, `ctx:signal("TSTP")`.

---What a hook acts on and the helpers it may call.
---@class rollbridge.Ctx
---@field stage "quiet"|"drain"|"stop"|"health"|"match" The stage being run.
---@field options table<string, any> The hook value's extra keys (without fn, lua and plugin); fresh for every call.
---@field process rollbridge.ProcessInfo|nil The managed process; nil for matchers.
local Ctx = {}

---The managed process a hook acts on (`ctx.process`); fresh for every call.
---@class rollbridge.ProcessInfo
---@field id string The process id from the config.
---@field instanceId string `id#n` for replicas, else `id`.
---@field pid integer|nil The wrapper's pid; nil once it has exited.
---@field pgid integer|nil The process group (kept after the wrapper exits).
---@field releaseId string The release the process belongs to.
---@field releasePath string The release path as given to `deploy`.
---@field revision string The revision, or the release id.
---@field port integer|nil Its port.
---@field policy rollbridge.Policy Its policy.
---@field replicaIndex integer 0-based replica index.
---@field replicaCount integer Number of replicas.
---@field env table<string, string> The full environment it was started with.
---@field cwd string Its working directory.

---The candidate process a matcher receives first.
---@class rollbridge.Proc
---@field pid integer
---@field ppid integer
---@field cmdline string Full command line.
---@field cwd string|nil Working directory (nil when unreadable).
---@field user string|nil User name (nil when unreadable).

---@class rollbridge.ExecOptions
---@field timeoutMs? number Bound of the command; default the time left.
---@field env? table<string, string|number> Variables added to the process's environment.

---@class rollbridge.ExecResult
---@field code integer|nil Exit code; nil when killed or timed out.
---@field signal string|nil Signal that ended the command, e.g. "SIGKILL".
---@field stdout string Captured standard output (up to 1 MiB).
---@field stderr string Captured standard error (up to 1 MiB).
---@field timedOut boolean Whether the command ran out of time (its group was killed).

---@class rollbridge.HttpOptions
---@field timeoutMs? number Bound of the request; default the time left.
---@field body? string Request body.
---@field headers? table<string, string> Request headers.

---@class rollbridge.HttpResponse
---@field status integer HTTP status code.
---@field body string Response body (at most 8 MiB).
---@field headers table<string, string> Lower-case names; repeated headers joined with ", ".

---@class rollbridge.GroupMember
---@field pid integer
---@field ppid integer
---@field command string Short name (as in `status`).
---@field cmdline string Full command line.
---@field rssBytes integer|nil Resident memory; nil when unreadable.

---Sends a signal to the whole process group ("TSTP", "SIGTSTP", "sigtstp").
---Returns true when it went out, false when there is no group left.
---@param name rollbridge.SignalName
---@return boolean sent
function Ctx:signal(name) end

---Whether any member of the group is still running (zombies do not count).
---@return boolean
function Ctx:alive() end

---Waits until every member of the group has exited, for at most `ms`
---milliseconds (never past the deadline; nil waits until the deadline).
---@param ms? number
---@return boolean exited
function Ctx:wait_exit(ms) end

---Every live member of the process group, leader included, sorted by pid.
---@return rollbridge.GroupMember[]
function Ctx:children() end

---Runs `cmd` with /bin/sh -c in the process's working directory, in a process
---group of its own, its output captured.
---@param cmd string
---@param options? rollbridge.ExecOptions
---@return rollbridge.ExecResult
function Ctx:exec(cmd, options) end

---One HTTP/1.1 request on a fresh connection (plain http:// only). Raises when
---it cannot connect or no response arrives in time.
---@param method string
---@param url string
---@param options? rollbridge.HttpOptions
---@return rollbridge.HttpResponse
function Ctx:http(method, url, options) end

---Pauses the hook; other hooks run meanwhile.
---@param ms number
function Ctx:sleep(ms) end

---Milliseconds left until the stage's bound.
---@return integer
function Ctx:remaining_ms() end

---Records an event (in `rollbridge events` and the daemon log).
---@param message string
---@param data? table<string, any> Strings, numbers, booleans and tables.
function Ctx:event(message, data) end

---Whether a file or folder exists (relative to the process's working directory).
---@param path string
---@return boolean
function Ctx:file_exists(path) end

---Up to `maxBytes` (default 1 MiB) of a file, or nil when it does not exist.
---@param path string
---@param maxBytes? integer
---@return string|nil
function Ctx:read_file(path, maxBytes) end
