//! The service traits the Lua phases call ([`UyuniService`], [`PromService`]), implemented
//! over the real clients. One UYUNI adapter per test: every action it schedules is
//! recorded in `uyuni_actions` with the test id (so crash recovery can find it), waits back
//! off from a short interval, and a cancelled test cancels its outstanding action.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::host::errors::{ErrorKind, ScriptError};
use crate::host::services::{
    ErrataApplyResult, PromService, ScriptRunOpts, ScriptRunResult, ServiceFuture, UyuniService,
};
use crate::services::prom::PromClient;
use crate::services::uyuni::action::{ActionReport, SystemOutcome, WaitOptions};
use crate::services::uyuni::{UyuniClient, UyuniError};
use crate::store::{Store, test_runs};

/// Timeouts the adapter applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdapterTimeouts {
    /// Default script timeout.
    pub script: Duration,
    /// Default apply timeout.
    pub apply: Duration,
    /// Default reboot timeout.
    pub reboot: Duration,
    /// Extra time a system may take to pick an action up.
    pub pickup: Duration,
}

/// [`UyuniService`] over a [`UyuniClient`], recording actions for one test.
pub struct UyuniAdapter {
    client: Arc<UyuniClient>,
    store: Store,
    test_id: Option<i64>,
    cancel: CancellationToken,
    timeouts: AdapterTimeouts,
}

impl UyuniAdapter {
    /// An adapter for `test_id` (None: actions are recorded without a test).
    pub fn new(
        client: Arc<UyuniClient>,
        store: Store,
        test_id: Option<i64>,
        cancel: CancellationToken,
        timeouts: AdapterTimeouts,
    ) -> Self {
        Self {
            client,
            store,
            test_id,
            cancel,
            timeouts,
        }
    }

    async fn record(&self, action_id: i64, kind: &'static str, sids: Vec<i64>) {
        let test_id = self.test_id;
        let r = self
            .store
            .write(move |tx| test_runs::record_action(tx, action_id, kind, test_id, &sids))
            .await;
        if let Err(e) = r {
            tracing::warn!(action_id, error = %e, "cannot record a UYUNI action");
        }
    }

    async fn close(&self, action_id: i64, status: &'static str) {
        let r = self
            .store
            .write(move |tx| test_runs::finish_action(tx, action_id, status))
            .await;
        if let Err(e) = r {
            tracing::warn!(action_id, error = %e, "cannot update a UYUNI action");
        }
    }

    /// Wait for an action, cancelling it when the test is cancelled.
    async fn wait(
        &self,
        action_id: i64,
        sids: &[i64],
        deadline: Duration,
    ) -> Result<ActionReport, ScriptError> {
        let opts = WaitOptions::for_client(&self.client, deadline);
        tokio::select! {
            r = self.client.wait_action(action_id, sids, opts) => {
                let report = r.map_err(uyuni_err)?;
                let status = if report.cancelled {
                    "cancelled"
                } else if report.timed_out {
                    "unknown"
                } else if report.all_completed() {
                    "completed"
                } else {
                    "failed"
                };
                self.close(action_id, status).await;
                Ok(report)
            }
            _ = self.cancel.cancelled() => {
                let status = match self.client.cancel_actions(&[action_id]).await {
                    Ok(()) => "cancelled",
                    Err(e) => {
                        tracing::warn!(action_id, error = %e, "cannot cancel the action of an aborted test");
                        "unknown"
                    }
                };
                self.close(action_id, status).await;
                Err(ScriptError::new(ErrorKind::Cancelled, format!("test cancelled while waiting for action {action_id}")))
            }
        }
    }
}

impl UyuniAdapter {
    /// Poll a script action through its results (one call per poll once the system
    /// reported, instead of listing completed and failed systems first), backing off from
    /// the client's short interval. `Ok(None)` when the action is no longer in progress
    /// without a result for the system, or the deadline passed.
    async fn poll_script(
        &self,
        action_id: i64,
        system_id: i64,
        deadline: Duration,
    ) -> Result<Option<ScriptRunResult>, ScriptError> {
        let (initial, max) = self.client.poll_intervals();
        let until = tokio::time::Instant::now() + deadline;
        let mut interval = initial.max(Duration::from_millis(1));
        loop {
            let results = self
                .client
                .script_results(action_id)
                .await
                .map_err(uyuni_err)?;
            if let Some(r) = results.into_iter().find(|r| r.server_id == system_id) {
                let status = if r.return_code == 0 {
                    "completed"
                } else {
                    "failed"
                };
                self.close(action_id, status).await;
                return Ok(Some(ScriptRunResult {
                    exit_code: r.return_code,
                    stdout: r.stdout,
                    stderr: r.stderr,
                }));
            }
            let busy = self
                .client
                .list_in_progress_systems(action_id)
                .await
                .map_err(uyuni_err)?;
            if !busy.iter().any(|s| s.server_id == system_id) {
                return Ok(None);
            }
            let now = tokio::time::Instant::now();
            if now >= until {
                return Ok(None);
            }
            tokio::select! {
                _ = tokio::time::sleep(interval.min(until - now)) => {}
                _ = self.cancel.cancelled() => {
                    let status = match self.client.cancel_actions(&[action_id]).await {
                        Ok(()) => "cancelled",
                        Err(_) => "unknown",
                    };
                    self.close(action_id, status).await;
                    return Err(ScriptError::new(
                        ErrorKind::Cancelled,
                        format!("test cancelled while waiting for script action {action_id}"),
                    ));
                }
            }
            interval = (interval * 2).min(max.max(initial));
        }
    }
}

