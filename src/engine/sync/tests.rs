//! Unit tests of the sync logic against an in-memory fake UYUNI (the integration test
//! `tests/sync_sim.rs` runs it against the simulator).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use super::source::*;
use super::*;
use crate::engine::score::ScoreConfig;

#[derive(Default)]
struct Fake {
    groups: Vec<(String, Vec<RawSystem>)>,
    relevant: HashMap<i64, Vec<RawErratum>>,
    details: HashMap<String, RawDetails>,
    cves: HashMap<String, Vec<String>>,
    packages: HashMap<String, Vec<RawPackage>>,
    channels: HashMap<i64, String>,
    fail: Mutex<HashSet<String>>,
    calls: Mutex<BTreeMap<String, u64>>,
}

impl Fake {
    fn count(&self, m: &str) {
        *self.calls.lock().unwrap().entry(m.to_string()).or_default() += 1;
    }
    fn check(&self, key: &str) -> SourceResult<()> {
        if self.fail.lock().unwrap().contains(key) {
            Err(SourceError(format!("injected fault for {key}")))
        } else {
            Ok(())
        }
    }
    fn fail_on(&self, key: &str) {
        self.fail.lock().unwrap().insert(key.to_string());
    }
    fn clear_faults(&self) {
        self.fail.lock().unwrap().clear();
    }
    fn take_calls(&self) -> BTreeMap<String, u64> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }
}

impl ErrataSource for Fake {
    async fn login(&self) -> SourceResult<()> {
        self.count(method::LOGIN);
        self.check("login")
    }
    async fn logout(&self) -> SourceResult<()> {
        self.count(method::LOGOUT);
        Ok(())
    }
    async fn list_groups(&self) -> SourceResult<Vec<String>> {
        self.count(method::LIST_GROUPS);
        Ok(self.groups.iter().map(|(g, _)| g.clone()).collect())
    }
    async fn list_group_systems(&self, group: &str) -> SourceResult<Vec<RawSystem>> {
        self.count(method::GROUP_SYSTEMS);
        self.check(&format!("group {group}"))?;
        Ok(self
            .groups
            .iter()
            .find(|(g, _)| g == group)
            .map(|(_, s)| s.clone())
            .unwrap_or_default())
    }
    async fn list_all_systems(&self) -> SourceResult<Vec<RawSystem>> {
        self.count(method::ALL_SYSTEMS);
        Ok(Vec::new())
    }
    async fn relevant_errata_batch(
        &self,
        ids: &[i64],
    ) -> SourceResult<Vec<(i64, Vec<RawErratum>)>> {
        self.count(method::RELEVANT);
        for id in ids {
            self.check(&format!("batch {id}"))?;
        }
        Ok(ids
            .iter()
            .map(|id| (*id, self.relevant.get(id).cloned().unwrap_or_default()))
            .collect())
    }
    async fn relevant_errata(&self, id: i64) -> SourceResult<Vec<RawErratum>> {
        self.count(method::RELEVANT);
        self.check(&format!("system {id}"))?;
        Ok(self.relevant.get(&id).cloned().unwrap_or_default())
    }
    async fn base_channel(&self, id: i64) -> SourceResult<Option<String>> {
        self.count(method::BASE_CHANNEL);
        Ok(self.channels.get(&id).cloned())
    }
    async fn details(&self, advisory: &str) -> SourceResult<RawDetails> {
        self.count(method::DETAILS);
        self.check(&format!("details {advisory}"))?;
        self.details
            .get(advisory)
            .cloned()
            .ok_or_else(|| SourceError(format!("-208 The patch {advisory} cannot be found.")))
    }
    async fn cves(&self, advisory: &str) -> SourceResult<Vec<String>> {
        self.count(method::CVES);
        self.check(&format!("cves {advisory}"))?;
        Ok(self.cves.get(advisory).cloned().unwrap_or_default())
    }
    async fn packages(&self, advisory: &str) -> SourceResult<Vec<RawPackage>> {
        self.count(method::PACKAGES);
        self.check(&format!("packages {advisory}"))?;
        Ok(self.packages.get(advisory).cloned().unwrap_or_default())
    }
}

fn sys(id: i64, name: &str) -> RawSystem {
    RawSystem {
        id,
        name: name.into(),
        hostname: Some(format!("{name}.lab")),
        release: None,
    }
}

