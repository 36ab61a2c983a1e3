-- spm core schema (SQLite). Timestamps are TEXT in RFC 3339 UTC with milliseconds
-- ('2026-11-22T10:00:00.000Z'), produced by strftime('%Y-%m-%dT%H:%M:%fZ','now').
-- Every status column has a CHECK constraint; the Rust state machines in
-- src/engine/state/ are the only code that changes a status (conditional UPDATEs).

-- Systems known from UYUNI (test and production).
CREATE TABLE systems (
    id            INTEGER PRIMARY KEY,            -- UYUNI system id
    name          TEXT NOT NULL,                  -- UYUNI profile name
    hostname      TEXT,
    ip            TEXT,
    os            TEXT NOT NULL DEFAULT 'unknown' CHECK (os IN ('ubuntu','debian','rhel','unknown')),
    os_release    TEXT,                           -- e.g. '24.04', '12', '9'
    env           TEXT,                           -- e.g. 'test', 'prod', 'dev'
    role          TEXT NOT NULL DEFAULT 'production' CHECK (role IN ('test','production')),
    tags          TEXT NOT NULL DEFAULT '{}',     -- JSON object
    groups        TEXT NOT NULL DEFAULT '[]',     -- JSON array of group names
    base_channel  TEXT,
    boot_id       TEXT,
    online        INTEGER NOT NULL DEFAULT 1 CHECK (online IN (0,1)),
    last_seen     TEXT,
    created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
    updated_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
);
CREATE INDEX idx_systems_os_role ON systems(os, role);

-- Errata (advisories) mirrored from UYUNI.
CREATE TABLE errata (
    advisory          TEXT PRIMARY KEY,           -- e.g. 'USN-7000-1', 'RHSA-2026:1234'
    uyuni_id          INTEGER,
    advisory_type     TEXT NOT NULL DEFAULT 'unknown'
                      CHECK (advisory_type IN ('security','bugfix','enhancement','unknown')),
    synopsis          TEXT NOT NULL DEFAULT '',
    description       TEXT NOT NULL DEFAULT '',
    severity          TEXT NOT NULL DEFAULT 'unknown'
                      CHECK (severity IN ('critical','high','medium','low','unknown')),
    issue_date        TEXT,
    update_date       TEXT,
    last_modified     TEXT,                       -- UYUNI last_modified_date, drives re-fetch
    reboot_suggested  INTEGER NOT NULL DEFAULT 0 CHECK (reboot_suggested IN (0,1)),
    restart_suggested INTEGER NOT NULL DEFAULT 0 CHECK (restart_suggested IN (0,1)),
    details_fetched   INTEGER NOT NULL DEFAULT 0 CHECK (details_fetched IN (0,1)),
    synced_at         TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
    created_at        TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
    updated_at        TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
);
CREATE INDEX idx_errata_severity ON errata(severity);

-- Per-OS relevance of an advisory; stale rows are kept for history.
CREATE TABLE errata_relevance (
    advisory      TEXT NOT NULL REFERENCES errata(advisory) ON DELETE CASCADE,
    os            TEXT NOT NULL CHECK (os IN ('ubuntu','debian','rhel','unknown')),
    system_count  INTEGER NOT NULL DEFAULT 0,
    stale         INTEGER NOT NULL DEFAULT 0 CHECK (stale IN (0,1)),
    first_seen    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
    last_seen     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
    PRIMARY KEY (advisory, os)
);

-- Which systems an advisory is relevant to (from the last sync / scan).
CREATE TABLE errata_systems (
    advisory   TEXT NOT NULL REFERENCES errata(advisory) ON DELETE CASCADE,
    system_id  INTEGER NOT NULL REFERENCES systems(id) ON DELETE CASCADE,
    seen_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
    PRIMARY KEY (advisory, system_id)
);
CREATE INDEX idx_errata_systems_system ON errata_systems(system_id);

CREATE TABLE errata_packages (
    advisory   TEXT NOT NULL REFERENCES errata(advisory) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    epoch      TEXT NOT NULL DEFAULT '',
    version    TEXT NOT NULL,
    release    TEXT NOT NULL DEFAULT '',
    arch       TEXT NOT NULL DEFAULT '',
    size_bytes INTEGER,
    checksum   TEXT,
    PRIMARY KEY (advisory, name, epoch, version, release, arch)
);

CREATE TABLE errata_cves (
    advisory  TEXT NOT NULL REFERENCES errata(advisory) ON DELETE CASCADE,
    cve       TEXT NOT NULL,
    PRIMARY KEY (advisory, cve)
);
CREATE INDEX idx_errata_cves_cve ON errata_cves(cve);

