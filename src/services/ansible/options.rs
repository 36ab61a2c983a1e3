//! Settings of the executor and options of one run.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use super::events::AnsibleEvent;
use super::inventory::InventoryHost;
use super::redact::{REDACTED, is_secret_key, redact_value};

/// Settings of the Ansible executor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnsibleConfig {
    /// The `ansible-playbook` program: a name looked up in `PATH`, or a path.
    pub program: String,
    /// Where relative playbook names are looked up when they do not exist as given.
    pub playbook_dir: Option<PathBuf>,
    /// Timeout of a run when the caller gives none, in seconds.
    pub default_timeout_secs: u64,
    /// After SIGTERM on cancel or timeout, how long to wait before SIGKILL, in seconds.
    pub kill_grace_secs: u64,
}

impl Default for AnsibleConfig {
    fn default() -> Self {
        Self {
            program: "ansible-playbook".into(),
            playbook_dir: Some(PathBuf::from("scripts/ansible")),
            default_timeout_secs: 3600,
            kill_grace_secs: 5,
        }
    }
}

/// What to run a playbook against and how.
///
/// Give either `hosts` (an inventory is generated) or `inventory` (an existing inventory
/// file or directory), not both.
#[derive(Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunOptions {
    /// Hosts for a generated inventory.
    pub hosts: Vec<InventoryHost>,
    /// An existing inventory path, used as is.
    pub inventory: Option<PathBuf>,
    /// Extra variables (`-e @file`); values under secret-looking keys are never logged.
    pub extra_vars: Map<String, Value>,
    /// Check mode (`--check`): report what would change, change nothing.
    pub check: bool,
    /// Show differences (`--diff`).
    pub diff: bool,
    /// Host pattern to limit the run to (`--limit`).
    pub limit: Option<String>,
    /// Parallel hosts (`--forks`).
    pub forks: Option<u32>,
    /// Wall-clock limit in seconds; the configured default when absent.
    pub timeout_secs: Option<u64>,
    /// Connection plugin (`--connection`, e.g. `local`, `ssh`); host vars override it.
    pub connection: Option<String>,
    /// Run only tasks with these tags (`--tags`).
    pub tags: Vec<String>,
    /// Skip tasks with these tags (`--skip-tags`).
    pub skip_tags: Vec<String>,
    /// Extra environment for `ansible-playbook`; values under secret-looking names are
    /// never logged.
    pub env: BTreeMap<String, String>,
    /// Cancel the run: the process group is killed and [`AnsibleError::Cancelled`] returned.
    #[serde(skip)]
    pub cancel: Option<CancellationToken>,
    /// Receives every event as it arrives (for live progress in a caller).
    #[serde(skip)]
    pub progress: Option<UnboundedSender<AnsibleEvent>>,
}

impl fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let env: BTreeMap<&str, &str> = self
            .env
            .iter()
            .map(|(k, v)| {
                let v = if is_secret_key(k) {
                    REDACTED
                } else {
                    v.as_str()
                };
                (k.as_str(), v)
            })
            .collect();
        f.debug_struct("RunOptions")
            .field("hosts", &self.hosts)
            .field("inventory", &self.inventory)
            .field(
                "extra_vars",
                &redact_value(&Value::Object(self.extra_vars.clone())),
            )
            .field("check", &self.check)
            .field("diff", &self.diff)
            .field("limit", &self.limit)
            .field("forks", &self.forks)
            .field("timeout_secs", &self.timeout_secs)
            .field("connection", &self.connection)
            .field("tags", &self.tags)
            .field("skip_tags", &self.skip_tags)
            .field("env", &env)
            .field("cancel", &self.cancel.is_some())
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn options_debug_redacts_secrets() {
        let mut opts = RunOptions::default();
        opts.extra_vars
            .insert("db_password".into(), json!("s3cr3t"));
        opts.extra_vars
            .insert("spm_packages".into(), json!(["openssl"]));
        opts.env.insert("VAULT_TOKEN".into(), "tok123".into());
        let shown = format!("{opts:?}");
        assert!(
            !shown.contains("s3cr3t") && !shown.contains("tok123"),
            "{shown}"
        );
        assert!(shown.contains("openssl"), "{shown}");
    }

    #[test]
    fn options_from_json_reject_unknown_keys() {
        let ok: RunOptions = serde_json::from_value(json!({
            "hosts": [{"name": "h1", "address": "10.0.0.1", "os": "ubuntu"}],
            "check": true, "forks": 3, "timeout_secs": 60
        }))
        .unwrap();
        assert_eq!(ok.hosts[0].name, "h1");
        assert!(serde_json::from_value::<RunOptions>(json!({"hostz": []})).is_err());
    }
}
