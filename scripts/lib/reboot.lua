---@spm api=1 kind=lib
-- Reboot a system and prove it: the boot id must change and the system must answer again.

local remote = require("remote")

local M = {}

--- Reboot the context's system; returns {boot_id_before, boot_id_after, waited_s}.
---@param ctx table
---@param before string|nil boot id before the reboot (read now when nil)
---@return table
function M.reboot_and_wait(ctx, before)
  before = before or remote.boot_id(ctx)
  local timeout = ctx.config.reboot_timeout or 600
  local started = spm.time.now()
  spm.uyuni.reboot(ctx.system.id, { timeout = timeout })
  local delay = 0.2
  while true do
    local id = spm.try(remote.boot_id, ctx)
    if id and id ~= before then
      return { boot_id_before = before, boot_id_after = id, waited_s = spm.time.now() - started }
    end
    if spm.time.now() - started > timeout then
      spm.fail({
        kind = "infrastructure",
        message = string.format("system did not come back with a new boot id within %ds", timeout),
        retryable = true,
      })
    end
    spm.time.sleep(delay)
    delay = math.min(delay * 2, 10)
  end
end

return M
