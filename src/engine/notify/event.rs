//! Notification events: what happened, how bad it is, and what it relates to.

use serde::{Deserialize, Serialize};

/// Every event type spm notifies about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A patch test failed on a test system.
    TestFailed,
    /// A patch passed its tests and waits for an operator's decision.
    PendingApproval,
    /// A patch run failed.
    RunFailed,
    /// A patch run stopped because a wave exceeded its error budget.
    BudgetTripped,
    /// A scheduled (cron) policy run did not start at its time (spm was down, the previous
    /// run was still active, or the run could not be planned); raised once per missed slot.
    RunMissed,
    /// A rollback was performed (test or production).
    RollbackPerformed,
    /// An errata sync failed.
    SyncFailed,
    /// An errata sync completed with failures.
    SyncPartial,
    /// Reloading scripts or templates failed; the last good version stays active.
    ScriptReloadError,
    /// The daily digest.
    DailyDigest,
    /// A free-form message from a script (`spm.notify.send`).
    Custom,
    /// A test message (`spm notify test`).
    Test,
}

impl EventKind {
    /// Every kind, in a stable order.
    pub const ALL: [EventKind; 12] = [
        EventKind::TestFailed,
        EventKind::PendingApproval,
        EventKind::RunFailed,
        EventKind::BudgetTripped,
        EventKind::RunMissed,
        EventKind::RollbackPerformed,
        EventKind::SyncFailed,
        EventKind::SyncPartial,
        EventKind::ScriptReloadError,
        EventKind::DailyDigest,
        EventKind::Custom,
        EventKind::Test,
    ];

    /// The name used in configuration, templates and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::TestFailed => "test_failed",
            EventKind::PendingApproval => "pending_approval",
            EventKind::RunFailed => "run_failed",
            EventKind::BudgetTripped => "budget_tripped",
            EventKind::RunMissed => "run_missed",
            EventKind::RollbackPerformed => "rollback_performed",
            EventKind::SyncFailed => "sync_failed",
            EventKind::SyncPartial => "sync_partial",
            EventKind::ScriptReloadError => "script_reload_error",
            EventKind::DailyDigest => "daily_digest",
            EventKind::Custom => "custom",
            EventKind::Test => "test",
        }
    }

    /// Parse a name; `None` for an unknown one.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// Severity used when the event does not set one.
    pub fn default_severity(self) -> Severity {
        match self {
            EventKind::RunFailed | EventKind::BudgetTripped | EventKind::SyncFailed => {
                Severity::Critical
            }
            EventKind::TestFailed
            | EventKind::RollbackPerformed
            | EventKind::RunMissed
            | EventKind::SyncPartial
            | EventKind::ScriptReloadError => Severity::Warning,
            EventKind::PendingApproval
            | EventKind::DailyDigest
            | EventKind::Custom
            | EventKind::Test => Severity::Info,
        }
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How urgent a notification is; ordered `Info < Warning < Critical`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// For information.
    #[default]
    Info,
    /// Needs attention.
    Warning,
    /// Needs attention now.
    Critical,
}

impl Severity {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    /// Parse a name; `None` for an unknown one.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "info" => Some(Severity::Info),
            "warning" => Some(Severity::Warning),
            "critical" => Some(Severity::Critical),
            _ => None,
        }
    }
}

/// Something to notify about. `data` is free-form JSON the templates render (for example
/// `{"system": "web1", "phase": "validate", "reason": "nginx down"}` for `test_failed`).
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Event type.
    pub kind: EventKind,
    /// Severity; the kind's default when `None`.
    pub severity: Option<Severity>,
    /// Related advisory.
    pub advisory: Option<String>,
    /// Related queue item.
    pub queue_id: Option<i64>,
    /// Related test.
    pub test_id: Option<i64>,
    /// Related patch run.
    pub run_id: Option<i64>,
    /// Event details for the templates and webhooks.
    pub data: serde_json::Value,
}

impl Event {
    /// A new event with the given data (any serializable value; an object is expected).
    pub fn new(kind: EventKind, data: impl Serialize) -> Self {
        Self {
            kind,
            severity: None,
            advisory: None,
            queue_id: None,
            test_id: None,
            run_id: None,
            data: serde_json::to_value(data).unwrap_or(serde_json::Value::Null),
        }
    }

    /// A free-form message, as `spm.notify.send{subject=…, body=…, severity=…}` sends it.
    /// Refuses an empty subject.
    pub fn custom(subject: &str, body: &str, severity: Severity) -> Result<Self, String> {
        if subject.trim().is_empty() {
            return Err("notify.send: subject is empty".into());
        }
        Ok(Self::new(
            EventKind::Custom,
            serde_json::json!({"subject": subject, "body": body}),
        )
        .severity(severity))
    }

    /// Set the severity.
    pub fn severity(mut self, s: Severity) -> Self {
        self.severity = Some(s);
        self
    }

    /// Set the related advisory.
    pub fn advisory(mut self, a: impl Into<String>) -> Self {
        self.advisory = Some(a.into());
        self
    }

    /// Set the related queue item.
    pub fn queue_id(mut self, id: i64) -> Self {
        self.queue_id = Some(id);
        self
    }

    /// Set the related test.
    pub fn test_id(mut self, id: i64) -> Self {
        self.test_id = Some(id);
        self
    }

    /// Set the related run.
    pub fn run_id(mut self, id: i64) -> Self {
        self.run_id = Some(id);
        self
    }

    /// The effective severity.
    pub fn effective_severity(&self) -> Severity {
        self.severity.unwrap_or(self.kind.default_severity())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(EventKind::parse("nope"), None);
        assert!(Severity::Info < Severity::Warning && Severity::Warning < Severity::Critical);
    }
}
