//! Errata sync: UYUNI → `errata`, packages, CVEs, per-OS relevance and risk profiles.
//!
//! One cycle ([`run_sync`]):
//! 1. claim the run (`sync_runs`, one `running` row at a time; a crashed run whose lease
//!    expired is closed as `interrupted` first) and keep its lease alive;
//! 2. one UYUNI session: `auth.login`, `systemgroup.listAllGroups`, `systemgroup.listSystems`
//!    per group in scope (test groups, production groups or all), the OS of each system from
//!    its groups or, when they say nothing, its base channel (looked up once, then cached);
//! 3. `system.getRelevantErrata` with **arrays** of system ids (batches; a failed batch falls
//!    back to one call per system so one bad system does not sink the others);
//! 4. per advisory, only when it is new, incomplete, or its update date/type/synopsis
//!    changed: `errata.getDetails`, `errata.listCves` (security advisories only) and
//!    `errata.listPackages` (when `fetch_packages`), all through one pool of `concurrency`
//!    calls in flight, so the run's critical path is `ceil(calls / concurrency)` round trips;
//! 5. one transaction: systems, errata, packages, CVEs, relevance per (advisory, OS) — an
//!    advisory relevant to several OSes is recorded for each —, relevance no longer seen is
//!    marked stale (only for OSes whose systems all answered), risk profiles (Success
//!    Score) for new or changed (advisory, OS) pairs;
//! 6. the run ends `ok`, `partial` (with every failure and its reason) or `failed`.
//!
//! Relevance is per OS, not per scope: a sync marks stale what the systems *it* covers no
//! longer need, so switching `scope` from `all` to `test` makes production-only advisories
//! stale (they are kept, and come back on the next sync that covers them).
//!
//! Bad data from UYUNI (an advisory without a name or type, an unparsable date, a package
//! with an invalid version) is reported and that advisory skipped; the rest is kept.

pub mod normalize;
pub mod source;
pub mod uyuni_source;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::{Deserialize, Serialize};

use self::normalize::{InvalidData, Overview};
use self::source::{
    ErrataSource, RawDetails, RawErratum, RawPackage, RawSystem, SourceResult, method,
};
use crate::engine::score::{ScoreHistory, ScoreInput, ScorePackage, Scorer};
use crate::store::errata::{self as errata_store, ErratumRecord, PackageRecord, RiskProfile};
use crate::store::sync_runs::{self, SyncFailure, SyncStatus, SyncSummary};
use crate::store::systems::{self, SystemRecord};
use crate::store::{Store, StoreError, now_ts};

/// Which systems a sync covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncScope {
    /// Groups whose name starts with `test_group_prefix`.
    Test,
    /// Production groups: `production_group_prefix` when set, else every non-test group.
    Production,
    /// Every group, plus systems in no group.
    All,
}

impl SyncScope {
    /// Name stored in `sync_runs.scope`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Test => "test",
            Self::Production => "production",
            Self::All => "all",
        }
    }
}

/// Sync settings (configuration section `[sync]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyncConfig {
    /// Seconds between syncs inside `spm serve` (0 disables the interval).
    pub interval_s: u64,
    /// Systems in scope.
    pub scope: SyncScope,
    /// Prefix of test groups.
    pub test_group_prefix: String,
    /// Prefix of production groups; unset means every group that is not a test group.
    pub production_group_prefix: Option<String>,
    /// UYUNI calls in flight.
    pub concurrency: usize,
    /// Fetch package lists at sync time (needed for a confident Success Score).
    pub fetch_packages: bool,
    /// Systems per `system.getRelevantErrata` call. Each answer is decoded whole, so this
    /// bounds memory: about `relevant_batch_size × relevant errata per system` structs.
    pub relevant_batch_size: usize,
    /// `system.getRelevantErrata` batches in flight at once (memory bound as above).
    pub relevant_batches_in_flight: usize,
    /// Target relevant-errata entries per `system.getRelevantErrata` answer; after the
    /// first answers the batch shrinks so dense fleets stay within memory.
    pub relevant_entries_per_call: usize,
    /// Lease of a running sync, seconds (renewed every third of it).
    pub lease_s: u64,
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            interval_s: 1800,
            scope: SyncScope::Test,
            test_group_prefix: "test-".into(),
            production_group_prefix: None,
            concurrency: 10,
            fetch_packages: true,
            relevant_batch_size: 25,
            relevant_batches_in_flight: 2,
            relevant_entries_per_call: 20_000,
            lease_s: 120,
        }
    }
}

