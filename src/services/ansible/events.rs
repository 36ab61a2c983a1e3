//! Events printed by the `spm_jsonl` callback plugin, and the per-host results built from them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Outcome of one task on one host, as reported by the callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    /// The task ran and changed nothing.
    Ok,
    /// The task ran and changed something.
    Changed,
    /// The task failed.
    Failed,
    /// The host could not be reached.
    Unreachable,
    /// The task was skipped (`when:` false, check mode, ...).
    Skipped,
}

/// Final per-host counters from Ansible's play recap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HostStats {
    /// Tasks that ran without change.
    pub ok: u32,
    /// Tasks that changed something.
    pub changed: u32,
    /// Tasks that failed (not ignored).
    pub failures: u32,
    /// Tasks that found the host unreachable.
    pub unreachable: u32,
    /// Tasks skipped.
    pub skipped: u32,
    /// Failures handled by a `rescue:` block.
    pub rescued: u32,
    /// Failures ignored with `ignore_errors`.
    pub ignored: u32,
}

/// One line of callback output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum AnsibleEvent {
    /// The playbook started.
    PlaybookStart {
        /// Playbook file name.
        #[serde(default)]
        playbook: Option<String>,
    },
    /// A play started.
    PlayStart {
        /// Play name.
        #[serde(default)]
        play: Option<String>,
    },
    /// A task (or handler) started.
    TaskStart {
        /// Play name.
        #[serde(default)]
        play: Option<String>,
        /// Task name.
        task: String,
        /// True for handlers.
        #[serde(default)]
        handler: bool,
    },
    /// A task finished on one host.
    HostResult {
        /// Inventory host name.
        host: String,
        /// Task name.
        task: String,
        /// What happened.
        status: TaskStatus,
        /// A failure the playbook ignores (`ignore_errors: true`).
        #[serde(default)]
        ignore_errors: bool,
        /// Message of the result (error message for failures).
        #[serde(default)]
        msg: Option<String>,
        /// Exit code of a command task.
        #[serde(default)]
        rc: Option<i64>,
        /// The `spm_report` variable, when the task printed one with `debug: var=spm_report`.
        #[serde(default)]
        report: Option<Value>,
    },
    /// A play had no hosts to run on.
    NoHosts {
        /// Play name.
        #[serde(default)]
        play: Option<String>,
        /// `matched` (pattern matched nothing) or `remaining` (all hosts failed).
        reason: String,
    },
    /// The final play recap.
    Stats {
        /// Counters per host.
        hosts: BTreeMap<String, HostStats>,
    },
    /// The callback could not encode an event.
    Warning {
        /// What went wrong.
        msg: String,
    },
}

impl AnsibleEvent {
    /// Parse one line of callback output; `None` for anything that is not an event.
    pub fn parse(line: &str) -> Option<Self> {
        let line = line.trim();
        if !line.starts_with('{') {
            return None;
        }
        serde_json::from_str(line).ok()
    }
}

/// Overall state of one host after the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HostStatus {
    /// Every task ran, nothing changed.
    Ok,
    /// Every task ran and at least one changed something.
    Changed,
    /// A task failed.
    Failed,
    /// The host could not be reached.
    Unreachable,
}

/// The result of a playbook on one host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostResult {
    /// Inventory host name.
    pub host: String,
    /// Overall state.
    pub status: HostStatus,
    /// Tasks that ran without change.
    pub ok: u32,
    /// Tasks that changed something.
    pub changed: u32,
    /// Tasks that failed (not ignored, not rescued).
    pub failed: u32,
    /// Tasks that found the host unreachable.
    pub unreachable: u32,
    /// Tasks skipped.
    pub skipped: u32,
    /// Failures handled by `rescue:`.
    pub rescued: u32,
    /// Failures ignored with `ignore_errors`.
    pub ignored: u32,
    /// The task that failed or found the host unreachable.
    pub failed_task: Option<String>,
    /// The message of that failure.
    pub message: Option<String>,
    /// The last `spm_report` the playbook printed for this host (see `scan-compliance.yml`).
    pub report: Option<Value>,
}

impl HostResult {
    /// True when the host failed or was unreachable.
    pub fn is_failed(&self) -> bool {
        matches!(self.status, HostStatus::Failed | HostStatus::Unreachable)
    }
}

#[derive(Debug, Default)]
struct HostTrack {
    counted: HostStats,
    last_failure: Option<(String, Option<String>)>,
    report: Option<Value>,
}

/// Folds events into per-host results.
#[derive(Debug, Default)]
pub struct Collector {
    hosts: BTreeMap<String, HostTrack>,
    stats: Option<BTreeMap<String, HostStats>>,
    /// The task running now (for logs and partial results).
    pub current_task: Option<String>,
}

impl Collector {
    /// An empty collector.
    pub fn new() -> Self {
        Self::default()
    }

    /// True once the final recap arrived (the playbook ran to its end).
    pub fn finished(&self) -> bool {
        self.stats.is_some()
    }

