//! API tokens: created once (the secret is shown to the caller and never stored), kept as a
//! SHA-256 hash plus a short prefix for listings, revoked by name.

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::Serialize;

use super::{StoreError, StoreResult, now_ts};

/// A token row as listings show it (never the hash).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TokenInfo {
    /// Row id.
    pub id: i64,
    /// Unique name (the identity audits record).
    pub name: String,
    /// Role name.
    pub role: String,
    /// First characters of the token, to recognise it.
    pub prefix: String,
    /// Creation time.
    pub created_at: String,
    /// Last time the server accepted it (updated at most once a minute).
    pub last_used_at: Option<String>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<String>,
}

/// What authentication needs from a token row found by its hash.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// Row id.
    pub id: i64,
    /// Token name.
    pub name: String,
    /// Role name.
    pub role: String,
    /// The stored SHA-256 hex of the token.
    pub token_hash: String,
    /// Whether it was revoked.
    pub revoked: bool,
}

impl std::fmt::Debug for TokenRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenRecord")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("role", &self.role)
            .field("token_hash", &"<redacted>")
            .field("revoked", &self.revoked)
            .finish()
    }
}

/// Insert a token; `token_hash` is the SHA-256 hex of the full token text. The caller
/// validates `name` and `role` (see `server::auth`).
///
/// Fails with [`StoreError::Conflict`] when the name is taken (also by a revoked token).
pub fn insert(
    tx: &Transaction<'_>,
    name: &str,
    role: &str,
    token_hash: &str,
    prefix: &str,
) -> StoreResult<TokenInfo> {
    let exists: Option<i64> = tx
        .query_row("SELECT id FROM api_tokens WHERE name = ?1", [name], |r| {
            r.get(0)
        })
        .optional()?;
    if exists.is_some() {
        return Err(StoreError::Conflict(format!(
            "a token named {name:?} already exists (names are never reused, even after revocation)"
        )));
    }
    let now = now_ts();
    tx.execute(
        "INSERT INTO api_tokens (name, role, token_hash, prefix, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![name, role, token_hash, prefix, now],
    )?;
    Ok(TokenInfo {
        id: tx.last_insert_rowid(),
        name: name.to_owned(),
        role: role.to_owned(),
        prefix: prefix.to_owned(),
        created_at: now,
        last_used_at: None,
        revoked_at: None,
    })
}

fn info_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TokenInfo> {
    Ok(TokenInfo {
        id: r.get(0)?,
        name: r.get(1)?,
        role: r.get(2)?,
        prefix: r.get(3)?,
        created_at: r.get(4)?,
        last_used_at: r.get(5)?,
        revoked_at: r.get(6)?,
    })
}

/// Every token, oldest first.
pub fn list(conn: &Connection) -> StoreResult<Vec<TokenInfo>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, name, role, prefix, created_at, last_used_at, revoked_at FROM api_tokens ORDER BY id",
    )?;
    let rows = stmt.query_map([], info_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Find a token by the hash of the presented secret.
pub fn find_by_hash(conn: &Connection, token_hash: &str) -> StoreResult<Option<TokenRecord>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, name, role, token_hash, revoked_at IS NOT NULL FROM api_tokens WHERE token_hash = ?1",
    )?;
    Ok(stmt
        .query_row([token_hash], |r| {
            Ok(TokenRecord {
                id: r.get(0)?,
                name: r.get(1)?,
                role: r.get(2)?,
                token_hash: r.get(3)?,
                revoked: r.get(4)?,
            })
        })
        .optional()?)
}

/// Revoke a token by name. Revoking an already revoked token is a conflict; an unknown
/// name is not found.
pub fn revoke(tx: &Transaction<'_>, name: &str) -> StoreResult<TokenInfo> {
    let row = tx
        .query_row(
            "SELECT id, name, role, prefix, created_at, last_used_at, revoked_at FROM api_tokens WHERE name = ?1",
            [name],
            info_from_row,
        )
        .optional()?
        .ok_or_else(|| StoreError::NotFound {
            what: "token",
            id: name.to_owned(),
        })?;
    if row.revoked_at.is_some() {
        return Err(StoreError::Conflict(format!(
            "token {name:?} is already revoked"
        )));
    }
    let now = now_ts();
    tx.execute(
        "UPDATE api_tokens SET revoked_at = ?1 WHERE id = ?2 AND revoked_at IS NULL",
        params![now, row.id],
    )?;
    Ok(TokenInfo {
        revoked_at: Some(now),
        ..row
    })
}

/// Record that a token was used.
pub fn touch(tx: &Transaction<'_>, id: i64) -> StoreResult<()> {
    tx.execute(
        "UPDATE api_tokens SET last_used_at = ?1 WHERE id = ?2",
        params![now_ts(), id],
    )?;
    Ok(())
}

/// Number of tokens with the admin role that are not revoked.
pub fn active_admin_count(conn: &Connection) -> StoreResult<i64> {
    Ok(conn.query_row(
        "SELECT COUNT(*) FROM api_tokens WHERE role = 'admin' AND revoked_at IS NULL",
        [],
        |r| r.get(0),
    )?)
}
