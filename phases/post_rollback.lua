---@spm api=1 kind=phase
-- After a rollback: the system answers, and the critical services are up again.

local remote = require("remote")

return {
  name = "post_rollback",
  timeout = "3m",
  run = function(ctx)
    local boot_id = remote.boot_id(ctx)
    local attempts = ctx.config.service_retries or 3
    local states, down
    for attempt = 1, attempts do
      states, down = remote.service_states(ctx, ctx.config.critical_services)
      if #down == 0 then
        return { boot_id = boot_id, services = states, attempts = attempt }
      end
      if attempt < attempts then
        spm.time.sleep(ctx.config.service_retry_delay_s or 5)
      end
    end
    spm.fail({
      kind = "regression",
      message = "services still down after rollback: " .. table.concat(down, ", "),
    })
  end,
}
