//! Running a policy: PLAN → VALIDATE → SNAPSHOT → EXECUTE → VERIFY → REPORT → ALERT.
//!
//! Hosts go wave by wave (canary first) in batches of at most `max_parallel`; each batch's
//! errata are applied with one `system.scheduleApplyErrata` per distinct errata set (so
//! UYUNI groups the systems into few actions), waited for with the client's backing-off
//! action waiter, then verified: relevance re-read from UYUNI in one call, and the policy's
//! `verify_host` hook. With `executor = "ansible"` the batch is patched by the policy's
//! playbook instead and verified by a compliance scan (`execute/ansible_exec.rs`); per-host
//! results land in the same rows and count against the same budget. The error budget is
//! checked after every batch; when it trips, or a cancel is requested, no new host starts
//! and the hosts in flight finish. Every status change goes through the run/host state
//! machines in the store.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::future::join_all;
use serde::Serialize;

mod ansible_exec;

use super::budget::BudgetState;
use super::hooks::{self, HOOK_TIMEOUT};
use super::plan::{self, HostInput, Plan, PlannedHost};
use super::policy::{AnsibleVerify, Executor, LoadedPolicy, RollbackMode};
use super::rollback;
use crate::engine::ansible::AnsibleExecutor;
use crate::engine::state::{QueueStatus, RunHostStatus as H, RunStatus as R, TransitionError};
use crate::services::uyuni::{SystemOutcome, UyuniClient, UyuniError, WaitOptions};
use crate::store::audit::{self, AuditEntry};
use crate::store::queue::{self, TransitionExtra};
use crate::store::runs::{self, HostUpdate, NewRun, NewRunHost, RunUpdate};
use crate::store::{Store, StoreError, compliance};

