//! Synthetic rows for benchmarks and integration tests (never used by the service itself).

use rusqlite::{Transaction, params};

use super::StoreResult;

/// Insert `n` security errata `SPM-BENCH-<i>` and one queue item for each, spread over
/// the three OSes and a few statuses, with scores 0-99. Returns the number inserted.
pub fn seed_queue(tx: &Transaction<'_>, n: usize) -> StoreResult<usize> {
    const OSES: [&str; 3] = ["ubuntu", "debian", "rhel"];
    const STATUSES: [&str; 4] = ["queued", "queued", "pending_approval", "failed"];
    const SEVERITIES: [&str; 4] = ["critical", "high", "medium", "low"];
    let mut errata = tx.prepare_cached(
        "INSERT INTO errata (advisory, advisory_type, synopsis, description, severity)
         VALUES (?1, 'security', ?2, ?3, ?4)",
    )?;
    let mut queue = tx.prepare_cached(
        "INSERT INTO queue_items (advisory, os, status, score, priority, queued_by, completed_at)
         VALUES (?1, ?2, ?3, ?4, 0, 'bench',
                 CASE WHEN ?3 = 'queued' THEN NULL ELSE strftime('%Y-%m-%dT%H:%M:%fZ','now') END)",
    )?;
    for i in 0..n {
        let advisory = format!("SPM-BENCH-{i:06}");
        errata.execute(params![
            advisory,
            format!("synthetic advisory {i} for package pkg{}", i % 97),
            "synthetic benchmark row",
            SEVERITIES[i % 4],
        ])?;
        queue.execute(params![
            advisory,
            OSES[i % 3],
            STATUSES[i % 4],
            (i * 37 % 100) as i64
        ])?;
    }
    Ok(n)
}

/// Insert a system row (id, name, ip, os, role) as the sync would.
pub fn insert_system(
    tx: &Transaction<'_>,
    id: i64,
    name: &str,
    ip: Option<&str>,
    os: &str,
    role: &str,
) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO systems (id, name, hostname, ip, os, env, role, groups)
         VALUES (?1, ?2, ?2, ?3, ?4, 'test', ?5, '[\"spm-test-' || ?4 || '\"]')",
        params![id, name, ip, os, role],
    )?;
    Ok(())
}

/// Queue `advisory` for `os` (score `score`, queued by `queued_by`), record one passed test
/// started by `tester` and move the item to pending approval, as the test engine would.
/// Returns `(queue item id, test id)`. The advisory row must exist.
pub fn passed_test(
    tx: &Transaction<'_>,
    advisory: &str,
    os: &str,
    score: i64,
    queued_by: &str,
    tester: &str,
) -> StoreResult<(i64, i64)> {
    use super::queue::{self, NewQueueItem, TransitionExtra};
    use crate::engine::state::QueueStatus;
    let item = queue::insert(
        tx,
        &NewQueueItem {
            advisory: advisory.to_string(),
            os: os.to_string(),
            score,
            queued_by: queued_by.to_string(),
            ..Default::default()
        },
    )?;
    queue::transition(
        tx,
        item.id,
        QueueStatus::Queued,
        QueueStatus::Testing,
        &TransitionExtra::default(),
    )?;
    tx.execute(
        "INSERT INTO tests (queue_id, advisory, status, started_by, evidence)
         VALUES (?1, ?2, 'passed', ?3, '{}')",
        params![item.id, advisory, tester],
    )?;
    let test_id = tx.last_insert_rowid();
    queue::transition(
        tx,
        item.id,
        QueueStatus::Testing,
        QueueStatus::PendingApproval,
        &TransitionExtra {
            last_test_id: Some(test_id),
            ..Default::default()
        },
    )?;
    Ok((item.id, test_id))
}
