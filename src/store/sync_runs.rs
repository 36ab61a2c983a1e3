//! Sync runs (`sync_runs`): one row per errata sync, at most one `running` at a time.
//!
//! The partial unique index `uq_sync_running` makes a second concurrent start fail; a live
//! run holds a lease (`lease_owner`, `lease_until`) that it extends while it works, so a
//! row left `running` by a crashed process is recognised by its expired lease and closed as
//! `interrupted` by the next start (or by [`recover_expired`] at service start).

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::{Deserialize, Serialize};

use super::{StoreError, StoreResult, now_ts};

/// Final status of a sync run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncStatus {
    /// In progress.
    Running,
    /// Everything succeeded.
    Ok,
    /// Some systems or advisories failed; what succeeded was kept.
    Partial,
    /// Nothing could be synced (e.g. login failed).
    Failed,
    /// The process died while the run was in progress.
    Interrupted,
}

impl SyncStatus {
    /// The text stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Ok => "ok",
            Self::Partial => "partial",
            Self::Failed => "failed",
            Self::Interrupted => "interrupted",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "running" => Self::Running,
            "ok" => Self::Ok,
            "partial" => Self::Partial,
            "failed" => Self::Failed,
            _ => Self::Interrupted,
        }
    }
}

/// One failure inside a sync: what failed and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncFailure {
    /// The object, e.g. `system 1000010001`, `advisory USN-7000-1`, `group test-rhel`.
    pub what: String,
    /// The reason.
    pub reason: String,
}

/// Figures written when a run finishes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncSummary {
    /// UYUNI calls made.
    pub calls_total: u64,
    /// Calls per XML-RPC method.
    pub calls_by_method: std::collections::BTreeMap<String, u64>,
    /// Systems in scope.
    pub systems_total: u64,
    /// Distinct relevant advisories.
    pub errata_total: u64,
    /// Advisories seen for the first time.
    pub errata_new: u64,
    /// Known advisories whose data changed and was re-fetched.
    pub errata_updated: u64,
    /// (advisory, OS) relevances that became stale.
    pub errata_stale: u64,
    /// Per-item failures.
    pub failures: Vec<SyncFailure>,
}

/// A row of `sync_runs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRun {
    /// Run id.
    pub id: i64,
    /// Status.
    pub status: SyncStatus,
    /// Scope (`test`, `production`, `all`).
    pub scope: String,
    /// Start time.
    pub started_at: String,
    /// End time.
    pub completed_at: Option<String>,
    /// Figures.
    pub summary: SyncSummary,
    /// Fatal error, if any.
    pub error: Option<String>,
    /// Lease holder while running.
    pub lease_owner: Option<String>,
}

/// Close every `running` row whose lease expired before `now` as `interrupted`.
/// Returns how many rows were closed.
pub fn recover_expired(tx: &Transaction<'_>, now: &str) -> StoreResult<usize> {
    Ok(tx.execute(
        "UPDATE sync_runs SET status='interrupted', completed_at=?1,
                error=COALESCE(error, 'interrupted: the process running this sync stopped')
         WHERE status='running' AND (lease_until IS NULL OR lease_until < ?1)",
        params![now],
    )?)
}

/// Start a run: close crashed rows, then insert a `running` row holding a lease until
/// `lease_until`. A live run elsewhere gives [`StoreError::Conflict`].
pub fn start(
    tx: &Transaction<'_>,
    scope: &str,
    owner: &str,
    lease_until: &str,
) -> StoreResult<i64> {
    let now = now_ts();
    recover_expired(tx, &now)?;
    if let Some((id, started, who)) = tx
        .query_row(
            "SELECT id, started_at, lease_owner FROM sync_runs WHERE status='running'",
            [],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                ))
            },
        )
        .optional()?
    {
        return Err(StoreError::Conflict(format!(
            "a sync is already running (run {id}, started {started} by {})",
            who.unwrap_or_else(|| "unknown".into())
        )));
    }
    let res = tx.execute(
        "INSERT INTO sync_runs (status, scope, started_at, lease_owner, lease_until)
         VALUES ('running', ?1, ?2, ?3, ?4)",
        params![scope, now, owner, lease_until],
    );
    match res {
        Ok(_) => Ok(tx.last_insert_rowid()),
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            Err(StoreError::Conflict("a sync is already running".into()))
        }
        Err(e) => Err(e.into()),
    }
}

/// Extend the lease of a running run. Returns false if the run is no longer running
/// (another process closed it as interrupted).
pub fn heartbeat(tx: &Transaction<'_>, id: i64, lease_until: &str) -> StoreResult<bool> {
    let n = tx.execute(
        "UPDATE sync_runs SET lease_until=?2 WHERE id=?1 AND status='running'",
        params![id, lease_until],
    )?;
    Ok(n == 1)
}

