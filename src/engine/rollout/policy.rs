//! Patch policies: the data a `policies/*.lua` file returns, and its validation.
//!
//! A policy file starts with `---@spm api=1 kind=policy` and returns a table. Loading goes
//! through the Lua host ([`load_policy`]): the chunk runs in a sandboxed VM, the host calls
//! the [`PolicyValidator`] registered in its [`Contracts`], and every problem comes back as
//! a `file:line: message` diagnostic naming the key. The table becomes a [`Policy`]
//! (serde, unknown keys refused); functions are allowed only under `hooks`
//! (`before_wave`, `verify_host`, `after_run`), which the engine calls through
//! [`super::hooks`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Duration;

use mlua::{Table, Value};
use serde::{Deserialize, Serialize};

use crate::host::api::time::parse_duration;
use crate::host::contracts::{Contracts, Diagnostic, KeyProblem, TableValidator};
use crate::host::header::ScriptKind;
use crate::host::limits::Limits;
use crate::host::loader;
use crate::host::services::Services;
use crate::host::vm::{self, Deadline};

/// Hook names a policy may define.
pub const HOOKS: &[&str] = &["before_wave", "verify_host", "after_run"];

/// A patch policy (what the Lua file returns, minus the hook functions).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Stable identifier (`[a-z0-9][a-z0-9._-]*`).
    pub id: String,
    /// Human name.
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
    /// Target OS: `ubuntu2404`, `debian12`, `rhel9` (or the family `ubuntu`, `debian`, `rhel`).
    pub os: String,
    /// Which systems.
    pub targets: Targets,
    /// When cron runs it; absent = manual only.
    #[serde(default)]
    pub schedule: Option<Schedule>,
    /// How long the run may start new hosts.
    #[serde(default)]
    pub maintenance_window: Option<Window>,
    /// Which approved errata to apply.
    #[serde(default)]
    pub errata: ErrataFilter,
    /// Take a snapshot of each host before patching it.
    #[serde(default)]
    pub pre_patch_snapshot: bool,
    /// Reboot policy.
    #[serde(default)]
    pub reboot: Reboot,
    /// Canary, then wave sizes.
    #[serde(default)]
    pub waves: Waves,
    /// Hosts in flight at once.
    #[serde(default = "default_max_parallel")]
    pub max_parallel: u32,
    /// How many failures stop the run.
    #[serde(default)]
    pub error_budget: ErrorBudget,
    /// Roll back failed hosts automatically, or leave them for an operator.
    #[serde(default)]
    pub rollback_on_failure: RollbackMode,
    /// Who applies the errata.
    #[serde(default)]
    pub executor: Executor,
    /// Settings of `executor = "ansible"` (playbook, verification, variables).
    #[serde(default)]
    pub ansible: Option<AnsiblePolicy>,
    /// Hook functions defined (names only; the functions stay in Lua).
    #[serde(skip)]
    pub hooks: BTreeSet<String>,
}

fn default_max_parallel() -> u32 {
    10
}

/// Target systems: UYUNI groups and/or tag selectors, plus an environment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Targets {
    /// UYUNI system groups (union).
    #[serde(default)]
    pub groups: Vec<String>,
    /// Tag selectors: every key must match the system's tag (from the last sync).
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Environment the systems must be in (`prod`), from the last sync.
    #[serde(default)]
    pub env: Option<String>,
    /// Profile names never patched by this policy.
    #[serde(default)]
    pub exclude: Vec<String>,
}

/// A cron schedule with its time zone. In Lua either `{ cron = "0 2 * * 0", timezone =
/// "Europe/Rome" }` or just the cron text (UTC).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Schedule {
    /// Five or six field cron expression.
    pub cron: String,
    /// IANA time zone (`Europe/Rome`); default UTC.
    pub timezone: String,
}

fn utc() -> String {
    "UTC".to_string()
}

impl<'de> Deserialize<'de> for Schedule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Full {
            cron: String,
            #[serde(default = "utc")]
            timezone: String,
        }
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(cron) => Ok(Schedule {
                cron,
                timezone: utc(),
            }),
            v @ serde_json::Value::Object(_) => {
                let f: Full = serde_json::from_value(v).map_err(serde::de::Error::custom)?;
                Ok(Schedule {
                    cron: f.cron,
                    timezone: f.timezone,
                })
            }
            other => Err(serde::de::Error::custom(format!(
                "expected a cron text or {{ cron = ..., timezone = ... }}, got {other}"
            ))),
        }
    }
}

/// A maintenance window starting when the run starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    /// Length (`"4h"`, or seconds).
    pub length: DurationSpec,
    /// Expected time to patch one host; a host that cannot finish before the window closes
    /// is not started. Default 15 minutes.
    #[serde(default)]
    pub host_estimate: Option<DurationSpec>,
}

