//! Read-only views of the test queue for the API: filtered, paginated listings and the
//! detail of one item. Status changes live with the queue store, not here.

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params_from_iter};
use serde::Serialize;

use super::{StoreError, StoreResult};

/// Every queue status the schema allows.
pub const STATUSES: &[&str] = &[
    "queued",
    "waiting_system",
    "testing",
    "passed",
    "failed",
    "needs_reboot",
    "rebooting",
    "pending_approval",
    "approved",
    "rejected",
    "snoozed",
    "promoting",
    "prod_pending",
    "prod_applied",
    "completed",
    "rolled_back",
    "retry_pending",
    "superseded",
];

/// Operating systems a queue item can target.
pub const QUEUE_OS: &[&str] = &["ubuntu", "debian", "rhel"];

/// Filters for [`list`]. Values are validated by the caller.
#[derive(Debug, Clone, Default)]
pub struct QueueFilter {
    /// Exact status.
    pub status: Option<String>,
    /// Exact OS.
    pub os: Option<String>,
    /// Case-insensitive substring of the advisory name or synopsis.
    pub q: Option<String>,
}

/// One queue item as listings show it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct QueueRow {
    /// Queue item id.
    pub id: i64,
    /// Advisory name.
    pub advisory: String,
    /// Target OS.
    pub os: String,
    /// Status.
    pub status: String,
    /// Success Score (0-100).
    pub score: i64,
    /// Operator priority (higher first).
    pub priority: i64,
    /// When it was queued.
    pub queued_at: String,
    /// Who queued it.
    pub queued_by: String,
    /// When the current test started.
    pub started_at: Option<String>,
    /// When it finished.
    pub completed_at: Option<String>,
    /// Retries so far.
    pub retry_count: i64,
    /// Earliest next retry.
    pub retry_after: Option<String>,
    /// Advisory that superseded this one.
    pub superseded_by: Option<String>,
    /// Snoozed until.
    pub snooze_until: Option<String>,
    /// Operator notes.
    pub notes: Option<String>,
    /// Last test id.
    pub last_test_id: Option<i64>,
    /// Advisory synopsis.
    pub synopsis: String,
    /// Advisory severity.
    pub severity: String,
    /// Advisory type.
    pub advisory_type: String,
    /// Whether UYUNI suggests a reboot.
    pub reboot_suggested: bool,
}

const ROW_COLUMNS: &str = "q.id, q.advisory, q.os, q.status, q.score, q.priority, q.queued_at,
    q.queued_by, q.started_at, q.completed_at, q.retry_count, q.retry_after, q.superseded_by,
    q.snooze_until, q.notes, q.last_test_id, e.synopsis, e.severity, e.advisory_type,
    e.reboot_suggested";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<QueueRow> {
    Ok(QueueRow {
        id: r.get(0)?,
        advisory: r.get(1)?,
        os: r.get(2)?,
        status: r.get(3)?,
        score: r.get(4)?,
        priority: r.get(5)?,
        queued_at: r.get(6)?,
        queued_by: r.get(7)?,
        started_at: r.get(8)?,
        completed_at: r.get(9)?,
        retry_count: r.get(10)?,
        retry_after: r.get(11)?,
        superseded_by: r.get(12)?,
        snooze_until: r.get(13)?,
        notes: r.get(14)?,
        last_test_id: r.get(15)?,
        synopsis: r.get(16)?,
        severity: r.get(17)?,
        advisory_type: r.get(18)?,
        reboot_suggested: r.get(19)?,
    })
}

