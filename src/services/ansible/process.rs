//! The `ansible-playbook` child process: its own process group, killed as a whole.

use std::time::Duration;

use tokio::process::Child;

/// Kills the child's whole process group when dropped, unless disarmed.
///
/// `ansible-playbook` forks worker processes; killing only the leader would leave them
/// running. The child is started with `process_group(0)`, so its pid is the group id.
#[derive(Debug)]
pub struct GroupGuard {
    pgid: Option<i32>,
}

impl GroupGuard {
    /// Guard the group led by `pid` (the child's pid).
    pub fn new(pid: Option<u32>) -> Self {
        Self {
            pgid: pid.and_then(|p| i32::try_from(p).ok()).filter(|p| *p > 1),
        }
    }

    /// Send `signal` to every process of the group. Errors (no such group) are ignored:
    /// the group may already be gone.
    pub fn signal(&self, signal: i32) {
        if let Some(pgid) = self.pgid {
            // SAFETY: killpg only sends a signal; pgid > 1 is the group this guard created,
            // so it never targets our own group or every process (pgid 0 / -1).
            unsafe {
                libc::killpg(pgid, signal);
            }
        }
    }

    /// Stop guarding: the group ended normally.
    pub fn disarm(&mut self) {
        self.pgid = None;
    }

    /// Terminate the group: SIGTERM, up to `grace` for the leader to exit, then SIGKILL
    /// to whatever is left, and reap the leader. Returns the leader's exit code if any.
    pub async fn terminate(&mut self, child: &mut Child, grace: Duration) -> Option<i32> {
        self.signal(libc::SIGTERM);
        let status = match tokio::time::timeout(grace, child.wait()).await {
            Ok(Ok(status)) => Some(status),
            _ => None,
        };
        // Workers may outlive the leader; the group id stays reserved while any member
        // lives, so this reaches only them.
        self.signal(libc::SIGKILL);
        let status = match status {
            Some(s) => Some(s),
            None => child.wait().await.ok(),
        };
        self.disarm();
        status.and_then(|s| s.code())
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.signal(libc::SIGKILL);
    }
}
