//! Numbered SQL migrations from `migrations/`, embedded in the binary.
//!
//! `PRAGMA user_version` holds the number of files applied (the same convention as
//! `rusqlite_migration`, whose [`migrations`] view of the set tests use to build old files).
//! [`migrate`] reads the version and applies what is missing inside one IMMEDIATE
//! transaction, so two processes opening a fresh file at once cannot both apply a file, and
//! a failing file leaves the database as it was.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};
use rusqlite_migration::{M, Migrations};

use super::{StoreError, open_err};

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
        "0003_notification_details.sql",
        include_str!("../../migrations/0003_notification_details.sql"),
    ),
    (
        "0004_api_indexes.sql",
        include_str!("../../migrations/0004_api_indexes.sql"),
    ),
    (
        "0005_sync_lease.sql",
        include_str!("../../migrations/0005_sync_lease.sql"),
    ),
    (
        "0006_test_engine.sql",
        include_str!("../../migrations/0006_test_engine.sql"),
    ),
    (
        "0007_run_host_packages.sql",
        include_str!("../../migrations/0007_run_host_packages.sql"),
    ),
    (
        "0008_notification_routed.sql",
        include_str!("../../migrations/0008_notification_routed.sql"),
    ),
    (
        "0009_scheduler_slots.sql",
        include_str!("../../migrations/0009_scheduler_slots.sql"),
    ),
    (
        "0010_dashboard_sessions.sql",
        include_str!("../../migrations/0010_dashboard_sessions.sql"),
    ),
];

/// The migration set as rusqlite_migration sees it.
pub fn migrations() -> Migrations<'static> {
    Migrations::from_iter(FILES.iter().map(|(_, sql)| M::up(sql)))
}

/// Apply pending migrations atomically; refuse a database from a newer spm. Returns the
/// names of the files applied (empty when up to date).
pub fn migrate(conn: &mut Connection, path: &Path) -> Result<Vec<&'static str>, StoreError> {
    let known = FILES.len() as i64;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| open_err(path, e))?;
    let version: i64 = tx
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(|e| open_err(path, e))?;
    if version > known {
        return Err(newer_error(path, version, known));
    }
    let start = usize::try_from(version).unwrap_or(0);
    let mut applied = Vec::new();
    for (name, sql) in &FILES[start..] {
        tx.execute_batch(sql).map_err(|e| {
            StoreError::Open(format!(
                "cannot apply migration {name} to database {}: {e} (nothing was changed; \
                 restore a backup if the file was edited by hand)",
                path.display()
            ))
        })?;
        applied.push(*name);
    }
    if !applied.is_empty() {
        tx.pragma_update(None, "user_version", known)
            .map_err(|e| open_err(path, e))?;
    }
    tx.commit().map_err(|e| open_err(path, e))?;
    if !applied.is_empty() {
        tracing::info!(
            database = %path.display(),
            "applied migrations {}",
            applied.join(", ")
        );
    }
    Ok(applied)
}

/// The error for a database written by a newer spm.
pub fn newer_error(path: &Path, version: i64, known: i64) -> StoreError {
    StoreError::Open(format!(
        "database {} has schema version {version}, newer than this spm knows ({known}); \
         run a newer spm, or point --database at another file",
        path.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_version_convention_as_rusqlite_migration() {
        let mut ours = Connection::open_in_memory().unwrap();
        migrate(&mut ours, Path::new(":memory:")).unwrap();
        let mut theirs = Connection::open_in_memory().unwrap();
        migrations().to_latest(&mut theirs).unwrap();
        let v = |c: &Connection| -> i64 {
            c.pragma_query_value(None, "user_version", |r| r.get(0))
                .unwrap()
        };
        assert_eq!(v(&ours), v(&theirs));
        assert!(
            migrate(&mut ours, Path::new(":memory:"))
                .unwrap()
                .is_empty()
        );
        migrations().validate().unwrap();
    }
}
