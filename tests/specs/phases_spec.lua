---@spm api=1 kind=spec
-- Specs of the shipped phases and rollback strategies with in-Lua fakes of spm.uyuni:
-- failures keep their kind, a broken check never counts as success, values are quoted.

local sent = {}

--- A fake system answering the commands the shipped scripts send.
local function fake_system(opts)
  opts = opts or {}
  return {
    script_run = function(_id, script)
      sent[#sent + 1] = script
      local function out(code, stdout, stderr)
        return { exit_code = code, stdout = stdout or "", stderr = stderr or "" }
      end
      if script:find("boot_id", 1, true) then
        return out(0, "0b2c1e5e-9d8e-4f7a-8c55-2f1d5a6b7c8d\n")
      elseif script:find("df ", 1, true) then
        return out(0, "Avail\n" .. (opts.free_mb or 9000) .. "M\n")
      elseif script:find("fuser", 1, true) then
        return out(1)
      elseif script:find("reboot-required", 1, true) then
        return out(1)
      elseif script:find("systemctl is-active", 1, true) then
        return opts.services and out(3, opts.services) or out(0, "active\nactive\n")
      elseif script:find("snapper create", 1, true) then
        return opts.snapper and out(0, "7\n") or out(127, "", "sh: 1: snapper: not found\n")
      elseif script:find("dpkg-query", 1, true) then
        return out(0, opts.dpkg or "nginx\t1.24.0-2ubuntu7.1\tamd64\n")
      elseif script:find("apt-get install", 1, true) then
        return out(0, "Setting up ...\n")
      end
      return out(127, "", "sh: 1: unknown command\n")
    end,
  }
end

local function ctx(extra)
  local c = {
    test_id = 1,
    os = "ubuntu",
    system = { id = 1000010001, name = "t1", os = "ubuntu" },
    advisory = {
      name = "USN-9002-1",
      packages = {
        { name = "nginx", epoch = "", version = "1.24.0", release = "2ubuntu7.2", arch = "amd64" },
      },
      cves = {},
    },
    config = {
      min_disk_mb = 500,
      critical_services = { "ssh", "nginx" },
      checks = {},
      script_timeout = 5,
      service_retries = 2,
      service_retry_delay_s = 0,
      apply_timeout = 30,
    },
    state = {},
  }
  for k, v in pairs(extra or {}) do
    c[k] = v
  end
  return c
end

return {
  description = "shipped phases and rollback strategies",
  cases = {
    {
      name = "pre_check passes on a healthy system and reads the boot id",
      script = "phases/pre_check.lua",
      ctx = ctx(),
      services = { uyuni = fake_system() },
      expect = {
        ok = true,
        result = { boot_id = "0b2c1e5e-9d8e-4f7a-8c55-2f1d5a6b7c8d", disk_free_mb = 9000 },
      },
    },
    {
      name = "pre_check refuses a system short of disk as infrastructure",
      script = "phases/pre_check.lua",
      ctx = ctx(),
      services = { uyuni = fake_system({ free_mb = 100 }) },
      expect = { error_kind = "infrastructure", message_contains = "only 100 MB free" },
    },
    {
      name = "services: a check that answers garbage is a failure, never all up",
      script = "phases/services.lua",
      ctx = ctx(),
      services = { uyuni = fake_system({ services = "" }) },
      expect = { error_kind = "infrastructure", message_contains = "returned 0 lines for 2 units" },
    },
    {
      name = "services: a unit down after the retries is a regression",
      script = "phases/services.lua",
      ctx = ctx(),
      services = { uyuni = fake_system({ services = "active\nfailed\n" }) },
      expect = { error_kind = "regression", message_contains = "nginx" },
    },
    {
      name = "snapshot without snapper falls back to packages",
      script = "phases/snapshot.lua",
      ctx = ctx(),
      services = { uyuni = fake_system() },
      expect = { ok = true, result = { available = false, fallback = "package" } },
    },
    {
      name = "patch: a failed apply is a patch error and the versions before are kept",
      script = "phases/patch.lua",
      ctx = ctx(),
      services = {
        uyuni = {
          script_run = fake_system().script_run,
          errata_apply = function(ids)
            return {
              action_id = 5,
              results = { { system_id = ids[1], status = "failed", message = "dpkg error" } },
            }
          end,
        },
      },
      expect = {
        error_kind = "patch",
        message_contains = "dpkg error",
        check = function()
          local before = spm.test.recorded("before")
          return before and before.nginx and before.nginx.release == "2ubuntu7.1",
            "before versions not recorded"
        end,
      },
    },
    {
      name = "package rollback installs the exact versions, epoch included, quoted",
      script = "scripts/rollback/package.lua",
      ctx = ctx({
        state = {
          patch = {
            before = {
              ["nginx-common"] = {
                name = "nginx-common",
                epoch = "1",
                version = "1.24.0",
                release = "2ubuntu7.1",
                arch = "all",
              },
            },
          },
        },
      }),
      services = { uyuni = fake_system({ dpkg = "nginx-common\t1:1.24.0-2ubuntu7.1\tall\n" }) },
      expect = {
        ok = true,
        result = { strategy = "package" },
        check = function()
          for _, s in ipairs(sent) do
            if
              s:find(
                "apt-get install -y --allow-downgrades nginx-common=1:1.24.0-2ubuntu7.1",
                1,
                true
              )
            then
              return true
            end
          end
          return false, "no exact apt-get downgrade was sent"
        end,
      },
    },
  },
}
