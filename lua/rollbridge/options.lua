-- Reading hook options (ctx.options) with defaults and clear errors. Shared by
-- the helpers of the rollbridge library; usable by your own hooks too:
--
--   local options = require("rollbridge.options")
--   local signal = options.get(ctx, "signal", "string", "TSTP")

local M = {}

local function describe(value)
  if value == nil then return "nothing" end
  return "a " .. type(value)
end

-- The option `name` of the hook (ctx.options[name]), which must be of Lua type
-- `kind` ("string", "number", "table", "boolean"). `default` is used when it is
-- absent; with no default the option is required.
function M.get(ctx, name, kind, default)
  local value = ctx.options[name]
  if value == nil then
    if default == nil then
      error("the hook option '" .. name .. "' is required (" .. kind .. ")", 0)
    end
    return default
  end
  if type(value) ~= kind then
    error("the hook option '" .. name .. "' must be a " .. kind .. ", not " .. describe(value), 0)
  end
  return value
end

-- Like get(), for a millisecond count (a number of 0 or more). A default of
-- `false` makes the option optional without a value.
function M.millis(ctx, name, default)
  local value = M.get(ctx, name, "number", default)
  if value == false then return false end
  if value < 0 or value ~= value then
    error("the hook option '" .. name .. "' must be 0 or more milliseconds", 0)
  end
  return value
end

-- A list option: a single string counts as a one-element list.
function M.list(ctx, name, default)
  local value = ctx.options[name]
  if value == nil then
    if default == nil then
      error("the hook option '" .. name .. "' is required (a list)", 0)
    end
    return default
  end
  if type(value) == "string" then return { value } end
  if type(value) ~= "table" then
    error("the hook option '" .. name .. "' must be a list, not " .. describe(value), 0)
  end
  return value
end

return M
