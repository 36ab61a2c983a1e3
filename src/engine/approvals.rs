//! The approval gate: approve, reject, snooze, batch approve, and expiring snoozes.
//!
//! Every decision is one transaction: the conditional queue transition
//! (`pending_approval → approved|rejected|snoozed`, through the queue state machine), an
//! append-only `approvals` row (who, when, why, from where, which evidence) and an
//! `audit_log` row. Nothing changes when any part is refused. The actor is the
//! authenticated identity given by the caller (`cli:<user>` from the CLI, the token name from
//! the API), never a name typed by the client.

use chrono::{DateTime, Utc};

use crate::engine::state::QueueStatus;
use crate::store::approvals::{self, ApprovalAction, NewApproval};
use crate::store::audit::{self, AuditEntry};
use crate::store::queue::{self, QueueItem, TransitionExtra};
use crate::store::{Store, StoreError, format_ts};

/// Longest accepted reason, in characters.
pub const MAX_REASON_CHARS: usize = 2000;

/// Who decides, and from where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// Authenticated identity (`cli:<user>`, an API token name).
    pub identity: String,
    /// Client address (`local` for the CLI).
    pub source_addr: Option<String>,
}

impl Actor {
    /// The CLI's identity: `cli:` + the OS user (`$USER`, else `$LOGNAME`, else `unknown`).
    pub fn cli() -> Self {
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .ok()
            .filter(|u| !u.trim().is_empty())
            .unwrap_or_else(|| "unknown".to_string());
        Actor {
            identity: format!("cli:{}", user.trim()),
            source_addr: Some("local".to_string()),
        }
    }
}

/// What the approver decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Approve for production, with an optional comment.
    Approve {
        /// Optional comment.
        reason: Option<String>,
    },
    /// Reject; the reason is required.
    Reject {
        /// Why.
        reason: String,
    },
    /// Ask again later.
    Snooze {
        /// Back to pending_approval at this time (must be in the future).
        until: DateTime<Utc>,
        /// Why.
        reason: String,
    },
}

impl Decision {
    fn target(&self) -> QueueStatus {
        match self {
            Decision::Approve { .. } => QueueStatus::Approved,
            Decision::Reject { .. } => QueueStatus::Rejected,
            Decision::Snooze { .. } => QueueStatus::Snoozed,
        }
    }

    fn action(&self) -> ApprovalAction {
        match self {
            Decision::Approve { .. } => ApprovalAction::Approved,
            Decision::Reject { .. } => ApprovalAction::Rejected,
            Decision::Snooze { .. } => ApprovalAction::Snoozed,
        }
    }

    fn verb(&self) -> &'static str {
        match self {
            Decision::Approve { .. } => "approve",
            Decision::Reject { .. } => "reject",
            Decision::Snooze { .. } => "snooze",
        }
    }
}

/// Rules in force (from `[approvals]`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rules {
    /// Whoever queued the item or started one of its tests cannot approve it.
    pub four_eyes: bool,
}

/// Why a decision was refused.
#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    /// Bad input (empty reason, snooze in the past, evidence of another item).
    #[error("{0}")]
    Invalid(String),
    /// The item is not waiting for a decision.
    #[error(
        "queue item {id} ({advisory} for {os}) is {status}, not pending_approval; only pending items can be decided"
    )]
    NotPending {
        /// Item id.
        id: i64,
        /// Advisory.
        advisory: String,
        /// OS.
        os: String,
        /// Its current status.
        status: QueueStatus,
    },
    /// The four-eyes rule forbids this approver.
    #[error(
        "four-eyes rule: {actor} {role} queue item {id} and cannot also approve it; another approver must"
    )]
    FourEyes {
        /// Item id.
        id: i64,
        /// The refused approver.
        actor: String,
        /// `queued` or `started a test of`.
        role: &'static str,
    },
    /// The store failed or another writer won a race.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The outcome of one decision.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Decided {
    /// The item after the transition.
    pub item: QueueItem,
    /// The appended `approvals` row.
    pub approval_id: i64,
    /// The appended `audit_log` row.
    pub audit_id: i64,
    /// The evidence recorded.
    pub evidence_test_id: Option<i64>,
}

fn clean_reason(
    reason: Option<&str>,
    required: bool,
    verb: &str,
) -> Result<Option<String>, ApprovalError> {
    let r = reason.map(str::trim).filter(|r| !r.is_empty());
    match r {
        None if required => Err(ApprovalError::Invalid(format!(
            "a reason is required to {verb} (--reason)"
        ))),
        None => Ok(None),
        Some(r) if r.chars().count() > MAX_REASON_CHARS => Err(ApprovalError::Invalid(format!(
            "the reason is longer than {MAX_REASON_CHARS} characters"
        ))),
        Some(r) if r.chars().any(|c| c.is_control() && c != '\n' && c != '\t') => Err(
            ApprovalError::Invalid("the reason contains control characters".to_string()),
        ),
        Some(r) => Ok(Some(r.to_string())),
    }
}

