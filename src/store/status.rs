//! `spm db status`: schema version, pending migrations, row counts.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};
use serde::Serialize;

use super::{StoreError, StoreResult, migrations, open_err};

/// Rows in one table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableCount {
    /// Table name.
    pub table: String,
    /// Number of rows.
    pub rows: i64,
}

/// What `spm db status` reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DbStatus {
    /// Database file.
    pub path: String,
    /// Migrations applied (`PRAGMA user_version`).
    pub schema_version: i64,
    /// Migrations this binary knows.
    pub latest_version: i64,
    /// Names of the applied migration files.
    pub applied: Vec<String>,
    /// Names of the migration files not applied yet.
    pub pending: Vec<String>,
    /// SQLite journal mode (`wal` once spm opened it for writing).
    pub journal_mode: String,
    /// Row count per table, by name.
    pub tables: Vec<TableCount>,
}

/// Inspect the database at `path` without creating, migrating or changing it.
///
/// A missing file, a corrupt file, or a schema newer than this binary is an error whose
/// message names the file and what to do.
pub fn inspect(path: &Path) -> StoreResult<DbStatus> {
    if !path.exists() {
        return Err(StoreError::Open(format!(
            "database {} does not exist; create it with `spm db migrate` or pass --database",
            path.display()
        )));
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| open_err(path, e))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(|e| open_err(path, e))?;
    let status = collect(&conn, path).map_err(|e| match e {
        StoreError::Sqlite(e) => open_err(path, e),
        other => other,
    })?;
    if status.schema_version > status.latest_version {
        return Err(migrations::newer_error(
            path,
            status.schema_version,
            status.latest_version,
        ));
    }
    Ok(status)
}

/// Collect the status from an open connection (`path` is only reported).
pub fn collect(conn: &Connection, path: &Path) -> StoreResult<DbStatus> {
    let schema_version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let journal_mode: String = conn.pragma_query_value(None, "journal_mode", |r| r.get(0))?;
    let latest_version = migrations::FILES.len() as i64;
    let applied_n = usize::try_from(schema_version.clamp(0, latest_version)).unwrap_or(0);
    let names = migrations::FILES.iter().map(|(n, _)| n.to_string());
    let applied: Vec<String> = names.clone().take(applied_n).collect();
    let pending: Vec<String> = names.skip(applied_n).collect();
    let mut stmt = conn.prepare(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
         ORDER BY name",
    )?;
    let table_names = stmt
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut tables = Vec::with_capacity(table_names.len());
    for t in table_names {
        let quoted = format!("\"{}\"", t.replace('"', "\"\""));
        let rows: i64 =
            conn.query_row(&format!("SELECT count(*) FROM {quoted}"), [], |r| r.get(0))?;
        tables.push(TableCount { table: t, rows });
    }
    Ok(DbStatus {
        path: path.display().to_string(),
        schema_version,
        latest_version,
        applied,
        pending,
        journal_mode,
        tables,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn status_of_fresh_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spm.db");
        assert!(matches!(inspect(&path), Err(StoreError::Open(_))));
        assert!(!path.exists(), "inspect must not create the file");
        let store = Store::open(&path).unwrap();
        let st = inspect(&path).unwrap();
        assert_eq!(st.schema_version, st.latest_version);
        assert!(st.pending.is_empty());
        assert_eq!(st.journal_mode, "wal");
        assert!(
            st.tables
                .iter()
                .any(|t| t.table == "queue_items" && t.rows == 0)
        );
        drop(store);
    }
}