/// A page of queue items matching `filter`, in queue order (priority, score, age), with
/// the total number of matches.
pub fn list(
    conn: &Connection,
    filter: &QueueFilter,
    limit: i64,
    offset: i64,
) -> StoreResult<(i64, Vec<QueueRow>)> {
    let mut clauses: Vec<&str> = Vec::new();
    let mut args: Vec<Value> = Vec::new();
    if let Some(s) = &filter.status {
        clauses.push("q.status = ?");
        args.push(Value::Text(s.clone()));
    }
    if let Some(o) = &filter.os {
        clauses.push("q.os = ?");
        args.push(Value::Text(o.clone()));
    }
    let needs_join = filter.q.is_some();
    if let Some(q) = &filter.q {
        clauses.push("(q.advisory LIKE ? ESCAPE '\\' OR e.synopsis LIKE ? ESCAPE '\\')");
        let pattern = format!(
            "%{}%",
            q.replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        args.push(Value::Text(pattern.clone()));
        args.push(Value::Text(pattern));
    }
    let where_sql = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    let count_sql = if needs_join {
        format!(
            "SELECT COUNT(*) FROM queue_items q JOIN errata e ON e.advisory = q.advisory {where_sql}"
        )
    } else {
        format!("SELECT COUNT(*) FROM queue_items q {where_sql}")
    };
    let total: i64 = conn
        .prepare_cached(&count_sql)?
        .query_row(params_from_iter(args.iter()), |r| r.get(0))?;
    let page_sql = format!(
        "SELECT {ROW_COLUMNS} FROM queue_items q JOIN errata e ON e.advisory = q.advisory {where_sql}
         ORDER BY q.priority DESC, q.score DESC, q.queued_at, q.id LIMIT ? OFFSET ?"
    );
    args.push(Value::Integer(limit));
    args.push(Value::Integer(offset));
    let mut stmt = conn.prepare_cached(&page_sql)?;
    let rows = stmt.query_map(params_from_iter(args.iter()), row)?;
    Ok((total, rows.collect::<Result<_, _>>()?))
}

/// A test attempt of a queue item, as the detail shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct QueueTest {
    /// Test id.
    pub id: i64,
    /// Test status.
    pub status: String,
    /// Test system name.
    pub system_name: Option<String>,
    /// Failure class, when it failed.
    pub failure_class: Option<String>,
    /// Phase that failed.
    pub failure_phase: Option<String>,
    /// Why it failed.
    pub failure_reason: Option<String>,
    /// Start time.
    pub started_at: String,
    /// End time.
    pub completed_at: Option<String>,
}

/// One queue item with its advisory's CVEs, risk profile and tests.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct QueueDetail {
    /// The listing fields.
    #[serde(flatten)]
    pub item: QueueRow,
    /// Advisory description.
    pub description: String,
    /// CVEs fixed by the advisory.
    pub cves: Vec<String>,
    /// Number of packages in the advisory.
    pub package_count: i64,
    /// Score breakdown for this OS (JSON), when a risk profile exists.
    pub score_breakdown: Option<serde_json::Value>,
    /// Test attempts, newest first.
    pub tests: Vec<QueueTest>,
}

/// The detail of queue item `id`.
pub fn get(conn: &Connection, id: i64) -> StoreResult<QueueDetail> {
    let item = conn
        .prepare_cached(&format!(
            "SELECT {ROW_COLUMNS} FROM queue_items q JOIN errata e ON e.advisory = q.advisory WHERE q.id = ?1"
        ))?
        .query_row([id], row)
        .optional()?
        .ok_or_else(|| StoreError::NotFound {
            what: "queue item",
            id: id.to_string(),
        })?;
    let description: String = conn.query_row(
        "SELECT description FROM errata WHERE advisory = ?1",
        [&item.advisory],
        |r| r.get(0),
    )?;
    let cves = conn
        .prepare_cached("SELECT cve FROM errata_cves WHERE advisory = ?1 ORDER BY cve")?
        .query_map([&item.advisory], |r| r.get(0))?
        .collect::<Result<Vec<String>, _>>()?;
    let package_count: i64 = conn.query_row(
        "SELECT COUNT(*) FROM errata_packages WHERE advisory = ?1",
        [&item.advisory],
        |r| r.get(0),
    )?;
    let breakdown: Option<String> = conn
        .query_row(
            "SELECT breakdown FROM risk_profiles WHERE advisory = ?1 AND os = ?2",
            [&item.advisory, &item.os],
            |r| r.get(0),
        )
        .optional()?;
    let tests = conn
        .prepare_cached(
            "SELECT id, status, system_name, failure_class, failure_phase, failure_reason, started_at,
                    completed_at FROM tests WHERE queue_id = ?1 ORDER BY id DESC",
        )?
        .query_map([id], |r| {
            Ok(QueueTest {
                id: r.get(0)?,
                status: r.get(1)?,
                system_name: r.get(2)?,
                failure_class: r.get(3)?,
                failure_phase: r.get(4)?,
                failure_reason: r.get(5)?,
                started_at: r.get(6)?,
                completed_at: r.get(7)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(QueueDetail {
        item,
        description,
        cves,
        package_count,
        score_breakdown: breakdown.and_then(|b| serde_json::from_str(&b).ok()),
        tests,
    })
}
