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

mod events;
mod inventory;
mod process;
mod redact;

use std::collections::{BTreeMap, VecDeque};
use std::ffi::OsString;
use std::fmt;
use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

pub use events::{AnsibleEvent, Collector, HostResult, HostStats, HostStatus, TaskStatus};
pub use inventory::{InventoryHost, render as render_inventory};
pub use redact::{REDACTED, is_secret_key, redact_value};

use process::GroupGuard;

/// The callback plugin shipped in `scripts/ansible/callback/`, embedded at build time.
pub const CALLBACK_PLUGIN: &str = include_str!("../../../scripts/ansible/callback/spm_jsonl.py");
/// Name of the callback plugin (its file stem and `CALLBACK_NAME`).
pub const CALLBACK_NAME: &str = "spm_jsonl";
/// What to install when `ansible-playbook` is missing.
pub const INSTALL_HINT: &str = "install ansible-core (Debian/Ubuntu: apt-get install -y ansible-core; or pip install ansible-core)";

/// Environment variables the runner sets itself; callers may not override them.
const RESERVED_ENV: &[&str] = &[
    "ANSIBLE_STDOUT_CALLBACK",
    "ANSIBLE_CALLBACK_PLUGINS",
    "ANSIBLE_INVENTORY_ENABLED",
];
/// Lines of stderr kept for error messages.
const STDERR_TAIL_LINES: usize = 30;
/// How long to keep reading stdout after `ansible-playbook` exited.
const DRAIN: Duration = Duration::from_secs(2);
/// Tracing target of per-task progress.
const LOG_TARGET: &str = "spm::ansible";

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
            .field("env", &env)
            .field("cancel", &self.cancel.is_some())
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

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

/// Why a playbook could not be run to its end.
#[derive(Debug, thiserror::Error)]
pub enum AnsibleError {
    /// `ansible-playbook` is not installed (not found in `PATH`).
    #[error("{program} not found (PATH searched: {path}); {INSTALL_HINT}")]
    NotInstalled {
        /// The program looked for.
        program: String,
        /// The search path used.
        path: String,
    },
    /// The playbook file does not exist.
    #[error("playbook {} not found", path.display())]
    PlaybookNotFound {
        /// The path given.
        path: PathBuf,
    },
    /// An option is invalid; nothing was run.
    #[error("invalid ansible option {what}: {reason}")]
    InvalidOption {
        /// Which option (e.g. `hosts[2].address`).
        what: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A local I/O operation failed.
    #[error("{context}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// `ansible-playbook` ended without finishing the playbook (syntax error, bad option,
    /// crash, killed from outside).
    #[error("ansible-playbook {} stopped before the end of the playbook (exit code {}): {stderr}",
        playbook.display(), rc.map_or_else(|| "none".to_string(), |c| c.to_string()))]
    Aborted {
        /// The playbook.
        playbook: PathBuf,
        /// Exit code, `None` when killed by a signal.
        rc: Option<i32>,
        /// The last lines of its stderr.
        stderr: String,
    },
    /// The run exceeded its timeout; the process group was killed.
    #[error("ansible-playbook {} timed out after {}s and was killed", partial.playbook.display(), after.as_secs())]
    TimedOut {
        /// The timeout.
        after: Duration,
        /// Results of the hosts seen before the kill.
        partial: Box<PlaybookResult>,
    },
    /// The run was cancelled; the process group was killed.
    #[error("ansible-playbook {} was cancelled and killed", partial.playbook.display())]
    Cancelled {
        /// Results of the hosts seen before the kill.
        partial: Box<PlaybookResult>,
    },
}

