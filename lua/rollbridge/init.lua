-- rollbridge's Lua library: small helpers for writing configs.
-- It is compiled into the rollbridge binary, so `require("rollbridge")` works
-- wherever rollbridge is installed. Everything here is pure: no side effects,
-- because a config may be evaluated several times.

local M = {}

-- A port range for `port`: range(18000, 18099) -> { from = 18000, to = 18099 }.
function M.range(from, to)
  if type(from) ~= "number" then
    error("rollbridge.range: 'from' must be a number", 2)
  end
  return { from = from, to = to or from }
end

-- An environment variable of the process evaluating the config, or `default`
-- when it is unset or empty.
function M.env(name, default)
  local value = os.getenv(name)
  if value == nil or value == "" then
    return default
  end
  return value
end

-- Like env(), but an unset variable is an error naming the variable.
function M.require_env(name)
  local value = os.getenv(name)
  if value == nil or value == "" then
    error("environment variable " .. name .. " is not set", 2)
  end
  return value
end

local function copy(options)
  local result = {}
  for key, value in pairs(options or {}) do
    result[key] = value
  end
  return result
end

-- A hook value that runs a plugin by name: plugin("signal", { ... }).
function M.plugin(name, options)
  local hook = copy(options)
  hook.plugin = name
  return hook
end

-- A hook value that runs the function `fn` of the Lua script `file` (relative to
-- the config's folder).
function M.script(file, fn, options)
  local hook = copy(options)
  hook.lua = file
  hook.fn = fn
  return hook
end

local function is_list(value)
  return type(value) == "table" and (next(value) == nil or value[1] ~= nil)
end

-- A deep copy of `base` with `overrides` applied: nested tables of named keys are
-- merged, anything else (lists included) is replaced. Handy for process defaults.
function M.merge(base, overrides)
  local result = {}
  for key, value in pairs(base or {}) do
    result[key] = (type(value) == "table" and not is_list(value)) and M.merge(value, nil) or value
  end
  for key, value in pairs(overrides or {}) do
    if type(value) == "table" and not is_list(value) and type(result[key]) == "table" and not is_list(result[key]) then
      result[key] = M.merge(result[key], value)
    else
      result[key] = value
    end
  end
  return result
end

return M
