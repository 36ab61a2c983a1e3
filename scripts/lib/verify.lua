---@spm api=1 kind=lib
-- Verifies that a rollback really restored the captured package versions.

local pkg = require("pkg")

local M = {}

--- Fail (kind infrastructure) unless every package in `before` is installed at exactly its
--- captured version. Returns the list of restored packages.
---@param ctx table
---@param before table<string, table>
---@return table[]
function M.versions_restored(ctx, before)
  local names = {}
  for name in pairs(before) do
    names[#names + 1] = name
  end
  table.sort(names)
  local now = pkg.installed(ctx, names)
  local restored, wrong = {}, {}
  for _, name in ipairs(names) do
    local want = pkg.evr(before[name])
    local have = now[name] and pkg.evr(now[name]) or "(not installed)"
    if have == want then
      restored[#restored + 1] = { name = name, version = want }
    else
      wrong[#wrong + 1] = string.format("%s is %s, expected %s", name, have, want)
    end
  end
  if #wrong > 0 then
    spm.fail({
      kind = "infrastructure",
      message = "rollback not verified: " .. table.concat(wrong, "; "),
    })
  end
  return restored
end

return M
