//! The daily digest: when it is due, and what it contains.

use chrono::{DateTime, Duration as ChronoDuration, NaiveTime, TimeZone, Utc};
use serde::Serialize;

use crate::store::notifications::{
    ComplianceSummary, PendingApproval, RecentFailure, compliance_summary, failures_since,
    pending_approvals,
};
use crate::store::{Store, StoreResult};

/// The most recent scheduled digest instant at or before `now`: today's `time` in `tz`
/// if it has passed, else yesterday's. A time skipped by a DST change moves forward an
/// hour; an ambiguous one takes the earlier instant.
pub fn last_scheduled(now: DateTime<Utc>, time: NaiveTime, tz: chrono_tz::Tz) -> DateTime<Utc> {
    let local_today = now.with_timezone(&tz).date_naive();
    let at = |date: chrono::NaiveDate| -> DateTime<Utc> {
        let naive = date.and_time(time);
        match tz.from_local_datetime(&naive).earliest() {
            Some(t) => t.with_timezone(&Utc),
            None => tz
                .from_local_datetime(&(naive + ChronoDuration::hours(1)))
                .earliest()
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or_else(|| Utc.from_utc_datetime(&naive)),
        }
    };
    let today = at(local_today);
    if today <= now {
        today
    } else {
        at(local_today.pred_opt().unwrap_or(local_today))
    }
}

/// Whether a digest is due at `now`, given when the last one was sent.
pub fn is_due(
    now: DateTime<Utc>,
    time: NaiveTime,
    tz: chrono_tz::Tz,
    last_sent: Option<DateTime<Utc>>,
) -> bool {
    let slot = last_scheduled(now, time, tz);
    last_sent.is_none_or(|last| last < slot)
}

/// What the digest template receives as `data`.
#[derive(Debug, Clone, Serialize)]
pub struct DigestData {
    /// Start of the period covered (24 hours before `generated_at`).
    pub since: String,
    /// When the digest was built.
    pub generated_at: String,
    /// Time zone of the schedule.
    pub timezone: String,
    /// Patches waiting for approval, oldest first.
    pub pending_approvals: Vec<PendingApproval>,
    /// Failures in the period.
    pub failures: Vec<RecentFailure>,
    /// Compliance counts.
    pub compliance: ComplianceSummary,
}

fn ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// Build the digest from the store.
pub async fn build(store: &Store, now: DateTime<Utc>, timezone: &str) -> StoreResult<DigestData> {
    let since = ts(now - ChronoDuration::hours(24));
    let since_q = since.clone();
    let (pending, failures, compliance) = store
        .read(move |c| {
            Ok((
                pending_approvals(c)?,
                failures_since(c, &since_q)?,
                compliance_summary(c)?,
            ))
        })
        .await?;
    Ok(DigestData {
        since,
        generated_at: ts(now),
        timezone: timezone.to_string(),
        pending_approvals: pending,
        failures,
        compliance,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("ts")
            .with_timezone(&Utc)
    }

    #[test]
    fn schedule_in_a_zone() {
        let t = NaiveTime::from_hms_opt(8, 0, 0).expect("time");
        let rome: chrono_tz::Tz = "Europe/Rome".parse().expect("tz");
        // 06:30 UTC = 07:30 in Rome (winter): today's 08:00 has not come, so yesterday's.
        assert_eq!(
            last_scheduled(utc("2026-11-22T06:30:00Z"), t, rome),
            utc("2026-11-21T07:00:00Z")
        );
        assert_eq!(
            last_scheduled(utc("2026-11-22T07:00:00Z"), t, rome),
            utc("2026-11-22T07:00:00Z")
        );
        // Sent yesterday after the slot: not due before today's slot, due after it.
        let last = Some(utc("2026-11-21T07:00:05Z"));
        assert!(!is_due(utc("2026-11-22T06:59:00Z"), t, rome, last));
        assert!(is_due(utc("2026-11-22T07:00:00Z"), t, rome, last));
        assert!(is_due(utc("2026-11-22T07:00:00Z"), t, rome, None));
    }

    #[test]
    fn dst_gap_moves_forward() {
        // 2026-03-29 02:30 does not exist in Rome (clocks jump 02:00 -> 03:00).
        let t = NaiveTime::from_hms_opt(2, 30, 0).expect("time");
        let rome: chrono_tz::Tz = "Europe/Rome".parse().expect("tz");
        let slot = last_scheduled(utc("2026-03-29T12:00:00Z"), t, rome);
        assert_eq!(slot, utc("2026-03-29T01:30:00Z"));
    }
}
