---@spm api=1 kind=lib
-- Verifies that a rollback really restored the captured package versions.

local pkg = require("pkg")
local remote = require("remote")

local M = {}

--- Fail (kind infrastructure) unless every package in `before` is installed at exactly its
--- captured version (and, on Debian, fully configured). Returns the list of restored packages.
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
    local status = now[name] and now[name].status
    if have == want and status and status ~= "ii" then
      wrong[#wrong + 1] =
        string.format("%s is %s but not fully installed (dpkg status %s)", name, have, status)
    elseif have == want then
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

--- Fail (kind infrastructure) unless the package manager finds every file of the named
--- packages as shipped (`dpkg --verify` / `rpm -V`); changed config files are allowed,
--- an administrator may have edited them. Versions alone do not prove a snapshot rollback:
--- snapper's undo skips a file whose mtime did not change, even when its content did.
--- Returns the names checked.
---@param ctx table
---@param names string[]
---@return string[]
function M.files_intact(ctx, names)
  if #names == 0 then
    return names
  end
  local script
  if pkg.family(ctx.os) == "rpm" then
    script = "rpm -V " .. spm.shell.join(names)
  else
    script = "dpkg --verify " .. spm.shell.join(names)
  end
  local r = remote.run(ctx, script)
  local lines = remote.lines(r.stdout)
  local bad = {}
  for _, line in ipairs(lines) do
    -- "<attributes> [c] <path>" (or "missing <path>"); "c" marks a config file.
    local rest = line:match("^%S+%s+(.*)$")
    if not (rest and rest:match("^c%s")) then
      bad[#bad + 1] = line
    end
  end
  if #bad > 0 then
    spm.fail({
      kind = "infrastructure",
      message = "rollback not verified, files differ from their packages: "
        .. remote.excerpt(table.concat(bad, "; ")),
    })
  end
  -- Both exit 1 when something (here: only config files) does not verify; exit 1 without
  -- a report (a package that is not installed) or any other code is a broken check.
  if r.exit_code > 1 or (r.exit_code == 1 and #lines == 0) or r.exit_code < 0 then
    spm.fail({
      kind = "infrastructure",
      message = string.format(
        "verifying package files failed (exit %d): %s",
        r.exit_code,
        remote.excerpt(r.stderr ~= "" and r.stderr or r.stdout)
      ),
    })
  end
  return names
end

return M
