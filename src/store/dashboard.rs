//! Read-only queries behind the web dashboard, plus the few small transactions its forms
//! need until the engine offers them (each a conditional change with its audit row).
//!
//! Rows come back as JSON objects keyed by column name (the templates read them by name);
//! columns that hold JSON text (`evidence`, `breakdown`, `plan`, ...) are parsed into JSON
//! values, so a template never sees raw JSON text. Every statement is fixed text with
//! bound parameters.

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Map, Value, json};

use super::audit::{self, AuditEntry};
use super::{StoreError, StoreResult};
use crate::engine::state::{QueueStatus, RunStatus, Status};

/// Columns that hold JSON text and are parsed before they reach a template.
const JSON_COLUMNS: &[&str] = &[
    "evidence",
    "scripts",
    "breakdown",
    "plan",
    "data",
    "errata",
    "failures",
    "details",
    "pending_errata",
    "pending_cves",
    "tags",
    "groups",
    "state",
];

fn cell(v: ValueRef<'_>, json_col: bool) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => json!(i),
        ValueRef::Real(f) => json!(f),
        ValueRef::Text(t) => {
            let s = String::from_utf8_lossy(t).into_owned();
            if json_col {
                serde_json::from_str(&s).unwrap_or(Value::String(s))
            } else {
                Value::String(s)
            }
        }
        ValueRef::Blob(b) => Value::String(format!("<{} bytes>", b.len())),
    }
}

