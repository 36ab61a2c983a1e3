-- Read-only views: the documented surface for spm.db queries from Lua and for reports.

CREATE VIEW v_queue AS
SELECT q.id, q.advisory, q.os, q.status, q.score, q.priority, q.queued_at, q.queued_by,
       q.started_at, q.completed_at, q.retry_count, q.retry_after, q.superseded_by,
       q.snooze_until, e.synopsis, e.severity, e.advisory_type, e.reboot_suggested
FROM queue_items q JOIN errata e ON e.advisory = q.advisory;

CREATE VIEW v_pending_approvals AS
SELECT q.id, q.advisory, q.os, q.score, q.completed_at, q.last_test_id, e.severity, e.synopsis,
       (julianday('now') - julianday(q.completed_at)) * 24.0 AS hours_pending
FROM queue_items q JOIN errata e ON e.advisory = q.advisory
WHERE q.status = 'pending_approval';

CREATE VIEW v_errata AS
SELECT e.advisory, e.advisory_type, e.synopsis, e.severity, e.issue_date, e.update_date,
       e.reboot_suggested, r.os, r.stale, r.system_count
FROM errata e JOIN errata_relevance r ON r.advisory = e.advisory;

CREATE VIEW v_systems AS
SELECT id, name, hostname, ip, os, os_release, env, role, tags, groups, online, last_seen FROM systems;

CREATE VIEW v_compliance AS
SELECT c.system_id, s.name, c.policy_id, c.os, c.env, c.status, c.patch_level, c.target_level,
       c.pending_errata, c.pending_cves, c.last_scanned, c.last_patched
FROM compliance c JOIN systems s ON s.id = c.system_id;
