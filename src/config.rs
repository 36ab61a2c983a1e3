//! Configuration: one struct tree, loaded from defaults < TOML file < `SPM_*` environment
//! variables < command-line flags.
//!
//! # Sources
//! - **File**: `--config PATH` or `SPM_CONFIG` (must exist), else `./spm.toml` when present.
//!   `spm gen-config` prints a commented file with every default.
//! - **Environment**: `SPM_<SECTION>__<KEY>` sets `section.key`; a double underscore
//!   separates levels and names are case-insensitive: `SPM_UYUNI__PASSWORD`,
//!   `SPM_SERVER__LISTEN=0.0.0.0:5001`, `SPM_NOTIFY__SMTP__HOST`,
//!   `SPM_TEST__CRITICAL_SERVICES__UBUNTU='["ssh", "cron"]'`. The value is read as a TOML
//!   value when it parses as one (numbers, booleans, arrays, inline tables), else as a string.
//!   Variables without `__` (`SPM_LOG`, `SPM_CONFIG`, `SPM_DATABASE`) are not config keys.
//! - **Command line**: `--database PATH` (= `database.path`) and `--set KEY=VALUE`
//!   (repeatable, any key, same value rules as the environment).
//!
//! Unknown keys and wrong types are errors naming the key and where it came from (file and
//! line, environment variable, or flag). Secrets ([`Secret`]) print as `***` in `Debug`,
//! `Display` and serialization, and each can instead be read from a `*_file` path.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Default configuration file name, looked up in the working directory.
pub const DEFAULT_FILE: &str = "spm.toml";

/// Errors while loading the configuration. Each names the key and its source.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source} (check the path, or omit --config)")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not match the schema.
    #[error("config file {path}, line {line}, key `{key}`: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// Dotted key (best effort for syntax errors).
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A `SPM_*` variable or a `--set`/`--database` flag has a bad key or value.
    #[error("{origin} (config key `{key}`): {message}")]
    Override {
        /// `environment variable SPM_X__Y` or `command-line --set x.y=...`.
        origin: String,
        /// Dotted key.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A value has the right type but is not acceptable.
    #[error("config key `{key}`{origin}: {message}")]
    Invalid {
        /// Dotted key.
        key: String,
        /// Where the value came from, as ` (from …)`, or empty for a default.
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// A secret file could not be read.
    #[error("cannot read secret `{key}` from {path}: {source}")]
    SecretFile {
        /// Dotted key of the `*_file` setting.
        key: String,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

// ---------------------------------------------------------------------------------------
// Secret
// ---------------------------------------------------------------------------------------

/// A secret string: `Debug`, `Display` and `Serialize` print `***`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value; use only where it is sent, never where it is logged.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Secret;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

// ---------------------------------------------------------------------------------------
// The tree
// ---------------------------------------------------------------------------------------

/// The whole configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[database]`
    pub database: DatabaseConfig,
    /// `[uyuni]`
    pub uyuni: UyuniConfig,
    /// `[server]`
    pub server: ServerConfig,
    /// `[scripts]`
    pub scripts: ScriptsConfig,
    /// `[sync]`
    pub sync: SyncConfig,
    /// `[score]`
    pub score: ScoreConfig,
    /// `[queue]`
    pub queue: QueueConfig,
    /// `[test]`
    pub test: TestConfig,
    /// `[prometheus]`
    pub prometheus: PrometheusConfig,
    /// `[notify]`
    pub notify: NotifyConfig,
    /// `[approvals]`
    pub approvals: ApprovalsConfig,
    /// `[ansible]`
    pub ansible: AnsibleSettings,
    /// The file the configuration was read from, if any (not a config key).
    #[serde(skip)]
    pub file: Option<PathBuf>,
}

/// `[database]`: the SQLite file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// Database file; its directory is created when missing.
    pub path: PathBuf,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("./spm-data/spm.db"),
        }
    }
}

/// `[uyuni]`: the UYUNI server spoken to over XML-RPC.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UyuniConfig {
    /// Base URL, e.g. `https://uyuni.example.com` (the client appends `/rpc/api`).
    pub url: Option<String>,
    /// Login name.
    pub user: Option<String>,
    /// Password (or use `password_file`).
    pub password: Option<Secret>,
    /// File holding the password (first line).
    pub password_file: Option<PathBuf>,
    /// PEM file of an extra CA to trust.
    pub ca_file: Option<PathBuf>,
    /// Skip TLS verification (logged as a warning on every start; never in production).
    pub insecure_skip_verify: bool,
    /// Per-call timeout.
    pub timeout_secs: u64,
    /// Concurrent calls at most.
    pub concurrency: u32,
    /// Retries of a failed idempotent call.
    pub retries: u32,
    /// First poll interval when waiting for an action; doubles up to `action_poll_max_ms`.
    pub action_poll_initial_ms: u64,
    /// Longest poll interval when waiting for an action.
    pub action_poll_max_ms: u64,
}

