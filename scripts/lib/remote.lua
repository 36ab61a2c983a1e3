---@spm api=1 kind=lib
-- Helpers for running commands on a test system through UYUNI scripts.
-- Every value placed into a script goes through spm.shell.quote.

local M = {}

--- Run a script on the context's system. A non-zero exit code is returned, not raised;
--- a system that does not answer raises an infrastructure error from spm.uyuni.
---@param ctx table
---@param script string
---@param opts? table
---@return table result {exit_code, stdout, stderr}
function M.run(ctx, script, opts)
  opts = opts or {}
  local timeout = opts.timeout or ctx.config.script_timeout or 60
  return spm.uyuni.script_run(ctx.system.id, "#!/bin/sh\n" .. script .. "\n", { timeout = timeout })
end

--- Run a script and fail with `kind` unless it exits 0.
---@param ctx table
---@param script string
---@param kind string
---@param what string
---@param opts? table
---@return table result
function M.must(ctx, script, kind, what, opts)
  local r = M.run(ctx, script, opts)
  if r.exit_code ~= 0 then
    spm.fail({
      kind = kind,
      message = string.format(
        "%s failed (exit %d): %s",
        what,
        r.exit_code,
        M.excerpt(r.stderr ~= "" and r.stderr or r.stdout)
      ),
    })
  end
  return r
end

--- First 300 characters of a text, trimmed, for error messages.
---@param text string|nil
---@return string
function M.excerpt(text)
  text = (text or ""):gsub("^%s+", ""):gsub("%s+$", "")
  if #text > 300 then
    return text:sub(1, 300) .. "…"
  end
  return text
end

--- Trimmed lines of a text.
---@param text string|nil
---@return string[]
function M.lines(text)
  local out = {}
  for line in (text or ""):gmatch("[^\n]+") do
    local t = line:gsub("^%s+", ""):gsub("%s+$", "")
    if t ~= "" then
      out[#out + 1] = t
    end
  end
  return out
end

--- Read the system's boot id; proves the system answers a script round trip.
---@param ctx table
---@return string boot_id
function M.boot_id(ctx)
  local r =
    M.must(ctx, "cat /proc/sys/kernel/random/boot_id", "infrastructure", "reading the boot id")
  local id = M.lines(r.stdout)[1]
  if not id or not id:match("^[%x%-]+$") then
    spm.fail({
      kind = "infrastructure",
      message = "unexpected boot id output: " .. M.excerpt(r.stdout),
    })
  end
  return id
end

--- Services among `units` that are not active. A script that cannot run raises; it never
--- counts as "all up".
---@param ctx table
---@param units string[]
---@return table states map unit -> state, string[] down
function M.service_states(ctx, units)
  local states, down = {}, {}
  if #units == 0 then
    return states, down
  end
  local r = M.run(ctx, "systemctl is-active " .. spm.shell.join(units))
  local lines = M.lines(r.stdout)
  if #lines ~= #units then
    spm.fail({
      kind = "infrastructure",
      message = string.format(
        "service check returned %d lines for %d units (exit %d): %s",
        #lines,
        #units,
        r.exit_code,
        M.excerpt(r.stderr)
      ),
    })
  end
  for i, unit in ipairs(units) do
    states[unit] = lines[i]
    if lines[i] ~= "active" then
      down[#down + 1] = unit
    end
  end
  return states, down
end

return M