/// Why a run could not be planned or carried out (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Bad policy or a plan that cannot be executed.
    #[error("{0}")]
    Invalid(String),
    /// UYUNI failed.
    #[error("UYUNI: {0}")]
    Uyuni(#[from] UyuniError),
    /// The store failed or refused (e.g. another run of the policy is active).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A progress callback.
pub type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

/// How a run was started, and by whom.
#[derive(Clone)]
pub struct RunOptions {
    /// `manual`, `cron` or `api`.
    pub trigger: String,
    /// Authenticated identity.
    pub actor: String,
    /// Client address, if any.
    pub source_addr: Option<String>,
    /// Engine instance id (lease owner).
    pub owner: String,
    /// Lease on the run, renewed while it runs.
    pub lease: Duration,
    /// Longest wait for one UYUNI action when the policy has no window.
    pub action_deadline: Duration,
    /// Called on every progress change.
    pub progress: Option<ProgressFn>,
    /// The Ansible executor, for policies with `executor = "ansible"`.
    pub ansible: Option<Arc<AnsibleExecutor>>,
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("trigger", &self.trigger)
            .field("actor", &self.actor)
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

impl RunOptions {
    /// Manual run by `actor`.
    pub fn manual(actor: &str) -> Self {
        RunOptions {
            trigger: "manual".into(),
            actor: actor.into(),
            source_addr: None,
            owner: format!("spm-{}", std::process::id()),
            lease: Duration::from_secs(120),
            action_deadline: Duration::from_secs(3600),
            progress: None,
            ansible: None,
        }
    }
}

/// A progress snapshot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Progress {
    /// Run id.
    pub run_id: i64,
    /// What is happening.
    pub phase: String,
    /// Current wave (1-based).
    pub wave: usize,
    /// Waves planned.
    pub waves: usize,
    /// Hosts patched and verified.
    pub ok: usize,
    /// Hosts failed.
    pub failed: usize,
    /// Hosts in flight.
    pub running: usize,
    /// Hosts not started yet.
    pub pending: usize,
    /// Failures still tolerated in the wave.
    pub budget_left_wave: usize,
    /// Failures still tolerated in the run.
    pub budget_left_run: usize,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunSummary {
    /// Run id.
    pub run_id: i64,
    /// Final status.
    pub status: R,
    /// Hosts ok.
    pub ok: usize,
    /// Hosts failed.
    pub failed: usize,
    /// Hosts skipped (plan exclusions, window, budget).
    pub skipped: usize,
    /// Hosts cancelled.
    pub cancelled: usize,
    /// Why it stopped early.
    pub reason: Option<String>,
    /// UYUNI actions scheduled to apply errata, per wave (0 with the Ansible executor).
    pub apply_actions_per_wave: Vec<usize>,
}

fn lost(e: &StoreError) -> bool {
    matches!(e, StoreError::Transition(TransitionError::Lost { .. }))
}

/// PLAN: read targets and relevance from UYUNI and approvals from the store.
pub async fn build_plan(
    client: &UyuniClient,
    store: &Store,
    policy: &LoadedPolicy,
) -> Result<Plan, RunError> {
    let p = &policy.policy;
    let mut targets: BTreeMap<i64, String> = BTreeMap::new();
    for g in &p.targets.groups {
        let members = client.list_group_systems(g).await.map_err(|e| {
            RunError::Invalid(format!(
                "{}: target group {g:?} cannot be listed: {e}",
                policy.path
            ))
        })?;
        for s in members {
            targets.insert(s.id, s.profile_name);
        }
    }
    if p.targets.groups.is_empty() {
        let tags = p.targets.tags.clone();
        for (id, name) in store
            .read(move |c| runs::systems_with_tags(c, &tags))
            .await?
        {
            targets.insert(id, name);
        }
    }
    if targets.is_empty() {
        return Err(RunError::Invalid(format!(
            "{}: the targets select no systems (groups: {}; tags: {}); nothing to do",
            policy.path,
            if p.targets.groups.is_empty() {
                "none".to_string()
            } else {
                p.targets.groups.join(", ")
            },
            if p.targets.tags.is_empty() {
                "none".to_string()
            } else {
                p.targets
                    .tags
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        )));
    }
    let ids: Vec<i64> = targets.keys().copied().collect();
    let mut relevant: BTreeMap<i64, Vec<(String, i64)>> = BTreeMap::new();
    for chunk in ids.chunks(1000) {
        for se in client.relevant_errata_many(chunk).await? {
            relevant.insert(
                se.system_id,
                se.errata
                    .into_iter()
                    .map(|e| (e.advisory_name, e.id))
                    .collect(),
            );
        }
    }
    let ids2 = ids.clone();
    let facts = store.read(move |c| runs::system_facts(c, &ids2)).await?;
    let advisories: Vec<String> = relevant
        .values()
        .flatten()
        .map(|(a, _)| a.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let os = p.os_family().to_string();
    let approvals = store
        .read(move |c| runs::errata_approvals(c, &os, &advisories))
        .await?;
    let hosts: Vec<HostInput> = targets
        .into_iter()
        .map(|(id, name)| {
            let f = facts.get(&id);
            HostInput {
                id,
                name,
                online: f.is_none_or(|f| f.2),
                env: f.and_then(|f| f.0.clone()),
                tags: f.map(|f| f.1.clone()).unwrap_or_default(),
                in_inventory: f.is_some(),
                relevant: relevant.remove(&id).unwrap_or_default(),
            }
        })
        .collect();
    Ok(plan::plan(p, &hosts, &approvals, Utc::now()))
}

/// The state of one run while it executes.
struct Exec<'a> {
    client: &'a UyuniClient,
    store: &'a Store,
    policy: &'a LoadedPolicy,
    opts: &'a RunOptions,
    run_id: i64,
    status: R,
    cancel: bool,
    budget: BudgetState,
    ok: usize,
    failed: usize,
    pending: usize,
    waves: usize,
    wave: usize,
    /// Hosts that failed in the current batch after work started on them.
    batch_failed: Vec<i64>,
    /// Package names per advisory (for the pre-patch capture).
    pkg_names: BTreeMap<String, Vec<String>>,
    /// Queue items this run moved to `promoting` (advisory, queue id).
    promoted: Vec<(String, i64)>,
}

impl Exec<'_> {
    /// Move the run to `to`; when a cancel request won the race, note it and stay in
    /// `cancelling`.
    async fn advance(&mut self, to: R, u: RunUpdate) -> Result<(), RunError> {
        if self.status == to {
            let id = self.run_id;
            self.store
                .write(move |tx| runs::update_run(tx, id, &u))
                .await?;
            return Ok(());
        }
        if self.status == R::Cancelling {
            return Ok(());
        }
        let (id, from) = (self.run_id, self.status);
        match self
            .store
            .write(move |tx| runs::transition_run(tx, id, from, to, &u))
            .await
        {
            Ok(r) => {
                self.status = r.status;
                Ok(())
            }
            Err(e) if lost(&e) => {
                let r = self.store.read(move |c| runs::get_run_brief(c, id)).await?;
                if r.status == R::Cancelling {
                    self.status = R::Cancelling;
                    self.cancel = true;
                    Ok(())
                } else {
                    Err(e.into())
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn check_cancel(&mut self) -> Result<(), RunError> {
        let id = self.run_id;
        let r = self.store.read(move |c| runs::get_run_brief(c, id)).await?;
        if r.status == R::Cancelling {
            self.status = R::Cancelling;
            self.cancel = true;
        }
        Ok(())
    }

    fn progress(&self, phase: &str, running: usize) {
        if let Some(cb) = &self.opts.progress {
            let (w, r) = self.budget.left();
            cb(&Progress {
                run_id: self.run_id,
                phase: phase.to_string(),
                wave: self.wave,
                waves: self.waves,
                ok: self.ok,
                failed: self.failed,
                running,
                pending: self.pending,
                budget_left_wave: w,
                budget_left_run: r,
            });
        }
    }

    async fn hosts(&self, ids: Vec<i64>, from: H, to: H, u: HostUpdate) -> Result<usize, RunError> {
        let id = self.run_id;
        Ok(self
            .store
            .write(move |tx| runs::transition_hosts(tx, id, &ids, from, to, &u))
            .await?)
    }

    async fn fail_hosts(&mut self, ids: Vec<i64>, from: H, error: String) -> Result<(), RunError> {
        self.batch_failed.extend(ids.iter().copied());
        self.hosts(
            ids,
            from,
            H::Failed,
            HostUpdate {
                error: Some(error),
                ..HostUpdate::default()
            },
        )
        .await?;
        Ok(())
    }

    async fn counters(&self) -> Result<(), RunError> {
        let id = self.run_id;
        let u = RunUpdate {
            current_wave: Some(self.wave as i64),
            hosts_ok: Some(self.ok as i64),
            hosts_failed: Some(self.failed as i64),
            ..RunUpdate::default()
        };
        self.store
            .write(move |tx| runs::update_run(tx, id, &u))
            .await?;
        Ok(())
    }

    fn wait_opts(&self, window_end: Option<chrono::DateTime<Utc>>) -> WaitOptions {
        let deadline = window_end
            .and_then(|end| (end - Utc::now()).to_std().ok())
            .unwrap_or(self.opts.action_deadline)
            .max(Duration::from_secs(30));
        WaitOptions::for_client(self.client, deadline)
    }

    /// Snapshot each host of the batch (snapper through a UYUNI script); returns the hosts
    /// whose snapshot succeeded, now in `snapshotting`.
    async fn snapshot(&mut self, batch: &[&PlannedHost]) -> Result<Vec<i64>, RunError> {
        let sids: Vec<i64> = batch.iter().map(|h| h.system_id).collect();
        self.hosts(
            sids.clone(),
            H::Pending,
            H::Snapshotting,
            HostUpdate::default(),
        )
        .await?;
        let script = format!(
            "snapper -c root create --type single --print-number --cleanup-algorithm number \
             --description 'spm patch run {}'",
            self.run_id
        );
        let res = self
            .client
            .run_script(&sids, &script, Duration::from_secs(300))
            .await;
        let mut good = Vec::new();
        match res {
            Ok(run) => {
                for sid in sids {
                    match run.systems.get(&sid) {
                        Some(o) if o.succeeded() => {
                            let snap = o
                                .result
                                .as_ref()
                                .map(|r| r.output.trim().to_string())
                                .filter(|s| !s.is_empty());
                            let id = self.run_id;
                            self.store
                                .write(move |tx| {
                                    runs::set_host_fields(
                                        tx,
                                        id,
                                        &[sid],
                                        &HostUpdate {
                                            snapshot_id: snap,
                                            ..HostUpdate::default()
                                        },
                                    )
                                })
                                .await?;
                            good.push(sid);
                        }
                        other => {
                            let why = other
                                .and_then(|o| o.result.as_ref())
                                .map(|r| format!("exit {}: {}", r.return_code, r.output.trim()))
                                .unwrap_or_else(|| "no result".to_string());
                            self.fail_hosts(
                                vec![sid],
                                H::Snapshotting,
                                format!("pre-patch snapshot failed ({why})"),
                            )
                            .await?;
                            self.failed += 1;
                            self.budget.record_failures(1);
                        }
                    }
                }
            }
            Err(e) => {
                let n = sids.len();
                self.fail_hosts(
                    sids,
                    H::Snapshotting,
                    format!("pre-patch snapshot failed: {e}"),
                )
                .await?;
                self.failed += n;
                self.budget.record_failures(n);
            }
        }
        Ok(good)
    }

    /// EXECUTE through UYUNI: one `scheduleApplyErrata` per distinct errata set, waited
    /// for, then reboots where the policy and the errata ask for one. Returns the hosts
    /// applied and the number of apply actions.
    async fn apply_uyuni(
        &mut self,
        started: &[i64],
        by_id: &BTreeMap<i64, &PlannedHost>,
        window_end: Option<chrono::DateTime<Utc>>,
    ) -> Result<(Vec<i64>, usize), RunError> {
        // One scheduleApplyErrata per distinct errata set.
        let mut groups: BTreeMap<Vec<i64>, Vec<i64>> = BTreeMap::new();
        for sid in started {
            if let Some(h) = by_id.get(sid) {
                let mut set = h.errata_ids.clone();
                set.sort_unstable();
                groups.entry(set).or_default().push(*sid);
            }
        }
        let client = self.client;
        let scheduled = join_all(groups.iter().map(|(eids, sids)| async move {
            (
                sids.clone(),
                client.schedule_apply_errata(sids, eids, None).await,
            )
        }))
        .await;
        let mut actions = 0;
        let mut waits = Vec::new();
        for (sids, res) in scheduled {
            match res {
                Ok(aids) if !aids.is_empty() => {
                    actions += aids.len();
                    let (id, s2, a2) = (self.run_id, sids.clone(), aids.clone());
                    self.store
                        .write(move |tx| {
                            for a in &a2 {
                                runs::record_action(tx, *a, "apply_errata", id, &s2)?;
                            }
                            if a2.len() == 1 {
                                runs::set_host_fields(
                                    tx,
                                    id,
                                    &s2,
                                    &HostUpdate {
                                        action_id: Some(a2[0]),
                                        ..HostUpdate::default()
                                    },
                                )?;
                            }
                            Ok(())
                        })
                        .await?;
                    waits.push((sids, aids));
                }
                Ok(_) => {
                    let n = sids.len();
                    self.fail_hosts(sids, H::Running, "UYUNI scheduled no action (errata no longer relevant or already scheduled)".into())
                        .await?;
                    self.failed += n;
                    self.budget.record_failures(n);
                }
                Err(e) => {
                    let n = sids.len();
                    self.fail_hosts(
                        sids,
                        H::Running,
                        format!("scheduling the errata failed: {e}"),
                    )
                    .await?;
                    self.failed += n;
                    self.budget.record_failures(n);
                }
            }
        }
        let opts = self.wait_opts(window_end);
        let waited = join_all(waits.iter().map(|(sids, aids)| async move {
            let mut outcome: BTreeMap<i64, SystemOutcome> = BTreeMap::new();
            let mut err = None;
            for a in aids {
                let expected: &[i64] = if aids.len() == 1 { sids } else { &[] };
                match client.wait_action(*a, expected, opts).await {
                    Ok(rep) => {
                        for (sid, o) in rep.systems {
                            // A completed outcome in any of the actions wins.
                            let keep = outcome.get(&sid).is_some_and(SystemOutcome::is_completed);
                            if !keep {
                                outcome.insert(sid, o);
                            }
                        }
                    }
                    Err(e) => err = Some(e.to_string()),
                }
            }
            (sids.clone(), outcome, err)
        }))
        .await;
        let mut applied = Vec::new();
        for (sids, outcome, err) in waited {
            for sid in sids {
                match outcome.get(&sid) {
                    Some(SystemOutcome::Completed { .. }) => applied.push(sid),
                    other => {
                        let why = match (other, &err) {
                            (Some(SystemOutcome::Failed { message }), _) => format!(
                                "applying the errata failed: {}",
                                message.as_deref().unwrap_or("no message")
                            ),
                            (Some(SystemOutcome::Pending { .. }), _) => {
                                "the action did not finish before the deadline".to_string()
                            }
                            (_, Some(e)) => format!("waiting for the action failed: {e}"),
                            _ => "the system never reported the action".to_string(),
                        };
                        self.fail_hosts(vec![sid], H::Running, why).await?;
                        self.failed += 1;
                        self.budget.record_failures(1);
                    }
                }
            }
        }
        // Reboots where the policy and the errata ask for one.
        let reboot: Vec<i64> = applied
            .iter()
            .copied()
            .filter(|s| by_id.get(s).is_some_and(|h| h.reboot))
            .collect();
        if !reboot.is_empty() {
            self.progress("rebooting", applied.len());
            let results = join_all(reboot.iter().map(|sid| async move {
                let r = async {
                    let a = client.schedule_reboot(*sid, None).await?;
                    client.wait_action(a, &[*sid], opts).await
                }
                .await;
                (*sid, r)
            }))
            .await;
            for (sid, r) in results {
                let ok = matches!(&r, Ok(rep) if rep.systems.get(&sid).is_some_and(SystemOutcome::is_completed));
                if !ok {
                    applied.retain(|s| *s != sid);
                    let why = match r {
                        Err(e) => format!("reboot failed: {e}"),
                        Ok(_) => "reboot did not complete".to_string(),
                    };
                    self.fail_hosts(vec![sid], H::Running, why).await?;
                    self.failed += 1;
                    self.budget.record_failures(1);
                }
            }
        }
        Ok((applied, actions))
    }

    /// Apply, reboot and verify one batch. Returns the number of apply actions scheduled.
    async fn batch(
        &mut self,
        batch: &[&PlannedHost],
        window_end: Option<chrono::DateTime<Utc>>,
    ) -> Result<usize, RunError> {
        let by_id: BTreeMap<i64, &PlannedHost> = batch.iter().map(|h| (h.system_id, *h)).collect();
        let (started, from) = if self.policy.policy.pre_patch_snapshot {
            self.advance(R::Snapshotting, RunUpdate::default()).await?;
            (self.snapshot(batch).await?, H::Snapshotting)
        } else {
            (batch.iter().map(|h| h.system_id).collect(), H::Pending)
        };
        self.advance(R::Executing, RunUpdate::default()).await?;
        self.hosts(started.clone(), from, H::Running, HostUpdate::default())
            .await?;
        self.progress("executing", started.len());
        self.batch_failed.clear();
        let auto_rollback = self.policy.policy.rollback_on_failure == RollbackMode::Auto;
        let mut started = started;
        if auto_rollback && !started.is_empty() {
            started = self.capture(&started, &by_id).await?;
        }
        let (mut applied, actions) = if self.policy.policy.executor == Executor::Ansible {
            (self.apply_ansible(&started, &by_id, window_end).await?, 0)
        } else {
            self.apply_uyuni(&started, &by_id, window_end).await?
        };
        // VERIFY.
        self.advance(R::Verifying, RunUpdate::default()).await?;
        self.hosts(
            applied.clone(),
            H::Running,
            H::Verifying,
            HostUpdate::default(),
        )
        .await?;
        self.progress("verifying", applied.len());
        let mut still: BTreeMap<i64, Vec<String>> = BTreeMap::new();
        let verify = match (self.policy.policy.executor, &self.policy.policy.ansible) {
            (Executor::Uyuni, _) => AnsibleVerify::Uyuni,
            (Executor::Ansible, a) => a.as_ref().map(|a| a.verify).unwrap_or_default(),
        };
        if verify == AnsibleVerify::Scan && !applied.is_empty() {
            applied = self.verify_scan(applied, &by_id).await?;
        }
        if verify == AnsibleVerify::Uyuni && !applied.is_empty() {
            match self.client.relevant_errata_many(&applied).await {
                Ok(list) => {
                    for se in list {
                        still.insert(
                            se.system_id,
                            se.errata.into_iter().map(|e| e.advisory_name).collect(),
                        );
                    }
                }
                Err(e) => {
                    let n = applied.len();
                    self.fail_hosts(
                        std::mem::take(&mut applied),
                        H::Verifying,
                        format!("re-reading relevance failed: {e}"),
                    )
                    .await?;
                    self.failed += n;
                    self.budget.record_failures(n);
                }
            }
        }
        let mut ok_ids = Vec::new();
        for sid in applied {
            let Some(h) = by_id.get(&sid) else { continue };
            let remaining: Vec<String> = h
                .errata
                .iter()
                .filter(|a| still.get(&sid).is_some_and(|l| l.contains(a)))
                .cloned()
                .collect();
            let mut verdict = if remaining.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "still relevant after the apply: {}",
                    remaining.join(", ")
                ))
            };
            if verdict.is_ok() && self.policy.policy.hooks.contains("verify_host") {
                let ctx = serde_json::json!({
                    "run_id": self.run_id,
                    "wave": self.wave,
                    "host": { "id": sid, "name": h.name },
                    "errata": h.errata,
                    "still_relevant": remaining,
                });
                verdict =
                    match hooks::call_hook(self.policy, "verify_host", &ctx, HOOK_TIMEOUT).await {
                        Ok(v) => hooks::verdict(&v).map_err(|r| format!("verify_host: {r}")),
                        Err(e) => Err(format!("verify_host failed: {e}")),
                    };
            }
            match verdict {
                Ok(()) => ok_ids.push(sid),
                Err(why) => {
                    self.fail_hosts(vec![sid], H::Verifying, why).await?;
                    self.failed += 1;
                    self.budget.record_failures(1);
                }
            }
        }
        let n = ok_ids.len();
        if !ok_ids.is_empty() {
            let (store, os, pid) = (
                self.store.clone(),
                self.policy.policy.os_family().to_string(),
                self.policy.policy.id.clone(),
            );
            let patched: Vec<(i64, Vec<String>)> = ok_ids
                .iter()
                .filter_map(|s| by_id.get(s).map(|h| (*s, h.errata.clone())))
                .collect();
            let id = self.run_id;
            store
                .write(move |tx| {
                    runs::transition_hosts(
                        tx,
                        id,
                        &ok_ids,
                        H::Verifying,
                        H::Ok,
                        &HostUpdate::default(),
                    )?;
                    for (sid, errata) in &patched {
                        compliance::record_patched(tx, *sid, &pid, &os, errata)?;
                    }
                    Ok(())
                })
                .await?;
        }
        self.ok += n;
        if auto_rollback && !self.batch_failed.is_empty() {
            let names: Vec<String> = self
                .batch_failed
                .iter()
                .filter_map(|s| by_id.get(s).map(|h| h.name.clone()))
                .collect();
            self.progress("rolling back", names.len());
            let out = rollback::rollback(
                self.client,
                self.store,
                self.run_id,
                self.policy.policy.os_family(),
                &rollback::Selection::Hosts(names),
                &self.opts.actor,
                "automatic rollback of a failed host (policy rollback_on_failure = auto)",
            )
            .await?;
            for o in out.iter().filter(|o| o.status != H::RolledBack) {
                tracing::warn!(run = self.run_id, host = %o.name, error = ?o.error, "automatic rollback failed");
            }
        }
        self.counters().await?;
        self.progress("batch done", 0);
        Ok(actions)
    }

    /// Record pre-patch versions of the batch's errata packages; hosts whose versions
    /// cannot be recorded are failed before anything is applied to them.
    async fn capture(
        &mut self,
        started: &[i64],
        by_id: &BTreeMap<i64, &PlannedHost>,
    ) -> Result<Vec<i64>, RunError> {
        let mut names = BTreeSet::new();
        for sid in started {
            for adv in by_id
                .get(sid)
                .map(|h| h.errata.as_slice())
                .unwrap_or_default()
            {
                if !self.pkg_names.contains_key(adv) {
                    let pk = self.client.errata_packages(adv).await?;
                    self.pkg_names
                        .insert(adv.clone(), pk.into_iter().map(|p| p.name).collect());
                }
                names.extend(self.pkg_names.get(adv).cloned().unwrap_or_default());
            }
        }
        let names: Vec<String> = names.into_iter().collect();
        let got =
            rollback::capture(self.client, started, self.policy.policy.os_family(), &names).await;
        let mut keep = Vec::new();
        for sid in started {
            match got.get(sid) {
                Some(Ok(pkgs)) => {
                    let (id, s, p) = (self.run_id, *sid, pkgs.clone());
                    self.store
                        .write(move |tx| runs::set_pre_packages(tx, id, s, &p))
                        .await?;
                    keep.push(*sid);
                }
                other => {
                    let why = match other {
                        Some(Err(e)) => e.clone(),
                        _ => "recording pre-patch versions: no result".to_string(),
                    };
                    // Nothing was applied: failed, but nothing to roll back.
                    self.hosts(
                        vec![*sid],
                        H::Running,
                        H::Failed,
                        HostUpdate {
                            error: Some(format!("{why}; not patched")),
                            ..HostUpdate::default()
                        },
                    )
                    .await?;
                    self.failed += 1;
                    self.budget.record_failures(1);
                }
            }
        }
        Ok(keep)
    }
}

/// Execute `plan` (from [`build_plan`]) for `policy`: creates the run row and its hosts,
/// then carries the run to a terminal status. `Ok` for every finished run, including a
/// tripped budget or a cancel (see [`RunSummary::status`]).
pub async fn execute(
    client: &UyuniClient,
    store: &Store,
    policy: &LoadedPolicy,
    plan: Plan,
    opts: &RunOptions,
) -> Result<RunSummary, RunError> {
    let p = &policy.policy;
    if p.executor == Executor::Ansible {
        // Refused before the run row exists: nothing is changed.
        ansible_exec::preflight(policy, opts)?;
    }
    // PLAN → row, hosts, audit.
    let new = NewRun {
        policy_id: p.id.clone(),
        policy_hash: policy.sha256.clone(),
        trigger: opts.trigger.clone(),
        started_by: opts.actor.clone(),
        owner: opts.owner.clone(),
        lease: opts.lease,
    };
    let mut hosts: Vec<NewRunHost> = Vec::new();
    for w in &plan.waves {
        for h in &w.hosts {
            hosts.push(NewRunHost {
                system_id: h.system_id,
                system_name: h.name.clone(),
                wave: w.index as i64,
                errata: h.errata.clone(),
                status: H::Pending,
                error: None,
            });
        }
    }
    for x in &plan.excluded_hosts {
        hosts.push(NewRunHost {
            system_id: x.system_id,
            system_name: x.name.clone(),
            wave: 0,
            errata: Vec::new(),
            status: H::Skipped,
            error: Some(x.reason.clone()),
        });
    }
    let plan_json = serde_json::to_value(&plan).unwrap_or_default();
    let (actor, src) = (opts.actor.clone(), opts.source_addr.clone());
    let total = plan.hosts_total();
    let waves_n = plan.waves.len();
    let path = policy.path.clone();
    let run = store
        .write(move |tx| {
            let run = runs::insert_run(tx, &new)?;
            runs::update_run(
                tx,
                run.id,
                &RunUpdate {
                    plan: Some(plan_json),
                    hosts_total: Some(total as i64),
                    total_waves: Some(waves_n as i64),
                    phase_detail: Some("planned".into()),
                    ..RunUpdate::default()
                },
            )?;
            runs::insert_hosts(tx, run.id, &hosts)?;
            audit::append(
                tx,
                &AuditEntry {
                    actor,
                    source_addr: src,
                    action: "run.start".into(),
                    object_type: "patch_run".into(),
                    object_id: Some(run.id.to_string()),
                    reason: None,
                    details: serde_json::json!({
                        "policy": new.policy_id, "policy_hash": new.policy_hash,
                        "path": path, "trigger": new.trigger,
                        "hosts": total, "waves": waves_n,
                    }),
                },
            )?;
            Ok(run)
        })
        .await?;
    let mut ex = Exec {
        client,
        store,
        policy,
        opts,
        run_id: run.id,
        status: R::Planning,
        cancel: false,
        budget: BudgetState::new(&p.error_budget, total),
        ok: 0,
        failed: 0,
        pending: total,
        waves: waves_n,
        wave: 0,
        batch_failed: Vec::new(),
        pkg_names: BTreeMap::new(),
        promoted: Vec::new(),
    };
    // Keep the lease while the run is alive.
    let hb = {
        let (store, id, owner, lease) = (store.clone(), run.id, opts.owner.clone(), opts.lease);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(lease / 3).await;
                let owner = owner.clone();
                if !matches!(
                    store
                        .write(move |tx| runs::heartbeat(tx, id, &owner, lease))
                        .await,
                    Ok(true)
                ) {
                    break;
                }
            }
        })
    };
    let result = drive(&mut ex, &plan).await;
    hb.abort();
    match result {
        Ok(s) => Ok(s),
        Err(e) => {
            // Queue items this run promoted leave `promoting` (prod_applied where a host
            // was patched, else back to approved).
            if let Err(re) = report_queue(store, ex.run_id, std::mem::take(&mut ex.promoted)).await
            {
                tracing::warn!(run = ex.run_id, error = %re, "reconciling queue items after a failed run");
            }
            // Leave the run in a visible terminal state with the error.
            let (id, from, msg) = (ex.run_id, ex.status, e.to_string());
            let to = if from == R::Cancelling {
                R::Cancelled
            } else {
                R::Failed
            };
            let _ = store
                .write(move |tx| {
                    runs::transition_run(
                        tx,
                        id,
                        from,
                        to,
                        &RunUpdate {
                            error: Some(msg),
                            ..RunUpdate::default()
                        },
                    )?;
                    runs::close_pending(
                        tx,
                        id,
                        H::Cancelled,
                        "run failed before this host started",
                    )?;
                    Ok(())
                })
                .await;
            Err(e)
        }
    }
}