fn erratum(name: &str, ty: &str, update: &str) -> RawErratum {
    RawErratum {
        id: Some(name.len() as i64),
        advisory_name: Some(name.into()),
        advisory_type: Some(ty.into()),
        synopsis: Some(format!("{name} synopsis")),
        issue_date: Some("2026-01-01".into()),
        update_date: Some(update.into()),
        reboot: Some(false),
        reload: Some(false),
    }
}

fn pkg(name: &str, version: &str, size: &str) -> RawPackage {
    RawPackage {
        name: Some(name.into()),
        epoch: Some("".into()),
        version: Some(version.into()),
        release: Some("1".into()),
        arch: Some("amd64-deb".into()),
        size: Some(size.into()),
        checksum: None,
    }
}

const SEC: &str = "Security Advisory";
const BUG: &str = "Bug Fix Advisory";

/// Two test groups (ubuntu: 1, 2; rhel: 3), a prod group, a shared advisory, a kernel one.
fn fleet() -> Fake {
    let mut f = Fake {
        groups: vec![
            ("test-ubuntu".into(), vec![sys(1, "u1"), sys(2, "u2")]),
            ("test-rhel".into(), vec![sys(3, "r1")]),
            ("prod-web".into(), vec![sys(9, "p1")]),
        ],
        ..Default::default()
    };
    let shared = erratum("SHARED-1", SEC, "2026-02-01");
    f.relevant.insert(
        1,
        vec![
            erratum("USN-1-1", SEC, "2026-02-01"),
            erratum("USN-2-1", BUG, "2026-02-01"),
            shared.clone(),
        ],
    );
    f.relevant
        .insert(2, vec![erratum("USN-1-1", SEC, "2026-02-01")]);
    f.relevant.insert(
        3,
        vec![erratum("RHSA-1", SEC, "2026-02-01"), shared.clone()],
    );
    for (adv, sev) in [
        ("USN-1-1", Some("Important")),
        ("USN-2-1", None),
        ("SHARED-1", Some("Critical")),
        ("RHSA-1", Some("Moderate")),
    ] {
        f.details.insert(
            adv.into(),
            RawDetails {
                id: Some(1),
                advisory_type: Some(SEC.into()),
                synopsis: Some(format!("{adv} details")),
                description: Some("d".into()),
                severity: sev.map(Into::into),
                issue_date: Some("1/1/26".into()),
                update_date: Some("2/1/26".into()),
                last_modified_date: Some("2026-02-01 10:00:00.0".into()),
                reboot_suggested: Some(false),
                restart_suggested: Some(false),
            },
        );
    }
    f.cves
        .insert("USN-1-1".into(), vec!["CVE-2026-0001".into()]);
    f.packages.insert(
        "USN-1-1".into(),
        vec![
            pkg("openssl", "3.0.13", "1572864"),
            pkg("openssl", "3.0.13", "1572864"),
        ],
    );
    f.packages
        .insert("USN-2-1".into(), vec![pkg("curl", "8.5.0", "204800")]);
    f.packages.insert(
        "RHSA-1".into(),
        vec![RawPackage {
            name: Some("kernel".into()),
            epoch: Some("1".into()),
            version: Some("5.14.0".into()),
            release: Some("427.el9".into()),
            arch: Some("x86_64".into()),
            size: Some("10485760".into()),
            checksum: None,
        }],
    );
    f.packages
        .insert("SHARED-1".into(), vec![pkg("zlib", "1.3", "102400")]);
    f
}

fn scorer() -> Arc<Scorer> {
    Arc::new(Scorer::new(ScoreConfig::default()).unwrap())
}

async fn sync(store: &Store, f: &Fake) -> SyncReport {
    run_sync(store, f, &scorer(), &SyncConfig::default(), &NoProgress)
        .await
        .unwrap()
}