/// A duration written as text (`"90s"`, `"15m"`, `"4h"`) or seconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum DurationSpec {
    /// Seconds.
    Seconds(u64),
    /// Text.
    Text(String),
}

impl<'de> Deserialize<'de> for DurationSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::Number(n) => {
                n.as_u64().map(DurationSpec::Seconds).ok_or_else(|| {
                    serde::de::Error::custom(format!("{n} is not a whole number of seconds"))
                })
            }
            serde_json::Value::String(s) => Ok(DurationSpec::Text(s)),
            other => Err(serde::de::Error::custom(format!(
                "expected a duration (\"4h\", \"15m\") or seconds, got {other}"
            ))),
        }
    }
}

impl DurationSpec {
    /// The duration, or why it is not one.
    pub fn get(&self) -> Result<Duration, String> {
        match self {
            DurationSpec::Seconds(s) => Ok(Duration::from_secs(*s)),
            DurationSpec::Text(t) => parse_duration(t),
        }
    }
}

/// Which errata a run applies. Only approved errata are ever applied; the filters narrow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrataFilter {
    /// Must be true (spm never applies an unapproved erratum); present to be explicit.
    #[serde(default = "yes")]
    pub approved_only: bool,
    /// Severities to include (`critical`, `high`, `medium`, `low`, `unknown`); empty = all.
    #[serde(default)]
    pub severity: Vec<String>,
    /// Advisory types (`security`, `bugfix`, `enhancement`); empty = all.
    #[serde(default)]
    pub types: Vec<String>,
    /// Only errata issued on or before this date (`YYYY-MM-DD`).
    #[serde(default)]
    pub issued_before: Option<String>,
    /// Patch level `YYYY-MM`: errata issued up to the end of that month.
    #[serde(default)]
    pub patch_level: Option<String>,
}

fn yes() -> bool {
    true
}

impl Default for ErrataFilter {
    fn default() -> Self {
        ErrataFilter {
            approved_only: true,
            severity: Vec::new(),
            types: Vec::new(),
            issued_before: None,
            patch_level: None,
        }
    }
}

impl ErrataFilter {
    /// The last issue date allowed (`YYYY-MM-DD`), from `issued_before` and `patch_level`.
    pub fn cutoff(&self) -> Option<chrono::NaiveDate> {
        let a = self
            .issued_before
            .as_deref()
            .and_then(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok());
        let b = self.patch_level.as_deref().and_then(month_end);
        match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

fn month_end(level: &str) -> Option<chrono::NaiveDate> {
    let first = chrono::NaiveDate::parse_from_str(&format!("{level}-01"), "%Y-%m-%d").ok()?;
    let next = first.checked_add_months(chrono::Months::new(1))?;
    next.pred_opt()
}

/// Reboot policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reboot {
    /// Never reboot (a reboot-requiring erratum leaves the host pending a reboot).
    Never,
    /// Reboot when an applied erratum suggests it.
    #[default]
    IfNeeded,
    /// Always reboot after patching.
    Always,
}

/// A host count: absolute (`3`) or a percentage of the hosts (`"10%"`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Count {
    /// Absolute.
    Hosts(u32),
    /// `"N%"`.
    Percent(String),
}

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::Number(n) => n
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .map(Count::Hosts)
                .ok_or_else(|| {
                    serde::de::Error::custom(format!(
                        "{n} is not a host count (a whole number) or a percentage like \"10%\""
                    ))
                }),
            serde_json::Value::String(s) => Ok(Count::Percent(s)),
            other => Err(serde::de::Error::custom(format!(
                "expected a host count (3) or a percentage (\"10%\"), got {other}"
            ))),
        }
    }
}

impl Count {
    /// Parse the percentage form; `Ok(None)` for an absolute count.
    pub fn percent(&self) -> Result<Option<f64>, String> {
        match self {
            Count::Hosts(_) => Ok(None),
            Count::Percent(s) => {
                let n = s
                    .trim()
                    .strip_suffix('%')
                    .and_then(|n| n.trim().parse::<f64>().ok())
                    .ok_or_else(|| {
                        format!("{s:?} is neither a host count nor a percentage like \"10%\"")
                    })?;
                if !(n > 0.0 && n <= 100.0) {
                    return Err(format!("{s:?} must be above 0% and at most 100%"));
                }
                Ok(Some(n))
            }
        }
    }

