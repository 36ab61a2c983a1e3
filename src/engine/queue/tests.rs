//! Queue operations against a real (in-memory) store.

use super::*;
use crate::engine::score::ScoreConfig;
use crate::store::errata::{apply_relevance, replace_packages, upsert_full};

fn scorer() -> Scorer {
    Scorer::new(ScoreConfig::default()).unwrap()
}

fn pk(name: &str, epoch: &str, version: &str, release: &str, size: i64) -> PackageRecord {
    PackageRecord {
        name: name.into(),
        epoch: epoch.into(),
        version: version.into(),
        release: release.into(),
        arch: "x86_64".into(),
        size_bytes: Some(size),
        checksum: None,
    }
}

/// Store an advisory relevant to `oses` with `packages`.
fn seed(store: &Store, adv: &str, sev: &str, oses: &[&str], packages: Vec<PackageRecord>) {
    let adv = adv.to_string();
    let sev = sev.to_string();
    let oses: Vec<String> = oses.iter().map(|s| s.to_string()).collect();
    store
        .write_blocking(move |tx| {
            let now = crate::store::now_ts();
            upsert_full(
                tx,
                &ErratumRecord {
                    advisory: adv.clone(),
                    advisory_type: "security".into(),
                    synopsis: format!("{adv} fix"),
                    severity: sev,
                    details_fetched: true,
                    ..Default::default()
                },
                &now,
            )?;
            replace_packages(tx, &adv, &packages)?;
            let seen: Vec<(&str, &str, i64)> =
                oses.iter().map(|o| (adv.as_str(), o.as_str(), 1)).collect();
            apply_relevance(tx, &seen, &[], &now)?;
            Ok(())
        })
        .unwrap();
}

fn req(advs: &[&str], os: Option<&str>) -> AddRequest {
    AddRequest {
        advisories: advs.iter().map(|s| s.to_string()).collect(),
        os: os.map(Into::into),
        queued_by: "cli:tester".into(),
        ..Default::default()
    }
}

#[test]
fn family_parsing() {
    assert_eq!(family("USN-7000-2"), Some(("USN-7000", 2)));
    assert_eq!(
        family("SUSE-SU-2024:1234-1"),
        Some(("SUSE-SU-2024:1234", 1))
    );
    assert_eq!(family("DLA-3999-1"), Some(("DLA-3999", 1)));
    assert_eq!(family("RHSA-2024:1234"), None);
    assert_eq!(family("RHSA-2024"), None);
    assert_eq!(family("foo"), None);
}

#[test]
fn package_coverage_uses_the_os_ordering() {
    let old = [pk("openssl", "1", "3.0.7", "24.el9", 1)];
    let new = [pk("openssl", "1", "3.0.7", "27.el9", 1)];
    assert!(covers_packages(&new, &old, "rhel"));
    assert!(!covers_packages(&old, &new, "rhel"));
    assert!(!covers_packages(&new, &new, "rhel"), "equal is not newer");
    // Epoch wins over version.
    let e = [pk("openssl", "2", "1.0", "1.el9", 1)];
    assert!(covers_packages(&e, &new, "rhel"));
    // dpkg: 1.0~rc1 sorts before 1.0.
    let rc = [pk("nginx", "", "1.0~rc1", "1", 1)];
    let fin = [pk("nginx", "", "1.0", "1", 1)];
    assert!(covers_packages(&fin, &rc, "ubuntu"));
    assert!(!covers_packages(&rc, &fin, "ubuntu"));
    // A package of the older one missing from the newer: no supersession.
    let two = [
        pk("nginx", "", "1.0~rc1", "1", 1),
        pk("libnginx", "", "1", "1", 1),
    ];
    assert!(!covers_packages(&fin, &two, "ubuntu"));
    assert!(!covers_packages(&[], &two, "ubuntu"));
}

