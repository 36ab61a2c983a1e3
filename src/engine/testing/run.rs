//! One test of one advisory on one test system: the phases in order, each in a fresh VM of
//! the script set taken when the test started (an edit during the test affects the next
//! test, not this one); on failure the rollback strategy, verified, then post_rollback.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use super::TestEngine;
use super::adapters::{AdapterTimeouts, PromAdapter, UyuniAdapter};
use super::classify::FailureClass;
use super::context::{self, Advisory};
use super::systems::TestSystem;
use crate::engine::state::{PhaseStatus, Status, TestStatus};
use crate::host::api::test::RunRecorder;
use crate::host::errors::{ErrorKind, ScriptError};
use crate::host::limits::Limits;
use crate::host::resolve;
use crate::host::runner::{self, RunRequest};
use crate::host::scriptset::ScriptSet;
use crate::host::services::Services;
use crate::store::{StoreError, format_ts, test_runs};

/// The phases of a test, in order (post_rollback runs only after a rollback).
pub const TEST_PHASES: &[&str] = &[
    "pre_check",
    "snapshot",
    "patch",
    "reboot",
    "validate",
    "services",
];

/// Phases after which the system may have changed, so a failure needs a rollback.
const CHANGES_SYSTEM: &[&str] = &["patch", "reboot", "validate", "services"];

/// Longest output excerpt kept per phase.
const EXCERPT: usize = 2000;

/// How one test ended.
#[derive(Debug, Clone, PartialEq)]
pub struct TestResult {
    /// Test row.
    pub test_id: i64,
    /// Final status.
    pub status: TestStatus,
    /// Failure class when it did not pass.
    pub class: Option<FailureClass>,
    /// Failing phase.
    pub phase: Option<String>,
    /// Reason.
    pub reason: Option<String>,
    /// The system is back where it was: no rollback was needed, or it was verified.
    pub rollback_verified: bool,
}

/// A phase's result.
struct PhaseRun {
    data: Value,
    error: Option<ScriptError>,
}

/// Result of a rollback attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct RollbackResult {
    /// Strategy used, if one applied.
    pub strategy: Option<String>,
    /// Versions back and post_rollback passed.
    pub verified: bool,
    /// Details for the record.
    pub details: Value,
}

fn excerpt(s: &str) -> String {
    if s.len() <= EXCERPT {
        return s.to_string();
    }
    let mut end = EXCERPT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

fn truthy(v: &Value) -> bool {
    !matches!(v, Value::Null | Value::Bool(false))
}

/// Everything a phase run needs besides its name.
pub(crate) struct RunScope<'a> {
    pub test_id: i64,
    pub system: &'a TestSystem,
    pub advisory: &'a Advisory,
    pub config: Value,
    pub set: Arc<ScriptSet>,
}

impl TestEngine {
    fn services(&self, test_id: i64, cancel: &CancellationToken) -> (Services, Arc<RunRecorder>) {
        let recorder = RunRecorder::new();
        let timeouts = AdapterTimeouts {
            script: Duration::from_secs(self.config.script_timeout_secs.max(1)),
            apply: Duration::from_secs(self.config.apply_timeout_secs.max(1)),
            reboot: Duration::from_secs(self.config.reboot_timeout_secs.max(1)),
            pickup: Duration::from_secs(self.config.pickup_timeout_secs),
        };
        let services = Services {
            uyuni: Some(Arc::new(UyuniAdapter::new(
                self.uyuni.clone(),
                self.store.clone(),
                Some(test_id),
                cancel.clone(),
                timeouts,
            ))),
            prom: self.prom.clone().map(|p| {
                Arc::new(PromAdapter::new(p)) as Arc<dyn crate::host::services::PromService>
            }),
            ansible: self.ansible.get().map(|ex| {
                Arc::new(crate::engine::ansible::lua::LuaAnsible::new(
                    ex.clone(),
                    Some(self.store.clone()),
                    cancel.clone(),
                )) as Arc<dyn crate::host::services::AnsibleService>
            }),
            store: Some(self.store.clone()),
            recorder: Some(recorder.clone()),
            ..Services::default()
        };
        (services, recorder)
    }

