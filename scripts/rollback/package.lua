---@spm api=1 kind=rollback
-- Reinstall the exact package versions captured before the patch (epoch included) with
-- apt --allow-downgrades or dnf, then verify them.

local pkg = require("lib.pkg")
local remote = require("lib.remote")
local verify = require("lib.verify")

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
    remote.must(ctx, pkg.install_exact_script(ctx.os, list), "rollback", "package downgrade", { timeout = 600 })
    return { strategy = "package", restored = verify.versions_restored(ctx, before) }
  end,
}
