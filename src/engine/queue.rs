//! Queue operations on top of the queue store: add (one or many advisories, per OS, scored
//! from the risk profile), list, show, remove, priority, supersession and the auto-queue
//! rule run after each sync.
//!
//! Rules:
//! * one active item per (advisory, OS) — the store's unique index; re-queueing is a new
//!   row, allowed once the previous item is failed, rejected, rolled back, completed (or
//!   superseded);
//! * the score is computed when the item is queued, from the advisory's packages and the
//!   test history of its risk profile, with the current weights (and stored back into the
//!   risk profile);
//! * supersession: a newer advisory of the same family (`USN-7000-2` over `USN-7000-1`,
//!   `SUSE-SU-2024:1234-2` over `…-1`), or one that ships every package of the older one
//!   at an equal or newer version (at least one newer, compared with dpkg or rpm ordering),
//!   supersedes the older items that have not started testing (`queued`, `waiting_system`,
//!   `retry_pending`); they become `superseded` with `superseded_by` set. Queueing an
//!   advisory that an item already in the queue supersedes is refused with that reason;
//! * every change is written to the audit log in the same transaction.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};

use rusqlite::Connection;
use serde::{Deserialize, Serialize};

use crate::engine::score::{ScoreResult, Scorer};
use crate::engine::state::QueueStatus;
use crate::engine::sync::score_input;
use crate::evr::{Evr, PkgKind};
use crate::store::audit::{self, AuditEntry};
use crate::store::errata::{self as errata_store, ErrataFilter, ErratumRecord, PackageRecord};
use crate::store::queue::{self, QUEUE_OS, QueueFilter, QueueItem, QueuePage, TransitionExtra};
use crate::store::{Store, StoreError, StoreResult};

/// A request to queue advisories.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddRequest {
    /// Advisory names (at least one).
    pub advisories: Vec<String>,
    /// Target OS; `None` queues for every OS the advisory is currently relevant to.
    pub os: Option<String>,
    /// Operator priority.
    pub priority: i64,
    /// Who queues (identity, or `auto-queue`).
    pub queued_by: String,
    /// Notes.
    pub notes: Option<String>,
    /// Test on every test system of the OS.
    pub require_all_systems: bool,
}

/// An (advisory, OS) that was not queued, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// Advisory.
    pub advisory: String,
    /// OS (`None` when no OS could be chosen).
    pub os: Option<String>,
    /// Why.
    pub reason: String,
}

/// An older item replaced by a newer advisory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SupersededItem {
    /// The older item's id.
    pub id: i64,
    /// Its advisory.
    pub advisory: String,
    /// OS.
    pub os: String,
    /// The newer advisory.
    pub superseded_by: String,
    /// Family or packages.
    pub reason: String,
}

/// What an add did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AddReport {
    /// Items created.
    pub added: Vec<QueueItem>,
    /// Pairs not queued.
    pub skipped: Vec<Skipped>,
    /// Older items superseded by the new ones.
    pub superseded: Vec<SupersededItem>,
}