-- Success Score inputs and history, one row per (advisory, os).
CREATE TABLE risk_profiles (
    advisory            TEXT NOT NULL REFERENCES errata(advisory) ON DELETE CASCADE,
    os                  TEXT NOT NULL CHECK (os IN ('ubuntu','debian','rhel','unknown')),
    affects_kernel      INTEGER NOT NULL DEFAULT 0 CHECK (affects_kernel IN (0,1)),
    requires_reboot     INTEGER NOT NULL DEFAULT 0 CHECK (requires_reboot IN (0,1)),
    modifies_config     INTEGER NOT NULL DEFAULT 0 CHECK (modifies_config IN (0,1)),
    dependency_count    INTEGER NOT NULL DEFAULT 0,
    package_count       INTEGER NOT NULL DEFAULT 0,
    total_size_kb       INTEGER NOT NULL DEFAULT 0,
    times_tested        INTEGER NOT NULL DEFAULT 0,
    times_failed        INTEGER NOT NULL DEFAULT 0,
    last_failure_reason TEXT,
    last_test_at        TEXT,
    last_test_result    TEXT,
    score               INTEGER NOT NULL DEFAULT 0 CHECK (score BETWEEN 0 AND 100),
    low_confidence      INTEGER NOT NULL DEFAULT 1 CHECK (low_confidence IN (0,1)),
    breakdown           TEXT NOT NULL DEFAULT '{}',   -- JSON: every penalty with its reason
    updated_at          TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
    PRIMARY KEY (advisory, os)
);

-- Test queue. One *active* item per (advisory, os): see the partial unique index.
CREATE TABLE queue_items (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    advisory       TEXT NOT NULL REFERENCES errata(advisory),
    os             TEXT NOT NULL CHECK (os IN ('ubuntu','debian','rhel')),
    status         TEXT NOT NULL DEFAULT 'queued' CHECK (status IN (
                     'queued','waiting_system','testing','passed','failed','needs_reboot','rebooting',
                     'pending_approval','approved','rejected','snoozed','promoting',
                     'prod_pending','prod_applied','completed','rolled_back',
                     'retry_pending','superseded')),
    score          INTEGER NOT NULL DEFAULT 0,
    priority       INTEGER NOT NULL DEFAULT 0,
    require_all_systems INTEGER NOT NULL DEFAULT 0 CHECK (require_all_systems IN (0,1)),
    queued_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
    queued_by      TEXT NOT NULL,
    started_at     TEXT,
    completed_at   TEXT,
    last_test_id   INTEGER,
    retry_count    INTEGER NOT NULL DEFAULT 0,
    retry_after    TEXT,
    superseded_by  TEXT,
    snooze_until   TEXT,
    notes          TEXT,
    -- claim lease (maps onto FOR UPDATE SKIP LOCKED on PostgreSQL)
    lease_owner    TEXT,
    lease_until    TEXT,
    updated_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
);
CREATE UNIQUE INDEX uq_queue_active ON queue_items(advisory, os)
    WHERE status NOT IN ('failed','rejected','rolled_back','completed','superseded');
CREATE INDEX idx_queue_order ON queue_items(status, score DESC, priority DESC, queued_at);

-- One test = one queue item on one test system, one attempt.
CREATE TABLE tests (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    queue_id         INTEGER NOT NULL REFERENCES queue_items(id),
    advisory         TEXT NOT NULL,
    system_id        INTEGER,
    system_name      TEXT,
    status           TEXT NOT NULL DEFAULT 'running'
                     CHECK (status IN ('running','passed','failed','error','aborted','interrupted')),
    failure_class    TEXT CHECK (failure_class IS NULL OR failure_class IN
                       ('infrastructure','transient','patch','regression','aborted')),
    failure_phase    TEXT,
    failure_reason   TEXT,
    snapshot_id      TEXT,
    rollback_strategy TEXT,
    rollback_status  TEXT CHECK (rollback_status IS NULL OR rollback_status IN
                       ('not_needed','running','verified','failed')),
    reboot_performed INTEGER NOT NULL DEFAULT 0 CHECK (reboot_performed IN (0,1)),
    evidence         TEXT NOT NULL DEFAULT '{}',   -- JSON: packages before/after, metrics, services, CVEs
    scripts          TEXT NOT NULL DEFAULT '{}',   -- JSON: script path -> {hash, generation}
    started_by       TEXT,
    started_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
    completed_at     TEXT,
    deadline_at      TEXT
);
CREATE INDEX idx_tests_queue ON tests(queue_id);
CREATE INDEX idx_tests_status ON tests(status);

