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
        "0003_run_host_packages.sql",
        include_str!("../../migrations/0003_run_host_packages.sql"),
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
        return Err(newer_error(path, version, known));
    }
    migrations().to_latest(conn).map_err(|e| match e {
        rusqlite_migration::Error::RusqliteError { err, .. }
            if matches!(
                err.sqlite_error_code(),
                Some(
                    rusqlite::ErrorCode::DatabaseBusy
                        | rusqlite::ErrorCode::DatabaseLocked
                        | rusqlite::ErrorCode::NotADatabase
                        | rusqlite::ErrorCode::DatabaseCorrupt
                        | rusqlite::ErrorCode::ReadOnly
                        | rusqlite::ErrorCode::PermissionDenied
                )
            ) =>
        {
            super::open_err(path, err)
        }
        other => StoreError::Open(format!(
            "cannot migrate database {}: {other} (nothing was changed; restore a backup if \
             the file was edited by hand)",
            path.display()
        )),
    })
}

/// The error for a database written by a newer spm.
pub fn newer_error(path: &Path, version: i64, known: i64) -> StoreError {
    StoreError::Open(format!(
        "database {} has schema version {version}, newer than this spm knows ({known}); \
         run a newer spm, or point --database at another file",
        path.display()
    ))
}