#[tokio::test]
async fn first_sync_records_everything_with_minimal_calls() {
    let store = Store::open_in_memory().unwrap();
    let f = fleet();
    let r = sync(&store, &f).await;
    assert_eq!(r.status, SyncStatus::Ok, "{:?}", r.summary.failures);
    assert_eq!(r.summary.errata_new, 4);
    assert_eq!(
        r.summary.systems_total, 3,
        "prod group is out of the test scope"
    );
    let calls = f.take_calls();
    assert_eq!(
        calls, r.summary.calls_by_method,
        "engine accounting matches the source"
    );
    // login, listAllGroups, 2 listSystems, 1 batch getRelevantErrata, logout,
    // 4 details, 3 CVE calls (security only), 4 package calls.
    assert_eq!(calls[method::GROUP_SYSTEMS], 2);
    assert_eq!(calls[method::RELEVANT], 1);
    assert_eq!(calls[method::DETAILS], 4);
    assert_eq!(calls[method::CVES], 3);
    assert_eq!(calls[method::PACKAGES], 4);
    assert!(!calls.contains_key(method::BASE_CHANNEL));

    let shared = store
        .read_blocking(|c| errata_store::relevance(c, "SHARED-1"))
        .unwrap();
    let oses: Vec<_> = shared.iter().map(|r| r.os.as_str()).collect();
    assert_eq!(
        oses,
        ["rhel", "ubuntu"],
        "relevant to both OSes, recorded for each"
    );
    let usn = store
        .read_blocking(|c| errata_store::get(c, "USN-1-1"))
        .unwrap();
    assert_eq!(usn.severity, "high");
    assert_eq!(usn.update_date.as_deref(), Some("2026-02-01"));
    assert_eq!(usn.last_modified.as_deref(), Some("2026-02-01 10:00:00"));
    assert!(usn.details_fetched);
    let rel = store
        .read_blocking(|c| errata_store::relevance(c, "USN-1-1"))
        .unwrap();
    assert_eq!(rel[0].system_count, 2);
    let bug = store
        .read_blocking(|c| errata_store::get(c, "USN-2-1"))
        .unwrap();
    assert_eq!(bug.severity, "unknown", "no label stays unknown");
    assert_eq!(bug.advisory_type, "bugfix");
    let pk = store
        .read_blocking(|c| errata_store::packages(c, "RHSA-1"))
        .unwrap();
    assert_eq!(pk[0].evr(), "1:5.14.0-427.el9");
    assert_eq!(pk[0].size_bytes, Some(10_485_760));
    assert_eq!(
        store
            .read_blocking(|c| errata_store::packages(c, "USN-1-1"))
            .unwrap()
            .len(),
        1,
        "duplicate vendor/org packages collapse"
    );
    let prof = store
        .read_blocking(|c| errata_store::risk_profile(c, "USN-1-1", "ubuntu"))
        .unwrap()
        .unwrap();
    assert_eq!(prof.score, 87, "openssl 1.5 MB, as the prototype");
    let kern = store
        .read_blocking(|c| errata_store::risk_profile(c, "RHSA-1", "rhel"))
        .unwrap()
        .unwrap();
    assert!(kern.affects_kernel && kern.requires_reboot);
    let sys1 = store.read_blocking(|c| systems::get(c, 1)).unwrap();
    assert_eq!((sys1.os.as_str(), sys1.role.as_str()), ("ubuntu", "test"));
}

#[tokio::test]
async fn unchanged_resync_makes_no_per_advisory_calls() {
    let store = Store::open_in_memory().unwrap();
    let f = fleet();
    sync(&store, &f).await;
    f.take_calls();
    let r = sync(&store, &f).await;
    assert_eq!(r.status, SyncStatus::Ok);
    assert_eq!((r.summary.errata_new, r.summary.errata_updated), (0, 0));
    assert_eq!(r.summary.errata_total, 4);
    let calls = f.take_calls();
    for m in [method::DETAILS, method::CVES, method::PACKAGES] {
        assert!(
            !calls.contains_key(m),
            "{m} called on an unchanged resync: {calls:?}"
        );
    }
    assert_eq!(r.summary.calls_total, 6, "{calls:?}");
}

#[tokio::test]
async fn changed_update_date_refetches_only_that_advisory() {
    let store = Store::open_in_memory().unwrap();
    let mut f = fleet();
    sync(&store, &f).await;
    f.take_calls();
    for list in f.relevant.values_mut() {
        for e in list.iter_mut() {
            if e.advisory_name.as_deref() == Some("RHSA-1") {
                e.update_date = Some("2026-03-01".into());
            }
        }
    }
    let r = sync(&store, &f).await;
    assert_eq!(r.summary.errata_updated, 1);
    let calls = f.take_calls();
    assert_eq!(calls[method::DETAILS], 1);
    assert_eq!(calls[method::CVES], 1);
    assert_eq!(calls[method::PACKAGES], 1);
}

