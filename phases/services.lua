---@spm api=1 kind=phase
-- Critical services must be active after the patch. Retried a few times for slow starts;
-- a check script that fails or times out is a failure, never "all up".

local remote = require("remote")

return {
  name = "services",
  timeout = "5m",
  run = function(ctx)
    local attempts = ctx.config.service_retries or 3
    local delay = ctx.config.service_retry_delay_s or 5
    local states, down
    for attempt = 1, attempts do
      states, down = remote.service_states(ctx, ctx.config.critical_services)
      if #down == 0 then
        return { services = states, attempts = attempt }
      end
      if attempt < attempts then
        spm.time.sleep(delay)
      end
    end
    spm.test.record("services", states)
    spm.test.record("down", down)
    spm.fail({
      kind = "regression",
      message = "critical services down after patch: " .. table.concat(down, ", "),
    })
  end,
}
