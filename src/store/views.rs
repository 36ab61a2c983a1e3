//! Read-only queries over the documented `v_*` views (`migrations/0002_views.sql`), for
//! `spm.db.query` and reports. View and column names are checked against a fixed list and
//! the live schema; values are always bound parameters.

use rusqlite::Connection;
use rusqlite::types::{Value as SqlValue, ValueRef};
use serde_json::{Map, Value};

use super::{StoreError, StoreResult};

/// The views scripts may read.
pub const VIEWS: &[&str] = &[
    "v_queue",
    "v_pending_approvals",
    "v_errata",
    "v_systems",
    "v_compliance",
];

/// Most rows one query returns.
pub const MAX_ROWS: usize = 10_000;

/// Rows of `view` whose columns equal the given values (AND), at most `limit` rows.
pub fn query(
    conn: &Connection,
    view: &str,
    filters: &[(String, Value)],
    limit: usize,
) -> StoreResult<Vec<Map<String, Value>>> {
    if !VIEWS.contains(&view) {
        return Err(StoreError::Conflict(format!(
            "unknown view `{view}` (readable views: {})",
            VIEWS.join(", ")
        )));
    }
    let columns: Vec<String> = {
        let stmt = conn.prepare(&format!("SELECT * FROM {view} LIMIT 0"))?;
        stmt.column_names().iter().map(|s| s.to_string()).collect()
    };
    let mut sql = format!("SELECT * FROM {view}");
    let mut args: Vec<SqlValue> = Vec::new();
    for (i, (col, val)) in filters.iter().enumerate() {
        if !columns.iter().any(|c| c == col) {
            return Err(StoreError::Conflict(format!(
                "view `{view}` has no column `{col}` (columns: {})",
                columns.join(", ")
            )));
        }
        let arg = match val {
            Value::Null => SqlValue::Null,
            Value::Bool(b) => SqlValue::Integer(i64::from(*b)),
            Value::Number(n) => match n.as_i64() {
                Some(i) => SqlValue::Integer(i),
                None => SqlValue::Real(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::String(s) => SqlValue::Text(s.clone()),
            Value::Array(_) | Value::Object(_) => {
                return Err(StoreError::Conflict(format!(
                    "filter `{col}` must be a string, number or boolean"
                )));
            }
        };
        sql.push_str(if i == 0 { " WHERE " } else { " AND " });
        if matches!(arg, SqlValue::Null) {
            sql.push_str(&format!("\"{col}\" IS NULL"));
        } else {
            args.push(arg);
            sql.push_str(&format!("\"{col}\" = ?{}", args.len()));
        }
    }
    sql.push_str(&format!(" LIMIT {}", limit.min(MAX_ROWS)));
    let mut stmt = conn.prepare(&sql)?;
    let mut rows = stmt.query(rusqlite::params_from_iter(args.iter()))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let mut m = Map::new();
        for (i, name) in columns.iter().enumerate() {
            let v = match row.get_ref(i)? {
                ValueRef::Null => Value::Null,
                ValueRef::Integer(n) => Value::from(n),
                ValueRef::Real(f) => Value::from(f),
                ValueRef::Text(t) => Value::String(String::from_utf8_lossy(t).into_owned()),
                ValueRef::Blob(b) => Value::String(hex::encode(b)),
            };
            m.insert(name.clone(), v);
        }
        out.push(m);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn refuses_unknown_views_and_columns() {
        let store = Store::open_in_memory().unwrap();
        let e = store
            .read_blocking(|c| query(c, "queue_items", &[], 10))
            .unwrap_err();
        assert!(e.to_string().contains("unknown view"), "{e}");
        let e = store
            .read_blocking(|c| {
                query(
                    c,
                    "v_systems",
                    &[("name; DROP TABLE x".into(), Value::from(1))],
                    10,
                )
            })
            .unwrap_err();
        assert!(e.to_string().contains("no column"), "{e}");
        let rows = store
            .read_blocking(|c| query(c, "v_systems", &[("os".into(), Value::from("ubuntu"))], 10))
            .unwrap();
        assert!(rows.is_empty());
    }
}
