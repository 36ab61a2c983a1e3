//! Test attempts (`tests`), their phases (`test_phases`), the UYUNI actions they scheduled
//! (`uyuni_actions`), their rollbacks (`rollbacks`), and the records a finished test writes
//! (notifications, risk-profile history). Every status change is a conditional UPDATE
//! checked against the state machines of [`crate::engine::state`].

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use serde_json::Value;

use super::{StoreError, StoreResult, now_ts, status_col};
use crate::engine::state::{PhaseStatus, Status, TestStatus, TransitionError};

/// One test attempt.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TestRow {
    /// Row id.
    pub id: i64,
    /// Queue item tested.
    pub queue_id: i64,
    /// Advisory.
    pub advisory: String,
    /// Test system id.
    pub system_id: Option<i64>,
    /// Test system name.
    pub system_name: Option<String>,
    /// Status.
    pub status: TestStatus,
    /// Failure class, when it failed.
    pub failure_class: Option<String>,
    /// Phase that failed.
    pub failure_phase: Option<String>,
    /// Why it failed.
    pub failure_reason: Option<String>,
    /// Snapshot number taken before the patch.
    pub snapshot_id: Option<String>,
    /// Rollback strategy used.
    pub rollback_strategy: Option<String>,
    /// Rollback status.
    pub rollback_status: Option<String>,
    /// Whether the system was rebooted.
    pub reboot_performed: bool,
    /// Evidence for the approver (JSON).
    pub evidence: Value,
    /// Scripts used (JSON: path -> {sha256, generation}).
    pub scripts: Value,
    /// Phase state (JSON: phase -> data).
    pub state: Value,
    /// Who started it.
    pub started_by: Option<String>,
    /// Engine instance running it.
    pub owner: Option<String>,
    /// Reason of a pending abort request.
    pub abort_requested: Option<String>,
    /// Start.
    pub started_at: String,
    /// End.
    pub completed_at: Option<String>,
    /// Overall deadline.
    pub deadline_at: Option<String>,
}

const TEST_COLUMNS: &str = "id, queue_id, advisory, system_id, system_name, status, failure_class, \
    failure_phase, failure_reason, snapshot_id, rollback_strategy, rollback_status, \
    reboot_performed, evidence, scripts, state, started_by, owner, abort_requested, started_at, \
    completed_at, deadline_at";

