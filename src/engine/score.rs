//! Success Score: how safe an advisory looks to apply, 0 (very risky) to 100 (safe).
//!
//! Pure computation, no I/O. The formula is the one of seed `003_*` §10 as the Python
//! prototype implemented it (`seed-prototype.md` §5), so the same inputs give the same
//! number:
//!
//! ```text
//! score = 100
//!   - kernel_penalty        if any package name matches a kernel pattern
//!   - reboot_penalty        if a kernel/reboot pattern matches (or UYUNI suggests a reboot)
//!   - config_penalty        if any package name matches a config pattern
//!   - min(dependency_count * dependency_penalty_per, dependency_penalty_max)
//!   - min(round_half_even(total_size_kb / 1024 * size_penalty_per_mb), size_penalty_max)
//!   + small_patch_bonus     if total_size_kb < small_patch_threshold_kb
//!   - round_half_even(times_failed / times_tested * history_penalty_max)
//!                           if times_tested >= min_tests_for_history
//!   + adjustments           (the optional Lua hook, each with a reason)
//! clamped to 0..=100
//! ```
//!
//! Patterns are regular expressions matched (unanchored, so a plain word is a substring
//! test, exactly like the prototype) against the lower-cased package name. The defaults are
//! the prototype's lists, pitfalls included (`pam` matches `spamassassin`), so scores stay
//! comparable; operators can anchor them in the configuration.
//!
//! Differences from the prototype, on purpose:
//! * package sizes are real (UYUNI's `size` string), not always 0;
//! * an advisory with no package data is **low confidence**: it loses the small-patch bonus
//!   and takes `unknown_packages_penalty` instead of scoring a perfect 100;
//! * a package without a size also makes the score low confidence: the size penalty is
//!   taken at its maximum and the small-patch bonus is forfeited;
//! * `reboot_suggested` from UYUNI counts as requiring a reboot
//!   (`reboot_suggested_counts`, default on).
//!
//! Severity and advisory type do not change the score (as in the prototype); they are
//! carried in the input so the Lua hook can use them.

use regex::Regex;
use serde::{Deserialize, Serialize};

/// Default kernel patterns (prototype `KERNEL_PATTERNS`).
pub const DEFAULT_KERNEL_PATTERNS: &[&str] = &[
    "kernel",
    "linux-image",
    "linux-headers",
    "linux-modules",
    "linux-generic",
    "linux-kvm",
];

/// Default extra reboot patterns (prototype `REBOOT_PATTERNS` minus the kernel ones, which
/// always imply a reboot).
pub const DEFAULT_REBOOT_PATTERNS: &[&str] = &[
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
];

/// Default config patterns (prototype `_CONFIG_PATTERNS`).
pub const DEFAULT_CONFIG_PATTERNS: &[&str] = &[
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
];

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_string()).collect()
}

/// Weights and patterns of the Success Score (configuration section `[score]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScoreConfig {
    /// Points lost when a package matches a kernel pattern.
    pub kernel_penalty: i64,
    /// Points lost when the advisory requires a reboot.
    pub reboot_penalty: i64,
    /// Points lost when a package matches a config pattern.
    pub config_penalty: i64,
    /// Points lost per dependency (`package_count - 1`).
    pub dependency_penalty_per: i64,
    /// Cap of the dependency penalty.
    pub dependency_penalty_max: i64,
    /// Points lost per MiB of packages (rounded half to even).
    pub size_penalty_per_mb: f64,
    /// Cap of the size penalty.
    pub size_penalty_max: i64,
    /// Points lost at a 100 % historical failure rate (scaled by the rate).
    pub history_penalty_max: i64,
    /// History counts only after this many tests.
    pub min_tests_for_history: i64,
    /// Points gained by a patch smaller than `small_patch_threshold_kb`.
    pub small_patch_bonus: i64,
    /// Size (KiB) under which the small-patch bonus applies.
    pub small_patch_threshold_kb: i64,
    /// Points lost when the package list is unknown (low confidence).
    pub unknown_packages_penalty: i64,
    /// Whether UYUNI's `reboot_suggested` flag counts as requiring a reboot.
    pub reboot_suggested_counts: bool,
    /// Regexes for kernel/boot packages (also imply a reboot).
    pub kernel_patterns: Vec<String>,
    /// Regexes for packages that need a reboot.
    pub reboot_patterns: Vec<String>,
    /// Regexes for packages that touch configuration.
    pub config_patterns: Vec<String>,
}

