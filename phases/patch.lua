---@spm api=1 kind=phase
-- Apply the advisory. The exact installed versions of every package it touches are captured
-- *before* applying and recorded with spm.test.record, so state.patch.before exists even
-- when the apply fails and a package rollback always has them.

local pkg = require("pkg")

return {
  name = "patch",
  timeout = "35m",
  run = function(ctx)
    local names, seen = {}, {}
    for _, p in ipairs(ctx.advisory.packages or {}) do
      if not seen[p.name] then
        seen[p.name] = true
        names[#names + 1] = p.name
      end
    end
    if #names == 0 then
      spm.fail({
        kind = "patch",
        message = "advisory " .. ctx.advisory.name .. " lists no packages",
      })
    end

    local before = pkg.installed(ctx, names)
    spm.test.record("before", before)

    local res = spm.uyuni.errata_apply(
      { ctx.system.id },
      { ctx.advisory.name },
      { timeout = ctx.config.apply_timeout }
    )
    spm.test.record("action_id", res.action_id)
    local mine
    for _, r in ipairs(res.results or {}) do
      if r.system_id == ctx.system.id then
        mine = r
      end
    end
    if not mine or mine.status == "pending" or mine.status == "missing" then
      spm.fail({
        kind = "transient",
        message = "applying "
          .. ctx.advisory.name
          .. " did not finish: "
          .. ((mine and mine.status) or "no result"),
      })
    elseif mine.status ~= "completed" then
      spm.fail({
        kind = "patch",
        message = "applying " .. ctx.advisory.name .. " failed: " .. (mine.message or mine.status),
      })
    end

    local after = pkg.installed(ctx, names)
    local changed = {}
    for name, a in pairs(after) do
      local b = before[name]
      if not b or pkg.evr(b) ~= pkg.evr(a) then
        changed[#changed + 1] =
          { name = name, before = b and pkg.evr(b) or nil, after = pkg.evr(a) }
      end
    end
    table.sort(changed, function(x, y)
      return x.name < y.name
    end)
    if #changed == 0 then
      spm.fail({
        kind = "patch",
        message = "UYUNI reported success but no package of " .. ctx.advisory.name .. " changed",
      })
    end
    return { before = before, after = after, changed = changed, action_id = res.action_id }
  end,
}