    /// Hosts out of `total` (a percentage rounds up, so never 0 of a non-empty set).
    pub fn of(&self, total: usize) -> usize {
        match self {
            Count::Hosts(n) => (*n as usize).min(total),
            Count::Percent(_) => match self.percent() {
                Ok(Some(p)) => ((total as f64 * p / 100.0).ceil() as usize).min(total),
                _ => 0,
            },
        }
    }
}

/// Waves: a canary first, then these sizes (the last size repeats until every host is done).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Waves {
    /// Canary wave (0 = none).
    #[serde(default = "one_host")]
    pub canary: Count,
    /// Later wave sizes; empty = everything else in one wave.
    #[serde(default)]
    pub sizes: Vec<Count>,
}

fn one_host() -> Count {
    Count::Hosts(1)
}

impl Default for Waves {
    fn default() -> Self {
        Waves {
            canary: one_host(),
            sizes: Vec::new(),
        }
    }
}

/// An error budget: the run stops when failures exceed either limit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// Most failed hosts tolerated (0 = the first failure trips).
    #[serde(default)]
    pub hosts: Option<u32>,
    /// Most failed hosts tolerated, as a percentage (0–100).
    #[serde(default)]
    pub percent: Option<f64>,
}

/// Error budgets per wave and for the whole run. No limit at all = zero tolerance.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorBudget {
    /// Per wave (percent of the wave's hosts).
    #[serde(default)]
    pub per_wave: Budget,
    /// For the run (percent of all planned hosts).
    #[serde(default)]
    pub per_run: Budget,
}

/// What to do with a failed host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RollbackMode {
    /// Roll failed hosts back at once (package strategy; needs the pre-patch versions,
    /// which the run records for this mode).
    Auto,
    /// Leave them; `spm run rollback` later.
    #[default]
    Manual,
}

/// Who applies errata.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Executor {
    /// `system.scheduleApplyErrata` through UYUNI.
    #[default]
    Uyuni,
    /// An Ansible playbook run by spm against the wave's systems (see [`AnsiblePolicy`]).
    Ansible,
}

/// How a host patched by Ansible is verified.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnsibleVerify {
    /// Run the scan playbook (`scan-compliance.yml`): the host fails when a package
    /// (Debian family) or advisory (RHEL) of its errata is still pending.
    #[default]
    Scan,
    /// Re-read relevance from UYUNI, as the UYUNI executor does (needs UYUNI to have seen
    /// the new package versions).
    Uyuni,
    /// The patch playbook's own result is the verdict.
    None,
}

/// `ansible = { ... }`: how `executor = "ansible"` patches.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnsiblePolicy {
    /// Patch playbook in the playbook directory; default `patch-rhel.yml` for RHEL,
    /// `patch-ubuntu.yml` for Ubuntu and Debian.
    #[serde(default)]
    pub playbook: Option<String>,
    /// How VERIFY checks a host.
    #[serde(default)]
    pub verify: AnsibleVerify,
    /// Scan playbook for `verify = "scan"` (default `scan-compliance.yml`).
    #[serde(default)]
    pub scan_playbook: Option<String>,
    /// Extra variables for both playbooks (e.g. `spm_become = false`).
    #[serde(default)]
    pub extra_vars: serde_json::Map<String, serde_json::Value>,
    /// Parallel hosts (`--forks`); default `max_parallel`.
    #[serde(default)]
    pub forks: Option<u32>,
    /// Longest a playbook may run per batch (`"2h"`); default the window or
    /// `[ansible] timeout_secs`.
    #[serde(default)]
    pub timeout: Option<DurationSpec>,
}

/// Variables the executor sets per host; a policy may not set them in `extra_vars`
/// (extra variables would override every host's own value).
pub const ANSIBLE_HOST_VARS: &[&str] = &[
    "spm_packages",
    "spm_advisories",
    "spm_errata",
    "spm_reboot",
    "spm_system_id",
    "spm_targets",
];

impl AnsiblePolicy {
    /// The patch playbook for an OS family.
    pub fn playbook_for(&self, family: &str) -> String {
        self.playbook.clone().unwrap_or_else(|| match family {
            "rhel" => "patch-rhel.yml".into(),
            _ => "patch-ubuntu.yml".into(),
        })
    }

    /// The scan playbook.
    pub fn scan_playbook(&self) -> String {
        self.scan_playbook
            .clone()
            .unwrap_or_else(|| "scan-compliance.yml".into())
    }
}

