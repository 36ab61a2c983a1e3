---@spm api=1 kind=rollback
-- Undo the patch with `snapper undochange N..0`, reboot when the patch touched the kernel or
-- rebooted the system, then verify the captured package versions are back.

local remote = require("remote")
local reboot = require("reboot")
local verify = require("verify")

return {
  name = "snapshot",
  description = "snapper undochange to the pre-patch snapshot",
  applies = function(ctx)
    local snap = ctx.state.snapshot
    return snap ~= nil and snap.available == true and snap.number ~= nil
  end,
  run = function(ctx)
    local n = ctx.state.snapshot.number
    remote.must(
      ctx,
      "snapper undochange " .. spm.shell.quote(string.format("%d..0", n)),
      "infrastructure",
      "snapper undochange",
      { timeout = 600 }
    )
    local rebooted = nil
    local patched_reboot = ctx.state.reboot and ctx.state.reboot.performed
    if patched_reboot or ctx.advisory.affects_kernel then
      rebooted = reboot.reboot_and_wait(ctx, nil)
    end
    local before = (ctx.state.patch or {}).before or {}
    return {
      strategy = "snapshot",
      snapshot = n,
      reboot = rebooted,
      restored = verify.versions_restored(ctx, before),
    }
  end,
}
