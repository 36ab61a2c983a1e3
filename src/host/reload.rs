//! Hot reload: watch `phases/`, `policies/`, `scripts/`; on change load and validate the
//! whole set in a scratch VM; swap it in (generation + 1) when it is good, otherwise keep
//! the last good set, record the error per file and keep serving.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use notify::RecursiveMode;
use notify_debouncer_full::{DebounceEventResult, new_debouncer};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

use super::contracts::{Contracts, Diagnostic};
use super::scriptset::{LoadReport, ScriptSet, WATCHED_DIRS, scan};
use crate::store::{Store, script_versions};

/// Default debounce of the file watcher.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(100);

/// What the API and dashboard show about reloading.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ReloadStatus {
    /// Generation of the set in service.
    pub generation: u64,
    /// Errors of the last failed reload, by file (empty after a good reload).
    pub last_error_per_file: BTreeMap<String, Vec<String>>,
    /// When the last reload attempt finished.
    pub last_reload_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// The result of one reload attempt.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ReloadOutcome {
    /// A new set is in service.
    Applied {
        /// Its generation.
        generation: u64,
    },
    /// Nothing changed on disk; the set in service stays.
    Unchanged {
        /// Generation still in service.
        generation: u64,
    },
    /// The new files had errors; the last good set stays in service.
    RolledBack {
        /// Generation still in service.
        generation: u64,
        /// The errors, `file:line: message`.
        errors: Vec<String>,
    },
}

/// How to notice changes.
#[derive(Debug, Clone, Copy)]
pub enum WatchMode {
    /// inotify & co. through notify-debouncer-full.
    Notify {
        /// Debounce window.
        debounce: Duration,
    },
    /// Re-scan sizes and modification times (network filesystems).
    Poll {
        /// Scan interval.
        interval: Duration,
    },
}

impl Default for WatchMode {
    fn default() -> Self {
        WatchMode::Notify {
            debounce: DEFAULT_DEBOUNCE,
        }
    }
}

/// Owns the set in service and reloads it.
pub struct ScriptHost {
    root: PathBuf,
    contracts: Contracts,
    current: ArcSwap<ScriptSet>,
    status: Mutex<ReloadStatus>,
    events: broadcast::Sender<ReloadOutcome>,
    reload_lock: tokio::sync::Mutex<()>,
    store: Option<Store>,
}

impl std::fmt::Debug for ScriptHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptHost")
            .field("root", &self.root)
            .field("generation", &self.current.load().generation)
            .finish()
    }
}

/// Why the first load failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The directory could not be read.
    #[error("cannot read scripts under {root}: {source}")]
    Io {
        /// Script root.
        root: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Scripts have errors.
    #[error("scripts under {root} have errors:\n{}", list(.errors))]
    Invalid {
        /// Script root.
        root: PathBuf,
        /// The errors.
        errors: Vec<Diagnostic>,
    },
}

fn list(d: &[Diagnostic]) -> String {
    d.iter()
        .map(|d| format!("  {d}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Keeps a watcher alive; dropping it stops watching.
pub struct WatchHandle {
    _debouncer: Option<Box<dyn std::any::Any + Send>>,
    poller: Option<JoinHandle<()>>,
    task: JoinHandle<()>,
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(p) = &self.poller {
            p.abort();
        }
    }
}

impl std::fmt::Debug for WatchHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchHandle").finish_non_exhaustive()
    }
}

impl ScriptHost {
    /// Load the scripts under `root`; refuses to start on errors (nothing good to serve yet).
    pub async fn open(root: &Path, contracts: Contracts) -> Result<Arc<Self>, OpenError> {
        Self::open_with_store(root, contracts, None).await
    }