/// Decide one item inside an open transaction (the caller commits or rolls back).
pub fn decide_in(
    tx: &rusqlite::Connection,
    id: i64,
    decision: &Decision,
    evidence_test_id: Option<i64>,
    actor: &Actor,
    rules: Rules,
    now: DateTime<Utc>,
) -> Result<Decided, ApprovalError> {
    if actor.identity.trim().is_empty() {
        return Err(ApprovalError::Invalid(
            "no authenticated identity for the decision".to_string(),
        ));
    }
    let verb = decision.verb();
    let (reason, snooze_until) = match decision {
        Decision::Approve { reason } => (clean_reason(reason.as_deref(), false, verb)?, None),
        Decision::Reject { reason } => (clean_reason(Some(reason), true, verb)?, None),
        Decision::Snooze { until, reason } => {
            if *until <= now {
                return Err(ApprovalError::Invalid(format!(
                    "cannot snooze queue item {id} until {}: that is not in the future",
                    format_ts(*until)
                )));
            }
            (clean_reason(Some(reason), true, verb)?, Some(*until))
        }
    };
    let item = queue::get(tx, id)?;
    if item.status != QueueStatus::PendingApproval {
        return Err(ApprovalError::NotPending {
            id,
            advisory: item.advisory,
            os: item.os,
            status: item.status,
        });
    }
    if rules.four_eyes && matches!(decision, Decision::Approve { .. }) {
        if item.queued_by == actor.identity {
            return Err(ApprovalError::FourEyes {
                id,
                actor: actor.identity.clone(),
                role: "queued",
            });
        }
        if approvals::test_starters(tx, id)?.contains(&actor.identity) {
            return Err(ApprovalError::FourEyes {
                id,
                actor: actor.identity.clone(),
                role: "started a test of",
            });
        }
    }
    let evidence = match evidence_test_id {
        Some(t) => match approvals::test_queue_id(tx, t)? {
            Some(q) if q == id => Some(t),
            Some(q) => {
                return Err(ApprovalError::Invalid(format!(
                    "test {t} is evidence for queue item {q}, not {id}"
                )));
            }
            None => {
                return Err(ApprovalError::Invalid(format!("test {t} does not exist")));
            }
        },
        None => item.last_test_id,
    };
    let extra = TransitionExtra {
        snooze_until,
        ..TransitionExtra::default()
    };
    let item = queue::transition(
        tx,
        id,
        QueueStatus::PendingApproval,
        decision.target(),
        &extra,
    )?;
    let snooze_text = snooze_until.map(format_ts);
    let approval_id = approvals::append(
        tx,
        &NewApproval {
            queue_id: id,
            advisory: item.advisory.clone(),
            os: item.os.clone(),
            action: decision.action(),
            actor: actor.identity.clone(),
            reason: reason.clone(),
            snooze_until: snooze_text.clone(),
            source_addr: actor.source_addr.clone(),
            evidence_test_id: evidence,
        },
    )?;
    let audit_id = audit::append(
        tx,
        &AuditEntry {
            actor: actor.identity.clone(),
            source_addr: actor.source_addr.clone(),
            action: format!("approval.{verb}"),
            object_type: "queue_item".to_string(),
            object_id: Some(id.to_string()),
            reason,
            details: serde_json::json!({
                "advisory": item.advisory,
                "os": item.os,
                "approval_id": approval_id,
                "evidence_test_id": evidence,
                "snooze_until": snooze_text,
                "four_eyes": rules.four_eyes,
            }),
        },
    )?;
    Ok(Decided {
        item,
        approval_id,
        audit_id,
        evidence_test_id: evidence,
    })
}

/// Run `f` in one write transaction, keeping its typed error; nothing is committed on error.
fn in_tx<T: Send + 'static>(
    store: &Store,
    f: impl FnOnce(&rusqlite::Connection) -> Result<T, ApprovalError>,
) -> Result<T, ApprovalError> {
    let mut failure = None;
    let res = store.write_blocking(|tx| match f(tx) {
        Ok(v) => Ok(Some(v)),
        Err(e) => {
            failure = Some(e);
            // Returning an error drops the transaction without committing.
            Err(StoreError::Conflict("decision refused".to_string()))
        }
    });
    match (res, failure) {
        (_, Some(e)) => Err(e),
        (Ok(Some(v)), None) => Ok(v),
        (Ok(None), None) => Err(ApprovalError::Invalid("no decision made".to_string())),
        (Err(e), None) => Err(e.into()),
    }
}

/// Decide one item in its own transaction.
pub fn decide(
    store: &Store,
    id: i64,
    decision: &Decision,
    evidence_test_id: Option<i64>,
    actor: &Actor,
    rules: Rules,
) -> Result<Decided, ApprovalError> {
    in_tx(store, |tx| {
        decide_in(tx, id, decision, evidence_test_id, actor, rules, Utc::now())
    })
}

