-- The policy scheduler remembers when it last looked at the clock, so a cron slot that
-- passed while spm was down is reported at the next start, and records every missed slot
-- once (policy, scheduled time), so it raises one run_missed notification per slot.
CREATE TABLE scheduler_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    last_tick TEXT NOT NULL
);
CREATE TABLE scheduler_missed (
    policy_id TEXT NOT NULL,
    scheduled_at TEXT NOT NULL,
    reason TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    PRIMARY KEY (policy_id, scheduled_at)
);
