---@spm api=1 kind=policy
-- RHEL 9 monthly baseline (the customer's example policy, SPEC-070): every approved
-- erratum up to the month's patch level, Sunday 02:00, snapshot first, reboot when needed.
return {
  id = "rhel9-baseline",
  name = "RHEL 9 Monthly Baseline",
  os = "rhel9",
  targets = {
    groups = { "prod-rhel-web", "prod-rhel-app", "prod-rhel-db" },
    tags = { os = "rhel9" },
    env = "prod",
  },
  schedule = { cron = "0 2 * * 0", timezone = "Europe/Rome" },
  maintenance_window = { length = "4h", host_estimate = "20m" },
  errata = { patch_level = "2026-02" },
  pre_patch_snapshot = true,
  reboot = "if_needed",
  waves = { canary = 1, sizes = { "25%", "100%" } },
  max_parallel = 5,
  error_budget = {
    per_wave = { hosts = 1, percent = 20 },
    per_run = { hosts = 2, percent = 5 },
  },
  rollback_on_failure = "auto",
  executor = "uyuni",
  hooks = {
    -- The database tier waits for the web and app tiers to be done first.
    before_wave = function(ctx)
      spm.log.info("starting wave " .. ctx.wave .. " with " .. #ctx.hosts .. " hosts")
      return true
    end,
  },
}
