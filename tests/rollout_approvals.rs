//! The approval gate on real SQLite files, through the library and the real `spm` binary:
//! each decision is one transaction (queue transition + approvals row + audit row), refusals
//! change nothing, the four-eyes rule, batch all-or-nothing, concurrent approvers on two
//! connections, and snooze expiry where the latest snooze decides.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Barrier};

use chrono::{Duration, Utc};
use spm::engine::approvals::{self, Actor, ApprovalError, Decision, Rules};
use spm::engine::state::QueueStatus;
use spm::store::queue;
use spm::store::{Store, StoreError, approvals as store_approvals};

/// A queue item in `pending_approval` with one test started by `tester`; returns (item, test).
fn pending_item(store: &Store, advisory: &str, queued_by: &str, tester: &str) -> (i64, i64) {
    let advisory = advisory.to_string();
    let queued_by = queued_by.to_string();
    let tester = tester.to_string();
    store
        .write_blocking(move |tx| {
            tx.execute(
                "INSERT OR IGNORE INTO errata (advisory, severity, synopsis, advisory_type) \
                 VALUES (?1, 'high', 'openssl update', 'security')",
                [&advisory],
            )?;
            spm::store::fixtures::passed_test(tx, &advisory, "ubuntu", 80, &queued_by, &tester)
        })
        .unwrap()
}

fn count(store: &Store, sql: &str) -> i64 {
    let sql = sql.to_string();
    store
        .read_blocking(move |c| Ok(c.query_row(&sql, [], |r| r.get(0))?))
        .unwrap()
}

fn status(store: &Store, id: i64) -> QueueStatus {
    store.read_blocking(|c| queue::get(c, id)).unwrap().status
}

fn actor(name: &str) -> Actor {
    Actor {
        identity: name.to_string(),
        source_addr: Some("192.0.2.7".to_string()),
    }
}

fn file_store(dir: &tempfile::TempDir) -> (PathBuf, Store) {
    let path = dir.path().join("spm.db");
    let store = Store::open(&path).unwrap();
    (path, store)
}

#[test]
fn approve_writes_transition_approval_and_audit_together() {
    let dir = tempfile::tempdir().unwrap();
    let (_, store) = file_store(&dir);
    let (id, test_id) = pending_item(&store, "USN-7001-1", "auto-queue", "engine");
    let d = approvals::decide(
        &store,
        id,
        &Decision::Approve {
            reason: Some("evidence reviewed".into()),
        },
        None,
        &actor("token:alice"),
        Rules::default(),
    )
    .unwrap();
    assert_eq!(d.item.status, QueueStatus::Approved);
    assert_eq!(d.evidence_test_id, Some(test_id));
    let hist = store
        .read_blocking(|c| store_approvals::history(c, id))
        .unwrap();
    assert_eq!(hist.len(), 1);
    assert_eq!(hist[0].action, "approved");
    assert_eq!(hist[0].actor, "token:alice");
    assert_eq!(hist[0].source_addr.as_deref(), Some("192.0.2.7"));
    assert_eq!(hist[0].evidence_test_id, Some(test_id));
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM audit_log WHERE action='approval.approve' AND actor='token:alice'"
        ),
        1
    );
    // The approvals table refuses edits at the database level.
    let err = store
        .write_blocking(|tx| Ok(tx.execute("UPDATE approvals SET actor='mallory'", [])?))
        .unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
    // A second decision on the same item is refused and adds nothing.
    let err = approvals::decide(
        &store,
        id,
        &Decision::Reject {
            reason: "changed my mind".into(),
        },
        None,
        &actor("token:bob"),
        Rules::default(),
    )
    .unwrap_err();
    assert!(matches!(err, ApprovalError::NotPending { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("is approved, not pending_approval")
    );
    assert_eq!(count(&store, "SELECT count(*) FROM approvals"), 1);
}

#[test]
fn refused_decisions_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (_, store) = file_store(&dir);
    let (id, _) = pending_item(&store, "USN-7002-1", "cli:ops", "engine");
    let (other, other_test) = pending_item(&store, "USN-7003-1", "cli:ops", "engine");
    let a = actor("token:alice");
    let other_needle = format!("is evidence for queue item {other}");
    let cases: Vec<(Decision, Option<i64>, &str)> = vec![
        (
            Decision::Reject {
                reason: "  ".into(),
            },
            None,
            "a reason is required to reject",
        ),
        (
            Decision::Snooze {
                until: Utc::now() - Duration::hours(1),
                reason: "later".into(),
            },
            None,
            "not in the future",
        ),
        (
            Decision::Snooze {
                until: Utc::now() + Duration::hours(1),
                reason: String::new(),
            },
            None,
            "a reason is required to snooze",
        ),
        (
            Decision::Approve { reason: None },
            Some(other_test),
            &other_needle,
        ),
        (
            Decision::Approve { reason: None },
            Some(999_999),
            "test 999999 does not exist",
        ),
    ];
    for (decision, evidence, needle) in cases {
        let err =
            approvals::decide(&store, id, &decision, evidence, &a, Rules::default()).unwrap_err();
        assert!(err.to_string().contains(needle), "{needle:?} not in {err}");
    }
    let err = approvals::decide(
        &store,
        424_242,
        &Decision::Approve { reason: None },
        None,
        &a,
        Rules::default(),
    )
    .unwrap_err();
    assert!(
        matches!(err, ApprovalError::Store(StoreError::NotFound { .. })),
        "{err}"
    );
    assert_eq!(status(&store, id), QueueStatus::PendingApproval);
    assert_eq!(count(&store, "SELECT count(*) FROM approvals"), 0);
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM audit_log WHERE action LIKE 'approval.%'"
        ),
        0
    );
}

