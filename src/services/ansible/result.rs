//! The outcome of a playbook run.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::events::{HostResult, HostStatus};

/// Overall outcome of a playbook that ran to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Every host succeeded (exit code 0).
    Succeeded,
    /// At least one host failed or was unreachable, or Ansible exited non-zero.
    Failed,
}

/// The result of a playbook run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlaybookResult {
    /// The playbook that ran.
    pub playbook: PathBuf,
    /// Overall outcome.
    pub status: RunStatus,
    /// Exit code of `ansible-playbook` (`None` when killed by a signal).
    pub rc: Option<i32>,
    /// Whether this was a check-mode run.
    pub check: bool,
    /// Per-host results, sorted by host name.
    pub hosts: Vec<HostResult>,
    /// Wall-clock duration in milliseconds.
    pub elapsed_ms: u64,
}

impl PlaybookResult {
    /// Hosts where a task failed.
    pub fn failed_hosts(&self) -> impl Iterator<Item = &HostResult> {
        self.hosts.iter().filter(|h| h.status == HostStatus::Failed)
    }

    /// Hosts that could not be reached.
    pub fn unreachable_hosts(&self) -> impl Iterator<Item = &HostResult> {
        self.hosts
            .iter()
            .filter(|h| h.status == HostStatus::Unreachable)
    }

    /// Number of hosts that failed or were unreachable (what an error budget counts).
    pub fn failed_count(&self) -> usize {
        self.hosts.iter().filter(|h| h.is_failed()).count()
    }

    /// The result of one host.
    pub fn host(&self, name: &str) -> Option<&HostResult> {
        self.hosts.iter().find(|h| h.host == name)
    }
}
