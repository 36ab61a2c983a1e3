---@spm api=1 kind=rollback
-- Undo the patch with `snapper undochange N..0`, reboot when the patch touched the kernel or
-- rebooted the system (else restart critical services left down), then verify the captured
-- package versions are back.

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
    local down = {}
    if not rebooted then
      -- Without a reboot the old files are back but services the patch broke still run
      -- (or lie dead) on the new ones: restart those that are down.
      local _, now_down = remote.service_states(ctx, ctx.config.critical_services or {})
      down = now_down
      if #down > 0 then
        remote.run(ctx, "systemctl restart " .. spm.shell.join(down), { timeout = 120 })
      end
    end
    local before = (ctx.state.patch or {}).before or {}
    return {
      strategy = "snapshot",
      snapshot = n,
      reboot = rebooted,
      restarted = down,
      restored = verify.versions_restored(ctx, before),
    }
  end,
}
