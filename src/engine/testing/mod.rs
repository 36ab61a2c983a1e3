//! The test engine: claims queue items, runs the Lua phases on test systems, rolls back
//! and verifies, records evidence, and decides the item's next state.
//!
//! - [`systems`]: which test systems serve an OS (UYUNI groups or the explicit list).
//! - [`context`]: the `ctx` table every phase receives.
//! - [`run`]: one test on one system: phases, rollback strategy, post_rollback, records.
//! - [`worker`]: claims with a lease and heartbeat, per-system locks, outcome of an item.
//! - [`recovery`]: crash recovery at start and `spm test abort`.
//! - [`adapters`]: the service traits over the real UYUNI and Prometheus clients.
//! - [`classify`]: failure class and retry decision (pure).

pub mod adapters;
pub mod classify;
pub mod context;
pub mod recovery;
pub mod run;
pub mod systems;
pub mod worker;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use crate::config::TestConfig;
use crate::host::reload::ScriptHost;
use crate::services::prom::PromClient;
use crate::services::uyuni::UyuniClient;
use crate::store::Store;

pub use worker::ItemOutcome;

/// What a caller wants to see while a test runs (live progress on a terminal).
pub trait Progress: Send + Sync {
    /// A test started on a system.
    fn test_started(&self, _test_id: i64, _advisory: &str, _system: &str) {}
    /// A phase started.
    fn phase_started(&self, _test_id: i64, _phase: &str) {}
    /// A phase ended with `status` (`passed`, `failed`, `skipped`) after `ms`.
    fn phase_finished(&self, _test_id: i64, _phase: &str, _status: &str, _ms: i64, _note: &str) {}
    /// A test ended.
    fn test_finished(&self, _test_id: i64, _status: &str, _reason: Option<&str>) {}
}

/// A [`Progress`] that shows nothing.
#[derive(Debug, Default)]
pub struct Silent;

impl Progress for Silent {}

/// The test engine of one spm process.
pub struct TestEngine {
    pub(crate) store: Store,
    pub(crate) host: Arc<ScriptHost>,
    pub(crate) uyuni: Arc<UyuniClient>,
    pub(crate) prom: Option<Arc<PromClient>>,
    pub(crate) config: TestConfig,
    pub(crate) owner: String,
    pub(crate) progress: Arc<dyn Progress>,
    /// One lock per test system: one test at a time per system in this process (the
    /// database's unique index covers other processes).
    locks: Mutex<HashMap<i64, Arc<tokio::sync::Mutex<()>>>>,
    /// Cancellation of running tests, by test id.
    pub(crate) running: Mutex<HashMap<i64, CancellationToken>>,
    /// Stops the dispatcher.
    pub(crate) shutdown: CancellationToken,
    /// The Ansible executor behind `spm.ansible` in phases, once set.
    pub(crate) ansible: std::sync::OnceLock<Arc<crate::engine::ansible::AnsibleExecutor>>,
}

impl std::fmt::Debug for TestEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestEngine")
            .field("owner", &self.owner)
            .field("prom", &self.prom.is_some())
            .finish_non_exhaustive()
    }
}

impl TestEngine {
    /// Give phases `spm.ansible` over `executor` (once; later calls are ignored).
    pub fn set_ansible(&self, executor: Arc<crate::engine::ansible::AnsibleExecutor>) {
        let _ = self.ansible.set(executor);
    }

    /// An engine over the given services.
    pub fn new(
        store: Store,
        host: Arc<ScriptHost>,
        uyuni: Arc<UyuniClient>,
        prom: Option<Arc<PromClient>>,
        config: TestConfig,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            host,
            uyuni,
            prom,
            config,
            owner: format!(
                "spm-{}-{}",
                std::process::id(),
                uuid::Uuid::new_v4().simple()
            ),
            progress: Arc::new(Silent),
            locks: Mutex::new(HashMap::new()),
            running: Mutex::new(HashMap::new()),
            ansible: std::sync::OnceLock::new(),
            shutdown: CancellationToken::new(),
        })
    }

    /// The same engine reporting progress to `p` (call before sharing it).
    pub fn with_progress(mut self: Arc<Self>, p: Arc<dyn Progress>) -> Arc<Self> {
        if let Some(me) = Arc::get_mut(&mut self) {
            me.progress = p;
        }
        self
    }

    /// This engine's lease owner id.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Stop the dispatcher loop (running tests finish their current step and roll back).
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    pub(crate) fn system_lock(&self, system_id: i64) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = match self.locks.lock() {
            Ok(l) => l,
            Err(p) => p.into_inner(),
        };
        locks
            .entry(system_id)
            .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(())))
            .clone()
    }

    /// Cancel a test this engine runs; false when it does not run it.
    pub fn cancel_local(&self, test_id: i64) -> bool {
        let running = match self.running.lock() {
            Ok(r) => r,
            Err(p) => p.into_inner(),
        };
        match running.get(&test_id) {
            Some(t) => {
                t.cancel();
                true
            }
            None => false,
        }
    }
}
