//! Claiming queue items and deciding what happens to them.
//!
//! A claim is a conditional update with a lease (`lease_owner`, `lease_until`) renewed by
//! a heartbeat task while the item is tested, so two workers or two processes never test
//! the same item. One test at a time per test system (a lock per system here, the unique
//! index `uq_tests_running_system` across processes); different systems in parallel.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::OwnedMutexGuard;
use tokio_util::sync::CancellationToken;

use super::TestEngine;
use super::classify::{self, AfterFailure, FailureClass, RetryPolicy, RetryRule};
use super::context;
use super::run::TestResult;
use super::systems::{self, TestSystem};
use crate::config::RetryConfig;
use crate::engine::state::{QueueStatus, Status, TestStatus};
use crate::store::queue::{self, QueueItem, TransitionExtra};
use crate::store::{StoreError, format_ts, test_runs};

/// What happened to a queue item.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ItemOutcome {
    /// Every test passed; waiting for an operator.
    PendingApproval {
        /// Tests run.
        tests: Vec<i64>,
    },
    /// Failed; retried after a delay.
    RetryPending {
        /// Tests run.
        tests: Vec<i64>,
        /// Failure class.
        class: String,
        /// Why.
        reason: String,
        /// Retry not before.
        retry_after: String,
    },
    /// Failed for good (or aborted).
    Failed {
        /// Tests run.
        tests: Vec<i64>,
        /// Failure class.
        class: String,
        /// Why.
        reason: String,
        /// The rollback was not verified: the test system needs an operator.
        rollback_verified: bool,
    },
    /// No test system serves the item's OS.
    WaitingSystem {
        /// Why.
        reason: String,
    },
}

impl ItemOutcome {
    /// Short name (`pending_approval`, `retry_pending`, `failed`, `waiting_system`).
    pub fn name(&self) -> &'static str {
        match self {
            ItemOutcome::PendingApproval { .. } => "pending_approval",
            ItemOutcome::RetryPending { .. } => "retry_pending",
            ItemOutcome::Failed { .. } => "failed",
            ItemOutcome::WaitingSystem { .. } => "waiting_system",
        }
    }
}

/// The retry policy of the configuration.
pub fn retry_policy(c: &RetryConfig) -> RetryPolicy {
    let r = |x: &crate::config::RetryRule| RetryRule {
        max_retries: x.max_retries,
        delay_s: x.delay_secs,
    };
    RetryPolicy {
        infrastructure: r(&c.infrastructure),
        transient: r(&c.transient),
        patch: r(&c.patch),
        regression: r(&c.regression),
    }
}

fn lease_until(lease: Duration) -> String {
    format_ts(
        chrono::Utc::now()
            + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::minutes(5)),
    )
}

impl TestEngine {
    fn lease(&self) -> Duration {
        Duration::from_secs(self.config.lease_secs.max(3))
    }

    /// Claim queue item `id` and test it now (`spm test run <id>`).
    pub async fn run_queue_id(
        self: &Arc<Self>,
        id: i64,
        started_by: &str,
    ) -> Result<ItemOutcome, StoreError> {
        let owner = self.owner.clone();
        let until = lease_until(self.lease());
        let item = self
            .store
            .write(move |tx| test_runs::claim_item(tx, id, &owner, &until))
            .await?;
        self.test_item(item, started_by).await
    }

    /// Claim the next item in queue order and test it (`spm test next`); `None` when the
    /// queue has nothing to test.
    pub async fn next(
        self: &Arc<Self>,
        started_by: &str,
    ) -> Result<Option<(QueueItem, ItemOutcome)>, StoreError> {
        let owner = self.owner.clone();
        let until = lease_until(self.lease());
        let recheck = format_ts(
            chrono::Utc::now()
                - chrono::Duration::milliseconds(
                    i64::try_from(self.config.poll_interval_ms.max(1000) * 15).unwrap_or(30_000),
                ),
        );
        let item = self
            .store
            .write(move |tx| test_runs::claim_next(tx, &owner, &until, &recheck))
            .await?;
        let Some(item) = item else {
            return Ok(None);
        };
        let out = self.test_item(item.clone(), started_by).await?;
        Ok(Some((item, out)))
    }