impl Policy {
    /// The queue OS family of the policy's OS (`rhel9` → `rhel`).
    pub fn os_family(&self) -> &'static str {
        os_family(&self.os).unwrap_or("unknown")
    }

    /// The maintenance window length and the per-host estimate.
    pub fn window(&self) -> Option<(Duration, Duration)> {
        let w = self.maintenance_window.as_ref()?;
        let len = w.length.get().ok()?;
        let est = w
            .host_estimate
            .as_ref()
            .and_then(|d| d.get().ok())
            .unwrap_or(Duration::from_secs(15 * 60));
        Some((len, est))
    }

    /// The next cron time strictly after `after`, in UTC.
    pub fn next_run_after(
        &self,
        after: chrono::DateTime<chrono::Utc>,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        let s = self.schedule.as_ref()?;
        let tz: chrono_tz::Tz = s.timezone.parse().ok()?;
        let cron = croner::Cron::from_str(&s.cron).ok()?;
        cron.find_next_occurrence(&after.with_timezone(&tz), false)
            .ok()
            .map(|t| t.with_timezone(&chrono::Utc))
    }

    /// Semantic checks after the shape is known; each problem names its key.
    pub fn check(&self) -> Vec<KeyProblem> {
        let mut out = Vec::new();
        let mut bad = |key: &str, message: String| {
            out.push(KeyProblem {
                key: key.to_string(),
                message,
            })
        };
        let id_ok = !self.id.is_empty()
            && self.id.len() <= 64
            && self
                .id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
            && self.id.starts_with(|c: char| c.is_ascii_alphanumeric());
        if !id_ok {
            bad(
                "id",
                format!(
                    "`id` {:?} must be 1-64 characters of a-z, 0-9, '.', '_', '-' starting with a letter or digit",
                    self.id
                ),
            );
        }
        if self.name.trim().is_empty() {
            bad("name", "`name` must not be empty".into());
        }
        if os_family(&self.os).is_none() {
            bad(
                "os",
                format!(
                    "`os` {:?} is not supported (ubuntu2404, debian12, rhel9, or ubuntu, debian, rhel)",
                    self.os
                ),
            );
        }
        let t = &self.targets;
        if t.groups.is_empty() && t.tags.is_empty() {
            bad(
                "targets",
                "`targets` selects nothing: give `groups` and/or `tags`".into(),
            );
        }
        if t.groups.iter().any(|g| g.trim().is_empty()) {
            bad("groups", "`targets.groups` has an empty group name".into());
        }
        if let Some(s) = &self.schedule {
            if let Err(e) = croner::Cron::from_str(&s.cron) {
                bad(
                    "cron",
                    format!("`schedule.cron` {:?} is not a cron expression: {e}", s.cron),
                );
            }
            if s.timezone.parse::<chrono_tz::Tz>().is_err() {
                bad(
                    "timezone",
                    format!(
                        "`schedule.timezone` {:?} is not an IANA time zone (e.g. Europe/Rome)",
                        s.timezone
                    ),
                );
            }
        }
        if let Some(w) = &self.maintenance_window {
            match w.length.get() {
                Ok(d) if d.is_zero() => bad(
                    "length",
                    "`maintenance_window.length` must be above 0".into(),
                ),
                Ok(_) => {}
                Err(e) => bad("length", format!("`maintenance_window.length`: {e}")),
            }
            if let Some(h) = &w.host_estimate
                && let Err(e) = h.get()
            {
                bad(
                    "host_estimate",
                    format!("`maintenance_window.host_estimate`: {e}"),
                );
            }
        }
        let e = &self.errata;
        if !e.approved_only {
            bad(
                "approved_only",
                "`errata.approved_only = false` is refused: spm applies only approved errata"
                    .into(),
            );
        }
        for s in &e.severity {
            if !["critical", "high", "medium", "low", "unknown"].contains(&s.as_str()) {
                bad(
                    "severity",
                    format!("`errata.severity` has {s:?} (critical, high, medium, low, unknown)"),
                );
            }
        }
        for s in &e.types {
            if !["security", "bugfix", "enhancement"].contains(&s.as_str()) {
                bad(
                    "types",
                    format!("`errata.types` has {s:?} (security, bugfix, enhancement)"),
                );
            }
        }
        if let Some(d) = &e.issued_before
            && chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").is_err()
        {
            bad(
                "issued_before",
                format!("`errata.issued_before` {d:?} is not a date YYYY-MM-DD"),
            );
        }
        if let Some(l) = &e.patch_level
            && month_end(l).is_none()
        {
            bad(
                "patch_level",
                format!("`errata.patch_level` {l:?} is not a month YYYY-MM"),
            );
        }
        if let Some(a) = &self.ansible {
            if self.executor != Executor::Ansible {
                bad(
                    "ansible",
                    "`ansible` settings need `executor = \"ansible\"`".into(),
                );
            }
            for (key, name) in [
                ("playbook", &a.playbook),
                ("scan_playbook", &a.scan_playbook),
            ] {
                if let Some(n) = name {
                    let ok = !n.starts_with('/')
                        && !n.split('/').any(|c| c == ".." || c.is_empty())
                        && (n.ends_with(".yml") || n.ends_with(".yaml"));
                    if !ok {
                        bad(
                            key,
                            format!(
                                "`ansible.{key}` {n:?} must be a .yml file inside the playbook directory (no `..`, not absolute)"
                            ),
                        );
                    }
                }
            }
            for k in a.extra_vars.keys() {
                let ident = k.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                    && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !ident {
                    bad(
                        "extra_vars",
                        format!("`ansible.extra_vars` has {k:?}, not a variable name"),
                    );
                } else if ANSIBLE_HOST_VARS.contains(&k.as_str()) {
                    bad(
                        "extra_vars",
                        format!(
                            "`ansible.extra_vars.{k}` is set per host by spm from the plan; it cannot be set for every host"
                        ),
                    );
                }
            }
            if let Some(f) = a.forks
                && !(1..=1000).contains(&f)
            {
                bad(
                    "forks",
                    format!("`ansible.forks` {f} is not between 1 and 1000"),
                );
            }
            if let Some(t) = &a.timeout {
                match t.get() {
                    Ok(d) if d.is_zero() => {
                        bad("timeout", "`ansible.timeout` must be above 0".into())
                    }
                    Ok(_) => {}
                    Err(e) => bad("timeout", format!("`ansible.timeout`: {e}")),
                }
            }
        }
        if let Err(m) = self.waves.canary.percent() {
            bad("canary", format!("`waves.canary`: {m}"));
        }
        for (i, s) in self.waves.sizes.iter().enumerate() {
            match (s, s.percent()) {
                (_, Err(m)) => bad("sizes", format!("`waves.sizes[{}]`: {m}", i + 1)),
                (Count::Hosts(0), _) => bad(
                    "sizes",
                    format!("`waves.sizes[{}]` must be at least 1", i + 1),
                ),
                _ => {}
            }
        }
        if self.max_parallel == 0 || self.max_parallel > 10_000 {
            bad(
                "max_parallel",
                format!("`max_parallel` {} must be 1..10000", self.max_parallel),
            );
        }
        for (name, b) in [
            ("per_wave", &self.error_budget.per_wave),
            ("per_run", &self.error_budget.per_run),
        ] {
            if let Some(p) = b.percent
                && !(p.is_finite() && (0.0..=100.0).contains(&p))
            {
                bad(
                    "percent",
                    format!("`error_budget.{name}.percent` {p} must be between 0 and 100"),
                );
            }
        }
        for h in &self.hooks {
            if !HOOKS.contains(&h.as_str()) {
                bad(
                    h,
                    format!("unknown hook `{h}` (known: {})", HOOKS.join(", ")),
                );
            }
        }
        out
    }
}

