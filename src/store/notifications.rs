//! Notifications and their per-channel deliveries, plus the read queries the daily digest
//! needs.
//!
//! A notification row and all its delivery rows are written in one transaction. The
//! delivery worker claims due rows with a lease: claiming moves `next_attempt_at` past the
//! lease, so a second worker (or the same one after a crash) only sees the row again once
//! the lease has expired. On PostgreSQL this maps onto `FOR UPDATE SKIP LOCKED`.

use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};
use serde::Serialize;

use super::{StoreError, StoreResult};

/// A notification to insert.
#[derive(Debug, Clone, Default)]
pub struct NewNotification {
    /// Event type (`test_failed`, `pending_approval`, ...).
    pub event: String,
    /// `info`, `warning` or `critical`.
    pub severity: String,
    /// Rendered subject.
    pub subject: String,
    /// Rendered plain-text body.
    pub body: String,
    /// Rendered HTML body, when the event has an HTML template.
    pub body_html: Option<String>,
    /// The event's data as JSON (sent to webhooks).
    pub data: serde_json::Value,
    /// Related advisory.
    pub advisory: Option<String>,
    /// Related queue item.
    pub queue_id: Option<i64>,
    /// Related test.
    pub test_id: Option<i64>,
    /// Related patch run.
    pub run_id: Option<i64>,
}

/// A delivery to create with a notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    /// `email` or `webhook`.
    pub channel: String,
    /// Comma-separated recipients, or the webhook name. Never a secret.
    pub target: String,
}

/// A stored notification.
#[derive(Debug, Clone, Serialize)]
pub struct Notification {
    /// Row id.
    pub id: i64,
    /// Event type.
    pub event: String,
    /// Severity.
    pub severity: String,
    /// Subject.
    pub subject: String,
    /// Plain-text body.
    pub body: String,
    /// HTML body.
    pub body_html: Option<String>,
    /// Event data (JSON).
    pub data: serde_json::Value,
    /// Related advisory.
    pub advisory: Option<String>,
    /// Related queue item.
    pub queue_id: Option<i64>,
    /// Related test.
    pub test_id: Option<i64>,
    /// Related run.
    pub run_id: Option<i64>,
    /// Whether an operator read it.
    pub read: bool,
    /// Who marked it read.
    pub read_by: Option<String>,
    /// Creation time.
    pub created_at: String,
}

/// A stored delivery.
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    /// Row id.
    pub id: i64,
    /// Owning notification.
    pub notification_id: i64,
    /// `email` or `webhook`.
    pub channel: String,
    /// Recipients or webhook name.
    pub target: String,
    /// `pending`, `sent`, `failed` (will retry) or `gave_up`.
    pub status: String,
    /// Attempts made.
    pub attempts: i64,
    /// When the next attempt is due.
    pub next_attempt_at: String,
    /// Stable key sent with every attempt.
    pub idempotency_key: String,
    /// Last error.
    pub last_error: Option<String>,
    /// When it was sent.
    pub sent_at: Option<String>,
}

/// A claimed delivery with the notification it carries.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    /// The delivery row (as claimed).
    pub delivery: Delivery,
    /// Its notification.
    pub notification: Notification,
}

/// Filters for [`list`].
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Only unread notifications.
    pub unread_only: bool,
    /// Only this event type.
    pub event: Option<String>,
    /// Only this severity.
    pub severity: Option<String>,
    /// Page size (default 50, at most 500).
    pub limit: Option<u32>,
    /// Rows to skip.
    pub offset: Option<u32>,
}

const NOTIFICATION_COLS: &str = "n.id, n.event, n.severity, n.subject, n.body, n.body_html, \
     n.data, n.advisory, n.queue_id, n.test_id, n.run_id, n.read, n.read_by, n.created_at";
const DELIVERY_COLS: &str = "d.id, d.notification_id, d.channel, d.target, d.status, \
     d.attempts, d.next_attempt_at, d.idempotency_key, d.last_error, d.sent_at";

fn notification_from(row: &Row<'_>, base: usize) -> rusqlite::Result<Notification> {
    let data: String = row.get(base + 6)?;
    Ok(Notification {
        id: row.get(base)?,
        event: row.get(base + 1)?,
        severity: row.get(base + 2)?,
        subject: row.get(base + 3)?,
        body: row.get(base + 4)?,
        body_html: row.get(base + 5)?,
        data: serde_json::from_str(&data).unwrap_or(serde_json::Value::Null),
        advisory: row.get(base + 7)?,
        queue_id: row.get(base + 8)?,
        test_id: row.get(base + 9)?,
        run_id: row.get(base + 10)?,
        read: row.get::<_, i64>(base + 11)? != 0,
        read_by: row.get(base + 12)?,
        created_at: row.get(base + 13)?,
    })
}