impl Default for UyuniConfig {
    fn default() -> Self {
        Self {
            url: None,
            user: None,
            password: None,
            password_file: None,
            ca_file: None,
            insecure_skip_verify: false,
            timeout_secs: 60,
            concurrency: 10,
            retries: 3,
            action_poll_initial_ms: 500,
            action_poll_max_ms: 10_000,
        }
    }
}

/// `[server]`: the HTTP API and dashboard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Listen address.
    pub listen: SocketAddr,
    /// TLS certificate chain (PEM); with `tls_key`, serve HTTPS.
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// Origins allowed by CORS; empty = CORS off.
    pub cors_origins: Vec<String>,
    /// Largest request body accepted.
    pub body_limit_bytes: u64,
    /// Allow plain HTTP on a non-loopback address (development only; logged as a warning).
    pub dev_insecure: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 5001)),
            tls_cert: None,
            tls_key: None,
            cors_origins: Vec::new(),
            body_limit_bytes: 1024 * 1024,
            dev_insecure: false,
        }
    }
}

/// `[scripts]`: where the Lua lives and how it is reloaded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScriptsConfig {
    /// Phase scripts (`phases/<os>/<phase>.lua` overrides `phases/<phase>.lua`).
    pub phases_dir: PathBuf,
    /// Patch policies.
    pub policies_dir: PathBuf,
    /// Libraries, rollback strategies, checks, templates.
    pub scripts_dir: PathBuf,
    /// Debounce of file change events before a reload.
    pub debounce_ms: u64,
    /// Poll the directories instead of using inotify (network filesystems, containers).
    pub poll: bool,
    /// Poll interval when `poll = true`.
    pub poll_interval_ms: u64,
}

impl Default for ScriptsConfig {
    fn default() -> Self {
        Self {
            phases_dir: PathBuf::from("phases"),
            policies_dir: PathBuf::from("policies"),
            scripts_dir: PathBuf::from("scripts"),
            debounce_ms: 300,
            poll: false,
            poll_interval_ms: 1000,
        }
    }
}

/// `[ansible]`: the Ansible executor (`spm.ansible` in Lua, `executor = "ansible"` in
/// policies, `spm ansible run`) and how UYUNI systems become inventory hosts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnsibleSettings {
    /// The `ansible-playbook` program: a name looked up in `PATH`, or a path.
    pub program: String,
    /// Playbooks Lua and policies may run; unset = `<scripts.scripts_dir>/ansible`.
    pub playbook_dir: Option<PathBuf>,
    /// Timeout of a run when the caller gives none.
    pub timeout_secs: u64,
    /// After SIGTERM on cancel or timeout, how long before SIGKILL.
    pub kill_grace_secs: u64,
    /// Parallel hosts (`--forks`) when the caller gives none; unset = Ansible's default.
    pub forks: Option<u32>,
    /// Connection plugin for every generated host (`local`, `ssh`); unset = Ansible's.
    pub connection: Option<String>,
    /// Variables set on every host generated from a UYUNI system (e.g. `ansible_user`).
    pub host_vars: BTreeMap<String, serde_json::Value>,
    /// Per-system overrides by UYUNI profile name: `address` and `vars`.
    pub hosts: BTreeMap<String, AnsibleHostOverride>,
}

/// `[ansible.hosts."<profile name>"]`: how to reach one UYUNI system with Ansible.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnsibleHostOverride {
    /// Address to connect to (`ansible_host`) instead of the one UYUNI reports.
    pub address: Option<String>,
    /// Host variables (e.g. `ansible_connection`, `ansible_port`); they win over
    /// `host_vars`.
    pub vars: BTreeMap<String, serde_json::Value>,
}

impl Default for AnsibleSettings {
    fn default() -> Self {
        Self {
            program: "ansible-playbook".into(),
            playbook_dir: None,
            timeout_secs: 3600,
            kill_grace_secs: 5,
            forks: None,
            connection: None,
            host_vars: BTreeMap::new(),
            hosts: BTreeMap::new(),
        }
    }
}

impl AnsibleSettings {
    /// The playbook directory: `playbook_dir`, or `<scripts_dir>/ansible`.
    pub fn playbook_dir(&self, scripts_dir: &Path) -> PathBuf {
        self.playbook_dir
            .clone()
            .unwrap_or_else(|| scripts_dir.join("ansible"))
    }