/// The queue OS family for a policy OS name.
pub fn os_family(os: &str) -> Option<&'static str> {
    match os {
        "ubuntu" | "ubuntu2404" | "ubuntu2204" => Some("ubuntu"),
        "debian" | "debian12" | "debian13" => Some("debian"),
        "rhel" | "rhel8" | "rhel9" => Some("rhel"),
        _ => None,
    }
}

/// Convert a Lua value into JSON; functions are refused except directly under `hooks`
/// (those are collected by name).
fn to_json(
    v: &Value,
    key: &str,
    hooks: &mut BTreeSet<String>,
    depth: usize,
) -> Result<serde_json::Value, KeyProblem> {
    let problem = |m: String| KeyProblem {
        key: key.to_string(),
        message: m,
    };
    if depth > 16 {
        return Err(problem(format!("`{key}` is nested too deeply")));
    }
    Ok(match v {
        Value::Nil => serde_json::Value::Null,
        Value::Boolean(b) => serde_json::Value::Bool(*b),
        Value::Integer(i) => serde_json::Value::from(*i),
        Value::Number(n) => serde_json::Number::from_f64(*n)
            .map(serde_json::Value::Number)
            .ok_or_else(|| problem(format!("`{key}` is not a finite number")))?,
        Value::String(s) => serde_json::Value::String(
            s.to_str()
                .map_err(|_| problem(format!("`{key}` is not valid UTF-8")))?
                .to_string(),
        ),
        Value::Table(t) => table_to_json(t, key, hooks, depth + 1)?,
        Value::Function(_) => {
            return Err(problem(format!(
                "`{key}` is a function; policies describe, so functions belong only in `hooks`"
            )));
        }
        other => {
            return Err(problem(format!(
                "`{key}` is a {}, not data",
                other.type_name()
            )));
        }
    })
}

