//! The cron scheduler for policies (wired into `spm serve`): one run per policy at a time,
//! and a missed window is reported, never run late.
//!
//! [`due`] is the pure decision for one policy between two ticks; [`tick`] acts on it
//! (starts runs as tasks, records missed windows as notifications and audit rows) and
//! also returns expired snoozes to pending approval; [`run_loop`] ticks until cancelled.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::execute::{self, RunOptions};
use super::policy::LoadedPolicy;
use crate::engine::ansible::AnsibleExecutor;
use crate::engine::approvals;
use crate::services::uyuni::UyuniClient;
use crate::store::audit::{self, AuditEntry};
use crate::store::{Store, format_ts, runs};

/// How late after its cron time a run may still start.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(120);

/// What to do for one policy at a tick.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Due {
    /// Start the run scheduled at this time.
    Run(DateTime<Utc>),
    /// The scheduled time passed longer ago than the grace: report, do not run.
    Missed(DateTime<Utc>),
}

/// The latest cron time of `policy` in `(prev, now]`, as a run or a missed window.
pub fn due(
    policy: &super::policy::Policy,
    prev: DateTime<Utc>,
    now: DateTime<Utc>,
    grace: Duration,
) -> Option<Due> {
    let mut t = policy.next_run_after(prev)?;
    if t > now {
        return None;
    }
    // The latest occurrence not after now (several can pass while the process was down).
    while let Some(n) = policy.next_run_after(t) {
        if n > now {
            break;
        }
        t = n;
    }
    let late = (now - t).to_std().unwrap_or_default();
    Some(if late <= grace {
        Due::Run(t)
    } else {
        Due::Missed(t)
    })
}

/// What a tick did for one policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TickEvent {
    /// Policy id.
    pub policy_id: String,
    /// `started`, `missed`, `busy` (a run of the policy is still active) or `error`.
    pub what: String,
    /// Details.
    pub detail: String,
}

fn missed(
    store: &Store,
    policy_id: &str,
    at: DateTime<Utc>,
    why: &str,
) -> Result<(), crate::store::StoreError> {
    let (pid, why) = (policy_id.to_string(), why.to_string());
    store.write_blocking(move |tx| {
        runs::insert_notification(
            tx,
            "run_missed",
            "warning",
            &format!("scheduled run of {pid} at {} was missed", format_ts(at)),
            &format!("The run of policy {pid} scheduled for {} did not start: {why}. It is not run late; the next scheduled time applies.", format_ts(at)),
            None,
        )?;
        audit::append(
            tx,
            &AuditEntry {
                actor: "scheduler".into(),
                source_addr: None,
                action: "run.missed".into(),
                object_type: "policy".into(),
                object_id: Some(pid.clone()),
                reason: Some(why.clone()),
                details: serde_json::json!({ "scheduled_at": format_ts(at) }),
            },
        )?;
        Ok(())
    })
}

/// One scheduler tick over `policies` for cron times in `(prev, now]`. Due runs start as
/// background tasks (their handles are returned); missed windows and busy policies are
/// recorded as `run_missed` notifications.
pub async fn tick(
    client: Arc<UyuniClient>,
    store: &Store,
    policies: &[LoadedPolicy],
    prev: DateTime<Utc>,
    now: DateTime<Utc>,
    grace: Duration,
) -> (Vec<TickEvent>, Vec<tokio::task::JoinHandle<()>>) {
    tick_with(client, None, store, policies, prev, now, grace).await
}