    /// Problems of these settings as `(key, message)`.
    fn problems(&self) -> Vec<(String, String)> {
        use crate::services::ansible::is_secret_key;
        let ident = |s: &str| {
            let mut c = s.chars();
            matches!(c.next(), Some(x) if x.is_ascii_alphabetic() || x == '_')
                && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
        };
        let mut out = Vec::new();
        if self.program.trim().is_empty() {
            out.push(("ansible.program".into(), "must not be empty".into()));
        }
        if self.timeout_secs == 0 {
            out.push((
                "ansible.timeout_secs".into(),
                "must be greater than 0".into(),
            ));
        }
        if let Some(f) = self.forks
            && !(1..=1000).contains(&f)
        {
            out.push((
                "ansible.forks".into(),
                format!("{f} is not between 1 and 1000"),
            ));
        }
        if let Some(c) = &self.connection
            && (c.is_empty()
                || !c
                    .chars()
                    .all(|x| x.is_ascii_alphanumeric() || "_.".contains(x)))
        {
            out.push((
                "ansible.connection".into(),
                format!("{c:?} is not a connection plugin name (e.g. local, ssh)"),
            ));
        }
        let mut vars: Vec<(String, &String)> = self
            .host_vars
            .keys()
            .map(|k| ("ansible.host_vars".to_string(), k))
            .collect();
        for (name, o) in &self.hosts {
            vars.extend(
                o.vars
                    .keys()
                    .map(|k| (format!("ansible.hosts.{name}.vars"), k)),
            );
            if let Some(a) = &o.address
                && (a.is_empty()
                    || a.starts_with('-')
                    || !a
                        .chars()
                        .all(|x| x.is_ascii_alphanumeric() || ".-_:".contains(x)))
            {
                out.push((
                    format!("ansible.hosts.{name}.address"),
                    format!("{a:?} is not a hostname or IP address"),
                ));
            }
        }
        for (key, var) in vars {
            if !ident(var) {
                out.push((key, format!("{var:?} is not a valid variable name")));
            } else if is_secret_key(var) && !var.ends_with("_file") {
                out.push((
                    key,
                    format!(
                        "{var} looks like a secret; spm does not keep Ansible credentials in its \
                         configuration (use SSH keys, an ssh-agent or ansible-vault)"
                    ),
                ));
            } else if var == "ansible_host" {
                out.push((
                    key,
                    "ansible_host is the system's address: set `address` in [ansible.hosts.\"<name>\"]".into(),
                ));
            } else if var.starts_with("spm_") {
                out.push((
                    key,
                    format!("{var}: spm_* variables are set by spm from the system and the run"),
                ));
            }
        }
        out
    }
}

/// Which UYUNI systems a sync looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncScope {
    /// Only test systems (groups with the test prefix).
    Test,
    /// Only production systems.
    Production,
    /// Every system.
    All,
}

/// `[sync]`: errata synchronisation from UYUNI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyncConfig {
    /// Seconds between automatic syncs (0 = only on demand).
    pub interval_secs: u64,
    /// Systems considered.
    pub scope: SyncScope,
    /// System groups whose name starts with this hold the test systems.
    pub test_group_prefix: String,
    /// Concurrent UYUNI calls during a sync.
    pub concurrency: u32,
    /// Fetch package lists (needed for the Success Score) during the sync.
    pub fetch_packages: bool,
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            interval_secs: 6 * 3600,
            scope: SyncScope::All,
            test_group_prefix: "test-".into(),
            concurrency: 10,
            fetch_packages: true,
        }
    }
}

/// `[score]`: Success Score weights (seed 003 §10, prototype §5) and package patterns.
///
/// Patterns are regular expressions matched against package names; the defaults are the
/// prototype's substrings (unanchored). A kernel match also counts as a reboot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScoreConfig {
    /// Penalty when a package touches the kernel or boot chain.
    pub kernel_penalty: u32,
    /// Penalty when a reboot is needed.
    pub reboot_penalty: u32,
    /// Penalty when configuration-sensitive packages change.
    pub config_penalty: u32,
    /// Penalty per dependency.
    pub dependency_penalty_per: u32,
    /// Cap of the dependency penalty.
    pub dependency_penalty_max: u32,
    /// Penalty per MiB of packages.
    pub size_penalty_per_mb: u32,
    /// Cap of the size penalty.
    pub size_penalty_max: u32,
    /// Penalty at a 100 % historical failure rate.
    pub history_penalty_max: u32,
    /// Tests needed before history counts.
    pub min_tests_for_history: u32,
    /// Bonus for small patches.
    pub small_patch_bonus: u32,
    /// Total size below which a patch is small.
    pub small_patch_threshold_kb: u64,
    /// Kernel/boot package patterns.
    pub kernel_patterns: Vec<String>,
    /// Reboot-requiring package patterns.
    pub reboot_patterns: Vec<String>,
    /// Configuration-sensitive package patterns.
    pub config_patterns: Vec<String>,
}

impl Default for ScoreConfig {
    fn default() -> Self {
        let s = |v: &[&str]| v.iter().map(|p| p.to_string()).collect::<Vec<_>>();
        Self {
            kernel_penalty: 30,
            reboot_penalty: 15,
            config_penalty: 10,
            dependency_penalty_per: 3,
            dependency_penalty_max: 15,
            size_penalty_per_mb: 2,
            size_penalty_max: 10,
            history_penalty_max: 20,
            min_tests_for_history: 3,
            small_patch_bonus: 5,
            small_patch_threshold_kb: 100,
            kernel_patterns: s(&[
                "kernel",
                "linux-image",
                "linux-headers",
                "linux-modules",
                "linux-generic",
                "linux-kvm",
            ]),
            reboot_patterns: s(&[
                "glibc",
                "libc6",
                "libc-bin",
                "systemd",
                "udev",
                "dbus",
                "openssh-server",
                "openssh-client",
                "initramfs-tools",
                "grub",
            ]),
            config_patterns: s(&[
                "openssl",
                "libssl",
                "ca-certificates",
                "sudo",
                "pam",
                "libpam",
                "grub",
                "initramfs",
                "apparmor",
                "selinux",
                "nss",
            ]),
        }
    }
}

