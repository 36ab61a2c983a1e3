-- A small fleet for the dashboard tests: errata (one with a hostile synopsis), systems,
-- compliance, queue items in several states, tests with phases and evidence, a sync, a
-- policy with an active run and a dry run, and notifications.
INSERT INTO systems (id, name, os, os_release, env, role) VALUES
 (1001, 'test-ubuntu-01', 'ubuntu', '24.04', 'test', 'test'),
 (1002, 'test-rhel-01', 'rhel', '9', 'test', 'test'),
 (2001, 'web-01', 'ubuntu', '24.04', 'prod', 'production'),
 (2002, 'web-02', 'ubuntu', '24.04', 'prod', 'production'),
 (2003, 'db-01', 'rhel', '9', 'prod', 'production'),
 (2004, 'app-stage-01', 'debian', '12', 'staging', 'production');

INSERT INTO errata (advisory, advisory_type, synopsis, description, severity, issue_date, reboot_suggested) VALUES
 ('USN-7001-1', 'security', 'OpenSSL vulnerabilities', 'Several security issues were fixed in OpenSSL.', 'high', '2026-11-10', 0),
 ('USN-7002-1', 'security', 'Linux kernel vulnerabilities', 'The kernel could be made to crash.', 'critical', '2026-11-12', 1),
 ('RHSA-2026:1234', 'security', 'Important: curl security update', 'curl could leak credentials.', 'medium', '2026-11-14', 0),
 ('USN-6666-1', 'security', '<script>alert("xss")</script><img src=x onerror=alert(2)> nginx', 'x', 'low', '2026-11-15', 0),
 ('DSA-5800-1', 'security', 'bind9 security update', 'DNS fixes.', 'high', '2026-11-16', 0);

INSERT INTO errata_relevance (advisory, os, system_count) VALUES
 ('USN-7001-1', 'ubuntu', 2), ('USN-7002-1', 'ubuntu', 2), ('RHSA-2026:1234', 'rhel', 1),
 ('USN-6666-1', 'ubuntu', 1), ('DSA-5800-1', 'debian', 1);
INSERT INTO errata_cves (advisory, cve) VALUES
 ('USN-7001-1', 'CVE-2026-1111'), ('USN-7001-1', 'CVE-2026-1112'), ('USN-7002-1', 'CVE-2026-2222'),
 ('RHSA-2026:1234', 'CVE-2026-3333'), ('USN-6666-1', 'CVE-2026-6666');
INSERT INTO errata_packages (advisory, name, version, release, arch) VALUES
 ('USN-7001-1', 'libssl3t64', '3.0.13', '0ubuntu3.5', 'amd64'),
 ('USN-7001-1', 'openssl', '3.0.13', '0ubuntu3.5', 'amd64'),
 ('RHSA-2026:1234', 'curl', '8.5.0', '1.el9_4', 'x86_64');
INSERT INTO errata_systems (advisory, system_id) VALUES
 ('USN-7001-1', 2001), ('USN-7001-1', 2002), ('USN-7002-1', 2001), ('USN-7002-1', 2002),
 ('RHSA-2026:1234', 2003), ('USN-6666-1', 2001);
INSERT INTO risk_profiles (advisory, os, package_count, score, low_confidence, breakdown) VALUES
 ('USN-7001-1', 'ubuntu', 2, 88, 0, '[{"factor":"config","points":-5,"reason":"openssl ships /etc/ssl/openssl.cnf"},{"factor":"small_patch","points":3,"reason":"2 packages, 4 MB"},{"factor":"history","points":-10,"reason":"failed 1 of 4 earlier tests"}]'),
 ('RHSA-2026:1234', 'rhel', 1, 92, 0, '[{"factor":"small_patch","points":2,"reason":"1 package"}]');

