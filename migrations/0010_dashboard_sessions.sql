-- Dashboard sessions survive a restart of the service. The cookie value is never stored:
-- `id_hash` is its SHA-256 (hex), so a copy of the database does not sign anyone in. The
-- session also keeps the hash of the API token it was opened with, re-checked on every
-- request (a revoked token ends its sessions).
CREATE TABLE dashboard_sessions (
    id_hash    TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    role       TEXT NOT NULL CHECK (role IN ('viewer','operator','approver','admin')),
    token_hash TEXT NOT NULL,
    csrf       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE INDEX dashboard_sessions_expires ON dashboard_sessions (expires_at);