impl AnsibleError {
    /// A short machine-readable kind (for `spm.try` in Lua and for JSON output).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NotInstalled { .. } => "not_installed",
            Self::PlaybookNotFound { .. } => "not_found",
            Self::InvalidOption { .. } => "invalid",
            Self::Io { .. } => "io",
            Self::Aborted { .. } => "aborted",
            Self::TimedOut { .. } => "timeout",
            Self::Cancelled { .. } => "cancelled",
        }
    }

    /// Whether trying again unchanged may succeed.
    pub fn retryable(&self) -> bool {
        matches!(self, Self::TimedOut { .. } | Self::Io { .. })
    }

    /// Results gathered before a timeout or cancel.
    pub fn partial(&self) -> Option<&PlaybookResult> {
        match self {
            Self::TimedOut { partial, .. } | Self::Cancelled { partial } => Some(partial),
            _ => None,
        }
    }
}

fn invalid(what: &str, reason: impl Into<String>) -> AnsibleError {
    AnsibleError::InvalidOption {
        what: what.into(),
        reason: reason.into(),
    }
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> AnsibleError {
    let context = context.into();
    move |source| AnsibleError::Io { context, source }
}

/// Runs playbooks with the real `ansible-playbook`. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct AnsibleRunner {
    config: AnsibleConfig,
}

/// How the child ended, as seen by the select loop.
enum End {
    Exited(std::io::Result<ExitStatus>),
    Cancelled,
    TimedOut(Duration),
}

impl AnsibleRunner {
    /// A runner with the given settings.
    pub fn new(config: AnsibleConfig) -> Self {
        Self { config }
    }

    /// The settings in use.
    pub fn config(&self) -> &AnsibleConfig {
        &self.config
    }

    /// Find the playbook: as given, else under the configured playbook directory.
    pub fn resolve_playbook(&self, path: &Path) -> Result<PathBuf, AnsibleError> {
        let mut candidates = vec![path.to_path_buf()];
        if path.is_relative()
            && let Some(dir) = &self.config.playbook_dir
        {
            candidates.push(dir.join(path));
        }
        for candidate in candidates {
            if candidate.is_file() {
                return candidate.canonicalize().map_err(io_err(format!(
                    "resolving playbook path {}",
                    candidate.display()
                )));
            }
        }
        Err(AnsibleError::PlaybookNotFound {
            path: path.to_path_buf(),
        })
    }

    /// Find `ansible-playbook` in the `PATH` the child will get.
    fn resolve_program(&self, env: &BTreeMap<String, String>) -> Result<PathBuf, AnsibleError> {
        let program = &self.config.program;
        let path_var: OsString = env
            .get("PATH")
            .map(OsString::from)
            .or_else(|| std::env::var_os("PATH"))
            .unwrap_or_default();
        let is_executable = |p: &Path| {
            p.metadata()
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        };
        if program.contains('/') {
            let p = PathBuf::from(program);
            if is_executable(&p) {
                return Ok(p);
            }
        } else {
            for dir in std::env::split_paths(&path_var) {
                let p = dir.join(program);
                if is_executable(&p) {
                    return Ok(p);
                }
            }
        }
        Err(AnsibleError::NotInstalled {
            program: program.clone(),
            path: path_var.to_string_lossy().into_owned(),
        })
    }

