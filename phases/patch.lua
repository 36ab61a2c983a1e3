---@spm api=1 kind=phase
-- Apply the advisory. The exact installed versions of every package it touches are captured
-- *before* applying and kept in ctx.state.patch.before even when the apply fails, so a
-- package rollback always has them.

local pkg = require("lib.pkg")

return {
  name = "patch",
  timeout = "35m",
  run = function(ctx)
    local names = {}
    for _, p in ipairs(ctx.advisory.packages or {}) do
      names[#names + 1] = p.name
    end
    if #names == 0 then
      spm.fail({ kind = "patch", message = "advisory " .. ctx.advisory.name .. " lists no packages" })
    end

    local state = { before = pkg.installed(ctx, names) }
    ctx.state.patch = state

    local res = spm.uyuni.errata_apply({ ctx.system.id }, { ctx.advisory.name }, { timeout = ctx.config.apply_timeout })
    state.action_id = res.action_id
    local mine
    for _, r in ipairs(res.results or {}) do
      if r.system_id == ctx.system.id then
        mine = r
      end
    end
    if not mine or mine.status ~= "completed" then
      spm.fail({
        kind = "patch",
        message = "applying " .. ctx.advisory.name .. " failed: " .. ((mine and mine.message) or "no result for the system"),
      })
    end

    state.after = pkg.installed(ctx, names)
    state.changed = {}
    for name, after in pairs(state.after) do
      local before = state.before[name]
      if not before or pkg.evr(before) ~= pkg.evr(after) then
        state.changed[#state.changed + 1] = {
          name = name,
          before = before and pkg.evr(before) or nil,
          after = pkg.evr(after),
        }
      end
    end
    table.sort(state.changed, function(a, b)
      return a.name < b.name
    end)
    return state
  end,
}
