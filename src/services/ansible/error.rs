//! Why a playbook could not be run to its end.

use std::path::PathBuf;
use std::time::Duration;

use super::result::PlaybookResult;

/// What to install when `ansible-playbook` is missing.
pub const INSTALL_HINT: &str = "install ansible-core (Debian/Ubuntu: apt-get install -y ansible-core; or pip install ansible-core)";

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

pub(crate) fn invalid(what: &str, reason: impl Into<String>) -> AnsibleError {
    AnsibleError::InvalidOption {
        what: what.into(),
        reason: reason.into(),
    }
}

pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> AnsibleError {
    let context = context.into();
    move |source| AnsibleError::Io { context, source }
}
