//! Errata mirrored from UYUNI: `errata`, `errata_packages`, `errata_cves`,
//! `errata_relevance`, `errata_systems` and the Success Score inputs in `risk_profiles`.
//!
//! The sync calls these inside one transaction (see `engine::sync`).

use std::collections::{HashMap, HashSet};

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::{Deserialize, Serialize};

use super::{StoreError, StoreResult, now_ts};

/// An advisory row.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErratumRecord {
    /// Advisory name, e.g. `USN-7000-1`.
    pub advisory: String,
    /// UYUNI numeric id.
    pub uyuni_id: Option<i64>,
    /// `security`, `bugfix`, `enhancement` or `unknown`.
    pub advisory_type: String,
    /// One-line summary.
    pub synopsis: String,
    /// Description (from details).
    pub description: String,
    /// `critical`, `high`, `medium`, `low` or `unknown`.
    pub severity: String,
    /// Issue date, `YYYY-MM-DD`.
    pub issue_date: Option<String>,
    /// Update date, `YYYY-MM-DD` (drives re-fetch).
    pub update_date: Option<String>,
    /// UYUNI `last_modified_date`, `YYYY-MM-DD HH:MM:SS`.
    pub last_modified: Option<String>,
    /// UYUNI suggests a reboot.
    pub reboot_suggested: bool,
    /// UYUNI suggests a restart of the update stack.
    pub restart_suggested: bool,
    /// Details, CVEs and packages were fetched completely.
    pub details_fetched: bool,
}

/// A package of an advisory, full NEVRA.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PackageRecord {
    /// Name.
    pub name: String,
    /// Epoch (`""` when none).
    pub epoch: String,
    /// Version.
    pub version: String,
    /// Release (`""` when none).
    pub release: String,
    /// Architecture label.
    pub arch: String,
    /// Size in bytes, when known.
    pub size_bytes: Option<i64>,
    /// Checksum, when known.
    pub checksum: Option<String>,
}

impl PackageRecord {
    /// `[epoch:]version[-release]`.
    pub fn evr(&self) -> String {
        let mut s = String::new();
        if !self.epoch.is_empty() {
            s.push_str(&self.epoch);
            s.push(':');
        }
        s.push_str(&self.version);
        if !self.release.is_empty() {
            s.push('-');
            s.push_str(&self.release);
        }
        s
    }
}

/// What the sync needs to know about an advisory already stored, to decide on a re-fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownErratum {
    /// Stored update date.
    pub update_date: Option<String>,
    /// Stored type.
    pub advisory_type: String,
    /// Stored synopsis.
    pub synopsis: String,
    /// Whether the last fetch was complete.
    pub details_fetched: bool,
}

/// Per-OS relevance of an advisory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Relevance {
    /// OS.
    pub os: String,
    /// Systems of that OS needing it at the last sync.
    pub system_count: i64,
    /// No longer relevant (kept for history).
    pub stale: bool,
    /// First seen.
    pub first_seen: String,
    /// Last seen.
    pub last_seen: String,
}

/// Risk profile row (Success Score inputs, result and history).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RiskProfile {
    /// Advisory.
    pub advisory: String,
    /// OS.
    pub os: String,
    /// Kernel touched.
    pub affects_kernel: bool,
    /// Reboot required.
    pub requires_reboot: bool,
    /// Config touched.
    pub modifies_config: bool,
    /// `package_count - 1`.
    pub dependency_count: i64,
    /// Packages.
    pub package_count: i64,
    /// Total size KiB.
    pub total_size_kb: i64,
    /// Tests run (history, maintained by the test engine).
    pub times_tested: i64,
    /// Tests failed (history).
    pub times_failed: i64,
    /// Score 0..=100.
    pub score: i64,
    /// Package data missing.
    pub low_confidence: bool,
    /// JSON breakdown.
    pub breakdown: String,
}

/// Filter for [`list`].
#[derive(Debug, Clone, Default)]
pub struct ErrataFilter {
    /// Only advisories relevant (not stale) to this OS.
    pub os: Option<String>,
    /// Only these types.
    pub types: Vec<String>,
    /// Only these severities.
    pub severities: Vec<String>,
    /// Include stale relevance rows.
    pub include_stale: bool,
}

/// Advisory with one OS relevance, as listed by [`list`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErratumForOs {
    /// The advisory.
    pub erratum: ErratumRecord,
    /// The OS.
    pub os: String,
    /// Relevance is stale.
    pub stale: bool,
}