fn table_to_json(
    t: &Table,
    key: &str,
    hooks: &mut BTreeSet<String>,
    depth: usize,
) -> Result<serde_json::Value, KeyProblem> {
    let len = t.raw_len();
    let mut pairs = Vec::new();
    for pair in t.pairs::<Value, Value>() {
        let (k, v) = pair.map_err(|e| KeyProblem {
            key: key.to_string(),
            message: e.to_string(),
        })?;
        pairs.push((k, v));
    }
    let all_int = pairs.iter().all(|(k, _)| matches!(k, Value::Integer(_)));
    if !pairs.is_empty() && all_int && pairs.len() == len {
        let mut arr = Vec::with_capacity(len);
        for i in 1..=len {
            let v: Value = t.raw_get(i).unwrap_or(Value::Nil);
            arr.push(to_json(&v, &format!("{key}[{i}]"), hooks, depth)?);
        }
        return Ok(serde_json::Value::Array(arr));
    }
    let mut map = serde_json::Map::new();
    for (k, v) in pairs {
        let name = match &k {
            Value::String(s) => s.to_string_lossy(),
            other => {
                return Err(KeyProblem {
                    key: key.to_string(),
                    message: format!(
                        "`{key}` mixes a list and named keys (key of type {})",
                        other.type_name()
                    ),
                });
            }
        };
        let path = if key.is_empty() {
            name.clone()
        } else {
            format!("{key}.{name}")
        };
        if key == "hooks" {
            if matches!(v, Value::Function(_)) {
                hooks.insert(name.clone());
                continue;
            }
            return Err(KeyProblem {
                key: path,
                message: format!("`hooks.{name}` must be a function"),
            });
        }
        if key.is_empty() && name == "hooks" && !matches!(v, Value::Table(_)) {
            return Err(KeyProblem {
                key: path,
                message: "`hooks` must be a table of functions".into(),
            });
        }
        // An empty Lua table is both an empty list and an empty map: below the top level
        // it is dropped (the field's default applies), at the top level it is a map.
        if !key.is_empty()
            && let Value::Table(sub) = &v
            && sub.pairs::<Value, Value>().next().is_none()
        {
            continue;
        }
        let j = to_json(&v, &path, hooks, depth)?;
        if !(key.is_empty() && name == "hooks") {
            map.insert(name, j);
        }
    }
    Ok(serde_json::Value::Object(map))
}

/// Turn a serde error about top-level `key` into a problem naming the innermost key when
/// serde names one (`unknown field `x``), so the line points at it.
fn serde_problem(key: &str, e: &serde_json::Error) -> KeyProblem {
    let msg = e.to_string();
    let inner = msg
        .strip_prefix("unknown field `")
        .and_then(|r| r.split('`').next())
        .map(|f| format!("{key}.{f}"));
    let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
    KeyProblem {
        key: inner.unwrap_or_else(|| key.to_string()),
        message: format!("`{key}`: {msg}"),
    }
}

const TOP_KEYS: &[&str] = &[
    "id",
    "name",
    "description",
    "os",
    "targets",
    "schedule",
    "maintenance_window",
    "errata",
    "pre_patch_snapshot",
    "reboot",
    "waves",
    "max_parallel",
    "error_budget",
    "rollback_on_failure",
    "executor",
    "ansible",
];