#[tokio::test]
async fn no_longer_relevant_becomes_stale_but_is_kept() {
    let store = Store::open_in_memory().unwrap();
    let mut f = fleet();
    sync(&store, &f).await;
    // USN-2-1 was applied on system 1.
    f.relevant
        .get_mut(&1)
        .unwrap()
        .retain(|e| e.advisory_name.as_deref() != Some("USN-2-1"));
    let r = sync(&store, &f).await;
    assert_eq!(r.summary.errata_stale, 1);
    let rel = store
        .read_blocking(|c| errata_store::relevance(c, "USN-2-1"))
        .unwrap();
    assert!(rel[0].stale);
    assert!(
        store
            .read_blocking(|c| errata_store::get(c, "USN-2-1"))
            .is_ok()
    );
    let active = store
        .read_blocking(|c| {
            errata_store::list(
                c,
                &errata_store::ErrataFilter {
                    os: Some("ubuntu".into()),
                    ..Default::default()
                },
            )
        })
        .unwrap();
    assert!(active.iter().all(|e| e.erratum.advisory != "USN-2-1"));
}

#[tokio::test]
async fn failures_are_counted_partial_and_do_not_mark_stale() {
    let store = Store::open_in_memory().unwrap();
    let mut f = fleet();
    sync(&store, &f).await;
    // The rhel system fails (batch and single), RHSA-1 is no longer relevant anywhere
    // else; a new ubuntu advisory's details fail.
    f.fail_on("batch 3");
    f.fail_on("system 3");
    f.relevant
        .get_mut(&2)
        .unwrap()
        .push(erratum("USN-3-1", SEC, "2026-02-05"));
    f.details.insert("USN-3-1".into(), RawDetails::default());
    f.fail_on("details USN-3-1");
    let r = sync(&store, &f).await;
    assert_eq!(r.status, SyncStatus::Partial);
    let whats: Vec<_> = r.summary.failures.iter().map(|x| x.what.as_str()).collect();
    assert!(whats.contains(&"system r1 (3)"), "{whats:?}");
    assert!(whats.contains(&"advisory USN-3-1"), "{whats:?}");
    // rhel relevance not marked stale: its system failed.
    let rel = store
        .read_blocking(|c| errata_store::relevance(c, "RHSA-1"))
        .unwrap();
    assert!(!rel[0].stale);
    // What succeeded was kept: the new advisory is stored but incomplete, and refetched.
    let e = store
        .read_blocking(|c| errata_store::get(c, "USN-3-1"))
        .unwrap();
    assert!(!e.details_fetched);
    f.clear_faults();
    f.take_calls();
    let r = sync(&store, &f).await;
    assert_eq!(r.status, SyncStatus::Ok, "{:?}", r.summary.failures);
    let calls = f.take_calls();
    assert_eq!(
        calls[method::DETAILS],
        1,
        "only the incomplete advisory is refetched"
    );
    assert!(
        store
            .read_blocking(|c| errata_store::get(c, "USN-3-1"))
            .unwrap()
            .details_fetched
    );
}

#[tokio::test]
async fn bad_advisory_data_is_reported_and_skipped() {
    let store = Store::open_in_memory().unwrap();
    let mut f = fleet();
    let list = f.relevant.get_mut(&1).unwrap();
    let mut no_name = erratum("X", SEC, "2026-01-01");
    no_name.advisory_name = None;
    no_name.id = Some(777);
    list.push(no_name);
    list.push(erratum("BAD-DATE-1", SEC, "the 5th of never"));
    list.push(erratum("BAD-PKG-1", BUG, "2026-01-01"));
    f.details.insert("BAD-PKG-1".into(), RawDetails::default());
    f.packages
        .insert("BAD-PKG-1".into(), vec![pkg("foo", "1.0 beta", "10")]);
    let r = sync(&store, &f).await;
    assert_eq!(r.status, SyncStatus::Partial);
    let fs: HashMap<_, _> = r
        .summary
        .failures
        .iter()
        .map(|x| (x.what.as_str(), x.reason.as_str()))
        .collect();
    assert!(fs["advisory id 777"].contains("advisory_name"), "{fs:?}");
    assert!(fs["advisory BAD-DATE-1"].contains("update_date"), "{fs:?}");
    assert!(fs["advisory BAD-PKG-1"].contains("version"), "{fs:?}");
    for adv in ["BAD-DATE-1", "BAD-PKG-1"] {
        assert!(store.read_blocking(|c| errata_store::get(c, adv)).is_err());
    }
    assert_eq!(r.summary.errata_new, 4, "the good ones are all stored");
}

