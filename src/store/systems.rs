//! Systems known from UYUNI (`systems`), written by the errata sync.

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::{Deserialize, Serialize};

use super::{StoreError, StoreResult, now_ts};

/// A system as the sync sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemRecord {
    /// UYUNI system id.
    pub id: i64,
    /// Profile name.
    pub name: String,
    /// Hostname, when known.
    pub hostname: Option<String>,
    /// `ubuntu`, `debian`, `rhel` or `unknown`.
    pub os: String,
    /// OS release (e.g. `24.04`).
    pub os_release: Option<String>,
    /// `test` or `production`.
    pub role: String,
    /// Group names.
    pub groups: Vec<String>,
    /// Base channel label, when looked up.
    pub base_channel: Option<String>,
}

/// Insert or update systems (environment and tags, which spm owns, are left alone).
pub fn upsert(tx: &Transaction<'_>, systems: &[SystemRecord]) -> StoreResult<()> {
    let now = now_ts();
    let mut st = tx.prepare_cached(
        "INSERT INTO systems (id, name, hostname, os, os_release, role, groups, base_channel,
                              last_seen, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)
         ON CONFLICT(id) DO UPDATE SET name=excluded.name, hostname=excluded.hostname,
             os=excluded.os, os_release=excluded.os_release, role=excluded.role,
             groups=excluded.groups,
             base_channel=COALESCE(excluded.base_channel, systems.base_channel),
             last_seen=excluded.last_seen, updated_at=excluded.updated_at",
    )?;
    for s in systems {
        let groups = serde_json::to_string(&s.groups)
            .map_err(|e| StoreError::Task(format!("encode groups: {e}")))?;
        st.execute(params![
            s.id,
            s.name,
            s.hostname,
            s.os,
            s.os_release,
            s.role,
            groups,
            s.base_channel,
            now
        ])?;
    }
    Ok(())
}

fn row_to_system(r: &rusqlite::Row<'_>) -> rusqlite::Result<SystemRecord> {
    let groups: String = r.get("groups")?;
    Ok(SystemRecord {
        id: r.get("id")?,
        name: r.get("name")?,
        hostname: r.get("hostname")?,
        os: r.get("os")?,
        os_release: r.get("os_release")?,
        role: r.get("role")?,
        groups: serde_json::from_str(&groups).unwrap_or_default(),
        base_channel: r.get("base_channel")?,
    })
}

/// One system by id.
pub fn get(conn: &Connection, id: i64) -> StoreResult<SystemRecord> {
    conn.query_row("SELECT * FROM systems WHERE id=?1", [id], row_to_system)
        .optional()?
        .ok_or(StoreError::NotFound {
            what: "system",
            id: id.to_string(),
        })
}

/// Every system, optionally of one OS, ordered by name.
pub fn list(conn: &Connection, os: Option<&str>) -> StoreResult<Vec<SystemRecord>> {
    let mut st =
        conn.prepare("SELECT * FROM systems WHERE (?1 IS NULL OR os = ?1) ORDER BY name, id")?;
    let rows = st.query_map([os], row_to_system)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Base channel labels already known, by system id (so the sync need not ask again).
pub fn known_base_channels(
    conn: &Connection,
) -> StoreResult<std::collections::HashMap<i64, String>> {
    let mut st =
        conn.prepare("SELECT id, base_channel FROM systems WHERE base_channel IS NOT NULL")?;
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn upsert_updates_and_keeps_base_channel() {
        let store = Store::open_in_memory().unwrap();
        let mut s = SystemRecord {
            id: 1000010001,
            name: "test-ubu-1".into(),
            hostname: Some("ubu1.example".into()),
            os: "ubuntu".into(),
            os_release: Some("24.04".into()),
            role: "test".into(),
            groups: vec!["test-ubuntu".into()],
            base_channel: Some("ubuntu-2404-amd64-main".into()),
        };
        store
            .write_blocking(|tx| upsert(tx, std::slice::from_ref(&s)))
            .unwrap();
        s.base_channel = None;
        s.name = "renamed".into();
        store
            .write_blocking(|tx| upsert(tx, std::slice::from_ref(&s)))
            .unwrap();
        let got = store.read_blocking(|c| get(c, 1000010001)).unwrap();
        assert_eq!(got.name, "renamed");
        assert_eq!(got.base_channel.as_deref(), Some("ubuntu-2404-amd64-main"));
        assert_eq!(got.groups, vec!["test-ubuntu".to_string()]);
        assert_eq!(
            store
                .read_blocking(|c| list(c, Some("rhel")))
                .unwrap()
                .len(),
            0
        );
        assert!(matches!(
            store.read_blocking(|c| get(c, 5)),
            Err(StoreError::NotFound { .. })
        ));
    }
}

/// What the Ansible executor needs to reach a system: addresses, OS, groups, tags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemAddress {
    /// UYUNI system id.
    pub id: i64,
    /// Profile name.
    pub name: String,
    /// Hostname, when known.
    pub hostname: Option<String>,
    /// IPv4 address, when known.
    pub ip: Option<String>,
    /// `ubuntu`, `debian`, `rhel` or `unknown`.
    pub os: String,
    /// Environment (`prod`, `test`), when set.
    pub env: Option<String>,
    /// Group names.
    pub groups: Vec<String>,
    /// Tags (string values).
    pub tags: std::collections::BTreeMap<String, String>,
}

fn row_to_address(r: &rusqlite::Row<'_>) -> rusqlite::Result<SystemAddress> {
    let groups: String = r.get("groups")?;
    let tags: String = r.get("tags")?;
    let tags = serde_json::from_str::<serde_json::Value>(&tags)
        .ok()
        .and_then(|v| v.as_object().cloned())
        .map(|m| {
            m.into_iter()
                .map(|(k, v)| (k, v.as_str().map_or_else(|| v.to_string(), str::to_string)))
                .collect()
        })
        .unwrap_or_default();
    Ok(SystemAddress {
        id: r.get("id")?,
        name: r.get("name")?,
        hostname: r.get("hostname")?,
        ip: r.get("ip")?,
        os: r.get("os")?,
        env: r.get("env")?,
        groups: serde_json::from_str(&groups).unwrap_or_default(),
        tags,
    })
}

/// Address facts of the systems with these ids (unknown ids are left out).
pub fn addresses_by_id(conn: &Connection, ids: &[i64]) -> StoreResult<Vec<SystemAddress>> {
    let mut st = conn.prepare_cached(
        "SELECT id, name, hostname, ip, os, env, groups, tags FROM systems WHERE id = ?1",
    )?;
    let mut out = Vec::new();
    for id in ids {
        if let Some(a) = st.query_row([id], row_to_address).optional()? {
            out.push(a);
        }
    }
    Ok(out)
}

/// Address facts of the systems with this profile name (UYUNI allows duplicates).
pub fn addresses_by_name(conn: &Connection, name: &str) -> StoreResult<Vec<SystemAddress>> {
    let mut st = conn.prepare_cached(
        "SELECT id, name, hostname, ip, os, env, groups, tags FROM systems WHERE name = ?1 ORDER BY id",
    )?;
    let rows = st.query_map([name], row_to_address)?;
    Ok(rows.collect::<Result<_, _>>()?)
}