/// Advisory severity, lowest first (so `>=` compares as expected).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Unknown severity.
    Unknown,
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
    /// Critical.
    Critical,
}

/// `[queue]`: the auto-queue rule run after each sync.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// Queue new relevant errata automatically.
    pub auto_queue: bool,
    /// Advisory types auto-queued (`security`, `bugfix`, `enhancement`).
    pub auto_queue_types: Vec<String>,
    /// Lowest severity auto-queued.
    pub auto_queue_min_severity: Severity,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            auto_queue: false,
            auto_queue_types: vec!["security".into()],
            auto_queue_min_severity: Severity::High,
        }
    }
}

/// Retry rule for one failure class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryRule {
    /// Retries at most (0 = never).
    pub max_retries: u32,
    /// Wait before a retry.
    pub delay_secs: u64,
}

/// `[test.retry]`: retry policy per failure class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Test infrastructure failed (UYUNI, snapshot, lab).
    pub infrastructure: RetryRule,
    /// A transient failure (timeout, reboot slow to come back).
    pub transient: RetryRule,
    /// The patch itself failed to apply.
    pub patch: RetryRule,
    /// The patch applied but broke the system.
    pub regression: RetryRule,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            infrastructure: RetryRule {
                max_retries: 2,
                delay_secs: 2 * 3600,
            },
            transient: RetryRule {
                max_retries: 3,
                delay_secs: 30 * 60,
            },
            patch: RetryRule {
                max_retries: 0,
                delay_secs: 0,
            },
            regression: RetryRule {
                max_retries: 0,
                delay_secs: 0,
            },
        }
    }
}

/// `[test.validation]`: metric thresholds, in absolute percentage points.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ValidationConfig {
    /// Largest allowed CPU usage increase.
    pub cpu_delta_max: f64,
    /// Largest allowed memory usage increase.
    pub memory_delta_max: f64,
    /// Prometheus range window for the averages, seconds.
    pub window_secs: u64,
    /// Wait after patching (or after the reboot) before measuring.
    pub stabilize_secs: u64,
    /// With no metrics for a system, fail the validation (true) instead of skipping it.
    pub fail_closed: bool,
}

impl Default for ValidationConfig {
    fn default() -> Self {
        Self {
            cpu_delta_max: 20.0,
            memory_delta_max: 15.0,
            window_secs: 300,
            stabilize_secs: 60,
            fail_closed: true,
        }
    }
}

/// `[test]`: the test engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TestConfig {
    /// System groups whose name starts with this hold the test systems.
    pub system_group_prefix: String,
    /// Explicit test systems (UYUNI profile names); when not empty, replaces the groups.
    pub systems: Vec<String>,
    /// Tests running at once (one per test system at most).
    pub concurrency: u32,
    /// Overall deadline of one test.
    pub deadline_secs: u64,
    /// Lease on a claimed queue item; renewed while the test runs.
    pub lease_secs: u64,
    /// Retry policy per failure class.
    pub retry: RetryConfig,
    /// Validation thresholds.
    pub validation: ValidationConfig,
    /// Services that must be running after a patch, per OS.
    pub critical_services: BTreeMap<String, Vec<String>>,
    /// Rollback strategies (`scripts/rollback/<name>.lua`) tried in order; the first whose
    /// `applies(ctx)` is true runs.
    pub rollback_order: Vec<String>,
    /// Validation checks (`scripts/checks/<name>.lua`) run by pre_check and validate.
    pub checks: Vec<String>,
    /// PromQL label selector of one system, a minijinja template over `system`.
    pub prom_selector: String,
    /// Free disk space required on `/` before patching, MiB.
    pub min_disk_mb: u64,
    /// How long applying the advisory may take.
    pub apply_timeout_secs: u64,
    /// How long a reboot may take until the system answers with a new boot id.
    pub reboot_timeout_secs: u64,
    /// Default timeout of one remote script.
    pub script_timeout_secs: u64,
    /// How long a system may take to pick up an action before it counts as unreachable.
    pub pickup_timeout_secs: u64,
    /// Service checks after the patch: attempts, and the delay between them.
    pub service_retries: u32,
    /// Delay between service-check attempts, seconds.
    pub service_retry_delay_secs: u64,
    /// Dispatcher poll interval when the queue is empty, milliseconds.
    pub poll_interval_ms: u64,
}

