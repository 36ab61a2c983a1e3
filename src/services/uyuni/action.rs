//! Waiting for UYUNI actions, and running scripts through them.
//!
//! Polls one action's in-progress systems starting at a short interval and backing off
//! to a cap, never a fixed long sleep; fetches completed/failed systems once nothing is
//! in progress; on the deadline cancels the action where UYUNI allows it (nothing picked
//! up yet) and reports what was still pending.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use super::api::types::{ActionSystem, ScriptResult};
use super::client::UyuniClient;
use super::error::UyuniError;

/// How to wait for one action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitOptions {
    /// Give up after this long.
    pub deadline: Duration,
    /// First poll interval.
    pub initial: Duration,
    /// Largest poll interval (the interval doubles up to it).
    pub max: Duration,
    /// Cancel the action when the deadline passes (UYUNI refuses once picked up).
    pub cancel_on_timeout: bool,
}

impl WaitOptions {
    /// Options with the client's configured poll intervals.
    pub fn for_client(client: &UyuniClient, deadline: Duration) -> Self {
        let (initial, max) = client.poll_intervals();
        WaitOptions {
            deadline,
            initial,
            max,
            cancel_on_timeout: true,
        }
    }
}

/// Where one system stands in an action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum SystemOutcome {
    /// Completed; UYUNI's result message.
    Completed {
        /// `message` of the schedule listing.
        message: Option<String>,
    },
    /// Failed; UYUNI's result message.
    Failed {
        /// `message` of the schedule listing.
        message: Option<String>,
    },
    /// Still queued or picked up when waiting stopped.
    Pending {
        /// `message`, if any.
        message: Option<String>,
    },
    /// Listed in no state at all while nothing is in progress (the action was
    /// cancelled elsewhere or the system deleted).
    Missing,
}

impl SystemOutcome {
    /// True for `Completed`.
    pub fn is_completed(&self) -> bool {
        matches!(self, SystemOutcome::Completed { .. })
    }
}

/// The result of waiting for an action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActionReport {
    /// The action.
    pub action_id: i64,
    /// Outcome per system id.
    pub systems: BTreeMap<i64, SystemOutcome>,
    /// The deadline passed before every system finished.
    pub timed_out: bool,
    /// The action was cancelled on the deadline.
    pub cancelled: bool,
    /// Number of polls made.
    pub polls: u32,
}

impl ActionReport {
    /// True when every listed system completed and waiting did not time out.
    pub fn all_completed(&self) -> bool {
        !self.timed_out
            && !self.systems.is_empty()
            && self.systems.values().all(SystemOutcome::is_completed)
    }
}

/// One system's part of a script run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScriptOutcome {
    /// Action status for this system.
    pub outcome: SystemOutcome,
    /// The script result, once the system reported.
    pub result: Option<ScriptResult>,
}

impl ScriptOutcome {
    /// True when the action completed and the script exited 0.
    pub fn succeeded(&self) -> bool {
        self.outcome.is_completed() && self.result.as_ref().is_some_and(|r| r.return_code == 0)
    }
}

/// The result of [`UyuniClient::run_script`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScriptRun {
    /// The script action.
    pub action_id: i64,
    /// Per system id.
    pub systems: BTreeMap<i64, ScriptOutcome>,
    /// Waiting timed out.
    pub timed_out: bool,
    /// The action was cancelled on the deadline.
    pub cancelled: bool,
}

/// How many polls in a row may show nothing in progress while an expected system is
/// listed nowhere before that system is reported [`SystemOutcome::Missing`].
const MISSING_AFTER_IDLE_POLLS: u32 = 3;

fn record(
    map: &mut BTreeMap<i64, SystemOutcome>,
    list: Vec<ActionSystem>,
    f: fn(Option<String>) -> SystemOutcome,
) {
    for s in list {
        map.insert(s.server_id, f(s.message));
    }
}