fn row_to_erratum(r: &rusqlite::Row<'_>) -> rusqlite::Result<ErratumRecord> {
    Ok(ErratumRecord {
        advisory: r.get("advisory")?,
        uyuni_id: r.get("uyuni_id")?,
        advisory_type: r.get("advisory_type")?,
        synopsis: r.get("synopsis")?,
        description: r.get("description")?,
        severity: r.get("severity")?,
        issue_date: r.get("issue_date")?,
        update_date: r.get("update_date")?,
        last_modified: r.get("last_modified")?,
        reboot_suggested: r.get::<_, i64>("reboot_suggested")? != 0,
        restart_suggested: r.get::<_, i64>("restart_suggested")? != 0,
        details_fetched: r.get::<_, i64>("details_fetched")? != 0,
    })
}

/// Every stored advisory with its change-detection fields.
pub fn known(conn: &Connection) -> StoreResult<HashMap<String, KnownErratum>> {
    let mut st = conn.prepare(
        "SELECT advisory, update_date, advisory_type, synopsis, details_fetched FROM errata",
    )?;
    let rows = st.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            KnownErratum {
                update_date: r.get(1)?,
                advisory_type: r.get(2)?,
                synopsis: r.get(3)?,
                details_fetched: r.get::<_, i64>(4)? != 0,
            },
        ))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Insert or fully update an advisory whose details were fetched.
pub fn upsert_full(tx: &Transaction<'_>, e: &ErratumRecord, now: &str) -> StoreResult<()> {
    tx.prepare_cached(
        "INSERT INTO errata (advisory, uyuni_id, advisory_type, synopsis, description, severity,
                             issue_date, update_date, last_modified, reboot_suggested,
                             restart_suggested, details_fetched, synced_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?13)
         ON CONFLICT(advisory) DO UPDATE SET uyuni_id=excluded.uyuni_id,
             advisory_type=excluded.advisory_type, synopsis=excluded.synopsis,
             description=excluded.description, severity=excluded.severity,
             issue_date=excluded.issue_date, update_date=excluded.update_date,
             last_modified=excluded.last_modified, reboot_suggested=excluded.reboot_suggested,
             restart_suggested=excluded.restart_suggested,
             details_fetched=excluded.details_fetched, synced_at=excluded.synced_at,
             updated_at=excluded.updated_at",
    )?
    .execute(params![
        e.advisory,
        e.uyuni_id,
        e.advisory_type,
        e.synopsis,
        e.description,
        e.severity,
        e.issue_date,
        e.update_date,
        e.last_modified,
        e.reboot_suggested as i64,
        e.restart_suggested as i64,
        e.details_fetched as i64,
        now
    ])?;
    Ok(())
}

