---@spm api=1 kind=phase
-- Before patching: the system answers a script round trip (boot id), has enough disk, the
-- package manager is free, no reboot is pending, critical services are up. Also records
-- the validation baseline. Per-OS overrides in phases/<os>/pre_check.lua add their checks.

local precheck = require("precheck")

return {
  name = "pre_check",
  timeout = "3m",
  run = precheck.run,
}