fn delivery_from(row: &Row<'_>, base: usize) -> rusqlite::Result<Delivery> {
    Ok(Delivery {
        id: row.get(base)?,
        notification_id: row.get(base + 1)?,
        channel: row.get(base + 2)?,
        target: row.get(base + 3)?,
        status: row.get(base + 4)?,
        attempts: row.get(base + 5)?,
        next_attempt_at: row.get(base + 6)?,
        idempotency_key: row.get(base + 7)?,
        last_error: row.get(base + 8)?,
        sent_at: row.get(base + 9)?,
    })
}

/// Insert a notification and its deliveries; returns the notification id and the
/// delivery ids. Each delivery gets a fresh idempotency key that stays with it for life.
pub fn insert(
    tx: &Transaction<'_>,
    n: &NewNotification,
    deliveries: &[NewDelivery],
) -> StoreResult<(i64, Vec<i64>)> {
    tx.execute(
        "INSERT INTO notifications (event, severity, subject, body, body_html, data, advisory, \
         queue_id, test_id, run_id, routed) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 1)",
        params![
            n.event,
            n.severity,
            n.subject,
            n.body,
            n.body_html,
            n.data.to_string(),
            n.advisory,
            n.queue_id,
            n.test_id,
            n.run_id
        ],
    )?;
    let id = tx.last_insert_rowid();
    let mut ids = Vec::with_capacity(deliveries.len());
    for d in deliveries {
        tx.execute(
            "INSERT INTO notification_deliveries (notification_id, channel, target, \
             idempotency_key) VALUES (?1, ?2, ?3, ?4)",
            params![id, d.channel, d.target, uuid::Uuid::new_v4().to_string()],
        )?;
        ids.push(tx.last_insert_rowid());
    }
    Ok((id, ids))
}

