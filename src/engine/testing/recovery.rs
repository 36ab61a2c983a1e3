//! Crash recovery at start and `spm test abort`.
//!
//! A test left `running` by a process that stopped (its item's lease expired) is
//! reconciled: its outstanding UYUNI actions are cancelled (or marked `unknown` when UYUNI
//! refuses because they were picked up), the patch is rolled back from the phase state
//! saved after every phase when the patch had started, the test and its running phases and
//! rollbacks are closed as `interrupted` with a reason, and the item goes back to the
//! queue, or to `failed` when the rollback could not be verified. No row stays `running`.

use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use super::TestEngine;
use super::context;
use super::run::RunScope;
use super::systems::TestSystem;
use crate::engine::state::QueueStatus;
use crate::store::queue::{self, TransitionExtra};
use crate::store::{StoreError, format_ts, test_runs};

/// What recovery did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RecoveryReport {
    /// Tests closed as interrupted.
    pub interrupted_tests: Vec<i64>,
    /// Tests whose patch was rolled back (verified).
    pub rolled_back: Vec<i64>,
    /// UYUNI actions cancelled or inspected.
    pub actions: Vec<i64>,
    /// Items returned to the queue.
    pub requeued: Vec<i64>,
    /// Items failed because the rollback could not be verified.
    pub failed: Vec<i64>,
}

/// What `spm test abort` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum AbortOutcome {
    /// This process runs the test and cancelled it.
    Cancelled,
    /// Another live engine runs it; it polls the request and stops.
    Requested,
    /// Nobody runs it any more; recovered here.
    Recovered(RecoveryReport),
}

impl TestEngine {
    /// Reconcile what a stopped process left behind (call once at start, before workers).
    pub async fn recover(self: &Arc<Self>) -> Result<RecoveryReport, StoreError> {
        let mut report = RecoveryReport::default();
        let running = self.store.read(test_runs::running).await?;
        for t in running {
            if self.is_live_elsewhere(t.queue_id).await? {
                continue;
            }
            self.recover_test(t.id, "the engine running it stopped", &mut report)
                .await?;
        }
        // Actions of no running test (scheduled just before a crash).
        let orphans = self
            .store
            .read(|c| test_runs::pending_actions(c, None))
            .await?;
        for a in orphans {
            self.cancel_action(a.action_id).await;
            report.actions.push(a.action_id);
        }
        // Items claimed by a stopped engine before any test row was written.
        let now = chrono::Utc::now();
        let expired = self
            .store
            .read(move |c| queue::expired_leases(c, now))
            .await?;
        for item in expired {
            let id = item.id;
            let from = item.status;
            let r = self
                .store
                .write(move |tx| {
                    queue::transition(
                        tx,
                        id,
                        from,
                        QueueStatus::Queued,
                        &TransitionExtra {
                            notes: Some(
                                "returned to the queue: the engine holding it stopped".into(),
                            ),
                            ..TransitionExtra::default()
                        },
                    )
                })
                .await;
            if r.is_ok() {
                report.requeued.push(id);
            }
        }
        Ok(report)
    }

    /// Abort test `test_id`: cancel it here, ask the engine running it, or recover it.
    pub async fn abort(
        self: &Arc<Self>,
        test_id: i64,
        reason: &str,
    ) -> Result<AbortOutcome, StoreError> {
        let why = reason.to_string();
        let t = self
            .store
            .write(move |tx| test_runs::request_abort(tx, test_id, &why))
            .await?;
        if self.cancel_local(test_id) {
            return Ok(AbortOutcome::Cancelled);
        }
        if self.is_live_elsewhere(t.queue_id).await? {
            return Ok(AbortOutcome::Requested);
        }
        let mut report = RecoveryReport::default();
        self.recover_test(
            test_id,
            &format!("aborted by an operator: {reason}"),
            &mut report,
        )
        .await?;
        Ok(AbortOutcome::Recovered(report))
    }

    /// True when another engine holds a live lease on the item.
    async fn is_live_elsewhere(&self, queue_id: i64) -> Result<bool, StoreError> {
        let item = self.store.read(move |c| queue::get(c, queue_id)).await?;
        let now = format_ts(chrono::Utc::now());
        Ok(item.status.is_in_test()
            && item.lease_owner.as_deref().is_some_and(|o| o != self.owner)
            && item
                .lease_until
                .as_deref()
                .is_some_and(|u| u > now.as_str()))
    }