#[test]
fn add_queues_every_relevant_os_with_the_score() {
    let store = Store::open_in_memory().unwrap();
    seed(
        &store,
        "SHARED-1",
        "high",
        &["ubuntu", "rhel"],
        vec![pk("openssl", "", "3.0.13", "1", 1_572_864)],
    );
    let r = add_blocking(&store, &scorer(), &req(&["SHARED-1"], None)).unwrap();
    assert_eq!(r.added.len(), 2);
    assert!(r.added.iter().all(|i| i.score == 87));
    let prof = store
        .read_blocking(|c| errata_store::risk_profile(c, "SHARED-1", "rhel"))
        .unwrap()
        .unwrap();
    assert_eq!(prof.score, 87);
    let audit_rows = store
        .read_blocking(|c| audit::list(c, &audit::AuditFilter::default()))
        .unwrap();
    assert_eq!(
        audit_rows
            .iter()
            .filter(|a| a.action == "queue.add")
            .count(),
        2
    );
}

#[test]
fn ordering_is_score_then_priority_then_time() {
    let store = Store::open_in_memory().unwrap();
    seed(
        &store,
        "K-1",
        "high",
        &["ubuntu"],
        vec![pk("linux-image-generic", "", "6.8", "1", 50_000_000)],
    );
    seed(
        &store,
        "S-1",
        "high",
        &["ubuntu"],
        vec![pk("curl", "", "8", "1", 200_000)],
    );
    seed(
        &store,
        "S-2",
        "high",
        &["ubuntu"],
        vec![pk("wget", "", "1", "1", 200_000)],
    );
    add_blocking(
        &store,
        &scorer(),
        &req(&["K-1", "S-1", "S-2"], Some("ubuntu")),
    )
    .unwrap();
    let s2 = store
        .read_blocking(|c| queue::find_active(c, "S-2", "ubuntu"))
        .unwrap()
        .unwrap();
    set_priority(&store, s2.id, 5, "cli:tester").unwrap();
    let page = list(&store, &QueueFilter::default()).unwrap();
    let order: Vec<_> = page.items.iter().map(|i| i.advisory.as_str()).collect();
    assert_eq!(order, ["S-2", "S-1", "K-1"]);
}

#[test]
fn duplicates_are_skipped_and_requeue_after_failure_is_allowed() {
    let store = Store::open_in_memory().unwrap();
    seed(
        &store,
        "USN-1-1",
        "high",
        &["ubuntu"],
        vec![pk("curl", "", "8", "1", 200_000)],
    );
    let first = add_blocking(&store, &scorer(), &req(&["USN-1-1"], Some("ubuntu"))).unwrap();
    let id = first.added[0].id;
    let again = add_blocking(&store, &scorer(), &req(&["USN-1-1"], Some("ubuntu"))).unwrap();
    assert!(again.added.is_empty());
    assert!(
        again.skipped[0].reason.contains("already in the queue"),
        "{:?}",
        again.skipped
    );
    store
        .write_blocking(|tx| {
            queue::transition(
                tx,
                id,
                QueueStatus::Queued,
                QueueStatus::Testing,
                &Default::default(),
            )?;
            queue::transition(
                tx,
                id,
                QueueStatus::Testing,
                QueueStatus::Failed,
                &Default::default(),
            )
        })
        .unwrap();
    let third = add_blocking(&store, &scorer(), &req(&["USN-1-1"], Some("ubuntu"))).unwrap();
    assert_eq!(third.added.len(), 1);
    assert_ne!(third.added[0].id, id, "a new row");
}

#[test]
fn bad_input_changes_nothing() {
    let store = Store::open_in_memory().unwrap();
    seed(&store, "USN-1-1", "high", &["ubuntu"], vec![]);
    let err = add_blocking(&store, &scorer(), &req(&["USN-1-1", "NOPE-1"], None)).unwrap_err();
    assert!(err.to_string().contains("NOPE-1"), "{err}");
    let err = add_blocking(&store, &scorer(), &req(&["USN-1-1"], Some("windows"))).unwrap_err();
    assert!(err.to_string().contains("windows"), "{err}");
    let err = add_blocking(&store, &scorer(), &req(&[], None)).unwrap_err();
    assert!(matches!(err, QueueError::Invalid(_)));
    assert_eq!(list(&store, &QueueFilter::default()).unwrap().total, 0);
}