/// [`tick`] with the Ansible executor for `executor = "ansible"` policies.
pub async fn tick_with(
    client: Arc<UyuniClient>,
    ansible: Option<Arc<AnsibleExecutor>>,
    store: &Store,
    policies: &[LoadedPolicy],
    prev: DateTime<Utc>,
    now: DateTime<Utc>,
    grace: Duration,
) -> (Vec<TickEvent>, Vec<tokio::task::JoinHandle<()>>) {
    let mut events = Vec::new();
    let mut tasks = Vec::new();
    if let Err(e) = approvals::expire_snoozes(store, now) {
        tracing::warn!(error = %e, "expiring snoozes failed");
    }
    for lp in policies {
        let pid = lp.policy.id.clone();
        let Some(d) = due(&lp.policy, prev, now, grace) else {
            continue;
        };
        let event = |what: &str, detail: String| TickEvent {
            policy_id: pid.clone(),
            what: what.to_string(),
            detail,
        };
        match d {
            Due::Missed(at) => {
                let why = format!(
                    "spm was not running within {}s of that time",
                    grace.as_secs()
                );
                let _ = missed(store, &pid, at, &why);
                events.push(event("missed", why));
            }
            Due::Run(at) => {
                let p2 = pid.clone();
                let active = store
                    .read(move |c| {
                        Ok(runs::list_runs(c, 50)?
                            .into_iter()
                            .find(|r| r.policy_id == p2 && r.status.is_active()))
                    })
                    .await;
                if let Ok(Some(r)) = active {
                    let why = format!("run {} of the policy is still {}", r.id, r.status);
                    let _ = missed(store, &pid, at, &why);
                    events.push(event("busy", why));
                    continue;
                }
                let (client, store2, lp2) = (client.clone(), store.clone(), lp.clone());
                let ansible = ansible.clone();
                tasks.push(tokio::spawn(async move {
                    let mut opts = RunOptions::manual("scheduler");
                    opts.trigger = "cron".into();
                    opts.ansible = ansible;
                    let res = async {
                        let plan = execute::build_plan(&client, &store2, &lp2).await?;
                        execute::execute(&client, &store2, &lp2, plan, &opts).await
                    }
                    .await;
                    match res {
                        Ok(s) => tracing::info!(policy = %lp2.policy.id, run = s.run_id, status = %s.status, "scheduled run finished"),
                        Err(e) => {
                            tracing::warn!(policy = %lp2.policy.id, error = %e, "scheduled run failed");
                            let _ = missed(&store2, &lp2.policy.id, at, &e.to_string());
                        }
                    }
                }));
                events.push(event("started", format!("cron time {}", format_ts(at))));
            }
        }
    }
    (events, tasks)
}

/// Tick every `every` until `cancel`; `load` returns the current policy set (hot-reloaded
/// by the host). Runs in flight are awaited before returning.
pub async fn run_loop(
    client: Arc<UyuniClient>,
    ansible: Option<Arc<AnsibleExecutor>>,
    store: Store,
    load: impl Fn() -> Vec<LoadedPolicy>,
    every: Duration,
    cancel: CancellationToken,
) {
    let mut prev = Utc::now();
    let mut tasks = Vec::new();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(every) => {}
        }
        let now = Utc::now();
        let (events, mut started) = tick_with(
            client.clone(),
            ansible.clone(),
            &store,
            &load(),
            prev,
            now,
            DEFAULT_GRACE,
        )
        .await;
        for e in events {
            tracing::info!(policy = %e.policy_id, what = %e.what, "{}", e.detail);
        }
        tasks.append(&mut started);
        tasks.retain(|t: &tokio::task::JoinHandle<()>| !t.is_finished());
        prev = now;
    }
    for t in tasks {
        let _ = t.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::rollout::policy::Policy;

    fn policy(cron: &str, tz: &str) -> Policy {
        serde_json::from_value(serde_json::json!({
            "id": "p", "name": "P", "os": "rhel9",
            "targets": { "groups": ["g"] },
            "schedule": { "cron": cron, "timezone": tz },
        }))
        .unwrap()
    }

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn due_on_time_missed_when_late_none_otherwise() {
        let p = policy("0 2 * * *", "UTC");
        let g = Duration::from_secs(120);
        assert_eq!(
            due(&p, t("2026-11-22T01:59:30Z"), t("2026-11-22T02:00:30Z"), g),
            Some(Due::Run(t("2026-11-22T02:00:00Z")))
        );
        assert_eq!(
            due(&p, t("2026-11-22T02:00:30Z"), t("2026-11-22T02:01:00Z"), g),
            None
        );
        // The process was down from 01:00 to 05:00: the 02:00 window is reported missed.
        assert_eq!(
            due(&p, t("2026-11-22T01:00:00Z"), t("2026-11-22T05:00:00Z"), g),
            Some(Due::Missed(t("2026-11-22T02:00:00Z")))
        );
        // Down for three days: only the latest occurrence counts.
        assert_eq!(
            due(&p, t("2026-11-19T01:00:00Z"), t("2026-11-22T02:01:00Z"), g),
            Some(Due::Run(t("2026-11-22T02:00:00Z")))
        );
    }

    #[test]
    fn time_zone_is_honoured() {
        // 02:00 Europe/Rome in winter is 01:00 UTC.
        let p = policy("0 2 * * *", "Europe/Rome");
        assert_eq!(
            due(
                &p,
                t("2026-11-22T00:59:00Z"),
                t("2026-11-22T01:00:10Z"),
                DEFAULT_GRACE
            ),
            Some(Due::Run(t("2026-11-22T01:00:00Z")))
        );
        let manual = policy("0 2 * * *", "UTC");
        let mut manual = manual;
        manual.schedule = None;
        assert_eq!(
            due(
                &manual,
                t("2026-11-22T00:00:00Z"),
                t("2026-11-23T00:00:00Z"),
                DEFAULT_GRACE
            ),
            None
        );
    }
}
