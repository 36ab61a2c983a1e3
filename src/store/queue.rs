//! The test queue aggregate (`queue_items`).
//!
//! Every function takes a connection; writes are meant to run inside
//! [`Store::write`](super::Store::write) / [`Store::write_blocking`](super::Store::write_blocking)
//! (a `&Transaction` derefs to `&Connection`), so a caller can append an audit row in the
//! same transaction.
//!
//! Status changes go only through [`transition`] (state-machine check plus a conditional
//! `UPDATE … WHERE id=? AND status=?`) and [`claim_next`] (the lease claim). Both are written
//! so they map onto PostgreSQL's `FOR UPDATE SKIP LOCKED` later.
//!
//! Ordering everywhere is the schema's `idx_queue_order`: score desc, priority desc,
//! queued_at asc (then id asc, to be total).

use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params, types::Value};
use serde::Serialize;

use super::{StoreError, StoreResult, format_ts, now_ts, status_col};
use crate::engine::state::{QueueStatus, Status, TransitionError};

/// The operating systems a queue item can target (the schema's CHECK).
pub const QUEUE_OS: &[&str] = &["ubuntu", "debian", "rhel"];

/// Largest page [`list`] returns.
pub const MAX_PAGE: u32 = 1000;

/// One queue item, joined with its erratum's synopsis and severity.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueItem {
    /// Row id.
    pub id: i64,
    /// Advisory name.
    pub advisory: String,
    /// Target OS (`ubuntu`, `debian`, `rhel`).
    pub os: String,
    /// Current status.
    pub status: QueueStatus,
    /// Success Score when queued (0–100).
    pub score: i64,
    /// Operator priority (higher first among equal scores).
    pub priority: i64,
    /// Test on every test system of the OS rather than one.
    pub require_all_systems: bool,
    /// When it was queued.
    pub queued_at: String,
    /// Who queued it.
    pub queued_by: String,
    /// When the (last) test started.
    pub started_at: Option<String>,
    /// When the test finished, or the item reached a terminal state.
    pub completed_at: Option<String>,
    /// The test whose evidence decides the item.
    pub last_test_id: Option<i64>,
    /// Retries so far.
    pub retry_count: i64,
    /// Not before this time when `retry_pending`.
    pub retry_after: Option<String>,
    /// The advisory that replaced this one.
    pub superseded_by: Option<String>,
    /// Snoozed until.
    pub snooze_until: Option<String>,
    /// Free-form notes.
    pub notes: Option<String>,
    /// Engine instance holding the test lease.
    pub lease_owner: Option<String>,
    /// Lease expiry.
    pub lease_until: Option<String>,
    /// Last change.
    pub updated_at: String,
    /// The erratum's synopsis.
    pub synopsis: String,
    /// The erratum's severity.
    pub severity: String,
}

const COLUMNS: &str = "q.id, q.advisory, q.os, q.status, q.score, q.priority, \
    q.require_all_systems, q.queued_at, q.queued_by, q.started_at, q.completed_at, \
    q.last_test_id, q.retry_count, q.retry_after, q.superseded_by, q.snooze_until, q.notes, \
    q.lease_owner, q.lease_until, q.updated_at, e.synopsis, e.severity";

const FROM: &str = "FROM queue_items q JOIN errata e ON e.advisory = q.advisory";

const ORDER: &str = "ORDER BY q.score DESC, q.priority DESC, q.queued_at ASC, q.id ASC";

fn row_to_item(r: &rusqlite::Row<'_>) -> rusqlite::Result<QueueItem> {
    Ok(QueueItem {
        id: r.get(0)?,
        advisory: r.get(1)?,
        os: r.get(2)?,
        status: status_col(r, 3)?,
        score: r.get(4)?,
        priority: r.get(5)?,
        require_all_systems: r.get::<_, i64>(6)? != 0,
        queued_at: r.get(7)?,
        queued_by: r.get(8)?,
        started_at: r.get(9)?,
        completed_at: r.get(10)?,
        last_test_id: r.get(11)?,
        retry_count: r.get(12)?,
        retry_after: r.get(13)?,
        superseded_by: r.get(14)?,
        snooze_until: r.get(15)?,
        notes: r.get(16)?,
        lease_owner: r.get(17)?,
        lease_until: r.get(18)?,
        updated_at: r.get(19)?,
        synopsis: r.get(20)?,
        severity: r.get(21)?,
    })
}