#[test]
fn four_eyes_refuses_who_queued_or_started_the_test() {
    let dir = tempfile::tempdir().unwrap();
    let (_, store) = file_store(&dir);
    let (id, _) = pending_item(&store, "USN-7004-1", "cli:alice", "cli:bob");
    let rules = Rules { four_eyes: true };
    let approve = Decision::Approve { reason: None };
    for (who, role) in [("cli:alice", "queued"), ("cli:bob", "started a test of")] {
        let err = approvals::decide(&store, id, &approve, None, &actor(who), rules).unwrap_err();
        assert!(matches!(err, ApprovalError::FourEyes { .. }), "{err}");
        assert!(err.to_string().contains(role), "{err}");
    }
    assert_eq!(status(&store, id), QueueStatus::PendingApproval);
    // Without the rule, the same person may approve; with it, someone else may.
    let d = approvals::decide(&store, id, &approve, None, &actor("cli:carol"), rules).unwrap();
    assert_eq!(d.item.status, QueueStatus::Approved);
    let (id2, _) = pending_item(&store, "USN-7005-1", "cli:alice", "engine");
    approvals::decide(
        &store,
        id2,
        &approve,
        None,
        &actor("cli:alice"),
        Rules::default(),
    )
    .unwrap();
    // Rejecting is not approving: the queuer may reject under the rule.
    let (id3, _) = pending_item(&store, "USN-7006-1", "cli:alice", "engine");
    approvals::decide(
        &store,
        id3,
        &Decision::Reject {
            reason: "breaks the build".into(),
        },
        None,
        &actor("cli:alice"),
        rules,
    )
    .unwrap();
    assert_eq!(status(&store, id3), QueueStatus::Rejected);
}

#[test]
fn batch_is_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (_, store) = file_store(&dir);
    let (a, _) = pending_item(&store, "USN-7010-1", "auto-queue", "engine");
    let (b, _) = pending_item(&store, "USN-7011-1", "auto-queue", "engine");
    let (c, _) = pending_item(&store, "USN-7012-1", "auto-queue", "engine");
    approvals::decide(
        &store,
        c,
        &Decision::Reject {
            reason: "no".into(),
        },
        None,
        &actor("token:x"),
        Rules::default(),
    )
    .unwrap();
    let err = approvals::approve_batch(
        &store,
        &[a, b, c],
        None,
        &actor("token:y"),
        Rules::default(),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains(&format!("queue item {c}")),
        "{err}"
    );
    assert_eq!(status(&store, a), QueueStatus::PendingApproval);
    assert_eq!(status(&store, b), QueueStatus::PendingApproval);
    let done = approvals::approve_batch(
        &store,
        &[a, b, a],
        Some("weekly batch"),
        &actor("token:y"),
        Rules::default(),
    )
    .unwrap();
    assert_eq!(done.len(), 2);
    assert_eq!(status(&store, a), QueueStatus::Approved);
    assert_eq!(status(&store, b), QueueStatus::Approved);
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM approvals WHERE action='approved'"
        ),
        2
    );
}

#[test]
fn concurrent_approvers_on_two_connections_exactly_one_wins() {
    let dir = tempfile::tempdir().unwrap();
    let (path, store) = file_store(&dir);
    let (id, _) = pending_item(&store, "USN-7020-1", "auto-queue", "engine");
    let barrier = Arc::new(Barrier::new(4));
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let path = path.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let store = Store::open(&path).unwrap();
                barrier.wait();
                let decision = if i % 2 == 0 {
                    Decision::Approve { reason: None }
                } else {
                    Decision::Snooze {
                        until: Utc::now() + Duration::days(1),
                        reason: "wait for the vendor".into(),
                    }
                };
                approvals::decide(
                    &store,
                    id,
                    &decision,
                    None,
                    &actor(&format!("token:{i}")),
                    Rules::default(),
                )
                .is_ok()
            })
        })
        .collect();
    let wins = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .filter(|ok| *ok)
        .count();
    assert_eq!(wins, 1);
    assert_eq!(count(&store, "SELECT count(*) FROM approvals"), 1);
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM audit_log WHERE action LIKE 'approval.%'"
        ),
        1
    );
}

