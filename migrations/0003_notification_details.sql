-- Notifications: the optional HTML body rendered with the text body, and the event's data
-- (JSON) that webhooks carry, so a delivery retried after a restart sends exactly what was
-- rendered when the event was raised.
ALTER TABLE notifications ADD COLUMN body_html TEXT;
ALTER TABLE notifications ADD COLUMN data TEXT NOT NULL DEFAULT '{}';
-- The digest looks up the newest notification of an event type on every worker pass.
CREATE INDEX idx_notifications_event ON notifications(event, created_at);
