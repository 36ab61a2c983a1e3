//! Patch runs (`patch_runs`) and their per-system rows (`patch_run_hosts`), plus the few
//! reads a run needs from the approval side and the alert it writes.
//!
//! Status changes go through [`transition_run`] and [`transition_hosts`]: the state machine
//! check ([`RunStatus`], [`RunHostStatus`]) and a conditional `UPDATE … WHERE status=?`.

use std::collections::BTreeMap;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::{StoreError, StoreResult, format_ts, now_ts, status_col};
use crate::engine::state::{QueueStatus, RunHostStatus, RunStatus, Status, TransitionError};

/// A new run.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRun {
    /// Policy id.
    pub policy_id: String,
    /// SHA-256 of the policy file.
    pub policy_hash: String,
    /// `manual`, `cron` or `api`.
    pub trigger: String,
    /// Who started it.
    pub started_by: String,
    /// Engine instance holding the run.
    pub owner: String,
    /// Lease length.
    pub lease: Duration,
}

/// A stored run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunRecord {
    /// Run id.
    pub id: i64,
    /// Policy id.
    pub policy_id: String,
    /// Policy file hash.
    pub policy_hash: String,
    /// Trigger.
    pub trigger: String,
    /// Status.
    pub status: RunStatus,
    /// What it is doing.
    pub phase_detail: Option<String>,
    /// Current wave (1-based; 0 before the first).
    pub current_wave: i64,
    /// Waves planned.
    pub total_waves: i64,
    /// Hosts planned.
    pub hosts_total: i64,
    /// Hosts patched and verified.
    pub hosts_ok: i64,
    /// Hosts failed.
    pub hosts_failed: i64,
    /// The plan (JSON).
    pub plan: serde_json::Value,
    /// Why it failed or stopped.
    pub error: Option<String>,
    /// Who started it.
    pub started_by: String,
    /// Lease owner.
    pub lease_owner: Option<String>,
    /// Lease expiry.
    pub lease_until: Option<String>,
    /// Start.
    pub started_at: String,
    /// End.
    pub completed_at: Option<String>,
}

const RUN_COLUMNS: &str = "id, policy_id, policy_hash, trigger, status, phase_detail, current_wave, \
    total_waves, hosts_total, hosts_ok, hosts_failed, plan, error, started_by, lease_owner, \
    lease_until, started_at, completed_at";