/// A new queue item.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewQueueItem {
    /// Advisory name; must exist in `errata`.
    pub advisory: String,
    /// Target OS, one of [`QUEUE_OS`].
    pub os: String,
    /// Success Score (0–100).
    pub score: i64,
    /// Operator priority.
    pub priority: i64,
    /// Test on every test system of the OS.
    pub require_all_systems: bool,
    /// Who queues it (authenticated identity or `auto-queue`).
    pub queued_by: String,
    /// Free-form notes.
    pub notes: Option<String>,
}

/// Insert a queue item in status `queued` and return it.
///
/// A second *active* item for the same (advisory, OS) is refused by the partial unique index
/// `uq_queue_active`; that surfaces as [`StoreError::Conflict`] naming the existing item.
pub fn insert(conn: &Connection, new: &NewQueueItem) -> StoreResult<QueueItem> {
    if !QUEUE_OS.contains(&new.os.as_str()) {
        return Err(StoreError::Conflict(format!(
            "cannot queue {} for OS {:?}: the OS must be one of {}",
            new.advisory,
            new.os,
            QUEUE_OS.join(", ")
        )));
    }
    let known: Option<i64> = conn
        .query_row(
            "SELECT 1 FROM errata WHERE advisory = ?1",
            [&new.advisory],
            |r| r.get(0),
        )
        .optional()?;
    if known.is_none() {
        return Err(StoreError::NotFound {
            what: "advisory",
            id: new.advisory.clone(),
        });
    }
    let res = conn.execute(
        "INSERT INTO queue_items (advisory, os, score, priority, require_all_systems, \
         queued_by, notes, queued_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
        params![
            new.advisory,
            new.os,
            new.score,
            new.priority,
            new.require_all_systems as i64,
            new.queued_by,
            new.notes,
            now_ts(),
        ],
    );
    match res {
        Ok(_) => get(conn, conn.last_insert_rowid()),
        Err(e) if is_unique_violation(&e) => {
            let existing = find_active(conn, &new.advisory, &new.os)?;
            Err(StoreError::Conflict(match existing {
                Some(item) => format!(
                    "{} for {} is already in the queue as item {} (status {}); \
                     a new item can be queued once that one is finished",
                    new.advisory, new.os, item.id, item.status
                ),
                None => format!("{} for {} is already in the queue", new.advisory, new.os),
            }))
        }
        Err(e) => Err(e.into()),
    }
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
    )
}

/// One queue item by id.
pub fn get(conn: &Connection, id: i64) -> StoreResult<QueueItem> {
    conn.query_row(
        &format!("SELECT {COLUMNS} {FROM} WHERE q.id = ?1"),
        [id],
        row_to_item,
    )
    .optional()?
    .ok_or_else(|| StoreError::NotFound {
        what: "queue item",
        id: id.to_string(),
    })
}

/// The active item for (advisory, OS), if any.
pub fn find_active(conn: &Connection, advisory: &str, os: &str) -> StoreResult<Option<QueueItem>> {
    let inactive = inactive_list();
    Ok(conn
        .query_row(
            &format!(
                "SELECT {COLUMNS} {FROM} WHERE q.advisory = ?1 AND q.os = ?2 \
                 AND q.status NOT IN ({inactive})"
            ),
            params![advisory, os],
            row_to_item,
        )
        .optional()?)
}

fn inactive_list() -> String {
    QueueStatus::ALL
        .iter()
        .filter(|s| !s.is_active())
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(",")
}

/// Filters and page for [`list`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueFilter {
    /// Only these statuses (empty: all).
    pub statuses: Vec<QueueStatus>,
    /// Only this OS.
    pub os: Option<String>,
    /// Case-insensitive substring of the advisory name or synopsis.
    pub search: Option<String>,
    /// Page size (0 means the default of 50; capped at [`MAX_PAGE`]).
    pub limit: u32,
    /// Rows to skip.
    pub offset: u32,
}

/// A page of queue items plus the total matching the filter.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueuePage {
    /// Rows matching the filter, before paging.
    pub total: i64,
    /// Page size used.
    pub limit: u32,
    /// Offset used.
    pub offset: u32,
    /// The page, in queue order.
    pub items: Vec<QueueItem>,
}

