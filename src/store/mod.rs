//! SQLite store: connections, migrations, one module per aggregate. All SQL lives here.
//!
//! [`Store`] is cheap to clone. Writes go through one connection behind a mutex (SQLite has
//! one writer anyway) inside an IMMEDIATE transaction; reads use a small set of read-only
//! connections (WAL lets them run beside the writer). Async callers use [`Store::read`] and
//! [`Store::write`], which run the closure on tokio's blocking pool; synchronous callers
//! (CLI, tests) use the `*_blocking` variants.
//!
//! [`Store::version`] tells callers cheaply whether anything was committed since they last
//! looked (by this process or any other), so they can cache what they read from it.

pub mod approvals;
pub mod audit;
pub mod compliance;
pub mod dashboard;
pub mod dashboard_sessions;
pub mod errata;
pub mod fixtures;
pub mod migrations;
pub mod notifications;
pub mod queue;
pub mod queue_view;
pub mod reports;
pub mod runs;
pub mod scheduler;
pub mod script_kv;
pub mod script_versions;
pub mod stats;
pub mod status;
pub mod sync_runs;
pub mod systems;
pub mod test_runs;
pub mod tokens;
pub mod views;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};

/// Errors from the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite reported an error.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A status transition that the state machine forbids, or that lost a race.
    #[error(transparent)]
    Transition(#[from] crate::engine::state::TransitionError),
    /// A row that should exist does not.
    #[error("{what} {id} not found")]
    NotFound {
        /// Kind of object.
        what: &'static str,
        /// Its identifier.
        id: String,
    },
    /// A request conflicts with the current state (duplicate, already running, ...).
    #[error("{0}")]
    Conflict(String),
    /// Opening or migrating the database failed; the message says what to do.
    #[error("{0}")]
    Open(String),
    /// A blocking task panicked or was cancelled.
    #[error("database task failed: {0}")]
    Task(String),
}

/// Result alias for store operations.
pub type StoreResult<T> = Result<T, StoreError>;

struct Inner {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    /// The connection behind [`Store::version`].
    probe: Mutex<Probe>,
}

/// A read-only connection kept only to ask `PRAGMA data_version`, whose answers are only
/// comparable on one connection: each (re)opening starts a new epoch.
#[derive(Default)]
struct Probe {
    conn: Option<Connection>,
    epoch: u64,
}

/// What [`Store::version`] answers: equal values mean nothing was committed in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DataVersion {
    epoch: u64,
    value: i64,
}

/// Handle to the spm database.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .finish()
    }
}

/// Apply the pragmas every spm connection needs.
fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(())
}

