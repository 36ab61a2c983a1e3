---@spm api=1 kind=lib
-- Package-manager specifics per OS family: exact versions, locks, reboot flags.

local remote = require("lib.remote")

local M = {}

--- "deb" for ubuntu/debian, "rpm" for rhel.
---@param os string
---@return string
function M.family(os)
  if os == "rhel" then
    return "rpm"
  end
  return "deb"
end

--- Full version string a package manager accepts for an exact install.
--- deb: [epoch:]version[-release]; rpm: name-[epoch:]version-release.
---@param os string
---@param p table {name, epoch, version, release}
---@return string
function M.spec(os, p)
  local epoch = (p.epoch and p.epoch ~= "" and p.epoch ~= "0") and (p.epoch .. ":") or ""
  local release = (p.release and p.release ~= "" and p.release ~= "X") and ("-" .. p.release) or ""
  if M.family(os) == "rpm" then
    return string.format("%s-%s%s%s", p.name, epoch, p.version, release)
  end
  return string.format("%s=%s%s%s", p.name, epoch, p.version, release)
end

--- Display form of a package version: [epoch:]version[-release].
---@param p table
---@return string
function M.evr(p)
  local epoch = (p.epoch and p.epoch ~= "" and p.epoch ~= "0") and (p.epoch .. ":") or ""
  local release = (p.release and p.release ~= "" and p.release ~= "X") and ("-" .. p.release) or ""
  return epoch .. p.version .. release
end

--- Installed versions of the named packages, keyed by name (absent names are left out).
---@param ctx table
---@param names string[]
---@return table<string, table>
function M.installed(ctx, names)
  local wanted = {}
  for _, n in ipairs(names) do
    wanted[n] = true
  end
  local out = {}
  for _, p in ipairs(spm.uyuni.packages_installed(ctx.system.id, names)) do
    if wanted[p.name] then
      out[p.name] = { name = p.name, epoch = p.epoch or "", version = p.version, release = p.release or "", arch = p.arch }
    end
  end
  return out
end

--- Script that installs exactly the given versions (downgrades allowed).
---@param os string
---@param pkgs table[]
---@return string
function M.install_exact_script(os, pkgs)
  local specs = {}
  for _, p in ipairs(pkgs) do
    specs[#specs + 1] = M.spec(os, p)
  end
  if M.family(os) == "rpm" then
    return "dnf install -y " .. spm.shell.join(specs) .. " 2>&1"
  end
  return "DEBIAN_FRONTEND=noninteractive apt-get install -y --allow-downgrades " .. spm.shell.join(specs) .. " 2>&1"
end

--- Lock file of the package manager.
---@param os string
---@return string
function M.lock_path(os)
  if M.family(os) == "rpm" then
    return "/var/lib/rpm/.rpm.lock"
  end
  return "/var/lib/dpkg/lock-frontend"
end

--- True when the package manager lock is held by a process.
---@param ctx table
---@return boolean
function M.lock_held(ctx)
  local r = remote.run(ctx, "fuser " .. spm.shell.quote(M.lock_path(ctx.os)), { timeout = 30 })
  -- fuser exits 0 when a process holds the file, 1 when none does.
  if r.exit_code == 0 then
    return true
  elseif r.exit_code == 1 then
    return false
  end
  spm.fail({ kind = "infrastructure", message = "cannot check the package manager lock: " .. remote.excerpt(r.stderr) })
end

--- True when the system reports a pending reboot.
---@param ctx table
---@return boolean
function M.reboot_pending(ctx)
  if M.family(ctx.os) == "rpm" then
    local r = remote.run(ctx, "needs-restarting -r", { timeout = 30 })
    if r.exit_code == 127 then
      spm.fail({ kind = "infrastructure", message = "needs-restarting is missing (install dnf-utils)" })
    end
    return r.exit_code == 1
  end
  local r = remote.run(ctx, "test -e /var/run/reboot-required", { timeout = 30 })
  return r.exit_code == 0
end

return M