/// List queue items matching `filter`, in queue order, one page at a time.
pub fn list(conn: &Connection, filter: &QueueFilter) -> StoreResult<QueuePage> {
    let mut clauses: Vec<String> = Vec::new();
    let mut args: Vec<Value> = Vec::new();
    if !filter.statuses.is_empty() {
        let marks: Vec<String> = filter
            .statuses
            .iter()
            .map(|s| {
                args.push(Value::Text(s.as_str().to_string()));
                format!("?{}", args.len())
            })
            .collect();
        clauses.push(format!("q.status IN ({})", marks.join(",")));
    }
    if let Some(os) = &filter.os {
        args.push(Value::Text(os.clone()));
        clauses.push(format!("q.os = ?{}", args.len()));
    }
    if let Some(q) = filter.search.as_deref().filter(|q| !q.is_empty()) {
        let escaped = q
            .to_lowercase()
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        args.push(Value::Text(format!("%{escaped}%")));
        let n = args.len();
        clauses.push(format!(
            "(lower(q.advisory) LIKE ?{n} ESCAPE '\\' OR lower(e.synopsis) LIKE ?{n} ESCAPE '\\')"
        ));
    }
    let filter_sql = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    // Every queue item references an existing erratum (foreign key), so without a search
    // on the synopsis the count needs no join: 10,000 index lookups saved per page.
    let count_from = if filter.search.as_deref().is_some_and(|q| !q.is_empty()) {
        FROM
    } else {
        "FROM queue_items q"
    };
    // Cached statements: the SQL text depends only on which filters are present.
    let total: i64 = conn
        .prepare_cached(&format!("SELECT count(*) {count_from} {filter_sql}"))?
        .query_row(rusqlite::params_from_iter(args.iter()), |r| r.get(0))?;
    let limit = match filter.limit {
        0 => 50,
        n => n.min(MAX_PAGE),
    };
    let mut page_args = args.clone();
    page_args.push(Value::Integer(i64::from(limit)));
    page_args.push(Value::Integer(i64::from(filter.offset)));
    let n = page_args.len();
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} {FROM} {filter_sql} {ORDER} LIMIT ?{} OFFSET ?{n}",
        n - 1
    ))?;
    let items = stmt
        .query_map(rusqlite::params_from_iter(page_args.iter()), row_to_item)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(QueuePage {
        total,
        limit,
        offset: filter.offset,
        items,
    })
}

/// Set an item's priority (any status). Returns the updated item.
pub fn set_priority(conn: &Connection, id: i64, priority: i64) -> StoreResult<QueueItem> {
    let n = conn.execute(
        "UPDATE queue_items SET priority = ?2, updated_at = ?3 WHERE id = ?1",
        params![id, priority, now_ts()],
    )?;
    if n == 0 {
        return Err(StoreError::NotFound {
            what: "queue item",
            id: id.to_string(),
        });
    }
    get(conn, id)
}

/// Delete an item that is still `queued` and has no test history.
pub fn remove(conn: &Connection, id: i64) -> StoreResult<()> {
    let res = conn.execute(
        "DELETE FROM queue_items WHERE id = ?1 AND status = 'queued'",
        [id],
    );
    match res {
        Ok(1) => Ok(()),
        Ok(_) => {
            let item = get(conn, id)?;
            Err(StoreError::Conflict(format!(
                "queue item {id} ({} for {}) is {}; only a queued item can be removed",
                item.advisory, item.os, item.status
            )))
        }
        Err(rusqlite::Error::SqliteFailure(f, _))
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY =>
        {
            Err(StoreError::Conflict(format!(
                "queue item {id} has test or approval history and cannot be removed"
            )))
        }
        Err(e) => Err(e.into()),
    }
}

/// Optional column changes applied together with a status transition.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TransitionExtra {
    /// Set `last_test_id`.
    pub last_test_id: Option<i64>,
    /// Set `retry_after` (used with `retry_pending`).
    pub retry_after: Option<chrono::DateTime<chrono::Utc>>,
    /// Set `superseded_by` (used with `superseded`).
    pub superseded_by: Option<String>,
    /// Set `snooze_until` (used with `snoozed`).
    pub snooze_until: Option<chrono::DateTime<chrono::Utc>>,
    /// Replace `notes`.
    pub notes: Option<String>,
}

