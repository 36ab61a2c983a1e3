//! The detail view of one queue item for the API: the item (from [`super::queue`]) plus
//! its advisory's description and CVEs, its score breakdown and its test attempts.

use rusqlite::{Connection, OptionalExtension};
use serde::Serialize;

use super::StoreResult;
use super::queue::{self, QueueItem};

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
    pub item: QueueItem,
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
    let item = queue::get(conn, id)?;
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
