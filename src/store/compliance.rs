//! Compliance per system (`compliance`) and the advisory lookups behind it.

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::{StoreResult, now_ts};

/// Make sure a system row exists (a run or scan may see a system before the sync does).
fn ensure_system(conn: &Connection, sid: i64, name: Option<&str>, os: &str) -> StoreResult<()> {
    let os = if ["ubuntu", "debian", "rhel"].contains(&os) {
        os
    } else {
        "unknown"
    };
    conn.prepare_cached(
        "INSERT OR IGNORE INTO systems (id, name, os, role) VALUES (?1, ?2, ?3, 'production')",
    )?
    .execute(params![
        sid,
        name.map_or_else(|| format!("system-{sid}"), str::to_string),
        os
    ])?;
    Ok(())
}

fn json_list(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_default()
}

/// After a host was patched and verified: `last_patched` now, the applied advisories
/// removed from its pending list, status re-derived (unknown until the first scan).
pub fn record_patched(
    conn: &Connection,
    sid: i64,
    policy_id: &str,
    os: &str,
    applied: &[String],
) -> StoreResult<()> {
    ensure_system(conn, sid, None, os)?;
    let now = now_ts();
    let row: Option<(String, String, Option<String>)> = conn
        .prepare_cached(
            "SELECT pending_errata, status, last_scanned FROM compliance WHERE system_id = ?1",
        )?
        .query_row([sid], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let (pending, status) = match row {
        Some((p, st, scanned)) => {
            let left: Vec<String> = json_list(&p)
                .into_iter()
                .filter(|a| !applied.contains(a))
                .collect();
            let st = if scanned.is_none() {
                st
            } else if left.is_empty() {
                "compliant".to_string()
            } else {
                "non_compliant".to_string()
            };
            (left, st)
        }
        None => (Vec::new(), "unknown".to_string()),
    };
    conn.prepare_cached(
        "INSERT INTO compliance (system_id, policy_id, os, pending_errata, status, last_patched, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6) \
         ON CONFLICT(system_id) DO UPDATE SET policy_id = ?2, os = ?3, pending_errata = ?4, \
         status = ?5, last_patched = ?6, updated_at = ?6",
    )?
    .execute(params![sid, policy_id, os, serde_json::Value::from(pending).to_string(), status, now])?;
    Ok(())
}

/// The result of scanning one system.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScanRow {
    /// UYUNI system id.
    pub system_id: i64,
    /// Profile name.
    pub name: String,
    /// Policy covering it.
    pub policy_id: Option<String>,
    /// OS family.
    pub os: String,
    /// Environment, if known.
    pub env: Option<String>,
    /// Applied patch level (see the engine's scan).
    pub patch_level: Option<String>,
    /// Target patch level from the policy.
    pub target_level: Option<String>,
    /// compliant | non_compliant | unknown.
    pub status: String,
    /// Pending in-scope errata.
    pub pending_errata: Vec<String>,
    /// Their CVEs.
    pub pending_cves: Vec<String>,
}

/// Write a scan result (upsert) with `last_scanned` now.
pub fn record_scan(conn: &Connection, row: &ScanRow) -> StoreResult<()> {
    ensure_system(conn, row.system_id, Some(&row.name), &row.os)?;
    let now = now_ts();
    conn.execute(
        "INSERT INTO compliance (system_id, policy_id, os, env, patch_level, target_level, status, \
         pending_errata, pending_cves, last_scanned, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10) \
         ON CONFLICT(system_id) DO UPDATE SET policy_id = ?2, os = ?3, env = ?4, patch_level = ?5, \
         target_level = ?6, status = ?7, pending_errata = ?8, pending_cves = ?9, last_scanned = ?10, \
         updated_at = ?10",
        params![
            row.system_id,
            row.policy_id,
            row.os,
            row.env,
            row.patch_level,
            row.target_level,
            row.status,
            serde_json::Value::from(row.pending_errata.clone()).to_string(),
            serde_json::Value::from(row.pending_cves.clone()).to_string(),
            now
        ],
    )?;
    Ok(())
}

/// One system's compliance record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComplianceRecord {
    /// UYUNI system id.
    pub system_id: i64,
    /// Profile name.
    pub name: String,
    /// Policy.
    pub policy_id: Option<String>,
    /// OS.
    pub os: Option<String>,
    /// Environment.
    pub env: Option<String>,
    /// Status.
    pub status: String,
    /// Applied patch level.
    pub patch_level: Option<String>,
    /// Target level.
    pub target_level: Option<String>,
    /// Pending errata.
    pub pending_errata: Vec<String>,
    /// Pending CVEs.
    pub pending_cves: Vec<String>,
    /// Last scan.
    pub last_scanned: Option<String>,
    /// Last successful patch.
    pub last_patched: Option<String>,
}

