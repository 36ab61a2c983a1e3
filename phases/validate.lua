---@spm api=1 kind=phase
-- Compare the validation checks (scripts/checks/) after the patch with the baseline
-- recorded by pre_check. A check with no data is inconclusive and fails closed unless the
-- configuration says otherwise.

local validation = require("validation")

return {
  name = "validate",
  timeout = "5m",
  run = function(ctx)
    if #(ctx.config.checks or {}) == 0 then
      return { skipped = true, reason = "no validation checks configured" }
    end
    local baseline = (ctx.state.pre_check or {}).baseline or {}
    if ctx.config.settle_s and ctx.config.settle_s > 0 then
      spm.time.sleep(ctx.config.settle_s)
    end
    local results, failed = validation.evaluate(ctx, baseline)
    if #failed > 0 then
      local msgs = {}
      for _, name in ipairs(failed) do
        msgs[#msgs + 1] = results[name].message or name
      end
      spm.test.record("results", results)
      spm.test.record("failed", failed)
      spm.fail({ kind = "regression", message = "validation failed: " .. table.concat(msgs, "; ") })
    end
    return { results = results }
  end,
}