/// Move item `id` from `from` to `to`.
///
/// Checks the edge against [`QueueStatus`]'s machine ([`TransitionError::Illegal`]), then
/// applies it with `UPDATE … WHERE id=? AND status=from`; when no row matches, the item is
/// missing ([`StoreError::NotFound`]) or another writer moved it first
/// ([`TransitionError::Lost`]). Nothing changes on error.
///
/// Bookkeeping done here: `testing` sets `started_at`; leaving a test for `passed`,
/// `failed` or `pending_approval` sets `completed_at` (terminal states fill it if empty);
/// `retry_pending` increments `retry_count`; leaving the in-test states clears the lease.
pub fn transition(
    conn: &Connection,
    id: i64,
    from: QueueStatus,
    to: QueueStatus,
    extra: &TransitionExtra,
) -> StoreResult<QueueItem> {
    QueueStatus::check(from, to, id)?;
    let now = now_ts();
    // ?1 id, ?2 expected status, ?3 new status, ?4 now; further values appended in order.
    let mut u = Assignments {
        sets: vec!["status = ?3".into(), "updated_at = ?4".into()],
        args: vec![
            Value::Integer(id),
            Value::Text(from.as_str().into()),
            Value::Text(to.as_str().into()),
            Value::Text(now.clone()),
        ],
    };
    if to == QueueStatus::Testing {
        u.raw("started_at = ?4");
    }
    if from.is_in_test()
        && matches!(
            to,
            QueueStatus::Passed | QueueStatus::Failed | QueueStatus::PendingApproval
        )
    {
        u.raw("completed_at = ?4");
    } else if to.is_terminal() || to == QueueStatus::Failed {
        u.raw("completed_at = COALESCE(completed_at, ?4)");
    }
    if to == QueueStatus::RetryPending {
        u.raw("retry_count = retry_count + 1");
    }
    if !to.is_in_test() {
        u.raw("lease_owner = NULL");
        u.raw("lease_until = NULL");
    }
    if let Some(t) = extra.last_test_id {
        u.set("last_test_id", Value::Integer(t));
    }
    if let Some(t) = extra.retry_after {
        u.set("retry_after", Value::Text(format_ts(t)));
    }
    if let Some(s) = &extra.superseded_by {
        u.set("superseded_by", Value::Text(s.clone()));
    }
    if let Some(t) = extra.snooze_until {
        u.set("snooze_until", Value::Text(format_ts(t)));
    }
    if let Some(n) = &extra.notes {
        u.set("notes", Value::Text(n.clone()));
    }
    let n = conn.execute(
        &format!(
            "UPDATE queue_items SET {} WHERE id = ?1 AND status = ?2",
            u.sets.join(", ")
        ),
        rusqlite::params_from_iter(u.args.iter()),
    )?;
    if n == 0 {
        return Err(lost_or_missing(conn, id, from)?);
    }
    get(conn, id)
}

/// The SET list of an UPDATE with its numbered parameters.
struct Assignments {
    sets: Vec<String>,
    args: Vec<Value>,
}

impl Assignments {
    /// `col = ?n` with `v` as parameter n.
    fn set(&mut self, col: &str, v: Value) {
        self.args.push(v);
        self.sets.push(format!("{col} = ?{}", self.args.len()));
    }

    /// A literal assignment (only fixed SQL, never input).
    fn raw(&mut self, sql: &str) {
        self.sets.push(sql.to_string());
    }
}