    /// Like [`ScriptHost::open`], also recording every set put in service in the
    /// `script_versions` table of `store`.
    pub async fn open_with_store(
        root: &Path,
        contracts: Contracts,
        store: Option<Store>,
    ) -> Result<Arc<Self>, OpenError> {
        let report = ScriptSet::load_dir(root, &contracts, 1)
            .await
            .map_err(|source| OpenError::Io {
                root: root.to_path_buf(),
                source,
            })?;
        if !report.is_ok() {
            return Err(OpenError::Invalid {
                root: root.to_path_buf(),
                errors: report.errors().cloned().collect(),
            });
        }
        let (events, _) = broadcast::channel(64);
        record_versions(store.as_ref(), &report.set).await;
        Ok(Arc::new(Self {
            root: root.to_path_buf(),
            contracts,
            status: Mutex::new(ReloadStatus {
                generation: report.set.generation,
                last_error_per_file: BTreeMap::new(),
                last_reload_at: Some(chrono::Utc::now()),
            }),
            current: ArcSwap::from_pointee(report.set),
            events,
            reload_lock: tokio::sync::Mutex::new(()),
            store,
        }))
    }

    /// The set in service; a run keeps this `Arc` until it ends.
    pub fn current(&self) -> Arc<ScriptSet> {
        self.current.load_full()
    }

    /// Reload status (for the API).
    pub fn status(&self) -> ReloadStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Reload outcomes as they happen.
    pub fn subscribe(&self) -> broadcast::Receiver<ReloadOutcome> {
        self.events.subscribe()
    }

    /// The contracts scripts are validated against (also for validating candidates).
    pub fn contracts(&self) -> &Contracts {
        &self.contracts
    }

    /// The script root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Load and validate everything now; swap on success, keep the last good set otherwise.
    pub async fn reload(&self) -> ReloadOutcome {
        let _guard = self.reload_lock.lock().await;
        let current = self.current.load_full();
        let next_gen = current.generation + 1;
        let outcome = match ScriptSet::load_dir(&self.root, &self.contracts, next_gen).await {
            Err(e) => {
                let msg = format!("cannot read scripts under {}: {e}", self.root.display());
                tracing::error!(target: "spm::reload", error = %msg, "script reload failed; keeping generation {}", current.generation);
                self.record_failure(
                    current.generation,
                    BTreeMap::from([(String::from("(root)"), vec![msg.clone()])]),
                );
                ReloadOutcome::RolledBack {
                    generation: current.generation,
                    errors: vec![msg],
                }
            }
            Ok(report) => self.apply(current, report),
        };
        if matches!(outcome, ReloadOutcome::Applied { .. }) {
            record_versions(self.store.as_ref(), &self.current()).await;
        }
        let _ = self.events.send(outcome.clone());
        outcome
    }

    fn apply(&self, current: Arc<ScriptSet>, report: LoadReport) -> ReloadOutcome {
        if !report.is_ok() {
            let mut per_file: BTreeMap<String, Vec<String>> = BTreeMap::new();
            let mut errors = Vec::new();
            for d in report.errors() {
                tracing::error!(target: "spm::reload", file = %d.path, line = d.line, error = %d.message, "script error; keeping generation {}", current.generation);
                per_file
                    .entry(d.path.clone())
                    .or_default()
                    .push(d.to_string());
                errors.push(d.to_string());
            }
            self.record_failure(current.generation, per_file);
            return ReloadOutcome::RolledBack {
                generation: current.generation,
                errors,
            };
        }
        if report.set.fingerprint() == current.fingerprint() {
            if let Ok(mut s) = self.status.lock() {
                s.last_error_per_file.clear();
                s.last_reload_at = Some(chrono::Utc::now());
            }
            return ReloadOutcome::Unchanged {
                generation: current.generation,
            };
        }
        let generation = report.set.generation;
        self.current.store(Arc::new(report.set));
        if let Ok(mut s) = self.status.lock() {
            s.generation = generation;
            s.last_error_per_file.clear();
            s.last_reload_at = Some(chrono::Utc::now());
        }
        tracing::info!(target: "spm::reload", generation, "scripts reloaded");
        ReloadOutcome::Applied { generation }
    }