async fn drive(ex: &mut Exec<'_>, plan: &Plan) -> Result<RunSummary, RunError> {
    let p = &ex.policy.policy;
    let store = ex.store;
    let run_id = ex.run_id;
    let mut apply_actions_per_wave = Vec::new();
    let mut stop_reason: Option<String> = None;
    let mut tripped = false;
    if plan.hosts_total() == 0 {
        ex.advance(R::Reporting, RunUpdate::default()).await?;
    } else {
        // VALIDATE: every erratum still has its approval (its change record).
        ex.advance(
            R::Validating,
            RunUpdate {
                phase_detail: Some("validating approvals".into()),
                ..RunUpdate::default()
            },
        )
        .await?;
        let advisories: Vec<String> = plan.errata.iter().map(|e| e.advisory.clone()).collect();
        let os = plan.os.clone();
        let now_approved = store
            .read(move |c| runs::errata_approvals(c, &os, &advisories))
            .await?;
        for e in &plan.errata {
            if !now_approved
                .get(&e.advisory)
                .is_some_and(|a| a.is_approved())
            {
                return Err(RunError::Invalid(format!(
                    "{} lost its approval between PLAN and VALIDATE; run again to re-plan",
                    e.advisory
                )));
            }
        }
        // Approved queue items enter production.
        let to_promote: Vec<(String, i64)> = now_approved
            .values()
            .filter(|a| a.queue_status == Some(QueueStatus::Approved))
            .filter_map(|a| a.queue_id.map(|q| (a.advisory.clone(), q)))
            .collect();
        let tp = to_promote.clone();
        ex.promoted = store
            .write(move |tx| {
                let mut done = Vec::new();
                for (adv, q) in tp {
                    match queue::transition(
                        tx,
                        q,
                        QueueStatus::Approved,
                        QueueStatus::Promoting,
                        &TransitionExtra::default(),
                    ) {
                        Ok(_) => done.push((adv, q)),
                        Err(e) if lost(&e) => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(done)
            })
            .await?;
        let window_end = plan
            .window_closes_at
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc));
        let estimate = p
            .window()
            .map(|(_, e)| e)
            .unwrap_or(Duration::from_secs(900));
        let max_parallel = (p.max_parallel as usize).max(1);
        'waves: for w in &plan.waves {
            ex.wave = w.index;
            ex.budget.start_wave(w.hosts.len());
            ex.check_cancel().await?;
            if ex.cancel {
                break;
            }
            if p.hooks.contains("before_wave") {
                let ctx = serde_json::json!({
                    "run_id": run_id, "wave": w.index, "canary": w.canary,
                    "hosts": w.hosts.iter().map(|h| serde_json::json!({"id": h.system_id, "name": h.name, "errata": h.errata})).collect::<Vec<_>>(),
                    "ok": ex.ok, "failed": ex.failed,
                });
                let v = hooks::call_hook(ex.policy, "before_wave", &ctx, HOOK_TIMEOUT).await;
                if let Err(why) = v
                    .map_err(|e| e.to_string())
                    .and_then(|v| hooks::verdict(&v))
                {
                    return Err(RunError::Invalid(format!(
                        "before_wave hook stopped wave {}: {why}",
                        w.index
                    )));
                }
            }
            let mut actions = 0;
            for chunk in w.hosts.chunks(max_parallel) {
                ex.check_cancel().await?;
                if ex.cancel {
                    break 'waves;
                }
                if let Some(t) = ex.budget.tripped() {
                    stop_reason = Some(t.to_string());
                    tripped = true;
                    break 'waves;
                }
                if let Some(end) = window_end {
                    let est =
                        chrono::Duration::from_std(estimate).unwrap_or(chrono::Duration::zero());
                    if Utc::now() + est > end {
                        stop_reason = Some(format!(
                            "maintenance window closes at {}; hosts that cannot finish before it were not started",
                            crate::store::format_ts(end)
                        ));
                        break 'waves;
                    }
                }
                let u = RunUpdate {
                    current_wave: Some(w.index as i64),
                    phase_detail: Some(format!("wave {} of {}", w.index, plan.waves.len())),
                    ..RunUpdate::default()
                };
                store
                    .write(move |tx| runs::update_run(tx, run_id, &u))
                    .await?;
                ex.pending -= chunk.len();
                let batch: Vec<&PlannedHost> = chunk.iter().collect();
                actions += ex.batch(&batch, window_end).await?;
                if ex.cancel {
                    break 'waves;
                }
            }
            apply_actions_per_wave.push(actions);
            if let Some(t) = ex.budget.tripped() {
                stop_reason = Some(t.to_string());
                tripped = true;
                break;
            }
        }
    }
    // Hosts never started.
    let left_status = if ex.cancel { H::Cancelled } else { H::Skipped };
    let left_reason = if ex.cancel {
        "run cancelled before this host started".to_string()
    } else {
        format!(
            "not started: {}",
            stop_reason.clone().unwrap_or_else(|| "run stopped".into())
        )
    };
    store
        .write(move |tx| runs::close_pending(tx, run_id, left_status, &left_reason))
        .await?;
    // REPORT: queue items, counters.
    let hosts = report_queue(store, run_id, std::mem::take(&mut ex.promoted)).await?;
    let count = |s: H| hosts.iter().filter(|h| h.status == s).count();
    let (skipped, cancelled) = (count(H::Skipped), count(H::Cancelled));
    let final_status = if ex.cancel {
        R::Cancelled
    } else if tripped {
        R::BudgetTripped
    } else {
        R::Completed
    };
    if final_status == R::Completed {
        if ex.status == R::Validating {
            // Stopped (window) before any host started: walk the machine's edges.
            ex.advance(R::Executing, RunUpdate::default()).await?;
            ex.advance(R::Verifying, RunUpdate::default()).await?;
        }
        ex.advance(
            R::Reporting,
            RunUpdate {
                phase_detail: Some("reporting".into()),
                ..RunUpdate::default()
            },
        )
        .await?;
    }
    if ex.cancel {
        ex.status = R::Cancelling;
    }
    // ALERT when anything failed or the run stopped early.
    let (ok, failed) = (ex.ok, ex.failed);
    let policy_id = p.id.clone();
    let reason = stop_reason.clone();
    let (from, actor, src) = (
        ex.status,
        ex.opts.actor.clone(),
        ex.opts.source_addr.clone(),
    );
    let rec = store
        .write(move |tx| {
            if failed > 0 || tripped {
                let (event, sev) = if tripped { ("budget_tripped", "critical") } else { ("run_failed", "warning") };
                runs::insert_notification(
                    tx,
                    event,
                    sev,
                    &format!("patch run {run_id} ({policy_id}): {failed} host(s) failed"),
                    &format!(
                        "Patch run {run_id} of policy {policy_id} ended {}: {ok} ok, {failed} failed, {skipped} skipped, {cancelled} cancelled.{}",
                        final_status,
                        reason.as_deref().map(|r| format!(" {r}.")).unwrap_or_default()
                    ),
                    Some(run_id),
                )?;
            }
            audit::append(
                tx,
                &AuditEntry {
                    actor,
                    source_addr: src,
                    action: "run.finish".into(),
                    object_type: "patch_run".into(),
                    object_id: Some(run_id.to_string()),
                    reason: reason.clone(),
                    details: serde_json::json!({"status": final_status, "ok": ok, "failed": failed, "skipped": skipped, "cancelled": cancelled}),
                },
            )?;
            runs::transition_run(
                tx,
                run_id,
                from,
                final_status,
                &RunUpdate {
                    hosts_ok: Some(ok as i64),
                    hosts_failed: Some(failed as i64),
                    error: reason,
                    phase_detail: Some(final_status.to_string()),
                    ..RunUpdate::default()
                },
            )
        })
        .await;
    let rec = match rec {
        Ok(r) => r,
        Err(e) if lost(&e) => {
            // A cancel arrived during REPORT: finish as cancelled.
            ex.check_cancel().await?;
            let (ok, failed) = (ex.ok as i64, ex.failed as i64);
            store
                .write(move |tx| {
                    runs::transition_run(
                        tx,
                        run_id,
                        R::Cancelling,
                        R::Cancelled,
                        &RunUpdate {
                            hosts_ok: Some(ok),
                            hosts_failed: Some(failed),
                            ..RunUpdate::default()
                        },
                    )
                })
                .await?
        }
        Err(e) => return Err(e.into()),
    };
    ex.progress(rec.status.text(), 0);
    if p.hooks.contains("after_run") {
        let ctx = serde_json::json!({"run_id": run_id, "status": rec.status, "ok": ex.ok, "failed": ex.failed, "reason": stop_reason});
        if let Err(e) = hooks::call_hook(ex.policy, "after_run", &ctx, HOOK_TIMEOUT).await {
            tracing::warn!(run_id, error = %e, "after_run hook failed");
        }
    }
    Ok(RunSummary {
        run_id,
        status: rec.status,
        ok: ex.ok,
        failed: ex.failed,
        skipped,
        cancelled,
        reason: stop_reason,
        apply_actions_per_wave,
    })
}