    /// The `config` of ctx for a system; validation checks are off without Prometheus.
    pub(crate) fn ctx_config(&self, system: &TestSystem) -> Value {
        let mut c = context::config_json(&self.config, &system.os, system);
        if self.prom.is_none() {
            c["checks"] = json!([]);
        }
        c
    }

    /// Run `entry` of `path` as phase row `label`, merging recorded values into the data.
    #[allow(clippy::too_many_arguments)]
    async fn run_phase_row(
        &self,
        scope: &RunScope<'_>,
        seq: i64,
        label: &str,
        path: &str,
        state: &Value,
        cancel: &CancellationToken,
        budget: Duration,
    ) -> PhaseRun {
        let test_id = scope.test_id;
        let hash = scope.set.get(path).map(|f| f.sha256.clone());
        let phase_id = {
            let (label, path) = (label.to_string(), path.to_string());
            self.store
                .write(move |tx| {
                    test_runs::start_phase(
                        tx,
                        test_id,
                        &label,
                        seq,
                        hash.as_deref().map(|h| (path.as_str(), h)),
                    )
                })
                .await
        };
        self.progress.phase_started(test_id, label);
        let started = Instant::now();
        let (services, recorder) = self.services(test_id, cancel);
        let ctx = context::ctx(test_id, scope.system, scope.advisory, &scope.config, state);
        let limits = Limits {
            timeout: budget.max(Duration::from_secs(1)),
            ..Limits::default()
        };
        let out = runner::run_script(
            scope.set.clone(),
            &services,
            RunRequest {
                path,
                entry: "run",
                ctx,
            },
            &limits,
            cancel.clone(),
        )
        .await;
        let mut data = match &out.result {
            Ok(Value::Object(m)) => Value::Object(m.clone()),
            Ok(Value::Null) | Err(_) => Value::Object(Map::new()),
            Ok(other) => json!({ "result": other }),
        };
        for (k, v) in recorder.snapshot() {
            data[k] = v;
        }
        let error = out.result.err();
        let status = match &error {
            Some(_) => PhaseStatus::Failed,
            None if data.get("skipped").is_some_and(truthy) => PhaseStatus::Skipped,
            None => PhaseStatus::Passed,
        };
        let output = match &error {
            Some(e) => excerpt(&e.message),
            None => excerpt(&data.to_string()),
        };
        let ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        self.progress
            .phase_finished(test_id, label, status.as_str(), ms, &output);
        if let Ok(phase_id) = phase_id {
            let end = test_runs::PhaseEnd {
                status,
                script: out
                    .scripts
                    .first()
                    .map(|s| (s.path.clone(), s.sha256.clone())),
                duration_ms: ms,
                output,
                data: data.clone(),
                error: error
                    .as_ref()
                    .map(|e| (e.kind.as_str().to_string(), e.message.clone())),
            };
            if let Err(e) = self
                .store
                .write(move |tx| test_runs::finish_phase(tx, phase_id, &end))
                .await
            {
                tracing::error!(test_id, error = %e, "cannot record the end of a phase");
            }
        } else if let Err(e) = phase_id {
            tracing::error!(test_id, error = %e, "cannot record the start of a phase");
        }
        PhaseRun { data, error }
    }

