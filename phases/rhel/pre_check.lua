---@spm api=1 kind=phase
-- RHEL: the shared pre-check needs `needs-restarting` (dnf-utils) to tell whether a reboot
-- is pending; a system without it is an infrastructure failure that says what to install,
-- not a test that fails for an unrelated reason (the prototype failed every RHEL test here).

local precheck = require("precheck")
local remote = require("remote")

return {
  name = "pre_check",
  timeout = "3m",
  run = function(ctx)
    local probe = remote.run(ctx, "command -v needs-restarting")
    if probe.exit_code ~= 0 then
      spm.fail({
        kind = "infrastructure",
        message = "needs-restarting is missing on " .. ctx.system.name .. ": install dnf-utils",
      })
    end
    return precheck.run(ctx)
  end,
}
