---@spm api=1 kind=phase
-- Before patching: the system answers a script round trip (boot id), has enough disk, the
-- package manager is free, no reboot is pending, critical services are up. Also records
-- the validation baseline.

local remote = require("remote")
local pkg = require("pkg")
local validation = require("validation")

return {
  name = "pre_check",
  timeout = "3m",
  run = function(ctx)
    local boot_id = remote.boot_id(ctx)

    local df = remote.must(ctx, "df -BM --output=avail /", "infrastructure", "disk check")
    local lines = remote.lines(df.stdout)
    local free_mb = tonumber((lines[#lines] or ""):match("^(%d+)M?$"))
    if not free_mb then
      spm.fail({
        kind = "infrastructure",
        message = "unexpected df output: " .. remote.excerpt(df.stdout),
      })
    end
    if free_mb < ctx.config.min_disk_mb then
      spm.fail({
        kind = "infrastructure",
        message = string.format(
          "only %d MB free on /, need %d MB",
          free_mb,
          ctx.config.min_disk_mb
        ),
      })
    end

    if pkg.lock_held(ctx) then
      spm.fail({
        kind = "transient",
        message = "the package manager lock is held",
        retryable = true,
      })
    end
    if pkg.reboot_pending(ctx) then
      spm.fail({ kind = "infrastructure", message = "a reboot is already pending on the system" })
    end

    local states, down = remote.service_states(ctx, ctx.config.critical_services)
    if #down > 0 then
      spm.fail({
        kind = "infrastructure",
        message = "critical services down before patching: " .. table.concat(down, ", "),
      })
    end

    return {
      boot_id = boot_id,
      disk_free_mb = free_mb,
      services = states,
      baseline = validation.baseline(ctx),
    }
  end,
}