fn json_col(r: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<Value> {
    let text: String = r.get(idx)?;
    serde_json::from_str(&text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn row_to_test(r: &rusqlite::Row<'_>) -> rusqlite::Result<TestRow> {
    Ok(TestRow {
        id: r.get(0)?,
        queue_id: r.get(1)?,
        advisory: r.get(2)?,
        system_id: r.get(3)?,
        system_name: r.get(4)?,
        status: status_col(r, 5)?,
        failure_class: r.get(6)?,
        failure_phase: r.get(7)?,
        failure_reason: r.get(8)?,
        snapshot_id: r.get(9)?,
        rollback_strategy: r.get(10)?,
        rollback_status: r.get(11)?,
        reboot_performed: r.get::<_, i64>(12)? != 0,
        evidence: json_col(r, 13)?,
        scripts: json_col(r, 14)?,
        state: json_col(r, 15)?,
        started_by: r.get(16)?,
        owner: r.get(17)?,
        abort_requested: r.get(18)?,
        started_at: r.get(19)?,
        completed_at: r.get(20)?,
        deadline_at: r.get(21)?,
    })
}

/// One phase of a test.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhaseRow {
    /// Row id.
    pub id: i64,
    /// Test.
    pub test_id: i64,
    /// Phase name (`pre_check`, …, `rollback`, `post_rollback`).
    pub phase: String,
    /// Order within the test.
    pub seq: i64,
    /// Status.
    pub status: PhaseStatus,
    /// Script that ran.
    pub script_path: Option<String>,
    /// Its SHA-256.
    pub script_hash: Option<String>,
    /// Start.
    pub started_at: String,
    /// End.
    pub completed_at: Option<String>,
    /// Duration.
    pub duration_ms: Option<i64>,
    /// Output excerpt.
    pub output: String,
    /// Data the phase returned or recorded.
    pub data: Value,
    /// Error kind, when it failed.
    pub error_kind: Option<String>,
    /// Error message, when it failed.
    pub error: Option<String>,
}

fn row_to_phase(r: &rusqlite::Row<'_>) -> rusqlite::Result<PhaseRow> {
    Ok(PhaseRow {
        id: r.get(0)?,
        test_id: r.get(1)?,
        phase: r.get(2)?,
        seq: r.get(3)?,
        status: status_col(r, 4)?,
        script_path: r.get(5)?,
        script_hash: r.get(6)?,
        started_at: r.get(7)?,
        completed_at: r.get(8)?,
        duration_ms: r.get(9)?,
        output: r.get(10)?,
        data: json_col(r, 11)?,
        error_kind: r.get(12)?,
        error: r.get(13)?,
    })
}

/// A test about to start.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTest {
    /// Queue item.
    pub queue_id: i64,
    /// Advisory.
    pub advisory: String,
    /// Test system id.
    pub system_id: i64,
    /// Test system name.
    pub system_name: String,
    /// Who started it.
    pub started_by: String,
    /// Engine instance.
    pub owner: String,
    /// Overall deadline (store timestamp).
    pub deadline_at: String,
}

/// Insert a `running` test. Refused with [`StoreError::Conflict`] when the system already
/// has a running test (the partial unique index `uq_tests_running_system`).
pub fn begin(conn: &Connection, t: &NewTest) -> StoreResult<i64> {
    let r = conn.execute(
        "INSERT INTO tests (queue_id, advisory, system_id, system_name, status, started_by, \
         owner, deadline_at) VALUES (?1, ?2, ?3, ?4, 'running', ?5, ?6, ?7)",
        params![
            t.queue_id,
            t.advisory,
            t.system_id,
            t.system_name,
            t.started_by,
            t.owner,
            t.deadline_at
        ],
    );
    match r {
        Ok(_) => Ok(conn.last_insert_rowid()),
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            Err(StoreError::Conflict(format!(
                "test system {} ({}) already runs a test",
                t.system_name, t.system_id
            )))
        }
        Err(e) => Err(e.into()),
    }
}

/// One test.
pub fn get(conn: &Connection, id: i64) -> StoreResult<TestRow> {
    conn.query_row(
        &format!("SELECT {TEST_COLUMNS} FROM tests WHERE id = ?1"),
        [id],
        row_to_test,
    )
    .optional()?
    .ok_or(StoreError::NotFound {
        what: "test",
        id: id.to_string(),
    })
}