    /// Run `playbook` with `opts`.
    ///
    /// Returns `Ok` when the playbook ran to its end, whatever happened on the hosts (see
    /// [`PlaybookResult::status`] and [`PlaybookResult::failed_count`]); `Err` when it could
    /// not start, stopped early, timed out or was cancelled.
    pub async fn run_playbook(
        &self,
        playbook: impl AsRef<Path>,
        opts: RunOptions,
    ) -> Result<PlaybookResult, AnsibleError> {
        let playbook = self.resolve_playbook(playbook.as_ref())?;
        let timeout = self.check_options(&opts)?;
        let program = self.resolve_program(&opts.env)?;
        let inventory_doc = if opts.hosts.is_empty() {
            None
        } else {
            Some(inventory::render(&opts.hosts)?)
        };

        let work = WorkDir::create()?;
        let callback_dir = work.path().join("callback");
        DirBuilder::new()
            .mode(0o700)
            .create(&callback_dir)
            .map_err(io_err("creating the callback plugin directory"))?;
        write_private(
            &callback_dir.join(format!("{CALLBACK_NAME}.py")),
            CALLBACK_PLUGIN.as_bytes(),
        )?;
        let inventory_path = match (&inventory_doc, &opts.inventory) {
            (Some(doc), _) => {
                let p = work.path().join("inventory.json");
                write_private(&p, doc.to_string().as_bytes())?;
                p
            }
            (None, Some(path)) => path.clone(),
            (None, None) => return Err(invalid("hosts", "give hosts or an inventory path")),
        };
        let extra_path = work.path().join("extra-vars.json");
        write_private(
            &extra_path,
            Value::Object(opts.extra_vars.clone())
                .to_string()
                .as_bytes(),
        )?;

        let mut cmd = Command::new(&program);
        cmd.arg(&playbook)
            .arg("-i")
            .arg(&inventory_path)
            .arg("-e")
            .arg(format!("@{}", extra_path.display()));
        if opts.check {
            cmd.arg("--check");
        }
        if opts.diff {
            cmd.arg("--diff");
        }
        if let Some(limit) = &opts.limit {
            cmd.arg(format!("--limit={limit}"));
        }
        if let Some(forks) = opts.forks {
            cmd.arg(format!("--forks={forks}"));
        }
        if let Some(connection) = &opts.connection {
            cmd.arg(format!("--connection={connection}"));
        }
        cmd.envs(&opts.env);
        if !opts.env.contains_key("ANSIBLE_PYTHON_INTERPRETER") {
            cmd.env("ANSIBLE_PYTHON_INTERPRETER", "auto_silent");
        }
        cmd.env("ANSIBLE_STDOUT_CALLBACK", CALLBACK_NAME)
            .env("ANSIBLE_CALLBACK_PLUGINS", &callback_dir)
            .env("ANSIBLE_NOCOLOR", "1")
            .env("ANSIBLE_FORCE_COLOR", "0")
            .env("ANSIBLE_RETRY_FILES_ENABLED", "0")
            .env("ANSIBLE_LOCALHOST_WARNING", "0")
            .env("PYTHONUNBUFFERED", "1");
        if inventory_doc.is_some() {
            cmd.env("ANSIBLE_INVENTORY_ENABLED", "yaml");
            cmd.env("ANSIBLE_INVENTORY_UNPARSED_FAILED", "1");
        }
        if let Some(dir) = playbook.parent() {
            cmd.current_dir(dir);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);

        let shown_vars = redact_value(&Value::Object(opts.extra_vars.clone()));
        tracing::info!(
            target: LOG_TARGET,
            playbook = %playbook.display(),
            hosts = opts.hosts.len(),
            inventory = ?opts.inventory,
            check = opts.check,
            limit = ?opts.limit,
            extra_vars = %shown_vars,
            "running ansible-playbook"
        );

        let started = Instant::now();
        let mut child = cmd.spawn().map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                AnsibleError::NotInstalled {
                    program: program.display().to_string(),
                    path: opts.env.get("PATH").cloned().unwrap_or_default(),
                }
            } else {
                AnsibleError::Io {
                    context: format!("starting {}", program.display()),
                    source: e,
                }
            }
        })?;
        let mut guard = GroupGuard::new(child.id());
        let stdout = child.stdout.take();
        let mut stderr_task = child
            .stderr
            .take()
            .map(|s| AbortOnDrop(tokio::spawn(read_stderr(s))));

        let cancel = opts.cancel.clone().unwrap_or_default();
        let mut collector = Collector::new();
        let end = {
            let progress = opts.progress.as_ref();
            let collector = &mut collector;
            let child = &mut child;
            let drive = async move {
                let Some(stdout) = stdout else {
                    return child.wait().await;
                };
                let mut reader = BufReader::new(stdout);
                let mut buf = Vec::new();
                let mut eof = false;
                let status = loop {
                    tokio::select! {
                        n = reader.read_until(b'\n', &mut buf), if !eof => {
                            match n {
                                Ok(0) | Err(_) => eof = true,
                                Ok(_) => {
                                    handle_line(&buf, collector, progress);
                                    buf.clear();
                                }
                            }
                        }
                        status = child.wait() => break status,
                    }
                };
                if !eof {
                    let _ = tokio::time::timeout(DRAIN, async {
                        while let Ok(n) = reader.read_until(b'\n', &mut buf).await {
                            if n == 0 {
                                break;
                            }
                            handle_line(&buf, collector, progress);
                            buf.clear();
                        }
                    })
                    .await;
                }
                if !buf.is_empty() {
                    handle_line(&buf, collector, progress);
                }
                status
            };
            tokio::select! {
                status = drive => End::Exited(status),
                () = cancel.cancelled() => End::Cancelled,
                () = tokio::time::sleep(timeout) => End::TimedOut(timeout),
            }
        };

        let grace = Duration::from_secs(self.config.kill_grace_secs);
        let partial = |rc: Option<i32>, collector: &Collector| {
            Box::new(PlaybookResult {
                playbook: playbook.clone(),
                status: RunStatus::Failed,
                rc,
                check: opts.check,
                hosts: collector.results(),
                elapsed_ms: elapsed_ms(started),
            })
        };
        let status = match end {
            End::Exited(Ok(status)) => {
                guard.disarm();
                status
            }
            End::Exited(Err(e)) => {
                guard.terminate(&mut child, grace).await;
                return Err(io_err("waiting for ansible-playbook")(e));
            }
            End::Cancelled => {
                let rc = guard.terminate(&mut child, grace).await;
                tracing::warn!(target: LOG_TARGET, playbook = %playbook.display(),
                    task = ?collector.current_task, "ansible-playbook cancelled; process group killed");
                return Err(AnsibleError::Cancelled {
                    partial: partial(rc, &collector),
                });
            }
            End::TimedOut(after) => {
                let rc = guard.terminate(&mut child, grace).await;
                tracing::warn!(target: LOG_TARGET, playbook = %playbook.display(),
                    task = ?collector.current_task, timeout_secs = after.as_secs(),
                    "ansible-playbook timed out; process group killed");
                return Err(AnsibleError::TimedOut {
                    after,
                    partial: partial(rc, &collector),
                });
            }
        };
        let stderr = match &mut stderr_task {
            Some(task) => match tokio::time::timeout(DRAIN, &mut task.0).await {
                Ok(Ok(tail)) => tail,
                _ => String::new(),
            },
            None => String::new(),
        };
        let rc = status.code();
        if !collector.finished() {
            return Err(AnsibleError::Aborted {
                playbook,
                rc,
                stderr,
            });
        }
        let hosts = collector.results();
        let any_failed = hosts.iter().any(HostResult::is_failed);
        let result = PlaybookResult {
            playbook,
            status: if rc == Some(0) && !any_failed {
                RunStatus::Succeeded
            } else {
                RunStatus::Failed
            },
            rc,
            check: opts.check,
            hosts,
            elapsed_ms: elapsed_ms(started),
        };
        tracing::info!(
            target: LOG_TARGET,
            playbook = %result.playbook.display(),
            status = ?result.status,
            rc = ?result.rc,
            hosts = result.hosts.len(),
            failed = result.failed_hosts().count(),
            unreachable = result.unreachable_hosts().count(),
            elapsed_ms = result.elapsed_ms,
            "ansible-playbook finished"
        );
        Ok(result)
    }

    /// Validate options that become command-line arguments; returns the timeout.
    fn check_options(&self, opts: &RunOptions) -> Result<Duration, AnsibleError> {
        if !opts.hosts.is_empty() && opts.inventory.is_some() {
            return Err(invalid(
                "inventory",
                "give hosts or an inventory path, not both",
            ));
        }
        if opts.hosts.is_empty() && opts.inventory.is_none() {
            return Err(invalid("hosts", "give hosts or an inventory path"));
        }
        if let Some(path) = &opts.inventory
            && !path.exists()
        {
            return Err(invalid(
                "inventory",
                format!("{} does not exist", path.display()),
            ));
        }
        if let Some(limit) = &opts.limit
            && (limit.trim().is_empty() || limit.chars().any(char::is_control))
        {
            return Err(invalid("limit", format!("{limit:?} is not a host pattern")));
        }
        if let Some(forks) = opts.forks
            && !(1..=1000).contains(&forks)
        {
            return Err(invalid(
                "forks",
                format!("{forks} is not between 1 and 1000"),
            ));
        }
        if let Some(connection) = &opts.connection {
            let ok = !connection.is_empty()
                && connection
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.'));
            if !ok {
                return Err(invalid(
                    "connection",
                    format!("{connection:?} is not a connection plugin name"),
                ));
            }
        }
        for key in opts.env.keys() {
            if !inventory::is_identifier(key) {
                return Err(invalid(
                    "env",
                    format!("{key:?} is not an environment variable name"),
                ));
            }
            if RESERVED_ENV.contains(&key.as_str()) {
                return Err(invalid(
                    "env",
                    format!("{key} is set by spm and cannot be overridden"),
                ));
            }
        }
        for key in opts.extra_vars.keys() {
            if !inventory::is_identifier(key) {
                return Err(invalid(
                    "extra_vars",
                    format!("{key:?} is not a valid variable name"),
                ));
            }
        }
        let secs = opts
            .timeout_secs
            .unwrap_or(self.config.default_timeout_secs);
        if secs == 0 {
            return Err(invalid("timeout_secs", "must be at least 1 second"));
        }
        Ok(Duration::from_secs(secs))
    }
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Parse one stdout line, log it, feed the collector and the progress channel.
fn handle_line(
    raw: &[u8],
    collector: &mut Collector,
    progress: Option<&UnboundedSender<AnsibleEvent>>,
) {
    let line = String::from_utf8_lossy(raw);
    let line = line.trim_end();
    if line.is_empty() {
        return;
    }
    let Some(event) = AnsibleEvent::parse(line) else {
        tracing::debug!(target: LOG_TARGET, line, "ansible-playbook output");
        return;
    };
    log_event(&event);
    collector.push(&event);
    if let Some(tx) = progress {
        let _ = tx.send(event);
    }
}