impl Default for ScoreConfig {
    fn default() -> Self {
        Self {
            kernel_penalty: 30,
            reboot_penalty: 15,
            config_penalty: 10,
            dependency_penalty_per: 3,
            dependency_penalty_max: 15,
            size_penalty_per_mb: 2.0,
            size_penalty_max: 10,
            history_penalty_max: 20,
            min_tests_for_history: 3,
            small_patch_bonus: 5,
            small_patch_threshold_kb: 100,
            unknown_packages_penalty: 25,
            reboot_suggested_counts: true,
            kernel_patterns: strings(DEFAULT_KERNEL_PATTERNS),
            reboot_patterns: strings(DEFAULT_REBOOT_PATTERNS),
            config_patterns: strings(DEFAULT_CONFIG_PATTERNS),
        }
    }
}

impl From<&crate::config::ScoreConfig> for ScoreConfig {
    /// The weights and patterns of the global configuration; the settings it does not have
    /// (`unknown_packages_penalty`, `reboot_suggested_counts`) keep their defaults.
    fn from(c: &crate::config::ScoreConfig) -> Self {
        Self {
            kernel_penalty: i64::from(c.kernel_penalty),
            reboot_penalty: i64::from(c.reboot_penalty),
            config_penalty: i64::from(c.config_penalty),
            dependency_penalty_per: i64::from(c.dependency_penalty_per),
            dependency_penalty_max: i64::from(c.dependency_penalty_max),
            size_penalty_per_mb: f64::from(c.size_penalty_per_mb),
            size_penalty_max: i64::from(c.size_penalty_max),
            history_penalty_max: i64::from(c.history_penalty_max),
            min_tests_for_history: i64::from(c.min_tests_for_history),
            small_patch_bonus: i64::from(c.small_patch_bonus),
            small_patch_threshold_kb: i64::try_from(c.small_patch_threshold_kb).unwrap_or(i64::MAX),
            kernel_patterns: c.kernel_patterns.clone(),
            reboot_patterns: c.reboot_patterns.clone(),
            config_patterns: c.config_patterns.clone(),
            ..Self::default()
        }
    }
}

/// A pattern in the score configuration that is not a valid regular expression.
#[derive(Debug, thiserror::Error)]
#[error("score.{list}[{index}]: invalid regular expression {pattern:?}: {source}")]
pub struct ScoreConfigError {
    /// Which list (`kernel_patterns`, ...).
    pub list: &'static str,
    /// Index in the list.
    pub index: usize,
    /// The offending pattern.
    pub pattern: String,
    /// The regex error.
    #[source]
    pub source: regex::Error,
}

/// One package of an advisory as the score sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScorePackage {
    /// Package name.
    pub name: String,
    /// Size in bytes, when UYUNI reported one.
    pub size_bytes: Option<u64>,
}

/// Earlier test results of this advisory on this OS.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScoreHistory {
    /// Number of tests run.
    pub times_tested: i64,
    /// Number of those that failed (errors of the infrastructure are not failures).
    pub times_failed: i64,
}

/// An adjustment from the optional Lua hook (`scripts/score.lua`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScoreAdjustment {
    /// Points added (positive) or removed (negative).
    pub delta: i64,
    /// Why, shown in the breakdown.
    pub reason: String,
}