/// Move the queue items a run promoted out of `promoting`: `prod_applied` when the erratum
/// was applied on at least one host, then `completed` when every planned host is ok; back
/// to `approved` when no host got it. An item another writer moved meanwhile is left alone.
/// Returns the run's host rows.
async fn report_queue(
    store: &Store,
    run_id: i64,
    promoted: Vec<(String, i64)>,
) -> Result<Vec<runs::RunHostRecord>, RunError> {
    let hosts = store.read(move |c| runs::run_hosts(c, run_id)).await?;
    let mut per_adv: BTreeMap<String, (usize, usize, usize)> = BTreeMap::new(); // ok, failed, planned
    for h in hosts.iter().filter(|h| h.wave > 0) {
        for a in &h.errata {
            let e = per_adv.entry(a.clone()).or_default();
            e.2 += 1;
            match h.status {
                H::Ok => e.0 += 1,
                H::Failed | H::RolledBack | H::RollbackFailed => e.1 += 1,
                _ => {}
            }
        }
    }
    store
        .write(move |tx| {
            for (adv, q) in &promoted {
                let (ok, failed, planned) = per_adv.get(adv).copied().unwrap_or_default();
                let steps: &[(QueueStatus, QueueStatus)] = if ok == 0 {
                    &[(QueueStatus::Promoting, QueueStatus::Approved)]
                } else if failed == 0 && ok == planned {
                    &[
                        (QueueStatus::Promoting, QueueStatus::ProdApplied),
                        (QueueStatus::ProdApplied, QueueStatus::Completed),
                    ]
                } else {
                    &[(QueueStatus::Promoting, QueueStatus::ProdApplied)]
                };
                for (from, to) in steps {
                    match queue::transition(tx, *q, *from, *to, &TransitionExtra::default()) {
                        Ok(_) => {}
                        Err(e) if lost(&e) => {
                            tracing::warn!(queue_id = q, error = %e, "queue item moved by another writer; left as is");
                            break;
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
            Ok(())
        })
        .await?;
    Ok(hosts)
}