impl Default for TestConfig {
    fn default() -> Self {
        let s = |v: &[&str]| v.iter().map(|p| p.to_string()).collect::<Vec<_>>();
        Self {
            system_group_prefix: "test-".into(),
            systems: Vec::new(),
            concurrency: 2,
            deadline_secs: 3600,
            lease_secs: 300,
            retry: RetryConfig::default(),
            validation: ValidationConfig::default(),
            critical_services: BTreeMap::from([
                ("ubuntu".to_string(), s(&["ssh.socket", "cron", "rsyslog"])),
                ("debian".to_string(), s(&["ssh", "cron", "rsyslog"])),
                ("rhel".to_string(), s(&["sshd", "crond", "rsyslog"])),
            ]),
            rollback_order: s(&["snapshot", "package"]),
            checks: s(&["cpu", "memory"]),
            prom_selector: "system_id=\"{{ system.id }}\"".into(),
            min_disk_mb: 500,
            apply_timeout_secs: 1800,
            reboot_timeout_secs: 600,
            script_timeout_secs: 120,
            pickup_timeout_secs: 300,
            service_retries: 3,
            service_retry_delay_secs: 10,
            poll_interval_ms: 2000,
        }
    }
}

/// `[prometheus]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrometheusConfig {
    /// Base URL, e.g. `http://127.0.0.1:9090`; unset = validation by metrics is off.
    pub url: Option<String>,
    /// Query timeout.
    pub timeout_secs: u64,
}

impl Default for PrometheusConfig {
    fn default() -> Self {
        Self {
            url: None,
            timeout_secs: 10,
        }
    }
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS (required).
    Starttls,
    /// TLS from the first byte (SMTPS).
    Tls,
    /// No encryption (local relays only).
    None,
}

/// `[notify.smtp]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    /// Relay host; unset = e-mail off.
    pub host: Option<String>,
    /// Relay port.
    pub port: u16,
    /// Connection security.
    pub security: SmtpSecurity,
    /// Login name (no login when unset).
    #[serde(alias = "user")]
    pub username: Option<String>,
    /// Password (or use `password_file`).
    pub password: Option<Secret>,
    /// File holding the password.
    pub password_file: Option<PathBuf>,
    /// Sender address.
    pub from: String,
    /// Extra CA (PEM) for a private relay.
    pub ca_file: Option<PathBuf>,
    /// Connection and send timeout.
    pub timeout_secs: u64,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        Self {
            host: None,
            port: 587,
            security: SmtpSecurity::Starttls,
            username: None,
            password: None,
            password_file: None,
            from: "spm@localhost".into(),
            ca_file: None,
            timeout_secs: 30,
        }
    }
}

/// One `[[notify.webhooks]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Name shown in logs and delivery rows.
    pub name: String,
    /// Endpoint (JSON POST).
    pub url: String,
    /// Value of the `Authorization` header (secret).
    #[serde(default)]
    pub auth_header: Option<Secret>,
    /// File holding the `Authorization` header value.
    #[serde(default)]
    pub auth_header_file: Option<PathBuf>,
    /// HMAC-SHA256 key for the signature header (secret).
    #[serde(default)]
    pub hmac_secret: Option<Secret>,
    /// File holding the HMAC key.
    #[serde(default)]
    pub hmac_secret_file: Option<PathBuf>,
    /// Events sent to this hook; empty = all.
    #[serde(default)]
    pub events: Vec<String>,
    /// Request timeout.
    #[serde(default = "default_webhook_timeout")]
    pub timeout_secs: u64,
}

fn default_webhook_timeout() -> u64 {
    10
}

/// Notification severity, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifySeverity {
    /// Informational.
    Info,
    /// Needs attention.
    Warning,
    /// Needs action now.
    Critical,
}

/// `[notify.retry]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyRetryConfig {
    /// Attempts per delivery before giving up.
    pub max_attempts: u32,
    /// First retry delay; doubles each attempt.
    pub base_delay_secs: u64,
}

impl Default for NotifyRetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay_secs: 30,
        }
    }
}

/// `[notify]`: e-mail and webhooks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// SMTP relay.
    pub smtp: SmtpConfig,
    /// Recipients per event (`test_failed = ["ops@example.com"]`); `default` for the rest.
    pub recipients: BTreeMap<String, Vec<String>>,
    /// Webhooks.
    pub webhooks: Vec<WebhookConfig>,
    /// Time of day of the daily digest, `HH:MM`.
    pub digest_time: String,
    /// Time zone of `digest_time` (IANA name).
    pub digest_timezone: String,
    /// Lowest severity sent by e-mail.
    pub email_min_severity: NotifySeverity,
    /// Lowest severity sent to webhooks.
    pub webhook_min_severity: NotifySeverity,
    /// Delivery retries.
    pub retry: NotifyRetryConfig,
    /// Send the daily digest at `digest_time`.
    pub digest_enabled: bool,
    /// Routing per event type (`[notify.routes.test_failed]`); `default` for the rest.
    pub routes: BTreeMap<String, NotifyRouteConfig>,
}