#[tokio::test]
async fn os_from_base_channel_when_groups_say_nothing_and_cached() {
    let store = Store::open_in_memory().unwrap();
    let mut f = fleet();
    f.groups.push(("test-misc".into(), vec![sys(5, "m1")]));
    f.channels.insert(5, "debian-12-pool-amd64".into());
    f.relevant
        .insert(5, vec![erratum("DSA-1-1", SEC, "2026-01-01")]);
    f.details.insert("DSA-1-1".into(), RawDetails::default());
    let r = sync(&store, &f).await;
    assert_eq!(r.status, SyncStatus::Ok, "{:?}", r.summary.failures);
    assert_eq!(f.take_calls()[method::BASE_CHANNEL], 1);
    let rel = store
        .read_blocking(|c| errata_store::relevance(c, "DSA-1-1"))
        .unwrap();
    assert_eq!(rel[0].os, "debian");
    sync(&store, &f).await;
    assert!(!f.take_calls().contains_key(method::BASE_CHANNEL), "cached");
}

#[tokio::test]
async fn login_failure_fails_the_run_and_releases_the_lock() {
    let store = Store::open_in_memory().unwrap();
    let f = fleet();
    f.fail_on("login");
    let r = sync(&store, &f).await;
    assert_eq!(r.status, SyncStatus::Failed);
    assert!(r.error.unwrap().contains("login"));
    f.clear_faults();
    assert_eq!(sync(&store, &f).await.status, SyncStatus::Ok);
}

#[tokio::test]
async fn second_sync_while_one_runs_is_refused() {
    let store = Store::open_in_memory().unwrap();
    store
        .write_blocking(|tx| {
            sync_runs::start(tx, "test", "someone-else", "2999-01-01T00:00:00.000Z")
        })
        .unwrap();
    let f = fleet();
    let err = run_sync(&store, &f, &scorer(), &SyncConfig::default(), &NoProgress)
        .await
        .unwrap_err();
    assert!(matches!(err, SyncError::AlreadyRunning(_)), "{err}");
    assert!(f.take_calls().is_empty(), "no UYUNI call when refused");
}

#[tokio::test]
async fn batch_failure_falls_back_per_system() {
    let store = Store::open_in_memory().unwrap();
    let f = fleet();
    f.fail_on("batch 1");
    let r = sync(&store, &f).await;
    assert_eq!(r.status, SyncStatus::Ok, "{:?}", r.summary.failures);
    // 1 failed batch + 3 single calls.
    assert_eq!(f.take_calls()[method::RELEVANT], 4);
}

#[tokio::test]
async fn relevance_batches_shrink_for_dense_fleets() {
    let store = Store::open_in_memory().unwrap();
    let mut f = fleet();
    // 20 more ubuntu systems, each needing the same 3 advisories.
    let extra: Vec<RawSystem> = (100..120).map(|i| sys(i, &format!("u{i}"))).collect();
    for s in &extra {
        f.relevant.insert(s.id, f.relevant[&1].clone());
    }
    f.groups[0].1.extend(extra);
    let cfg = SyncConfig {
        relevant_entries_per_call: 6,
        relevant_batch_size: 50,
        ..SyncConfig::default()
    };
    let r = run_sync(&store, &f, &scorer(), &cfg, &NoProgress)
        .await
        .unwrap();
    assert_eq!(r.status, SyncStatus::Ok, "{:?}", r.summary.failures);
    assert_eq!(r.summary.systems_total, 23);
    // The first call probes 4 systems (1, 2, 3, 100: 9 entries, 2 per system), then
    // 6 / 2 = 3 systems per call for the other 19: 1 + 7 calls.
    assert_eq!(f.take_calls()[method::RELEVANT], 8);
    let rel = store
        .read_blocking(|c| errata_store::relevance(c, "USN-1-1"))
        .unwrap();
    assert_eq!(rel[0].system_count, 22, "every system counted once");
}
