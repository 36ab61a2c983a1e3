//! Running `ansible-playbook`: command line, environment, event stream, kill on cancel.

use std::collections::{BTreeMap, VecDeque};
use std::ffi::OsString;
use std::fs::DirBuilder;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc::UnboundedSender;

use super::error::{AnsibleError, invalid, io_err};
use super::events::{AnsibleEvent, Collector, HostResult, TaskStatus};
use super::inventory;
use super::options::{AnsibleConfig, RunOptions};
use super::process::GroupGuard;
use super::redact::redact_value;
use super::result::{PlaybookResult, RunStatus};
use super::workdir::{WorkDir, write_private};
use super::{CALLBACK_NAME, CALLBACK_PLUGIN};

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
pub(crate) const LOG_TARGET: &str = "spm::ansible";

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

    /// The `ansible-playbook` that would run (in this process's `PATH`), or
    /// [`AnsibleError::NotInstalled`] naming what to install.
    pub fn program(&self) -> Result<PathBuf, AnsibleError> {
        self.resolve_program(&BTreeMap::new())
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
        let inventory_doc = if opts.hosts.is_empty() {
            None
        } else {
            Some(inventory::render(&opts.hosts)?)
        };
        let program = self.resolve_program(&opts.env)?;

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
            // Absolute, because ansible-playbook runs in the playbook's directory.
            (None, Some(path)) => path.canonicalize().map_err(io_err(format!(
                "resolving inventory path {}",
                path.display()
            )))?,
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
        if !opts.tags.is_empty() {
            cmd.arg(format!("--tags={}", opts.tags.join(",")));
        }
        if !opts.skip_tags.is_empty() {
            cmd.arg(format!("--skip-tags={}", opts.skip_tags.join(",")));
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
        for (what, tags) in [("tags", &opts.tags), ("skip_tags", &opts.skip_tags)] {
            for tag in tags {
                let ok = !tag.is_empty()
                    && tag
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
                if !ok {
                    return Err(invalid(
                        what,
                        format!("{tag:?} is not a tag name (letters, digits, '_', '-', '.')"),
                    ));
                }
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

#[cfg(test)]
mod tests {
    use super::super::InventoryHost;
    use super::*;
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
                "tags",
                RunOptions {
                    tags: vec!["patch,reboot".into()],
                    ..base()
                },
            ),
            (
                "skip_tags",
                RunOptions {
                    skip_tags: vec!["".into()],
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
}
