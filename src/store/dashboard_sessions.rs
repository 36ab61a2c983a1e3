//! Dashboard sessions (`dashboard_sessions`): what survives a restart of the service. The
//! cookie value itself is never stored, only its SHA-256 (`id_hash`).

use rusqlite::{Connection, OptionalExtension as _, Transaction, params};

use super::StoreResult;

/// One stored session.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionRow {
    /// SHA-256 hex of the cookie value.
    pub id_hash: String,
    /// Token name (the identity audits record).
    pub name: String,
    /// Role name of the token.
    pub role: String,
    /// SHA-256 hex of the API token the session was opened with.
    pub token_hash: String,
    /// The session's CSRF token.
    pub csrf: String,
    /// Store timestamp of creation.
    pub created_at: String,
    /// Store timestamp of expiry.
    pub expires_at: String,
}

impl std::fmt::Debug for SessionRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionRow")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Store a new session.
pub fn insert(tx: &Transaction<'_>, row: &SessionRow) -> StoreResult<()> {
    tx.prepare_cached(
        "INSERT INTO dashboard_sessions (id_hash, name, role, token_hash, csrf, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        row.id_hash,
        row.name,
        row.role,
        row.token_hash,
        row.csrf,
        row.created_at,
        row.expires_at
    ])?;
    Ok(())
}

/// Remove the sessions that expired at `now`; returns how many.
pub fn delete_expired(tx: &Transaction<'_>, now: &str) -> StoreResult<usize> {
    Ok(tx
        .prepare_cached("DELETE FROM dashboard_sessions WHERE expires_at <= ?1")?
        .execute([now])?)
}

/// Keep at most `keep` sessions, dropping the oldest; returns how many were dropped.
pub fn trim_oldest(tx: &Transaction<'_>, keep: usize) -> StoreResult<usize> {
    let keep = i64::try_from(keep).unwrap_or(i64::MAX);
    Ok(tx
        .prepare_cached(
            "DELETE FROM dashboard_sessions WHERE id_hash NOT IN
             (SELECT id_hash FROM dashboard_sessions ORDER BY created_at DESC LIMIT ?1)",
        )?
        .execute([keep])?)
}

/// End one session.
pub fn delete(tx: &Transaction<'_>, id_hash: &str) -> StoreResult<usize> {
    Ok(tx
        .prepare_cached("DELETE FROM dashboard_sessions WHERE id_hash = ?1")?
        .execute([id_hash])?)
}

/// The session with this id hash if it is still live at `now`.
pub fn live(conn: &Connection, id_hash: &str, now: &str) -> StoreResult<Option<SessionRow>> {
    Ok(conn
        .prepare_cached(
            "SELECT id_hash, name, role, token_hash, csrf, created_at, expires_at
             FROM dashboard_sessions WHERE id_hash = ?1 AND expires_at > ?2",
        )?
        .query_row(params![id_hash, now], |r| {
            Ok(SessionRow {
                id_hash: r.get(0)?,
                name: r.get(1)?,
                role: r.get(2)?,
                token_hash: r.get(3)?,
                csrf: r.get(4)?,
                created_at: r.get(5)?,
                expires_at: r.get(6)?,
            })
        })
        .optional()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn row(id: &str, created: &str, expires: &str) -> SessionRow {
        SessionRow {
            id_hash: id.into(),
            name: "alice".into(),
            role: "approver".into(),
            token_hash: "t".into(),
            csrf: "c".into(),
            created_at: created.into(),
            expires_at: expires.into(),
        }
    }

    #[test]
    fn live_expired_trimmed_and_deleted() {
        let store = Store::open_in_memory().unwrap();
        store
            .write_blocking(|tx| {
                insert(
                    tx,
                    &row("a", "2026-01-01T00:00:00.000Z", "2026-01-02T00:00:00.000Z"),
                )?;
                insert(
                    tx,
                    &row("b", "2026-01-01T01:00:00.000Z", "2026-01-03T00:00:00.000Z"),
                )?;
                insert(
                    tx,
                    &row("c", "2026-01-01T02:00:00.000Z", "2026-01-03T00:00:00.000Z"),
                )
            })
            .unwrap();
        let at = |id: &str, now: &str| {
            let (id, now) = (id.to_string(), now.to_string());
            store.read_blocking(move |c| live(c, &id, &now)).unwrap()
        };
        assert_eq!(
            at("a", "2026-01-01T12:00:00.000Z").map(|r| r.name),
            Some("alice".into())
        );
        assert!(
            at("a", "2026-01-02T00:00:00.000Z").is_none(),
            "expired at its expiry"
        );
        let removed = store
            .write_blocking(|tx| delete_expired(tx, "2026-01-02T00:00:00.000Z"))
            .unwrap();
        assert_eq!(removed, 1);
        assert_eq!(store.write_blocking(|tx| trim_oldest(tx, 1)).unwrap(), 1);
        assert!(
            at("b", "2026-01-02T00:00:00.000Z").is_none(),
            "the oldest was trimmed"
        );
        assert!(at("c", "2026-01-02T00:00:00.000Z").is_some());
        assert_eq!(store.write_blocking(|tx| delete(tx, "c")).unwrap(), 1);
        assert!(at("c", "2026-01-02T00:00:00.000Z").is_none());
        // A role outside the known set is refused by the schema.
        let bad = store.write_blocking(|tx| {
            let mut r = row("d", "2026-01-01T00:00:00.000Z", "2026-01-02T00:00:00.000Z");
            r.role = "root".into();
            insert(tx, &r)
        });
        assert!(bad.is_err());
    }
}
