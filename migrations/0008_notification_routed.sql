-- Notifications recorded outside the notifier (the test engine, the rollout) are routed to
-- the configured channels by the notifier's worker; rows the notifier records itself are
-- routed as they are written. Rows that exist already count as routed.
ALTER TABLE notifications ADD COLUMN routed INTEGER NOT NULL DEFAULT 0 CHECK (routed IN (0, 1));
UPDATE notifications SET routed = 1;