/// `[notify.routes.<event>]`: where one event type goes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyRouteConfig {
    /// Deliver this event at all (the dashboard row is always written).
    pub enabled: bool,
    /// Channels: `email`, `webhook`.
    pub channels: Vec<String>,
    /// Lowest severity delivered; replaces `email_min_severity` / `webhook_min_severity`
    /// for this event when set.
    pub min_severity: Option<NotifySeverity>,
}

impl Default for NotifyRouteConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            channels: vec!["email".into(), "webhook".into()],
            min_severity: None,
        }
    }
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            smtp: SmtpConfig::default(),
            recipients: BTreeMap::new(),
            webhooks: Vec::new(),
            digest_time: "08:00".into(),
            digest_timezone: "UTC".into(),
            email_min_severity: NotifySeverity::Warning,
            webhook_min_severity: NotifySeverity::Info,
            retry: NotifyRetryConfig::default(),
            digest_enabled: true,
            routes: BTreeMap::new(),
        }
    }
}

/// `[approvals]`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApprovalsConfig {
    /// The approver must differ from whoever queued the item (four-eyes rule).
    pub four_eyes: bool,
}

// ---------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------

/// Inputs of [`Config::load`]: the explicit file and the overrides, in precedence order.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `--config` / `SPM_CONFIG`: must exist. `None`: `./spm.toml` when present.
    pub file: Option<PathBuf>,
    /// Environment variables (all of them; only `SPM_*__*` are used).
    pub env: Vec<(String, String)>,
    /// Command-line overrides `(key, value)` in order (`--database`, `--set`).
    pub overrides: Vec<(String, String)>,
}

impl LoadOptions {
    /// Options with this process's environment.
    pub fn from_process(file: Option<PathBuf>, overrides: Vec<(String, String)>) -> Self {
        Self {
            file,
            // vars_os: `vars()` panics on a non-UTF-8 variable; such variables are skipped
            // (a non-UTF-8 SPM_* value cannot be a valid setting anyway).
            env: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
            overrides,
        }
    }
}

/// Where a key's value came from, for error messages.
#[derive(Debug, Clone)]
enum Origin {
    File { path: PathBuf, line: usize },
    Env(String),
    Flag(String),
}

impl Origin {
    fn describe(&self) -> String {
        match self {
            Origin::File { path, line } => format!(" (from {} line {line})", path.display()),
            Origin::Env(v) => format!(" (from environment variable {v})"),
            Origin::Flag(f) => format!(" (from command-line {f})"),
        }
    }
}