/// Finish a run with its final status and figures.
pub fn finish(
    tx: &Transaction<'_>,
    id: i64,
    status: SyncStatus,
    summary: &SyncSummary,
    error: Option<&str>,
) -> StoreResult<()> {
    let failures = serde_json::to_string(&summary.failures)
        .map_err(|e| StoreError::Task(format!("encode failures: {e}")))?;
    let calls = serde_json::to_string(&summary.calls_by_method)
        .map_err(|e| StoreError::Task(format!("encode calls: {e}")))?;
    let n = tx.execute(
        "UPDATE sync_runs SET status=?2, completed_at=?3, calls_total=?4, calls_by_method=?5,
                systems_total=?6, errata_total=?7, errata_new=?8, errata_updated=?9,
                errata_stale=?10, failures=?11, error=?12, lease_until=NULL
         WHERE id=?1 AND status='running'",
        params![
            id,
            status.as_str(),
            now_ts(),
            summary.calls_total as i64,
            calls,
            summary.systems_total as i64,
            summary.errata_total as i64,
            summary.errata_new as i64,
            summary.errata_updated as i64,
            summary.errata_stale as i64,
            failures,
            error,
        ],
    )?;
    if n == 0 {
        return Err(StoreError::Conflict(format!(
            "sync run {id} is no longer running (closed as interrupted by another process)"
        )));
    }
    Ok(())
}

fn row_to_run(r: &rusqlite::Row<'_>) -> rusqlite::Result<SyncRun> {
    let failures: String = r.get("failures")?;
    let calls: String = r.get("calls_by_method")?;
    Ok(SyncRun {
        id: r.get("id")?,
        status: SyncStatus::parse(&r.get::<_, String>("status")?),
        scope: r.get("scope")?,
        started_at: r.get("started_at")?,
        completed_at: r.get("completed_at")?,
        summary: SyncSummary {
            calls_total: r.get::<_, i64>("calls_total")?.max(0) as u64,
            calls_by_method: serde_json::from_str(&calls).unwrap_or_default(),
            systems_total: r.get::<_, i64>("systems_total")?.max(0) as u64,
            errata_total: r.get::<_, i64>("errata_total")?.max(0) as u64,
            errata_new: r.get::<_, i64>("errata_new")?.max(0) as u64,
            errata_updated: r.get::<_, i64>("errata_updated")?.max(0) as u64,
            errata_stale: r.get::<_, i64>("errata_stale")?.max(0) as u64,
            failures: serde_json::from_str(&failures).unwrap_or_default(),
        },
        error: r.get("error")?,
        lease_owner: r.get("lease_owner")?,
    })
}

/// One run by id.
pub fn get(conn: &Connection, id: i64) -> StoreResult<SyncRun> {
    conn.query_row("SELECT * FROM sync_runs WHERE id=?1", [id], row_to_run)
        .optional()?
        .ok_or(StoreError::NotFound {
            what: "sync run",
            id: id.to_string(),
        })
}

/// The most recent runs, newest first.
pub fn recent(conn: &Connection, limit: u32) -> StoreResult<Vec<SyncRun>> {
    let mut st = conn.prepare("SELECT * FROM sync_runs ORDER BY id DESC LIMIT ?1")?;
    let rows = st.query_map([limit], row_to_run)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn second_start_conflicts_and_expired_lease_is_interrupted() {
        let store = Store::open_in_memory().unwrap();
        let far = "2999-01-01T00:00:00.000Z";
        let id = store
            .write_blocking(|tx| start(tx, "test", "a", far))
            .unwrap();
        let err = store
            .write_blocking(|tx| start(tx, "test", "b", far))
            .unwrap_err();
        assert!(err.to_string().contains("already running"), "{err}");
        // Simulate a crash: the lease of run `id` expires.
        store
            .write_blocking(|tx| heartbeat(tx, id, "2000-01-01T00:00:00.000Z").map(|_| ()))
            .unwrap();
        let id2 = store
            .write_blocking(|tx| start(tx, "test", "b", far))
            .unwrap();
        assert_ne!(id, id2);
        let old = store.read_blocking(|c| get(c, id)).unwrap();
        assert_eq!(old.status, SyncStatus::Interrupted);
        // The crashed run cannot finish any more.
        let err = store
            .write_blocking(|tx| finish(tx, id, SyncStatus::Ok, &SyncSummary::default(), None))
            .unwrap_err();
        assert!(err.to_string().contains("no longer running"));
        let summary = SyncSummary {
            calls_total: 5,
            failures: vec![SyncFailure {
                what: "system 1".into(),
                reason: "timeout".into(),
            }],
            ..Default::default()
        };
        store
            .write_blocking(|tx| finish(tx, id2, SyncStatus::Partial, &summary, None))
            .unwrap();
        let run = store.read_blocking(|c| get(c, id2)).unwrap();
        assert_eq!(run.status, SyncStatus::Partial);
        assert_eq!(run.summary, summary);
        let runs = store.read_blocking(|c| recent(c, 10)).unwrap();
        assert_eq!(runs.len(), 2);
    }
}
