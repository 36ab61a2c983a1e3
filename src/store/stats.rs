//! Aggregates for `/metrics`, health and service discovery, each computed with a few cheap
//! queries on one read connection.

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension};
use serde::Serialize;

use super::StoreResult;

/// Database-derived figures for one `/metrics` scrape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricsSnapshot {
    /// Queue items per status.
    pub queue_by_status: BTreeMap<String, i64>,
    /// Items in `pending_approval`.
    pub pending_approvals: i64,
    /// Age in hours of the oldest pending approval (0 when none).
    pub oldest_pending_hours: f64,
    /// Tests per status.
    pub tests_by_status: BTreeMap<String, i64>,
    /// Sum and count of finished test durations, in seconds.
    pub test_duration_sum_s: f64,
    /// Number of finished tests with a duration.
    pub test_duration_count: i64,
    /// Patch runs per status.
    pub runs_by_status: BTreeMap<String, i64>,
    /// Patch run hosts per status.
    pub run_hosts_by_status: BTreeMap<String, i64>,
    /// Sync runs per status.
    pub syncs_by_status: BTreeMap<String, i64>,
    /// Duration of the last finished sync, seconds.
    pub last_sync_duration_s: Option<f64>,
    /// UYUNI calls made by the last finished sync.
    pub last_sync_calls: Option<i64>,
    /// Unix time of the last finished sync.
    pub last_sync_timestamp: Option<f64>,
    /// Unread notifications.
    pub notifications_unread: i64,
    /// Active (non-revoked) API tokens per role.
    pub tokens_by_role: BTreeMap<String, i64>,
    /// Systems per (compliance status, os, env).
    pub compliance: Vec<(String, String, String, i64)>,
}

fn group_count(conn: &Connection, sql: &str) -> StoreResult<BTreeMap<String, i64>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Compute the database part of `/metrics`.
pub fn metrics(conn: &Connection) -> StoreResult<MetricsSnapshot> {
    let mut m = MetricsSnapshot {
        queue_by_status: group_count(
            conn,
            "SELECT status, COUNT(*) FROM queue_items GROUP BY status",
        )?,
        tests_by_status: group_count(conn, "SELECT status, COUNT(*) FROM tests GROUP BY status")?,
        runs_by_status: group_count(
            conn,
            "SELECT status, COUNT(*) FROM patch_runs GROUP BY status",
        )?,
        run_hosts_by_status: group_count(
            conn,
            "SELECT status, COUNT(*) FROM patch_run_hosts GROUP BY status",
        )?,
        syncs_by_status: group_count(
            conn,
            "SELECT status, COUNT(*) FROM sync_runs GROUP BY status",
        )?,
        tokens_by_role: group_count(
            conn,
            "SELECT role, COUNT(*) FROM api_tokens WHERE revoked_at IS NULL GROUP BY role",
        )?,
        ..Default::default()
    };
    let (count, hours): (i64, Option<f64>) = conn
        .prepare_cached(
            "SELECT COUNT(*), MAX((julianday('now') - julianday(completed_at)) * 24.0)
         FROM queue_items WHERE status = 'pending_approval'",
        )?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    m.pending_approvals = count;
    m.oldest_pending_hours = hours.unwrap_or(0.0).max(0.0);
    let (sum, n): (Option<f64>, i64) = conn
        .prepare_cached(
            "SELECT SUM((julianday(completed_at) - julianday(started_at)) * 86400.0), COUNT(*)
             FROM tests WHERE completed_at IS NOT NULL",
        )?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    m.test_duration_sum_s = sum.unwrap_or(0.0).max(0.0);
    m.test_duration_count = n;
    let last: Option<(f64, i64, f64)> = conn
        .prepare_cached(
            "SELECT (julianday(completed_at) - julianday(started_at)) * 86400.0, calls_total,
                    (julianday(completed_at) - 2440587.5) * 86400.0
             FROM sync_runs WHERE completed_at IS NOT NULL ORDER BY id DESC LIMIT 1",
        )?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    if let Some((d, calls, ts)) = last {
        m.last_sync_duration_s = Some(d.max(0.0));
        m.last_sync_calls = Some(calls);
        m.last_sync_timestamp = Some(ts);
    }
    let mut stmt = conn.prepare_cached(
        "SELECT c.status, COALESCE(c.os, s.os), COALESCE(c.env, s.env, ''), COUNT(*)
         FROM compliance c JOIN systems s ON s.id = c.system_id GROUP BY 1, 2, 3",
    )?;
    m.compliance = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    m.notifications_unread = conn.query_row(
        "SELECT COUNT(*) FROM notifications WHERE read = 0",
        [],
        |r| r.get(0),
    )?;
    Ok(m)
}

/// Queue counts for the health summary.
pub fn queue_counts(conn: &Connection) -> StoreResult<BTreeMap<String, i64>> {
    group_count(
        conn,
        "SELECT status, COUNT(*) FROM queue_items GROUP BY status",
    )
}

/// A test system for Prometheus HTTP service discovery.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TestTarget {
    /// UYUNI system id.
    pub id: i64,
    /// Profile name.
    pub name: String,
    /// Address to scrape.
    pub ip: String,
    /// OS family.
    pub os: String,
    /// Environment.
    pub env: Option<String>,
    /// Group names (JSON array text).
    pub groups: String,
}

/// Test systems (`role = 'test'`) that have an IP address, by id.
pub fn test_targets(conn: &Connection) -> StoreResult<Vec<TestTarget>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, name, ip, os, env, groups FROM systems
         WHERE role = 'test' AND ip IS NOT NULL AND ip <> '' ORDER BY id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(TestTarget {
            id: r.get(0)?,
            name: r.get(1)?,
            ip: r.get(2)?,
            os: r.get(3)?,
            env: r.get(4)?,
            groups: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Cheap liveness query for the health probe.
pub fn ping(conn: &Connection) -> StoreResult<()> {
    conn.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?;
    Ok(())
}
