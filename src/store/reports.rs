//! Read-only figures for `GET /api/v1/reports/summary`: queue counts, pending approvals
//! with the oldest wait, tests of the last 24 hours by status, and the last sync.

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension};
use serde::Serialize;

use super::StoreResult;
use super::sync_runs::{self, SyncRun};
use crate::engine::state::Status as _;

/// Pending approvals.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PendingApprovals {
    /// Items waiting for a decision.
    pub count: i64,
    /// Hours the oldest has waited (none when nothing is pending).
    pub oldest_hours: Option<f64>,
    /// The oldest item's id.
    pub oldest_queue_id: Option<i64>,
}

/// Tests in a window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecentTests {
    /// Window length, hours.
    pub window_hours: i64,
    /// Tests started in the window.
    pub total: i64,
    /// By test status.
    pub by_status: BTreeMap<String, i64>,
}

/// The summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Queue items per status (every status, zeros included).
    pub queue: BTreeMap<String, i64>,
    /// Queue items in total.
    pub queue_total: i64,
    /// Pending approvals.
    pub pending_approvals: PendingApprovals,
    /// Tests started in the last 24 hours.
    pub tests_24h: RecentTests,
    /// The most recent sync run.
    pub last_sync: Option<SyncRun>,
}

/// Build the summary in one read.
pub fn summary(conn: &Connection) -> StoreResult<Summary> {
    let mut queue: BTreeMap<String, i64> = crate::engine::state::queue::QueueStatus::ALL
        .iter()
        .map(|s| (s.as_str().to_owned(), 0))
        .collect();
    for (status, n) in super::queue::counts_by_status(conn)? {
        queue.insert(status.as_str().to_owned(), n);
    }
    let queue_total = queue.values().sum();
    let count: i64 =
        conn.query_row("SELECT count(*) FROM v_pending_approvals", [], |r| r.get(0))?;
    let oldest: Option<(i64, Option<f64>)> = conn
        .query_row(
            "SELECT id, hours_pending FROM v_pending_approvals
             ORDER BY hours_pending DESC, id LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let mut st = conn.prepare(
        "SELECT status, count(*) FROM tests
         WHERE julianday(started_at) >= julianday('now') - 1.0
         GROUP BY status ORDER BY status",
    )?;
    let by_status: BTreeMap<String, i64> = st
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?
        .collect::<Result<_, _>>()?;
    let last_sync = sync_runs::recent(conn, 1)?.into_iter().next();
    Ok(Summary {
        queue,
        queue_total,
        pending_approvals: PendingApprovals {
            count,
            oldest_hours: oldest.and_then(|o| o.1),
            oldest_queue_id: oldest.map(|o| o.0),
        },
        tests_24h: RecentTests {
            window_hours: 24,
            total: by_status.values().sum(),
            by_status,
        },
        last_sync,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn empty_database_gives_zeros() {
        let store = Store::open_in_memory().unwrap();
        let s = store.read_blocking(summary).unwrap();
        assert_eq!(s.queue_total, 0);
        assert_eq!(s.queue.get("queued"), Some(&0));
        assert_eq!(s.pending_approvals.count, 0);
        assert_eq!(s.pending_approvals.oldest_hours, None);
        assert_eq!(s.tests_24h.total, 0);
        assert!(s.last_sync.is_none());
    }
}