#[test]
fn latest_snooze_decides_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let (_, store) = file_store(&dir);
    let (id, _) = pending_item(&store, "USN-7030-1", "auto-queue", "engine");
    let now = Utc::now();
    let snooze = |days: i64| Decision::Snooze {
        until: now + Duration::days(days),
        reason: format!("revisit in {days} days"),
    };
    approvals::decide(
        &store,
        id,
        &snooze(1),
        None,
        &actor("token:a"),
        Rules::default(),
    )
    .unwrap();
    assert!(
        approvals::expire_snoozes(&store, now + Duration::hours(12))
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        approvals::expire_snoozes(&store, now + Duration::hours(36)).unwrap(),
        vec![id]
    );
    assert_eq!(status(&store, id), QueueStatus::PendingApproval);
    // Snoozed again for 3 days: the first, expired snooze row must not wake it at day 2.
    approvals::decide(
        &store,
        id,
        &snooze(3),
        None,
        &actor("token:a"),
        Rules::default(),
    )
    .unwrap();
    assert!(
        approvals::expire_snoozes(&store, now + Duration::days(2))
            .unwrap()
            .is_empty()
    );
    assert_eq!(status(&store, id), QueueStatus::Snoozed);
    assert_eq!(
        approvals::expire_snoozes(&store, now + Duration::days(4)).unwrap(),
        vec![id]
    );
    let hist = store
        .read_blocking(|c| store_approvals::history(c, id))
        .unwrap();
    let actions: Vec<&str> = hist.iter().map(|h| h.action.as_str()).collect();
    assert_eq!(actions, ["snoozed", "unsnoozed", "snoozed", "unsnoozed"]);
    assert_eq!(hist[1].actor, "system");
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM audit_log WHERE action='approval.unsnooze'"
        ),
        2
    );
}

fn spm(dir: &Path, db: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_spm"));
    cmd.current_dir(dir).args(args).arg("--database").arg(db);
    for (k, _) in std::env::vars() {
        if k.starts_with("SPM_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("SPM_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn cli_approve_reject_snooze_pending() {
    let dir = tempfile::tempdir().unwrap();
    let (db, store) = file_store(&dir);
    let (a, test_a) = pending_item(&store, "USN-7040-1", "cli:ops", "engine");
    let (b, _) = pending_item(&store, "USN-7041-1", "cli:ops", "engine");
    let (c, _) = pending_item(&store, "USN-7042-1", "cli:ops", "engine");
    let o = spm(dir.path(), &db, &["approvals", "pending", "--json"], &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let ids: Vec<i64> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![a, b, c]);
    assert_eq!(v[0]["last_test_id"], test_a);

    // Reject without a reason: exit 2, one error line, nothing changed.
    let o = spm(
        dir.path(),
        &db,
        &["reject", &b.to_string()],
        &[("USER", "dana")],
    );
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("reason is required"), "{err}");
    assert_eq!(status(&store, b), QueueStatus::PendingApproval);

    // Four-eyes from the configuration: the queuer (cli:ops) cannot approve.
    let o = spm(
        dir.path(),
        &db,
        &["approve", &a.to_string()],
        &[("USER", "ops"), ("SPM_APPROVALS__FOUR_EYES", "true")],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("four-eyes"));
    assert_eq!(status(&store, a), QueueStatus::PendingApproval);

    let o = spm(
        dir.path(),
        &db,
        &["approve", &a.to_string(), "--json"],
        &[("USER", "dana"), ("SPM_APPROVALS__FOUR_EYES", "true")],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let hist = store
        .read_blocking(|conn| store_approvals::history(conn, a))
        .unwrap();
    assert_eq!(hist[0].actor, "cli:dana");
    assert_eq!(hist[0].source_addr.as_deref(), Some("local"));

    let o = spm(
        dir.path(),
        &db,
        &["reject", &b.to_string(), "--reason", "regresses nginx"],
        &[("USER", "dana")],
    );
    assert!(o.status.success());
    let o = spm(
        dir.path(),
        &db,
        &[
            "snooze",
            &c.to_string(),
            "--until",
            "7d",
            "--reason",
            "vendor fix due",
        ],
        &[("USER", "dana")],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = spm(
        dir.path(),
        &db,
        &[
            "snooze",
            &c.to_string(),
            "--until",
            "next week",
            "--reason",
            "x",
        ],
        &[("USER", "dana")],
    );
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(status(&store, b), QueueStatus::Rejected);
    assert_eq!(status(&store, c), QueueStatus::Snoozed);
    let o = spm(dir.path(), &db, &["approvals", "pending", "--json"], &[]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 0);
}
