//! Numbered SQL migrations from `migrations/`, embedded in the binary.

use std::path::Path;

use rusqlite::Connection;
use rusqlite_migration::{M, Migrations};

use super::StoreError;

/// The embedded migration files, in order. Add new files at the end; never edit old ones.
pub const FILES: &[(&str, &str)] = &[
    (
        "0001_core.sql",
        include_str!("../../migrations/0001_core.sql"),
    ),
    (
        "0002_views.sql",
        include_str!("../../migrations/0002_views.sql"),
    ),
    (
        "0003_sync_lease.sql",
        include_str!("../../migrations/0003_sync_lease.sql"),
    ),
];

/// The migration set as rusqlite_migration sees it.
pub fn migrations() -> Migrations<'static> {
    Migrations::from_iter(FILES.iter().map(|(_, sql)| M::up(sql)))
}

/// Apply pending migrations; refuse a database from a newer spm.
pub fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(|e| StoreError::Open(format!("cannot read database {}: {e}", path.display())))?;
    let known = FILES.len() as i64;
    if version > known {
        return Err(StoreError::Open(format!(
            "database {} has schema version {version}, newer than this spm knows ({known}); upgrade spm",
            path.display()
        )));
    }
    migrations()
        .to_latest(conn)
        .map_err(|e| StoreError::Open(format!("cannot migrate database {}: {e}", path.display())))
}
