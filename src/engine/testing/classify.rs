//! Failure classification and retry decisions (pure functions, no I/O).
//!
//! A failure is classified by the *kind* of the error the phase raised (set by the Rust
//! primitive or by `spm.fail{kind=…}` in Lua), never by searching the message text — the
//! prototype classified every failed patch as transient because its message contained
//! "timed out".

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Why a test failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureClass {
    /// The test system or UYUNI could not do the work (offline, no disk, lock held).
    Infrastructure,
    /// A temporary condition (timeouts, network); worth retrying soon.
    Transient,
    /// The patch itself did not apply.
    Patch,
    /// The patch applied but broke something (services, metrics).
    Regression,
    /// An operator aborted the test or its deadline passed.
    Aborted,
}

impl FailureClass {
    /// The database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::Infrastructure => "infrastructure",
            FailureClass::Transient => "transient",
            FailureClass::Patch => "patch",
            FailureClass::Regression => "regression",
            FailureClass::Aborted => "aborted",
        }
    }

    /// Classify an error kind (as carried by `ScriptError::kind`).
    ///
    /// Unknown kinds and errors in the operator's own scripts (`script`, `config`) count as
    /// infrastructure: the patch is not to blame, and the retry limit still applies.
    pub fn from_error_kind(kind: &str) -> FailureClass {
        match kind {
            "transient" | "timeout" => FailureClass::Transient,
            "patch" => FailureClass::Patch,
            "regression" => FailureClass::Regression,
            "cancelled" | "aborted" => FailureClass::Aborted,
            _ => FailureClass::Infrastructure,
        }
    }
}

/// How often and how late one failure class is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryRule {
    /// Retries allowed after the first attempt.
    pub max_retries: u32,
    /// Delay before the retry, in seconds.
    pub delay_s: u64,
}

/// Retry rules per failure class (configuration `test.retry`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Infrastructure failures (default: 2 retries after 2 h).
    pub infrastructure: RetryRule,
    /// Transient failures (default: 3 retries after 30 min).
    pub transient: RetryRule,
    /// Patch failures (default: none).
    pub patch: RetryRule,
    /// Regressions (default: none).
    pub regression: RetryRule,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            infrastructure: RetryRule {
                max_retries: 2,
                delay_s: 2 * 3600,
            },
            transient: RetryRule {
                max_retries: 3,
                delay_s: 30 * 60,
            },
            patch: RetryRule {
                max_retries: 0,
                delay_s: 0,
            },
            regression: RetryRule {
                max_retries: 0,
                delay_s: 0,
            },
        }
    }
}

impl RetryPolicy {
    /// The rule for a class; aborted tests are never retried automatically.
    pub fn rule(&self, class: FailureClass) -> Option<RetryRule> {
        match class {
            FailureClass::Infrastructure => Some(self.infrastructure),
            FailureClass::Transient => Some(self.transient),
            FailureClass::Patch => Some(self.patch),
            FailureClass::Regression => Some(self.regression),
            FailureClass::Aborted => None,
        }
    }
}

/// What happens to a queue item after a failed test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Retry after this delay (status `retry_pending`, retry count + 1).
    Retry(Duration),
    /// No retry left or none allowed (status `failed`).
    Fail,
}

/// Decide the next step after a failure of `class` on an item retried `retry_count` times.
///
/// A failure whose rollback could not be verified is never retried: the test system is in
/// an unknown state and an operator has to look at it.
pub fn after_failure(
    policy: &RetryPolicy,
    class: FailureClass,
    retry_count: u32,
    rollback_verified: bool,
) -> AfterFailure {
    if !rollback_verified {
        return AfterFailure::Fail;
    }
    match policy.rule(class) {
        Some(rule) if retry_count < rule.max_retries => {
            AfterFailure::Retry(Duration::from_secs(rule.delay_s))
        }
        _ => AfterFailure::Fail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_come_from_kinds_not_messages() {
        assert_eq!(FailureClass::from_error_kind("patch"), FailureClass::Patch);
        assert_eq!(
            FailureClass::from_error_kind("timeout"),
            FailureClass::Transient
        );
        assert_eq!(
            FailureClass::from_error_kind("regression"),
            FailureClass::Regression
        );
        assert_eq!(
            FailureClass::from_error_kind("script"),
            FailureClass::Infrastructure
        );
        assert_eq!(
            FailureClass::from_error_kind("cancelled"),
            FailureClass::Aborted
        );
    }

    #[test]
    fn retry_limits_per_class() {
        let p = RetryPolicy::default();
        assert_eq!(
            after_failure(&p, FailureClass::Infrastructure, 0, true),
            AfterFailure::Retry(Duration::from_secs(7200))
        );
        assert_eq!(
            after_failure(&p, FailureClass::Infrastructure, 2, true),
            AfterFailure::Fail
        );
        assert_eq!(
            after_failure(&p, FailureClass::Transient, 2, true),
            AfterFailure::Retry(Duration::from_secs(1800))
        );
        assert_eq!(
            after_failure(&p, FailureClass::Patch, 0, true),
            AfterFailure::Fail
        );
        assert_eq!(
            after_failure(&p, FailureClass::Regression, 0, true),
            AfterFailure::Fail
        );
        assert_eq!(
            after_failure(&p, FailureClass::Aborted, 0, true),
            AfterFailure::Fail
        );
    }

    #[test]
    fn unverified_rollback_is_never_retried() {
        let p = RetryPolicy::default();
        assert_eq!(
            after_failure(&p, FailureClass::Transient, 0, false),
            AfterFailure::Fail
        );
    }
}
