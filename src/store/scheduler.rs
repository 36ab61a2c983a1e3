//! The policy scheduler's memory (tables `scheduler_state`, `scheduler_missed`): when it
//! last ticked, and which cron slots it already reported as missed.

use rusqlite::{Connection, OptionalExtension, params};

use super::{StoreResult, now_ts};

/// When the scheduler last ticked (RFC 3339), if it ever did.
pub fn last_tick(conn: &Connection) -> StoreResult<Option<String>> {
    Ok(conn
        .query_row(
            "SELECT last_tick FROM scheduler_state WHERE id = 1",
            [],
            |r| r.get(0),
        )
        .optional()?)
}

/// Remember the time of this tick.
pub fn set_last_tick(conn: &Connection, at: &str) -> StoreResult<()> {
    conn.execute(
        "INSERT INTO scheduler_state (id, last_tick) VALUES (1, ?1)
         ON CONFLICT (id) DO UPDATE SET last_tick = excluded.last_tick",
        params![at],
    )?;
    Ok(())
}

/// Record that the slot `scheduled_at` of `policy_id` was missed. Returns false when that
/// slot was recorded before (the caller then reports nothing again).
pub fn record_missed(
    conn: &Connection,
    policy_id: &str,
    scheduled_at: &str,
    reason: &str,
) -> StoreResult<bool> {
    Ok(conn.execute(
        "INSERT OR IGNORE INTO scheduler_missed (policy_id, scheduled_at, reason, recorded_at)
         VALUES (?1, ?2, ?3, ?4)",
        params![policy_id, scheduled_at, reason, now_ts()],
    )? == 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn tick_and_missed_slots_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        assert_eq!(store.read_blocking(last_tick).unwrap(), None);
        store
            .write_blocking(|tx| set_last_tick(tx, "2026-11-22T01:00:00.000Z"))
            .unwrap();
        store
            .write_blocking(|tx| set_last_tick(tx, "2026-11-22T02:00:00.000Z"))
            .unwrap();
        assert_eq!(
            store.read_blocking(last_tick).unwrap().as_deref(),
            Some("2026-11-22T02:00:00.000Z")
        );
        let first = store
            .write_blocking(|tx| record_missed(tx, "p", "2026-11-22T02:00:00Z", "down"))
            .unwrap();
        let again = store
            .write_blocking(|tx| record_missed(tx, "p", "2026-11-22T02:00:00Z", "down"))
            .unwrap();
        let other = store
            .write_blocking(|tx| record_missed(tx, "q", "2026-11-22T02:00:00Z", "down"))
            .unwrap();
        assert!(first && !again && other);
    }
}