/// Everything the score depends on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScoreInput {
    /// Advisory name (for messages only).
    pub advisory: String,
    /// Advisory type (`security`, `bugfix`, `enhancement`, `unknown`); informational.
    pub advisory_type: String,
    /// Severity (`critical` .. `low`, `unknown`); informational.
    pub severity: String,
    /// The packages, or `None` when the list is unknown (not fetched or the call failed).
    pub packages: Option<Vec<ScorePackage>>,
    /// UYUNI's reboot-suggested flag.
    pub reboot_suggested: bool,
    /// Earlier tests.
    pub history: ScoreHistory,
    /// Adjustments from the Lua hook.
    pub adjustments: Vec<ScoreAdjustment>,
}

/// The analysis of the package list (stored in `risk_profiles`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScoreFactors {
    /// A package matches a kernel pattern.
    pub affects_kernel: bool,
    /// A reboot is needed (kernel, reboot pattern or UYUNI's flag).
    pub requires_reboot: bool,
    /// A package matches a config pattern.
    pub modifies_config: bool,
    /// Number of packages.
    pub package_count: i64,
    /// `package_count - 1` (the prototype's approximation of dependencies).
    pub dependency_count: i64,
    /// Sum of `size_bytes / 1024` (integer division per package, as the prototype).
    pub total_size_kb: i64,
    /// Packages whose name matched a kernel pattern.
    pub kernel_packages: Vec<String>,
    /// Packages whose name matched a reboot pattern.
    pub reboot_packages: Vec<String>,
    /// Packages whose name matched a config pattern.
    pub config_packages: Vec<String>,
    /// Packages without a size.
    pub unsized_packages: Vec<String>,
}

/// One line of the breakdown: points added or removed, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScoreTerm {
    /// Short name of the factor (`kernel`, `reboot`, `config`, `dependencies`, `size`,
    /// `small_patch`, `history`, `unknown_packages`, `adjustment`).
    pub factor: String,
    /// Points: negative for a penalty, positive for a bonus.
    pub points: i64,
    /// Human-readable reason.
    pub reason: String,
}

/// The computed score with its explanation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScoreResult {
    /// Final score, 0..=100.
    pub score: i64,
    /// Score before clamping.
    pub unclamped: i64,
    /// Package data was missing or incomplete; the score is a guess.
    pub low_confidence: bool,
    /// The analysed factors.
    pub factors: ScoreFactors,
    /// Every term applied, in order.
    pub breakdown: Vec<ScoreTerm>,
}

/// What the optional score hook sees for one advisory.
#[derive(Debug, Clone, Serialize)]
pub struct HookInput<'a> {
    /// Advisory name.
    pub advisory: &'a str,
    /// Advisory type.
    pub advisory_type: &'a str,
    /// Severity.
    pub severity: &'a str,
    /// Package list (`None` when unknown).
    pub packages: Option<&'a [ScorePackage]>,
    /// UYUNI's reboot-suggested flag.
    pub reboot_suggested: bool,
    /// Earlier tests.
    pub history: ScoreHistory,
    /// The analysed factors.
    pub factors: &'a ScoreFactors,
    /// Every term computed so far.
    pub terms: &'a [ScoreTerm],
    /// The score before the hook (unclamped).
    pub base_score: i64,
    /// Whether the package data was incomplete.
    pub low_confidence: bool,
}

