---@spm api=1 kind=phase
-- Ubuntu: as phases/reboot.lua, and the packages that asked for the reboot
-- (/var/run/reboot-required.pkgs, written by update-notifier's hooks) go into the evidence.

local reboot = require("reboot")
local remote = require("remote")

return {
  name = "reboot",
  timeout = "15m",
  run = function(ctx)
    local reasons = reboot.reasons(ctx)
    local pkgs = remote.run(ctx, "cat /var/run/reboot-required.pkgs")
    local r = reboot.phase(ctx, reasons)
    if pkgs.exit_code == 0 then
      r.required_by = remote.lines(pkgs.stdout)
    end
    return r
  end,
}