impl From<&crate::config::SyncConfig> for SyncConfig {
    /// The `[sync]` section of the global configuration; settings it does not have keep
    /// their defaults.
    fn from(c: &crate::config::SyncConfig) -> Self {
        Self {
            interval_s: c.interval_secs,
            scope: match c.scope {
                crate::config::SyncScope::Test => SyncScope::Test,
                crate::config::SyncScope::Production => SyncScope::Production,
                crate::config::SyncScope::All => SyncScope::All,
            },
            test_group_prefix: c.test_group_prefix.clone(),
            concurrency: usize::try_from(c.concurrency).unwrap_or(1).max(1),
            fetch_packages: c.fetch_packages,
            ..Self::default()
        }
    }
}

/// Stages reported to a [`SyncObserver`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum SyncEvent {
    /// The run was claimed.
    Started {
        /// Run id.
        run_id: i64,
    },
    /// Systems in scope are known.
    Systems {
        /// Number of systems.
        count: usize,
    },
    /// Relevant errata are known.
    Errata {
        /// Distinct advisories.
        total: usize,
        /// Advisories that need fetching (new or changed).
        to_fetch: usize,
        /// Per-advisory calls planned.
        calls: usize,
    },
    /// Per-advisory calls done so far.
    Fetched {
        /// Done.
        done: usize,
        /// Planned.
        total: usize,
    },
    /// Writing to the database.
    Writing,
}

/// Receives progress events (the CLI draws a bar or prints lines).
pub trait SyncObserver: Send + Sync {
    /// Called for each event.
    fn event(&self, e: &SyncEvent);
}

/// An observer that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl SyncObserver for NoProgress {
    fn event(&self, _e: &SyncEvent) {}
}

/// What a finished sync reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SyncReport {
    /// Run id.
    pub run_id: i64,
    /// Final status.
    pub status: SyncStatus,
    /// Figures and failures.
    #[serde(flatten)]
    pub summary: SyncSummary,
    /// Fatal error, when the status is `failed`.
    pub error: Option<String>,
    /// Wall-clock seconds.
    pub wall_s: f64,
}

/// Why a sync could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Another sync holds the lock.
    #[error("{0}")]
    AlreadyRunning(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Per-method call accounting.
#[derive(Debug, Default)]
struct Calls(Mutex<BTreeMap<String, u64>>);

impl Calls {
    fn count(&self, m: &str) {
        if let Ok(mut g) = self.0.lock() {
            *g.entry(m.to_string()).or_default() += 1;
        }
    }
    fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().map(|g| g.clone()).unwrap_or_default()
    }
}

/// Failures, in order.
#[derive(Debug, Default)]
struct Failures(Vec<SyncFailure>);

impl Failures {
    fn push(&mut self, what: impl Into<String>, reason: impl ToString) {
        self.0.push(SyncFailure {
            what: what.into(),
            reason: reason.to_string(),
        });
    }
}

const ALL_OS: [&str; 4] = ["ubuntu", "debian", "rhel", "unknown"];

/// A system in scope while the sync runs.
#[derive(Debug, Clone)]
struct ScopedSystem {
    raw: RawSystem,
    groups: Vec<String>,
    os: &'static str,
    base_channel: Option<String>,
}

/// Advisories found, interned.
#[derive(Debug, Default)]
struct Found {
    overviews: Vec<Overview>,
    index: HashMap<String, u32>,
    per_system: HashMap<i64, Vec<u32>>,
    invalid: HashSet<String>,
}

impl Found {
    fn add(&mut self, sid: i64, list: Vec<RawErratum>, failures: &mut Failures) {
        let mut idxs = Vec::with_capacity(list.len());
        for raw in list {
            match normalize::overview(&raw) {
                Ok(o) => {
                    let next = self.overviews.len() as u32;
                    let i = *self.index.entry(o.advisory.clone()).or_insert(next);
                    if i == next {
                        self.overviews.push(o);
                    }
                    idxs.push(i);
                }
                Err(e) => {
                    let what = advisory_label(&raw);
                    if self.invalid.insert(what.clone()) {
                        failures.push(what, format!("skipped: {e}"));
                    }
                }
            }
        }
        idxs.sort_unstable();
        idxs.dedup();
        self.per_system.insert(sid, idxs);
    }
}

