---@spm api=1 kind=phase
-- Take a snapper snapshot before patching. When snapper is unavailable the test goes on
-- and the rollback falls back to packages; the fallback is recorded.

local remote = require("remote")

return {
  name = "snapshot",
  timeout = "2m",
  run = function(ctx)
    local description = "spm-pre-" .. ctx.advisory.name .. "-test-" .. tostring(ctx.test_id)
    local r = remote.run(
      ctx,
      "snapper create --type single --cleanup-algorithm number --print-number --description "
        .. spm.shell.quote(description)
    )
    local number = remote.lines(r.stdout)[1]
    if r.exit_code ~= 0 or not number or not number:match("^%d+$") then
      local reason = r.exit_code == 127 and "snapper is not installed"
        or ("snapper failed: " .. remote.excerpt(r.stderr ~= "" and r.stderr or r.stdout))
      spm.log.warn("snapshot unavailable, rollback falls back to packages", { reason = reason })
      return { available = false, reason = reason, fallback = "package" }
    end
    return { available = true, number = tonumber(number), description = description }
  end,
}
