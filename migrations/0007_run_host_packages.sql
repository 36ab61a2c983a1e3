-- Pre-patch package versions of each run host (JSON array of "name=version"), recorded
-- before the apply when the policy rolls back automatically; the package rollback
-- strategy reinstalls exactly these versions.
ALTER TABLE patch_run_hosts ADD COLUMN pre_packages TEXT NOT NULL DEFAULT '[]';