    /// Take one event into account.
    pub fn push(&mut self, event: &AnsibleEvent) {
        match event {
            AnsibleEvent::TaskStart { task, .. } => self.current_task = Some(task.clone()),
            AnsibleEvent::HostResult {
                host,
                task,
                status,
                ignore_errors,
                msg,
                report,
                ..
            } => {
                let track = self.hosts.entry(host.clone()).or_default();
                let c = &mut track.counted;
                match status {
                    TaskStatus::Ok => c.ok += 1,
                    TaskStatus::Changed => {
                        c.ok += 1;
                        c.changed += 1;
                    }
                    TaskStatus::Skipped => c.skipped += 1,
                    TaskStatus::Failed if *ignore_errors => {
                        c.ok += 1;
                        c.ignored += 1;
                    }
                    TaskStatus::Failed => {
                        c.failures += 1;
                        track.last_failure = Some((task.clone(), msg.clone()));
                    }
                    TaskStatus::Unreachable => {
                        c.unreachable += 1;
                        track.last_failure = Some((task.clone(), msg.clone()));
                    }
                }
                if report.is_some() {
                    track.report = report.clone();
                }
            }
            AnsibleEvent::Stats { hosts } => {
                self.stats = Some(hosts.clone());
            }
            AnsibleEvent::PlaybookStart { .. }
            | AnsibleEvent::PlayStart { .. }
            | AnsibleEvent::NoHosts { .. }
            | AnsibleEvent::Warning { .. } => {}
        }
    }

    /// Per-host results, sorted by host name. Counters come from Ansible's recap when the
    /// playbook finished, otherwise from the events seen so far.
    pub fn results(&self) -> Vec<HostResult> {
        let mut names: Vec<&String> = self.hosts.keys().collect();
        if let Some(stats) = &self.stats {
            names.extend(stats.keys());
        }
        names.sort();
        names.dedup();
        names
            .into_iter()
            .map(|name| {
                let track = self.hosts.get(name);
                let stats = self
                    .stats
                    .as_ref()
                    .and_then(|s| s.get(name).copied())
                    .or_else(|| track.map(|t| t.counted))
                    .unwrap_or_default();
                let status = if stats.unreachable > 0 {
                    HostStatus::Unreachable
                } else if stats.failures > 0 {
                    HostStatus::Failed
                } else if stats.changed > 0 {
                    HostStatus::Changed
                } else {
                    HostStatus::Ok
                };
                let failure = match status {
                    HostStatus::Failed | HostStatus::Unreachable => {
                        track.and_then(|t| t.last_failure.clone())
                    }
                    _ => None,
                };
                let (failed_task, message) = match failure {
                    Some((task, msg)) => (Some(task), msg),
                    None => (None, None),
                };
                HostResult {
                    host: name.clone(),
                    status,
                    ok: stats.ok,
                    changed: stats.changed,
                    failed: stats.failures,
                    unreachable: stats.unreachable,
                    skipped: stats.skipped,
                    rescued: stats.rescued,
                    ignored: stats.ignored,
                    failed_task,
                    message,
                    report: track.and_then(|t| t.report.clone()),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUN: &str = r#"{"event": "playbook_start", "playbook": "pb.yml"}
{"event": "play_start", "play": "all"}
{"event": "task_start", "handler": false, "play": "all", "task": "fail on h2"}
{"event": "host_result", "host": "h1", "ignore_errors": false, "msg": "Conditional result was False", "status": "skipped", "task": "fail on h2"}
{"event": "host_result", "host": "h2", "ignore_errors": false, "msg": "boom on h2", "status": "failed", "task": "fail on h2"}
not json at all
{"event": "task_start", "handler": false, "play": "all", "task": "after"}
{"event": "host_result", "host": "bad", "msg": "Connection refused", "status": "unreachable", "task": "after"}
{"event": "host_result", "host": "h1", "msg": "", "rc": 0, "status": "changed", "task": "after", "report": {"n": 1}}
"#;

    fn collect(text: &str) -> Collector {
        let mut c = Collector::new();
        for e in text.lines().filter_map(AnsibleEvent::parse) {
            c.push(&e);
        }
        c
    }

    #[test]
    fn partial_results_come_from_events() {
        let c = collect(RUN);
        assert!(!c.finished());
        let r = c.results();
        let names: Vec<_> = r.iter().map(|h| h.host.as_str()).collect();
        assert_eq!(names, ["bad", "h1", "h2"]);
        assert_eq!(r[0].status, HostStatus::Unreachable);
        assert_eq!(r[0].failed_task.as_deref(), Some("after"));
        assert_eq!(r[1].status, HostStatus::Changed);
        assert_eq!((r[1].ok, r[1].changed, r[1].skipped), (1, 1, 1));
        assert_eq!(r[1].report, Some(serde_json::json!({"n": 1})));
        assert_eq!(r[2].status, HostStatus::Failed);
        assert_eq!(r[2].message.as_deref(), Some("boom on h2"));
        assert_eq!(c.current_task.as_deref(), Some("after"));
    }

    #[test]
    fn recap_wins_over_counted_events() {
        let mut text = RUN.to_string();
        text.push_str(
            r#"{"event": "stats", "hosts": {"h1": {"ok": 5, "changed": 0, "failures": 0, "unreachable": 0, "skipped": 0, "rescued": 0, "ignored": 0}, "h2": {"ok": 1, "failures": 0, "rescued": 1}}}"#,
        );
        let c = collect(&text);
        assert!(c.finished());
        let r = c.results();
        let h1 = r.iter().find(|h| h.host == "h1").unwrap();
        assert_eq!((h1.ok, h1.changed, h1.status), (5, 0, HostStatus::Ok));
        // A rescued failure leaves the host ok and carries no failed task.
        let h2 = r.iter().find(|h| h.host == "h2").unwrap();
        assert_eq!((h2.status, h2.rescued), (HostStatus::Ok, 1));
        assert_eq!(h2.failed_task, None);
    }

    #[test]
    fn ignored_failures_do_not_fail_the_host() {
        let c = collect(
            r#"{"event": "host_result", "host": "h", "ignore_errors": true, "msg": "x", "status": "failed", "task": "t"}"#,
        );
        let r = c.results();
        assert_eq!(
            (r[0].status, r[0].ignored, r[0].failed),
            (HostStatus::Ok, 1, 0)
        );
    }
}
