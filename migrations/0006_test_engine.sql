-- Test engine: the per-test phase state (JSON object: phase -> data it returned or
-- recorded), the engine instance running the test, and an operator's abort request that
-- the running engine polls (an abort from another process, e.g. `spm test abort`).
ALTER TABLE tests ADD COLUMN state TEXT NOT NULL DEFAULT '{}';
ALTER TABLE tests ADD COLUMN owner TEXT;
ALTER TABLE tests ADD COLUMN abort_requested TEXT;
-- One running test per test system.
CREATE UNIQUE INDEX uq_tests_running_system ON tests(system_id) WHERE status = 'running';