#[test]
fn not_relevant_or_stale_is_skipped_with_reason() {
    let store = Store::open_in_memory().unwrap();
    seed(&store, "USN-1-1", "high", &["ubuntu"], vec![]);
    let r = add_blocking(&store, &scorer(), &req(&["USN-1-1"], Some("rhel"))).unwrap();
    assert!(
        r.skipped[0].reason.contains("relevant to: ubuntu"),
        "{:?}",
        r.skipped
    );
    // A later sync that no longer sees it (a distinct timestamp: the seed and this call
    // can fall in the same millisecond).
    let later = crate::store::format_ts(chrono::Utc::now() + chrono::Duration::seconds(1));
    store
        .write_blocking(|tx| apply_relevance(tx, &[], &["ubuntu"], &later))
        .unwrap();
    let r = add_blocking(&store, &scorer(), &req(&["USN-1-1"], Some("ubuntu"))).unwrap();
    assert!(r.skipped[0].reason.contains("stale"), "{:?}", r.skipped);
}

#[test]
fn missing_packages_is_queued_with_low_confidence_not_100() {
    let store = Store::open_in_memory().unwrap();
    seed(&store, "USN-9-1", "high", &["ubuntu"], vec![]);
    store
        .write_blocking(|tx| {
            tx.execute("UPDATE errata SET details_fetched=0", [])?;
            Ok(())
        })
        .unwrap();
    let r = add_blocking(&store, &scorer(), &req(&["USN-9-1"], None)).unwrap();
    assert_eq!(r.added[0].score, 75);
    let p = store
        .read_blocking(|c| errata_store::risk_profile(c, "USN-9-1", "ubuntu"))
        .unwrap()
        .unwrap();
    assert!(p.low_confidence);
}

#[test]
fn newer_family_member_supersedes_and_older_is_refused() {
    let store = Store::open_in_memory().unwrap();
    seed(
        &store,
        "USN-7000-1",
        "high",
        &["ubuntu"],
        vec![pk("nginx", "", "1.24", "1", 1)],
    );
    seed(
        &store,
        "USN-7000-2",
        "high",
        &["ubuntu"],
        vec![pk("nginx", "", "1.24", "2", 1)],
    );
    let a = add_blocking(&store, &scorer(), &req(&["USN-7000-1"], None)).unwrap();
    let b = add_blocking(&store, &scorer(), &req(&["USN-7000-2"], None)).unwrap();
    assert_eq!(b.superseded.len(), 1);
    assert_eq!(b.superseded[0].id, a.added[0].id);
    let old = store
        .read_blocking(|c| queue::get(c, a.added[0].id))
        .unwrap();
    assert_eq!(old.status, QueueStatus::Superseded);
    assert_eq!(old.superseded_by.as_deref(), Some("USN-7000-2"));
    // The older one cannot be queued while the newer is pending.
    let c = add_blocking(&store, &scorer(), &req(&["USN-7000-1"], None)).unwrap();
    assert!(c.added.is_empty());
    assert!(
        c.skipped[0].reason.contains("superseded by USN-7000-2"),
        "{:?}",
        c.skipped
    );
}

#[test]
fn newer_packages_supersede_across_families_but_not_items_in_test() {
    let store = Store::open_in_memory().unwrap();
    seed(
        &store,
        "RHSA-2026:0001",
        "high",
        &["rhel"],
        vec![pk("openssl", "1", "3.0.7", "24.el9", 1)],
    );
    seed(
        &store,
        "RHSA-2026:0002",
        "high",
        &["rhel"],
        vec![pk("curl", "", "7", "1.el9", 1)],
    );
    seed(
        &store,
        "RHSA-2026:0009",
        "high",
        &["rhel"],
        vec![
            pk("openssl", "1", "3.0.7", "27.el9", 1),
            pk("curl", "", "7", "2.el9", 1),
        ],
    );
    let a = add_blocking(
        &store,
        &scorer(),
        &req(&["RHSA-2026:0001", "RHSA-2026:0002"], None),
    )
    .unwrap();
    let in_test = a
        .added
        .iter()
        .find(|i| i.advisory == "RHSA-2026:0002")
        .unwrap()
        .id;
    store
        .write_blocking(|tx| {
            queue::transition(
                tx,
                in_test,
                QueueStatus::Queued,
                QueueStatus::Testing,
                &Default::default(),
            )
        })
        .unwrap();
    let b = add_blocking(&store, &scorer(), &req(&["RHSA-2026:0009"], None)).unwrap();
    let sup: Vec<_> = b.superseded.iter().map(|s| s.advisory.as_str()).collect();
    assert_eq!(sup, ["RHSA-2026:0001"], "the item in test is left alone");
}