fn log_event(event: &AnsibleEvent) {
    match event {
        AnsibleEvent::PlaybookStart { .. } | AnsibleEvent::Stats { .. } => {}
        AnsibleEvent::PlayStart { play } => {
            tracing::info!(target: LOG_TARGET, play = play.as_deref().unwrap_or(""), "play started");
        }
        AnsibleEvent::TaskStart { task, handler, .. } => {
            tracing::info!(target: LOG_TARGET, task = task.as_str(), handler, "task started");
        }
        AnsibleEvent::HostResult {
            host,
            task,
            status,
            ignore_errors,
            msg,
            ..
        } => {
            let msg = msg.as_deref().unwrap_or("");
            match status {
                TaskStatus::Failed if !ignore_errors => {
                    tracing::warn!(target: LOG_TARGET, host = host.as_str(), task = task.as_str(), msg, "task failed");
                }
                TaskStatus::Unreachable => {
                    tracing::warn!(target: LOG_TARGET, host = host.as_str(), task = task.as_str(), msg, "host unreachable");
                }
                TaskStatus::Changed => {
                    tracing::info!(target: LOG_TARGET, host = host.as_str(), task = task.as_str(), "changed");
                }
                _ => {
                    tracing::debug!(target: LOG_TARGET, host = host.as_str(), task = task.as_str(), status = ?status, "task result");
                }
            }
        }
        AnsibleEvent::NoHosts { play, reason } => {
            tracing::warn!(target: LOG_TARGET, play = play.as_deref().unwrap_or(""), reason = reason.as_str(), "no hosts to run on");
        }
        AnsibleEvent::Warning { msg } => {
            tracing::warn!(target: LOG_TARGET, msg = msg.as_str(), "callback warning");
        }
    }
}

