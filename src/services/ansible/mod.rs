//! Ansible executor: runs the real `ansible-playbook` and returns per-host results.
//!
//! [`AnsibleRunner::run_playbook`] writes a private work directory (mode 0700) holding the
//! generated inventory, the extra vars (passed as `-e @file`, never on a command line or
//! through a shell) and spm's callback plugin (`scripts/ansible/callback/spm_jsonl.py`,
//! embedded in the binary). It starts `ansible-playbook` without a shell, in its own
//! process group, reads one JSON event per line from its stdout, logs per-task progress
//! with `tracing` as it goes, and folds the events into a [`PlaybookResult`].
//!
//! Cancelling (the [`RunOptions::cancel`] token, or dropping the future) and timeouts kill
//! the whole process group, so no worker survives.

mod error;
mod events;
mod inventory;
mod options;
mod process;
mod redact;
mod result;
mod runner;
mod workdir;

pub use error::{AnsibleError, INSTALL_HINT};
pub use events::{AnsibleEvent, Collector, HostResult, HostStats, HostStatus, TaskStatus};
pub use inventory::{InventoryHost, render as render_inventory};
pub use options::{AnsibleConfig, RunOptions};
pub use redact::{REDACTED, is_secret_key, redact_value};
pub use result::{PlaybookResult, RunStatus};
pub use runner::AnsibleRunner;

/// The callback plugin shipped in `scripts/ansible/callback/`, embedded at build time.
pub const CALLBACK_PLUGIN: &str = include_str!("../../../scripts/ansible/callback/spm_jsonl.py");
/// Name of the callback plugin (its file stem and `CALLBACK_NAME`).
pub const CALLBACK_NAME: &str = "spm_jsonl";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_plugin_is_embedded() {
        assert!(CALLBACK_PLUGIN.contains("CALLBACK_NAME = \"spm_jsonl\""));
    }
}
