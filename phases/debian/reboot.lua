---@spm api=1 kind=phase
-- Debian: as phases/reboot.lua, and needrestart's batch mode is asked too: a kernel status
-- of 2 or 3 (a newer kernel is installed than the one running) is a reason to reboot.
-- needrestart is optional; when it is missing the shared reasons decide alone.

local reboot = require("reboot")
local remote = require("remote")

return {
  name = "reboot",
  timeout = "15m",
  run = function(ctx)
    local reasons = reboot.reasons(ctx)
    local nr = remote.run(ctx, "needrestart -b -k")
    local ksta = nr.exit_code == 0 and nr.stdout:match("NEEDRESTART%-KSTA:%s*(%d)") or nil
    if ksta == "2" or ksta == "3" then
      reasons[#reasons + 1] = "needrestart reports a newer kernel (KSTA " .. ksta .. ")"
    end
    local r = reboot.phase(ctx, reasons)
    r.needrestart_ksta = ksta
    return r
  end,
}