fn row_to_run(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunRecord> {
    let plan: String = r.get(11)?;
    Ok(RunRecord {
        id: r.get(0)?,
        policy_id: r.get(1)?,
        policy_hash: r.get(2)?,
        trigger: r.get(3)?,
        status: status_col(r, 4)?,
        phase_detail: r.get(5)?,
        current_wave: r.get(6)?,
        total_waves: r.get(7)?,
        hosts_total: r.get(8)?,
        hosts_ok: r.get(9)?,
        hosts_failed: r.get(10)?,
        plan: serde_json::from_str(&plan).unwrap_or(serde_json::Value::Null),
        error: r.get(12)?,
        started_by: r.get(13)?,
        lease_owner: r.get(14)?,
        lease_until: r.get(15)?,
        started_at: r.get(16)?,
        completed_at: r.get(17)?,
    })
}

fn lease_until(lease: Duration) -> String {
    let d = chrono::Duration::from_std(lease.min(Duration::from_secs(86_400)))
        .unwrap_or(chrono::Duration::zero());
    let now = chrono::Utc::now();
    format_ts(now.checked_add_signed(d).unwrap_or(now))
}

/// Insert a run in `planning`. A second active run of the same policy is refused by the
/// `uq_run_active_policy` index ([`StoreError::Conflict`] naming the active run).
pub fn insert_run(conn: &Connection, new: &NewRun) -> StoreResult<RunRecord> {
    let res = conn.execute(
        "INSERT INTO patch_runs (policy_id, policy_hash, trigger, started_by, lease_owner, \
         lease_until, started_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            new.policy_id,
            new.policy_hash,
            new.trigger,
            new.started_by,
            new.owner,
            lease_until(new.lease),
            now_ts()
        ],
    );
    match res {
        Ok(_) => get_run(conn, conn.last_insert_rowid()),
        Err(rusqlite::Error::SqliteFailure(f, _))
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE =>
        {
            let active: Option<(i64, String)> = conn
                .query_row(
                    "SELECT id, status FROM patch_runs WHERE policy_id = ?1 AND dry_run = 0 \
                     AND status IN ('planning','validating','snapshotting','executing','verifying','reporting','cancelling')",
                    [&new.policy_id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            Err(StoreError::Conflict(match active {
                Some((id, st)) => format!(
                    "policy {} already has run {id} in progress (status {st}); one run per policy at a time",
                    new.policy_id
                ),
                None => format!("policy {} already has a run in progress", new.policy_id),
            }))
        }
        Err(e) => Err(e.into()),
    }
}

/// One run.
pub fn get_run(conn: &Connection, id: i64) -> StoreResult<RunRecord> {
    conn.query_row(
        &format!("SELECT {RUN_COLUMNS} FROM patch_runs WHERE id = ?1"),
        [id],
        row_to_run,
    )
    .optional()?
    .ok_or_else(|| StoreError::NotFound {
        what: "patch run",
        id: id.to_string(),
    })
}

/// One run without its plan (cheap: the plan of a large run is megabytes of JSON).
pub fn get_run_brief(conn: &Connection, id: i64) -> StoreResult<RunRecord> {
    let cols = RUN_COLUMNS.replace(" plan,", " 'null',");
    conn.query_row(
        &format!("SELECT {cols} FROM patch_runs WHERE id = ?1"),
        [id],
        row_to_run,
    )
    .optional()?
    .ok_or_else(|| StoreError::NotFound {
        what: "patch run",
        id: id.to_string(),
    })
}

/// The latest runs, newest first.
/// (Without their plans; read one with [`get_run`].)
pub fn list_runs(conn: &Connection, limit: u32) -> StoreResult<Vec<RunRecord>> {
    let cols = RUN_COLUMNS.replace(" plan,", " 'null',");
    let mut stmt = conn.prepare(&format!(
        "SELECT {cols} FROM patch_runs ORDER BY id DESC LIMIT ?1"
    ))?;
    let rows = stmt
        .query_map([limit.min(1000)], row_to_run)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// Fields updated with a run transition or on their own.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunUpdate {
    /// `phase_detail`.
    pub phase_detail: Option<String>,
    /// `current_wave`.
    pub current_wave: Option<i64>,
    /// `total_waves`.
    pub total_waves: Option<i64>,
    /// `hosts_total`.
    pub hosts_total: Option<i64>,
    /// `hosts_ok`.
    pub hosts_ok: Option<i64>,
    /// `hosts_failed`.
    pub hosts_failed: Option<i64>,
    /// `plan` (JSON).
    pub plan: Option<serde_json::Value>,
    /// `error`.
    pub error: Option<String>,
}

fn apply_update(conn: &Connection, id: i64, u: &RunUpdate) -> StoreResult<()> {
    conn.execute(
        "UPDATE patch_runs SET phase_detail = COALESCE(?2, phase_detail), \
         current_wave = COALESCE(?3, current_wave), total_waves = COALESCE(?4, total_waves), \
         hosts_total = COALESCE(?5, hosts_total), hosts_ok = COALESCE(?6, hosts_ok), \
         hosts_failed = COALESCE(?7, hosts_failed), plan = COALESCE(?8, plan), \
         error = COALESCE(?9, error) WHERE id = ?1",
        params![
            id,
            u.phase_detail,
            u.current_wave,
            u.total_waves,
            u.hosts_total,
            u.hosts_ok,
            u.hosts_failed,
            u.plan.as_ref().map(|p| p.to_string()),
            u.error,
        ],
    )?;
    Ok(())
}

/// Update counters and details without a status change.
pub fn update_run(conn: &Connection, id: i64, u: &RunUpdate) -> StoreResult<()> {
    apply_update(conn, id, u)
}

/// Move run `id` from `from` to `to` (state machine + conditional update), applying `u`.
/// Terminal states set `completed_at` and clear the lease. Returns the run without its
/// plan (see [`get_run_brief`]).
pub fn transition_run(
    conn: &Connection,
    id: i64,
    from: RunStatus,
    to: RunStatus,
    u: &RunUpdate,
) -> StoreResult<RunRecord> {
    RunStatus::check(from, to, id)?;
    let now = now_ts();
    let n = if to.is_terminal() {
        conn.execute(
            "UPDATE patch_runs SET status = ?3, completed_at = ?4, lease_owner = NULL, \
             lease_until = NULL WHERE id = ?1 AND status = ?2",
            params![id, from.as_str(), to.as_str(), now],
        )?
    } else {
        conn.execute(
            "UPDATE patch_runs SET status = ?3 WHERE id = ?1 AND status = ?2",
            params![id, from.as_str(), to.as_str()],
        )?
    };
    if n == 0 {
        let exists = conn
            .query_row("SELECT 1 FROM patch_runs WHERE id = ?1", [id], |_| Ok(()))
            .optional()?;
        return Err(match exists {
            None => StoreError::NotFound {
                what: "patch run",
                id: id.to_string(),
            },
            Some(()) => StoreError::Transition(TransitionError::Lost {
                what: RunStatus::WHAT,
                id: id.to_string(),
                expected: from.as_str().to_string(),
            }),
        });
    }
    apply_update(conn, id, u)?;
    get_run_brief(conn, id)
}

/// Extend the lease of a run held by `owner`; false when the run is no longer held by it.
pub fn heartbeat(conn: &Connection, id: i64, owner: &str, lease: Duration) -> StoreResult<bool> {
    let n = conn.execute(
        "UPDATE patch_runs SET lease_until = ?3 WHERE id = ?1 AND lease_owner = ?2",
        params![id, owner, lease_until(lease)],
    )?;
    Ok(n == 1)
}

/// Ask a run to stop: an active run goes to `cancelling` (the executor stops starting
/// hosts; in-flight ones finish). Returns the run after the change.
pub fn request_cancel(conn: &Connection, id: i64) -> StoreResult<RunRecord> {
    let run = get_run_brief(conn, id)?;
    if run.status == RunStatus::Cancelling {
        return Ok(run);
    }
    if run.status.is_terminal() {
        return Err(StoreError::Conflict(format!(
            "patch run {id} is already {}; nothing to cancel",
            run.status
        )));
    }
    transition_run(
        conn,
        id,
        run.status,
        RunStatus::Cancelling,
        &RunUpdate::default(),
    )
}

/// A host row to create.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRunHost {
    /// UYUNI system id.
    pub system_id: i64,
    /// Profile name.
    pub system_name: String,
    /// Wave (1-based; 0 for excluded hosts).
    pub wave: i64,
    /// Advisories planned.
    pub errata: Vec<String>,
    /// `pending`, or `skipped` with `error` for exclusions.
    pub status: RunHostStatus,
    /// Why skipped.
    pub error: Option<String>,
}

/// Insert the run's host rows.
pub fn insert_hosts(conn: &Connection, run_id: i64, hosts: &[NewRunHost]) -> StoreResult<()> {
    let mut stmt = conn.prepare(
        "INSERT INTO patch_run_hosts (run_id, system_id, system_name, wave, errata, status, error, completed_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    let now = now_ts();
    for h in hosts {
        let done = (h.status == RunHostStatus::Skipped).then_some(now.as_str());
        stmt.execute(params![
            run_id,
            h.system_id,
            h.system_name,
            h.wave,
            serde_json::Value::from(h.errata.clone()).to_string(),
            h.status.as_str(),
            h.error,
            done
        ])?;
    }
    Ok(())
}

/// Extra columns set with a host transition.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostUpdate {
    /// `action_id`.
    pub action_id: Option<i64>,
    /// `snapshot_id`.
    pub snapshot_id: Option<String>,
    /// `error`.
    pub error: Option<String>,
}

/// Move host rows of `run_id` from `from` to `to`; rows not in `from` are left alone.
/// Returns how many moved. `running` sets `started_at`; terminal, `ok` and `failed` set
/// `completed_at`.
pub fn transition_hosts(
    conn: &Connection,
    run_id: i64,
    system_ids: &[i64],
    from: RunHostStatus,
    to: RunHostStatus,
    u: &HostUpdate,
) -> StoreResult<usize> {
    RunHostStatus::check(from, to, format!("run {run_id}"))?;
    let now = now_ts();
    let started = matches!(to, RunHostStatus::Running | RunHostStatus::Snapshotting);
    let done = to.is_terminal() || matches!(to, RunHostStatus::Ok | RunHostStatus::Failed);
    let mut stmt = conn.prepare_cached(
        "UPDATE patch_run_hosts SET status = ?4, \
         started_at = CASE WHEN ?5 THEN COALESCE(started_at, ?7) ELSE started_at END, \
         completed_at = CASE WHEN ?6 THEN ?7 ELSE completed_at END, \
         action_id = COALESCE(?8, action_id), snapshot_id = COALESCE(?9, snapshot_id), \
         error = COALESCE(?10, error) \
         WHERE run_id = ?1 AND system_id = ?2 AND status = ?3",
    )?;
    let mut n = 0;
    for sid in system_ids {
        n += stmt.execute(params![
            run_id,
            sid,
            from.as_str(),
            to.as_str(),
            started,
            done,
            now,
            u.action_id,
            u.snapshot_id,
            u.error
        ])?;
    }
    Ok(n)
}

/// Set columns of host rows without a status change.
pub fn set_host_fields(
    conn: &Connection,
    run_id: i64,
    system_ids: &[i64],
    u: &HostUpdate,
) -> StoreResult<()> {
    let mut stmt = conn.prepare(
        "UPDATE patch_run_hosts SET action_id = COALESCE(?3, action_id), \
         snapshot_id = COALESCE(?4, snapshot_id), error = COALESCE(?5, error) \
         WHERE run_id = ?1 AND system_id = ?2",
    )?;
    for sid in system_ids {
        stmt.execute(params![run_id, sid, u.action_id, u.snapshot_id, u.error])?;
    }
    Ok(())
}

/// Record a host's pre-patch package versions (`name=version` items).
pub fn set_pre_packages(
    conn: &Connection,
    run_id: i64,
    system_id: i64,
    pkgs: &[String],
) -> StoreResult<()> {
    conn.execute(
        "UPDATE patch_run_hosts SET pre_packages = ?3 WHERE run_id = ?1 AND system_id = ?2",
        params![
            run_id,
            system_id,
            serde_json::Value::from(pkgs.to_vec()).to_string()
        ],
    )?;
    Ok(())
}

/// A host's pre-patch package versions.
pub fn pre_packages(conn: &Connection, run_id: i64, system_id: i64) -> StoreResult<Vec<String>> {
    let text: Option<String> = conn
        .query_row(
            "SELECT pre_packages FROM patch_run_hosts WHERE run_id = ?1 AND system_id = ?2",
            params![run_id, system_id],
            |r| r.get(0),
        )
        .optional()?;
    Ok(text
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default())
}

/// Open a `rollbacks` row (status `running`); returns its id.
pub fn insert_rollback(
    conn: &Connection,
    run_id: i64,
    system_id: i64,
    strategy: &str,
    reason: &str,
    initiated_by: &str,
) -> StoreResult<i64> {
    conn.execute(
        "INSERT INTO rollbacks (run_id, system_id, strategy, reason, initiated_by, started_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![run_id, system_id, strategy, reason, initiated_by, now_ts()],
    )?;
    Ok(conn.last_insert_rowid())
}

/// Close a `rollbacks` row as `verified` or `failed` with its details.
pub fn finish_rollback(
    conn: &Connection,
    id: i64,
    verified: bool,
    details: &serde_json::Value,
) -> StoreResult<()> {
    conn.execute(
        "UPDATE rollbacks SET status = ?2, details = ?3, completed_at = ?4 WHERE id = ?1 AND status = 'running'",
        params![id, if verified { "verified" } else { "failed" }, details.to_string(), now_ts()],
    )?;
    Ok(())
}

/// Move every host of `run_id` still `pending` to `to` (`skipped` or `cancelled`) with
/// `reason`; returns how many.
pub fn close_pending(
    conn: &Connection,
    run_id: i64,
    to: RunHostStatus,
    reason: &str,
) -> StoreResult<usize> {
    RunHostStatus::check(RunHostStatus::Pending, to, format!("run {run_id}"))?;
    Ok(conn.execute(
        "UPDATE patch_run_hosts SET status = ?2, error = COALESCE(error, ?3), completed_at = ?4 \
         WHERE run_id = ?1 AND status = 'pending'",
        params![run_id, to.as_str(), reason, now_ts()],
    )?)
}

/// A stored host row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunHostRecord {
    /// UYUNI system id.
    pub system_id: i64,
    /// Profile name.
    pub system_name: String,
    /// Wave.
    pub wave: i64,
    /// Advisories.
    pub errata: Vec<String>,
    /// Status.
    pub status: RunHostStatus,
    /// UYUNI action.
    pub action_id: Option<i64>,
    /// Snapshot.
    pub snapshot_id: Option<String>,
    /// Error.
    pub error: Option<String>,
    /// Start.
    pub started_at: Option<String>,
    /// End.
    pub completed_at: Option<String>,
}

