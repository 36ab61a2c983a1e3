//! Errata sync against the UYUNI simulator over real XML-RPC on loopback: call plan and
//! counts (checked against the simulator's own statistics), per-OS relevance, stale
//! marking after an erratum is really applied through UYUNI actions, fault injection
//! giving a `partial` run, and two syncs never overlapping.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use spm::engine::score::{ScoreConfig, Scorer};
use spm::engine::sync::uyuni_source::UyuniSource;
use spm::engine::sync::{NoProgress, SyncConfig, SyncError, SyncReport, run_sync};
use spm::services::uyuni::{Secret, UyuniClient, UyuniConfig};
use spm::sim::{SimHandle, SimOptions, SimServer};
use spm::store::errata::{self, ErrataFilter};
use spm::store::sync_runs::SyncStatus;
use spm::store::{Store, systems};

fn client(sim: &SimHandle, concurrency: usize) -> Arc<UyuniClient> {
    let cfg = UyuniConfig {
        url: sim.url(),
        user: "admin".into(),
        password: Secret::new("admin"),
        max_concurrency: concurrency,
        retries: 0,
        timeout_ms: 10_000,
        ..UyuniConfig::default()
    };
    Arc::new(UyuniClient::new(&cfg).expect("client"))
}

fn scorer() -> Arc<Scorer> {
    Arc::new(Scorer::new(ScoreConfig::default()).expect("scorer"))
}

async fn sync(store: &Store, source: &UyuniSource, cfg: &SyncConfig) -> SyncReport {
    run_sync(store, source, &scorer(), cfg, &NoProgress)
        .await
        .expect("sync runs")
}

fn diff(after: &BTreeMap<String, u64>, before: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect()
}

