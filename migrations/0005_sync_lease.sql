-- Sync runs hold a lease so a crashed 'running' row (its process died) can be told apart
-- from a sync that is alive in another process: a live sync extends lease_until while it
-- runs; a 'running' row whose lease expired is closed as 'interrupted' by the next start.
ALTER TABLE sync_runs ADD COLUMN lease_owner TEXT;
ALTER TABLE sync_runs ADD COLUMN lease_until TEXT;
ALTER TABLE sync_runs ADD COLUMN calls_by_method TEXT NOT NULL DEFAULT '{}';  -- JSON {method: n}
ALTER TABLE sync_runs ADD COLUMN systems_total INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sync_runs ADD COLUMN errata_total INTEGER NOT NULL DEFAULT 0;