CREATE TABLE test_phases (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    test_id      INTEGER NOT NULL REFERENCES tests(id) ON DELETE CASCADE,
    phase        TEXT NOT NULL,
    seq          INTEGER NOT NULL,
    status       TEXT NOT NULL DEFAULT 'running'
                 CHECK (status IN ('running','passed','failed','skipped','interrupted')),
    script_path  TEXT,
    script_hash  TEXT,
    started_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
    completed_at TEXT,
    duration_ms  INTEGER,
    output       TEXT NOT NULL DEFAULT '',        -- excerpt, bounded
    data         TEXT NOT NULL DEFAULT '{}',      -- JSON returned by the phase
    error_kind   TEXT,
    error        TEXT
);
CREATE INDEX idx_test_phases_test ON test_phases(test_id);

-- UYUNI actions scheduled by spm, so a restart can inspect or cancel them.
CREATE TABLE uyuni_actions (
    action_id   INTEGER PRIMARY KEY,
    kind        TEXT NOT NULL,
    test_id     INTEGER REFERENCES tests(id),
    run_id      INTEGER,
    system_ids  TEXT NOT NULL DEFAULT '[]',
    status      TEXT NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending','completed','failed','cancelled','unknown')),
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
    updated_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
);

-- Approval decisions: append-only (triggers below forbid UPDATE and DELETE).
CREATE TABLE approvals (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    queue_id      INTEGER NOT NULL REFERENCES queue_items(id),
    advisory      TEXT NOT NULL,
    os            TEXT NOT NULL,
    action        TEXT NOT NULL CHECK (action IN ('approved','rejected','snoozed','unsnoozed')),
    actor         TEXT NOT NULL,                  -- authenticated identity
    reason        TEXT,
    snooze_until  TEXT,
    source_addr   TEXT,
    evidence_test_id INTEGER,                      -- the test whose evidence was shown
    created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
);
CREATE INDEX idx_approvals_queue ON approvals(queue_id);
CREATE TRIGGER approvals_no_update BEFORE UPDATE ON approvals
BEGIN SELECT RAISE(ABORT, 'approvals is append-only'); END;
CREATE TRIGGER approvals_no_delete BEFORE DELETE ON approvals
BEGIN SELECT RAISE(ABORT, 'approvals is append-only'); END;

-- Patch policies known to the engine (the Lua file is the source of truth).
CREATE TABLE policies (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    path         TEXT NOT NULL,
    os           TEXT,
    schedule     TEXT,
    content_hash TEXT NOT NULL,
    enabled      INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0,1)),
    last_run_at  TEXT,
    updated_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
);

CREATE TABLE patch_runs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    policy_id     TEXT NOT NULL,
    policy_hash   TEXT NOT NULL,
    trigger       TEXT NOT NULL CHECK (trigger IN ('manual','cron','api')),
    dry_run       INTEGER NOT NULL DEFAULT 0 CHECK (dry_run IN (0,1)),
    status        TEXT NOT NULL DEFAULT 'planning' CHECK (status IN (
                    'planning','validating','snapshotting','executing','verifying','reporting',
                    'completed','failed','budget_tripped','cancelling','cancelled','interrupted')),
    phase_detail  TEXT,
    current_wave  INTEGER NOT NULL DEFAULT 0,
    total_waves   INTEGER NOT NULL DEFAULT 0,
    hosts_total   INTEGER NOT NULL DEFAULT 0,
    hosts_ok      INTEGER NOT NULL DEFAULT 0,
    hosts_failed  INTEGER NOT NULL DEFAULT 0,
    plan          TEXT NOT NULL DEFAULT '{}',     -- JSON plan (hosts x errata, exclusions)
    error         TEXT,
    started_by    TEXT NOT NULL,
    lease_owner   TEXT,
    lease_until   TEXT,
    started_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
    completed_at  TEXT
);
CREATE UNIQUE INDEX uq_run_active_policy ON patch_runs(policy_id)
    WHERE status IN ('planning','validating','snapshotting','executing','verifying','reporting','cancelling')
      AND dry_run = 0;

CREATE TABLE patch_run_hosts (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id       INTEGER NOT NULL REFERENCES patch_runs(id) ON DELETE CASCADE,
    system_id    INTEGER NOT NULL,
    system_name  TEXT NOT NULL,
    wave         INTEGER NOT NULL,
    errata       TEXT NOT NULL DEFAULT '[]',      -- JSON array of advisories
    status       TEXT NOT NULL DEFAULT 'pending' CHECK (status IN (
                   'pending','skipped','snapshotting','running','verifying','ok','failed',
                   'rolling_back','rolled_back','rollback_failed','cancelled','interrupted')),
    action_id    INTEGER,
    snapshot_id  TEXT,
    error        TEXT,
    started_at   TEXT,
    completed_at TEXT,
    UNIQUE (run_id, system_id)
);
CREATE INDEX idx_run_hosts_run ON patch_run_hosts(run_id, status);