fn lost_or_missing(conn: &Connection, id: i64, expected: QueueStatus) -> StoreResult<StoreError> {
    let exists: Option<i64> = conn
        .query_row("SELECT 1 FROM queue_items WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .optional()?;
    Ok(match exists {
        None => StoreError::NotFound {
            what: "queue item",
            id: id.to_string(),
        },
        Some(_) => StoreError::Transition(TransitionError::Lost {
            what: QueueStatus::WHAT,
            id: id.to_string(),
            expected: expected.as_str().to_string(),
        }),
    })
}

/// Claim the next item to test: the first, in queue order, that is `queued`,
/// `waiting_system`, or `retry_pending` with `retry_after` due; optionally only for `os`.
///
/// The claim moves it to `testing` with `lease_owner = owner` and `lease_until = now +
/// lease`, by a conditional update on the status that was read (on PostgreSQL this becomes
/// `SELECT … FOR UPDATE SKIP LOCKED`). Returns `None` when nothing is claimable.
pub fn claim_next(
    conn: &Connection,
    owner: &str,
    lease: Duration,
    os: Option<&str>,
) -> StoreResult<Option<QueueItem>> {
    let now = chrono::Utc::now();
    let now_s = format_ts(now);
    let until = lease_until(now, lease);
    // A few attempts: a candidate that another writer took between read and update is
    // skipped (cannot happen under SQLite's single writer, can on a shared database).
    for _ in 0..8 {
        let candidate: Option<(i64, String)> = conn
            .query_row(
                &format!(
                    "SELECT q.id, q.status {FROM} WHERE \
                     (q.status IN ('queued','waiting_system') \
                      OR (q.status = 'retry_pending' AND (q.retry_after IS NULL OR q.retry_after <= ?1))) \
                     AND (?2 IS NULL OR q.os = ?2) {ORDER} LIMIT 1"
                ),
                params![now_s, os],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((id, status)) = candidate else {
            return Ok(None);
        };
        let n = conn.execute(
            "UPDATE queue_items SET status = 'testing', started_at = ?3, updated_at = ?3, \
             lease_owner = ?4, lease_until = ?5 WHERE id = ?1 AND status = ?2",
            params![id, status, now_s, owner, until],
        )?;
        if n == 1 {
            return get(conn, id).map(Some);
        }
    }
    Ok(None)
}

/// Longest lease accepted; longer requests are clamped (no overflow on absurd input).
pub const MAX_LEASE: Duration = Duration::from_secs(30 * 24 * 3600);

fn lease_until(now: chrono::DateTime<chrono::Utc>, lease: Duration) -> String {
    let lease =
        chrono::Duration::from_std(lease.min(MAX_LEASE)).unwrap_or(chrono::Duration::zero());
    format_ts(now.checked_add_signed(lease).unwrap_or(now))
}

/// Extend the lease of an item `owner` is testing. [`TransitionError::Lost`] when the item
/// is no longer in a test state held by `owner` (lease taken over or item moved on).
pub fn heartbeat(conn: &Connection, id: i64, owner: &str, lease: Duration) -> StoreResult<String> {
    let until = lease_until(chrono::Utc::now(), lease);
    let n = conn.execute(
        "UPDATE queue_items SET lease_until = ?3 WHERE id = ?1 AND lease_owner = ?2 \
         AND status IN ('testing','needs_reboot','rebooting')",
        params![id, owner, until],
    )?;
    if n == 0 {
        return Err(lost_or_missing(conn, id, QueueStatus::Testing)?);
    }
    Ok(until)
}

/// Items in a test state whose lease expired before `now` (crash recovery input).
pub fn expired_leases(
    conn: &Connection,
    now: chrono::DateTime<chrono::Utc>,
) -> StoreResult<Vec<QueueItem>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} {FROM} WHERE q.status IN ('testing','needs_reboot','rebooting') \
         AND (q.lease_until IS NULL OR q.lease_until < ?1) ORDER BY q.id"
    ))?;
    let rows = stmt
        .query_map([format_ts(now)], row_to_item)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// Count of items per status (statuses with no item are omitted).