/// Log stderr lines as they come and return the last few for error messages.
async fn read_stderr(stderr: impl AsyncRead + Unpin) -> String {
    let mut reader = BufReader::new(stderr);
    let mut buf = Vec::new();
    let mut tail = VecDeque::with_capacity(STDERR_TAIL_LINES);
    while let Ok(n) = reader.read_until(b'\n', &mut buf).await {
        if n == 0 {
            break;
        }
        let line = String::from_utf8_lossy(&buf).trim_end().to_string();
        buf.clear();
        if line.is_empty() {
            continue;
        }
        if line.contains("ERROR") || line.contains("[WARNING]") {
            tracing::warn!(target: LOG_TARGET, line = line.as_str(), "ansible-playbook stderr");
        } else {
            tracing::debug!(target: LOG_TARGET, line = line.as_str(), "ansible-playbook stderr");
        }
        if tail.len() == STDERR_TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
    Vec::from(tail).join("\n")
}

/// A spawned task aborted when this handle is dropped (e.g. a stderr reader whose pipe a
/// stray grandchild keeps open).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A private temporary directory (mode 0700), removed on drop.
struct WorkDir(PathBuf);

impl WorkDir {
    fn create() -> Result<Self, AnsibleError> {
        let path =
            std::env::temp_dir().join(format!("spm-ansible-{}", uuid::Uuid::new_v4().simple()));
        DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(io_err(format!(
                "creating work directory {}",
                path.display()
            )))?;
        Ok(Self(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            tracing::warn!(target: LOG_TARGET, dir = %self.0.display(), error = %e, "could not remove ansible work directory");
        }
    }
}

/// Create `path` (must not exist) with mode 0600 and write `bytes`.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), AnsibleError> {
    let context = || format!("writing {}", path.display());
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| io_err(context())(e))?;
    file.write_all(bytes).map_err(|e| io_err(context())(e))
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

    #[test]
    fn bad_options_are_refused_before_running() {
        let runner = AnsibleRunner::default();
        let base = || RunOptions {
            hosts: vec![InventoryHost::new("h1", "127.0.0.1")],
            ..RunOptions::default()
        };
        assert!(runner.check_options(&base()).is_ok());
        let cases: Vec<(&str, RunOptions)> = vec![
            ("hosts", RunOptions::default()),
            (
                "forks",
                RunOptions {
                    forks: Some(0),
                    ..base()
                },
            ),
            (
                "connection",
                RunOptions {
                    connection: Some("ssh -o x".into()),
                    ..base()
                },
            ),
            (
                "limit",
                RunOptions {
                    limit: Some("a\nb".into()),
                    ..base()
                },
            ),
            (
                "timeout_secs",
                RunOptions {
                    timeout_secs: Some(0),
                    ..base()
                },
            ),
            (
                "inventory",
                RunOptions {
                    inventory: Some("/nonexistent/inv".into()),
                    ..base()
                },
            ),
            (
                "env",
                RunOptions {
                    env: [("ANSIBLE_STDOUT_CALLBACK".to_string(), "x".to_string())].into(),
                    ..base()
                },
            ),
        ];
        for (what, opts) in cases {
            let err = runner.check_options(&opts).unwrap_err();
            assert!(err.to_string().contains(what), "{what}: {err}");
        }
    }

    #[test]
    fn callback_plugin_is_embedded() {
        assert!(CALLBACK_PLUGIN.contains("CALLBACK_NAME = \"spm_jsonl\""));
    }
}