    fn record_failure(&self, generation: u64, per_file: BTreeMap<String, Vec<String>>) {
        if let Ok(mut s) = self.status.lock() {
            s.generation = generation;
            s.last_error_per_file = per_file;
            s.last_reload_at = Some(chrono::Utc::now());
        }
    }

    /// Start watching; reloads run on the current tokio runtime. Keep the handle alive.
    pub fn watch(self: &Arc<Self>, mode: WatchMode) -> Result<WatchHandle, notify::Error> {
        let (tx, mut rx) = mpsc::unbounded_channel::<()>();
        let mut poller = None;
        let debouncer: Option<Box<dyn std::any::Any + Send>> = match mode {
            WatchMode::Notify { debounce } => {
                let tx = tx.clone();
                let mut d = new_debouncer(
                    debounce,
                    None,
                    move |res: DebounceEventResult| match res {
                        Ok(events) => {
                            if events.iter().any(|e| relevant(&e.event)) {
                                let _ = tx.send(());
                            }
                        }
                        Err(errors) => {
                            for e in errors {
                                tracing::error!(target: "spm::reload", error = %e, "file watcher error");
                            }
                            let _ = tx.send(());
                        }
                    },
                )?;
                for dir in WATCHED_DIRS {
                    let p = self.root.join(dir);
                    if p.is_dir() {
                        d.watch(&p, RecursiveMode::Recursive)?;
                    }
                }
                Some(Box::new(d))
            }
            WatchMode::Poll { interval } => {
                let root = self.root.clone();
                let tx = tx.clone();
                // Baseline now, so edits made right after `watch` returns are seen.
                let mut last = poll_fingerprint(&root);
                poller = Some(tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(interval).await;
                        let now = poll_fingerprint(&root);
                        if now != last {
                            last = now;
                            if tx.send(()).is_err() {
                                return;
                            }
                        }
                    }
                }));
                None
            }
        };
        drop(tx);
        let weak = Arc::downgrade(self);
        let task = tokio::spawn(async move {
            while rx.recv().await.is_some() {
                while rx.try_recv().is_ok() {}
                let Some(host) = weak.upgrade() else { return };
                host.reload().await;
            }
        });
        Ok(WatchHandle {
            _debouncer: debouncer,
            poller,
            task,
        })
    }
}

/// Write the set's (path, hash, generation) rows; a failure is logged, never fatal.
async fn record_versions(store: Option<&Store>, set: &ScriptSet) {
    let Some(store) = store else { return };
    let generation = set.generation;
    let files: Vec<(String, String)> = set
        .files
        .values()
        .map(|f| (f.path.clone(), f.sha256.clone()))
        .collect();
    if let Err(e) = store
        .write(move |tx| script_versions::record_set(tx, generation, &files))
        .await
    {
        tracing::error!(target: "spm::reload", error = %e, generation, "cannot record script versions");
    }
}

fn relevant(e: &notify::Event) -> bool {
    use notify::EventKind;
    use notify::event::AccessKind;
    match e.kind {
        EventKind::Access(AccessKind::Close(_)) => {}
        EventKind::Access(_) => return false,
        _ => {}
    }
    e.paths
        .iter()
        .any(|p| p.extension().is_some_and(|x| x == "lua") || p.extension().is_none())
}

/// (path, size, mtime) of every script: changes when any file is added, removed or edited.
fn poll_fingerprint(root: &Path) -> Vec<(String, u64, Option<SystemTime>)> {
    scan(root)
        .unwrap_or_default()
        .into_iter()
        .map(|(rel, abs)| {
            let meta = std::fs::metadata(&abs).ok();
            (
                rel,
                meta.as_ref().map(|m| m.len()).unwrap_or(0),
                meta.and_then(|m| m.modified().ok()),
            )
        })
        .collect()
}