/// Replace the package list of an advisory.
pub fn replace_packages(
    tx: &Transaction<'_>,
    advisory: &str,
    packages: &[PackageRecord],
) -> StoreResult<()> {
    tx.prepare_cached("DELETE FROM errata_packages WHERE advisory=?1")?
        .execute([advisory])?;
    let mut st = tx.prepare_cached(
        "INSERT OR IGNORE INTO errata_packages
             (advisory, name, epoch, version, release, arch, size_bytes, checksum)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    for p in packages {
        st.execute(params![
            advisory,
            p.name,
            p.epoch,
            p.version,
            p.release,
            p.arch,
            p.size_bytes,
            p.checksum
        ])?;
    }
    Ok(())
}

/// Replace the CVE list of an advisory.
pub fn replace_cves(tx: &Transaction<'_>, advisory: &str, cves: &[String]) -> StoreResult<()> {
    tx.prepare_cached("DELETE FROM errata_cves WHERE advisory=?1")?
        .execute([advisory])?;
    let mut st =
        tx.prepare_cached("INSERT OR IGNORE INTO errata_cves (advisory, cve) VALUES (?1, ?2)")?;
    for c in cves {
        st.execute(params![advisory, c])?;
    }
    Ok(())
}

/// Mark advisories seen unchanged in this sync.
pub fn touch(tx: &Transaction<'_>, advisories: &[String], now: &str) -> StoreResult<()> {
    let mut st = tx.prepare_cached("UPDATE errata SET synced_at=?2 WHERE advisory=?1")?;
    for a in advisories {
        st.execute(params![a, now])?;
    }
    Ok(())
}

/// Make the relevant advisories of one system exactly `advisories` (diff-based: only the
/// rows that changed are written).
pub fn replace_system_errata(
    tx: &Transaction<'_>,
    system_id: i64,
    advisories: &HashSet<&str>,
    now: &str,
) -> StoreResult<()> {
    let existing: HashSet<String> = {
        let mut st = tx.prepare_cached("SELECT advisory FROM errata_systems WHERE system_id=?1")?;
        let rows = st.query_map([system_id], |r| r.get::<_, String>(0))?;
        rows.collect::<Result<_, _>>()?
    };
    {
        let mut del =
            tx.prepare_cached("DELETE FROM errata_systems WHERE advisory=?1 AND system_id=?2")?;
        for a in existing.iter().filter(|a| !advisories.contains(a.as_str())) {
            del.execute(params![a, system_id])?;
        }
    }
    let mut ins = tx.prepare_cached(
        "INSERT INTO errata_systems (advisory, system_id, seen_at) VALUES (?1, ?2, ?3)",
    )?;
    for a in advisories.iter().filter(|a| !existing.contains(**a)) {
        ins.execute(params![a, system_id, now])?;
    }
    Ok(())
}

/// Record the relevance seen in this sync (`(advisory, os, system_count)`), then mark stale
/// every relevance row of the `complete_os` list that was not seen. Returns how many rows
/// became stale.
pub fn apply_relevance(
    tx: &Transaction<'_>,
    seen: &[(&str, &str, i64)],
    complete_os: &[&str],
    now: &str,
) -> StoreResult<u64> {
    {
        let mut st = tx.prepare_cached(
            "INSERT INTO errata_relevance (advisory, os, system_count, stale, first_seen, last_seen)
             VALUES (?1, ?2, ?3, 0, ?4, ?4)
             ON CONFLICT(advisory, os) DO UPDATE SET system_count=excluded.system_count,
                 stale=0, last_seen=excluded.last_seen",
        )?;
        for (adv, os, n) in seen {
            st.execute(params![adv, os, n, now])?;
        }
    }
    let mut stale = 0u64;
    let mut st = tx.prepare_cached(
        "UPDATE errata_relevance SET stale=1, system_count=0
         WHERE os=?1 AND stale=0 AND last_seen <> ?2",
    )?;
    for os in complete_os {
        stale += st.execute(params![os, now])? as u64;
    }
    Ok(stale)
}

/// Upsert the computed part of a risk profile, keeping the test history columns.
pub fn upsert_risk_profile(tx: &Transaction<'_>, p: &RiskProfile) -> StoreResult<()> {
    tx.prepare_cached(
        "INSERT INTO risk_profiles (advisory, os, affects_kernel, requires_reboot, modifies_config,
                                    dependency_count, package_count, total_size_kb, score,
                                    low_confidence, breakdown, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
         ON CONFLICT(advisory, os) DO UPDATE SET affects_kernel=excluded.affects_kernel,
             requires_reboot=excluded.requires_reboot, modifies_config=excluded.modifies_config,
             dependency_count=excluded.dependency_count, package_count=excluded.package_count,
             total_size_kb=excluded.total_size_kb, score=excluded.score,
             low_confidence=excluded.low_confidence, breakdown=excluded.breakdown,
             updated_at=excluded.updated_at",
    )?
    .execute(params![
        p.advisory,
        p.os,
        p.affects_kernel as i64,
        p.requires_reboot as i64,
        p.modifies_config as i64,
        p.dependency_count,
        p.package_count,
        p.total_size_kb,
        p.score.clamp(0, 100),
        p.low_confidence as i64,
        p.breakdown,
        now_ts()
    ])?;
    Ok(())
}

fn row_to_profile(r: &rusqlite::Row<'_>) -> rusqlite::Result<RiskProfile> {
    Ok(RiskProfile {
        advisory: r.get("advisory")?,
        os: r.get("os")?,
        affects_kernel: r.get::<_, i64>("affects_kernel")? != 0,
        requires_reboot: r.get::<_, i64>("requires_reboot")? != 0,
        modifies_config: r.get::<_, i64>("modifies_config")? != 0,
        dependency_count: r.get("dependency_count")?,
        package_count: r.get("package_count")?,
        total_size_kb: r.get("total_size_kb")?,
        times_tested: r.get("times_tested")?,
        times_failed: r.get("times_failed")?,
        score: r.get("score")?,
        low_confidence: r.get::<_, i64>("low_confidence")? != 0,
        breakdown: r.get("breakdown")?,
    })
}

/// The risk profile of an advisory for an OS.
pub fn risk_profile(
    conn: &Connection,
    advisory: &str,
    os: &str,
) -> StoreResult<Option<RiskProfile>> {
    Ok(conn
        .prepare_cached("SELECT * FROM risk_profiles WHERE advisory=?1 AND os=?2")?
        .query_row(params![advisory, os], row_to_profile)
        .optional()?)
}

/// Test history `(times_tested, times_failed)` of an advisory on an OS (zero when none).
pub fn history(conn: &Connection, advisory: &str, os: &str) -> StoreResult<(i64, i64)> {
    Ok(conn
        .prepare_cached(
            "SELECT times_tested, times_failed FROM risk_profiles WHERE advisory=?1 AND os=?2",
        )?
        .query_row(params![advisory, os], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?
        .unwrap_or((0, 0)))
}

/// The `(advisory, os)` pairs among `pairs` that have no risk profile yet.
pub fn missing_risk_profiles<'a>(
    conn: &Connection,
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> StoreResult<Vec<(&'a str, &'a str)>> {
    let mut st = conn.prepare_cached("SELECT 1 FROM risk_profiles WHERE advisory=?1 AND os=?2")?;
    let mut out = Vec::new();
    for (a, o) in pairs {
        if !st.exists(params![a, o])? {
            out.push((a, o));
        }
    }
    Ok(out)
}

/// One advisory.
pub fn get(conn: &Connection, advisory: &str) -> StoreResult<ErratumRecord> {
    conn.prepare_cached("SELECT * FROM errata WHERE advisory=?1")?
        .query_row([advisory], row_to_erratum)
        .optional()?
        .ok_or_else(|| StoreError::NotFound {
            what: "advisory",
            id: advisory.to_string(),
        })
}

/// Packages of an advisory (empty when none were stored; see `details_fetched`).
pub fn packages(conn: &Connection, advisory: &str) -> StoreResult<Vec<PackageRecord>> {
    let mut st = conn.prepare_cached(
        "SELECT name, epoch, version, release, arch, size_bytes, checksum FROM errata_packages
         WHERE advisory=?1 ORDER BY name, arch",
    )?;
    let rows = st.query_map([advisory], |r| {
        Ok(PackageRecord {
            name: r.get(0)?,
            epoch: r.get(1)?,
            version: r.get(2)?,
            release: r.get(3)?,
            arch: r.get(4)?,
            size_bytes: r.get(5)?,
            checksum: r.get(6)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// CVEs of an advisory.
pub fn cves(conn: &Connection, advisory: &str) -> StoreResult<Vec<String>> {
    let mut st =
        conn.prepare_cached("SELECT cve FROM errata_cves WHERE advisory=?1 ORDER BY cve")?;
    let rows = st.query_map([advisory], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Number of (advisory, system) relevance rows.
pub fn system_pair_count(conn: &Connection) -> StoreResult<i64> {
    Ok(conn.query_row("SELECT count(*) FROM errata_systems", [], |r| r.get(0))?)
}

/// Per-OS relevance of an advisory.
pub fn relevance(conn: &Connection, advisory: &str) -> StoreResult<Vec<Relevance>> {
    let mut st = conn.prepare_cached(
        "SELECT os, system_count, stale, first_seen, last_seen FROM errata_relevance
         WHERE advisory=?1 ORDER BY os",
    )?;
    let rows = st.query_map([advisory], |r| {
        Ok(Relevance {
            os: r.get(0)?,
            system_count: r.get(1)?,
            stale: r.get::<_, i64>(2)? != 0,
            first_seen: r.get(3)?,
            last_seen: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Advisories per OS matching `filter`, ordered by advisory then OS.
pub fn list(conn: &Connection, filter: &ErrataFilter) -> StoreResult<Vec<ErratumForOs>> {
    let types = serde_json::to_string(&filter.types)
        .map_err(|e| StoreError::Task(format!("encode filter: {e}")))?;
    let sevs = serde_json::to_string(&filter.severities)
        .map_err(|e| StoreError::Task(format!("encode filter: {e}")))?;
    let mut st = conn.prepare(
        "SELECT e.*, r.os AS rel_os, r.stale AS rel_stale
         FROM errata e JOIN errata_relevance r ON r.advisory = e.advisory
         WHERE (?1 IS NULL OR r.os = ?1)
           AND (?2 OR r.stale = 0)
           AND (?3 = '[]' OR e.advisory_type IN (SELECT value FROM json_each(?3)))
           AND (?4 = '[]' OR e.severity IN (SELECT value FROM json_each(?4)))
         ORDER BY e.advisory, r.os",
    )?;
    let rows = st.query_map(params![filter.os, filter.include_stale, types, sevs], |r| {
        Ok(ErratumForOs {
            erratum: row_to_erratum(r)?,
            os: r.get("rel_os")?,
            stale: r.get::<_, i64>("rel_stale")? != 0,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn rec(adv: &str) -> ErratumRecord {
        ErratumRecord {
            advisory: adv.into(),
            advisory_type: "security".into(),
            synopsis: "s".into(),
            severity: "high".into(),
            update_date: Some("2026-01-02".into()),
            details_fetched: true,
            ..Default::default()
        }
    }

    #[test]
    fn relevance_goes_stale_only_for_complete_os() {
        let store = Store::open_in_memory().unwrap();
        store
            .write_blocking(|tx| {
                let now = "2026-01-01T00:00:00.000Z";
                for a in ["A-1", "B-1"] {
                    upsert_full(tx, &rec(a), now)?;
                }
                apply_relevance(
                    tx,
                    &[
                        ("A-1", "ubuntu", 2),
                        ("B-1", "ubuntu", 1),
                        ("B-1", "rhel", 1),
                    ],
                    &["ubuntu", "rhel"],
                    now,
                )
            })
            .unwrap();
        // Second sync: only A-1 on ubuntu; rhel had a failure (not complete).
        let stale = store
            .write_blocking(|tx| {
                apply_relevance(
                    tx,
                    &[("A-1", "ubuntu", 2)],
                    &["ubuntu"],
                    "2026-01-02T00:00:00.000Z",
                )
            })
            .unwrap();
        assert_eq!(stale, 1);
        let r = store.read_blocking(|c| relevance(c, "B-1")).unwrap();
        assert_eq!(r.len(), 2);
        assert!(!r[0].stale, "rhel stays (its systems failed)");
        assert!(r[1].stale && r[1].system_count == 0, "ubuntu is stale");
        let active = store
            .read_blocking(|c| list(c, &ErrataFilter::default()))
            .unwrap();
        assert_eq!(active.len(), 2);
    }

    #[test]
    fn packages_and_profile_roundtrip_keep_history() {
        let store = Store::open_in_memory().unwrap();
        let pk = PackageRecord {
            name: "kernel".into(),
            epoch: "1".into(),
            version: "5.14.0".into(),
            release: "427.el9".into(),
            arch: "x86_64".into(),
            size_bytes: Some(12345),
            checksum: None,
        };
        assert_eq!(pk.evr(), "1:5.14.0-427.el9");
        store
            .write_blocking(|tx| {
                upsert_full(tx, &rec("RHSA-1"), "2026-01-01T00:00:00.000Z")?;
                replace_packages(tx, "RHSA-1", std::slice::from_ref(&pk))?;
                replace_cves(tx, "RHSA-1", &["CVE-2026-1".into()])?;
                upsert_risk_profile(
                    tx,
                    &RiskProfile {
                        advisory: "RHSA-1".into(),
                        os: "rhel".into(),
                        score: 55,
                        ..Default::default()
                    },
                )?;
                tx.execute(
                    "UPDATE risk_profiles SET times_tested=4, times_failed=1",
                    [],
                )?;
                upsert_risk_profile(
                    tx,
                    &RiskProfile {
                        advisory: "RHSA-1".into(),
                        os: "rhel".into(),
                        score: 60,
                        ..Default::default()
                    },
                )
            })
            .unwrap();
        let p = store
            .read_blocking(|c| risk_profile(c, "RHSA-1", "rhel"))
            .unwrap()
            .unwrap();
        assert_eq!((p.score, p.times_tested, p.times_failed), (60, 4, 1));
        assert_eq!(
            store.read_blocking(|c| packages(c, "RHSA-1")).unwrap(),
            vec![pk]
        );
        assert_eq!(
            store.read_blocking(|c| cves(c, "RHSA-1")).unwrap(),
            vec!["CVE-2026-1".to_string()]
        );
        assert!(matches!(
            store.read_blocking(|c| get(c, "nope")),
            Err(StoreError::NotFound { .. })
        ));
    }
}
