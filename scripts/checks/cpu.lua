---@spm api=1 kind=check
-- CPU busy percentage (node_exporter node_cpu_seconds_total) over the configured window;
-- fails when it rose by more than thresholds.cpu_delta_max percentage points.

local validation = require("validation")

return {
  name = "cpu",
  description = "CPU busy % must not rise more than thresholds.cpu_delta_max points",
  run = function(ctx)
    local expr = string.format(
      '100 * (1 - avg(rate(node_cpu_seconds_total{mode="idle",%s}[%ds])))',
      ctx.config.prom_selector,
      ctx.config.window_s or 300
    )
    local value = validation.query_value(expr)
    if ctx.stage == "baseline" then
      return { value = value, query = expr }
    end
    local r = validation.compare_delta(
      "cpu",
      value,
      ctx.baseline.value,
      ctx.config.thresholds.cpu_delta_max,
      "%"
    )
    r.query = expr
    return r
  end,
}