INSERT INTO compliance (system_id, policy_id, os, env, status, pending_errata, pending_cves, last_scanned) VALUES
 (2001, 'web-monthly', 'ubuntu', 'prod', 'non_compliant', '["USN-7001-1","USN-7002-1"]', '["CVE-2026-1111"]', '2026-11-21T08:00:00.000Z'),
 (2002, 'web-monthly', 'ubuntu', 'prod', 'compliant', '[]', '[]', '2026-11-21T08:00:00.000Z'),
 (2003, 'db-quarterly', 'rhel', 'prod', 'compliant', '[]', '[]', '2026-11-21T08:00:00.000Z'),
 (2004, 'web-monthly', 'debian', 'staging', 'unknown', '[]', '[]', NULL);

INSERT INTO queue_items (id, advisory, os, status, score, priority, queued_by, started_at, completed_at, last_test_id) VALUES
 (1, 'USN-7001-1', 'ubuntu', 'pending_approval', 88, 0, 'oscar-operator', '2026-11-21T09:00:00.000Z', '2026-11-21T09:07:30.000Z', 1),
 (2, 'RHSA-2026:1234', 'rhel', 'pending_approval', 92, 5, 'oscar-operator', '2026-11-21T10:00:00.000Z', '2026-11-21T10:04:00.000Z', 2),
 (3, 'USN-7002-1', 'ubuntu', 'testing', 70, 0, 'auto-queue', '2026-11-22T00:50:00.000Z', NULL, 3),
 (4, 'USN-6666-1', 'ubuntu', 'queued', 95, 0, 'auto-queue', NULL, NULL, NULL),
 (5, 'DSA-5800-1', 'debian', 'failed', 60, 0, 'auto-queue', '2026-11-20T10:00:00.000Z', '2026-11-20T10:03:00.000Z', 4);

INSERT INTO tests (id, queue_id, advisory, system_id, system_name, status, started_by, started_at, completed_at, evidence, failure_phase, failure_reason) VALUES
 (1, 1, 'USN-7001-1', 1001, 'test-ubuntu-01', 'passed', 'engine', '2026-11-21T09:00:00.000Z', '2026-11-21T09:07:30.000Z',
  '{"packages":[{"name":"openssl","before":"3.0.13-0ubuntu3.4","after":"3.0.13-0ubuntu3.5"},{"name":"libssl3t64","before":"3.0.13-0ubuntu3.4","after":"3.0.13-0ubuntu3.5"}],"metrics":{"cpu_busy_pct":{"baseline":12.5,"post":13.1,"unit":"%","ok":true},"mem_used_pct":{"baseline":41.0,"post":42.2,"unit":"%","ok":true},"load1":{"baseline":0.42,"post":0.51,"ok":true}},"services":[{"name":"nginx","status":"active"},{"name":"ssh","status":"active"}],"cves_closed":["CVE-2026-1111","CVE-2026-1112"]}',
  NULL, NULL),
 (2, 2, 'RHSA-2026:1234', 1002, 'test-rhel-01', 'passed', 'engine', '2026-11-21T10:00:00.000Z', '2026-11-21T10:04:00.000Z',
  '{"packages":[{"name":"curl","before":"8.5.0-1.el9_3","after":"8.5.0-1.el9_4"}],"metrics":{"cpu_busy_pct":{"baseline":8.0,"post":8.4,"unit":"%"}},"services":{"httpd":"active"}}', NULL, NULL),
 (3, 3, 'USN-7002-1', 1001, 'test-ubuntu-01', 'running', 'engine', '2026-11-22T00:50:00.000Z', NULL, '{}', NULL, NULL),
 (4, 5, 'DSA-5800-1', 1001, 'test-ubuntu-01', 'failed', 'engine', '2026-11-20T10:00:00.000Z', '2026-11-20T10:03:00.000Z', '{}', 'services', 'named did not start after the patch');