/// Errors of queue operations (bad input changes nothing).
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The request itself is invalid.
    #[error("{0}")]
    Invalid(String),
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The auto-queue rule (configuration `[queue]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AutoQueueRule {
    /// Run after each sync.
    pub enabled: bool,
    /// Advisory types queued (`security`, `bugfix`, `enhancement`).
    pub types: Vec<String>,
    /// Lowest severity queued (`critical`, `high`, `medium`, `low`, `unknown`).
    pub min_severity: String,
}

impl Default for AutoQueueRule {
    fn default() -> Self {
        Self {
            enabled: false,
            types: vec!["security".into()],
            min_severity: "high".into(),
        }
    }
}

impl From<&crate::config::QueueConfig> for AutoQueueRule {
    fn from(c: &crate::config::QueueConfig) -> Self {
        use crate::config::Severity;
        Self {
            enabled: c.auto_queue,
            types: c.auto_queue_types.clone(),
            min_severity: match c.auto_queue_min_severity {
                Severity::Unknown => "unknown",
                Severity::Low => "low",
                Severity::Medium => "medium",
                Severity::High => "high",
                Severity::Critical => "critical",
            }
            .to_string(),
        }
    }
}

/// Rank of a severity, higher is more severe; `None` for an unknown label.
pub fn severity_rank(s: &str) -> Option<u8> {
    match s {
        "unknown" => Some(0),
        "low" => Some(1),
        "medium" => Some(2),
        "high" => Some(3),
        "critical" => Some(4),
        _ => None,
    }
}

/// Family and revision of an advisory name: `USN-7000-2` → (`USN-7000`, 2).
pub fn family(advisory: &str) -> Option<(&str, u32)> {
    let (fam, rev) = advisory.rsplit_once('-')?;
    if fam.is_empty() || rev.is_empty() || !rev.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    // `RHSA-2024` alone is not a family: the family must itself end in a number.
    if !fam.ends_with(|c: char| c.is_ascii_digit()) || !fam.contains('-') {
        return None;
    }
    Some((fam, rev.parse().ok()?))
}

fn pkg_kind(os: &str) -> PkgKind {
    if os == "rhel" {
        PkgKind::Rpm
    } else {
        PkgKind::Deb
    }
}

fn evr_of(p: &PackageRecord) -> Evr {
    Evr {
        epoch: p.epoch.parse().ok(),
        version: p.version.clone(),
        release: p.release.clone(),
    }
}

/// Does `newer` ship every package of `older` at an equal or newer version, at least one
/// strictly newer? (Both lists must be non-empty.)
pub fn covers_packages(newer: &[PackageRecord], older: &[PackageRecord], os: &str) -> bool {
    if newer.is_empty() || older.is_empty() {
        return false;
    }
    let kind = pkg_kind(os);
    let mut strictly = false;
    for o in older {
        let best = newer
            .iter()
            .filter(|n| {
                n.name == o.name && (n.arch == o.arch || n.arch.is_empty() || o.arch.is_empty())
            })
            .map(|n| evr_of(n).cmp_with(&evr_of(o), kind))
            .max();
        match best {
            Some(Ordering::Greater) => strictly = true,
            Some(Ordering::Equal) => {}
            _ => return false,
        }
    }
    strictly
}

/// Why `newer` supersedes `older` on `os`, if it does.
fn supersedes(
    newer: &str,
    newer_pk: &[PackageRecord],
    older: &str,
    older_pk: &[PackageRecord],
    os: &str,
) -> Option<String> {
    if let (Some((fa, ra)), Some((fb, rb))) = (family(newer), family(older))
        && fa == fb
    {
        return (ra > rb).then(|| format!("newer revision of the {fa} family"));
    }
    covers_packages(newer_pk, older_pk, os)
        .then(|| "ships every package of it at an equal or newer version".to_string())
}

fn score_now(
    conn: &Connection,
    scorer: &Scorer,
    e: &ErratumRecord,
    os: &str,
) -> StoreResult<ScoreResult> {
    let pk = errata_store::packages(conn, &e.advisory)?;
    let pk = if pk.is_empty() && !e.details_fetched {
        None
    } else {
        Some(pk)
    };
    let (tested, failed) = errata_store::history(conn, &e.advisory, os)?;
    Ok(scorer.score(&score_input(e, pk.as_deref(), tested, failed)))
}

const SUPERSEDABLE: [QueueStatus; 3] = [
    QueueStatus::Queued,
    QueueStatus::WaitingSystem,
    QueueStatus::RetryPending,
];

fn all_pages(conn: &Connection, mut filter: QueueFilter) -> StoreResult<Vec<QueueItem>> {
    filter.limit = queue::MAX_PAGE;
    filter.offset = 0;
    let mut out = Vec::new();
    loop {
        let page = queue::list(conn, &filter)?;
        let n = page.items.len() as u32;
        out.extend(page.items);
        if n < filter.limit {
            return Ok(out);
        }
        filter.offset += n;
    }
}

/// Queue advisories (see the module rules). Unknown advisories or a bad OS refuse the whole
/// request; pairs already queued or superseded are skipped with their reason.
pub fn add(
    tx: &rusqlite::Transaction<'_>,
    scorer: &Scorer,
    req: &AddRequest,
) -> Result<AddReport, QueueError> {
    if req.advisories.is_empty() {
        return Err(QueueError::Invalid("no advisory given".into()));
    }
    if req.queued_by.trim().is_empty() {
        return Err(QueueError::Invalid("queued_by must name who queues".into()));
    }
    if let Some(os) = &req.os
        && !QUEUE_OS.contains(&os.as_str())
    {
        return Err(QueueError::Invalid(format!(
            "unknown OS {os:?}: use one of {}",
            QUEUE_OS.join(", ")
        )));
    }
    let mut records = Vec::new();
    let mut missing = Vec::new();
    let mut seen = HashSet::new();
    for a in &req.advisories {
        let a = a.trim();
        if !seen.insert(a.to_string()) {
            continue;
        }
        match errata_store::get(tx, a) {
            Ok(r) => records.push(r),
            Err(StoreError::NotFound { .. }) => missing.push(a.to_string()),
            Err(e) => return Err(e.into()),
        }
    }
    if !missing.is_empty() {
        return Err(QueueError::Invalid(format!(
            "unknown advisory {}: not in the synced errata (run `spm sync` first?); nothing was queued",
            missing.join(", ")
        )));
    }

    let mut report = AddReport::default();
    for e in &records {
        let rel = errata_store::relevance(tx, &e.advisory)?;
        let active: Vec<&str> = rel
            .iter()
            .filter(|r| !r.stale && QUEUE_OS.contains(&r.os.as_str()))
            .map(|r| r.os.as_str())
            .collect();
        let targets: Vec<String> = match &req.os {
            Some(os) => {
                if active.contains(&os.as_str()) {
                    vec![os.clone()]
                } else {
                    let why = if rel.iter().any(|r| &r.os == os) {
                        format!("no longer relevant to {os} systems (stale)")
                    } else if active.is_empty() {
                        format!("not relevant to any {os} system")
                    } else {
                        format!(
                            "not relevant to {os} systems (relevant to: {})",
                            active.join(", ")
                        )
                    };
                    report.skipped.push(Skipped {
                        advisory: e.advisory.clone(),
                        os: Some(os.clone()),
                        reason: why,
                    });
                    continue;
                }
            }
            None if active.is_empty() => {
                report.skipped.push(Skipped {
                    advisory: e.advisory.clone(),
                    os: None,
                    reason: "not currently relevant to any ubuntu, debian or rhel system".into(),
                });
                continue;
            }
            None => active.iter().map(|s| s.to_string()).collect(),
        };
        for os in targets {
            add_one(tx, scorer, req, e, &os, &mut report)?;
        }
    }
    Ok(report)
}

fn add_one(
    tx: &rusqlite::Transaction<'_>,
    scorer: &Scorer,
    req: &AddRequest,
    e: &ErratumRecord,
    os: &str,
    report: &mut AddReport,
) -> Result<(), QueueError> {
    if let Some(item) = queue::find_active(tx, &e.advisory, os)? {
        report.skipped.push(Skipped {
            advisory: e.advisory.clone(),
            os: Some(os.to_string()),
            reason: format!(
                "already in the queue as item {} (status {}); it can be queued again once that \
                 item is failed, rejected, rolled back or completed",
                item.id, item.status
            ),
        });
        return Ok(());
    }
    let my_pk = errata_store::packages(tx, &e.advisory)?;
    let pending = all_pages(
        tx,
        QueueFilter {
            statuses: SUPERSEDABLE.to_vec(),
            os: Some(os.to_string()),
            ..Default::default()
        },
    )?;
    let mut pk_cache: HashMap<String, Vec<PackageRecord>> = HashMap::new();
    let mut to_supersede = Vec::new();
    for item in pending.iter().filter(|i| i.advisory != e.advisory) {
        let other_pk = match pk_cache.get(&item.advisory) {
            Some(p) => p,
            None => {
                let p = errata_store::packages(tx, &item.advisory)?;
                pk_cache.entry(item.advisory.clone()).or_insert(p)
            }
        };
        if let Some(why) = supersedes(&item.advisory, other_pk, &e.advisory, &my_pk, os) {
            report.skipped.push(Skipped {
                advisory: e.advisory.clone(),
                os: Some(os.to_string()),
                reason: format!(
                    "superseded by {} (item {}, {why}); queue that one instead",
                    item.advisory, item.id
                ),
            });
            return Ok(());
        }
        if let Some(why) = supersedes(&e.advisory, &my_pk, &item.advisory, other_pk, os) {
            to_supersede.push((item.clone(), why));
        }
    }

    let (tested, failed) = errata_store::history(tx, &e.advisory, os)?;
    let known_pk = if my_pk.is_empty() && !e.details_fetched {
        None
    } else {
        Some(my_pk.as_slice())
    };
    let profile = crate::engine::sync::risk_profile(scorer, e, known_pk, os, tested, failed);
    errata_store::upsert_risk_profile(tx, &profile)?;
    let item = queue::insert(
        tx,
        &queue::NewQueueItem {
            advisory: e.advisory.clone(),
            os: os.to_string(),
            score: profile.score,
            priority: req.priority,
            require_all_systems: req.require_all_systems,
            queued_by: req.queued_by.clone(),
            notes: req.notes.clone(),
        },
    )?;
    audit::append(
        tx,
        &AuditEntry {
            actor: req.queued_by.clone(),
            action: "queue.add".into(),
            object_type: "queue_item".into(),
            object_id: Some(item.id.to_string()),
            details: serde_json::json!({
                "advisory": item.advisory, "os": item.os, "score": item.score,
                "low_confidence": profile.low_confidence, "priority": item.priority,
            }),
            ..Default::default()
        },
    )?;
    for (old, why) in to_supersede {
        queue::transition(
            tx,
            old.id,
            old.status,
            QueueStatus::Superseded,
            &TransitionExtra {
                superseded_by: Some(e.advisory.clone()),
                ..Default::default()
            },
        )?;
        audit::append(
            tx,
            &AuditEntry {
                actor: req.queued_by.clone(),
                action: "queue.supersede".into(),
                object_type: "queue_item".into(),
                object_id: Some(old.id.to_string()),
                reason: Some(why.clone()),
                details: serde_json::json!({
                    "advisory": old.advisory, "os": old.os, "superseded_by": e.advisory,
                    "by_item": item.id,
                }),
                ..Default::default()
            },
        )?;
        report.superseded.push(SupersededItem {
            id: old.id,
            advisory: old.advisory,
            os: old.os,
            superseded_by: e.advisory.clone(),
            reason: why,
        });
    }
    report.added.push(item);
    Ok(())
}

/// Queue, in one transaction.
pub fn add_blocking(
    store: &Store,
    scorer: &Scorer,
    req: &AddRequest,
) -> Result<AddReport, QueueError> {
    let mut out: Option<Result<AddReport, QueueError>> = None;
    let res = store.write_blocking(|tx| match add(tx, scorer, req) {
        Ok(r) => Ok(r),
        Err(QueueError::Store(e)) => Err(e),
        Err(e) => {
            out = Some(Err(e));
            Err(StoreError::Conflict("rolled back".into()))
        }
    });
    match (res, out) {
        (_, Some(err)) => err,
        (Ok(r), None) => Ok(r),
        (Err(e), None) => Err(e.into()),
    }
}

/// Apply the auto-queue rule: every (advisory, OS) currently relevant, of a listed type and
/// at least the minimum severity, that has never been queued for that OS.
pub fn auto_queue(
    store: &Store,
    scorer: &Scorer,
    rule: &AutoQueueRule,
) -> Result<AddReport, QueueError> {
    if !rule.enabled {
        return Ok(AddReport::default());
    }
    let min = severity_rank(&rule.min_severity).ok_or_else(|| {
        QueueError::Invalid(format!(
            "queue.auto_queue min_severity {:?}: use critical, high, medium, low or unknown",
            rule.min_severity
        ))
    })?;
    let scorer = scorer.clone();
    let rule = rule.clone();
    let mut out: Option<QueueError> = None;
    let res = store.write_blocking(|tx| {
        let candidates = errata_store::list(
            tx,
            &ErrataFilter {
                types: rule.types.clone(),
                ..Default::default()
            },
        )?;
        let ever: HashSet<(String, String)> = all_pages(tx, QueueFilter::default())?
            .into_iter()
            .map(|i| (i.advisory, i.os))
            .collect();
        let mut report = AddReport::default();
        for c in candidates {
            if !QUEUE_OS.contains(&c.os.as_str())
                || severity_rank(&c.erratum.severity).unwrap_or(0) < min
                || ever.contains(&(c.erratum.advisory.clone(), c.os.clone()))
            {
                continue;
            }
            let req = AddRequest {
                advisories: vec![c.erratum.advisory.clone()],
                os: Some(c.os.clone()),
                queued_by: "auto-queue".into(),
                notes: Some(format!(
                    "auto-queued: {} {} advisory",
                    c.erratum.severity, c.erratum.advisory_type
                )),
                ..Default::default()
            };
            match add(tx, &scorer, &req) {
                Ok(r) => {
                    report.added.extend(r.added);
                    report.skipped.extend(r.skipped);
                    report.superseded.extend(r.superseded);
                }
                Err(QueueError::Store(e)) => return Err(e),
                Err(e) => {
                    out = Some(e);
                    return Err(StoreError::Conflict("rolled back".into()));
                }
            }
        }
        Ok(report)
    });
    match (res, out) {
        (_, Some(e)) => Err(e),
        (Ok(r), None) => Ok(r),
        (Err(e), None) => Err(e.into()),
    }
}

/// Everything about one queue item, for `spm queue show`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ItemDetails {
    /// The item.
    pub item: QueueItem,
    /// Its advisory.
    pub erratum: ErratumRecord,
    /// The advisory's packages.
    pub packages: Vec<PackageRecord>,
    /// CVEs.
    pub cves: Vec<String>,
    /// The score with its explanation, recomputed now.
    pub score: ScoreResult,
    /// The queue items of the same advisory and OS, older attempts included.
    pub history: Vec<QueueItem>,
}

/// Details of a queue item.
pub fn show(store: &Store, scorer: &Scorer, id: i64) -> StoreResult<ItemDetails> {
    store.read_blocking(|c| {
        let item = queue::get(c, id)?;
        let erratum = errata_store::get(c, &item.advisory)?;
        let packages = errata_store::packages(c, &item.advisory)?;
        let cves = errata_store::cves(c, &item.advisory)?;
        let score = score_now(c, scorer, &erratum, &item.os)?;
        let history = all_pages(
            c,
            QueueFilter {
                os: Some(item.os.clone()),
                search: Some(item.advisory.clone()),
                ..Default::default()
            },
        )?
        .into_iter()
        .filter(|i| i.advisory == item.advisory && i.id != item.id)
        .collect();
        Ok(ItemDetails {
            item,
            erratum,
            packages,
            cves,
            score,
            history,
        })
    })
}

/// List queue items.
pub fn list(store: &Store, filter: &QueueFilter) -> StoreResult<QueuePage> {
    store.read_blocking(|c| queue::list(c, filter))
}

/// Remove a queued item (only `queued`), with an audit row.
pub fn remove(store: &Store, id: i64, actor: &str, reason: Option<&str>) -> StoreResult<()> {
    store.write_blocking(|tx| {
        let item = queue::get(tx, id)?;
        queue::remove(tx, id)?;
        audit::append(
            tx,
            &AuditEntry {
                actor: actor.to_string(),
                action: "queue.remove".into(),
                object_type: "queue_item".into(),
                object_id: Some(id.to_string()),
                reason: reason.map(str::to_string),
                details: serde_json::json!({"advisory": item.advisory, "os": item.os}),
                ..Default::default()
            },
        )?;
        Ok(())
    })
}

/// Change an item's priority, with an audit row.
pub fn set_priority(store: &Store, id: i64, priority: i64, actor: &str) -> StoreResult<QueueItem> {
    store.write_blocking(|tx| {
        let before = queue::get(tx, id)?;
        let item = queue::set_priority(tx, id, priority)?;
        audit::append(
            tx,
            &AuditEntry {
                actor: actor.to_string(),
                action: "queue.priority".into(),
                object_type: "queue_item".into(),
                object_id: Some(id.to_string()),
                details: serde_json::json!({"from": before.priority, "to": priority}),
                ..Default::default()
            },
        )?;
        Ok(item)
    })
}

#[cfg(test)]
mod tests;
