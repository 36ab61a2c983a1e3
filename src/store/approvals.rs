//! Approval decisions (`approvals`, append-only: triggers forbid UPDATE and DELETE).
//!
//! Rows are appended in the same transaction as the queue transition they record (see
//! `engine::approvals`); this module only reads and appends.

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::{StoreResult, now_ts};

/// What a decision did (the schema's CHECK on `approvals.action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalAction {
    /// pending_approval → approved.
    Approved,
    /// pending_approval → rejected.
    Rejected,
    /// pending_approval → snoozed.
    Snoozed,
    /// snoozed → pending_approval (the snooze expired).
    Unsnoozed,
}

impl ApprovalAction {
    /// The text stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalAction::Approved => "approved",
            ApprovalAction::Rejected => "rejected",
            ApprovalAction::Snoozed => "snoozed",
            ApprovalAction::Unsnoozed => "unsnoozed",
        }
    }
}

/// A decision to append.
#[derive(Debug, Clone, PartialEq)]
pub struct NewApproval {
    /// The queue item decided.
    pub queue_id: i64,
    /// Its advisory.
    pub advisory: String,
    /// Its OS.
    pub os: String,
    /// What was decided.
    pub action: ApprovalAction,
    /// Authenticated identity (`cli:<user>`, an API token name, `system`).
    pub actor: String,
    /// Why.
    pub reason: Option<String>,
    /// Snoozed until (RFC 3339 store text), for `snoozed`.
    pub snooze_until: Option<String>,
    /// Where the decision came from (client address, `local`).
    pub source_addr: Option<String>,
    /// The test whose evidence was shown.
    pub evidence_test_id: Option<i64>,
}

/// A stored decision.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApprovalRecord {
    /// Row id.
    pub id: i64,
    /// The queue item.
    pub queue_id: i64,
    /// Advisory.
    pub advisory: String,
    /// OS.
    pub os: String,
    /// `approved`, `rejected`, `snoozed`, `unsnoozed`.
    pub action: String,
    /// Who.
    pub actor: String,
    /// Why.
    pub reason: Option<String>,
    /// Snoozed until.
    pub snooze_until: Option<String>,
    /// From where.
    pub source_addr: Option<String>,
    /// Evidence shown.
    pub evidence_test_id: Option<i64>,
    /// When.
    pub created_at: String,
}

const COLUMNS: &str = "id, queue_id, advisory, os, action, actor, reason, snooze_until, \
    source_addr, evidence_test_id, created_at";

fn row_to_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<ApprovalRecord> {
    Ok(ApprovalRecord {
        id: r.get(0)?,
        queue_id: r.get(1)?,
        advisory: r.get(2)?,
        os: r.get(3)?,
        action: r.get(4)?,
        actor: r.get(5)?,
        reason: r.get(6)?,
        snooze_until: r.get(7)?,
        source_addr: r.get(8)?,
        evidence_test_id: r.get(9)?,
        created_at: r.get(10)?,
    })
}

/// Append one decision; returns its id.
pub fn append(conn: &Connection, a: &NewApproval) -> StoreResult<i64> {
    conn.execute(
        "INSERT INTO approvals (queue_id, advisory, os, action, actor, reason, snooze_until, \
         source_addr, evidence_test_id, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            a.queue_id,
            a.advisory,
            a.os,
            a.action.as_str(),
            a.actor,
            a.reason,
            a.snooze_until,
            a.source_addr,
            a.evidence_test_id,
            now_ts(),
        ],
    )?;
    Ok(conn.last_insert_rowid())
}

/// Every decision on one queue item, oldest first.
pub fn history(conn: &Connection, queue_id: i64) -> StoreResult<Vec<ApprovalRecord>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM approvals WHERE queue_id = ?1 ORDER BY id"
    ))?;
    let rows = stmt
        .query_map([queue_id], row_to_record)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// The latest `approved` decision for (advisory, os), if any, among items still approved
/// or in production (the change record a patch run relies on).
pub fn latest_approval(
    conn: &Connection,
    advisory: &str,
    os: &str,
) -> StoreResult<Option<ApprovalRecord>> {
    Ok(conn
        .query_row(
            &format!(
                "SELECT {COLUMNS} FROM approvals WHERE advisory = ?1 AND os = ?2 \
                 AND action = 'approved' ORDER BY id DESC LIMIT 1"
            ),
            params![advisory, os],
            row_to_record,
        )
        .optional()?)
}

/// Snoozed items whose *latest* snooze decision has `snooze_until <= now` (an older,
/// expired snooze row never wakes an item snoozed again later). Returns
/// `(queue_id, snooze_until)` pairs in id order.
pub fn expired_snoozes(conn: &Connection, now: &str) -> StoreResult<Vec<(i64, String)>> {
    let mut stmt = conn.prepare(
        "SELECT q.id, a.snooze_until FROM queue_items q \
         JOIN approvals a ON a.id = (SELECT max(id) FROM approvals \
              WHERE queue_id = q.id AND action = 'snoozed') \
         WHERE q.status = 'snoozed' AND a.snooze_until IS NOT NULL AND a.snooze_until <= ?1 \
         ORDER BY q.id",
    )?;
    let rows = stmt
        .query_map([now], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// An item waiting for a decision (the `v_pending_approvals` view).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PendingApproval {
    /// Queue item id.
    pub id: i64,
    /// Advisory.
    pub advisory: String,
    /// OS.
    pub os: String,
    /// Success Score.
    pub score: i64,
    /// Severity of the erratum.
    pub severity: String,
    /// Synopsis of the erratum.
    pub synopsis: String,
    /// When the test finished.
    pub completed_at: Option<String>,
    /// The test whose evidence decides it.
    pub last_test_id: Option<i64>,
    /// Hours since the test finished.
    pub hours_pending: Option<f64>,
    /// Who queued it.
    pub queued_by: String,
}

/// Items in `pending_approval`, oldest first.
pub fn pending(conn: &Connection) -> StoreResult<Vec<PendingApproval>> {
    let mut stmt = conn.prepare(
        "SELECT v.id, v.advisory, v.os, v.score, v.severity, v.synopsis, v.completed_at, \
         v.last_test_id, v.hours_pending, q.queued_by \
         FROM v_pending_approvals v JOIN queue_items q ON q.id = v.id \
         ORDER BY v.completed_at, v.id",
    )?;
    let rows = stmt
        .query_map([], |r| {
            Ok(PendingApproval {
                id: r.get(0)?,
                advisory: r.get(1)?,
                os: r.get(2)?,
                score: r.get(3)?,
                severity: r.get(4)?,
                synopsis: r.get(5)?,
                completed_at: r.get(6)?,
                last_test_id: r.get(7)?,
                hours_pending: r.get(8)?,
                queued_by: r.get(9)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// Identities that started tests of a queue item (`tests.started_by`), for the four-eyes
/// rule: whoever forced a test cannot approve it.
pub fn test_starters(conn: &Connection, queue_id: i64) -> StoreResult<Vec<String>> {
    let mut stmt = conn.prepare(
        "SELECT DISTINCT started_by FROM tests WHERE queue_id = ?1 AND started_by IS NOT NULL",
    )?;
    let rows = stmt
        .query_map([queue_id], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// The queue item a test belongs to, if the test exists.
pub fn test_queue_id(conn: &Connection, test_id: i64) -> StoreResult<Option<i64>> {
    Ok(conn
        .query_row("SELECT queue_id FROM tests WHERE id = ?1", [test_id], |r| {
            r.get(0)
        })
        .optional()?)
}