/// Every compliance record, by name.
pub fn list(conn: &Connection) -> StoreResult<Vec<ComplianceRecord>> {
    let mut stmt = conn.prepare(
        "SELECT system_id, name, policy_id, os, env, status, patch_level, target_level, \
         pending_errata, pending_cves, last_scanned, last_patched FROM v_compliance ORDER BY name",
    )?;
    let rows = stmt
        .query_map([], |r| {
            let pe: String = r.get(8)?;
            let pc: String = r.get(9)?;
            Ok(ComplianceRecord {
                system_id: r.get(0)?,
                name: r.get(1)?,
                policy_id: r.get(2)?,
                os: r.get(3)?,
                env: r.get(4)?,
                status: r.get(5)?,
                patch_level: r.get(6)?,
                target_level: r.get(7)?,
                pending_errata: json_list(&pe),
                pending_cves: json_list(&pc),
                last_scanned: r.get(10)?,
                last_patched: r.get(11)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// Severity, type, issue date and CVEs of one erratum.
pub type ErratumFacts = (String, String, Option<String>, Vec<String>);

/// Errata facts needed by a scan, by advisory.
pub fn errata_facts(
    conn: &Connection,
    advisories: &[String],
) -> StoreResult<BTreeMap<String, ErratumFacts>> {
    let mut e =
        conn.prepare("SELECT severity, advisory_type, issue_date FROM errata WHERE advisory = ?1")?;
    let mut c = conn.prepare("SELECT cve FROM errata_cves WHERE advisory = ?1 ORDER BY cve")?;
    let mut out = BTreeMap::new();
    for a in advisories {
        let row: Option<(String, String, Option<String>)> = e
            .query_row([a], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?;
        if let Some((sev, ty, date)) = row {
            let cves = c
                .query_map([a], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()?;
            out.insert(a.clone(), (sev, ty, date, cves));
        }
    }
    Ok(out)
}

/// An advisory: a CVE, the errata fixing it, and the systems still affected.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Advisory {
    /// CVE id.
    pub cve: String,
    /// Errata that fix it, with their severity and synopsis.
    pub errata: Vec<AdvisoryErratum>,
    /// Systems where one of those errata is still pending (last sync or scan).
    pub affected_systems: Vec<AffectedSystem>,
}

/// An erratum fixing a CVE.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AdvisoryErratum {
    /// Advisory name.
    pub advisory: String,
    /// Severity.
    pub severity: String,
    /// Synopsis.
    pub synopsis: String,
}

/// A system affected by a CVE.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AffectedSystem {
    /// UYUNI system id.
    pub system_id: i64,
    /// Profile name.
    pub name: String,
    /// The erratum it still needs.
    pub advisory: String,
}

/// CVE → errata → affected systems (from `errata_cves`, `errata_systems` and the
/// compliance pending lists). `None` when no erratum mentions the CVE.
pub fn advisory(conn: &Connection, cve: &str) -> StoreResult<Option<Advisory>> {
    let mut stmt = conn.prepare(
        "SELECT e.advisory, e.severity, e.synopsis FROM errata_cves c \
         JOIN errata e ON e.advisory = c.advisory WHERE c.cve = ?1 ORDER BY e.advisory",
    )?;
    let errata = stmt
        .query_map([cve], |r| {
            Ok(AdvisoryErratum {
                advisory: r.get(0)?,
                severity: r.get(1)?,
                synopsis: r.get(2)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    if errata.is_empty() {
        return Ok(None);
    }
    let mut affected = BTreeMap::new();
    let mut sys = conn.prepare(
        "SELECT s.id, s.name FROM errata_systems es JOIN systems s ON s.id = es.system_id \
         WHERE es.advisory = ?1",
    )?;
    let mut comp = conn.prepare(
        "SELECT c.system_id, s.name FROM compliance c JOIN systems s ON s.id = c.system_id, \
         json_each(c.pending_errata) j WHERE j.value = ?1",
    )?;
    for e in &errata {
        for row in sys.query_map([&e.advisory], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })? {
            let (id, name) = row?;
            affected.entry(id).or_insert((name, e.advisory.clone()));
        }
        for row in comp.query_map([&e.advisory], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })? {
            let (id, name) = row?;
            affected.entry(id).or_insert((name, e.advisory.clone()));
        }
    }
    Ok(Some(Advisory {
        cve: cve.to_string(),
        errata,
        affected_systems: affected
            .into_iter()
            .map(|(system_id, (name, advisory))| AffectedSystem {
                system_id,
                name,
                advisory,
            })
            .collect(),
    }))
}

/// Every CVE known, with how many errata fix it.
pub fn list_cves(conn: &Connection, limit: u32) -> StoreResult<Vec<(String, i64)>> {
    let mut stmt = conn
        .prepare("SELECT cve, count(*) FROM errata_cves GROUP BY cve ORDER BY cve DESC LIMIT ?1")?;
    let rows = stmt
        .query_map([limit], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}
