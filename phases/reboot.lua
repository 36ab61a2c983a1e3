---@spm api=1 kind=phase
-- Reboot when the advisory or its packages need it (kernel packages, reboot suggested, the
-- system's own reboot flag). Passes only when the boot id changed and the system answers.

local reboot = require("reboot")

return {
  name = "reboot",
  timeout = "15m",
  run = function(ctx)
    return reboot.phase(ctx, reboot.reasons(ctx))
  end,
}