#[test]
fn remove_only_queued_and_audited() {
    let store = Store::open_in_memory().unwrap();
    seed(&store, "A-1", "high", &["debian"], vec![]);
    seed(&store, "B-1", "high", &["debian"], vec![]);
    let r = add_blocking(&store, &scorer(), &req(&["A-1", "B-1"], None)).unwrap();
    let (a, b) = (r.added[0].id, r.added[1].id);
    remove(&store, a, "cli:tester", Some("not needed")).unwrap();
    store
        .write_blocking(|tx| {
            queue::transition(
                tx,
                b,
                QueueStatus::Queued,
                QueueStatus::Testing,
                &Default::default(),
            )
        })
        .unwrap();
    let err = remove(&store, b, "cli:tester", None).unwrap_err();
    assert!(err.to_string().contains("only a queued item"), "{err}");
    let rows = store
        .read_blocking(|c| audit::list(c, &audit::AuditFilter::default()))
        .unwrap();
    assert_eq!(
        rows.iter().filter(|a| a.action == "queue.remove").count(),
        1
    );
}

#[test]
fn auto_queue_takes_matching_never_queued_pairs() {
    let store = Store::open_in_memory().unwrap();
    seed(&store, "CRIT-1", "critical", &["ubuntu", "rhel"], vec![]);
    seed(&store, "HIGH-1", "high", &["debian"], vec![]);
    seed(&store, "MED-1", "medium", &["ubuntu"], vec![]);
    let rule = AutoQueueRule {
        enabled: true,
        ..Default::default()
    };
    let r = auto_queue(&store, &scorer(), &rule).unwrap();
    let mut got: Vec<_> = r
        .added
        .iter()
        .map(|i| format!("{}/{}", i.advisory, i.os))
        .collect();
    got.sort();
    assert_eq!(got, ["CRIT-1/rhel", "CRIT-1/ubuntu", "HIGH-1/debian"]);
    assert!(r.added.iter().all(|i| i.queued_by == "auto-queue"));
    // Completed items are not queued again by the rule.
    let id = r.added[0].id;
    store
        .write_blocking(|tx| {
            queue::transition(
                tx,
                id,
                QueueStatus::Queued,
                QueueStatus::Superseded,
                &Default::default(),
            )
        })
        .unwrap();
    let again = auto_queue(&store, &scorer(), &rule).unwrap();
    assert!(again.added.is_empty(), "{:?}", again.added);
    let bad = AutoQueueRule {
        min_severity: "urgent".into(),
        ..rule
    };
    assert!(auto_queue(&store, &scorer(), &bad).is_err());
    assert!(
        auto_queue(&store, &scorer(), &AutoQueueRule::default())
            .unwrap()
            .added
            .is_empty()
    );
}

#[test]
fn show_explains_the_score() {
    let store = Store::open_in_memory().unwrap();
    seed(
        &store,
        "K-1",
        "high",
        &["ubuntu"],
        vec![pk("linux-image-generic", "", "6.8", "1", 1024)],
    );
    let r = add_blocking(&store, &scorer(), &req(&["K-1"], None)).unwrap();
    let d = show(&store, &scorer(), r.added[0].id).unwrap();
    let factors: Vec<_> = d
        .score
        .breakdown
        .iter()
        .map(|t| t.factor.as_str())
        .collect();
    assert!(
        factors.contains(&"kernel") && factors.contains(&"reboot"),
        "{factors:?}"
    );
    assert_eq!(d.item.score, d.score.score);
}
