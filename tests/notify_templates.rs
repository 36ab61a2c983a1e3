//! Templates: every shipped event renders; edits are hot-reloaded; a broken template keeps
//! the previous version and the error is reported.

mod support;

use serde_json::json;
use spm::engine::notify::{Event, EventKind, Notifier, NotifyConfig, Templates};
use spm::store::Store;
use spm::store::notifications as db;
use support::shipped_templates;

fn sample(kind: EventKind) -> serde_json::Value {
    let data = match kind {
        EventKind::TestFailed => {
            json!({"system": "web1", "phase": "validate", "reason": "nginx down", "duration_s": 12})
        }
        EventKind::PendingApproval => {
            json!({"os": "debian", "synopsis": "openssl", "score": 88, "systems": ["t1", "t2"]})
        }
        EventKind::RunFailed => {
            json!({"policy": "p", "error": "boom", "hosts_ok": 1, "hosts_failed": 2})
        }
        EventKind::BudgetTripped => {
            json!({"policy": "p", "wave": 2, "failed": 3, "budget": 1, "hosts": [{"name": "h1", "error": "x"}]})
        }
        EventKind::RunMissed => {
            json!({"policy": "p", "scheduled_at": "2026-11-22T02:00:00.000Z", "reason": "spm was down"})
        }
        EventKind::RollbackPerformed => {
            json!({"system": "h1", "strategy": "snapshot", "reason": "r", "status": "verified"})
        }
        EventKind::SyncFailed => json!({"scope": "all", "error": "timeout"}),
        EventKind::SyncPartial => {
            json!({"scope": "all", "failures": [{"what": "USN-1", "reason": "r"}]})
        }
        EventKind::ScriptReloadError => json!({"path": "phases/x.lua", "error": "syntax"}),
        EventKind::DailyDigest => json!({
            "since": "2026-11-21T08:00:00.000Z", "generated_at": "2026-11-22T08:00:00.000Z", "timezone": "UTC",
            "pending_approvals": [{"queue_id": 1, "advisory": "DSA-1", "os": "debian", "severity": "high", "synopsis": "s", "score": 90, "hours_pending": 50.0}],
            "failures": [{"kind": "test", "id": 3, "subject": "DSA-2", "status": "failed", "reason": null, "at": "x"}],
            "compliance": {"total": {"group": "all", "compliant": 1, "non_compliant": 2, "unknown": 0},
                           "by_env": [], "by_os": []}}),
        EventKind::Custom => json!({"subject": "hello", "body": "world"}),
        EventKind::Test => json!({"message": "m", "host": "h"}),
    };
    json!({"event": kind.as_str(), "severity": "info", "advisory": "DSA-1", "queue_id": 1,
           "test_id": 2, "run_id": 3, "now": "2026-11-22T08:00:00.000Z", "data": data})
}

#[test]
fn every_event_has_a_shipped_template_that_renders() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/templates");
    let t = Templates::load(&dir);
    assert!(t.errors().is_empty(), "{:?}", t.errors());
    for kind in EventKind::ALL {
        let r = t
            .render(kind.as_str(), &sample(kind))
            .unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert!(!r.subject.is_empty(), "{kind}: empty subject");
        assert!(!r.body.trim().is_empty(), "{kind}: empty body");
    }
    let digest = t
        .render("daily_digest", &sample(EventKind::DailyDigest))
        .expect("digest");
    assert!(
        digest
            .body
            .contains("DSA-1 (debian, high, score 90) waiting 2.1 days"),
        "{}",
        digest.body
    );
}

async fn custom_subject(n: &Notifier, store: &Store) -> String {
    let id = n
        .raise(Event::new(
            EventKind::Custom,
            json!({"subject": "S", "body": "B"}),
        ))
        .await
        .expect("raised");
    store
        .read_blocking(|c| db::get(c, id))
        .expect("row")
        .subject
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_reload_and_a_broken_template_keeps_the_last_good_version() {
    let tpl = shipped_templates();
    let file = tpl.path().join("custom.subject.j2");
    let store = Store::open_in_memory().expect("store");
    let n = Notifier::new(
        store.clone(),
        NotifyConfig {
            templates_dir: tpl.path().to_path_buf(),
            ..NotifyConfig::default()
        },
    )
    .expect("notifier");
    assert_eq!(custom_subject(&n, &store).await, "S");

    // A valid edit is picked up by the next event.
    std::fs::write(&file, "v2 {{ data.subject }}").expect("edit");
    assert_eq!(custom_subject(&n, &store).await, "v2 S");

    // A broken edit: the last good version stays, and the error is reported.
    std::fs::write(&file, "v3 {{ data.subject ").expect("break");
    assert_eq!(custom_subject(&n, &store).await, "v2 S");
    let errors = n.templates().errors();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].path, file);
    let reports = store
        .read_blocking(|c| {
            db::list(
                c,
                &db::ListFilter {
                    event: Some("script_reload_error".into()),
                    ..db::ListFilter::default()
                },
            )
        })
        .expect("list");
    assert_eq!(reports.len(), 1, "reported once, not on every event");
    assert!(
        reports[0].subject.contains("custom.subject.j2"),
        "{}",
        reports[0].subject
    );
    assert!(
        reports[0].body.contains("last good version"),
        "{}",
        reports[0].body
    );
    // Still broken on the next event: no second report.
    assert_eq!(custom_subject(&n, &store).await, "v2 S");

    // Fixed: the new version is used and the error is gone.
    std::fs::write(&file, "v4 {{ data.subject }}").expect("fix");
    assert_eq!(custom_subject(&n, &store).await, "v4 S");
    assert!(n.templates().errors().is_empty());
    let reload_errors = store
        .read_blocking(|c| {
            db::list(
                c,
                &db::ListFilter {
                    event: Some("script_reload_error".into()),
                    ..db::ListFilter::default()
                },
            )
        })
        .expect("list");
    assert_eq!(reload_errors.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_render_error_still_records_the_event_with_a_fallback() {
    let tpl = shipped_templates();
    let store = Store::open_in_memory().expect("store");
    let n = Notifier::new(
        store.clone(),
        NotifyConfig {
            templates_dir: tpl.path().to_path_buf(),
            ..NotifyConfig::default()
        },
    )
    .expect("notifier");
    // test_failed needs data.system; strict mode makes its absence an error.
    let id = n
        .raise(Event::new(EventKind::TestFailed, json!({"phase": "patch"})).advisory("USN-9"))
        .await
        .expect("recorded despite the template error");
    let row = store.read_blocking(|c| db::get(c, id)).expect("row");
    assert_eq!(row.subject, "[spm] test_failed USN-9");
    assert!(row.body.contains("undefined"), "{}", row.body);
    assert!(row.body.contains("\"phase\": \"patch\""), "{}", row.body);
}