/// Run `sql` with `args` and return every row as a JSON object keyed by column name.
fn rows(conn: &Connection, sql: &str, args: impl rusqlite::Params) -> StoreResult<Vec<Value>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let names: Vec<String> = stmt.column_names().iter().map(|s| s.to_string()).collect();
    let out = stmt
        .query_map(args, |r| {
            let mut m = Map::new();
            for (i, name) in names.iter().enumerate() {
                m.insert(
                    name.clone(),
                    cell(r.get_ref(i)?, JSON_COLUMNS.contains(&name.as_str())),
                );
            }
            Ok(Value::Object(m))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(out)
}

fn one(conn: &Connection, sql: &str, args: impl rusqlite::Params) -> StoreResult<Option<Value>> {
    Ok(rows(conn, sql, args)?.into_iter().next())
}

fn not_found(what: &'static str, id: impl ToString) -> StoreError {
    StoreError::NotFound {
        what,
        id: id.to_string(),
    }
}

/// Compliance counts grouped by `policy_id`, `env` or `os` (one of those three names).
pub fn compliance_by(conn: &Connection, dimension: &str) -> StoreResult<Vec<Value>> {
    let sql = match dimension {
        "policy" => {
            "SELECT coalesce(policy_id, '(none)') AS grp, count(*) AS total, \
             sum(status = 'compliant') AS compliant, sum(status = 'non_compliant') AS non_compliant, \
             sum(status = 'unknown') AS unknown FROM compliance GROUP BY grp ORDER BY grp"
        }
        "env" => {
            "SELECT coalesce(env, '(none)') AS grp, count(*) AS total, \
             sum(status = 'compliant') AS compliant, sum(status = 'non_compliant') AS non_compliant, \
             sum(status = 'unknown') AS unknown FROM compliance GROUP BY grp ORDER BY grp"
        }
        "os" => {
            "SELECT coalesce(os, '(none)') AS grp, count(*) AS total, \
             sum(status = 'compliant') AS compliant, sum(status = 'non_compliant') AS non_compliant, \
             sum(status = 'unknown') AS unknown FROM compliance GROUP BY grp ORDER BY grp"
        }
        other => {
            return Err(StoreError::Conflict(format!(
                "unknown compliance dimension {other:?}; expected policy, env or os"
            )));
        }
    };
    let mut out = rows(conn, sql, [])?;
    for r in &mut out {
        let total = r["total"].as_i64().unwrap_or(0);
        let ok = r["compliant"].as_i64().unwrap_or(0);
        let pct = if total > 0 {
            (ok as f64 * 1000.0 / total as f64).round() / 10.0
        } else {
            0.0
        };
        r["pct"] = json!(pct);
    }
    Ok(out)
}

/// Systems that are not compliant (or unknown), worst first, at most `limit`.
pub fn noncompliant_systems(conn: &Connection, limit: u32) -> StoreResult<Vec<Value>> {
    rows(
        conn,
        "SELECT system_id, name, policy_id, os, env, status, pending_errata, pending_cves, \
         last_scanned, last_patched FROM v_compliance WHERE status != 'compliant' \
         ORDER BY status, name LIMIT ?1",
        [limit],
    )
}

/// Queue item count per status, every status listed (zero when none).
pub fn queue_counts(conn: &Connection) -> StoreResult<Vec<(String, i64)>> {
    let counts = super::queue::counts_by_status(conn)?;
    Ok(QueueStatus::ALL
        .iter()
        .map(|s| {
            let n = counts
                .iter()
                .find(|(c, _)| c == s)
                .map(|(_, n)| *n)
                .unwrap_or(0);
            (s.as_str().to_string(), n)
        })
        .collect())
}

/// Items waiting for a decision, oldest first, with hours pending.
pub fn pending_approvals(conn: &Connection) -> StoreResult<Vec<Value>> {
    rows(
        conn,
        "SELECT p.id, p.advisory, p.os, p.score, p.completed_at, p.last_test_id, p.severity, \
         p.synopsis, p.hours_pending, q.queued_by FROM v_pending_approvals p \
         JOIN queue_items q ON q.id = p.id ORDER BY p.completed_at, p.id",
        [],
    )
}

/// The most recent approval decisions, newest first.
pub fn recent_decisions(conn: &Connection, limit: u32) -> StoreResult<Vec<Value>> {
    rows(
        conn,
        "SELECT a.id, a.queue_id, a.advisory, a.os, a.action, a.actor, a.reason, a.snooze_until, \
         a.created_at FROM approvals a ORDER BY a.id DESC LIMIT ?1",
        [limit],
    )
}

/// The latest sync run, if any.
pub fn last_sync(conn: &Connection) -> StoreResult<Option<Value>> {
    one(
        conn,
        "SELECT id, status, scope, started_at, completed_at, calls_total, errata_new, \
         errata_updated, errata_stale, failures, error FROM sync_runs ORDER BY id DESC LIMIT 1",
        [],
    )
}

/// The newest unread notifications (at most `limit`).
pub fn unread_notifications(conn: &Connection, limit: u32) -> StoreResult<Vec<Value>> {
    rows(
        conn,
        "SELECT id, event, severity, subject, created_at FROM notifications WHERE read = 0 \
         ORDER BY id DESC LIMIT ?1",
        [limit],
    )
}

/// Notifications newest first, optionally only unread ones.
pub fn notifications(conn: &Connection, unread_only: bool, limit: u32) -> StoreResult<Vec<Value>> {
    rows(
        conn,
        "SELECT id, event, severity, subject, body, advisory, queue_id, test_id, run_id, read, \
         read_by, created_at FROM notifications WHERE (?1 = 0 OR read = 0) \
         ORDER BY id DESC LIMIT ?2",
        params![unread_only as i64, limit],
    )
}

/// Recent tests, newest first.
pub fn tests(conn: &Connection, limit: u32) -> StoreResult<Vec<Value>> {
    rows(
        conn,
        "SELECT t.id, t.queue_id, t.advisory, q.os, t.system_name, t.status, t.failure_class, \
         t.failure_phase, t.failure_reason, t.started_at, t.completed_at, t.started_by, \
         (julianday(coalesce(t.completed_at, strftime('%Y-%m-%dT%H:%M:%fZ','now'))) \
          - julianday(t.started_at)) * 86400.0 AS duration_s \
         FROM tests t JOIN queue_items q ON q.id = t.queue_id ORDER BY t.id DESC LIMIT ?1",
        [limit],
    )
}

/// One test with its phases (in order) and the rollbacks it caused.
pub fn test_detail(conn: &Connection, id: i64) -> StoreResult<Value> {
    let mut test = one(
        conn,
        "SELECT t.*, q.os, e.synopsis, e.severity FROM tests t \
         JOIN queue_items q ON q.id = t.queue_id JOIN errata e ON e.advisory = q.advisory \
         WHERE t.id = ?1",
        [id],
    )?
    .ok_or_else(|| not_found("test", id))?;
    let phases = rows(
        conn,
        "SELECT id, phase, seq, status, script_path, script_hash, started_at, completed_at, \
         duration_ms, output, data, error_kind, error FROM test_phases WHERE test_id = ?1 \
         ORDER BY seq, id",
        [id],
    )?;
    let total: i64 = phases
        .iter()
        .filter_map(|p| p["duration_ms"].as_i64())
        .sum();
    test["phases"] = Value::Array(phases);
    test["phases_total_ms"] = json!(total);
    test["rollbacks"] = Value::Array(rows(
        conn,
        "SELECT id, system_id, strategy, status, reason, initiated_by, started_at, completed_at \
         FROM rollbacks WHERE test_id = ?1 ORDER BY id",
        [id],
    )?);
    Ok(test)
}

/// Everything an approver needs for queue item `id`: the item, its advisory (description,
/// CVEs, packages), risk profile with score breakdown, the evidence test with phases, and
/// the decision history.
pub fn approval_detail(conn: &Connection, id: i64) -> StoreResult<Value> {
    let mut item = one(
        conn,
        "SELECT q.id, q.advisory, q.os, q.status, q.score, q.priority, q.queued_at, q.queued_by, \
         q.completed_at, q.last_test_id, q.snooze_until, e.synopsis, e.description, e.severity, \
         e.advisory_type, e.reboot_suggested, e.issue_date, \
         (julianday('now') - julianday(q.completed_at)) * 24.0 AS hours_pending \
         FROM queue_items q JOIN errata e ON e.advisory = q.advisory WHERE q.id = ?1",
        [id],
    )?
    .ok_or_else(|| not_found("queue item", id))?;
    let advisory = item["advisory"].as_str().unwrap_or_default().to_string();
    let os = item["os"].as_str().unwrap_or_default().to_string();
    item["cves"] = Value::Array(
        rows(
            conn,
            "SELECT cve FROM errata_cves WHERE advisory = ?1 ORDER BY cve",
            [&advisory],
        )?
        .into_iter()
        .map(|r| r["cve"].clone())
        .collect(),
    );
    item["packages"] = Value::Array(rows(
        conn,
        "SELECT name, epoch, version, release, arch FROM errata_packages WHERE advisory = ?1 \
         ORDER BY name, arch",
        [&advisory],
    )?);
    item["risk"] = one(
        conn,
        "SELECT affects_kernel, requires_reboot, modifies_config, dependency_count, \
         package_count, total_size_kb, times_tested, times_failed, last_failure_reason, score, \
         low_confidence, breakdown FROM risk_profiles WHERE advisory = ?1 AND os = ?2",
        params![advisory, os],
    )?
    .unwrap_or(Value::Null);
    item["test"] = match item["last_test_id"].as_i64() {
        Some(t) => test_detail(conn, t)?,
        None => Value::Null,
    };
    item["starters"] = Value::Array(
        rows(
            conn,
            "SELECT DISTINCT started_by FROM tests WHERE queue_id = ?1 AND started_by IS NOT NULL",
            [id],
        )?
        .into_iter()
        .map(|r| r["started_by"].clone())
        .collect(),
    );
    item["history"] = Value::Array(rows(
        conn,
        "SELECT id, action, actor, reason, snooze_until, source_addr, evidence_test_id, created_at \
         FROM approvals WHERE queue_id = ?1 ORDER BY id DESC",
        [id],
    )?);
    Ok(item)
}

/// Patch runs, newest first.
pub fn runs(conn: &Connection, limit: u32) -> StoreResult<Vec<Value>> {
    rows(
        conn,
        "SELECT id, policy_id, trigger, dry_run, status, phase_detail, current_wave, total_waves, \
         hosts_total, hosts_ok, hosts_failed, error, started_by, started_at, completed_at \
         FROM patch_runs ORDER BY id DESC LIMIT ?1",
        [limit],
    )
}

/// Known policies.
pub fn policies(conn: &Connection) -> StoreResult<Vec<Value>> {
    rows(
        conn,
        "SELECT p.id, p.name, p.path, p.os, p.schedule, p.enabled, p.last_run_at, \
         (SELECT count(*) FROM compliance c WHERE c.policy_id = p.id) AS systems, \
         (SELECT count(*) FROM compliance c WHERE c.policy_id = p.id AND c.status = 'compliant') \
           AS compliant FROM policies p ORDER BY p.id",
        [],
    )
}

/// One run with its hosts grouped by wave and per-status counts (for live progress).
pub fn run_detail(conn: &Connection, id: i64) -> StoreResult<Value> {
    let mut run = one(conn, "SELECT * FROM patch_runs WHERE id = ?1", [id])?
        .ok_or_else(|| not_found("patch run", id))?;
    let hosts = rows(
        conn,
        "SELECT id, system_id, system_name, wave, errata, status, action_id, snapshot_id, error, \
         started_at, completed_at FROM patch_run_hosts WHERE run_id = ?1 ORDER BY wave, system_name",
        [id],
    )?;
    let mut counts = Map::new();
    let mut waves: Vec<Value> = Vec::new();
    for h in &hosts {
        let status = h["status"].as_str().unwrap_or("unknown").to_string();
        let n = counts.get(&status).and_then(Value::as_i64).unwrap_or(0);
        counts.insert(status.clone(), json!(n + 1));
        let wave = h["wave"].as_i64().unwrap_or(0);
        match waves.iter_mut().find(|w| w["wave"] == json!(wave)) {
            Some(w) => {
                if let Some(list) = w["hosts"].as_array_mut() {
                    list.push(h.clone());
                }
            }
            None => waves.push(json!({ "wave": wave, "hosts": [h.clone()] })),
        }
    }
    let running = ["snapshotting", "running", "verifying", "rolling_back"]
        .iter()
        .map(|s| counts.get(*s).and_then(Value::as_i64).unwrap_or(0))
        .sum::<i64>();
    let active = run["status"]
        .as_str()
        .and_then(|s| s.parse::<RunStatus>().ok())
        .is_some_and(RunStatus::is_active);
    run["active"] = json!(active);
    // Worth polling: the run is active, or hosts are still moving (a rollback).
    run["live"] = json!(active || running > 0);
    run["hosts_running"] = json!(running);
    run["counts"] = Value::Object(counts);
    run["waves"] = Value::Array(waves);
    Ok(run)
}

/// CVE → errata → systems: every advisory fixing `cve` with the systems it is relevant to
/// and their compliance status.
pub fn cve_lookup(conn: &Connection, cve: &str) -> StoreResult<Vec<Value>> {
    let mut errata = rows(
        conn,
        "SELECT e.advisory, e.synopsis, e.severity, e.issue_date FROM errata_cves c \
         JOIN errata e ON e.advisory = c.advisory WHERE upper(c.cve) = upper(?1) ORDER BY e.advisory",
        [cve],
    )?;
    for e in &mut errata {
        let adv = e["advisory"].as_str().unwrap_or_default().to_string();
        e["systems"] = Value::Array(rows(
            conn,
            "SELECT s.id, s.name, s.os, s.env, s.role, coalesce(c.status, 'unknown') AS compliance \
             FROM errata_systems x JOIN systems s ON s.id = x.system_id \
             LEFT JOIN compliance c ON c.system_id = s.id WHERE x.advisory = ?1 ORDER BY s.name",
            [&adv],
        )?);
    }
    Ok(errata)
}

/// Advisories with the most relevant systems (for the advisories table).
pub fn top_advisories(conn: &Connection, limit: u32) -> StoreResult<Vec<Value>> {
    rows(
        conn,
        "SELECT e.advisory, e.synopsis, e.severity, e.issue_date, \
         (SELECT count(*) FROM errata_systems x WHERE x.advisory = e.advisory) AS systems, \
         (SELECT group_concat(cve, ' ') FROM errata_cves c WHERE c.advisory = e.advisory) AS cves \
         FROM errata e ORDER BY systems DESC, e.advisory LIMIT ?1",
        [limit],
    )
}

/// Advisories matching `q` (name prefix or synopsis substring) that could be queued.
pub fn find_errata(conn: &Connection, q: &str, limit: u32) -> StoreResult<Vec<Value>> {
    let escaped = q
        .to_lowercase()
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    rows(
        conn,
        "SELECT e.advisory, e.synopsis, e.severity, \
         (SELECT group_concat(os, ',') FROM errata_relevance r WHERE r.advisory = e.advisory \
          AND r.stale = 0) AS os_list FROM errata e \
         WHERE lower(e.advisory) LIKE ?1 ESCAPE '\\' OR lower(e.synopsis) LIKE ?1 ESCAPE '\\' \
         ORDER BY e.advisory LIMIT ?2",
        params![format!("%{escaped}%"), limit],
    )
}

/// Who made a change, and from where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// Authenticated identity (token name).
    pub identity: String,
    /// Client socket address.
    pub source_addr: Option<String>,
}

