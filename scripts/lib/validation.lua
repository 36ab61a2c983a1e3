---@spm api=1 kind=lib
-- Runs the validation checks named in ctx.config.checks: scripts/checks/<name>.lua of the
-- script set this test runs with, loaded with require("checks.<name>").
-- Each check is called twice: with ctx.stage == "baseline" before the patch, and with
-- ctx.stage == "post" (and ctx.baseline = what the first call returned) after it.

local M = {}

local function stage_ctx(ctx, stage, baseline)
  return setmetatable({ stage = stage, baseline = baseline }, { __index = ctx })
end

--- Baseline values of every configured check, keyed by check name.
---@param ctx table
---@return table<string, table>
function M.baseline(ctx)
  local out = {}
  for _, name in ipairs(ctx.config.checks or {}) do
    local check = require("checks." .. name)
    out[name] = check.run(stage_ctx(ctx, "baseline", nil)) or {}
  end
  return out
end

--- Evaluate every configured check against its baseline. Returns the per-check results and
--- the names of the checks that failed (a check with no data fails when fail_closed is set).
---@param ctx table
---@param baseline table<string, table>
---@return table<string, table> results, string[] failed
function M.evaluate(ctx, baseline)
  local results, failed = {}, {}
  for _, name in ipairs(ctx.config.checks or {}) do
    local check = require("checks." .. name)
    local r = check.run(stage_ctx(ctx, "post", (baseline or {})[name] or {})) or {}
    if r.ok == nil then
      r.inconclusive = true
      r.ok = not ctx.config.fail_closed
      r.message = (r.message or "no data")
        .. (ctx.config.fail_closed and " (fails closed)" or " (ignored)")
    end
    results[name] = r
    if not r.ok then
      failed[#failed + 1] = name
    end
  end
  return results, failed
end

--- First sample value of an instant Prometheus query, or nil when there is no data.
---@param expr string
---@return number|nil
function M.query_value(expr)
  local rows = spm.prom.query(expr)
  if rows[1] == nil then
    return nil
  end
  return tonumber(rows[1].value)
end

--- Compare a post value with its baseline: ok when the rise is at most max_delta.
---@param name string
---@param post number|nil
---@param base number|nil
---@param max_delta number
---@param unit string
---@return table
function M.compare_delta(name, post, base, max_delta, unit)
  if post == nil or base == nil then
    return { ok = nil, value = post, baseline = base, message = name .. ": no data" }
  end
  local delta = post - base
  local ok = delta <= max_delta
  return {
    ok = ok,
    value = post,
    baseline = base,
    delta = delta,
    threshold = max_delta,
    message = string.format(
      "%s %.1f%s -> %.1f%s (delta %+.1f, limit %+.1f)",
      name,
      base,
      unit,
      post,
      unit,
      delta,
      max_delta
    ),
  }
end

return M