async fn start_sim(opts: SimOptions) -> SimHandle {
    SimServer::start(opts).await.expect("simulator starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_sync_then_unchanged_resync_against_the_simulator() {
    let sim = start_sim(SimOptions {
        frozen_clock: true,
        ..SimOptions::default()
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("spm.db")).expect("store");
    let source = UyuniSource::new(client(&sim, 10));
    let cfg = SyncConfig::default();

    let before = sim.stats().calls;
    let r = sync(&store, &source, &cfg).await;
    assert_eq!(
        r.status,
        SyncStatus::Ok,
        "{:?} {:?}",
        r.error,
        r.summary.failures
    );
    let calls = diff(&sim.stats().calls, &before);
    assert_eq!(
        calls, r.summary.calls_by_method,
        "our accounting matches what the simulator served"
    );
    assert!(r.summary.errata_new > 0);
    assert_eq!(r.summary.errata_new, r.summary.errata_total);
    // At most one details, one package call per new advisory; CVEs only for security.
    let new = r.summary.errata_new;
    assert_eq!(calls["errata.getDetails"], new);
    assert_eq!(calls["errata.listPackages"], new);
    let security = store
        .read_blocking(|c| {
            errata::list(
                c,
                &ErrataFilter {
                    types: vec!["security".into()],
                    ..Default::default()
                },
            )
        })
        .expect("list")
        .into_iter()
        .map(|e| e.erratum.advisory)
        .collect::<std::collections::BTreeSet<_>>();
    assert_eq!(calls["errata.listCves"], security.len() as u64);
    // Batches of systems: a first probe of 4 systems, then the other 2 of the 6 together.
    assert_eq!(
        calls["system.getRelevantErrata"], 2,
        "batched, not one call per system"
    );
    assert_eq!(calls["auth.login"], 1, "one session");

    // Test systems got their OS from their groups.
    let systems = store
        .read_blocking(|c| systems::list(c, None))
        .expect("systems");
    assert!(!systems.is_empty());
    for s in &systems {
        assert_eq!(s.role, "test", "{s:?}");
        assert_ne!(s.os, "unknown", "{s:?}");
        assert!(s.groups.iter().any(|g| g.contains(&s.os)), "{s:?}");
    }
    // Relevance recorded per OS; packages with sizes; severities mapped.
    for os in ["ubuntu", "debian", "rhel"] {
        let n = store
            .read_blocking(|c| {
                errata::list(
                    c,
                    &ErrataFilter {
                        os: Some(os.into()),
                        ..Default::default()
                    },
                )
            })
            .expect("list")
            .len();
        assert!(n > 0, "no errata relevant to {os}");
    }
    let any_sec = security.iter().next().expect("a security advisory");
    let pk = store
        .read_blocking(|c| errata::packages(c, any_sec))
        .expect("packages");
    assert!(
        !pk.is_empty() && pk.iter().all(|p| p.size_bytes.is_some()),
        "{pk:?}"
    );
    let sev = store
        .read_blocking(|c| errata::get(c, any_sec))
        .expect("get")
        .severity;
    assert!(["critical", "high", "medium", "low", "unknown"].contains(&sev.as_str()));
    let prof = store
        .read_blocking(|c| {
            let rel = errata::relevance(c, any_sec)?;
            errata::risk_profile(c, any_sec, &rel[0].os)
        })
        .expect("profile")
        .expect("a risk profile per relevant OS");
    assert!(!prof.low_confidence);

    // Unchanged re-sync: no per-advisory call, at most 10 calls + one per group.
    let before = sim.stats().calls;
    let r2 = sync(&store, &source, &cfg).await;
    assert_eq!(r2.status, SyncStatus::Ok);
    let calls = diff(&sim.stats().calls, &before);
    for m in [
        "errata.getDetails",
        "errata.listCves",
        "errata.listPackages",
    ] {
        assert!(
            !calls.contains_key(m),
            "{m} on an unchanged re-sync: {calls:?}"
        );
    }
    let groups = calls["systemgroup.listSystems"];
    assert!(r2.summary.calls_total <= 10 + groups, "{calls:?}");
    assert_eq!((r2.summary.errata_new, r2.summary.errata_updated), (0, 0));
    assert_eq!(r2.summary.errata_total, r.summary.errata_total);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applied_erratum_becomes_stale_after_resync() {
    let sim = start_sim(SimOptions {
        frozen_clock: true,
        ..SimOptions::default()
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("spm.db")).expect("store");
    let client = client(&sim, 4);
    let source = UyuniSource::new(Arc::clone(&client));
    let cfg = SyncConfig::default();
    sync(&store, &source, &cfg).await;

    // An ubuntu advisory without reboot, relevant only to ubuntu systems.
    let pick = store
        .read_blocking(|c| {
            let list = errata::list(
                c,
                &ErrataFilter {
                    os: Some("ubuntu".into()),
                    ..Default::default()
                },
            )?;
            for e in list {
                if e.erratum.reboot_suggested {
                    continue;
                }
                let rel = errata::relevance(c, &e.erratum.advisory)?;
                if rel.len() == 1 {
                    let ids: Vec<i64> = c
                        .prepare("SELECT system_id FROM errata_systems WHERE advisory=?1")?
                        .query_map([&e.erratum.advisory], |r| r.get(0))?
                        .collect::<Result<_, _>>()?;
                    return Ok(Some((e.erratum, ids)));
                }
            }
            Ok(None)
        })
        .expect("query")
        .expect("an ubuntu-only advisory without reboot");
    let (erratum, sids) = pick;
    let eid = erratum.uyuni_id.expect("uyuni id stored");
    client
        .schedule_apply_errata(&sids, &[eid], None)
        .await
        .expect("schedule");
    sim.advance(Duration::from_secs(600));

    let r = sync(&store, &source, &cfg).await;
    assert_eq!(r.status, SyncStatus::Ok, "{:?}", r.summary.failures);
    assert!(r.summary.errata_stale >= 1);
    let rel = store
        .read_blocking(|c| errata::relevance(c, &erratum.advisory))
        .expect("relevance");
    assert!(rel[0].stale, "{rel:?}");
    assert_eq!(rel[0].system_count, 0);
    // Kept for history.
    assert!(
        store
            .read_blocking(|c| errata::get(c, &erratum.advisory))
            .is_ok()
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_faults_give_a_partial_run_that_keeps_what_succeeded() {
    let mut opts = SimOptions {
        frozen_clock: true,
        seed: 7,
        ..SimOptions::default()
    };
    opts.faults.fault_rate = 0.05;
    let sim = start_sim(opts).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("spm.db")).expect("store");
    let source = UyuniSource::new(client(&sim, 8));
    let r = run_sync(
        &store,
        &source,
        &scorer(),
        &SyncConfig::default(),
        &NoProgress,
    )
    .await
    .expect("runs");
    // Login or listing groups may be hit too; then the run fails as a whole, visibly.
    match r.status {
        SyncStatus::Partial => {
            assert!(!r.summary.failures.is_empty());
            for f in &r.summary.failures {
                assert!(!f.reason.is_empty(), "{f:?}");
            }
            let stored = store
                .read_blocking(|c| errata::list(c, &ErrataFilter::default()))
                .expect("list");
            assert!(!stored.is_empty(), "what succeeded was kept");
            let run = store
                .read_blocking(|c| spm::store::sync_runs::get(c, r.run_id))
                .expect("run");
            assert_eq!(run.status, SyncStatus::Partial);
            assert_eq!(run.summary.failures, r.summary.failures);
        }
        SyncStatus::Failed => assert!(r.error.is_some()),
        other => panic!("5% faults over hundreds of calls cannot all succeed: {other:?}"),
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_syncs_never_overlap() {
    let sim = start_sim(SimOptions {
        frozen_clock: true,
        latency_ms: 20,
        ..SimOptions::default()
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("spm.db");
    let store_a = Store::open(&path).expect("store a");
    let store_b = Store::open(&path).expect("store b");
    let source = UyuniSource::new(client(&sim, 10));
    let cfg = SyncConfig::default();
    let s = scorer();
    let (a, b) = tokio::join!(run_sync(&store_a, &source, &s, &cfg, &NoProgress), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        run_sync(&store_b, &source, &s, &cfg, &NoProgress).await
    });
    assert_eq!(a.expect("first runs").status, SyncStatus::Ok);
    match b {
        Err(SyncError::AlreadyRunning(m)) => assert!(m.contains("already running"), "{m}"),
        other => panic!("second sync should be refused, got {other:?}"),
    }
    sim.shutdown().await;
}