/// Build a [`Policy`] from the returned table, or every problem found (each naming a key).
pub fn policy_from_table(t: &Table) -> Result<Policy, Vec<KeyProblem>> {
    let mut hooks = BTreeSet::new();
    let json = table_to_json(t, "", &mut hooks, 0).map_err(|p| vec![p])?;
    let serde_json::Value::Object(map) = json else {
        return Err(vec![KeyProblem {
            key: String::new(),
            message: "a policy must return a table of named keys".into(),
        }]);
    };
    let mut problems = Vec::new();
    for (k, v) in &map {
        if !TOP_KEYS.contains(&k.as_str()) {
            problems.push(KeyProblem {
                key: k.clone(),
                message: format!("unknown key `{k}` (known: {}, hooks)", TOP_KEYS.join(", ")),
            });
            continue;
        }
        let tables = [
            "targets",
            "maintenance_window",
            "errata",
            "waves",
            "error_budget",
            "ansible",
        ];
        if tables.contains(&k.as_str()) && !v.is_object() {
            problems.push(KeyProblem {
                key: k.clone(),
                message: format!(
                    "`{k}` must be a table of named keys{}",
                    if k == "waves" {
                        " such as { canary = 1, sizes = { \"25%\", \"100%\" } }"
                    } else {
                        ""
                    }
                ),
            });
            continue;
        }
        // Each field on its own, so an error names its key.
        let mut probe = serde_json::Map::new();
        probe.insert("id".into(), "x".into());
        probe.insert("name".into(), "x".into());
        probe.insert("os".into(), "x".into());
        probe.insert("targets".into(), serde_json::json!({}));
        probe.insert(k.clone(), v.clone());
        if let Err(e) = serde_json::from_value::<Policy>(serde_json::Value::Object(probe)) {
            problems.push(serde_problem(k, &e));
        }
    }
    for required in ["id", "name", "os", "targets"] {
        if !map.contains_key(required) {
            problems.push(KeyProblem {
                key: String::new(),
                message: format!("policy needs `{required}`"),
            });
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut policy: Policy = serde_json::from_value(serde_json::Value::Object(map))
        .map_err(|e| vec![serde_problem("", &e)])?;
    policy.hooks = hooks;
    let problems = policy.check();
    if problems.is_empty() {
        Ok(policy)
    } else {
        Err(problems)
    }
}

/// The policy validator registered with the Lua host.
#[derive(Debug, Default, Clone, Copy)]
pub struct PolicyValidator;

impl TableValidator for PolicyValidator {
    fn validate(&self, table: &Table) -> Vec<KeyProblem> {
        policy_from_table(table).err().unwrap_or_default()
    }
}

/// Contracts with the policy validator in force (for the host's loaders and `spm check`).
pub fn contracts() -> Contracts {
    Contracts {
        policy: Arc::new(PolicyValidator),
    }
}

/// A policy loaded from a file.
#[derive(Debug, Clone)]
pub struct LoadedPolicy {
    /// The data.
    pub policy: Policy,
    /// Path as given (used as the chunk name).
    pub path: String,
    /// Source text (hooks are run from it).
    pub content: Arc<str>,
    /// Hex SHA-256 of the source.
    pub sha256: String,
}

/// A policy file that could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("; "))]
pub struct PolicyError(pub Vec<Diagnostic>);

/// Load and validate a policy file through the Lua host (sandboxed VM, 10 s budget).
pub async fn load_policy(path: &Path) -> Result<LoadedPolicy, PolicyError> {
    let shown = path.display().to_string();
    let content = std::fs::read_to_string(path).map_err(|e| {
        PolicyError(vec![Diagnostic::error(
            &shown,
            None,
            format!("cannot read: {e}"),
        )])
    })?;
    load_policy_source(&shown, &content).await
}

/// Load and validate policy source text named `path`.
pub async fn load_policy_source(path: &str, content: &str) -> Result<LoadedPolicy, PolicyError> {
    let limits = Limits {
        timeout: Duration::from_secs(10),
        ..Limits::default()
    };
    let vm = vm::build(
        &Services::default(),
        Arc::new(BTreeMap::new()),
        &limits,
        Deadline::after(limits.timeout),
        tokio_util::sync::CancellationToken::new(),
    )
    .map_err(|e| PolicyError(vec![Diagnostic::error(path, None, e.to_string())]))?;
    let contracts = contracts();
    let loaded = tokio::time::timeout(
        limits.timeout,
        loader::load(&vm, &contracts, path, content, Some(ScriptKind::Policy)),
    )
    .await
    .map_err(|_| {
        PolicyError(vec![Diagnostic::error(
            path,
            None,
            "loading took longer than 10s; a policy must return data at once",
        )])
    })?
    .map_err(PolicyError)?;
    let table = loaded.table().ok_or_else(|| {
        PolicyError(vec![Diagnostic::error(
            path,
            None,
            "a policy must return a table",
        )])
    })?;
    let policy = policy_from_table(table).map_err(|ps| {
        PolicyError(
            ps.into_iter()
                .map(|p| {
                    Diagnostic::error(
                        path,
                        crate::host::contracts::key_line(content, &p.key),
                        p.message,
                    )
                })
                .collect(),
        )
    })?;
    Ok(LoadedPolicy {
        policy,
        path: path.to_string(),
        content: Arc::from(content),
        sha256: crate::host::scriptset::sha256_hex(content.as_bytes()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(src: &str) -> Result<LoadedPolicy, PolicyError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(load_policy_source("policies/t.lua", src))
    }

    const GOOD: &str = r#"---@spm api=1 kind=policy
return {
  id = "t1",
  name = "Test",
  os = "rhel9",
  targets = { groups = { "prod-rhel-web" } },
  schedule = { cron = "0 2 * * 0", timezone = "Europe/Rome" },
  maintenance_window = { length = "4h" },
  errata = { severity = { "critical", "high" }, patch_level = "2026-02" },
  waves = { canary = 1, sizes = { "50%" } },
  error_budget = { per_wave = { hosts = 1 }, per_run = { percent = 10 } },
  hooks = { verify_host = function(ctx) return true end },
}
"#;

    #[test]
    fn good_policy_loads() {
        let p = load(GOOD).unwrap().policy;
        assert_eq!(p.id, "t1");
        assert_eq!(p.os_family(), "rhel");
        assert!(p.hooks.contains("verify_host"));
        assert_eq!(
            p.errata.cutoff(),
            chrono::NaiveDate::from_ymd_opt(2026, 2, 28)
        );
        let after = chrono::DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        // Sunday 29 Nov 2026 02:00 Europe/Rome = 01:00 UTC.
        assert_eq!(
            p.next_run_after(after).unwrap().to_rfc3339(),
            "2026-11-29T01:00:00+00:00"
        );
    }

    fn err_of(src: &str) -> String {
        load(src).unwrap_err().to_string()
    }

    #[test]
    fn bad_policies_name_key_and_line() {
        let e = err_of(&GOOD.replace("  max_parallel", "x").replace(
            "  os = \"rhel9\",",
            "  os = \"rhel9\",\n  colour = \"blue\",",
        ));
        assert!(e.contains("policies/t.lua:6: unknown key `colour`"), "{e}");
        let e = err_of(&GOOD.replace("0 2 * * 0", "0 25 * * 0"));
        assert!(
            e.contains("policies/t.lua:7:") && e.contains("schedule.cron"),
            "{e}"
        );
        let e = err_of(&GOOD.replace("{ groups = { \"prod-rhel-web\" } }", "{ groups = {} }"));
        assert!(
            e.contains("policies/t.lua:6:") && e.contains("selects nothing"),
            "{e}"
        );
        let e = err_of(&GOOD.replace("percent = 10", "percent = 150"));
        assert!(
            e.contains("policies/t.lua:11:") && e.contains("between 0 and 100"),
            "{e}"
        );
        let e = err_of(&GOOD.replace("canary = 1,", "canary = 1, speed = 3,"));
        assert!(
            e.contains("policies/t.lua:10:") && e.contains("speed"),
            "{e}"
        );
        let e = err_of(&GOOD.replace("Europe/Rome", "Mars/Olympus"));
        assert!(e.contains("IANA"), "{e}");
        let e = err_of(&GOOD.replace("name = \"Test\"", "name = function() end"));
        assert!(
            e.contains("policies/t.lua:4:") && e.contains("functions belong only in `hooks`"),
            "{e}"
        );
        let e = err_of(&GOOD.replace("verify_host", "after_wave"));
        assert!(e.contains("unknown hook `after_wave`"), "{e}");
        let e = err_of(&GOOD.replace("\"50%\"", "\"150%\""));
        assert!(e.contains("at most 100%"), "{e}");
        let e = err_of(&GOOD.replace("---@spm api=1 kind=policy", "---@spm api=1 kind=phase"));
        assert!(e.contains("kind=policy"), "{e}");
    }

    #[test]
    fn ansible_settings_are_validated() {
        let with = |settings: &str| {
            GOOD.replace(
                "  hooks =",
                &format!("  executor = \"ansible\",\n  ansible = {settings},\n  hooks ="),
            )
        };
        let p = load(&with(
            "{ verify = \"none\", extra_vars = { spm_become = false }, timeout = \"2h\" }",
        ))
        .unwrap()
        .policy;
        let a = p.ansible.clone().unwrap();
        assert_eq!(a.verify, AnsibleVerify::None);
        assert_eq!(a.playbook_for(p.os_family()), "patch-rhel.yml");
        assert_eq!(a.scan_playbook(), "scan-compliance.yml");
        assert_eq!(
            AnsiblePolicy::default().playbook_for("debian"),
            "patch-ubuntu.yml"
        );
        let e = err_of(&with("{ playbook = \"../x.yml\" }"));
        assert!(
            e.contains("policies/t.lua:13:") && e.contains("ansible.playbook"),
            "{e}"
        );
        let e = err_of(&with("{ extra_vars = { spm_packages = { \"x\" } } }"));
        assert!(e.contains("set per host by spm"), "{e}");
        let e = err_of(&with("{ verify = \"maybe\" }"));
        assert!(
            e.contains("`ansible`") && e.contains("maybe") && e.contains("scan"),
            "{e}"
        );
        let e = err_of(&with("{ forks = 0 }"));
        assert!(e.contains("between 1 and 1000"), "{e}");
        let e = err_of(&with("{ playbok = \"x.yml\" }"));
        assert!(e.contains("playbok"), "{e}");
        let e = err_of(&GOOD.replace("  hooks =", "  ansible = { verify = \"scan\" },\n  hooks ="));
        assert!(e.contains("need `executor = \"ansible\"`"), "{e}");
    }
}
