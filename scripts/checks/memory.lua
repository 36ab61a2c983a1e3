---@spm api=1 kind=check
-- Memory in use as a percentage of MemTotal (node_exporter); fails when it rose by more
-- than thresholds.memory_delta_max percentage points.

local validation = require("validation")

return {
  name = "memory",
  description = "memory use % must not rise more than thresholds.memory_delta_max points",
  run = function(ctx)
    local sel = ctx.config.prom_selector
    local expr = string.format(
      "100 * (1 - sum(node_memory_MemAvailable_bytes{%s}) / sum(node_memory_MemTotal_bytes{%s}))",
      sel,
      sel
    )
    local value = validation.query_value(expr)
    if ctx.stage == "baseline" then
      return { value = value, query = expr }
    end
    local r = validation.compare_delta(
      "memory",
      value,
      ctx.baseline.value,
      ctx.config.thresholds.memory_delta_max,
      "%"
    )
    r.query = expr
    return r
  end,
}
