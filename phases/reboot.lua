---@spm api=1 kind=phase
-- Reboot when the advisory or its packages need it (kernel packages, reboot suggested, the
-- system's own reboot flag). Passes only when the boot id changed and the system answers.

local pkg = require("pkg")
local reboot = require("reboot")

return {
  name = "reboot",
  timeout = "15m",
  run = function(ctx)
    local reasons = {}
    if ctx.advisory.reboot_suggested then
      reasons[#reasons + 1] = "the advisory suggests a reboot"
    end
    if ctx.advisory.affects_kernel then
      reasons[#reasons + 1] = "the advisory updates the kernel"
    end
    if pkg.reboot_pending(ctx) then
      reasons[#reasons + 1] = "the system reports a pending reboot"
    end
    if #reasons == 0 then
      return { skipped = true, reason = "no reboot needed" }
    end
    local r = reboot.reboot_and_wait(ctx, nil)
    r.performed = true
    r.reasons = reasons
    return r
  end,
}
