//! Per-script key/value pairs for Lua (`spm.db.kv_get` / `kv_set`), table `script_kv`.

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::{StoreResult, now_ts};

/// Longest accepted key, in bytes.
pub const MAX_KEY_LEN: usize = 256;
/// Largest accepted value (JSON text), in bytes.
pub const MAX_VALUE_LEN: usize = 64 * 1024;

/// Value stored under `namespace`/`key`, as JSON text.
pub fn get(conn: &Connection, namespace: &str, key: &str) -> StoreResult<Option<String>> {
    Ok(conn
        .query_row(
            "SELECT value FROM script_kv WHERE namespace = ?1 AND key = ?2",
            params![namespace, key],
            |r| r.get(0),
        )
        .optional()?)
}

/// Store `value` (JSON text) under `namespace`/`key`, replacing any previous value.
pub fn set(tx: &Transaction<'_>, namespace: &str, key: &str, value: &str) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO script_kv (namespace, key, value, updated_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value,
             updated_at = excluded.updated_at",
        params![namespace, key, value, now_ts()],
    )?;
    Ok(())
}

/// Remove `namespace`/`key`; true when it existed.
pub fn delete(tx: &Transaction<'_>, namespace: &str, key: &str) -> StoreResult<bool> {
    Ok(tx.execute(
        "DELETE FROM script_kv WHERE namespace = ?1 AND key = ?2",
        params![namespace, key],
    )? > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn set_get_replace_delete() {
        let store = Store::open_in_memory().unwrap();
        store
            .write_blocking(|tx| set(tx, "phases/patch.lua", "k", "1"))
            .unwrap();
        store
            .write_blocking(|tx| set(tx, "phases/patch.lua", "k", "\"two\""))
            .unwrap();
        let v = store
            .read_blocking(|c| get(c, "phases/patch.lua", "k"))
            .unwrap();
        assert_eq!(v.as_deref(), Some("\"two\""));
        let other = store.read_blocking(|c| get(c, "other.lua", "k")).unwrap();
        assert_eq!(other, None);
        assert!(
            store
                .write_blocking(|tx| delete(tx, "phases/patch.lua", "k"))
                .unwrap()
        );
    }
}