impl Config {
    /// Load and validate: defaults < file < environment < command line; secret files read.
    pub fn load(opts: &LoadOptions) -> Result<Config, ConfigError> {
        let file = match &opts.file {
            Some(p) => Some(p.clone()),
            None => {
                let p = PathBuf::from(DEFAULT_FILE);
                p.is_file().then_some(p)
            }
        };
        let (mut table, text) = match &file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                // Validate the file alone first so errors carry its line numbers.
                let _: Config = toml::from_str(&text).map_err(|e| parse_error(path, &text, &e))?;
                let table: toml::Table =
                    toml::from_str(&text).map_err(|e| parse_error(path, &text, &e))?;
                (table, Some(text))
            }
            None => (toml::Table::new(), None),
        };
        let mut origins: Vec<(String, Origin)> = Vec::new();

        let mut env: Vec<&(String, String)> = opts
            .env
            .iter()
            .filter(|(k, _)| k.starts_with("SPM_") && k.contains("__"))
            .collect();
        env.sort();
        for (var, raw) in env {
            let key = var["SPM_".len()..]
                .split("__")
                .map(|p| p.to_ascii_lowercase())
                .collect::<Vec<_>>()
                .join(".");
            let origin = format!("environment variable {var}");
            apply_override(&mut table, &key, raw, &origin)?;
            origins.push((key, Origin::Env(var.clone())));
        }
        for (key, raw) in &opts.overrides {
            let origin = format!("command-line --set {key}=…");
            apply_override(&mut table, key, raw, &origin)?;
            origins.push((key.clone(), Origin::Flag(format!("--set {key}"))));
        }
        let mut config: Config =
            toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Invalid {
                    key: "?".into(),
                    origin: String::new(),
                    message: e.message().to_string(),
                })?;
        config.file = file.clone();
        let locate = |key: &str| -> String {
            if let Some((_, o)) = origins.iter().rev().find(|(k, _)| k == key) {
                return o.describe();
            }
            match (&file, &text) {
                (Some(path), Some(text)) => match find_key_line(text, key) {
                    Some(line) => Origin::File {
                        path: path.clone(),
                        line,
                    }
                    .describe(),
                    None => String::new(),
                },
                _ => String::new(),
            }
        };
        config.validate(&locate)?;
        config.resolve_secrets()?;
        Ok(config)
    }

    /// Check values that have the right type but may still be wrong.
    fn validate(&self, locate: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            key: key.to_string(),
            origin: locate(key),
            message,
        };
        for (key, pats) in [
            ("score.kernel_patterns", &self.score.kernel_patterns),
            ("score.reboot_patterns", &self.score.reboot_patterns),
            ("score.config_patterns", &self.score.config_patterns),
        ] {
            for p in pats {
                regex::Regex::new(p)
                    .map_err(|e| invalid(key, format!("invalid regular expression {p:?}: {e}")))?;
            }
        }
        for (key, url) in [
            ("uyuni.url", &self.uyuni.url),
            ("prometheus.url", &self.prometheus.url),
        ] {
            if let Some(u) = url {
                check_url(u).map_err(|m| invalid(key, m))?;
            }
        }
        for (i, w) in self.notify.webhooks.iter().enumerate() {
            check_url(&w.url).map_err(|m| invalid(&format!("notify.webhooks[{i}].url"), m))?;
            if self.notify.webhooks[..i].iter().any(|o| o.name == w.name) {
                return Err(invalid(
                    &format!("notify.webhooks[{i}].name"),
                    format!("duplicate webhook name {:?}", w.name),
                ));
            }
        }
        if self.server.tls_cert.is_some() != self.server.tls_key.is_some() {
            return Err(invalid(
                "server.tls_cert",
                "set both server.tls_cert and server.tls_key, or neither".into(),
            ));
        }
        if chrono::NaiveTime::parse_from_str(&self.notify.digest_time, "%H:%M").is_err() {
            return Err(invalid(
                "notify.digest_time",
                format!("{:?} is not a time of day HH:MM", self.notify.digest_time),
            ));
        }
        if self
            .notify
            .digest_timezone
            .parse::<chrono_tz::Tz>()
            .is_err()
        {
            return Err(invalid(
                "notify.digest_timezone",
                format!(
                    "{:?} is not an IANA time zone (e.g. UTC, Europe/Rome)",
                    self.notify.digest_timezone
                ),
            ));
        }
        for (key, v) in [
            ("uyuni.concurrency", self.uyuni.concurrency),
            ("sync.concurrency", self.sync.concurrency),
            ("test.concurrency", self.test.concurrency),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be at least 1".into()));
            }
        }
        for (key, v) in [
            ("uyuni.timeout_secs", self.uyuni.timeout_secs),
            ("test.deadline_secs", self.test.deadline_secs),
            ("test.lease_secs", self.test.lease_secs),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be greater than 0".into()));
            }
        }
        if let Some((key, message)) = self.ansible.problems().into_iter().next() {
            return Err(invalid(&key, message));
        }
        for (key, secret, file) in self.secret_slots() {
            if secret.is_some() && file.is_some() {
                return Err(invalid(
                    &key,
                    format!("set either {key} or {key}_file, not both"),
                ));
            }
        }
        Ok(())
    }

    fn secret_slots(&self) -> Vec<(String, Option<&Secret>, Option<&PathBuf>)> {
        let mut v = vec![
            (
                "uyuni.password".to_string(),
                self.uyuni.password.as_ref(),
                self.uyuni.password_file.as_ref(),
            ),
            (
                "notify.smtp.password".to_string(),
                self.notify.smtp.password.as_ref(),
                self.notify.smtp.password_file.as_ref(),
            ),
        ];
        for (i, w) in self.notify.webhooks.iter().enumerate() {
            v.push((
                format!("notify.webhooks[{i}].auth_header"),
                w.auth_header.as_ref(),
                w.auth_header_file.as_ref(),
            ));
            v.push((
                format!("notify.webhooks[{i}].hmac_secret"),
                w.hmac_secret.as_ref(),
                w.hmac_secret_file.as_ref(),
            ));
        }
        v
    }

    /// Read every `*_file` secret into its secret field.
    fn resolve_secrets(&mut self) -> Result<(), ConfigError> {
        fn read(
            key: &str,
            secret: &mut Option<Secret>,
            file: &Option<PathBuf>,
        ) -> Result<(), ConfigError> {
            if let (None, Some(path)) = (&*secret, file) {
                let text =
                    std::fs::read_to_string(path).map_err(|source| ConfigError::SecretFile {
                        key: format!("{key}_file"),
                        path: path.clone(),
                        source,
                    })?;
                *secret = Some(Secret::new(text.trim_end_matches(['\r', '\n'])));
            }
            Ok(())
        }
        read(
            "uyuni.password",
            &mut self.uyuni.password,
            &self.uyuni.password_file,
        )?;
        read(
            "notify.smtp.password",
            &mut self.notify.smtp.password,
            &self.notify.smtp.password_file,
        )?;
        for (i, w) in self.notify.webhooks.iter_mut().enumerate() {
            read(
                &format!("notify.webhooks[{i}].auth_header"),
                &mut w.auth_header,
                &w.auth_header_file,
            )?;
            read(
                &format!("notify.webhooks[{i}].hmac_secret"),
                &mut w.hmac_secret,
                &w.hmac_secret_file,
            )?;
        }
        Ok(())
    }

    /// Settings that weaken security, to log loudly at start.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if self.uyuni.insecure_skip_verify {
            w.push(
                "uyuni.insecure_skip_verify = true: TLS certificates of the UYUNI server are NOT \
                 verified; anyone on the path can read the UYUNI password"
                    .to_string(),
            );
        }
        if self.server.dev_insecure {
            w.push(
                "server.dev_insecure = true: development mode, plain HTTP allowed on any address"
                    .to_string(),
            );
        }
        w
    }

    /// The effective configuration as TOML, secrets shown as `***`.
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