    /// Run one test of `advisory` on `system` for queue item `queue_id`.
    pub(crate) async fn run_test(
        self: &Arc<Self>,
        queue_id: i64,
        system: &TestSystem,
        advisory: &Advisory,
        started_by: &str,
    ) -> Result<TestResult, StoreError> {
        let deadline = Duration::from_secs(self.config.deadline_secs.max(1));
        let deadline_at = chrono::Utc::now()
            + chrono::Duration::from_std(deadline).unwrap_or(chrono::Duration::hours(1));
        let new = test_runs::NewTest {
            queue_id,
            advisory: advisory.name.clone(),
            system_id: system.id,
            system_name: system.name.clone(),
            started_by: started_by.to_string(),
            owner: self.owner.clone(),
            deadline_at: format_ts(deadline_at),
        };
        let test_id = self
            .store
            .write(move |tx| test_runs::begin(tx, &new))
            .await?;
        self.progress
            .test_started(test_id, &advisory.name, &system.name);
        let cancel = CancellationToken::new();
        if let Ok(mut r) = self.running.lock() {
            r.insert(test_id, cancel.clone());
        }
        let abort_reason = Arc::new(std::sync::Mutex::new(None::<String>));
        let watcher = AbortOnDrop(tokio::spawn(watch(
            self.clone(),
            test_id,
            deadline,
            cancel.clone(),
            abort_reason.clone(),
        )));
        let started = Instant::now();
        let scope = RunScope {
            test_id,
            system,
            advisory,
            config: self.ctx_config(system),
            set: self.host.current(),
        };
        let mut state = Value::Object(Map::new());
        let mut failure: Option<(String, ScriptError)> = None;
        let mut patch_started = false;
        for (seq, phase) in TEST_PHASES.iter().enumerate() {
            if cancel.is_cancelled() {
                failure = Some((
                    phase.to_string(),
                    ScriptError::new(ErrorKind::Cancelled, "test cancelled"),
                ));
                break;
            }
            let path = match resolve::resolve_phase(&scope.set, &system.os, phase) {
                Ok(f) => f.path.clone(),
                Err(e) => {
                    failure = Some((phase.to_string(), e));
                    break;
                }
            };
            if CHANGES_SYSTEM.contains(phase) {
                patch_started = true;
            }
            // A little past the test deadline: the watcher cancels first, so a test that
            // runs out of time ends as aborted by its deadline, not as a phase timeout.
            let budget = deadline.saturating_sub(started.elapsed()) + Duration::from_secs(2);
            let r = self
                .run_phase_row(&scope, seq as i64, phase, &path, &state, &cancel, budget)
                .await;
            state[*phase] = r.data;
            let st = state.clone();
            let _ = self
                .store
                .write(move |tx| test_runs::set_state(tx, test_id, &st))
                .await;
            if let Some(e) = r.error {
                failure = Some((phase.to_string(), e));
                break;
            }
        }
        drop(watcher);
        let aborted_by = abort_reason.lock().ok().and_then(|r| r.clone());
        if let Some((_, e)) = &mut failure
            && let Some(reason) = &aborted_by
            && e.kind == ErrorKind::Cancelled
        {
            e.message = format!("{reason} ({})", e.message);
        }
        if cancel.is_cancelled() {
            self.cancel_outstanding(test_id).await;
        }
        let mut rollback = RollbackResult {
            strategy: None,
            verified: true,
            details: json!({ "needed": false }),
        };
        if let Some((phase, e)) = &failure
            && patch_started
        {
            let reason = format!("{phase} failed: {}", e.message);
            rollback = self
                .rollback(&scope, &mut state, &reason, TEST_PHASES.len() as i64)
                .await;
        }
        let (status, class, phase, reason) = match &failure {
            None => (TestStatus::Passed, None, None, None),
            Some((phase, e)) => {
                let class = if aborted_by.is_some() && e.kind == ErrorKind::Cancelled {
                    FailureClass::Aborted
                } else {
                    FailureClass::from_error_kind(e.kind.as_str())
                };
                let status = match class {
                    FailureClass::Patch | FailureClass::Regression => TestStatus::Failed,
                    FailureClass::Aborted => TestStatus::Aborted,
                    _ => TestStatus::Error,
                };
                (
                    status,
                    Some(class),
                    Some(phase.clone()),
                    Some(e.message.clone()),
                )
            }
        };
        let end = test_runs::TestEnd {
            status: Some(status),
            failure_class: class.map(|c| c.as_str().to_string()),
            failure_phase: phase.clone(),
            failure_reason: reason.clone(),
            snapshot_id: state
                .pointer("/snapshot/number")
                .filter(|v| !v.is_null())
                .map(|v| v.to_string()),
            rollback_strategy: rollback.strategy.clone(),
            rollback_status: Some(
                match (&failure, patch_started, rollback.verified) {
                    (None, _, _) | (Some(_), false, _) => "not_needed",
                    (_, true, true) => "verified",
                    _ => "failed",
                }
                .to_string(),
            ),
            reboot_performed: state.pointer("/reboot/performed").is_some_and(truthy),
            evidence: evidence(&state, advisory, &rollback),
            scripts: scripts_of(&scope.set),
            state: state.clone(),
        };
        self.store
            .write(move |tx| test_runs::finish(tx, test_id, &end))
            .await?;
        if let Ok(mut r) = self.running.lock() {
            r.remove(&test_id);
        }
        self.progress
            .test_finished(test_id, status.as_str(), reason.as_deref());
        Ok(TestResult {
            test_id,
            status,
            class,
            phase,
            reason,
            rollback_verified: rollback.verified,
        })
    }