/// An adjuster of computed scores (the Lua `scripts/score.lua` hook lives in
/// `crate::host::score_hook`). It returns adjustments with reasons or an error that the
/// breakdown records; it never stops a score from being computed.
pub trait ScoreHook: Send + Sync + std::fmt::Debug {
    /// Adjustments for `input`; `Ok(vec![])` when the hook has nothing to say or is absent.
    fn adjust(&self, input: &HookInput<'_>) -> Result<Vec<ScoreAdjustment>, String>;
}

/// A compiled [`ScoreConfig`], ready to score many advisories.
#[derive(Debug, Clone)]
pub struct Scorer {
    config: ScoreConfig,
    kernel: Vec<Regex>,
    reboot: Vec<Regex>,
    config_re: Vec<Regex>,
    hook: Option<std::sync::Arc<dyn ScoreHook>>,
}

fn compile(list: &'static str, patterns: &[String]) -> Result<Vec<Regex>, ScoreConfigError> {
    patterns
        .iter()
        .enumerate()
        .map(|(index, p)| {
            Regex::new(p).map_err(|source| ScoreConfigError {
                list,
                index,
                pattern: p.clone(),
                source,
            })
        })
        .collect()
}

/// Python's `round()` for the values the score uses: half to even.
pub fn round_half_even(x: f64) -> i64 {
    x.round_ties_even() as i64
}

impl Scorer {
    /// Compile the patterns of `config`; an invalid regex is an error naming it.
    pub fn new(config: ScoreConfig) -> Result<Self, ScoreConfigError> {
        let kernel = compile("kernel_patterns", &config.kernel_patterns)?;
        let reboot = compile("reboot_patterns", &config.reboot_patterns)?;
        let config_re = compile("config_patterns", &config.config_patterns)?;
        Ok(Self {
            config,
            kernel,
            reboot,
            config_re,
            hook: None,
        })
    }

    /// The same scorer with `hook` adjusting every score after the formula.
    pub fn with_hook(mut self, hook: std::sync::Arc<dyn ScoreHook>) -> Self {
        self.hook = Some(hook);
        self
    }

    /// The configuration this scorer was built from.
    pub fn config(&self) -> &ScoreConfig {
        &self.config
    }

    /// Analyse a package list (names lower-cased before matching).
    pub fn analyse(&self, packages: &[ScorePackage], reboot_suggested: bool) -> ScoreFactors {
        let mut f = ScoreFactors::default();
        for p in packages {
            let name = p.name.to_lowercase();
            if self.kernel.iter().any(|r| r.is_match(&name)) {
                f.kernel_packages.push(p.name.clone());
            }
            if self.reboot.iter().any(|r| r.is_match(&name)) {
                f.reboot_packages.push(p.name.clone());
            }
            if self.config_re.iter().any(|r| r.is_match(&name)) {
                f.config_packages.push(p.name.clone());
            }
            match p.size_bytes {
                Some(b) => f.total_size_kb += i64::try_from(b / 1024).unwrap_or(i64::MAX / 4),
                None => f.unsized_packages.push(p.name.clone()),
            }
        }
        f.affects_kernel = !f.kernel_packages.is_empty();
        f.requires_reboot = f.affects_kernel
            || !f.reboot_packages.is_empty()
            || (reboot_suggested && self.config.reboot_suggested_counts);
        f.modifies_config = !f.config_packages.is_empty();
        f.package_count = packages.len() as i64;
        f.dependency_count = (f.package_count - 1).max(0);
        f
    }