/// Every host row of a run, by wave then name.
pub fn run_hosts(conn: &Connection, run_id: i64) -> StoreResult<Vec<RunHostRecord>> {
    let mut stmt = conn.prepare(
        "SELECT system_id, system_name, wave, errata, status, action_id, snapshot_id, error, \
         started_at, completed_at FROM patch_run_hosts WHERE run_id = ?1 ORDER BY wave, system_name",
    )?;
    let rows = stmt
        .query_map([run_id], |r| {
            let errata: String = r.get(3)?;
            Ok(RunHostRecord {
                system_id: r.get(0)?,
                system_name: r.get(1)?,
                wave: r.get(2)?,
                errata: serde_json::from_str(&errata).unwrap_or_default(),
                status: status_col(r, 4)?,
                action_id: r.get(5)?,
                snapshot_id: r.get(6)?,
                error: r.get(7)?,
                started_at: r.get(8)?,
                completed_at: r.get(9)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// Host counts per status for a run.
pub fn host_counts(conn: &Connection, run_id: i64) -> StoreResult<BTreeMap<String, i64>> {
    let mut stmt = conn.prepare(
        "SELECT status, count(*) FROM patch_run_hosts WHERE run_id = ?1 GROUP BY status",
    )?;
    let rows = stmt
        .query_map([run_id], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<BTreeMap<_, _>>>()?;
    Ok(rows)
}

/// Crash recovery: every run left active whose lease expired (or that has none) becomes
/// `interrupted`, and so do its hosts that were pending or mid-work; each raises a
/// `run_failed` notification. Returns the run ids.
pub fn recover_interrupted(conn: &Connection) -> StoreResult<Vec<i64>> {
    let now = now_ts();
    let mut stmt = conn.prepare(
        "SELECT id, status, policy_id FROM patch_runs WHERE status IN \
         ('planning','validating','snapshotting','executing','verifying','reporting','cancelling') \
         AND (lease_until IS NULL OR lease_until < ?1) ORDER BY id",
    )?;
    let stale: Vec<(i64, RunStatus, String)> = stmt
        .query_map([&now], |r| Ok((r.get(0)?, status_col(r, 1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut ids = Vec::new();
    for (id, status, policy_id) in stale {
        let error = format!(
            "the process running it stopped while it was {status}; recovered as interrupted"
        );
        insert_notification(
            conn,
            "run_failed",
            "critical",
            &format!("patch run {id} ({policy_id}) was interrupted"),
            &format!(
                "Patch run {id} of policy {policy_id}: {error}. Hosts that were pending or mid-work are marked interrupted; check them before running the policy again."
            ),
            Some(id),
            &serde_json::json!({ "policy": policy_id, "status": "interrupted", "error": error }),
        )?;
        transition_run(
            conn,
            id,
            status,
            RunStatus::Interrupted,
            &RunUpdate {
                error: Some("the process running it stopped; recovered at the next start".into()),
                ..RunUpdate::default()
            },
        )?;
        conn.execute(
            "UPDATE patch_run_hosts SET status = 'interrupted', completed_at = ?2, \
             error = COALESCE(error, 'run interrupted') WHERE run_id = ?1 AND status IN \
             ('pending','snapshotting','running','verifying','rolling_back')",
            params![id, now],
        )?;
        release_promoted(conn, id)?;
        ids.push(id);
    }
    Ok(ids)
}

/// Queue items of an interrupted run's plan left in `promoting` go to `prod_applied` when
/// one of the run's hosts got the erratum, else back to `approved` (a visible, safe state).
fn release_promoted(conn: &Connection, run_id: i64) -> StoreResult<()> {
    let plan: String =
        conn.query_row("SELECT plan FROM patch_runs WHERE id = ?1", [run_id], |r| {
            r.get(0)
        })?;
    let plan: serde_json::Value = serde_json::from_str(&plan).unwrap_or_default();
    let items: Vec<(String, i64)> = plan["errata"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| {
                    Some((e["advisory"].as_str()?.to_string(), e["queue_id"].as_i64()?))
                })
                .collect()
        })
        .unwrap_or_default();
    for (adv, q) in items {
        let status: Option<String> = conn
            .query_row("SELECT status FROM queue_items WHERE id = ?1", [q], |r| {
                r.get(0)
            })
            .optional()?;
        if status.as_deref() != Some("promoting") {
            continue;
        }
        let applied: i64 = conn.query_row(
            "SELECT count(*) FROM patch_run_hosts h, json_each(h.errata) j \
             WHERE h.run_id = ?1 AND h.status = 'ok' AND j.value = ?2",
            params![run_id, adv],
            |r| r.get(0),
        )?;
        let to = if applied > 0 {
            QueueStatus::ProdApplied
        } else {
            QueueStatus::Approved
        };
        super::queue::transition(
            conn,
            q,
            QueueStatus::Promoting,
            to,
            &super::queue::TransitionExtra::default(),
        )?;
    }
    Ok(())
}

/// What a run needs to know about one advisory for one OS.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErratumApproval {
    /// Advisory.
    pub advisory: String,
    /// Severity (from the errata table).
    pub severity: String,
    /// Type.
    pub advisory_type: String,
    /// Issue date.
    pub issue_date: Option<String>,
    /// Reboot suggested.
    pub reboot_suggested: bool,
    /// The newest queue item for (advisory, os), if any.
    pub queue_id: Option<i64>,
    /// Its status.
    pub queue_status: Option<QueueStatus>,
    /// The latest `approved` decision row, if any.
    pub approval_id: Option<i64>,
    /// Who approved.
    pub approved_by: Option<String>,
}

impl ErratumApproval {
    /// Approved for production: the queue item is approved (or already in production)
    /// and an approval row records the decision.
    pub fn is_approved(&self) -> bool {
        self.approval_id.is_some()
            && matches!(
                self.queue_status,
                Some(
                    QueueStatus::Approved
                        | QueueStatus::Promoting
                        | QueueStatus::ProdPending
                        | QueueStatus::ProdApplied
                        | QueueStatus::Completed
                )
            )
    }
}

/// Approval facts for `advisories` on `os`; advisories unknown to spm are absent.
pub fn errata_approvals(
    conn: &Connection,
    os: &str,
    advisories: &[String],
) -> StoreResult<BTreeMap<String, ErratumApproval>> {
    let mut stmt = conn.prepare(
        "SELECT e.advisory, e.severity, e.advisory_type, e.issue_date, e.reboot_suggested, \
         q.id, q.status, \
         (SELECT a.id FROM approvals a WHERE a.queue_id = q.id AND a.action = 'approved' ORDER BY a.id DESC LIMIT 1), \
         (SELECT a.actor FROM approvals a WHERE a.queue_id = q.id AND a.action = 'approved' ORDER BY a.id DESC LIMIT 1) \
         FROM errata e LEFT JOIN queue_items q ON q.id = \
           (SELECT max(id) FROM queue_items WHERE advisory = e.advisory AND os = ?2) \
         WHERE e.advisory = ?1",
    )?;
    let mut out = BTreeMap::new();
    for adv in advisories {
        let row = stmt
            .query_row(params![adv, os], |r| {
                let qs: Option<String> = r.get(6)?;
                Ok(ErratumApproval {
                    advisory: r.get(0)?,
                    severity: r.get(1)?,
                    advisory_type: r.get(2)?,
                    issue_date: r.get(3)?,
                    reboot_suggested: r.get::<_, i64>(4)? != 0,
                    queue_id: r.get(5)?,
                    queue_status: qs.and_then(|s| s.parse().ok()),
                    approval_id: r.get(7)?,
                    approved_by: r.get(8)?,
                })
            })
            .optional()?;
        if let Some(a) = row {
            out.insert(adv.clone(), a);
        }
    }
    Ok(out)
}

/// Environment, tags and online flag of a system from the last sync.
pub type SystemFacts = (Option<String>, BTreeMap<String, String>, bool);

/// Inventory facts from the last sync for systems, by id.
pub fn system_facts(conn: &Connection, ids: &[i64]) -> StoreResult<BTreeMap<i64, SystemFacts>> {
    let mut stmt = conn.prepare("SELECT env, tags, online FROM systems WHERE id = ?1")?;
    let mut out = BTreeMap::new();
    for id in ids {
        let row: Option<(Option<String>, String, i64)> = stmt
            .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?;
        if let Some((env, tags, online)) = row {
            let tags: BTreeMap<String, String> = serde_json::from_str::<serde_json::Value>(&tags)
                .ok()
                .and_then(|v| v.as_object().cloned())
                .map(|m| {
                    m.into_iter()
                        .map(|(k, v)| (k, v.as_str().map_or_else(|| v.to_string(), str::to_string)))
                        .collect()
                })
                .unwrap_or_default();
            out.insert(*id, (env, tags, online != 0));
        }
    }
    Ok(out)
}

/// Systems whose tags match every selector (tag-only targets).
pub fn systems_with_tags(
    conn: &Connection,
    tags: &BTreeMap<String, String>,
) -> StoreResult<Vec<(i64, String)>> {
    let mut stmt =
        conn.prepare("SELECT id, name, tags FROM systems WHERE role = 'production' ORDER BY name")?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows
        .into_iter()
        .filter(|(_, _, t)| {
            let v: serde_json::Value = serde_json::from_str(t).unwrap_or_default();
            tags.iter()
                .all(|(k, want)| v.get(k).and_then(|x| x.as_str()) == Some(want.as_str()))
        })
        .map(|(id, name, _)| (id, name))
        .collect())
}

/// Record an alert for operators (`notifications`; the notifier routes and delivers it,
/// rendering the event's templates with `data` when it is an object with fields).
pub fn insert_notification(
    conn: &Connection,
    event: &str,
    severity: &str,
    subject: &str,
    body: &str,
    run_id: Option<i64>,
    data: &serde_json::Value,
) -> StoreResult<i64> {
    let data = if data.is_null() {
        "{}".to_string()
    } else {
        data.to_string()
    };
    conn.execute(
        "INSERT INTO notifications (event, severity, subject, body, run_id, created_at, data) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![event, severity, subject, body, run_id, now_ts(), data],
    )?;
    Ok(conn.last_insert_rowid())
}

/// Record a UYUNI action scheduled by a run (so a restart can inspect it).
pub fn record_action(
    conn: &Connection,
    action_id: i64,
    kind: &str,
    run_id: i64,
    system_ids: &[i64],
) -> StoreResult<()> {
    conn.execute(
        "INSERT OR REPLACE INTO uyuni_actions (action_id, kind, run_id, system_ids, status) \
         VALUES (?1, ?2, ?3, ?4, 'pending')",
        params![
            action_id,
            kind,
            run_id,
            serde_json::Value::from(system_ids.to_vec()).to_string()
        ],
    )?;
    Ok(())
}