/// A UYUNI client error as a script error: transport problems are transient, faults
/// infrastructure.
pub fn uyuni_err(e: UyuniError) -> ScriptError {
    let kind = if e.fault_code().is_some() {
        ErrorKind::Infrastructure
    } else {
        ErrorKind::Transient
    };
    ScriptError::new(kind, format!("UYUNI: {e}"))
}

fn unreachable(sid: i64, what: &str, waited: Duration) -> ScriptError {
    ScriptError {
        kind: ErrorKind::Infrastructure,
        message: format!(
            "system {sid} did not finish {what} within {}s (offline or unreachable); the action was cancelled where UYUNI allowed it",
            waited.as_secs()
        ),
        retryable: true,
    }
}

fn outcome_json(sid: i64, o: &SystemOutcome) -> Value {
    let (status, message) = match o {
        SystemOutcome::Completed { message } => ("completed", message.clone()),
        SystemOutcome::Failed { message } => ("failed", message.clone()),
        SystemOutcome::Pending { message } => ("pending", message.clone()),
        SystemOutcome::Missing => ("missing", None),
    };
    json!({ "system_id": sid, "status": status, "message": message })
}

impl UyuniService for UyuniAdapter {
    fn system_get(&self, system_id: i64) -> ServiceFuture<'_, Value> {
        Box::pin(async move {
            let d = self
                .client
                .system_details(system_id)
                .await
                .map_err(uyuni_err)?;
            Ok(json!({
                "id": d.id,
                "name": d.profile_name,
                "hostname": d.hostname,
                "release": d.release,
                "last_boot": d.last_boot.map(|t| t.to_string()),
            }))
        })
    }

    fn script_run(
        &self,
        system_id: i64,
        script: String,
        opts: ScriptRunOpts,
    ) -> ServiceFuture<'_, ScriptRunResult> {
        Box::pin(async move {
            let timeout = opts
                .timeout
                .map(Duration::from_secs)
                .unwrap_or(self.timeouts.script)
                .max(Duration::from_secs(1));
            let body = if script.starts_with("#!") {
                script
            } else {
                format!("#!/bin/sh\n{script}")
            };
            let user = opts.user.as_deref().unwrap_or("root");
            let group = opts.group.as_deref().unwrap_or("root");
            let secs = i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX);
            let action_id = self
                .client
                .schedule_script_run(&[system_id], user, group, secs, &body, None)
                .await
                .map_err(uyuni_err)?;
            self.record(action_id, "script", vec![system_id]).await;
            let waited = timeout + self.timeouts.pickup;
            if let Some(r) = self.poll_script(action_id, system_id, waited).await? {
                return Ok(r);
            }
            // Finished without a result, or never picked up: ask for the final states
            // (this also cancels what is still queued at the deadline).
            let left = Duration::from_millis(1);
            let report = self.wait(action_id, &[system_id], left).await?;
            let results = self
                .client
                .script_results(action_id)
                .await
                .map_err(uyuni_err)?;
            if let Some(r) = results.into_iter().find(|r| r.server_id == system_id) {
                return Ok(ScriptRunResult {
                    exit_code: r.return_code,
                    stdout: r.stdout,
                    stderr: r.stderr,
                });
            }
            match report.systems.get(&system_id) {
                Some(SystemOutcome::Failed { message }) => Err(ScriptError::new(
                    ErrorKind::Infrastructure,
                    format!(
                        "script action {action_id} failed on system {system_id} without a result: {}",
                        message.as_deref().unwrap_or("no message")
                    ),
                )),
                _ => Err(unreachable(system_id, "a script", waited)),
            }
        })
    }

    fn errata_apply(
        &self,
        system_ids: Vec<i64>,
        advisories: Vec<String>,
        opts: Value,
    ) -> ServiceFuture<'_, ErrataApplyResult> {
        Box::pin(async move {
            let timeout = opts
                .get("timeout")
                .and_then(Value::as_u64)
                .map(Duration::from_secs)
                .unwrap_or(self.timeouts.apply);
            let mut ids = Vec::new();
            for adv in &advisories {
                let d = self.client.errata_details(adv).await.map_err(uyuni_err)?;
                ids.push(d.id);
            }
            let actions = self
                .client
                .schedule_apply_errata(&system_ids, &ids, None)
                .await
                .map_err(|e| {
                    let mut se = uyuni_err(e);
                    if se.kind == ErrorKind::Infrastructure {
                        // UYUNI refused to schedule it (not relevant, already scheduled):
                        // the patch cannot be applied as asked.
                        se.kind = ErrorKind::Patch;
                        se.retryable = false;
                    }
                    se
                })?;
            for a in &actions {
                self.record(*a, "errata", system_ids.clone()).await;
            }
            let Some(&first) = actions.first() else {
                return Err(ScriptError::new(
                    ErrorKind::Patch,
                    format!("UYUNI scheduled no action for {}", advisories.join(", ")),
                ));
            };
            let mut results = Vec::new();
            for a in &actions {
                let report = self
                    .wait(*a, &system_ids, timeout + self.timeouts.pickup)
                    .await?;
                for (sid, o) in &report.systems {
                    let mut v = outcome_json(*sid, o);
                    v["action_id"] = json!(a);
                    results.push(v);
                }
            }
            Ok(ErrataApplyResult {
                action_id: first,
                results: Value::Array(results),
            })
        })
    }

    fn packages_installed(&self, system_id: i64, names: Vec<String>) -> ServiceFuture<'_, Value> {
        Box::pin(async move {
            let all = self
                .client
                .list_installed_packages(system_id)
                .await
                .map_err(uyuni_err)?;
            let list: Vec<Value> = all
                .into_iter()
                .filter(|p| names.is_empty() || names.contains(&p.name))
                .map(|p| {
                    json!({
                        "name": p.name,
                        "epoch": p.epoch.unwrap_or_default(),
                        "version": p.version,
                        "release": p.release,
                        "arch": p.arch,
                    })
                })
                .collect();
            Ok(Value::Array(list))
        })
    }

    fn reboot(&self, system_id: i64, opts: Value) -> ServiceFuture<'_, Value> {
        Box::pin(async move {
            let timeout = opts
                .get("timeout")
                .and_then(Value::as_u64)
                .map(Duration::from_secs)
                .unwrap_or(self.timeouts.reboot);
            let action_id = self
                .client
                .schedule_reboot(system_id, None)
                .await
                .map_err(uyuni_err)?;
            self.record(action_id, "reboot", vec![system_id]).await;
            let waited = timeout + self.timeouts.pickup;
            let report = self.wait(action_id, &[system_id], waited).await?;
            match report.systems.get(&system_id) {
                Some(o @ SystemOutcome::Completed { .. }) => {
                    let mut v = outcome_json(system_id, o);
                    v["action_id"] = json!(action_id);
                    Ok(v)
                }
                Some(SystemOutcome::Failed { message }) => Err(ScriptError::new(
                    ErrorKind::Infrastructure,
                    format!(
                        "reboot action {action_id} failed on system {system_id}: {}",
                        message.as_deref().unwrap_or("no message")
                    ),
                )),
                _ => Err(unreachable(system_id, "the reboot", waited)),
            }
        })
    }

    fn errata_packages(&self, advisory: String) -> ServiceFuture<'_, Value> {
        Box::pin(async move {
            let list = self
                .client
                .errata_packages(&advisory)
                .await
                .map_err(uyuni_err)?;
            Ok(Value::Array(
                list.into_iter()
                    .map(|p| {
                        json!({
                            "name": p.name,
                            "epoch": p.epoch.unwrap_or_default(),
                            "version": p.version,
                            "release": p.release,
                            "arch": p.arch_label,
                        })
                    })
                    .collect(),
            ))
        })
    }
}