pub fn counts_by_status(conn: &Connection) -> StoreResult<Vec<(QueueStatus, i64)>> {
    let mut stmt =
        conn.prepare("SELECT status, count(*) FROM queue_items GROUP BY status ORDER BY status")?;
    let rows = stmt
        .query_map([], |r| Ok((status_col(r, 0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::state::QueueStatus as Q;
    use crate::store::Store;

    fn store_with_errata(names: &[(&str, &str)]) -> Store {
        let store = Store::open_in_memory().unwrap();
        store
            .write_blocking(|tx| {
                for (adv, syn) in names {
                    tx.execute(
                        "INSERT INTO errata (advisory, synopsis, severity) VALUES (?1, ?2, 'high')",
                        params![adv, syn],
                    )?;
                }
                Ok(())
            })
            .unwrap();
        store
    }

    fn new(adv: &str, os: &str, score: i64, priority: i64) -> NewQueueItem {
        NewQueueItem {
            advisory: adv.into(),
            os: os.into(),
            score,
            priority,
            queued_by: "tester".into(),
            ..Default::default()
        }
    }

    #[test]
    fn insert_get_and_duplicate_conflict() {
        let s = store_with_errata(&[("USN-1-1", "openssl fix")]);
        let item = s
            .write_blocking(|tx| insert(tx, &new("USN-1-1", "ubuntu", 80, 0)))
            .unwrap();
        assert_eq!(item.status, Q::Queued);
        assert_eq!(item.synopsis, "openssl fix");
        let err = s
            .write_blocking(|tx| insert(tx, &new("USN-1-1", "ubuntu", 80, 0)))
            .unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, StoreError::Conflict(_)), "{msg}");
        assert!(msg.contains(&format!("item {}", item.id)), "{msg}");
        // Another OS is a different item.
        s.write_blocking(|tx| insert(tx, &new("USN-1-1", "debian", 80, 0)))
            .unwrap();
        // Unknown advisory and bad OS.
        assert!(matches!(
            s.write_blocking(|tx| insert(tx, &new("USN-9-9", "ubuntu", 1, 0))),
            Err(StoreError::NotFound { .. })
        ));
        assert!(matches!(
            s.write_blocking(|tx| insert(tx, &new("USN-1-1", "windows", 1, 0))),
            Err(StoreError::Conflict(_))
        ));
    }

    #[test]
    fn requeue_after_terminal_is_a_new_row() {
        let s = store_with_errata(&[("USN-1-1", "x")]);
        let a = s
            .write_blocking(|tx| insert(tx, &new("USN-1-1", "ubuntu", 50, 0)))
            .unwrap();
        s.write_blocking(|tx| {
            transition(tx, a.id, Q::Queued, Q::Testing, &TransitionExtra::default())?;
            transition(tx, a.id, Q::Testing, Q::Failed, &TransitionExtra::default())
        })
        .unwrap();
        let b = s
            .write_blocking(|tx| insert(tx, &new("USN-1-1", "ubuntu", 50, 0)))
            .unwrap();
        assert_ne!(a.id, b.id);
        let active = s
            .read_blocking(|c| find_active(c, "USN-1-1", "ubuntu"))
            .unwrap()
            .unwrap();
        assert_eq!(active.id, b.id);
        let old = s.read_blocking(|c| get(c, a.id)).unwrap();
        assert_eq!(old.status, Q::Failed);
        assert!(old.completed_at.is_some());
    }

    #[test]
    fn list_orders_filters_and_pages() {
        let s = store_with_errata(&[
            ("USN-1-1", "openssl fix"),
            ("USN-2-1", "kernel update"),
            ("RHSA-2026:1", "OpenSSL for rhel"),
            ("USN-3-1", "curl"),
        ]);
        s.write_blocking(|tx| {
            insert(tx, &new("USN-1-1", "ubuntu", 80, 0))?;
            insert(tx, &new("USN-2-1", "ubuntu", 40, 5))?;
            insert(tx, &new("RHSA-2026:1", "rhel", 80, 3))?;
            insert(tx, &new("USN-3-1", "ubuntu", 40, 5))?;
            Ok(())
        })
        .unwrap();
        let all = s
            .read_blocking(|c| list(c, &QueueFilter::default()))
            .unwrap();
        let order: Vec<&str> = all.items.iter().map(|i| i.advisory.as_str()).collect();
        // score desc, priority desc, queued_at asc (then id).
        assert_eq!(order, ["RHSA-2026:1", "USN-1-1", "USN-2-1", "USN-3-1"]);
        assert_eq!(all.total, 4);
        let f = QueueFilter {
            search: Some("OPENSSL".into()),
            ..Default::default()
        };
        let page = s.read_blocking(|c| list(c, &f)).unwrap();
        assert_eq!(page.total, 2);
        let f = QueueFilter {
            os: Some("ubuntu".into()),
            limit: 2,
            offset: 1,
            ..Default::default()
        };
        let page = s.read_blocking(|c| list(c, &f)).unwrap();
        assert_eq!(page.total, 3);
        let order: Vec<&str> = page.items.iter().map(|i| i.advisory.as_str()).collect();
        assert_eq!(order, ["USN-2-1", "USN-3-1"]);
        // LIKE wildcards in the search are literal.
        let f = QueueFilter {
            search: Some("%".into()),
            ..Default::default()
        };
        assert_eq!(s.read_blocking(|c| list(c, &f)).unwrap().total, 0);
        let f = QueueFilter {
            statuses: vec![Q::Testing],
            ..Default::default()
        };
        assert_eq!(s.read_blocking(|c| list(c, &f)).unwrap().total, 0);
    }

    #[test]
    fn transitions_illegal_lost_and_bookkeeping() {
        let s = store_with_errata(&[("USN-1-1", "x")]);
        let a = s
            .write_blocking(|tx| insert(tx, &new("USN-1-1", "ubuntu", 50, 0)))
            .unwrap();
        let none = TransitionExtra::default();
        let err = s
            .write_blocking(|tx| transition(tx, a.id, Q::Queued, Q::Approved, &none))
            .unwrap_err();
        assert!(matches!(
            err,
            StoreError::Transition(TransitionError::Illegal { .. })
        ));
        let err = s
            .write_blocking(|tx| transition(tx, a.id, Q::Testing, Q::Passed, &none))
            .unwrap_err();
        assert!(matches!(
            err,
            StoreError::Transition(TransitionError::Lost { .. })
        ));
        let err = s
            .write_blocking(|tx| transition(tx, 999, Q::Queued, Q::Testing, &none))
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound { .. }));
        let t = s
            .write_blocking(|tx| transition(tx, a.id, Q::Queued, Q::Testing, &none))
            .unwrap();
        assert!(t.started_at.is_some());
        let later = chrono::Utc::now() + chrono::Duration::hours(2);
        let r = s
            .write_blocking(|tx| {
                transition(
                    tx,
                    a.id,
                    Q::Testing,
                    Q::RetryPending,
                    &TransitionExtra {
                        retry_after: Some(later),
                        ..Default::default()
                    },
                )
            })
            .unwrap();
        assert_eq!(r.retry_count, 1);
        assert_eq!(r.retry_after.as_deref(), Some(format_ts(later).as_str()));
        // Not due yet: nothing to claim.
        let c = s
            .write_blocking(|tx| claim_next(tx, "w1", Duration::from_secs(60), None))
            .unwrap();
        assert!(c.is_none());
        let err = s.write_blocking(|tx| remove(tx, a.id)).unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)));
    }

    #[test]
    fn claim_heartbeat_and_expiry() {
        let s = store_with_errata(&[("USN-1-1", "x"), ("RHSA-1", "y")]);
        s.write_blocking(|tx| {
            insert(tx, &new("USN-1-1", "ubuntu", 10, 0))?;
            insert(tx, &new("RHSA-1", "rhel", 90, 0))
        })
        .unwrap();
        let got = s
            .write_blocking(|tx| claim_next(tx, "w1", Duration::from_secs(60), Some("ubuntu")))
            .unwrap()
            .unwrap();
        assert_eq!(got.advisory, "USN-1-1");
        assert_eq!(got.status, Q::Testing);
        assert_eq!(got.lease_owner.as_deref(), Some("w1"));
        // Nothing else for ubuntu.
        assert!(
            s.write_blocking(|tx| claim_next(tx, "w2", Duration::from_secs(60), Some("ubuntu")))
                .unwrap()
                .is_none()
        );
        s.write_blocking(|tx| heartbeat(tx, got.id, "w1", Duration::from_secs(60)))
            .unwrap();
        let err = s
            .write_blocking(|tx| heartbeat(tx, got.id, "w2", Duration::from_secs(60)))
            .unwrap_err();
        assert!(matches!(
            err,
            StoreError::Transition(TransitionError::Lost { .. })
        ));
        let soon = chrono::Utc::now() + chrono::Duration::minutes(5);
        let expired = s.read_blocking(|c| expired_leases(c, soon)).unwrap();
        assert_eq!(expired.len(), 1);
        let done = s
            .write_blocking(|tx| {
                transition(
                    tx,
                    got.id,
                    Q::Testing,
                    Q::PendingApproval,
                    &TransitionExtra::default(),
                )
            })
            .unwrap();
        assert!(done.lease_owner.is_none() && done.completed_at.is_some());
        let counts = s.read_blocking(counts_by_status).unwrap();
        assert!(counts.contains(&(Q::PendingApproval, 1)));
        assert!(counts.contains(&(Q::Queued, 1)));
    }

    #[test]
    fn priority_and_remove() {
        let s = store_with_errata(&[("USN-1-1", "x")]);
        let a = s
            .write_blocking(|tx| insert(tx, &new("USN-1-1", "ubuntu", 50, 0)))
            .unwrap();
        let p = s.write_blocking(|tx| set_priority(tx, a.id, 9)).unwrap();
        assert_eq!(p.priority, 9);
        assert!(matches!(
            s.write_blocking(|tx| set_priority(tx, 77, 1)),
            Err(StoreError::NotFound { .. })
        ));
        s.write_blocking(|tx| remove(tx, a.id)).unwrap();
        assert!(matches!(
            s.read_blocking(|c| get(c, a.id)),
            Err(StoreError::NotFound { .. })
        ));
    }
}
