-- Legacy-takeover matchers by working directory, user and command line.
--
--   local match = require("rollbridge.match")
--   legacyTakeover = {
--     matchers = { match.by{ cwdUnder = "/srv/old-app", cmdline = { "node", "server%.js" } } },
--   }
--
-- Criteria (all given ones must hold; at least one is required, so a mistake
-- cannot select every process on the host):
--   cwd       the process's working directory, exactly
--   cwdUnder  a folder the working directory is in (or is)
--   user      the user name the process runs as
--   cmdline   a Lua pattern, or a list of them, each found in the command line
--             (Lua patterns, not regular expressions: escape "." as "%.")
--   plain     true to treat the cmdline entries as plain text instead
--
-- M.process(proc, ctx) is the same matcher reading the criteria from
-- ctx.options, for JSON configs (`return require("rollbridge.match")`, then
-- { "lua": "match.lua", "fn": "process", "user": "deploy" }).

local M = {}

local CRITERIA = { "cwd", "cwdUnder", "user", "cmdline" }

local function check(criteria)
  if type(criteria) ~= "table" then
    error("rollbridge.match: give a table of criteria (cwd, cwdUnder, user, cmdline)", 3)
  end
  for _, key in ipairs(CRITERIA) do
    if criteria[key] ~= nil then return end
  end
  error("rollbridge.match: give at least one of cwd, cwdUnder, user or cmdline", 3)
end

local function under(folder, root)
  if folder == nil then return false end
  root = root:gsub("/+$", "")
  return folder == root or folder:sub(1, #root + 1) == root .. "/"
end

-- Whether `proc` meets every criterion given.
function M.test(proc, criteria)
  check(criteria)
  if criteria.cwd ~= nil and proc.cwd ~= criteria.cwd then return false end
  if criteria.cwdUnder ~= nil and not under(proc.cwd, criteria.cwdUnder) then return false end
  if criteria.user ~= nil and proc.user ~= criteria.user then return false end
  local patterns = criteria.cmdline
  if type(patterns) == "string" then patterns = { patterns } end
  for _, pattern in ipairs(patterns or {}) do
    if not proc.cmdline:find(pattern, 1, criteria.plain == true) then return false end
  end
  return true
end

-- A matcher function with `criteria` bound (checked at once, when the config loads).
function M.by(criteria)
  check(criteria)
  return function(proc) return M.test(proc, criteria) end
end

-- The matcher reading its criteria from ctx.options.
function M.process(proc, ctx)
  return M.test(proc, ctx.options)
end

return M