/// Tests, newest first; optionally only those of one queue item or one status.
pub fn list(
    conn: &Connection,
    queue_id: Option<i64>,
    status: Option<TestStatus>,
    limit: u32,
) -> StoreResult<Vec<TestRow>> {
    let mut st = conn.prepare(&format!(
        "SELECT {TEST_COLUMNS} FROM tests WHERE (?1 IS NULL OR queue_id = ?1) \
         AND (?2 IS NULL OR status = ?2) ORDER BY id DESC LIMIT ?3"
    ))?;
    let rows = st
        .query_map(
            params![queue_id, status.map(|s| s.as_str()), limit.min(10_000)],
            row_to_test,
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// Phases of a test in order.
pub fn phases(conn: &Connection, test_id: i64) -> StoreResult<Vec<PhaseRow>> {
    let mut st = conn.prepare(
        "SELECT id, test_id, phase, seq, status, script_path, script_hash, started_at, \
         completed_at, duration_ms, output, data, error_kind, error FROM test_phases \
         WHERE test_id = ?1 ORDER BY seq, id",
    )?;
    let rows = st
        .query_map([test_id], row_to_phase)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// Replace the phase state of a running test.
pub fn set_state(conn: &Connection, test_id: i64, state: &Value) -> StoreResult<()> {
    conn.execute(
        "UPDATE tests SET state = ?2 WHERE id = ?1",
        params![test_id, state.to_string()],
    )?;
    Ok(())
}

/// Start a phase row.
pub fn start_phase(
    conn: &Connection,
    test_id: i64,
    phase: &str,
    seq: i64,
    script: Option<(&str, &str)>,
) -> StoreResult<i64> {
    conn.execute(
        "INSERT INTO test_phases (test_id, phase, seq, status, script_path, script_hash) \
         VALUES (?1, ?2, ?3, 'running', ?4, ?5)",
        params![
            test_id,
            phase,
            seq,
            script.map(|s| s.0),
            script.map(|s| s.1)
        ],
    )?;
    Ok(conn.last_insert_rowid())
}

/// How a phase ended.
#[derive(Debug, Clone, PartialEq)]
pub struct PhaseEnd {
    /// Final status (not `running`).
    pub status: PhaseStatus,
    /// Script that ran (known only once it loaded).
    pub script: Option<(String, String)>,
    /// Duration.
    pub duration_ms: i64,
    /// Output excerpt (bounded by the caller).
    pub output: String,
    /// Data.
    pub data: Value,
    /// Error kind and message.
    pub error: Option<(String, String)>,
}

/// Close a running phase.
pub fn finish_phase(conn: &Connection, phase_id: i64, end: &PhaseEnd) -> StoreResult<()> {
    PhaseStatus::check(PhaseStatus::Running, end.status, phase_id)?;
    let n = conn.execute(
        "UPDATE test_phases SET status = ?2, completed_at = ?3, duration_ms = ?4, output = ?5, \
         data = ?6, error_kind = ?7, error = ?8, \
         script_path = COALESCE(?9, script_path), script_hash = COALESCE(?10, script_hash) \
         WHERE id = ?1 AND status = 'running'",
        params![
            phase_id,
            end.status.as_str(),
            now_ts(),
            end.duration_ms,
            end.output,
            end.data.to_string(),
            end.error.as_ref().map(|e| e.0.as_str()),
            end.error.as_ref().map(|e| e.1.as_str()),
            end.script.as_ref().map(|s| s.0.as_str()),
            end.script.as_ref().map(|s| s.1.as_str()),
        ],
    )?;
    if n == 0 {
        return Err(lost("test phase", phase_id, PhaseStatus::Running.as_str()));
    }
    Ok(())
}

fn lost(what: &'static str, id: i64, expected: &str) -> StoreError {
    StoreError::Transition(TransitionError::Lost {
        what,
        id: id.to_string(),
        expected: expected.to_string(),
    })
}

/// How a test ended.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TestEnd {
    /// Final status (not `running`); `None` is invalid.
    pub status: Option<TestStatus>,
    /// Failure class.
    pub failure_class: Option<String>,
    /// Failing phase.
    pub failure_phase: Option<String>,
    /// Reason.
    pub failure_reason: Option<String>,
    /// Snapshot number.
    pub snapshot_id: Option<String>,
    /// Rollback strategy.
    pub rollback_strategy: Option<String>,
    /// Rollback status (`not_needed`, `verified`, `failed`).
    pub rollback_status: Option<String>,
    /// A reboot happened.
    pub reboot_performed: bool,
    /// Evidence.
    pub evidence: Value,
    /// Scripts used.
    pub scripts: Value,
    /// Final state.
    pub state: Value,
}

/// Close a running test.
pub fn finish(conn: &Connection, test_id: i64, end: &TestEnd) -> StoreResult<()> {
    let status = end
        .status
        .ok_or_else(|| StoreError::Conflict("a finished test needs a status".into()))?;
    TestStatus::check(TestStatus::Running, status, test_id)?;
    let n = conn.execute(
        "UPDATE tests SET status = ?2, failure_class = ?3, failure_phase = ?4, \
         failure_reason = ?5, snapshot_id = ?6, rollback_strategy = ?7, rollback_status = ?8, \
         reboot_performed = ?9, evidence = ?10, scripts = ?11, state = ?12, completed_at = ?13 \
         WHERE id = ?1 AND status = 'running'",
        params![
            test_id,
            status.as_str(),
            end.failure_class,
            end.failure_phase,
            end.failure_reason,
            end.snapshot_id,
            end.rollback_strategy,
            end.rollback_status,
            i64::from(end.reboot_performed),
            end.evidence.to_string(),
            end.scripts.to_string(),
            end.state.to_string(),
            now_ts(),
        ],
    )?;
    if n == 0 {
        return Err(lost("test", test_id, TestStatus::Running.as_str()));
    }
    Ok(())
}

/// Ask the engine running `test_id` to abort it. Refused when the test is not running.
pub fn request_abort(conn: &Connection, test_id: i64, reason: &str) -> StoreResult<TestRow> {
    let n = conn.execute(
        "UPDATE tests SET abort_requested = ?2 WHERE id = ?1 AND status = 'running'",
        params![test_id, reason],
    )?;
    let t = get(conn, test_id)?;
    if n == 0 {
        return Err(StoreError::Conflict(format!(
            "test {test_id} is {}, not running; nothing to abort",
            t.status.as_str()
        )));
    }
    Ok(t)
}

/// The pending abort reason of a test, if any.
pub fn abort_requested(conn: &Connection, test_id: i64) -> StoreResult<Option<String>> {
    Ok(conn
        .query_row(
            "SELECT abort_requested FROM tests WHERE id = ?1",
            [test_id],
            |r| r.get::<_, Option<String>>(0),
        )
        .optional()?
        .flatten())
}

/// Record a UYUNI action scheduled for a test (status `pending`).
pub fn record_action(
    conn: &Connection,
    action_id: i64,
    kind: &str,
    test_id: Option<i64>,
    system_ids: &[i64],
) -> StoreResult<()> {
    let ids = serde_json::to_string(system_ids)
        .map_err(|e| StoreError::Task(format!("encode system ids: {e}")))?;
    conn.execute(
        "INSERT INTO uyuni_actions (action_id, kind, test_id, system_ids, status) \
         VALUES (?1, ?2, ?3, ?4, 'pending') ON CONFLICT(action_id) DO UPDATE SET \
         kind = excluded.kind, test_id = excluded.test_id, system_ids = excluded.system_ids, \
         status = 'pending', updated_at = excluded.updated_at",
        params![action_id, kind, test_id, ids],
    )?;
    Ok(())
}

/// Set the final status of a recorded action (`completed`, `failed`, `cancelled`,
/// `unknown`).
pub fn finish_action(conn: &Connection, action_id: i64, status: &str) -> StoreResult<()> {
    conn.execute(
        "UPDATE uyuni_actions SET status = ?2, updated_at = ?3 WHERE action_id = ?1",
        params![action_id, status, now_ts()],
    )?;
    Ok(())
}

/// A recorded action still `pending`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PendingAction {
    /// UYUNI action id.
    pub action_id: i64,
    /// Kind (`script`, `errata`, `reboot`).
    pub kind: String,
    /// Test it belongs to.
    pub test_id: Option<i64>,
    /// Targeted systems.
    pub system_ids: Vec<i64>,
}

/// Pending actions, of one test or of all tests.
pub fn pending_actions(conn: &Connection, test_id: Option<i64>) -> StoreResult<Vec<PendingAction>> {
    let mut st = conn.prepare(
        "SELECT action_id, kind, test_id, system_ids FROM uyuni_actions \
         WHERE status = 'pending' AND (?1 IS NULL OR test_id = ?1) ORDER BY action_id",
    )?;
    let rows = st
        .query_map([test_id], |r| {
            let ids: String = r.get(3)?;
            Ok(PendingAction {
                action_id: r.get(0)?,
                kind: r.get(1)?,
                test_id: r.get(2)?,
                system_ids: serde_json::from_str(&ids).unwrap_or_default(),
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// Start a rollback record.
pub fn begin_rollback(
    conn: &Connection,
    test_id: i64,
    system_id: i64,
    strategy: &str,
    reason: &str,
    initiated_by: &str,
) -> StoreResult<i64> {
    conn.execute(
        "INSERT INTO rollbacks (test_id, system_id, strategy, status, reason, initiated_by) \
         VALUES (?1, ?2, ?3, 'running', ?4, ?5)",
        params![test_id, system_id, strategy, reason, initiated_by],
    )?;
    Ok(conn.last_insert_rowid())
}

/// Close a running rollback (`verified`, `failed`, `interrupted`).
pub fn finish_rollback(
    conn: &Connection,
    rollback_id: i64,
    status: &str,
    details: &Value,
) -> StoreResult<()> {
    conn.execute(
        "UPDATE rollbacks SET status = ?2, details = ?3, completed_at = ?4 \
         WHERE id = ?1 AND status = 'running'",
        params![rollback_id, status, details.to_string(), now_ts()],
    )?;
    Ok(())
}

/// Rollbacks of a test: `(strategy, status, details)`.
pub fn rollbacks(conn: &Connection, test_id: i64) -> StoreResult<Vec<(String, String, Value)>> {
    let mut st = conn.prepare(
        "SELECT strategy, status, details FROM rollbacks WHERE test_id = ?1 ORDER BY id",
    )?;
    let rows = st
        .query_map([test_id], |r| Ok((r.get(0)?, r.get(1)?, json_col(r, 2)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// A notification row (`notifications`), picked up by the notifier.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NewNotification {
    /// Event (`pending_approval`, `test_failed`, …).
    pub event: String,
    /// `info`, `warning`, `critical`.
    pub severity: String,
    /// Subject.
    pub subject: String,
    /// Body.
    pub body: String,
    /// Advisory.
    pub advisory: Option<String>,
    /// Queue item.
    pub queue_id: Option<i64>,
    /// Test.
    pub test_id: Option<i64>,
    /// The event's details for the notification templates and webhooks (an object; `Null`
    /// stores `{}` and the subject and body above are used as they are).
    pub data: serde_json::Value,
}

/// Insert a notification. The notifier routes it and, when `data` is an object with fields,
/// renders the event's templates over the subject and body given here.
pub fn notify(conn: &Connection, n: &NewNotification) -> StoreResult<i64> {
    let data = if n.data.is_null() {
        "{}".to_string()
    } else {
        n.data.to_string()
    };
    conn.execute(
        "INSERT INTO notifications (event, severity, subject, body, advisory, queue_id, test_id, data) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            n.event, n.severity, n.subject, n.body, n.advisory, n.queue_id, n.test_id, data
        ],
    )?;
    Ok(conn.last_insert_rowid())
}

/// Notification events of a queue item, oldest first (for tests and `spm test show`).
pub fn notification_events(conn: &Connection, queue_id: i64) -> StoreResult<Vec<String>> {
    let mut st = conn.prepare("SELECT event FROM notifications WHERE queue_id = ?1 ORDER BY id")?;
    let rows = st
        .query_map([queue_id], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// Add one test outcome to the risk profile's history of (advisory, os): times tested,
/// times failed, last failure reason, last result. Creates the profile when missing.
pub fn record_history(
    conn: &Connection,
    advisory: &str,
    os: &str,
    result: &str,
    failure_reason: Option<&str>,
) -> StoreResult<()> {
    let failed = i64::from(failure_reason.is_some());
    let now = now_ts();
    conn.execute(
        "INSERT INTO risk_profiles (advisory, os, times_tested, times_failed, \
         last_failure_reason, last_test_at, last_test_result, updated_at) \
         VALUES (?1, ?2, 1, ?3, ?4, ?5, ?6, ?5) \
         ON CONFLICT(advisory, os) DO UPDATE SET times_tested = times_tested + 1, \
         times_failed = times_failed + ?3, \
         last_failure_reason = COALESCE(?4, last_failure_reason), last_test_at = ?5, \
         last_test_result = ?6, updated_at = ?5",
        params![advisory, os, failed, failure_reason, now, result],
    )?;
    Ok(())
}

/// Close a test left `running` by a process that stopped: the test becomes `interrupted`
/// with `reason`, its running phases `interrupted`, its running rollbacks `interrupted`.
pub fn interrupt(conn: &Connection, test_id: i64, reason: &str) -> StoreResult<()> {
    let now = now_ts();
    conn.execute(
        "UPDATE test_phases SET status = 'interrupted', completed_at = ?2, error_kind = 'interrupted', \
         error = ?3 WHERE test_id = ?1 AND status = 'running'",
        params![test_id, now, reason],
    )?;
    conn.execute(
        "UPDATE rollbacks SET status = 'interrupted', completed_at = ?2 \
         WHERE test_id = ?1 AND status = 'running'",
        params![test_id, now],
    )?;
    let n = conn.execute(
        "UPDATE tests SET status = 'interrupted', failure_reason = ?2, completed_at = ?3, \
         rollback_status = CASE WHEN rollback_status = 'running' THEN 'failed' ELSE rollback_status END \
         WHERE id = ?1 AND status = 'running'",
        params![test_id, reason, now],
    )?;
    if n == 0 {
        return Err(lost("test", test_id, TestStatus::Running.as_str()));
    }
    Ok(())
}

/// Set the rollback columns of a running test (so a crash mid-rollback is visible).
pub fn set_rollback(
    conn: &Connection,
    test_id: i64,
    strategy: Option<&str>,
    status: &str,
) -> StoreResult<()> {
    conn.execute(
        "UPDATE tests SET rollback_strategy = COALESCE(?2, rollback_strategy), \
         rollback_status = ?3 WHERE id = ?1",
        params![test_id, strategy, status],
    )?;
    Ok(())
}

/// Claim queue item `id` for a test (an operator's `spm test run <id>`): `queued`,
/// `waiting_system` or `retry_pending` (even before `retry_after`) → `testing` with a lease.
pub fn claim_item(
    conn: &Connection,
    id: i64,
    owner: &str,
    lease_until: &str,
) -> StoreResult<crate::store::queue::QueueItem> {
    let n = conn.execute(
        "UPDATE queue_items SET status = 'testing', started_at = ?3, updated_at = ?3, \
         lease_owner = ?2, lease_until = ?4 \
         WHERE id = ?1 AND status IN ('queued','waiting_system','retry_pending')",
        params![id, owner, now_ts(), lease_until],
    )?;
    let item = crate::store::queue::get(conn, id)?;
    if n == 0 {
        return Err(StoreError::Conflict(format!(
            "queue item {id} is {}, not queued, waiting for a system or waiting for a retry",
            item.status.as_str()
        )));
    }
    Ok(item)
}

/// Claim the next item to test, in queue order: `queued`, `retry_pending` whose
/// `retry_after` is due, or `waiting_system` last checked before `recheck_before` (so an
/// item with no test system does not hold the head of the queue). Conditional update on
/// the status read; `None` when nothing is claimable.
pub fn claim_next(
    conn: &Connection,
    owner: &str,
    lease_until: &str,
    recheck_before: &str,
) -> StoreResult<Option<crate::store::queue::QueueItem>> {
    let now = now_ts();
    for _ in 0..8 {
        let candidate: Option<(i64, String)> = conn
            .query_row(
                "SELECT id, status FROM queue_items WHERE status = 'queued' \
                 OR (status = 'retry_pending' AND (retry_after IS NULL OR retry_after <= ?1)) \
                 OR (status = 'waiting_system' AND updated_at <= ?2) \
                 ORDER BY score DESC, priority DESC, queued_at ASC, id ASC LIMIT 1",
                params![now, recheck_before],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((id, status)) = candidate else {
            return Ok(None);
        };
        let n = conn.execute(
            "UPDATE queue_items SET status = 'testing', started_at = ?3, updated_at = ?3, \
             lease_owner = ?4, lease_until = ?5 WHERE id = ?1 AND status = ?2",
            params![id, status, now, owner, lease_until],
        )?;
        if n == 1 {
            return crate::store::queue::get(conn, id).map(Some);
        }
    }
    Ok(None)
}

/// Running tests (crash-recovery input), oldest first.
pub fn running(conn: &Connection) -> StoreResult<Vec<TestRow>> {
    let mut st = conn.prepare(&format!(
        "SELECT {TEST_COLUMNS} FROM tests WHERE status = 'running' ORDER BY id"
    ))?;
    let rows = st
        .query_map([], row_to_test)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn store_with_item() -> (Store, i64) {
        let store = Store::open_in_memory().unwrap();
        let id = store
            .write_blocking(|tx| {
                tx.execute(
                    "INSERT INTO errata (advisory) VALUES ('USN-1-1')",
                    [],
                )?;
                tx.execute(
                    "INSERT INTO queue_items (advisory, os, queued_by) VALUES ('USN-1-1', 'ubuntu', 't')",
                    [],
                )?;
                Ok(tx.last_insert_rowid())
            })
            .unwrap();
        (store, id)
    }

    fn new_test(q: i64, system: i64) -> NewTest {
        NewTest {
            queue_id: q,
            advisory: "USN-1-1".into(),
            system_id: system,
            system_name: "t".into(),
            started_by: "me".into(),
            owner: "o".into(),
            deadline_at: now_ts(),
        }
    }

    #[test]
    fn one_running_test_per_system_and_terminal_states_stay() {
        let (store, q) = store_with_item();
        let t = store
            .write_blocking(|tx| begin(tx, &new_test(q, 7)))
            .unwrap();
        let again = store.write_blocking(|tx| begin(tx, &new_test(q, 7)));
        assert!(matches!(again, Err(StoreError::Conflict(m)) if m.contains("already runs")));
        store
            .write_blocking(|tx| begin(tx, &new_test(q, 8)))
            .unwrap();
        let end = TestEnd {
            status: Some(TestStatus::Passed),
            ..TestEnd::default()
        };
        store.write_blocking(|tx| finish(tx, t, &end)).unwrap();
        let twice = store.write_blocking(|tx| finish(tx, t, &end));
        assert!(matches!(twice, Err(StoreError::Transition(_))));
        // The system is free again.
        store
            .write_blocking(|tx| begin(tx, &new_test(q, 7)))
            .unwrap();
    }

    #[test]
    fn interrupt_closes_phases_and_rollbacks() {
        let (store, q) = store_with_item();
        let t = store
            .write_blocking(|tx| begin(tx, &new_test(q, 7)))
            .unwrap();
        store
            .write_blocking(|tx| {
                start_phase(tx, t, "patch", 2, Some(("phases/patch.lua", "abc")))?;
                begin_rollback(tx, t, 7, "package", "why", "engine")?;
                record_action(tx, 55, "errata", Some(t), &[7])?;
                interrupt(tx, t, "stopped")
            })
            .unwrap();
        let row = store.read_blocking(|c| get(c, t)).unwrap();
        assert_eq!(row.status, TestStatus::Interrupted);
        let ph = store.read_blocking(|c| phases(c, t)).unwrap();
        assert_eq!(ph[0].status, PhaseStatus::Interrupted);
        let rb = store.read_blocking(|c| rollbacks(c, t)).unwrap();
        assert_eq!(rb[0].1, "interrupted");
        let pending = store
            .read_blocking(|c| pending_actions(c, Some(t)))
            .unwrap();
        assert_eq!(pending[0].system_ids, vec![7]);
    }
}