    /// Cancel every action of the test UYUNI still has pending.
    pub(crate) async fn cancel_outstanding(&self, test_id: i64) {
        let pending = match self
            .store
            .read(move |c| test_runs::pending_actions(c, Some(test_id)))
            .await
        {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(test_id, error = %e, "cannot list the test's UYUNI actions");
                return;
            }
        };
        for a in pending {
            let status = match self.uyuni.cancel_actions(&[a.action_id]).await {
                Ok(()) => "cancelled",
                Err(e) => {
                    tracing::warn!(action_id = a.action_id, error = %e, "cannot cancel an outstanding action");
                    "unknown"
                }
            };
            let id = a.action_id;
            let _ = self
                .store
                .write(move |tx| test_runs::finish_action(tx, id, status))
                .await;
        }
    }

    /// Pick the first rollback strategy whose `applies(ctx)` is true, run it (it verifies
    /// the captured versions), then post_rollback; record it all.
    pub(crate) async fn rollback(
        &self,
        scope: &RunScope<'_>,
        state: &mut Value,
        reason: &str,
        first_seq: i64,
    ) -> RollbackResult {
        let test_id = scope.test_id;
        let cancel = CancellationToken::new();
        let budget = Duration::from_secs(self.config.deadline_secs.max(60));
        let mut considered = Vec::new();
        let mut chosen = None;
        for name in &self.config.rollback_order {
            let path = format!("scripts/rollback/{name}.lua");
            if scope.set.get(&path).is_none() {
                considered
                    .push(json!({ "strategy": name, "applies": false, "why": "no such script" }));
                continue;
            }
            let (services, _) = self.services(test_id, &cancel);
            let ctx = context::ctx(test_id, scope.system, scope.advisory, &scope.config, state);
            let out = runner::run_script(
                scope.set.clone(),
                &services,
                RunRequest {
                    path: &path,
                    entry: "applies",
                    ctx,
                },
                &Limits {
                    timeout: Duration::from_secs(60),
                    ..Limits::default()
                },
                cancel.clone(),
            )
            .await;
            match out.result {
                Ok(v) if truthy(&v) => {
                    considered.push(json!({ "strategy": name, "applies": true }));
                    chosen = Some((name.clone(), path));
                    break;
                }
                Ok(_) => considered.push(json!({ "strategy": name, "applies": false })),
                Err(e) => considered
                    .push(json!({ "strategy": name, "applies": false, "why": e.to_string() })),
            }
        }
        let Some((strategy, path)) = chosen else {
            let details =
                json!({ "considered": considered, "error": "no rollback strategy applies" });
            let _ = self
                .store
                .write(move |tx| test_runs::set_rollback(tx, test_id, None, "failed"))
                .await;
            state["rollback"] = details.clone();
            return RollbackResult {
                strategy: None,
                verified: false,
                details,
            };
        };
        let rb_id = {
            let (s, r, sid) = (strategy.clone(), reason.to_string(), scope.system.id);
            self.store
                .write(move |tx| {
                    test_runs::set_rollback(tx, test_id, Some(&s), "running")?;
                    test_runs::begin_rollback(tx, test_id, sid, &s, &r, "engine")
                })
                .await
        };
        let r = self
            .run_phase_row(scope, first_seq, "rollback", &path, state, &cancel, budget)
            .await;
        state["rollback"] = r.data.clone();
        let mut verified = r.error.is_none();
        let mut details = json!({
            "considered": considered,
            "result": r.data,
            "error": r.error.as_ref().map(|e| e.to_string()),
        });
        if verified {
            match resolve::resolve_phase(&scope.set, &scope.system.os, "post_rollback") {
                Ok(f) => {
                    let path = f.path.clone();
                    let p = self
                        .run_phase_row(
                            scope,
                            first_seq + 1,
                            "post_rollback",
                            &path,
                            state,
                            &cancel,
                            budget,
                        )
                        .await;
                    state["post_rollback"] = p.data.clone();
                    details["post_rollback"] = p.data;
                    if let Some(e) = p.error {
                        verified = false;
                        details["post_rollback_error"] = json!(e.to_string());
                    }
                }
                Err(e) => {
                    verified = false;
                    details["post_rollback_error"] = json!(e.to_string());
                }
            }
        }
        if let Ok(rb_id) = rb_id {
            let status = if verified { "verified" } else { "failed" };
            let d = details.clone();
            let _ = self
                .store
                .write(move |tx| {
                    test_runs::finish_rollback(tx, rb_id, status, &d)?;
                    test_runs::set_rollback(tx, test_id, None, status)
                })
                .await;
        }
        RollbackResult {
            strategy: Some(strategy),
            verified,
            details,
        }
    }
}