fn check_url(u: &str) -> Result<(), String> {
    match reqwest::Url::parse(u) {
        Ok(url) if url.password().is_some() => Err(
            "the URL contains a password; put it in the matching password setting instead"
                .to_string(),
        ),
        Ok(url) if matches!(url.scheme(), "http" | "https") => Ok(()),
        Ok(url) => Err(format!(
            "{u:?} has scheme {:?}; use http or https",
            url.scheme()
        )),
        Err(e) => Err(format!("{u:?} is not a URL: {e}")),
    }
}

/// Parse an override value: TOML when it parses as a value, else the raw string.
fn parse_value(raw: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

/// Set `key` (dotted) in `table` to `raw`, then check the whole tree still deserializes,
/// retrying `raw` as a plain string when its TOML reading has the wrong type.
fn apply_override(
    table: &mut toml::Table,
    key: &str,
    raw: &str,
    origin: &str,
) -> Result<(), ConfigError> {
    let err = |message: String| ConfigError::Override {
        origin: origin.to_string(),
        key: key.to_string(),
        message,
    };
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(err("empty key segment".into()));
    }
    let mut candidates = vec![parse_value(raw)];
    if !candidates[0].is_str() {
        candidates.push(toml::Value::String(raw.to_string()));
    }
    let mut first_error = None;
    for value in candidates {
        let mut trial = table.clone();
        set_path(&mut trial, &parts, value).map_err(err)?;
        match toml::Value::Table(trial.clone()).try_into::<Config>() {
            Ok(_) => {
                *table = trial;
                return Ok(());
            }
            Err(e) => {
                first_error.get_or_insert_with(|| e.message().to_string());
            }
        }
    }
    Err(err(first_error.unwrap_or_default()))
}

fn set_path(table: &mut toml::Table, parts: &[&str], value: toml::Value) -> Result<(), String> {
    let (last, parents) = match parts.split_last() {
        Some(x) => x,
        None => return Err("empty key".into()),
    };
    let mut cur = table;
    for p in parents {
        let entry = cur
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = match entry {
            toml::Value::Table(t) => t,
            _ => return Err(format!("`{p}` is not a table")),
        };
    }
    cur.insert(last.to_string(), value);
    Ok(())
}

/// A toml error on `text` as a one-line error naming the file, line and key.
fn parse_error(path: &Path, text: &str, e: &toml::de::Error) -> ConfigError {
    let offset = e.span().map(|s| s.start).unwrap_or(0).min(text.len());
    let line = text.get(..offset).unwrap_or(text).matches('\n').count() + 1;
    ConfigError::Parse {
        path: path.to_path_buf(),
        line,
        key: key_at_line(text, line).unwrap_or_else(|| "?".into()),
        message: e.message().trim().replace('\n', " "),
    }
}

fn header_of(line: &str) -> Option<String> {
    let t = line.trim();
    if !t.starts_with('[') {
        return None;
    }
    let inner = t.trim_start_matches('[');
    let end = inner.find(']')?;
    Some(inner[..end].trim().to_string())
}

/// The dotted key defined on 1-based `line` (its table header plus the key before `=`).
fn key_at_line(text: &str, line: usize) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let this = lines.get(line.checked_sub(1)?)?;
    if let Some(h) = header_of(this) {
        return Some(h);
    }
    let section = lines[..line - 1].iter().rev().find_map(|l| header_of(l));
    let key = match this.split_once('=') {
        Some((k, _)) => k.trim().trim_matches('"').to_string(),
        None => this.trim().to_string(),
    };
    Some(match section {
        Some(s) => format!("{s}.{key}"),
        None => key,
    })
}

/// The 1-based line where dotted `key` is set in `text` (best effort).
fn find_key_line(text: &str, key: &str) -> Option<usize> {
    let key = key.split('[').next().unwrap_or(key);
    let (section, leaf) = match key.rsplit_once('.') {
        Some((s, l)) => (Some(s), l),
        None => (None, key),
    };
    let mut current: Option<String> = None;
    for (i, l) in text.lines().enumerate() {
        if let Some(h) = header_of(l) {
            current = Some(h);
            if section.is_none() && current.as_deref() == Some(key) {
                return Some(i + 1);
            }
            continue;
        }
        if current.as_deref() == section
            && let Some((k, _)) = l.split_once('=')
            && k.trim().trim_matches('"') == leaf
        {
            return Some(i + 1);
        }
    }
    None
}

// ---------------------------------------------------------------------------------------
// gen-config
// ---------------------------------------------------------------------------------------

/// The commented default configuration printed by `spm gen-config`; it parses back to
/// [`Config::default`].
pub const DEFAULT_TOML: &str = include_str!("config/default.toml");

#[cfg(test)]
mod tests;
