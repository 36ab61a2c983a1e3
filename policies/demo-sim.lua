---@spm api=1 kind=policy
-- Demo policy for the simulated fleet (`spm sim`, default fleet): the Ubuntu production
-- groups, every approved erratum, a one-host canary then two waves.
return {
  id = "demo-sim",
  name = "Demo: simulated Ubuntu production",
  os = "ubuntu2404",
  targets = { groups = { "prod-ubuntu-web", "prod-ubuntu-app", "prod-ubuntu-db" } },
  maintenance_window = { length = "2h", host_estimate = "5m" },
  reboot = "if_needed",
  waves = { canary = 1, sizes = { "50%" } },
  max_parallel = 10,
  error_budget = {
    per_wave = { hosts = 1 },
    per_run = { hosts = 2, percent = 20 },
  },
  rollback_on_failure = "manual",
  hooks = {
    verify_host = function(ctx)
      return #ctx.still_relevant == 0
    end,
    after_run = function(ctx)
      spm.log.info("run " .. ctx.run_id .. " finished: " .. ctx.status)
    end,
  },
}