INSERT INTO test_phases (test_id, phase, seq, status, duration_ms, output, script_path) VALUES
 (1, 'pre_check', 1, 'passed', 4200, 'disk ok: 61% used; baseline captured', 'phases/pre_check.lua'),
 (1, 'snapshot', 2, 'passed', 8100, 'snapper: created snapshot 42', 'phases/snapshot.lua'),
 (1, 'patch', 3, 'passed', 251000, 'Setting up openssl (3.0.13-0ubuntu3.5) ...', 'phases/ubuntu/patch.lua'),
 (1, 'reboot', 4, 'skipped', 0, 'no reboot needed', 'phases/reboot.lua'),
 (1, 'validate', 5, 'passed', 120000, 'cpu +0.6 pts, mem +1.2 pts: within limits', 'phases/validate.lua'),
 (1, 'services', 6, 'passed', 66700, 'nginx active, ssh active', 'phases/services.lua'),
 (2, 'pre_check', 1, 'passed', 3000, 'ok', 'phases/pre_check.lua'),
 (2, 'patch', 2, 'passed', 200000, 'Upgraded curl', 'phases/patch.lua'),
 (4, 'pre_check', 1, 'passed', 3000, 'ok', 'phases/pre_check.lua'),
 (4, 'patch', 2, 'passed', 90000, 'bind9 upgraded', 'phases/patch.lua'),
 (4, 'services', 3, 'failed', 87000, 'named.service: failed', 'phases/services.lua');
UPDATE test_phases SET error_kind = 'check', error = 'named is not active' WHERE test_id = 4 AND phase = 'services';
INSERT INTO test_phases (test_id, phase, seq, status, duration_ms, output) VALUES (3, 'pre_check', 1, 'passed', 3900, 'ok');
INSERT INTO test_phases (test_id, phase, seq, status, output) VALUES (3, 'snapshot', 2, 'running', '');

INSERT INTO sync_runs (status, scope, started_at, completed_at, calls_total, errata_new, errata_updated, errata_stale)
 VALUES ('ok', 'full', '2026-11-21T23:30:00.000Z', '2026-11-21T23:31:10.000Z', 412, 5, 12, 1);

INSERT INTO policies (id, name, path, os, schedule, content_hash) VALUES
 ('web-monthly', 'Web servers, monthly', 'policies/web-monthly.lua', 'ubuntu', '0 3 * * SAT', 'abc'),
 ('db-quarterly', 'Databases, quarterly', 'policies/db-quarterly.lua', 'rhel', NULL, 'def');
INSERT INTO patch_runs (id, policy_id, policy_hash, trigger, dry_run, status, phase_detail, current_wave, total_waves, hosts_total, hosts_ok, hosts_failed, plan, started_by, started_at) VALUES
 (1, 'web-monthly', 'abc', 'manual', 0, 'executing', 'wave 2: applying errata', 2, 2, 3, 1, 0,
  '{"waves":[{"hosts":["web-01"]},{"hosts":["web-02","app-stage-01"]}],"budget":{"max_failed":1},"excluded":[{"host":"db-01","reason":"other policy"}]}', 'oscar-operator', '2026-11-22T00:40:00.000Z'),
 (2, 'db-quarterly', 'def', 'api', 1, 'completed', NULL, 0, 1, 1, 0, 0,
  '{"waves":[{"hosts":["db-01"]}],"errata":["RHSA-2026:1234"]}', 'oscar-operator', '2026-11-21T12:00:00.000Z');
INSERT INTO patch_run_hosts (run_id, system_id, system_name, wave, errata, status, snapshot_id) VALUES
 (1, 2001, 'web-01', 1, '["USN-7001-1"]', 'ok', 'snap-11'),
 (1, 2002, 'web-02', 2, '["USN-7001-1"]', 'running', 'snap-12'),
 (1, 2004, 'app-stage-01', 2, '["DSA-5800-1"]', 'pending', NULL);

INSERT INTO notifications (event, severity, subject, body, advisory, queue_id) VALUES
 ('pending_approval', 'info', 'USN-7001-1 for ubuntu is waiting for approval', 'Test 1 passed on test-ubuntu-01.', 'USN-7001-1', 1),
 ('test_failed', 'warning', 'DSA-5800-1 failed its test', 'named did not start after the patch.', 'DSA-5800-1', 5),
 ('pending_approval', 'info', '<b>bold</b> subject from outside', 'body', NULL, NULL);
