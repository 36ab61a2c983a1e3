//! Service traits the Lua bindings call. Implementations live with the services (UYUNI
//! client, Prometheus, snapshots, Ansible, notifications); this module knows only the shape.
//!
//! A binding whose service is `None` raises a `config` error ("spm.prom is not configured"),
//! never a fake success.

use std::fmt;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::errors::ScriptError;
use crate::store::Store;

/// The future every service method returns.
pub type ServiceFuture<'a, T> = BoxFuture<'a, Result<T, ScriptError>>;

/// Options of [`UyuniService::script_run`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptRunOpts {
    /// Seconds UYUNI may take before the action counts as failed.
    pub timeout: Option<u64>,
    /// Remote user (default root).
    pub user: Option<String>,
    /// Remote group (default root).
    pub group: Option<String>,
}

/// Result of a remote script.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScriptRunResult {
    /// Exit status of the script.
    pub exit_code: i64,
    /// Captured standard output.
    pub stdout: String,
    /// Captured standard error.
    pub stderr: String,
}

/// Result of applying errata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrataApplyResult {
    /// UYUNI action id.
    pub action_id: i64,
    /// Per-system outcome as UYUNI reported it.
    pub results: Value,
}

/// UYUNI operations phases need.
pub trait UyuniService: Send + Sync {
    /// Details of one system.
    fn system_get(&self, system_id: i64) -> ServiceFuture<'_, Value>;
    /// Run a shell script on a system and wait for its result.
    fn script_run(
        &self,
        system_id: i64,
        script: String,
        opts: ScriptRunOpts,
    ) -> ServiceFuture<'_, ScriptRunResult>;
    /// Apply advisories to systems and wait for the action.
    fn errata_apply(
        &self,
        system_ids: Vec<i64>,
        advisories: Vec<String>,
        opts: Value,
    ) -> ServiceFuture<'_, ErrataApplyResult>;
    /// Installed versions of the named packages on a system.
    fn packages_installed(&self, system_id: i64, names: Vec<String>) -> ServiceFuture<'_, Value>;
    /// Reboot a system and wait until it is back (per `opts`).
    fn reboot(&self, system_id: i64, opts: Value) -> ServiceFuture<'_, Value>;
    /// Packages an advisory updates.
    fn errata_packages(&self, advisory: String) -> ServiceFuture<'_, Value>;
}

/// Prometheus queries.
pub trait PromService: Send + Sync {
    /// Instant query.
    fn query(&self, expr: String) -> ServiceFuture<'_, Value>;
    /// Range query; times are Unix seconds, step in seconds.
    fn query_range(
        &self,
        expr: String,
        start: f64,
        end: f64,
        step: f64,
    ) -> ServiceFuture<'_, Value>;
}

/// Filesystem snapshots of a system.
pub trait SnapshotService: Send + Sync {
    /// Take a snapshot; returns at least `{id = ...}`.
    fn create(&self, system_id: i64, opts: Value) -> ServiceFuture<'_, Value>;
    /// Roll the system back to a snapshot.
    fn undo(&self, system_id: i64, snapshot_id: String, opts: Value) -> ServiceFuture<'_, Value>;
    /// Delete a snapshot.
    fn delete(&self, system_id: i64, snapshot_id: String) -> ServiceFuture<'_, Value>;
}

/// Ansible playbooks.
pub trait AnsibleService: Send + Sync {
    /// Run a playbook (path relative to `scripts/ansible`).
    fn run_playbook(&self, path: String, opts: Value) -> ServiceFuture<'_, Value>;
}

/// Notifications (mail, webhooks).
pub trait NotifyService: Send + Sync {
    /// Send a message described by a table (`{to=, subject=, body=, channel=...}`).
    fn send(&self, message: Value) -> ServiceFuture<'_, Value>;
}

/// Everything a VM may be wired to. Absent services make their bindings fail clearly.
#[derive(Clone, Default)]
pub struct Services {
    /// UYUNI client.
    pub uyuni: Option<Arc<dyn UyuniService>>,
    /// Prometheus client.
    pub prom: Option<Arc<dyn PromService>>,
    /// Snapshot driver.
    pub snapshot: Option<Arc<dyn SnapshotService>>,
    /// Ansible runner.
    pub ansible: Option<Arc<dyn AnsibleService>>,
    /// Notifier.
    pub notify: Option<Arc<dyn NotifyService>>,
    /// Database for `spm.db`.
    pub store: Option<Store>,
    /// Per-run recorder behind `spm.test.record` (test phases only).
    pub recorder: Option<Arc<crate::host::api::test::RunRecorder>>,
}

impl fmt::Debug for Services {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Services")
            .field("uyuni", &self.uyuni.is_some())
            .field("prom", &self.prom.is_some())
            .field("snapshot", &self.snapshot.is_some())
            .field("ansible", &self.ansible.is_some())
            .field("notify", &self.notify.is_some())
            .field("store", &self.store.is_some())
            .field("recorder", &self.recorder.is_some())
            .finish()
    }
}

/// The error a binding raises when its service is absent.
pub fn not_configured(module: &str) -> ScriptError {
    ScriptError::config(format!(
        "{module} is not configured (no service is wired to it in this spm instance)"
    ))
}