/// Aborts a task when dropped (a test future dropped mid-way stops its watcher).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Cancel the test at its deadline or when an abort is requested in the database.
async fn watch(
    engine: Arc<TestEngine>,
    test_id: i64,
    deadline: Duration,
    cancel: CancellationToken,
    reason: Arc<std::sync::Mutex<Option<String>>>,
) {
    let until = tokio::time::Instant::now() + deadline;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(until) => {
                if let Ok(mut r) = reason.lock() {
                    *r = Some(format!("test deadline of {}s passed", deadline.as_secs()));
                }
                cancel.cancel();
                return;
            }
            _ = cancel.cancelled() => {
                if let Ok(mut r) = reason.lock() && r.is_none() {
                    *r = Some("aborted".to_string());
                }
                return;
            }
            _ = tokio::time::sleep(Duration::from_millis(500)) => {
                let requested = engine
                    .store
                    .read(move |c| test_runs::abort_requested(c, test_id))
                    .await
                    .ok()
                    .flatten();
                if let Some(why) = requested {
                    if let Ok(mut r) = reason.lock() {
                        *r = Some(format!("aborted: {why}"));
                    }
                    cancel.cancel();
                    return;
                }
            }
        }
    }
}

/// Scripts of the set, path → {sha256, generation} (the version this test ran with).
fn scripts_of(set: &ScriptSet) -> Value {
    let mut m = Map::new();
    for (path, sha) in set.fingerprint() {
        m.insert(
            path.to_string(),
            json!({ "sha256": sha, "generation": set.generation }),
        );
    }
    Value::Object(m)
}

/// The evidence an approver reads.
fn evidence(state: &Value, advisory: &Advisory, rollback: &RollbackResult) -> Value {
    let get = |p: &str| state.pointer(p).cloned().unwrap_or(Value::Null);
    json!({
        "packages": {
            "before": get("/patch/before"),
            "after": get("/patch/after"),
            "changed": get("/patch/changed"),
        },
        "metrics": {
            "baseline": get("/pre_check/baseline"),
            "post": get("/validate/results"),
        },
        "services": {
            "before": get("/pre_check/services"),
            "after": get("/services/services"),
        },
        "reboot": get("/reboot"),
        "snapshot": get("/snapshot"),
        "cves": advisory.cves,
        "rollback": if rollback.strategy.is_some() || !rollback.verified { rollback.details.clone() } else { Value::Null },
    })
}