/// Approve several items in one transaction: all of them, or (on the first refusal, which
/// the error names) none. Duplicate ids are approved once.
pub fn approve_batch(
    store: &Store,
    ids: &[i64],
    reason: Option<&str>,
    actor: &Actor,
    rules: Rules,
) -> Result<Vec<Decided>, ApprovalError> {
    let mut unique: Vec<i64> = Vec::with_capacity(ids.len());
    for id in ids {
        if !unique.contains(id) {
            unique.push(*id);
        }
    }
    if unique.is_empty() {
        return Err(ApprovalError::Invalid(
            "no queue items to approve".to_string(),
        ));
    }
    let decision = Decision::Approve {
        reason: reason.map(str::to_string),
    };
    in_tx(store, |tx| {
        let now = Utc::now();
        unique
            .iter()
            .map(|id| decide_in(tx, *id, &decision, None, actor, rules, now))
            .collect()
    })
}

/// Return every snoozed item whose latest snooze ended at or before `now` to
/// `pending_approval`, with an `unsnoozed` approvals row and an audit row (actor
/// `system`), all in one transaction. Returns the ids woken.
pub fn expire_snoozes(store: &Store, now: DateTime<Utc>) -> Result<Vec<i64>, ApprovalError> {
    in_tx(store, |tx| {
        let due = approvals::expired_snoozes(tx, &format_ts(now))?;
        let mut woken = Vec::with_capacity(due.len());
        for (id, until) in due {
            let item = queue::transition(
                tx,
                id,
                QueueStatus::Snoozed,
                QueueStatus::PendingApproval,
                &TransitionExtra::default(),
            )?;
            let approval_id = approvals::append(
                tx,
                &NewApproval {
                    queue_id: id,
                    advisory: item.advisory.clone(),
                    os: item.os.clone(),
                    action: ApprovalAction::Unsnoozed,
                    actor: "system".to_string(),
                    reason: Some(format!("snooze until {until} expired")),
                    snooze_until: Some(until.clone()),
                    source_addr: None,
                    evidence_test_id: item.last_test_id,
                },
            )?;
            audit::append(
                tx,
                &AuditEntry {
                    actor: "system".to_string(),
                    source_addr: None,
                    action: "approval.unsnooze".to_string(),
                    object_type: "queue_item".to_string(),
                    object_id: Some(id.to_string()),
                    reason: Some(format!("snooze until {until} expired")),
                    details: serde_json::json!({
                        "advisory": item.advisory,
                        "os": item.os,
                        "approval_id": approval_id,
                    }),
                },
            )?;
            woken.push(id);
        }
        Ok(woken)
    })
}

/// Parse a snooze end: an RFC 3339 time, a date (`2026-12-01`, midnight UTC), or a
/// duration from `now` (`90m`, `12h`, `7d`, `2w`).
pub fn parse_until(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, ApprovalError> {
    let t = text.trim();
    let bad = || {
        ApprovalError::Invalid(format!(
            "cannot read snooze end {t:?}: expected an RFC 3339 time (2026-12-01T08:00:00Z), \
             a date (2026-12-01) or a duration (90m, 12h, 7d, 2w)"
        ))
    };
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Ok(dt.with_timezone(&Utc));
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        let dt = d.and_hms_opt(0, 0, 0).ok_or_else(bad)?;
        return Ok(dt.and_utc());
    }
    let split = t.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (num, unit) = t.split_at(split);
    let n: i64 = num.parse().map_err(|_| bad())?;
    let secs_per = match unit {
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(bad()),
    };
    let secs = n.checked_mul(secs_per).ok_or_else(bad)?;
    let delta = chrono::Duration::try_seconds(secs).ok_or_else(bad)?;
    now.checked_add_signed(delta).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_until_forms() {
        let now = DateTime::parse_from_rfc3339("2026-11-22T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            parse_until("7d", now).unwrap(),
            now + chrono::Duration::days(7)
        );
        assert_eq!(
            parse_until("90m", now).unwrap(),
            now + chrono::Duration::minutes(90)
        );
        assert_eq!(
            format_ts(parse_until("2026-12-01", now).unwrap()),
            "2026-12-01T00:00:00.000Z"
        );
        assert_eq!(
            format_ts(parse_until("2026-12-01T08:30:00+01:00", now).unwrap()),
            "2026-12-01T07:30:00.000Z"
        );
        for bad in ["", "7", "7y", "d", "-3d", "99999999999999999w", "tomorrow"] {
            assert!(parse_until(bad, now).is_err(), "{bad}");
        }
    }

    #[test]
    fn reasons() {
        assert!(clean_reason(None, true, "reject").is_err());
        assert!(clean_reason(Some("   "), true, "reject").is_err());
        assert_eq!(
            clean_reason(Some(" ok "), true, "reject")
                .unwrap()
                .as_deref(),
            Some("ok")
        );
        assert_eq!(clean_reason(None, false, "approve").unwrap(), None);
        assert!(clean_reason(Some("a\u{7}b"), false, "approve").is_err());
        let long = "x".repeat(MAX_REASON_CHARS + 1);
        assert!(clean_reason(Some(&long), true, "reject").is_err());
    }
}
