---@spm api=1 kind=rollback
-- Reinstall the exact package versions captured before the patch (epoch included) with
-- apt --allow-downgrades or dnf, restart critical services the patch left down, then
-- verify the versions.

local pkg = require("pkg")
local remote = require("remote")
local verify = require("verify")

return {
  name = "package",
  description = "downgrade to the exact versions captured before the patch",
  applies = function(ctx)
    local before = (ctx.state.patch or {}).before
    return before ~= nil and next(before) ~= nil
  end,
  run = function(ctx)
    local before = ctx.state.patch.before
    local list = {}
    for _, p in pairs(before) do
      list[#list + 1] = p
    end
    table.sort(list, function(a, b)
      return a.name < b.name
    end)
    remote.must(
      ctx,
      pkg.install_exact_script(ctx.os, list),
      "infrastructure",
      "package downgrade",
      { timeout = 600 }
    )
    local _, down = remote.service_states(ctx, ctx.config.critical_services or {})
    if #down > 0 then
      remote.run(ctx, "systemctl restart " .. spm.shell.join(down), { timeout = 120 })
    end
    return {
      strategy = "package",
      restored = verify.versions_restored(ctx, before),
      restarted = down,
    }
  end,
}
