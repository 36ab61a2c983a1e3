---@spm api=1 kind=lib
-- Package-manager specifics per OS family: exact versions, locks, reboot flags.

local remote = require("remote")

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

--- Split a Debian version `[epoch:]upstream[-revision]` into its parts.
---@param v string
---@return string epoch, string version, string release
function M.split_deb_version(v)
  local epoch, rest = v:match("^(%d+):(.+)$")
  rest = rest or v
  local version, release = rest:match("^(.+)-([^-]+)$")
  return epoch or "", version or rest, release or ""
end

--- Installed versions of the named packages, keyed by name (absent names are left out),
--- read on the system itself (dpkg-query / rpm), not from UYUNI's possibly stale profile.
---@param ctx table
---@param names string[]
---@return table<string, table>
function M.installed(ctx, names)
  local wanted = {}
  for _, n in ipairs(names) do
    wanted[n] = true
  end
  local out = {}
  if #names == 0 then
    return out
  end
  local script
  if M.family(ctx.os) == "rpm" then
    script = "rpm -q --qf '%{NAME}\\t%{EPOCH}\\t%{VERSION}\\t%{RELEASE}\\t%{ARCH}\\n' "
      .. spm.shell.join(names)
  else
    script = "dpkg-query -W -f '${Package}\\t${Version}\\t${Architecture}\\n' "
      .. spm.shell.join(names)
  end
  -- Exit 1 only means some name is not installed; anything else is a broken query.
  local r = remote.run(ctx, script)
  if r.exit_code ~= 0 and r.exit_code ~= 1 then
    spm.fail({
      kind = "infrastructure",
      message = string.format(
        "reading installed versions failed (exit %d): %s",
        r.exit_code,
        remote.excerpt(r.stderr)
      ),
    })
  end
  for line in (r.stdout or ""):gmatch("[^\n]+") do
    local f = {}
    for field in (line .. "\t"):gmatch("([^\t]*)\t") do
      f[#f + 1] = field
    end
    if M.family(ctx.os) == "rpm" and #f == 5 and wanted[f[1]] then
      local epoch = (f[2] == "(none)") and "" or f[2]
      out[f[1]] = { name = f[1], epoch = epoch, version = f[3], release = f[4], arch = f[5] }
    elseif M.family(ctx.os) == "deb" and #f == 3 and wanted[f[1]] then
      local epoch, version, release = M.split_deb_version(f[2])
      out[f[1]] = { name = f[1], epoch = epoch, version = version, release = release, arch = f[3] }
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
  return "export DEBIAN_FRONTEND=noninteractive\napt-get install -y --allow-downgrades "
    .. spm.shell.join(specs)
    .. " 2>&1"
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
  local r = remote.run(ctx, "fuser " .. spm.shell.quote(M.lock_path(ctx.os)))
  -- fuser exits 0 when a process holds the file, 1 when none does.
  if r.exit_code == 0 then
    return true
  elseif r.exit_code == 1 then
    return false
  end
  spm.fail({
    kind = "infrastructure",
    message = "cannot check the package manager lock: " .. remote.excerpt(r.stderr),
  })
end

--- True when the system reports a pending reboot.
---@param ctx table
---@return boolean
function M.reboot_pending(ctx)
  if M.family(ctx.os) == "rpm" then
    local r = remote.run(ctx, "needs-restarting -r")
    if r.exit_code == 127 then
      spm.fail({
        kind = "infrastructure",
        message = "needs-restarting is missing (install dnf-utils)",
      })
    end
    return r.exit_code == 1
  end
  local r = remote.run(ctx, "test -e /var/run/reboot-required")
  return r.exit_code == 0
end

return M