    /// Compute the score of `input` with every term explained.
    pub fn score(&self, input: &ScoreInput) -> ScoreResult {
        let c = &self.config;
        let mut terms: Vec<ScoreTerm> = Vec::new();
        let mut push = |factor: &str, points: i64, reason: String| {
            terms.push(ScoreTerm {
                factor: factor.to_string(),
                points,
                reason,
            });
        };
        let (factors, low_confidence) = match &input.packages {
            Some(pkgs) if !pkgs.is_empty() => {
                let f = self.analyse(pkgs, input.reboot_suggested);
                let low = !f.unsized_packages.is_empty();
                (f, low)
            }
            _ => {
                let mut f = self.analyse(&[], input.reboot_suggested);
                f.package_count = 0;
                (f, true)
            }
        };
        let known = matches!(&input.packages, Some(p) if !p.is_empty());

        if factors.affects_kernel {
            push(
                "kernel",
                -c.kernel_penalty,
                format!(
                    "kernel/boot package: {}",
                    factors.kernel_packages.join(", ")
                ),
            );
        }
        if factors.requires_reboot {
            let why = if factors.affects_kernel {
                "kernel update needs a reboot".to_string()
            } else if !factors.reboot_packages.is_empty() {
                format!(
                    "package needs a reboot: {}",
                    factors.reboot_packages.join(", ")
                )
            } else {
                "UYUNI marks the advisory reboot_suggested".to_string()
            };
            push("reboot", -c.reboot_penalty, why);
        }
        if factors.modifies_config {
            push(
                "config",
                -c.config_penalty,
                format!(
                    "package touches configuration: {}",
                    factors.config_packages.join(", ")
                ),
            );
        }
        if known {
            let dep =
                (factors.dependency_count * c.dependency_penalty_per).min(c.dependency_penalty_max);
            if dep != 0 {
                push(
                    "dependencies",
                    -dep,
                    format!(
                        "{} packages ({} beyond the first, {} each, max {})",
                        factors.package_count,
                        factors.dependency_count,
                        c.dependency_penalty_per,
                        c.dependency_penalty_max
                    ),
                );
            }
            let size = if factors.unsized_packages.is_empty() {
                round_half_even((factors.total_size_kb as f64 / 1024.0) * c.size_penalty_per_mb)
                    .min(c.size_penalty_max)
            } else {
                // Unknown size: assume the worst rather than the best.
                c.size_penalty_max
            };
            if size != 0 {
                push(
                    "size",
                    -size,
                    format!(
                        "{} KiB of packages ({} per MiB, rounded half to even, max {})",
                        factors.total_size_kb, c.size_penalty_per_mb, c.size_penalty_max
                    ),
                );
            }
            if low_confidence {
                push(
                    "unknown_size",
                    0,
                    format!(
                        "no size for {}; size penalty taken at its maximum, no small-patch bonus",
                        factors.unsized_packages.join(", ")
                    ),
                );
            } else if factors.total_size_kb < c.small_patch_threshold_kb {
                push(
                    "small_patch",
                    c.small_patch_bonus,
                    format!(
                        "{} KiB is under {} KiB",
                        factors.total_size_kb, c.small_patch_threshold_kb
                    ),
                );
            }
        } else {
            push(
                "unknown_packages",
                -c.unknown_packages_penalty,
                "package list unknown (not fetched or UYUNI failed); low-confidence score"
                    .to_string(),
            );
        }
        let h = input.history;
        if h.times_tested >= c.min_tests_for_history && h.times_tested > 0 {
            let pen = round_half_even(
                (h.times_failed as f64 / h.times_tested as f64) * c.history_penalty_max as f64,
            );
            if pen != 0 {
                push(
                    "history",
                    -pen,
                    format!(
                        "{} of {} earlier tests failed (max {})",
                        h.times_failed, h.times_tested, c.history_penalty_max
                    ),
                );
            }
        }
        for a in &input.adjustments {
            push("adjustment", a.delta, a.reason.clone());
        }
        if let Some(hook) = &self.hook {
            let base_score = 100 + terms.iter().map(|t| t.points).sum::<i64>();
            let hook_input = HookInput {
                advisory: &input.advisory,
                advisory_type: &input.advisory_type,
                severity: &input.severity,
                packages: input.packages.as_deref(),
                reboot_suggested: input.reboot_suggested,
                history: input.history,
                factors: &factors,
                terms: &terms,
                base_score,
                low_confidence,
            };
            match hook.adjust(&hook_input) {
                Ok(adjustments) => {
                    for a in adjustments {
                        terms.push(ScoreTerm {
                            factor: "hook".into(),
                            points: a.delta,
                            reason: a.reason,
                        });
                    }
                }
                Err(e) => {
                    tracing::warn!(advisory = %input.advisory, "score hook failed: {e}");
                    terms.push(ScoreTerm {
                        factor: "hook_error".into(),
                        points: 0,
                        reason: format!("score hook failed, no adjustment applied: {e}"),
                    });
                }
            }
        }
        let unclamped = 100 + terms.iter().map(|t| t.points).sum::<i64>();
        ScoreResult {
            score: unclamped.clamp(0, 100),
            unclamped,
            low_confidence,
            factors,
            breakdown: terms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scorer() -> Scorer {
        Scorer::new(ScoreConfig::default()).unwrap()
    }

    fn pkg(name: &str, bytes: u64) -> ScorePackage {
        ScorePackage {
            name: name.into(),
            size_bytes: Some(bytes),
        }
    }

    fn input(pkgs: Vec<ScorePackage>) -> ScoreInput {
        ScoreInput {
            advisory: "USN-1-1".into(),
            advisory_type: "security".into(),
            severity: "high".into(),
            packages: Some(pkgs),
            ..Default::default()
        }
    }

    #[test]
    fn prototype_openssl_example_is_87() {
        // seed-prototype §5: one openssl package of 1.5 MB gives 100 - 10 - 0 - 3 = 87.
        let r = scorer().score(&input(vec![pkg("openssl", 1_572_864)]));
        assert_eq!(r.factors.total_size_kb, 1536);
        assert_eq!(r.score, 87);
        assert!(!r.low_confidence);
        let factors: Vec<_> = r.breakdown.iter().map(|t| t.factor.as_str()).collect();
        assert_eq!(factors, ["config", "size"]);
    }

    #[test]
    fn size_rounds_half_to_even() {
        // 1280 KiB = 1.25 MiB -> 2.5 -> 2 (Python round), not 3.
        let r = scorer().score(&input(vec![pkg("curl", 1280 * 1024)]));
        assert_eq!(r.score, 98);
        // 1792 KiB = 1.75 MiB -> 3.5 -> 4.
        let r = scorer().score(&input(vec![pkg("curl", 1792 * 1024)]));
        assert_eq!(r.score, 96);
        // 256 KiB -> 0.5 -> 0; not small (>= 100 KiB) -> 100.
        let r = scorer().score(&input(vec![pkg("curl", 256 * 1024)]));
        assert_eq!(r.score, 100);
        // 768 KiB -> 1.5 -> 2.
        let r = scorer().score(&input(vec![pkg("curl", 768 * 1024)]));
        assert_eq!(r.score, 98);
    }

    #[test]
    fn size_kb_is_integer_division_per_package() {
        // Two packages of 1023 bytes each are 0 KiB each in the prototype.
        let r = scorer().score(&input(vec![pkg("a", 1023), pkg("b", 1023)]));
        assert_eq!(r.factors.total_size_kb, 0);
        // 100 - 3 (one dependency) + 5 (small) = 102 -> clamped 100.
        assert_eq!(r.unclamped, 102);
        assert_eq!(r.score, 100);
    }

    #[test]
    fn kernel_patch_costs_45_plus_size_and_deps() {
        // linux-image (kernel, reboot), linux-modules (kernel), 20 MiB total -> size capped 10.
        let r = scorer().score(&input(vec![
            pkg("linux-image-6.8.0-45-generic", 15 * 1024 * 1024),
            pkg("linux-modules-6.8.0-45-generic", 5 * 1024 * 1024),
        ]));
        // 100 - 30 - 15 - 3 - 10 = 42
        assert_eq!(r.score, 42);
        assert!(r.factors.affects_kernel && r.factors.requires_reboot);
    }

    #[test]
    fn substring_pitfalls_match_the_prototype() {
        let s = scorer();
        let f = s.analyse(&[pkg("spamassassin", 0)], false);
        assert!(
            f.modifies_config,
            "pam matches spamassassin as in the prototype"
        );
        let f = s.analyse(&[pkg("libsystemd0", 0)], false);
        assert!(f.requires_reboot && !f.affects_kernel);
        let f = s.analyse(&[pkg("KernelShark", 0)], false);
        assert!(f.affects_kernel, "names are lower-cased before matching");
    }

    #[test]
    fn dependency_penalty_is_capped() {
        let pkgs: Vec<_> = (0..10).map(|i| pkg(&format!("p{i}"), 10 * 1024)).collect();
        let r = scorer().score(&input(pkgs));
        // 10 packages of 10 KiB = 100 KiB: 9 deps * 3 = 27 -> 15; size round(0.195)=0;
        // not < 100 KiB, no bonus -> 85.
        assert_eq!(r.score, 85);
    }

    #[test]
    fn history_rounds_half_to_even() {
        let mut i = input(vec![pkg("curl", 200 * 1024)]);
        // 1/8 * 20 = 2.5 -> 2
        i.history = ScoreHistory {
            times_tested: 8,
            times_failed: 1,
        };
        assert_eq!(scorer().score(&i).score, 98);
        // 3/8 * 20 = 7.5 -> 8
        i.history.times_failed = 3;
        assert_eq!(scorer().score(&i).score, 92);
        // fewer than 3 tests: no history penalty even when all failed
        i.history = ScoreHistory {
            times_tested: 2,
            times_failed: 2,
        };
        assert_eq!(scorer().score(&i).score, 100);
    }

    #[test]
    fn missing_packages_is_low_confidence_not_safest() {
        let mut i = input(vec![]);
        i.packages = None;
        let r = scorer().score(&i);
        assert!(r.low_confidence);
        assert_eq!(r.score, 75);
        let r2 = scorer().score(&input(vec![]));
        assert!(r2.low_confidence);
        assert!(r2.score < 100);
    }

    #[test]
    fn unsized_package_loses_bonus_and_flags() {
        let r = scorer().score(&input(vec![ScorePackage {
            name: "zlib1g".into(),
            size_bytes: None,
        }]));
        assert!(r.low_confidence);
        assert_eq!(r.score, 90);
    }

    #[test]
    fn reboot_suggested_counts_and_can_be_disabled() {
        let mut i = input(vec![pkg("curl", 200 * 1024)]);
        i.reboot_suggested = true;
        assert_eq!(scorer().score(&i).score, 85);
        let s = Scorer::new(ScoreConfig {
            reboot_suggested_counts: false,
            ..ScoreConfig::default()
        })
        .unwrap();
        assert_eq!(s.score(&i).score, 100);
    }

    #[test]
    fn adjustments_apply_and_clamp() {
        let mut i = input(vec![pkg("linux-image-generic", 30 * 1024 * 1024)]);
        i.adjustments.push(ScoreAdjustment {
            delta: -80,
            reason: "site policy".into(),
        });
        let r = scorer().score(&i);
        assert_eq!(r.unclamped, 100 - 30 - 15 - 10 - 80);
        assert_eq!(r.score, 0);
        assert_eq!(r.breakdown.last().unwrap().reason, "site policy");
    }

    #[test]
    fn bad_regex_names_list_and_index() {
        let err = Scorer::new(ScoreConfig {
            config_patterns: vec!["ok".into(), "(".into()],
            ..ScoreConfig::default()
        })
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("score.config_patterns[1]"), "{msg}");
    }

    #[test]
    fn global_config_defaults_map_to_the_same_weights() {
        let from_global = ScoreConfig::from(&crate::config::ScoreConfig::default());
        assert_eq!(from_global, ScoreConfig::default());
    }

    #[test]
    fn config_rejects_unknown_keys() {
        let err = toml::from_str::<ScoreConfig>("kernel_penalty = 40\nbogus = 1\n").unwrap_err();
        assert!(err.to_string().contains("bogus"));
        let c: ScoreConfig = toml::from_str("kernel_penalty = 40\n").unwrap();
        assert_eq!(c.kernel_penalty, 40);
        assert_eq!(c.reboot_penalty, 15);
    }
}