/// List notifications, newest first.
pub fn list(conn: &Connection, f: &ListFilter) -> StoreResult<Vec<Notification>> {
    let limit = i64::from(f.limit.unwrap_or(50).clamp(1, 500));
    let offset = i64::from(f.offset.unwrap_or(0));
    let sql = format!(
        "SELECT {NOTIFICATION_COLS} FROM notifications n \
         WHERE (?1 = 0 OR n.read = 0) AND (?2 IS NULL OR n.event = ?2) \
           AND (?3 IS NULL OR n.severity = ?3) \
         ORDER BY n.id DESC LIMIT ?4 OFFSET ?5"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(
        params![f.unread_only as i64, f.event, f.severity, limit, offset],
        |r| notification_from(r, 0),
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Number of unread notifications.
pub fn unread_count(conn: &Connection) -> StoreResult<i64> {
    Ok(conn.query_row(
        "SELECT count(*) FROM notifications WHERE read = 0",
        [],
        |r| r.get(0),
    )?)
}

/// One notification.
pub fn get(conn: &Connection, id: i64) -> StoreResult<Notification> {
    let sql = format!("SELECT {NOTIFICATION_COLS} FROM notifications n WHERE n.id = ?1");
    conn.query_row(&sql, [id], |r| notification_from(r, 0))
        .optional()?
        .ok_or_else(|| StoreError::NotFound {
            what: "notification",
            id: id.to_string(),
        })
}

/// The deliveries of one notification.
pub fn deliveries(conn: &Connection, notification_id: i64) -> StoreResult<Vec<Delivery>> {
    let sql = format!(
        "SELECT {DELIVERY_COLS} FROM notification_deliveries d \
         WHERE d.notification_id = ?1 ORDER BY d.id"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([notification_id], |r| delivery_from(r, 0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// One delivery.
pub fn delivery(conn: &Connection, id: i64) -> StoreResult<Delivery> {
    let sql = format!("SELECT {DELIVERY_COLS} FROM notification_deliveries d WHERE d.id = ?1");
    conn.query_row(&sql, [id], |r| delivery_from(r, 0))
        .optional()?
        .ok_or_else(|| StoreError::NotFound {
            what: "delivery",
            id: id.to_string(),
        })
}

/// Mark a notification read; returns whether it was unread before.
pub fn mark_read(tx: &Transaction<'_>, id: i64, by: &str) -> StoreResult<bool> {
    let changed = tx.execute(
        "UPDATE notifications SET read = 1, read_by = ?2 WHERE id = ?1 AND read = 0",
        params![id, by],
    )?;
    if changed == 0 {
        let exists: Option<i64> = tx
            .query_row("SELECT id FROM notifications WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()?;
        if exists.is_none() {
            return Err(StoreError::NotFound {
                what: "notification",
                id: id.to_string(),
            });
        }
    }
    Ok(changed == 1)
}

/// Claim up to `limit` deliveries that are due at `now` (status `pending` or `failed`),
/// leasing them until `lease_until`. Times are store timestamps ([`super::now_ts`]).
pub fn claim_due(
    tx: &Transaction<'_>,
    now: &str,
    lease_until: &str,
    limit: u32,
) -> StoreResult<Vec<DueDelivery>> {
    claim(tx, None, now, lease_until, limit)
}

/// Like [`claim_due`], restricted to the deliveries of one notification.
pub fn claim_due_of(
    tx: &Transaction<'_>,
    notification_id: i64,
    now: &str,
    lease_until: &str,
) -> StoreResult<Vec<DueDelivery>> {
    claim(tx, Some(notification_id), now, lease_until, 500)
}

fn claim(
    tx: &Transaction<'_>,
    notification_id: Option<i64>,
    now: &str,
    lease_until: &str,
    limit: u32,
) -> StoreResult<Vec<DueDelivery>> {
    let sql = format!(
        "SELECT {DELIVERY_COLS}, {NOTIFICATION_COLS} FROM notification_deliveries d \
         JOIN notifications n ON n.id = d.notification_id \
         WHERE d.status IN ('pending','failed') AND d.next_attempt_at <= ?1 \
           AND (?3 IS NULL OR d.notification_id = ?3) \
         ORDER BY d.next_attempt_at, d.id LIMIT ?2"
    );
    let due: Vec<DueDelivery> = {
        let mut stmt = tx.prepare(&sql)?;
        let rows = stmt.query_map(params![now, i64::from(limit), notification_id], |r| {
            Ok(DueDelivery {
                delivery: delivery_from(r, 0)?,
                notification: notification_from(r, 10)?,
            })
        })?;
        rows.collect::<Result<_, _>>()?
    };
    for d in &due {
        tx.execute(
            "UPDATE notification_deliveries SET next_attempt_at = ?2 WHERE id = ?1",
            params![d.delivery.id, lease_until],
        )?;
    }
    Ok(due)
}

/// When the next delivery is due (for the worker's sleep), if any is pending.
pub fn next_due_at(conn: &Connection) -> StoreResult<Option<String>> {
    Ok(conn.query_row(
        "SELECT min(next_attempt_at) FROM notification_deliveries \
         WHERE status IN ('pending','failed')",
        [],
        |r| r.get(0),
    )?)
}

/// Record a successful attempt.
pub fn record_sent(tx: &Transaction<'_>, id: i64, now: &str) -> StoreResult<()> {
    update_delivery(
        tx,
        "UPDATE notification_deliveries SET status = 'sent', attempts = attempts + 1, \
         sent_at = ?2, last_error = NULL WHERE id = ?1 AND status IN ('pending','failed')",
        params![id, now],
        id,
    )
}

/// Record a failed attempt that will be retried at `next_attempt_at`.
pub fn record_failed(
    tx: &Transaction<'_>,
    id: i64,
    error: &str,
    next_attempt_at: &str,
) -> StoreResult<()> {
    update_delivery(
        tx,
        "UPDATE notification_deliveries SET status = 'failed', attempts = attempts + 1, \
         last_error = ?2, next_attempt_at = ?3 WHERE id = ?1 AND status IN ('pending','failed')",
        params![id, error, next_attempt_at],
        id,
    )
}

/// Record a failed attempt after which no more attempts are made.
pub fn record_gave_up(tx: &Transaction<'_>, id: i64, error: &str) -> StoreResult<()> {
    update_delivery(
        tx,
        "UPDATE notification_deliveries SET status = 'gave_up', attempts = attempts + 1, \
         last_error = ?2 WHERE id = ?1 AND status IN ('pending','failed')",
        params![id, error],
        id,
    )
}

fn update_delivery(
    tx: &Transaction<'_>,
    sql: &str,
    p: impl rusqlite::Params,
    id: i64,
) -> StoreResult<()> {
    if tx.execute(sql, p)? == 1 {
        return Ok(());
    }
    let status: Option<String> = tx
        .query_row(
            "SELECT status FROM notification_deliveries WHERE id = ?1",
            [id],
            |r| r.get(0),
        )
        .optional()?;
    match status {
        None => Err(StoreError::NotFound {
            what: "delivery",
            id: id.to_string(),
        }),
        Some(s) => Err(StoreError::Conflict(format!(
            "delivery {id} is already {s}"
        ))),
    }
}

/// Creation time of the newest notification of `event`, if any.
pub fn last_event_at(conn: &Connection, event: &str) -> StoreResult<Option<String>> {
    Ok(conn.query_row(
        "SELECT max(created_at) FROM notifications WHERE event = ?1",
        [event],
        |r| r.get(0),
    )?)
}

/// A patch waiting for approval, for the digest.
#[derive(Debug, Clone, Serialize)]
pub struct PendingApproval {
    /// Queue item.
    pub queue_id: i64,
    /// Advisory.
    pub advisory: String,
    /// OS family.
    pub os: String,
    /// Advisory severity.
    pub severity: String,
    /// Synopsis.
    pub synopsis: String,
    /// Success Score.
    pub score: i64,
    /// Hours since the test completed.
    pub hours_pending: f64,
}

/// Patches waiting for approval, oldest first.
pub fn pending_approvals(conn: &Connection) -> StoreResult<Vec<PendingApproval>> {
    let mut stmt = conn.prepare(
        "SELECT id, advisory, os, severity, synopsis, score, coalesce(hours_pending, 0) \
         FROM v_pending_approvals ORDER BY completed_at",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(PendingApproval {
            queue_id: r.get(0)?,
            advisory: r.get(1)?,
            os: r.get(2)?,
            severity: r.get(3)?,
            synopsis: r.get(4)?,
            score: r.get(5)?,
            hours_pending: r.get(6)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A failure of the last day, for the digest.
#[derive(Debug, Clone, Serialize)]
pub struct RecentFailure {
    /// `test`, `run` or `sync`.
    pub kind: String,
    /// Row id of the test, run or sync.
    pub id: i64,
    /// Advisory (tests), policy (runs) or scope (syncs).
    pub subject: String,
    /// Final status.
    pub status: String,
    /// Reason recorded.
    pub reason: Option<String>,
    /// When it ended (or started, if it has no end).
    pub at: String,
}

/// Failed tests, failed or budget-tripped runs, and failed or partial syncs since `since`.
pub fn failures_since(conn: &Connection, since: &str) -> StoreResult<Vec<RecentFailure>> {
    let mut stmt = conn.prepare(
        "SELECT 'test', id, advisory || coalesce(' on ' || system_name, ''), status, \
                coalesce(failure_phase || ': ', '') || coalesce(failure_reason, ''), \
                coalesce(completed_at, started_at) AS at \
           FROM tests WHERE status IN ('failed','error') AND coalesce(completed_at, started_at) >= ?1 \
         UNION ALL \
         SELECT 'run', id, policy_id, status, error, coalesce(completed_at, started_at) \
           FROM patch_runs WHERE status IN ('failed','budget_tripped') \
            AND coalesce(completed_at, started_at) >= ?1 \
         UNION ALL \
         SELECT 'sync', id, scope, status, coalesce(error, failures), \
                coalesce(completed_at, started_at) \
           FROM sync_runs WHERE status IN ('failed','partial') \
            AND coalesce(completed_at, started_at) >= ?1 \
         ORDER BY at",
    )?;
    let rows = stmt.query_map([since], |r| {
        Ok(RecentFailure {
            kind: r.get(0)?,
            id: r.get(1)?,
            subject: r.get(2)?,
            status: r.get(3)?,
            reason: r.get(4)?,
            at: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Compliance counts for one group (environment or OS).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ComplianceCounts {
    /// Group name (`env` or `os` value; `(none)` when unset).
    pub group: String,
    /// Compliant systems.
    pub compliant: i64,
    /// Non-compliant systems.
    pub non_compliant: i64,
    /// Systems of unknown status.
    pub unknown: i64,
}

/// Compliance summary for the digest.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ComplianceSummary {
    /// All systems with a compliance row.
    pub total: ComplianceCounts,
    /// Per environment.
    pub by_env: Vec<ComplianceCounts>,
    /// Per OS family.
    pub by_os: Vec<ComplianceCounts>,
}

fn compliance_grouped(conn: &Connection, column: &str) -> StoreResult<Vec<ComplianceCounts>> {
    // `column` is one of two fixed names chosen below, never input.
    let sql = format!(
        "SELECT coalesce({column}, '(none)') AS g, \
                sum(status = 'compliant'), sum(status = 'non_compliant'), sum(status = 'unknown') \
         FROM compliance GROUP BY g ORDER BY g"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([], |r| {
        Ok(ComplianceCounts {
            group: r.get(0)?,
            compliant: r.get(1)?,
            non_compliant: r.get(2)?,
            unknown: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Compliance counts overall, per environment and per OS.
pub fn compliance_summary(conn: &Connection) -> StoreResult<ComplianceSummary> {
    let by_env = compliance_grouped(conn, "env")?;
    let by_os = compliance_grouped(conn, "os")?;
    let mut total = ComplianceCounts {
        group: "all".into(),
        ..ComplianceCounts::default()
    };
    for c in &by_env {
        total.compliant += c.compliant;
        total.non_compliant += c.non_compliant;
        total.unknown += c.unknown;
    }
    Ok(ComplianceSummary {
        total,
        by_env,
        by_os,
    })
}

/// Notifications recorded by other parts of spm (the test engine and the rollout insert
/// their rows directly) that the notifier has not routed yet, oldest first:
/// `(id, event, severity)`.
pub fn unrouted(conn: &Connection, limit: i64) -> StoreResult<Vec<(i64, String, String)>> {
    let mut stmt = conn.prepare(
        "SELECT id, event, severity FROM notifications WHERE routed = 0 ORDER BY id LIMIT ?1",
    )?;
    let rows = stmt
        .query_map(params![limit], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// Replace the subject and bodies of a notification with the ones its templates rendered.
pub fn set_rendered(
    tx: &Transaction<'_>,
    id: i64,
    subject: &str,
    body: &str,
    body_html: Option<&str>,
) -> StoreResult<()> {
    tx.execute(
        "UPDATE notifications SET subject = ?2, body = ?3, body_html = ?4 WHERE id = ?1",
        params![id, subject, body, body_html],
    )?;
    Ok(())
}

/// Mark a notification routed.
pub fn mark_routed(tx: &Transaction<'_>, id: i64) -> StoreResult<()> {
    tx.execute("UPDATE notifications SET routed = 1 WHERE id = ?1", [id])?;
    Ok(())
}

/// Add deliveries to an existing notification, each with a fresh idempotency key.
pub fn add_deliveries(
    tx: &Transaction<'_>,
    notification_id: i64,
    deliveries: &[NewDelivery],
) -> StoreResult<()> {
    for d in deliveries {
        tx.execute(
            "INSERT INTO notification_deliveries (notification_id, channel, target, \
             idempotency_key) VALUES (?1, ?2, ?3, ?4)",
            params![
                notification_id,
                d.channel,
                d.target,
                uuid::Uuid::new_v4().to_string()
            ],
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Store, now_ts};

    fn new(event: &str) -> NewNotification {
        NewNotification {
            event: event.into(),
            severity: "warning".into(),
            subject: "s".into(),
            body: "b".into(),
            data: serde_json::json!({"k": 1}),
            ..NewNotification::default()
        }
    }

    #[test]
    fn insert_claim_and_record() {
        let store = Store::open_in_memory().expect("store");
        let (id, dids) = store
            .write_blocking(|tx| {
                insert(
                    tx,
                    &new("test_failed"),
                    &[
                        NewDelivery {
                            channel: "email".into(),
                            target: "a@example.com".into(),
                        },
                        NewDelivery {
                            channel: "webhook".into(),
                            target: "ops".into(),
                        },
                    ],
                )
            })
            .expect("insert");
        assert_eq!(dids.len(), 2);
        let now = now_ts();
        let far = "9999-01-01T00:00:00.000Z";
        let claimed = store
            .write_blocking(|tx| claim_due(tx, &now, far, 10))
            .expect("claim");
        assert_eq!(claimed.len(), 2);
        assert_eq!(claimed[0].notification.id, id);
        assert_eq!(claimed[0].notification.data["k"], 1);
        // Leased: a second claim sees nothing.
        let again = store
            .write_blocking(|tx| claim_due(tx, &now, far, 10))
            .expect("claim");
        assert!(again.is_empty());
        store
            .write_blocking(|tx| record_sent(tx, dids[0], &now))
            .expect("sent");
        store
            .write_blocking(|tx| record_failed(tx, dids[1], "HTTP 500", "2000-01-01T00:00:00.000Z"))
            .expect("failed");
        let d = store.read_blocking(|c| deliveries(c, id)).expect("list");
        assert_eq!(d[0].status, "sent");
        assert_eq!(d[1].status, "failed");
        assert_eq!(d[1].attempts, 1);
        // A sent delivery cannot be recorded again.
        let err = store.write_blocking(|tx| record_gave_up(tx, dids[0], "x"));
        assert!(matches!(err, Err(StoreError::Conflict(_))));
    }

    #[test]
    fn list_filters_and_mark_read() {
        let store = Store::open_in_memory().expect("store");
        for e in ["a", "b", "a"] {
            store
                .write_blocking(|tx| insert(tx, &new(e), &[]))
                .expect("insert");
        }
        let all = store
            .read_blocking(|c| list(c, &ListFilter::default()))
            .expect("list");
        assert_eq!(all.len(), 3);
        let only_a = store
            .read_blocking(|c| {
                list(
                    c,
                    &ListFilter {
                        event: Some("a".into()),
                        ..ListFilter::default()
                    },
                )
            })
            .expect("list");
        assert_eq!(only_a.len(), 2);
        assert!(
            store
                .write_blocking(|tx| mark_read(tx, all[0].id, "op"))
                .expect("read")
        );
        assert!(
            !store
                .write_blocking(|tx| mark_read(tx, all[0].id, "op"))
                .expect("read")
        );
        assert!(matches!(
            store.write_blocking(|tx| mark_read(tx, 999, "op")),
            Err(StoreError::NotFound { .. })
        ));
        let unread = store
            .read_blocking(|c| {
                list(
                    c,
                    &ListFilter {
                        unread_only: true,
                        limit: Some(1),
                        ..ListFilter::default()
                    },
                )
            })
            .expect("list");
        assert_eq!(unread.len(), 1);
        assert_eq!(store.read_blocking(unread_count).expect("count"), 2);
    }

    #[test]
    fn digest_queries_run_on_empty_and_filled_db() {
        let store = Store::open_in_memory().expect("store");
        store
            .write_blocking(|tx| {
                tx.execute_batch(
                    "INSERT INTO systems (id, name, os, env) VALUES (1,'a','debian','prod'),(2,'b','rhel','test');
                     INSERT INTO compliance (system_id, os, env, status) VALUES (1,'debian','prod','compliant'),(2,'rhel','test','non_compliant');
                     INSERT INTO errata (advisory, synopsis, severity) VALUES ('DSA-1','openssl','high');
                     INSERT INTO queue_items (advisory, os, status, queued_by, completed_at) VALUES ('DSA-1','debian','pending_approval','t', strftime('%Y-%m-%dT%H:%M:%fZ','now','-2 hours'));
                     INSERT INTO tests (queue_id, advisory, system_name, status, failure_phase, failure_reason, completed_at) VALUES (1,'DSA-1','web1','failed','validate','nginx down', strftime('%Y-%m-%dT%H:%M:%fZ','now'));
                     INSERT INTO sync_runs (status, scope, error) VALUES ('failed','all','timeout');",
                )?;
                Ok(())
            })
            .expect("seed");
        let p = store.read_blocking(pending_approvals).expect("pending");
        assert_eq!(p.len(), 1);
        assert!(
            p[0].hours_pending > 1.9 && p[0].hours_pending < 2.1,
            "{p:?}"
        );
        let f = store
            .read_blocking(|c| failures_since(c, "2000-01-01T00:00:00.000Z"))
            .expect("failures");
        assert_eq!(f.len(), 2, "{f:?}");
        assert!(
            f.iter()
                .any(|x| x.kind == "test" && x.reason.as_deref() == Some("validate: nginx down"))
        );
        let c = store.read_blocking(compliance_summary).expect("compliance");
        assert_eq!((c.total.compliant, c.total.non_compliant), (1, 1));
        assert_eq!(c.by_os.len(), 2);
    }
}