/// [`PromService`] over a [`PromClient`].
pub struct PromAdapter {
    client: Arc<PromClient>,
}

impl PromAdapter {
    /// Wrap a client.
    pub fn new(client: Arc<PromClient>) -> Self {
        Self { client }
    }
}

fn prom_err(e: crate::services::prom::PromError) -> ScriptError {
    let kind = if e.is_transient() {
        ErrorKind::Transient
    } else {
        ErrorKind::Infrastructure
    };
    ScriptError::new(kind, format!("Prometheus: {e}"))
}

impl PromService for PromAdapter {
    fn query(&self, expr: String) -> ServiceFuture<'_, Value> {
        Box::pin(async move {
            let samples = self.client.query(&expr, None).await.map_err(prom_err)?;
            Ok(Value::Array(
                samples
                    .into_iter()
                    .map(|s| {
                        json!({
                            "metric": s.metric,
                            "value": if s.value.is_finite() { json!(s.value) } else { Value::Null },
                            "timestamp": s.timestamp,
                        })
                    })
                    .collect(),
            ))
        })
    }

    fn query_range(
        &self,
        expr: String,
        start: f64,
        end: f64,
        step: f64,
    ) -> ServiceFuture<'_, Value> {
        Box::pin(async move {
            let series = self
                .client
                .query_range(&expr, start, end, step)
                .await
                .map_err(prom_err)?;
            Ok(Value::Array(
                series
                    .into_iter()
                    .map(|s| {
                        json!({
                            "metric": s.metric,
                            "values": s.values.iter().filter(|(_, v)| v.is_finite()).map(|(t, v)| json!([t, v])).collect::<Vec<_>>(),
                        })
                    })
                    .collect(),
            ))
        })
    }
}
