---@spm api=1 kind=policy
-- Ubuntu 24.04 security errata (USN), critical and high first thing on weekdays.
-- A 5% canary, then growing waves; any failure in the canary stops the run.
return {
  id = "ubuntu2404-security",
  name = "Ubuntu 24.04 security updates",
  os = "ubuntu2404",
  targets = {
    groups = { "prod-ubuntu-web", "prod-ubuntu-app", "prod-ubuntu-db" },
    env = "prod",
    exclude = {},
  },
  schedule = { cron = "30 5 * * 1-5", timezone = "UTC" },
  maintenance_window = { length = "2h", host_estimate = "10m" },
  errata = { types = { "security" }, severity = { "critical", "high" } },
  pre_patch_snapshot = false,
  reboot = "if_needed",
  waves = { canary = "5%", sizes = { "20%", "50%" } },
  max_parallel = 20,
  error_budget = {
    per_wave = { hosts = 0 },
    per_run = { percent = 2 },
  },
  rollback_on_failure = "auto",
  executor = "uyuni",
  hooks = {
    -- A host is good when no applied advisory is still relevant (checked by the engine)
    -- and the hook does not object; ctx.relevant lists what UYUNI still reports.
    verify_host = function(ctx)
      return #ctx.still_relevant == 0
    end,
  },
}
