//! The append-only audit log (`audit_log`; triggers forbid UPDATE and DELETE).
//!
//! Append in the same transaction as the change it records.

use rusqlite::{Connection, params, types::Value};
use serde::Serialize;

use super::{StoreResult, now_ts};

/// One decision or mutation to record.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditEntry {
    /// Authenticated identity (token name, `cli:<user>`, `system`).
    pub actor: String,
    /// Client address, when the change came over the network.
    pub source_addr: Option<String>,
    /// What happened, dotted: `queue.add`, `approval.approve`, `run.start`.
    pub action: String,
    /// Kind of object: `queue_item`, `patch_run`, `token`.
    pub object_type: String,
    /// Its identifier.
    pub object_id: Option<String>,
    /// Why (operator's text).
    pub reason: Option<String>,
    /// Structured details (never secrets).
    pub details: serde_json::Value,
}

/// A stored audit row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditRecord {
    /// Row id (monotonic).
    pub id: i64,
    /// When.
    pub at: String,
    /// Who.
    pub actor: String,
    /// From where.
    pub source_addr: Option<String>,
    /// What.
    pub action: String,
    /// Kind of object.
    pub object_type: String,
    /// Its identifier.
    pub object_id: Option<String>,
    /// Why.
    pub reason: Option<String>,
    /// Structured details.
    pub details: serde_json::Value,
}

/// Append one entry; returns its id.
pub fn append(conn: &Connection, e: &AuditEntry) -> StoreResult<i64> {
    let details = if e.details.is_null() {
        "{}".to_string()
    } else {
        e.details.to_string()
    };
    conn.execute(
        "INSERT INTO audit_log (at, actor, source_addr, action, object_type, object_id, reason, details) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            now_ts(),
            e.actor,
            e.source_addr,
            e.action,
            e.object_type,
            e.object_id,
            e.reason,
            details
        ],
    )?;
    Ok(conn.last_insert_rowid())
}

/// Filters for [`list`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditFilter {
    /// Only this kind of object.
    pub object_type: Option<String>,
    /// Only this object.
    pub object_id: Option<String>,
    /// Only this actor.
    pub actor: Option<String>,
    /// Only ids below this (cursor for the next page, newest first).
    pub before_id: Option<i64>,
    /// Page size (0: 100; capped at 1000).
    pub limit: u32,
}

/// Audit rows matching `filter`, newest first.
pub fn list(conn: &Connection, filter: &AuditFilter) -> StoreResult<Vec<AuditRecord>> {
    let mut clauses = Vec::new();
    let mut args: Vec<Value> = Vec::new();
    let mut add = |col: &str, op: &str, v: Value| {
        args.push(v);
        clauses.push(format!("{col} {op} ?{}", args.len()));
    };
    if let Some(t) = &filter.object_type {
        add("object_type", "=", Value::Text(t.clone()));
    }
    if let Some(t) = &filter.object_id {
        add("object_id", "=", Value::Text(t.clone()));
    }
    if let Some(t) = &filter.actor {
        add("actor", "=", Value::Text(t.clone()));
    }
    if let Some(b) = filter.before_id {
        add("id", "<", Value::Integer(b));
    }
    let limit = match filter.limit {
        0 => 100,
        n => n.min(1000),
    };
    let where_sql = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    args.push(Value::Integer(i64::from(limit)));
    let mut stmt = conn.prepare(&format!(
        "SELECT id, at, actor, source_addr, action, object_type, object_id, reason, details \
         FROM audit_log {where_sql} ORDER BY id DESC LIMIT ?{}",
        args.len()
    ))?;
    let rows = stmt
        .query_map(rusqlite::params_from_iter(args.iter()), |r| {
            let details: String = r.get(8)?;
            Ok(AuditRecord {
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
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Store, StoreError};

    #[test]
    fn append_list_and_append_only() {
        let s = Store::open_in_memory().unwrap();
        let id = s
            .write_blocking(|tx| {
                append(
                    tx,
                    &AuditEntry {
                        actor: "alice".into(),
                        action: "queue.add".into(),
                        object_type: "queue_item".into(),
                        object_id: Some("1".into()),
                        details: serde_json::json!({"advisory": "USN-1-1"}),
                        ..Default::default()
                    },
                )?;
                append(
                    tx,
                    &AuditEntry {
                        actor: "bob".into(),
                        action: "approval.approve".into(),
                        object_type: "queue_item".into(),
                        object_id: Some("1".into()),
                        reason: Some("tested".into()),
                        ..Default::default()
                    },
                )
            })
            .unwrap();
        let rows = s
            .read_blocking(|c| {
                list(
                    c,
                    &AuditFilter {
                        object_type: Some("queue_item".into()),
                        object_id: Some("1".into()),
                        ..Default::default()
                    },
                )
            })
            .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].id, id);
        assert_eq!(rows[1].details["advisory"], "USN-1-1");
        let err = s
            .write_blocking(|tx| {
                tx.execute("UPDATE audit_log SET actor = 'mallory'", [])?;
                Ok(())
            })
            .unwrap_err();
        assert!(matches!(err, StoreError::Sqlite(_)));
        assert!(err.to_string().contains("append-only"), "{err}");
        let err = s
            .write_blocking(|tx| {
                tx.execute("DELETE FROM audit_log", [])?;
                Ok(())
            })
            .unwrap_err();
        assert!(err.to_string().contains("append-only"), "{err}");
    }
}