fn advisory_label(raw: &RawErratum) -> String {
    match (&raw.advisory_name, raw.id) {
        (Some(n), _) if !n.trim().is_empty() => format!("advisory {n}"),
        (_, Some(id)) => format!("advisory id {id}"),
        _ => "advisory (no name, no id)".to_string(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Details,
    Cves,
    Packages,
}

enum Fetched {
    Details(SourceResult<RawDetails>),
    Cves(SourceResult<Vec<String>>),
    Packages(SourceResult<Vec<RawPackage>>),
}

#[derive(Default)]
struct Slot {
    details: Option<SourceResult<RawDetails>>,
    cves: Option<SourceResult<Vec<String>>>,
    packages: Option<SourceResult<Vec<RawPackage>>>,
}

/// An advisory ready to be written.
struct Prepared {
    record: ErratumRecord,
    packages: Option<Vec<PackageRecord>>,
    cves: Option<Vec<String>>,
    is_new: bool,
}

/// Everything the write transaction needs, owned.
struct Plan {
    systems: Vec<SystemRecord>,
    prepared: Vec<Prepared>,
    unchanged: Vec<String>,
    /// (system id, advisory names) for systems whose errata were fetched.
    system_errata: Vec<(i64, Vec<String>)>,
    /// (advisory, os, count).
    relevance: Vec<(String, &'static str, i64)>,
    complete_os: Vec<&'static str>,
    /// Advisories that were (re)fetched this run: their profiles are recomputed.
    rescore: HashSet<String>,
}

fn owner_id() -> String {
    format!(
        "pid{}-{}",
        std::process::id(),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

fn lease_until(lease: Duration) -> String {
    let t = chrono::Utc::now() + chrono::Duration::milliseconds(lease.as_millis() as i64);
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// Run one sync cycle. Returns [`SyncError::AlreadyRunning`] when another sync holds the
/// lock; otherwise a report whose status says whether everything, part or nothing
/// succeeded (UYUNI failures are in the report, not an `Err`).
pub async fn run_sync<S: ErrataSource>(
    store: &Store,
    source: &S,
    scorer: &Arc<Scorer>,
    config: &SyncConfig,
    observer: &dyn SyncObserver,
) -> Result<SyncReport, SyncError> {
    let started = Instant::now();
    let owner = owner_id();
    let lease = Duration::from_secs(config.lease_s.max(3));
    let scope = config.scope.as_str();
    let run_id = {
        let owner = owner.clone();
        let until = lease_until(lease);
        match store
            .write(move |tx| sync_runs::start(tx, scope, &owner, &until))
            .await
        {
            Ok(id) => id,
            Err(StoreError::Conflict(m)) => return Err(SyncError::AlreadyRunning(m)),
            Err(e) => return Err(e.into()),
        }
    };
    observer.event(&SyncEvent::Started { run_id });
    let heartbeat = {
        let store = store.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(lease / 3).await;
                let until = lease_until(lease);
                match store
                    .write(move |tx| sync_runs::heartbeat(tx, run_id, &until))
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(run_id, "sync run was closed by another process");
                        break;
                    }
                    Err(e) => tracing::warn!(run_id, error = %e, "sync heartbeat failed"),
                }
            }
        })
    };

    let calls = Calls::default();
    let mut failures = Failures::default();
    let outcome = sync_cycle(
        store,
        source,
        scorer,
        config,
        observer,
        &calls,
        &mut failures,
    )
    .await;
    heartbeat.abort();

    let calls_by_method = calls.snapshot();
    let mut summary = SyncSummary {
        calls_total: calls_by_method.values().sum(),
        calls_by_method,
        failures: failures.0,
        ..Default::default()
    };
    let (status, error) = match outcome {
        Ok(counts) => {
            summary.systems_total = counts.systems;
            summary.errata_total = counts.errata;
            summary.errata_new = counts.new;
            summary.errata_updated = counts.updated;
            summary.errata_stale = counts.stale;
            if summary.failures.is_empty() {
                (SyncStatus::Ok, None)
            } else {
                (SyncStatus::Partial, None)
            }
        }
        Err(e) => (SyncStatus::Failed, Some(e)),
    };
    {
        let summary = summary.clone();
        let error = error.clone();
        store
            .write(move |tx| sync_runs::finish(tx, run_id, status, &summary, error.as_deref()))
            .await?;
    }
    Ok(SyncReport {
        run_id,
        status,
        summary,
        error,
        wall_s: started.elapsed().as_secs_f64(),
    })
}

struct Counts {
    systems: u64,
    errata: u64,
    new: u64,
    updated: u64,
    stale: u64,
}

async fn sync_cycle<S: ErrataSource>(
    store: &Store,
    source: &S,
    scorer: &Arc<Scorer>,
    config: &SyncConfig,
    observer: &dyn SyncObserver,
    calls: &Calls,
    failures: &mut Failures,
) -> Result<Counts, String> {
    calls.count(method::LOGIN);
    source
        .login()
        .await
        .map_err(|e| format!("UYUNI login failed: {e}"))?;
    let result = collect(store, source, config, observer, calls, failures).await;
    calls.count(method::LOGOUT);
    if let Err(e) = source.logout().await {
        tracing::warn!(error = %e, "UYUNI logout failed");
    }
    let plan = result?;
    let counts_base = (
        plan.systems.len() as u64,
        plan.relevance_errata_total(),
        plan.prepared.iter().filter(|p| p.is_new).count() as u64,
        plan.prepared.iter().filter(|p| !p.is_new).count() as u64,
    );
    observer.event(&SyncEvent::Writing);
    let scorer = Arc::clone(scorer);
    let t_write = Instant::now();
    let stale = store
        .write(move |tx| write_plan(tx, &plan, &scorer))
        .await
        .map_err(|e| format!("writing the sync result failed (nothing was saved): {e}"))?;
    tracing::debug!(
        elapsed_ms = t_write.elapsed().as_millis() as u64,
        "sync written"
    );
    Ok(Counts {
        systems: counts_base.0,
        errata: counts_base.1,
        new: counts_base.2,
        updated: counts_base.3,
        stale,
    })
}

impl Plan {
    fn relevance_errata_total(&self) -> u64 {
        let set: HashSet<&str> = self.relevance.iter().map(|(a, _, _)| a.as_str()).collect();
        set.len() as u64
    }
}

fn group_in_scope(config: &SyncConfig, g: &str) -> bool {
    let is_test = g.starts_with(&config.test_group_prefix);
    match config.scope {
        SyncScope::Test => is_test,
        SyncScope::Production => match &config.production_group_prefix {
            Some(p) => g.starts_with(p.as_str()),
            None => !is_test,
        },
        SyncScope::All => true,
    }
}

/// Steps 2–4: ask UYUNI, validate, plan the write.
async fn collect<S: ErrataSource>(
    store: &Store,
    source: &S,
    config: &SyncConfig,
    observer: &dyn SyncObserver,
    calls: &Calls,
    failures: &mut Failures,
) -> Result<Plan, String> {
    let workers = config.concurrency.max(1);
    calls.count(method::LIST_GROUPS);
    let groups: Vec<String> = source
        .list_groups()
        .await
        .map_err(|e| format!("listing system groups failed: {e}"))?
        .into_iter()
        .filter(|g| group_in_scope(config, g))
        .collect();

    // OSes whose relevance is incomplete this run (a group or system of that OS failed).
    let mut incomplete: HashSet<&'static str> = HashSet::new();
    let mut all_incomplete = false;

    // Systems per group, concurrently.
    let listed: Vec<(String, SourceResult<Vec<RawSystem>>)> =
        futures::stream::iter(groups.iter().cloned())
            .map(|g| async move {
                calls.count(method::GROUP_SYSTEMS);
                let r = source.list_group_systems(&g).await;
                (g, r)
            })
            .buffered(workers)
            .collect()
            .await;
    let mut scoped: BTreeMap<i64, ScopedSystem> = BTreeMap::new();
    for (g, r) in listed {
        match r {
            Ok(list) => {
                for s in list {
                    scoped
                        .entry(s.id)
                        .or_insert_with(|| ScopedSystem {
                            raw: s.clone(),
                            groups: Vec::new(),
                            os: "unknown",
                            base_channel: None,
                        })
                        .groups
                        .push(g.clone());
                }
            }
            Err(e) => {
                match normalize::os_from_label(&g) {
                    Some(os) => {
                        incomplete.insert(os);
                    }
                    None => all_incomplete = true,
                }
                failures.push(format!("group {g}"), format!("listing systems failed: {e}"));
            }
        }
    }
    if config.scope == SyncScope::All {
        calls.count(method::ALL_SYSTEMS);
        match source.list_all_systems().await {
            Ok(list) => {
                for s in list {
                    scoped.entry(s.id).or_insert_with(|| ScopedSystem {
                        raw: s,
                        groups: Vec::new(),
                        os: "unknown",
                        base_channel: None,
                    });
                }
            }
            Err(e) => {
                all_incomplete = true;
                failures.push("all systems", format!("system.listSystems failed: {e}"));
            }
        }
    }

    // OS of each system: its groups, else its (cached) base channel.
    let cached = store
        .read(systems::known_base_channels)
        .await
        .map_err(|e| format!("reading known systems failed: {e}"))?;
    let mut need_channel: Vec<i64> = Vec::new();
    for s in scoped.values_mut() {
        match normalize::os_from_groups(s.groups.iter().map(String::as_str)) {
            Ok(Some(os)) => s.os = os,
            _ => match cached.get(&s.raw.id) {
                Some(ch) => {
                    s.base_channel = Some(ch.clone());
                    s.os = normalize::os_from_label(ch).unwrap_or("unknown");
                }
                None => need_channel.push(s.raw.id),
            },
        }
    }
    let channels: Vec<(i64, SourceResult<Option<String>>)> = futures::stream::iter(need_channel)
        .map(|id| async move {
            calls.count(method::BASE_CHANNEL);
            (id, source.base_channel(id).await)
        })
        .buffered(workers)
        .collect()
        .await;
    for (id, r) in channels {
        let Some(s) = scoped.get_mut(&id) else {
            continue;
        };
        match r {
            Ok(Some(ch)) => {
                s.os = normalize::os_from_label(&ch).unwrap_or("unknown");
                s.base_channel = Some(ch);
            }
            Ok(None) => s.os = "unknown",
            Err(e) => {
                s.os = "unknown";
                failures.push(
                    format!("system {} ({})", s.raw.name, id),
                    format!("base channel lookup failed, OS unknown: {e}"),
                );
            }
        }
    }
    observer.event(&SyncEvent::Systems {
        count: scoped.len(),
    });

    let t_stage = Instant::now();
    // Relevant errata, in batches of systems. Each answer is decoded whole, so the batch
    // size adapts to the density seen so far: about `relevant_entries_per_call` entries
    // per call, never more than `relevant_batch_size` systems.
    let ids: Vec<i64> = scoped.keys().copied().collect();
    let max_batch = config.relevant_batch_size.max(1);
    let in_flight = config.relevant_batches_in_flight.clamp(1, workers);
    let mut found = Found::default();
    let mut failed_systems: Vec<(i64, String)> = Vec::new();
    let mut next = 0usize;
    let (mut seen_systems, mut seen_entries) = (0usize, 0usize);
    while next < ids.len() {
        // The first call probes the density with a few systems, alone.
        let first = seen_systems == 0 && failed_systems.is_empty();
        let batch = if first {
            max_batch.min(4)
        } else {
            let per_system = (seen_entries / seen_systems).max(1);
            (config.relevant_entries_per_call / per_system).clamp(1, max_batch)
        };
        let mut chunks = Vec::with_capacity(in_flight);
        for _ in 0..if first { 1 } else { in_flight } {
            if next >= ids.len() {
                break;
            }
            let end = (next + batch).min(ids.len());
            chunks.push(ids[next..end].to_vec());
            next = end;
        }
        let mut stream = futures::stream::iter(chunks)
            .map(|chunk| async move {
                calls.count(method::RELEVANT);
                match source.relevant_errata_batch(&chunk).await {
                    Ok(list) => {
                        let mut got: HashMap<i64, Vec<RawErratum>> = list.into_iter().collect();
                        chunk
                            .iter()
                            .map(|id| {
                                let r = got.remove(id).ok_or_else(|| {
                                    "missing from the getRelevantErrata answer".to_string()
                                });
                                (*id, r)
                            })
                            .collect::<Vec<_>>()
                    }
                    Err(batch_err) => {
                        tracing::warn!(error = %batch_err, systems = chunk.len(),
                            "batch getRelevantErrata failed; asking system by system");
                        futures::stream::iter(chunk)
                            .map(|id| async move {
                                calls.count(method::RELEVANT);
                                (
                                    id,
                                    source.relevant_errata(id).await.map_err(|e| e.to_string()),
                                )
                            })
                            .buffer_unordered(in_flight)
                            .collect::<Vec<_>>()
                            .await
                    }
                }
            })
            .buffer_unordered(in_flight);
        while let Some(results) = stream.next().await {
            for (id, r) in results {
                match r {
                    Ok(list) => {
                        seen_systems += 1;
                        seen_entries += list.len();
                        found.add(id, list, failures);
                    }
                    Err(e) => failed_systems.push((id, e)),
                }
            }
        }
    }
    for (id, e) in failed_systems {
        let (name, os) = scoped
            .get(&id)
            .map(|s| (s.raw.name.clone(), s.os))
            .unwrap_or_else(|| (String::new(), "unknown"));
        incomplete.insert(os);
        failures.push(
            format!("system {name} ({id})"),
            format!("relevant errata failed: {e}"),
        );
    }

    tracing::debug!(
        elapsed_ms = t_stage.elapsed().as_millis() as u64,
        systems = found.per_system.len(),
        advisories = found.overviews.len(),
        "relevant errata collected"
    );
    let t_stage = Instant::now();
    // What needs fetching.
    let known = store
        .read(errata_store::known)
        .await
        .map_err(|e| format!("reading known errata failed: {e}"))?;
    let mut fetch: Vec<u32> = Vec::new();
    let mut unchanged: Vec<String> = Vec::new();
    for (i, o) in found.overviews.iter().enumerate() {
        let changed = match known.get(&o.advisory) {
            None => true,
            Some(k) => {
                !k.details_fetched
                    || k.update_date != o.update_date
                    || k.advisory_type != o.advisory_type
                    || (!o.synopsis.is_empty() && k.synopsis != o.synopsis)
            }
        };
        if changed {
            fetch.push(i as u32);
        } else {
            unchanged.push(o.advisory.clone());
        }
    }
    let mut tasks: Vec<(u32, Kind)> = Vec::new();
    for &i in &fetch {
        tasks.push((i, Kind::Details));
        if found.overviews[i as usize].advisory_type == "security" {
            tasks.push((i, Kind::Cves));
        }
        if config.fetch_packages {
            tasks.push((i, Kind::Packages));
        }
    }
    let total_calls = tasks.len();
    observer.event(&SyncEvent::Errata {
        total: found.overviews.len(),
        to_fetch: fetch.len(),
        calls: total_calls,
    });

    let mut slots: HashMap<u32, Slot> = fetch.iter().map(|&i| (i, Slot::default())).collect();
    {
        let overviews = &found.overviews;
        let mut stream = futures::stream::iter(tasks)
            .map(|(i, kind)| async move {
                let adv = overviews[i as usize].advisory.as_str();
                let r = match kind {
                    Kind::Details => {
                        calls.count(method::DETAILS);
                        Fetched::Details(source.details(adv).await)
                    }
                    Kind::Cves => {
                        calls.count(method::CVES);
                        Fetched::Cves(source.cves(adv).await)
                    }
                    Kind::Packages => {
                        calls.count(method::PACKAGES);
                        Fetched::Packages(source.packages(adv).await)
                    }
                };
                (i, r)
            })
            .buffer_unordered(workers);
        let mut done = 0usize;
        while let Some((i, r)) = stream.next().await {
            if let Some(slot) = slots.get_mut(&i) {
                match r {
                    Fetched::Details(r) => slot.details = Some(r),
                    Fetched::Cves(r) => slot.cves = Some(r),
                    Fetched::Packages(r) => slot.packages = Some(r),
                }
            }
            done += 1;
            if done.is_multiple_of(25) || done == total_calls {
                observer.event(&SyncEvent::Fetched {
                    done,
                    total: total_calls,
                });
            }
        }
    }

    tracing::debug!(
        elapsed_ms = t_stage.elapsed().as_millis() as u64,
        calls = total_calls,
        "advisory details fetched"
    );
    // Validate and prepare.
    let mut prepared = Vec::with_capacity(fetch.len());
    let mut excluded: HashSet<u32> = HashSet::new();
    for &i in &fetch {
        let o = &found.overviews[i as usize];
        let slot = slots.remove(&i).unwrap_or_default();
        let is_new = !known.contains_key(&o.advisory);
        match prepare(o, slot, config.fetch_packages) {
            Ok((p, problems)) => {
                for reason in problems {
                    failures.push(format!("advisory {}", o.advisory), reason);
                }
                prepared.push(Prepared { is_new, ..p });
            }
            Err(e) => {
                failures.push(format!("advisory {}", o.advisory), format!("skipped: {e}"));
                if is_new {
                    excluded.insert(i);
                }
            }
        }
    }

    // Relevance per (advisory, OS) and per system.
    let mut counts: HashMap<(u32, &'static str), i64> = HashMap::new();
    let mut system_errata = Vec::with_capacity(found.per_system.len());
    for (sid, idxs) in &found.per_system {
        let os = scoped.get(sid).map(|s| s.os).unwrap_or("unknown");
        let mut names = Vec::with_capacity(idxs.len());
        for &i in idxs {
            if excluded.contains(&i) {
                continue;
            }
            *counts.entry((i, os)).or_default() += 1;
            names.push(found.overviews[i as usize].advisory.clone());
        }
        system_errata.push((*sid, names));
    }
    let mut relevance: Vec<(String, &'static str, i64)> = counts
        .into_iter()
        .map(|((i, os), n)| (found.overviews[i as usize].advisory.clone(), os, n))
        .collect();
    relevance.sort();
    let complete_os = if all_incomplete {
        Vec::new()
    } else {
        ALL_OS
            .iter()
            .copied()
            .filter(|os| !incomplete.contains(os))
            .collect()
    };
    let rescore = prepared.iter().map(|p| p.record.advisory.clone()).collect();
    let systems = scoped
        .into_values()
        .map(|s| SystemRecord {
            id: s.raw.id,
            name: s.raw.name,
            hostname: s.raw.hostname.filter(|h| !h.is_empty()),
            os: s.os.to_string(),
            os_release: s.raw.release.filter(|r| !r.is_empty()),
            role: if s
                .groups
                .iter()
                .any(|g| g.starts_with(&config.test_group_prefix))
            {
                "test".into()
            } else {
                "production".into()
            },
            groups: s.groups,
            base_channel: s.base_channel,
        })
        .collect();
    Ok(Plan {
        systems,
        prepared,
        unchanged,
        system_errata,
        relevance,
        complete_os,
        rescore,
    })
}

/// Turn the fetched pieces of one advisory into rows. `Err` skips the advisory (bad data);
/// `Ok` carries the problems that make it incomplete (failed calls), which are reported
/// and leave `details_fetched` false so the next sync asks again.
fn prepare(
    o: &Overview,
    slot: Slot,
    fetch_packages: bool,
) -> Result<(Prepared, Vec<String>), InvalidData> {
    let mut problems = Vec::new();
    let mut complete = true;
    let mut record = match slot.details {
        Some(Ok(d)) => normalize::record_with_details(o, &d)?,
        Some(Err(e)) => {
            complete = false;
            problems.push(format!("errata.getDetails failed: {e}"));
            normalize::record_from_overview(o)
        }
        None => {
            complete = false;
            normalize::record_from_overview(o)
        }
    };
    let packages = match slot.packages {
        Some(Ok(list)) => {
            let mut out: Vec<PackageRecord> = Vec::with_capacity(list.len());
            let mut seen = HashSet::new();
            for p in &list {
                let p = normalize::package(p)?;
                // Vendor and org copies of an advisory repeat packages.
                if seen.insert((p.name.clone(), p.evr(), p.arch.clone())) {
                    out.push(p);
                }
            }
            Some(out)
        }
        Some(Err(e)) => {
            complete = false;
            problems.push(format!("errata.listPackages failed: {e}"));
            None
        }
        None => {
            if fetch_packages {
                complete = false;
            }
            None
        }
    };
    let cves = match slot.cves {
        Some(Ok(list)) => Some(list),
        Some(Err(e)) => {
            complete = false;
            problems.push(format!("errata.listCves failed: {e}"));
            None
        }
        None => None,
    };
    record.details_fetched = complete;
    Ok((
        Prepared {
            record,
            packages,
            cves,
            is_new: false,
        },
        problems,
    ))
}

/// Step 5: one transaction. Returns the number of relevances that became stale.
fn write_plan(
    tx: &rusqlite::Transaction<'_>,
    plan: &Plan,
    scorer: &Scorer,
) -> Result<u64, StoreError> {
    let now = now_ts();
    systems::upsert(tx, &plan.systems)?;
    let mut fetched_packages: HashMap<&str, &Option<Vec<PackageRecord>>> = HashMap::new();
    let mut records: HashMap<&str, &ErratumRecord> = HashMap::new();
    for p in &plan.prepared {
        errata_store::upsert_full(tx, &p.record, &now)?;
        if let Some(pk) = &p.packages {
            errata_store::replace_packages(tx, &p.record.advisory, pk)?;
        }
        if let Some(c) = &p.cves {
            errata_store::replace_cves(tx, &p.record.advisory, c)?;
        }
        fetched_packages.insert(&p.record.advisory, &p.packages);
        records.insert(&p.record.advisory, &p.record);
    }
    errata_store::touch(tx, &plan.unchanged, &now)?;
    for (sid, names) in &plan.system_errata {
        let set: HashSet<&str> = names.iter().map(String::as_str).collect();
        errata_store::replace_system_errata(tx, *sid, &set, &now)?;
    }
    let seen: Vec<(&str, &str, i64)> = plan
        .relevance
        .iter()
        .map(|(a, o, n)| (a.as_str(), *o, *n))
        .collect();
    let stale = errata_store::apply_relevance(tx, &seen, &plan.complete_os, &now)?;

    // Risk profiles: every (advisory, OS) that was refetched, plus pairs without a profile.
    let refetched: Vec<(&str, &str)> = seen
        .iter()
        .filter(|(a, _, _)| plan.rescore.contains(*a))
        .map(|(a, o, _)| (*a, *o))
        .collect();
    let missing = errata_store::missing_risk_profiles(
        tx,
        seen.iter()
            .filter(|(a, _, _)| !plan.rescore.contains(*a))
            .map(|(a, o, _)| (*a, *o)),
    )?;
    for (adv, os) in refetched.into_iter().chain(missing) {
        let (record, packages) = match records.get(adv) {
            Some(r) => (
                (*r).clone(),
                fetched_packages.get(adv).and_then(|p| (*p).clone()),
            ),
            None => {
                let r = errata_store::get(tx, adv)?;
                let pk = errata_store::packages(tx, adv)?;
                let pk = if pk.is_empty() && !r.details_fetched {
                    None
                } else {
                    Some(pk)
                };
                (r, pk)
            }
        };
        let (tested, failed) = errata_store::history(tx, adv, os)?;
        let profile = risk_profile(scorer, &record, packages.as_deref(), os, tested, failed);
        errata_store::upsert_risk_profile(tx, &profile)?;
    }
    Ok(stale)
}

/// The score input of an advisory from its stored data.
pub fn score_input(
    record: &ErratumRecord,
    packages: Option<&[PackageRecord]>,
    times_tested: i64,
    times_failed: i64,
) -> ScoreInput {
    ScoreInput {
        advisory: record.advisory.clone(),
        advisory_type: record.advisory_type.clone(),
        severity: record.severity.clone(),
        packages: packages.map(|ps| {
            ps.iter()
                .map(|p| ScorePackage {
                    name: p.name.clone(),
                    size_bytes: p.size_bytes.and_then(|b| u64::try_from(b).ok()),
                })
                .collect()
        }),
        reboot_suggested: record.reboot_suggested,
        history: ScoreHistory {
            times_tested,
            times_failed,
        },
        adjustments: Vec::new(),
    }
}

/// Compute the risk profile row of an advisory on an OS.
pub fn risk_profile(
    scorer: &Scorer,
    record: &ErratumRecord,
    packages: Option<&[PackageRecord]>,
    os: &str,
    times_tested: i64,
    times_failed: i64,
) -> RiskProfile {
    let r = scorer.score(&score_input(record, packages, times_tested, times_failed));
    RiskProfile {
        advisory: record.advisory.clone(),
        os: os.to_string(),
        affects_kernel: r.factors.affects_kernel,
        requires_reboot: r.factors.requires_reboot,
        modifies_config: r.factors.modifies_config,
        dependency_count: r.factors.dependency_count,
        package_count: r.factors.package_count,
        total_size_kb: r.factors.total_size_kb,
        times_tested,
        times_failed,
        score: r.score,
        low_confidence: r.low_confidence,
        breakdown: serde_json::to_string(&r.breakdown).unwrap_or_else(|_| "[]".into()),
    }
}

/// Run syncs every `config.interval_s` seconds until `cancel` fires (used by `spm serve`).
/// A sync already running elsewhere is logged and skipped.
pub async fn run_periodic<S: ErrataSource>(
    store: Store,
    source: Arc<S>,
    scorer: Arc<Scorer>,
    config: SyncConfig,
    cancel: tokio_util::sync::CancellationToken,
) {
    if config.interval_s == 0 {
        return;
    }
    let every = Duration::from_secs(config.interval_s);
    loop {
        match run_sync(&store, source.as_ref(), &scorer, &config, &NoProgress).await {
            Ok(r) => tracing::info!(
                run_id = r.run_id,
                status = r.status.as_str(),
                calls = r.summary.calls_total,
                new = r.summary.errata_new,
                updated = r.summary.errata_updated,
                stale = r.summary.errata_stale,
                failures = r.summary.failures.len(),
                "sync finished"
            ),
            Err(SyncError::AlreadyRunning(m)) => tracing::info!("sync skipped: {m}"),
            Err(e) => tracing::error!(error = %e, "sync failed"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

#[cfg(test)]
mod tests;
