//! Append-only audit log: who did what to which object, when, from where.

use rusqlite::{Connection, Transaction, params};
use serde::Serialize;

use super::StoreResult;

/// One audit entry to append.
#[derive(Debug, Clone, Default)]
pub struct NewAudit<'a> {
    /// Authenticated identity (token name, `dev`, `cli:<user>`, `system`).
    pub actor: &'a str,
    /// Client address as seen by the server socket (never a forwarded header).
    pub source_addr: Option<&'a str>,
    /// Dotted action name, e.g. `token.create`.
    pub action: &'a str,
    /// Kind of object acted on.
    pub object_type: &'a str,
    /// Its identifier.
    pub object_id: Option<&'a str>,
    /// Free-text reason given by the actor.
    pub reason: Option<&'a str>,
    /// Extra JSON details.
    pub details: Option<serde_json::Value>,
}

/// An audit row.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AuditEntry {
    /// Row id.
    pub id: i64,
    /// Time of the action.
    pub at: String,
    /// Who.
    pub actor: String,
    /// From where.
    pub source_addr: Option<String>,
    /// What.
    pub action: String,
    /// Kind of object.
    pub object_type: String,
    /// Object id.
    pub object_id: Option<String>,
    /// Why.
    pub reason: Option<String>,
    /// Extra details (JSON).
    pub details: serde_json::Value,
}

/// Append an entry inside the caller's transaction; returns its id.
pub fn append(tx: &Transaction<'_>, e: &NewAudit<'_>) -> StoreResult<i64> {
    let details = e
        .details
        .as_ref()
        .map(|d| d.to_string())
        .unwrap_or_else(|| "{}".to_owned());
    tx.execute(
        "INSERT INTO audit_log (actor, source_addr, action, object_type, object_id, reason, details)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![e.actor, e.source_addr, e.action, e.object_type, e.object_id, e.reason, details],
    )?;
    Ok(tx.last_insert_rowid())
}

/// Filters for [`list`]; `None` means any.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Exact actor.
    pub actor: Option<String>,
    /// Exact action, or a prefix when it ends with `.` (e.g. `token.`).
    pub action: Option<String>,
    /// Exact object type.
    pub object_type: Option<String>,
    /// Exact object id.
    pub object_id: Option<String>,
}

/// Entries matching `filter`, newest first, with the total count of matches.
pub fn list(
    conn: &Connection,
    filter: &AuditFilter,
    limit: i64,
    offset: i64,
) -> StoreResult<(i64, Vec<AuditEntry>)> {
    let action_pattern = filter.action.as_ref().map(|a| {
        if a.ends_with('.') {
            format!("{}%", a.replace('%', "\\%").replace('_', "\\_"))
        } else {
            a.replace('%', "\\%").replace('_', "\\_")
        }
    });
    let where_sql = "(?1 IS NULL OR actor = ?1) AND (?2 IS NULL OR action LIKE ?2 ESCAPE '\\')
         AND (?3 IS NULL OR object_type = ?3) AND (?4 IS NULL OR object_id = ?4)";
    let args = params![
        filter.actor,
        action_pattern,
        filter.object_type,
        filter.object_id
    ];
    let total: i64 = conn.query_row(
        &format!("SELECT COUNT(*) FROM audit_log WHERE {where_sql}"),
        args,
        |r| r.get(0),
    )?;
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT id, at, actor, source_addr, action, object_type, object_id, reason, details
         FROM audit_log WHERE {where_sql} ORDER BY id DESC LIMIT ?5 OFFSET ?6"
    ))?;
    let rows = stmt.query_map(
        params![
            filter.actor,
            action_pattern,
            filter.object_type,
            filter.object_id,
            limit,
            offset
        ],
        |r| {
            let details: String = r.get(8)?;
            Ok(AuditEntry {
                id: r.get(0)?,
                at: r.get(1)?,
                actor: r.get(2)?,
                source_addr: r.get(3)?,
                action: r.get(4)?,
                object_type: r.get(5)?,
                object_id: r.get(6)?,
                reason: r.get(7)?,
                details: serde_json::from_str(&details)
                    .unwrap_or(serde_json::Value::String(details)),
            })
        },
    )?;
    Ok((total, rows.collect::<Result<_, _>>()?))
}

/// Number of audit rows (used by tests that prove a rejected request changed nothing).
pub fn count(conn: &Connection) -> StoreResult<i64> {
    Ok(conn.query_row("SELECT COUNT(*) FROM audit_log", [], |r| r.get(0))?)
}