CREATE TABLE rollbacks (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    test_id      INTEGER REFERENCES tests(id),
    run_id       INTEGER REFERENCES patch_runs(id),
    system_id    INTEGER NOT NULL,
    strategy     TEXT NOT NULL,
    status       TEXT NOT NULL DEFAULT 'running'
                 CHECK (status IN ('running','verified','failed','interrupted')),
    reason       TEXT NOT NULL,
    initiated_by TEXT NOT NULL,
    details      TEXT NOT NULL DEFAULT '{}',
    started_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
    completed_at TEXT
);

CREATE TABLE notifications (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    event       TEXT NOT NULL,                    -- test_failed, pending_approval, run_failed, ...
    severity    TEXT NOT NULL DEFAULT 'info' CHECK (severity IN ('info','warning','critical')),
    subject     TEXT NOT NULL,
    body        TEXT NOT NULL,
    advisory    TEXT,
    queue_id    INTEGER,
    test_id     INTEGER,
    run_id      INTEGER,
    read        INTEGER NOT NULL DEFAULT 0 CHECK (read IN (0,1)),
    read_by     TEXT,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
);
CREATE INDEX idx_notifications_read ON notifications(read, created_at);

CREATE TABLE notification_deliveries (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    notification_id INTEGER NOT NULL REFERENCES notifications(id) ON DELETE CASCADE,
    channel         TEXT NOT NULL CHECK (channel IN ('email','webhook')),
    target          TEXT NOT NULL,                -- recipient list or webhook name (never a secret)
    status          TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending','sent','failed','gave_up')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
    idempotency_key TEXT NOT NULL UNIQUE,
    last_error      TEXT,
    sent_at         TEXT
);
CREATE INDEX idx_deliveries_due ON notification_deliveries(status, next_attempt_at);

-- Compliance per system.
CREATE TABLE compliance (
    system_id       INTEGER PRIMARY KEY REFERENCES systems(id) ON DELETE CASCADE,
    policy_id       TEXT,
    os              TEXT,
    env             TEXT,
    patch_level     TEXT,
    target_level    TEXT,
    status          TEXT NOT NULL DEFAULT 'unknown' CHECK (status IN ('compliant','non_compliant','unknown')),
    pending_errata  TEXT NOT NULL DEFAULT '[]',
    pending_cves    TEXT NOT NULL DEFAULT '[]',
    last_scanned    TEXT,
    last_patched    TEXT,
    updated_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
);

CREATE TABLE sync_runs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    status        TEXT NOT NULL DEFAULT 'running' CHECK (status IN ('running','ok','partial','failed','interrupted')),
    scope         TEXT NOT NULL,
    started_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
    completed_at  TEXT,
    calls_total   INTEGER NOT NULL DEFAULT 0,
    errata_new    INTEGER NOT NULL DEFAULT 0,
    errata_updated INTEGER NOT NULL DEFAULT 0,
    errata_stale  INTEGER NOT NULL DEFAULT 0,
    failures      TEXT NOT NULL DEFAULT '[]',     -- JSON [{what, reason}]
    error         TEXT
);
CREATE UNIQUE INDEX uq_sync_running ON sync_runs(status) WHERE status = 'running';

CREATE TABLE config_kv (
    key         TEXT PRIMARY KEY,
    value       TEXT NOT NULL,                    -- JSON
    updated_by  TEXT,
    updated_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
);

-- Append-only audit log of every decision and mutation.
CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
    actor       TEXT NOT NULL,
    source_addr TEXT,
    action      TEXT NOT NULL,                    -- e.g. 'queue.add', 'approval.approve', 'run.start'
    object_type TEXT NOT NULL,
    object_id   TEXT,
    reason      TEXT,
    details     TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX idx_audit_object ON audit_log(object_type, object_id);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;

-- API tokens (stored hashed).
CREATE TABLE api_tokens (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL CHECK (role IN ('viewer','operator','approver','admin')),
    token_hash  TEXT NOT NULL UNIQUE,             -- sha256 hex of the secret part
    prefix      TEXT NOT NULL,                    -- first characters, to identify it in listings
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
    last_used_at TEXT,
    revoked_at  TEXT
);

-- Script versions seen by the Lua host (path, content hash, generation).
CREATE TABLE script_versions (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    path         TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    generation   INTEGER NOT NULL,
    loaded_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
    UNIQUE (path, content_hash, generation)
);

-- Per-script key/value store for Lua (spm.db.kv_*).
CREATE TABLE script_kv (
    namespace   TEXT NOT NULL,
    key         TEXT NOT NULL,
    value       TEXT NOT NULL,
    updated_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
    PRIMARY KEY (namespace, key)
);