impl Store {
    /// Open (creating if needed) the database at `path` and apply pending migrations.
    ///
    /// Refuses a database written by a newer spm, a corrupt file, or one locked by another
    /// writer, with a one-line message naming the file and what to do.
    pub fn open(path: &Path) -> StoreResult<Self> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Open(format!("cannot create directory {}: {e}", dir.display()))
            })?;
        }
        let mut writer = Connection::open(path).map_err(|e| open_err(path, e))?;
        configure(&writer).map_err(|e| open_err(path, e))?;
        // Refuse a corrupt file or a newer schema before anything writes to the file
        // (switching to WAL rewrites the header).
        let version: i64 = writer
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| open_err(path, e))?;
        let known = migrations::FILES.len() as i64;
        if version > known {
            return Err(migrations::newer_error(path, version, known));
        }
        if version == 0 {
            let objects: i64 = writer
                .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
                .map_err(|e| open_err(path, e))?;
            if objects > 0 {
                return Err(StoreError::Open(format!(
                    "database {} already holds {objects} tables or indexes but no spm schema \
                     (another program's database?); point --database at a new file",
                    path.display()
                )));
            }
        }
        writer
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0))
            .map_err(|e| open_err(path, e))?;
        migrations::migrate(&mut writer, path)?;
        Ok(Self {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                writer: Mutex::new(writer),
                readers: Mutex::new(Vec::new()),
                probe: Mutex::new(Probe::default()),
            }),
        })
    }

    /// Open a private in-memory database (unit tests).
    pub fn open_in_memory() -> StoreResult<Self> {
        let mut writer = Connection::open_in_memory()?;
        configure(&writer)?;
        migrations::migrate(&mut writer, Path::new(":memory:"))?;
        Ok(Self {
            inner: Arc::new(Inner {
                path: PathBuf::from(":memory:"),
                writer: Mutex::new(writer),
                readers: Mutex::new(Vec::new()),
                probe: Mutex::new(Probe::default()),
            }),
        })
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Run `f` inside one IMMEDIATE transaction on the writer; commit when it returns `Ok`.
    pub fn write_blocking<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let mut conn = self
            .inner
            .writer
            .lock()
            .map_err(|_| StoreError::Task("writer connection poisoned".into()))?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// Run `f` with a read connection.
    pub fn read_blocking<T>(
        &self,
        f: impl FnOnce(&Connection) -> StoreResult<T>,
    ) -> StoreResult<T> {
        if self.inner.path == Path::new(":memory:") {
            // An in-memory database exists only on the writer connection.
            let conn = self
                .inner
                .writer
                .lock()
                .map_err(|_| StoreError::Task("writer connection poisoned".into()))?;
            return f(&conn);
        }
        let conn = {
            let mut pool = self
                .inner
                .readers
                .lock()
                .map_err(|_| StoreError::Task("reader pool poisoned".into()))?;
            pool.pop()
        };
        let conn = match conn {
            Some(c) => c,
            None => {
                let c = Connection::open_with_flags(
                    &self.inner.path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                configure(&c)?;
                c
            }
        };
        let out = f(&conn);
        if let Ok(mut pool) = self.inner.readers.lock()
            && pool.len() < 8
        {
            pool.push(conn);
        }
        out
    }

    /// A number that changes whenever a transaction is committed to the database, by this
    /// process or another one (SQLite's `PRAGMA data_version`, asked on a connection that
    /// never writes). Two equal answers mean nothing was committed in between, so what was
    /// read after the first is still current. Cheap (no disk I/O, no blocking pool): meant
    /// for every request that serves from a cache.
    ///
    /// `None` when the version cannot be known (an in-memory database, where readers share
    /// the writer connection, or any SQLite error): callers must then read the database.
    pub fn version(&self) -> Option<DataVersion> {
        if self.inner.path == Path::new(":memory:") {
            return None;
        }
        let mut probe = self.inner.probe.lock().ok()?;
        if probe.conn.is_none() {
            let conn = Connection::open_with_flags(
                &self.inner.path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .ok()?;
            // Never wait on a lock here: a busy database just means "unknown" this time.
            conn.busy_timeout(Duration::ZERO).ok()?;
            // The smallest page cache: this connection reads no table pages.
            conn.pragma_update(None, "cache_size", 1).ok()?;
            probe.conn = Some(conn);
            probe.epoch += 1;
        }
        let epoch = probe.epoch;
        let value = probe.conn.as_ref().map(|conn| {
            conn.prepare_cached("PRAGMA data_version")
                .and_then(|mut stmt| stmt.query_row([], |r| r.get::<_, i64>(0)))
        })?;
        match value {
            Ok(value) => Some(DataVersion { epoch, value }),
            Err(_) => {
                // Reopen (a new epoch) next time rather than trust a connection that failed.
                probe.conn = None;
                None
            }
        }
    }

    /// Async wrapper of [`Store::write_blocking`] on the blocking pool.
    pub async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.write_blocking(f))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// Async wrapper of [`Store::read_blocking`] on the blocking pool.
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.read_blocking(f))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
    }
}

pub(crate) fn open_err(path: &Path, e: rusqlite::Error) -> StoreError {
    let hint = match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseBusy) | Some(rusqlite::ErrorCode::DatabaseLocked) => {
            "another process holds a lock on it; stop it or wait"
        }
        Some(rusqlite::ErrorCode::NotADatabase) | Some(rusqlite::ErrorCode::DatabaseCorrupt) => {
            "it is not a valid spm database; restore it from a backup or point --database elsewhere"
        }
        Some(rusqlite::ErrorCode::CannotOpen)
        | Some(rusqlite::ErrorCode::PermissionDenied)
        | Some(rusqlite::ErrorCode::ReadOnly) => "check the path and its permissions",
        _ => "check the file",
    };
    StoreError::Open(format!(
        "cannot open database {}: {e} ({hint})",
        path.display()
    ))
}

/// Current time as the store's timestamp text (RFC 3339 UTC, milliseconds).
pub fn now_ts() -> String {
    format_ts(chrono::Utc::now())
}

/// A time as the store's timestamp text (RFC 3339 UTC, milliseconds), the same format as
/// the schema's `strftime('%Y-%m-%dT%H:%M:%fZ','now')`, so text comparison orders by time.
pub fn format_ts(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// Read a status column into its state-machine enum; an unknown text (impossible behind
/// the CHECK constraints, but never a panic) becomes a conversion error.
pub(crate) fn status_col<S>(row: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<S>
where
    S: std::str::FromStr,
    S::Err: std::error::Error + Send + Sync + 'static,
{
    let text: String = row.get(idx)?;
    text.parse::<S>().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e))
    })
}