impl UyuniClient {
    /// Wait for `action_id`. `expected` lists the targeted systems when known (the wait
    /// then also requires each of them to appear as completed or failed).
    pub async fn wait_action(
        &self,
        action_id: i64,
        expected: &[i64],
        opts: WaitOptions,
    ) -> Result<ActionReport, UyuniError> {
        let started = Instant::now();
        let deadline = started + opts.deadline;
        let mut interval = opts.initial.max(Duration::from_millis(1));
        let mut polls = 0u32;
        // Consecutive polls with nothing in progress but some expected system unlisted.
        let mut idle = 0u32;
        loop {
            polls += 1;
            let in_progress = self.list_in_progress_systems(action_id).await?;
            if in_progress.is_empty() {
                let (done, failed) = tokio::try_join!(
                    self.list_completed_systems(action_id),
                    self.list_failed_systems(action_id)
                )?;
                let mut systems = BTreeMap::new();
                record(&mut systems, done, |message| SystemOutcome::Completed {
                    message,
                });
                record(&mut systems, failed, |message| SystemOutcome::Failed {
                    message,
                });
                let covered = if expected.is_empty() {
                    !systems.is_empty()
                } else {
                    expected.iter().all(|sid| systems.contains_key(sid))
                };
                if !covered {
                    idle += 1;
                }
                if covered || idle >= MISSING_AFTER_IDLE_POLLS {
                    for sid in expected {
                        systems.entry(*sid).or_insert(SystemOutcome::Missing);
                    }
                    return Ok(ActionReport {
                        action_id,
                        systems,
                        timed_out: false,
                        cancelled: false,
                        polls,
                    });
                }
            } else {
                idle = 0;
            }
            let now = Instant::now();
            if now >= deadline {
                return self.give_up(action_id, expected, opts, polls).await;
            }
            tokio::time::sleep(interval.min(deadline - now)).await;
            interval = (interval * 2).min(opts.max.max(opts.initial));
        }
    }

    /// The deadline passed: record where every system stands, then cancel the action
    /// if allowed (UYUNI drops the queued parts; it refuses once a system picked it up).
    async fn give_up(
        &self,
        action_id: i64,
        expected: &[i64],
        opts: WaitOptions,
        polls: u32,
    ) -> Result<ActionReport, UyuniError> {
        let (done, failed, pending) = tokio::try_join!(
            self.list_completed_systems(action_id),
            self.list_failed_systems(action_id),
            self.list_in_progress_systems(action_id),
        )?;
        let mut systems = BTreeMap::new();
        for sid in expected {
            systems.insert(*sid, SystemOutcome::Missing);
        }
        let still_pending = !pending.is_empty();
        record(&mut systems, pending, |message| SystemOutcome::Pending {
            message,
        });
        record(&mut systems, done, |message| SystemOutcome::Completed {
            message,
        });
        record(&mut systems, failed, |message| SystemOutcome::Failed {
            message,
        });
        let mut cancelled = false;
        if opts.cancel_on_timeout && still_pending {
            match self.cancel_actions(&[action_id]).await {
                Ok(()) => cancelled = true,
                Err(e) if e.fault_code() == Some(10003) => {
                    tracing::warn!(
                        action_id,
                        "action already picked up; UYUNI refuses to cancel it"
                    );
                }
                Err(e) => {
                    tracing::warn!(action_id, error = %e, "cancelling a timed-out action failed");
                }
            }
        }
        Ok(ActionReport {
            action_id,
            systems,
            timed_out: true,
            cancelled,
            polls,
        })
    }

    /// Run `script` as root on `sids` (one action), wait for it and collect each
    /// system's result. `timeout` is the script timeout given to UYUNI; waiting lasts
    /// twice that plus 10 s for pickup. A missing shebang gets `#!/bin/sh`.
    pub async fn run_script(
        &self,
        sids: &[i64],
        script: &str,
        timeout: Duration,
    ) -> Result<ScriptRun, UyuniError> {
        let deadline = timeout.saturating_mul(2) + Duration::from_secs(10);
        self.run_script_with(
            sids,
            script,
            timeout,
            WaitOptions::for_client(self, deadline),
        )
        .await
    }

    /// [`Self::run_script`] with explicit wait options.
    pub async fn run_script_with(
        &self,
        sids: &[i64],
        script: &str,
        timeout: Duration,
        opts: WaitOptions,
    ) -> Result<ScriptRun, UyuniError> {
        let body = if script.starts_with("#!") {
            script.to_string()
        } else {
            format!("#!/bin/sh\n{script}")
        };
        let timeout_s = i64::try_from(timeout.as_secs().max(1)).unwrap_or(i64::MAX);
        let action_id = self
            .schedule_script_run(sids, "root", "root", timeout_s, &body, None)
            .await?;
        let report = self.wait_action(action_id, sids, opts).await?;
        let mut results: BTreeMap<i64, ScriptResult> = self
            .script_results(action_id)
            .await?
            .into_iter()
            .map(|r| (r.server_id, r))
            .collect();
        let systems = report
            .systems
            .into_iter()
            .map(|(sid, outcome)| {
                (
                    sid,
                    ScriptOutcome {
                        outcome,
                        result: results.remove(&sid),
                    },
                )
            })
            .collect();
        Ok(ScriptRun {
            action_id,
            systems,
            timed_out: report.timed_out,
            cancelled: report.cancelled,
        })
    }
}