/// Ask an active patch run to stop (`→ cancelling`, through the run store's own rule) with
/// an audit row. The run's executor stops starting hosts; hosts in flight finish.
pub fn cancel_run(tx: &Connection, id: i64, reason: &str, actor: &Actor) -> StoreResult<i64> {
    let before = super::runs::get_run(tx, id)?.status;
    let run = super::runs::request_cancel(tx, id)?;
    audit::append(
        tx,
        &AuditEntry {
            actor: actor.identity.clone(),
            source_addr: actor.source_addr.clone(),
            action: "run.cancel".to_string(),
            object_type: "patch_run".to_string(),
            object_id: Some(id.to_string()),
            reason: Some(reason.to_string()),
            details: json!({ "from": before.as_str(), "to": run.status.as_str(), "via": "dashboard" }),
        },
    )
}

/// The names of hosts `host_ids` of run `run_id` for a rollback, in the order given, and
/// the run's OS family (from its plan). Refuses, naming the host, any id that is not a host
/// of the run or a host that has not finished (`ok` or `failed`).
pub fn rollback_selection(
    conn: &Connection,
    run_id: i64,
    host_ids: &[i64],
) -> StoreResult<(Vec<String>, String)> {
    if host_ids.is_empty() {
        return Err(StoreError::Conflict(
            "select at least one host to roll back".to_string(),
        ));
    }
    let run = super::runs::get_run(conn, run_id)?;
    let mut names = Vec::with_capacity(host_ids.len());
    for &hid in host_ids {
        let row: Option<(String, String)> = conn
            .query_row(
                "SELECT status, system_name FROM patch_run_hosts WHERE id = ?1 AND run_id = ?2",
                params![hid, run_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((status, name)) = row else {
            return Err(not_found("host of this run", hid));
        };
        if status != "ok" && status != "failed" {
            return Err(StoreError::Conflict(format!(
                "host {name} is {status}; only hosts that finished (ok or failed) can be rolled back"
            )));
        }
        names.push(name);
    }
    let os = run
        .plan
        .get("os")
        .and_then(|o| o.as_str())
        .unwrap_or("unknown")
        .to_string();
    Ok((names, os))
}