    async fn cancel_action(&self, action_id: i64) {
        let status = match self.uyuni.cancel_actions(&[action_id]).await {
            Ok(()) => "cancelled",
            Err(e) => {
                tracing::warn!(action_id, error = %e, "recovery: cannot cancel an action (picked up?)");
                "unknown"
            }
        };
        let _ = self
            .store
            .write(move |tx| test_runs::finish_action(tx, action_id, status))
            .await;
    }

    async fn recover_test(
        self: &Arc<Self>,
        test_id: i64,
        reason: &str,
        report: &mut RecoveryReport,
    ) -> Result<(), StoreError> {
        let t = self.store.read(move |c| test_runs::get(c, test_id)).await?;
        let qid = t.queue_id;
        let item = self.store.read(move |c| queue::get(c, qid)).await?;
        let pending = self
            .store
            .read(move |c| test_runs::pending_actions(c, Some(test_id)))
            .await?;
        for a in &pending {
            self.cancel_action(a.action_id).await;
            report.actions.push(a.action_id);
        }
        let mut state = t.state.clone();
        let patch_started = state.get("patch").is_some();
        let mut verified = true;
        if patch_started && let Some(system_id) = t.system_id {
            let system = TestSystem {
                id: system_id,
                name: t.system_name.clone().unwrap_or_default(),
                hostname: None,
                ip: None,
                os: item.os.clone(),
            };
            match context::load_advisory(&self.store, &t.advisory, &item.os).await {
                Ok(advisory) => {
                    let scope = RunScope {
                        test_id,
                        queue_id: item.id,
                        system: &system,
                        advisory: &advisory,
                        config: self.ctx_config(&system),
                        set: self.host.current(),
                    };
                    let seq = 100;
                    let rb = self
                        .rollback(&scope, &mut state, &format!("recovery: {reason}"), seq)
                        .await;
                    verified = rb.verified;
                    if verified {
                        report.rolled_back.push(test_id);
                    }
                }
                Err(e) => {
                    tracing::error!(test_id, error = %e, "recovery: cannot load the advisory");
                    verified = false;
                }
            }
        }
        let why = format!(
            "interrupted: {reason}{}",
            match (patch_started, verified) {
                (false, _) => "; the patch had not started",
                (true, true) => "; the patch was rolled back and verified",
                (true, false) => "; the rollback could NOT be verified",
            }
        );
        let st: Value = state;
        let w = why.clone();
        self.store
            .write(move |tx| {
                test_runs::set_state(tx, test_id, &st)?;
                test_runs::interrupt(tx, test_id, &w)
            })
            .await?;
        report.interrupted_tests.push(test_id);
        if item.status.is_in_test() {
            let (to, note) = if verified {
                (QueueStatus::Queued, format!("returned to the queue: {why}"))
            } else {
                (QueueStatus::Failed, format!("failed: {why}"))
            };
            let (id, from, adv, os) =
                (item.id, item.status, item.advisory.clone(), item.os.clone());
            let system_name = t.system_name.clone().unwrap_or_default();
            let w = why.clone();
            self.store
                .write(move |tx| {
                    queue::transition(
                        tx,
                        id,
                        from,
                        to,
                        &TransitionExtra {
                            last_test_id: Some(test_id),
                            notes: Some(note),
                            ..TransitionExtra::default()
                        },
                    )?;
                    if to == QueueStatus::Failed {
                        test_runs::notify(
                            tx,
                            &test_runs::NewNotification {
                                event: "test_failed".into(),
                                severity: "critical".into(),
                                subject: format!(
                                    "{adv} ({os}): interrupted test, rollback not verified"
                                ),
                                body: w.clone(),
                                advisory: Some(adv.clone()),
                                queue_id: Some(id),
                                test_id: Some(test_id),
                                data: serde_json::json!({
                                    "system": system_name,
                                    "phase": "recovery",
                                    "reason": w,
                                    "os": os,
                                }),
                            },
                        )?;
                    }
                    Ok(())
                })
                .await?;
            if verified {
                report.requeued.push(item.id);
            } else {
                report.failed.push(item.id);
            }
        }
        Ok(())
    }
}