    /// Test the queue with `workers` tasks until [`TestEngine::shutdown`].
    pub async fn run_workers(self: &Arc<Self>, workers: usize) {
        let mut tasks = Vec::new();
        for _ in 0..workers.max(1) {
            let me = self.clone();
            tasks.push(tokio::spawn(async move {
                while !me.shutdown.is_cancelled() {
                    match me.next("engine").await {
                        Ok(Some(_)) => {}
                        Ok(None) => {
                            let wait = Duration::from_millis(me.config.poll_interval_ms.max(10));
                            tokio::select! {
                                _ = tokio::time::sleep(wait) => {}
                                _ = me.shutdown.cancelled() => {}
                            }
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "test worker");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    }

    /// Test a claimed item (status `testing`, lease held by this engine) and move it on.
    pub async fn test_item(
        self: &Arc<Self>,
        item: QueueItem,
        started_by: &str,
    ) -> Result<ItemOutcome, StoreError> {
        let hb_stop = CancellationToken::new();
        // Stops the heartbeat even when this future is dropped (the process stops
        // caring about the item; its lease must then expire).
        let _stop_on_drop = hb_stop.clone().drop_guard();
        let hb = tokio::spawn(heartbeat(
            self.clone(),
            item.id,
            self.lease(),
            hb_stop.clone(),
        ));
        let r = self.test_claimed(&item, started_by).await;
        hb_stop.cancel();
        let _ = hb.await;
        if r.is_err() {
            // Never leave a claimed item behind: back in line, visibly.
            let id = item.id;
            let _ = self
                .store
                .write(move |tx| {
                    queue::transition(
                        tx,
                        id,
                        QueueStatus::Testing,
                        QueueStatus::Queued,
                        &TransitionExtra {
                            notes: Some("returned to the queue after an engine error".into()),
                            ..TransitionExtra::default()
                        },
                    )
                })
                .await;
        }
        r
    }

    async fn test_claimed(
        self: &Arc<Self>,
        item: &QueueItem,
        started_by: &str,
    ) -> Result<ItemOutcome, StoreError> {
        let found = systems::for_os(
            &self.uyuni,
            &self.store,
            &self.config.system_group_prefix,
            &self.config.systems,
            &item.os,
        )
        .await;
        let systems = match found {
            Ok(s) => s,
            Err(e) => {
                let reason = format!("cannot list the test systems in UYUNI: {e}");
                return self
                    .decide_failure(
                        item,
                        Vec::new(),
                        FailureClass::Infrastructure,
                        &reason,
                        true,
                        serde_json::Value::Null,
                    )
                    .await;
            }
        };
        if systems.is_empty() {
            let reason = format!(
                "no test system for {}: no member of a UYUNI group {}{}… and none listed in test.systems",
                item.os, self.config.system_group_prefix, item.os
            );
            let (id, r) = (item.id, reason.clone());
            self.store
                .write(move |tx| {
                    queue::transition(
                        tx,
                        id,
                        QueueStatus::Testing,
                        QueueStatus::WaitingSystem,
                        &TransitionExtra {
                            notes: Some(r),
                            ..TransitionExtra::default()
                        },
                    )
                })
                .await?;
            return Ok(ItemOutcome::WaitingSystem { reason });
        }
        let advisory = context::load_advisory(&self.store, &item.advisory, &item.os).await?;
        let targets: Vec<(TestSystem, Option<OwnedMutexGuard<()>>)> = if item.require_all_systems {
            systems.into_iter().map(|s| (s, None)).collect()
        } else {
            let (s, g) = self.pick_free(&systems).await;
            vec![(s, Some(g))]
        };
        let mut results: Vec<TestResult> = Vec::new();
        for (system, held) in targets {
            let _guard = match held {
                Some(g) => g,
                None => self.system_lock(system.id).lock_owned().await,
            };
            let system = &system;
            let r = self
                .run_test(item.id, system, &advisory, started_by)
                .await?;
            let passed = r.status == TestStatus::Passed;
            results.push(r);
            if !passed {
                break;
            }
        }
        let tests: Vec<i64> = results.iter().map(|r| r.test_id).collect();
        match results.iter().find(|r| r.status != TestStatus::Passed) {
            None => {
                let systems: Vec<String> = results.iter().map(|r| r.system.clone()).collect();
                self.decide_pass(item, tests, systems, &advisory.synopsis)
                    .await
            }
            Some(bad) => {
                let class = bad.class.unwrap_or(FailureClass::Infrastructure);
                let reason = format!(
                    "{} failed: {}",
                    bad.phase.as_deref().unwrap_or("test"),
                    bad.reason.as_deref().unwrap_or("no reason")
                );
                let details = serde_json::json!({
                    "system": bad.system,
                    "phase": bad.phase,
                    "reason": bad.reason,
                    "class": class.as_str(),
                    "os": item.os,
                    "synopsis": advisory.synopsis,
                });
                self.decide_failure(item, tests, class, &reason, bad.rollback_verified, details)
                    .await
            }
        }
    }

    /// The first system whose lock is free, locked; else wait for any of them.
    async fn pick_free(&self, systems: &[TestSystem]) -> (TestSystem, OwnedMutexGuard<()>) {
        loop {
            for s in systems {
                if let Ok(g) = self.system_lock(s.id).try_lock_owned() {
                    return (s.clone(), g);
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn decide_pass(
        &self,
        item: &QueueItem,
        tests: Vec<i64>,
        systems: Vec<String>,
        synopsis: &str,
    ) -> Result<ItemOutcome, StoreError> {
        let synopsis = synopsis.to_string();
        let (id, adv, os) = (item.id, item.advisory.clone(), item.os.clone());
        let last = tests.last().copied();
        let n = tests.len();
        self.store
            .write(move |tx| {
                queue::transition(
                    tx,
                    id,
                    QueueStatus::Testing,
                    QueueStatus::PendingApproval,
                    &TransitionExtra {
                        last_test_id: last,
                        ..TransitionExtra::default()
                    },
                )?;
                test_runs::record_history(tx, &adv, &os, "passed", None)?;
                test_runs::notify(
                    tx,
                    &test_runs::NewNotification {
                        event: "pending_approval".into(),
                        severity: "info".into(),
                        subject: format!("{adv} ({os}) passed testing and awaits approval"),
                        body: format!(
                            "{adv} passed every phase on {n} test system(s); tests {}.",
                            last.map(|t| t.to_string()).unwrap_or_default()
                        ),
                        advisory: Some(adv.clone()),
                        queue_id: Some(id),
                        test_id: last,
                        data: serde_json::json!({
                            "os": os,
                            "synopsis": synopsis,
                            "systems": systems,
                        }),
                    },
                )?;
                Ok(())
            })
            .await?;
        Ok(ItemOutcome::PendingApproval { tests })
    }

    async fn decide_failure(
        &self,
        item: &QueueItem,
        tests: Vec<i64>,
        class: FailureClass,
        reason: &str,
        rollback_verified: bool,
        details: serde_json::Value,
    ) -> Result<ItemOutcome, StoreError> {
        let policy = retry_policy(&self.config.retry);
        let retries = u32::try_from(item.retry_count).unwrap_or(u32::MAX);
        let decision = classify::after_failure(&policy, class, retries, rollback_verified);
        let (id, adv, os) = (item.id, item.advisory.clone(), item.os.clone());
        let last = tests.last().copied();
        let reason_s = reason.to_string();
        let (to, retry_after) = match decision {
            AfterFailure::Retry(d) => (
                QueueStatus::RetryPending,
                Some(
                    chrono::Utc::now()
                        + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::zero()),
                ),
            ),
            AfterFailure::Fail => (QueueStatus::Failed, None),
        };
        let ran_tests = !tests.is_empty();
        self.store
            .write(move |tx| {
                queue::transition(
                    tx,
                    id,
                    QueueStatus::Testing,
                    to,
                    &TransitionExtra {
                        last_test_id: last,
                        retry_after,
                        notes: Some(format!("{}: {reason_s}", class.as_str())),
                        ..TransitionExtra::default()
                    },
                )?;
                if ran_tests {
                    test_runs::record_history(tx, &adv, &os, "failed", Some(&reason_s))?;
                }
                test_runs::notify(
                    tx,
                    &test_runs::NewNotification {
                        event: "test_failed".into(),
                        severity: if rollback_verified {
                            "warning"
                        } else {
                            "critical"
                        }
                        .into(),
                        subject: format!("{adv} ({os}) failed testing ({})", class.as_str()),
                        body: format!(
                            "{reason_s}\nNext: {}.{}",
                            to.as_str(),
                            if rollback_verified {
                                ""
                            } else {
                                " The rollback was NOT verified: check the test system."
                            }
                        ),
                        advisory: Some(adv.clone()),
                        queue_id: Some(id),
                        test_id: last,
                        data: details,
                    },
                )?;
                Ok(())
            })
            .await?;
        Ok(match retry_after {
            Some(t) => ItemOutcome::RetryPending {
                tests,
                class: class.as_str().into(),
                reason: reason.into(),
                retry_after: format_ts(t),
            },
            None => ItemOutcome::Failed {
                tests,
                class: class.as_str().into(),
                reason: reason.into(),
                rollback_verified,
            },
        })
    }
}

/// Renew the item's lease until stopped; a lost lease cancels this engine's tests of it.
async fn heartbeat(
    engine: Arc<TestEngine>,
    item_id: i64,
    lease: Duration,
    stop: CancellationToken,
) {
    let every = (lease / 3).max(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let owner = engine.owner.clone();
        let r = engine
            .store
            .write(move |tx| queue::heartbeat(tx, item_id, &owner, lease))
            .await;
        if let Err(e) = r {
            tracing::error!(item_id, error = %e, "lost the lease of a queue item under test");
            return;
        }
    }
}
